//! What the daemon reads from LINE besides sending: the monthly message quota
//! (every daemon, every `quota_poll`) and the per-unit statistics of campaigns
//! sent with `custom_aggregation_units` (one daemon at a time, under a lease,
//! every `stats_poll`).
//!
//! Why every daemon reads the quota: each daemon must pause its own LINE
//! worker when the quota is used up, and two GETs per daemon per `quota_poll`
//! (default 5 min) are nothing beside a push rate of up to 2,000 requests/s;
//! a lease would add a hand-over for no saving worth having. The statistics are
//! fetched by one daemon: each fetch writes `line_stats` events, so N daemons
//! would write N copies, and each is one request per campaign and day.
//!
//! Statistics: every daemon hands the (unit, day) pairs its client sent with to
//! Redis (once per pair and process). The lease holder fetches each pair of the
//! last `stats_days` days every `stats_poll` (`from` = `to` = the day) and
//! writes a `line_stats` event when LINE's figures changed since its last fetch
//! (the first fetch of each pair after a start always writes). LINE keeps
//! counting for days, so a day comes again and again: the report uses the
//! latest `line_stats` per campaign and day.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tayori_channels::line::reads::{line_day, LineReader, ReadError, SentUnits};

use super::ID;
use crate::channel::background::{Background, QuotaReading, StoreError, Tasks};
use crate::event::{Event, EventType};
use crate::metrics as m;

/// What the tasks need from `[channels.line]`.
pub struct ReadSettings {
    pub quota_poll: Duration,
    /// `None`: campaigns are not sent as aggregation units; nothing to fetch.
    pub stats: Option<Schedule>,
    pub units: Arc<SentUnits>,
}

/// How often and for how long statistics are fetched.
pub struct Schedule {
    /// Between two fetches of every pair.
    pub every: Duration,
    /// Pairs are fetched for this many days after their day.
    pub days: u32,
}

/// The quota task, and the statistics task when units are sent.
pub fn tasks(reader: LineReader, settings: ReadSettings, cx: Background) -> Tasks {
    let reader = Arc::new(reader);
    let mut tasks: Tasks = vec![Box::pin(quota_loop(
        reader.clone(),
        settings.quota_poll,
        cx.clone(),
    ))];
    if let Some(schedule) = settings.stats {
        tasks.push(Box::pin(stats_loop(reader, settings.units, schedule, cx)));
    }
    tasks
}

async fn quota_loop(reader: Arc<LineReader>, every: Duration, mut cx: Background) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cx.stop.changed() => return,
        }
        match reader.quota().await {
            Ok(q) => {
                metrics::counter!(m::ACCOUNT_READS, "channel" => "line", "op" => "quota", "result" => "ok")
                    .increment(1);
                // No limit reads as +Inf: `used / limit` is then 0 and no alert fires.
                metrics::gauge!(m::QUOTA_LIMIT, "channel" => "line")
                    .set(q.limit.map_or(f64::INFINITY, |l| l as f64));
                metrics::gauge!(m::QUOTA_USED, "channel" => "line").set(q.used as f64);
                (cx.on_quota)(q.exhausted());
                let reading = QuotaReading {
                    limit: q.limit,
                    used: q.used,
                    read_at: crate::event::now_rfc3339(),
                };
                if let Err(e) = cx.store.keep_quota(ID, &reading).await {
                    tracing::debug!(error = %e, "could not keep LINE's quota reading in Redis");
                }
            }
            Err(e) => {
                metrics::counter!(m::ACCOUNT_READS, "channel" => "line", "op" => "quota", "result" => "error")
                    .increment(1);
                tracing::warn!(error = %e, "reading LINE's monthly quota failed");
            }
        }
    }
}

/// The loop ticks at most this far apart: it hands over sent pairs and renews
/// the lease at this pace even when `stats_poll` is an hour.
const TICK: Duration = Duration::from_secs(60);

async fn stats_loop(
    reader: Arc<LineReader>,
    units: Arc<SentUnits>,
    schedule: Schedule,
    mut cx: Background,
) {
    let tick_every = schedule.every.min(TICK);
    // Lapses three ticks after its holder stops renewing it.
    let lease = tick_every.saturating_mul(3);
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_fetch: Option<Instant> = None;
    // Pair → a hash of the figures last written (in this process).
    let mut written: HashMap<(String, String), u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cx.stop.changed() => return,
        }
        let fresh = units.take();
        if !fresh.is_empty() {
            if let Err(e) = cx.store.note_campaign_days(ID, &fresh).await {
                tracing::debug!(error = %e, "could not record LINE aggregation units; retrying");
                units.give_back(fresh);
            }
        }
        match cx
            .store
            .hold_lease(ID, "stats", &cx.consumer, lease)
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
        if let Err(e) = fetch_all(&reader, &cx, schedule.days, &mut written).await {
            tracing::warn!(error = %e, "fetching LINE's statistics stopped early");
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("Redis: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Line(ReadError),
}

/// One round: fetch every pair still in its days, write what changed.
async fn fetch_all(
    reader: &LineReader,
    cx: &Background,
    days: u32,
    written: &mut HashMap<(String, String), u64>,
) -> Result<(), FetchError> {
    let now = jiff::Timestamp::now();
    let oldest = now
        .checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days)))
        .map(line_day)
        .unwrap_or_default();
    let pairs = cx.store.campaign_days(ID, &oldest).await?;
    written.retain(|pair, _| pairs.contains(pair));
    for (unit, day) in pairs {
        let stats = match reader.unit_stats(&unit, &day, &day).await {
            Ok(s) => {
                metrics::counter!(m::ACCOUNT_READS, "channel" => "line", "op" => "stats", "result" => "ok")
                    .increment(1);
                s
            }
            Err(e) => {
                metrics::counter!(m::ACCOUNT_READS, "channel" => "line", "op" => "stats", "result" => "error")
                    .increment(1);
                // Rate limited: the next round tries again.
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
        let pair = (unit, day);
        if written.get(&pair) == Some(&digest) {
            continue;
        }
        let json = event(&pair.0, &pair.1, &stats, now).to_json();
        cx.store.add_event(&pair.0, &json).await?;
        written.insert(pair, digest);
    }
    Ok(())
}

/// The `line_stats` event of a unit's day: LINE's figures as returned.
fn event(unit: &str, day: &str, stats: &serde_json::Value, at: jiff::Timestamp) -> Event {
    let id = format!("line_stats/{unit}/{day}/{}", at.as_millisecond());
    let mut ev = Event::reaction(EventType::LineStats, ID.label(), id);
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
        assert_eq!(v["channel"], "line");
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
