//! The Redis side of Tayori: job streams, the results streams, the delayed
//! sets, dead letters and deduplication claims, over every partition. Key names
//! and which keys share a slot: [`crate::keys`].
//!
//! Entries Tayori itself writes back to a job stream (retries, fallbacks,
//! re-driven dead letters) carry routing fields beside `job`: `attempt`,
//! `origin`, `first_at`, `hop`. A CRM only ever writes `job`.

mod account;
mod cancels;
pub mod claims;
mod entry;
mod grouped;
mod monitor;
mod recent;
mod retention;
mod schema;
mod stats;

pub use entry::{Entry, Routing};
pub use grouped::Grouped;
pub use monitor::{OldestPending, ResultsGroup, Sample};
pub use retention::{Trimmed, HELD_BACK_COUNT_CAP};
pub use schema::SchemaError;
pub use stats::{ChannelStats, QueueStats};

use std::time::Duration;

use crate::channel_id::ChannelId;
use crate::keys::{Keys, Partition};
use crate::redis_connection::{RedisConnection, RedisTarget};
use redis::{AsyncCommands, Script, Value};

/// The consumer group every daemon joins.
pub const GROUP: &str = "tayori";

pub type RedisResult<T> = Result<T, redis::RedisError>;

/// Where an outcome appends an entry, in the job's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendTo {
    /// The dead letters.
    Dead,
    /// A channel's job stream (a fallback, a best-channel choice).
    Jobs(ChannelId),
}

/// One step of a job's outcome, applied atomically with its acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Append an event (JSON) to the results stream.
    Event(String),
    /// Append an event only if `event_id` is new to `record`, the job's record
    /// of event ids written (a hash, `Keys::emitted`, the job's partition): the
    /// events of a dead letter and of a re-driven one (see `worker::outcome`).
    EventOnce {
        record: String,
        event_id: String,
        json: String,
    },
    /// Drop that record: the re-driven job has ended and cannot come back.
    ForgetEvents { record: String },
    /// Put a job into the delayed set until `due_ms`.
    Delay {
        due_ms: i64,
        channel: ChannelId,
        fields: Vec<(String, String)>,
    },
    /// Append an entry to a stream of the partition (dead letters, the next
    /// channel's jobs).
    Append {
        to: AppendTo,
        fields: Vec<(String, String)>,
    },
    /// Suppress an address on a channel (a hard bounce), unless a newer change
    /// (a re-subscription) is already recorded for it.
    Suppress {
        channel: ChannelId,
        address: String,
        reason: String,
        at_ms: i64,
    },
}

/// The form an address is suppressed under: each channel says (email compares
/// without case and with its domain in IDNA form; see its plugin).
pub fn suppression_key(kind: ChannelId, address: &str) -> std::borrow::Cow<'_, str> {
    match crate::channel::registry::plugin(kind) {
        Some(p) => p.suppression_key(address),
        None => address.trim().into(),
    }
}

/// A job's outcome: the entry to acknowledge and what to record with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The partition and channel of the job stream the entry is in.
    pub partition: Partition,
    pub channel: ChannelId,
    pub id: String,
    pub ops: Vec<Op>,
}

impl Completion {
    /// Whether the job comes back later (a retry, a deferral, a schedule).
    pub fn delays(&self) -> bool {
        self.ops.iter().any(|o| matches!(o, Op::Delay { .. }))
    }
}

/// A job to claim: its id, its origin entry id, and its address on the channel (to
/// check against the suppression list).
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// The partition of the entry.
    pub partition: Partition,
    pub job_id: &'a str,
    /// The job's campaign: a cancel of it is looked up in the same batch.
    pub campaign: Option<&'a str>,
    pub origin: &'a str,
    pub address: Option<&'a str>,
    /// The entry's id when it was delivered before: its starts are counted.
    pub redelivered: Option<&'a str>,
}

/// The batch check's answer for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub claim: Claim,
    /// How many workers have started on this entry, this one included: 1 for a
    /// first delivery. Unlike the stream's delivery count, a takeover by a daemon
    /// that died before it got to the entry does not count, so a crash loop does
    /// not make innocent jobs look like ones that kill their worker.
    pub starts: u32,
    /// Why the address is suppressed on this channel, if it is.
    pub suppressed: Option<String>,
    /// The cancel that stops the job (its own, or its campaign's), if one does.
    pub cancelled: Option<crate::cancel::Applied>,
}

pub use crate::event::Reaction;
pub use crate::redis_connection::Durability;

/// Reactions recorded in Redis, each deduplicated for `window`: what webhook
/// routes and `tayori bounce` record through.
pub struct ReactionRecorder<'a> {
    pub queue: &'a Queue,
    pub window: Duration,
}

#[async_trait::async_trait]
impl crate::channel::inbound::Recorder for ReactionRecorder<'_> {
    async fn record(
        &self,
        reaction: &Reaction<'_>,
    ) -> Result<bool, crate::channel::inbound::RecordError> {
        self.queue
            .record_reaction(reaction, self.window)
            .await
            .map_err(|e| crate::channel::inbound::RecordError(e.to_string()))
    }

    async fn verp_job(
        &self,
        token: &str,
    ) -> Result<Option<String>, crate::channel::inbound::RecordError> {
        self.queue
            .verp_job(token)
            .await
            .map_err(|e| crate::channel::inbound::RecordError(e.to_string()))
    }

    async fn line_tag_job(
        &self,
        tag: &str,
    ) -> Result<Option<String>, crate::channel::inbound::RecordError> {
        self.queue
            .line_tag_job(tag)
            .await
            .map_err(|e| crate::channel::inbound::RecordError(e.to_string()))
    }
}

impl From<crate::event::Event> for Op {
    fn from(e: crate::event::Event) -> Self {
        Op::Event(e.to_json())
    }
}

/// What a deduplication claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time this id is seen, or a redelivery of the same job: go on.
    Mine,
    /// Another job with this id was claimed earlier: do not send.
    Duplicate,
}

/// Connection to Redis plus the scripts. Cheap to clone (the connection is multiplexed).
#[derive(Clone)]
pub struct Queue {
    conn: RedisConnection,
    keys: Keys,
    finish: Script,
    suppress: Script,
    move_due: Script,
    reaction: Script,
    lease: Script,
    trim_results: Script,
    /// The dedupe claims' scripts (`claims.rs`).
    claims: claims::Claims,
    /// Link and VERP buckets given their expiry, content records written.
    recent: std::sync::Arc<recent::RecentWrites>,
    /// `redis.wait_replicas` and `redis.wait_timeout`: replicas that must have a
    /// write before it counts as recorded (0: none asked).
    wait: Durability,
}

pub use crate::tracking::VERP_RECORD_TTL;

/// How long a LINE delivery tag's job id is kept. LINE sends the delivery
/// event when the message reaches the phone (seconds, or when a phone that was
/// off comes back); a week covers a phone off over a holiday. A key takes 168
/// bytes (`MEMORY USAGE`, Redis 7.0, a 19-byte job id; 456 for a 256-byte
/// one): a million notification messages a week keep ~170 MB.
pub const DELIVERY_TAG_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often a campaign URL's content record is rewritten while its links
/// are made (each write renews its expiry).
const CONTENT_REWRITE: Duration = Duration::from_secs(60);

/// Reply timeout for ordinary commands (redis-rs's default of 500 ms is too
/// tight for a big scripted batch on a busy server).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a self-reconnecting connection. `reply_timeout` must exceed any BLOCK
/// used on it: blocking readers get their own connection with a longer one.
pub async fn connect(
    target: &RedisTarget,
    reply_timeout: Duration,
) -> RedisResult<RedisConnection> {
    target.connect(reply_timeout).await
}

impl Queue {
    pub async fn connect(target: &RedisTarget, keys: Keys) -> RedisResult<Queue> {
        let conn = connect(target, REPLY_TIMEOUT).await?;
        Ok(Queue {
            conn,
            claims: claims::Claims::new(keys.clone()),
            recent: Default::default(),
            keys,
            finish: Script::new(include_str!("finish.lua")),
            suppress: Script::new(include_str!("suppress.lua")),
            move_due: Script::new(include_str!("move_due.lua")),
            reaction: Script::new(include_str!("reaction.lua")),
            lease: Script::new(include_str!("lease.lua")),
            trim_results: Script::new(include_str!("trim_results.lua")),
            wait: Durability::default(),
        })
    }

    /// Waits for `d.replicas` replicas after each finish batch, reaction and event.
    pub fn with_durability(mut self, d: Durability) -> Queue {
        self.wait = d;
        self
    }

    /// The same queue on a connection of its own (opened on first use). Writers
    /// that `WAIT` for replicas get one: `WAIT` blocks its connection for up to
    /// `redis.wait_timeout`, which on the shared connection would hold up every
    /// claim and read behind it. Measured with no replica to answer: all on one
    /// connection, 14 jobs/s (`wait_timeout = "1s"`, after a failover); writers on
    /// their own, 5,000 file-transport emails drained at 1,160 jobs/s
    /// (`wait_timeout = "100ms"`, debug build) against 789 without WAIT.
    pub fn with_own_connection(&self) -> Queue {
        Queue {
            conn: self.conn.detached(),
            ..self.clone()
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The dedupe claims' scripts (the API's adds claim with them too).
    pub fn claims(&self) -> &claims::Claims {
        &self.claims
    }

    pub fn conn(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// A batch for this connection: one pipeline per slot on a cluster, one
    /// pipeline in all on a single server.
    pub fn batch(&self) -> Grouped {
        Grouped::new(self.conn.is_cluster())
    }

    pub async fn ping(&self) -> RedisResult<()> {
        let mut c = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut c).await
    }

    /// The partitions one blocking read may cover: all of them on a single
    /// server (one `XREADGROUP` names every partition's stream), one each on a
    /// cluster (streams of different slots cannot be read in one call).
    pub fn read_groups(&self) -> Vec<Vec<Partition>> {
        if self.conn.is_cluster() {
            self.keys.all_partitions().map(|p| vec![p]).collect()
        } else {
            vec![self.keys.all_partitions().collect()]
        }
    }

    /// Creates the consumer group on every partition's job stream of a channel
    /// if it does not exist. It starts at `0` so jobs enqueued before the first
    /// daemon started are processed.
    pub async fn ensure_group(&self, kind: ChannelId) -> RedisResult<()> {
        for p in self.keys.all_partitions() {
            let mut c = self.conn.clone();
            let r: RedisResult<()> = c
                .xgroup_create_mkstream(self.keys.jobs(p, kind), GROUP, "0")
                .await;
            match r {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Reads up to `count` new entries per stream of `partitions` for
    /// `consumer`, waiting up to `block`. `conn` must be a connection of its own
    /// (see [`connect`]); on a cluster `partitions` must be one partition.
    pub async fn read(
        &self,
        conn: &mut RedisConnection,
        partitions: &[Partition],
        kind: ChannelId,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> RedisResult<Vec<Entry>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS");
        for p in partitions {
            cmd.arg(self.keys.jobs(*p, kind));
        }
        for _ in partitions {
            cmd.arg(">");
        }
        let reply: Value = cmd.query_async(conn).await?;
        let mut entries = Vec::new();
        let mut add = |name: Value, list: Value| {
            let p = match &name {
                Value::BulkString(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| self.keys.partition_of_stream(s)),
                _ => None,
            };
            // Only streams this call named can answer; a name not of this
            // layout cannot, but is never guessed at.
            if let Some(p) = p.or_else(|| (partitions.len() == 1).then(|| partitions[0])) {
                entry::parse_entries(list, p, 1, &mut entries);
            }
        };
        match reply {
            Value::Array(streams) | Value::Set(streams) => {
                for stream in streams {
                    match stream {
                        Value::Array(mut pair) if pair.len() == 2 => {
                            let list = pair.swap_remove(1);
                            let name = pair.swap_remove(0);
                            add(name, list);
                        }
                        Value::Map(pairs) => {
                            for (name, list) in pairs {
                                add(name, list);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Value::Map(pairs) => {
                for (name, list) in pairs {
                    add(name, list);
                }
            }
            _ => {}
        }
        Ok(entries)
    }

    /// Takes over entries of one partition's stream that other consumers have
    /// held for longer than `min_idle` (XAUTOCLAIM) and reports how often each
    /// has been delivered. `cursor` carries XAUTOCLAIM's position from one call
    /// to the next (start with `0-0`): Redis scans only about 10 × COUNT pending
    /// entries per call, so always starting over could leave a dead consumer's
    /// entries behind live ones forever.
    pub async fn reclaim(
        &self,
        p: Partition,
        kind: ChannelId,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        cursor: &mut String,
    ) -> RedisResult<Vec<Entry>> {
        let mut c = self.conn.clone();
        let stream = self.keys.jobs(p, kind);
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(count)
            .query_async(&mut c)
            .await?;
        let mut entries = Vec::new();
        if let Value::Array(parts) = reply {
            let mut parts = parts.into_iter();
            if let Some(Value::BulkString(next)) = parts.next() {
                *cursor = String::from_utf8_lossy(&next).into_owned();
            }
            if let Some(list) = parts.next() {
                entry::parse_entries(list, p, 1, &mut entries);
            }
            if let Some(Value::Array(deleted)) = parts.next() {
                if !deleted.is_empty() {
                    // Their outcome can no longer be recorded: someone trimmed the stream.
                    tracing::warn!(
                        stream = %stream,
                        count = deleted.len(),
                        "pending jobs were deleted from the stream before they finished (never trim job streams)"
                    );
                }
            }
        }
        if entries.is_empty() {
            return Ok(entries);
        }
        // XAUTOCLAIM does not say how often an entry was delivered; XPENDING does.
        let first = entries.first().map(|e| e.id.clone()).unwrap_or_default();
        let last = entries.last().map(|e| e.id.clone()).unwrap_or_default();
        let pending: Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(GROUP)
            .arg(&first)
            .arg(&last)
            .arg(entries.len() * 2)
            .arg(consumer)
            .query_async(&mut c)
            .await?;
        let mut counts = std::collections::HashMap::new();
        if let Value::Array(rows) = pending {
            for row in rows {
                if let Value::Array(f) = row {
                    if let (Some(Value::BulkString(id)), Some(Value::Int(n))) =
                        (f.first(), f.get(3))
                    {
                        counts.insert(String::from_utf8_lossy(id).into_owned(), *n as u32);
                    }
                }
            }
        }
        for e in &mut entries {
            e.deliveries = counts.get(&e.id).copied().unwrap_or(2);
        }
        Ok(entries)
    }

    /// Resets the idle time of entries this consumer is still working on, so a
    /// slow send is not mistaken for a dead consumer's and processed twice.
    pub async fn heartbeat(
        &self,
        kind: ChannelId,
        consumer: &str,
        held: &[(Partition, String)],
    ) -> RedisResult<()> {
        if held.is_empty() {
            return Ok(());
        }
        let mut by_partition: std::collections::BTreeMap<Partition, Vec<&str>> =
            std::collections::BTreeMap::new();
        for (p, id) in held {
            by_partition.entry(*p).or_default().push(id);
        }
        let mut batch = self.batch();
        for (p, ids) in by_partition {
            let stream = self.keys.jobs(p, kind);
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(0)
                .arg(ids)
                .arg("JUSTID");
            batch.add_ignored(&stream, cmd);
        }
        batch.query(&self.conn).await.map(drop)
    }

    /// Removes consumers of earlier processes that hold nothing and have been
    /// idle longer than `idle`, on every partition's stream of a channel, so
    /// `stats` and XINFO stay readable. Returns how many.
    pub async fn prune_consumers(
        &self,
        kind: ChannelId,
        me: &str,
        idle: Duration,
    ) -> RedisResult<usize> {
        let mut removed = 0;
        for p in self.keys.all_partitions() {
            removed += self
                .prune_consumers_of(&self.keys.jobs(p, kind), me, idle)
                .await?;
        }
        Ok(removed)
    }

    async fn prune_consumers_of(
        &self,
        stream: &str,
        me: &str,
        idle: Duration,
    ) -> RedisResult<usize> {
        let mut c = self.conn.clone();
        let reply: RedisResult<Value> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(GROUP)
            .query_async(&mut c)
            .await;
        let consumers = match reply {
            Ok(Value::Array(consumers)) => consumers,
            Ok(_) => return Ok(0),
            // A partition nobody has read yet has no group.
            Err(e) if e.code() == Some("NOGROUP") => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for consumer in consumers {
            let fields: Vec<(String, Value)> = match consumer {
                Value::Array(flat) => flat
                    .chunks(2)
                    .filter_map(|kv| match kv {
                        [Value::BulkString(k), v] => {
                            Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                        }
                        _ => None,
                    })
                    .collect(),
                Value::Map(m) => m
                    .into_iter()
                    .filter_map(|(k, v)| match k {
                        Value::BulkString(k) => Some((String::from_utf8_lossy(&k).into_owned(), v)),
                        _ => None,
                    })
                    .collect(),
                _ => continue,
            };
            let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
            let name = match get("name") {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                _ => continue,
            };
            let pending = matches!(get("pending"), Some(Value::Int(0)));
            let idle_ms = match get("idle") {
                Some(Value::Int(n)) => n,
                _ => 0,
            };
            if name != me && pending && idle_ms as u128 > idle.as_millis() {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(stream)
                    .arg(GROUP)
                    .arg(&name)
                    .query_async(&mut c)
                    .await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Claims job ids for deduplication and looks up suppressions and cancels,
    /// for a whole batch in one round trip (one per slot on a cluster: a claim lives in its
    /// job id's partition, a suppression in its address's). The origin (the
    /// entry id a job first arrived as) lets a retry, a fallback or a
    /// redelivery of the same job through while stopping a second job that
    /// reuses the id.
    pub async fn claim(
        &self,
        kind: ChannelId,
        claims: &[ClaimRequest<'_>],
        window: Duration,
    ) -> RedisResult<Vec<Checked>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = self.batch();
        for c in claims {
            if let Some(address) = c.address {
                let address = suppression_key(kind, address);
                let hash = self.keys.suppressed(kind, &address);
                let mut get = redis::cmd("HGET");
                get.arg(&hash).arg(address.as_ref());
                batch.add(&hash, get);
            }
            if let Some(entry_id) = c.redelivered {
                let key = self.keys.starts(c.partition, kind, entry_id);
                let mut incr = redis::cmd("INCR");
                incr.arg(&key);
                batch.add(&key, incr);
                let mut expire = redis::cmd("PEXPIRE");
                expire.arg(&key).arg(window.as_millis().max(1) as u64);
                batch.add_ignored(&key, expire);
            }
        }
        // The claims: one script per partition of the job ids (claims.rs).
        let mut by_partition: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, c) in claims.iter().enumerate() {
            let prefix = self.claims.prefix_of(c.job_id, window);
            match by_partition.iter_mut().find(|(p, _)| *p == prefix) {
                Some((_, members)) => members.push(i),
                None => by_partition.push((prefix, vec![i])),
            }
        }
        for (prefix, members) in &by_partition {
            let args: Vec<claims::ClaimArgs> = members
                .iter()
                .map(|&i| claims::ClaimArgs {
                    job_id: claims[i].job_id,
                    origin: claims[i].origin,
                })
                .collect();
            batch.add(prefix, self.claims.claim_batch(prefix, &args, window));
        }
        // Every cancel field any job of the batch could be stopped by, once:
        // one HMGET of a hash that is empty unless an operator cancelled.
        let job_fields: Vec<Vec<String>> = claims
            .iter()
            .map(|c| crate::cancel::fields_for(c.job_id, c.campaign, kind))
            .collect();
        let mut cancel_fields: Vec<&str> =
            job_fields.iter().flatten().map(String::as_str).collect();
        cancel_fields.sort_unstable();
        cancel_fields.dedup();
        let cancels_key = self.keys.cancels();
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(&cancels_key).arg(&cancel_fields);
        batch.add(&cancels_key, hmget);
        let mut replies = batch.query(&self.conn).await?;
        let found: std::collections::HashMap<&str, crate::cancel::Cancel> = match replies.pop() {
            Some(Value::Array(values)) => cancel_fields
                .iter()
                .zip(values)
                .filter_map(|(f, v)| match v {
                    Value::BulkString(b) => Some((*f, crate::cancel::Cancel::from_json(&b)?)),
                    _ => None,
                })
                .collect(),
            _ => Default::default(),
        };
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut job_fields = job_fields.iter();
        // The scripts' answers, back in the claims' order.
        let scripts = replies.split_off(replies.len() - by_partition.len());
        let mut answers = vec![Value::Nil; claims.len()];
        for ((_, members), reply) in by_partition.iter().zip(scripts) {
            let Value::Array(items) = reply else {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "claim script answered with no list",
                )));
            };
            for (&i, item) in members.iter().zip(items) {
                answers[i] = item;
            }
        }
        let mut answers = answers.into_iter();
        let mut replies = replies.into_iter();
        let text = |v: Option<Value>| match v {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        };
        Ok(claims
            .iter()
            .map(|c| {
                let claim = match answers
                    .next()
                    .and_then(|a| claims::first_claim(&a, c.origin))
                {
                    None => Claim::Mine,
                    Some(_) => Claim::Duplicate,
                };
                let suppressed = if c.address.is_some() {
                    text(replies.next())
                } else {
                    None
                };
                let starts = match c.redelivered.and_then(|_| replies.next()) {
                    Some(Value::Int(n)) => u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1),
                    _ => 1,
                };
                let cancelled = job_fields.next().and_then(|fields| {
                    let found = fields.iter().map(|f| (f.as_str(), found.get(f.as_str())));
                    crate::cancel::first_active(found, now_ms)
                });
                Checked {
                    claim,
                    starts,
                    suppressed,
                    cancelled,
                }
            })
            .collect())
    }

    /// Marks an address as suppressed on a channel (`reason`: blocked, unsubscribed,
    /// bounced), or lifts it (`None`).
    pub async fn set_suppressed(
        &self,
        kind: ChannelId,
        address: &str,
        reason: Option<&str>,
    ) -> RedisResult<()> {
        let mut c = self.conn.clone();
        let address = suppression_key(kind, address);
        let hash = self.keys.suppressed(kind, &address);
        match reason {
            Some(r) => c.hset::<_, _, _, ()>(hash, address.as_ref(), r).await,
            None => c.hdel::<_, _, ()>(hash, address.as_ref()).await,
        }
    }

    /// Why each (channel, address) is suppressed, if it is: one round trip.
    pub async fn suppressed_many(
        &self,
        lookups: &[(ChannelId, String)],
    ) -> RedisResult<Vec<Option<String>>> {
        if lookups.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = self.batch();
        for (kind, address) in lookups {
            let address = suppression_key(*kind, address);
            let hash = self.keys.suppressed(*kind, &address);
            let mut get = redis::cmd("HGET");
            get.arg(&hash).arg(address.as_ref());
            batch.add(&hash, get);
        }
        batch
            .query(&self.conn)
            .await?
            .into_iter()
            .map(|v| redis::from_redis_value(v).map_err(redis::RedisError::from))
            .collect()
    }

    /// Stores what a message needs before it is sent, in one round trip: short
    /// links (a field in a bucket hash, and the link's content) for `link_ttl`,
    /// a VERP token's job id for [`VERP_RECORD_TTL`], a LINE delivery tag's for
    /// [`DELIVERY_TAG_TTL`]. A bucket's EXPIRE is renewed by each record written
    /// to it: it lives as long as its last record (at most
    /// [`crate::tracking::BUCKET_OPEN_FOR`] past its first's).
    pub async fn store_records(&self, records: &crate::tracking::Records) -> RedisResult<()> {
        use crate::tracking::token;
        let link_ttl = records.link_ttl;
        let mut batch = self.batch();
        let open_for = crate::tracking::BUCKET_OPEN_FOR;
        // A bucket is filled for at most `open_for` after its first record, so
        // one expiry then, `open_for` longer, outlives every record in it.
        let bucket_ttl = |ttl: Duration| (ttl + open_for).as_millis() as u64;
        let mut written = Vec::new();
        for l in &records.short_links {
            let key = self.keys.link_bucket(&token::link_bucket_name(l.bucket));
            let mut set = redis::cmd("HSET");
            set.arg(&key).arg(&l.field[..]).arg(&l.record[..]);
            batch.add_ignored(&key, set);
            if !self.recent.fresh(&key, open_for) {
                // PEXPIRE: the command the documented ACL already grants (docs/security.md).
                let mut expire = redis::cmd("PEXPIRE");
                expire.arg(&key).arg(bucket_ttl(link_ttl));
                batch.add_ignored(&key, expire);
                written.push(key);
            }
            // The content outlives each record that names it: rewritten with
            // `open_for` to spare at least once a minute while the campaign sends.
            let key = self
                .keys
                .link_content(&token::content_ref_name(&l.content_ref));
            if !self.recent.fresh(&key, CONTENT_REWRITE) {
                let mut set = redis::cmd("SET");
                set.arg(&key)
                    .arg(&l.content)
                    .arg("EX")
                    .arg((link_ttl + open_for).as_secs().max(1));
                batch.add_ignored(&key, set);
                written.push(key);
            }
        }
        if let Some(v) = &records.verp {
            let key = self.keys.verp_bucket(&token::verp_bucket_name(v.bucket));
            let mut job_id = Vec::with_capacity(v.job_id.len() + 1);
            token::pack_id(&mut job_id, Some(&v.job_id));
            let mut set = redis::cmd("HSET");
            set.arg(&key).arg(&v.tag[..]).arg(job_id);
            batch.add_ignored(&key, set);
            if !self.recent.fresh(&key, open_for) {
                let mut expire = redis::cmd("PEXPIRE");
                expire.arg(&key).arg(bucket_ttl(VERP_RECORD_TTL));
                batch.add_ignored(&key, expire);
                written.push(key);
            }
        }
        if let Some(t) = &records.delivery_tag {
            let key = self.keys.line_delivery_tag(&t.tag);
            let mut set = redis::cmd("SET");
            set.arg(&key)
                .arg(&t.job_id)
                .arg("EX")
                .arg(DELIVERY_TAG_TTL.as_secs());
            batch.add_ignored(&key, set);
        }
        if batch.is_empty() {
            return Ok(());
        }
        batch.query(&self.conn).await?;
        self.recent.mark(written);
        Ok(())
    }

    /// The job id behind a LINE notification message's delivery tag, if still kept.
    pub async fn line_tag_job(&self, tag: &str) -> RedisResult<Option<String>> {
        self.conn
            .clone()
            .get(self.keys.line_delivery_tag(tag))
            .await
    }

    /// The job id stored under a VERP token's lookup key
    /// ([`Sealer::stored_verp_key`](crate::tracking::Sealer::stored_verp_key)),
    /// if it is still kept: in its bucket, or under a key of its own (tokens
    /// made before buckets).
    pub async fn verp_job(&self, token: &str) -> RedisResult<Option<String>> {
        use crate::tracking::token;
        let Some((bucket, tag)) = crate::tracking::Sealer::verp_bucket(token) else {
            return self.conn.clone().get(self.keys.verp(token)).await;
        };
        let key = self.keys.verp_bucket(&token::verp_bucket_name(bucket));
        let packed: Option<Vec<u8>> = self.conn.clone().hget(key, &tag[..]).await?;
        Ok(packed.and_then(|p| token::unpack_id(&mut p.as_slice()).flatten()))
    }

    /// The sealed click token behind a short link's code of the form before
    /// buckets (11 characters), if it is still kept.
    pub async fn short_link(&self, code: &str) -> RedisResult<Option<String>> {
        self.conn.clone().get(self.keys.short_link(code)).await
    }

    /// A bucketed short link's record, if it is still kept.
    pub async fn link_record(
        &self,
        bucket: [u8; crate::tracking::token::LINK_BUCKET_LEN],
        field: [u8; crate::tracking::token::LINK_FIELD_LEN],
    ) -> RedisResult<Option<Vec<u8>>> {
        let key = self
            .keys
            .link_bucket(&crate::tracking::token::link_bucket_name(bucket));
        self.conn.clone().hget(key, &field[..]).await
    }

    /// A link's content (a sealed click token without recipient), if still kept.
    pub async fn link_content(&self, content_ref: &[u8]) -> RedisResult<Option<String>> {
        let key = self
            .keys
            .link_content(&crate::tracking::token::content_ref_name(content_ref));
        self.conn.clone().get(key).await
    }

    /// Takes or renews the lease `key` (from [`Keys`]) for `holder`: true while
    /// `holder` has it. A lease its holder stops renewing lapses after `ttl`.
    pub async fn hold_lease(&self, key: &str, holder: &str, ttl: Duration) -> RedisResult<bool> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: i64 = self
            .lease
            .key(key)
            .arg(holder)
            .arg(ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(held == 1)
    }

    /// Sets a pause key (value: the reason; it expires after `wait`).
    pub async fn set_pause_key(&self, key: &str, reason: &str, wait: Duration) -> RedisResult<()> {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(key)
            .arg(reason)
            .arg("PX")
            .arg(ms)
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Publishes a channel pause (reason, until it expires) for `tayori stats`.
    pub async fn record_pause(
        &self,
        kind: ChannelId,
        reason: &str,
        wait: Duration,
    ) -> RedisResult<()> {
        self.set_pause_key(&self.keys.paused(kind), reason, wait)
            .await
    }

    /// Ends a channel's pause early, if it is still the one for `reason`.
    pub async fn end_pause(&self, kind: ChannelId, reason: &str) -> RedisResult<()> {
        redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0",
        )
        .key(self.keys.paused(kind))
        .arg(reason)
        .invoke_async::<i64>(&mut self.conn.clone())
        .await
        .map(drop)
    }

    /// Records a provider's webhook event once: deduplicated by its event id,
    /// the suppression change and the event written atomically (in the
    /// address's partition). Returns false for a redelivery already recorded.
    pub async fn record_reaction(&self, r: &Reaction<'_>, window: Duration) -> RedisResult<bool> {
        let address = r.suppress.map(|(k, a, _)| (k, suppression_key(k, a)));
        let keys = self.keys.reaction_keys(
            r.source,
            r.event_id,
            address.as_ref().map(|(k, a)| (*k, a.as_ref())),
        );
        let mut inv = self.reaction.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        inv.arg(window.as_secs().max(1))
            .arg(
                address
                    .as_ref()
                    .map(|(_, a)| a.as_ref())
                    .unwrap_or_default(),
            )
            .arg(
                r.suppress
                    .and_then(|(_, _, reason)| reason)
                    .unwrap_or_default(),
            )
            .arg(r.event.unwrap_or_default())
            .arg(r.at_ms)
            .arg(self.keys.reaction_mark(r.source, r.event_id));
        let mut c = self.conn.clone();
        let fresh: i64 = inv.invoke_async(&mut c).await?;
        // Also after a repeat: the first try's WAIT may have failed.
        self.wait.wait(&mut c, &keys[0], "reaction").await?;
        Ok(fresh == 1)
    }

    /// Records outcomes and acknowledges their entries: first the suppressions
    /// they carry (each in its address's partition, idempotent), then one
    /// atomic script call per partition. Returns how many entries were
    /// acknowledged by this call.
    pub async fn finish(&self, batch: &[Completion]) -> RedisResult<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut c = self.conn.clone();
        for done in batch {
            for op in &done.ops {
                if let Op::Suppress {
                    channel,
                    address,
                    reason,
                    at_ms,
                } = op
                {
                    let address = suppression_key(*channel, address);
                    let [hash, at, _] = self.keys.suppression_keys(*channel, &address);
                    self.suppress
                        .key(&hash)
                        .key(&at)
                        .arg(address.as_ref())
                        .arg(reason)
                        .arg(*at_ms)
                        .invoke_async::<i64>(&mut c)
                        .await?;
                }
            }
        }
        let mut partitions: Vec<Partition> = batch.iter().map(|d| d.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        // One script call per partition (each atomic in its slot), sent at once:
        // on the multiplexed connection they cost one round trip's wait.
        let mut calls = Vec::with_capacity(partitions.len());
        for p in &partitions {
            let p = *p;
            let mut inv = self.finish.prepare_invoke();
            let fixed = self.keys.finish_keys(p, crate::channel::registry::ids());
            // The event-id records come after the fixed keys (one slot: the partition's).
            let mut records: Vec<&str> = Vec::new();
            for done in batch.iter().filter(|d| d.partition == p) {
                for op in &done.ops {
                    if let Op::EventOnce { record, .. } | Op::ForgetEvents { record } = op {
                        if !records.contains(&record.as_str()) {
                            records.push(record);
                        }
                    }
                }
            }
            let record_index = |record: &str| {
                fixed.len()
                    + 1
                    + records
                        .iter()
                        .position(|r| *r == record)
                        .unwrap_or_default()
            };
            for k in &fixed {
                inv.key(k);
            }
            for k in &records {
                inv.key(*k);
            }
            inv.arg(GROUP);
            for done in batch.iter().filter(|d| d.partition == p) {
                inv.arg(stream_index(done.channel)).arg(&done.id).arg(
                    done.ops
                        .iter()
                        .filter(|o| !matches!(o, Op::Suppress { .. }))
                        .count(),
                );
                for op in &done.ops {
                    match op {
                        Op::Event(json) => {
                            inv.arg("E").arg(json);
                        }
                        Op::EventOnce {
                            record,
                            event_id,
                            json,
                        } => {
                            inv.arg("C")
                                .arg(record_index(record))
                                .arg(event_id)
                                .arg(json);
                        }
                        Op::ForgetEvents { record } => {
                            inv.arg("F").arg(record_index(record));
                        }
                        Op::Delay {
                            due_ms,
                            channel,
                            fields,
                        } => {
                            inv.arg("Z")
                                .arg(*due_ms)
                                .arg(delayed_member(*channel, fields));
                        }
                        Op::Append { to, fields } => {
                            let at = match to {
                                AppendTo::Dead => DEAD_INDEX,
                                AppendTo::Jobs(kind) => stream_index(*kind),
                            };
                            inv.arg("X").arg(at).arg(fields.len() * 2);
                            for (k, v) in fields {
                                inv.arg(k).arg(v);
                            }
                        }
                        Op::Suppress { .. } => {}
                    }
                }
            }
            calls.push(inv);
        }
        let acked: Vec<usize> = futures_util::future::try_join_all(calls.iter().map(|inv| {
            let mut c = c.clone();
            async move { inv.invoke_async::<usize>(&mut c).await }
        }))
        .await?;
        // WAIT counts the writes of the connection it is sent on, on one server:
        // once on a single server, once per primary written to on a cluster.
        if self.conn.is_cluster() {
            for p in &partitions {
                self.wait
                    .wait(&mut c, &self.keys.results(*p), "finish")
                    .await?;
            }
        } else if let Some(p) = partitions.first() {
            self.wait
                .wait(&mut c, &self.keys.results(*p), "finish")
                .await?;
        }
        Ok(acked.iter().sum())
    }

    /// Moves up to `limit` due delayed jobs of a partition back to its streams.
    /// Returns how many were handled and the dead-letter ids of members that
    /// could not be moved.
    pub async fn move_due(
        &self,
        p: Partition,
        now_ms: i64,
        limit: usize,
    ) -> RedisResult<(usize, Vec<String>)> {
        let mut c = self.conn.clone();
        let mut inv = self.move_due.prepare_invoke();
        for k in self.keys.move_due_keys(p, crate::channel::registry::ids()) {
            inv.key(k);
        }
        inv.arg(now_ms).arg(limit);
        for kind in crate::channel::registry::ids() {
            inv.arg(kind.as_str());
        }
        let reply: Vec<Value> = inv.invoke_async(&mut c).await?;
        let mut it = reply.into_iter();
        let handled = match it.next() {
            Some(Value::Int(n)) => n.max(0) as usize,
            _ => 0,
        };
        let dead = it
            .filter_map(|v| match v {
                Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            })
            .collect();
        Ok((handled, dead))
    }

    /// Appends an event that belongs to no job (webhook reactions, invalid
    /// entries) to a partition's results.
    pub async fn add_event(&self, p: Partition, json: &str) -> RedisResult<()> {
        let mut c = self.conn.clone();
        let results = self.keys.results(p);
        let _: String = c.xadd(&results, "*", &[("event", json)]).await?;
        self.wait.wait(&mut c, &results, "event").await.map(drop)
    }
}

/// `finish.lua`'s KEYS: results, delayed, dead, then the job streams in
/// registry order (`crate::channel::registry`) (1-based, as Lua counts).
const DEAD_INDEX: usize = 3;

fn stream_index(kind: ChannelId) -> usize {
    4 + crate::channel::registry::ids()
        .position(|k| k == kind)
        .unwrap_or_default()
}

/// The delayed-set member for a job: JSON the mover script can read.
fn delayed_member(channel: ChannelId, fields: &[(String, String)]) -> String {
    let flat: Vec<&str> = fields
        .iter()
        .flat_map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    serde_json::json!({ "c": channel.as_str(), "f": flat }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_suppression_keys_are_lowercase_with_the_domain_as_sent() {
        let key = |a| suppression_key(ChannelId::new("email"), a).into_owned();
        assert_eq!(key(" Taro@Example.COM "), "taro@example.com");
        // A bounce names the punycode form; the job, a token or an operator the Unicode one.
        assert_eq!(key("Taro@例え.jp"), "taro@xn--r8jz45g.jp");
        assert_eq!(key("taro@XN--R8JZ45G.jp"), "taro@xn--r8jz45g.jp");
        // Other channels keep their address as it is (trimmed).
        assert_eq!(
            suppression_key(ChannelId::new("line"), " U4aF ").into_owned(),
            "U4aF"
        );
    }
}
