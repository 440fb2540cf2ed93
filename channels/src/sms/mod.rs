//! SMS: numbers, segments and the gateway-neutral request; providers in their own
//! modules (`twilio`).

pub mod http_gateway;
/// Phone numbers to E.164: channel-neutral (LINE notification messages use it
/// too), kept reachable here where SMS code and its callers always found it.
pub use crate::phone;
pub mod segments;
pub mod signatures;
pub mod twilio;
pub mod vonage;

use serde_json::json;

use crate::{Content, Encode, Encoded, Message, SendError};

/// Encodes what every gateway request carries, after the checks every provider
/// makes ([`prepare`]): `{"to": E.164, "text", "segments", "encoding"}`. The
/// `file` and `null` transports write or discard it, so a dry run refuses a
/// number or a length the real gateway client would refuse, with the same code.
pub struct SmsEncoder {
    limits: SmsLimits,
}

impl SmsEncoder {
    pub fn new(limits: SmsLimits) -> SmsEncoder {
        SmsEncoder { limits }
    }
}

impl Encode for SmsEncoder {
    fn extension(&self) -> &'static str {
        "json"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        self.encode_with_details(message).map(|e| e.bytes)
    }
    fn encode_with_details(&self, message: &Message) -> Result<Encoded, SendError> {
        let prepared = prepare(message, &self.limits)?;
        let bytes = serde_json::to_vec(&json!({
            "to": prepared.to,
            "text": prepared.text,
            "segments": prepared.segments.count,
            "encoding": prepared.segments.encoding.as_str(),
        }))
        .map_err(|e| SendError::permanent("invalid_message", e.to_string()))?;
        Ok(Encoded {
            bytes,
            details: prepared.details(),
        })
    }
}

/// What every SMS provider checks before a message goes out.
#[derive(Debug, Clone)]
pub struct SmsLimits {
    /// For national numbers (`090-…` with `JP`).
    pub default_region: String,
    /// Longer messages fail before anything is sent (each segment is billed).
    pub max_segments: u32,
}

/// A message ready for a provider: the number in E.164, the text and its segments.
pub struct Prepared<'a> {
    pub to: String,
    pub text: &'a str,
    pub segments: segments::Segments,
}

impl Prepared<'_> {
    /// `segments` and `encoding`, for the `sent` event.
    pub fn details(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("segments", self.segments.count.into()),
            ("encoding", self.segments.encoding.as_str().into()),
        ]
    }
}

/// Normalizes the number and counts segments: `invalid_phone` (the job falls back)
/// or `too_many_segments` before any provider is called.
pub fn prepare<'a>(message: &'a Message, limits: &SmsLimits) -> Result<Prepared<'a>, SendError> {
    let Content::Sms { text } = &message.content else {
        return Err(SendError::permanent("invalid_message", "no SMS content"));
    };
    if text.trim().is_empty() {
        return Err(SendError::permanent("invalid_message", "sms.text is empty"));
    }
    let to = phone::to_e164(&message.to.address, &limits.default_region)
        .map_err(|e| SendError::unreachable("invalid_phone", e.to_string()))?;
    let segments = segments::count(text);
    segments::check_limit(&segments, limits.max_segments)
        .map_err(|m| SendError::permanent("too_many_segments", m))?;
    Ok(Prepared { to, text, segments })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::Recipient;

    fn message(to: &str, text: &str) -> Message {
        Message {
            job_id: "j1".into(),
            attempt: 1,
            idempotency_key: "k".into(),
            campaign: None,
            customer_id: None,
            to: Recipient {
                address: to.into(),
                ..Recipient::default()
            },
            content: Content::Sms { text: text.into() },
        }
    }

    fn encoder() -> SmsEncoder {
        SmsEncoder::new(SmsLimits {
            default_region: "JP".into(),
            max_segments: 2,
        })
    }

    /// The dry-run encoding is what the gateway clients send, after their checks.
    #[test]
    fn the_encoder_writes_the_gateway_request_after_the_providers_checks() {
        let m = message("090-1234-5678", "春のセール");
        let encoded = encoder().encode_with_details(&m).unwrap();
        let body: Value = serde_json::from_slice(&encoded.bytes).unwrap();
        assert_eq!(
            body,
            json!({"to": "+819012345678", "text": "春のセール", "segments": 1, "encoding": "ucs2"})
        );
        let limits = SmsLimits {
            default_region: "JP".into(),
            max_segments: 2,
        };
        assert_eq!(
            encoded.details,
            prepare(&m, &limits).unwrap().details(),
            "the sent event's facts are the real clients'"
        );

        for (to, text, class, code) in [
            ("12345", "hi", "unreachable", "invalid_phone"),
            (
                "090-1234-5678",
                &"x".repeat(800),
                "permanent",
                "too_many_segments",
            ),
            ("090-1234-5678", " ", "permanent", "invalid_message"),
        ] {
            let m = message(to, text);
            let dry = encoder().encode(&m).unwrap_err();
            assert_eq!(dry, prepare(&m, &limits).err().unwrap(), "{to} {text}");
            assert_eq!((dry.class(), dry.code()), (class, code));
        }
    }
}
