//! `[channels.sms]`: the provider and its keys, typed and checked.

use serde::Deserialize;
use tayori_channels::sms::http_gateway::HttpGatewaySettings;
use tayori_channels::sms::twilio::TwilioSettings;
use tayori_channels::sms::vonage::{self, VonageSettings};
use tayori_channels::sms::{phone, SmsLimits};

pub use tayori_channels::sms::signatures::{SignatureMethod, VonageSignature};

use crate::config::KeyError;
use crate::units::duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSection {
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
    /// Links in the text become short tracked links (`{public_url}/s/{code}`)
    /// when `http.tracking_secret` is set. Default: true.
    pub track_clicks: Option<bool>,
    /// How long a short link keeps working. Default: "30d" (`DEFAULT_LINK_TTL` says why).
    pub link_ttl: Option<String>,
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

impl SmsSection {
    /// The checks serde cannot make.
    pub fn check(&self) -> Result<(), KeyError> {
        if let Some(ttl) = &self.link_ttl {
            duration::parse(ttl).map_err(|e| KeyError::new("channels.sms.link_ttl", e))?;
        }
        if self.max_segments == 0 {
            return Err(KeyError::new(
                "channels.sms.max_segments",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Checks `default_region` against the phone-number metadata, at start (every
    /// transport normalizes numbers, `file` and `null` included).
    pub fn check_region(&self) -> Result<(), KeyError> {
        phone::check_region(&self.default_region)
            .map_err(|e| KeyError::new("channels.sms.default_region", e.to_string()))
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
        let v = self.vonage.as_ref().ok_or_else(|| {
            KeyError::new(
                "channels.sms.vonage",
                "provider = \"vonage\" needs [channels.sms.vonage] with api_key, api_secret and from",
            )
        })?;
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
                .map_err(|e| KeyError::new("channels.sms.vonage.signature_method", e))?,
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
        let h = self.http.as_ref().ok_or_else(|| {
            KeyError::new(
                "channels.sms.http",
                "provider = \"http\" needs [channels.sms.http] with url and body",
            )
        })?;
        let method = h
            .method
            .as_deref()
            .unwrap_or("POST")
            .parse()
            .map_err(|_| KeyError::new(key("method"), "use \"POST\" or \"PUT\""))?;
        let content_type = h
            .content_type
            .as_deref()
            .unwrap_or("json")
            .parse()
            .map_err(|_| KeyError::new(key("content_type"), "use \"json\" or \"form\""))?;
        let body =
            serde_json::to_value(&h.body).map_err(|e| KeyError::new(key("body"), e.to_string()))?;
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
        let t = self.twilio.as_ref().ok_or_else(|| {
            KeyError::new(
                "channels.sms.twilio",
                "provider = \"twilio\" needs [channels.sms.twilio] with account_sid, auth_token and from",
            )
        })?;
        let sid_ok = t.account_sid.len() == 34
            && t.account_sid.starts_with("AC")
            && t.account_sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !sid_ok {
            return Err(KeyError::new(
                key("account_sid"),
                "an Account SID is AC followed by 32 hex digits (the Twilio console shows it)",
            ));
        }
        if t.from.is_none() == t.messaging_service_sid.is_none() {
            return Err(KeyError::new(
                key("from"),
                "set exactly one of from (a number) and messaging_service_sid",
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
        Some(v) => duration::parse(v).map_err(|m| KeyError::new(key, m)),
        None => Ok(std::time::Duration::from_secs(10)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(vonage: &str) -> SmsSection {
        let text = format!(
            "provider = \"vonage\"\n[vonage]\napi_key = \"k\"\napi_secret = \"s\"\nfrom = \"Tayori\"\n{vonage}"
        );
        toml::from_str(&text).expect("sms settings")
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
        let KeyError { key, message } = s.vonage("https://t.example").err().expect("refused");
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
