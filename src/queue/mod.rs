//! The Redis side of Tayori: job streams, the results stream, the delayed set,
//! dead letters and deduplication claims.
//!
//! Keys (with `{p}` the configured prefix):
//!
//! | key              | type       | holds                                            |
//! |------------------|------------|--------------------------------------------------|
//! | `{p}:jobs:{ch}`  | stream     | jobs per channel, consumer group `tayori`        |
//! | `{p}:results`    | stream     | events for the CRM                               |
//! | `{p}:delayed`    | sorted set | scheduled jobs and retries, scored by due time   |
//! | `{p}:dead`       | stream     | jobs that cannot be processed, with the reason   |
//! | `{p}:seen:{id}`  | string     | dedupe claim: the job's origin entry id (TTL)    |
//! | `{p}:suppressed:{ch}` | hash  | address → reason (blocked, unsubscribed, …)       |
//! | `{p}:reaction:{src}:{id}` | string | a webhook event already recorded (TTL)       |
//!
//! Entries Tayori itself writes back to a job stream (retries, fallbacks,
//! re-driven dead letters) carry routing fields beside `job`: `attempt`,
//! `origin`, `first_at`, `hop`. A CRM only ever writes `job`.

mod entry;
mod stats;

pub use entry::{Entry, Routing};
pub use stats::{ChannelStats, QueueStats};

use std::time::Duration;

use crate::redis_connection::{RedisConnection, RedisTarget};
use redis::{AsyncCommands, Script, Value};
use tayori_channels::ChannelKind;

/// The consumer group every daemon joins.
pub const GROUP: &str = "tayori";

pub type RedisResult<T> = Result<T, redis::RedisError>;

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn jobs(&self, kind: ChannelKind) -> String {
        format!("{}:jobs:{kind}", self.prefix)
    }
    pub fn results(&self) -> String {
        format!("{}:results", self.prefix)
    }
    pub fn delayed(&self) -> String {
        format!("{}:delayed", self.prefix)
    }
    pub fn dead(&self) -> String {
        format!("{}:dead", self.prefix)
    }
    pub fn suppressed(&self, kind: ChannelKind) -> String {
        format!("{}:suppressed:{kind}", self.prefix)
    }
    /// Set (with the pause's length as TTL) while a daemon has the channel paused;
    /// the value is the reason. For `tayori stats`.
    pub fn paused(&self, kind: ChannelKind) -> String {
        format!("{}:paused:{kind}", self.prefix)
    }
    /// A short link's sealed click token (SMS), by its code.
    pub fn short_link(&self, code: &str) -> String {
        format!("{}:link:{code}", self.prefix)
    }
    /// A long job id behind a VERP return path's token (`Sealer::stored_verp_token`).
    pub fn verp(&self, token: &str) -> String {
        format!("{}:verp:{token}", self.prefix)
    }
    pub fn seen(&self, job_id: &str) -> String {
        format!("{}:seen:{job_id}", self.prefix)
    }
    /// How many times a redelivered entry got as far as its dedupe claim, i.e.
    /// how many workers started on it (see `Checked::starts`).
    pub fn starts(&self, kind: ChannelKind, entry_id: &str) -> String {
        format!("{}:starts:{kind}:{entry_id}", self.prefix)
    }
}

/// One step of a job's outcome, applied atomically with its acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Append an event (JSON) to the results stream.
    Event(String),
    /// Put a job into the delayed set until `due_ms`.
    Delay {
        due_ms: i64,
        channel: ChannelKind,
        fields: Vec<(String, String)>,
    },
    /// Append an entry to a stream (dead letters, the next channel's jobs).
    Append {
        key: String,
        fields: Vec<(String, String)>,
    },
    /// Suppress an address on a channel (a hard bounce), unless a newer change
    /// (a re-subscription) is already recorded for it.
    Suppress {
        channel: ChannelKind,
        address: String,
        reason: String,
        at_ms: i64,
    },
}

/// The form an address is suppressed under: email addresses compare without case
/// (what a bounce report or a click carries may differ from the job in case), and
/// with an internationalized domain in its IDNA form, the form the mail is sent in
/// (`taro@例え.jp` → `taro@xn--r8jz45g.jp`): a bounce report names the address as
/// sent, an unsubscribe token or an operator as the job had it, and both must hit
/// the same entry.
pub fn suppression_key(kind: ChannelKind, address: &str) -> std::borrow::Cow<'_, str> {
    let address = address.trim();
    match kind {
        ChannelKind::Email => {
            let sent = tayori_channels::email::address::with_ascii_domain(address);
            if sent.bytes().any(|b| b.is_ascii_uppercase()) {
                sent.to_ascii_lowercase().into()
            } else {
                sent
            }
        }
        _ => address.into(),
    }
}

/// A job's outcome: the entry to acknowledge and what to record with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub stream: String,
    pub id: String,
    pub ops: Vec<Op>,
}

/// A job to claim: its id, its origin entry id, and its address on the channel (to
/// check against the suppression list).
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    pub job_id: &'a str,
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
}

/// A provider's report about a recipient (a LINE unfollow, an SMS STOP), recorded once.
#[derive(Debug, Clone, Copy)]
pub struct Reaction<'a> {
    /// `line`, `twilio`, …: with `event_id`, the deduplication key.
    pub source: &'a str,
    pub event_id: &'a str,
    /// `(channel, address, Some(reason))` suppresses, `(…, None)` lifts a suppression.
    pub suppress: Option<(ChannelKind, &'a str, Option<&'a str>)>,
    /// The results-stream event (JSON), if the reaction produces one.
    pub event: Option<&'a str>,
    /// When it happened at the provider (ms): older suppression changes lose to newer ones.
    pub at_ms: i64,
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
    move_due: Script,
    reaction: Script,
    lease: Script,
    results_max_len: u64,
    /// `redis.wait_replicas` and `redis.wait_timeout`: replicas that must have a
    /// write before it counts as recorded (0: none asked).
    wait: Durability,
}

/// How many replicas must acknowledge a write (`WAIT`), and for how long to wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct Durability {
    pub replicas: u32,
    pub timeout: Duration,
}

impl Durability {
    /// `WAIT replicas timeout` on `conn`, after the writes made on it. Fewer
    /// replicas than asked is counted (`tayori_redis_wait_short_total{op}`) and
    /// logged, not an error: the write is on the primary, only not yet on enough
    /// replicas to survive its loss. An error (Redis went away) is returned: the
    /// caller retries its write, which every caller does idempotently.
    /// Returns whether enough replicas have the writes.
    pub async fn wait<C: redis::aio::ConnectionLike>(
        &self,
        conn: &mut C,
        op: &'static str,
    ) -> RedisResult<bool> {
        if self.replicas == 0 {
            return Ok(true);
        }
        let reached: u32 = redis::cmd("WAIT")
            .arg(self.replicas)
            .arg(self.timeout.as_millis().max(1) as u64)
            .query_async(conn)
            .await?;
        if reached < self.replicas {
            metrics::counter!(crate::metrics::REDIS_WAIT_SHORT, "op" => op).increment(1);
            tracing::warn!(
                op,
                asked = self.replicas,
                reached,
                timeout_ms = self.timeout.as_millis() as u64,
                "WAIT reached fewer replicas than redis.wait_replicas: a failover now could lose this write"
            );
        }
        Ok(reached >= self.replicas)
    }
}

/// How long a VERP token's job id is kept: bounce reports come within days (MTAs
/// give up on a message after about 5), late ones within weeks.
pub const VERP_RECORD_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

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
    pub async fn connect(
        target: &RedisTarget,
        prefix: &str,
        results_max_len: u64,
    ) -> RedisResult<Queue> {
        let conn = connect(target, REPLY_TIMEOUT).await?;
        Ok(Queue {
            conn,
            keys: Keys::new(prefix),
            finish: Script::new(include_str!("finish.lua")),
            move_due: Script::new(include_str!("move_due.lua")),
            reaction: Script::new(include_str!("reaction.lua")),
            lease: Script::new(include_str!("lease.lua")),
            results_max_len,
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

    pub fn conn(&self) -> RedisConnection {
        self.conn.clone()
    }

    pub async fn ping(&self) -> RedisResult<()> {
        let mut c = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut c).await
    }

    /// Creates the consumer group on a job stream if it does not exist. It starts
    /// at `0` so jobs enqueued before the first daemon started are processed.
    pub async fn ensure_group(&self, kind: ChannelKind) -> RedisResult<()> {
        let mut c = self.conn.clone();
        let r: RedisResult<()> = c
            .xgroup_create_mkstream(self.keys.jobs(kind), GROUP, "0")
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Reads up to `count` new entries for `consumer`, waiting up to `block`.
    /// `conn` must be a connection of its own (see [`connect`]).
    pub async fn read(
        &self,
        conn: &mut RedisConnection,
        kind: ChannelKind,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> RedisResult<Vec<Entry>> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.keys.jobs(kind))
            .arg(">")
            .query_async(conn)
            .await?;
        let mut entries = Vec::new();
        if let Value::Array(streams) | Value::Set(streams) = reply {
            for stream in streams {
                if let Value::Array(mut pair) = stream {
                    if pair.len() == 2 {
                        entry::parse_entries(pair.swap_remove(1), 1, &mut entries);
                    }
                } else if let Value::Map(pairs) = stream {
                    for (_, v) in pairs {
                        entry::parse_entries(v, 1, &mut entries);
                    }
                }
            }
        } else if let Value::Map(pairs) = reply {
            for (_, v) in pairs {
                entry::parse_entries(v, 1, &mut entries);
            }
        }
        Ok(entries)
    }

    /// Takes over entries other consumers have held for longer than `min_idle`
    /// (XAUTOCLAIM) and reports how often each has been delivered.
    /// `cursor` carries XAUTOCLAIM's position from one call to the next (start with
    /// `0-0`): Redis scans only about 10 × COUNT pending entries per call, so always
    /// starting over could leave a dead consumer's entries behind live ones forever.
    pub async fn reclaim(
        &self,
        kind: ChannelKind,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        cursor: &mut String,
    ) -> RedisResult<Vec<Entry>> {
        let mut c = self.conn.clone();
        let stream = self.keys.jobs(kind);
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
                entry::parse_entries(list, 1, &mut entries);
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
        kind: ChannelKind,
        consumer: &str,
        ids: &[String],
    ) -> RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.conn.clone();
        redis::cmd("XCLAIM")
            .arg(self.keys.jobs(kind))
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async::<()>(&mut c)
            .await
    }

    /// Removes consumers of earlier processes that hold nothing and have been
    /// idle longer than `idle`, so `stats` and XINFO stay readable. Returns how many.
    pub async fn prune_consumers(
        &self,
        kind: ChannelKind,
        me: &str,
        idle: Duration,
    ) -> RedisResult<usize> {
        let mut c = self.conn.clone();
        let stream = self.keys.jobs(kind);
        let reply: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&stream)
            .arg(GROUP)
            .query_async(&mut c)
            .await?;
        let Value::Array(consumers) = reply else {
            return Ok(0);
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
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(&name)
                    .query_async(&mut c)
                    .await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Claims job ids for deduplication and looks up suppressions, for a whole
    /// batch in one round trip. The origin (the entry id a job first arrived as)
    /// lets a retry, a fallback or a redelivery of the same job through while
    /// stopping a second job that reuses the id.
    pub async fn claim(
        &self,
        kind: ChannelKind,
        claims: &[ClaimRequest<'_>],
        window: Duration,
    ) -> RedisResult<Vec<Checked>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let suppressed = self.keys.suppressed(kind);
        let mut pipe = redis::pipe();
        for c in claims {
            pipe.cmd("SET")
                .arg(self.keys.seen(c.job_id))
                .arg(c.origin)
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(window.as_secs().max(1));
            if let Some(address) = c.address {
                pipe.cmd("HGET")
                    .arg(&suppressed)
                    .arg(suppression_key(kind, address).as_ref());
            }
            if let Some(entry_id) = c.redelivered {
                let key = self.keys.starts(kind, entry_id);
                pipe.cmd("INCR").arg(&key);
                pipe.cmd("PEXPIRE")
                    .arg(&key)
                    .arg(window.as_millis().max(1) as u64)
                    .ignore();
            }
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        let mut replies = replies.into_iter();
        let text = |v: Option<Value>| match v {
            Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        };
        Ok(claims
            .iter()
            .map(|c| {
                let claim = match text(replies.next()) {
                    None => Claim::Mine,
                    Some(old) if old == c.origin => Claim::Mine,
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
                Checked {
                    claim,
                    starts,
                    suppressed,
                }
            })
            .collect())
    }

    /// Marks an address as suppressed on a channel (`reason`: blocked, unsubscribed,
    /// bounced), or lifts it (`None`).
    pub async fn set_suppressed(
        &self,
        kind: ChannelKind,
        address: &str,
        reason: Option<&str>,
    ) -> RedisResult<()> {
        let mut c = self.conn.clone();
        let address = suppression_key(kind, address);
        match reason {
            Some(r) => {
                c.hset::<_, _, _, ()>(self.keys.suppressed(kind), address.as_ref(), r)
                    .await
            }
            None => {
                c.hdel::<_, _, ()>(self.keys.suppressed(kind), address.as_ref())
                    .await
            }
        }
    }

    /// Why each (channel, address) is suppressed, if it is: one round trip.
    pub async fn suppressed_many(
        &self,
        lookups: &[(ChannelKind, String)],
    ) -> RedisResult<Vec<Option<String>>> {
        if lookups.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (kind, address) in lookups {
            pipe.hget(
                self.keys.suppressed(*kind),
                suppression_key(*kind, address).as_ref(),
            );
        }
        pipe.query_async(&mut self.conn.clone()).await
    }

    /// Stores what a message needs before it is sent, in one round trip: short
    /// links (code → sealed click token) for `link_ttl`, and a VERP token's job id
    /// for [`VERP_RECORD_TTL`].
    pub async fn store_records(
        &self,
        records: &crate::tracking::Records,
        link_ttl: Duration,
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        let secs = link_ttl.as_secs().max(1);
        for l in &records.short_links {
            pipe.set_ex(self.keys.short_link(&l.code), &l.token, secs)
                .ignore();
        }
        if let Some(v) = &records.verp {
            pipe.set_ex(
                self.keys.verp(&v.token),
                &v.job_id,
                VERP_RECORD_TTL.as_secs(),
            )
            .ignore();
        }
        pipe.query_async(&mut self.conn.clone()).await
    }

    /// The job id stored under a VERP token, if it is still kept.
    pub async fn verp_job(&self, token: &str) -> RedisResult<Option<String>> {
        self.conn.clone().get(self.keys.verp(token)).await
    }

    /// The sealed click token behind a short link's code, if it is still kept.
    pub async fn short_link(&self, code: &str) -> RedisResult<Option<String>> {
        self.conn.clone().get(self.keys.short_link(code)).await
    }

    /// Takes or renews the lease `{prefix}:lease:{name}` for `holder`: true while
    /// `holder` has it. A lease its holder stops renewing lapses after `ttl`.
    pub async fn hold_lease(&self, name: &str, holder: &str, ttl: Duration) -> RedisResult<bool> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: i64 = self
            .lease
            .key(format!("{}:lease:{name}", self.keys.prefix()))
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
        kind: ChannelKind,
        reason: &str,
        wait: Duration,
    ) -> RedisResult<()> {
        let mut c = self.conn.clone();
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(self.keys.paused(kind))
            .arg(reason)
            .arg("PX")
            .arg(ms)
            .query_async(&mut c)
            .await
    }

    /// Records a LINE webhook event once: deduplicated by its `webhookEventId`,
    /// the suppression change and the event written atomically. Returns false
    /// for a redelivery already recorded.
    pub async fn record_reaction(&self, r: &Reaction<'_>, window: Duration) -> RedisResult<bool> {
        let mut inv = self.reaction.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(format!(
                "{}:reaction:{}:{}",
                self.keys.prefix(),
                r.source,
                r.event_id
            ))
            .arg(window.as_secs().max(1))
            .arg(
                r.suppress
                    .map(|(k, _, _)| self.keys.suppressed(k))
                    .unwrap_or_default(),
            )
            .arg(
                r.suppress
                    .map(|(k, a, _)| suppression_key(k, a))
                    .unwrap_or_default()
                    .as_ref(),
            )
            .arg(
                r.suppress
                    .and_then(|(_, _, reason)| reason)
                    .unwrap_or_default(),
            )
            .arg(r.event.unwrap_or_default())
            .arg(r.at_ms);
        let mut c = self.conn.clone();
        let fresh: i64 = inv.invoke_async(&mut c).await?;
        // Also after a repeat: the first try's WAIT may have failed.
        self.wait.wait(&mut c, "reaction").await?;
        Ok(fresh == 1)
    }

    /// Records outcomes and acknowledges their entries, all in one script call.
    /// Returns how many entries were acknowledged by this call.
    pub async fn finish(&self, batch: &[Completion]) -> RedisResult<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut inv = self.finish.prepare_invoke();
        inv.arg(self.keys.prefix())
            .arg(GROUP)
            .arg(self.results_max_len);
        for c in batch {
            inv.arg(&c.stream).arg(&c.id).arg(c.ops.len());
            for op in &c.ops {
                match op {
                    Op::Event(json) => {
                        inv.arg("E").arg(json);
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
                    Op::Append { key, fields } => {
                        inv.arg("X").arg(key).arg(fields.len() * 2);
                        for (k, v) in fields {
                            inv.arg(k).arg(v);
                        }
                    }
                    Op::Suppress {
                        channel,
                        address,
                        reason,
                        at_ms,
                    } => {
                        inv.arg("S")
                            .arg(self.keys.suppressed(*channel))
                            .arg(suppression_key(*channel, address).as_ref())
                            .arg(reason)
                            .arg(*at_ms);
                    }
                }
            }
        }
        let mut c = self.conn.clone();
        let done = inv.invoke_async(&mut c).await?;
        self.wait.wait(&mut c, "finish").await?;
        Ok(done)
    }

    /// Moves up to `limit` due delayed jobs back to their streams. Returns how many
    /// were handled and the dead-letter ids of members that could not be moved.
    pub async fn move_due(&self, now_ms: i64, limit: usize) -> RedisResult<(usize, Vec<String>)> {
        let mut c = self.conn.clone();
        let mut inv = self.move_due.prepare_invoke();
        inv.arg(self.keys.prefix()).arg(now_ms).arg(limit);
        for kind in ChannelKind::ALL {
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

    /// Appends events that belong to no job (webhook reactions, invalid entries).
    pub async fn add_event(&self, json: &str) -> RedisResult<()> {
        let mut c = self.conn.clone();
        let _: String = c.xadd(self.keys.results(), "*", &[("event", json)]).await?;
        self.wait.wait(&mut c, "event").await.map(drop)
    }
}

/// The delayed-set member for a job: JSON the mover script can read.
fn delayed_member(channel: ChannelKind, fields: &[(String, String)]) -> String {
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
        let key = |a| suppression_key(ChannelKind::Email, a).into_owned();
        assert_eq!(key(" Taro@Example.COM "), "taro@example.com");
        // A bounce names the punycode form; the job, a token or an operator the Unicode one.
        assert_eq!(key("Taro@例え.jp"), "taro@xn--r8jz45g.jp");
        assert_eq!(key("taro@XN--R8JZ45G.jp"), "taro@xn--r8jz45g.jp");
        // Other channels keep their address as it is (trimmed).
        assert_eq!(
            suppression_key(ChannelKind::Line, " U4aF ").into_owned(),
            "U4aF"
        );
    }
}
