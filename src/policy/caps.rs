//! Frequency caps: at most `max` sends per customer in any rolling window of
//! `per`, on one channel or across all of them, counted in Redis.
//!
//! One sorted set per customer and scope, `P:{k}:cap:<scope>:<customer_id>`
//! (`Keys::cap`: all of a customer's in its partition, so one script counts them)
//! (`scope` = a channel name or `all`): members are job ids, scores the ms time
//! each was counted. A job id is a member at most once, so a retry or a
//! redelivery of the same job never counts twice. `caps.lua` trims, checks and
//! counts every applicable set in one atomic step, so concurrent workers on any
//! number of daemons never let more than `max` through.
//!
//! Only jobs with a `customer_id` are capped: there is nothing to count a job
//! without one against (an empty id is treated as none). Exempting
//! transactional jobs is the caller's decision: it simply does not call
//! [`Policy::check_and_count`] for them.

use crate::keys::Keys;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::channel_id::ChannelId;
use redis::aio::ConnectionLike;
use redis::{RedisResult, Script};

use super::{CapConfig, Policy};
use crate::units::duration;

/// What a cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapScope {
    Channel(ChannelId),
    /// Every channel together.
    All,
}

impl CapScope {
    pub fn applies_to(self, channel: ChannelId) -> bool {
        match self {
            CapScope::Channel(k) => k == channel,
            CapScope::All => true,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CapScope::Channel(k) => k.label(),
            CapScope::All => "all",
        }
    }
}

/// One checked `[[policy.caps]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    pub scope: CapScope,
    pub max: u32,
    pub per: Duration,
    /// `per` as written, for messages: `"1d"`.
    per_text: String,
}

impl Cap {
    /// Errors are `(field, message)`; the caller adds `policy.caps[i].`.
    pub(super) fn from_config(
        c: &CapConfig,
        channels: &[&str],
    ) -> Result<Cap, (&'static str, String)> {
        let scope = match c.channel.as_str() {
            "all" => CapScope::All,
            name => CapScope::Channel(
                ChannelId::parse(name)
                    .ok()
                    .filter(|_| channels.contains(&name))
                    .ok_or_else(|| {
                        let known: Vec<String> =
                            channels.iter().map(|c| format!("\"{c}\"")).collect();
                        (
                            "channel",
                            format!(
                                "unknown channel {name:?}: use {}, or \"all\" to count every channel together",
                                known.join(", ")
                            ),
                        )
                    })?,
            ),
        };
        if c.max == 0 {
            return Err((
                "max",
                "must be at least 1 (to stop a channel, disable it instead)".into(),
            ));
        }
        let per = duration::parse(&c.per).map_err(|m| ("per", m))?;
        if per < Duration::from_millis(1) {
            return Err((
                "per",
                "must be at least 1ms: write e.g. \"1d\", \"7d\", \"12h\"".into(),
            ));
        }
        Ok(Cap {
            scope,
            max: c.max,
            per,
            per_text: c.per.trim().to_owned(),
        })
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.per.as_millis()).unwrap_or(i64::MAX / 4)
    }
}

impl fmt::Display for Cap {
    /// `email 2/1d`, `all 3/1d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.scope.as_str(), self.max, self.per_text)
    }
}

/// The answer of [`Policy::check_and_count`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapVerdict {
    /// Send: the job is counted (or already was, by an earlier delivery).
    Allowed,
    /// Over a cap; nothing was counted. `until_ms` (Unix ms) is when the
    /// binding window has a free slot again — a retry time for `defer`, not a
    /// reservation: the job is checked again then. `cap` names the cap,
    /// e.g. `"email 2/1d"`.
    Capped { until_ms: i64, cap: String },
}

fn script() -> Arc<Script> {
    static SCRIPT: OnceLock<Arc<Script>> = OnceLock::new();
    SCRIPT
        .get_or_init(|| Arc::new(Script::new(include_str!("caps.lua"))))
        .clone()
}

/// The sorted set of one customer's sends in one scope.
pub fn cap_key(keys: &Keys, scope: CapScope, customer_id: &str) -> String {
    keys.cap(scope.as_str(), customer_id)
}

impl Policy {
    /// Whether any cap counts sends on `channel` (its own caps or `all`).
    /// When not, the worker need not call [`Policy::check_and_count`].
    pub fn has_caps(&self, channel: ChannelId) -> bool {
        self.caps_for(channel).next().is_some()
    }

    /// The caps that count sends on `channel`: its own, then the `all` caps.
    pub fn caps_for(&self, channel: ChannelId) -> impl Iterator<Item = &Cap> {
        let own = self
            .caps
            .iter()
            .filter(move |c| c.scope == CapScope::Channel(channel));
        let all = self.caps.iter().filter(|c| c.scope == CapScope::All);
        own.chain(all)
    }

    /// The scopes (sets) a send on `channel` is counted in: the channel's own
    /// if it has caps, and `all` if there are `all` caps.
    fn scopes_for(&self, channel: ChannelId) -> Vec<CapScope> {
        let mut scopes: Vec<CapScope> = Vec::with_capacity(2);
        for c in self.caps_for(channel) {
            if !scopes.contains(&c.scope) {
                scopes.push(c.scope);
            }
        }
        scopes
    }

    /// Counts a send of `job_id` on `channel` for `customer_id` at `now_ms`
    /// against every cap that applies, or refuses it — atomically, so
    /// concurrent calls never let more than `max` through in a window.
    ///
    /// Call it only when the job is about to be sent (after quiet hours and
    /// the other checks that may defer it), and call [`Policy::uncount`] if the
    /// send then does not happen. Returns `Allowed` without a round trip when
    /// no cap applies or `customer_id` is empty. The same `job_id` is counted
    /// once: a retry or redelivery is `Allowed` again if it was counted.
    pub async fn check_and_count(
        &self,
        conn: &mut impl ConnectionLike,
        keys: &Keys,
        channel: ChannelId,
        customer_id: &str,
        job_id: &str,
        now_ms: i64,
    ) -> RedisResult<CapVerdict> {
        let scopes = self.scopes_for(channel);
        if scopes.is_empty() || customer_id.is_empty() {
            return Ok(CapVerdict::Allowed);
        }
        let caps: Vec<&Cap> = self.caps_for(channel).collect();
        let script = script();
        let mut inv = script.prepare_invoke();
        inv.arg(now_ms).arg(job_id);
        for &scope in &scopes {
            let longest = caps
                .iter()
                .filter(|c| c.scope == scope)
                .map(|c| c.window_ms())
                .max()
                .unwrap_or(1);
            inv.key(cap_key(keys, scope, customer_id)).arg(longest);
        }
        for c in &caps {
            let key_index = scopes.iter().position(|s| *s == c.scope).unwrap_or(0) + 1;
            inv.arg(key_index).arg(c.max).arg(c.window_ms());
        }
        let reply: Vec<i64> = inv.invoke_async(conn).await?;
        match reply.as_slice() {
            [1] => Ok(CapVerdict::Allowed),
            [0, until_ms, cap] => Ok(CapVerdict::Capped {
                until_ms: *until_ms,
                cap: usize::try_from(*cap - 1)
                    .ok()
                    .and_then(|i| caps.get(i))
                    .map_or_else(|| "frequency cap".to_owned(), |c| c.to_string()),
            }),
            other => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "caps.lua returned an unexpected reply",
                format!("{other:?}"),
            ))),
        }
    }

    /// Takes back a count of `job_id` on `channel` for `customer_id`: the send
    /// did not happen (permanent failure, unreachable, a fallback), so it must
    /// not use up the customer's allowance. A no-op for what was not counted.
    pub async fn uncount(
        &self,
        conn: &mut impl ConnectionLike,
        keys: &Keys,
        channel: ChannelId,
        customer_id: &str,
        job_id: &str,
    ) -> RedisResult<()> {
        let scopes = self.scopes_for(channel);
        if scopes.is_empty() || customer_id.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for scope in scopes {
            pipe.zrem(cap_key(keys, scope, customer_id), job_id)
                .ignore();
        }
        pipe.query_async(conn).await
    }
}
