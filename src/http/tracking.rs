//! `GET /t/o/{token}` (open pixel) and `GET /t/c/{token}` (click redirect).
//!
//! A token that does not open (tampered, foreign, or of another purpose) is 404,
//! never a redirect. Mail scanners fetch and click everything, so a reaction that
//! looks automated is recorded with `suspected_bot: true` rather than dropped:
//! the CRM decides what counts.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::backlog::{self, Backlog, Pending, Recorded};
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

/// How long a short link's lookup may wait for Redis.
const SHORT_LINK_WAIT: Duration = Duration::from_secs(1);

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
    Extension(backlog): Extension<Arc<Backlog>>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let Some(t) = opened(&state, Purpose::Open, &token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let client = super::machine_open::client_address(
        peer.map(|Extension(ConnectInfo(a))| a.ip()),
        &headers,
        &state.webhooks.trusted_proxies,
    );
    let proxy = super::machine_open::image_proxy(&headers, client);
    record(
        &state,
        &backlog,
        EventType::Opened,
        &t,
        &method,
        &headers,
        proxy,
    )
    .await;
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
    Extension(backlog): Extension<Arc<Backlog>>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    follow(&state, &backlog, &method, &headers, &token).await
}

/// `GET /s/{code}`: a short link from an SMS or a LINE text. The code names a
/// record kept in Redis: a field in a bucket (12 characters) or, for links made
/// before buckets, a sealed click token (11); from there it is an ordinary click.
pub async fn short(
    State(state): State<AppState>,
    Extension(backlog): Extension<Arc<Backlog>>,
    method: Method,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Response {
    let well_formed = (code.len() == 11 || code.len() == 12)
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
    // The code's link is only in Redis: without it there is nothing to redirect
    // to, but the answer (503) must not wait for Redis either.
    match tokio::time::timeout(SHORT_LINK_WAIT, stored_link(&state, queue, &code)).await {
        Ok(Ok(Some(Stored::Token(token)))) => {
            follow(&state, &backlog, &method, &headers, &token).await
        }
        Ok(Ok(Some(Stored::Click(t)))) => {
            follow_opened(&state, &backlog, &method, &headers, t).await
        }
        Ok(Ok(Some(Stored::Refused))) => {
            metrics::counter!(m::WEBHOOK_REJECTED, "source" => "tracking", "reason" => "bad_token")
                .increment(1);
            StatusCode::NOT_FOUND.into_response()
        }
        Ok(Ok(None)) => {
            metrics::counter!(m::WEBHOOK_REJECTED, "source" => "tracking", "reason" => "unknown_link")
                .increment(1);
            StatusCode::NOT_FOUND.into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "short link lookup failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Err(_) => {
            tracing::warn!("short link lookup: no answer from Redis within {SHORT_LINK_WAIT:?}");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// What a short link's code stands for in Redis.
enum Stored {
    /// A sealed click token (a code made before buckets).
    Token(String),
    /// A bucketed record and its content, opened.
    Click(Tracked),
    /// A bucketed record that is not ours or does not match its content: the
    /// same 404 as an unknown code.
    Refused,
}

async fn stored_link(
    state: &AppState,
    queue: &crate::queue::Queue,
    code: &str,
) -> redis::RedisResult<Option<Stored>> {
    let Some((bucket, field)) = crate::tracking::token::link_code_parts(code) else {
        return Ok(queue.short_link(code).await?.map(Stored::Token));
    };
    let Some(record) = queue.link_record(bucket, field).await? else {
        return Ok(None);
    };
    let Some(tracker) = state.webhooks.tracker.as_ref() else {
        return Ok(Some(Stored::Refused));
    };
    let Some(opened) = tracker.sealer().open_link(bucket, field, &record) else {
        return Ok(Some(Stored::Refused));
    };
    let Some(content) = queue.link_content(&opened.content_ref).await? else {
        return Ok(None);
    };
    Ok(Some(
        tracker
            .short_link_click(opened, &content)
            .map_or(Stored::Refused, Stored::Click),
    ))
}

/// Redirects to a click token's link and records the click.
async fn follow(
    state: &AppState,
    backlog: &Arc<Backlog>,
    method: &Method,
    headers: &HeaderMap,
    token: &str,
) -> Response {
    let Some(t) = opened(state, Purpose::Click, token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    follow_opened(state, backlog, method, headers, t).await
}

/// Redirects to an opened click's link and records the click.
async fn follow_opened(
    state: &AppState,
    backlog: &Arc<Backlog>,
    method: &Method,
    headers: &HeaderMap,
    t: Tracked,
) -> Response {
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
    record(
        state,
        backlog,
        EventType::Clicked,
        &t,
        method,
        headers,
        None,
    )
    .await;
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

/// Writes the event, waiting at most [`backlog::ATTEMPT`] for Redis: what it
/// does not take by then waits in the backlog, so an outage never breaks (or
/// slows) the recipient's image or link.
///
/// A pixel or link fetched again within `http.repeat_window` (a minute by default)
/// is recorded once: anyone holding a link could otherwise add events to the
/// results stream as fast as they send requests. A recipient clicking twice in a
/// minute is one click to the CRM.
async fn record(
    state: &AppState,
    backlog: &Arc<Backlog>,
    kind: EventType,
    t: &Tracked,
    method: &Method,
    headers: &HeaderMap,
    proxy: Option<super::machine_open::Proxy>,
) {
    let bot = suspected_bot(t, method, headers);
    let machine = proxy.is_some_and(|p| p.machine);
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let window = state.webhooks.repeat_window;
    let event_id = reaction_id(kind, t, bot, machine, now_ms, window);
    let mut event = tracked_event(kind, t, event_id.clone()).with("suspected_bot", bot);
    if kind == EventType::Opened {
        event = event.with("machine_open", machine);
        if let Some(p) = proxy {
            event = event.with("proxy", p.name);
        }
    }
    let event = match (&t.url, kind) {
        (Some(url), EventType::Clicked) => event.with("url", url.as_str()),
        _ => event,
    };
    let pending = Pending {
        kind,
        json: event.to_json(),
        event_id,
        at_ms: now_ms,
        dedupe: (2 * window).max(backlog::DEDUPE_AT_LEAST),
    };
    match backlog.record(&state.webhooks, pending).await {
        Recorded::Fresh => backlog::counted(kind, true),
        Recorded::Repeat => backlog::counted(kind, false),
        Recorded::Deferred | Recorded::Lost => {}
    }
}

/// The same for every repeat of a reaction within one window (the reaction shape
/// of [`crate::event`]: `{job_id}/{channel}/0/{type}/{link}/{slot}[b]`): the job, the kind,
/// a digest of the link, the window, and whether it looked automated (a scanner's
/// prefetch must not hide the recipient's own click a few seconds later). Without
/// a window, unique per request.
fn reaction_id(
    kind: EventType,
    t: &Tracked,
    bot: bool,
    machine: bool,
    now_ms: i64,
    window: Duration,
) -> String {
    let link = ring::digest::digest(
        &ring::digest::SHA256,
        t.url.as_deref().unwrap_or("").as_bytes(),
    );
    let link: String = link.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let slot = match i64::try_from(window.as_millis()) {
        Ok(w) if w > 0 => now_ms.div_euclid(w).to_string(),
        _ => format!("{now_ms}-{:04x}", fastrand::u16(..)),
    };
    let detail = format!(
        "{link}/{slot}{}{}",
        if bot { "b" } else { "" },
        if machine { "m" } else { "" }
    );
    crate::event::reaction_id(&t.job_id, t.channel.as_str(), kind, Some(&detail))
}

/// An event about a tracked message, with the job's identifiers from the token.
pub(super) fn tracked_event(kind: EventType, t: &Tracked, event_id: String) -> Event {
    let mut event = Event::reaction(kind, t.channel.as_str(), event_id);
    event.job_id = Some(t.job_id.clone());
    event.campaign = t.campaign.clone();
    event.customer_id = t.customer_id.clone();
    event
}
