//! DKIM signing (RFC 6376, relaxed/relaxed): ed25519-sha256 (RFC 8463) with
//! ed25519-dalek, rsa-sha256 with ring.
//!
//! Written here rather than through lettre's `dkim` feature for two measured reasons
//! (issue 19): lettre formats the message's headers and body again to sign them and
//! canonicalizes header values one character per recursive call, so signing cost
//! 63 µs of daemon CPU per email in `cargo bench --bench email_smtp` (234 against
//! 171 µs without DKIM); and its RSA comes from the `rsa` crate, which carries an
//! unfixed advisory (RUSTSEC-2023-0071, Marvin); ring, already in the tree for TLS,
//! signs RSA. The ed25519 signature itself is most of what is left (24–29 µs with
//! ed25519-dalek, 29–38 µs with ring, on the project's machine). Signatures are
//! checked by dkimpy (`tests/smtp_peer_selftest.rs`, `tests/email.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use sha2::{Digest, Sha256};

/// How a DKIM key is given: `selector._domainkey.domain` publishes its public half.
#[derive(Debug, Clone)]
pub struct DkimKey {
    pub selector: String,
    pub domain: String,
    /// `ed25519` (base64 of the 32-byte seed, RFC 8463) or `rsa` (PKCS#1 or PKCS#8 PEM).
    pub algorithm: String,
    pub private_key: String,
}

/// Signs messages with one key for one domain and selector.
pub struct DkimSigner {
    key: SigningKey,
    /// `v=1; a=…; c=relaxed/relaxed; d=…; s=…; h=…;` — the same on every message.
    fixed_tags: String,
    /// The signed header names, lower-case, in `h=` order.
    signed: Vec<String>,
}

enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(RsaKeyPair, SystemRandom),
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("DkimSigner")
            .field("tags", &self.fixed_tags)
            .finish_non_exhaustive()
    }
}

impl DkimSigner {
    /// A signer for `key`, covering `headers` (absent ones are signed as absent,
    /// which stops them from being added later). The error says what to fix.
    pub fn new(key: &DkimKey, headers: &[&str]) -> Result<DkimSigner, String> {
        let (algorithm, signing) = match key.algorithm.as_str() {
            "ed25519" => {
                let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
                    .decode(key.private_key.trim())
                    .ok()
                    .and_then(|s| s.try_into().ok())
                    .ok_or("the ed25519 DKIM key must be base64 of the 32-byte seed")?;
                let pair = ed25519_dalek::SigningKey::from_bytes(&seed);
                ("ed25519-sha256", SigningKey::Ed25519(pair))
            }
            "rsa" => (
                "rsa-sha256",
                SigningKey::Rsa(rsa_key(&key.private_key)?, SystemRandom::new()),
            ),
            other => {
                return Err(format!(
                    "DKIM algorithm {other:?}: use \"ed25519\" or \"rsa\""
                ))
            }
        };
        for (what, value) in [("selector", &key.selector), ("domain", &key.domain)] {
            let valid = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !valid {
                return Err(format!(
                    "the DKIM {what} {value:?} must be a DNS name (letters, digits, '-', '.', '_')"
                ));
            }
        }
        let signed: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        let fixed_tags = format!(
            "v=1; a={algorithm}; c=relaxed/relaxed; d={}; s={}; q=dns/txt; h={};",
            key.domain,
            key.selector,
            signed.join(":")
        );
        Ok(DkimSigner {
            key: signing,
            fixed_tags,
            signed,
        })
    }

    /// The `DKIM-Signature` header line (with its CRLF) for a formatted message,
    /// to be put in front of it.
    pub fn signature_header(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.signature_header_at(message, time)
    }

    fn signature_header_at(&self, message: &[u8], time: u64) -> Result<Vec<u8>, String> {
        let (head, body) = split_message(message).ok_or("the message has no header/body break")?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body_hash = b64.encode(relaxed_body_hash(body));
        // Folded at the tags: relaxed canonicalization unfolds them, so the
        // signature covers the header exactly as the verifier will read it.
        let mut header = format!(
            "DKIM-Signature: {}\r\n\tt={time}; bh={body_hash};\r\n\tb=",
            self.fixed_tags
        );

        let fields = fields(head);
        let mut signed = Vec::with_capacity(head.len() + header.len());
        for name in &self.signed {
            // RFC 6376 5.4.2: the last instance of a field is the one signed.
            if let Some(field) = fields
                .iter()
                .rev()
                .find(|f| f.name.eq_ignore_ascii_case(name))
            {
                relaxed_header(name, field.value, &mut signed);
                signed.extend_from_slice(b"\r\n");
            }
        }
        // The signature's own header, b= empty and without its final CRLF (3.7).
        relaxed_header(
            "dkim-signature",
            &header.as_bytes()["DKIM-Signature:".len()..],
            &mut signed,
        );

        let signature = match &self.key {
            // RFC 8463: Ed25519 signs the SHA-256 hash of the canonicalized data.
            SigningKey::Ed25519(pair) => pair.sign(&Sha256::digest(&signed)).to_vec(),
            SigningKey::Rsa(pair, rng) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, rng, &signed, &mut sig)
                    .map_err(|_| "RSA signing failed".to_owned())?;
                sig
            }
        };
        header.push_str(&b64.encode(signature));
        header.push_str("\r\n");
        Ok(header.into_bytes())
    }
}

/// An RSA private key from PEM: PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`).
fn rsa_key(pem: &str) -> Result<RsaKeyPair, String> {
    let pem = pem.trim();
    let (label, der) = pem_body(pem).ok_or(
        "the rsa DKIM key must be PEM (-----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----)",
    )?;
    let pair = match label {
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        other => {
            return Err(format!(
                "the rsa DKIM key is a PEM {other:?}, not a private key"
            ))
        }
    };
    pair.map_err(|e| format!("the rsa DKIM key does not load: {e}"))
}

/// The label and decoded contents of a one-block PEM text.
fn pem_body(pem: &str) -> Option<(&str, Vec<u8>)> {
    let rest = pem.strip_prefix("-----BEGIN ")?;
    let (label, rest) = rest.split_once("-----")?;
    let end = format!("-----END {label}-----");
    let (inner, _) = rest.split_once(end.as_str())?;
    let text: String = inner.split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Some((label, der))
}

struct Field<'a> {
    name: &'a str,
    /// Everything after the colon, continuation lines included, without the final CRLF.
    value: &'a [u8],
}

/// Header block and body of a formatted message (split at the first empty line).
fn split_message(message: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = message.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&message[..at + 2], &message[at + 4..]))
}

/// The fields of a header block, continuation lines joined to their field.
fn fields(head: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::with_capacity(16);
    let mut start = 0;
    let mut i = 0;
    while i + 1 < head.len() {
        if head[i] == b'\r' && head[i + 1] == b'\n' {
            let next = head.get(i + 2);
            if !matches!(next, Some(b' ' | b'\t')) {
                let line = &head[start..i];
                if let Some(colon) = line.iter().position(|&b| b == b':') {
                    if let Ok(name) = std::str::from_utf8(&line[..colon]) {
                        out.push(Field {
                            name: name.trim_end(),
                            value: &line[colon + 1..],
                        });
                    }
                }
                start = i + 2;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// RFC 6376 3.4.2: lower-case name, unfolded value, runs of blanks as one space,
/// none around the colon or at the end. Appends `name:value` (no CRLF).
fn relaxed_header(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
    out.push(b':');
    let mut pending_space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = started,
            _ => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(b);
                started = true;
            }
        }
    }
}

/// The SHA-256 of the body canonicalized as RFC 6376 3.4.4 says: runs of blanks
/// as one space, none at line ends, no empty lines at the end; a non-empty body
/// ends with CRLF. Hashed line by line, without a canonical copy: our encoded
/// bodies have no blanks in most lines, which go to the hash as they are (a
/// byte-by-byte copy was 4 % of the daemon's CPU per DKIM-signed email).
fn relaxed_body_hash(body: &[u8]) -> sha2::digest::Output<Sha256> {
    let mut hash = Sha256::new();
    let mut empty_lines = 0usize;
    let mut squeezed = Vec::new();
    // `split` yields a last piece after the final LF (empty for a body ending in
    // CRLF): an empty line, never hashed unless something follows it.
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line: &[u8] = if line.iter().any(|&b| b == b' ' || b == b'\t') {
            squeeze_blanks(line, &mut squeezed);
            &squeezed
        } else {
            line
        };
        if line.is_empty() {
            empty_lines += 1;
            continue;
        }
        for _ in 0..empty_lines {
            hash.update(b"\r\n");
        }
        empty_lines = 0;
        hash.update(line);
        hash.update(b"\r\n");
    }
    hash.finalize()
}

/// `line` with runs of blanks as one space and none at its end, into `out`.
fn squeeze_blanks(line: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut pending_space = false;
    for &b in line {
        if b == b' ' || b == b'\t' {
            pending_space = true;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_header_canonicalization_follows_rfc_6376_example() {
        // RFC 6376 3.4.5: "A: X\r\nB : Y\t\r\n\tZ  \r\n" → "a:X\r\nb:Y Z\r\n".
        let head = b"A: X\r\nB : Y\t\r\n\tZ  \r\n";
        let got: Vec<String> = fields(head)
            .iter()
            .map(|f| {
                let mut out = Vec::new();
                relaxed_header(f.name, f.value, &mut out);
                String::from_utf8(out).unwrap()
            })
            .collect();
        assert_eq!(got, ["a:X", "b:Y Z"]);
    }

    #[test]
    fn relaxed_body_canonicalization_follows_rfc_6376_example() {
        // RFC 6376 3.4.5: " C \r\nD \t E\r\n\r\n\r\n" → " C\r\nD E\r\n".
        let cases: [(&[u8], &[u8]); 5] = [
            (b" C \r\nD \t E\r\n\r\n\r\n", b" C\r\nD E\r\n"),
            (b"", b""),
            (b"\r\n\r\n", b""),
            (b"no final newline", b"no final newline\r\n"),
            (b"a\r\n\r\n  \r\nb \r\n \r\n", b"a\r\n\r\n\r\nb\r\n"),
        ];
        for (body, canonical) in cases {
            assert_eq!(
                relaxed_body_hash(body),
                Sha256::digest(canonical),
                "{body:?}"
            );
        }
    }

    #[test]
    fn keys_that_do_not_load_say_what_is_expected() {
        let key = |algorithm: &str, private_key: &str| DkimKey {
            selector: "s1".into(),
            domain: "example.com".into(),
            algorithm: algorithm.into(),
            private_key: private_key.into(),
        };
        let e = DkimSigner::new(&key("ed25519", "c2hvcnQ="), &["From"]).unwrap_err();
        assert!(e.contains("32-byte seed"), "{e}");
        let e = DkimSigner::new(&key("rsa", "not pem"), &["From"]).unwrap_err();
        assert!(e.contains("PEM"), "{e}");
        let e = DkimSigner::new(&key("dsa", ""), &["From"]).unwrap_err();
        assert!(e.contains("ed25519"), "{e}");
        let mut bad = key("ed25519", &"A".repeat(43));
        bad.private_key.push('=');
        bad.domain = "example.com; x=y".into();
        let e = DkimSigner::new(&bad, &["From"]).unwrap_err();
        assert!(e.contains("domain"), "{e}");
    }

    #[test]
    fn the_signature_header_is_folded_and_signs_only_present_fields() {
        let seed = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let signer = DkimSigner::new(
            &DkimKey {
                selector: "s1".into(),
                domain: "example.com".into(),
                algorithm: "ed25519".into(),
                private_key: seed,
            },
            &["From", "Subject", "Reply-To"],
        )
        .unwrap();
        let message = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";
        let header = String::from_utf8(signer.signature_header_at(message, 1).unwrap()).unwrap();
        assert!(
            header.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"),
            "{header}"
        );
        assert!(header.contains("h=from:subject:reply-to;"), "{header}");
        assert!(header.contains("t=1;"), "{header}");
        assert!(header.ends_with("\r\n") && header.lines().all(|l| l.len() < 998));
        // Deterministic for ed25519: the same input signs the same.
        assert_eq!(
            header,
            String::from_utf8(signer.signature_header_at(message, 1).unwrap()).unwrap()
        );
    }
}
