//! Queue depths, read cheaply: a handful of O(1) commands in one pipeline.

use redis::Value;
use tayori_channels::ChannelKind;

use super::{Queue, RedisResult, GROUP};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChannelStats {
    pub channel: String,
    /// Entries in the stream (not yet read + read but not acknowledged).
    pub length: u64,
    /// Read by a consumer and not yet acknowledged.
    pub pending: u64,
    /// Not yet read by the group (consumer lag).
    pub lag: u64,
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
    pub dead: u64,
    pub results: u64,
}

impl QueueStats {
    /// True when nothing is queued, in flight or waiting.
    pub fn is_idle(&self) -> bool {
        self.delayed == 0 && self.channels.iter().all(|c| c.length == 0)
    }
}

impl Queue {
    pub async fn stats(&self, kinds: &[ChannelKind]) -> RedisResult<QueueStats> {
        let keys = self.keys();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut pipe = redis::pipe();
        for kind in kinds {
            pipe.cmd("XLEN").arg(keys.jobs(*kind));
        }
        for kind in kinds {
            // XINFO GROUPS fails on a missing key; EXISTS-guarding keeps the pipeline whole.
            pipe.cmd("EVAL")
                .arg("if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('XINFO', 'GROUPS', KEYS[1]) else return {} end")
                .arg(1)
                .arg(keys.jobs(*kind));
        }
        pipe.cmd("ZCARD").arg(keys.delayed());
        pipe.cmd("ZCOUNT")
            .arg(keys.delayed())
            .arg("-inf")
            .arg(now_ms);
        pipe.cmd("XLEN").arg(keys.dead());
        pipe.cmd("XLEN").arg(keys.results());
        let mut c = self.conn();
        let replies: Vec<Value> = pipe.query_async(&mut c).await?;
        let int = |v: &Value| match v {
            Value::Int(n) => (*n).max(0) as u64,
            _ => 0,
        };
        let n = kinds.len();
        let mut stats = QueueStats::default();
        for (i, kind) in kinds.iter().enumerate() {
            let mut ch = ChannelStats {
                channel: kind.to_string(),
                length: int(&replies[i]),
                ..Default::default()
            };
            let mut lag = None;
            if let Value::Array(groups) = &replies[n + i] {
                for g in groups {
                    let fields = group_fields(g);
                    if fields.iter().any(|(k, v)| {
                        k == "name" && matches!(v, Value::BulkString(b) if b == GROUP.as_bytes())
                    }) {
                        for (k, v) in &fields {
                            match k.as_str() {
                                "pending" => ch.pending = int(v),
                                "lag" => lag = matches!(v, Value::Int(_)).then(|| int(v)),
                                "consumers" => ch.consumers = int(v),
                                _ => {}
                            }
                        }
                    }
                }
            }
            // Redis reports no lag once entries were deleted out of order (we delete
            // every finished entry); then the stream holds exactly backlog + pending.
            ch.lag = lag.unwrap_or(ch.length.saturating_sub(ch.pending));
            stats.channels.push(ch);
        }
        stats.delayed = int(&replies[2 * n]);
        stats.delayed_due = int(&replies[2 * n + 1]);
        stats.dead = int(&replies[2 * n + 2]);
        stats.results = int(&replies[2 * n + 3]);
        Ok(stats)
    }
}

impl Queue {
    /// [`Queue::stats`] plus each channel's consumers (with idle times) and pause:
    /// for `tayori stats`, not for the daemon's periodic sampling.
    pub async fn stats_detailed(&self, kinds: &[ChannelKind]) -> RedisResult<QueueStats> {
        let mut stats = self.stats(kinds).await?;
        let keys = self.keys();
        let mut pipe = redis::pipe();
        for kind in kinds {
            pipe.cmd("EVAL")
                .arg("if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1]) else return {} end")
                .arg(1)
                .arg(keys.jobs(*kind))
                .arg(GROUP);
            pipe.cmd("GET").arg(keys.paused(*kind));
            pipe.cmd("PTTL").arg(keys.paused(*kind));
        }
        let mut c = self.conn();
        // A group that does not exist yet makes XINFO CONSUMERS fail: then no consumers.
        let replies: Vec<Value> = match pipe.query_async(&mut c).await {
            Ok(r) => r,
            Err(_) => return Ok(stats),
        };
        for (ch, r) in stats.channels.iter_mut().zip(replies.chunks(3)) {
            if let Value::Array(list) = &r[0] {
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
                    ch.consumer_list.push(ConsumerStats {
                        name,
                        pending: int(get("pending")),
                        idle_ms: int(get("idle")),
                    });
                }
            }
            if let (Value::BulkString(reason), Value::Int(ttl)) = (&r[1], &r[2]) {
                ch.paused = Some(Paused {
                    reason: String::from_utf8_lossy(reason).into_owned(),
                    remaining_ms: (*ttl).max(0) as u64,
                });
            }
        }
        Ok(stats)
    }
}

fn group_fields(v: &Value) -> Vec<(String, Value)> {
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
