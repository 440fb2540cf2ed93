//! The HTTP server: health, readiness, metrics and provider webhooks. Handlers are
//! small; state is explicit.

mod bounce;
mod line_webhook;
pub mod serve;
mod tracking;
mod twilio_webhook;
mod unsubscribe;
mod vonage_webhook;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::metrics as m;

/// What readiness depends on, updated by the daemon.
#[derive(Default)]
pub struct Health {
    pub redis_ok: AtomicBool,
    pub workers_running: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.redis_ok.load(Ordering::Relaxed) && self.workers_running.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
pub struct AppState {
    pub health: Arc<Health>,
    pub metrics: PrometheusHandle,
    pub webhooks: Arc<Webhooks>,
}

/// What webhook handlers need: Redis (set once connected) and the providers' secrets.
#[derive(Default)]
pub struct Webhooks {
    pub queue: std::sync::OnceLock<crate::queue::Queue>,
    /// The LINE channel secret; without it `/webhooks/line` answers 404.
    pub line_secret: Option<String>,
    /// How long a webhook event id is remembered, so redeliveries count once.
    pub dedupe_window: std::time::Duration,
    /// Opens and clicks repeated within this window are recorded once (zero: every one).
    pub repeat_window: std::time::Duration,
    /// Opens tracking, unsubscribe and bounce tokens; without it those routes answer 404.
    pub tracker: Option<Arc<crate::tracking::Tracker>>,
    /// The Twilio auth token; without it `/webhooks/twilio` answers 404.
    pub twilio_token: Option<String>,
    /// Vonage's signature secret and method; without them `/webhooks/vonage` answers 404.
    pub vonage: Option<crate::sms_settings::VonageSignature>,
    /// `http.public_url` without a trailing slash: the URL providers sign.
    pub public_url: String,
}

/// Webhook bodies larger than this are refused (413) before they are read whole.
const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route(
            "/webhooks/line",
            axum::routing::post(line_webhook::receive)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        )
        .route(
            "/webhooks/bounce",
            axum::routing::post(bounce::receive)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        )
        .route(
            "/webhooks/twilio",
            axum::routing::post(twilio_webhook::receive)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        )
        .route(
            "/webhooks/vonage",
            get(vonage_webhook::receive)
                .post(vonage_webhook::receive)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        )
        .route("/t/o/{token}", get(tracking::open))
        .route("/t/c/{token}", get(tracking::click))
        .route("/s/{code}", get(tracking::short))
        .route(
            "/u/{token}",
            get(unsubscribe::page)
                .post(unsubscribe::one_click)
                .layer(axum::extract::DefaultBodyLimit::max(4096)),
        )
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let h = &state.health;
    if h.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let why = match (
            h.redis_ok.load(Ordering::Relaxed),
            h.workers_running.load(Ordering::Relaxed),
        ) {
            (false, _) => "not ready: redis unreachable\n",
            _ => "not ready: workers not running\n",
        };
        (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
    }
}

async fn metrics_page(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Counts requests by matched route (never the raw path, which may carry tokens).
async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    metrics::counter!(m::HTTP_REQUESTS, "route" => route, "status" => resp.status().as_u16().to_string()).increment(1);
    resp
}
