//! Direct mail: one print row per message. Batched print files come with their own writer.

use serde_json::json;

use crate::{Content, Encode, Message, SendError};

/// Encodes the row a print vendor receives: the postal address and the rendered fields.
#[derive(Default)]
pub struct DmEncoder;

impl Encode for DmEncoder {
    fn extension(&self) -> &'static str {
        "json"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        let Content::Dm { fields } = &message.content else {
            return Err(SendError::permanent("invalid_message", "no DM content"));
        };
        let postal = message
            .to
            .postal
            .as_ref()
            .ok_or_else(|| SendError::unreachable("no_address", "to.postal is missing"))?;
        let row = json!({ "job_id": message.job_id, "postal": postal, "fields": fields });
        serde_json::to_vec(&row).map_err(|e| SendError::permanent("invalid_message", e.to_string()))
    }
}
