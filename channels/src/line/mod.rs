//! LINE: the Messaging API push request and the limits the API does not encode in
//! its spec ([`client`] sends it; [`webhook`] verifies and reads what LINE reports back).

pub mod client;
pub mod pnp;
pub mod reads;
pub mod webhook;

pub use client::LineClient;

use serde_json::{json, Value};

use crate::{Content, Encode, Message, SendError};

/// Limits from LINE's documentation (not in the OpenAPI file).
pub const MAX_MESSAGES: usize = 5;
pub const MAX_TEXT_UTF16: usize = 5000;
pub const MAX_ALT_TEXT_UTF16: usize = 1500;

/// Builds the body of `POST /v2/bot/message/push`.
#[derive(Default)]
pub struct LineEncoder {
    /// Send the campaign as `customAggregationUnits` (LINE allows it only for
    /// approved accounts, so it is off unless the config turns it on).
    pub aggregation_units: bool,
    /// The region national numbers are read in for notification messages
    /// ([`pnp`]); `None`: notification messages are off.
    pub pnp_region: Option<String>,
}

impl LineEncoder {
    pub fn push_body(&self, message: &Message) -> Result<Value, SendError> {
        let Content::Line { messages } = &message.content else {
            return Err(SendError::permanent("invalid_message", "no LINE content"));
        };
        validate_messages(messages).map_err(|e| SendError::permanent("invalid_message", e))?;
        let mut body = json!({ "to": message.to.address, "messages": messages });
        // A campaign LINE would refuse as a unit name is simply not aggregated.
        if let Some(unit) = message
            .campaign
            .as_deref()
            .filter(|c| self.aggregation_units && valid_unit(c))
        {
            body["customAggregationUnits"] = json!([unit]);
        }
        Ok(body)
    }
}

/// LINE's rule for aggregation unit names: `^[a-zA-Z0-9_]{1,30}$`.
fn valid_unit(name: &str) -> bool {
    (1..=30).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Encode for LineEncoder {
    fn extension(&self) -> &'static str {
        "json"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        let body = match &message.content {
            Content::LineNotification { .. } => self.pnp_body(message)?,
            _ => self.push_body(message)?,
        };
        serde_json::to_vec(&body)
            .map_err(|e| SendError::permanent("invalid_message", e.to_string()))
    }
}

/// The `X-Line-Retry-Key` for a job: a UUID derived from its idempotency key, so
/// every attempt of the job — a retry, or a redelivery after a crash — sends the
/// same key and LINE delivers the message at most once.
pub fn retry_key(idempotency_key: &str) -> uuid::Uuid {
    // A fixed namespace of Tayori's own (any constant UUID works; this one must never change).
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7a1f_0c2e_5b8d_4e6a_9c3b_1d2e_3f4a_5b6c);
    uuid::Uuid::new_v5(&NAMESPACE, idempotency_key.as_bytes())
}

/// Checks a `messages` array against the limits LINE enforces.
pub fn validate_messages(messages: &[Value]) -> Result<(), String> {
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        return Err(format!(
            "line.messages must hold 1 to {MAX_MESSAGES} message objects, not {}",
            messages.len()
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let kind = m
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("line.messages[{i}].type is missing"))?;
        if kind == "text" {
            let text = m
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("line.messages[{i}].text is missing"))?;
            check_len(text, MAX_TEXT_UTF16, &format!("line.messages[{i}].text"))?;
        }
        if let Some(alt) = m.get("altText") {
            let alt = alt
                .as_str()
                .ok_or_else(|| format!("line.messages[{i}].altText must be a string"))?;
            check_len(
                alt,
                MAX_ALT_TEXT_UTF16,
                &format!("line.messages[{i}].altText"),
            )?;
        }
    }
    Ok(())
}

fn check_len(s: &str, max: usize, field: &str) -> Result<(), String> {
    let units = s.encode_utf16().count();
    if units == 0 || units > max {
        return Err(format!(
            "{field} must be 1 to {max} UTF-16 units, not {units}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_utf16_units() {
        let ok = "a".repeat(5000);
        assert!(validate_messages(&[json!({"type":"text","text": ok})]).is_ok());
        // 2500 emoji outside the BMP are 5000 UTF-16 units: still fine; one more is not.
        let emoji = "😀".repeat(2500);
        assert!(validate_messages(&[json!({"type":"text","text": emoji})]).is_ok());
        let too_long = format!("{emoji}a");
        assert!(validate_messages(&[json!({"type":"text","text": too_long})]).is_err());
    }

    #[test]
    fn retry_keys_are_stable_per_job_and_distinct_between_jobs() {
        assert_eq!(
            retry_key("spring26-C1001/line"),
            retry_key("spring26-C1001/line")
        );
        assert_ne!(
            retry_key("spring26-C1001/line"),
            retry_key("spring26-C1002/line")
        );
        assert_eq!(retry_key("x").get_version_num(), 5);
    }

    #[test]
    fn the_campaign_becomes_an_aggregation_unit_only_when_allowed_and_valid() {
        let msg = |campaign: &str| Message {
            job_id: "j".into(),
            attempt: 1,
            idempotency_key: "j/line".into(),
            campaign: Some(campaign.into()),
            customer_id: None,
            to: crate::Recipient {
                address: "U1".into(),
                ..Default::default()
            },
            content: Content::Line {
                messages: vec![json!({"type":"text","text":"hi"})],
            },
        };
        let on = LineEncoder {
            aggregation_units: true,
            ..LineEncoder::default()
        };
        assert_eq!(
            on.push_body(&msg("spring_26")).unwrap()["customAggregationUnits"],
            json!(["spring_26"])
        );
        assert!(on
            .push_body(&msg("spring-26"))
            .unwrap()
            .get("customAggregationUnits")
            .is_none());
        assert!(LineEncoder::default()
            .push_body(&msg("spring_26"))
            .unwrap()
            .get("customAggregationUnits")
            .is_none());
    }

    #[test]
    fn one_to_five_messages() {
        let m = json!({"type":"text","text":"hi"});
        assert!(validate_messages(&[]).is_err());
        assert!(validate_messages(&vec![m.clone(); 5]).is_ok());
        assert!(validate_messages(&vec![m; 6]).is_err());
    }
}
