//! SMS: Twilio, Vonage or a configured HTTP gateway (`tayori_channels::sms`),
//! with links replaced by short tracked links.

mod compose;
mod config;
mod twilio_webhook;
mod vonage_webhook;

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use tayori_channels::sms::http_gateway::HttpGatewayClient;
use tayori_channels::sms::http_gateway::HttpGatewaySettings;
use tayori_channels::sms::twilio::{TwilioClient, TwilioSettings};
use tayori_channels::sms::vonage::{VonageClient, VonageSettings};
use tayori_channels::sms::{SmsEncoder, SmsLimits};
use tayori_channels::{Channel, Content, Encode};

use crate::channel::inbound::{Route, RouteContext};
use crate::channel::section::{self, Common};
use crate::channel::{
    typed_content, BuildError, ChannelPlugin, ChannelSettings, Compose, ConfigContext, Transport,
};
use crate::channel_id::ChannelId;
use crate::config::KeyError;
use crate::job::{Job, JobError};
use crate::render::RenderError;
use crate::tracking::Records;
pub use config::{SignatureMethod, SmsSection, VonageSignature};

use crate::tracking::DEFAULT_LINK_TTL;

pub const ID: ChannelId = ChannelId::new("sms");

/// Japan's guidelines keep marketing texts out of the night; a config's
/// `policy.quiet_hours.sms` replaces this (`"off"` lifts it).
pub const DEFAULT_QUIET_HOURS: &str = "21:00-08:00";

pub struct Sms;

/// `content.sms`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsContent {
    pub text: String,
}

impl ChannelPlugin for Sms {
    fn id(&self) -> ChannelId {
        ID
    }

    fn address_key(&self) -> &'static str {
        "phone"
    }

    fn example_address(&self) -> serde_json::Value {
        serde_json::json!("090-1234-5678")
    }

    /// The country and carrier prefix and the last four digits: `+8190****5678`.
    fn mask(&self, number: &str) -> String {
        let chars: Vec<char> = number.chars().collect();
        if chars.len() < 10 {
            return super::mask::keep_start(number, 2);
        }
        let head: String = chars[..5].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}****{tail}")
    }

    fn template_files(&self) -> &'static [&'static str] {
        &["sms.txt"]
    }

    fn check_content(&self, content: &serde_json::Value) -> Result<(), JobError> {
        typed_content::<SmsContent>(ID, content).map(drop)
    }

    fn content_schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        gen.subschema_for::<SmsContent>()
    }

    fn default_quiet_hours(&self) -> Option<&'static str> {
        Some(DEFAULT_QUIET_HOURS)
    }

    fn route_paths(&self) -> &'static [&'static str] {
        &["/webhooks/twilio", "/webhooks/vonage"]
    }

    fn transports(&self) -> &'static [&'static str] {
        &["api"]
    }

    fn configure(
        &self,
        section: &toml::Table,
        cx: &ConfigContext<'_>,
    ) -> Result<(Common, Box<dyn ChannelSettings>), KeyError> {
        let (common, own) = section::split::<SmsSection>(ID, section)?;
        own.check()?;
        let limits = own.limits();
        // Every transport normalizes numbers (`file` and `null` write and
        // discard what the gateway would get), so every one needs the region.
        own.check_region()?;
        let provider = match common.transport(ID, self.transports())? {
            Transport::Native => {
                let key = |k: &str| format!("channels.sms.{k}");
                Some(match own.provider.as_deref() {
                    Some("twilio") => Provider::Twilio(own.twilio(cx.public_url())?),
                    Some("vonage") => {
                        let v = own.vonage(cx.public_url())?;
                        v.check().map_err(|m| KeyError::new(key("vonage"), m))?;
                        Provider::Vonage(v)
                    }
                    Some("http") => {
                        let h = own.http_gateway()?;
                        h.check(&limits)
                            .map_err(|m| KeyError::new(key("http"), m))?;
                        Provider::Http(h)
                    }
                    other => {
                        return Err(KeyError::new(
                            key("provider"),
                            format!(
                                "provider {other:?} is not available: use provider = \"twilio\", \"vonage\" or \"http\", \
                                 or transport = \"file\" with dir = \"...\""
                            ),
                        ))
                    }
                })
            }
            _ => None,
        };
        let twilio_token = match &provider {
            Some(Provider::Twilio(t)) => Some(t.auth_token.clone()).filter(|t| !t.is_empty()),
            _ => None,
        };
        let vonage_signature = match &provider {
            Some(Provider::Vonage(_)) => own.vonage_signature()?,
            _ => None,
        };
        let link_ttl = match &own.link_ttl {
            Some(t) => crate::units::duration::parse(t)
                .map_err(|m| KeyError::new("channels.sms.link_ttl", m))?,
            None => DEFAULT_LINK_TTL,
        };
        let settings = SmsSettings {
            provider,
            limits,
            track_clicks: own.track_clicks.unwrap_or(true),
            link_ttl,
            twilio_token,
            vonage_signature,
        };
        Ok((common, Box::new(settings)))
    }
}

/// The provider the native transport sends through.
enum Provider {
    Twilio(TwilioSettings),
    Vonage(VonageSettings),
    Http(HttpGatewaySettings),
}

/// `[channels.sms]`, checked.
pub struct SmsSettings {
    provider: Option<Provider>,
    limits: SmsLimits,
    track_clicks: bool,
    link_ttl: Duration,
    /// Verifies `/webhooks/twilio` (the account's auth token), when SMS goes through Twilio.
    twilio_token: Option<String>,
    /// Verifies `/webhooks/vonage`, when SMS goes through Vonage with a signature secret.
    vonage_signature: Option<VonageSignature>,
}

impl ChannelSettings for SmsSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn encoder(&self) -> Result<Box<dyn Encode>, BuildError> {
        Ok(Box::new(SmsEncoder::new(self.limits.clone())))
    }

    fn native_sender(&self) -> Result<Arc<dyn Channel>, BuildError> {
        let limits = self.limits.clone();
        let sender: Arc<dyn Channel> = match &self.provider {
            Some(Provider::Twilio(t)) => {
                Arc::new(TwilioClient::new(t.clone(), limits).map_err(|m| BuildError::new(ID, m))?)
            }
            Some(Provider::Vonage(v)) => {
                Arc::new(VonageClient::new(v.clone(), limits).map_err(|m| BuildError::new(ID, m))?)
            }
            Some(Provider::Http(h)) => Arc::new(
                HttpGatewayClient::new(h.clone(), limits).map_err(|m| BuildError::new(ID, m))?,
            ),
            None => return Err(BuildError::new(ID, "no provider is configured")),
        };
        Ok(sender)
    }

    fn compose(&self, job: &Job, cx: &Compose<'_>) -> Result<(Content, Records), RenderError> {
        compose::compose(job, cx, self.track_clicks, self.link_ttl)
    }

    fn routes(&self, cx: &RouteContext) -> Vec<Arc<dyn Route>> {
        let mut hooks: Vec<Arc<dyn Route>> = Vec::new();
        if let Some(token) = &self.twilio_token {
            hooks.push(Arc::new(twilio_webhook::TwilioWebhook {
                token: token.clone(),
                public_url: cx.public_url.clone(),
            }));
        }
        if let Some(key) = &self.vonage_signature {
            hooks.push(Arc::new(vonage_webhook::VonageWebhook { key: key.clone() }));
        }
        hooks
    }

    /// Phone numbers in E.164 (a STOP reply reports `+819012345678` for a job's
    /// `090-1234-5678`), national ones read in `default_region`.
    fn suppression_address(&self, address: &str) -> String {
        tayori_channels::sms::phone::to_e164(address, &self.limits.default_region)
            .unwrap_or_else(|_| address.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked() {
        assert_eq!(Sms.mask("+819012345678"), "+8190****5678");
        assert_eq!(Sms.mask("12345"), "12***");
    }
}
