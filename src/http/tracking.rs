//! `GET /t/o/{token}` (open pixel) and `GET /t/c/{token}` (click redirect).
//!
//! A token that does not open (tampered, foreign, or of another purpose) is 404,
//! never a redirect. Mail scanners fetch and click everything, so a reaction that
//! looks automated is recorded with `suspected_bot: true` rather than dropped:
//! the CRM decides what counts.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::event::{Event, EventType};
use crate::metrics as m;
use crate::tracking::{Purpose, Tracked};

/// The smallest transparent GIF (1×1).
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Reactions sooner than this after sending are prefetches by gateways and
/// scanners (Safe Links, Mimecast, Proofpoint check links on arrival).
const PREFETCH_WINDOW_SECS: i64 = 10;

/// User-agent fragments of link scanners, proxies and scripts (lowercase).
const AUTOMATED_AGENTS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "scanner",
    "preview",
    "barracuda",
    "proofpoint",
    "mimecast",
    "safelinks",
    "urldefense",
    "symantec",
    "trendmicro",
    "headless",
    "python-requests",
    "python-urllib",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "libwww",
    "okhttp",
];

pub async fn open(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let Some(t) = opened(&state, Purpose::Open, &token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    record(&state, EventType::Opened, &t, &method, &headers).await;
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, max-age=0"),
        ],
        PIXEL,
    )
        .into_response()
}

pub async fn click(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    follow(&state, &method, &headers, &token).await
}

/// `GET /s/{code}`: a short link from an SMS. The code names a sealed click token
/// kept in Redis; from there it is an ordinary click.
pub async fn short(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    let well_formed = code.len() == 11
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let Some(queue) = state.webhooks.queue.get().filter(|_| well_formed) else {
        return if well_formed {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        };
    };
    match queue.short_link(&code).await {
        Ok(Some(token)) => follow(&state, &method, &headers, &token).await,
        Ok(None) => {
            metrics::counter!(m::WEBHOOK_REJECTED, "source" => "tracking", "reason" => "unknown_link")
                .increment(1);
            StatusCode::NOT_FOUND.into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "short link lookup failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Redirects to a click token's link and records the click.
async fn follow(state: &AppState, method: &Method, headers: &HeaderMap, token: &str) -> Response {
    let Some(t) = opened(state, Purpose::Click, token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Sealed by us from a link we rewrote, which was http(s); checked again anyway.
    let Some(url) = t
        .url
        .as_deref()
        .filter(|u| crate::tracking::rewrite::trackable(u))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(location) = header::HeaderValue::from_str(url) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    record(state, EventType::Clicked, &t, method, headers).await;
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            ),
        ],
    )
        .into_response()
}

/// The message behind a token, counting refusals.
pub(super) fn opened(state: &AppState, purpose: Purpose, token: &str) -> Option<Tracked> {
    let t = state
        .webhooks
        .tracker
        .as_ref()
        .and_then(|tr| tr.sealer().open(purpose, token));
    if t.is_none() {
        metrics::counter!(m::WEBHOOK_REJECTED, "source" => "tracking", "reason" => "bad_token")
            .increment(1);
    }
    t
}

/// Whether a request looks like a machine's rather than the recipient's.
fn suspected_bot(t: &Tracked, method: &Method, headers: &HeaderMap) -> bool {
    if method == Method::HEAD {
        return true;
    }
    if jiff::Timestamp::now().as_second() - t.sent_at < PREFETCH_WINDOW_SECS {
        return true;
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    agent.is_empty() || AUTOMATED_AGENTS.iter().any(|a| agent.contains(a))
}

/// Writes the event; a Redis outage loses it (logged and counted) but never
/// breaks the recipient's image or link.
async fn record(
    state: &AppState,
    kind: EventType,
    t: &Tracked,
    method: &Method,
    headers: &HeaderMap,
) {
    let bot = suspected_bot(t, method, headers);
    let event = tracked_event(kind, t).with("suspected_bot", bot);
    let event = match (&t.url, kind) {
        (Some(url), EventType::Clicked) => event.with("url", url.as_str()),
        _ => event,
    };
    let result = match state.webhooks.queue.get() {
        Some(q) => q
            .add_event(&event.to_json())
            .await
            .map_err(|e| e.to_string()),
        None => Err("not connected".to_owned()),
    };
    match result {
        Ok(()) => {
            metrics::counter!(m::WEBHOOK_EVENTS, "source" => "tracking", "type" => kind.as_str())
                .increment(1);
        }
        Err(e) => {
            metrics::counter!(m::WEBHOOK_REJECTED, "source" => "tracking", "reason" => "redis")
                .increment(1);
            tracing::warn!(error = %e, event = kind.as_str(), "tracking event lost: Redis unavailable");
        }
    }
}

/// An event about a tracked message, with the job's identifiers from the token.
pub(super) fn tracked_event(kind: EventType, t: &Tracked) -> Event {
    let channel = t.channel.as_str();
    let id = format!(
        "{}/{channel}/{}/{}-{:04x}",
        t.job_id,
        kind.as_str(),
        jiff::Timestamp::now().as_millisecond(),
        fastrand::u16(..)
    );
    let mut event = Event::reaction(kind, channel, id);
    event.job_id = Some(t.job_id.clone());
    event.campaign = t.campaign.clone();
    event.customer_id = t.customer_id.clone();
    event
}
