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

/// A SendGrid Event Webhook signing key: SendGrid keeps the private half and
/// shows the public one (Base64 of its DER SubjectPublicKeyInfo) in its
/// settings. ECDSA over P-256, made fresh with `ring`.
pub struct SendgridKey {
    pair: ring::signature::EcdsaKeyPair,
    /// Base64 of the DER SubjectPublicKeyInfo, as SendGrid shows it.
    pub public_key: String,
}

impl SendgridKey {
    pub fn generate() -> SendgridKey {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("generate a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("read the P-256 key");
        // SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 } + the uncompressed point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        SendgridKey {
            public_key: base64(&spki),
            pair,
        }
    }

    /// `X-Twilio-Email-Event-Webhook-Signature`: Base64 of the DER ECDSA signature
    /// (SHA-256) of the timestamp header's value followed by the raw body.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let rng = ring::rand::SystemRandom::new();
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let sig = self.pair.sign(&rng, &signed).expect("sign");
        base64(sig.as_ref())
    }
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
