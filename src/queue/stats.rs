//! Queue depths, read cheaply: a handful of O(1) commands in one pipeline.

use crate::channel_id::ChannelId;
use redis::Value;

use super::grouped::Grouped;
use super::{Queue, RedisResult, GROUP};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChannelStats {
    pub channel: String,
    /// Entries in the stream (not yet read + read but not acknowledged).
    #[serde(rename = "stream")]
    pub stream_length: u64,
    /// Read by a consumer and not yet acknowledged.
    pub pending: u64,
    /// Not yet read by the group (the group's lag).
    pub backlog: u64,
    pub consumers: u64,
    /// Each consumer (a daemon) and how long since it last read or claimed; filled by
    /// [`Queue::stats_detailed`] only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumer_list: Vec<ConsumerStats>,
    /// Why and for how much longer a daemon has the channel paused; detailed stats only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConsumerStats {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Paused {
    pub reason: String,
    pub remaining_ms: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QueueStats {
    pub channels: Vec<ChannelStats>,
    /// Scheduled jobs and retries waiting in the delayed set.
    pub delayed: u64,
    /// Of those, already due (the mover is behind if this stays high).
    pub delayed_due: u64,
    /// Entries in the dead-letter streams.
    pub dead_letters: u64,
    /// Entries in the results streams.
    pub results: u64,
}

impl QueueStats {
    /// True when nothing is queued, in flight or waiting.
    pub fn is_idle(&self) -> bool {
        self.delayed == 0 && self.channels.iter().all(|c| c.stream_length == 0)
    }
}

impl Queue {
    /// Every channel's backlog and every partition's sets, summed over the
    /// partitions: one pipeline per partition (its keys share a slot), sent at
    /// once.
    pub async fn stats(&self, kinds: &[ChannelId]) -> RedisResult<QueueStats> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut batch = self.batch();
        self.add_stats(&mut batch, kinds, now_ms);
        let replies: Vec<Value> = batch.query(&self.conn()).await?;
        Ok(Self::stats_from(kinds, &replies))
    }

    /// Adds the commands of [`Queue::stats`] to `batch`, for
    /// [`Queue::stats_from`] to read their replies (the first ones, how many is
    /// returned): a caller can send more commands with them in the same round trip.
    pub(super) fn add_stats(&self, batch: &mut Grouped, kinds: &[ChannelId], now_ms: i64) -> usize {
        let keys = self.keys();
        let partitions: Vec<_> = keys.all_partitions().collect();
        for p in &partitions {
            let tag = keys.results(*p);
            for kind in kinds {
                let mut xlen = redis::cmd("XLEN");
                xlen.arg(keys.jobs(*p, *kind));
                batch.add(&tag, xlen);
            }
            for kind in kinds {
                // XINFO GROUPS fails on a missing key; EXISTS-guarding keeps the pipeline whole.
                let mut groups = redis::cmd("EVAL");
                groups.arg("if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('XINFO', 'GROUPS', KEYS[1]) else return {} end")
                    .arg(1)
                    .arg(keys.jobs(*p, *kind));
                batch.add(&tag, groups);
            }
            let mut zcard = redis::cmd("ZCARD");
            zcard.arg(keys.delayed(*p));
            batch.add(&tag, zcard);
            let mut zcount = redis::cmd("ZCOUNT");
            zcount.arg(keys.delayed(*p)).arg("-inf").arg(now_ms);
            batch.add(&tag, zcount);
            let mut dead = redis::cmd("XLEN");
            dead.arg(keys.dead(*p));
            batch.add(&tag, dead);
            let mut results = redis::cmd("XLEN");
            results.arg(keys.results(*p));
            batch.add(&tag, results);
        }
        partitions.len() * (2 * kinds.len() + 4)
    }

    /// [`Queue::stats`] out of the replies to [`Queue::add_stats`]'s commands.
    pub(super) fn stats_from(kinds: &[ChannelId], replies: &[Value]) -> QueueStats {
        let int = |v: &Value| match v {
            Value::Int(n) => (*n).max(0) as u64,
            _ => 0,
        };
        let n = kinds.len();
        let mut stats = QueueStats {
            channels: kinds
                .iter()
                .map(|k| ChannelStats {
                    channel: k.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        for replies in replies.chunks(2 * n + 4) {
            for (i, ch) in stats.channels.iter_mut().enumerate() {
                let length = int(&replies[i]);
                let (mut pending, mut lag, mut consumers) = (0, None, 0);
                if let Value::Array(groups) = &replies[n + i] {
                    for g in groups {
                        let fields = group_fields(g);
                        if fields.iter().any(|(k, v)| {
                            k == "name"
                                && matches!(v, Value::BulkString(b) if b == GROUP.as_bytes())
                        }) {
                            for (k, v) in &fields {
                                match k.as_str() {
                                    "pending" => pending = int(v),
                                    "lag" => lag = matches!(v, Value::Int(_)).then(|| int(v)),
                                    "consumers" => consumers = int(v),
                                    _ => {}
                                }
                            }
                        }
                    }
                }
                ch.stream_length += length;
                ch.pending += pending;
                // Redis reports no lag once entries were deleted out of order (we
                // delete every finished entry); then the stream holds exactly
                // backlog + pending.
                ch.backlog += lag.unwrap_or(length.saturating_sub(pending));
                // The same daemons read every partition: not a sum.
                ch.consumers = ch.consumers.max(consumers);
            }
            stats.delayed += int(&replies[2 * n]);
            stats.delayed_due += int(&replies[2 * n + 1]);
            stats.dead_letters += int(&replies[2 * n + 2]);
            stats.results += int(&replies[2 * n + 3]);
        }
        stats
    }
}

impl Queue {
    /// [`Queue::stats`] plus each channel's consumers (with idle times, their
    /// pending summed over the partitions) and pause: for `tayori stats`, not
    /// for the daemon's periodic sampling.
    pub async fn stats_detailed(&self, kinds: &[ChannelId]) -> RedisResult<QueueStats> {
        let mut stats = self.stats(kinds).await?;
        let keys = self.keys();
        let mut batch = self.batch();
        for kind in kinds {
            for p in keys.all_partitions() {
                let stream = keys.jobs(p, *kind);
                let mut consumers = redis::cmd("EVAL");
                consumers.arg("if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1]) else return {} end")
                    .arg(1)
                    .arg(&stream)
                    .arg(GROUP);
                batch.add(&stream, consumers);
            }
            let paused = keys.paused(*kind);
            let mut get = redis::cmd("GET");
            get.arg(&paused);
            batch.add(&paused, get);
            let mut pttl = redis::cmd("PTTL");
            pttl.arg(&paused);
            batch.add(&paused, pttl);
        }
        // A group that does not exist yet makes XINFO CONSUMERS fail: then no consumers.
        let replies: Vec<Value> = match batch.query(&self.conn()).await {
            Ok(r) => r,
            Err(_) => return Ok(stats),
        };
        let per_channel = keys.partitions() as usize + 2;
        for (ch, r) in stats.channels.iter_mut().zip(replies.chunks(per_channel)) {
            let (lists, pause) = r.split_at(per_channel - 2);
            for list in lists {
                let Value::Array(list) = list else { continue };
                for consumer in list {
                    let fields = group_fields(consumer);
                    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                    let int = |v: Option<&Value>| match v {
                        Some(Value::Int(n)) => (*n).max(0) as u64,
                        _ => 0,
                    };
                    let name = match get("name") {
                        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                        Some(Value::SimpleString(s)) => s.clone(),
                        _ => continue,
                    };
                    let (pending, idle_ms) = (int(get("pending")), int(get("idle")));
                    match ch.consumer_list.iter_mut().find(|c| c.name == name) {
                        Some(c) => {
                            c.pending += pending;
                            c.idle_ms = c.idle_ms.min(idle_ms);
                        }
                        None => ch.consumer_list.push(ConsumerStats {
                            name,
                            pending,
                            idle_ms,
                        }),
                    }
                }
            }
            if let (Value::BulkString(reason), Value::Int(ttl)) = (&pause[0], &pause[1]) {
                ch.paused = Some(Paused {
                    reason: String::from_utf8_lossy(reason).into_owned(),
                    remaining_ms: (*ttl).max(0) as u64,
                });
            }
        }
        Ok(stats)
    }
}

pub(super) fn group_fields(v: &Value) -> Vec<(String, Value)> {
    let flat: Vec<Value> = match v {
        Value::Array(a) => a.clone(),
        Value::Map(m) => m.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect(),
        _ => return Vec::new(),
    };
    flat.chunks(2)
        .filter_map(|c| match c {
            [Value::BulkString(k), v] => Some((String::from_utf8_lossy(k).into_owned(), v.clone())),
            [Value::SimpleString(k), v] => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}
