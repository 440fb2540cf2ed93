//! Channels as plugins: everything the daemon knows about one channel lives in
//! its folder here (`email/`, `line/`, `sms/`, `dm/`), behind [`ChannelPlugin`],
//! and the daemon reaches it only through the [`registry`]. Protocol code (MIME,
//! the LINE API, SMS gateways, print files) stays in the `tayori-channels` crate.
//!
//! Adding a channel is a folder here plus one line in `registry.rs`.

pub mod background;
mod enabled;
pub mod inbound;
pub mod mask;
pub mod registry;
pub mod section;

use std::borrow::Cow;
use std::sync::Arc;

use tayori_channels::{Channel, Content, Encode};

use crate::channel_id::ChannelId;
use crate::config::{Config, KeyError};
use crate::job::{Job, JobError, To};
use crate::render::{RenderError, Renderer};
use crate::tracking::{Records, Tracker};
use crate::units::Rate;
pub use enabled::{load_templates, Channels, Enabled};
pub use section::{Common, Transport};

/// Declares each channel's folder and lists its plugin in [`PLUGINS`].
macro_rules! channels {
    ($($folder:ident::$plugin:ident),* $(,)?) => {
        $(pub mod $folder;)*

        /// Every channel, in the order they are listed (config docs, `stats`,
        /// report columns). The order is presentation only: ids are the wire format.
        pub static PLUGINS: &[&dyn ChannelPlugin] = &[$(&$folder::$plugin),*];
    };
}

// Every channel of this build: its folder under src/channel/ and its plugin.
// A new channel is a folder and one line here.
channels! {
    email::Email,
    line::Line,
    sms::Sms,
    dm::Dm,
    webhook::Webhook,
}

/// One channel, as the daemon sees it. Implemented once per channel folder by a
/// unit struct; the registry holds a `&'static` of each.
pub trait ChannelPlugin: Sync {
    /// The wire id (stream names, events, tokens, metric labels): never changes.
    fn id(&self) -> ChannelId;

    /// The key under a job's `to` holding this channel's address (`email`,
    /// `line_user_id`, `phone`, `postal`): jobs name it in errors as `to.{key}`.
    fn address_key(&self) -> &'static str;

    /// The recipient's address on this channel, without surrounding blanks.
    /// For channels whose address is a structure (a postal address), the text
    /// that identifies it (the postal code).
    fn address<'a>(&self, to: &'a To) -> Option<&'a str> {
        to.text(self.address_key())
    }

    /// An address as a job would give it, for docs and for the registry's test
    /// that previews every channel.
    fn example_address(&self) -> serde_json::Value;

    /// Checks the job's `to.{address_key}` has the right shape, naming the field if not.
    fn check_address(&self, to: &To) -> Result<(), JobError> {
        to.check_text(self.address_key())
    }

    /// The recipient as the adapter sees it (`address` empty when the job has none).
    fn recipient(&self, to: &To) -> tayori_channels::Recipient {
        tayori_channels::Recipient {
            name: to.name.clone(),
            address: self.address(to).unwrap_or_default().to_owned(),
            postal: None,
        }
    }

    /// The form an address is suppressed under, so that a bounce report, a
    /// click and an operator naming the same recipient hit the same entry.
    fn suppression_key<'a>(&self, address: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(address.trim())
    }

    /// The address as logs may show it: enough to tell two apart, not enough
    /// to identify the person.
    fn mask(&self, address: &str) -> String {
        mask::keep_start(address, 5)
    }

    /// The files of a template directory this channel reads (`sms.txt`); a
    /// `.json` file is a JSON part whose string leaves are templates.
    fn template_files(&self) -> &'static [&'static str];

    /// Whether a template with these files has what the channel needs.
    fn template_ready(&self, has: &dyn Fn(&str) -> bool) -> bool {
        self.template_files().iter().all(|f| has(f))
    }

    /// What a template needs for this channel, for error messages.
    fn template_need(&self) -> String {
        self.template_files().join(" and ")
    }

    /// Checks the job's inline content for this channel (`content.{id}`), naming
    /// the field at fault by its whole path.
    fn check_content(&self, content: &serde_json::Value) -> Result<(), JobError>;

    /// The schema of `to.{address_key}` in the published job format.
    fn address_schema(&self, _gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "null"] })
    }

    /// The schema of `content.{id}` in the published job format.
    fn content_schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema;

    /// Quiet hours that apply when the config sets none (SMS: Japan's
    /// guidelines for marketing texts at night).
    fn default_quiet_hours(&self) -> Option<&'static str> {
        None
    }

    /// The paths of the channel's inbound routes (`/webhooks/line`), whether or
    /// not this config turns them on: one not turned on answers 404 (and still
    /// refuses an oversized body with 413), and is counted under its own path.
    fn route_paths(&self) -> &'static [&'static str] {
        &[]
    }

    /// The channel's own transports (`smtp`, `api`, `print`), the default first;
    /// `file` and `null` every channel has.
    fn transports(&self) -> &'static [&'static str];

    /// Types and checks the channel's `[channels.<id>]` section (its own keys;
    /// the common ones are already in `common`), once, at start. Errors name
    /// the key and the fix.
    fn configure(
        &self,
        section: &toml::Table,
        cx: &ConfigContext<'_>,
    ) -> Result<(Common, Box<dyn ChannelSettings>), KeyError>;
}

/// What a channel's configuration may read beside its own section.
pub struct ConfigContext<'a> {
    pub config: &'a Config,
}

impl ConfigContext<'_> {
    /// `http.public_url` without a trailing slash: the base of webhook and tracking URLs.
    pub fn public_url(&self) -> &str {
        self.config.http.public_url.trim_end_matches('/')
    }

    /// `http.tracking_secret`, when set (it signs tracking, unsubscribe and bounce links).
    pub fn tracking_secret(&self) -> Option<&str> {
        self.config
            .http
            .tracking_secret
            .as_deref()
            .filter(|s| !s.trim().is_empty())
    }
}

/// A channel's section, typed and checked: what the daemon builds the channel
/// from and composes its messages with.
pub trait ChannelSettings: Send + Sync {
    /// The encoder: what the provider receives for one message (also what the
    /// `file` and `null` transports write or discard, and `tayori render` shows).
    fn encoder(&self) -> Result<Box<dyn Encode>, BuildError>;

    /// The channel's own transport (SMTP, the provider's API, print files).
    fn native_sender(&self) -> Result<Arc<dyn Channel>, BuildError>;

    /// The job's message on this channel: rendered, with tracking applied, and
    /// what must be in Redis before it is sent.
    fn compose(&self, job: &Job, cx: &Compose<'_>) -> Result<(Content, Records), RenderError>;

    /// Where a job without an address on this channel goes (webhook: the
    /// channel's `url`); `None`: such a job cannot be sent here.
    fn default_address(&self) -> Option<&str> {
        None
    }

    /// The job's address here when it gives none under the channel's own key
    /// (LINE with `pnp`: a transactional job's `to.phone`, sent as a
    /// notification message). `None` by default: such a job has no address here.
    fn alternate_address<'a>(&self, _job: &'a Job, _renderer: &Renderer) -> Option<&'a str> {
        None
    }

    /// Whether a provider's "slow down" with a time (429 and Retry-After)
    /// speaks for the whole channel (one account: LINE, Twilio), which then
    /// pauses for every daemon, or only for one destination (a webhook
    /// endpoint), when only that job waits.
    fn pauses_on_rate_limit(&self) -> bool {
        true
    }

    /// Whether a job with a fallback channel moves on to it when the channel's
    /// monthly quota is used up (LINE's `on_quota = "fallback"`), rather than
    /// waiting with the others for the pause to end.
    fn falls_back_on_quota(&self) -> bool {
        false
    }

    /// The pause reason of a used-up quota (a `SendError::QuotaExhausted`
    /// code): a pause another daemon shares under this reason is a quota pause here too.
    fn quota_code(&self) -> Option<&'static str> {
        None
    }

    /// Tasks the channel runs beside sending, for the daemon to spawn (LINE:
    /// its quota and statistics reads).
    fn background(&self, _cx: background::Background) -> background::Tasks {
        Vec::new()
    }

    /// Rates per destination (email: per recipient domain), shared by all daemons.
    fn destination_rates(&self) -> &[(String, Rate)] {
        &[]
    }

    /// The address as suppressions are keyed before the channel-wide rule
    /// ([`ChannelPlugin::suppression_key`]): SMS reads national numbers in its
    /// configured region and keys them in E.164.
    fn suppression_address(&self, address: &str) -> String {
        address.to_owned()
    }

    /// Checks an address a job gives, before it is enqueued, where the sender
    /// (not the encoder) holds the rule: a webhook's endpoint. The reason never
    /// quotes the address. The encoder's own checks (an email address, an SMS
    /// number and segments, a postal address) run on the encoded message.
    fn check_address(&self, _address: &str) -> Result<(), String> {
        Ok(())
    }

    /// Warnings about a named template (email: a marketing mail without a
    /// visible unsubscribe link or sender identity).
    fn template_warnings(&self, _renderer: &Renderer, _template: &str) -> Vec<String> {
        Vec::new()
    }

    /// The channel's webhook routes (receipts, replies, blocks), each checking
    /// its provider's signature. None by default.
    fn routes(&self, _cx: &inbound::RouteContext) -> Vec<Arc<dyn inbound::Route>> {
        Vec::new()
    }

    /// The concrete settings, for the channel's own code elsewhere (its CLI
    /// command) to downcast to.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What composing a message needs besides the job.
pub struct Compose<'a> {
    pub renderer: &'a Renderer,
    /// Present when `http.tracking_secret` is set.
    pub tracker: Option<&'a Tracker>,
}

/// A channel that cannot be built from its (checked) settings: a directory
/// that cannot be created, a client that cannot start.
#[derive(Debug, Clone, thiserror::Error)]
#[error("channels.{channel}: {message}")]
pub struct BuildError {
    pub channel: ChannelId,
    pub message: String,
}

impl BuildError {
    pub fn new(channel: ChannelId, message: impl Into<String>) -> BuildError {
        BuildError {
            channel,
            message: message.into(),
        }
    }
}

/// Where a job's content for a channel comes from.
pub enum Source<'a> {
    /// A template directory, checked to have the channel's parts.
    Template(&'a str),
    /// The job's `content.{id}`.
    Inline(&'a serde_json::Value),
}

impl<'a> Source<'a> {
    pub fn of(
        plugin: &dyn ChannelPlugin,
        job: &'a Job,
        renderer: &Renderer,
    ) -> Result<Source<'a>, RenderError> {
        let id = plugin.id();
        if let Some(name) = job.template.as_deref() {
            if !renderer.exists(name) {
                return Err(RenderError(format!("template {name:?} does not exist")));
            }
            if !plugin.template_ready(&|file| renderer.has_part(name, file)) {
                return Err(RenderError(format!(
                    "template {name:?} has no {id} part (needs {})",
                    plugin.template_need()
                )));
            }
            return Ok(Source::Template(name));
        }
        let content = job
            .content
            .as_ref()
            .ok_or_else(|| RenderError("job has neither template nor content".into()))?;
        content
            .parts
            .get(id.as_str())
            .filter(|part| !part.is_null())
            .map(Source::Inline)
            .ok_or_else(|| RenderError(format!("content has no {id} part")))
    }
}

/// A typed inline content part for rendering (checked when the job was parsed).
pub fn inline_content<T: serde::de::DeserializeOwned>(
    id: ChannelId,
    value: &serde_json::Value,
) -> Result<T, RenderError> {
    typed_content(id, value).map_err(|e| RenderError(e.to_string()))
}

/// Deserializes a channel's inline content part into its type, naming the field
/// at fault by its whole path (`content.email.bcc`).
pub fn typed_content<T: serde::de::DeserializeOwned>(
    id: ChannelId,
    value: &serde_json::Value,
) -> Result<T, JobError> {
    // The common case, a valid part, without building its path.
    match T::deserialize(value) {
        Ok(typed) => Ok(typed),
        Err(_) => typed_part(&format!("content.{id}"), value),
    }
}

/// Deserializes a part of a job found at `at` (`to.postal`), naming the field at
/// fault by its whole path.
pub fn typed_part<T: serde::de::DeserializeOwned>(
    at: &str,
    value: &serde_json::Value,
) -> Result<T, JobError> {
    // A valid part (every job but a bad one) is read without tracking the
    // path: the tracking doubled the cost of reading inline content, which
    // every inline job pays twice (checked on arrival, read to render).
    if let Ok(typed) = T::deserialize(value) {
        return Ok(typed);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = at.to_owned();
        let path = crate::job::field_path(e.path());
        if !path.is_empty() {
            field.push('.');
            field.push_str(&path);
        }
        let inner = e.into_inner().to_string();
        // serde names a missing or repeated field only in its message.
        let named = ["missing field `", "duplicate field `"]
            .iter()
            .find_map(|p| inner.strip_prefix(p)?.split_once('`'))
            .map(|(name, _)| name);
        if let Some(name) = named {
            crate::job::push_key(&mut field, name);
        }
        JobError::new(&field, format!("invalid job JSON: {inner}"))
    })
}
