//! Tayori's channel adapters: the protocol side of delivery.
//!
//! This crate turns a rendered [`Message`] into what a provider receives (a MIME
//! mail, a LINE push request, an SMS gateway request, a direct-mail row) and
//! hands it to a transport. It knows nothing of Redis, queues or retries: an
//! adapter answers one question — what happened to this send — with a
//! [`Sent`] or a [`SendError`] whose variant tells the daemon what to do next.

pub mod dm;
pub mod email;
pub mod file;
pub mod line;
mod message;
#[cfg(test)]
mod one_shot;
pub mod phone;
pub mod provider_http;
pub mod sms;
pub mod webhook;

pub use file::{FileTransport, NullTransport};
pub use message::{Content, EmailExtras, Message, PostalAddress, Recipient};

use std::time::Duration;

/// Installs rustls's crypto provider (ring) for every HTTPS client of the process.
/// Call once at start; calling again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A send the provider accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The provider's id for the message (Message-ID, LINE request id, gateway sid, file name).
    pub provider_id: String,
    /// Facts about the send for the `sent` event (an SMS's `segments` and `encoding`).
    pub details: Vec<(&'static str, serde_json::Value)>,
}

impl Sent {
    pub fn new(provider_id: impl Into<String>) -> Sent {
        Sent {
            provider_id: provider_id.into(),
            details: Vec::new(),
        }
    }
}

/// Why a send did not go through, classified by what the caller should do next.
///
/// `code` is a short machine-readable token (`smtp_550`, `invalid_message`, …)
/// and `message` a human-readable explanation; both end up in the event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later with backoff (timeouts, 5xx, connection errors).
    #[error("transient failure ({code}): {message}")]
    Transient { code: String, message: String },
    /// The provider asked us to slow down; retry after `retry_after` if it said.
    #[error("rate limited ({code}): {message}")]
    RateLimited {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// This channel cannot reach the recipient (blocked, unknown user, no address):
    /// the job should fall back to its next channel.
    #[error("recipient unreachable ({code}): {message}")]
    Unreachable { code: String, message: String },
    /// The address is dead on this channel (a hard bounce: user unknown, mailbox
    /// disabled): the daemon suppresses it and the job falls back.
    #[error("bounced ({code}): {message}")]
    Bounced { code: String, message: String },
    /// The recipient opted out at the provider (replied STOP): the daemon suppresses
    /// the address as unsubscribed, and the job fails or falls back.
    #[error("opted out ({code}): {message}")]
    OptedOut { code: String, message: String },
    /// The message can never be sent as it is (invalid content, rejected address).
    #[error("permanent failure ({code}): {message}")]
    Permanent { code: String, message: String },
    /// The provider may have taken the message and nothing can tell (a request
    /// cut off, or a 5xx, where the provider has no retry key): the job fails,
    /// neither retried nor sent on another channel, so nobody gets it twice.
    #[error("outcome unknown ({code}): {message}")]
    Unconfirmed { code: String, message: String },
    /// The whole channel cannot send now (credentials revoked, monthly quota used
    /// up): nothing is wrong with this message. The channel should pause and the
    /// job wait, rather than every queued job failing or burning its retries.
    #[error("channel suspended ({code}): {message}")]
    Suspended {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The channel's monthly message quota is used up (LINE's "You have reached
    /// your monthly limit."): the channel pauses like [`SendError::Suspended`],
    /// but a job with a fallback channel may move on to it (the config decides)
    /// instead of waiting for the next month.
    #[error("quota exhausted ({code}): {message}")]
    QuotaExhausted {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl SendError {
    pub fn transient(code: &str, message: impl Into<String>) -> Self {
        Self::Transient {
            code: code.into(),
            message: message.into(),
        }
    }
    pub fn permanent(code: &str, message: impl Into<String>) -> Self {
        Self::Permanent {
            code: code.into(),
            message: message.into(),
        }
    }
    pub fn unreachable(code: &str, message: impl Into<String>) -> Self {
        Self::Unreachable {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Self::Transient { code, .. }
            | Self::RateLimited { code, .. }
            | Self::Unreachable { code, .. }
            | Self::Bounced { code, .. }
            | Self::OptedOut { code, .. }
            | Self::Permanent { code, .. }
            | Self::Unconfirmed { code, .. }
            | Self::Suspended { code, .. }
            | Self::QuotaExhausted { code, .. } => code,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Transient { message, .. }
            | Self::RateLimited { message, .. }
            | Self::Unreachable { message, .. }
            | Self::Bounced { message, .. }
            | Self::OptedOut { message, .. }
            | Self::Permanent { message, .. }
            | Self::Unconfirmed { message, .. }
            | Self::Suspended { message, .. }
            | Self::QuotaExhausted { message, .. } => message,
        }
    }

    /// A short label for metrics: transient, rate_limited, unreachable, bounced,
    /// opted_out, permanent, suspended, quota_exhausted, unconfirmed.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Transient { .. } => "transient",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unreachable { .. } => "unreachable",
            Self::Bounced { .. } => "bounced",
            Self::OptedOut { .. } => "opted_out",
            Self::Permanent { .. } => "permanent",
            Self::Suspended { .. } => "suspended",
            Self::Unconfirmed { .. } => "unconfirmed",
            Self::QuotaExhausted { .. } => "quota_exhausted",
        }
    }
}

/// What a provider receives for one message, as bytes: the protocol half of an adapter.
///
/// An encoder is pure (no I/O) so that the same encoding is written by the file
/// transport and sent by the real one, and `tayori render` can show it. It makes
/// the same checks, with the same error codes, as the real transport (they share
/// the code: SMS's [`sms::prepare`], DM's row encoder), so a dry run fails where
/// production would.
pub trait Encode: Send + Sync {
    /// The file extension of the encoded form (`eml`, `json`, `csv`).
    fn extension(&self) -> &'static str;
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError>;

    /// The bytes and the facts about them the real transport reports in its
    /// `sent` event (an SMS's `segments` and `encoding`). Encoders with such
    /// facts override this and implement [`Encode::encode`] through it.
    fn encode_with_details(&self, message: &Message) -> Result<Encoded, SendError> {
        Ok(Encoded {
            bytes: self.encode(message)?,
            details: Vec::new(),
        })
    }

    /// The encoded bytes as a person reads them (`tayori render`): an email
    /// decoded from its MIME transfer encodings, a Shift_JIS print row as text.
    /// JSON payloads are text already.
    fn to_text(&self, bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// One encoded message and its facts for the `sent` event ([`Sent::details`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub details: Vec<(&'static str, serde_json::Value)>,
}

impl<E: Encode + ?Sized> Encode for Box<E> {
    fn extension(&self) -> &'static str {
        (**self).extension()
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        (**self).encode(message)
    }
    fn encode_with_details(&self, message: &Message) -> Result<Encoded, SendError> {
        (**self).encode_with_details(message)
    }
    fn to_text(&self, bytes: &[u8]) -> String {
        (**self).to_text(bytes)
    }
}

/// One channel's way of delivering a message.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    async fn send(&self, message: &Message) -> Result<Sent, SendError>;

    /// Housekeeping the daemon calls about once a second (closing aged print
    /// batches). Most channels have none.
    async fn tick(&self) {}

    /// Called once when the daemon stops, after the last send has finished:
    /// flush and close whatever the channel keeps open.
    async fn shutdown(&self) {}
}
