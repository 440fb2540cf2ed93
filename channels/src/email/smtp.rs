//! SMTP delivery: a pool of our own pipelining SMTP sessions ([`client`]), and what
//! each SMTP reply means for the job (retry, bounce, fail, pause).

pub(crate) mod client;
pub(crate) mod wire;

use std::time::Duration;

use lettre::Address;
use serde::Deserialize;

use self::client::{Command, Security, SmtpError, Tls};
use self::wire::Reply;
use super::smtp_pool::{Failure, Pool};
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
    /// The EHLO name; the host name by default.
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
        let tls = || Tls::new(&settings.host, settings.ca_pem.as_deref());
        let security = match settings.tls {
            TlsMode::None => Security::Plain,
            TlsMode::Starttls => Security::Starttls(tls()?),
            TlsMode::Tls => Security::Implicit(tls()?),
        };
        if let Some(name) = &settings.helo_name {
            // It goes on the EHLO line as is.
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "invalid helo_name {name:?}: a host name (letters, digits, '-', '.')"
                ));
            }
        }
        let envelope_from = match &settings.envelope_from {
            Some(a) => super::address::ascii_address(a)
                .map_err(|e| format!("invalid envelope sender {a:?}: {e}"))?,
            None => encoder.from_address().clone(),
        };
        Ok(Self {
            pool: Pool::new(settings, security),
            encoder,
            envelope_from,
        })
    }
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
        let to: Vec<&str> = email.envelope.to().iter().map(|a| a.as_ref()).collect();
        if to.is_empty() {
            return Err(SendError::permanent("invalid_message", "no recipient"));
        }
        let id = self.encoder.message_id(&message.job_id);
        match self.pool.send(from.as_ref(), &to, &email.bytes).await {
            Ok(_) => Ok(Sent::new(id.trim_matches(['<', '>']).to_owned())),
            Err(e) => Err(classify(&e)),
        }
    }
}

/// What a failed send means for the job.
pub fn classify(f: &Failure) -> SendError {
    match f {
        Failure::Timeout(what) => {
            SendError::transient("smtp_timeout", format!("timed out: {what}"))
        }
        Failure::Connect(e) => match classify_error(e) {
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
        Failure::Send(e) => classify_error(e),
    }
}

/// What a session error means for the job.
fn classify_error(e: &SmtpError) -> SendError {
    match e {
        SmtpError::Rejected { command, reply } => classify_reply(*command, reply, e.to_string()),
        SmtpError::Tls(_) => SendError::transient("smtp_tls", e.to_string()),
        SmtpError::Io {
            command: Command::Connect,
            source,
        } => SendError::transient("smtp_connection", format!("relay unreachable: {source}")),
        SmtpError::Io { source, .. } if tls_failure(source) => {
            SendError::transient("smtp_tls", e.to_string())
        }
        SmtpError::Io { .. }
        | SmtpError::Closed { .. }
        | SmtpError::Protocol { .. }
        | SmtpError::Unexpected { .. } => SendError::transient("smtp_connection", e.to_string()),
        // We refused locally: a message the relay cannot take (8-bit content without
        // 8BITMIME), or at connect no STARTTLS or AUTH mechanism in common; the
        // caller decides which.
        SmtpError::Client(_) => SendError::permanent("smtp_client", e.to_string()),
    }
}

/// What the relay's refusal of `command` means for the job. `text` is the error's
/// text (`RCPT TO: 550 5.1.1 <a@b>: User unknown`).
fn classify_reply(command: Command, reply: &Reply, text: String) -> SendError {
    let code_str = format!("smtp_{}", reply.code);
    if reply.is_transient() {
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
    if reply.is_positive() {
        // Only a greeting can be "refused" with a positive code (not 220): a relay
        // that does not talk SMTP properly may well do so later.
        return SendError::transient("smtp_connection", text);
    }
    if matches!(reply.code, 530 | 534 | 535 | 538) {
        // Our credentials were refused: no message will go until someone fixes them.
        return SendError::Suspended {
            code: "smtp_auth".into(),
            message: text,
            retry_after: None,
        };
    }
    let enhanced = reply.enhanced_code().or_else(|| enhanced_status(&text));
    if is_hard_bounce(command, reply.code, enhanced, &text) {
        SendError::Bounced {
            code: code_str,
            message: text,
        }
    } else {
        SendError::permanent(&code_str, text)
    }
}

/// Whether a TLS problem (a failed handshake, a bad record) is behind an I/O error.
fn tls_failure(e: &std::io::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(err) = source {
        if err.is::<rustls::Error>() {
            return true;
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

/// Whether a permanent refusal says the recipient's address is bad for good (the
/// address is then suppressed), rather than our message, our sender or our relay.
///
/// An enhanced status code (RFC 3463) decides when there is one: X.1.x (address
/// status) except X.1.7 and X.1.8, which are about our sender, plus X.2.1 (mailbox
/// disabled) and X.4.1 (no answer from host). Without one, a 550, 551 or 553 at RCPT
/// is about that recipient by definition (RFC 5321 §4.2.2: mailbox unavailable, user
/// not local, mailbox name not allowed), unless its text names a policy (relaying,
/// spam, blocking) rather than the mailbox; after RCPT it takes the usual wording of
/// "no such user". A refusal at MAIL is never about the recipient.
fn is_hard_bounce(command: Command, code: u16, enhanced: Option<&str>, text: &str) -> bool {
    if command == Command::Mail {
        return false;
    }
    if let Some(enhanced) = enhanced {
        let (_, rest) = enhanced.split_once('.').unwrap_or(("", ""));
        return match rest.split_once('.') {
            Some(("1", detail)) => !matches!(detail, "7" | "8"),
            Some(("2", "1")) | Some(("4", "1")) => true,
            _ => false,
        };
    }
    if !matches!(code, 550 | 551 | 553) {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    if command == Command::Rcpt {
        return ![
            "relay",
            "spam",
            "block",
            "blacklist",
            "denylist",
            "policy",
            "rate",
        ]
        .iter()
        .any(|p| lower.contains(p));
    }
    [
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

    /// `is_hard_bounce` as `classify_reply` calls it, for a reply line.
    fn bounces_at(command: Command, line: &str) -> bool {
        let (reply, _) = wire::parse_reply(format!("{line}\r\n").as_bytes())
            .unwrap()
            .unwrap();
        let text = format!("{command}: {reply}");
        let enhanced = reply.enhanced_code().or_else(|| enhanced_status(&text));
        is_hard_bounce(command, reply.code, enhanced, &text)
    }

    #[test]
    fn recipient_problems_are_hard_bounces_and_policy_rejections_are_not() {
        // Wherever the refusal came (RCPT, or DATA for relays that check recipients late).
        for at in [Command::Rcpt, Command::Data] {
            assert!(bounces_at(at, "550 5.1.1 <a@b>: User unknown"));
            assert!(bounces_at(at, "550 5.2.1 Mailbox disabled"));
            assert!(bounces_at(at, "550 5.4.1 Recipient address rejected"));
            assert!(bounces_at(at, "550 No such user here"));
            assert!(!bounces_at(at, "554 5.7.1 Message rejected as spam"));
            assert!(!bounces_at(at, "550 5.1.8 Sender domain does not exist"));
            assert!(!bounces_at(at, "552 5.2.2 Mailbox full"));
            assert!(!bounces_at(at, "554 Transaction failed"));
        }
    }

    #[test]
    fn knowing_the_command_sharpens_the_bounce_signal() {
        // At RCPT, a 550/551/553 without an enhanced code is about that mailbox...
        assert!(bounces_at(Command::Rcpt, "550 Requested action not taken"));
        assert!(bounces_at(Command::Rcpt, "553 mailbox name not allowed"));
        assert!(bounces_at(Command::Rcpt, "551 User not local"));
        // ... unless it names a policy; after RCPT only the wording counts.
        assert!(!bounces_at(Command::Rcpt, "550 Relaying denied"));
        assert!(!bounces_at(Command::Rcpt, "550 Blocked by local policy"));
        assert!(!bounces_at(Command::Data, "550 Requested action not taken"));
        assert!(!bounces_at(Command::Rcpt, "554 Requested action not taken"));
        // A refusal at MAIL is about our sender, whatever its code says.
        assert!(!bounces_at(
            Command::Mail,
            "550 5.1.0 Sender address rejected"
        ));
        assert!(!bounces_at(Command::Mail, "553 No such user here"));
    }

    fn rejected(command: Command, line: &str) -> SendError {
        let (reply, _) = wire::parse_reply(format!("{line}\r\n").as_bytes())
            .unwrap()
            .unwrap();
        classify(&Failure::Send(SmtpError::Rejected { command, reply }))
    }

    #[test]
    fn replies_map_to_outcomes_naming_the_command() {
        match rejected(Command::Rcpt, "550 5.1.1 <a@b>: User unknown") {
            SendError::Bounced { code, message } => {
                assert_eq!(code, "smtp_550");
                assert_eq!(message, "RCPT TO: 550 5.1.1 <a@b>: User unknown");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            rejected(Command::Data, "554 5.7.1 Message rejected as spam"),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            rejected(Command::Message, "451 4.3.0 Try again"),
            SendError::Transient { .. }
        ));
        assert!(matches!(
            rejected(Command::Mail, "421 4.7.0 Too many connections"),
            SendError::RateLimited { .. }
        ));
        assert!(matches!(
            rejected(
                Command::Auth,
                "535 5.7.8 Authentication credentials invalid"
            ),
            SendError::Suspended { .. }
        ));
        let at_greeting = classify(&Failure::Connect(SmtpError::Rejected {
            command: Command::Greeting,
            reply: Reply {
                code: 554,
                lines: vec!["no service for you".into()],
            },
        }));
        assert!(
            matches!(&at_greeting, SendError::Suspended { code, .. } if code == "smtp_session"),
            "{at_greeting:?}"
        );
        let lost = classify(&Failure::Send(SmtpError::Closed {
            command: Command::Mail,
        }));
        assert!(
            matches!(&lost, SendError::Transient { code, .. } if code == "smtp_connection"),
            "{lost:?}"
        );
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
