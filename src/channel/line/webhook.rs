//! `POST /webhooks/line`: verified, then turned into events and suppressions.
//!
//! The signature is checked over the raw body before anything is parsed. Each
//! event is recorded in Redis before the 200 goes out; if Redis is away the
//! answer is 503 and LINE's redelivery brings the events again (turn on
//! "Webhook redelivery" in the LINE console), where `webhookEventId` makes a
//! redelivered event count once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tayori_channels::line::pnp;
use tayori_channels::line::webhook::{self, WebhookEvent};

use crate::channel::inbound::{RecordError, Recorder, Request, Route};
use crate::event::Reaction;
use crate::event::{Event, EventType};
use crate::metrics as m;

/// Event types counted under their own name; others as `other` (labels stay
/// bounded). In `metrics`, which registers their counters at 0.
use crate::metrics::LINE_EVENT_TYPES as KNOWN_TYPES;

/// `/webhooks/line`, when the LINE channel has its channel secret.
pub struct LineWebhook {
    pub secret: String,
}

#[async_trait::async_trait]
impl Route for LineWebhook {
    fn path(&self) -> &'static str {
        "/webhooks/line"
    }

    async fn handle(&self, request: Request<'_>, recorder: Option<&dyn Recorder>) -> Response {
        receive(&self.secret, request, recorder)
            .await
            .into_response()
    }
}

async fn receive(
    secret: &str,
    request: Request<'_>,
    recorder: Option<&dyn Recorder>,
) -> StatusCode {
    let (headers, body) = (request.headers, request.body);
    let signature = headers
        .get("x-line-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !webhook::verify(secret, body, signature) {
        metrics::counter!(m::WEBHOOK_REJECTED, "source" => "line", "reason" => "bad_signature")
            .increment(1);
        return StatusCode::UNAUTHORIZED;
    }
    let events = match webhook::parse(body) {
        Ok(e) => e,
        Err(_) => {
            metrics::counter!(m::WEBHOOK_REJECTED, "source" => "line", "reason" => "bad_body")
                .increment(1);
            return StatusCode::BAD_REQUEST;
        }
    };
    if events.is_empty() {
        return StatusCode::OK; // LINE's connectivity check
    }
    let Some(recorder) = recorder else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    for ev in &events {
        let (suppress, event) = match ev.kind.as_str() {
            "delivery" => match delivered(ev, recorder).await {
                Ok(event) => (None, event),
                Err(e) => {
                    metrics::counter!(m::WEBHOOK_REJECTED, "source" => "line", "reason" => "redis")
                        .increment(1);
                    tracing::warn!(error = %e, "LINE webhook: Redis unavailable; answering 503 so LINE redelivers");
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
            },
            _ => effect(ev),
        };
        let json = event.map(|e| e.to_json());
        let reaction = Reaction {
            source: "line",
            event_id: &ev.id,
            suppress: suppress.and_then(|s| ev.user_id.as_deref().map(|u| (super::ID, u, s))),
            event: json.as_deref(),
            at_ms: ev.timestamp,
        };
        match recorder.record(&reaction).await {
            Ok(true) => {
                let kind = KNOWN_TYPES
                    .iter()
                    .find(|k| **k == ev.kind)
                    .copied()
                    .unwrap_or("other");
                metrics::counter!(m::WEBHOOK_EVENTS, "source" => "line", "type" => kind)
                    .increment(1);
            }
            Ok(false) => {} // a redelivery, already recorded
            Err(e) => {
                metrics::counter!(m::WEBHOOK_REJECTED, "source" => "line", "reason" => "redis")
                    .increment(1);
                tracing::warn!(error = %e, "LINE webhook: Redis unavailable; answering 503 so LINE redelivers");
                return StatusCode::SERVICE_UNAVAILABLE;
            }
        }
    }
    StatusCode::OK
}

/// A notification message's delivery completion: `delivered` for the job its
/// tag was stored for. `None` for a tag that is not Tayori's (a send without
/// one reports the hashed number) or no longer kept.
async fn delivered(
    ev: &WebhookEvent,
    recorder: &dyn Recorder,
) -> Result<Option<Event>, RecordError> {
    let Some(tag) = ev.detail.as_deref().filter(|t| t.starts_with(pnp::TAG_PREFIX)) else {
        return Ok(None);
    };
    let Some(job_id) = recorder.line_tag_job(tag).await? else {
        tracing::debug!("LINE delivery event for a tag no longer kept");
        return Ok(None);
    };
    let mut event = Event::reaction(EventType::Delivered, "line", format!("line/{}", ev.id));
    event.job_id = Some(job_id);
    event = event.with("via", "pnp");
    if let Ok(at) = jiff::Timestamp::from_millisecond(ev.timestamp) {
        event = event.with("occurred_at", format!("{at:.3}"));
    }
    Ok(Some(event))
}

/// What a LINE event means for Tayori: a suppression change (`Some(Some(reason))`
/// suppresses, `Some(None)` lifts) and the results-stream event, if any.
fn effect(ev: &WebhookEvent) -> (Option<Option<&'static str>>, Option<Event>) {
    let kind = match ev.kind.as_str() {
        // The user blocked the account: LINE still answers 200 to pushes, so only
        // this suppression stops them.
        "unfollow" => EventType::Blocked,
        // A follow always lifts a suppression; only an unblock is worth an event.
        "follow" if !ev.unblocked => return (Some(None), None),
        "follow" => EventType::Unblocked,
        "message" => EventType::Replied,
        "postback" => EventType::Clicked,
        _ => return (None, None),
    };
    let suppress = match kind {
        EventType::Blocked => Some(Some("blocked")),
        EventType::Unblocked => Some(None),
        _ => None,
    };
    let mut event = Event::reaction(kind, "line", format!("line/{}", ev.id));
    if let Some(user) = &ev.user_id {
        event = event.with("line_user_id", user.as_str());
    }
    if let Ok(at) = jiff::Timestamp::from_millisecond(ev.timestamp) {
        event = event.with("occurred_at", format!("{at:.3}"));
    }
    if let Some(detail) = &ev.detail {
        let key = if kind == EventType::Clicked {
            "data"
        } else {
            "text"
        };
        event = event.with(key, detail.as_str());
    }
    (suppress, Some(event))
}
