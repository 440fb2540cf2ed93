//! `GET /u/{token}`: a confirmation page; `POST /u/{token}`: RFC 8058 one-click
//! unsubscribe (the mail client posts `List-Unsubscribe=One-Click`; our page's
//! button posts the same). GET never unsubscribes: scanners fetch every link.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::tracking::{opened, tracked_event};
use super::AppState;
use crate::event::EventType;
use crate::metrics as m;
use crate::queue::Reaction;
use crate::tracking::Purpose;

const STYLE: &str = "body{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.6}button{font-size:1rem;padding:.5rem 1.5rem}";

pub async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    if opened(&state, Purpose::Unsubscribe, &token).is_none() {
        return not_found();
    }
    Html(format!(
        r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>配信停止 / Unsubscribe</title><style>{STYLE}</style></head><body>
<h1>配信停止 / Unsubscribe</h1>
<p>このアドレスへのメール配信を停止します。よろしければボタンを押してください。</p>
<p>Stop sending email to this address? Press the button to confirm.</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">配信を停止する / Unsubscribe</button></form>
</body></html>"#
    ))
    .into_response()
}

pub async fn one_click(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(t) = opened(&state, Purpose::Unsubscribe, &token) else {
        return not_found();
    };
    let Some(queue) = state.webhooks.queue.get() else {
        return unavailable();
    };
    // One unsubscribe per message (the reaction below is keyed by the job).
    let id =
        crate::event::reaction_id(&t.job_id, t.channel.as_str(), EventType::Unsubscribed, None);
    let event = tracked_event(EventType::Unsubscribed, &t, id)
        .with("address", t.address.as_str())
        .to_json();
    let reaction = Reaction {
        source: "unsubscribe",
        // One unsubscribe per message: a second click changes nothing.
        event_id: &t.job_id,
        suppress: Some((t.channel, &t.address, Some("unsubscribed"))),
        event: Some(&event),
        at_ms: jiff::Timestamp::now().as_millisecond(),
    };
    match queue
        .record_reaction(&reaction, state.webhooks.dedupe_window)
        .await
    {
        Ok(fresh) => {
            if fresh {
                metrics::counter!(m::WEBHOOK_EVENTS, "source" => "tracking", "type" => "unsubscribed")
                    .increment(1);
            }
            Html(format!(
                r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>配信停止 / Unsubscribed</title><style>{STYLE}</style></head><body>
<h1>配信を停止しました</h1><p>今後このアドレスにはメールをお送りしません。</p>
<p>You have been unsubscribed: no more email will be sent to this address.</p></body></html>"#
            ))
            .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "unsubscribe: Redis unavailable; answering 503");
            unavailable()
        }
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><meta charset=\"utf-8\"><p>このリンクは無効です。/ This link is not valid.</p>"),
    )
        .into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html("<!doctype html><meta charset=\"utf-8\"><p>ただいま処理できません。しばらくしてからもう一度お試しください。/ Please try again in a few minutes.</p>"),
    )
        .into_response()
}
