//! Keys this process wrote lately, so a job's records skip what an earlier
//! job already did: a bucket's expiry (set once, when the bucket is first
//! written) and a campaign URL's content record (rewritten once a minute, not
//! once a job). Measured on LINE jobs with one link: 3 commands a link before
//! (`HSET`, `PEXPIRE`, `SET`), 1 after.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries older than this are dropped once the map is large: no caller asks
/// about a longer span (a bucket is filled for at most 10 minutes).
const FORGET_AFTER: Duration = Duration::from_secs(20 * 60);
const PRUNE_AT: usize = 4096;

#[derive(Default)]
pub struct RecentWrites {
    at: Mutex<HashMap<String, Instant>>,
}

impl RecentWrites {
    /// Whether `key` was marked written within `within`.
    pub fn fresh(&self, key: &str, within: Duration) -> bool {
        let at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        at.get(key).is_some_and(|t| t.elapsed() < within)
    }

    /// Marks `keys` written now (call once Redis has confirmed the writes).
    pub fn mark(&self, keys: impl IntoIterator<Item = String>) {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for key in keys {
            at.insert(key, now);
        }
        if at.len() > PRUNE_AT {
            at.retain(|_, t| t.elapsed() < FORGET_AFTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_fresh_only_once_marked_and_within_its_span() {
        let r = RecentWrites::default();
        assert!(!r.fresh("a", Duration::from_secs(60)));
        r.mark(["a".to_owned()]);
        assert!(r.fresh("a", Duration::from_secs(60)));
        assert!(!r.fresh("a", Duration::ZERO));
        assert!(!r.fresh("b", Duration::from_secs(60)));
    }
}
