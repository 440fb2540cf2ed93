//! Signed webhooks: a JSON document POSTed to an in-house app, a chat tool or a
//! partner system, signed per Standard Webhooks (<https://www.standardwebhooks.com/>)
//! so receivers verify it with the `standardwebhooks` libraries.
//!
//! [`secret`] reads the `whsec_` secret and signs; [`classify`] says what an answer
//! means; [`sender`] checks the endpoint URL, posts and reads the answer.

pub mod classify;
pub mod secret;
pub mod sender;

pub use classify::classify;
pub use secret::{SecretError, WebhookSecret};
pub use sender::{endpoint_allowed, WebhookEncoder, WebhookSender, WebhookSettings};

/// The `webhook-id` of a job: `msg_` and a UUID derived from the message's
/// idempotency key, so every attempt of the job — a retry, or a redelivery after a
/// crash — sends the same id and the receiver can process it once.
///
/// The idempotency key itself (`{job id}/webhook`) is not sent: a job id may hold
/// `.` (the spec wants none in the signed `{id}.{timestamp}.{body}`, and no
/// user-controlled id), spaces or non-ASCII (which a header cannot carry as text).
pub fn webhook_id(idempotency_key: &str) -> String {
    // A fixed namespace of Tayori's own (any constant UUID works; this one must never change).
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x3c9e_51d4_8a07_4b2f_b6e1_0d5a_92f7_c48e);
    format!(
        "msg_{}",
        uuid::Uuid::new_v5(&NAMESPACE, idempotency_key.as_bytes()).simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_are_stable_and_header_safe() {
        let a = webhook_id("order.42 (京都)/webhook");
        assert_eq!(a, webhook_id("order.42 (京都)/webhook"));
        assert_ne!(a, webhook_id("order.43/webhook"));
        assert!(a.starts_with("msg_") && a.len() == 36, "{a}");
        assert!(a[4..].bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
    }
}
