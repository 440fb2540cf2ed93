//! The LINE webhook: signature check and the events Tayori cares about.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Checks `X-Line-Signature`: Base64(HMAC-SHA256(channel secret, raw body)).
/// The comparison is constant-time (`verify_slice`).
pub fn verify(channel_secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(channel_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// One webhook event, reduced to what the daemon uses.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// `webhookEventId` (a ULID): redeliveries repeat it.
    pub id: String,
    /// LINE's event type: `follow`, `unfollow`, `message`, `postback`, …
    pub kind: String,
    pub user_id: Option<String>,
    /// Milliseconds since the epoch, as LINE stamps it.
    pub timestamp: i64,
    pub redelivery: bool,
    /// The text of a text message, a postback's `data`, or a delivery
    /// completion's `delivery.data` (a notification message's delivery tag).
    pub detail: Option<String>,
    /// For `follow`: the user had blocked the account and unblocked it (`follow.isUnblocked`).
    pub unblocked: bool,
}

/// Reads a verified webhook body. An empty `events` array (LINE's connectivity
/// check) gives an empty list; events without an id are skipped, not an error.
pub fn parse(body: &[u8]) -> Result<Vec<WebhookEvent>, String> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| format!("webhook body is not JSON: {e}"))?;
    let events = root
        .get("events")
        .and_then(Value::as_array)
        .ok_or("webhook body has no `events` array")?;
    Ok(events
        .iter()
        .filter_map(|e| {
            let str_at = |path: &str| e.pointer(path).and_then(Value::as_str).map(str::to_owned);
            Some(WebhookEvent {
                id: str_at("/webhookEventId")?,
                kind: str_at("/type").unwrap_or_default(),
                user_id: str_at("/source/userId"),
                timestamp: e.get("timestamp").and_then(Value::as_i64).unwrap_or(0),
                redelivery: e
                    .pointer("/deliveryContext/isRedelivery")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                detail: str_at("/message/text")
                    .or_else(|| str_at("/postback/data"))
                    .or_else(|| str_at("/delivery/data")),
                unblocked: e
                    .pointer("/follow/isUnblocked")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_are_checked_over_the_raw_body() {
        let body = br#"{"destination":"U0","events":[]}"#;
        let sig = sign("secret", body);
        assert!(verify("secret", body, &sig));
        assert!(!verify("other", body, &sig));
        assert!(!verify(
            "secret",
            br#"{"destination":"U0","events":[] }"#,
            &sig
        ));
        assert!(!verify("secret", body, "not base64!"));
        assert!(!verify("secret", body, ""));
    }

    #[test]
    fn events_are_read_as_the_spec_shapes_them() {
        let body = br#"{"destination":"Uxx","events":[
          {"type":"unfollow","mode":"active","timestamp":1700000000000,"source":{"type":"user","userId":"U1"},
           "webhookEventId":"01HXYZ","deliveryContext":{"isRedelivery":true}},
          {"type":"message","mode":"active","timestamp":1700000000001,"source":{"type":"user","userId":"U2"},
           "webhookEventId":"01HXZ0","deliveryContext":{"isRedelivery":false},"replyToken":"r",
           "message":{"type":"text","id":"1","quoteToken":"q","text":"STOP"}},
          {"type":"beacon","timestamp":1}
        ]}"#;
        let events = parse(body).unwrap();
        assert_eq!(events.len(), 2, "the event without an id is skipped");
        assert_eq!(events[0].kind, "unfollow");
        assert_eq!(events[0].user_id.as_deref(), Some("U1"));
        assert!(events[0].redelivery);
        assert_eq!(events[1].detail.as_deref(), Some("STOP"));
        assert!(parse(b"{}").is_err());
        assert!(parse(br#"{"destination":"U","events":[]}"#)
            .unwrap()
            .is_empty());
    }
}
