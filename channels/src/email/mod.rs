//! Email: MIME composition with lettre's builder ([`EmailEncoder`]) and delivery over
//! SMTP ([`smtp::SmtpChannel`]).

pub mod address;
pub mod arf;
mod body;
mod dkim;
pub mod dsn;
mod header_line;
mod readable;
pub mod sendgrid;
pub mod smtp;
mod smtp_pool;

use lettre::address::Envelope;
use lettre::message::header::{
    self, ContentTransferEncoding, ContentType, HeaderName, HeaderValue, Headers, MIME_VERSION_1_0,
};
use lettre::message::{Body, Mailbox, Mailboxes};

use crate::{Content, EmailExtras, Encode, Message, SendError};
pub use dkim::DkimKey;
use dkim::DkimSigner;

/// Everything about composing mail that comes from config.
#[derive(Debug, Clone, Default)]
pub struct EmailOptions {
    /// `Name <addr>` or a bare address.
    pub from: String,
    pub reply_to: Option<String>,
    /// Extra headers on every message (`X-Mailer-Campaign = …`).
    pub headers: Vec<(String, String)>,
    /// A mailbox that unsubscribes by mail: listed in `List-Unsubscribe` beside the URL.
    pub unsubscribe_mailto: Option<String>,
    pub dkim: Option<DkimKey>,
    /// Domains whose legacy local parts (`taro..yamada@docomo.ne.jp`) are sent
    /// quoted ([`address::recipient_address`]); lowercase ASCII. Empty: strict.
    pub legacy_local_part_domains: Vec<String>,
    /// The relay is SendGrid: each message carries its job id in `X-SMTPAPI`,
    /// which SendGrid returns with every Event Webhook event ([`sendgrid`]).
    pub sendgrid_job_arg: bool,
}

/// Headers a config may not set: the composer owns them, and a second copy would
/// break DKIM or let a config spoof structure.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "sender",
    "return-path",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "dkim-signature",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// Headers covered by the DKIM signature: identity, content framing and the
/// unsubscribe headers that Gmail and Yahoo require signed for bulk senders.
const DKIM_SIGNED: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Builds the RFC 5322 message for a job.
pub struct EmailEncoder {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    /// Right-hand side of Message-IDs: the From domain.
    id_domain: String,
    headers: Vec<HeaderValue>,
    unsubscribe_mailto: Option<String>,
    dkim: Option<DkimSigner>,
    legacy_local_part_domains: Vec<String>,
    sendgrid_job_arg: bool,
}

/// A message ready to send: its envelope and its bytes (DKIM-signed if configured).
#[derive(Debug)]
pub struct BuiltEmail {
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

impl EmailEncoder {
    /// `from` is `Name <addr>` or a bare address; a bad one is reported to the caller.
    pub fn new(from: &str, reply_to: Option<&str>) -> Result<Self, String> {
        Self::with_options(&EmailOptions {
            from: from.to_owned(),
            reply_to: reply_to.map(str::to_owned),
            ..EmailOptions::default()
        })
    }

    /// An encoder from config; the error names what is wrong (not which key: the caller knows).
    pub fn with_options(opts: &EmailOptions) -> Result<Self, String> {
        let from: Mailbox = parse_mailbox(&opts.from)?;
        let reply_to = opts.reply_to.as_deref().map(parse_mailbox).transpose()?;
        let id_domain = from.email.domain().to_owned();
        let headers: Vec<HeaderValue> = opts
            .headers
            .iter()
            .map(|(name, value)| custom_header(name, value))
            .collect::<Result<_, _>>()?;
        let unsubscribe_mailto = opts
            .unsubscribe_mailto
            .as_deref()
            .map(|m| {
                let addr = address::ascii_address(m)
                    .map_err(|e| format!("invalid unsubscribe address {m:?}: {e}"))?;
                Ok::<_, String>(format!("mailto:{addr}?subject=unsubscribe"))
            })
            .transpose()?;
        let dkim = opts
            .dkim
            .as_ref()
            .map(|key| DkimSigner::new(key, DKIM_SIGNED))
            .transpose()?;
        // The headers from config are the same on every message: a line over the
        // limit is a config error, found at start rather than on every send.
        let mut fixed = Headers::new();
        fixed.set(header::From::from(Mailboxes::from(from.clone())));
        if let Some(r) = &reply_to {
            fixed.set(header::ReplyTo::from(Mailboxes::from(r.clone())));
        }
        for h in &headers {
            fixed.insert_raw(h.clone());
        }
        if let Some((name, len)) = header_line::overlong(&fixed) {
            return Err(format!(
                "the {name} header would have a line of {len} bytes, over RFC 5322's limit of {}: \
                 shorten its longest word",
                header_line::MAX_LINE
            ));
        }
        Ok(Self {
            from,
            reply_to,
            id_domain,
            headers,
            unsubscribe_mailto,
            dkim,
            legacy_local_part_domains: opts
                .legacy_local_part_domains
                .iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .collect(),
            sendgrid_job_arg: opts.sendgrid_job_arg,
        })
    }

    /// The From address (the default envelope sender).
    pub fn from_address(&self) -> &lettre::Address {
        &self.from.email
    }

    /// The Message-ID for a job: it carries the job id so that any later
    /// reaction (a bounce, a reply) maps back to the job.
    /// The right-hand side of every Message-ID: the From address's domain.
    pub fn message_id_domain(&self) -> &str {
        &self.id_domain
    }

    pub fn message_id(&self, job_id: &str) -> String {
        format!("<{}@{}>", crate::file::file_stem(job_id), self.id_domain)
    }

    pub fn build(&self, message: &Message) -> Result<BuiltEmail, SendError> {
        let Content::Email {
            subject,
            html,
            text,
            extras,
        } = &message.content
        else {
            return Err(SendError::permanent("invalid_message", "no email content"));
        };
        // ASCII on the wire (no SMTPUTF8): the To header and, through the envelope
        // lettre derives from it, RCPT TO.
        let address =
            address::recipient_address(&message.to.address, &self.legacy_local_part_domains)
                .map_err(|e| SendError::unreachable("invalid_address", format!("to.email: {e}")))?;
        // lettre's header Display fails (and `to_string` panics) on a display name with
        // CR/LF; control characters never belong in a name anyway. A name with a word
        // too long for the To line (no real name has one) is left out: it is only
        // decoration, and the mail still reaches its address.
        let name = message
            .to
            .name
            .as_deref()
            .map(|n| {
                n.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect::<String>()
            })
            .filter(|n| header_line::display_name_fits(n));
        // The envelope given, not derived: lettre derives it by parsing the From
        // and To headers it has just written, 4 % of the daemon's CPU per email
        // (perf, issue 19). The same addresses: From's, and the one recipient.
        let envelope = Envelope::new(Some(self.from.email.clone()), vec![address.clone()])
            .map_err(|e| SendError::unreachable("invalid_address", format!("to.email: {e}")))?;
        let to = Mailbox::new(name, address);
        let mut builder = lettre::Message::builder()
            .envelope(envelope)
            .from(self.from.clone())
            .to(to)
            .raw_header(header_line::unstructured(
                HeaderName::new_from_ascii_str("Subject"),
                subject,
            ))
            .message_id(Some(self.message_id(&message.job_id)));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        for h in &self.headers {
            builder = builder.raw_header(h.clone());
        }
        if self.sendgrid_job_arg {
            builder = builder.raw_header(ascii_header(
                "X-SMTPAPI",
                &sendgrid::smtpapi_header(&message.job_id),
            )?);
        }
        if let Some(list) = self.list_unsubscribe(extras)? {
            builder = builder.raw_header(list).raw_header(ascii_header(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click",
            )?);
        }
        // The body goes in pre-formatted, its Content-Type (and Content-Transfer-Encoding)
        // among the message's own headers: lettre keeps a MIME part's headers in the
        // part, where its DKIM signer does not see them, so a signature listing
        // Content-Type in h= would hash without it and fail every verifier.
        let invalid = |e: String| SendError::permanent("invalid_message", e);
        let body = match (text, html) {
            (Some(text), Some(html)) => {
                let (content_type, body) = alternative(text, html).map_err(invalid)?;
                builder = builder.header(content_type);
                Body::dangerous_pre_encoded(body, ContentTransferEncoding::SevenBit)
            }
            (None, Some(html)) => {
                builder = builder.header(ContentType::TEXT_HTML);
                encoded_body(html)
            }
            (Some(text), None) => {
                builder = builder.header(ContentType::TEXT_PLAIN);
                encoded_body(text)
            }
            (None, None) => {
                return Err(invalid("email has neither a text nor an html part".into()))
            }
        };
        let built = builder
            .header(MIME_VERSION_1_0)
            .body(body)
            .map_err(|e| invalid(e.to_string()))?;
        // The guarantee, whatever the parts above allowed: no header line over the limit.
        if let Some((name, len)) = header_line::overlong(built.headers()) {
            return Err(invalid(format!(
                "the {name} header would have a line of {len} bytes, over RFC 5322's limit of {}",
                header_line::MAX_LINE
            )));
        }
        let envelope = built.envelope().clone();
        let formatted = built.formatted();
        let bytes = match &self.dkim {
            Some(signer) => {
                let mut signed = signer.signature_header(&formatted).map_err(invalid)?;
                signed.extend_from_slice(&formatted);
                signed
            }
            None => formatted,
        };
        Ok(BuiltEmail { envelope, bytes })
    }

    /// `List-Unsubscribe: <https://…>, <mailto:…>` (RFC 2369) when the message has
    /// an unsubscribe URL. Only https URLs qualify for one-click (RFC 8058).
    fn list_unsubscribe(&self, extras: &EmailExtras) -> Result<Option<HeaderValue>, SendError> {
        let Some(url) = &extras.unsubscribe_url else {
            return Ok(None);
        };
        if url.contains(|c: char| c.is_whitespace() || c.is_control() || c == '>' || !c.is_ascii())
        {
            return Err(SendError::permanent(
                "invalid_message",
                "the unsubscribe URL must be plain ASCII without spaces",
            ));
        }
        let mut value = format!("<{url}>");
        if let Some(mailto) = &self.unsubscribe_mailto {
            value.push_str(&format!(", <{mailto}>"));
        }
        // Not folded inside the URL: one-click clients take it as it stands.
        if !header_line::folds("List-Unsubscribe", &value) {
            return Err(SendError::permanent(
                "invalid_message",
                format!(
                    "the unsubscribe URL is {} bytes: the List-Unsubscribe line would be over \
                     RFC 5322's limit of {} (a shorter http.public_url, job id, address, \
                     campaign or customer_id makes it fit)",
                    url.len(),
                    header_line::MAX_LINE
                ),
            ));
        }
        ascii_header("List-Unsubscribe", &value).map(Some)
    }
}

/// A mailbox from config, its address in the ASCII form it is sent in.
fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    let mailbox: Mailbox = s
        .parse()
        .map_err(|e| format!("invalid address {s:?}: {e}"))?;
    let email = address::ascii_address(mailbox.email.as_ref())
        .map_err(|e| format!("invalid address {s:?}: {e}"))?;
    Ok(Mailbox::new(mailbox.name, email))
}

fn ascii_header(name: &str, value: &str) -> Result<HeaderValue, SendError> {
    let name = HeaderName::new_from_ascii(name.to_owned())
        .map_err(|e| SendError::permanent("invalid_message", e.to_string()))?;
    Ok(HeaderValue::new(name, value.to_owned()))
}

fn custom_header(name: &str, value: &str) -> Result<HeaderValue, String> {
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "header {name:?} is set by Tayori itself and cannot be configured"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("header {name:?}: the value has control characters"));
    }
    let header = HeaderName::new_from_ascii(name.to_owned())
        .map_err(|_| format!("header name {name:?} is not a valid field name"))?;
    Ok(HeaderValue::new(header, value.to_owned()))
}

/// A single-part body, encoded by [`body::write_text`].
fn encoded_body(text: &str) -> Body {
    let mut out = Vec::with_capacity(text.len() + text.len() / 2);
    let encoding = body::write_text(text, &mut out);
    Body::dangerous_pre_encoded(out, encoding)
}

/// A `multipart/alternative` body of a text and an HTML part, laid out as
/// lettre's `MultiPart::alternative_plain_html` lays it out, each part encoded
/// by [`body::write_text`] (7bit, quoted-printable or base64, as lettre's
/// `Body::new` chooses). Written here rather than through lettre's `MultiPart`,
/// which builds typed headers per part, formats the whole part and had it copied
/// out again: 7 % of the daemon's CPU per tracked email (perf, issue 19).
fn alternative(text: &str, html: &str) -> Result<(ContentType, Vec<u8>), String> {
    let boundary: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(40)
        .collect();
    let parts = [
        ("text/plain; charset=utf-8", text),
        ("text/html; charset=utf-8", html),
    ];
    let mut out = Vec::with_capacity(parts.iter().map(|(_, b)| b.len() * 3 / 2 + 150).sum());
    for (content_type, text) in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        let encoding = body::choose(text);
        out.extend_from_slice(
            format!("\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n").as_bytes(),
        );
        body::write(text, encoding, &mut out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let content_type =
        ContentType::parse(&format!("multipart/alternative; boundary=\"{boundary}\""))
            .map_err(|e| format!("multipart Content-Type: {e}"))?;
    Ok((content_type, out))
}

impl Encode for EmailEncoder {
    fn extension(&self) -> &'static str {
        "eml"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        Ok(self.build(message)?.bytes)
    }
    fn to_text(&self, bytes: &[u8]) -> String {
        readable::message(bytes).unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recipient;

    fn message(subject: &str) -> Message {
        Message {
            job_id: "spring26-C1001".into(),
            attempt: 1,
            idempotency_key: "k".into(),
            campaign: None,
            customer_id: None,
            to: Recipient {
                name: Some("山田 太郎".into()),
                address: "taro@example.com".into(),
                postal: None,
            },
            content: Content::Email {
                subject: subject.into(),
                html: Some("<p>こんにちは</p>".into()),
                text: Some("こんにちは".into()),
                extras: Default::default(),
            },
        }
    }

    #[test]
    fn encodes_japanese_names_and_subjects_and_both_parts() {
        let enc = EmailEncoder::new("Example Shop <news@example.com>", None).unwrap();
        let eml = String::from_utf8(enc.encode(&message("春のセール")).unwrap()).unwrap();
        assert!(
            eml.contains("Message-ID: <spring26-C1001@example.com>"),
            "{eml}"
        );
        assert!(
            eml.contains("=?utf-8?b?"),
            "non-ASCII headers must be RFC 2047 encoded: {eml}"
        );
        assert!(!eml.contains("山田"), "raw UTF-8 in headers: {eml}");
        assert!(eml.contains("multipart/alternative"));
        assert!(eml.contains("Date: "));
    }

    #[test]
    fn crlf_in_subject_cannot_inject_headers() {
        let enc = EmailEncoder::new("news@example.com", None).unwrap();
        let eml = String::from_utf8(enc.encode(&message("hi\r\nBcc: evil@example.net")).unwrap())
            .unwrap();
        assert!(!eml.contains("\r\nBcc:"), "{eml}");
    }

    #[test]
    fn crlf_in_the_display_name_is_neutralized() {
        let enc = EmailEncoder::new("news@example.com", None).unwrap();
        let mut m = message("x");
        m.to.name = Some("Eve\r\nBcc: victim@example.net".into());
        let eml = String::from_utf8(enc.encode(&m).unwrap()).unwrap();
        assert!(!eml.contains("\r\nBcc:"), "{eml}");
    }

    #[test]
    fn bad_recipient_is_unreachable() {
        let enc = EmailEncoder::new("news@example.com", None).unwrap();
        let mut m = message("x");
        m.to.address = "not an address".into();
        assert!(matches!(enc.encode(&m), Err(SendError::Unreachable { .. })));
    }

    fn head(eml: &[u8]) -> String {
        let end = eml.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        String::from_utf8(eml[..end].to_vec()).unwrap()
    }

    #[test]
    fn an_internationalized_domain_is_sent_in_punycode_header_and_envelope_alike() {
        let enc = EmailEncoder::new("Shop <news@例え.jp>", None).unwrap();
        let mut m = message("x");
        m.to.address = "taro@例え.jp".into();
        let built = enc.build(&m).unwrap();
        let to: Vec<String> = built.envelope.to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["taro@xn--r8jz45g.jp"]);
        let head = head(&built.bytes);
        assert!(head.is_ascii(), "{head}");
        assert!(head.contains("<taro@xn--r8jz45g.jp>"), "{head}");
        assert!(head.contains("From: Shop <news@xn--r8jz45g.jp>"), "{head}");
        assert!(head.contains("@xn--r8jz45g.jp>\r\n"), "Message-ID: {head}");
    }

    #[test]
    fn a_non_ascii_local_part_is_refused_naming_the_field() {
        let enc = EmailEncoder::new("news@example.com", None).unwrap();
        let mut m = message("x");
        m.to.address = "太郎@例え.jp".into();
        match enc.encode(&m) {
            Err(SendError::Unreachable { code, message }) => {
                assert_eq!(code, "invalid_address");
                assert!(message.starts_with("to.email: "), "{message}");
                assert!(message.contains("SMTPUTF8"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Config addresses too: at start, not on every send.
        assert!(EmailEncoder::new("ニュース@example.com", None).is_err());
    }

    #[test]
    fn no_header_line_is_over_998_bytes() {
        let long = "x".repeat(1200);
        let enc = EmailEncoder::new("news@example.com", None).unwrap();
        let mut m = message(&format!("sale {long} today"));
        m.to.name = Some(long.clone());
        let text = head(&enc.encode(&m).unwrap());
        assert!(text.split("\r\n").all(|l| l.len() <= 998), "{text}");
        assert!(text.contains("Subject: =?utf-8?b?"), "{text}");
        // The name could not be folded: the mail goes to the bare address.
        assert!(text.contains("To: taro@example.com\r\n"), "{text}");
        // One that lettre writes as encoded-words keeps its name, however long.
        m.to.name = Some("山".repeat(400));
        let text = head(&enc.encode(&m).unwrap());
        assert!(text.split("\r\n").all(|l| l.len() <= 998), "{text}");
        assert!(!text.contains("To: taro@example.com\r\n"), "{text}");

        // Config that cannot fold is refused at start, naming the header.
        let opts = |headers: Vec<(String, String)>, from: &str| EmailOptions {
            from: from.into(),
            headers,
            ..EmailOptions::default()
        };
        let e = EmailEncoder::with_options(&opts(
            vec![("X-Campaign".into(), format!("a {long}"))],
            "news@example.com",
        ))
        .err()
        .unwrap();
        assert!(e.contains("X-Campaign") && e.contains("998"), "{e}");
        let e = EmailEncoder::with_options(&opts(vec![], &format!("{long} <news@example.com>")))
            .err()
            .unwrap();
        assert!(e.contains("From"), "{e}");
        // Long custom values that fold at blanks are fine.
        let enc = EmailEncoder::with_options(&opts(
            vec![("X-Note".into(), "word ".repeat(400))],
            "news@example.com",
        ))
        .unwrap();
        let text = head(&enc.encode(&message("x")).unwrap());
        assert!(text.split("\r\n").all(|l| l.len() <= 998), "{text}");
    }

    #[test]
    fn an_unsubscribe_url_too_long_for_its_line_is_refused() {
        let enc = EmailEncoder::new("news@example.com", None).unwrap();
        let with_url = |len: usize| {
            let mut m = message("x");
            if let Content::Email { extras, .. } = &mut m.content {
                extras.unsubscribe_url =
                    Some(format!("https://t.example.com/u/{}", "a".repeat(len)));
            }
            enc.encode(&m)
        };
        let eml = with_url(900).unwrap();
        assert!(head(&eml).split("\r\n").all(|l| l.len() <= 998));
        match with_url(1000) {
            Err(SendError::Permanent { code, message }) => {
                assert_eq!(code, "invalid_message");
                assert!(message.contains("List-Unsubscribe"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
