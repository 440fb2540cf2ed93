//! Adding checked jobs to their streams: where a job goes (the same for
//! `tayori enqueue` and `POST /v1/jobs`), and the API's idempotent add.
//!
//! The API answers a repost of a job id with the entry the job first arrived
//! as, without adding a second. It writes the daemon's own dedupe claim
//! (`crate::queue::claims`), whose value is the job's origin: the daemon,
//! claiming the job when it reads it, finds its own origin there and goes on.
//! Two ways, by where the claim lives:
//!
//! * claim and stream share a hash tag (always on one Redis server; on a
//!   cluster, a job whose customer partition is its id's): one script checks
//!   the claim, adds the entry and claims it with the entry id, atomically;
//! * otherwise (a cluster, two slots): the claim is taken first with a fresh
//!   origin token, then the entry is added carrying that token as its `origin`
//!   (the field Tayori's own write-backs carry), so the daemon sees its claim
//!   as the job's. A repost then answers with the token. If the add fails the
//!   claim is released, so a retry of the request adds the job.

use std::time::Duration;

use redis::Value;

use crate::channel_id::ChannelId;
use crate::job::{Job, JobError};
use crate::keys::{hash_tag, Keys};
use crate::queue::claims::{first_claim, unpack, ClaimArgs, Claims};
use crate::queue::Grouped;
use crate::redis_connection::{Durability, RedisConnection};

/// The stream a job goes to: its channel's, in its customer's partition.
pub fn stream_of(keys: &Keys, job: &Job) -> Result<(String, ChannelId), JobError> {
    let kind = job.stream_channel()?;
    let p = keys.job_partition(job.customer_id.as_deref(), &job.id);
    Ok((keys.jobs(p, kind), kind))
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Added now, as this entry.
    Enqueued(String),
    /// Its id was claimed earlier (within the dedupe window), by this entry.
    Duplicate(String),
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis answered the add with {0:?}")]
    Reply(String),
}

/// The Redis side of the API's adds.
#[derive(Clone)]
pub struct Intake {
    pub conn: RedisConnection,
    pub keys: Keys,
    pub durability: Durability,
    /// `queue.dedupe_window`: how long a claim lasts.
    pub window: Duration,
    /// The claims' scripts, as the daemon's queue read `P:schema`.
    pub claims: Claims,
}

/// One job to add: the job, its JSON as posted.
pub struct ToAdd<'a> {
    pub job: &'a Job,
    pub raw: &'a str,
}

impl Intake {
    /// Adds the jobs, deduplicated by id, in order; then waits for
    /// `redis.wait_replicas` on each primary written to. Returns each job's
    /// fate and whether the replicas confirmed the adds.
    pub async fn add(&self, jobs: &[ToAdd<'_>]) -> Result<(Vec<Added>, bool), IntakeError> {
        let window = self.window;
        let by_slot = self.conn.is_cluster();
        let mut out: Vec<Option<Added>> = vec![None; jobs.len()];
        let mut written: Vec<String> = Vec::new();
        // Same tag (or one server): one script per job, pipelined.
        let mut batch = Grouped::new(by_slot);
        let mut scripted = Vec::new();
        let mut split = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            let (stream, _) =
                stream_of(&self.keys, j.job).map_err(|e| IntakeError::Reply(e.to_string()))?;
            let claims = self.claims.prefix_of(&j.job.id, window);
            if by_slot && hash_tag(&claims) != hash_tag(&stream) {
                split.push((i, claims, stream));
                continue;
            }
            batch.add(&stream, self.claims.add(&j.job.id, &stream, j.raw, window));
            scripted.push((i, stream));
        }
        if !scripted.is_empty() {
            let replies = batch.query(&self.conn).await?;
            for ((i, stream), reply) in scripted.into_iter().zip(replies) {
                let (fresh, id) = pair(reply)?;
                let id = if fresh { id } else { unpack(&id) };
                out[i] = Some(if fresh {
                    written.push(stream);
                    Added::Enqueued(id)
                } else {
                    Added::Duplicate(id)
                });
            }
        }
        if !split.is_empty() {
            self.add_split(jobs, &split, window, &mut out, &mut written)
                .await?;
        }
        written.sort_unstable();
        written.dedup_by(|a, b| !by_slot || hash_tag(a) == hash_tag(b));
        let mut confirmed = true;
        let mut conn = self.conn.clone();
        for stream in &written {
            confirmed &= self
                .durability
                .wait(&mut conn, stream, "api_enqueue")
                .await?;
        }
        Ok((out.into_iter().flatten().collect(), confirmed))
    }

    /// Claims first with origin tokens, then adds the entries carrying them.
    async fn add_split(
        &self,
        jobs: &[ToAdd<'_>],
        split: &[(usize, String, String)],
        window: Duration,
        out: &mut [Option<Added>],
        written: &mut Vec<String>,
    ) -> Result<(), IntakeError> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let tokens: Vec<String> = split
            .iter()
            .map(|_| format!("{now_ms}-api{:016x}", fastrand::u64(..)))
            .collect();
        // One claim script per job: a split job's claim is alone in its slot
        // as often as not, and the API's batches are small.
        let mut claims = Grouped::new(true);
        for ((i, prefix, _), token) in split.iter().zip(&tokens) {
            let one = [ClaimArgs {
                job_id: &jobs[*i].job.id,
                origin: token,
            }];
            claims.add(prefix, self.claims.claim_batch(prefix, &one, window));
        }
        let replies = claims.query(&self.conn).await?;
        let mut adds = Grouped::new(true);
        let mut added = Vec::new();
        for (((i, prefix, stream), token), reply) in split.iter().zip(&tokens).zip(replies) {
            let first = match &reply {
                Value::Array(answers) => answers.first().and_then(|a| first_claim(a, token)),
                _ => return Err(IntakeError::Reply(format!("{reply:?}"))),
            };
            match first {
                Some(first) => out[*i] = Some(Added::Duplicate(first)),
                None => {
                    let mut xadd = redis::cmd("XADD");
                    xadd.arg(stream)
                        .arg("*")
                        .arg("job")
                        .arg(jobs[*i].raw)
                        .arg("origin")
                        .arg(token)
                        .arg("first_at")
                        .arg(now_ms);
                    adds.add(stream, xadd);
                    added.push((*i, prefix, stream, token));
                }
            }
        }
        if added.is_empty() {
            return Ok(());
        }
        match adds.query(&self.conn).await {
            Ok(ids) => {
                for ((i, _, stream, _), id) in added.into_iter().zip(ids) {
                    let Value::BulkString(id) = id else {
                        return Err(IntakeError::Reply(format!("{id:?}")));
                    };
                    written.push(stream.clone());
                    out[i] = Some(Added::Enqueued(String::from_utf8_lossy(&id).into_owned()));
                }
                Ok(())
            }
            Err(e) => {
                // Some adds may have gone through: releasing their claims lets a
                // retried request add them again, and the daemon then sends one
                // of the two (its own claim stops the other). Best effort: the
                // error is the answer either way.
                let mut release = Grouped::new(true);
                for (i, prefix, _, token) in &added {
                    let job_id = &jobs[*i].job.id;
                    let eval = self.claims.release(job_id, Some(token.as_str()), window);
                    release.add_ignored(prefix, eval);
                }
                let _ = release.query(&self.conn).await;
                Err(e.into())
            }
        }
    }
}

/// `{1|0, id}` from the claims' add script.
fn pair(reply: Value) -> Result<(bool, String), IntakeError> {
    if let Value::Array(items) = &reply {
        if let [Value::Int(flag), Value::BulkString(id)] = items.as_slice() {
            return Ok((*flag == 1, String::from_utf8_lossy(id).into_owned()));
        }
    }
    Err(IntakeError::Reply(format!("{reply:?}")))
}
