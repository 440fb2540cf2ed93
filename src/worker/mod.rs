//! One channel's worker pool: the path of a job, top to bottom.
//!
//! read (XREADGROUP, batched) → parse and validate → dedupe claim (batched) →
//! expiry / schedule → address → render → rate limit → adapter → outcome →
//! completion (event + ack, batched and atomic, see `queue/finish.lua`).
//!
//! Each channel has its own reader, its own in-flight bound (`concurrency`),
//! its own rate limiter and its own completion writer, so a slow or throttled
//! channel never holds up another.

mod choice;
mod meters;
mod outcome;
mod pause;
mod policy_gate;
mod writer;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel_id::ChannelId;
use crate::redis_connection::RedisConnection;
use futures_util::FutureExt;
use governor::DefaultDirectRateLimiter;
use tayori_channels::{Channel, Message, SendError};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::channel::{ChannelPlugin, Channels, Compose};
use crate::config::{Config, QueueConfig};
use crate::event::EventType;
use crate::job::{Job, JobError};
use crate::keys::Partition;
use crate::metrics as m;
use crate::queue::{self, Checked, Claim, ClaimRequest, Completion, Entry, Op, Queue};
use crate::rate_limit::{self, domains::DomainLimits, Permit, SharedLimiter};
use crate::render::Renderer;
use crate::retry_policy::RetryPolicy;
use crate::units::RateScope;
use outcome::Reason;
use writer::{write_completions, Held, FINISH_BATCH};

/// A job taken over this many times `queue.max_deliveries` without a worker ever
/// starting on it goes to the dead letters: it kills its worker before the start
/// is counted. Generous, since a crash loop takes over innocent jobs just as often.
const TAKEOVER_LIMIT: u32 = 4;

pub struct ChannelWorker {
    kind: ChannelId,
    consumer: String,
    queue: Queue,
    /// What the daemon knows of this channel (addresses, masking).
    plugin: &'static dyn ChannelPlugin,
    adapter: Arc<dyn Channel>,
    limiter: DefaultDirectRateLimiter,
    /// Every enabled channel, typed: this one composes with it, fallbacks are chosen from it.
    channels: Arc<Channels>,
    templates: Arc<Renderer>,
    retry: RetryPolicy,
    cfg: QueueConfig,
    /// Channels enabled in this daemon, for choosing a fallback.
    enabled: Vec<ChannelId>,
    done: mpsc::Sender<Completion>,
    slots: Arc<Semaphore>,
    concurrency: usize,
    /// Jobs taken and not yet handed to the completion writer.
    active: AtomicUsize,
    /// Jobs in hand waiting for a rate permit (shared, per domain or local).
    rate_waiting: AtomicUsize,
    /// Entry ids taken and not yet acknowledged: kept alive by the heartbeat.
    held: Held,
    /// Set while the provider refuses the whole channel (bad token, quota): until when, and why.
    paused: std::sync::Mutex<Option<(tokio::time::Instant, String)>>,
    /// How long to pause when the provider does not say (`pause` in the channel's config).
    pause: Duration,
    /// After a pause, one job at a time probes the provider until one gets through.
    probing: std::sync::atomic::AtomicBool,
    /// The pause is for a used-up monthly quota ([`SendError::QuotaExhausted`]).
    quota_paused: std::sync::atomic::AtomicBool,
    /// That pause was started by a quota reading (which may end it early).
    quota_by_reading: std::sync::atomic::AtomicBool,
    /// Jobs with a fallback move on to it while the quota is used up (`on_quota`).
    falls_back_on_quota: bool,
    /// The pause reason of a used-up quota, if the channel has one.
    quota_code: Option<&'static str>,
    /// Jobs brought to an outcome (for the drain summary).
    pub finished: Arc<AtomicU64>,
    /// The channel's rate for all daemons together (`rate_scope = "global"`).
    shared: Option<SharedLimiter>,
    /// Limits per destination (email: per recipient domain), when the channel has them.
    domains: Option<DomainLimits>,
    /// Quiet hours and frequency caps.
    policy: Arc<crate::policy::Policy>,
    /// Best time and best channel.
    profiles: crate::config::ProfilesConfig,
    /// Metric handles for the per-job counters and histograms.
    meters: meters::Meters,
    /// The active cancels, as this daemon last read them.
    cancels: Arc<crate::cancel::CancelBook>,
}

/// How long a job may wait for its domain's next permit while holding a worker
/// slot; beyond that it is put aside with a slot reserved for later.
const DOMAIN_MAX_WAIT: Duration = Duration::from_millis(200);

/// What the batched first pass decided for an entry.
enum Prepared {
    Done(Completion),
    /// With when its claim was sent: cancels this daemon learns of later apply.
    Deliver(Box<Job>, tokio::time::Instant),
}

impl ChannelWorker {
    /// Builds the worker and spawns its completion writer.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        kind: ChannelId,
        channels: Arc<Channels>,
        templates: Arc<Renderer>,
        consumer: String,
        queue: Queue,
        adapter: Arc<dyn Channel>,
        config: &Config,
        finished: Arc<AtomicU64>,
        cancels: Arc<crate::cancel::CancelBook>,
    ) -> (Arc<ChannelWorker>, tokio::task::JoinHandle<()>) {
        let Some(this) = channels.get(kind) else {
            unreachable!("a worker is spawned only for an enabled channel")
        };
        let ch = &this.common;
        let (done, rx) = mpsc::channel(ch.concurrency.max(FINISH_BATCH) * 2);
        let shared = (ch.rate_scope == RateScope::Global).then(|| {
            SharedLimiter::new(
                kind.as_str().to_owned(),
                queue.keys().rate_keys(kind.as_str()),
                kind.label(),
                ch.rate,
                ch.burst,
                &consumer,
                queue.conn(),
            )
        });
        let rates = this.settings.destination_rates();
        let domains = (!rates.is_empty())
            .then(|| DomainLimits::new(kind.label(), rates, queue.keys(), &consumer, queue.conn()))
            .flatten();
        let held = Held::default();
        // Outcomes go on a connection of their own: with redis.wait_replicas each
        // batch WAITs, which would otherwise hold up claims and reads.
        let writer = tokio::spawn(write_completions(
            queue.with_own_connection(),
            kind,
            rx,
            held.clone(),
        ));
        let worker = Arc::new(ChannelWorker {
            kind,
            consumer,
            queue,
            plugin: this.plugin,
            adapter,
            limiter: governor::RateLimiter::direct(ch.rate.quota(ch.burst)),
            retry: RetryPolicy::new(config.retry.clone()),
            cfg: config.queue.clone(),
            enabled: channels.ids(),
            done,
            slots: Arc::new(Semaphore::new(ch.concurrency)),
            concurrency: ch.concurrency,
            active: AtomicUsize::new(0),
            rate_waiting: AtomicUsize::new(0),
            held,
            paused: std::sync::Mutex::new(None),
            pause: ch.pause,
            probing: std::sync::atomic::AtomicBool::new(false),
            quota_paused: std::sync::atomic::AtomicBool::new(false),
            quota_by_reading: std::sync::atomic::AtomicBool::new(false),
            falls_back_on_quota: this.settings.falls_back_on_quota(),
            quota_code: this.settings.quota_code(),
            finished,
            shared,
            domains,
            policy: channels.policy.clone(),
            profiles: config.profiles.clone(),
            meters: meters::Meters::new(kind.label()),
            cancels,
            channels,
            templates,
        });
        (worker, writer)
    }

    pub fn kind(&self) -> ChannelId {
        self.kind
    }

    /// Jobs taken whose outcome is not yet handed to the completion writer.
    pub fn in_flight(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Waits until every in-flight job has handed over its completion.
    pub async fn wait_idle(&self) {
        if let Ok(all) = self.slots.acquire_many(self.concurrency as u32).await {
            drop(all);
        }
    }

    /// Reads new jobs until `stop` turns true. Entries already read are always processed.
    /// Gives the adapter its housekeeping turn (closing aged print batches) once a second.
    pub async fn tick_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.adapter.tick().await,
                _ = stop.changed() => return,
            }
        }
    }

    /// Lets the adapter flush and close what it keeps open; after the last send.
    pub async fn shutdown_adapter(&self) {
        self.adapter.shutdown().await;
    }

    pub async fn read_loop(
        self: Arc<Self>,
        target: crate::redis_connection::RedisTarget,
        partitions: Vec<Partition>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut conn: Option<RedisConnection> = None;
        let mut failures = 0u32;
        // While probing, one stream at a time, in turn: one job, not one per partition.
        let mut turn = 0usize;
        while !*stop.borrow() {
            if !self.wait_while_paused(&mut stop).await {
                break;
            }
            // Wait for free slots, but hold none while blocked in XREADGROUP: the
            // reclaimer needs slots too, and entries read are ours in Redis anyway.
            let free = tokio::select! {
                p = self.slots.acquire_many(self.slots_to_read()) => p.map(drop).is_ok(),
                _ = stop.changed() => false,
            };
            if !free {
                break;
            }
            // After a pause, one job probes the provider before the rest follow.
            let probing = self.probing.load(Ordering::Relaxed);
            if probing && !self.wait_for_probe(&mut stop).await {
                break;
            }
            // COUNT applies to each stream a read names: the free slots are
            // shared among them, so one read returns about what fits.
            let count = if probing {
                1
            } else {
                (self.slots.available_permits().clamp(1, self.cfg.read_batch))
                    .div_ceil(partitions.len().max(1))
            };
            let read_from = if probing && !partitions.is_empty() {
                turn = (turn + 1) % partitions.len();
                &partitions[turn..=turn]
            } else {
                &partitions[..]
            };
            let result = match conn.as_mut() {
                Some(c) => {
                    self.queue
                        .read(
                            c,
                            read_from,
                            self.kind,
                            &self.consumer,
                            count,
                            self.cfg.block,
                        )
                        .await
                }
                None => {
                    match queue::connect(&target, self.cfg.block + Duration::from_secs(10)).await {
                        Ok(c) => {
                            conn = Some(c);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(entries) => {
                    failures = 0;
                    self.dispatch(entries).await;
                }
                // A reshard moved the partition's slot while this read was
                // blocked on its old node: not a failure; the client follows the
                // slot (MOVED) on the next read.
                Err(e) if e.code() == Some("UNBLOCKED") => {
                    tracing::info!(channel = %self.kind, "a partition's slot moved to another node; reading there");
                }
                Err(e) => {
                    failures += 1;
                    metrics::counter!(m::REDIS_ERRORS, "op" => "read").increment(1);
                    if e.code() == Some("NOGROUP") {
                        let _ = self.queue.ensure_group(self.kind).await;
                    } else {
                        tracing::warn!(channel = %self.kind, error = %e, "reading jobs failed; retrying");
                    }
                    pause(failures, &mut stop).await;
                }
            }
        }
    }

    /// How many free slots the reader waits for before it reads. One, unless
    /// most jobs in hand wait for rate permits: then the channel is rate-bound,
    /// the jobs in hand cover `concurrency / rate` of sending, and reading per
    /// freed slot only costs an XREADGROUP and a dedupe claim per job (measured
    /// at 500 SMS/s with 256 slots: 0.68 reads per job; 0.015 now). A quarter of the slots
    /// then: the other three quarters keep the rate fed meanwhile.
    fn slots_to_read(&self) -> u32 {
        let waiting = self.rate_waiting.load(Ordering::Relaxed);
        let wait_for = if waiting * 2 >= self.concurrency {
            (self.concurrency / 4).clamp(1, self.cfg.read_batch.max(1))
        } else {
            1
        };
        u32::try_from(wait_for).unwrap_or(1)
    }

    /// Takes over entries that a dead consumer left pending, every so often.
    pub async fn reclaim_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every =
            (self.cfg.reclaim_idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
        let prune_every =
            (Duration::from_secs(300).as_millis() / every.as_millis().max(1)).max(1) as u64;
        let mut passes = 0u64;
        // XAUTOCLAIM's position in each partition's stream.
        let mut cursors: Vec<(Partition, String)> = self
            .queue
            .keys()
            .all_partitions()
            .map(|p| (p, String::from("0-0")))
            .collect();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            passes += 1;
            let paused = self.pause_reason().is_some() || self.probing.load(Ordering::Relaxed);
            if let Err(e) = self
                .queue
                .heartbeat(self.kind, &self.consumer, &self.held.ids())
                .await
            {
                metrics::counter!(m::REDIS_ERRORS, "op" => "heartbeat").increment(1);
                tracing::debug!(channel = %self.kind, error = %e, "heartbeat failed");
                // Our own entries may look idle now (after a Redis outage): do not
                // reclaim until a heartbeat has refreshed them.
                continue;
            }
            if passes.is_multiple_of(prune_every) {
                let idle = (self.cfg.reclaim_idle * 10).max(Duration::from_secs(3600));
                match self
                    .queue
                    .prune_consumers(self.kind, &self.consumer, idle)
                    .await
                {
                    Ok(n) if n > 0 => {
                        tracing::info!(channel = %self.kind, removed = n, "removed consumers of stopped daemons")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(channel = %self.kind, error = %e, "pruning consumers failed")
                    }
                }
            }
            for (p, cursor) in &mut cursors {
                let want = if paused {
                    0
                } else {
                    self.slots.available_permits().min(self.cfg.read_batch)
                };
                if want == 0 {
                    break;
                }
                match self
                    .queue
                    .reclaim(
                        *p,
                        self.kind,
                        &self.consumer,
                        self.cfg.reclaim_idle,
                        want,
                        cursor,
                    )
                    .await
                {
                    Ok(mut entries) if !entries.is_empty() => {
                        // Still ours and in progress here (their outcome waits to be
                        // written): taking them again would send them twice.
                        entries.retain(|e| !self.held.contains(e.partition, &e.id));
                        if entries.is_empty() {
                            continue;
                        }
                        metrics::counter!(m::RECLAIMED, "channel" => self.kind.label())
                            .increment(entries.len() as u64);
                        tracing::info!(channel = %self.kind, partition = %p, count = entries.len(), "reclaimed jobs from a stopped consumer");
                        self.dispatch(entries).await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        metrics::counter!(m::REDIS_ERRORS, "op" => "reclaim").increment(1);
                        tracing::warn!(channel = %self.kind, error = %e, "reclaiming jobs failed");
                        break;
                    }
                }
            }
        }
    }

    /// First pass over a batch (parse, claim, schedule), then one task per job to deliver.
    async fn dispatch(self: &Arc<Self>, mut entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        // A read over several partitions' streams can return more entries than
        // there are slots at all: asking for them at once would wait forever.
        if entries.len() > self.concurrency {
            self.held
                .add(entries.iter().map(|e| (e.partition, e.id.clone())));
            while entries.len() > self.concurrency {
                let rest = entries.split_off(self.concurrency);
                Box::pin(self.dispatch(entries)).await;
                entries = rest;
            }
        }
        // Held (heartbeated) from the moment they are read, even while waiting for slots.
        self.held
            .add(entries.iter().map(|e| (e.partition, e.id.clone())));
        // One slot per job until its completion is handed over: bounds in-flight work.
        let Ok(mut slots) = self
            .slots
            .clone()
            .acquire_many_owned(entries.len() as u32)
            .await
        else {
            return;
        };
        self.meters.jobs_taken.increment(entries.len() as u64);
        self.active.fetch_add(entries.len(), Ordering::Relaxed);
        let prepared = self.prepare(&entries).await;
        for (entry, prepared) in entries.into_iter().zip(prepared) {
            let permit = slots.split(1);
            match prepared {
                Prepared::Done(c) => {
                    let _ = self.done.send(c).await;
                    self.active.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                }
                Prepared::Deliver(job, checked) => {
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        // A panicking adapter must not lose the job's outcome (or leak its slot).
                        let c = match AssertUnwindSafe(me.deliver(&entry, &job, checked))
                            .catch_unwind()
                            .await
                        {
                            Ok(c) => c,
                            Err(_) => {
                                let reason = Reason {
                                    code: "internal",
                                    message: "the channel adapter panicked on this job",
                                    field: None,
                                };
                                me.dead(&entry, Some(&job), None, reason)
                            }
                        };
                        let _ = me.done.send(c).await;
                        me.active.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                    });
                }
            }
        }
    }

    async fn prepare(&self, entries: &[Entry]) -> Vec<Prepared> {
        let jobs: Vec<Result<Job, Completion>> = entries.iter().map(|e| self.validate(e)).collect();
        let addresses: Vec<Option<String>> = jobs
            .iter()
            .map(|j| j.as_ref().ok().and_then(|j| self.suppression_address(j)))
            .collect();
        let claims: Vec<ClaimRequest> = entries
            .iter()
            .zip(&jobs)
            .zip(&addresses)
            .filter_map(|((e, j), address)| {
                j.as_ref().ok().map(|j| ClaimRequest {
                    partition: e.partition,
                    job_id: &j.id,
                    campaign: j.campaign.as_deref(),
                    origin: e.origin(),
                    address: address.as_deref(),
                    redelivered: (e.deliveries > 1).then_some(e.id.as_str()),
                })
            })
            .collect();
        let checked = tokio::time::Instant::now();
        let mut verdicts = self.claim_with_retry(&claims).await.into_iter();
        let now = jiff::Timestamp::now();
        jobs.into_iter()
            .zip(entries)
            .map(|(job, entry)| {
                let job = match job {
                    Ok(job) => job,
                    Err(dead) => return Prepared::Done(dead),
                };
                let attempt = self.attempt(entry);
                let verdict = verdicts.next().unwrap_or(Checked {
                    claim: Claim::Mine,
                    starts: 1,
                    suppressed: None,
                    cancelled: None,
                });
                if verdict.starts > self.cfg.max_deliveries {
                    let msg = format!(
                        "started {} times without an outcome (a worker died on it each time)",
                        verdict.starts
                    );
                    let reason = Reason {
                        code: "too_many_deliveries",
                        message: &msg,
                        field: None,
                    };
                    Prepared::Done(self.dead(entry, Some(&job), None, reason))
                } else if verdict.claim == Claim::Duplicate {
                    Prepared::Done(self.complete(
                        entry,
                        vec![self.event(entry, EventType::Duplicate, &job, attempt).into()],
                    ))
                } else if let Some(applied) = &verdict.cancelled {
                    // Before the schedule: a job due hours from now ends now.
                    Prepared::Done(self.cancelled(entry, &job, attempt, applied))
                } else if job.expires_at().is_some_and(|t| t <= now) {
                    Prepared::Done(self.complete(
                        entry,
                        vec![self.event(entry, EventType::Expired, &job, attempt).into()],
                    ))
                } else if let Some(due) = job.send_at().filter(|t| *t > now) {
                    let mut routing = entry.routing.clone();
                    routing.origin = Some(entry.origin().to_owned());
                    // retry.max_age and end-to-end latency count from when the job is due.
                    routing.first_at_ms = Some(due.as_millisecond());
                    self.meters.count_outcome("scheduled");
                    let raw = entry.job.clone().unwrap_or_default();
                    Prepared::Done(self.complete(
                        entry,
                        vec![Op::Delay {
                            due_ms: due.as_millisecond(),
                            channel: self.kind,
                            fields: routing.fields(&raw),
                        }],
                    ))
                } else if let Some(reason) = verdict.suppressed {
                    // Blocked, unsubscribed or bounced on this channel: never sent here.
                    Prepared::Done(self.not_here(entry, &job, attempt, "suppressed", &reason))
                } else {
                    Prepared::Deliver(Box::new(job), checked)
                }
            })
            .collect()
    }

    /// Dedupe claims must succeed before anything is sent: retry until Redis answers.
    async fn claim_with_retry(&self, claims: &[ClaimRequest<'_>]) -> Vec<Checked> {
        let mut failures = 0;
        loop {
            match self
                .queue
                .claim(self.kind, claims, self.cfg.dedupe_window)
                .await
            {
                Ok(v) => return v,
                Err(e) => {
                    failures += 1;
                    metrics::counter!(m::REDIS_ERRORS, "op" => "claim").increment(1);
                    tracing::warn!(channel = %self.kind, error = %e, "dedupe claim failed; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }

    /// The job's address as suppressions are keyed: phone numbers in E.164 (a STOP
    /// reply reports `+819012345678` for a job's `090-1234-5678`), others as given.
    pub(super) fn suppression_address(&self, job: &Job) -> Option<String> {
        // A `best` job checks every candidate when it chooses.
        if job.is_best() {
            return None;
        }
        self.address(job)?;
        Some(self.address_key(job, self.kind))
    }

    /// The job's address on this channel, or where the channel sends a job
    /// without one (a webhook's default endpoint).
    fn address<'a>(&'a self, job: &'a Job) -> Option<&'a str> {
        let settings = || self.channels.get(self.kind).map(|c| &c.settings);
        self.plugin
            .address(&job.to)
            .or_else(|| settings()?.alternate_address(job, &self.templates))
            .or_else(|| settings()?.default_address())
    }

    /// A job's address on any channel as suppressions are keyed (phone numbers in E.164).
    pub(super) fn address_key(&self, job: &Job, kind: ChannelId) -> String {
        let channel = self.channels.get(kind);
        let address = crate::channel::registry::plugin(kind)
            .and_then(|p| p.address(&job.to))
            .or_else(|| channel?.settings.default_address())
            .unwrap_or_default();
        self.channels.suppression_address(kind, address)
    }

    /// Parses the entry's job and checks it belongs here; a bad one becomes a dead letter.
    fn validate(&self, entry: &Entry) -> Result<Job, Completion> {
        // Starts are counted at the dedupe claim (see `prepare`); this catches a job
        // that kills its worker before it gets there, in parsing.
        if entry.deliveries > TAKEOVER_LIMIT * self.cfg.max_deliveries {
            let msg = format!(
                "delivered {} times without an outcome (taken over again and again)",
                entry.deliveries
            );
            let job = entry
                .job
                .as_deref()
                .and_then(|raw| crate::channel::registry::parse_job(raw, usize::MAX).ok());
            let reason = Reason {
                code: "too_many_deliveries",
                message: &msg,
                field: None,
            };
            return Err(self.dead(entry, job.as_ref(), None, reason));
        }
        let raw = entry.job.as_deref().ok_or_else(|| {
            let reason = Reason {
                code: "invalid_job",
                message: "the stream entry has no `job` field",
                field: Some("job"),
            };
            self.dead(entry, None, None, reason)
        })?;
        let job = crate::channel::registry::parse_job(raw, self.cfg.max_job_bytes)
            .map_err(|e| self.dead_invalid(entry, raw, &e))?;
        let best_here = job.is_best()
            && entry.routing.hop == 0
            && job.channels.iter().any(|c| c == self.kind.label());
        match job.channel_at(entry.routing.hop) {
            _ if best_here => Ok(job),
            Some(k) if k == self.kind => Ok(job),
            _ => {
                let e = JobError::new(
                    "channel",
                    format!(
                        "job is for {:?} but was added to stream {}",
                        job.channel,
                        self.queue.keys().jobs(entry.partition, self.kind)
                    ),
                );
                Err(self.dead_invalid(entry, raw, &e))
            }
        }
    }

    /// Address → render → rate limit → send → outcome.
    async fn deliver(&self, entry: &Entry, job: &Job, checked: tokio::time::Instant) -> Completion {
        let attempt = self.attempt(entry);
        if job.is_best() {
            return self.choose_channel(entry, job).await;
        }
        if self.address(job).is_none() {
            let field = format!("to.{}", self.plugin.address_key());
            return self.not_here(
                entry,
                job,
                attempt,
                "no_address",
                &format!("{field} is missing"),
            );
        }
        let mut time_rule = entry.routing.scheduled.clone();
        if let (Some(best), None) = (job.best_time(), &time_rule) {
            match self.best_timing(entry, job, best).await {
                choice::Timing::Now(rule) => time_rule = Some(rule.to_owned()),
                choice::Timing::Done(done) => return done,
            }
        }
        let counted = match self.policy_gate(entry, job, attempt).await {
            policy_gate::Gate::Send { counted } => counted,
            policy_gate::Gate::Done(done) => return done,
        };
        let mut completion = self
            .send_composed(entry, job, attempt, time_rule.as_deref(), checked)
            .await;
        // A retry or a deferral would bring back a job cancelled meanwhile:
        // end it now instead (the sweeper covers the delayed set itself).
        if completion.delays() {
            let campaign = job.campaign.as_deref();
            if let Some(applied) = self
                .cancels
                .find(&job.id, campaign, self.kind, Some(checked))
            {
                completion = self.cancelled(entry, job, attempt, &applied);
            }
        }
        if counted && !completion_sent(&completion) {
            self.uncount(job);
        }
        completion
    }

    /// Render → rate limits → send → outcome.
    async fn send_composed(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        time_rule: Option<&str>,
        checked: tokio::time::Instant,
    ) -> Completion {
        let cx = Compose {
            renderer: &self.templates,
            tracker: self.channels.tracker.as_deref(),
        };
        let composed = match self.channels.get(self.kind) {
            Some(this) => this.compose(job, &cx),
            None => Err(crate::render::RenderError(format!(
                "{} is not enabled",
                self.kind
            ))),
        };
        let (content, records) = match composed {
            Ok(c) => c,
            Err(e) => return self.not_here(entry, job, attempt, "template", &e.0),
        };
        // A link in the message must work the moment it arrives, and a bounce
        // must find its job however soon it comes back.
        // Retried until Redis answers, like the dedupe claim: a failover or a
        // READONLY reply is Redis's problem, not the job's, and must not spend
        // its attempts.
        if !records.is_empty() {
            until_redis_answers(self.kind, "store_records", || {
                self.queue.store_records(&records)
            })
            .await;
        }
        let message = Message {
            job_id: job.id.clone(),
            attempt,
            idempotency_key: format!("{}/{}", job.id, self.kind),
            campaign: job.campaign.clone(),
            customer_id: job.customer_id.clone(),
            to: self.plugin.recipient(&job.to),
            content,
        };
        // While the quota is used up a job waits for no rate permit.
        if let Some(quota) = self.quota_pause() {
            return self.over_quota(entry, job, attempt, &quota);
        }
        // A job waiting for a permit ends as soon as it is cancelled; one that
        // got its permit is checked once more before the provider sees it.
        // After that, it ends as the provider answers.
        let campaign = job.campaign.as_deref();
        tokio::select! {
            biased;
            done = self.rate_permits(entry, job, attempt, &message) => {
                if let Some(done) = done {
                    return done;
                }
            }
            applied = self.cancels.wait_for(&job.id, campaign, self.kind, checked) => {
                return self.cancelled(entry, job, attempt, &applied);
            }
        }
        if let Some(applied) = self
            .cancels
            .find(&job.id, campaign, self.kind, Some(checked))
        {
            return self.cancelled(entry, job, attempt, &applied);
        }
        // The channel may have paused while this job waited: do not call the provider.
        if let Some(quota) = self.quota_pause() {
            return self.over_quota(entry, job, attempt, &quota);
        }
        if let Some(code) = self.pause_reason() {
            let err = SendError::Suspended {
                code,
                message: "the channel is paused".into(),
                retry_after: None,
            };
            return self.suspend(entry, job, attempt, &err);
        }
        let started = Instant::now();
        let result = self.adapter.send(&message).await;
        if !matches!(
            result,
            Err(SendError::Suspended { .. } | SendError::QuotaExhausted { .. })
        ) {
            self.probing.store(false, Ordering::Relaxed);
        }
        self.meters.send_seconds.record(started.elapsed());
        tracing::debug!(
            channel = %self.kind,
            job_id = %job.id,
            campaign = job.campaign.as_deref().unwrap_or("-"),
            to = %self.plugin.mask(&message.to.address),
            attempt,
            result = match &result {
                Ok(_) => "sent",
                Err(e) => e.class(),
            },
            "send finished"
        );
        match result {
            Ok(sent) => {
                self.meters.end_to_end_seconds.record(entry.age());
                let mut ev = self
                    .event(entry, EventType::Sent, job, attempt)
                    .with("provider_id", sent.provider_id);
                for (key, value) in sent.details {
                    ev = ev.with(key, value);
                }
                if let Some(rule) = time_rule {
                    ev = ev.with("send_time_rule", rule);
                }
                self.complete(entry, vec![ev.into()])
            }
            Err(e @ SendError::Suspended { .. }) => self.suspend(entry, job, attempt, &e),
            Err(e @ SendError::QuotaExhausted { .. }) => self.over_quota(entry, job, attempt, &e),
            Err(e @ SendError::Bounced { .. }) => {
                self.address_dead(entry, job, attempt, &e, EventType::Bounced, "bounced")
            }
            Err(e @ SendError::OptedOut { .. }) => {
                self.address_dead(entry, job, attempt, &e, EventType::Failed, "unsubscribed")
            }
            Err(e @ SendError::RateLimited { .. }) => {
                self.push_back(&message.to.address, &e);
                self.retry_or_fail(entry, job, attempt, &e)
            }
            Err(e @ SendError::Transient { .. }) => self.retry_or_fail(entry, job, attempt, &e),
            // The provider may have it: another channel or another try could
            // make the recipient get it twice.
            Err(e @ SendError::Unconfirmed { .. }) => {
                let ev = self
                    .event(entry, EventType::Failed, job, attempt)
                    .with_error(e.code(), e.message());
                self.complete(entry, vec![ev.into()])
            }
            Err(e) => self.not_here(entry, job, attempt, e.code(), e.message()),
        }
    }
}

impl ChannelWorker {
    /// Waits for the permits of every rate the job is under: its domain's, the
    /// channel's shared one, this process's. `Some` is the job's completion when
    /// it does not send now (put aside, or the channel is paused).
    async fn rate_permits(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        message: &Message,
    ) -> Option<Completion> {
        // Counted while waiting: the reader reads in batches while most jobs in
        // hand wait here (see `slots_to_read`).
        let _waiting = RateWait::start(&self.rate_waiting);
        if let Some(done) = self
            .domain_permit(entry, job, attempt, &message.to.address)
            .await
        {
            return Some(done);
        }
        if let Some(shared) = &self.shared {
            if let Permit::Paused { reason, wait } = shared.acquire().await {
                // Another daemon met the used-up quota: the same rules here.
                if self.quota_code == Some(reason.as_str()) {
                    let err = SendError::QuotaExhausted {
                        code: reason,
                        message:
                            "the channel's monthly quota is used up (by this or another daemon)"
                                .into(),
                        retry_after: Some(wait),
                    };
                    return Some(self.over_quota(entry, job, attempt, &err));
                }
                let err = SendError::Suspended {
                    code: reason,
                    message: "the channel is paused (by this or another daemon)".into(),
                    retry_after: Some(wait),
                };
                return Some(self.suspend(entry, job, attempt, &err));
            }
        }
        if self.limiter.check().is_err() {
            metrics::counter!(m::RATE_LIMIT_WAITS, "channel" => self.kind.label()).increment(1);
            // No jitter: measured −6 % of the configured rate with it (2,000/s, burst 1).
            self.limiter.until_ready().await;
        }
        None
    }

    /// Email: waits for a permit of the recipient's domain, or puts the job aside
    /// with a slot reserved when the wait would be long, so a throttled domain
    /// never holds the worker slots mail to other domains needs. `Some` is the
    /// job's completion when it does not send now.
    async fn domain_permit(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        address: &str,
    ) -> Option<Completion> {
        let (domain, limiter) = self.domains.as_ref()?.for_address(address)?;
        let now_ms = jiff::Timestamp::now().as_millisecond();
        // Back at the slot reserved for it: already paid for.
        if entry
            .routing
            .slot_ms
            .is_some_and(|slot| slot <= now_ms + 1000)
        {
            limiter.local.until_ready().await;
            return None;
        }
        match limiter.shared.try_acquire(DOMAIN_MAX_WAIT).await {
            Permit::Go => {
                limiter.local.until_ready().await;
                None
            }
            Permit::Reserved { in_ } => {
                metrics::counter!(m::DOMAIN_THROTTLED, "channel" => self.kind.label()).increment(1);
                let err = SendError::RateLimited {
                    code: "domain_throttled".into(),
                    message: format!("{domain} is at its rate limit; a later slot is reserved"),
                    retry_after: Some(in_),
                };
                Some(self.defer_with(
                    entry,
                    job,
                    attempt,
                    &err,
                    in_,
                    attempt.saturating_sub(1),
                    true,
                ))
            }
            Permit::Paused { reason, wait } => {
                let err = SendError::RateLimited {
                    code: "domain_paused".into(),
                    message: format!("{domain} is paused: {reason}"),
                    retry_after: Some(wait),
                };
                Some(self.defer(entry, job, attempt, &err, wait, attempt.saturating_sub(1)))
            }
        }
    }

    /// A provider asked us to slow down: with a time given (Retry-After), the
    /// channel pauses for every daemon until then; an email domain that throttles
    /// pauses only that domain (for the channel's `pause` when it names no time).
    fn push_back(&self, address: &str, err: &SendError) {
        let SendError::RateLimited { retry_after, .. } = err else {
            return;
        };
        let channel_wide = self
            .channels
            .get(self.kind)
            .is_some_and(|c| c.settings.pauses_on_rate_limit());
        if !channel_wide {
            return;
        }
        let domain = self
            .domains
            .as_ref()
            .and_then(|d| d.for_address(address))
            .map(|(domain, _)| domain);
        match (domain, retry_after) {
            (Some(domain), wait) => {
                let wait = wait.unwrap_or(self.pause);
                let key = rate_limit::domains::pause_key(self.queue.keys(), &domain);
                metrics::counter!(m::PAUSES, "channel" => self.kind.label(), "reason" => "domain_throttled").increment(1);
                tracing::warn!(channel = %self.kind, domain, millis = wait.as_millis() as u64, "domain paused: {}", err.message());
                let (queue, code) = (self.queue.clone(), err.code().to_owned());
                tokio::spawn(async move {
                    if let Err(e) = queue.set_pause_key(&key, &code, wait).await {
                        tracing::debug!(error = %e, "could not record the domain pause in Redis");
                    }
                });
            }
            (None, Some(wait)) => self.pause_for(*wait, err.code(), err.message()),
            (None, None) => {}
        }
    }
}

/// Counts a job among those waiting for a rate permit for as long as it lives
/// (a panic or a cancelled future included).
struct RateWait<'a>(&'a AtomicUsize);

impl<'a> RateWait<'a> {
    fn start(count: &'a AtomicUsize) -> RateWait<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        RateWait(count)
    }
}

impl Drop for RateWait<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a completion records a `sent` event (the cap slot was used).
fn completion_sent(c: &Completion) -> bool {
    c.ops
        .iter()
        .any(|op| outcome::event_type(op) == Some("sent"))
}

/// Runs a Redis step until Redis answers. Redis being away (a restart, a
/// failover, a `READONLY` reply from a demoted primary) is not the job's failure
/// and must not spend its attempts; the job waits, holding its slot, as it does
/// for its dedupe claim.
pub(super) async fn until_redis_answers<T, F, Fut>(
    kind: ChannelId,
    op: &'static str,
    mut step: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let mut failures = 0;
    loop {
        match step().await {
            Ok(v) => return v,
            Err(e) => {
                failures += 1;
                metrics::counter!(m::REDIS_ERRORS, "op" => op).increment(1);
                tracing::warn!(channel = %kind, op, error = %e, "Redis step failed; retrying");
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << failures.min(6)).min(5_000);
    Duration::from_millis(ms + fastrand::u64(0..=ms / 2))
}

async fn pause(failures: u32, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(backoff(failures)) => {}
        _ = stop.changed() => {}
    }
}
