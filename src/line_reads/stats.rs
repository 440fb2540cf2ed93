//! LINE's per-unit statistics of campaigns sent with `customAggregationUnits`.
//!
//! Every daemon hands the (unit, day) pairs its LINE client sent with to Redis
//! (`{prefix}:line:units`, once per pair and process). The daemon holding the
//! lease fetches each pair of the last `stats_days` days every `stats_poll`
//! (`GET /v2/bot/insight/message/event/aggregation`, `from` = `to` = the day)
//! and writes a `line_stats` event when LINE's figures changed since its last
//! fetch (the first fetch of each pair after a start always writes). LINE
//! keeps counting opens and clicks for days, so a day's figures come again
//! and again: the report uses the latest `line_stats` per campaign and day.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::RedisResult;
use tayori_channels::line::reads::{line_day, LineReader, ReadError, SentUnits};
use tokio::sync::watch;

use crate::event::{Event, EventType};
use crate::keys::partition_of;
use crate::metrics as m;
use crate::queue::Queue;

/// How often and for how long.
pub struct Schedule {
    /// Between two fetches of every pair.
    pub every: Duration,
    /// Pairs are fetched for this many days after their day.
    pub days: u32,
}

/// The loop ticks at most this far apart: it hands over sent pairs and renews
/// the lease at this pace even when `stats_poll` is an hour.
const TICK: Duration = Duration::from_secs(60);

pub async fn run(
    reader: Arc<LineReader>,
    queue: Queue,
    consumer: String,
    units: Arc<SentUnits>,
    schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) {
    let tick_every = schedule.every.min(TICK);
    // Lapses three ticks after its holder stops renewing it.
    let lease = tick_every.saturating_mul(3);
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_fetch: Option<Instant> = None;
    // Pair → a hash of the figures last written (in this process).
    let mut written: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let fresh = units.take();
        if !fresh.is_empty() {
            if let Err(e) = remember(&queue, &fresh).await {
                tracing::debug!(error = %e, "could not record LINE aggregation units; retrying");
                units.give_back(fresh);
            }
        }
        match queue
            .hold_lease(&queue.keys().line_stats_lease(), &consumer, lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "could not renew the LINE statistics lease");
                continue;
            }
        }
        if last_fetch.is_some_and(|t| t.elapsed() < schedule.every) {
            continue;
        }
        last_fetch = Some(Instant::now());
        if let Err(e) = fetch_all(&reader, &queue, schedule.days, &mut written).await {
            tracing::warn!(error = %e, "fetching LINE's statistics stopped early");
        }
    }
}

/// `yyyyMMdd:unit` for each pair, scored by the day.
async fn remember(queue: &Queue, pairs: &[(String, String)]) -> RedisResult<()> {
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(queue.keys().line_units());
    for (unit, day) in pairs {
        cmd.arg(day.parse::<u64>().unwrap_or(0))
            .arg(format!("{day}:{unit}"));
    }
    cmd.query_async(&mut queue.conn()).await
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Line(ReadError),
}

/// One round: forget pairs too old, fetch the others, write what changed.
async fn fetch_all(
    reader: &LineReader,
    queue: &Queue,
    days: u32,
    written: &mut HashMap<String, u64>,
) -> Result<(), FetchError> {
    let key = queue.keys().line_units();
    let now = jiff::Timestamp::now();
    let oldest = now
        .checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days)))
        .map(line_day)
        .unwrap_or_default();
    let _: i64 = redis::cmd("ZREMRANGEBYSCORE")
        .arg(&key)
        .arg("-inf")
        .arg(format!("({oldest}"))
        .query_async(&mut queue.conn())
        .await?;
    let pairs: Vec<String> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query_async(&mut queue.conn())
        .await?;
    written.retain(|pair, _| pairs.contains(pair));
    for pair in pairs {
        let Some((day, unit)) = pair.split_once(':') else {
            continue;
        };
        let stats = match reader.unit_stats(unit, day, day).await {
            Ok(s) => {
                metrics::counter!(m::LINE_READS, "endpoint" => "stats", "result" => "ok")
                    .increment(1);
                s
            }
            Err(e) => {
                metrics::counter!(m::LINE_READS, "endpoint" => "stats", "result" => "error")
                    .increment(1);
                // Rate limited or refused: the next round tries again.
                if matches!(e, ReadError::Refused { status: 429, .. }) {
                    return Err(FetchError::Line(e));
                }
                tracing::warn!(unit, day, error = %e, "fetching LINE's statistics of a unit failed");
                continue;
            }
        };
        let digest = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            stats.to_string().hash(&mut h);
            h.finish()
        };
        if written.get(&pair) == Some(&digest) {
            continue;
        }
        let json = event(unit, day, &stats, now).to_json();
        queue
            .add_event(partition_of(unit, queue.keys().partitions()), &json)
            .await?;
        written.insert(pair, digest);
    }
    Ok(())
}

/// The `line_stats` event of a unit's day: LINE's figures as returned.
fn event(unit: &str, day: &str, stats: &serde_json::Value, at: jiff::Timestamp) -> Event {
    let id = format!("line_stats/{unit}/{day}/{}", at.as_millisecond());
    let mut ev = Event::reaction(EventType::LineStats, "line", id);
    ev.campaign = Some(unit.to_owned());
    let iso_day = match (day.get(0..4), day.get(4..6), day.get(6..8)) {
        (Some(y), Some(m), Some(d)) => format!("{y}-{m}-{d}"),
        _ => day.to_owned(),
    };
    ev.with("unit", unit)
        .with("day", iso_day)
        .with("overview", stats["overview"].clone())
        .with("messages", stats["messages"].clone())
        .with("clicks", stats["clicks"].clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_event_keeps_lines_figures_and_nulls() {
        let stats = json!({
            "overview": {"uniqueImpression": 40, "uniqueClick": null},
            "messages": [{"seq": 1, "impression": 42}],
            "clicks": [{"seq": 1, "url": "https://example.com/", "click": 3, "uniqueClick": null}]
        });
        let at: jiff::Timestamp = "2026-12-07T01:00:00Z".parse().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&event("spring_26", "20261207", &stats, at).to_json()).unwrap();
        assert_eq!(v["type"], "line_stats");
        assert_eq!(v["campaign"], "spring_26");
        assert_eq!(v["day"], "2026-12-07");
        assert_eq!(v["job_id"], serde_json::Value::Null);
        assert_eq!(v["overview"]["uniqueClick"], serde_json::Value::Null);
        assert_eq!(v["clicks"][0]["click"], 3);
        assert!(v["event_id"]
            .as_str()
            .unwrap()
            .starts_with("line_stats/spring_26/20261207/"));
    }
}
