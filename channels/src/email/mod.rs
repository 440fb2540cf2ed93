//! Email: MIME composition (lettre's builder). SMTP delivery comes with its own transport.

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};

use crate::{Content, Encode, Message, SendError};

/// Builds the RFC 5322 message for a job.
pub struct EmailEncoder {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    /// Right-hand side of Message-IDs: the From domain.
    id_domain: String,
}

impl EmailEncoder {
    /// `from` is `Name <addr>` or a bare address; a bad one is reported to the caller.
    pub fn new(from: &str, reply_to: Option<&str>) -> Result<Self, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("invalid address {from:?}: {e}"))?;
        let reply_to = reply_to
            .map(|r| {
                r.parse::<Mailbox>()
                    .map_err(|e| format!("invalid address {r:?}: {e}"))
            })
            .transpose()?;
        let id_domain = from.email.domain().to_owned();
        Ok(Self {
            from,
            reply_to,
            id_domain,
        })
    }

    /// The Message-ID for a job: it carries the job id so that any later
    /// reaction (a bounce, a reply) maps back to the job.
    pub fn message_id(&self, job_id: &str) -> String {
        format!("<{}@{}>", crate::file::file_stem(job_id), self.id_domain)
    }

    pub fn build(&self, message: &Message) -> Result<lettre::Message, SendError> {
        let Content::Email {
            subject,
            html,
            text,
        } = &message.content
        else {
            return Err(SendError::permanent("invalid_message", "no email content"));
        };
        let address = message.to.address.parse().map_err(|e| {
            SendError::unreachable("invalid_address", format!("recipient address: {e}"))
        })?;
        // lettre's header Display fails (and `to_string` panics) on a display name with
        // CR/LF; control characters never belong in a name anyway.
        let name = message.to.name.as_deref().map(|n| {
            n.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        });
        let to = Mailbox::new(name, address);
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(self.message_id(&message.job_id)));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let built = match (text, html) {
            (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
                text.clone(),
                html.clone(),
            )),
            (None, Some(html)) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html.clone()),
            ),
            (Some(text), None) => builder.singlepart(SinglePart::plain(text.clone())),
            (None, None) => {
                return Err(SendError::permanent(
                    "invalid_message",
                    "email has neither a text nor an html part",
                ))
            }
        };
        built.map_err(|e| SendError::permanent("invalid_message", e.to_string()))
    }
}

impl Encode for EmailEncoder {
    fn extension(&self) -> &'static str {
        "eml"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        Ok(self.build(message)?.formatted())
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
            to: Recipient {
                name: Some("山田 太郎".into()),
                address: "taro@example.com".into(),
                postal: None,
            },
            content: Content::Email {
                subject: subject.into(),
                html: Some("<p>こんにちは</p>".into()),
                text: Some("こんにちは".into()),
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
}
