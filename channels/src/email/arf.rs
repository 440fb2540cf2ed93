//! Complaints: Abuse Reporting Format feedback reports (RFC 5965).
//!
//! A mailbox provider's feedback loop mails a report when a recipient presses
//! "this is spam". It arrives at the sender's feedback-loop mailbox the way a
//! bounce does, as `multipart/report; report-type=feedback-report` with a
//! `message/feedback-report` part (the machine-readable fields) and the original
//! message or its headers. This module reads those; deciding which job and
//! address a report is about (and whether to believe it) is the caller's.
//!
//! mail-parser does the MIME work; the field blocks are read with the DSN
//! module's helpers, since both formats are RFC 822-style fields in a part.

use mail_parser::{MessagePart, MimeHeaders};

use super::dsn::{blocks, envelope_to, field, one_of, parse_mail, part_is};

/// A parsed feedback report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackReport {
    /// `Feedback-Type`, lowercased: `abuse`, `fraud`, `virus`, `other`
    /// (RFC 5965), `not-spam` (RFC 6430), `auth-failure` (RFC 6591), or another
    /// value as written.
    pub feedback_type: String,
    /// `User-Agent` of the report's generator, if given.
    pub user_agent: Option<String>,
    /// The original message's envelope sender: `Original-Mail-From`, else the
    /// returned headers' `Return-Path` (angle brackets stripped). Our VERP token
    /// is in it when VERP is on.
    pub original_mail_from: Option<String>,
    /// The original recipients: `Original-Rcpt-To` fields, else the returned
    /// headers' `To` addresses. Providers may redact them.
    pub original_rcpt_to: Vec<String>,
    /// The original `Message-ID`, angle brackets stripped.
    pub original_message_id: Option<String>,
    /// Where the report was delivered (`X-Original-To`, `Delivered-To`, …, `To`).
    pub envelope_to: Vec<String>,
}

impl FeedbackReport {
    /// A recipient's complaint about the message: every type but `not-spam`
    /// (the recipient took a message *out* of the spam folder) and
    /// `auth-failure` (an authentication failure report, not a person's verdict).
    pub fn is_complaint(&self) -> bool {
        !matches!(self.feedback_type.as_str(), "not-spam" | "auth-failure")
    }
}

/// Why a mail is not a readable feedback report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArfError {
    #[error("not a MIME message")]
    NotMime,
    #[error("not a multipart/report with report-type=feedback-report")]
    NotAReport,
    #[error("report has no message/feedback-report part")]
    NoFeedbackPart,
    #[error("feedback report has no Feedback-Type")]
    NoFeedbackType,
}

/// Parses a feedback report. Never panics: whatever arrives at the feedback
/// mailbox is untrusted.
pub fn parse(raw: &[u8]) -> Result<FeedbackReport, ArfError> {
    let message = parse_mail(raw).ok_or(ArfError::NotMime)?;
    let root = message.parts.first().ok_or(ArfError::NotMime)?;
    let content_type = root.content_type().ok_or(ArfError::NotMime)?;
    if !part_is(root, "multipart", &["report"]) {
        return Err(ArfError::NotAReport);
    }
    if !content_type
        .attribute("report-type")
        .is_some_and(|t| one_of(t.trim(), &["feedback-report"]))
    {
        return Err(ArfError::NotAReport);
    }
    let parts = message.parts.get(1..).unwrap_or_default();
    let feedback = parts
        .iter()
        .find(|p| part_is(p, "message", &["feedback-report"]))
        .ok_or(ArfError::NoFeedbackPart)?;
    let text = String::from_utf8_lossy(feedback.contents());
    let fields: Vec<_> = blocks(&text).flatten().collect();
    let feedback_type = field(&fields, "feedback-type")
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .ok_or(ArfError::NoFeedbackType)?;
    let returned = parts.iter().find(|p| {
        part_is(p, "text", &["rfc822-headers"])
            || part_is(p, "message", &["rfc822", "global", "global-headers"])
    });
    let returned_headers = returned.map(returned_headers).unwrap_or_default();
    let from_returned = |name: &str| {
        returned_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let original_mail_from = field(&fields, "original-mail-from")
        .map(str::to_owned)
        .or_else(|| from_returned("return-path"))
        .map(|a| unbracket(&a))
        .filter(|a| !a.is_empty());
    let mut original_rcpt_to: Vec<String> = fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("original-rcpt-to"))
        .map(|f| unbracket(&f.value))
        .filter(|a| !a.is_empty())
        .collect();
    if original_rcpt_to.is_empty() {
        original_rcpt_to = returned_to(returned);
    }
    Ok(FeedbackReport {
        feedback_type,
        user_agent: field(&fields, "user-agent").map(str::to_owned),
        original_mail_from,
        original_rcpt_to,
        original_message_id: from_returned("message-id")
            .map(|id| unbracket(&id))
            .filter(|id| !id.is_empty()),
        envelope_to: envelope_to(root.headers()),
    })
}

/// `<a@b>` (or `a@b`, with blanks) → `a@b`.
fn unbracket(value: &str) -> String {
    let v = value.trim();
    let v = match v.split_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or_default(),
        None => v,
    };
    v.trim().to_owned()
}

/// The returned message's header fields as (name, raw value): a
/// `text/rfc822-headers` part is plain text to mail-parser, a `message/rfc822`
/// one a nested message; both are read as text, so a value is as written.
fn returned_headers(part: &MessagePart<'_>) -> Vec<(String, String)> {
    let raw: &[u8] = match part.message().filter(|m| !m.parts.is_empty()) {
        Some(m) => m.raw_message(),
        None => part.contents(),
    };
    let text = String::from_utf8_lossy(raw);
    let fields: Vec<(String, String)> = blocks(&text)
        .next()
        .unwrap_or_default()
        .into_iter()
        .map(|f| (f.name.to_owned(), f.value.into_owned()))
        .collect();
    fields
}

/// The returned message's `To` addresses (a display name, even an encoded
/// one, is dropped).
fn returned_to(part: Option<&MessagePart<'_>>) -> Vec<String> {
    let Some(part) = part else {
        return Vec::new();
    };
    let nested = part.message().filter(|m| !m.parts.is_empty());
    if let Some(m) = nested {
        if let Some(to) = m.to() {
            return to
                .iter()
                .filter_map(|a| a.address())
                .map(str::to_owned)
                .collect();
        }
    }
    returned_headers(part)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("to"))
        .flat_map(|(_, v)| {
            v.split(',')
                .map(|a| unbracket(a.rsplit_once('<').map_or(a, |(_, r)| r)))
                .collect::<Vec<_>>()
        })
        .filter(|a| a.contains('@'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/arf")
                .join(name),
        )
        .expect("ARF fixture")
    }

    #[test]
    fn an_abuse_report_with_the_message_names_its_sender_recipient_and_id() {
        let r = parse(&fixture("abuse_rfc822.eml")).unwrap();
        assert_eq!(r.feedback_type, "abuse");
        assert!(r.is_complaint());
        assert_eq!(r.user_agent.as_deref(), Some("SomeGenerator/1.0"));
        assert_eq!(
            r.original_mail_from.as_deref(),
            Some("bounces+7370-c1001@example.com")
        );
        assert_eq!(r.original_rcpt_to, ["taro@example.net"]);
        assert_eq!(r.original_message_id.as_deref(), Some("c1001@example.com"));
        assert_eq!(r.envelope_to[0], "fbl@example.com");
    }

    #[test]
    fn a_headers_only_report_without_original_fields_falls_back_to_the_headers() {
        let r = parse(&fixture("fraud_headers_only.eml")).unwrap();
        assert_eq!(r.feedback_type, "fraud");
        assert_eq!(
            r.original_mail_from.as_deref(),
            Some("bounces+abc-01@example.com")
        );
        assert_eq!(r.original_rcpt_to, ["hanako@mailbox.example.org"]);
        assert_eq!(
            r.original_message_id.as_deref(),
            Some("order-42@example.com")
        );
    }

    #[test]
    fn not_spam_and_auth_failure_are_reports_but_not_complaints() {
        let raw = String::from_utf8(fixture("abuse_rfc822.eml")).unwrap();
        for t in ["not-spam", "auth-failure"] {
            let r = parse(
                raw.replace("Feedback-Type: abuse", &format!("Feedback-Type: {t}"))
                    .as_bytes(),
            )
            .unwrap();
            assert_eq!(r.feedback_type, t);
            assert!(!r.is_complaint(), "{t}");
        }
        for t in ["virus", "other", "Abuse"] {
            let r = parse(
                raw.replace("Feedback-Type: abuse", &format!("Feedback-Type: {t}"))
                    .as_bytes(),
            )
            .unwrap();
            assert!(r.is_complaint(), "{t}");
        }
    }

    #[test]
    fn other_mail_and_broken_reports_are_told_apart() {
        assert_eq!(
            parse(&fixture("not_a_report.eml")),
            Err(ArfError::NotAReport)
        );
        // A DSN is a report, of another type.
        let dsn = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/dsn/postfix_user_unknown.eml"),
        )
        .unwrap();
        assert_eq!(parse(&dsn), Err(ArfError::NotAReport));
        let raw = String::from_utf8(fixture("abuse_rfc822.eml")).unwrap();
        assert_eq!(
            parse(raw.replace("Feedback-Type: abuse\n", "").as_bytes()),
            Err(ArfError::NoFeedbackType)
        );
        assert_eq!(
            parse(
                raw.replace("message/feedback-report", "text/plain")
                    .as_bytes()
            ),
            Err(ArfError::NoFeedbackPart)
        );
        assert!(parse(b"\x00\xff garbage").is_err());
    }
}
