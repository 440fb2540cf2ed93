//! Quiet hours: a daily window of local time in which a channel does not send.
//!
//! Pure time arithmetic, no Redis. The window is compared with the recipient's
//! wall clock, so it is computed in their time zone: days are civil days (23 or
//! 25 hours across a DST change), and an end time that a DST gap skips maps to
//! the first instant after the gap.

use std::fmt;

use jiff::civil::{DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

/// A daily window `[start, end)` of local time, e.g. 21:00–08:00 (crossing
/// midnight) or 12:00–13:00. `start` is inside the window, `end` is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: Time,
    pub end: Time,
}

impl QuietHours {
    /// Parses `"HH:MM-HH:MM"`. `None` for `""` (no quiet hours).
    pub fn parse(s: &str) -> Result<Option<QuietHours>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let bad = || {
            format!(
                "invalid quiet hours {s:?}: write \"HH:MM-HH:MM\" in local time, \
                 e.g. \"21:00-08:00\" (crossing midnight) or \"12:00-13:00\"; \"\" for none"
            )
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start = parse_hh_mm(a.trim()).ok_or_else(bad)?;
        let end = parse_hh_mm(b.trim()).ok_or_else(bad)?;
        if start == end {
            return Err(format!(
                "invalid quiet hours {s:?}: start and end are the same time; \
                 write \"\" for no quiet hours (a channel that never sends should be disabled instead)"
            ));
        }
        Ok(Some(QuietHours { start, end }))
    }

    /// Whether the local time of day `t` is inside the window.
    pub fn contains(&self, t: Time) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// `None` when `now` is outside the window in `tz`; otherwise the first
    /// instant at or after the window's end, local time in `tz`.
    pub fn next_allowed(&self, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = tz.to_datetime(now);
        let t = local.time();
        if !self.contains(t) {
            return None;
        }
        // The end is today unless the window crosses midnight and we are in its
        // evening part.
        let mut day = local.date();
        if self.start > self.end && t >= self.start {
            day = day.tomorrow().ok()?;
        }
        Some(first_instant_at_or_after(
            tz,
            day.to_datetime(self.end),
            now,
        ))
    }
}

/// The first instant after `now` whose local time in `tz` is at or after `dt`.
fn first_instant_at_or_after(tz: &TimeZone, dt: DateTime, now: Timestamp) -> Timestamp {
    let amb = tz.to_ambiguous_timestamp(dt);
    match amb.offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        // `dt` was skipped (spring forward). Read with the later offset it is an
        // instant before the gap; the next transition is the gap itself, whose
        // first instant is the first local time after `dt`.
        AmbiguousOffset::Gap { after, .. } => after
            .to_timestamp(dt)
            .ok()
            .and_then(|t| tz.following(t).next())
            .map(|transition| transition.timestamp()),
        // `dt` happens twice (fall back): the first time, unless that has
        // passed and `now` is in the repeated hour.
        AmbiguousOffset::Fold { before, after } => [before, after]
            .into_iter()
            .filter_map(|o| o.to_timestamp(dt).ok())
            .find(|t| *t > now),
    }
    .unwrap_or_else(|| amb.compatible().unwrap_or(Timestamp::MAX))
}

/// `H:MM` or `HH:MM`, 00:00 to 23:59.
fn parse_hh_mm(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    let digits = |x: &str, max_len| {
        !x.is_empty() && x.len() <= max_len && x.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

impl fmt::Display for QuietHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start.hour(),
            self.start.minute(),
            self.end.hour(),
            self.end.minute()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qh(s: &str) -> QuietHours {
        QuietHours::parse(s).unwrap().unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    #[test]
    fn parses_windows() {
        let q = qh("21:00-08:00");
        assert_eq!((q.start.hour(), q.end.hour()), (21, 8));
        assert_eq!(qh(" 7:30 - 12:05 ").to_string(), "07:30-12:05");
        assert_eq!(QuietHours::parse("").unwrap(), None);
        assert_eq!(QuietHours::parse("  ").unwrap(), None);
        for bad in [
            "21:00",
            "21-08",
            "25:00-08:00",
            "21:60-08:00",
            "21:0-08:00",
            "a:00-08:00",
            "21:00-08:00-09:00",
            "-21:00-08:00",
            "24:00-08:00",
        ] {
            let e = QuietHours::parse(bad).unwrap_err();
            assert!(e.contains("HH:MM-HH:MM"), "{bad}: {e}");
        }
        let e = QuietHours::parse("08:00-08:00").unwrap_err();
        assert!(e.contains("same time"), "{e}");
    }

    #[test]
    fn contains_crossing_midnight_and_not() {
        let night = qh("21:00-08:00");
        let t = |h, m| Time::new(h, m, 0, 0).unwrap();
        assert!(night.contains(t(21, 0)));
        assert!(night.contains(t(23, 59)));
        assert!(night.contains(t(0, 0)));
        assert!(night.contains(t(7, 59)));
        assert!(!night.contains(t(8, 0)));
        assert!(!night.contains(t(20, 59)));
        assert!(!night.contains(t(12, 0)));

        let lunch = qh("12:00-13:00");
        assert!(lunch.contains(t(12, 0)));
        assert!(lunch.contains(t(12, 59)));
        assert!(!lunch.contains(t(13, 0)));
        assert!(!lunch.contains(t(11, 59)));
        assert!(!lunch.contains(t(0, 0)));
    }

    #[test]
    fn outside_is_none() {
        let tokyo = tz("Asia/Tokyo");
        // 12:00 in Tokyo.
        assert_eq!(
            qh("21:00-08:00").next_allowed(ts("2026-11-23T03:00:00Z"), &tokyo),
            None
        );
        // The end instant itself is allowed.
        assert_eq!(
            qh("21:00-08:00").next_allowed(ts("2026-11-22T23:00:00Z"), &tokyo),
            None
        );
    }

    #[test]
    fn evening_defers_across_the_day_boundary() {
        let tokyo = tz("Asia/Tokyo");
        let q = qh("21:00-08:00");
        // 2026-11-23 22:30 JST → 2026-11-24 08:00 JST.
        assert_eq!(
            q.next_allowed(ts("2026-11-23T13:30:00Z"), &tokyo),
            Some(ts("2026-11-23T23:00:00Z"))
        );
        // 21:00 sharp is inside.
        assert_eq!(
            q.next_allowed(ts("2026-11-23T12:00:00Z"), &tokyo),
            Some(ts("2026-11-23T23:00:00Z"))
        );
        // After midnight (2026-11-24 03:00 JST) → the same day's 08:00.
        assert_eq!(
            q.next_allowed(ts("2026-11-23T18:00:00Z"), &tokyo),
            Some(ts("2026-11-23T23:00:00Z"))
        );
        // Year boundary: 2026-12-31 23:00 JST → 2027-01-01 08:00 JST.
        assert_eq!(
            q.next_allowed(ts("2026-12-31T14:00:00Z"), &tokyo),
            Some(ts("2026-12-31T23:00:00Z"))
        );
    }

    #[test]
    fn the_same_instant_in_three_zones() {
        let q = qh("21:00-08:00");
        // 2026-11-23T13:30Z is 22:30 in Tokyo, 05:30 in Los Angeles (PST),
        // 13:30 in UTC.
        let now = ts("2026-11-23T13:30:00Z");
        assert_eq!(
            q.next_allowed(now, &tz("Asia/Tokyo")),
            Some(ts("2026-11-23T23:00:00Z")) // 11-24 08:00 JST
        );
        assert_eq!(
            q.next_allowed(now, &tz("America/Los_Angeles")),
            Some(ts("2026-11-23T16:00:00Z")) // 11-23 08:00 PST
        );
        assert_eq!(q.next_allowed(now, &TimeZone::UTC), None);
        // And 21:30Z: 06:30 next day in Tokyo, 13:30 in LA, 21:30 in UTC.
        let now = ts("2026-11-23T21:30:00Z");
        assert_eq!(
            q.next_allowed(now, &tz("Asia/Tokyo")),
            Some(ts("2026-11-23T23:00:00Z"))
        );
        assert_eq!(q.next_allowed(now, &tz("America/Los_Angeles")), None);
        assert_eq!(
            q.next_allowed(now, &TimeZone::UTC),
            Some(ts("2026-11-24T08:00:00Z"))
        );
    }

    #[test]
    fn midday_window() {
        let q = qh("12:00-13:00");
        let tokyo = tz("Asia/Tokyo");
        // 12:15 JST → 13:00 JST the same day.
        assert_eq!(
            q.next_allowed(ts("2026-11-23T03:15:00Z"), &tokyo),
            Some(ts("2026-11-23T04:00:00Z"))
        );
        assert_eq!(q.next_allowed(ts("2026-11-23T04:00:00Z"), &tokyo), None);
        assert_eq!(q.next_allowed(ts("2026-11-23T02:59:59Z"), &tokyo), None);
    }

    #[test]
    fn dst_spring_forward_night_is_23_hours() {
        // America/New_York springs forward on 2026-03-08 at 02:00 EST → 03:00 EDT.
        let ny = tz("America/New_York");
        let q = qh("21:00-08:00");
        // 2026-03-07 22:00 EST (-05) → 2026-03-08 08:00 EDT (-04) = 12:00Z:
        // 9 hours later, not 10 (an hour of that night is skipped).
        assert_eq!(
            q.next_allowed(ts("2026-03-08T03:00:00Z"), &ny),
            Some(ts("2026-03-08T12:00:00Z"))
        );
        // During the night after the change (03:30 EDT).
        assert_eq!(
            q.next_allowed(ts("2026-03-08T07:30:00Z"), &ny),
            Some(ts("2026-03-08T12:00:00Z"))
        );
    }

    #[test]
    fn dst_fall_back_night_is_25_hours() {
        // America/Los_Angeles falls back on 2026-11-01 at 02:00 PDT → 01:00 PST.
        let la = tz("America/Los_Angeles");
        let q = qh("21:00-08:00");
        // 2026-10-31 23:00 PDT (-07) = 11-01 06:00Z → 11-01 08:00 PST (-08) = 16:00Z.
        assert_eq!(
            q.next_allowed(ts("2026-11-01T06:00:00Z"), &la),
            Some(ts("2026-11-01T16:00:00Z"))
        );
        // 01:30 happens twice; both are inside the window, both end at 08:00 PST.
        assert_eq!(
            q.next_allowed(ts("2026-11-01T08:30:00Z"), &la), // 01:30 PDT
            Some(ts("2026-11-01T16:00:00Z"))
        );
        assert_eq!(
            q.next_allowed(ts("2026-11-01T09:30:00Z"), &la), // 01:30 PST
            Some(ts("2026-11-01T16:00:00Z"))
        );
    }

    #[test]
    fn end_inside_a_dst_gap_is_the_gaps_first_instant() {
        // 02:30 does not exist in New York on 2026-03-08: the first local time
        // at or after it is 03:00 EDT = 07:00Z (not 03:30 EDT).
        let ny = tz("America/New_York");
        let q = qh("01:00-02:30");
        assert_eq!(
            q.next_allowed(ts("2026-03-08T06:15:00Z"), &ny), // 01:15 EST
            Some(ts("2026-03-08T07:00:00Z"))
        );
        // 03:00 EDT is outside.
        assert_eq!(q.next_allowed(ts("2026-03-08T07:00:00Z"), &ny), None);
    }

    #[test]
    fn end_inside_a_dst_fold_is_its_first_occurrence() {
        // 01:30 happens twice in Los Angeles on 2026-11-01; the window ends at
        // the first one (PDT).
        let la = tz("America/Los_Angeles");
        let q = qh("00:00-01:30");
        assert_eq!(
            q.next_allowed(ts("2026-11-01T07:10:00Z"), &la), // 00:10 PDT
            Some(ts("2026-11-01T08:30:00Z"))                 // 01:30 PDT
        );
        // At 01:10 PST (the repeated hour) local time is inside the window
        // again, and the first 01:30 has passed: wait for the second.
        assert_eq!(
            q.next_allowed(ts("2026-11-01T09:10:00Z"), &la),
            Some(ts("2026-11-01T09:30:00Z")) // 01:30 PST
        );
    }
}
