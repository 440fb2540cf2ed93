//! `[channels.line]`: typed and checked once, at start.

use std::time::Duration;

use serde::Deserialize;

use crate::config::KeyError;

/// The LINE channel's own keys (beside the common ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSection {
    /// Default: "https://api.line.me".
    pub api_base: Option<String>,
    /// The Messaging API's long-lived channel access token.
    pub channel_access_token: Option<String>,
    /// Verifies `x-line-signature` on `/webhooks/line`; without it the route answers 404.
    pub channel_secret: Option<String>,
    /// Default: "10s".
    #[serde(default, deserialize_with = "crate::units::duration::optional")]
    pub timeout: Option<Duration>,
    /// Send the campaign as `customAggregationUnits` (approved accounts only).
    #[serde(default)]
    pub custom_aggregation_units: bool,
    /// Route `uri` actions and the links in text messages through the click
    /// tracker. Default: true.
    #[serde(default = "yes")]
    pub track_clicks: bool,
    /// How long a short link in a text message keeps working. Default: "30d".
    #[serde(default, deserialize_with = "crate::units::duration::optional")]
    pub link_ttl: Option<Duration>,
    /// What a used-up monthly quota does to a job with a fallback channel:
    /// `"fallback"` (default) moves it on; `"pause"` keeps it waiting like the others.
    #[serde(default)]
    pub on_quota: OnQuota,
    /// How often the quota and its consumption are read. Default: "5m".
    #[serde(default, deserialize_with = "crate::units::duration::optional")]
    pub quota_poll: Option<Duration>,
    /// How often LINE's per-unit statistics are fetched (with
    /// `custom_aggregation_units`). Default: "1h".
    #[serde(default, deserialize_with = "crate::units::duration::optional")]
    pub stats_poll: Option<Duration>,
    /// For how many days after a day's sends its statistics are fetched again. Default: 14.
    #[serde(default)]
    pub stats_days: Option<u32>,
}

/// `on_quota`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnQuota {
    #[default]
    Fallback,
    Pause,
}

fn yes() -> bool {
    true
}

impl LineSection {
    /// The token, required for the Messaging API transport.
    pub fn token(&self) -> Result<String, KeyError> {
        self.channel_access_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                KeyError::new(
                    "channels.line.channel_access_token",
                    "required for the Messaging API: channel_access_token = \"${LINE_CHANNEL_ACCESS_TOKEN}\"",
                )
            })
    }

    /// The channel secret, when set (not blank).
    pub fn secret(&self) -> Option<String> {
        self.channel_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}
