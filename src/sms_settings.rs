//! `[channels.sms]`: the provider and its keys, typed and checked.

use serde::Deserialize;
use tayori_channels::sms::http_gateway::HttpGatewaySettings;
use tayori_channels::sms::twilio::TwilioSettings;
use tayori_channels::sms::vonage::{self, VonageSettings};
use tayori_channels::sms::{phone, SmsLimits};

use crate::config::{duration, ChannelConfig};
use crate::email_settings::KeyError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// `twilio`, `vonage` or `http` (a gateway described in `[channels.sms.http]`).
    pub provider: Option<String>,
    /// Region for national numbers. Default: "JP".
    #[serde(default = "jp")]
    pub default_region: String,
    /// Longer messages fail before sending. Default: 10.
    #[serde(default = "ten")]
    pub max_segments: u32,
    pub twilio: Option<TwilioSection>,
    pub vonage: Option<VonageSection>,
    pub http: Option<HttpSection>,
    /// Common to all channels; read by `ChannelConfig::pause`.
    pub pause: Option<String>,
    /// Links in the text become short tracked links (`{public_url}/s/{code}`)
    /// when `http.tracking_secret` is set. Default: true.
    pub track_clicks: Option<bool>,
    /// How long a short link keeps working. Default: "90d".
    pub link_ttl: Option<String>,
}

/// How long a short link in an SMS keeps working when `link_ttl` is not set.
pub const DEFAULT_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageSection {
    /// Default: "https://rest.nexmo.com".
    pub api_base: Option<String>,
    pub api_key: String,
    pub api_secret: String,
    pub from: String,
    /// Delivery-receipt URL, e.g. `{http.public_url}/webhooks/vonage`. Default: none
    /// (Vonage then uses the account's delivery-receipt webhook from the dashboard).
    pub callback: Option<String>,
    /// Default: "10s".
    pub timeout: Option<String>,
    /// The account's signature secret (dashboard, API settings), once Vonage support
    /// has turned on signed webhooks. Without it `/webhooks/vonage` answers 404: an
    /// unsigned receipt or reply is never trusted.
    pub signature_secret: Option<String>,
    /// The dashboard's signature method: `md5hash`, `md5`, `sha1`, `sha256` or `sha512`
    /// (the last four are HMACs). Default: "md5hash", Vonage's own default; prefer
    /// `sha256` and set the same in the dashboard.
    pub signature_method: Option<String>,
}

/// How Vonage signs its SMS webhooks (the dashboard's "signature method").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    /// `md5hash`: hex(MD5(signed string + secret)), Vonage's default.
    Md5Hash,
    /// `md5`: hex(HMAC-MD5(secret, signed string)).
    HmacMd5,
    /// `sha1`: hex(HMAC-SHA1(secret, signed string)).
    HmacSha1,
    /// `sha256`: hex(HMAC-SHA256(secret, signed string)).
    HmacSha256,
    /// `sha512`: hex(HMAC-SHA512(secret, signed string)).
    HmacSha512,
}

impl std::str::FromStr for SignatureMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "md5hash" => SignatureMethod::Md5Hash,
            "md5" => SignatureMethod::HmacMd5,
            "sha1" => SignatureMethod::HmacSha1,
            "sha256" => SignatureMethod::HmacSha256,
            "sha512" => SignatureMethod::HmacSha512,
            other => {
                return Err(format!(
                    "{other:?} is not a Vonage signature method: use \"md5hash\", \"md5\", \"sha1\", \"sha256\" or \"sha512\" (as chosen in the dashboard)"
                ))
            }
        })
    }
}

/// What `/webhooks/vonage` checks signatures with.
#[derive(Clone)]
pub struct VonageSignature {
    pub secret: String,
    pub method: SignatureMethod,
}

impl std::fmt::Debug for VonageSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageSignature")
            .field("secret", &"…")
            .field("method", &self.method)
            .finish()
    }
}

/// The key to Vonage's webhook signatures, when SMS goes through Vonage and a
/// signature secret is set (`[channels.sms]` is checked at start; an unusable one
/// gives none here).
pub fn vonage_signature_of(sms: Option<&ChannelConfig>) -> Option<VonageSignature> {
    let settings = SmsSettings::from_channel(sms?).ok()?;
    if settings.provider.as_deref() != Some("vonage") {
        return None;
    }
    settings.vonage_signature().ok().flatten()
}

/// A gateway described by config (URL, headers, a body template, how to read the answer).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub url: String,
    /// `POST` (default) or `PUT`.
    pub method: Option<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// `json` (default) or `form`.
    pub content_type: Option<String>,
    /// The body; string values may hold {{to}}, {{to_national}}, {{text}}, {{job_id}}, {{segments}}.
    pub body: toml::Value,
    /// Statuses that mean accepted. Default: [200, 201, 202].
    #[serde(default)]
    pub success_status: Vec<u16>,
    /// JSON pointer to the message id in the answer, e.g. "/id".
    pub id_pointer: Option<String>,
    /// JSON pointer to an error text in the answer.
    pub error_pointer: Option<String>,
    /// Default: "10s".
    pub timeout: Option<String>,
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
        if let Some(ttl) = &s.link_ttl {
            duration::parse(ttl).map_err(|e| ("channels.sms.link_ttl".to_owned(), e))?;
        }
        if s.max_segments == 0 {
            return Err((
                "channels.sms.max_segments".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(s)
    }

    /// Checks `default_region` against the phone-number metadata (loading it takes a
    /// moment, so only providers that normalize numbers call this, at start).
    pub fn check_region(&self) -> Result<(), KeyError> {
        phone::check_region(&self.default_region)
            .map_err(|e| ("channels.sms.default_region".to_owned(), e.to_string()))
    }

    pub fn limits(&self) -> SmsLimits {
        SmsLimits {
            default_region: self.default_region.clone(),
            max_segments: self.max_segments,
        }
    }

    /// `public_url` is where receipts are asked for when `callback` is not set and
    /// receipts can be verified (a `signature_secret` is configured).
    pub fn vonage(&self, public_url: &str) -> Result<VonageSettings, KeyError> {
        let v = self.vonage.as_ref().ok_or((
            "channels.sms.vonage".to_owned(),
            "provider = \"vonage\" needs [channels.sms.vonage] with api_key, api_secret and from"
                .to_owned(),
        ))?;
        let signed = self.vonage_signature()?.is_some();
        let callback = v.callback.clone().or_else(|| {
            signed.then(|| format!("{}/webhooks/vonage", public_url.trim_end_matches('/')))
        });
        Ok(VonageSettings {
            api_base: v
                .api_base
                .clone()
                .unwrap_or_else(|| vonage::DEFAULT_API_BASE.into()),
            api_key: v.api_key.trim().to_owned(),
            api_secret: v.api_secret.trim().to_owned(),
            from: v.from.clone(),
            callback,
            timeout: timeout(v.timeout.as_deref(), "channels.sms.vonage.timeout")?,
        })
    }

    /// `signature_secret` and `signature_method` of `[channels.sms.vonage]`: none
    /// without a (non-empty) secret; an unknown method is an error even then.
    pub fn vonage_signature(&self) -> Result<Option<VonageSignature>, KeyError> {
        let Some(v) = self.vonage.as_ref() else {
            return Ok(None);
        };
        let method = match v.signature_method.as_deref() {
            Some(m) => m
                .parse()
                .map_err(|e| ("channels.sms.vonage.signature_method".to_owned(), e))?,
            None => SignatureMethod::Md5Hash,
        };
        Ok(v.signature_secret
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|secret| VonageSignature {
                secret: secret.to_owned(),
                method,
            }))
    }

    pub fn http_gateway(&self) -> Result<HttpGatewaySettings, KeyError> {
        let key = |k: &str| format!("channels.sms.http.{k}");
        let h = self.http.as_ref().ok_or((
            "channels.sms.http".to_owned(),
            "provider = \"http\" needs [channels.sms.http] with url and body".to_owned(),
        ))?;
        let method = h
            .method
            .as_deref()
            .unwrap_or("POST")
            .parse()
            .map_err(|_| (key("method"), "use \"POST\" or \"PUT\"".to_owned()))?;
        let content_type = h
            .content_type
            .as_deref()
            .unwrap_or("json")
            .parse()
            .map_err(|_| (key("content_type"), "use \"json\" or \"form\"".to_owned()))?;
        let body = serde_json::to_value(&h.body).map_err(|e| (key("body"), e.to_string()))?;
        Ok(HttpGatewaySettings {
            url: h.url.clone(),
            method,
            headers: h
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            content_type,
            body,
            success_status: h.success_status.clone(),
            id_pointer: h.id_pointer.clone(),
            error_pointer: h.error_pointer.clone(),
            timeout: timeout(h.timeout.as_deref(), &key("timeout"))?,
        })
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
        let timeout = timeout(t.timeout.as_deref(), &key("timeout"))?;
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

fn timeout(value: Option<&str>, key: &str) -> Result<std::time::Duration, KeyError> {
    match value {
        Some(v) => duration::parse(v).map_err(|m| (key.to_owned(), m)),
        None => Ok(std::time::Duration::from_secs(10)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(vonage: &str) -> SmsSettings {
        let text = format!(
            "provider = \"vonage\"\n[vonage]\napi_key = \"k\"\napi_secret = \"s\"\nfrom = \"Tayori\"\n{vonage}"
        );
        let ch: ChannelConfig = toml::from_str(&text).expect("a channel section");
        SmsSettings::from_channel(&ch).expect("sms settings")
    }

    #[test]
    fn the_signature_secret_enables_the_webhook_with_md5hash_by_default() {
        assert!(sms("").vonage_signature().unwrap().is_none());
        assert!(sms("signature_secret = \" \"")
            .vonage_signature()
            .unwrap()
            .is_none());
        let key = sms("signature_secret = \" s3cret \"")
            .vonage_signature()
            .unwrap()
            .unwrap();
        assert_eq!(key.secret, "s3cret");
        assert_eq!(key.method, SignatureMethod::Md5Hash);
        assert!(!format!("{key:?}").contains("s3cret"));
        for (name, method) in [
            ("md5hash", SignatureMethod::Md5Hash),
            ("md5", SignatureMethod::HmacMd5),
            ("sha1", SignatureMethod::HmacSha1),
            ("sha256", SignatureMethod::HmacSha256),
            ("SHA512", SignatureMethod::HmacSha512),
        ] {
            let s = sms(&format!(
                "signature_secret = \"x\"\nsignature_method = \"{name}\""
            ));
            assert_eq!(s.vonage_signature().unwrap().unwrap().method, method);
        }
    }

    #[test]
    fn an_unknown_signature_method_is_a_config_error() {
        let s = sms("signature_secret = \"x\"\nsignature_method = \"sha384\"");
        let (key, message) = s.vonage("https://t.example").err().expect("refused");
        assert_eq!(key, "channels.sms.vonage.signature_method");
        assert!(message.contains("sha256"), "{message}");
        // Also without a secret: the typo would bite once the secret is added.
        let s = sms("signature_method = \"hmac\"");
        assert!(s.vonage_signature().is_err());
        assert!(sms("signature_method = \"sha256\"")
            .vonage("https://t.example")
            .is_ok());
    }
}
