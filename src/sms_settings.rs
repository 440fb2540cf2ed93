//! `[channels.sms]`: the provider and its keys, typed and checked.

use serde::Deserialize;
use tayori_channels::sms::twilio::TwilioSettings;
use tayori_channels::sms::{phone, SmsLimits};

use crate::config::{duration, ChannelConfig};
use crate::email_settings::KeyError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// `twilio` (more providers come with their own sections).
    pub provider: Option<String>,
    /// Region for national numbers. Default: "JP".
    #[serde(default = "jp")]
    pub default_region: String,
    /// Longer messages fail before sending. Default: 10.
    #[serde(default = "ten")]
    pub max_segments: u32,
    pub twilio: Option<TwilioSection>,
    /// Common to all channels; read by `ChannelConfig::pause`.
    pub pause: Option<String>,
}

fn jp() -> String {
    "JP".into()
}
fn ten() -> u32 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSection {
    /// Default: "https://api.twilio.com".
    pub api_base: Option<String>,
    pub account_sid: String,
    pub auth_token: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// Ask Twilio for delivery reports at `{http.public_url}/webhooks/twilio`. Default: true.
    #[serde(default = "yes")]
    pub status_callback: bool,
    /// Default: "10s".
    pub timeout: Option<String>,
}

fn yes() -> bool {
    true
}

impl SmsSettings {
    pub fn from_channel(ch: &ChannelConfig) -> Result<SmsSettings, KeyError> {
        let table: toml::Table = ch
            .provider
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let s: SmsSettings = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| (format!("channels.sms.{}", e.path()), e.inner().to_string()))?;
        phone::check_region(&s.default_region)
            .map_err(|e| ("channels.sms.default_region".to_owned(), e.to_string()))?;
        if s.max_segments == 0 {
            return Err((
                "channels.sms.max_segments".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(s)
    }

    pub fn limits(&self) -> SmsLimits {
        SmsLimits {
            default_region: self.default_region.clone(),
            max_segments: self.max_segments,
        }
    }

    /// Twilio's settings; `public_url` is the base of the status callback.
    pub fn twilio(&self, public_url: &str) -> Result<TwilioSettings, KeyError> {
        let key = |k: &str| format!("channels.sms.twilio.{k}");
        let t = self.twilio.as_ref().ok_or((
            "channels.sms.twilio".to_owned(),
            "provider = \"twilio\" needs [channels.sms.twilio] with account_sid, auth_token and from"
                .to_owned(),
        ))?;
        let sid_ok = t.account_sid.len() == 34
            && t.account_sid.starts_with("AC")
            && t.account_sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !sid_ok {
            return Err((
                key("account_sid"),
                "an Account SID is AC followed by 32 hex digits (the Twilio console shows it)"
                    .into(),
            ));
        }
        if t.from.is_none() == t.messaging_service_sid.is_none() {
            return Err((
                key("from"),
                "set exactly one of from (a number) and messaging_service_sid".into(),
            ));
        }
        let timeout = match &t.timeout {
            Some(v) => duration::parse(v).map_err(|m| (key("timeout"), m))?,
            None => std::time::Duration::from_secs(10),
        };
        Ok(TwilioSettings {
            api_base: t
                .api_base
                .clone()
                .unwrap_or_else(|| "https://api.twilio.com".into()),
            account_sid: t.account_sid.clone(),
            auth_token: t.auth_token.trim().to_owned(),
            from: t.from.clone(),
            messaging_service_sid: t.messaging_service_sid.clone(),
            status_callback: t
                .status_callback
                .then(|| format!("{}/webhooks/twilio", public_url.trim_end_matches('/'))),
            timeout,
        })
    }
}
