//! Every Redis key Tayori reads or writes is named here, and only here.
//!
//! Layout (schema 2). `P` is `redis.prefix`, `k` a partition (`0 ≤ k < N`,
//! `N = redis.partitions`). A name with `{…}` carries a Redis Cluster hash tag:
//! every key with the same tag lives in the same slot, so one script or one
//! pipeline may touch them together. On a standalone Redis the tags change
//! nothing.
//!
//! | key                          | type   | tag          | TTL              | holds |
//! |------------------------------|--------|--------------|------------------|-------|
//! | `P:{k}:jobs:<channel>`       | stream | partition    | —                | jobs, consumer group `tayori` |
//! | `P:{k}:results`              | stream | partition    | — (retention)    | events for the CRM |
//! | `P:{k}:delayed`              | zset   | partition    | —                | retries and scheduled jobs, by due time |
//! | `P:{k}:dead`                 | stream | partition    | —                | dead letters with their reason |
//! | `P:{k}:starts:<ch>:<entry>`  | string | partition    | dedupe window    | workers that started a redelivered entry |
//! | `P:{k}:lease:mover`          | string | partition    | lease            | which daemon moves the partition's due jobs |
//! | `P:{k}:claims:<w>:<b>`       | hash   | of the job id (1) | 2 windows   | a claims bucket: `gens` (shard counts), `n` (claims) |
//! | `P:{k}:claims:<w>:<b>:<s>:<i>` | hash | of the job id (1) | 2 windows   | dedupe claims: 12 bytes of the id's SHA-256 → origin (`queue::claims`) |
//! | `P:{k}:seen:<job id>`        | string | of the job id| dedupe window    | dedupe claim of the layout before (read one window after an upgrade) |
//! | `P:{k}:suppressed:<ch>`      | hash   | of the address | —              | address → reason |
//! | `P:{k}:suppressed:<ch>:at`   | hash   | of the address | —              | address → time of its last change (ms) |
//! | `P:{k}:suppressed:<ch>:by`   | hash   | of the address | —              | address → marks of the reactions that changed it |
//! | `P:{k}:reaction:<src>:<id>`  | string | of its address (or id) | dedupe window | a provider report already recorded |
//! | `P:{k}:cap:<scope>:<customer>` | zset | of the customer | longest window | sends counted by frequency caps |
//! | `P:{k}:profile:<customer>`   | hash   | of the customer | —              | what Tayori learned of the customer |
//! | `P:{rate:<scope>}`           | string | rate scope   | burst            | the shared bucket's arrival time (µs) |
//! | `P:{rate:<scope>}:daemons`   | zset   | rate scope   | 60 s             | daemons sharing the bucket |
//! | `P:{rate:<scope>}:paused`    | string | rate scope   | the pause        | a pause any daemon set (value: reason) |
//! | `P:links:<bucket>`           | hash   | —            | `link_ttl` (+10 min) | short links: 6-byte field → sealed record (job, address, customer, sent_at, content ref) |
//! | `P:linkc:<ref>`              | string | —            | `link_ttl` (+10 min) | a link's content, shared by a campaign's jobs: a sealed click token without recipient |
//! | `P:link:<code>`              | string | —            | `link_ttl`       | a short link's sealed click token (before buckets: read, no longer written) |
//! | `P:verps:<bucket>`           | hash   | —            | 30 days (+10 min) | VERP: 8-byte tag → the packed long job id |
//! | `P:verp:<token>`             | string | —            | 30 days          | a long job id behind a VERP token (before buckets: read, no longer written) |
//! | `P:line:tag:<tag>`           | string | —            | 7 days           | the job id behind a LINE notification message's delivery tag |
//! | `P:cancels`                  | hash   | —            | — (lapsed fields pruned) | `campaign/<channel or *>/<id>` or `job/<id>` → the cancel (JSON) |
//! | `P:schema`                   | hash   | —            | —                | `version`, `partitions` |
//! | `P:quota:<channel>`          | hash   | —            | —                | the last quota reading: `limit`, `used`, `read_at` |
//! | `P:campaign_days:<channel>`  | zset   | —            | —                | `yyyyMMdd:campaign` sent with (LINE units), by day |
//! | `P:lease:<task>:<channel>`   | string | —            | lease            | which daemon runs a channel's task (LINE `stats`) |
//!
//! (1) among `P:schema` `claims_partitions`, the partition count when compact
//! claims started: a claim keeps a digest of its id, not the id, so `tayori
//! migrate` cannot move it, and it stays where it was written.
//!
//! A job's partition is [`partition_of`] its `customer_id` (its `id` when it has
//! none): CRC-32 (IEEE, as `zlib.crc32`) of the UTF-8 bytes, modulo `N`. A CRM
//! computes it the same way to pick the stream (docs/scaling.md). Everything
//! Tayori writes back for a job (results, retries, fallbacks, dead letters) goes
//! to the partition of the entry it came from.
//!
//! Scripts never build a key: each gets every key it touches in KEYS, from the
//! `*_keys` functions below, whose keys share one tag (tested below). The one
//! exception is the claim scripts: which shard keys exist is decided inside
//! the script, so they get the claims prefix and add suffixes, in its slot.

use std::fmt;

use crate::channel_id::ChannelId;

/// The layout this build reads and writes (`P:schema` → `version`).
pub const SCHEMA_VERSION: u32 = 2;

/// The most partitions a deployment may have. Each partition costs a few
/// streams and a consumer per channel; past a few hundred, that bookkeeping
/// outweighs any spreading it buys.
pub const MAX_PARTITIONS: u32 = 1024;

/// One of the `redis.partitions` slices of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Partition(u32);

impl Partition {
    pub fn index(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The partition of `id` among `partitions`: CRC-32 (IEEE) of its UTF-8 bytes,
/// modulo `partitions` (at least 1). Stable across versions: it is wire format.
pub fn partition_of(id: &str, partitions: u32) -> Partition {
    Partition(crc32fast::hash(id.as_bytes()) % partitions.max(1))
}

/// A key's Redis Cluster hash tag: what is between its first `{` and the next
/// `}` when that is not empty, else the whole key (the Redis Cluster spec).
/// Keys with equal tags are in the same slot.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// Key names for one prefix and partition count. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    partitions: u32,
}

impl Keys {
    pub fn new(prefix: &str, partitions: u32) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            partitions: partitions.max(1),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many partitions (`redis.partitions`).
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Every partition, in order.
    pub fn all_partitions(&self) -> impl Iterator<Item = Partition> + Clone + use<> {
        (0..self.partitions).map(Partition)
    }

    /// The partition a job belongs to: its customer's, or its id's without one.
    pub fn job_partition(&self, customer_id: Option<&str>, id: &str) -> Partition {
        partition_of(
            customer_id.filter(|c| !c.is_empty()).unwrap_or(id),
            self.partitions,
        )
    }

    /// Where a customer's caps and profile live.
    pub fn customer_partition(&self, customer_id: &str) -> Partition {
        partition_of(customer_id, self.partitions)
    }

    /// Where an address's suppression lives (`address` in its suppression form,
    /// `queue::suppression_key`).
    pub fn address_partition(&self, address: &str) -> Partition {
        partition_of(address, self.partitions)
    }

    fn in_partition(&self, p: Partition, rest: fmt::Arguments<'_>) -> String {
        format!("{}:{{{}}}:{rest}", self.prefix, p.0)
    }

    // --- a partition's queue -------------------------------------------------

    pub fn jobs(&self, p: Partition, kind: ChannelId) -> String {
        self.in_partition(p, format_args!("jobs:{kind}"))
    }

    pub fn results(&self, p: Partition) -> String {
        self.in_partition(p, format_args!("results"))
    }

    pub fn delayed(&self, p: Partition) -> String {
        self.in_partition(p, format_args!("delayed"))
    }

    pub fn dead(&self, p: Partition) -> String {
        self.in_partition(p, format_args!("dead"))
    }

    /// How many workers started on a redelivered entry (see `queue::Checked::starts`).
    pub fn starts(&self, p: Partition, kind: ChannelId, entry_id: &str) -> String {
        self.in_partition(p, format_args!("starts:{kind}:{entry_id}"))
    }

    /// The event ids a job that went to the dead letters has written, in the
    /// job's partition (see `finish.lua`): its re-drive writes none of them again.
    pub fn emitted(&self, p: Partition, job_id: Option<&str>, origin: &str) -> String {
        self.in_partition(
            p,
            format_args!("emitted:{origin}:{}", job_id.unwrap_or("-")),
        )
    }

    /// The lease of the daemon that moves this partition's due jobs.
    pub fn mover_lease(&self, p: Partition) -> String {
        self.in_partition(p, format_args!("lease:mover"))
    }

    /// The partition a job stream belongs to, for a name this layout made.
    pub fn partition_of_stream(&self, stream: &str) -> Option<Partition> {
        let rest = stream.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        let (k, _) = rest.split_once('}')?;
        let k: u32 = k.parse().ok()?;
        (k < self.partitions).then_some(Partition(k))
    }

    // --- spread by their own ids ---------------------------------------------

    /// The prefix of a partition's dedupe claims for a window (`queue::claims`:
    /// buckets and shards are this plus a suffix). A claim lives in its job id's
    /// partition (a re-enqueued job is caught whatever its customer), among
    /// `P:schema` `claims_partitions`.
    pub fn claims(&self, p: Partition, window: std::time::Duration) -> String {
        // The partition's tag: on a cluster the API's add, whose job has no
        // customer or one of the id's partition, claims in the stream's slot.
        self.in_partition(p, format_args!("claims:{}:", window.as_secs().max(1)))
    }

    /// A dedupe claim of the layout before `claims` (a string key per id), read
    /// for one window after an upgrade and written by `tayori migrate`.
    pub fn legacy_seen(&self, job_id: &str) -> String {
        let p = partition_of(job_id, self.partitions);
        self.in_partition(p, format_args!("seen:{job_id}"))
    }

    /// An address's suppression hash on a channel, with its partition.
    pub fn suppressed(&self, kind: ChannelId, address: &str) -> String {
        self.suppressed_in(self.address_partition(address), kind)
    }

    /// A partition's suppression hash on a channel (`tayori stats`, migration).
    pub fn suppressed_in(&self, p: Partition, kind: ChannelId) -> String {
        self.in_partition(p, format_args!("suppressed:{kind}"))
    }

    pub fn cap(&self, scope: &str, customer_id: &str) -> String {
        let p = self.customer_partition(customer_id);
        self.in_partition(p, format_args!("cap:{scope}:{customer_id}"))
    }

    pub fn profile(&self, customer_id: &str) -> String {
        let p = self.customer_partition(customer_id);
        self.in_partition(p, format_args!("profile:{customer_id}"))
    }

    // --- rate limits -----------------------------------------------------------

    fn rate(&self, scope: &str, rest: &str) -> String {
        format!("{}:{{rate:{scope}}}{rest}", self.prefix)
    }

    /// A channel's pause (set by any daemon; read by `tayori stats`).
    pub fn paused(&self, kind: ChannelId) -> String {
        self.rate(kind.as_str(), ":paused")
    }

    /// The rate scope of one email domain's limit.
    pub fn domain_scope(domain: &str) -> String {
        format!("email:domain:{domain}")
    }

    // --- single keys -----------------------------------------------------------

    /// A short link's sealed click token (SMS), by its code: the form before
    /// buckets, still read until its last record expires.
    pub fn short_link(&self, code: &str) -> String {
        format!("{}:link:{code}", self.prefix)
    }

    /// A bucket of short-link records (a hash), by the bucket's name.
    pub fn link_bucket(&self, bucket: &str) -> String {
        format!("{}:links:{bucket}", self.prefix)
    }

    /// A link's content (channel, campaign, URL), by its reference's name.
    pub fn link_content(&self, content_ref: &str) -> String {
        format!("{}:linkc:{content_ref}", self.prefix)
    }

    /// A bucket of VERP records (a hash), by the bucket's name.
    pub fn verp_bucket(&self, bucket: &str) -> String {
        format!("{}:verps:{bucket}", self.prefix)
    }

    /// A long job id behind a VERP return path's token.
    pub fn verp(&self, token: &str) -> String {
        format!("{}:verp:{token}", self.prefix)
    }

    /// The job id behind a LINE notification message's delivery tag.
    pub fn line_delivery_tag(&self, tag: &str) -> String {
        format!("{}:line:tag:{tag}", self.prefix)
    }

    /// Active cancels (see [`crate::cancel`]): one small hash every daemon reads.
    pub fn cancels(&self) -> String {
        format!("{}:cancels", self.prefix)
    }

    /// A channel's monthly quota at the last reading (hash: `limit`, `used`, `read_at`).
    pub fn quota(&self, kind: ChannelId) -> String {
        format!("{}:quota:{kind}", self.prefix)
    }

    /// Campaigns a channel sent for, by day (LINE: aggregation units; sorted
    /// set: member `yyyyMMdd:campaign`, score the day as the number yyyyMMdd).
    pub fn campaign_days(&self, kind: ChannelId) -> String {
        format!("{}:campaign_days:{kind}", self.prefix)
    }

    /// The lease of a channel's background `task` (LINE: `stats`).
    pub fn channel_lease(&self, kind: ChannelId, task: &str) -> String {
        format!("{}:lease:{task}:{kind}", self.prefix)
    }

    /// The layout's version and partition count.
    pub fn schema(&self) -> String {
        format!("{}:schema", self.prefix)
    }

    /// SCAN's MATCH for every key under a partition tag `P:{…}:…` (migration).
    pub fn partitioned_pattern(&self) -> String {
        format!("{}:{{*}}:*", glob_escape(&self.prefix))
    }

    /// While `tayori migrate` runs: the partition count it copies into, so a
    /// rerun with another count is refused.
    pub fn migrating(&self) -> String {
        format!("{}:schema:migrating", self.prefix)
    }

    // --- each script's KEYS ----------------------------------------------------

    /// `finish.lua`: results, delayed, dead, then the job stream of each of
    /// `channels`, in their order (the registry's).
    pub fn finish_keys(
        &self,
        p: Partition,
        channels: impl IntoIterator<Item = ChannelId>,
    ) -> Vec<String> {
        self.queue_keys(p, channels)
    }

    /// `tayori dead retry`'s script: the partition's dead letters and the job
    /// stream a letter goes back to.
    pub fn redrive_keys(&self, p: Partition, kind: ChannelId) -> [String; 2] {
        [self.dead(p), self.jobs(p, kind)]
    }

    /// `move_due.lua`: the same keys as [`Keys::finish_keys`].
    pub fn move_due_keys(
        &self,
        p: Partition,
        channels: impl IntoIterator<Item = ChannelId>,
    ) -> Vec<String> {
        self.queue_keys(p, channels)
    }

    fn queue_keys(
        &self,
        p: Partition,
        channels: impl IntoIterator<Item = ChannelId>,
    ) -> Vec<String> {
        let mut keys = vec![self.results(p), self.delayed(p), self.dead(p)];
        keys.extend(channels.into_iter().map(|k| self.jobs(p, k)));
        keys
    }

    /// `suppress.lua` (and the suppression part of `reaction.lua`): the hash,
    /// its change times and its change marks.
    pub fn suppression_keys(&self, kind: ChannelId, address: &str) -> [String; 3] {
        self.suppression_keys_in(self.address_partition(address), kind)
    }

    /// A partition's suppression keys of a channel (migration): the hash, its
    /// change times and its change marks.
    pub fn suppression_keys_in(&self, p: Partition, kind: ChannelId) -> [String; 3] {
        let hash = self.suppressed_in(p, kind);
        [hash.clone(), format!("{hash}:at"), format!("{hash}:by")]
    }

    /// `reaction.lua`: its dedupe key, the results stream, then (with a
    /// suppression change) the suppression keys, all in one partition: the
    /// address's when the reaction changes a suppression, else the event id's.
    pub fn reaction_keys(
        &self,
        source: &str,
        event_id: &str,
        suppress: Option<(ChannelId, &str)>,
    ) -> Vec<String> {
        let p = match suppress {
            Some((_, address)) => self.address_partition(address),
            None => partition_of(event_id, self.partitions),
        };
        let mut keys = vec![
            self.in_partition(p, format_args!("reaction:{source}:{event_id}")),
            self.results(p),
        ];
        if let Some((kind, address)) = suppress {
            keys.extend(self.suppression_keys(kind, address));
        }
        keys
    }

    /// The identity `reaction.lua` marks an address's changes with: the dedupe
    /// key's name under schema 1, so marks recorded before it still match.
    pub fn reaction_mark(&self, source: &str, event_id: &str) -> String {
        format!("{}:reaction:{source}:{event_id}", self.prefix)
    }

    /// `lease.lua` of the rate limiter: the bucket, its daemons and the pause.
    pub fn rate_keys(&self, scope: &str) -> [String; 3] {
        [
            self.rate(scope, ""),
            self.rate(scope, ":daemons"),
            self.rate(scope, ":paused"),
        ]
    }

    /// `caps.lua`: one sorted set per scope, all the customer's.
    pub fn cap_keys<'a>(
        &self,
        customer_id: &str,
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        scopes
            .into_iter()
            .map(|s| self.cap(s, customer_id))
            .collect()
    }
}

/// A partitioned key's partition and the rest of its name: `P:{k}:rest` →
/// `(k, rest)`.
pub fn split_partitioned<'a>(prefix: &str, key: &'a str) -> Option<(u32, &'a str)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{")?;
    let (k, rest) = rest.split_once("}:")?;
    Some((k.parse().ok()?, rest))
}

/// `s` with the glob characters of SCAN's MATCH escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Schema 1's names (before partitions and hash tags), for the start-up check
/// and `tayori migrate` only: nothing else reads or writes them.
pub mod v1 {
    use crate::channel_id::ChannelId;

    pub fn jobs(prefix: &str, kind: ChannelId) -> String {
        format!("{prefix}:jobs:{kind}")
    }
    pub fn results(prefix: &str) -> String {
        format!("{prefix}:results")
    }
    pub fn delayed(prefix: &str) -> String {
        format!("{prefix}:delayed")
    }
    pub fn dead(prefix: &str) -> String {
        format!("{prefix}:dead")
    }
    /// The suppression hash of a channel, its change times and its change
    /// marks (the order of `Keys::suppression_keys`).
    pub fn suppressed(prefix: &str, kind: ChannelId) -> String {
        format!("{prefix}:suppressed:{kind}")
    }
    pub fn suppression_keys(prefix: &str, kind: ChannelId) -> [String; 3] {
        let hash = suppressed(prefix, kind);
        [hash.clone(), format!("{hash}:at"), format!("{hash}:by")]
    }
    /// SCAN patterns of the per-id keys: dedupe claims, caps, profiles.
    pub fn seen_pattern(prefix: &str) -> String {
        format!("{prefix}:seen:*")
    }
    pub fn cap_pattern(prefix: &str) -> String {
        format!("{prefix}:cap:*")
    }
    pub fn profile_pattern(prefix: &str) -> String {
        format!("{prefix}:profile:*")
    }

    /// Keys whose presence means a schema-1 deployment's data is here.
    pub fn markers(prefix: &str) -> Vec<String> {
        let mut keys = vec![results(prefix), delayed(prefix), dead(prefix)];
        // The channels schema 1 had; frozen.
        for kind in ["email", "line", "sms", "dm"].map(ChannelId::new) {
            keys.push(jobs(prefix, kind));
            keys.push(suppressed(prefix, kind));
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    const CHANNELS: [ChannelId; 4] = [
        ChannelId::new("email"),
        ChannelId::new("line"),
        ChannelId::new("sms"),
        ChannelId::new("dm"),
    ];
    use super::*;

    fn all_one_tag(keys: &[String]) {
        let tag = hash_tag(&keys[0]);
        for k in keys {
            assert_eq!(hash_tag(k), tag, "{k} is not with {}", keys[0]);
        }
    }

    /// The partition function is wire format: CRMs compute it (docs/scaling.md).
    #[test]
    fn partitions_are_crc32_of_the_id() {
        // zlib.crc32(b"customer-42") == 1241360405 (Python).
        assert_eq!(crc32fast::hash(b"customer-42"), 1_241_360_405);
        assert_eq!(
            partition_of("customer-42", 12),
            Partition(1_241_360_405 % 12)
        );
        assert_eq!(partition_of("anything", 1), Partition(0));
        assert_eq!(partition_of("x", 0), Partition(0));
        let keys = Keys::new("tayori", 12);
        assert_eq!(
            keys.job_partition(Some("customer-42"), "job-1"),
            partition_of("customer-42", 12)
        );
        assert_eq!(keys.job_partition(None, "job-1"), partition_of("job-1", 12));
        assert_eq!(
            keys.job_partition(Some(""), "job-1"),
            partition_of("job-1", 12)
        );
    }

    #[test]
    fn hash_tags_follow_the_cluster_spec() {
        assert_eq!(hash_tag("{user1000}.following"), "user1000");
        assert_eq!(hash_tag("foo{}{bar}"), "foo{}{bar}");
        assert_eq!(hash_tag("foo{{bar}}zap"), "{bar");
        assert_eq!(hash_tag("foo{bar}{zap}"), "bar");
        assert_eq!(hash_tag("plain"), "plain");
    }

    #[test]
    fn names_are_the_documented_layout() {
        let k = Keys::new("tayori", 4);
        let p = Partition(3);
        assert_eq!(k.jobs(p, ChannelId::new("email")), "tayori:{3}:jobs:email");
        assert_eq!(k.results(p), "tayori:{3}:results");
        assert_eq!(k.delayed(p), "tayori:{3}:delayed");
        assert_eq!(k.dead(p), "tayori:{3}:dead");
        assert_eq!(k.paused(ChannelId::new("sms")), "tayori:{rate:sms}:paused");
        assert_eq!(k.short_link("ab12"), "tayori:link:ab12");
        assert_eq!(k.link_bucket("ab12"), "tayori:links:ab12");
        assert_eq!(k.link_content("ab12"), "tayori:linkc:ab12");
        assert_eq!(k.verp_bucket("00ff00ff"), "tayori:verps:00ff00ff");
        assert_eq!(
            k.line_delivery_tag("tayori-00ff"),
            "tayori:line:tag:tayori-00ff"
        );
        assert_eq!(k.schema(), "tayori:schema");
        assert_eq!(k.partition_of_stream("tayori:{3}:jobs:line"), Some(p));
        assert_eq!(k.partition_of_stream("tayori:{4}:jobs:line"), None);
        assert_eq!(k.partition_of_stream("other:{3}:jobs:line"), None);
    }

    /// Every script's keys share one hash tag, so each script is single-slot on
    /// a cluster, for every partition count and whatever the ids hold.
    #[test]
    fn each_scripts_keys_share_a_slot() {
        for n in [1, 2, 12, MAX_PARTITIONS] {
            let k = Keys::new("tayori", n);
            for p in k.all_partitions().take(20) {
                all_one_tag(&k.finish_keys(p, CHANNELS));
                all_one_tag(&k.move_due_keys(p, CHANNELS));
                assert_eq!(k.finish_keys(p, CHANNELS).len(), 3 + CHANNELS.len());
                for kind in CHANNELS {
                    all_one_tag(&k.redrive_keys(p, kind));
                }
                all_one_tag(&[k.mover_lease(p), k.delayed(p)]);
            }
            for kind in CHANNELS {
                for address in ["taro@example.jp", "+819012345678", "U4af}{x", ""] {
                    all_one_tag(&k.suppression_keys(kind, address));
                    all_one_tag(&k.reaction_keys("line", "ev-1", Some((kind, address))));
                }
                all_one_tag(&k.rate_keys(kind.as_str()));
                all_one_tag(&k.rate_keys(&Keys::domain_scope("docomo.ne.jp")));
                // A channel's pause is its rate bucket's pause key.
                assert_eq!(k.rate_keys(kind.as_str())[2], k.paused(kind));
            }
            all_one_tag(&k.reaction_keys("twilio", "SM1}{", None));
            for customer in ["c-1", "顧客42", "a}b{c", ""] {
                all_one_tag(&k.cap_keys(customer, ["all", "email", "campaign:x"]));
                // A customer's caps and profile are in one partition.
                assert_eq!(
                    hash_tag(&k.profile(customer)),
                    hash_tag(&k.cap("all", customer))
                );
            }
        }
    }

    #[test]
    fn partitioned_names_split_and_prefixes_are_escaped() {
        assert_eq!(
            split_partitioned("t", "t:{12}:seen:a:b"),
            Some((12, "seen:a:b"))
        );
        assert_eq!(split_partitioned("t", "t:{rate:sms}:paused"), None);
        assert_eq!(split_partitioned("t", "tt:{1}:dead"), None);
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
