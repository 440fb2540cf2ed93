//! Dedupe claims, compact: a job id's claim is a 12-byte field in a small hash.
//!
//! The guarantee is the one `SET seen:<id> <origin> NX GET EX <window>` gave:
//! a second job with an id claimed within `queue.dedupe_window` is a duplicate,
//! and a retry, fallback or redelivery of the same job (the same origin) passes.
//! What changed is the bytes: that string key cost 160–192 bytes (a key of its
//! own, an expiry entry, the id twice); a claim here costs about 30
//! (docs/scaling.md, `cargo bench --bench footprint`).
//!
//! Layout, per partition `k` of the job id among `P:schema` `claims_partitions`
//! (`P:{k}:claims:<window s>:`, see
//! [`crate::keys::Keys::claims`]):
//!
//! * Time is cut into buckets one window wide (`bucket = now / window`, by
//!   the Redis server's clock). A claim is written to the current bucket and
//!   looked up in it and the one before, so it is seen for at least one window
//!   and at most two; a bucket's keys expire one window after it ends.
//! * A bucket is split into shards (hashes) small enough to stay listpacks:
//!   its shard count is sized from the bucket before (16 claims a shard), and
//!   when a bucket outgrows it (a first bucket, a sudden rise) it adds a
//!   generation four times larger. Lookups read every generation of both
//!   buckets, oldest first; the newest is checked and written by one
//!   `HSETNX`. Once sizes have settled a claim is an `HGET` in the bucket
//!   before, an `HSETNX` and a `PTTL` (its shard's expiry, set once).
//! * The field is 12 bytes of SHA-256(job id); 4 more choose the shard. Two ids
//!   share a field with probability about n²/2⁹⁷ (3·10⁻¹⁴ for 70 million claims
//!   in a bucket): a false `duplicate` that rare is below any other failure.
//! * The value is the origin, an entry id packed into one integer
//!   ([`pack`]).
//!
//! Every check and write of a batch (one partition) is one script, atomic: the
//! first claim of an id is decided inside Redis, with no race between daemons.
//! Changing `queue.dedupe_window` starts buckets of the new width, so ids
//! claimed before the change are not seen after it (docs/operations.md).
//! For one window after an upgrade from the string keys, the script also reads
//! the old key (`P:{k}:seen:<id>`); `P:schema` → `claims_since` says when the
//! compact claims started (0: a Redis that never had the old keys).

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::{Cmd, Value};

use crate::keys::Keys;

/// The shared functions (layout, lookup, write), before each script's body.
const LIB: &str = include_str!("claims.lua");

/// Checks and claims a batch of one partition. ARGV after the window and shards: per
/// claim, field, shard hash, value, legacy key (or ''). Replies per claim 1
/// (claimed now, or already this value's) or the first claim's value.
const CLAIM_BODY: &str = r#"
local prev, cur = gens_of(prev_meta), current_gens()
local out, added = {}, 0
for i = 3, #ARGV, 4 do
  local value = ARGV[i + 2]
  local found = claim(prev, cur, ARGV[i], tonumber(ARGV[i + 1]), value, ARGV[i + 3])
  if not found then
    added = added + 1
    out[#out + 1] = 1
  elseif found == value then
    out[#out + 1] = 1
  else
    out[#out + 1] = found
  end
end
count(cur, added)
return out
"#;

/// The API's add: KEYS[2] the stream; ARGV after the window and shards: field, shard
/// hash, legacy key, job. Replies `{1, entry id}` (added and claimed with it)
/// or `{0, first claim's value}`.
const ADD_BODY: &str = r#"
local prev, cur = gens_of(prev_meta), current_gens()
local h = tonumber(ARGV[4])
local found = find(prev, cur, ARGV[3], h, ARGV[5])
if found then return {0, found} end
local id = redis.call('XADD', KEYS[2], '*', 'job', ARGV[6])
-- Nothing was found above and a script runs alone: this writes.
write(cur, ARGV[3], h, pack(id))
count(cur, 1)
return {1, id}
"#;

/// Deletes a claim: every copy with ARGV[6]'s value, or every copy when
/// ARGV[6] is ''. ARGV after the window and shards: field, shard hash, legacy
/// key, value.
/// Replies how many it deleted.
const RELEASE_BODY: &str = r#"
local prev, cur = gens_of(prev_meta), gens_of(cur_meta)
local h, gone = tonumber(ARGV[4]), 0
for _ = 1, 3 do
  local v, key = find(prev, cur, ARGV[3], h, ARGV[5])
  if not v or (ARGV[6] ~= '' and v ~= ARGV[6]) then break end
  gone = gone + 1
  if key == ARGV[5] then
    -- The old string key: an expiry of 1 ms deletes it as surely as DEL,
    -- which the documented ACL does not allow.
    redis.call('PEXPIRE', key, 1)
    break
  end
  redis.call('HDEL', key, ARGV[3])
end
return gone
"#;

/// Where a job id's claim lives: its field and the hash that picks its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimId {
    field: [u8; 12],
    shard_hash: u32,
}

impl ClaimId {
    pub fn of(job_id: &str) -> ClaimId {
        let digest = ring::digest::digest(&ring::digest::SHA256, job_id.as_bytes());
        let d = digest.as_ref();
        let mut field = [0u8; 12];
        field.copy_from_slice(&d[4..16]);
        ClaimId {
            field,
            shard_hash: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
        }
    }
}

/// An origin as the claim stores it: an entry id `ms-seq` as `ms * 4096 + seq`
/// (an integer a listpack keeps in 9 bytes, not 15 characters), while that is
/// below 2⁵³ so the scripts' Lua numbers hold it exactly; anything else as it
/// is. Mirrors `pack` in claims.lua.
pub fn pack(origin: &str) -> String {
    if let Some((ms, seq)) = origin.split_once('-') {
        if let (Ok(ms), Ok(seq)) = (ms.parse::<u64>(), seq.parse::<u64>()) {
            if seq < 4096 && ms < 1 << 41 && !ms_or_seq_padded(origin) {
                return (ms * 4096 + seq).to_string();
            }
        }
    }
    origin.to_owned()
}

/// `007-1` parses like `7-1` but is another string: kept as it is.
fn ms_or_seq_padded(origin: &str) -> bool {
    origin
        .split('-')
        .any(|part| part.len() > 1 && part.starts_with('0'))
}

/// What [`pack`] stored, as the origin it came from.
pub fn unpack(value: &str) -> String {
    match value.parse::<u64>() {
        Ok(n) => format!("{}-{}", n / 4096, n % 4096),
        Err(_) => value.to_owned(),
    }
}

/// Builds the claim scripts' calls. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Claims {
    keys: Keys,
    /// Until when (ms) claims may still be string keys of the layout before
    /// (`P:schema` `claims_since` + the window); `i64::MAX` until the schema
    /// was read.
    legacy_since: Arc<AtomicI64>,
    /// How many partitions claims are spread over: the partition count when
    /// they started (`P:schema` `claims_partitions`). A claim keeps no job id,
    /// only a digest, so `tayori migrate` could not move it to a new count.
    partitions: Arc<AtomicU32>,
    /// The shard count a first bucket starts with.
    min_shards: Arc<AtomicU32>,
}

/// A first bucket's shards: room for 65,536 × 40 = 2.6 million claims before
/// it grows a generation (another lookup per claim). Shards that hold nothing
/// do not exist, so a small deployment pays nothing for them.
pub const MIN_SHARDS: u32 = 65_536;

/// One job's claim in a batch.
pub struct ClaimArgs<'a> {
    pub job_id: &'a str,
    pub origin: &'a str,
}

impl Claims {
    pub fn new(keys: Keys) -> Claims {
        Claims {
            partitions: Arc::new(AtomicU32::new(keys.partitions())),
            keys,
            legacy_since: Arc::new(AtomicI64::new(i64::MAX)),
            min_shards: Arc::new(AtomicU32::new(MIN_SHARDS)),
        }
    }

    /// Starts first buckets with `shards` (a power of two) instead of
    /// [`MIN_SHARDS`]: tests that watch a bucket grow.
    pub fn set_min_shards(&self, shards: u32) {
        self.min_shards
            .store(shards.max(1).next_power_of_two(), Ordering::Relaxed);
    }

    /// What `P:schema` says: when the compact claims started (ms; 0: never
    /// anything else) and over how many partitions they are spread.
    pub fn set_layout(&self, since_ms: i64, partitions: u32) {
        self.legacy_since.store(since_ms, Ordering::Relaxed);
        self.partitions.store(partitions, Ordering::Relaxed);
    }

    /// The old string key to read too, while claims of the layout before may
    /// still be in their window.
    fn legacy_key(&self, job_id: &str, window: Duration) -> String {
        let since = self.legacy_since.load(Ordering::Relaxed);
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        if since.saturating_add(window_ms) > jiff::Timestamp::now().as_millisecond() {
            self.keys.legacy_seen(job_id)
        } else {
            String::new()
        }
    }

    /// The key a batch's script is routed by: the claims prefix of `job_id`'s
    /// partition.
    pub fn prefix_of(&self, job_id: &str, window: Duration) -> String {
        let p = crate::keys::partition_of(job_id, self.partitions.load(Ordering::Relaxed));
        self.keys.claims(p, window)
    }

    fn eval(&self, script_body: &str, prefix: &str, keys: &[&str], window: Duration) -> Cmd {
        let mut eval = redis::cmd("EVAL");
        // EVAL with the text, not EVALSHA: one script per batch, so the text
        // costs little, and a restarted or failed-over Redis never answers
        // NOSCRIPT in the middle of a pipeline.
        eval.arg(format!("{LIB}{script_body}"))
            .arg(1 + keys.len())
            .arg(prefix)
            .arg(keys)
            .arg(window_ms(window))
            .arg(self.min_shards.load(Ordering::Relaxed));
        eval
    }

    /// The script claiming a batch of ids of one partition (`prefix`).
    pub fn claim_batch(&self, prefix: &str, claims: &[ClaimArgs<'_>], window: Duration) -> Cmd {
        let mut eval = self.eval(CLAIM_BODY, prefix, &[], window);
        for c in claims {
            let id = ClaimId::of(c.job_id);
            eval.arg(&id.field[..])
                .arg(id.shard_hash)
                .arg(pack(c.origin))
                .arg(self.legacy_key(c.job_id, window));
        }
        eval
    }

    /// The API's add of `job` to `stream` (same slot as the claim), claimed
    /// with the entry id it gets.
    pub fn add(&self, job_id: &str, stream: &str, job: &str, window: Duration) -> Cmd {
        let prefix = self.prefix_of(job_id, window);
        let mut eval = self.eval(ADD_BODY, &prefix, &[stream], window);
        let id = ClaimId::of(job_id);
        eval.arg(&id.field[..])
            .arg(id.shard_hash)
            .arg(self.legacy_key(job_id, window))
            .arg(job);
        eval
    }

    /// Deletes `job_id`'s claim: only one holding `origin` when given, else any.
    pub fn release(&self, job_id: &str, origin: Option<&str>, window: Duration) -> Cmd {
        let prefix = self.prefix_of(job_id, window);
        let mut eval = self.eval(RELEASE_BODY, &prefix, &[], window);
        let id = ClaimId::of(job_id);
        eval.arg(&id.field[..])
            .arg(id.shard_hash)
            // Always the old key too: a forget must not leave one behind.
            .arg(self.keys.legacy_seen(job_id))
            .arg(origin.map(pack).unwrap_or_default());
        eval
    }
}

fn window_ms(window: Duration) -> u64 {
    u64::try_from(window.as_millis())
        .unwrap_or(u64::MAX)
        .max(1000)
}

/// A claim script's answer for one job: `None` when the claim is this
/// origin's, else the first claim's origin.
pub fn first_claim(reply: &Value, origin: &str) -> Option<String> {
    match reply {
        Value::BulkString(b) => {
            let found = String::from_utf8_lossy(b);
            // A legacy key holds the origin as it was; a claim, packed.
            (found != origin && found != pack(origin)).then(|| unpack(&found))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_pack_into_one_integer_and_back() {
        for id in ["1733600000000-0", "1-4095", "0-0", "2199023255551-17"] {
            let packed = pack(id);
            assert!(packed.parse::<u64>().is_ok(), "{id} -> {packed}");
            assert_eq!(unpack(&packed), id);
        }
    }

    #[test]
    fn what_does_not_pack_stays_as_it_is() {
        for origin in [
            "1733600000000-4096",
            "2199023255552-0",
            "1733600000000-api00ff",
            "007-1",
            "1-01",
            "plain",
        ] {
            assert_eq!(pack(origin), origin);
            assert_eq!(unpack(origin), origin);
        }
    }

    #[test]
    fn a_claim_id_is_stable_wire_format() {
        // Daemons of different versions must find each other's claims.
        let id = ClaimId::of("job-1");
        let again = ClaimId::of("job-1");
        assert_eq!(id, again);
        assert_ne!(ClaimId::of("job-2"), id);
        let digest = ring::digest::digest(&ring::digest::SHA256, b"job-1");
        assert_eq!(&id.field[..], &digest.as_ref()[4..16]);
    }

    #[test]
    fn the_answer_says_whose_claim_it_is() {
        let mine = "1733600000000-5";
        assert_eq!(first_claim(&Value::Int(1), mine), None);
        let packed = Value::BulkString(pack(mine).into_bytes());
        assert_eq!(first_claim(&packed, mine), None);
        let legacy = Value::BulkString(mine.as_bytes().to_vec());
        assert_eq!(first_claim(&legacy, mine), None);
        let other = Value::BulkString(pack("1733600000000-6").into_bytes());
        assert_eq!(
            first_claim(&other, mine).as_deref(),
            Some("1733600000000-6")
        );
    }
}
