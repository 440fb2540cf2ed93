//! The cancels hash (`P:cancels`) and the delayed-set sweep that serves it.

use std::collections::HashMap;

use redis::Value;

use super::{Queue, RedisResult};
use crate::cancel::{Cancel, Target};
use crate::keys::Partition;

/// Delayed members read per `ZSCAN` call while sweeping.
const SCAN_COUNT: usize = 1000;

impl Queue {
    /// Records a cancel (replacing one for the same target).
    pub async fn set_cancel(&self, target: &Target, cancel: &Cancel) -> RedisResult<()> {
        redis::cmd("HSET")
            .arg(self.keys.cancels())
            .arg(target.field())
            .arg(cancel.to_json())
            .query_async(&mut self.conn.clone())
            .await
    }

    /// Every cancel recorded, lapsed ones included, by target. Fields this
    /// build cannot read are skipped (and named in the log).
    pub async fn cancels(&self) -> RedisResult<HashMap<String, Cancel>> {
        let all: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.keys.cancels())
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(field, json)| match Cancel::from_json(&json) {
                Some(c) if Target::from_field(&field).is_some() => Some((field, c)),
                _ => {
                    tracing::warn!(field, "an unreadable cancel in Redis is ignored");
                    None
                }
            })
            .collect())
    }

    /// Removes cancels by field; returns how many were there.
    pub async fn remove_cancels(&self, fields: &[String]) -> RedisResult<usize> {
        if fields.is_empty() {
            return Ok(0);
        }
        redis::cmd("HDEL")
            .arg(self.keys.cancels())
            .arg(fields)
            .query_async(&mut self.conn.clone())
            .await
    }

    /// One `ZSCAN` step over a partition's delayed set: the next cursor (0 at
    /// the end) and the members read.
    pub async fn scan_delayed(&self, p: Partition, cursor: u64) -> RedisResult<(u64, Vec<String>)> {
        let (next, flat): (u64, Vec<Value>) = redis::cmd("ZSCAN")
            .arg(self.keys.delayed(p))
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(&mut self.conn.clone())
            .await?;
        // Member, score, member, score, …
        let members = flat
            .into_iter()
            .step_by(2)
            .filter_map(|v| match v {
                Value::BulkString(b) => String::from_utf8(b).ok(),
                _ => None,
            })
            .collect();
        Ok((next, members))
    }

    /// Makes delayed members due now (score 0; `XX`: one the mover took
    /// meanwhile is not put back), so the mover hands them to a worker at its
    /// next poll. Returns how many were still waiting.
    pub async fn hurry_delayed(&self, p: Partition, members: &[String]) -> RedisResult<usize> {
        if members.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.keys.delayed(p)).arg("XX").arg("CH");
        for m in members {
            cmd.arg(0).arg(m);
        }
        cmd.query_async(&mut self.conn.clone()).await
    }
}
