//! `[channels.webhook]`: typed and checked once, at start.

use std::time::Duration;

use serde::Deserialize;
use tayori_channels::webhook::{endpoint_allowed, WebhookSecret, WebhookSettings};

use crate::config::KeyError;

/// The webhook channel's own keys (beside the common ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// The default endpoint, for jobs without `to.webhook_url`.
    pub url: Option<String>,
    /// The Standard Webhooks secret (`whsec_` + base64) the requests are signed with.
    pub secret: Option<String>,
    /// Default: "10s".
    #[serde(default, deserialize_with = "crate::units::duration::optional")]
    pub timeout: Option<Duration>,
    /// Accept `http://` endpoints on a loopback host (a sidecar, tests).
    #[serde(default)]
    pub allow_http: bool,
}

impl WebhookSection {
    /// The protocol's settings, when the channel posts (`native`); every key checked.
    pub fn settings(&self, native: bool) -> Result<Option<WebhookSettings>, KeyError> {
        if let Some(url) = &self.url {
            endpoint_allowed(url, self.allow_http)
                .map_err(|m| KeyError::new("channels.webhook.url", m))?;
        }
        if !native {
            return Ok(None);
        }
        let secret = self
            .secret
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                KeyError::new(
                    "channels.webhook.secret",
                    "required: the signing secret, secret = \"${TAYORI_WEBHOOK_SECRET}\" \
                     (whsec_ and base64 of 24 to 64 random bytes: \
                     echo whsec_$(openssl rand -base64 32))",
                )
            })?;
        let secret = WebhookSecret::parse(secret)
            .map_err(|e| KeyError::new("channels.webhook.secret", e.to_string()))?;
        Ok(Some(WebhookSettings {
            url: self.url.clone(),
            secret,
            timeout: self.timeout.unwrap_or(Duration::from_secs(10)),
            allow_http: self.allow_http,
        }))
    }
}
