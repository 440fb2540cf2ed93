//! Webhook: a signed HTTP POST for in-house apps, chat tools and partner
//! systems. The body is the job's JSON document, rendered; the request is
//! signed per Standard Webhooks, so receivers verify it with the
//! `standardwebhooks` libraries (protocol code: `tayori_channels::webhook`).
//!
//! An endpoint that answers 410 Gone is suppressed (keyed by its URL): later
//! jobs to it fall back or are `suppressed`, never posted.

mod compose;
mod config;

use std::borrow::Cow;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tayori_channels::webhook::{self as protocol, WebhookEncoder, WebhookSender, WebhookSettings};
use tayori_channels::{Channel, Content, Encode, Message, SendError, Sent};

use crate::channel::section::{self, Common};
use crate::channel::{
    typed_content, BuildError, ChannelPlugin, ChannelSettings, Compose, ConfigContext, Transport,
};
use crate::channel_id::ChannelId;
use crate::config::KeyError;
use crate::job::{Job, JobError};
use crate::render::RenderError;
use crate::tracking::Records;
pub use config::WebhookSection;

pub const ID: ChannelId = ChannelId::new("webhook");

pub struct Webhook;

/// `content.webhook`: the JSON document to post; every string in it is a template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookContent {
    pub body: Value,
}

impl ChannelPlugin for Webhook {
    fn id(&self) -> ChannelId {
        ID
    }

    /// A job may name its own endpoint; without one it goes to the channel's `url`.
    fn address_key(&self) -> &'static str {
        "webhook_url"
    }

    fn example_address(&self) -> Value {
        serde_json::json!("https://hooks.example.com/tayori")
    }

    /// Endpoints compare in their normal form (scheme and host in lower case,
    /// no default port), so a 410 from `https://Hooks.example.com:443/in`
    /// stops `https://hooks.example.com/in` too.
    fn suppression_key<'a>(&self, address: &'a str) -> Cow<'a, str> {
        match protocol::sender::parse_endpoint(address.trim(), true) {
            Ok(url) => Cow::Owned(url.as_str().to_owned()),
            Err(_) => Cow::Borrowed(address.trim()),
        }
    }

    /// The scheme and host only: a webhook URL's path and query often carry
    /// its secret token (chat tools).
    fn mask(&self, address: &str) -> String {
        match address.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host = host.rsplit('@').next().unwrap_or_default();
                format!("{scheme}://{host}/***")
            }
            None => super::mask::keep_start(address, 0),
        }
    }

    fn template_files(&self) -> &'static [&'static str] {
        &["webhook.json"]
    }

    fn check_content(&self, content: &Value) -> Result<(), JobError> {
        typed_content::<WebhookContent>(ID, content).map(drop)
    }

    fn content_schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        gen.subschema_for::<WebhookContent>()
    }

    fn transports(&self) -> &'static [&'static str] {
        &["http"]
    }

    fn configure(
        &self,
        section: &toml::Table,
        _cx: &ConfigContext<'_>,
    ) -> Result<(Common, Box<dyn ChannelSettings>), KeyError> {
        let (common, own) = section::split::<WebhookSection>(ID, section)?;
        let native = common.transport(ID, self.transports())? == Transport::Native;
        let protocol = own.settings(native)?;
        let allow_http = own.allow_http;
        Ok((
            common,
            Box::new(WebhookChannelSettings {
                protocol,
                allow_http,
            }),
        ))
    }
}

/// `[channels.webhook]`, checked.
pub struct WebhookChannelSettings {
    /// The endpoint, secret and timeout; `None` without the native transport.
    protocol: Option<WebhookSettings>,
    /// `allow_http`: a job's own endpoint may be plain http on a loopback host.
    allow_http: bool,
}

impl WebhookChannelSettings {
    fn default_url(&self) -> Option<&str> {
        self.protocol.as_ref()?.url.as_deref()
    }
}

impl ChannelSettings for WebhookChannelSettings {
    fn encoder(&self) -> Result<Box<dyn Encode>, BuildError> {
        Ok(Box::new(WebhookEncoder))
    }

    fn native_sender(&self) -> Result<Arc<dyn Channel>, BuildError> {
        let settings = self
            .protocol
            .clone()
            .ok_or_else(|| BuildError::new(ID, "secret is required"))?;
        let default = settings.url.clone();
        let sender = WebhookSender::new(settings).map_err(|m| BuildError::new(ID, m))?;
        Ok(Arc::new(Endpoints { sender, default }))
    }

    fn compose(&self, job: &Job, cx: &Compose<'_>) -> Result<(Content, Records), RenderError> {
        compose::compose(job, cx)
    }

    fn default_address(&self) -> Option<&str> {
        self.default_url()
    }

    fn suppression_address(&self, address: &str) -> String {
        Webhook.suppression_key(address).into_owned()
    }

    fn check_address(&self, address: &str) -> Result<(), String> {
        tayori_channels::webhook::endpoint_allowed(address, self.allow_http)
    }

    /// A 429 or 503 speaks for one endpoint, not the channel: only that job waits.
    fn pauses_on_rate_limit(&self) -> bool {
        false
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The sender, saying so when the default endpoint is gone.
struct Endpoints {
    sender: WebhookSender,
    default: Option<String>,
}

#[async_trait::async_trait]
impl Channel for Endpoints {
    async fn send(&self, message: &Message) -> Result<Sent, SendError> {
        let result = self.sender.send(message).await;
        if let Err(SendError::Bounced { code, .. }) = &result {
            let to_default = message.to.address.trim().is_empty()
                || self.default.as_deref().map(str::trim) == Some(message.to.address.trim());
            if to_default {
                metrics::counter!(crate::metrics::PAUSES, "channel" => ID.label(), "reason" => "endpoint_gone")
                    .increment(1);
                tracing::warn!(
                    channel = %ID,
                    code = %code,
                    endpoint = %Webhook.mask(self.default.as_deref().unwrap_or_default()),
                    "the default webhook endpoint answered 410 Gone: it is suppressed, and jobs \
                     without to.webhook_url fall back or are suppressed until it is lifted \
                     (set a new channels.webhook.url, or lift the suppression)"
                );
            }
        }
        result
    }
}
