//! LINE's own figures of a campaign (`line_stats` events: its per-unit
//! statistics, fetched by the daemon): the latest fetch of each day wins, since
//! LINE keeps counting for days and every fetch is written again.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// One day of LINE's statistics as LINE returned them (nulls kept).
#[derive(Debug, Clone, Serialize)]
pub struct LineStatsDay {
    /// LINE's day (UTC+9), `YYYY-MM-DD`.
    pub day: String,
    /// When the daemon fetched these figures.
    pub fetched_at: String,
    pub overview: Value,
    pub messages: Value,
    pub clicks: Value,
}

impl LineStatsDay {
    /// `overview.uniqueImpression`: users who opened the message.
    pub fn unique_opens(&self) -> Option<u64> {
        self.overview
            .get("uniqueImpression")
            .and_then(Value::as_u64)
    }

    /// `overview.uniqueClick`: users who opened any URL in it.
    pub fn unique_clicks(&self) -> Option<u64> {
        self.overview.get("uniqueClick").and_then(Value::as_u64)
    }

    /// The bubbles' `impression`s added up; `None` when LINE gave none.
    pub fn impressions(&self) -> Option<u64> {
        sum(self.messages.as_array(), "impression")
    }
}

fn sum(items: Option<&Vec<Value>>, field: &str) -> Option<u64> {
    items?
        .iter()
        .filter_map(|m| m.get(field).and_then(Value::as_u64))
        .fold(None, |acc, n| Some(acc.unwrap_or(0) + n))
}

/// Accumulates a campaign's `line_stats` events.
#[derive(Default)]
pub struct LineStats {
    days: BTreeMap<String, LineStatsDay>,
}

impl LineStats {
    /// One `line_stats` event of the campaign; an older fetch of a day already
    /// seen is ignored (events of several partitions arrive in any order).
    pub fn add(&mut self, ev: &Value) {
        let text = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let (day, at) = (text("day"), text("at"));
        if self.days.get(&day).is_some_and(|d| d.fetched_at >= at) {
            return;
        }
        let field = |k: &str| ev.get(k).cloned().unwrap_or(Value::Null);
        self.days.insert(
            day.clone(),
            LineStatsDay {
                day,
                fetched_at: at,
                overview: field("overview"),
                messages: field("messages"),
                clicks: field("clicks"),
            },
        );
    }

    /// The days, oldest first.
    pub fn finish(self) -> Vec<LineStatsDay> {
        self.days.into_values().collect()
    }
}

/// A figure summed over days (`None`: LINE gave it for no day).
pub fn total(days: &[LineStatsDay], figure: fn(&LineStatsDay) -> Option<u64>) -> Option<u64> {
    days.iter()
        .filter_map(figure)
        .fold(None, |acc, n| Some(acc.unwrap_or(0) + n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_latest_fetch_of_a_day_wins_and_nulls_stay_null() {
        let ev = |at: &str, opens: Value| {
            json!({"type":"line_stats","day":"2026-12-07","at":at,
                   "overview":{"uniqueImpression":opens,"uniqueClick":null},
                   "messages":[{"seq":1,"impression":5},{"seq":2,"impression":null}],
                   "clicks":[]})
        };
        let mut s = LineStats::default();
        s.add(&ev("2026-12-07T10:00:00.000Z", json!(3)));
        s.add(&ev("2026-12-07T12:00:00.000Z", json!(7)));
        s.add(&ev("2026-12-07T11:00:00.000Z", json!(5)));
        let days = s.finish();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].unique_opens(), Some(7));
        assert_eq!(days[0].unique_clicks(), None);
        assert_eq!(days[0].overview["uniqueClick"], Value::Null);
        assert_eq!(days[0].impressions(), Some(5));
        assert_eq!(total(&days, LineStatsDay::unique_opens), Some(7));
        assert_eq!(total(&days, LineStatsDay::unique_clicks), None);
    }
}
