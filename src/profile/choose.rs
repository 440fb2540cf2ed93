//! Choosing by profile: the best time within a window and the best channel
//! among candidates. Pure functions; the worker reads the profile and acts.

use crate::channel_id::ChannelId;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::{hour_of_week, Profile};

/// How a send time was chosen (it goes into the `sent` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRule {
    /// The hour of the week this customer reacted most, within the window.
    BestHour,
    /// The profile is too thin: the configured default local time.
    DefaultHour,
    /// Neither fits the window (or quiet hours cover it): its first allowed moment.
    WindowStart,
}

impl TimeRule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BestHour => "best_hour",
            Self::DefaultHour => "default_hour",
            Self::WindowStart => "window_start",
        }
    }
}

/// The send time within `[from, to)`: the start of the hour this customer reacts
/// most (when the profile has at least `min_reactions`), else the first
/// `default_hour` in the customer's zone, else the window's first allowed
/// moment. `quiet` says until when a moment is inside quiet hours.
pub fn best_time(
    profile: Option<&Profile>,
    (from, to): (Timestamp, Timestamp),
    tz: &TimeZone,
    min_reactions: f64,
    default_hour: Time,
    quiet: impl Fn(Timestamp) -> Option<Timestamp>,
) -> (Timestamp, TimeRule) {
    let allowed = |t: Timestamp| t < to && quiet(t).is_none();
    // Candidates: the window's start, then every top of the hour inside it.
    let first_hour = from
        .as_second()
        .div_euclid(3600)
        .saturating_add(1)
        .saturating_mul(3600);
    let candidates = std::iter::once(from).chain(
        (0..)
            .map(move |i: i64| Timestamp::from_second(first_hour + i * 3600))
            .map_while(Result::ok)
            .take_while(move |t| *t < to),
    );
    if let Some(p) = profile.filter(|p| p.total_reactions() >= min_reactions) {
        let mut best: Option<(Timestamp, f64)> = None;
        for t in candidates.clone().filter(|t| allowed(*t)) {
            let w = p.hours[hour_of_week(t.as_millisecond())];
            if w > 0.0 && best.is_none_or(|(_, bw)| w > bw) {
                best = Some((t, w));
            }
        }
        if let Some((t, _)) = best {
            return (t, TimeRule::BestHour);
        }
    }
    let local = from.to_zoned(tz.clone());
    let mut day = local.date();
    for _ in 0..8 {
        if let Ok(at) = day.to_datetime(default_hour).to_zoned(tz.clone()) {
            let t = at.timestamp();
            if t >= from && allowed(t) {
                return (t, TimeRule::DefaultHour);
            }
        }
        match day.tomorrow() {
            Ok(d) => day = d,
            Err(_) => break,
        }
    }
    let start = candidates
        .map(|t| quiet(t).unwrap_or(t))
        .find(|t| *t < to)
        .unwrap_or(from);
    (start, TimeRule::WindowStart)
}

/// Why a channel was chosen (it goes into the job's events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRule {
    /// The highest score in the profile.
    Profile,
    /// Exploration: another eligible channel, so profiles keep learning.
    Explore,
    /// No profile to go on: the job's own order.
    Order,
}

impl ChannelRule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Profile => "profile",
            Self::Explore => "explore",
            Self::Order => "order",
        }
    }
}

/// The candidates in the order to try them: best first. `explore_roll` is a
/// uniform draw in [0, 1); below `explore` a random other channel goes first.
pub fn rank_channels(
    profile: Option<&Profile>,
    eligible: &[ChannelId],
    min_reactions: f64,
    explore: f64,
    explore_roll: f64,
    pick: usize,
) -> (Vec<ChannelId>, ChannelRule) {
    let Some(p) = profile.filter(|p| p.total_reactions() >= min_reactions) else {
        return (eligible.to_vec(), ChannelRule::Order);
    };
    let mut ranked = eligible.to_vec();
    // Stable: equal scores keep the job's order.
    ranked.sort_by(|a, b| p.channel_score(*b).total_cmp(&p.channel_score(*a)));
    if ranked.len() > 1 && explore_roll < explore {
        let other = 1 + pick % (ranked.len() - 1);
        let chosen = ranked.remove(other);
        ranked.insert(0, chosen);
        return (ranked, ChannelRule::Explore);
    }
    (ranked, ChannelRule::Profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tokyo() -> TimeZone {
        TimeZone::get("Asia/Tokyo").unwrap()
    }

    fn ten() -> Time {
        Time::constant(10, 0, 0, 0)
    }

    /// A profile whose reactions all fell in one UTC hour of the week.
    fn reacts_at(utc: &str, n: f64) -> Profile {
        let mut p = Profile {
            hours: vec![0.0; super::super::HOURS],
            ..Profile::default()
        };
        p.hours[hour_of_week(ts(utc).as_millisecond())] = n;
        p.reactions.insert(ChannelId::new("email"), n);
        p
    }

    #[test]
    fn the_hour_a_customer_reacts_most_is_chosen_within_the_window() {
        // Reacts on Tuesdays 11:00–12:00 UTC (20:00 in Tokyo).
        let p = reacts_at("2026-11-24T11:20:00Z", 5.0);
        let window = (ts("2026-11-24T02:15:00Z"), ts("2026-11-25T02:15:00Z"));
        let (t, rule) = best_time(Some(&p), window, &tokyo(), 3.0, ten(), |_| None);
        assert_eq!(rule, TimeRule::BestHour);
        assert_eq!(t, ts("2026-11-24T11:00:00Z"));
    }

    #[test]
    fn a_thin_profile_falls_back_to_the_default_local_hour() {
        let p = reacts_at("2026-11-24T11:20:00Z", 1.0);
        // 23:00 in Tokyo: the next 10:00 there is 01:00 UTC the next day.
        let window = (ts("2026-11-24T14:00:00Z"), ts("2026-11-25T14:00:00Z"));
        let (t, rule) = best_time(Some(&p), window, &tokyo(), 3.0, ten(), |_| None);
        assert_eq!(rule, TimeRule::DefaultHour);
        assert_eq!(t, ts("2026-11-25T01:00:00Z"));
        let (t, rule) = best_time(None, window, &tokyo(), 3.0, ten(), |_| None);
        assert_eq!(
            (t, rule),
            (ts("2026-11-25T01:00:00Z"), TimeRule::DefaultHour)
        );
    }

    #[test]
    fn quiet_hours_are_never_chosen() {
        let p = reacts_at("2026-11-24T13:30:00Z", 9.0); // 22:30 in Tokyo
        let window = (ts("2026-11-24T02:00:00Z"), ts("2026-11-24T20:00:00Z"));
        // Quiet from 12:00 UTC (21:00 JST) to 23:00 UTC (08:00 JST).
        let quiet = |t: Timestamp| {
            (t >= ts("2026-11-24T12:00:00Z") && t < ts("2026-11-24T23:00:00Z"))
                .then(|| ts("2026-11-24T23:00:00Z"))
        };
        let (t, rule) = best_time(Some(&p), window, &tokyo(), 3.0, ten(), quiet);
        assert_ne!(rule, TimeRule::BestHour, "{t}");
        assert!(quiet(t).is_none() && t < window.1, "{t}");
    }

    #[test]
    fn a_window_without_the_default_hour_starts_at_its_beginning() {
        let window = (ts("2026-11-24T03:00:00Z"), ts("2026-11-24T05:00:00Z")); // 12–14 JST
        let (t, rule) = best_time(None, window, &tokyo(), 3.0, ten(), |_| None);
        assert_eq!((t, rule), (window.0, TimeRule::WindowStart));
    }

    #[test]
    fn channels_rank_by_score_and_sometimes_explore() {
        let mut p = Profile::default();
        p.sent.insert(ChannelId::new("email"), 10.0);
        p.reactions.insert(ChannelId::new("email"), 1.0);
        p.sent.insert(ChannelId::new("line"), 10.0);
        p.reactions.insert(ChannelId::new("line"), 8.0);
        let all = [
            ChannelId::new("email"),
            ChannelId::new("line"),
            ChannelId::new("sms"),
        ];
        let (ranked, rule) = rank_channels(Some(&p), &all, 3.0, 0.1, 0.5, 0);
        assert_eq!(rule, ChannelRule::Profile);
        assert_eq!(ranked[0], ChannelId::new("line"));
        let (ranked, rule) = rank_channels(Some(&p), &all, 3.0, 0.1, 0.05, 0);
        assert_eq!(rule, ChannelRule::Explore);
        assert_ne!(ranked[0], ChannelId::new("line"));
        assert_eq!(ranked.len(), 3);
        let (ranked, rule) = rank_channels(None, &all, 3.0, 0.1, 0.0, 0);
        assert_eq!((ranked, rule), (all.to_vec(), ChannelRule::Order));
    }
}
