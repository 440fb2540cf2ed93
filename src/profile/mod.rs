//! Engagement profiles: what each customer reacts to, on which channel and at
//! which hour of the week, learned from the events Tayori records.
//!
//! A profile is one Redis hash, `Keys::profile` (`P:{k}:profile:<customer_id>`):
//!
//! | field          | weight of                                             |
//! |----------------|-------------------------------------------------------|
//! | `s:{channel}`  | messages sent on the channel                          |
//! | `r:{channel}`  | reactions on it: opened, clicked, replied, delivered… |
//! | `x:{channel}`  | refusals: bounced, blocked, unsubscribed              |
//! | `h:{0..167}`   | reactions by hour of the week (UTC; Monday 00:00 = 0) |
//! | `t`            | the last update (ms)                                  |
//!
//! Old habits fade with forward decay: an event at time `t` adds
//! `2^((t − EPOCH) / half_life)` instead of 1. Every weight is then in the same
//! unit, so comparing channels or hours needs no rewriting of old fields, and an
//! update stays O(1) (one `HINCRBYFLOAT` per field). To read a weight as "events,
//! decayed to now", multiply by `2^(−(now − EPOCH) / half_life)`.
//!
//! Hours are kept in UTC and turned into the customer's local hours when read,
//! with the time zone of the job being scheduled (or the configured one).

pub mod choose;
pub mod updater;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::channel_id::ChannelId;

/// The start of forward decay (2026-01-01T00:00:00Z, ms). Weights grow by 2 each
/// half-life after it; doubles hold that for centuries at a 30-day half-life.
pub const EPOCH_MS: i64 = 1_767_225_600_000;

/// Hours in a week.
pub const HOURS: usize = 168;

/// What kind of signal an event is for a profile, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Sent,
    Reaction,
    Refusal,
}

impl Signal {
    pub fn of(event_type: &str) -> Option<Signal> {
        Some(match event_type {
            "sent" => Signal::Sent,
            "opened" | "clicked" | "replied" | "delivered" => Signal::Reaction,
            "bounced" | "blocked" | "unsubscribed" | "complained" => Signal::Refusal,
            _ => return None,
        })
    }
}

/// How much an event at `at_ms` weighs, in the profile's growing unit.
pub fn weight(at_ms: i64, half_life: Duration) -> f64 {
    let half_life_ms = half_life.as_millis().max(1) as f64;
    ((at_ms - EPOCH_MS) as f64 / half_life_ms).exp2()
}

/// Hour of the week (Monday 00:00 UTC = 0) of an instant.
pub fn hour_of_week(at_ms: i64) -> usize {
    // 1970-01-01 was a Thursday: +3 days makes Monday the week's start.
    let hours = at_ms.div_euclid(3_600_000) + 3 * 24;
    hours.rem_euclid(HOURS as i64) as usize
}

/// A profile read back, decayed to `now`: counts in "recent events".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub sent: BTreeMap<ChannelId, f64>,
    pub reactions: BTreeMap<ChannelId, f64>,
    pub refusals: BTreeMap<ChannelId, f64>,
    /// Reactions by UTC hour of the week.
    pub hours: Vec<f64>,
    pub updated_ms: Option<i64>,
}

impl Profile {
    /// From the hash's fields, decayed to `now_ms`.
    pub fn from_fields(
        fields: &BTreeMap<String, String>,
        now_ms: i64,
        half_life: Duration,
    ) -> Profile {
        let scale = 1.0 / weight(now_ms, half_life);
        let mut p = Profile {
            hours: vec![0.0; HOURS],
            ..Profile::default()
        };
        for (name, value) in fields {
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if name == "t" {
                p.updated_ms = Some(v as i64);
                continue;
            }
            let Some((kind, rest)) = name.split_once(':') else {
                continue;
            };
            if kind == "h" {
                if let Some(slot) = rest.parse::<usize>().ok().and_then(|h| p.hours.get_mut(h)) {
                    *slot = v * scale;
                }
                continue;
            }
            let Ok(channel) = rest.parse::<ChannelId>() else {
                continue;
            };
            let map = match kind {
                "s" => &mut p.sent,
                "r" => &mut p.reactions,
                "x" => &mut p.refusals,
                _ => continue,
            };
            map.insert(channel, v * scale);
        }
        p
    }

    /// All reactions, decayed: how much there is to go on.
    pub fn total_reactions(&self) -> f64 {
        self.reactions.values().sum()
    }

    /// How well a channel works for this customer: reactions per message sent,
    /// with refusals counting against it. Smoothed with a prior of 0.2 (one
    /// imaginary send, a fifth of a reaction), so one lucky send does not outrank
    /// a long record, and a channel never tried ranks below a proven one but
    /// above one that has never worked.
    pub fn channel_score(&self, channel: ChannelId) -> f64 {
        let get = |m: &BTreeMap<ChannelId, f64>| m.get(&channel).copied().unwrap_or(0.0);
        let (sent, reacted, refused) = (get(&self.sent), get(&self.reactions), get(&self.refusals));
        (reacted + 0.2 - 2.0 * refused) / (sent + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONTH: Duration = Duration::from_secs(30 * 86_400);

    #[test]
    fn a_weight_doubles_every_half_life() {
        let w0 = weight(EPOCH_MS, MONTH);
        let w1 = weight(EPOCH_MS + MONTH.as_millis() as i64, MONTH);
        assert!((w0 - 1.0).abs() < 1e-12);
        assert!((w1 / w0 - 2.0).abs() < 1e-9);
    }

    #[test]
    fn hours_of_the_week_start_on_monday_utc() {
        // 2026-11-23 is a Monday.
        let monday: jiff::Timestamp = "2026-11-23T00:30:00Z".parse().unwrap();
        assert_eq!(hour_of_week(monday.as_millisecond()), 0);
        let sunday: jiff::Timestamp = "2026-11-29T23:59:00Z".parse().unwrap();
        assert_eq!(hour_of_week(sunday.as_millisecond()), 167);
        let tuesday_9: jiff::Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
        assert_eq!(hour_of_week(tuesday_9.as_millisecond()), 24 + 9);
    }

    #[test]
    fn a_profile_read_back_is_decayed_to_now() {
        let now = EPOCH_MS + 2 * MONTH.as_millis() as i64;
        // One reaction a half-life ago and one now.
        let old = weight(now - MONTH.as_millis() as i64, MONTH);
        let new = weight(now, MONTH);
        let fields: BTreeMap<String, String> = [
            ("r:email".to_owned(), (old + new).to_string()),
            ("s:email".to_owned(), (2.0 * new).to_string()),
            ("h:33".to_owned(), new.to_string()),
            ("t".to_owned(), now.to_string()),
            ("junk".to_owned(), "x".to_owned()),
        ]
        .into_iter()
        .collect();
        let p = Profile::from_fields(&fields, now, MONTH);
        assert!((p.reactions[&ChannelId::new("email")] - 1.5).abs() < 1e-9);
        assert!((p.sent[&ChannelId::new("email")] - 2.0).abs() < 1e-9);
        assert!((p.hours[33] - 1.0).abs() < 1e-9);
        assert_eq!(p.updated_ms, Some(now));
    }

    #[test]
    fn refusals_sink_a_channel_below_one_that_is_merely_quiet() {
        let mut p = Profile::default();
        p.sent.insert(ChannelId::new("line"), 5.0);
        p.reactions.insert(ChannelId::new("line"), 4.0);
        p.sent.insert(ChannelId::new("email"), 5.0);
        p.sent.insert(ChannelId::new("sms"), 1.0);
        p.refusals.insert(ChannelId::new("sms"), 1.0);
        assert!(p.channel_score(ChannelId::new("line")) > p.channel_score(ChannelId::new("email")));
        assert!(p.channel_score(ChannelId::new("email")) > p.channel_score(ChannelId::new("sms")));
    }
}
