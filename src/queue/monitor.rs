//! What the daemon samples for its monitoring gauges, beyond the queue depths
//! of [`Queue::stats`]: how far each CRM's consumer group of the results
//! streams is behind, and how long the oldest job read but not acknowledged
//! has been waiting. Sent with the stats' commands in one batch: one pipeline
//! per partition (its keys share a hash tag, so on a cluster it goes to the
//! partition's primary), all sent at once.

use redis::Value;

use super::stats::group_fields;
use super::{Queue, QueueStats, RedisResult, GROUP};
use crate::channel_id::ChannelId;

/// A consumer group of the results streams (a CRM's reader), over every partition.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsGroup {
    /// The group's name, chosen by the operator (`XGROUP CREATE`).
    pub name: String,
    /// Events not yet delivered to the group; `None` when Redis cannot tell for
    /// some partition (XINFO's `lag` is nil once entries after the group's last
    /// delivered one were deleted with XDEL).
    pub lag: Option<u64>,
    /// Events delivered to the group and not yet acknowledged.
    pub pending: u64,
}

/// The oldest job of a channel read by a daemon and not yet acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct OldestPending {
    pub channel: ChannelId,
    /// Milliseconds since its entry was added to the stream (the entry id's
    /// time); `None` when nothing is pending.
    pub age_ms: Option<u64>,
}

/// One housekeeping sample: the queue depths and the monitoring figures.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub stats: QueueStats,
    /// Every consumer group found on any partition's results stream, by name.
    pub results_groups: Vec<ResultsGroup>,
    /// One per channel asked for, in that order.
    pub oldest_pending: Vec<OldestPending>,
}

/// One partition's figures in one script call (its keys share the partition's
/// hash tag): `KEYS[1]` the results stream, `KEYS[2..]` the job streams. Returns
/// the results stream's XINFO GROUPS (empty without the stream), then per job
/// stream the smallest id pending in the group `ARGV[1]` (XPENDING's summary), or
/// nil: none pending, or no stream or group yet (an error would fail the whole
/// pipeline, and with it the readiness check). One call instead of one per key:
/// each EVAL costs Redis 19–26 µs however little the script does (Redis 7.0,
/// `INFO commandstats` over a 10,000-job drain), and every daemon samples every
/// `poll_interval`.
const PARTITION_FIGURES: &str = "\
local out = {} \
if redis.call('EXISTS', KEYS[1]) == 1 then out[1] = redis.call('XINFO', 'GROUPS', KEYS[1]) else out[1] = {} end \
for i = 2, #KEYS do \
  local r = redis.pcall('XPENDING', KEYS[i], ARGV[1]) \
  if type(r) == 'table' and r.err == nil and r[2] then out[i] = r[2] else out[i] = false end \
end \
return out";

impl Queue {
    /// [`Queue::stats`] plus the monitoring figures, in one batch.
    pub async fn sample(&self, kinds: &[ChannelId]) -> RedisResult<Sample> {
        let keys = self.keys();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut batch = self.batch();
        let stats_replies = self.add_stats(&mut batch, kinds, now_ms);
        for p in keys.all_partitions() {
            let results = keys.results(p);
            let mut figures = redis::cmd("EVAL");
            figures
                .arg(PARTITION_FIGURES)
                .arg(1 + kinds.len())
                .arg(&results);
            for kind in kinds {
                figures.arg(keys.jobs(p, *kind));
            }
            figures.arg(GROUP);
            batch.add(&results, figures);
        }
        let replies: Vec<Value> = batch.query(&self.conn()).await?;
        let (stats, monitoring) = replies.split_at(stats_replies.min(replies.len()));
        let mut sample = Sample {
            stats: Self::stats_from(kinds, stats),
            results_groups: Vec::new(),
            oldest_pending: kinds
                .iter()
                .map(|k| OldestPending {
                    channel: *k,
                    age_ms: None,
                })
                .collect(),
        };
        for partition in monitoring {
            let Value::Array(figures) = partition else {
                continue;
            };
            let Some((groups, oldest)) = figures.split_first() else {
                continue;
            };
            add_results_groups(&mut sample.results_groups, groups);
            for (o, id) in sample.oldest_pending.iter_mut().zip(oldest) {
                if let Some(age) = id_time_ms(id).map(|t| (now_ms - t).max(0) as u64) {
                    o.age_ms = Some(o.age_ms.map_or(age, |a| a.max(age)));
                }
            }
        }
        Ok(sample)
    }
}

/// Adds one partition's XINFO GROUPS reply to the per-name sums.
fn add_results_groups(sums: &mut Vec<ResultsGroup>, reply: &Value) {
    let Value::Array(groups) = reply else { return };
    for g in groups {
        let fields = group_fields(g);
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let name = match field("name") {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => Some((*n).max(0) as u64),
            _ => None,
        };
        let (lag, pending) = (int(field("lag")), int(field("pending")).unwrap_or(0));
        match sums.iter_mut().find(|s| s.name == name) {
            Some(s) => {
                s.lag = s.lag.zip(lag).map(|(a, b)| a + b);
                s.pending += pending;
            }
            None => sums.push(ResultsGroup { name, lag, pending }),
        }
    }
}

/// The millisecond time of a stream entry id (`<ms>-<seq>`).
fn id_time_ms(id: &Value) -> Option<i64> {
    let id = match id {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        Value::SimpleString(s) => s.as_str(),
        _ => return None,
    };
    id.split_once('-')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn group(name: &str, lag: Value, pending: i64) -> Value {
        Value::Array(vec![
            bulk("name"),
            bulk(name),
            bulk("consumers"),
            Value::Int(1),
            bulk("pending"),
            Value::Int(pending),
            bulk("last-delivered-id"),
            bulk("0-0"),
            bulk("entries-read"),
            Value::Nil,
            bulk("lag"),
            lag,
        ])
    }

    #[test]
    fn results_groups_are_summed_over_partitions_and_an_unknown_lag_stays_unknown() {
        let mut sums = Vec::new();
        add_results_groups(
            &mut sums,
            &Value::Array(vec![
                group("crm", Value::Int(3), 1),
                group("audit", Value::Int(2), 0),
            ]),
        );
        add_results_groups(
            &mut sums,
            &Value::Array(vec![
                group("crm", Value::Int(4), 2),
                group("audit", Value::Nil, 5),
            ]),
        );
        assert_eq!(
            sums,
            vec![
                ResultsGroup {
                    name: "crm".into(),
                    lag: Some(7),
                    pending: 3
                },
                ResultsGroup {
                    name: "audit".into(),
                    lag: None,
                    pending: 5
                },
            ]
        );
    }

    #[test]
    fn an_entry_id_gives_its_time() {
        assert_eq!(
            id_time_ms(&bulk("1700000000123-4")),
            Some(1_700_000_000_123)
        );
        assert_eq!(id_time_ms(&Value::Nil), None);
        assert_eq!(id_time_ms(&bulk("garbage")), None);
    }
}
