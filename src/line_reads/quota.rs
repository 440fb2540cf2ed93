//! LINE's monthly quota: read every `quota_poll`, exported as gauges, kept in
//! Redis for `tayori stats`, and handed to the LINE worker, which pauses while
//! the month's messages are used up.

use std::sync::Arc;
use std::time::Duration;

use redis::RedisResult;
use serde::Serialize;
use tayori_channels::line::reads::{LineReader, Quota};
use tokio::sync::watch;

use super::OnReading;
use crate::metrics as m;
use crate::queue::Queue;

pub async fn run(
    reader: Arc<LineReader>,
    queue: Queue,
    every: Duration,
    on_reading: OnReading,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match reader.quota().await {
            Ok(q) => {
                metrics::counter!(m::LINE_READS, "endpoint" => "quota", "result" => "ok")
                    .increment(1);
                // No limit reads as +Inf: `used / limit` is then 0 and no alert fires.
                metrics::gauge!(m::LINE_QUOTA_LIMIT).set(q.limit.map_or(f64::INFINITY, |l| l as f64));
                metrics::gauge!(m::LINE_QUOTA_USED).set(q.used as f64);
                on_reading(q.exhausted());
                if let Err(e) = store(&queue, &q).await {
                    tracing::debug!(error = %e, "could not keep LINE's quota reading in Redis");
                }
            }
            Err(e) => {
                metrics::counter!(m::LINE_READS, "endpoint" => "quota", "result" => "error")
                    .increment(1);
                tracing::warn!(error = %e, "reading LINE's monthly quota failed");
            }
        }
    }
}

/// The last reading, as kept in Redis (`tayori stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredQuota {
    /// `None`: LINE sets no limit.
    pub limit: Option<u64>,
    pub used: u64,
    /// When it was read (RFC 3339).
    pub read_at: String,
}

async fn store(queue: &Queue, q: &Quota) -> RedisResult<()> {
    let limit = q.limit.map_or_else(|| "none".to_owned(), |l| l.to_string());
    redis::cmd("HSET")
        .arg(queue.keys().line_quota())
        .arg("limit")
        .arg(limit)
        .arg("used")
        .arg(q.used)
        .arg("read_at")
        .arg(crate::event::now_rfc3339())
        .query_async(&mut queue.conn())
        .await
}

/// The last reading any daemon kept, if there is one.
pub async fn load(queue: &Queue) -> RedisResult<Option<StoredQuota>> {
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(queue.keys().line_quota())
        .query_async(&mut queue.conn())
        .await?;
    let (Some(limit), Some(used), Some(read_at)) =
        (fields.get("limit"), fields.get("used"), fields.get("read_at"))
    else {
        return Ok(None);
    };
    Ok(Some(StoredQuota {
        limit: limit.parse().ok(),
        used: used.parse().unwrap_or(0),
        read_at: read_at.clone(),
    }))
}
