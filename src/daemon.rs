//! `tayori run`: wires the workers, the delayed-job mover, the gauges sampler
//! and the HTTP server together, and shuts them down without losing a job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use crate::channel::inbound::RouteContext;
use crate::channel::Channels;
use crate::config::Config;
use crate::event::{Event, EventType};
use crate::http::{AppState, Health, Webhooks};
use crate::keys::Partition;
use crate::metrics as m;
use crate::queue::Queue;
use crate::redis_connection::{ConnectError, RedisTarget};
use crate::worker::ChannelWorker;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Exit once every stream, the delayed set and the workers are empty (demos, benchmarks).
    pub drain: bool,
}

/// Jobs moved from the delayed set per script call.
const MOVE_BATCH: usize = 1000;

pub async fn run(config: Config, channels: Channels, opts: RunOptions) -> anyhow::Result<()> {
    let handle = m::install().map_err(|e| anyhow::anyhow!("metrics: {e}"))?;
    let templates =
        Arc::new(crate::channel::load_templates(&config).map_err(|e| anyhow::anyhow!(e.0))?);
    let channels = Arc::new(channels);
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let hooks = RouteContext {
        public_url: config.http.public_url.trim_end_matches('/').to_owned(),
        tracker: channels.tracker.clone(),
        dedupe_window: config.queue.dedupe_window,
    };
    let webhooks = Arc::new(Webhooks {
        queue: Default::default(),
        dedupe_window: config.queue.dedupe_window,
        repeat_window: config.http.repeat_window,
        tracker: channels.tracker.clone(),
        routes: channels
            .iter()
            .flat_map(|c| c.settings.routes(&hooks))
            .collect(),
        trusted_proxies: config.http.trusted_proxy_nets(),
    });

    // POST /v1/jobs, when [http.api] has keys; Redis is set once connected.
    let api = crate::http::api::from_config(
        &config,
        crate::job_check::JobChecker::new(&config, channels.clone(), templates.clone())?,
    );
    let http = if config.http.listen.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .with_context(|| format!("http.listen {}: cannot listen", config.http.listen))?;
        tracing::info!(listen = %config.http.listen, "HTTP server up (/healthz, /readyz, /metrics)");
        let app = crate::http::router(AppState {
            health: health.clone(),
            metrics: handle,
            webhooks: webhooks.clone(),
            api: api.clone(),
        });
        let timeouts = crate::http::serve::Timeouts {
            header_read: config.http.header_read_timeout,
            request: config.http.request_timeout,
            drain: config.queue.shutdown_grace,
        };
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        Some(tokio::spawn(crate::http::serve::serve(
            listener, app, timeouts, shutdown,
        )))
    };

    let target = config.redis_target()?;
    let queue = connect_until_up(&config, &target, &health, stop_rx.clone()).await?;
    let Some(queue) = queue else { return Ok(()) };
    // Reactions WAIT with redis.wait_replicas: a connection of their own.
    let _ = webhooks.queue.set(queue.with_own_connection());
    if let Some(api) = &api {
        // Its own connection too: the adds WAIT for replicas.
        let _ = api.intake.set(crate::job_intake::Intake {
            conn: queue.with_own_connection().conn(),
            keys: queue.keys().clone(),
            durability: config.redis.durability(),
            window: config.queue.dedupe_window,
            claims: queue.claims().clone(),
        });
    }
    let consumer = consumer_name();
    tracing::info!(consumer = %consumer, "joined consumer group");

    let finished = Arc::new(AtomicU64::new(0));
    // This daemon's copy of the cancels, for jobs waiting on a permit (the
    // dedupe claim reads Redis itself).
    let cancels = Arc::new(crate::cancel::CancelBook::default());
    tokio::spawn(crate::cancel_sweeper::run(
        queue.clone(),
        cancels.clone(),
        stop_rx.clone(),
    ));
    let mut workers = Vec::new();
    let mut writers = Vec::new();
    let mut kinds = Vec::new();
    for channel in channels.iter() {
        let kind = channel.id;
        create_groups(&queue, kind)
            .await
            .with_context(|| format!("creating the consumer groups of the {kind} job streams"))?;
        let adapter = channel.sender()?;
        let (worker, writer) = ChannelWorker::spawn(
            kind,
            channels.clone(),
            templates.clone(),
            consumer.clone(),
            queue.clone(),
            adapter,
            &config,
            finished.clone(),
            cancels.clone(),
        );
        // One blocking reader per group of partitions one XREADGROUP can name.
        for partitions in queue.read_groups() {
            tokio::spawn(
                worker
                    .clone()
                    .read_loop(target.clone(), partitions, stop_rx.clone()),
            );
        }
        tokio::spawn(worker.clone().reclaim_loop(stop_rx.clone()));
        tokio::spawn(worker.clone().tick_loop(stop_rx.clone()));
        tracing::info!(channel = %kind, transport = channel.transport_name(), concurrency = channel.common.concurrency, "channel worker started");
        workers.push(worker);
        writers.push(writer);
        kinds.push(kind);
    }
    m::register_zeroes(&kinds);
    // What channels run beside sending (LINE: quota and statistics reads); a
    // quota reading pauses, or resumes, the channel's worker in this daemon.
    let store: Arc<dyn crate::channel::background::AccountStore> = Arc::new(queue.clone());
    for worker in &workers {
        let Some(channel) = channels.get(worker.kind()) else {
            continue;
        };
        let w = worker.clone();
        let cx = crate::channel::background::Background {
            store: store.clone(),
            consumer: consumer.clone(),
            on_quota: Arc::new(move |used_up| w.quota_reading(used_up)),
            stop: stop_rx.clone(),
        };
        for task in channel.settings.background(cx) {
            tokio::spawn(task);
        }
    }
    if workers.is_empty() {
        tracing::warn!("no channel is enabled: add a [channels.email] (or line, sms, dm) section");
    }
    health.workers_running.store(true, Ordering::Relaxed);

    if config.profiles.enabled {
        for p in queue.keys().all_partitions() {
            tokio::spawn(crate::profile::updater::run(
                target.clone(),
                crate::profile::updater::UpdaterSettings {
                    keys: config.redis.keys(),
                    consumer: consumer.clone(),
                    half_life: config.profiles.half_life,
                    ttl: config.profiles.ttl,
                },
                p,
                stop_rx.clone(),
            ));
        }
    }

    if let Some(retention) =
        crate::retention::Retention::from_config(&config.queue, config.profiles.enabled)
    {
        let every = retention.every(config.queue.poll_interval);
        tokio::spawn(crate::retention::run(
            queue.clone(),
            retention,
            every,
            stop_rx.clone(),
        ));
    }

    let started = Instant::now();
    let (idle_tx, mut idle_rx) = watch::channel(false);
    let housekeeping = tokio::spawn(housekeeping(
        queue.clone(),
        consumer.clone(),
        kinds,
        workers.clone(),
        config.queue.poll_interval,
        health.clone(),
        opts.drain.then_some(idle_tx),
        stop_rx.clone(),
    ));

    let drained = async {
        // Without --drain the sender is gone at once; only a signal stops the daemon.
        if opts.drain && idle_rx.wait_for(|i| *i).await.is_ok() {
            return;
        }
        std::future::pending::<()>().await
    };
    let by_drain = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down: no new jobs are taken");
            false
        }
        _ = drained => {
            tracing::info!("drained: every queue is empty");
            true
        }
    };
    let _ = stop_tx.send(true);
    health.workers_running.store(false, Ordering::Relaxed);

    // In-flight jobs finish within the grace period; any still running then stay
    // pending in Redis and are reclaimed by another consumer (or the next start).
    // One deadline for the whole shutdown: finishing sends, then writing outcomes.
    let deadline = tokio::time::Instant::now() + config.queue.shutdown_grace;
    let drained = tokio::time::timeout_at(deadline, async {
        for w in &workers {
            w.wait_idle().await;
        }
    })
    .await;
    if drained.is_err() {
        let left: usize = workers.iter().map(|w| w.in_flight()).sum();
        tracing::warn!(
            in_flight = left,
            "grace period over; unfinished jobs stay pending and will be reclaimed"
        );
    }
    // Print batches and the like are closed only once no send can add to them.
    for w in &workers {
        w.shutdown_adapter().await;
    }
    drop(workers);
    // The completion writers end once every job's outcome is written.
    let writers_deadline = deadline.max(tokio::time::Instant::now() + Duration::from_secs(2));
    for w in writers {
        if tokio::time::timeout_at(writers_deadline, w).await.is_err() {
            tracing::warn!(
                "outcomes not yet written at exit; their jobs stay pending and will be reclaimed"
            );
        }
    }
    // Webhooks still being handled finish (their events written) within the same
    // deadline; the server itself warns about connections it gave up on.
    if let Some(http) = http {
        let _ = tokio::time::timeout_at(writers_deadline, http).await;
    }
    housekeeping.abort();
    let n = finished.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        jobs = n,
        seconds = format!("{secs:.2}"),
        per_second = format!("{:.0}", n as f64 / secs.max(1e-9)),
        "stopped"
    );
    if by_drain {
        println!(
            "drained {n} jobs in {secs:.2} s ({:.0} jobs/s)",
            n as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

/// Connects to Redis, retrying until it answers or a signal arrives (`None`).
/// A certificate or auth failure ends the daemon at once (exit 2): it will not fix
/// itself, and retrying would only fill the log.
/// How long `run` waits at start for an unreachable Redis before it exits 2.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// How long a start keeps retrying its consumer groups through errors that pass
/// (a timeout or `TRYAGAIN` while a reshard moves the streams' slots, a failover).
const GROUPS_DEADLINE: Duration = Duration::from_secs(60);

/// Creates `kind`'s consumer groups, retrying errors that pass by themselves:
/// a start during a reshard saw its `XGROUP CREATE` time out (CI, a loaded
/// two-core machine) and the daemon exited. A refused command (`NOPERM`, a key
/// of the wrong type) fails at once: retrying will not fix it.
async fn create_groups(
    queue: &Queue,
    kind: crate::channel_id::ChannelId,
) -> redis::RedisResult<()> {
    let started = Instant::now();
    let mut failures = 0u32;
    loop {
        match queue.ensure_group(kind).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let refused = matches!(e.code(), Some("NOPERM" | "WRONGTYPE" | "NOAUTH" | "ERR"));
                if refused || started.elapsed() >= GROUPS_DEADLINE {
                    return Err(e);
                }
                failures += 1;
                tracing::warn!(channel = %kind, error = %e, "creating the consumer groups failed; retrying");
                tokio::time::sleep(Duration::from_millis(
                    (100u64 << failures.min(5)).min(2_000),
                ))
                .await;
            }
        }
    }
}

async fn connect_until_up(
    config: &Config,
    target: &RedisTarget,
    health: &Health,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Queue>> {
    let started = tokio::time::Instant::now();
    let mut failures = 0u32;
    loop {
        match Queue::connect(target, config.redis.keys()).await {
            Ok(q) => {
                let q = q.with_durability(config.redis.durability());
                // Data of another layout is not ours to touch: exit naming the fix.
                q.check_schema().await?;
                health.redis_ok.store(true, Ordering::Relaxed);
                return Ok(Some(q));
            }
            Err(e) => {
                failures += 1;
                metrics::gauge!(m::UP).set(0.0);
                let e = ConnectError::new(target, &e);
                // A certificate or password will not fix itself; an unreachable
                // Redis may be starting too (compose, a pod), so it gets
                // START_DEADLINE, then `run` exits 2 naming it and the
                // orchestrator's restart policy takes over. Outages after start
                // are retried for as long as they last.
                if e.cause.is_permanent() || started.elapsed() >= START_DEADLINE {
                    return Err(e.into());
                }
                tracing::warn!(error = %e, "cannot reach Redis; retrying");
                let left = START_DEADLINE.saturating_sub(started.elapsed());
                let wait = Duration::from_millis((250u64 << failures.min(5)).min(5000)).min(left);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    s = shutdown_signal() => { tracing::info!(signal = s, "stopping before Redis came up"); return Ok(None) }
                    _ = stop.changed() => return Ok(None),
                }
            }
        }
    }
}

/// Moves due delayed jobs, samples queue gauges and readiness, and (in drain
/// mode) reports when everything is empty.
#[allow(clippy::too_many_arguments)]
async fn housekeeping(
    queue: Queue,
    consumer: String,
    kinds: Vec<crate::channel_id::ChannelId>,
    workers: Vec<Arc<ChannelWorker>>,
    every: Duration,
    health: Arc<Health>,
    idle: Option<watch::Sender<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut idle_polls = 0;
    let mut results_groups = ResultsGroupGauges::default();
    // Failed checks in a row: while Redis is down the loop waits longer between
    // rounds (each round is a request per partition), as the readers do.
    let mut failures = 0u32;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if failures > 0 {
            let wait = Duration::from_millis((100u64 << failures.min(6)).min(5_000));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
        let now = jiff::Timestamp::now().as_millisecond();
        // One daemon at a time moves due jobs (moving is atomic anyway; the lease
        // saves N daemons scanning the same set). It lapses 3 polls after its
        // holder stops renewing it, and another daemon takes over.
        let lease = every.saturating_mul(3).max(Duration::from_secs(1));
        // One lease per partition: on a cluster a partition's set is on its own
        // primary, and daemons can share the moving.
        for p in queue.keys().all_partitions() {
            match queue
                .hold_lease(&queue.keys().mover_lease(p), &consumer, lease)
                .await
            {
                Ok(true) => move_due_jobs(&queue, p, now).await,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, partition = %p, "could not renew the mover lease")
                }
            }
        }
        match queue.sample(&kinds).await {
            Ok(sample) => {
                failures = 0;
                health.redis_ok.store(true, Ordering::Relaxed);
                let stats = &sample.stats;
                for c in &stats.channels {
                    metrics::gauge!(m::QUEUE_BACKLOG, "channel" => c.channel.clone())
                        .set(c.backlog as f64);
                    metrics::gauge!(m::QUEUE_PENDING, "channel" => c.channel.clone())
                        .set(c.pending as f64);
                }
                metrics::gauge!(m::DELAYED).set(stats.delayed as f64);
                metrics::gauge!(m::DELAYED_DUE).set(stats.delayed_due as f64);
                metrics::gauge!(m::DEAD_LETTER_SIZE).set(stats.dead_letters as f64);
                metrics::gauge!(m::RESULTS_SIZE).set(stats.results as f64);
                results_groups.update(&sample.results_groups);
                for o in &sample.oldest_pending {
                    let secs = o.age_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
                    metrics::gauge!(m::OLDEST_PENDING_SECONDS, "channel" => o.channel.label())
                        .set(secs);
                }
                for w in &workers {
                    metrics::gauge!(m::IN_FLIGHT, "channel" => w.kind().label())
                        .set(w.in_flight() as f64);
                }
                // Last: once it reads 1, every gauge above holds a sample.
                metrics::gauge!(m::UP).set(1.0);
                let busy: usize = workers.iter().map(|w| w.in_flight()).sum();
                if let Some(idle) = &idle {
                    idle_polls = if sample.stats.is_idle() && busy == 0 {
                        idle_polls + 1
                    } else {
                        0
                    };
                    if idle_polls >= 2 {
                        let _ = idle.send(true);
                    }
                }
            }
            Err(e) => {
                failures += 1;
                health.redis_ok.store(false, Ordering::Relaxed);
                metrics::gauge!(m::UP).set(0.0);
                metrics::counter!(m::REDIS_ERRORS, "op" => "stats").increment(1);
                tracing::warn!(error = %e, "Redis check failed");
            }
        }
    }
}

/// The gauges of the results streams' consumer groups.
#[derive(Default)]
struct ResultsGroupGauges {
    /// Groups seen in the last sample.
    seen: Vec<String>,
}

impl ResultsGroupGauges {
    fn update(&mut self, groups: &[crate::queue::ResultsGroup]) {
        for g in groups {
            // NaN ("unknown") rather than a guess: a lag alert does not fire on it.
            let lag = g.lag.map_or(f64::NAN, |l| l as f64);
            metrics::gauge!(m::RESULTS_GROUP_LAG, "group" => g.name.clone()).set(lag);
            metrics::gauge!(m::RESULTS_GROUP_PENDING, "group" => g.name.clone())
                .set(g.pending as f64);
        }
        // A deleted group waits for nothing; its series cannot be removed, so
        // they read 0 rather than their last value forever.
        for gone in self
            .seen
            .iter()
            .filter(|n| !groups.iter().any(|g| &g.name == *n))
        {
            metrics::gauge!(m::RESULTS_GROUP_LAG, "group" => gone.clone()).set(0.0);
            metrics::gauge!(m::RESULTS_GROUP_PENDING, "group" => gone.clone()).set(0.0);
        }
        self.seen = groups.iter().map(|g| g.name.clone()).collect();
    }
}

/// Moves every due delayed job back to its stream, in batches.
async fn move_due_jobs(queue: &Queue, p: Partition, now: i64) {
    loop {
        match queue.move_due(p, now, MOVE_BATCH).await {
            Ok((handled, dead)) => {
                for id in &dead {
                    metrics::counter!(m::DEAD_LETTERS, "channel" => "none", "reason" => "internal")
                        .increment(1);
                    tracing::warn!(dead_letter = %id, "an unreadable delayed entry was moved to the dead letters");
                    let mut ev = Event::for_job(EventType::Failed, None, None, "none", 0, None)
                        .with_error(
                            "internal",
                            &format!("unreadable delayed entry (dead letter {id})"),
                        );
                    ev.channel = None;
                    ev.event_id = format!("{}/{id}/failed", queue.keys().dead(p));
                    if let Err(e) = queue.add_event(p, &ev.to_json()).await {
                        tracing::warn!(error = %e, "could not write the failed event for dead letter {id}");
                    }
                }
                if handled < MOVE_BATCH {
                    return;
                }
            }
            Err(e) => {
                metrics::counter!(m::REDIS_ERRORS, "op" => "move_due").increment(1);
                tracing::warn!(error = %e, "moving delayed jobs failed");
                return;
            }
        }
    }
}

/// A consumer name unique to this process, so a dead process's pending jobs are
/// recognizably orphaned and reclaimed.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tayori".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}
