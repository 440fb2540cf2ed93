//! Asynchronous bounces and complaints, from an MTA pipe (`tayori bounce`) or
//! `POST /webhooks/bounce`: a delivery status notification (RFC 3464) becomes
//! `bounced` (hard, with the address suppressed) or `deferred` (soft) events; a
//! feedback-loop report (ARF, RFC 5965) a `complained` event, with the address
//! suppressed.
//!
//! Only a DSN that reached one of our VERP addresses counts, and its token must
//! have been made for that job *and* that recipient: anyone can mail the bounce
//! mailbox a forged report, and it must not suppress a stranger's address. The
//! same holds for a complaint when VERP is on (the token is in the original
//! envelope sender the report quotes). With VERP off a complaint is matched by
//! the original `Message-ID` (`<job id@from domain>`) and the recipient the
//! report names, which a forger who knows both can imitate (docs/security.md).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tayori_channels::email::arf::{self, FeedbackReport};
use tayori_channels::email::dsn::{self, Dsn, DsnRecipient};

use crate::channel::inbound::{RecordError, Recorder, Request, Route};
use crate::event::{Event, EventType, Reaction};
use crate::metrics as m;
use crate::tracking::Sealer;

/// What one DSN amounted to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub bounced: usize,
    pub deferred: usize,
    pub complained: usize,
    /// Recorded before (the same report again).
    pub repeated: usize,
    /// Recipients without a VERP token of ours that matches them.
    pub unmatched: usize,
    /// Delivered/relayed notices and the like: nothing to record.
    pub ignored: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BounceError {
    #[error("not a delivery status notification or a feedback report: {0}")]
    NotAReport(String),
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
    /// The right-hand side of our Message-IDs (the From domain): complaints
    /// are matched by Message-ID when VERP is off.
    pub message_id_domain: Option<&'a str>,
}

/// `POST /webhooks/bounce`: a raw DSN (as an MTA would pipe it), for MTAs that
/// deliver to HTTP rather than to a command. Authenticated by the VERP token
/// inside, like `tayori bounce`.
pub struct BounceWebhook {
    pub tracker: std::sync::Arc<crate::tracking::Tracker>,
    pub verp: Option<(String, String)>,
    pub message_id_domain: Option<String>,
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
            message_id_domain: self.message_id_domain.as_deref(),
        };
        match record(recorder, &bounces, request.body).await {
            Ok(summary) => (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                serde_json::to_string(&summary).unwrap_or_default(),
            )
                .into_response(),
            Err(e @ (BounceError::NotAReport(_) | BounceError::NoVerp)) => {
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

/// Records what a DSN or a feedback report says.
pub async fn record(
    recorder: &dyn Recorder,
    bounces: &Bounces<'_>,
    raw: &[u8],
) -> Result<Summary, BounceError> {
    match dsn::parse(raw) {
        Ok(report) => record_dsn(recorder, bounces, &report).await,
        Err(dsn::DsnError::NotAReport) => match arf::parse(raw) {
            Ok(report) => record_complaint(recorder, bounces, &report).await,
            Err(arf::ArfError::NotAReport) => Err(BounceError::NotAReport(
                "neither a multipart/report with report-type=delivery-status nor one with \
                 report-type=feedback-report"
                    .into(),
            )),
            Err(e) => Err(BounceError::NotAReport(e.to_string())),
        },
        Err(e) => Err(BounceError::NotAReport(e.to_string())),
    }
}

/// Records a complaint: a `complained` event for the job (once per job,
/// however many reports name it) and the address suppressed.
async fn record_complaint(
    recorder: &dyn Recorder,
    bounces: &Bounces<'_>,
    report: &FeedbackReport,
) -> Result<Summary, BounceError> {
    let mut summary = Summary::default();
    if !report.is_complaint() {
        summary.ignored += 1;
        return Ok(summary);
    }
    let Some((job_id, address)) = complaint_of(recorder, bounces, report).await? else {
        summary.unmatched += 1;
        metrics::counter!(m::WEBHOOK_REJECTED, "source" => "bounce", "reason" => "unmatched")
            .increment(1);
        return Ok(summary);
    };
    let dedupe_id = format!("{job_id}/complained");
    let mut event = Event::reaction(EventType::Complained, "email", format!("bounce/{dedupe_id}"));
    event.job_id = Some(job_id.clone());
    let event = event
        .with("address", address.as_str())
        .with("feedback_type", report.feedback_type.as_str())
        .with("source", "arf")
        .to_json();
    let reaction = Reaction {
        source: "bounce",
        event_id: &dedupe_id,
        suppress: Some((super::ID, &address, Some("complained"))),
        event: Some(&event),
        at_ms: jiff::Timestamp::now().as_millisecond(),
    };
    if recorder.record(&reaction).await? {
        metrics::counter!(m::WEBHOOK_EVENTS, "source" => "bounce", "type" => "complained")
            .increment(1);
        summary.complained += 1;
    } else {
        summary.repeated += 1;
    }
    Ok(summary)
}

/// The job and address a complaint is about, if it proves them: with VERP, a
/// token of ours in the original envelope sender made for the job and one of
/// the recipients the report names; without, our Message-ID and the first
/// recipient named (forgeable: module docs).
async fn complaint_of(
    recorder: &dyn Recorder,
    bounces: &Bounces<'_>,
    report: &FeedbackReport,
) -> Result<Option<(String, String)>, BounceError> {
    if let Some((local, domain)) = bounces.verp {
        let Some(token) = report
            .original_mail_from
            .as_deref()
            .and_then(|from| verp_token(from, local, domain))
        else {
            return Ok(None);
        };
        for address in &report.original_rcpt_to {
            if let Some(job_id) = job_of(recorder, bounces.sealer, &[token], address).await? {
                return Ok(Some((job_id, address.clone())));
            }
        }
        return Ok(None);
    }
    let (Some(id), Some(ours)) = (&report.original_message_id, bounces.message_id_domain) else {
        return Ok(None);
    };
    let Some((job_id, domain)) = id.rsplit_once('@') else {
        return Ok(None);
    };
    let Some(address) = report.original_rcpt_to.first() else {
        return Ok(None);
    };
    Ok((!job_id.is_empty() && domain.eq_ignore_ascii_case(ours))
        .then(|| (job_id.to_owned(), address.clone())))
}

/// Records what a DSN reports.
async fn record_dsn(
    recorder: &dyn Recorder,
    bounces: &Bounces<'_>,
    report: &Dsn,
) -> Result<Summary, BounceError> {
    let (verp_local, verp_domain) = bounces.verp.ok_or(BounceError::NoVerp)?;
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

    /// Remembers what it is asked to record.
    #[derive(Default)]
    struct Remember(std::sync::Mutex<Vec<(String, Option<String>)>>);

    #[async_trait::async_trait]
    impl super::Recorder for Remember {
        async fn record(&self, r: &super::Reaction<'_>) -> Result<bool, super::RecordError> {
            let mut seen = self.0.lock().unwrap();
            let entry = (
                r.event_id.to_owned(),
                r.suppress.map(|(_, address, _)| address.to_owned()),
            );
            if seen.contains(&entry) {
                return Ok(false);
            }
            seen.push(entry);
            Ok(true)
        }
        async fn verp_job(&self, _token: &str) -> Result<Option<String>, super::RecordError> {
            Ok(None)
        }
    }

    /// With VERP off a complaint is matched by our Message-ID's domain and the
    /// recipient the report names; another domain's Message-ID attributes nothing.
    #[tokio::test]
    async fn without_verp_a_complaint_is_matched_by_our_message_id() {
        let report = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("channels/tests/fixtures/arf/abuse_rfc822.eml"),
        )
        .unwrap();
        let sealer = crate::tracking::Sealer::new("0123456789abcdef0123456789abcdef");
        let recorder = Remember::default();
        let ours = super::Bounces {
            sealer: &sealer,
            verp: None,
            message_id_domain: Some("Example.com"),
        };
        let s = super::record(&recorder, &ours, &report).await.unwrap();
        assert_eq!((s.complained, s.unmatched), (1, 0));
        assert_eq!(
            recorder.0.lock().unwrap().as_slice(),
            [("c1001/complained".to_owned(), Some("taro@example.net".to_owned()))]
        );
        let theirs = super::Bounces {
            message_id_domain: Some("shop.example.org"),
            ..ours
        };
        let s = super::record(&recorder, &theirs, &report).await.unwrap();
        assert_eq!((s.complained, s.unmatched), (0, 1));
    }
}
