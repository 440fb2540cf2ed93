//! `POST /webhooks/bounce`: a raw DSN (as an MTA would pipe it), for MTAs that
//! deliver to HTTP rather than to a command. Authenticated by the VERP token
//! inside, like `tayori bounce`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::bounce::{self, BounceError};
use crate::metrics as m;

pub async fn receive(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(tracker) = state.webhooks.tracker.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(queue) = state.webhooks.queue.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    match bounce::record(queue, tracker, &body, state.webhooks.dedupe_window).await {
        Ok(summary) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&summary).unwrap_or_default(),
        )
            .into_response(),
        Err(e @ (BounceError::NotADsn(_) | BounceError::NoVerp)) => {
            metrics::counter!(m::WEBHOOK_REJECTED, "source" => "bounce", "reason" => "bad_body")
                .increment(1);
            (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")).into_response()
        }
        Err(BounceError::Redis(e)) => {
            tracing::warn!(error = %e, "bounce: Redis unavailable; answering 503");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
