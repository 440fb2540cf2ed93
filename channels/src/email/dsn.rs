//! Asynchronous bounces: RFC 3464 delivery status notifications.
//!
//! A bounce arrives long after the SMTP server said 250, as a mail to our VERP return
//! path. This module turns one into per-recipient results; matching the VERP token and
//! deciding what a bounce means for the recipient is the caller's business.
//!
//! mail-parser does the MIME work (boundaries, transfer encodings, nested messages), but
//! hands a `message/delivery-status` body back as opaque bytes and `text/rfc822-headers`
//! as plain text, so the RFC 3464 field blocks are read here.

use std::borrow::Cow;

use mail_parser::{Header, MessageParser, MessagePart, MimeHeaders};

/// A parsed delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Per-recipient results (RFC 3464 §2.3), in order.
    pub recipients: Vec<DsnRecipient>,
    /// Message-ID of the bounced message (angle brackets stripped), from the returned
    /// headers (text/rfc822-headers or message/rfc822 part), if present.
    pub original_message_id: Option<String>,
    /// Original-Envelope-Id (RFC 3464 per-message field), if present.
    pub original_envelope_id: Option<String>,
    /// Where the bounce was delivered: the address our VERP token lives in. Taken from,
    /// in order: `X-Original-To`, `Delivered-To`, `Envelope-To`, then `To` headers of the
    /// DSN itself; duplicates dropped. The first is the most specific: X-Original-To is
    /// the address before alias expansion, To only what the reporting MTA chose to write.
    pub envelope_to: Vec<String>,
}

/// One recipient's result (RFC 3464 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// Final-Recipient (else Original-Recipient) as written, type included
    /// (`rfc822; user@example.net`), trimmed; see [`DsnRecipient::address`].
    pub address: String,
    pub action: Action,
    /// The enhanced status code alone (`5.1.1`); empty if the MTA gave none.
    pub status: String,
    /// Diagnostic-Code without its type (`smtp;`), unfolded.
    pub diagnostic: Option<String>,
    /// Remote-MTA without its type (`dns;`), unfolded.
    pub remote_mta: Option<String>,
}

/// RFC 3464 §2.3.3 action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
    /// An unknown value as written; empty when neither Action nor Status said anything.
    Other(String),
}

impl Action {
    fn parse(value: &str) -> Self {
        // Some MTAs append a comment (`failed (bad address)`): the first word decides.
        let word = value.split_whitespace().next().unwrap_or_default();
        [
            ("failed", Self::Failed),
            ("delayed", Self::Delayed),
            ("delivered", Self::Delivered),
            ("relayed", Self::Relayed),
            ("expanded", Self::Expanded),
        ]
        .into_iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map_or_else(|| Self::Other(value.to_owned()), |(_, action)| action)
    }

    /// Action is mandatory but some appliances omit it; the status class says the same.
    fn from_status(status: &str) -> Self {
        match status.as_bytes().first() {
            Some(b'5') => Self::Failed,
            Some(b'4') => Self::Delayed,
            Some(b'2') => Self::Delivered,
            _ => Self::Other(String::new()),
        }
    }
}

impl DsnRecipient {
    /// The bare address: the `rfc822;` type and any angle brackets stripped.
    pub fn address(&self) -> &str {
        strip_type(&self.address).trim_matches(['<', '>'])
    }

    /// A permanent failure: the address should not be tried again.
    pub fn is_hard(&self) -> bool {
        self.status.starts_with('5') && self.action == Action::Failed
    }

    /// A temporary problem: the MTA is still retrying, or gave up on a transient error.
    pub fn is_soft(&self) -> bool {
        self.status.starts_with('4') || self.action == Action::Delayed
    }
}

/// Why a mail is not a readable DSN. The first two mean it is not a bounce at all (a
/// human reply to the return path, an auto-responder); the last two a report we could
/// not read, worth keeping for a person to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("not a MIME message")]
    NotMime,
    #[error("not a multipart/report with report-type=delivery-status")]
    NotAReport,
    #[error("report has no message/delivery-status part")]
    NoStatusPart,
    #[error("delivery status names no recipient")]
    NoRecipients,
}

const STATUS_TYPES: [&str; 2] = ["delivery-status", "global-delivery-status"];

/// Parses untrusted mail without panicking. mail-parser 0.11.9 has debug_asserts
/// (and an unchecked `pos - 2`) on its corrupted-MIME recovery paths: a
/// message/rfc822 nested in a message/rfc822 in a multipart trips one, so debug
/// builds would panic where release builds recover. Contained here; the input is
/// broken MIME either way. `None`: not MIME at all.
pub(super) fn parse_mail(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    std::panic::catch_unwind(|| MessageParser::default().parse(raw))
        .ok()
        .flatten()
}

/// Parses a bounce. Never panics: whatever arrives at the bounce address is untrusted.
pub fn parse(raw: &[u8]) -> Result<Dsn, DsnError> {
    let message = parse_mail(raw).ok_or(DsnError::NotMime)?;
    let root = message.parts.first().ok_or(DsnError::NotMime)?;
    let content_type = root.content_type().ok_or(DsnError::NotMime)?;
    if !part_is(root, "multipart", &["report"]) {
        return Err(DsnError::NotAReport);
    }
    // RFC 6522 makes report-type mandatory, yet some MTAs omit it: then the status part
    // is proof enough. mail-parser lowercases parameter names and unquotes values.
    let report_type = content_type.attribute("report-type");
    if report_type.is_some_and(|t| !one_of(t.trim(), &STATUS_TYPES)) {
        return Err(DsnError::NotAReport);
    }
    // mail-parser flattens nested multiparts (Gmail wraps its text in multipart/related)
    // into this list, while a returned message/rfc822 keeps its parts to itself.
    let parts = message.parts.get(1..).unwrap_or_default();
    let status_part = parts
        .iter()
        .find(|p| part_is(p, "message", &STATUS_TYPES))
        .ok_or(DsnError::NoStatusPart)?;

    let body = String::from_utf8_lossy(status_part.contents());
    let mut recipients = Vec::new();
    let mut original_envelope_id = None;
    for block in blocks(&body) {
        // Per-message fields belong in the first block, but some MTAs run it into the
        // first recipient's: look everywhere.
        if original_envelope_id.is_none() {
            original_envelope_id = field(&block, "original-envelope-id").map(str::to_owned);
        }
        recipients.extend(recipient(&block));
    }
    if recipients.is_empty() {
        return Err(DsnError::NoRecipients);
    }

    let original_message_id = parts
        .iter()
        .filter(|p| {
            part_is(p, "text", &["rfc822-headers"])
                || part_is(p, "message", &["rfc822", "global", "global-headers"])
        })
        .find_map(returned_message_id);
    Ok(Dsn {
        recipients,
        original_message_id,
        original_envelope_id,
        envelope_to: envelope_to(root.headers()),
    })
}

pub(super) fn part_is(part: &MessagePart<'_>, ctype: &str, subtypes: &[&str]) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case(ctype) && ct.subtype().is_some_and(|s| one_of(s, subtypes))
    })
}

pub(super) fn one_of(value: &str, names: &[&str]) -> bool {
    names.iter().any(|n| value.eq_ignore_ascii_case(n))
}

fn recipient(block: &[Field<'_>]) -> Option<DsnRecipient> {
    let address = field(block, "final-recipient").or_else(|| field(block, "original-recipient"))?;
    // `5.1.1 (user unknown)` is seen in the wild: keep only the code.
    let status = field(block, "status").map_or("", |s| {
        s.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or_default()
    });
    let typed = |name| {
        field(block, name)
            .map(strip_type)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Some(DsnRecipient {
        address: address.to_owned(),
        action: field(block, "action").map_or_else(|| Action::from_status(status), Action::parse),
        status: status.to_owned(),
        diagnostic: typed("diagnostic-code"),
        remote_mta: typed("remote-mta"),
    })
}

fn returned_message_id(part: &MessagePart<'_>) -> Option<String> {
    // Message accessors index `parts[0]`; an empty nested message would panic.
    let nested = part.message().filter(|m| !m.parts.is_empty());
    if let Some(id) = nested.and_then(|m| m.message_id()) {
        return Some(id.to_owned()).filter(|id| !id.is_empty());
    }
    // text/rfc822-headers is plain text to mail-parser (and so is a message/rfc822 it
    // could not parse): its first block is the header.
    let text = String::from_utf8_lossy(part.contents());
    let header = blocks(&text).next()?;
    let id = field(&header, "message-id")?;
    let id = match id.split_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or_default(),
        None => id,
    };
    Some(id.trim().to_owned()).filter(|id| !id.is_empty())
}

pub(super) fn envelope_to(headers: &[Header<'_>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |addr: &str| {
        let addr = addr.trim().trim_matches(['<', '>']).trim();
        if !addr.is_empty() && !out.iter().any(|a| a == addr) {
            out.push(addr.to_owned());
        }
    };
    // mail-parser keeps these unstructured: Exim may list several in one Envelope-To.
    for name in ["X-Original-To", "Delivered-To", "Envelope-To"] {
        headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
            .filter_map(|h| h.value().as_text())
            .flat_map(|text| text.split(','))
            .for_each(&mut add);
    }
    headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("To"))
        .filter_map(|h| h.value().as_address())
        .flat_map(|a| a.iter().filter_map(|a| a.address()))
        .for_each(&mut add);
    out
}

/// `smtp; 550 ...` → `550 ...`. Only a single atom counts as a type, so a diagnostic
/// that merely contains a semicolon keeps its text.
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((ty, rest)) if !ty.trim().is_empty() && !ty.trim().contains(char::is_whitespace) => {
            rest.trim()
        }
        _ => value.trim(),
    }
}

/// One header-like field; the value is borrowed unless it had to be unfolded.
pub(super) struct Field<'a> {
    pub(super) name: &'a str,
    pub(super) value: Cow<'a, str>,
}

/// The first non-empty field of that name (case-insensitive).
pub(super) fn field<'b>(block: &'b [Field<'_>], name: &str) -> Option<&'b str> {
    block
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name) && !f.value.is_empty())
        .map(|f| f.value.as_ref())
}

/// Header-like field blocks separated by blank lines (RFC 3464 §2.1), CRLF or LF.
pub(super) fn blocks(text: &str) -> impl Iterator<Item = Vec<Field<'_>>> {
    let mut lines = text.lines();
    std::iter::from_fn(move || {
        let mut block: Vec<Field<'_>> = Vec::new();
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                if block.is_empty() {
                    continue; // a run of blank lines separates nothing
                }
                return Some(block);
            }
            if line.starts_with([' ', '\t']) {
                // Folded continuation: unfold to a single space.
                if let Some(last) = block.last_mut() {
                    let value = last.value.to_mut();
                    if !value.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                block.push(Field {
                    name: name.trim(),
                    value: Cow::Borrowed(value.trim()),
                });
            } // a line without a colon is noise: skip it
        }
        (!block.is_empty()).then_some(block)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/dsn/", $name)).as_slice()
        };
    }

    const FIXTURES: [&[u8]; 6] = [
        fixture!("postfix_user_unknown.eml"),
        fixture!("postfix_delayed.eml"),
        fixture!("exim_failed.eml"),
        fixture!("gmail_5_2_1.eml"),
        fixture!("multi_recipient.eml"),
        fixture!("not_a_bounce.eml"),
    ];

    fn rcpt(
        address: &str,
        action: Action,
        status: &str,
        diag: &str,
        mta: Option<&str>,
    ) -> DsnRecipient {
        let (address, status, diagnostic) = (address.into(), status.into(), Some(diag.into()));
        DsnRecipient {
            address,
            action,
            status,
            diagnostic,
            remote_mta: mta.map(Into::into),
        }
    }

    fn dsn(recipients: Vec<DsnRecipient>, id: &str, envid: Option<&str>, to: &[&str]) -> Dsn {
        Dsn {
            recipients,
            original_message_id: Some(id.into()),
            original_envelope_id: envid.map(Into::into),
            envelope_to: to.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// (bare address, is_hard, is_soft) per recipient.
    fn kinds(dsn: &Dsn) -> Vec<(&str, bool, bool)> {
        let kind = |r| (DsnRecipient::address(r), r.is_hard(), r.is_soft());
        dsn.recipients.iter().map(kind).collect()
    }

    #[test]
    fn postfix_user_unknown() {
        let got = parse(fixture!("postfix_user_unknown.eml")).unwrap();
        let (addr, mta) = ("rfc822; nosuchuser@example.net", Some("mx1.example.net"));
        let diag = "550 5.1.1 <nosuchuser@example.net>: Recipient address rejected: \
                    User unknown in virtual mailbox table";
        let r = rcpt(addr, Action::Failed, "5.1.1", diag, mta);
        let to = ["bounces+7370-c1001@example.com", "bounces@example.com"];
        assert_eq!(got, dsn(vec![r], "spring26-C1001@example.com", None, &to));
        assert_eq!(kinds(&got), [("nosuchuser@example.net", true, false)]);
    }

    #[test]
    fn postfix_delayed() {
        let got = parse(fixture!("postfix_delayed.eml")).unwrap();
        let diag = "connect to mx.example.org[198.51.100.7]:25: Connection timed out";
        let addr = "rfc822; slow@example.org";
        let r = rcpt(addr, Action::Delayed, "4.4.1", diag, None);
        let to = ["bounces+7370-d2001@example.com", "bounces@example.com"];
        assert_eq!(got, dsn(vec![r], "spring26-D2001@example.com", None, &to));
        assert_eq!(kinds(&got), [("slow@example.org", false, true)]);
    }

    #[test]
    fn exim_failed() {
        let got = parse(fixture!("exim_failed.eml")).unwrap();
        let (addr, mta) = ("rfc822;gone@example.org", Some("mail.example.org"));
        let diag = "550 5.1.1 <gone@example.org>: Recipient address rejected: \
                    User unknown in local recipient table";
        let r = rcpt(addr, Action::Failed, "5.0.0", diag, mta);
        let to = ["bounces+7370-e3001@example.com"];
        assert_eq!(got, dsn(vec![r], "order-E3001@example.com", None, &to));
        assert_eq!(kinds(&got), [("gone@example.org", true, false)]);
    }

    #[test]
    fn gmail_disabled_account() {
        let got = parse(fixture!("gmail_5_2_1.eml")).unwrap();
        let addr = "rfc822; disabled.user@gmail.com";
        let diag = "550-5.2.1 The email account that you tried to reach is disabled. Learn more \
                    at 550 5.2.1  https://support.google.com/mail/?p=DisabledUser \
                    d9443c01a7336-22e9a1b2c3esor123456ad.4 - gsmtp";
        let mta = "gmail-smtp-in.l.google.com. (2607:f8b0:4864:20::52a, the server for the \
                   domain gmail.com.)";
        let r = rcpt(addr, Action::Failed, "5.2.1", diag, Some(mta));
        let to = ["bounces+7370-g4001@example.com"];
        assert_eq!(got, dsn(vec![r], "welcome-G4001@example.com", None, &to));
        assert_eq!(kinds(&got), [("disabled.user@gmail.com", true, false)]);
    }

    #[test]
    fn sendmail_multi_recipient() {
        let got = parse(fixture!("multi_recipient.eml")).unwrap();
        let (addr, mta) = ("RFC822; missing@example.net", Some("mx.example.net"));
        let diag = "550 5.1.1 <missing@example.net>... User unknown";
        let failed = rcpt(addr, Action::Failed, "5.1.1", diag, mta);
        let (addr, mta) = ("RFC822; full@example.org", Some("mx.example.org"));
        let diag = "452 4.2.2 <full@example.org>... Mailbox full";
        let delayed = rcpt(addr, Action::Delayed, "4.2.2", diag, mta);
        let (id, envid) = (
            "newsletter-M5001@example.com",
            Some("tayori-job-7370-M5001"),
        );
        let to = ["bounces+7370-m5001@example.com"];
        assert_eq!(got, dsn(vec![failed, delayed], id, envid, &to));
        let want = [
            ("missing@example.net", true, false),
            ("full@example.org", false, true),
        ];
        assert_eq!(kinds(&got), want);
    }

    #[test]
    fn not_a_bounce() {
        assert_eq!(
            parse(fixture!("not_a_bounce.eml")),
            Err(DsnError::NotAReport)
        );
    }

    fn report(content_type: &str, status: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.example.net\nTo: <bounces+1-x@example.com>\nMIME-Version: 1.0\n\
             Content-Type: {content_type}; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\n\
             It bounced.\n\n--b\nContent-Type: message/delivery-status\n\n{status}\n--b--\n"
        )
        .into_bytes()
    }

    #[test]
    fn lenient_with_real_world_sloppiness() {
        // Parameter case, a quoted value, blank-line runs, no Action, a commented Status.
        let status = "Reporting-MTA: dns; mx\n\n\n\nfinal-recipient: rfc822; <a@example.net>\n\
                      STATUS: 5.1.1 (user unknown)\n";
        let raw = report("multipart/Report; Report-Type=\"Delivery-Status\"", status);
        let got = parse(&raw).unwrap();
        let want = rcpt("rfc822; <a@example.net>", Action::Failed, "5.1.1", "", None);
        assert_eq!(
            got.recipients,
            [DsnRecipient {
                diagnostic: None,
                ..want
            }]
        );
        assert_eq!(kinds(&got), [("a@example.net", true, false)]);
        assert_eq!(got.original_message_id, None);
        assert_eq!(got.envelope_to, ["bounces+1-x@example.com"]);

        // No report-type at all; CRLF; Action missing on a 4.x; an unknown action.
        let status = "Final-Recipient: rfc822; b@example.net\r\nStatus: 4.2.2\r\n\r\n\
                      Original-Recipient: rfc822; c@example.net\r\nAction: Queued (later)\r\n";
        let got = parse(&report("multipart/report", status)).unwrap();
        let [b, c] = &got.recipients[..] else {
            panic!("{got:?}")
        };
        assert_eq!((&b.action, b.is_soft()), (&Action::Delayed, true));
        assert_eq!(
            (c.address(), &c.action),
            ("c@example.net", &Action::Other("Queued (later)".into()))
        );
    }

    #[test]
    fn errors() {
        let mdn = report(
            "multipart/report; report-type=disposition-notification",
            "Final-Recipient: x",
        );
        assert_eq!(parse(&mdn), Err(DsnError::NotAReport));
        let per_message_only = report("multipart/report", "Reporting-MTA: dns; mx");
        assert_eq!(parse(&per_message_only), Err(DsnError::NoRecipients));
        let no_status = String::from_utf8_lossy(&report("multipart/report", ""))
            .replace("message/delivery-status", "text/plain");
        assert_eq!(parse(no_status.as_bytes()), Err(DsnError::NoStatusPart));
        assert_eq!(parse(b""), Err(DsnError::NotMime));
        assert_eq!(
            parse(b"Subject: plain RFC 5322\n\nhello\n"),
            Err(DsnError::NotMime)
        );
    }

    /// Bounces come from anyone: no input may panic, truncated or corrupted.
    #[test]
    fn never_panics() {
        let mut state = 0x7370_D5A1_u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Half the random inputs are spliced from MIME syntax to get past the header parser.
        let bits: Vec<&[u8]> = "\r\n|\n|\n\n| |--b|--b--|: |;|<|>|\"|=?utf-8?q?=E3=81?=|\
            Content-Type: multipart/report; report-type=delivery-status; boundary=b\n|\
            Content-Type: message/delivery-status\n|Content-Type: message/rfc822\n|\
            Content-Type: text/rfc822-headers\n|Content-Transfer-Encoding: base64\n|\
            Final-Recipient: rfc822; a@b\n|Status: 5.1.1\n|Action: failed\n|Message-ID: <x@y>\n"
            .split('|')
            .map(str::as_bytes)
            .collect();
        for i in 0..2000 {
            let len = (rand() % 700) as usize;
            let mut input = Vec::with_capacity(len + 128);
            while input.len() < len {
                let r = rand();
                if i % 2 == 0 || r % 4 == 0 {
                    input.push((r >> 24) as u8);
                } else {
                    input.extend_from_slice(bits[(r >> 24) as usize % bits.len()]);
                }
            }
            let _ = parse(&input);
        }
        // Minimised from a longer run of this loop: trips a debug_assert in mail-parser.
        let nested = b"Content-Type:multipart/;boundary=b\n\n--bContent-Type:message/rfc822\n\n\
                       Content-Type:message/rfc822\n\n\n--b--";
        assert!(parse(nested).is_err());
        for raw in FIXTURES {
            for end in (0..raw.len()).step_by(37) {
                assert!(parse(&raw[..end]).map_or(true, |d| !d.recipients.is_empty()));
            }
            for _ in 0..150 {
                let mut mutated = raw.to_vec();
                for _ in 0..=rand() % 4 {
                    let at = rand() as usize % mutated.len();
                    mutated[at] ^= 1 << (rand() % 8);
                }
                let _ = parse(&mutated);
            }
        }
    }
}
