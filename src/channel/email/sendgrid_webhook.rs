//! `POST /webhooks/sendgrid`: SendGrid's signed Event Webhook, for mail relayed
//! through SendGrid (`[channels.email.sendgrid]`). The signature is checked
//! before anything else (a missing one is 401, a wrong or stale one 403, and
//! nothing is recorded); then each event that names a Tayori job (the custom
//! argument every message carries) becomes a reaction, once per SendGrid event
//! id: `delivered`; a hard `bounce` or a drop for a listed address → `bounced`
//! and the address suppressed; a `blocked` bounce → `deferred`; `spamreport` →
//! `complained` and suppressed; `unsubscribe` → `unsubscribed` and suppressed.
//! If Redis is away the answer is 503 and SendGrid retries the whole batch,
//! which the event ids make safe.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tayori_channels::email::sendgrid::{classify, Meaning, SendgridEvent, WebhookKey};

use crate::channel::inbound::{Recorder, Request, Route};
use crate::event::{Event, EventType, Reaction};
use crate::metrics as m;

const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";
/// How far ahead of our clock a timestamp may be (clock skew).
const FUTURE_SKEW_SECS: i64 = 300;

pub struct SendgridWebhook {
    pub key: WebhookKey,
    /// Requests signed longer ago are refused (`sendgrid.max_age`).
    pub max_age: Duration,
}

/// What one request amounted to.
#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    recorded: usize,
    repeated: usize,
    /// Events without a Tayori job id (mail sent by something else).
    unmatched: usize,
    ignored: usize,
}

fn refuse(status: StatusCode, reason: &'static str) -> Response {
    metrics::counter!(m::WEBHOOK_REJECTED, "source" => "sendgrid", "reason" => reason)
        .increment(1);
    status.into_response()
}

#[async_trait::async_trait]
impl Route for SendgridWebhook {
    fn path(&self) -> &'static str {
        "/webhooks/sendgrid"
    }

    async fn handle(&self, request: Request<'_>, recorder: Option<&dyn Recorder>) -> Response {
        let header = |name| request.headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(signature), Some(timestamp)) = (header(SIGNATURE), header(TIMESTAMP)) else {
            return refuse(StatusCode::UNAUTHORIZED, "bad_signature");
        };
        if !self.key.verifies(timestamp, request.body, signature) {
            return refuse(StatusCode::FORBIDDEN, "bad_signature");
        }
        let now = jiff::Timestamp::now().as_second();
        let max_age = i64::try_from(self.max_age.as_secs()).unwrap_or(i64::MAX);
        match timestamp.trim().parse::<i64>() {
            Ok(t) if t <= now + FUTURE_SKEW_SECS && now.saturating_sub(t) <= max_age => {}
            _ => return refuse(StatusCode::FORBIDDEN, "stale"),
        }
        let Some(recorder) = recorder else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        let Ok(events) = serde_json::from_slice::<Vec<SendgridEvent>>(request.body) else {
            return refuse(StatusCode::BAD_REQUEST, "bad_body");
        };
        let mut summary = Summary::default();
        for e in &events {
            match record(recorder, e).await {
                Ok(Some(true)) => summary.recorded += 1,
                Ok(Some(false)) => summary.repeated += 1,
                Ok(None) if e.job_id.is_none() => summary.unmatched += 1,
                Ok(None) => summary.ignored += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "sendgrid: Redis unavailable; answering 503");
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
            }
        }
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&summary).unwrap_or_default(),
        )
            .into_response()
    }
}

/// Records one event: `Some(new?)`, or `None` when it means nothing to Tayori
/// (ignored, or no job, address or event id).
async fn record(
    recorder: &dyn Recorder,
    e: &SendgridEvent,
) -> Result<Option<bool>, crate::channel::inbound::RecordError> {
    let meaning = classify(e);
    let (Some(job_id), Some(address), Some(sg_id)) = (&e.job_id, &e.email, &e.sg_event_id)
    else {
        return Ok(None);
    };
    let (kind, suppress, error) = match &meaning {
        Meaning::Delivered => (EventType::Delivered, None, None),
        Meaning::Bounced { code, message } => (
            EventType::Bounced,
            Some("bounced"),
            Some((code.as_str(), message.as_str())),
        ),
        Meaning::Dropped { message } => (
            EventType::Bounced,
            None,
            Some(("sendgrid_dropped", message.as_str())),
        ),
        Meaning::Deferred { message } => (
            EventType::Deferred,
            None,
            Some(("sendgrid_blocked", message.as_str())),
        ),
        Meaning::Complained => (EventType::Complained, Some("complained"), None),
        Meaning::Unsubscribed => (EventType::Unsubscribed, Some("unsubscribed"), None),
        Meaning::Ignored => return Ok(None),
    };
    let event_id = format!("{job_id}/sendgrid/{sg_id}");
    let mut event = Event::reaction(kind, "email", format!("sendgrid/{sg_id}"));
    event.job_id = Some(job_id.clone());
    let mut event = event
        .with("address", address.as_str())
        .with("source", "sendgrid");
    if let Some((code, message)) = error {
        event = event.with_error(code, message);
    }
    if kind == EventType::Complained {
        event = event.with("feedback_type", "abuse");
    }
    let json = event.to_json();
    let reaction = Reaction {
        source: "sendgrid",
        event_id: &event_id,
        suppress: suppress.map(|reason| (super::ID, address.as_str(), Some(reason))),
        event: Some(&json),
        at_ms: jiff::Timestamp::now().as_millisecond(),
    };
    let new = recorder.record(&reaction).await?;
    if new {
        metrics::counter!(m::WEBHOOK_EVENTS, "source" => "sendgrid", "type" => kind.as_str())
            .increment(1);
    }
    Ok(Some(new))
}
