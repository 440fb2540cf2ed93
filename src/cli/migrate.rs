//! `tayori migrate [--dry-run]`: brings the data in Redis to the layout the
//! config names (the table in [`crate::keys`]). It does one of two things:
//!
//! - **Schema 1 → 2**: a Redis that holds schema-1 data (the names before
//!   partitions: `P:jobs:<channel>`, `P:results`, …, [`keys::v1`]) is copied
//!   into schema 2 with `redis.partitions` partitions.
//! - **N → M partitions**: schema-2 data whose `P:schema` records
//!   `partitions = N` while the config says M (more or fewer) is moved, item by
//!   item, to where the partition function puts it under M.
//!
//! Both refuse while a daemon runs, work on a standalone Redis only, can be
//! run again after an interruption at any point, and with `--dry-run` only
//! count. Both record the partition count they move into in
//! `P:schema:migrating` before their first write, so a rerun with another
//! count is refused instead of splitting the data two ways, and write
//! `P:schema` last, in one transaction with deleting that record: until then
//! every daemon and CLI command refuses the data.
//!
//! # Schema 1 → 2
//!
//! ## What moves
//!
//! - Job streams, the results stream and the dead letters: every entry goes to
//!   its partition's stream (the job's `customer_id`, else its `id`; an event's
//!   `customer_id` and `job_id`; an entry whose JSON cannot be read, or an event
//!   without a job, to partition 0) with its entry id and every field, so
//!   `origin`, dedupe claims and the CRM's positions keep meaning what they meant.
//! - The job streams' group `tayori` is created at `0` on every partition:
//!   what is left in a schema-1 job stream is backlog, or entries stopped
//!   daemons held (their pending lists do not move), so all of it is delivered
//!   again — at least once; the dedupe claims, which move too, let a job that
//!   was already sent through as a redelivery of the same entry, not a new one.
//! - Every consumer group of the results stream (the CRM's, and the daemons'
//!   `tayori-profiles`) is created on every partition's results stream, just
//!   before its oldest pending entry (else at its last-delivered id): the CRM
//!   reads again what it had not acknowledged — and what it acknowledged after
//!   that — and nothing it had acknowledged before.
//! - The delayed set (members unchanged, by the job in them), the suppression
//!   hashes with their change times and marks (by address: the hash field is
//!   already the suppression form), dedupe claims, caps (scopes `all` and the
//!   channels; another scope is left with a warning) and profiles, with what is
//!   left of their TTLs.
//!
//! ## What does not move
//!
//! Transient keys, which expire by themselves: `P:starts:*` (start counts of
//! redelivered entries: the moved entries start afresh), `P:rate:*` and
//! `P:paused:*` (rate buckets and pauses, rebuilt within a second), `P:lease:*`
//! and `P:reaction:*` (the dedupe of provider webhooks within their window: a
//! provider that redelivers an event inside that window after the migration has
//! it recorded twice). `P:link:*`, `P:links:*`, `P:linkc:*`, `P:verp:*` and `P:verps:*` have the same names in both
//! schemas and stay.
//!
//! ## Interruption
//!
//! Nothing is deleted before everything is copied, so until the end the
//! schema-1 data is whole and a run can be repeated. Every write can be repeated:
//! a stream entry whose id is not above its target stream's last id is looked up
//! there and skipped when it is there with the same fields (a run interrupted
//! after copying it); if it is not there (the target stream holds later entries,
//! written by a schema-2 daemon: a CRM that kept writing to the old names after
//! the upgrade), it is appended with a new id, and a job keeps its old id as its
//! `origin`. Sets, hashes and claims are written idempotently (a claim only when
//! the target has none: a schema-2 claim is newer). A job stream is deleted only
//! if nothing was appended to it since it was copied (checked atomically); else
//! the new entries are copied first.
//!
//! # N → M partitions
//!
//! For every old partition k < N, whatever belongs to another partition under
//! M moves there; what stays is not touched (raising 1 → 2 moves about half of
//! everything, 4 → 8 about half, 2 → 3 about two thirds).
//!
//! ## What moves, and how
//!
//! - Job streams and dead letters: an entry whose job's partition under M is
//!   not k is appended to the target stream with a new id, then acknowledged in
//!   every group of its old stream and deleted there — a page of entries in
//!   one MULTI, so on a standalone Redis each entry is in exactly one place at
//!   any time. A new id because the target's consumer group has a
//!   last-delivered id, and an entry appended below it would never be
//!   delivered. The routing fields stay; a job without `origin` gets its old
//!   id as `origin` (what its dedupe claim holds) and `first_at` from it, so
//!   it passes its claim as the same job, a second job reusing its id is still
//!   a `duplicate`, and its age still counts from when it arrived. An entry a
//!   stopped daemon held (pending) moves too and is delivered afresh.
//!   Every job stream of the new count gets the group `tayori` at `0`.
//! - Results: events move to their job's partition (`customer_id`, `job_id`;
//!   an event without a job to 0) with new ids, unchanged otherwise. Every
//!   consumer group found on any old results stream is created, before
//!   anything moves, on every new results stream lacking it, at its last id:
//!   each group gets every moved event in its new stream, **including events
//!   it had already read and acknowledged** — a CRM deduplicates by
//!   `event_id`. An event it had read but not acknowledged leaves its pending
//!   list and comes again as new. The profile updater's group
//!   (`tayori-profiles`) is the exception: the moved events it had counted are
//!   read as consumer `tayori-migrate` and acknowledged, so no profile counts
//!   an event twice (those it had not counted stay pending for
//!   `tayori-migrate`; a daemon's updater takes them over after a minute).
//! - Delayed sets: members move by their job's partition, with their scores.
//! - Suppressions: by address (the hash field is already the suppression
//!   form), the reason, change time and marks together; if the target already
//!   has the address, the later change time wins.
//! - Dedupe claims, caps and profiles (found with one SCAN): renamed to their
//!   new name, which keeps the TTL. A name already taken (only data of some
//!   older layout could hold it) keeps its claim or profile; caps are merged.
//! - Transient keys (`starts`, `lease:mover`, `reaction`) of partitions that
//!   stay are left to expire; those of removed partitions are deleted (a
//!   provider redelivering a webhook within its dedupe window may then have it
//!   recorded twice). When lowering, the removed partitions' streams are
//!   deleted once they are checked empty, with their groups; a key there this
//!   build does not know is reported and left.
//!
//! ## Interruption
//!
//! Every step can be repeated. A page of stream entries moves in one
//! transaction; should a copy nonetheless be in both places (left by hand, or
//! by a tool that appended before deleting), the rerun finds it: the entries
//! with an `origin` that the interrupted run's target streams got since it
//! started (`since` in `P:schema:migrating`; all of them without it) are
//! indexed by `origin` and fields, and an old entry already there is only
//! deleted. This matters: both copies would carry the same `origin`, which
//! the dedupe claim takes for a redelivery of the same job — it would be sent
//! twice. Delayed members and suppressions are moved in transactions too,
//! per-id keys by RENAME, both atomic. What a rerun cannot know is which moved
//! events the profile updater had counted before the interruption: those are
//! counted again.
//!
//! # Limits
//!
//! Standalone Redis only: the per-id keys are found with `SCAN`, which on a
//! cluster connection reaches one node, and schema 1 never ran on a cluster;
//! the partition moves are transactions across two hash tags. Migrate on a
//! standalone Redis, then import into the cluster (docs/scaling.md).
//!
//! A daemon that is running makes it refuse: a consumer of a job stream (schema
//! 1, or any partition of either count) active within the last 30 s.
//! `TAYORI_MIGRATE_LIVE_WITHIN_MS` changes that window (tests, or an operator
//! who knows every daemon is down). The CRM must not enqueue meanwhile, and
//! must switch to the new count (partition function and results streams)
//! before it enqueues again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::channel_id::ChannelId;
use anyhow::{bail, Context};
use redis::{Cmd, Value};

use crate::config::Config;
use crate::keys::{v1, Keys, Partition, MAX_PARTITIONS, SCHEMA_VERSION};
use crate::profile::updater::GROUP as PROFILES_GROUP;
use crate::queue::{Grouped, GROUP};
use crate::redis_connection::RedisConnection;

/// Entries, members or keys per round trip.
const PAGE: usize = 1000;

/// A job-stream consumer active more recently than this is a running daemon's:
/// a daemon reads every `queue.block` (1 s by default) even when idle.
const LIVE_WITHIN: Duration = Duration::from_secs(30);
const LIVE_WITHIN_ENV: &str = "TAYORI_MIGRATE_LIVE_WITHIN_MS";

/// Replies to a page of 1,000 writes, and UNLINK, come well within this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a job stream that grows while being deleted is copied again before
/// the run gives up (the CRM's enqueuer is still writing to it).
const DELETE_TRIES: usize = 5;

/// A stream's last generated id (XINFO STREAM), `0-0` for a missing stream.
const LAST_ID: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return '0-0' end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return info[i + 1] end
end
return '0-0'
";

/// XGROUP CREATE … MKSTREAM; a group that exists is left where it is (a run
/// that was interrupted after creating it computed the same position).
const CREATE_GROUP: &str = r"
local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
if type(r) == 'table' and r.err and not string.find(r.err, 'BUSYGROUP', 1, true) then
  return r
end
return 1
";

/// XINFO GROUPS (no ARGV) or XINFO CONSUMERS of group ARGV[1]; empty for a
/// missing stream or group.
const XINFO: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local r
if ARGV[1] then
  r = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
else
  r = redis.pcall('XINFO', 'GROUPS', KEYS[1])
end
if type(r) == 'table' and r.err then return {} end
return r
";

/// Deletes a stream only if its last entry is still ARGV[1] (empty: it had
/// none), so an entry appended after the copy is never lost.
const UNLINK_IF_LAST: &str = r"
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local top = ''
if last[1] then top = last[1][1] end
if top ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[1])
return 1
";

/// Runs `tayori migrate`; the exit code: 0 done (or nothing to do), 1 refused.
pub async fn run(config: &Config, dry_run: bool) -> anyhow::Result<i32> {
    let conn = super::connect(config, REPLY_TIMEOUT).await?;
    let keys = config.redis.keys();
    let mut m = Migration {
        conn,
        prefix: keys.prefix().to_owned(),
        keys,
        dry_run,
        counts: Counts::default(),
        tops: HashMap::new(),
        copied: HashMap::new(),
        copies: HashMap::new(),
        counted: HashMap::new(),
    };
    m.run().await
}

/// A stream entry id, `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct StreamId {
    ms: u64,
    seq: u64,
}

impl StreamId {
    const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
    /// Above every id: a target stream that got an entry with a new id, whose
    /// exact last id this run no longer knows.
    const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId {
                seq: self.seq + 1,
                ..self
            })
        } else {
            self.ms.checked_add(1).map(|ms| StreamId { ms, seq: 0 })
        }
    }

    fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId {
                seq: self.seq - 1,
                ..self
            })
        } else {
            self.ms
                .checked_sub(1)
                .map(|ms| StreamId { ms, seq: u64::MAX })
        }
    }
}

impl FromStr for StreamId {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<StreamId> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Ok(StreamId {
            ms: ms.parse().with_context(|| format!("stream id {s:?}"))?,
            seq: seq.parse().with_context(|| format!("stream id {s:?}"))?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

struct StreamEntry {
    id: StreamId,
    fields: Fields,
}

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// The three kinds of stream that move entry by entry.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Jobs(ChannelId),
    Results,
    Dead,
}

impl Stream {
    fn source(self, prefix: &str) -> String {
        match self {
            Stream::Jobs(kind) => v1::jobs(prefix, kind),
            Stream::Results => v1::results(prefix),
            Stream::Dead => v1::dead(prefix),
        }
    }

    fn target(self, keys: &Keys, p: Partition) -> String {
        match self {
            Stream::Jobs(kind) => keys.jobs(p, kind),
            Stream::Results => keys.results(p),
            Stream::Dead => keys.dead(p),
        }
    }

    /// An entry's partition: the one Tayori writes it to under schema 2.
    fn partition(self, keys: &Keys, fields: &Fields) -> Partition {
        match self {
            Stream::Jobs(_) | Stream::Dead => json_partition(keys, field(fields, "job"), "id"),
            Stream::Results => json_partition(keys, field(fields, "event"), "job_id"),
        }
    }
}

/// The partition of a job (`id_field` = `id`) or of a job's event (`job_id`):
/// [`Keys::job_partition`] of its `customer_id` and id; partition 0 when the
/// JSON cannot be read or has no id (an event no job caused, a broken job: any
/// partition would do, and 0 always exists).
fn json_partition(keys: &Keys, json: Option<&[u8]>, id_field: &str) -> Partition {
    let Some(v) = json.and_then(|j| serde_json::from_slice::<serde_json::Value>(j).ok()) else {
        return Partition::default();
    };
    match v.get(id_field).and_then(|i| i.as_str()) {
        Some(id) => keys.job_partition(v.get("customer_id").and_then(|c| c.as_str()), id),
        None => Partition::default(),
    }
}

/// A delayed member `{"c": channel, "f": [field, value, …]}`: its job's partition.
fn delayed_partition(keys: &Keys, member: &[u8]) -> Partition {
    let job = serde_json::from_slice::<serde_json::Value>(member)
        .ok()
        .and_then(|v| {
            let f = v.get("f")?.as_array()?;
            f.chunks(2)
                .find(|kv| kv[0].as_str() == Some("job"))
                .and_then(|kv| Some(kv.get(1)?.as_str()?.to_owned()))
        });
    json_partition(keys, job.as_deref().map(str::as_bytes), "id")
}

/// The keys found by `SCAN`, one per id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PerId {
    Seen,
    Cap,
    Profile,
}

/// What was (or would be) moved, for the summary.
#[derive(Default)]
struct Counts {
    jobs: HashMap<&'static str, u64>,
    results: u64,
    dead: u64,
    delayed: u64,
    suppressions: u64,
    suppression_marks: u64,
    seen: u64,
    caps: u64,
    profiles: u64,
    groups: u64,
    /// Entries an interrupted run had already copied.
    already: u64,
    /// Entries that could not keep their id.
    renumbered: u64,
    /// Cap keys of an unknown scope, left in place.
    odd_caps: u64,
    /// Repartitioning: transient keys of removed partitions deleted.
    transient: u64,
    /// Repartitioning: streams of removed partitions deleted once empty.
    emptied: u64,
    /// Repartitioning: keys or suppressions whose target already held a newer
    /// (or, for claims and profiles, any) value, which was kept.
    kept_target: u64,
    /// Repartitioning: moved events `tayori-profiles` had already counted,
    /// acknowledged for it in their new stream.
    profile_acked: u64,
    /// Repartitioning: keys of removed partitions this build does not know.
    leftovers: Vec<String>,
}

impl Counts {
    fn add(&mut self, stream: Stream, n: u64) {
        match stream {
            Stream::Jobs(kind) => *self.jobs.entry(kind.label()).or_default() += n,
            Stream::Results => self.results += n,
            Stream::Dead => self.dead += n,
        }
    }

    fn add_per_id(&mut self, kind: PerId, n: u64) {
        match kind {
            PerId::Seen => self.seen += n,
            PerId::Cap => self.caps += n,
            PerId::Profile => self.profiles += n,
        }
    }

    fn print(&self, heading: &str) {
        println!("{heading}");
        println!("{:<28} {:>10}", "kind", "count");
        let mut rows: Vec<(String, u64)> = crate::channel::registry::ids()
            .map(|k| {
                (
                    format!("jobs {k}"),
                    self.jobs.get(k.as_str()).copied().unwrap_or(0),
                )
            })
            .collect();
        rows.extend([
            ("results".to_owned(), self.results),
            ("dead letters".to_owned(), self.dead),
            ("delayed".to_owned(), self.delayed),
            ("suppressions".to_owned(), self.suppressions),
            (
                "suppression times, marks".to_owned(),
                self.suppression_marks,
            ),
            ("dedupe claims".to_owned(), self.seen),
            ("caps".to_owned(), self.caps),
            ("profiles".to_owned(), self.profiles),
            ("results consumer groups".to_owned(), self.groups),
        ]);
        for (kind, n) in rows {
            println!("{kind:<28} {n:>10}");
        }
        let notes = [
            (
                self.already,
                "entries were already copied by an interrupted run",
            ),
            (
                self.renumbered,
                "entries got a new id: their partition's stream already held later ones",
            ),
            (
                self.odd_caps,
                "cap keys of another scope than all or a channel were left in place",
            ),
            (
                self.kept_target,
                "keys or suppressions already had a value under their new name; it was kept",
            ),
            (
                self.transient,
                "transient keys of the removed partitions were deleted",
            ),
            (
                self.emptied,
                "streams of the removed partitions were deleted, empty",
            ),
            (
                self.profile_acked,
                "moved events the profile updater had counted were acknowledged for it",
            ),
        ];
        for (n, text) in notes {
            if n > 0 {
                println!("({n} {text})");
            }
        }
        if !self.leftovers.is_empty() {
            let shown: Vec<&str> = self.leftovers.iter().take(10).map(String::as_str).collect();
            println!(
                "({} keys of the removed partitions are not Tayori's and were left: {}{})",
                self.leftovers.len(),
                shown.join(", "),
                if self.leftovers.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
    }
}

/// Where the run found Redis.
enum Found {
    /// No schema-1 keys; `true`: `P:schema` says schema 2 with these partitions.
    Nothing(bool),
    /// No schema-1 keys left, but a run that copied everything was interrupted
    /// before it wrote `P:schema`.
    Unfinished,
    /// Schema-1 keys to move.
    Work,
    /// Schema-2 data laid out for `from` partitions, to move into the
    /// configured count.
    Repartition(Resume),
}

/// A repartitioning's starting point.
struct Resume {
    /// The partition count `P:schema` records.
    from: u32,
    /// A run into the same count was interrupted: `P:schema:migrating` is there.
    resumed: bool,
    /// When that run started (Redis time, ms; `since` in `P:schema:migrating`).
    since: Option<u64>,
}

struct Migration {
    conn: RedisConnection,
    keys: Keys,
    prefix: String,
    dry_run: bool,
    counts: Counts,
    /// Per target stream, its last generated id as far as this run knows.
    tops: HashMap<String, StreamId>,
    /// Per schema-1 stream, the last entry copied (`None`: it had none).
    copied: HashMap<String, Option<StreamId>>,
    /// Repartitioning after an interruption: entries already appended to a
    /// target stream by the interrupted run, by [`copy_identity`], with how
    /// many of each.
    copies: HashMap<CopyIdentity, u32>,
    /// Repartitioning: per target results stream, the new ids of moved events
    /// that `tayori-profiles` had already counted in their old stream.
    counted: HashMap<String, HashSet<String>>,
}

/// A command with its arguments, for a [`Grouped`] batch.
fn cmd(name: &str) -> Cmd {
    redis::cmd(name)
}

fn eval(script: &str, key: &str) -> Cmd {
    let mut c = cmd("EVAL");
    c.arg(script).arg(1).arg(key);
    c
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Int(n)) => *n,
        Some(other) => text(other).and_then(|t| t.parse().ok()).unwrap_or(0),
        None => 0,
    }
}

/// The name/value pairs of an XINFO reply (a flat array, or a map under RESP3).
fn info_fields(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| Some((text(&kv[0])?, kv.get(1)?)))
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn info_get<'a>(fields: &[(String, &'a Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

fn live_within() -> Duration {
    std::env::var(LIVE_WITHIN_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(LIVE_WITHIN)
}

/// The key recording the partition count a started migration copies into.
fn migrating_key(keys: &Keys) -> String {
    keys.migrating()
}

impl Migration {
    fn batch(&self) -> Grouped {
        Grouped::new(self.conn.is_cluster())
    }

    async fn run(&mut self) -> anyhow::Result<i32> {
        let n = self.keys.partitions();
        let found = match self.survey().await? {
            Ok(found) => found,
            Err(refusal) => {
                eprintln!("tayori migrate: {refusal}");
                return Ok(1);
            }
        };
        match found {
            Found::Nothing(true) => {
                println!(
                    "nothing to migrate: Redis holds schema {SCHEMA_VERSION} with {n} partitions and no schema-1 keys"
                );
                return Ok(0);
            }
            Found::Nothing(false) => {
                println!(
                    "nothing to migrate: no schema-1 keys (the first daemon records schema {SCHEMA_VERSION} with {n} partitions)"
                );
                return Ok(0);
            }
            Found::Unfinished if self.dry_run => {
                println!(
                    "would finish an interrupted migration: only {} is left to write",
                    self.keys.schema()
                );
                return Ok(0);
            }
            Found::Unfinished => {
                self.finish().await?;
                println!(
                    "finished an interrupted migration: {} now says schema {SCHEMA_VERSION} with {n} partitions",
                    self.keys.schema()
                );
                return Ok(0);
            }
            Found::Work | Found::Repartition(_) => {}
        }
        if self.conn.is_cluster() {
            let why = match &found {
                Found::Repartition(r) => format!(
                    "changing redis.partitions ({} → {n}) works on a standalone Redis only: finding \
                     the per-job keys needs SCAN on one server, and each move is a transaction \
                     across two partitions. Set redis.partitions = {} again (docs/scaling.md, \
                     \"Changing the number of partitions\")",
                    r.from, r.from
                ),
                _ => "schema-1 data on a Redis Cluster: migrate works on a standalone Redis \
                      (schema 1 never ran on a cluster, and finding its per-job keys needs SCAN on \
                      one server). Migrate on the standalone Redis with the cluster's \
                      redis.partitions, then import it into the cluster with `redis-cli --cluster \
                      import` (docs/scaling.md)"
                    .to_owned(),
            };
            eprintln!("tayori migrate: {why}");
            return Ok(1);
        }
        // Every partition either count names: a daemon of either config.
        let watched = match &found {
            Found::Repartition(r) => r.from.max(n),
            _ => n,
        };
        let live = self.live_consumers(watched).await?;
        if !live.is_empty() {
            let which = live.join(", ");
            if !self.dry_run {
                eprintln!(
                    "tayori migrate: a daemon is running (consumers active within {} s: {which}): \
                     stop every daemon first, then run `tayori migrate` again",
                    live_within().as_secs()
                );
                return Ok(1);
            }
            eprintln!(
                "tayori migrate: note: a daemon is running ({which}); `tayori migrate` will refuse \
                 until every daemon is stopped"
            );
        }
        if let Found::Repartition(resume) = found {
            return self.repartition(resume).await;
        }
        if !self.dry_run {
            // Recorded before the first write: a later run into another
            // partition count is refused in `survey`.
            let _: () = cmd("HSETNX")
                .arg(migrating_key(&self.keys))
                .arg("partitions")
                .arg(n)
                .query_async(&mut self.conn.clone())
                .await?;
        }
        self.copy().await?;
        if self.dry_run {
            self.counts.print(&format!(
                "would move (schema 1 → {SCHEMA_VERSION}, redis.partitions = {n}):"
            ));
            return Ok(0);
        }
        self.delete().await?;
        self.finish().await?;
        self.counts.print(&format!(
            "moved (schema 1 → {SCHEMA_VERSION}, redis.partitions = {n}):"
        ));
        println!(
            "The CRM now writes jobs to {p}:{{k}}:jobs:<channel> and reads {p}:{{k}}:results for every \
             partition k (docs/scaling.md).",
            p = self.prefix
        );
        Ok(0)
    }

    /// Reads `P:schema`, the migration record and the schema-1 markers. A
    /// refusal is `Ok(Err(message))`.
    async fn survey(&mut self) -> anyhow::Result<Result<Found, String>> {
        let n = self.keys.partitions();
        let schema_key = self.keys.schema();
        let mut c = self.conn.clone();
        let schema: HashMap<String, String> =
            cmd("HGETALL").arg(&schema_key).query_async(&mut c).await?;
        let record: HashMap<String, String> = cmd("HGETALL")
            .arg(migrating_key(&self.keys))
            .query_async(&mut c)
            .await?;
        let migrating = record.get("partitions").cloned();
        let markers = v1::markers(&self.prefix);
        let mut batch = self.batch();
        for key in &markers {
            let mut exists = cmd("EXISTS");
            exists.arg(key);
            batch.add(key, exists);
        }
        let any_v1 = batch
            .query(&self.conn)
            .await?
            .iter()
            .any(|v| matches!(v, Value::Int(n) if *n > 0));
        if !schema.is_empty() {
            let version = schema.get("version").map(String::as_str).unwrap_or("");
            if version != SCHEMA_VERSION.to_string() {
                return Ok(Err(format!(
                    "{schema_key} says schema {version:?}; this build migrates schema 1 to \
                     {SCHEMA_VERSION} only: use the Tayori version that wrote it, or a newer one"
                )));
            }
        }
        if let Some(m) = migrating.as_deref().filter(|m| *m != n.to_string()) {
            return Ok(Err(format!(
                "an interrupted migration was copying into {m} partitions ({}); the config says \
                 {n}: set redis.partitions = {m} and run `tayori migrate` again to finish it",
                migrating_key(&self.keys)
            )));
        }
        if !schema.is_empty() {
            let recorded = schema.get("partitions").map(String::as_str).unwrap_or("");
            if recorded != n.to_string() {
                let Some(from) = recorded
                    .parse::<u32>()
                    .ok()
                    .filter(|r| (1..=MAX_PARTITIONS).contains(r))
                else {
                    return Ok(Err(format!(
                        "{schema_key} records partitions = {recorded:?}, which is no partition \
                         count: restore it to the count the data was written with"
                    )));
                };
                if any_v1 {
                    // One move at a time: the schema-1 copy puts entries where
                    // the configured count says, beside data of another count.
                    return Ok(Err(format!(
                        "Redis holds schema-1 keys beside schema {SCHEMA_VERSION} data with \
                         partitions = {from} ({schema_key}), the config says {n}: set \
                         redis.partitions = {from}, run `tayori migrate` to move the schema-1 keys, \
                         then set {n} and run it again"
                    )));
                }
                return Ok(Ok(Found::Repartition(Resume {
                    from,
                    resumed: migrating.is_some(),
                    since: record.get("since").and_then(|s| s.parse().ok()),
                })));
            }
        }
        Ok(Ok(match (any_v1, migrating.is_some()) {
            (true, _) => Found::Work,
            (false, true) => Found::Unfinished,
            (false, false) => Found::Nothing(!schema.is_empty()),
        }))
    }

    /// Consumers of a job stream (schema 1, or schema 2 in any of the first
    /// `partitions`) active within [`live_within`]: `stream/consumer (idle ms)`.
    async fn live_consumers(&self, partitions: u32) -> anyhow::Result<Vec<String>> {
        let mut streams: Vec<String> = crate::channel::registry::ids()
            .map(|k| v1::jobs(&self.prefix, k))
            .collect();
        let keys = Keys::new(&self.prefix, partitions);
        for p in keys.all_partitions() {
            streams.extend(crate::channel::registry::ids().map(|k| keys.jobs(p, k)));
        }
        let within = live_within().as_millis() as i64;
        let mut live = Vec::new();
        for chunk in streams.chunks(PAGE) {
            let mut batch = self.batch();
            for s in chunk {
                let mut c = eval(XINFO, s);
                c.arg(GROUP);
                batch.add(s, c);
            }
            for (s, reply) in chunk.iter().zip(batch.query(&self.conn).await?) {
                let Value::Array(consumers) = reply else {
                    continue;
                };
                for consumer in &consumers {
                    let f = info_fields(consumer);
                    let idle = int(info_get(&f, "idle"));
                    if idle < within {
                        let name = info_get(&f, "name").and_then(text).unwrap_or_default();
                        live.push(format!("{s}/{name} (idle {idle} ms)"));
                    }
                }
            }
        }
        Ok(live)
    }

    /// Copies (or, in a dry run, counts) everything; deletes nothing.
    async fn copy(&mut self) -> anyhow::Result<()> {
        for kind in crate::channel::registry::ids() {
            self.copy_stream(Stream::Jobs(kind), None).await?;
            if !self.dry_run {
                let targets: Vec<String> = self
                    .keys
                    .all_partitions()
                    .map(|p| self.keys.jobs(p, kind))
                    .collect();
                self.create_groups(&targets, GROUP, "0").await?;
            }
        }
        self.copy_stream(Stream::Results, None).await?;
        self.results_groups().await?;
        self.copy_stream(Stream::Dead, None).await?;
        self.copy_delayed().await?;
        self.copy_suppressions().await?;
        for kind in [PerId::Seen, PerId::Cap, PerId::Profile] {
            self.per_id(kind, false).await?;
        }
        Ok(())
    }

    /// The last generated id of every partition's target stream of `stream`
    /// that this run has not looked at yet.
    async fn load_tops(&mut self, stream: Stream) -> anyhow::Result<()> {
        let targets: Vec<String> = self
            .keys
            .all_partitions()
            .map(|p| stream.target(&self.keys, p))
            .filter(|t| !self.tops.contains_key(t))
            .collect();
        for chunk in targets.chunks(PAGE) {
            let mut batch = self.batch();
            for t in chunk {
                batch.add(t, eval(LAST_ID, t));
            }
            for (t, reply) in chunk.iter().zip(batch.query(&self.conn).await?) {
                let id = match text(&reply) {
                    Some(s) => s.parse()?,
                    None => StreamId::ZERO,
                };
                self.tops.insert(t.clone(), id);
            }
        }
        Ok(())
    }

    /// Copies the entries of a schema-1 stream after `after` (all of them for
    /// `None`) to their partitions' streams; the last id copied.
    async fn copy_stream(
        &mut self,
        stream: Stream,
        after: Option<StreamId>,
    ) -> anyhow::Result<Option<StreamId>> {
        let src = stream.source(&self.prefix);
        if self.dry_run {
            let len: u64 = cmd("XLEN")
                .arg(&src)
                .query_async(&mut self.conn.clone())
                .await?;
            self.counts.add(stream, len);
            return Ok(None);
        }
        self.load_tops(stream).await?;
        let mut last = after;
        let mut start = match after {
            None => "-".to_owned(),
            Some(id) => match id.next() {
                Some(next) => next.to_string(),
                None => return Ok(after),
            },
        };
        loop {
            let page = xrange(&self.conn, &src, &start, "+", PAGE).await?;
            let Some(tail) = page.last().map(|e| e.id) else {
                break;
            };
            let targets: Vec<String> = page
                .iter()
                .map(|e| stream.target(&self.keys, stream.partition(&self.keys, &e.fields)))
                .collect();
            // Entries not above their target's last id may be there already.
            let mut checks = self.batch();
            let mut checked = Vec::new();
            for (i, (e, t)) in page.iter().zip(&targets).enumerate() {
                if e.id <= self.tops.get(t).copied().unwrap_or(StreamId::ZERO) {
                    let mut c = cmd("XRANGE");
                    c.arg(t).arg(e.id.to_string()).arg(e.id.to_string());
                    checks.add(t, c);
                    checked.push(i);
                }
            }
            let mut present = vec![false; page.len()];
            if !checked.is_empty() {
                for (i, reply) in checked.into_iter().zip(checks.query(&self.conn).await?) {
                    let found: Vec<(String, Fields)> = redis::from_redis_value(reply)?;
                    present[i] = found.first().is_some_and(|(_, f)| *f == page[i].fields);
                }
            }
            let mut writes = self.batch();
            for ((e, t), there) in page.iter().zip(&targets).zip(present) {
                self.counts.add(stream, 1);
                if there {
                    self.counts.already += 1;
                    continue;
                }
                let top = self.tops.entry(t.clone()).or_insert(StreamId::ZERO);
                let mut c = cmd("XADD");
                c.arg(t);
                let mut fields = e.fields.clone();
                if e.id > *top {
                    c.arg(e.id.to_string());
                    *top = e.id;
                } else {
                    // The stream holds later entries (a schema-2 daemon wrote
                    // them): the entry cannot keep its id. A job keeps it as
                    // its identity for deduplication.
                    c.arg("*");
                    *top = StreamId::MAX;
                    self.counts.renumbered += 1;
                    if matches!(stream, Stream::Jobs(_)) && field(&fields, "origin").is_none() {
                        fields.push((b"origin".to_vec(), e.id.to_string().into_bytes()));
                    }
                }
                for (k, v) in &fields {
                    c.arg(k.as_slice()).arg(v.as_slice());
                }
                writes.add_ignored(t, c);
            }
            if !writes.is_empty() {
                writes.query(&self.conn).await?;
            }
            last = Some(tail);
            match tail.next() {
                Some(next) if page.len() == PAGE => start = next.to_string(),
                _ => break,
            }
        }
        self.copied.insert(src, last);
        Ok(last)
    }

    /// Creates `group` at `at` on each of `streams` (and the stream if missing).
    async fn create_groups(&self, streams: &[String], group: &str, at: &str) -> anyhow::Result<()> {
        for chunk in streams.chunks(PAGE) {
            let mut batch = self.batch();
            for s in chunk {
                let mut c = eval(CREATE_GROUP, s);
                c.arg(group).arg(at);
                batch.add_ignored(s, c);
            }
            batch.query(&self.conn).await?;
        }
        Ok(())
    }

    /// Recreates every consumer group of the schema-1 results stream on every
    /// partition's results stream, where its reader reads on without losing
    /// what it had not acknowledged.
    async fn results_groups(&mut self) -> anyhow::Result<()> {
        let src = v1::results(&self.prefix);
        let mut c = self.conn.clone();
        let groups: Value = eval(XINFO, &src).query_async(&mut c).await?;
        let Value::Array(groups) = groups else {
            return Ok(());
        };
        let targets: Vec<String> = self
            .keys
            .all_partitions()
            .map(|p| self.keys.results(p))
            .collect();
        let within = live_within().as_millis() as i64;
        for g in &groups {
            let f = info_fields(g);
            let Some(name) = info_get(&f, "name").and_then(text) else {
                continue;
            };
            let last_delivered = info_get(&f, "last-delivered-id")
                .and_then(text)
                .unwrap_or_else(|| "0-0".to_owned());
            let at = if int(info_get(&f, "pending")) > 0 {
                let oldest: Vec<(String, String, u64, u64)> = cmd("XPENDING")
                    .arg(&src)
                    .arg(&name)
                    .arg("-")
                    .arg("+")
                    .arg(1)
                    .query_async(&mut c)
                    .await?;
                match oldest.first() {
                    Some((id, ..)) => match id.parse::<StreamId>()?.prev() {
                        Some(before) => before.to_string(),
                        None => "0".to_owned(),
                    },
                    None => last_delivered,
                }
            } else {
                last_delivered
            };
            self.counts.groups += 1;
            // A reader still active acknowledges into the old stream: what it
            // acknowledges from now on it will read again.
            let mut consumers = eval(XINFO, &src);
            consumers.arg(&name);
            if let Value::Array(list) = consumers.query_async::<Value>(&mut c).await? {
                for consumer in &list {
                    let cf = info_fields(consumer);
                    if int(info_get(&cf, "idle")) < within {
                        let who = info_get(&cf, "name").and_then(text).unwrap_or_default();
                        eprintln!(
                            "tayori migrate: note: {who} of results group {name} is still reading {src}; \
                             stop it, or it reads again what it acknowledges from now on"
                        );
                    }
                }
            }
            if !self.dry_run {
                self.create_groups(&targets, &name, &at).await?;
            }
        }
        Ok(())
    }

    async fn copy_delayed(&mut self) -> anyhow::Result<()> {
        let src = v1::delayed(&self.prefix);
        let mut c = self.conn.clone();
        if self.dry_run {
            let n: u64 = cmd("ZCARD").arg(&src).query_async(&mut c).await?;
            self.counts.delayed += n;
            return Ok(());
        }
        // Nothing writes to the set while no daemon runs: ranks are stable.
        let mut from = 0usize;
        loop {
            let page: Vec<(Vec<u8>, String)> = cmd("ZRANGE")
                .arg(&src)
                .arg(from)
                .arg(from + PAGE - 1)
                .arg("WITHSCORES")
                .query_async(&mut c)
                .await?;
            if page.is_empty() {
                break;
            }
            let mut writes = self.batch();
            for (member, score) in &page {
                let target = self.keys.delayed(delayed_partition(&self.keys, member));
                let mut z = cmd("ZADD");
                z.arg(&target).arg(score).arg(member.as_slice());
                writes.add_ignored(&target, z);
            }
            writes.query(&self.conn).await?;
            self.counts.delayed += page.len() as u64;
            from += page.len();
            if page.len() < PAGE {
                break;
            }
        }
        Ok(())
    }

    async fn copy_suppressions(&mut self) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        for kind in crate::channel::registry::ids() {
            // The hash, its change times, its change marks: the order of
            // `Keys::suppression_keys`.
            for (slot, src) in v1::suppression_keys(&self.prefix, kind)
                .into_iter()
                .enumerate()
            {
                let len: u64 = cmd("HLEN").arg(&src).query_async(&mut c).await?;
                if slot == 0 {
                    self.counts.suppressions += len;
                } else {
                    self.counts.suppression_marks += len;
                }
                if self.dry_run || len == 0 {
                    continue;
                }
                let mut cursor = 0u64;
                loop {
                    let (next, page): (u64, Fields) = cmd("HSCAN")
                        .arg(&src)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(PAGE)
                        .query_async(&mut c)
                        .await?;
                    let mut writes = self.batch();
                    for (address, value) in &page {
                        let keys = self
                            .keys
                            .suppression_keys(kind, &String::from_utf8_lossy(address));
                        let target = &keys[slot];
                        let mut h = cmd("HSET");
                        h.arg(target).arg(address.as_slice()).arg(value.as_slice());
                        writes.add_ignored(target, h);
                    }
                    if !writes.is_empty() {
                        writes.query(&self.conn).await?;
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Copies the dedupe claims, caps or profiles found by SCAN (counting them
    /// on the first pass); with `delete`, deletes each source key once its copy
    /// is written (copying again is harmless: every write is idempotent).
    async fn per_id(&mut self, kind: PerId, delete: bool) -> anyhow::Result<()> {
        let (pattern, type_) = match kind {
            PerId::Seen => (v1::seen_pattern(&self.prefix), "string"),
            PerId::Cap => (v1::cap_pattern(&self.prefix), "zset"),
            PerId::Profile => (v1::profile_pattern(&self.prefix), "hash"),
        };
        let strip = pattern.trim_end_matches('*').to_owned();
        let mut c = self.conn.clone();
        let mut cursor = 0u64;
        loop {
            let (next, found): (u64, Vec<Vec<u8>>) = cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(PAGE)
                .arg("TYPE")
                .arg(type_)
                .query_async(&mut c)
                .await?;
            cursor = next;
            // (source, target)
            let mut pairs = Vec::with_capacity(found.len());
            for raw in found {
                let Ok(src) = String::from_utf8(raw) else {
                    // Tayori never wrote such a name; no target name for it.
                    if !delete {
                        eprintln!("tayori migrate: warning: a key under {pattern} that is not UTF-8 was left in place");
                    }
                    continue;
                };
                let Some(id) = src.strip_prefix(&strip) else {
                    continue;
                };
                let target = match kind {
                    PerId::Seen => self.keys.legacy_seen(id),
                    PerId::Profile => self.keys.profile(id),
                    PerId::Cap => match id.split_once(':') {
                        Some((scope, customer)) if is_cap_scope(scope) => {
                            self.keys.cap(scope, customer)
                        }
                        _ => {
                            if !delete {
                                self.counts.odd_caps += 1;
                                eprintln!(
                                    "tayori migrate: warning: {src} is not a cap of scope all or a \
                                     channel; left in place"
                                );
                            }
                            continue;
                        }
                    },
                };
                pairs.push((src, target));
            }
            if !delete {
                self.counts.add_per_id(kind, pairs.len() as u64);
            }
            if !self.dry_run && !pairs.is_empty() {
                self.copy_per_id(kind, &pairs).await?;
                if delete {
                    let mut unlink = self.batch();
                    for (src, _) in &pairs {
                        let mut u = cmd("UNLINK");
                        u.arg(src);
                        unlink.add_ignored(src, u);
                    }
                    unlink.query(&self.conn).await?;
                }
            }
            if cursor == 0 {
                break;
            }
        }
        Ok(())
    }

    async fn copy_per_id(&self, kind: PerId, pairs: &[(String, String)]) -> anyhow::Result<()> {
        let mut reads = self.batch();
        for (src, _) in pairs {
            let mut get = match kind {
                PerId::Seen => cmd("GET"),
                PerId::Cap => cmd("ZRANGE"),
                PerId::Profile => cmd("HGETALL"),
            };
            get.arg(src);
            if kind == PerId::Cap {
                get.arg(0).arg(-1).arg("WITHSCORES");
            }
            reads.add(src, get);
            let mut pttl = cmd("PTTL");
            pttl.arg(src);
            reads.add(src, pttl);
        }
        let replies = reads.query(&self.conn).await?;
        let mut writes = self.batch();
        for ((_, target), r) in pairs.iter().zip(replies.chunks(2)) {
            let ttl = int(r.get(1));
            // -2: gone since SCAN found it (expired); 0: expiring now.
            if ttl != -1 && ttl <= 0 {
                continue;
            }
            match kind {
                PerId::Seen => {
                    let Value::BulkString(value) = &r[0] else {
                        continue;
                    };
                    // NX: a claim already there is this run's copy, or newer.
                    let mut set = cmd("SET");
                    set.arg(target).arg(value.as_slice()).arg("NX");
                    if ttl > 0 {
                        set.arg("PX").arg(ttl);
                    }
                    writes.add_ignored(target, set);
                }
                PerId::Cap => {
                    let members: Vec<(Vec<u8>, String)> = redis::from_redis_value(r[0].clone())?;
                    if members.is_empty() {
                        continue;
                    }
                    let mut z = cmd("ZADD");
                    z.arg(target);
                    for (member, score) in &members {
                        z.arg(score).arg(member.as_slice());
                    }
                    writes.add_ignored(target, z);
                    self.expire(&mut writes, target, ttl);
                }
                PerId::Profile => {
                    let fields: Fields = redis::from_redis_value(r[0].clone())?;
                    if fields.is_empty() {
                        continue;
                    }
                    let mut h = cmd("HSET");
                    h.arg(target);
                    for (k, v) in &fields {
                        h.arg(k.as_slice()).arg(v.as_slice());
                    }
                    writes.add_ignored(target, h);
                    self.expire(&mut writes, target, ttl);
                }
            }
        }
        if !writes.is_empty() {
            writes.query(&self.conn).await?;
        }
        Ok(())
    }

    fn expire(&self, writes: &mut Grouped, target: &str, ttl: i64) {
        if ttl > 0 {
            let mut e = cmd("PEXPIRE");
            e.arg(target).arg(ttl);
            writes.add_ignored(target, e);
        }
    }

    /// Deletes the schema-1 keys, each after its copy: the per-id keys first
    /// and the keys that mark schema-1 data last, so an interruption leaves
    /// markers behind and the next run carries on.
    async fn delete(&mut self) -> anyhow::Result<()> {
        for kind in [PerId::Seen, PerId::Cap, PerId::Profile] {
            self.per_id(kind, true).await?;
        }
        let mut plain = vec![v1::delayed(&self.prefix)];
        for kind in crate::channel::registry::ids() {
            plain.extend(v1::suppression_keys(&self.prefix, kind));
        }
        let mut batch = self.batch();
        for key in &plain {
            let mut u = cmd("UNLINK");
            u.arg(key);
            batch.add_ignored(key, u);
        }
        batch.query(&self.conn).await?;
        let mut streams = vec![Stream::Dead, Stream::Results];
        streams.extend(crate::channel::registry::ids().map(Stream::Jobs));
        for stream in streams {
            self.delete_stream(stream).await?;
        }
        Ok(())
    }

    /// Deletes a schema-1 stream if nothing was appended to it since it was
    /// copied; else copies what was appended and tries again.
    async fn delete_stream(&mut self, stream: Stream) -> anyhow::Result<()> {
        let src = stream.source(&self.prefix);
        let mut c = self.conn.clone();
        // What the copy reached, not what the stream holds now: an entry
        // appended since must not go with it.
        let Some(mut copied) = self.copied.get(&src).copied() else {
            bail!("{src} was not copied; run `tayori migrate` again");
        };
        for _ in 0..DELETE_TRIES {
            let top = copied.map(|id| id.to_string()).unwrap_or_default();
            let deleted: i64 = eval(UNLINK_IF_LAST, &src)
                .arg(&top)
                .query_async(&mut c)
                .await?;
            if deleted == 1 {
                return Ok(());
            }
            // Entries were appended after the copy (a CRM still enqueuing):
            // copy them too. Their counts join the summary.
            copied = self.copy_stream(stream, copied).await?;
        }
        bail!(
            "{src} keeps getting new entries: stop whatever writes to it (the CRM's enqueuer) \
             and run `tayori migrate` again"
        )
    }

    /// Records schema 2 and forgets the migration, in one transaction.
    async fn finish(&self) -> anyhow::Result<()> {
        let _: () = redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(self.keys.schema())
            .arg("version")
            .arg(SCHEMA_VERSION)
            .arg("partitions")
            .arg(self.keys.partitions())
            .ignore()
            .cmd("DEL")
            .arg(migrating_key(&self.keys))
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

// --- N → M partitions ------------------------------------------------------------

/// Deletes a stream of a removed partition only if it is empty, so an entry
/// appended after its entries were moved is never lost. 1: gone.
const DEL_IF_EMPTY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
if redis.call('XLEN', KEYS[1]) > 0 then return 0 end
redis.call('DEL', KEYS[1])
return 1
";

/// Moves a per-id key (claim, cap, profile) to its name under the new count:
/// RENAME, which is atomic and keeps the TTL. When the new name is taken (only
/// ever by data of some earlier layout: no run writes there twice, a rename
/// being atomic), caps (ARGV[1] = 'merge') are merged — both sets count sends
/// of the same customer, and a union counts each once — with the longer TTL;
/// a claim or profile already there is kept and the old one dropped.
/// 0: the source is gone; 1: renamed; 2: the target was kept (or merged into).
const MOVE_KEY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return 1
end
if ARGV[1] == 'merge' and redis.call('TYPE', KEYS[1]).ok == 'zset'
   and redis.call('TYPE', KEYS[2]).ok == 'zset' then
  local a, b = redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])
  redis.call('ZUNIONSTORE', KEYS[2], 2, KEYS[2], KEYS[1], 'AGGREGATE', 'MAX')
  if a > 0 and b > 0 then redis.call('PEXPIRE', KEYS[2], math.max(a, b)) end
end
redis.call('DEL', KEYS[1])
return 2
";

/// The consumer this command reads the profile updater's group as, to
/// acknowledge the moved events the updater had already counted.
const PROFILES_MIGRATE_CONSUMER: &str = "tayori-migrate";

/// What identifies an entry a run appended to a target stream: the stream,
/// the entry's `origin`, and a hash of its other fields but `first_at` (which
/// a move may add). See [`copy_identity`].
type CopyIdentity = (String, Vec<u8>, u64);

/// The identity of `fields` appended to `target`; `None` without an `origin`
/// (every job or dead letter a move appends has one).
fn copy_identity(target: &str, fields: &Fields) -> Option<CopyIdentity> {
    use std::hash::{Hash, Hasher};
    let origin = field(fields, "origin")?;
    // A fixed-key SipHash: the same in every process, not only this one.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (k, v) in fields {
        if k != b"origin" && k != b"first_at" {
            k.hash(&mut h);
            v.hash(&mut h);
        }
    }
    Some((target.to_owned(), origin.to_vec(), h.finish()))
}

/// The fields an entry moves with. A job or dead letter without an `origin`
/// gets its old id as one: that is the identity its dedupe claim holds (a
/// claim stores the origin of the entry that made it, the entry's own id when
/// it has none), so the moved entry still passes its claim as the same job and
/// a second job reusing the id is still a `duplicate`. A job without
/// `first_at` gets the time of that origin, which is what its age was counted
/// from (`Entry::first_at_ms`), so `retry.max_age` does not start over.
/// Results events move unchanged.
fn moved_fields(stream: Stream, e: &StreamEntry) -> Fields {
    let mut fields = e.fields.clone();
    if matches!(stream, Stream::Results) {
        return fields;
    }
    if field(&fields, "origin").is_none() {
        fields.push((b"origin".to_vec(), e.id.to_string().into_bytes()));
    }
    if matches!(stream, Stream::Jobs(_)) && field(&fields, "first_at").is_none() {
        let origin_ms = field(&fields, "origin")
            .and_then(|o| std::str::from_utf8(o).ok())
            .and_then(|o| o.parse::<StreamId>().ok())
            .map(|id| id.ms);
        if let Some(ms) = origin_ms {
            fields.push((b"first_at".to_vec(), ms.to_string().into_bytes()));
        }
    }
    fields
}

/// A consumer group of a stream: its name and last-delivered id.
struct GroupInfo {
    name: String,
    last_delivered: StreamId,
}

/// The ids of an `XREADGROUP` reply: `[[name, entries], …]` (RESP2) or
/// `{name: entries}` (RESP3), an entry being `[id, fields]`.
fn read_ids(reply: &Value) -> Vec<String> {
    let lists: Vec<&Value> = match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) => pair.get(1),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    let mut ids = Vec::new();
    for list in lists {
        let Value::Array(entries) = list else {
            continue;
        };
        for e in entries {
            if let Some(id) = match e {
                Value::Array(pair) => pair.first().and_then(text),
                _ => None,
            } {
                ids.push(id);
            }
        }
    }
    ids
}

impl Migration {
    /// Moves schema-2 data from `resume.from` partitions into the configured
    /// count (the module doc, "N → M partitions").
    async fn repartition(&mut self, resume: Resume) -> anyhow::Result<i32> {
        let from = resume.from;
        let n = self.keys.partitions();
        let old = Keys::new(&self.prefix, from);
        if !self.dry_run {
            let mut c = self.conn.clone();
            let key = migrating_key(&self.keys);
            // Recorded before the first write: a later run into another count
            // is refused in `survey`, and a rerun knows since when the
            // targets may hold its copies.
            let _: () = cmd("HSETNX")
                .arg(&key)
                .arg("partitions")
                .arg(n)
                .query_async(&mut c)
                .await?;
            if !resume.resumed {
                let (secs, micros): (u64, u64) = cmd("TIME").query_async(&mut c).await?;
                let _: () = cmd("HSETNX")
                    .arg(&key)
                    .arg("since")
                    .arg(secs * 1000 + micros / 1000)
                    .query_async(&mut c)
                    .await?;
            } else {
                self.index_copies(resume.since).await?;
            }
            // Every job stream of the new count exists with the daemons' group
            // before anything is appended to it; at `0`, so all of it is
            // delivered. A group that exists is left where it is.
            for kind in crate::channel::registry::ids() {
                let targets: Vec<String> = self
                    .keys
                    .all_partitions()
                    .map(|p| self.keys.jobs(p, kind))
                    .collect();
                self.create_groups(&targets, GROUP, "0").await?;
            }
        }
        self.spread_results_groups(&old).await?;
        for k in old.all_partitions() {
            for kind in crate::channel::registry::ids() {
                self.move_stream(&old, Stream::Jobs(kind), k).await?;
            }
            self.move_stream(&old, Stream::Results, k).await?;
            self.move_stream(&old, Stream::Dead, k).await?;
            self.move_delayed(&old, k).await?;
            for kind in crate::channel::registry::ids() {
                self.move_suppressions(&old, kind, k).await?;
            }
        }
        self.move_per_id(from).await?;
        let heading = format!("redis.partitions {from} → {n}");
        if self.dry_run {
            self.counts.print(&format!("would move ({heading}):"));
            return Ok(0);
        }
        self.acknowledge_counted().await?;
        if n < from {
            self.delete_removed(&old).await?;
        }
        self.finish().await?;
        self.counts.print(&format!("moved ({heading}):"));
        println!(
            "The CRM now computes partitions with N = {n}: it writes jobs to \
             {p}:{{k}}:jobs:<channel> and reads {p}:{{k}}:results for k < {n} (docs/scaling.md).",
            p = self.prefix
        );
        if n < from {
            println!(
                "Partitions {n} to {} are gone: a CRM still reading or writing them must stop. \
                 (Tayori's dedupe claims stay there: docs/scaling.md.)",
                from - 1
            );
        }
        Ok(0)
    }

    /// Indexes what an interrupted run appended to the job and dead-letter
    /// streams of the new count (entries with an `origin` since it started;
    /// all of them when it did not record its start), so this run deletes
    /// the old copy of an entry that is already there instead of appending it
    /// again.
    async fn index_copies(&mut self, since: Option<u64>) -> anyhow::Result<()> {
        let mut targets: Vec<String> = Vec::new();
        for p in self.keys.all_partitions() {
            targets.extend(crate::channel::registry::ids().map(|k| self.keys.jobs(p, k)));
            targets.push(self.keys.dead(p));
        }
        for t in targets {
            let mut start = match since {
                Some(ms) => format!("{ms}-0"),
                None => "-".to_owned(),
            };
            loop {
                let page = xrange(&self.conn, &t, &start, "+", PAGE).await?;
                for e in &page {
                    if let Some(identity) = copy_identity(&t, &e.fields) {
                        *self.copies.entry(identity).or_default() += 1;
                    }
                }
                match page.last().and_then(|e| e.id.next()) {
                    Some(next) if page.len() == PAGE => start = next.to_string(),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// A stream's consumer groups (none for a missing stream).
    async fn groups_of(&self, stream: &str) -> anyhow::Result<Vec<GroupInfo>> {
        let reply: Value = eval(XINFO, stream)
            .query_async(&mut self.conn.clone())
            .await?;
        let Value::Array(groups) = reply else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for g in &groups {
            let f = info_fields(g);
            let Some(name) = info_get(&f, "name").and_then(text) else {
                continue;
            };
            let last_delivered = match info_get(&f, "last-delivered-id").and_then(text) {
                Some(id) => id.parse()?,
                None => StreamId::ZERO,
            };
            out.push(GroupInfo {
                name,
                last_delivered,
            });
        }
        Ok(out)
    }

    /// Creates every consumer group of any old results stream (the CRM's, the
    /// profile updater's) on every results stream of the new count that lacks
    /// it, at the stream's last id (`$`), before any event moves: moved events
    /// get new ids above it, so each group gets every moved event.
    async fn spread_results_groups(&mut self, old: &Keys) -> anyhow::Result<()> {
        let within = live_within().as_millis() as i64;
        let mut names = BTreeSet::new();
        for k in old.all_partitions() {
            let src = old.results(k);
            for g in self.groups_of(&src).await? {
                // A reader still active reads events before they move and
                // again after: tell the operator.
                let mut consumers = eval(XINFO, &src);
                consumers.arg(&g.name);
                if let Value::Array(list) = consumers
                    .query_async::<Value>(&mut self.conn.clone())
                    .await?
                {
                    for consumer in &list {
                        let cf = info_fields(consumer);
                        if int(info_get(&cf, "idle")) < within {
                            let who = info_get(&cf, "name").and_then(text).unwrap_or_default();
                            eprintln!(
                                "tayori migrate: note: {who} of results group {} is still reading \
                                 {src}; it will see the events that move again in their new stream",
                                g.name
                            );
                        }
                    }
                }
                names.insert(g.name);
            }
        }
        for p in self.keys.all_partitions() {
            let target = self.keys.results(p);
            let have: HashSet<String> = self
                .groups_of(&target)
                .await?
                .into_iter()
                .map(|g| g.name)
                .collect();
            for name in names.iter().filter(|g| !have.contains(*g)) {
                self.counts.groups += 1;
                if !self.dry_run {
                    self.create_groups(std::slice::from_ref(&target), name, "$")
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The ids pending in `group` of `stream`.
    async fn pending_ids(&self, stream: &str, group: &str) -> anyhow::Result<HashSet<StreamId>> {
        let mut ids = HashSet::new();
        let mut start = "-".to_owned();
        loop {
            let rows: Vec<(String, String, u64, u64)> = cmd("XPENDING")
                .arg(stream)
                .arg(group)
                .arg(&start)
                .arg("+")
                .arg(PAGE)
                .query_async(&mut self.conn.clone())
                .await?;
            let mut last = None;
            for (id, ..) in &rows {
                let id: StreamId = id.parse()?;
                ids.insert(id);
                last = Some(id);
            }
            match last.and_then(StreamId::next) {
                Some(next) if rows.len() == PAGE => start = next.to_string(),
                _ => return Ok(ids),
            }
        }
    }

    /// Moves the entries of partition `k`'s `stream` (old count) that belong
    /// to another partition under the new count: each is appended to its
    /// target with a new id, acknowledged in every group of the old stream and
    /// deleted from it, a page at a time in one MULTI (atomic on a standalone
    /// Redis: a page is in one place or the other, never in both or neither).
    ///
    /// Why a new id (`*`), not the old one: the target stream's consumer group
    /// has a last-delivered id, and an entry appended below it is never
    /// delivered (`XREADGROUP >` only reads above it); nor does XADD accept an
    /// id below the stream's last one. A job keeps its identity in `origin`.
    async fn move_stream(
        &mut self,
        old: &Keys,
        stream: Stream,
        k: Partition,
    ) -> anyhow::Result<()> {
        let src = stream.target(old, k);
        let groups = if self.dry_run {
            Vec::new()
        } else {
            self.groups_of(&src).await?
        };
        // An event the profile updater had read and acknowledged here: counted.
        let profiles = match groups
            .iter()
            .find(|g| matches!(stream, Stream::Results) && g.name == PROFILES_GROUP)
        {
            Some(g) => Some((
                g.last_delivered,
                self.pending_ids(&src, PROFILES_GROUP).await?,
            )),
            None => None,
        };
        let mut start = "-".to_owned();
        loop {
            let page = xrange(&self.conn, &src, &start, "+", PAGE).await?;
            let Some(tail) = page.last().map(|e| e.id) else {
                break;
            };
            let mut tx = redis::pipe();
            tx.atomic();
            // Per XADD in the transaction: its target and whether the profile
            // updater had counted the event.
            let mut appended: Vec<(String, bool)> = Vec::new();
            let mut moved: Vec<String> = Vec::new();
            for e in &page {
                let p = stream.partition(&self.keys, &e.fields);
                if p == k {
                    continue;
                }
                self.counts.add(stream, 1);
                if self.dry_run {
                    continue;
                }
                let target = stream.target(&self.keys, p);
                let fields = moved_fields(stream, e);
                let copied = copy_identity(&target, &fields)
                    .and_then(|id| self.copies.get_mut(&id))
                    .filter(|n| **n > 0);
                if let Some(n) = copied {
                    // An interrupted run appended it already: only the old
                    // copy is left to delete.
                    *n -= 1;
                    self.counts.already += 1;
                } else {
                    let x = tx.cmd("XADD").arg(&target).arg("*");
                    for (f, v) in &fields {
                        x.arg(f.as_slice()).arg(v.as_slice());
                    }
                    let counted = profiles
                        .as_ref()
                        .is_some_and(|(last, pending)| e.id <= *last && !pending.contains(&e.id));
                    appended.push((target, counted));
                }
                moved.push(e.id.to_string());
            }
            if !moved.is_empty() {
                // Acknowledged first: a pending entry deleted without it would
                // stay in its group's pending list as a dead id (XAUTOCLAIM
                // reports those as trimmed).
                for g in &groups {
                    tx.cmd("XACK").arg(&src).arg(&g.name).arg(&moved).ignore();
                }
                tx.cmd("XDEL").arg(&src).arg(&moved).ignore();
                let ids: Vec<Value> = tx.query_async(&mut self.conn.clone()).await?;
                for ((target, counted), id) in appended.into_iter().zip(ids) {
                    if let (true, Some(id)) = (counted, text(&id)) {
                        self.counted.entry(target).or_default().insert(id);
                    }
                }
            }
            match tail.next() {
                Some(next) if page.len() == PAGE => start = next.to_string(),
                _ => break,
            }
        }
        Ok(())
    }

    /// Moves the members of partition `k`'s delayed set that belong elsewhere:
    /// ZADD to the target with the same score, ZREM here, in one MULTI.
    async fn move_delayed(&mut self, old: &Keys, k: Partition) -> anyhow::Result<()> {
        let src = old.delayed(k);
        let mut c = self.conn.clone();
        // Ranks: nothing else writes while no daemon runs, and the members
        // that stay keep their ranks ahead of the next page.
        let mut from = 0usize;
        loop {
            let page: Vec<(Vec<u8>, String)> = cmd("ZRANGE")
                .arg(&src)
                .arg(from)
                .arg(from + PAGE - 1)
                .arg("WITHSCORES")
                .query_async(&mut c)
                .await?;
            if page.is_empty() {
                break;
            }
            let mut tx = redis::pipe();
            tx.atomic();
            let mut stayed = 0;
            let mut moved = 0;
            for (member, score) in &page {
                let p = delayed_partition(&self.keys, member);
                if p == k {
                    stayed += 1;
                    continue;
                }
                moved += 1;
                tx.cmd("ZADD")
                    .arg(self.keys.delayed(p))
                    .arg(score)
                    .arg(member.as_slice())
                    .ignore();
                tx.cmd("ZREM").arg(&src).arg(member.as_slice()).ignore();
            }
            self.counts.delayed += moved;
            if !self.dry_run && moved > 0 {
                let _: () = tx.query_async(&mut c).await?;
            }
            from += if self.dry_run { page.len() } else { stayed };
            if page.len() < PAGE {
                break;
            }
        }
        Ok(())
    }

    /// Moves the suppressions of partition `k` on a channel whose address
    /// belongs elsewhere: per address, its reason, change time and change
    /// marks together, in one MULTI with their deletion here. The hash field
    /// is already the suppression form, which is what the partition is
    /// computed from. Should the target already hold the address, the entry
    /// with the later change time (`:at`) wins, as in `suppress.lua`; on a
    /// tie, or without times, the moved one.
    async fn move_suppressions(
        &mut self,
        old: &Keys,
        kind: ChannelId,
        k: Partition,
    ) -> anyhow::Result<()> {
        // The order of `Keys::suppression_keys`: reasons, times, marks.
        let sources = old.suppression_keys_in(k, kind);
        let mut c = self.conn.clone();
        for (slot, src) in sources.iter().enumerate() {
            let mut cursor = 0u64;
            loop {
                let (next, page): (u64, Fields) = cmd("HSCAN")
                    .arg(src)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut c)
                    .await?;
                cursor = next;
                let mut addresses: BTreeSet<String> = BTreeSet::new();
                for (raw, _) in &page {
                    let Ok(address) = std::str::from_utf8(raw) else {
                        // Tayori writes addresses as text; no partition for this.
                        eprintln!(
                            "tayori migrate: warning: a field of {src} that is not UTF-8 was left in place"
                        );
                        continue;
                    };
                    if self.keys.address_partition(address) != k {
                        addresses.insert(address.to_owned());
                    }
                }
                if self.dry_run {
                    if slot == 0 {
                        self.counts.suppressions += addresses.len() as u64;
                    } else {
                        self.counts.suppression_marks += addresses.len() as u64;
                    }
                } else if !addresses.is_empty() {
                    let addresses: Vec<String> = addresses.into_iter().collect();
                    self.move_addresses(kind, &sources, &addresses).await?;
                }
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn move_addresses(
        &mut self,
        kind: ChannelId,
        sources: &[String; 3],
        addresses: &[String],
    ) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        let mut reads = redis::pipe();
        for a in addresses {
            for src in sources {
                reads.cmd("HGET").arg(src).arg(a);
            }
            let [_, target_at, _] = self.keys.suppression_keys(kind, a);
            reads.cmd("HGET").arg(target_at).arg(a);
        }
        let values: Vec<Option<Vec<u8>>> = reads.query_async(&mut c).await?;
        let mut tx = redis::pipe();
        tx.atomic();
        let mut writes = false;
        for (a, v) in addresses.iter().zip(values.chunks(4)) {
            let (old_values, target_at) = (&v[..3], &v[3]);
            if old_values.iter().all(Option::is_none) {
                // Moved already (found again by another hash's scan).
                continue;
            }
            writes = true;
            let at = |v: &Option<Vec<u8>>| {
                v.as_deref()
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .and_then(|t| t.parse::<i64>().ok())
            };
            let target_newer =
                matches!((at(target_at), at(&old_values[1])), (Some(t), Some(o)) if t > o);
            let targets = self.keys.suppression_keys(kind, a);
            if target_newer {
                self.counts.kept_target += 1;
            } else {
                for (target, value) in targets.iter().zip(old_values) {
                    match value {
                        Some(value) => tx
                            .cmd("HSET")
                            .arg(target)
                            .arg(a)
                            .arg(value.as_slice())
                            .ignore(),
                        None => tx.cmd("HDEL").arg(target).arg(a).ignore(),
                    };
                }
                if old_values[0].is_some() {
                    self.counts.suppressions += 1;
                }
                self.counts.suppression_marks +=
                    old_values[1..].iter().filter(|v| v.is_some()).count() as u64;
            }
            for src in sources {
                tx.cmd("HDEL").arg(src).arg(a).ignore();
            }
        }
        if writes {
            let _: () = tx.query_async(&mut c).await?;
        }
        Ok(())
    }

    /// One SCAN over the partitioned keys of the first `from` partitions:
    /// dedupe claims, caps and profiles whose partition changes are renamed
    /// ([`MOVE_KEY`]); when partitions are removed, their transient keys
    /// (start counts, the mover's lease, webhook dedupe keys) are deleted and
    /// any other key of theirs this build does not know is reported.
    async fn move_per_id(&mut self, from: u32) -> anyhow::Result<()> {
        let n = self.keys.partitions();
        let pattern = self.keys.partitioned_pattern();
        let mut c = self.conn.clone();
        let mut cursor = 0u64;
        loop {
            let (next, found): (u64, Vec<Vec<u8>>) = cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut c)
                .await?;
            cursor = next;
            let mut moves: Vec<(String, String, PerId)> = Vec::new();
            let mut transient: Vec<String> = Vec::new();
            for raw in found {
                let Ok(key) = String::from_utf8(raw) else {
                    continue;
                };
                let Some((k, rest)) = crate::keys::split_partitioned(&self.prefix, &key) else {
                    continue;
                };
                // Partitions past the old count hold only what this migration
                // put there (raising): already in place.
                if k >= from {
                    continue;
                }
                let removed = k >= n;
                let (kind, target) = if let Some(id) = rest.strip_prefix("seen:") {
                    (PerId::Seen, self.keys.legacy_seen(id))
                } else if let Some(customer) = rest.strip_prefix("profile:") {
                    (PerId::Profile, self.keys.profile(customer))
                } else if let Some(cap) = rest.strip_prefix("cap:") {
                    match cap.split_once(':') {
                        Some((scope, customer)) if is_cap_scope(scope) => {
                            (PerId::Cap, self.keys.cap(scope, customer))
                        }
                        _ => {
                            self.counts.odd_caps += 1;
                            if removed {
                                self.counts.leftovers.push(key.clone());
                            }
                            continue;
                        }
                    }
                } else if rest.starts_with("claims:") {
                    // Compact claims keep no job id, so they cannot follow their
                    // id to a new partition: they stay where they are, spread
                    // over `P:schema` `claims_partitions` (queue::claims).
                    continue;
                } else if rest.starts_with("starts:")
                    || rest == "lease:mover"
                    || rest.starts_with("reaction:")
                    || rest.starts_with("emitted:")
                {
                    // Transient: they expire by themselves. Of a partition that
                    // stays they are left (a start count still names its entry
                    // there); of one that goes, nothing would read them. A dead
                    // letter's record of event ids written (`emitted:`) does not
                    // expire, but its key does not say the job's partition: it is
                    // treated alike, and a letter re-driven after the move may
                    // report its failure once more (docs/reliability.md).
                    if removed {
                        transient.push(key.clone());
                    }
                    continue;
                } else if rest.starts_with("jobs:")
                    || rest.starts_with("suppressed:")
                    || matches!(rest, "results" | "delayed" | "dead")
                {
                    // Moved entry by entry, above.
                    continue;
                } else {
                    if removed {
                        self.counts.leftovers.push(key.clone());
                    }
                    continue;
                };
                if target != key {
                    self.counts.add_per_id(kind, 1);
                    moves.push((key, target, kind));
                }
            }
            self.counts.transient += transient.len() as u64;
            if !self.dry_run {
                let mut pipe = redis::pipe();
                for (src, target, kind) in &moves {
                    pipe.cmd("EVAL")
                        .arg(MOVE_KEY)
                        .arg(2)
                        .arg(src)
                        .arg(target)
                        .arg(if *kind == PerId::Cap { "merge" } else { "keep" });
                }
                for key in &transient {
                    pipe.cmd("UNLINK").arg(key).ignore();
                }
                if !moves.is_empty() || !transient.is_empty() {
                    let replies: Vec<i64> = pipe.query_async(&mut c).await?;
                    self.counts.kept_target += replies.iter().filter(|r| **r == 2).count() as u64;
                }
            }
            if cursor == 0 {
                break;
            }
        }
        if !self.counts.leftovers.is_empty() {
            eprintln!(
                "tayori migrate: warning: {} keys of the removed partitions are not Tayori's and \
                 were left in place (listed below)",
                self.counts.leftovers.len()
            );
        }
        Ok(())
    }

    /// The profile updater counts every event its group delivers; the moved
    /// events it had already counted come again in their new stream (new ids,
    /// above its position). Reads its group there as [`PROFILES_MIGRATE_CONSUMER`]
    /// and acknowledges those, so no profile counts an event twice; the other
    /// events read stay pending for that consumer, and a daemon's updater takes
    /// them over once they are idle for a minute (`claim_abandoned`) and counts
    /// them then.
    async fn acknowledge_counted(&mut self) -> anyhow::Result<()> {
        let counted = std::mem::take(&mut self.counted);
        let mut c = self.conn.clone();
        for (target, ids) in counted {
            loop {
                let reply: Value = cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(PROFILES_GROUP)
                    .arg(PROFILES_MIGRATE_CONSUMER)
                    .arg("COUNT")
                    .arg(PAGE)
                    .arg("STREAMS")
                    .arg(&target)
                    .arg(">")
                    .query_async(&mut c)
                    .await?;
                let read = read_ids(&reply);
                if read.is_empty() {
                    break;
                }
                let ack: Vec<&String> = read.iter().filter(|id| ids.contains(*id)).collect();
                if !ack.is_empty() {
                    let _: i64 = cmd("XACK")
                        .arg(&target)
                        .arg(PROFILES_GROUP)
                        .arg(&ack)
                        .query_async(&mut c)
                        .await?;
                    self.counts.profile_acked += ack.len() as u64;
                }
            }
            // Holding nothing, the consumer would only clutter XINFO; holding
            // something, it stays until a daemon has taken it all over.
            let held: Vec<Value> = cmd("XPENDING")
                .arg(&target)
                .arg(PROFILES_GROUP)
                .arg("-")
                .arg("+")
                .arg(1)
                .arg(PROFILES_MIGRATE_CONSUMER)
                .query_async(&mut c)
                .await?;
            if held.is_empty() {
                let _: i64 = cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&target)
                    .arg(PROFILES_GROUP)
                    .arg(PROFILES_MIGRATE_CONSUMER)
                    .query_async(&mut c)
                    .await?;
            }
        }
        Ok(())
    }

    /// Lowering: deletes the streams of the removed partitions once they are
    /// empty (their groups go with them). One that is not (something appended
    /// to it since its entries moved) is moved again first.
    async fn delete_removed(&mut self, old: &Keys) -> anyhow::Result<()> {
        let n = self.keys.partitions();
        let mut streams: Vec<Stream> = crate::channel::registry::ids().map(Stream::Jobs).collect();
        streams.extend([Stream::Results, Stream::Dead]);
        for k in old.all_partitions().skip(n as usize) {
            for stream in &streams {
                let key = stream.target(old, k);
                let existed: bool = cmd("EXISTS")
                    .arg(&key)
                    .query_async(&mut self.conn.clone())
                    .await?;
                let mut gone = false;
                for _ in 0..DELETE_TRIES {
                    let deleted: i64 = eval(DEL_IF_EMPTY, &key)
                        .query_async(&mut self.conn.clone())
                        .await?;
                    if deleted == 1 {
                        gone = true;
                        break;
                    }
                    self.move_stream(old, *stream, k).await?;
                }
                if !gone {
                    bail!(
                        "{key} keeps getting new entries: stop whatever writes to it (the CRM's \
                         enqueuer, still computing partitions with the old count) and run \
                         `tayori migrate` again"
                    );
                }
                if existed {
                    self.counts.emptied += 1;
                }
            }
        }
        Ok(())
    }
}

fn is_cap_scope(scope: &str) -> bool {
    scope == "all" || crate::channel::registry::ids().any(|k| k.as_str() == scope)
}

async fn xrange(
    conn: &RedisConnection,
    key: &str,
    start: &str,
    end: &str,
    count: usize,
) -> anyhow::Result<Vec<StreamEntry>> {
    let page: Vec<(String, Fields)> = cmd("XRANGE")
        .arg(key)
        .arg(start)
        .arg(end)
        .arg("COUNT")
        .arg(count)
        .query_async(&mut conn.clone())
        .await?;
    page.into_iter()
        .map(|(id, fields)| {
            Ok(StreamEntry {
                id: id.parse()?,
                fields,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_step_across_milliseconds() {
        let id: StreamId = "5-0".parse().unwrap();
        assert_eq!(id.prev().unwrap().to_string(), format!("4-{}", u64::MAX));
        assert_eq!(
            "5-3"
                .parse::<StreamId>()
                .unwrap()
                .prev()
                .unwrap()
                .to_string(),
            "5-2"
        );
        assert_eq!(StreamId::ZERO.prev(), None);
        assert_eq!("7".parse::<StreamId>().unwrap(), StreamId { ms: 7, seq: 0 });
        assert_eq!(
            format!("3-{}", u64::MAX)
                .parse::<StreamId>()
                .unwrap()
                .next()
                .unwrap()
                .to_string(),
            "4-0"
        );
        assert_eq!(StreamId::MAX.next(), None);
        assert!("x-1".parse::<StreamId>().is_err());
    }

    #[test]
    fn entries_go_where_schema_2_writes_them() {
        let keys = Keys::new("t", 12);
        let job = br#"{"id":"j-1","customer_id":"C-9","channel":"email"}"#;
        assert_eq!(
            json_partition(&keys, Some(job), "id"),
            keys.job_partition(Some("C-9"), "j-1")
        );
        let no_customer = br#"{"id":"j-1"}"#;
        assert_eq!(
            json_partition(&keys, Some(no_customer), "id"),
            keys.job_partition(None, "j-1")
        );
        let event = br#"{"type":"sent","job_id":"j-1","customer_id":"C-9"}"#;
        assert_eq!(
            json_partition(&keys, Some(event), "job_id"),
            keys.job_partition(Some("C-9"), "j-1")
        );
        let reaction = br#"{"type":"unfollow","customer_id":"C-9"}"#;
        assert_eq!(
            json_partition(&keys, Some(reaction), "job_id"),
            Partition::default()
        );
        assert_eq!(
            json_partition(&keys, Some(b"not json"), "id"),
            Partition::default()
        );
        assert_eq!(json_partition(&keys, None, "id"), Partition::default());
        let member = serde_json::json!({
            "c": "line",
            "f": ["job", String::from_utf8_lossy(job), "attempt", "1"],
        })
        .to_string();
        assert_eq!(
            delayed_partition(&keys, member.as_bytes()),
            keys.job_partition(Some("C-9"), "j-1")
        );
        assert_eq!(
            delayed_partition(&keys, br#"{"c":"line","f":["job"]}"#),
            Partition::default()
        );
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> StreamEntry {
        StreamEntry {
            id: id.parse().unwrap(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn a_moved_job_keeps_its_identity_and_age() {
        let job = ("job", r#"{"id":"j-1"}"#);
        // A CRM's entry: its old id becomes its origin, and its age counts from it.
        let moved = moved_fields(
            Stream::Jobs(ChannelId::new("email")),
            &entry("1700-3", &[job]),
        );
        assert_eq!(field(&moved, "origin"), Some(&b"1700-3"[..]));
        assert_eq!(field(&moved, "first_at"), Some(&b"1700"[..]));
        // A retry keeps what it carries.
        let retry = entry(
            "1900-0",
            &[
                job,
                ("attempt", "2"),
                ("origin", "1700-3"),
                ("first_at", "1650"),
            ],
        );
        let moved = moved_fields(Stream::Jobs(ChannelId::new("line")), &retry);
        assert_eq!(moved, retry.fields);
        // A dead letter gets an origin only; an event moves unchanged.
        let dead = moved_fields(Stream::Dead, &entry("1800-0", &[job]));
        assert_eq!(field(&dead, "origin"), Some(&b"1800-0"[..]));
        assert_eq!(field(&dead, "first_at"), None);
        let event = entry("1800-1", &[("event", "{}")]);
        assert_eq!(moved_fields(Stream::Results, &event), event.fields);
    }

    #[test]
    fn a_copy_is_known_by_its_target_origin_and_fields_but_first_at() {
        let e = entry("1700-3", &[("job", "{}"), ("attempt", "1")]);
        let moved = moved_fields(Stream::Jobs(ChannelId::new("email")), &e);
        let by_hand = entry(
            "1900-0",
            &[("job", "{}"), ("attempt", "1"), ("origin", "1700-3")],
        );
        assert_eq!(
            copy_identity("t:{1}:jobs:email", &moved),
            copy_identity("t:{1}:jobs:email", &by_hand.fields)
        );
        assert_ne!(
            copy_identity("t:{1}:jobs:email", &moved),
            copy_identity("t:{2}:jobs:email", &moved)
        );
        let other = entry(
            "1900-0",
            &[("job", "{}"), ("attempt", "2"), ("origin", "1700-3")],
        );
        assert_ne!(
            copy_identity("t:{1}:jobs:email", &moved),
            copy_identity("t:{1}:jobs:email", &other.fields)
        );
        assert_eq!(copy_identity("t:{1}:jobs:email", &e.fields), None);
    }

    #[test]
    fn xreadgroup_ids_in_both_protocols() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entries = Value::Array(vec![
            Value::Array(vec![b("1-1"), Value::Array(vec![b("event"), b("{}")])]),
            Value::Array(vec![b("1-2"), Value::Array(vec![b("event"), b("{}")])]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            b("t:{0}:results"),
            entries.clone(),
        ])]);
        let resp3 = Value::Map(vec![(b("t:{0}:results"), entries)]);
        assert_eq!(read_ids(&resp2), ["1-1", "1-2"]);
        assert_eq!(read_ids(&resp3), ["1-1", "1-2"]);
        assert!(read_ids(&Value::Nil).is_empty());
    }

    #[test]
    fn cap_scopes_are_all_and_the_channels() {
        assert!(is_cap_scope("all"));
        assert!(is_cap_scope("sms"));
        assert!(!is_cap_scope("campaign"));
    }
}
