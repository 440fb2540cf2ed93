//! Asynchronous bounces: a delivery status notification (RFC 3464), from an MTA
//! pipe (`tayori bounce`) or `POST /webhooks/bounce`, becomes `bounced` (hard,
//! with the address suppressed) or `deferred` (soft) events.
//!
//! Only a DSN that reached one of our VERP addresses counts, and its token must
//! have been made for that job *and* that recipient: anyone can mail the bounce
//! mailbox a forged report, and it must not suppress a stranger's address.

use tayori_channels::email::dsn::{self, DsnRecipient};
use tayori_channels::ChannelKind;

use crate::event::{Event, EventType};
use crate::metrics as m;
use crate::queue::{Queue, Reaction};
use crate::tracking::{Sealer, Tracker};

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
    Redis(#[from] redis::RedisError),
}

/// Records what a DSN reports.
pub async fn record(
    queue: &Queue,
    tracker: &Tracker,
    raw: &[u8],
    window: std::time::Duration,
) -> Result<Summary, BounceError> {
    let (verp_local, verp_domain) = tracker.verp_mailbox().ok_or(BounceError::NoVerp)?;
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
        let Some(job_id) = job_of(queue, tracker, &tokens, address).await? else {
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
            suppress: (kind == EventType::Bounced).then_some((
                ChannelKind::Email,
                address,
                Some("bounced"),
            )),
            event: Some(&event),
            at_ms: jiff::Timestamp::now().as_millisecond(),
        };
        if queue.record_reaction(&reaction, window).await? {
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
    queue: &Queue,
    tracker: &Tracker,
    tokens: &[&str],
    address: &str,
) -> Result<Option<String>, BounceError> {
    let sealer = tracker.sealer();
    for token in tokens {
        if let Some(key) = Sealer::stored_verp_key(token) {
            if let Some(job_id) = queue.verp_job(&key).await? {
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
