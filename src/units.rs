//! Values a config writes as text — durations (`30s`, `7d`) and rates (`100/s`) —
//! and the error for one key ([`KeyError`]).
//! Imports nothing of Tayori, so every layer can use it.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

/// Whom a channel's rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateScope {
    /// All daemons together, through Redis: what a provider counts per account.
    #[default]
    Global,
    /// Each process on its own.
    Daemon,
}

/// A rate such as `100/s`, `6000/min` or `1000/h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    pub fn quota(&self, burst: Option<NonZeroU32>) -> governor::Quota {
        let period = self.per / self.count.get();
        let period = period.max(Duration::from_nanos(1));
        governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_second(self.count))
            .allow_burst(burst.unwrap_or_else(|| self.default_burst()))
    }
}

impl Rate {
    /// 100 ms worth of sends (at least 1): smooth enough that a provider counting per
    /// second never sees a spike, and above the 1 ms timer granularity that makes a
    /// burst of 1 lose slots at high rates (measured: 1,640/s for 2,000/s).
    pub fn default_burst(&self) -> NonZeroU32 {
        let per_100ms = u128::from(self.count.get()) * 100 / self.per.as_millis().max(1);
        NonZeroU32::new(u32::try_from(per_100ms).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = || {
            format!(
                "invalid rate {s:?}: write COUNT/UNIT, e.g. \"100/s\", \"6000/min\", \"1000/h\""
            )
        };
        let (count, unit) = s.split_once('/').ok_or_else(hint)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| hint())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86400),
            _ => return Err(hint()),
        };
        Ok(Rate { count, per })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Durations written as `30s`, `10m`, `7d`, `1h 30m` (jiff's friendly format).
pub mod duration {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn parse(s: &str) -> Result<Duration, String> {
        // jiff's durations stop at hours (days vary in calendars); a queue's day is 24 h.
        if let Some(days) = s
            .trim()
            .strip_suffix('d')
            .and_then(|n| n.trim().parse::<u64>().ok())
        {
            return Ok(Duration::from_secs(days * 86_400));
        }
        let d: jiff::SignedDuration = s.parse().map_err(|_| {
            format!(
                "invalid duration {s:?}: write e.g. \"500ms\", \"30s\", \"10m\", \"24h\", \"7d\""
            )
        })?;
        Duration::try_from(d).map_err(|_| format!("invalid duration {s:?}: must not be negative"))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// For an optional key: `#[serde(default, deserialize_with = "duration::optional")]`.
    pub fn optional<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        deserialize(d).map(Some)
    }
}

/// A problem with one key: the key as written in the file
/// (`channels.email.smtp.port`) and what is wrong with it, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct KeyError {
    pub key: String,
    pub message: String,
}

impl KeyError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> KeyError {
        KeyError {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations() {
        let r: Rate = "6000/min".parse().unwrap();
        assert_eq!(r.count.get(), 6000);
        assert_eq!(r.per, Duration::from_secs(60));
        assert!("fast".parse::<Rate>().is_err());
        assert_eq!("2000/s".parse::<Rate>().unwrap().default_burst().get(), 200);
        assert_eq!("10/s".parse::<Rate>().unwrap().default_burst().get(), 1);
        assert_eq!(
            "6000/min".parse::<Rate>().unwrap().default_burst().get(),
            10
        );
        assert_eq!(duration::parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(
            duration::parse("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            duration::parse("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(duration::parse("soon").is_err());
    }
}
