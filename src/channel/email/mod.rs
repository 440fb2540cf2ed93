//! Email: SMTP through lettre (`tayori_channels::email`), with open and click
//! tracking, one-click unsubscribe and VERP bounce addresses.

pub mod bounce;
mod compose;
mod config;
mod sendgrid_webhook;

use std::borrow::Cow;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use tayori_channels::email::smtp::{SmtpChannel, SmtpSettings};
use tayori_channels::email::{EmailEncoder, EmailOptions};
use tayori_channels::{Channel, Content, Encode};

use crate::channel::inbound::{Route, RouteContext};
use crate::channel::section::{self, Common};
use crate::channel::{
    typed_content, BuildError, ChannelPlugin, ChannelSettings, Compose, ConfigContext,
};
use crate::channel_id::ChannelId;
use crate::config::KeyError;
use crate::job::{Job, JobError};
use crate::render::{RenderError, Renderer};
use crate::tracking::Records;
use crate::units::Rate;
pub use config::EmailSection;

pub const ID: ChannelId = ChannelId::new("email");

pub struct Email;

/// `content.email`: the parts of an inline email.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailContent {
    pub subject: String,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

impl ChannelPlugin for Email {
    fn id(&self) -> ChannelId {
        ID
    }

    fn address_key(&self) -> &'static str {
        "email"
    }

    fn example_address(&self) -> serde_json::Value {
        serde_json::json!("taro@example.com")
    }

    /// Without case (what a bounce report or a click carries may differ from the
    /// job in case), and with an internationalized domain in its IDNA form, the
    /// form the mail is sent in (`taro@例え.jp` → `taro@xn--r8jz45g.jp`): a bounce
    /// report names the address as sent, an unsubscribe token or an operator as
    /// the job had it, and both must hit the same entry.
    fn suppression_key<'a>(&self, address: &'a str) -> Cow<'a, str> {
        let sent = tayori_channels::email::address::with_ascii_domain(address.trim());
        if sent.bytes().any(|b| b.is_ascii_uppercase()) {
            sent.to_ascii_lowercase().into()
        } else {
            sent
        }
    }

    /// The first character of the local part, then `***@domain`.
    fn mask(&self, address: &str) -> String {
        match address.rsplit_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => super::mask::keep_start(address, 1),
        }
    }

    fn template_files(&self) -> &'static [&'static str] {
        &["subject.txt", "email.html", "email.txt"]
    }

    fn template_ready(&self, has: &dyn Fn(&str) -> bool) -> bool {
        has("subject.txt") && (has("email.html") || has("email.txt"))
    }

    fn template_need(&self) -> String {
        "subject.txt and email.html or email.txt".into()
    }

    fn check_content(&self, content: &serde_json::Value) -> Result<(), JobError> {
        typed_content::<EmailContent>(ID, content).map(drop)
    }

    fn content_schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        gen.subschema_for::<EmailContent>()
    }

    fn route_paths(&self) -> &'static [&'static str] {
        &["/webhooks/bounce"]
    }

    fn transports(&self) -> &'static [&'static str] {
        &["smtp"]
    }

    fn configure(
        &self,
        section: &toml::Table,
        cx: &ConfigContext<'_>,
    ) -> Result<(Common, Box<dyn ChannelSettings>), KeyError> {
        let (common, own) = section::split::<EmailSection>(ID, section)?;
        let options = own.encoder_options()?;
        let native = common.transport(ID, self.transports())? == crate::channel::Transport::Native;
        let smtp = match native {
            true => Some(own.smtp_settings(common.concurrency)?),
            false => None,
        };
        if cx.tracking_secret().is_none_or(|s| s.trim().len() < 16) {
            return Err(KeyError::new(
                "http.tracking_secret",
                "email needs it (16+ characters): it signs unsubscribe, tracking and bounce \
                 links. Set tracking_secret = \"${TAYORI_TRACKING_SECRET}\" and export \
                 TAYORI_TRACKING_SECRET=$(openssl rand -hex 32)",
            ));
        }
        let tracking = compose::Tracking {
            opens: own.track_opens,
            clicks: own.track_clicks,
            verp: own.verp_mailbox()?,
        };
        let message_id_domain = EmailEncoder::with_options(&options)
            .ok()
            .map(|e| e.message_id_domain().to_owned());
        let sendgrid = own.sendgrid.as_ref().map(|s| s.webhook()).transpose()?;
        let settings = EmailSettings {
            sendgrid,
            message_id_domain,
            domain_rates: own.domain_rates.clone().into_iter().collect(),
            sender_name: own.sender_name(),
            options,
            smtp,
            tracking,
        };
        Ok((common, Box::new(settings)))
    }
}

/// `[channels.email]`, checked.
pub struct EmailSettings {
    options: EmailOptions,
    /// The relay, when the transport is SMTP.
    smtp: Option<SmtpSettings>,
    tracking: compose::Tracking,
    domain_rates: Vec<(String, Rate)>,
    sender_name: Option<String>,
    /// The right-hand side of the Message-IDs we write (the From domain).
    message_id_domain: Option<String>,
    /// `[channels.email.sendgrid]`: the Event Webhook's key and age limit.
    sendgrid: Option<(tayori_channels::email::sendgrid::WebhookKey, std::time::Duration)>,
}

impl EmailSettings {
    /// The VERP mailbox (`bounces`, `example.com`), when VERP is on.
    pub fn verp_mailbox(&self) -> Option<(&str, &str)> {
        self.tracking
            .verp
            .as_ref()
            .map(|(l, d)| (l.as_str(), d.as_str()))
    }

    /// The domain of our Message-IDs (`<job id@domain>`).
    pub fn message_id_domain(&self) -> Option<&str> {
        self.message_id_domain.as_deref()
    }

    fn email_encoder(&self) -> Result<EmailEncoder, BuildError> {
        EmailEncoder::with_options(&self.options).map_err(|m| BuildError::new(ID, m))
    }
}

impl ChannelSettings for EmailSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn encoder(&self) -> Result<Box<dyn Encode>, BuildError> {
        Ok(Box::new(self.email_encoder()?))
    }

    fn native_sender(&self) -> Result<Arc<dyn Channel>, BuildError> {
        let smtp = self
            .smtp
            .as_ref()
            .ok_or_else(|| BuildError::new(ID, "no [channels.email.smtp] relay"))?;
        let channel =
            SmtpChannel::new(smtp, self.email_encoder()?).map_err(|m| BuildError::new(ID, m))?;
        Ok(Arc::new(channel))
    }

    fn compose(&self, job: &Job, cx: &Compose<'_>) -> Result<(Content, Records), RenderError> {
        compose::compose(job, cx, &self.tracking)
    }

    fn destination_rates(&self) -> &[(String, Rate)] {
        &self.domain_rates
    }

    fn template_warnings(&self, renderer: &Renderer, template: &str) -> Vec<String> {
        compose::compliance_warnings(renderer, template, self.sender_name.as_deref())
    }

    fn routes(&self, cx: &RouteContext) -> Vec<Arc<dyn Route>> {
        let mut routes: Vec<Arc<dyn Route>> = Vec::new();
        if let Some(tracker) = cx.tracker.clone() {
            routes.push(Arc::new(bounce::BounceWebhook {
                tracker,
                verp: self.tracking.verp.clone(),
                message_id_domain: self.message_id_domain.clone(),
            }));
        }
        if let Some((key, max_age)) = &self.sendgrid {
            routes.push(Arc::new(sendgrid_webhook::SendgridWebhook {
                key: key.clone(),
                max_age: *max_age,
            }));
        }
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_and_keyed_without_case() {
        assert_eq!(Email.mask("taro@example.com"), "t***@example.com");
        assert_eq!(Email.mask("x"), "***");
        assert_eq!(
            Email.suppression_key(" Taro@Example.COM "),
            "taro@example.com"
        );
    }
}
