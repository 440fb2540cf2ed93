//! Trimming a partition's results stream: old enough AND acknowledged by every
//! required consumer group (`trim_results.lua` says the rule).

use redis::RedisResult;

use super::Queue;
use crate::keys::Partition;

/// The most held-back events a trim counts: counting reads the held events
/// inside the script, so it is bounded.
pub const HELD_BACK_COUNT_CAP: u64 = 10_000;

/// What one trim of one partition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trimmed {
    /// Events removed.
    pub removed: u64,
    /// Events older than the retention kept because a group has not
    /// acknowledged them (counted up to [`HELD_BACK_COUNT_CAP`]).
    pub held_back: u64,
    /// The group whose oldest unacknowledged event bounded the trim, if one did.
    pub held_by: Option<String>,
}

impl Queue {
    /// Trims partition `p`'s results stream below `older_than_ms` (ms since the
    /// epoch; 0 trims nothing by age), except events some group of `groups` has
    /// not acknowledged; then to about `max_len` events if that is set (which
    /// may drop unread events: the operator's hard cap).
    pub async fn trim_results(
        &self,
        p: Partition,
        older_than_ms: i64,
        max_len: u64,
        groups: &[String],
    ) -> RedisResult<Trimmed> {
        let mut inv = self.trim_results.prepare_invoke();
        inv.key(self.keys.results(p))
            .arg(older_than_ms.max(0))
            .arg(max_len)
            .arg(HELD_BACK_COUNT_CAP);
        for g in groups {
            inv.arg(g);
        }
        let (removed, held_back, held_by): (u64, u64, String) =
            inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(Trimmed {
            removed,
            held_back,
            held_by: (!held_by.is_empty()).then_some(held_by),
        })
    }
}
