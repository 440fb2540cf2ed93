//! Checking the signatures providers put on their webhooks: Twilio's
//! `X-Twilio-Signature` and Vonage's `sig`. Pure functions; the daemon's SMS
//! routes call them before anything is recorded.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use ring::hmac as ring_hmac;

/// How far `timestamp` may be from now, either way (Vonage's advice: five minutes).
const MAX_SKEW_SECS: i64 = 5 * 60;

/// How Vonage signs its SMS webhooks (the dashboard's "signature method").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    /// `md5hash`: hex(MD5(signed string + secret)), Vonage's default.
    Md5Hash,
    /// `md5`: hex(HMAC-MD5(secret, signed string)).
    HmacMd5,
    /// `sha1`: hex(HMAC-SHA1(secret, signed string)).
    HmacSha1,
    /// `sha256`: hex(HMAC-SHA256(secret, signed string)).
    HmacSha256,
    /// `sha512`: hex(HMAC-SHA512(secret, signed string)).
    HmacSha512,
}

impl std::str::FromStr for SignatureMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "md5hash" => SignatureMethod::Md5Hash,
            "md5" => SignatureMethod::HmacMd5,
            "sha1" => SignatureMethod::HmacSha1,
            "sha256" => SignatureMethod::HmacSha256,
            "sha512" => SignatureMethod::HmacSha512,
            other => {
                return Err(format!(
                    "{other:?} is not a Vonage signature method: use \"md5hash\", \"md5\", \"sha1\", \"sha256\" or \"sha512\" (as chosen in the dashboard)"
                ))
            }
        })
    }
}

/// What `/webhooks/vonage` checks signatures with.
#[derive(Clone)]
pub struct VonageSignature {
    pub secret: String,
    pub method: SignatureMethod,
}

impl std::fmt::Debug for VonageSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageSignature")
            .field("secret", &"…")
            .field("method", &self.method)
            .finish()
    }
}

/// Twilio's signature check, trying the URL as called and with a default port
/// added or removed (Twilio's own validators do the same).
pub fn verify_twilio(token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let key = ring_hmac::Key::new(ring_hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let signed = |url: &str| {
        let mut data = url.to_owned();
        for (k, v) in &sorted {
            data.push_str(k);
            data.push_str(v);
        }
        ring_hmac::verify(&key, data.as_bytes(), &given).is_ok()
    };
    url_variants(url).iter().any(|u| signed(u))
}

/// The URL, and the same with the scheme's default port toggled.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        let Some(rest) = url.strip_prefix(scheme) else {
            continue;
        };
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some(bare) = host.strip_suffix(port) {
            out.push(format!("{scheme}{bare}{path}"));
        } else if !host.contains(':') {
            out.push(format!("{scheme}{host}{port}{path}"));
        }
    }
    out
}

/// Checks `sig` and the freshness of `timestamp`; `Err` is the metric's reason.
pub fn verify_vonage(
    key: &VonageSignature,
    params: &[(String, String)],
    now: i64,
) -> Result<(), &'static str> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let given = get("sig")
        .and_then(|s| hex_decode(s.trim()))
        .ok_or("bad_signature")?;
    let expected = digest(key, &signed_string(params));
    if !constant_time_eq(&given, &expected) {
        return Err("bad_signature");
    }
    let timestamp: i64 = get("timestamp")
        .and_then(|t| t.trim().parse().ok())
        .ok_or("stale")?;
    if now.abs_diff(timestamp) > MAX_SKEW_SECS.unsigned_abs() {
        return Err("stale");
    }
    Ok(())
}

/// What Vonage signs: `&name=value` for every parameter but `sig`, sorted by name,
/// with `&` and `=` in values replaced by `_`.
fn signed_string(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sig").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (name, value) in sorted {
        out.push('&');
        out.push_str(name);
        out.push('=');
        out.push_str(&value.replace(['&', '='], "_"));
    }
    out
}

/// The signature's bytes for `signed`, by the configured method.
fn digest(key: &VonageSignature, signed: &str) -> Vec<u8> {
    let secret = key.secret.as_bytes();
    let ring = |alg| {
        let k = ring_hmac::Key::new(alg, secret);
        ring_hmac::sign(&k, signed.as_bytes()).as_ref().to_vec()
    };
    match key.method {
        SignatureMethod::Md5Hash => {
            use md5::Digest as _;
            let mut h = md5::Md5::new();
            h.update(signed.as_bytes());
            h.update(secret);
            h.finalize().to_vec()
        }
        SignatureMethod::HmacMd5 => {
            let mut mac = hmac::Hmac::<md5::Md5>::new_from_slice(secret)
                .expect("HMAC takes a key of any length");
            mac.update(signed.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        SignatureMethod::HmacSha1 => ring(ring_hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
        SignatureMethod::HmacSha256 => ring(ring_hmac::HMAC_SHA256),
        SignatureMethod::HmacSha512 => ring(ring_hmac::HMAC_SHA512),
    }
}

/// Hex in either case (Vonage's libraries differ) to bytes; `None` if not hex.
fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// Equal bytes, in time that depends on the length only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    type Params = Vec<(String, String)>;

    fn pairs(p: &[(&str, &str)]) -> Params {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn key(method: SignatureMethod) -> VonageSignature {
        VonageSignature {
            secret: "secret".into(),
            method,
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_signed_string_sorts_drops_sig_and_replaces_separators_in_values() {
        let p = pairs(&[
            ("text", "a=b&c"),
            ("sig", "ffff"),
            ("msisdn", "819012345678"),
            ("message-timestamp", "2026-04-14 12:00:05"),
            ("api-key", "abc"),
            ("timestamp", "1461605396"),
            ("client-ref", "spring26/C1001"),
        ]);
        assert_eq!(
            signed_string(&p),
            "&api-key=abc&client-ref=spring26/C1001&message-timestamp=2026-04-14 12:00:05\
             &msisdn=819012345678&text=a_b_c&timestamp=1461605396"
        );
        // Byte order: upper case before lower case, `-` before letters.
        let p = pairs(&[("b", ""), ("B", "x"), ("a-b", "1"), ("ab", "2")]);
        assert_eq!(signed_string(&p), "&B=x&a-b=1&ab=2&b=");
        assert_eq!(signed_string(&pairs(&[("sig", "x")])), "");
    }

    /// The vector from the tests of Vonage's Python SDK (`test_check_signature`:
    /// a=1, b=2, timestamp=1461605396, secret "secret", md5hash).
    #[test]
    fn vonages_own_md5hash_vector_verifies() {
        let mut p = pairs(&[("a", "1"), ("b", "2"), ("timestamp", "1461605396")]);
        let k = key(SignatureMethod::Md5Hash);
        assert_eq!(
            hex(&digest(&k, &signed_string(&p))),
            "6af838ef94998832dbfc29020b564830"
        );
        p.push(("sig".into(), "6AF838EF94998832DBFC29020B564830".into()));
        let now = 1461605396 + 299;
        assert_eq!(
            verify_vonage(&k, &p, now),
            Ok(()),
            "upper-case hex is accepted"
        );
        assert_eq!(verify_vonage(&k, &p, 1461605396 - 301), Err("stale"));
        assert_eq!(verify_vonage(&k, &p, 1461605396 + 301), Err("stale"));
        // Another method, a changed value or an added parameter: refused.
        assert_eq!(
            verify_vonage(&key(SignatureMethod::HmacMd5), &p, now),
            Err("bad_signature")
        );
        let mut tampered = p.clone();
        tampered[1].1 = "3".into();
        assert_eq!(verify_vonage(&k, &tampered, now), Err("bad_signature"));
        let mut added = p.clone();
        added.push(("c".into(), "3".into()));
        assert_eq!(verify_vonage(&k, &added, now), Err("bad_signature"));
        p.pop();
        assert_eq!(verify_vonage(&k, &p, now), Err("bad_signature"), "no sig");
        p.push(("sig".into(), "6af838ef94998832dbfc29020b56483".into()));
        assert_eq!(
            verify_vonage(&k, &p, now),
            Err("bad_signature"),
            "odd length"
        );
    }

    #[test]
    fn a_signature_without_a_timestamp_is_not_fresh() {
        let k = key(SignatureMethod::HmacSha256);
        let mut p = pairs(&[("a", "1")]);
        let sig = hex(&digest(&k, &signed_string(&p)));
        p.push(("sig".into(), sig));
        assert_eq!(verify_vonage(&k, &p, 0), Err("stale"));
    }

    #[test]
    fn digests_have_each_methods_length() {
        for (method, len) in [
            (SignatureMethod::Md5Hash, 16),
            (SignatureMethod::HmacMd5, 16),
            (SignatureMethod::HmacSha1, 20),
            (SignatureMethod::HmacSha256, 32),
            (SignatureMethod::HmacSha512, 64),
        ] {
            assert_eq!(digest(&key(method), "&a=1").len(), len, "{method:?}");
        }
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"ac"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert_eq!(hex_decode("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_decode("0g"), None);
        assert_eq!(hex_decode(""), None);
    }

    /// The example from Twilio's security documentation; the signature was computed
    /// with Twilio's own `RequestValidator` (the `twilio` Python package).
    #[test]
    fn twilios_documented_example_verifies() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let token = "12345";
        assert!(verify_twilio(
            token,
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify_twilio(
            token,
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgR="
        ));
        let mut tampered = params.clone();
        tampered[2].1 = "1235".into();
        assert!(!verify_twilio(
            token,
            url,
            &tampered,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(verify_twilio(
            token,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }
}
