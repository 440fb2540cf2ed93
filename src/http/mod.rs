//! The HTTP server: health, readiness, metrics, provider webhooks and the
//! enqueue API. Handlers are small; state is explicit.

pub mod api;
pub mod backlog;
mod machine_open;
pub mod serve;
mod tracking;
mod unsubscribe;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::channel::inbound::{self, Recorder, Route};
use crate::metrics as m;
use crate::queue::Queue;

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
    /// `POST /v1/jobs`; `None` (no `[http.api] keys`): the route answers 404.
    pub api: Option<Arc<api::Api>>,
}

/// What the webhook and tracking handlers need: Redis (set once connected),
/// the tracker, and each enabled channel's webhook routes.
#[derive(Default)]
pub struct Webhooks {
    pub queue: std::sync::OnceLock<Queue>,
    /// How long a webhook event id is remembered, so redeliveries count once.
    pub dedupe_window: std::time::Duration,
    /// Opens and clicks repeated within this window are recorded once (zero: every one).
    pub repeat_window: std::time::Duration,
    /// Opens tracking, unsubscribe and bounce tokens; without it those routes answer 404.
    pub tracker: Option<Arc<crate::tracking::Tracker>>,
    /// The channels' webhook routes (`/webhooks/line`, …).
    pub routes: Vec<Arc<dyn Route>>,
    /// `http.trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Runs a channel's webhook route.
async fn channel_webhook(
    state: AppState,
    hook: Arc<dyn Route>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = inbound::Request {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    let recorder = state
        .webhooks
        .queue
        .get()
        .map(|queue| crate::queue::ReactionRecorder {
            queue,
            window: state.webhooks.dedupe_window,
        });
    hook.handle(request, recorder.as_ref().map(|r| r as &dyn Recorder))
        .await
}

/// Webhook bodies larger than this are refused (413) before they are read whole.
const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page));
    for hook in &state.webhooks.routes {
        let handler = {
            let hook = hook.clone();
            move |State(state): State<AppState>,
                  method: Method,
                  uri: Uri,
                  headers: HeaderMap,
                  body: Bytes| {
                channel_webhook(state, hook.clone(), method, uri, headers, body)
            }
        };
        let route = match hook.accepts_get() {
            true => get(handler.clone()).post(handler),
            false => axum::routing::post(handler),
        };
        router = router.route(
            hook.path(),
            route.layer(axum::extract::DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        );
    }
    // A channel's route this config does not turn on (LINE without its secret,
    // SMS not through Twilio): 404, though a body over the limit is 413 as on
    // the route itself.
    let mounted: Vec<&str> = state.webhooks.routes.iter().map(|r| r.path()).collect();
    for plugin in crate::channel::registry::PLUGINS {
        for path in plugin.route_paths() {
            if !mounted.contains(path) {
                router = router.route(
                    path,
                    axum::routing::any(|_body: Bytes| async { StatusCode::NOT_FOUND })
                        .layer(axum::extract::DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
                );
            }
        }
    }
    if state.api.is_some() {
        // The handler reads the body itself, to answer an oversized one with a
        // JSON error (413) rather than axum's plain-text one.
        router = router.route(
            "/v1/jobs",
            axum::routing::post(api::post_jobs).layer(axum::extract::DefaultBodyLimit::disable()),
        );
    }
    router
        .route("/t/o/{token}", get(tracking::open))
        .route("/t/c/{token}", get(tracking::click))
        .route("/s/{code}", get(tracking::short))
        .route(
            "/u/{token}",
            get(unsubscribe::page)
                .post(unsubscribe::one_click)
                .layer(axum::extract::DefaultBodyLimit::max(4096)),
        )
        // One backlog per server: the tracking routes' events waiting for Redis.
        .layer(axum::Extension(Arc::new(backlog::Backlog::default())))
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
