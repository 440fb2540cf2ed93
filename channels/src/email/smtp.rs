//! SMTP delivery: lettre's pooled async transport, and what each SMTP reply means
//! for the job (retry, bounce, fail, pause).

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::Address;
use serde::Deserialize;

use super::smtp_pool::{Failure, Pool, Security};
use super::EmailEncoder;
use crate::{Channel, Content, Message, SendError, Sent};

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text: only for a relay on loopback or a private network.
    None,
    /// Upgrade with STARTTLS; refuse to send if the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The relay and how to talk to it.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// `(username, password)` for AUTH.
    pub credentials: Option<(String, String)>,
    /// Most connections kept open at once.
    pub pool_size: u32,
    /// Connect and per-command timeout.
    pub timeout: Duration,
    /// The EHLO name; lettre's default is the host name.
    pub helo_name: Option<String>,
    /// Default envelope sender (Return-Path); the From address when unset.
    pub envelope_from: Option<String>,
    /// An extra CA (PEM) to trust for the relay's certificate, e.g. a private relay's.
    pub ca_pem: Option<Vec<u8>>,
}

/// The email channel over SMTP.
pub struct SmtpChannel {
    pool: Pool,
    encoder: EmailEncoder,
    envelope_from: Address,
}

impl SmtpChannel {
    pub fn new(settings: &SmtpSettings, encoder: EmailEncoder) -> Result<Self, String> {
        crate::install_crypto_provider();
        let tls = match settings.tls {
            TlsMode::None => Security::Plain,
            TlsMode::Starttls => Security::Starttls(tls_parameters(settings)?),
            TlsMode::Tls => Security::Implicit(tls_parameters(settings)?),
        };
        let envelope_from = match &settings.envelope_from {
            Some(a) => super::address::ascii_address(a)
                .map_err(|e| format!("invalid envelope sender {a:?}: {e}"))?,
            None => encoder.from_address().clone(),
        };
        Ok(Self {
            pool: Pool::new(settings, tls),
            encoder,
            envelope_from,
        })
    }
}

/// Certificate checks for the relay: the system's roots (through the platform
/// verifier) plus `ca_pem`, if given. Never "accept invalid": a relay that cannot
/// prove who it is gets no mail.
fn tls_parameters(s: &SmtpSettings) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(s.host.clone());
    if let Some(pem) = &s.ca_pem {
        let cert =
            Certificate::from_pem(pem).map_err(|e| format!("the CA file is not PEM: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| format!("TLS setup for {}: {e}", s.host))
}

#[async_trait::async_trait]
impl Channel for SmtpChannel {
    async fn send(&self, message: &Message) -> Result<Sent, SendError> {
        let email = self.encoder.build(message)?;
        let return_path = match &message.content {
            Content::Email { extras, .. } => extras.return_path.as_deref(),
            _ => None,
        };
        // The envelope is ASCII like the headers: RCPT TO is the To address as
        // `build` wrote it, MAIL FROM gets the same IDNA treatment.
        let from = match return_path {
            Some(rp) => super::address::ascii_address(rp).map_err(|e| {
                SendError::permanent("invalid_message", format!("return path: {e}"))
            })?,
            None => self.envelope_from.clone(),
        };
        let to = email.envelope.to().to_vec();
        let envelope = Envelope::new(Some(from), to)
            .map_err(|e| SendError::permanent("invalid_message", e.to_string()))?;
        let id = self.encoder.message_id(&message.job_id);
        match self.pool.send(&envelope, &email.bytes).await {
            Ok(_) => Ok(Sent::new(id.trim_matches(['<', '>']).to_owned())),
            Err(e) => Err(classify(&e)),
        }
    }
}

/// What a failed send means for the job.
pub fn classify(f: &Failure) -> SendError {
    match f {
        Failure::Io(e) => {
            SendError::transient("smtp_connection", format!("relay unreachable: {e}"))
        }
        Failure::Timeout(what) => {
            SendError::transient("smtp_timeout", format!("timed out: {what}"))
        }
        Failure::Connect(e) => match classify_reply(e) {
            // Refused at AUTH or at the greeting for good: every message would be.
            SendError::Permanent { message, .. } | SendError::Bounced { message, .. } => {
                SendError::Suspended {
                    code: "smtp_session".into(),
                    message,
                    retry_after: None,
                }
            }
            other => other,
        },
        Failure::Send(e) => classify_reply(e),
    }
}

/// What an SMTP error means for the job.
///
/// lettre does not say at which command a reply came, so a hard bounce is told
/// apart from other 5xx replies by what the reply says: an enhanced status code
/// about the recipient's address or mailbox (RFC 3463 X.1.x, 5.2.1, 5.4.1), or,
/// for servers without enhanced codes, the usual wording of "no such user".
fn classify_reply(e: &smtp::Error) -> SendError {
    let text = e.to_string();
    let Some(code) = e.status() else {
        let code = if e.is_timeout() {
            "smtp_timeout"
        } else if e.is_tls() || tls_failure(e) {
            "smtp_tls"
        } else if e.is_client() {
            // lettre refused locally: a message it cannot send, or (at connect) no
            // AUTH mechanism in common; the caller decides which.
            return SendError::permanent("smtp_client", text);
        } else {
            "smtp_connection"
        };
        return SendError::transient(code, text);
    };
    let code_str = format!("smtp_{code}");
    if e.is_transient() {
        if says_slow_down(&text) {
            // Throttling (421 "too many connections", 450 4.7.0 "rate limited"): the
            // daemon pauses the recipient's domain when it limits domains.
            return SendError::RateLimited {
                code: code_str,
                message: text,
                retry_after: None,
            };
        }
        return SendError::transient(&code_str, text);
    }
    let numeric = code.to_string();
    if matches!(numeric.as_str(), "530" | "534" | "535" | "538") {
        // Our credentials were refused: no message will go until someone fixes them.
        return SendError::Suspended {
            code: "smtp_auth".into(),
            message: text,
            retry_after: None,
        };
    }
    if is_hard_bounce(&numeric, &text) {
        SendError::Bounced {
            code: code_str,
            message: text,
        }
    } else {
        SendError::permanent(&code_str, text)
    }
}

/// Whether a TLS problem (an unverifiable certificate, a failed handshake) is behind
/// an error lettre files as a connection error.
fn tls_failure(e: &smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// Whether a temporary reply asks us to send more slowly, by its usual wording.
fn says_slow_down(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "too many",
        "rate limit",
        "ratelimit",
        "throttl",
        "slow down",
        "try again later",
    ]
    .iter()
    .any(|w| t.contains(w))
}

fn is_hard_bounce(code: &str, text: &str) -> bool {
    if let Some(enhanced) = enhanced_status(text) {
        let (_, rest) = enhanced.split_once('.').unwrap_or(("", ""));
        return match rest.split_once('.') {
            // X.1.7 and X.1.8 are about our sender address, not the recipient's.
            Some(("1", detail)) => !matches!(detail, "7" | "8"),
            Some(("2", "1")) | Some(("4", "1")) => true,
            _ => false,
        };
    }
    let lower = text.to_ascii_lowercase();
    matches!(code, "550" | "551" | "553")
        && [
            "user unknown",
            "unknown user",
            "no such user",
            "does not exist",
            "recipient address rejected",
            "mailbox unavailable",
            "user not found",
            "invalid recipient",
        ]
        .iter()
        .any(|p| lower.contains(p))
}

/// The first RFC 3463 code (`5.1.1`) in a reply's text.
fn enhanced_status(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')')
        .find(|w| {
            let mut parts = w.split('.');
            let class = parts.next();
            let (Some(s), Some(d)) = (parts.next(), parts.next()) else {
                return false;
            };
            matches!(class, Some("4" | "5"))
                && parts.next().is_none()
                && !s.is_empty()
                && s.len() <= 3
                && !d.is_empty()
                && d.len() <= 3
                && s.bytes().chain(d.bytes()).all(|b| b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_found_in_reply_text() {
        assert_eq!(
            enhanced_status("permanent error (550): 5.1.1 <a@b>: User unknown"),
            Some("5.1.1")
        );
        assert_eq!(enhanced_status("transient error (451): try later"), None);
        assert_eq!(enhanced_status("version 5.1 of 3.2.1"), None);
    }

    #[test]
    fn recipient_problems_are_hard_bounces_and_policy_rejections_are_not() {
        assert!(is_hard_bounce("550", "550 5.1.1 <a@b>: User unknown"));
        assert!(is_hard_bounce("550", "550 5.2.1 Mailbox disabled"));
        assert!(is_hard_bounce(
            "550",
            "550 5.4.1 Recipient address rejected"
        ));
        assert!(is_hard_bounce("550", "550 No such user here"));
        assert!(!is_hard_bounce("554", "554 5.7.1 Message rejected as spam"));
        assert!(!is_hard_bounce(
            "550",
            "550 5.1.8 Sender domain does not exist"
        ));
        assert!(!is_hard_bounce("552", "552 5.2.2 Mailbox full"));
        assert!(!is_hard_bounce("554", "554 Transaction failed"));
    }

    #[test]
    fn throttling_wording_is_told_apart_from_other_temporary_replies() {
        assert!(says_slow_down(
            "transient error (421): 4.7.0 Too many connections from your IP"
        ));
        assert!(says_slow_down(
            "transient error (450): 4.7.1 Rate limit exceeded"
        ));
        assert!(says_slow_down("transient error (421): Service throttled"));
        assert!(!says_slow_down(
            "transient error (451): 4.3.0 Local error in processing"
        ));
        assert!(!says_slow_down("transient error (452): 4.2.2 Mailbox full"));
    }
}
