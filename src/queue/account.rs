//! The Redis of channels' background tasks ([`AccountStore`]): quota readings,
//! the campaigns sent per day, leases, and events that belong to no job.

use std::collections::HashMap;
use std::time::Duration;

use crate::channel::background::{AccountStore, QuotaReading, StoreError};
use crate::channel_id::ChannelId;
use crate::keys::partition_of;

use super::Queue;

fn store_error(e: redis::RedisError) -> StoreError {
    StoreError(e.to_string())
}

impl Queue {
    /// The last quota reading a daemon kept for `kind`, if any.
    pub async fn quota_reading(&self, kind: ChannelId) -> redis::RedisResult<Option<QuotaReading>> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys().quota(kind))
            .query_async(&mut self.conn())
            .await?;
        let (Some(limit), Some(used), Some(read_at)) = (
            fields.get("limit"),
            fields.get("used"),
            fields.get("read_at"),
        ) else {
            return Ok(None);
        };
        Ok(Some(QuotaReading {
            limit: limit.parse().ok(),
            used: used.parse().unwrap_or(0),
            read_at: read_at.clone(),
        }))
    }
}

#[async_trait::async_trait]
impl AccountStore for Queue {
    async fn keep_quota(&self, kind: ChannelId, q: &QuotaReading) -> Result<(), StoreError> {
        let limit = q.limit.map_or_else(|| "none".to_owned(), |l| l.to_string());
        redis::cmd("HSET")
            .arg(self.keys().quota(kind))
            .arg("limit")
            .arg(limit)
            .arg("used")
            .arg(q.used)
            .arg("read_at")
            .arg(&q.read_at)
            .query_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn note_campaign_days(
        &self,
        kind: ChannelId,
        pairs: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.keys().campaign_days(kind));
        for (campaign, day) in pairs {
            cmd.arg(day.parse::<u64>().unwrap_or(0))
                .arg(format!("{day}:{campaign}"));
        }
        cmd.query_async::<i64>(&mut self.conn())
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn campaign_days(
        &self,
        kind: ChannelId,
        oldest: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let key = self.keys().campaign_days(kind);
        let _: i64 = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(format!("({oldest}"))
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(members
            .into_iter()
            .filter_map(|m| {
                let (day, campaign) = m.split_once(':')?;
                Some((campaign.to_owned(), day.to_owned()))
            })
            .collect())
    }

    async fn hold_lease(
        &self,
        kind: ChannelId,
        task: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        Queue::hold_lease(self, &self.keys().channel_lease(kind, task), holder, ttl)
            .await
            .map_err(store_error)
    }

    async fn add_event(&self, route: &str, json: &str) -> Result<(), StoreError> {
        let p = partition_of(route, self.keys().partitions());
        Queue::add_event(self, p, json).await.map_err(store_error)
    }
}
