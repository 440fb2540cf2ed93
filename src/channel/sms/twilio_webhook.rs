//! `POST /webhooks/twilio`: status callbacks (delivery reports) and inbound replies.
//!
//! `X-Twilio-Signature` is checked before anything else: Base64(HMAC-SHA1(auth
//! token, the full URL Twilio called + every POST parameter sorted by name, name
//! then value)). A bad or missing one is 403 and records nothing. Each report is
//! recorded once (by message sid and status); if Redis is away the answer is 503
//! and Twilio retries.

use crate::channel::inbound::{Recorder, Request, Route};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tayori_channels::sms::signatures::verify_twilio as verify;

use crate::event::Reaction;
use crate::event::{Event, EventType};
use crate::metrics as m;

/// Replies that opt out (Twilio's own list, plus the Japanese ones).
pub const STOP_WORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "停止",
    "配信停止",
];
pub const START_WORDS: &[&str] = &["START", "UNSTOP", "YES"];

/// `/webhooks/twilio`, when SMS goes through Twilio.
pub struct TwilioWebhook {
    /// The account's auth token: it signs the requests.
    pub token: String,
    /// `http.public_url`, without a trailing slash: the URL Twilio signs.
    pub public_url: String,
}

#[async_trait::async_trait]
impl Route for TwilioWebhook {
    fn path(&self) -> &'static str {
        "/webhooks/twilio"
    }

    async fn handle(&self, request: Request<'_>, recorder: Option<&dyn Recorder>) -> Response {
        receive(self, request, recorder).await
    }
}

async fn receive(
    hook: &TwilioWebhook,
    request: Request<'_>,
    recorder: Option<&dyn Recorder>,
) -> Response {
    let (uri, headers, body) = (request.uri, request.headers, request.body);
    let token = hook.token.as_str();
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("{}{path}", hook.public_url);
    if !verify(token, &url, &params, signature) {
        metrics::counter!(m::WEBHOOK_REJECTED, "source" => "twilio", "reason" => "bad_signature")
            .increment(1);
        return StatusCode::FORBIDDEN.into_response();
    }
    let Some(recorder) = recorder else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    };
    let sid = get("MessageSid").or(get("SmsSid")).unwrap_or("");
    let job_id = uri
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "job"))
        .map(|(_, v)| v.into_owned());
    let (reaction_id, suppress, event, kind) = match get("MessageStatus") {
        Some(status) => {
            let Some(event) = status_event(status, sid, job_id.as_deref(), get("ErrorCode")) else {
                // queued, sending, sent, …: counted, not an event.
                metrics::counter!(m::WEBHOOK_EVENTS, "source" => "twilio", "type" => "status")
                    .increment(1);
                return twiml();
            };
            (
                format!("{sid}/{status}"),
                None,
                Some(event),
                status.to_owned(),
            )
        }
        None => {
            let from = get("From").unwrap_or("").to_owned();
            let text = get("Body").unwrap_or("").trim().to_owned();
            let word = text.to_uppercase();
            let (kind, suppress) = if STOP_WORDS.contains(&word.as_str()) {
                (EventType::Unsubscribed, Some(Some("unsubscribed")))
            } else if START_WORDS.contains(&word.as_str()) {
                (EventType::Unblocked, Some(None))
            } else {
                (EventType::Replied, None)
            };
            let mut event = Event::reaction(kind, "sms", format!("twilio/{sid}"))
                .with("address", from.as_str());
            if kind == EventType::Replied {
                event = event.with("text", text.as_str());
            }
            (
                sid.to_owned(),
                suppress.map(|s| (from, s)),
                Some(event),
                kind.as_str().to_owned(),
            )
        }
    };
    let json = event.map(|e| e.to_json());
    let reaction = Reaction {
        source: "twilio",
        event_id: &reaction_id,
        suppress: suppress
            .as_ref()
            .filter(|(from, _)| !from.is_empty())
            .map(|(from, reason)| (super::ID, from.as_str(), *reason)),
        event: json.as_deref(),
        at_ms: jiff::Timestamp::now().as_millisecond(),
    };
    match recorder.record(&reaction).await {
        Ok(fresh) => {
            if fresh {
                let label = match kind.as_str() {
                    "delivered" | "undelivered" | "failed" | "unsubscribed" | "unblocked"
                    | "replied" => kind,
                    _ => "other".to_owned(),
                };
                metrics::counter!(m::WEBHOOK_EVENTS, "source" => "twilio", "type" => label)
                    .increment(1);
            }
            twiml()
        }
        Err(e) => {
            metrics::counter!(m::WEBHOOK_REJECTED, "source" => "twilio", "reason" => "redis")
                .increment(1);
            tracing::warn!(error = %e, "Twilio webhook: Redis unavailable; answering 503");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The event for a final delivery status; `None` for intermediate ones.
fn status_event(
    status: &str,
    sid: &str,
    job_id: Option<&str>,
    error_code: Option<&str>,
) -> Option<Event> {
    let kind = match status {
        "delivered" => EventType::Delivered,
        "undelivered" | "failed" => EventType::Failed,
        _ => return None,
    };
    let mut event = Event::reaction(kind, "sms", format!("twilio/{sid}/{status}"));
    event.job_id = job_id.map(str::to_owned);
    let event = event.with("provider_id", sid);
    Some(match kind {
        EventType::Failed => event.with_error(
            &format!("twilio_{}", error_code.unwrap_or(status)),
            &format!("Twilio reports the message {status}"),
        ),
        _ => event,
    })
}

/// An empty TwiML answer: no reply is sent to the phone.
fn twiml() -> Response {
    (
        [(header::CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response()
}
