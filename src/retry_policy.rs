//! When to retry a transient failure, and how long to wait.
//!
//! Exponential backoff with jitter (each wait is the exponential delay plus up to
//! as much again at random), from `backon` (the maintained successor
//! of the `backoff` crate, which RustSec marks unmaintained: RUSTSEC-2025-0012).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::RetryConfig;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    config: RetryConfig,
}

/// What to do after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    RetryIn(Duration),
    GiveUp,
}

impl RetryPolicy {
    pub fn new(config: RetryConfig) -> Self {
        Self { config }
    }

    /// `attempt` is the attempt that just failed (1-based); `age` how long ago the job arrived;
    /// `hint` a provider's Retry-After, which wins over the computed backoff.
    pub fn decide(&self, attempt: u32, age: Duration, hint: Option<Duration>) -> Decision {
        if attempt >= self.config.max_attempts {
            return Decision::GiveUp;
        }
        let wait = hint
            .map(|h| h.min(self.config.max_age))
            .unwrap_or_else(|| self.backoff(attempt));
        if age.saturating_add(wait) > self.config.max_age {
            return Decision::GiveUp;
        }
        Decision::RetryIn(wait)
    }

    /// How old a job may get before it is given up.
    pub fn max_age(&self) -> Duration {
        self.config.max_age
    }

    /// The wait before retry number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.config.base_delay)
            .with_max_delay(self.config.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.config.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(RetryConfig {
            max_attempts: 4,
            max_age: Duration::from_secs(3600),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        })
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = policy();
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(
                first >= Duration::from_secs(1) && first <= Duration::from_secs(2),
                "{first:?}"
            );
            let third = p.backoff(3);
            assert!(
                third >= Duration::from_secs(4) && third <= Duration::from_secs(8),
                "{third:?}"
            );
            assert!(p.backoff(30) <= Duration::from_secs(120));
        }
    }

    #[test]
    fn gives_up_after_max_attempts_or_max_age() {
        let p = policy();
        assert!(matches!(
            p.decide(1, Duration::ZERO, None),
            Decision::RetryIn(_)
        ));
        assert_eq!(p.decide(4, Duration::ZERO, None), Decision::GiveUp);
        assert_eq!(
            p.decide(1, Duration::from_secs(3599), Some(Duration::from_secs(10))),
            Decision::GiveUp
        );
        assert_eq!(
            p.decide(1, Duration::ZERO, Some(Duration::from_secs(30))),
            Decision::RetryIn(Duration::from_secs(30))
        );
    }
}
