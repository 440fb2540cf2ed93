//! The Standard Webhooks signing secret and the `v1` signature.
//!
//! The spec (<https://www.standardwebhooks.com/>, "Signature scheme") signs
//! `{msg_id}.{timestamp}.{payload}` with HMAC-SHA256 and sends `v1,` + base64 of the
//! MAC in `webhook-signature`. The secret is random bytes, "at least 24 bytes (192
//! bits, 512 maximum)", shown to people as base64 prefixed with `whsec_`.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The spec's bounds on a symmetric secret, in bytes (192 and 512 bits).
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;

const PREFIX: &str = "whsec_";

/// Why a configured secret is refused. No variant carries any part of the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the webhook secret is empty (expected `whsec_` followed by base64)")]
    Empty,
    #[error(
        "the webhook secret is an asymmetric key (`{0}…`); only symmetric `whsec_` secrets (v1, HMAC-SHA256) are supported"
    )]
    Asymmetric(&'static str),
    #[error(
        "the webhook secret is not standard base64 after `whsec_` (A-Z a-z 0-9 + /, optional = padding; URL-safe `-` and `_` are not accepted because receivers' libraries would silently drop them)"
    )]
    NotBase64,
    #[error("the webhook secret decodes to {0} bytes; Standard Webhooks secrets are {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")]
    Length(usize),
}

/// A Standard Webhooks symmetric secret, ready to sign.
///
/// Parsed from what the receiver's `standardwebhooks` library takes
/// (`Webhook(secret)`): `whsec_` + base64, or the same base64 without the prefix
/// (the library strips the prefix when present and decodes the rest either way).
/// Surrounding whitespace is trimmed (secret files end in a newline) and `=`
/// padding is optional, as in the library. Stricter than the library, so that a
/// secret is never read as different bytes at each end: only the standard base64
/// alphabet is accepted (Python's decoder drops other characters without a word),
/// and the decoded length must be within the spec's 24 to 64 bytes.
#[derive(Clone)]
pub struct WebhookSecret {
    /// The HMAC keyed with the secret, cloned for each signature.
    mac: Hmac<Sha256>,
}

impl WebhookSecret {
    pub fn parse(secret: &str) -> Result<Self, SecretError> {
        let s = secret.trim();
        for asymmetric in ["whsk_", "whpk_"] {
            if s.starts_with(asymmetric) {
                return Err(SecretError::Asymmetric(asymmetric));
            }
        }
        let encoded = s.strip_prefix(PREFIX).unwrap_or(s);
        if encoded.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        // HMAC takes a key of any length; the error cannot happen, but is not unwrapped.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
            .map_err(|_| SecretError::Length(key.len()))?;
        Ok(Self { mac })
    }

    /// The `webhook-signature` value: `v1,` + base64(HMAC-SHA256(secret,
    /// `{msg_id}.{timestamp}.{body}`)), the body byte for byte as it is sent.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag)
        )
    }
}

impl FromStr for WebhookSecret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Never prints the secret.
impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Python library's tests, `test_sign_function` in
    /// standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
    /// (a `whsec_` secret of 24 bytes, a minified-looking JSON body).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_reference_vector() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes()),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn accepts_what_the_library_accepts() {
        let sign = |s: &str| {
            WebhookSecret::parse(s)
                .unwrap()
                .sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes())
        };
        // Without the prefix (the library strips it when present), with a
        // trailing newline from a secret file.
        assert_eq!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), SPEC_SIGNATURE);
        assert_eq!(sign(&format!("{SPEC_SECRET}\n")), SPEC_SIGNATURE);
        // Padding is optional: 25 bytes encode to 36 characters with `==`.
        let b = base64::engine::general_purpose::STANDARD.encode([7u8; 25]);
        assert!(b.ends_with("=="));
        assert_eq!(
            WebhookSecret::parse(&format!("whsec_{b}"))
                .unwrap()
                .sign("m", 1, b""),
            WebhookSecret::parse(&format!("whsec_{}", b.trim_end_matches('=')))
                .unwrap()
                .sign("m", 1, b"")
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_quoting_them() {
        let err = |s: &str| WebhookSecret::parse(s).unwrap_err();
        assert_eq!(err(""), SecretError::Empty);
        assert_eq!(err("whsec_"), SecretError::Empty);
        assert_eq!(err("  \n"), SecretError::Empty);
        assert_eq!(err("whsk_AAAA"), SecretError::Asymmetric("whsk_"));
        assert_eq!(err("whpk_AAAA"), SecretError::Asymmetric("whpk_"));
        // URL-safe base64 and stray characters.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La-aSw";
        assert_eq!(err(secret), SecretError::NotBase64);
        assert_eq!(
            err("whsec_MfKQ9r8G KYqrTwjUPD8ILPZIo2LaLaSw"),
            SecretError::NotBase64
        );
        // Too short (a password, 18 bytes) and too long (65 bytes).
        assert_eq!(
            err("whsec_c2VjcmV0LXBhc3N3b3JkLTEy"),
            SecretError::Length(18)
        );
        let long = base64::engine::general_purpose::STANDARD.encode([1u8; 65]);
        assert_eq!(err(&long), SecretError::Length(65));
        for e in [err(secret), err("whsec_c2VjcmV0LXBhc3N3b3JkLTEy")] {
            let text = e.to_string();
            assert!(!text.contains("MfKQ") && !text.contains("c2Vj"), "{text}");
        }
        let ok = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(format!("{ok:?}"), "WebhookSecret(..)");
    }
}
