//! Rate limits that hold for every daemon on one Redis together.
//!
//! Providers count per account, not per process, so a channel's `rate` and
//! `burst` are enforced by a GCRA bucket in Redis (`lease.lua`, on Redis's
//! clock). A daemon leases a few permits at a time — about 20 ms worth — so the
//! hot path pays one round trip per lease, not per message; the process's own
//! governor limiter still smooths what it sends. Leased permits left unused for
//! [`LEASE_FRESH`] are dropped rather than sent late in a clump.
//!
//! The same script reports a pause any daemon has set on the scope (a revoked
//! token, a 429 with Retry-After), so one daemon's pushback stops them all.
//!
//! If Redis cannot be reached, a daemon falls back to a conservative local share:
//! the rate divided by the number of daemons that leased in the last 30 s.

pub mod domains;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::redis_connection::RedisConnection;
use governor::DefaultDirectRateLimiter;

use crate::metrics as m;
use crate::units::Rate;

/// Permits older than this are not used: a stale lease would send in a clump.
pub const LEASE_FRESH: Duration = Duration::from_millis(250);
/// How much of the rate one lease asks for.
const LEASE_SPAN: Duration = Duration::from_millis(20);
/// The longest single sleep while waiting for a permit (then the bucket is asked again).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// What waiting for a permit ended in.
#[derive(Debug, Clone, PartialEq)]
pub enum Permit {
    /// Send now.
    Go,
    /// A daemon paused this scope: why, and for how much longer.
    Paused { reason: String, wait: Duration },
    /// (`try_acquire` only) the next permit is further away than the caller
    /// wants to wait: one is reserved for the caller at `in_` from now.
    Reserved { in_: Duration },
}

/// The lease script, loaded once per process.
pub fn script() -> Arc<redis::Script> {
    static SCRIPT: std::sync::OnceLock<Arc<redis::Script>> = std::sync::OnceLock::new();
    SCRIPT
        .get_or_init(|| Arc::new(redis::Script::new(include_str!("lease.lua"))))
        .clone()
}

/// A rate shared through Redis for one scope: a channel, or one email domain.
pub struct SharedLimiter {
    /// For metrics and logs: `email`, `email:docomo.ne.jp`.
    scope: String,
    channel: &'static str,
    bucket: String,
    daemons_key: String,
    pause_key: String,
    interval_us: u64,
    burst: u32,
    lease: u32,
    consumer: String,
    rate: Rate,
    conn: RedisConnection,
    script: Arc<redis::Script>,
    pool: tokio::sync::Mutex<Pool>,
    /// Daemons seen leasing this scope lately (at least 1).
    daemons: AtomicU32,
    /// Used while Redis is unreachable: the rate divided by `daemons`.
    fallback: Mutex<Option<(u32, Arc<DefaultDirectRateLimiter>)>>,
}

struct Pool {
    permits: u32,
    leased_at: Instant,
}

impl SharedLimiter {
    /// `scope`: `email`, `email:domain:docomo.ne.jp`; `keys`: its bucket, daemons
    /// and pause keys (`Keys::rate_keys`), which share a slot.
    pub fn new(
        scope: String,
        keys: [String; 3],
        channel: &'static str,
        rate: Rate,
        burst: Option<NonZeroU32>,
        consumer: &str,
        conn: RedisConnection,
    ) -> SharedLimiter {
        let burst = burst.unwrap_or_else(|| rate.default_burst()).get();
        let interval_us =
            u64::try_from(rate.per.as_micros() / u128::from(rate.count.get())).unwrap_or(u64::MAX);
        let per_span =
            u128::from(rate.count.get()) * LEASE_SPAN.as_micros() / rate.per.as_micros().max(1);
        let lease = u32::try_from(per_span).unwrap_or(u32::MAX).clamp(1, burst);
        let [bucket, daemons_key, pause_key] = keys;
        SharedLimiter {
            bucket,
            daemons_key,
            pause_key,
            scope,
            channel,
            interval_us: interval_us.max(1),
            burst,
            lease,
            consumer: consumer.to_owned(),
            rate,
            conn,
            script: script(),
            pool: tokio::sync::Mutex::new(Pool {
                permits: 0,
                leased_at: Instant::now(),
            }),
            daemons: AtomicU32::new(1),
            fallback: Mutex::new(None),
        }
    }

    /// Waits for a permit (or learns the scope is paused).
    pub async fn acquire(&self) -> Permit {
        self.take(None).await
    }

    /// A permit if one comes within `max_wait` (waiting for it); otherwise one is
    /// reserved for the caller and `Reserved` says when it is due, so the caller
    /// can put the job aside instead of holding a worker slot.
    pub async fn try_acquire(&self, max_wait: Duration) -> Permit {
        self.take(Some(max_wait)).await
    }

    async fn take(&self, reserve_beyond: Option<Duration>) -> Permit {
        let max_wait = reserve_beyond.unwrap_or(MAX_SLEEP);
        let mut pool = self.pool.lock().await;
        loop {
            if pool.permits > 0 && pool.leased_at.elapsed() < LEASE_FRESH {
                pool.permits -= 1;
                return Permit::Go;
            }
            pool.permits = 0;
            let want = self.lease;
            match self.lease(want, reserve_beyond).await {
                Ok(Lease::Granted(k)) => {
                    pool.permits = k - 1;
                    pool.leased_at = Instant::now();
                    return Permit::Go;
                }
                Ok(Lease::Paused { reason, wait }) => return Permit::Paused { reason, wait },
                Ok(Lease::Reserved(wait)) => return Permit::Reserved { in_: wait },
                Ok(Lease::Wait(wait)) => {
                    metrics::counter!(m::RATE_LIMIT_WAITS, "channel" => self.channel).increment(1);
                    tokio::time::sleep(wait.min(max_wait)).await;
                }
                Err(e) => {
                    metrics::counter!(m::REDIS_ERRORS, "op" => "rate_lease").increment(1);
                    tracing::debug!(scope = %self.scope, error = %e, "rate lease failed: using the local share");
                    drop(pool);
                    self.fallback_limiter().until_ready().await;
                    return Permit::Go;
                }
            }
        }
    }

    async fn lease(
        &self,
        want: u32,
        reserve_beyond: Option<Duration>,
    ) -> redis::RedisResult<Lease> {
        let mut conn = self.conn.clone();
        let reserve_ms = reserve_beyond.map_or(0, |d| d.as_millis().max(1) as u64);
        let (granted, wait_ms, reason, daemons, reserved): (u32, u64, String, u32, u8) = self
            .script
            .key(&self.bucket)
            .key(&self.daemons_key)
            .key(&self.pause_key)
            .arg(self.interval_us)
            .arg(self.burst)
            .arg(want)
            .arg(&self.consumer)
            .arg(reserve_ms)
            .invoke_async(&mut conn)
            .await?;
        self.daemons.store(daemons.max(1), Ordering::Relaxed);
        let wait = Duration::from_millis(wait_ms.max(1));
        Ok(if granted > 0 {
            Lease::Granted(granted)
        } else if !reason.is_empty() {
            Lease::Paused { reason, wait }
        } else if reserved == 1 {
            Lease::Reserved(wait)
        } else {
            Lease::Wait(wait)
        })
    }

    /// The local stand-in while Redis is away: this daemon's share of the rate.
    fn fallback_limiter(&self) -> Arc<DefaultDirectRateLimiter> {
        let daemons = self.daemons.load(Ordering::Relaxed).max(1);
        let mut slot = self.fallback.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, limiter)) = slot.as_ref() {
            if *n == daemons {
                return limiter.clone();
            }
        }
        let share = Rate {
            count: self.rate.count,
            per: self.rate.per.saturating_mul(daemons),
        };
        let burst = NonZeroU32::new((self.burst / daemons).max(1)).unwrap_or(NonZeroU32::MIN);
        let limiter = Arc::new(governor::RateLimiter::direct(share.quota(Some(burst))));
        *slot = Some((daemons, limiter.clone()));
        limiter
    }
}

enum Lease {
    Granted(u32),
    Wait(Duration),
    Reserved(Duration),
    Paused { reason: String, wait: Duration },
}
