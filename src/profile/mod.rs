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
//! | `e`            | the profile's reference time (ms; absent: [`EPOCH_MS`]) |
//!
//! Old habits fade with forward decay: an event at time `t` adds
//! `2^((t − e) / half_life)` instead of 1. Every weight is then in the same
//! unit, so comparing channels or hours needs no rewriting of old fields, and an
//! update stays O(1) (one `HINCRBYFLOAT` per field). To read a weight as "events,
//! decayed to now", multiply by `2^(−(now − e) / half_life)`.
//!
//! The unit grows by 2 every half-life, and a double ends at 2^1024: with one
//! fixed reference a 1-hour half-life overflowed to infinity 43 days after it,
//! a 30-day one after 84 years (Redis then refuses the `HINCRBYFLOAT` and the
//! updater stalls on that batch). So the reference moves: once `now` is more
//! than [`RESCALE_AFTER`] half-lives past a profile's `e`, the update
//! (`add.lua`, atomic per profile) multiplies every weight by
//! `2^(−(now − e) / half_life)` and sets `e = now`. Read back, nothing changes
//! (both sides of every comparison are scaled alike); stored weights stay
//! below 2^64 per event. Profiles written before `e` existed read as
//! `e = EPOCH_MS`, which is what they were written with.
//!
//! Hours are kept in UTC and turned into the customer's local hours when read,
//! with the time zone of the job being scheduled (or the configured one).

pub mod choose;
pub mod updater;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::channel_id::ChannelId;

/// The first reference time of forward decay (2026-01-01T00:00:00Z, ms): a
/// profile without an `e` field counts from it.
pub const EPOCH_MS: i64 = 1_767_225_600_000;

/// Half-lives past its reference after which a profile is rescaled: weights stay
/// below 2^64 per event, far from a double's 2^1024, and a profile updated at
/// least once every 64 half-lives is rescaled once per 64 (a 1-hour half-life:
/// every 2.7 days; the default 30 days: every 5.3 years).
pub const RESCALE_AFTER: f64 = 64.0;

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

/// Half-lives from `reference_ms` to `at_ms` (negative before it).
pub fn half_lives(reference_ms: i64, at_ms: i64, half_life: Duration) -> f64 {
    let half_life_ms = half_life.as_millis().max(1) as f64;
    (at_ms as f64 - reference_ms as f64) / half_life_ms
}

/// How much an event at `at_ms` weighs in the unit of a profile whose reference
/// time is `reference_ms`: `2^((at − reference) / half_life)`. `add.lua`
/// computes the same in Redis.
pub fn weight(reference_ms: i64, at_ms: i64, half_life: Duration) -> f64 {
    half_lives(reference_ms, at_ms, half_life).exp2()
}

/// The reference time a profile moves to before an update at `now_ms`, and the
/// factor its stored weights are multiplied by, when it is due (more than
/// [`RESCALE_AFTER`] half-lives behind); `None` otherwise. `add.lua` follows it.
pub fn rescale(reference_ms: i64, now_ms: i64, half_life: Duration) -> Option<(i64, f64)> {
    let behind = half_lives(reference_ms, now_ms, half_life);
    (behind > RESCALE_AFTER).then(|| (now_ms, (-behind).exp2()))
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
        let reference = fields
            .get("e")
            .and_then(|e| e.parse::<f64>().ok())
            .map_or(EPOCH_MS, |e| e as i64);
        // 2^−x rather than 1/2^x: a profile untouched for over 1024 half-lives
        // reads as 0 (all faded), not as 1/∞ of an overflowed unit.
        let scale = (-half_lives(reference, now_ms, half_life)).exp2();
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
            if name == "e" {
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
        let w0 = weight(EPOCH_MS, EPOCH_MS, MONTH);
        let w1 = weight(EPOCH_MS, EPOCH_MS + MONTH.as_millis() as i64, MONTH);
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
        let old = weight(EPOCH_MS, now - MONTH.as_millis() as i64, MONTH);
        let new = weight(EPOCH_MS, now, MONTH);
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

    const HOUR: Duration = Duration::from_secs(3600);
    const YEAR_MS: i64 = 365 * 86_400_000;

    /// A profile hash as `add.lua` keeps it, in memory: the same steps (rescale
    /// when due, then add each event's weight in the current unit).
    #[derive(Default)]
    struct Stored {
        fields: BTreeMap<String, f64>,
        reference: Option<i64>,
    }

    impl Stored {
        fn add(&mut self, now_ms: i64, half_life: Duration, events: &[(String, i64)]) {
            let mut reference = self.reference.unwrap_or(EPOCH_MS);
            if let Some((moved, factor)) = rescale(reference, now_ms, half_life) {
                self.fields.values_mut().for_each(|v| *v *= factor);
                reference = moved;
                self.reference = Some(moved);
            }
            for (field, at_ms) in events {
                *self.fields.entry(field.clone()).or_default() +=
                    weight(reference, *at_ms, half_life);
            }
        }

        /// As `HGETALL` returns it.
        fn hash(&self) -> BTreeMap<String, String> {
            let mut out: BTreeMap<String, String> = self
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            if let Some(e) = self.reference {
                out.insert("e".into(), e.to_string());
            }
            out
        }
    }

    /// A customer's events over `years` from the epoch: every 5 to 11 hours a
    /// send on one of three channels, often a reaction at a favourite hour.
    fn history(years: i64) -> Vec<(i64, Vec<(String, i64)>)> {
        let mut rng = fastrand::Rng::with_seed(20);
        let channels = ["email", "line", "sms"];
        let mut at = EPOCH_MS;
        let mut batches = Vec::new();
        while at < EPOCH_MS + years * YEAR_MS {
            at += rng.i64(5..12) * 3_600_000;
            let channel = channels[rng.usize(..channels.len())];
            let mut events = vec![(format!("s:{channel}"), at)];
            if rng.f64() < if channel == "line" { 0.6 } else { 0.2 } {
                let reacted = at + rng.i64(0..3_600_000);
                events.push((format!("r:{channel}"), reacted));
                events.push((format!("h:{}", hour_of_week(reacted)), reacted));
            }
            batches.push((at + 3_600_000, events));
        }
        batches
    }

    /// The profile computed directly, each event decayed from its own time to now
    /// (no growing unit at all): what a read must equal.
    fn decayed(history: &[(i64, Vec<(String, i64)>)], now_ms: i64, half_life: Duration) -> Profile {
        let mut stored = Stored::default();
        for (_, events) in history.iter().filter(|(t, _)| *t <= now_ms) {
            for (field, at_ms) in events {
                *stored.fields.entry(field.clone()).or_default() +=
                    (-half_lives(*at_ms, now_ms, half_life)).exp2();
            }
        }
        stored.reference = Some(now_ms);
        Profile::from_fields(&stored.hash(), now_ms, half_life)
    }

    fn choices(p: &Profile) -> (Vec<ChannelId>, Option<usize>) {
        let eligible = ["email", "line", "sms"].map(ChannelId::new);
        let (ranked, _) = choose::rank_channels(Some(p), &eligible, 0.0, 0.0, 1.0, 0);
        let best_hour = (0..HOURS).max_by(|a, b| p.hours[*a].total_cmp(&p.hours[*b]));
        (ranked, best_hour.filter(|h| p.hours[*h] > 0.0))
    }

    fn close(a: &Profile, b: &Profile) -> bool {
        let near = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300);
        let maps = |m: &BTreeMap<ChannelId, f64>, n: &BTreeMap<ChannelId, f64>| {
            m.keys().chain(n.keys()).all(|k| {
                near(
                    m.get(k).copied().unwrap_or(0.0),
                    n.get(k).copied().unwrap_or(0.0),
                )
            })
        };
        maps(&a.sent, &b.sent)
            && maps(&a.reactions, &b.reactions)
            && maps(&a.refusals, &b.refusals)
            && a.hours.iter().zip(&b.hours).all(|(x, y)| near(*x, *y))
    }

    #[test]
    fn with_one_fixed_reference_a_one_hour_half_life_overflowed_within_weeks() {
        // The weight as it was: 2^((t − EPOCH) / half_life), never rescaled.
        let fixed = |at_ms: i64| weight(EPOCH_MS, at_ms, HOUR);
        assert!(fixed(EPOCH_MS + 40 * 86_400_000).is_finite());
        assert!(fixed(EPOCH_MS + 43 * 86_400_000).is_infinite());
        assert!(fixed(EPOCH_MS + 10 * YEAR_MS).is_infinite());
        // A 30-day half-life lasted 84 years.
        assert!(weight(EPOCH_MS, EPOCH_MS + 84 * YEAR_MS, MONTH).is_finite());
        assert!(weight(EPOCH_MS, EPOCH_MS + 85 * YEAR_MS, MONTH).is_infinite());
    }

    #[test]
    fn a_one_hour_half_life_holds_for_ten_years_and_reads_as_decayed_events() {
        let history = history(10);
        let mut stored = Stored::default();
        let mut checked = 0;
        for (i, (now_ms, events)) in history.iter().enumerate() {
            stored.add(*now_ms, HOUR, events);
            assert!(
                stored
                    .fields
                    .values()
                    .all(|v| v.is_finite() && *v < 2f64.powi(80)),
                "{:?}",
                stored.fields
            );
            if i % 97 == 0 {
                let read = Profile::from_fields(&stored.hash(), *now_ms, HOUR);
                let want = decayed(&history, *now_ms, HOUR);
                assert!(close(&read, &want), "{read:?}\n{want:?}");
                assert_eq!(choices(&read), choices(&want));
                checked += 1;
            }
        }
        assert!(checked > 50, "{checked}");
        assert!(stored.reference.unwrap() > EPOCH_MS + 9 * YEAR_MS);
    }

    #[test]
    fn rescaling_leaves_every_choice_as_the_fixed_reference_made_it() {
        // A 30-day half-life over 10 years: the fixed reference still held, so
        // the two can be compared; rescaling after 8 half-lives (instead of 64)
        // moves the reference 14 or 15 times.
        let history = history(10);
        let mut moving = Stored::default();
        let mut fixed = Stored::default();
        let mut moves = 0;
        for (i, (now_ms, events)) in history.iter().enumerate() {
            let before = moving.reference;
            let reference = moving.reference.unwrap_or(EPOCH_MS);
            if half_lives(reference, *now_ms, MONTH) > 8.0 {
                let factor = (-half_lives(reference, *now_ms, MONTH)).exp2();
                moving.fields.values_mut().for_each(|v| *v *= factor);
                moving.reference = Some(*now_ms);
            }
            for (field, at_ms) in events {
                *moving.fields.entry(field.clone()).or_default() +=
                    weight(moving.reference.unwrap_or(EPOCH_MS), *at_ms, MONTH);
                *fixed.fields.entry(field.clone()).or_default() += weight(EPOCH_MS, *at_ms, MONTH);
            }
            let moved = moving.reference != before;
            moves += usize::from(moved);
            // Right after each move, and every 10th batch between (every batch: 3 s).
            if !moved && i % 10 != 0 {
                continue;
            }
            let a = Profile::from_fields(&moving.hash(), *now_ms, MONTH);
            let b = Profile::from_fields(&fixed.hash(), *now_ms, MONTH);
            assert!(close(&a, &b), "{a:?}\n{b:?}");
            assert_eq!(choices(&a), choices(&b));
        }
        assert!((14..=15).contains(&moves), "{moves}");
    }

    #[test]
    fn a_profile_rescales_only_when_due_and_without_e_counts_from_the_epoch() {
        assert_eq!(rescale(EPOCH_MS, EPOCH_MS + 64 * 3_600_000, HOUR), None);
        let now = EPOCH_MS + 65 * 3_600_000;
        let (moved, factor) = rescale(EPOCH_MS, now, HOUR).unwrap();
        assert_eq!(moved, now);
        assert_eq!(factor, 2f64.powi(-65));
        // Written before `e` existed: the fixed reference it was written with.
        let fields: BTreeMap<String, String> = [("r:email".to_owned(), "4".to_owned())].into();
        let p = Profile::from_fields(&fields, EPOCH_MS + 3_600_000, HOUR);
        assert_eq!(p.reactions[&ChannelId::new("email")], 2.0);
        // Untouched for longer than a double can scale: faded to 0, not NaN.
        let p = Profile::from_fields(&fields, EPOCH_MS + 2000 * 3_600_000, HOUR);
        assert_eq!(p.reactions[&ChannelId::new("email")], 0.0);
    }
}
