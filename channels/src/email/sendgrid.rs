//! SendGrid's Event Webhook, for mail relayed through SendGrid: the signature
//! check and what each event means. Recording is the caller's.
//!
//! SendGrid signs `{timestamp}{raw body}` with ECDSA P-256 / SHA-256 and sends
//! the DER signature in Base64 (`X-Twilio-Email-Event-Webhook-Signature`) with
//! the timestamp (`X-Twilio-Email-Event-Webhook-Timestamp`); the account shows the
//! public key as Base64 of its DER SubjectPublicKeyInfo. Events name their job
//! through a custom argument Tayori adds to each message ([`JOB_ARG`], carried
//! in the `X-SMTPAPI` header SendGrid reads and removes).

use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde::Deserialize;

/// The custom argument (SendGrid's `unique_args`) that carries the job id.
pub const JOB_ARG: &str = "tayori_job_id";

/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1,
/// then a 66-byte BIT STRING): every SendGrid verification key starts with it,
/// and the uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The account's verification key.
#[derive(Clone)]
pub struct WebhookKey {
    /// The uncompressed point (0x04 || X || Y).
    point: Vec<u8>,
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(P-256)")
    }
}

impl WebhookKey {
    /// From the Base64 SendGrid shows (a PEM's body, with or without its
    /// BEGIN/END lines, is accepted too).
    pub fn from_base64(text: &str) -> Result<WebhookKey, String> {
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.split_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "is not Base64: paste the verification key SendGrid shows".to_owned())?;
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(WebhookKey {
                point: point.to_vec(),
            }),
            _ => Err(
                "is not a P-256 public key (SendGrid's are: an ECDSA SubjectPublicKeyInfo)".into(),
            ),
        }
    }

    /// Whether `signature` (Base64 DER) signs `timestamp` followed by `body`.
    pub fn verifies(&self, timestamp: &str, body: &[u8], signature: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return false;
        };
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(&signed, &sig)
            .is_ok()
    }
}

/// One event of a webhook request (the fields Tayori reads).
#[derive(Debug, Clone, Deserialize)]
pub struct SendgridEvent {
    pub event: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub sg_event_id: Option<String>,
    /// Bounce events: `bounce` (the address is refused) or `blocked` (the
    /// receiving server refused this message).
    #[serde(default, rename = "type")]
    pub bounce_type: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, rename = "tayori_job_id")]
    pub job_id: Option<String>,
}

/// What an event means for Tayori.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// `delivered`: the receiving server took it.
    Delivered,
    /// A hard bounce, or a drop because SendGrid already has the address on a
    /// suppression list: the address is suppressed. (`code`, message).
    Bounced { code: String, message: String },
    /// A drop for another reason (the message, not the address): recorded, no
    /// suppression.
    Dropped { message: String },
    /// `blocked` (soft): the receiving server refused this message for now.
    Deferred { message: String },
    /// `spamreport`: the recipient reported it as spam.
    Complained,
    /// `unsubscribe`, `group_unsubscribe`.
    Unsubscribed,
    /// `processed`, `deferred`, `open`, `click` and the rest: Tayori has its own
    /// tracking and retries.
    Ignored,
}

/// SendGrid's drop reasons that name one of its suppression lists.
const LIST_DROPS: [&str; 4] = [
    "Bounced Address",
    "Unsubscribed Address",
    "Spam Reporting Address",
    "Invalid",
];

/// What `e` means. Pure: the tests table it.
pub fn classify(e: &SendgridEvent) -> Meaning {
    let reason = || e.reason.clone().unwrap_or_default();
    match e.event.as_str() {
        "delivered" => Meaning::Delivered,
        "bounce" => match e.bounce_type.as_deref() {
            Some("blocked") => Meaning::Deferred { message: reason() },
            _ => Meaning::Bounced {
                code: format!("sendgrid_bounce_{}", e.status.as_deref().unwrap_or("5.0.0")),
                message: reason(),
            },
        },
        "dropped" => {
            let r = reason();
            if LIST_DROPS.contains(&r.trim()) {
                Meaning::Bounced {
                    code: "sendgrid_dropped".into(),
                    message: r,
                }
            } else {
                Meaning::Dropped { message: r }
            }
        }
        "spamreport" => Meaning::Complained,
        "unsubscribe" | "group_unsubscribe" => Meaning::Unsubscribed,
        _ => Meaning::Ignored,
    }
}

/// The `X-SMTPAPI` header value that makes SendGrid return `job_id` with every
/// event of the message. ASCII only (non-ASCII as `\\uXXXX`): it is a header.
pub fn smtpapi_header(job_id: &str) -> String {
    let json = serde_json::json!({ "unique_args": { JOB_ARG: job_id } }).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: serde_json::Value) -> SendgridEvent {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn events_mean_what_sendgrid_documents() {
        use serde_json::json;
        assert_eq!(
            classify(&ev(json!({"event": "delivered"}))),
            Meaning::Delivered
        );
        assert_eq!(
            classify(&ev(
                json!({"event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 no such user"})
            )),
            Meaning::Bounced {
                code: "sendgrid_bounce_5.1.1".into(),
                message: "550 no such user".into()
            }
        );
        assert_eq!(
            classify(&ev(
                json!({"event": "bounce", "type": "blocked", "reason": "421 try later"})
            )),
            Meaning::Deferred {
                message: "421 try later".into()
            }
        );
        assert_eq!(
            classify(&ev(
                json!({"event": "dropped", "reason": "Bounced Address"})
            )),
            Meaning::Bounced {
                code: "sendgrid_dropped".into(),
                message: "Bounced Address".into()
            }
        );
        assert_eq!(
            classify(&ev(
                json!({"event": "dropped", "reason": "Invalid SMTPAPI header"})
            )),
            Meaning::Dropped {
                message: "Invalid SMTPAPI header".into()
            }
        );
        assert_eq!(
            classify(&ev(json!({"event": "spamreport"}))),
            Meaning::Complained
        );
        assert_eq!(
            classify(&ev(json!({"event": "group_unsubscribe"}))),
            Meaning::Unsubscribed
        );
        for e in [
            "processed",
            "deferred",
            "open",
            "click",
            "group_resubscribe",
        ] {
            assert_eq!(classify(&ev(json!({"event": e}))), Meaning::Ignored, "{e}");
        }
    }

    #[test]
    fn the_job_id_rides_in_a_json_header_escaped() {
        assert_eq!(
            smtpapi_header("a\"b"),
            r#"{"unique_args":{"tayori_job_id":"a\"b"}}"#
        );
        let h = smtpapi_header("注文-1😀");
        assert!(h.is_ascii(), "{h}");
        let back: serde_json::Value = serde_json::from_str(&h).unwrap();
        assert_eq!(back["unique_args"]["tayori_job_id"], "注文-1😀");
    }

    #[test]
    fn sendgrids_published_vector_verifies_and_a_changed_byte_does_not() {
        assert!(WebhookKey::from_base64("not base64!").is_err());
        assert!(WebhookKey::from_base64("AAAA").is_err());
        // SendGrid's published test vector (its libraries' test suites).
        let k = WebhookKey::from_base64("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==").unwrap();
        let sig = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
        let payload =
            r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;
        assert!(k.verifies("1588788367", payload.as_bytes(), sig));
        assert!(!k.verifies("1588788368", payload.as_bytes(), sig));
        assert!(!k.verifies(
            "1588788367",
            payload.replace("test", "best").as_bytes(),
            sig
        ));
        assert!(!k.verifies("1588788367", payload.as_bytes(), "bm90IGEgc2lnbmF0dXJl"));
    }
}
