//! LINE notification messages (PNP): `POST /bot/pnp/push` to the LINE user a
//! phone number belongs to, for transactional messages to customers whose user
//! id is not known.
//!
//! - `to` is the SHA-256 of the number in E.164 (`+819012345678`: `+` and digits
//!   only), lowercase hex, as LINE's spec asks ("a phone number that has been
//!   normalized to E.164 format and hashed with SHA256"): the number itself never
//!   leaves Tayori.
//! - `X-Line-Delivery-Tag` ([`delivery_tag`]) comes back in the webhook's
//!   `delivery` event (`delivery.data`). LINE allows 16–100 characters, a job id
//!   may have 256 bytes: the tag is a digest of the job's idempotency key, the
//!   same on every attempt, and the daemon stores tag → job id before sending.
//! - PNP has no `X-Line-Retry-Key`: LINE cannot tell a retry from a second
//!   message. So only an answer that proves LINE took nothing is retried (a 429,
//!   a refused connection); a 5xx, a timeout or a connection lost mid-request
//!   may have delivered, and the job fails as `line_pnp_unconfirmed` rather than
//!   risk a second message ([`classify`], [`request_error`]).

use std::fmt::Write as _;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{validate_messages, LineEncoder};
use crate::{Content, Message, SendError, Sent};

/// The endpoint's path, on the Messaging API's host (`https://api.line.me`).
pub const PNP_PATH: &str = "/bot/pnp/push";

/// The header LINE returns in `delivery.data` of the delivery completion event.
pub const DELIVERY_TAG_HEADER: &str = "X-Line-Delivery-Tag";

/// Starts every tag Tayori makes: `delivery.data` may also be a hashed phone
/// number (64 hex digits, for a send without a tag) or another sender's tag.
pub const TAG_PREFIX: &str = "tayori-";

/// The code of a failed send whose fate is unknown (see the module docs).
pub const UNCONFIRMED: &str = "line_pnp_unconfirmed";

/// Lowercase hex of SHA-256 over the E.164 number's bytes.
pub fn hashed_phone(e164: &str) -> String {
    hex(&Sha256::digest(e164.as_bytes()))
}

/// The `X-Line-Delivery-Tag` of a job: `tayori-` and the SHA-256 (hex) of its
/// idempotency key (`{job id}/line`), 71 characters whatever the job id's
/// length or bytes — inside LINE's 16–100, and only `[a-z0-9-]`, which any
/// header carries. A digest, not an encoding: a 256-byte id does not fit in
/// 100 characters in any encoding, so the daemon keeps tag → job id in Redis.
pub fn delivery_tag(idempotency_key: &str) -> String {
    format!(
        "{TAG_PREFIX}{}",
        hex(&Sha256::digest(idempotency_key.as_bytes()))
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl LineEncoder {
    /// The body of `POST /bot/pnp/push`: `{to: hashed E.164, messages}`. A
    /// number that is not one in `pnp_region` (or international) is
    /// `invalid_phone`, unreachable as SMS makes it: the job falls back.
    pub fn pnp_body(&self, message: &Message) -> Result<Value, SendError> {
        let Content::LineNotification { messages, phone } = &message.content else {
            return Err(SendError::permanent(
                "invalid_message",
                "no LINE notification content",
            ));
        };
        let Some(region) = &self.pnp_region else {
            return Err(SendError::permanent(
                "invalid_message",
                "LINE notification messages are off (channels.line.pnp)",
            ));
        };
        validate_messages(messages).map_err(|e| SendError::permanent("invalid_message", e))?;
        let e164 = crate::phone::to_e164(phone, region)
            .map_err(|e| SendError::unreachable("invalid_phone", format!("to.phone: {e}")))?;
        Ok(json!({ "to": hashed_phone(&e164), "messages": messages }))
    }
}

/// A request that got no answer. Only a connection never made proves LINE
/// took nothing; a timeout or a connection lost after the request went out
/// may have delivered.
pub fn request_error(e: reqwest::Error) -> SendError {
    if e.is_connect() {
        return crate::provider_http::request_error("line", e);
    }
    let what = if e.is_timeout() {
        "timed out"
    } else {
        "failed"
    };
    SendError::Unconfirmed {
        code: UNCONFIRMED.into(),
        message: format!(
            "the notification message request {what} ({}); LINE may have delivered it, and a \
             notification message has no retry key, so it is not sent again",
            e.without_url()
        ),
    }
}

/// Maps LINE's answer to `POST /bot/pnp/push` to an outcome.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
    let message = || {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    match status.as_u16() {
        200 => {
            let mut sent = super::client::classify(status, headers, body)?;
            sent.details.push(("via", json!("pnp")));
            Ok(sent)
        }
        // The number has no LINE user who can get it (no account, no consent,
        // a number LINE cannot verify): another channel may reach them.
        422 => Err(SendError::unreachable("line_pnp_422", message())),
        // Without a retry key a 409 is no replay of ours: say what LINE said.
        409 => Err(SendError::permanent("line_409", message())),
        s if s >= 500 => Err(SendError::Unconfirmed {
            code: UNCONFIRMED.into(),
            message: format!(
                "LINE answered {s} ({}); it may have delivered the notification message, \
                 which has no retry key, so it is not sent again",
                message()
            ),
        }),
        // 400 (refused as written), 401/403 (the token: the channel pauses) and
        // 429 (nothing taken: retried, or a pause for the monthly limit) mean
        // what they mean for a push.
        _ => super::client::classify(status, headers, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_is_hashed_as_lowercase_hex_of_its_e164_form() {
        // echo -n '+819012345678' | sha256sum
        assert_eq!(
            hashed_phone("+819012345678"),
            "3d06a39d40790f11761295e053029378ae28c4b4f6f301693005e079f3d4ca64"
        );
        let h = hashed_phone("+819012345678");
        assert_eq!(h.len(), 64);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn tags_fit_lines_limits_for_every_job_id() {
        for id in ["j", &"x".repeat(256), "注文/2026", "a\u{0}b"] {
            let tag = delivery_tag(&format!("{id}/line"));
            assert!((16..=100).contains(&tag.len()), "{tag}");
            assert!(tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            assert_eq!(tag, delivery_tag(&format!("{id}/line")), "stable");
        }
        assert_ne!(delivery_tag("a/line"), delivery_tag("b/line"));
    }

    fn encoder() -> LineEncoder {
        LineEncoder {
            pnp_region: Some("JP".into()),
            ..LineEncoder::default()
        }
    }

    fn notification(phone: &str) -> Message {
        Message {
            job_id: "j".into(),
            attempt: 1,
            idempotency_key: "j/line".into(),
            campaign: None,
            customer_id: None,
            to: crate::Recipient::default(),
            content: Content::LineNotification {
                messages: vec![json!({"type":"text","text":"ご注文を承りました"})],
                phone: phone.into(),
            },
        }
    }

    #[test]
    fn national_and_full_width_numbers_hash_as_their_e164_form() {
        let want = hashed_phone("+819012345678");
        for raw in [
            "090-1234-5678",
            "０９０－１２３４－５６７８",
            "+81 90 1234 5678",
        ] {
            let body = encoder().pnp_body(&notification(raw)).unwrap();
            assert_eq!(body["to"], want, "{raw}");
        }
        let bad = encoder().pnp_body(&notification("12")).unwrap_err();
        assert!(matches!(&bad, SendError::Unreachable { code, .. } if code == "invalid_phone"));
        assert!(bad.message().starts_with("to.phone: "), "{bad}");
        assert!(
            !bad.message().contains("12"),
            "never quotes the number: {bad}"
        );
        let off = LineEncoder::default().pnp_body(&notification("09012345678"));
        assert!(matches!(off, Err(SendError::Permanent { .. })));
    }

    #[test]
    fn only_answers_that_prove_nothing_was_taken_are_retried() {
        let none = HeaderMap::new();
        let mut id = HeaderMap::new();
        id.insert("x-line-request-id", "req-1".parse().unwrap());
        let ok = classify(StatusCode::OK, &id, "{}").unwrap();
        assert_eq!(ok.provider_id, "req-1");
        assert_eq!(ok.details, vec![("via", json!("pnp"))]);
        for s in [500, 502, 503, 504] {
            let e = classify(StatusCode::from_u16(s).unwrap(), &none, "{}").unwrap_err();
            assert!(
                matches!(&e, SendError::Unconfirmed { code, .. } if code == UNCONFIRMED),
                "{s}: {e:?}"
            );
        }
        assert!(matches!(
            classify(
                StatusCode::TOO_MANY_REQUESTS,
                &none,
                r#"{"message":"slow down"}"#
            ),
            Err(SendError::RateLimited { .. })
        ));
        assert!(matches!(
            classify(
                StatusCode::UNPROCESSABLE_ENTITY,
                &none,
                r#"{"message":"Failed to send messages"}"#
            ),
            Err(SendError::Unreachable { .. })
        ));
        assert!(matches!(
            classify(StatusCode::CONFLICT, &none, "{}"),
            Err(SendError::Permanent { .. })
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &none, "{}"),
            Err(SendError::Suspended { .. })
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &none, r#"{"message":"bad"}"#),
            Err(SendError::Permanent { .. })
        ));
    }
}
