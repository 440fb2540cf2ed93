//! Rate limits that hold for every daemon on one Redis together.
//!
//! Providers count per account, not per process, so a channel's `rate` and
//! `burst` are enforced by a GCRA bucket in Redis (`lease.lua`, on Redis's
//! clock). A daemon leases the next permits of about 20 ms of the rate at once,
//! each with its due time (TAT advances one interval per permit, so every
//! daemon's permits together keep to the bucket), and releases each locally
//! when it is due: the hot path pays one round trip per lease, not per message,
//! even when the bucket is empty and the rate is what holds sending back. The
//! process's own governor limiter still smooths what it sends. A leased permit
//! left unused for [`LEASE_FRESH`] past its due time is dropped rather than
//! sent late in a clump.
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

/// A leased permit not taken within this of its due time is dropped: sending
/// it later would put it beside the permits other daemons send on time (a
/// clump above the rate). One lease's span: a daemon late by more than that is
/// not keeping up with its own leases, and the bucket's burst takes up what it
/// drops (the next lease's permits are due at once).
pub const LEASE_FRESH: Duration = Duration::from_millis(20);
/// How much of the rate one lease asks for: at a steady limited rate one round
/// trip serves this much sending. Measured (`benches/shared_rate.rs`, 1,000/s,
/// burst 100): 0.05 leases per send for 1 and for 3 daemons; before leases
/// carried due times (only permits due at once), 0.76 and 1.72.
const LEASE_SPAN: Duration = Duration::from_millis(20);
/// The longest single sleep while waiting for a permit (then the bucket is asked
/// again), and how far ahead a lease's first permit may be due for `acquire`.
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

/// The permits of the last lease: permit `i` is due at `start + max(0, first_us
/// + i·interval)`; `used` of `granted` are taken (or dropped as stale).
struct Pool {
    granted: u32,
    used: u32,
    /// When the lease's answer arrived: Redis's `now` was no later, so a permit
    /// is never released before its due time on Redis's clock.
    start: Instant,
    /// When the first permit is due, from `start` (µs; ≤ 0: at once).
    first_us: i64,
    interval_us: u64,
}

impl Pool {
    fn empty() -> Pool {
        Pool {
            granted: 0,
            used: 0,
            start: Instant::now(),
            first_us: 0,
            interval_us: 1,
        }
    }

    /// When permit `i` is due.
    fn due(&self, i: u32) -> Instant {
        let offset = self
            .first_us
            .saturating_add(i64::from(i).saturating_mul(self.interval_us as i64));
        self.start + Duration::from_micros(u64::try_from(offset).unwrap_or(0))
    }

    /// The next usable permit's due time, after dropping those left unused for
    /// [`LEASE_FRESH`] past theirs; `None` when the lease is spent.
    fn next(&mut self, now: Instant) -> Option<Instant> {
        if self.used >= self.granted {
            return None;
        }
        if self.due(self.used) + LEASE_FRESH < now {
            // Permit i is fresh once start + first + i·T + FRESH ≥ now.
            let late = now.duration_since(self.start).as_micros() as i64
                - LEASE_FRESH.as_micros() as i64
                - self.first_us;
            let t = self.interval_us as i64;
            let fresh_from = (late + t - 1).div_euclid(t);
            self.used = u32::try_from(fresh_from.max(0))
                .unwrap_or(u32::MAX)
                .clamp(self.used, self.granted);
            if self.used >= self.granted {
                return None;
            }
        }
        Some(self.due(self.used))
    }
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
        let interval_us = u64::try_from(rate.per.as_micros() / u128::from(rate.count.get()))
            .unwrap_or(u64::MAX)
            .max(1);
        // From the interval the bucket uses (at least 1 µs), not the configured
        // rate: a lease must not reach further than LEASE_SPAN.
        let per_span = LEASE_SPAN.as_micros() as u64 / interval_us;
        let lease = u32::try_from(per_span).unwrap_or(u32::MAX).max(1);
        let [bucket, daemons_key, pause_key] = keys;
        SharedLimiter {
            bucket,
            daemons_key,
            pause_key,
            scope,
            channel,
            interval_us,
            burst,
            lease,
            consumer: consumer.to_owned(),
            rate,
            conn,
            script: script(),
            pool: tokio::sync::Mutex::new(Pool::empty()),
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
        // Held while sleeping until a permit is due: permits go out in order,
        // one caller at a time, each at its due time.
        let mut pool = self.pool.lock().await;
        loop {
            let now = Instant::now();
            if let Some(due) = pool.next(now) {
                let wait = due.saturating_duration_since(now);
                pool.used += 1;
                if reserve_beyond.is_some() && wait > max_wait {
                    return Permit::Reserved { in_: wait };
                }
                if !wait.is_zero() {
                    tokio::time::sleep_until(due.into()).await;
                }
                return Permit::Go;
            }
            match self.lease(self.lease, reserve_beyond, max_wait).await {
                Ok(Lease::Granted { permits, first_us }) => {
                    *pool = Pool {
                        granted: permits,
                        used: 0,
                        start: Instant::now(),
                        first_us,
                        interval_us: self.interval_us,
                    };
                }
                Ok(Lease::Paused { reason, wait }) => return Permit::Paused { reason, wait },
                Ok(Lease::Reserved(wait)) => return Permit::Reserved { in_: wait },
                Ok(Lease::Wait(wait)) => {
                    metrics::counter!(m::RATE_LIMIT_WAITS, "channel" => self.channel).increment(1);
                    tokio::time::sleep(wait.min(MAX_SLEEP)).await;
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

    /// One round trip: the next `want` permits if the first is due within
    /// `reach`.
    async fn lease(
        &self,
        want: u32,
        reserve_beyond: Option<Duration>,
        reach: Duration,
    ) -> redis::RedisResult<Lease> {
        let mut conn = self.conn.clone();
        let reserve_ms = reserve_beyond.map_or(0, |d| d.as_millis().max(1) as u64);
        let (granted, first_us, reason, daemons, reserved, wait_ms): (
            u32,
            i64,
            String,
            u32,
            u8,
            u64,
        ) = self
            .script
            .key(&self.bucket)
            .key(&self.daemons_key)
            .key(&self.pause_key)
            .arg(self.interval_us)
            .arg(self.burst)
            .arg(want)
            .arg(&self.consumer)
            .arg(reserve_ms)
            .arg(reach.as_micros() as u64)
            .invoke_async(&mut conn)
            .await?;
        self.daemons.store(daemons.max(1), Ordering::Relaxed);
        let wait = Duration::from_millis(wait_ms.max(1));
        Ok(if granted > 0 {
            Lease::Granted {
                permits: granted,
                first_us,
            }
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
    /// `permits` leased, the first due `first_us` from now (≤ 0: at once), the
    /// rest one interval apart.
    Granted {
        permits: u32,
        first_us: i64,
    },
    Wait(Duration),
    Reserved(Duration),
    Paused {
        reason: String,
        wait: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn leased_permits_are_due_one_interval_apart_after_the_burst() {
        let start = Instant::now();
        // Three permits of the burst are due at once, then one per millisecond.
        let pool = Pool {
            granted: 5,
            used: 0,
            start,
            first_us: -2000,
            interval_us: 1000,
        };
        let due: Vec<Duration> = (0..5).map(|i| pool.due(i) - start).collect();
        assert_eq!(due, [ms(0), ms(0), ms(0), ms(1), ms(2)]);
    }

    #[test]
    fn permits_left_unused_past_their_freshness_are_dropped() {
        let start = Instant::now();
        let mut pool = Pool {
            granted: 10,
            used: 0,
            start,
            first_us: 0,
            interval_us: 5000,
        };
        assert_eq!(pool.next(start), Some(start), "the first is due at once");
        // 30 ms on, the permits due at 0 and 5 ms are more than LEASE_FRESH late;
        // the one due at 10 ms is just fresh.
        assert_eq!(pool.next(start + ms(30)), Some(start + ms(10)));
        assert_eq!(pool.used, 2);
        assert_eq!(pool.next(start + ms(200)), None, "all stale");
        assert_eq!(pool.used, 10);

        // The burst's permits (due at once) go stale together.
        let mut burst = Pool {
            granted: 5,
            used: 0,
            start,
            first_us: -2000,
            interval_us: 1000,
        };
        assert_eq!(burst.next(start + ms(21)), Some(start + ms(1)));
        assert_eq!(burst.used, 3);
    }
}
