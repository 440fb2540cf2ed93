//! What a channel runs beside sending (LINE: reading its monthly quota and its
//! campaigns' statistics), and the Redis it may use for that, through
//! [`AccountStore`] (implemented by the queue, `queue/account.rs`): channels
//! know no Redis keys.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::watch;

use crate::channel_id::ChannelId;

/// What a channel's background tasks get from the daemon.
#[derive(Clone)]
pub struct Background {
    pub store: Arc<dyn AccountStore>,
    /// This daemon's name: the holder of a lease.
    pub consumer: String,
    /// Told each quota reading: `true` when the month's messages are used up
    /// (the daemon pauses, or resumes, this channel's worker).
    pub on_quota: Arc<dyn Fn(bool) + Send + Sync>,
    pub stop: watch::Receiver<bool>,
}

/// The tasks, for the daemon to spawn.
pub type Tasks = Vec<BoxFuture<'static, ()>>;

/// A channel's monthly quota at a reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaReading {
    /// Messages allowed this month; `None` (JSON `null`) when the provider sets no limit.
    pub limit: Option<u64>,
    /// Messages sent this month.
    pub used: u64,
    /// When it was read (RFC 3339).
    pub read_at: String,
}

/// Redis did not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The Redis a channel's background tasks use.
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync {
    /// Keeps the last quota reading (for `tayori stats`, another process).
    async fn keep_quota(&self, channel: ChannelId, q: &QuotaReading) -> Result<(), StoreError>;

    /// Remembers (campaign, day) pairs sent with (`day` as `yyyyMMdd`).
    async fn note_campaign_days(
        &self,
        channel: ChannelId,
        pairs: &[(String, String)],
    ) -> Result<(), StoreError>;

    /// The pairs remembered of `oldest` (`yyyyMMdd`) and later; older ones are forgotten.
    async fn campaign_days(
        &self,
        channel: ChannelId,
        oldest: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Takes or renews the channel's lease on `task` for `holder`: true while held.
    async fn hold_lease(
        &self,
        channel: ChannelId,
        task: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Appends an event that belongs to no job, in the partition of `route`.
    async fn add_event(&self, route: &str, json: &str) -> Result<(), StoreError>;
}
