//! LINE: push messages through the Messaging API (`tayori_channels::line`),
//! with `uri` actions routed through the click tracker.

mod compose;
mod config;
mod reads;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tayori_channels::line::reads::{LineReader, SentUnits};
use tayori_channels::line::{pnp, LineClient, LineEncoder};
use tayori_channels::{Channel, Content, Encode};

use crate::channel::background::{Background, Tasks};
use crate::channel::inbound::{Route, RouteContext};
use crate::channel::section::{self, Common};
use crate::channel::{
    typed_content, BuildError, ChannelPlugin, ChannelSettings, Compose, ConfigContext, Transport,
};
use crate::channel_id::ChannelId;
use crate::config::KeyError;
use crate::job::{Job, JobError, JobKind};
use crate::render::{RenderError, Renderer};
use crate::tracking::{DeliveryTag, Records};
pub use config::{LineSection, OnQuota};

pub const ID: ChannelId = ChannelId::new("line");

pub struct Line;

/// Where a job keeps the customer's phone number: the SMS channel's address
/// key, read here (not through the SMS channel) for notification messages.
const PHONE_KEY: &str = "phone";

/// `content.line`: LINE message objects; every string in them is a template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineContent {
    pub messages: Vec<Value>,
}

impl ChannelPlugin for Line {
    fn id(&self) -> ChannelId {
        ID
    }

    fn address_key(&self) -> &'static str {
        "line_user_id"
    }

    fn example_address(&self) -> serde_json::Value {
        serde_json::json!("U4af4980629a1b2c3d4e5f60718293a4b")
    }

    fn template_files(&self) -> &'static [&'static str] {
        &["line.json"]
    }

    fn check_content(&self, content: &Value) -> Result<(), JobError> {
        typed_content::<LineContent>(ID, content).map(drop)
    }

    fn content_schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        gen.subschema_for::<LineContent>()
    }

    fn route_paths(&self) -> &'static [&'static str] {
        &["/webhooks/line"]
    }

    fn transports(&self) -> &'static [&'static str] {
        &["api"]
    }

    fn configure(
        &self,
        section: &toml::Table,
        cx: &ConfigContext<'_>,
    ) -> Result<(Common, Box<dyn ChannelSettings>), KeyError> {
        let (common, own) = section::split::<LineSection>(ID, section)?;
        let pnp_region = own.pnp_region(cx.config.channels.get("sms"))?;
        let token = match common.transport(ID, self.transports())? {
            Transport::Native => Some(own.token()?),
            _ => None,
        };
        let settings = LineSettings {
            api_base: own
                .api_base
                .clone()
                .unwrap_or_else(|| "https://api.line.me".into()),
            timeout: own.timeout.unwrap_or(Duration::from_secs(10)),
            aggregation_units: own.custom_aggregation_units,
            track_clicks: own.track_clicks,
            link_ttl: own
                .link_ttl
                .unwrap_or(crate::tracking::DEFAULT_LINK_TTL),
            channel_secret: own.secret(),
            token,
            pnp_region,
            on_quota: own.on_quota,
            quota_poll: own.quota_poll.unwrap_or(Duration::from_secs(300)),
            stats_poll: own.stats_poll.unwrap_or(Duration::from_secs(3600)),
            stats_days: own.stats_days.unwrap_or(14),
            units: Arc::default(),
        };
        for (key, every) in [
            ("quota_poll", settings.quota_poll),
            ("stats_poll", settings.stats_poll),
        ] {
            if every.is_zero() {
                return Err(KeyError::new(
                    format!("channels.line.{key}"),
                    "must be longer than 0 s, e.g. \"5m\"",
                ));
            }
        }
        if settings.stats_days == 0 {
            return Err(KeyError::new(
                "channels.line.stats_days",
                "must be at least 1 (days after sending that statistics are fetched)",
            ));
        }
        // A token that cannot be a header would fail every push: say so now.
        if let Some(token) = &settings.token {
            tayori_channels::line::client::authorization(token)
                .map_err(|m| KeyError::new("channels.line.channel_access_token", m))?;
        }
        Ok((common, Box::new(settings)))
    }
}

/// `[channels.line]`, checked.
pub struct LineSettings {
    api_base: String,
    token: Option<String>,
    timeout: Duration,
    aggregation_units: bool,
    track_clicks: bool,
    /// How long the short links of text messages keep working.
    link_ttl: Duration,
    /// Verifies `/webhooks/line`.
    channel_secret: Option<String>,
    /// With `pnp` on: the region national numbers are read in.
    pnp_region: Option<String>,
    on_quota: OnQuota,
    quota_poll: Duration,
    stats_poll: Duration,
    stats_days: u32,
    /// The (unit, day) pairs the client sent with, for the statistics fetch.
    units: Arc<SentUnits>,
}

impl LineSettings {
    fn line_encoder(&self) -> LineEncoder {
        LineEncoder {
            aggregation_units: self.aggregation_units,
            pnp_region: self.pnp_region.clone(),
        }
    }

    /// The phone number a job's message goes to as a notification message:
    /// with `pnp` on, a transactional job (by its `kind` or its template's) with
    /// `to.phone` and no `to.line_user_id`. Marketing never goes through PNP.
    fn notification_phone<'a>(&self, job: &'a Job, renderer: &Renderer) -> Option<&'a str> {
        self.pnp_region.as_ref()?;
        if Line.address(&job.to).is_some() {
            return None;
        }
        let transactional =
            job.kind == Some(JobKind::Transactional) || renderer.options(job).transactional;
        transactional.then(|| job.to.text(PHONE_KEY)).flatten()
    }
}

impl ChannelSettings for LineSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn encoder(&self) -> Result<Box<dyn Encode>, BuildError> {
        Ok(Box::new(self.line_encoder()))
    }

    fn native_sender(&self) -> Result<Arc<dyn Channel>, BuildError> {
        let token = self
            .token
            .as_deref()
            .ok_or_else(|| BuildError::new(ID, "channel_access_token is required"))?;
        let client = LineClient::new(&self.api_base, token, self.timeout, self.line_encoder())
            .map_err(|m| BuildError::new(ID, m))?
            .with_units(self.units.clone());
        Ok(Arc::new(client))
    }

    fn falls_back_on_quota(&self) -> bool {
        self.on_quota == OnQuota::Fallback
    }

    fn quota_code(&self) -> Option<&'static str> {
        Some(tayori_channels::line::client::MONTHLY_LIMIT_CODE)
    }

    fn background(&self, cx: Background) -> Tasks {
        // Only with the Messaging API (a file transport has no account to read).
        let Some(token) = &self.token else {
            return Vec::new();
        };
        let reader = match LineReader::new(&self.api_base, token, self.timeout) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "LINE's quota and statistics cannot be read");
                return Vec::new();
            }
        };
        let settings = reads::ReadSettings {
            quota_poll: self.quota_poll,
            stats: self.aggregation_units.then_some(reads::Schedule {
                every: self.stats_poll,
                days: self.stats_days,
            }),
            units: self.units.clone(),
        };
        reads::tasks(reader, settings, cx)
    }

    fn compose(&self, job: &Job, cx: &Compose<'_>) -> Result<(Content, Records), RenderError> {
        let (content, mut records) = compose::compose(job, cx, self.track_clicks, self.link_ttl)?;
        let Some(phone) = self.notification_phone(job, cx.renderer) else {
            return Ok((content, records));
        };
        let Content::Line { messages } = content else {
            return Ok((content, records));
        };
        // Stored before the send, so the delivery event, however soon it comes,
        // finds the job.
        records.delivery_tag = Some(DeliveryTag {
            tag: pnp::delivery_tag(&format!("{}/{ID}", job.id)),
            job_id: job.id.clone(),
        });
        let content = Content::LineNotification {
            messages,
            phone: phone.to_owned(),
        };
        Ok((content, records))
    }

    fn alternate_address<'a>(&self, job: &'a Job, renderer: &Renderer) -> Option<&'a str> {
        self.notification_phone(job, renderer)
    }

    fn routes(&self, _cx: &RouteContext) -> Vec<Arc<dyn Route>> {
        match &self.channel_secret {
            Some(secret) => vec![Arc::new(webhook::LineWebhook {
                secret: secret.clone(),
            })],
            None => Vec::new(),
        }
    }
}
