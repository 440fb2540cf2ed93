//! The `email` fuzz target: MIME composition from hostile names, addresses,
//! subjects and bodies.

use super::*;

const MAIL_HEADERS: &[&str] = &[
    "from",
    "to",
    "subject",
    "message-id",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "reply-to",
    "dkim-signature",
];

/// A composed mail has only the headers the composer writes, each once, no bare
/// CR or LF, 7-bit headers, and no line over RFC 5322's 998 characters.
pub fn check_mail(eml: &[u8]) {
    let end = eml
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&eml[..end]);
    let mut seen: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        assert!(
            !line.contains(['\r', '\n']),
            "bare CR or LF in a header: {head}"
        );
        let name = match line.starts_with([' ', '\t']) {
            true => seen.last().cloned().unwrap_or_default(),
            false => {
                let name = line
                    .split_once(':')
                    .map(|(n, _)| n.to_ascii_lowercase())
                    .unwrap_or_else(|| panic!("not a header line {line:?} in {head}"));
                assert!(
                    MAIL_HEADERS.contains(&name.as_str()),
                    "unexpected header {name:?}: {head}"
                );
                assert!(!seen.contains(&name), "{name} twice: {head}");
                seen.push(name.clone());
                name
            }
        };
        assert!(line.is_ascii(), "8-bit header {name}: {head}");
        assert!(
            line.len() <= 998,
            "a header line of {} bytes: {line:?}",
            line.len()
        );
    }
    for line in eml[end + 4..].split(|&b| b == b'\n') {
        assert!(
            line.len() <= 999,
            "a line of {} bytes (RFC 5322 allows 998): {:?}…",
            line.len(),
            String::from_utf8_lossy(&line[..line.len().min(120)])
        );
    }
}

thread_local! {
    static ENCODER: EmailEncoder = EmailEncoder::new("Example Shop <news@example.com>", Some("Support <support@example.com>"))
        .expect("valid addresses");
}

pub fn email(data: &[u8]) {
    let p = parts(data, 7);
    let message = Message {
        job_id: p[6].clone(),
        attempt: 1,
        idempotency_key: p[6].clone(),
        campaign: None,
        customer_id: None,
        to: Recipient {
            name: non_empty(&p[0]),
            address: p[1].clone(),
            postal: None,
        },
        content: Content::Email {
            subject: p[2].clone(),
            html: non_empty(&p[3]),
            text: non_empty(&p[4]),
            extras: EmailExtras {
                unsubscribe_url: non_empty(&p[5]).map(|t| format!("{PUBLIC_URL}/u/{t}")),
                return_path: None,
            },
        },
    };
    ENCODER.with(|e| {
        if let Ok(eml) = e.encode(&message) {
            // Without SMTPUTF8 there is no way to write a non-ASCII local part.
            let local = p[1].rsplit_once('@').map_or("", |(l, _)| l);
            assert!(
                local.is_ascii(),
                "sent to a non-ASCII local part: {:?}",
                p[1]
            );
            check_mail(&eml);
        }
    });
}

pub fn email_seeds() -> Vec<Vec<u8>> {
    vec![
        join(&[
            "山田 太郎",
            "taro@example.com",
            "春のセール",
            "<p>こんにちは</p>",
            "hello",
            "token",
            "spring26-C1001",
        ]),
        join(&[
            "Eve\r\nBcc: victim@example.net",
            "a@example.com\r\nBcc: victim@example.net",
            "Sale\r\nX-Injected: 1",
            "<p>x</p>\r\n.\r\nMAIL FROM:<e@x>",
            "line\n.\nQUIT",
            "t>\r\nX: y",
            "../id\r\n",
        ]),
        join(&[
            "\"quoted\" <x@y>",
            "\"a b\"@example.com",
            &"x".repeat(2000),
            "",
            &"y".repeat(3000),
            "",
            "id",
        ]),
        join(&[
            &"n".repeat(1000),
            "taro@例え.jp",
            &format!("{} {}", "w".repeat(1200), "春"),
            "",
            "body",
            &"t".repeat(900),
            "idn",
        ]),
    ]
}
