//! Opens and clicks that could not be written to Redis at once.
//!
//! A recipient's link and image must work whatever Redis does: the redirect
//! and the pixel come from the sealed token alone, and the event is written
//! after at most [`ATTEMPT`] of waiting. What Redis did not take in that time
//! (down, failing over, not yet connected) waits here, in memory, and one
//! background task writes it, oldest first and 64 at a time, once Redis
//! answers again.
//!
//! Written again with the same event id and `reaction.lua`'s dedupe claim, an
//! event counts once even when the first try did reach Redis but its answer
//! did not come back in time: the claim lives [`DEDUPE_AT_LEAST`], longer than
//! anything stays here. Bounded: at most [`CAPACITY`] events for at most
//! [`MAX_AGE`]; past either, and at shutdown, an event is dropped and counted
//! in `tayori_reactions_lost_total` by reason (`full`, `expired`, `shutdown`).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Webhooks;
use crate::event::EventType;
use crate::metrics as m;
use crate::queue::Reaction;

/// How long the recipient's request waits for Redis to take an event (an
/// answer takes under a millisecond when Redis is up).
pub const ATTEMPT: Duration = Duration::from_millis(250);
/// How long one background write may take before it counts as failed.
const RETRY_ATTEMPT: Duration = Duration::from_secs(2);
/// Events kept at most: ~1 KB each, so about 10 MB.
pub const CAPACITY: usize = 10_000;
/// An event not written within this long is dropped: Redis was away for longer
/// than a failover or a restart takes, and the dedupe claim must outlive it.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// The shortest dedupe claim of a tracking event: longer than [`MAX_AGE`], so a
/// rewrite of an event whose first try did land finds its claim.
pub const DEDUPE_AT_LEAST: Duration = Duration::from_secs(11 * 60);
/// Events the background writer sends at once: one at a time, each write's
/// round trip (and with `redis.wait_replicas` its `WAIT` for a replica) bounds
/// how fast it drains, while new clicks queue behind it. 3,000 clicks taken
/// while Redis was down were all written 15.4 s after it came back one at a
/// time, 0.73 s 64 at a time (debug build, local redis-server, reconnect included).
const CHUNK: usize = 64;
/// Between background tries while Redis stays away: 200 ms more per failure.
const BACKOFF_STEP: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A tracking event to write.
#[derive(Debug, Clone)]
pub struct Pending {
    pub kind: EventType,
    pub event_id: String,
    pub json: String,
    pub at_ms: i64,
    /// The dedupe claim's lifetime.
    pub dedupe: Duration,
}

/// The events waiting for Redis, and whether the task writing them runs.
#[derive(Default)]
pub struct Backlog {
    waiting: Mutex<Waiting>,
    arrived: Notify,
    writer_started: AtomicBool,
}

/// Oldest first, with the ids in it: a repeat of a waiting event (the same id:
/// the same message, link, window and bot verdict) is not kept twice, so one
/// link fetched in a loop while Redis is away cannot fill the backlog.
#[derive(Default)]
struct Waiting {
    queue: VecDeque<(Pending, Instant)>,
    ids: HashSet<String>,
}

impl Waiting {
    fn pop_front(&mut self) {
        if let Some((p, _)) = self.queue.pop_front() {
            self.ids.remove(&p.event_id);
        }
    }

    /// Takes out the events with these ids (written: they were at the front).
    fn remove(&mut self, ids: &HashSet<&str>) {
        if ids.is_empty() {
            return;
        }
        self.queue
            .retain(|(p, _)| !ids.contains(p.event_id.as_str()));
        self.ids.retain(|id| !ids.contains(id.as_str()));
    }
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Written now.
    Fresh,
    /// A repeat within the window (of one written, or waiting here).
    Repeat,
    /// Kept for the background writer.
    Deferred,
    /// Dropped: the backlog is full.
    Lost,
}

impl Backlog {
    /// Writes `p` within [`ATTEMPT`], or keeps it for later. Events already
    /// waiting go first: while they wait Redis is known to be away, so a new
    /// one joins them at once instead of making its recipient wait too.
    pub async fn record(self: &Arc<Self>, webhooks: &Arc<Webhooks>, p: Pending) -> Recorded {
        if self.is_empty() {
            if let Some(queue) = webhooks.queue.get() {
                match write(queue, &p, ATTEMPT).await {
                    Ok(true) => return Recorded::Fresh,
                    Ok(false) => return Recorded::Repeat,
                    Err(e) => {
                        metrics::counter!(m::REDIS_ERRORS, "op" => "tracking").increment(1);
                        tracing::debug!(error = %e, "tracking event kept for later");
                    }
                }
            }
        }
        self.keep(webhooks, p)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // A panic while holding the lock leaves a queue that is still consistent.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep(self: &Arc<Self>, webhooks: &Arc<Webhooks>, p: Pending) -> Recorded {
        {
            let mut waiting = self.lock();
            if waiting.ids.contains(&p.event_id) {
                return Recorded::Repeat;
            }
            if waiting.queue.len() >= CAPACITY {
                drop(waiting);
                lost("full", 1);
                return Recorded::Lost;
            }
            waiting.ids.insert(p.event_id.clone());
            waiting.queue.push_back((p, Instant::now()));
        }
        if !self.writer_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(self.clone().write_all(webhooks.clone()));
        }
        self.arrived.notify_one();
        Recorded::Deferred
    }

    /// Events waiting now.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// The background writer: oldest first, `CHUNK` at a time, each removed
    /// only once written.
    async fn write_all(self: Arc<Self>, webhooks: Arc<Webhooks>) {
        let mut failures = 0u32;
        loop {
            let (expired, chunk) = {
                let mut waiting = self.lock();
                // Oldest first: what waited too long is at the front.
                let mut expired = 0;
                while waiting
                    .queue
                    .front()
                    .is_some_and(|(_, since)| since.elapsed() > MAX_AGE)
                {
                    waiting.pop_front();
                    expired += 1;
                }
                let chunk: Vec<Pending> = waiting
                    .queue
                    .iter()
                    .take(CHUNK)
                    .map(|(p, _)| p.clone())
                    .collect();
                (expired, chunk)
            };
            if expired > 0 {
                lost("expired", expired);
            }
            if chunk.is_empty() {
                self.arrived.notified().await;
                continue;
            }
            let written = match webhooks.queue.get() {
                Some(queue) => {
                    let tries = chunk.iter().map(|p| write(queue, p, RETRY_ATTEMPT));
                    futures_util::future::join_all(tries).await
                }
                None => vec![Err("not connected to Redis yet".to_owned())],
            };
            let mut done = HashSet::new();
            let mut error = None;
            for (p, result) in chunk.iter().zip(&written) {
                match result {
                    Ok(fresh) => {
                        counted(p.kind, *fresh);
                        done.insert(p.event_id.as_str());
                    }
                    Err(e) => error = Some(e),
                }
            }
            self.lock().remove(&done);
            match error {
                None => failures = 0,
                Some(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, waiting = self.len(), "tracking events wait for Redis");
                    }
                    tokio::time::sleep((BACKOFF_STEP * failures).min(BACKOFF_MAX)).await;
                }
            }
        }
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        let n = self.lock().queue.len();
        if n > 0 {
            lost("shutdown", n as u64);
            tracing::warn!(
                events = n,
                "tracking events not written to Redis before exit are lost"
            );
        }
    }
}

/// One try at writing an event, within `limit`.
async fn write(queue: &crate::queue::Queue, p: &Pending, limit: Duration) -> Result<bool, String> {
    let reaction = Reaction {
        source: "tracking",
        event_id: &p.event_id,
        suppress: None,
        event: Some(&p.json),
        at_ms: p.at_ms,
    };
    match tokio::time::timeout(limit, queue.record_reaction(&reaction, p.dedupe)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// The metrics of an event written (`fresh`) or found already written.
pub fn counted(kind: EventType, fresh: bool) {
    if fresh {
        metrics::counter!(m::WEBHOOK_EVENTS, "source" => "tracking", "type" => kind.as_str())
            .increment(1);
    } else {
        metrics::counter!(m::WEBHOOK_REJECTED, "source" => "tracking", "reason" => "repeat")
            .increment(1);
    }
}

fn lost(reason: &'static str, n: u64) {
    metrics::counter!(m::REACTIONS_LOST, "reason" => reason).increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: usize) -> Pending {
        Pending {
            kind: EventType::Clicked,
            event_id: format!("job/email/0/clicked/abc/{id}"),
            json: "{}".into(),
            at_ms: 0,
            dedupe: DEDUPE_AT_LEAST,
        }
    }

    #[tokio::test]
    async fn without_redis_events_wait_once_each_up_to_the_capacity() {
        // Never connected: every event waits.
        let webhooks = Arc::new(Webhooks::default());
        let backlog = Arc::new(Backlog::default());
        assert_eq!(
            backlog.record(&webhooks, pending(0)).await,
            Recorded::Deferred
        );
        // The same id again (a link fetched in a loop): not kept twice.
        assert_eq!(
            backlog.record(&webhooks, pending(0)).await,
            Recorded::Repeat
        );
        for i in 1..CAPACITY {
            assert_eq!(
                backlog.record(&webhooks, pending(i)).await,
                Recorded::Deferred
            );
        }
        assert_eq!(backlog.len(), CAPACITY);
        assert_eq!(
            backlog.record(&webhooks, pending(CAPACITY)).await,
            Recorded::Lost
        );
        assert_eq!(backlog.len(), CAPACITY);
    }

    #[test]
    fn the_dedupe_claim_outlives_the_longest_wait() {
        assert!(DEDUPE_AT_LEAST > MAX_AGE + RETRY_ATTEMPT);
    }
}
