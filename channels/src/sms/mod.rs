//! SMS: numbers, segments and the gateway-neutral request; providers in their own
//! modules (`twilio`).

pub mod http_gateway;
pub mod phone;
pub mod segments;
pub mod signatures;
pub mod twilio;
pub mod vonage;

use serde_json::json;

use crate::{Content, Encode, Message, SendError};

/// Encodes `{"to", "text"}`: what every gateway needs, before provider specifics.
#[derive(Default)]
pub struct SmsEncoder;

impl Encode for SmsEncoder {
    fn extension(&self) -> &'static str {
        "json"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        let Content::Sms { text } = &message.content else {
            return Err(SendError::permanent("invalid_message", "no SMS content"));
        };
        if text.is_empty() {
            return Err(SendError::permanent("invalid_message", "sms.text is empty"));
        }
        serde_json::to_vec(&json!({ "to": message.to.address, "text": text }))
            .map_err(|e| SendError::permanent("invalid_message", e.to_string()))
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
