//! SMS: the gateway-neutral request. Provider protocols come with their own transports.

pub mod phone;
pub mod segments;

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
