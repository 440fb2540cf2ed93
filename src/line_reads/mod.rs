//! What the daemon reads from LINE besides sending: the monthly message quota
//! ([`quota`]: every daemon, every `quota_poll`) and the per-unit statistics of
//! campaigns sent with `custom_aggregation_units` ([`stats`]: one daemon at a
//! time, under a lease, every `stats_poll`).
//!
//! Why every daemon reads the quota: each daemon must pause its own LINE
//! worker when the quota is used up, and two GETs per daemon per `quota_poll`
//! (default 5 min) are nothing beside a push rate of up to 2,000 requests/s; a
//! lease would add a Redis hand-over for no saving worth having. The statistics
//! are fetched by one daemon: every fetch writes `line_stats` events, so N
//! daemons would write N copies, and each fetch is one request per campaign and day.

pub mod quota;
pub mod stats;

use std::sync::Arc;

use tayori_channels::line::reads::LineReader;
use tokio::sync::watch;

use crate::channel::line::{LineSettings, ID};
use crate::channel::Channels;
use crate::queue::Queue;

/// Told each quota reading: `true` when this month's messages are used up.
pub type OnReading = Arc<dyn Fn(bool) + Send + Sync>;

/// Starts the readers, when LINE is enabled with the Messaging API.
pub fn spawn(
    channels: &Channels,
    queue: &Queue,
    consumer: &str,
    on_reading: OnReading,
    stop: watch::Receiver<bool>,
) {
    let Some(reads) = channels
        .get(ID)
        .and_then(|c| c.settings.as_any().downcast_ref::<LineSettings>())
        .and_then(LineSettings::reads)
    else {
        return;
    };
    let reader = match LineReader::new(&reads.api_base, &reads.token, reads.timeout) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::warn!(error = %e, "LINE's quota and statistics cannot be read");
            return;
        }
    };
    tokio::spawn(quota::run(
        reader.clone(),
        queue.clone(),
        reads.quota_poll,
        on_reading,
        stop.clone(),
    ));
    if reads.aggregation_units {
        tokio::spawn(stats::run(
            reader,
            queue.clone(),
            consumer.to_owned(),
            reads.units,
            stats::Schedule {
                every: reads.stats_poll,
                days: reads.stats_days,
            },
            stop,
        ));
    }
}
