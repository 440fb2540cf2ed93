//! The sending policy: frequency caps and quiet hours, checked by the worker
//! before a job is rendered and sent.
//!
//! - **Quiet hours** ([`quiet_hours`]): per channel, a daily window of the
//!   recipient's local time (`to.timezone`, else `policy.timezone`) in which
//!   nothing is sent. A job due inside it is deferred to the window's end — not
//!   sent, not dropped. Pure time arithmetic; check it first, since it needs no
//!   round trip and a deferred job must not use up a cap.
//! - **Frequency caps** ([`caps`]): at most `max` sends per customer per
//!   rolling window, per channel or across all channels, counted atomically in
//!   Redis so every daemon sees the same counts. A job over a cap is dropped
//!   (`suppressed`, reason `frequency_cap`) or deferred until a slot frees,
//!   per `policy.on_cap` or the job's own `cap`. What is exempt (transactional
//!   jobs, jobs without a `customer_id`) is the caller's decision; see
//!   [`Policy::check_and_count`].
//!
//! ```toml
//! [policy]
//! timezone = "Asia/Tokyo"        # recipients without to.timezone
//! on_cap = "defer"               # or "drop"
//! [policy.quiet_hours]           # per channel, local time; "" = none
//! sms = "21:00-08:00"            # the default for sms when absent
//! email = "22:00-07:00"
//! [[policy.caps]]
//! channel = "email"              # a channel, or "all" (every channel together)
//! max = 2
//! per = "1d"
//! ```

pub mod caps;
pub mod quiet_hours;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::channel_id::ChannelId;
use crate::units::KeyError;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

pub use caps::{Cap, CapScope, CapVerdict};
pub use quiet_hours::QuietHours;

/// The time zone of recipients without `to.timezone`, unless configured.
pub const DEFAULT_TIMEZONE: &str = "Asia/Tokyo";

/// `[policy]` as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// IANA time zone for recipients without `to.timezone`.
    pub timezone: String,
    /// What happens to a capped job that does not say (`"cap"` in the job).
    pub on_cap: OnCap,
    /// Channel name → `"HH:MM-HH:MM"` local time, `""` for none.
    pub quiet_hours: BTreeMap<String, String>,
    pub caps: Vec<CapConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            timezone: DEFAULT_TIMEZONE.into(),
            on_cap: OnCap::default(),
            quiet_hours: BTreeMap::new(),
            caps: Vec::new(),
        }
    }
}

/// One `[[policy.caps]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapConfig {
    /// A channel name, or `"all"` to count every channel together.
    pub channel: String,
    pub max: u32,
    /// The rolling window: `"1d"`, `"7d"`, `"12h"`.
    pub per: String,
}

/// What to do with a job over a frequency cap.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnCap {
    /// Schedule it for when the window has a free slot.
    #[default]
    Defer,
    /// Do not send it: a `suppressed` event with reason `frequency_cap`.
    Drop,
}

impl FromStr for OnCap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "defer" => Ok(Self::Defer),
            "drop" => Ok(Self::Drop),
            _ => Err(format!(
                "unknown cap action {s:?}: use \"defer\" or \"drop\""
            )),
        }
    }
}

impl fmt::Display for OnCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Defer => "defer",
            Self::Drop => "drop",
        })
    }
}

/// The checked policy the worker consults. Cheap to share (`Arc`) or clone.
#[derive(Debug, Clone)]
pub struct Policy {
    timezone: TimeZone,
    on_cap: OnCap,
    quiet: Vec<(ChannelId, QuietHours)>,
    caps: Vec<Cap>,
}

impl Policy {
    /// Checks the config against `channels`: each channel of this build and the
    /// quiet hours it has when the config sets none. Errors are `(key, what is
    /// wrong and the fix)`, the key as in the file, e.g. `policy.quiet_hours.sms`
    /// or `policy.caps[0].max`.
    pub fn from_config(
        c: &PolicyConfig,
        channels: &[(ChannelId, Option<&str>)],
    ) -> Result<Policy, KeyError> {
        Self::checked(c, channels).map_err(|(key, message)| KeyError { key, message })
    }

    fn checked(
        c: &PolicyConfig,
        channels: &[(ChannelId, Option<&str>)],
    ) -> Result<Policy, (String, String)> {
        let timezone =
            lookup_timezone(&c.timezone).map_err(|m| ("policy.timezone".to_owned(), m))?;
        let names: Vec<&str> = channels.iter().map(|(id, _)| id.as_str()).collect();
        for name in c.quiet_hours.keys() {
            if !names.contains(&name.as_str()) {
                return Err((
                    format!("policy.quiet_hours.{name}"),
                    format!("unknown channel {name:?} (known: {})", names.join(", ")),
                ));
            }
        }
        let mut quiet = Vec::new();
        for (kind, default) in channels.iter().copied() {
            let written = c.quiet_hours.get(kind.as_str()).map(String::as_str);
            let Some(window) = written.or(default) else {
                continue;
            };
            let key = format!("policy.quiet_hours.{kind}");
            if let Some(q) = QuietHours::parse(window).map_err(|m| (key, m))? {
                quiet.push((kind, q));
            }
        }

        let caps = c
            .caps
            .iter()
            .enumerate()
            .map(|(i, cap)| {
                Cap::from_config(cap, &names).map_err(|(f, m)| (format!("policy.caps[{i}].{f}"), m))
            })
            .collect::<Result<_, _>>()?;

        Ok(Policy {
            timezone,
            on_cap: c.on_cap,
            quiet,
            caps,
        })
    }

    /// The configured action for capped jobs; a job's own `"cap"` overrides it.
    pub fn on_cap(&self) -> OnCap {
        self.on_cap
    }

    /// The time zone of recipients without `to.timezone`.
    pub fn timezone(&self) -> &TimeZone {
        &self.timezone
    }

    /// The channel's quiet hours, if it has any.
    pub fn quiet_hours(&self, channel: ChannelId) -> Option<&QuietHours> {
        self.quiet
            .iter()
            .find_map(|(k, q)| (*k == channel).then_some(q))
    }

    /// `Ok(Some(t))` when `now` is inside the channel's quiet hours in the
    /// recipient's time zone: defer the job to `t`. `Ok(None)`: send now.
    ///
    /// `recipient_tz` is the job's `to.timezone` (absent or blank: the
    /// configured default). An unknown zone is an error — the job's input is
    /// invalid (field `to.timezone`) — even for a channel without quiet hours,
    /// so a job fails or passes the same way on every channel.
    pub fn quiet_until(
        &self,
        channel: ChannelId,
        recipient_tz: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, String> {
        let tz = match recipient_tz.map(str::trim).filter(|s| !s.is_empty()) {
            Some(name) => lookup_timezone(name)?,
            None => self.timezone.clone(),
        };
        Ok(self
            .quiet_hours(channel)
            .and_then(|q| q.next_allowed(now, &tz)))
    }
}

/// An IANA time zone by name. jiff caches zones it has loaded (and re-reads
/// a changed zoneinfo file after a few minutes), so this is cheap per job.
fn lookup_timezone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| {
        format!(
            "unknown time zone {name:?}: use an IANA name such as \"Asia/Tokyo\", \
             \"America/Los_Angeles\" or \"UTC\""
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: ChannelId = ChannelId::new("email");
    const LINE: ChannelId = ChannelId::new("line");
    const SMS: ChannelId = ChannelId::new("sms");
    const DM: ChannelId = ChannelId::new("dm");
    const ALL: [ChannelId; 4] = [EMAIL, LINE, SMS, DM];
    /// The channels as the registry gives them (SMS quiet at night by default).
    const CHANNELS: &[(ChannelId, Option<&str>)] = &[
        (EMAIL, None),
        (LINE, None),
        (SMS, Some("21:00-08:00")),
        (DM, None),
    ];

    impl Default for Policy {
        fn default() -> Self {
            Policy::from_config(&PolicyConfig::default(), CHANNELS).unwrap()
        }
    }

    fn config(toml_text: &str) -> PolicyConfig {
        #[derive(Deserialize)]
        struct Root {
            #[serde(default)]
            policy: PolicyConfig,
        }
        toml::from_str::<Root>(toml_text).unwrap().policy
    }

    fn err(toml_text: &str) -> (String, String) {
        let e = Policy::from_config(&config(toml_text), CHANNELS).unwrap_err();
        (e.key, e.message)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn defaults() {
        let p = Policy::from_config(&config(""), CHANNELS).unwrap();
        assert_eq!(p.on_cap(), OnCap::Defer);
        assert_eq!(p.timezone().iana_name(), Some("Asia/Tokyo"));
        assert_eq!(p.quiet_hours(SMS).unwrap().to_string(), "21:00-08:00");
        for k in [EMAIL, LINE, DM] {
            assert_eq!(p.quiet_hours(k), None);
            assert!(!p.has_caps(k));
        }
        assert!(!p.has_caps(SMS));
    }

    #[test]
    fn full_config() {
        let p = Policy::from_config(
            &config(
                r#"
            [policy]
            timezone = "UTC"
            on_cap = "drop"
            [policy.quiet_hours]
            sms = ""
            email = "22:00-07:00"
            [[policy.caps]]
            channel = "email"
            max = 2
            per = "1d"
            [[policy.caps]]
            channel = "all"
            max = 3
            per = "1d"
            [[policy.caps]]
            channel = "line"
            max = 4
            per = "7d"
            "#,
            ),
            CHANNELS,
        )
        .unwrap();
        assert_eq!(p.on_cap(), OnCap::Drop);
        assert_eq!(p.timezone().iana_name(), Some("UTC"));
        assert_eq!(p.quiet_hours(SMS), None, "\"\" turns the default off");
        assert_eq!(p.quiet_hours(EMAIL).unwrap().to_string(), "22:00-07:00");
        // "all" applies to every channel.
        for k in ALL {
            assert!(p.has_caps(k));
        }
        let labels: Vec<String> = p.caps_for(EMAIL).map(|c| c.to_string()).collect();
        assert_eq!(labels, ["email 2/1d", "all 3/1d"]);
        let labels: Vec<String> = p.caps_for(SMS).map(|c| c.to_string()).collect();
        assert_eq!(labels, ["all 3/1d"]);
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let (k, m) = err("[policy]\ntimezone = \"Asia/Tokio\"");
        assert_eq!(k, "policy.timezone");
        assert!(m.contains("Asia/Tokio") && m.contains("IANA"), "{m}");

        let (k, m) = err("[policy.quiet_hours]\nsms = \"21-8\"");
        assert_eq!(k, "policy.quiet_hours.sms");
        assert!(m.contains("HH:MM-HH:MM"), "{m}");

        let (k, m) = err("[policy.quiet_hours]\nemail = \"09:00-09:00\"");
        assert_eq!(k, "policy.quiet_hours.email");
        assert!(m.contains("same time"), "{m}");

        let (k, m) = err("[policy.quiet_hours]\nfax = \"21:00-08:00\"");
        assert_eq!(k, "policy.quiet_hours.fax");
        assert!(m.contains("email, line, sms, dm"), "{m}");

        let cap = |body: &str| err(&format!("[[policy.caps]]\n{body}"));
        let (k, m) = cap("channel = \"email\"\nmax = 0\nper = \"1d\"");
        assert_eq!(k, "policy.caps[0].max");
        assert!(m.contains("at least 1"), "{m}");

        let (k, m) = cap("channel = \"fax\"\nmax = 1\nper = \"1d\"");
        assert_eq!(k, "policy.caps[0].channel");
        assert!(m.contains("\"all\""), "{m}");

        let (k, m) = cap("channel = \"email\"\nmax = 1\nper = \"1 day\"");
        assert_eq!(k, "policy.caps[0].per");
        assert!(m.contains("\"7d\""), "{m}");

        let (k, m) = cap("channel = \"email\"\nmax = 1\nper = \"0s\"");
        assert_eq!(k, "policy.caps[0].per");
        assert!(m.contains("at least"), "{m}");

        let (k, _) = err(
            "[[policy.caps]]\nchannel = \"all\"\nmax = 1\nper = \"1d\"\n\
             [[policy.caps]]\nchannel = \"sms\"\nmax = 0\nper = \"1d\"",
        );
        assert_eq!(k, "policy.caps[1].max");
    }

    #[test]
    fn unknown_fields_and_actions_are_refused() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Root {
            policy: PolicyConfig,
        }
        let e = toml::from_str::<Root>("[policy]\ntimezones = \"UTC\"").unwrap_err();
        assert!(e.to_string().contains("timezones"), "{e}");
        let e = toml::from_str::<Root>("[policy]\non_cap = \"later\"").unwrap_err();
        assert!(e.to_string().contains("defer"), "{e}");
        assert_eq!("drop".parse::<OnCap>(), Ok(OnCap::Drop));
        assert!("later".parse::<OnCap>().unwrap_err().contains("\"defer\""));
    }

    #[test]
    fn quiet_until_uses_the_recipients_zone() {
        let p = Policy::default();
        // 13:30Z: 22:30 in Tokyo (SMS quiet), 05:30 in Los Angeles (quiet),
        // 13:30 in London (not).
        let now = ts("2026-11-23T13:30:00Z");
        assert_eq!(
            p.quiet_until(SMS, None, now),
            Ok(Some(ts("2026-11-23T23:00:00Z")))
        );
        assert_eq!(
            p.quiet_until(SMS, Some(" "), now),
            Ok(Some(ts("2026-11-23T23:00:00Z"))),
            "blank is the default"
        );
        assert_eq!(
            p.quiet_until(SMS, Some("America/Los_Angeles"), now),
            Ok(Some(ts("2026-11-23T16:00:00Z")))
        );
        assert_eq!(p.quiet_until(SMS, Some("Europe/London"), now), Ok(None));
        // No quiet hours on email by default.
        assert_eq!(p.quiet_until(EMAIL, None, now), Ok(None));
    }

    #[test]
    fn quiet_until_refuses_an_unknown_zone_on_every_channel() {
        let p = Policy::default();
        let now = ts("2026-11-23T03:00:00Z");
        for k in ALL {
            let e = p.quiet_until(k, Some("Mars/Olympus"), now).unwrap_err();
            assert!(e.contains("\"Mars/Olympus\"") && e.contains("IANA"), "{e}");
        }
    }
}
