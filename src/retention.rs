//! The results stream's retention (`[queue] results_retention`,
//! `results_groups`, `results_max_len`): a daemon task that trims every
//! partition's results stream by one rule, whichever path wrote the events —
//! older than the retention and acknowledged by every results group and by the
//! profile updater (`queue/trim_results.lua`).
//!
//! Every daemon trims every partition: a trim is one short script per partition
//! and idempotent, so two daemons trimming at once remove nothing more than one
//! would. No lease then, and no partition whose trim stops with its daemon.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::QueueConfig;
use crate::metrics as m;
use crate::queue::Queue;

/// What the task needs from the config.
#[derive(Debug, Clone)]
pub struct Retention {
    /// 0: no age rule (only `max_len`, if set).
    pub keep_for: Duration,
    pub max_len: u64,
    /// The groups whose acknowledgement an event needs before it may go: the
    /// operator's and, when it runs, the profile updater's.
    pub groups: Vec<String>,
}

impl Retention {
    /// `None` when nothing is to be trimmed.
    pub fn from_config(queue: &QueueConfig, profiles_enabled: bool) -> Option<Retention> {
        if queue.results_retention.is_zero() && queue.results_max_len == 0 {
            return None;
        }
        let mut groups = queue.results_groups.clone();
        if profiles_enabled {
            groups.push(crate::profile::updater::GROUP.to_owned());
        }
        Some(Retention {
            keep_for: queue.results_retention,
            max_len: queue.results_max_len,
            groups,
        })
    }

    /// Between trims: a tenth of the retention, within [`poll`, 60 s]. A day's
    /// retention is kept to the minute; a test's 2 s one to the poll.
    pub fn every(&self, poll: Duration) -> Duration {
        let tenth = self.keep_for / 10;
        tenth.clamp(poll.min(Duration::from_secs(60)), Duration::from_secs(60))
    }
}

/// Trims until `stop` turns true.
pub async fn run(
    queue: Queue,
    retention: Retention,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // Each configured group's gauge exists from the start (0: holds nothing back).
    for g in &retention.groups {
        metrics::gauge!(m::RESULTS_HELD_BACK, "group" => g.clone()).set(0.0);
    }
    metrics::counter!(m::RESULTS_TRIMMED).increment(0);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        trim_all(&queue, &retention).await;
    }
}

/// One round over every partition; sets the held-back gauges from it.
async fn trim_all(queue: &Queue, retention: &Retention) {
    let older_than_ms = if retention.keep_for.is_zero() {
        0
    } else {
        let keep_ms = i64::try_from(retention.keep_for.as_millis()).unwrap_or(i64::MAX);
        jiff::Timestamp::now()
            .as_millisecond()
            .saturating_sub(keep_ms)
    };
    let mut held: BTreeMap<&str, u64> = retention.groups.iter().map(|g| (g.as_str(), 0)).collect();
    for p in queue.keys().all_partitions() {
        match queue
            .trim_results(p, older_than_ms, retention.max_len, &retention.groups)
            .await
        {
            Ok(t) => {
                metrics::counter!(m::RESULTS_TRIMMED).increment(t.removed);
                if let Some(by) = &t.held_by {
                    if let Some(n) = held.get_mut(by.as_str()) {
                        *n += t.held_back;
                    }
                }
            }
            Err(e) => {
                metrics::counter!(m::REDIS_ERRORS, "op" => "trim").increment(1);
                tracing::warn!(error = %e, partition = %p, "trimming the results stream failed");
                // Keep the last gauges: a failed round says nothing new.
                return;
            }
        }
    }
    for (group, n) in held {
        metrics::gauge!(m::RESULTS_HELD_BACK, "group" => group.to_owned()).set(n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_updater_is_waited_for_when_it_runs() {
        let mut q = QueueConfig::default();
        assert!(Retention::from_config(&q, true).is_none(), "off by default");
        q.results_retention = Duration::from_secs(7 * 86_400);
        q.results_groups = vec!["crm".into()];
        let r = Retention::from_config(&q, true).expect("on");
        assert_eq!(r.groups, ["crm", crate::profile::updater::GROUP]);
        let r = Retention::from_config(&q, false).expect("on");
        assert_eq!(r.groups, ["crm"]);
    }

    #[test]
    fn trims_come_a_tenth_of_the_retention_apart_within_bounds() {
        let r = |secs| Retention {
            keep_for: Duration::from_secs(secs),
            max_len: 0,
            groups: vec![],
        };
        let poll = Duration::from_millis(250);
        assert_eq!(r(7 * 86_400).every(poll), Duration::from_secs(60));
        assert_eq!(r(100).every(poll), Duration::from_secs(10));
        assert_eq!(r(2).every(poll), poll);
        // Only a hard cap: checked every poll.
        assert_eq!(r(0).every(poll), poll);
    }
}
