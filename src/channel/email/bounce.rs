//! Asynchronous bounces: a delivery status notification (RFC 3464), from an MTA
//! pipe (`tayori bounce`) or `POST /webhooks/bounce`, becomes `bounced` (hard,
//! with the address suppressed) or `deferred` (soft) events.
//!
//! Only a DSN that reached one of our VERP addresses counts, and its token must
//! have been made for that job *and* that recipient: anyone can mail the bounce
//! mailbox a forged report, and it must not suppress a stranger's address.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tayori_channels::email::dsn::{self, DsnRecipient};

use crate::channel::inbound::{RecordError, Recorder, Request, Route};
use crate::event::{Event, EventType, Reaction};
use crate::metrics as m;
use crate::tracking::Sealer;

/// What one DSN amounted to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub bounced: usize,
    pub deferred: usize,
    /// Recorded before (the same report again).
    pub repeated: usize,
    /// Recipients without a VERP token of ours that matches them.
    pub unmatched: usize,
    /// Delivered/relayed notices and the like: nothing to record.
    pub ignored: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BounceError {
    #[error("not a delivery status notification: {0}")]
    NotADsn(String),
    #[error("VERP is off: set channels.email.verp = true to map bounces to jobs")]
    NoVerp,
    #[error("Redis: {0}")]
    Redis(#[from] RecordError),
}

/// What reads our bounces: the tracking secret's sealer and the VERP mailbox.
pub struct Bounces<'a> {
    pub sealer: &'a Sealer,
    /// `(bounces, example.com)`; `None` when VERP is off.
    pub verp: Option<(&'a str, &'a str)>,
}

/// `POST /webhooks/bounce`: a raw DSN (as an MTA would pipe it), for MTAs that
/// deliver to HTTP rather than to a command. Authenticated by the VERP token
/// inside, like `tayori bounce`.
pub struct BounceWebhook {
    pub tracker: std::sync::Arc<crate::tracking::Tracker>,
    pub verp: Option<(String, String)>,
}

#[async_trait::async_trait]
impl Route for BounceWebhook {
    fn path(&self) -> &'static str {
        "/webhooks/bounce"
    }

    async fn handle(&self, request: Request<'_>, recorder: Option<&dyn Recorder>) -> Response {
        let Some(recorder) = recorder else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        let bounces = Bounces {
            sealer: self.tracker.sealer(),
            verp: self.verp.as_ref().map(|(l, d)| (l.as_str(), d.as_str())),
        };
        match record(recorder, &bounces, request.body).await {
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
}

/// Records what a DSN reports.
pub async fn record(
    recorder: &dyn Recorder,
    bounces: &Bounces<'_>,
    raw: &[u8],
) -> Result<Summary, BounceError> {
    let (verp_local, verp_domain) = bounces.verp.ok_or(BounceError::NoVerp)?;
    let report = dsn::parse(raw).map_err(|e| BounceError::NotADsn(e.to_string()))?;
    let tokens: Vec<&str> = report
        .envelope_to
        .iter()
        .filter_map(|a| verp_token(a, verp_local, verp_domain))
        .collect();
    let mut summary = Summary::default();
    for r in &report.recipients {
        let kind = if r.is_hard() {
            EventType::Bounced
        } else if r.is_soft() {
            EventType::Deferred
        } else {
            summary.ignored += 1;
            continue;
        };
        let address = r.address().trim();
        let Some(job_id) = job_of(recorder, bounces.sealer, &tokens, address).await? else {
            summary.unmatched += 1;
            metrics::counter!(m::WEBHOOK_REJECTED, "source" => "bounce", "reason" => "unmatched")
                .increment(1);
            continue;
        };
        let dedupe_id = format!("{job_id}/{}/{}", kind.as_str(), r.status);
        let event = event(kind, &job_id, r, &dedupe_id).to_json();
        let reaction = Reaction {
            source: "bounce",
            event_id: &dedupe_id,
            suppress: (kind == EventType::Bounced).then_some((super::ID, address, Some("bounced"))),
            event: Some(&event),
            at_ms: jiff::Timestamp::now().as_millisecond(),
        };
        if recorder.record(&reaction).await? {
            metrics::counter!(m::WEBHOOK_EVENTS, "source" => "bounce", "type" => kind.as_str())
                .increment(1);
            match kind {
                EventType::Bounced => summary.bounced += 1,
                _ => summary.deferred += 1,
            }
        } else {
            summary.repeated += 1;
        }
    }
    Ok(summary)
}

/// The job one of our VERP tokens was made for, if one was made for `address`:
/// read from a self-contained token, or looked up for a stored one.
async fn job_of(
    recorder: &dyn Recorder,
    sealer: &Sealer,
    tokens: &[&str],
    address: &str,
) -> Result<Option<String>, BounceError> {
    for token in tokens {
        if let Some(key) = Sealer::stored_verp_key(token) {
            if let Some(job_id) = recorder.verp_job(&key).await? {
                if sealer.opens_stored_verp(&key, &job_id, address) {
                    return Ok(Some(job_id));
                }
            }
        } else if let Some(job_id) = sealer.open_verp(token, address) {
            return Ok(Some(job_id));
        }
    }
    Ok(None)
}

fn event(kind: EventType, job_id: &str, r: &DsnRecipient, id: &str) -> Event {
    let mut event = Event::reaction(kind, "email", format!("bounce/{id}"));
    event.job_id = Some(job_id.to_owned());
    let message = r
        .diagnostic
        .clone()
        .unwrap_or_else(|| format!("delivery status {}", r.status));
    event
        .with_error(&format!("dsn_{}", r.status), &message)
        .with("address", r.address())
        .with("source", "dsn")
}

/// The token in `local+token@domain` when it is our VERP mailbox.
fn verp_token<'a>(address: &'a str, local: &str, domain: &str) -> Option<&'a str> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (l, d) = address.rsplit_once('@')?;
    if !d.eq_ignore_ascii_case(domain) {
        return None;
    }
    let (base, token) = l.split_once('+')?;
    base.eq_ignore_ascii_case(local).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::verp_token;

    #[test]
    fn verp_tokens_are_taken_only_from_our_mailbox() {
        let t = verp_token("<Bounces+abc-01@Example.com>", "bounces", "example.com");
        assert_eq!(t, Some("abc-01"));
        assert_eq!(
            verp_token("bounces+abc@evil.example", "bounces", "example.com"),
            None
        );
        assert_eq!(
            verp_token("other+abc@example.com", "bounces", "example.com"),
            None
        );
        assert_eq!(
            verp_token("bounces@example.com", "bounces", "example.com"),
            None
        );
    }
}
