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
    /// LINE notification messages (PNP, for accounts LINE approved): a
    /// transactional job with `to.phone` and no `to.line_user_id` goes to
    /// `POST /bot/pnp/push`. Default: false.
    #[serde(default)]
    pub pnp: bool,
    /// The region national numbers are read in for notification messages.
    /// Default: `channels.sms.default_region` when set, else "JP".
    pub pnp_default_region: Option<String>,
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

    /// With `pnp` on, the region notification messages read national numbers
    /// in: `pnp_default_region`, else the SMS channel's `default_region` (one
    /// customer list, one reading of its numbers), else "JP". Checked here, at
    /// start, against the phone-number metadata.
    pub fn pnp_region(&self, sms_section: Option<&toml::Table>) -> Result<Option<String>, KeyError> {
        if !self.pnp {
            return Ok(None);
        }
        let (region, key) = match (&self.pnp_default_region, sms_section) {
            (Some(r), _) => (r.clone(), "channels.line.pnp_default_region"),
            (None, Some(sms)) => match sms.get("default_region").and_then(|v| v.as_str()) {
                Some(r) => (r.to_owned(), "channels.sms.default_region"),
                None => ("JP".to_owned(), "channels.line.pnp_default_region"),
            },
            (None, None) => ("JP".to_owned(), "channels.line.pnp_default_region"),
        };
        tayori_channels::phone::check_region(&region).map_err(|_| {
            KeyError::new(
                key,
                format!(
                    "{region:?} is not a region with a numbering plan, and LINE notification \
                     messages (pnp = true) read national numbers in it: use a two-letter region \
                     code such as \"JP\""
                ),
            )
        })?;
        Ok(Some(region.trim().to_ascii_uppercase()))
    }

    /// The channel secret, when set (not blank).
    pub fn secret(&self) -> Option<String> {
        self.channel_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> LineSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_pnp_region_is_its_own_then_the_sms_channels_then_jp() {
        let sms: toml::Table = toml::from_str("default_region = \"us\"").unwrap();
        let empty_sms = toml::Table::new();
        assert_eq!(section("").pnp_region(Some(&sms)).unwrap(), None, "off");
        let on = section("pnp = true");
        assert_eq!(on.pnp_region(None).unwrap().as_deref(), Some("JP"));
        assert_eq!(on.pnp_region(Some(&empty_sms)).unwrap().as_deref(), Some("JP"));
        assert_eq!(on.pnp_region(Some(&sms)).unwrap().as_deref(), Some("US"));
        let own = section("pnp = true\npnp_default_region = \"GB\"");
        assert_eq!(own.pnp_region(Some(&sms)).unwrap().as_deref(), Some("GB"));
        let bad = section("pnp = true\npnp_default_region = \"XX\"");
        let err = bad.pnp_region(None).unwrap_err();
        assert_eq!(err.key, "channels.line.pnp_default_region");
        assert!(err.message.contains("\"JP\""), "{}", err.message);
        // Inherited and bad: the key named is the one to fix.
        let bad_sms: toml::Table = toml::from_str("default_region = \"XX\"").unwrap();
        assert_eq!(
            on.pnp_region(Some(&bad_sms)).unwrap_err().key,
            "channels.sms.default_region"
        );
    }
}
