//! What providers call back: a channel's inbound webhook routes (delivery
//! receipts, replies, blocks). Each one
//! checks its provider's signature and turns what it is told into reactions.
//! Recording them is the HTTP server's business, through [`Recorder`], so a
//! channel's webhook code knows no Redis.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use crate::event::Reaction;
use crate::tracking::Tracker;

/// Records reactions: Redis behind the HTTP server, `tayori bounce`'s connection.
#[async_trait::async_trait]
pub trait Recorder: Send + Sync {
    /// Records a reaction once (by source and event id): `false` when it was
    /// recorded before (a redelivery).
    async fn record(&self, reaction: &Reaction<'_>) -> Result<bool, RecordError>;

    /// The job id stored under a VERP token too long to carry it.
    async fn verp_job(&self, token: &str) -> Result<Option<String>, RecordError>;

    /// The job id stored under a LINE notification message's delivery tag.
    async fn line_tag_job(&self, _tag: &str) -> Result<Option<String>, RecordError> {
        Ok(None)
    }
}

/// Redis did not take a reaction: the provider should deliver it again (503).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

/// One request to a webhook route.
pub struct Request<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// A webhook route of a channel.
#[async_trait::async_trait]
pub trait Route: Send + Sync {
    /// `/webhooks/line`.
    fn path(&self) -> &'static str;

    /// Whether the route also answers GET (Vonage may call with GET).
    fn accepts_get(&self) -> bool {
        false
    }

    /// Checks the request's signature first (401/403 and nothing recorded when
    /// it is bad), then records what it says. `recorder` is `None` until Redis
    /// is connected: a verified request is then answered 503.
    async fn handle(&self, request: Request<'_>, recorder: Option<&dyn Recorder>) -> Response;
}

/// What a channel's webhooks are built with.
pub struct RouteContext {
    /// `http.public_url` without a trailing slash: the URL providers sign.
    pub public_url: String,
    /// Present when `http.tracking_secret` is set.
    pub tracker: Option<Arc<Tracker>>,
    /// How long a webhook event id is remembered.
    pub dedupe_window: Duration,
}
