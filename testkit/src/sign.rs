//! Webhook signatures as the providers make them, for tests and fuzz targets that
//! send Tayori a signed webhook (or check that a forged one is refused). Written
//! from the providers' documentation with `ring`, never with Tayori's own code.
//! The providers' own libraries sign in `tests/peers/` (`twilio_sign.py`,
//! `vonage_sign.py`), where a test wants a second implementation.
//!
//! Known-answer tests: `tests/line_api_validator.rs` (RFC 4231, FIPS 180-2,
//! RFC 4648, `X-Line-Signature`).

use base64::Engine as _;
use ring::{digest, hmac};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref());
    out
}

/// Standard Base64 (RFC 4648 §4), with padding.
pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Lower-case hexadecimal.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// `X-Line-Signature`: Base64(HMAC-SHA256(channel secret, body)).
pub fn line_signature(secret: &str, body: &[u8]) -> String {
    base64(&hmac_sha256(secret.as_bytes(), body))
}

/// `X-Twilio-Signature`: Base64(HMAC-SHA1(auth token, URL + each parameter's name
/// and value, sorted)).
pub fn twilio_signature<K: AsRef<str>, V: AsRef<str>>(
    token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    base64(hmac::sign(&key, data.as_bytes()).as_ref())
}

/// The HMAC algorithms of Vonage's signed webhooks that `ring` has (`md5hash` and
/// `md5` are signed by `tests/peers/vonage_sign.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VonageHmac {
    Sha1,
    Sha256,
    Sha512,
}

/// Vonage's `sig`: lower-case hex HMAC over `&name=value` for every parameter but
/// `sig`, sorted by name, with `&` and `=` in values replaced by `_`.
pub fn vonage_signature<K: AsRef<str>, V: AsRef<str>>(
    secret: &str,
    method: VonageHmac,
    params: &[(K, V)],
) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| *k != "sig")
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut signed = String::new();
    for (k, v) in sorted {
        signed.push('&');
        signed.push_str(k);
        signed.push('=');
        signed.push_str(&v.replace(['&', '='], "_"));
    }
    let algorithm = match method {
        VonageHmac::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        VonageHmac::Sha256 => hmac::HMAC_SHA256,
        VonageHmac::Sha512 => hmac::HMAC_SHA512,
    };
    let key = hmac::Key::new(algorithm, secret.as_bytes());
    hex(hmac::sign(&key, signed.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_documented_example() {
        // Twilio's documented example (auth token 12345).
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ];
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn line_signature_is_base64_of_rfc_4231_case_2() {
        assert_eq!(
            line_signature("Jefe", b"what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn vonage_signs_sorted_pairs_without_sig() {
        let python_stdlib = {
            // hmac.new(b"s", b"&a=1_2&b=x", hashlib.sha256).hexdigest()
            hex(&hmac_sha256(b"s", b"&a=1_2&b=x"))
        };
        let params = [("b", "x"), ("sig", "ignored"), ("a", "1&2")];
        assert_eq!(
            vonage_signature("s", VonageHmac::Sha256, &params),
            python_stdlib
        );
    }
}
