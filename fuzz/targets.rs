//! The fuzz targets' bodies, shared by the cargo-fuzz binaries
//! (`fuzz/fuzz_targets/*.rs`, nightly and libFuzzer, run by `scripts/fuzz.sh`) and
//! the stable smoke run CI does on every test run (`tests/fuzz_smoke.rs`, which
//! includes this file with `#[path]`): both exercise exactly the same code.
//!
//! Each target takes arbitrary bytes and must not panic, hang or allocate without
//! bound. Where a property is cheap to state it is asserted too — a sealed token
//! opens to what was sealed and a tampered one to nothing, a mail never gains a
//! header, a variable prints as text, a forged webhook is never accepted — so the
//! fuzzer looks for wrong answers as well as crashes.
//!
//! Inputs of several parts are split at 0xFF bytes (never valid UTF-8, so each
//! part is text unless a mutation breaks it); a part missing is empty.

#![allow(dead_code)] // each fuzz binary uses one target

use std::cell::RefCell;
use std::sync::Arc;

use axum::body::Body;
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use base64::Engine as _;
use ring::hmac;
use serde_json::{json, Value};
use tayori::channel::{registry, Channels, Compose};
use tayori::channel_id::ChannelId;
use tayori::config::Config;
use tayori::job::Job;
use tayori::render::Renderer;
use tayori::tracking::{Purpose, Sealer, Tracked};
use tayori_channels::email::EmailEncoder;
use tayori_channels::sms::{phone, segments};
use tayori_channels::{Content, EmailExtras, Encode, Message, PostalAddress, Recipient};

/// One fuzz target: its name (the cargo-fuzz binary and `fuzz/corpus/{name}/`),
/// its body, and seeds made in code (tokens sealed with [`SECRET`], signed bodies)
/// on top of the corpus files.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order the smoke run and `scripts/fuzz.sh` take them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "job",
        run: job,
        seeds: job_seeds,
    },
    Target {
        name: "render",
        run: render,
        seeds: job_seeds,
    },
    Target {
        name: "email",
        run: email,
        seeds: email_seeds,
    },
    Target {
        name: "tracking_token",
        run: tracking_token,
        seeds: token_seeds,
    },
    Target {
        name: "dsn",
        run: dsn,
        seeds: dsn_seeds,
    },
    Target {
        name: "line_webhook",
        run: line_webhook,
        seeds: line_seeds,
    },
    Target {
        name: "http",
        run: http,
        seeds: http_seeds,
    },
    Target {
        name: "sms",
        run: sms,
        seeds: sms_seeds,
    },
    Target {
        name: "dm",
        run: dm,
        seeds: dm_seeds,
    },
    Target {
        name: "provider_answers",
        run: provider_answers,
        seeds: provider_seeds,
    },
];

/// Fragments the mutators splice in: what attackers try and where parsers break.
pub const DICTIONARY: &[&str] = &[
    "\r\n",
    "\n",
    "\r",
    "\r\n.\r\n",
    "\r\nBcc: evil@example.net",
    "\u{0}",
    "\u{2028}",
    "\u{85}",
    "\u{feff}",
    "{{ 7*7 }}",
    "{% for i in range(99999) %}",
    "{% endfor %}",
    "{{ 'x' * 1000 }}",
    "{{ unsubscribe_url }}",
    "../",
    "%2e%2e%2f",
    "%00",
    "%FF",
    "\"",
    "\\",
    "<",
    "=?utf-8?b?",
    "javascript:",
    "https://evil.example/",
    "//evil.example",
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551616",
    "1e999",
    "[[[[[[[[[[[[[[[[",
    "{\"a\":",
    "\u{1F600}",
    "𠮷",
    "ｰ",
    "〒",
    "１２３",
    "--boundary",
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n",
    "Content-Type: message/delivery-status\r\n",
    "Content-Type: message/rfc822\r\n",
    "Final-Recipient: rfc822; a@example.com\r\n",
    "Status: 5.1.1\r\n",
    "webhookEventId",
    "timestamp",
    "client-ref",
];

/// The tracking secret of the `http`, `render` and `tracking_token` targets.
pub const SECRET: &str = "fuzz-tracking-secret-0123456789abcdef";
const PUBLIC_URL: &str = "https://t.example.com";
const LINE_SECRET: &str = "fuzz-line-channel-secret";
const TWILIO_TOKEN: &str = "fuzz-twilio-auth-token";
const VONAGE_SECRET: &str = "fuzz-vonage-signature-secret";
/// The daemon's default `queue.max_job_bytes`.
const MAX_JOB_BYTES: usize = 256 * 1024;

/// Runs `f` with the panic hook silenced, so a panic the code under test catches
/// itself stays quiet, while one that escapes still aborts as libFuzzer expects
/// (its hook aborts on every panic, caught or not). For cargo-fuzz binaries only:
/// the hook is process-wide.
pub fn escaping_panics_only(f: impl FnOnce() + std::panic::UnwindSafe) {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    if let Err(payload) = result {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        eprintln!("panic escaped the target: {message}");
        std::process::abort();
    }
}

/// Up to `n` parts of `data`, split at 0xFF, each as (lossy) text.
pub fn parts(data: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> = data
        .splitn(n, |&b| b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    out.resize(n, String::new());
    out
}

/// Parts joined the way [`parts`] splits them (for seeds).
pub fn join(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0xFF);
        }
        out.extend_from_slice(p.as_bytes());
    }
    out
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A small deterministic number from the input, to pick variants.
fn pick(data: &[u8], n: usize) -> usize {
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % n.max(1) as u64) as usize
}

// ---------------------------------------------------------------------------
// job: the CRM's JSON, as the worker reads it from the stream (lossy UTF-8).

pub fn job(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let job = match registry::parse_job(&raw, MAX_JOB_BYTES) {
        Ok(job) => job,
        Err(e) => {
            assert!(!e.field.is_empty(), "an error names a field: {e:?}");
            return;
        }
    };
    assert!(
        !job.id.trim().is_empty() && job.id.len() <= 256 && !job.id.chars().any(char::is_control),
        "validation let through the id {:?}",
        job.id
    );
    for v in [&job.campaign, &job.customer_id] {
        assert!(
            v.as_ref()
                .is_none_or(|v| v.len() <= tayori::job::MAX_REF_BYTES),
            "validation let through a {}-byte campaign or customer id",
            v.as_ref().map_or(0, String::len)
        );
    }
    let _ = job.stream_channel();
    for hop in 0..job.fallback.len() + 2 {
        let _ = job.channel_at(hop);
    }
    let _ = (job.send_at(), job.expires_at(), job.is_best());
    if let Some(best) = job.best_time() {
        let _ = best.window(jiff::Timestamp::now());
    }
    for plugin in registry::PLUGINS {
        if let Some(address) = plugin.address(&job.to) {
            let masked = plugin.mask(address);
            assert!(masked.contains("***"), "{masked:?} is not masked");
        }
        let _ = plugin.recipient(&job.to);
    }
    // The file transport names files after the id: never outside its directory.
    let stem = tayori_channels::file::file_stem(&job.id);
    assert!(
        !stem.is_empty()
            && !stem.starts_with('.')
            && !stem.contains(['/', '\\', '\0'])
            && stem.len() <= 128 + 17,
        "file name {stem:?} for id {:?}",
        job.id
    );
    // What Tayori writes back (a `best` job with its choice) reads again.
    let again = serde_json::to_string(&job).expect("a parsed job serializes");
    if let Err(e) = registry::parse_job(&again, usize::MAX) {
        panic!("a re-serialized job does not parse again: {e}: {again}");
    }
}

fn job_seeds() -> Vec<Vec<u8>> {
    let full = json!({
        "id": "spring26-C1001", "campaign": "spring26", "customer_id": "C1001",
        "channel": "line", "fallback": ["email", "sms", "dm"],
        "to": {"name": "山田 太郎", "email": "taro@example.com",
               "line_user_id": "U4af4980629a1b2c3d4e5f60718293a4b", "phone": "090-1234-5678",
               "postal": {"postal_code": "100-0001", "address1": "東京都千代田区千代田1-1",
                          "address2": "", "name": "山田 太郎", "honorific": "様"},
               "timezone": "Asia/Tokyo"},
        "template": "fz", "vars": {"v": "{{ 7*7 }} https://shop.example.com/p/1", "points": 1200},
        "send_at": "2026-11-23T09:00:00+09:00", "expires_at": "2026-11-24T00:00:00+09:00",
        "tags": ["vip"], "kind": "marketing", "cap": "defer"
    });
    let inline = json!({
        "id": "inline-1", "channel": "email",
        "to": {"email": "a@example.com", "name": "Eve\r\nBcc: x@example.net"},
        "content": {
            "email": {"subject": "Hi {{ to.name }}", "html": "<a href=\"https://x.example/\">{{ v }}</a>"},
            "line": {"messages": [{"type": "text", "text": "{{ v }}"}]},
            "sms": {"text": "{{ v }} https://x.example/s"},
            "dm": {"fields": {"message1": "{{ v }}"}}
        },
        "vars": {"v": "{% for i in range(3) %}x{% endfor %}"}
    });
    let best = json!({
        "id": "best-1", "channel": "best", "channels": ["line", "email"],
        "to": {"email": "a@example.com"}, "template": "text", "vars": {"v": "x"},
        "send_at": {"best_within": "24h"}
    });
    let between = json!({
        "id": "best-2", "channel": "sms", "to": {"phone": "+819012345678"},
        "template": "fz", "vars": {"v": "hello"},
        "send_at": {"best_between": ["2026-11-23T09:00:00+09:00", "2026-11-24T09:00:00+09:00"]}
    });
    let runaway = json!({
        "id": "loop-1", "channel": "sms", "to": {"phone": "+819012345678"},
        "content": {"sms": {"text": "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"}}
    });
    vec![
        full.to_string().into_bytes(),
        inline.to_string().into_bytes(),
        best.to_string().into_bytes(),
        between.to_string().into_bytes(),
        runaway.to_string().into_bytes(),
        br#"{"id":"../../etc/passwd","channel":"dm","template":"fz","to":{"postal":{"postal_code":"1000001","address1":"a","name":"b"}},"vars":{"v":1}}"#.to_vec(),
        br#"{"id":"x","channel":"email","template":"t","vars":{"a":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}}"#.to_vec(),
        b"{not json".to_vec(),
    ]
}

// ---------------------------------------------------------------------------
// render: a job's content through the templates and the tracker, as the worker does.

struct RenderKit {
    renderer: Renderer,
    channels: Channels,
    encoder: EmailEncoder,
}

thread_local! {
    static RENDER: RenderKit = render_kit();
}

fn render_kit() -> RenderKit {
    // Fuel as a config would set it, low enough that a runaway loop ends quickly.
    let mut renderer = Renderer::empty(Some(20_000));
    let fz = vec![
        ("subject.txt", "{{ v }}".to_owned()),
        (
            "email.html",
            "<html><body><p>{{ v }}</p><a href=\"https://shop.example.com/p?id={{ job.id }}\">shop</a>\
             <a href=\"{{ unsubscribe_url }}\">stop</a></body></html>"
                .to_owned(),
        ),
        ("sms.txt", "{{ v }}".to_owned()),
        (
            "line.json",
            r#"[{"type":"text","text":"{{ v }}"},{"type":"template","altText":"a","template":{"type":"buttons","text":"{{ v }}","actions":[{"type":"uri","label":"l","uri":"https://shop.example.com/{{ job.id }}"}]}}]"#
                .to_owned(),
        ),
        ("dm.json", r#"{"message1":"{{ v }}"}"#.to_owned()),
    ];
    renderer.add_set("fz", fz).expect("the fuzz template loads");
    let text = vec![
        ("subject.txt", "s".to_owned()),
        (
            "email.txt",
            "{{ v }} https://shop.example.com/x {{ unsubscribe_url }}".to_owned(),
        ),
    ];
    renderer
        .add_set("text", text)
        .expect("the fuzz template loads");
    RenderKit {
        renderer,
        channels: channels(TWILIO_SMS),
        encoder: EmailEncoder::new("Example Shop <news@example.com>", None).expect("a valid From"),
    }
}

/// `[channels.sms]` through Twilio (its webhook verifies with [`TWILIO_TOKEN`]).
const TWILIO_SMS: &str = r#"
provider = "twilio"
track_clicks = false
[channels.sms.twilio]
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "TWILIO_TOKEN"
from = "+15005550006"
"#;

/// `[channels.sms]` through Vonage, signed with [`VONAGE_SECRET`] (HMAC-SHA256).
const VONAGE_SMS: &str = r#"
provider = "vonage"
track_clicks = false
[channels.sms.vonage]
api_key = "k"
api_secret = "s"
from = "Tayori"
signature_secret = "VONAGE_SECRET"
signature_method = "sha256"
"#;

/// Every channel as the daemon builds it from a config: tracking on (opens,
/// clicks, VERP, LINE and SMS links), each channel's webhooks verified with the
/// secrets above, SMS through `sms`.
fn channels(sms: &str) -> Channels {
    let sms = sms
        .replace("TWILIO_TOKEN", TWILIO_TOKEN)
        .replace("VONAGE_SECRET", VONAGE_SECRET);
    let text = format!(
        r#"
[redis]
[http]
public_url = "{PUBLIC_URL}"
tracking_secret = "{SECRET}"
[channels.email]
transport = "null"
from = "Example Shop <news@example.com>"
verp = true
envelope_from = "bounces@example.com"
[channels.line]
transport = "null"
channel_secret = "{LINE_SECRET}"
[channels.dm]
transport = "null"
[channels.sms]
{sms}
"#
    );
    let config = Config::parse(&text, std::path::Path::new("fuzz.toml"), |_| None)
        .expect("the fuzz config parses");
    Channels::from_config(&config).expect("the fuzz channels configure")
}

pub fn render(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    // Smaller than the daemon's limit: each render may be slow in a debug build.
    let Ok(job) = registry::parse_job(&raw, 16 * 1024) else {
        return;
    };
    RENDER.with(|kit| {
        let cx = Compose {
            renderer: &kit.renderer,
            tracker: kit.channels.tracker.as_deref(),
        };
        let compose = |id: ChannelId| {
            kit.channels
                .get(id)
                .expect("every channel is enabled")
                .compose(&job, &cx)
        };
        let email = tayori::channel::email::ID;
        if let Ok((content, _)) = compose(email) {
            let message = message_for(&job, email, content);
            if let Ok(eml) = kit.encoder.encode(&message) {
                check_mail(&eml);
            }
        }
        let _ = compose(tayori::channel::line::ID);
        let _ = compose(tayori::channel::dm::ID);
        // Variables are data: `{{ v }}` prints v exactly, whatever it contains.
        let sms = compose(tayori::channel::sms::ID).map(|(content, _)| content);
        if job.template.as_deref() == Some("fz") {
            if let Some(Value::String(v)) = job.vars.get("v") {
                match sms {
                    Ok(Content::Sms { text }) => assert_eq!(text, v.trim_end()),
                    other => panic!("{{{{ v }}}} with a string v did not render: {other:?}"),
                }
            }
        }
    });
}

fn message_for(job: &Job, kind: ChannelId, content: Content) -> Message {
    Message {
        job_id: job.id.clone(),
        attempt: 1,
        idempotency_key: format!("{}/{kind}", job.id),
        campaign: job.campaign.clone(),
        customer_id: job.customer_id.clone(),
        to: registry::plugin(kind)
            .map(|p| p.recipient(&job.to))
            .unwrap_or_default(),
        content,
    }
}

// ---------------------------------------------------------------------------
// email: MIME composition from hostile names, addresses, subjects and bodies.

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

fn email_seeds() -> Vec<Vec<u8>> {
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

// ---------------------------------------------------------------------------
// tracking_token: sealed click/open/unsubscribe tokens and VERP tokens.

thread_local! {
    static SEALER: Sealer = Sealer::new(SECRET);
}

pub fn tracking_token(data: &[u8]) {
    SEALER.with(|s| {
        let text = String::from_utf8_lossy(data);
        for purpose in [Purpose::Open, Purpose::Click, Purpose::Unsubscribe] {
            let _ = s.open(purpose, &text);
        }
        let p = parts(data, 6);
        let _ = s.open_verp(&p[0], &p[1]);

        // What is sealed opens to itself, for its purpose only; one changed
        // character opens to nothing.
        let t = Tracked {
            channel: registry::ids()
                .nth(pick(data, registry::PLUGINS.len()))
                .unwrap_or(tayori::channel::email::ID),
            job_id: p[0].clone(),
            address: p[1].clone(),
            campaign: non_empty(&p[2]),
            customer_id: non_empty(&p[3]),
            sent_at: data
                .iter()
                .fold(0i64, |a, &b| a.rotate_left(8) ^ i64::from(b)),
            url: non_empty(&p[4]),
        };
        let token = s.seal(Purpose::Click, &t);
        // `open` refuses tokens over 32 KiB (links of about 20 KB): no mail
        // client follows a longer one anyway.
        if token.len() > 32 * 1024 {
            return;
        }
        assert_eq!(s.open(Purpose::Click, &token).as_ref(), Some(&t));
        assert_eq!(s.open(Purpose::Unsubscribe, &token), None);
        let mut chars: Vec<char> = token.chars().collect();
        let i = pick(data, chars.len().saturating_sub(1).max(1));
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(s.open(Purpose::Click, &tampered), None, "tampered at {i}");

        let verp = s.verp_token(&t.job_id, &t.address);
        assert_eq!(
            s.open_verp(&verp, &t.address).as_deref(),
            Some(t.job_id.as_str())
        );
        assert_eq!(s.open_verp(&verp, &format!("{}x", t.address.trim())), None);
        let stored = s.stored_verp_token(&t.job_id, &t.address);
        assert!(s.opens_stored_verp(&stored, &t.job_id, &t.address));
        assert!(!s.opens_stored_verp(&stored, &t.job_id, &format!("{}x", t.address.trim())));
    });
}

fn token_seeds() -> Vec<Vec<u8>> {
    let s = Sealer::new(SECRET);
    let t = Tracked {
        channel: tayori::channel::email::ID,
        job_id: "spring26-C1001".into(),
        address: "taro@example.com".into(),
        campaign: Some("spring26".into()),
        customer_id: Some("C1001".into()),
        sent_at: 1_790_000_000,
        url: Some("https://shop.example.com/p/1".into()),
    };
    vec![
        s.seal(Purpose::Click, &t).into_bytes(),
        s.seal(Purpose::Unsubscribe, &t).into_bytes(),
        join(&[
            &s.verp_token("spring26-C1001", "taro@example.com"),
            "taro@example.com",
        ]),
        join(&["job", "a@example.com", "", "", "javascript:alert(1)", ""]),
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
    ]
}

// ---------------------------------------------------------------------------
// dsn: bounce reports, as the MTA pipe and /webhooks/bounce receive them.

pub fn dsn(data: &[u8]) {
    if let Ok(report) = tayori_channels::email::dsn::parse(data) {
        assert!(!report.recipients.is_empty());
        for r in &report.recipients {
            let _ = (r.address(), r.is_hard(), r.is_soft());
        }
    }
}

fn dsn_seeds() -> Vec<Vec<u8>> {
    let report = "From: MAILER-DAEMON@mx.example.net\r\n\
To: bounces+74657374-0011223344556677@example.com\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain\r\n\
\r\n\
The mail could not be delivered.\r\n\
--b\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
\r\n\
Final-Recipient: rfc822; taro@example.com\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\
\r\n\
--b\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Message-ID: <test@example.com>\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: nested\r\n\
\r\n\
x\r\n\
--b--\r\n";
    vec![report.as_bytes().to_vec()]
}

// ---------------------------------------------------------------------------
// line_webhook: LINE's signature check and body parser.

pub fn line_webhook(data: &[u8]) {
    use tayori_channels::line::webhook;
    let p = parts(data, 2);
    let _ = webhook::verify(LINE_SECRET, data, &p[1]);
    let _ = webhook::parse(data);
    // Our own signature over the body verifies; over a changed body it does not.
    let signature = line_signature(data);
    assert!(webhook::verify(LINE_SECRET, data, &signature));
    let mut changed = data.to_vec();
    changed.push(b' ');
    assert!(!webhook::verify(LINE_SECRET, &changed, &signature));
}

fn line_signature(body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, LINE_SECRET.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, body).as_ref())
}

fn line_seeds() -> Vec<Vec<u8>> {
    let body = json!({"destination": "U0", "events": [
        {"type": "unfollow", "mode": "active", "timestamp": 1_790_000_000_000_i64,
         "source": {"type": "user", "userId": "U1"}, "webhookEventId": "01JBLOCK",
         "deliveryContext": {"isRedelivery": false}},
        {"type": "message", "timestamp": 1, "source": {"type": "user", "userId": "U2"},
         "webhookEventId": "01JMSG", "message": {"type": "text", "text": "STOP"}},
        {"type": "postback", "timestamp": -1, "webhookEventId": "01JPB", "postback": {"data": "a=b"}},
        {"type": "follow", "webhookEventId": "01JF", "follow": {"isUnblocked": true}}
    ]});
    vec![
        body.to_string().into_bytes(),
        br#"{"destination":"U0","events":[]}"#.to_vec(),
    ]
}

// ---------------------------------------------------------------------------
// http: the daemon's router, in process, without Redis (handlers that got past
// their checks answer 503): webhooks signed and unsigned, tracking links,
// unsubscribe pages, anything else.

struct HttpKit {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
}

thread_local! {
    static HTTP: HttpKit = http_kit();
}

fn http_kit() -> HttpKit {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // SMS goes through one provider at a time: Twilio's routes from one
    // config, Vonage's from another.
    let hooks = tayori::channel::inbound::RouteContext {
        public_url: PUBLIC_URL.to_owned(),
        tracker: None,
        dedupe_window: std::time::Duration::from_secs(60),
    };
    let twilio = channels(TWILIO_SMS);
    let vonage = channels(VONAGE_SMS);
    let tracker = twilio.tracker.clone();
    let hooks = tayori::channel::inbound::RouteContext { tracker, ..hooks };
    let mut routes: Vec<_> = twilio
        .iter()
        .flat_map(|c| c.settings.routes(&hooks))
        .collect();
    routes.extend(
        vonage
            .get(tayori::channel::sms::ID)
            .map(|c| c.settings.routes(&hooks))
            .unwrap_or_default(),
    );
    let webhooks = tayori::http::Webhooks {
        queue: Default::default(),
        dedupe_window: std::time::Duration::from_secs(60),
        repeat_window: std::time::Duration::from_secs(60),
        tracker: twilio.tracker.clone(),
        routes,
    };
    let app = tayori::http::router(tayori::http::AppState {
        health: Default::default(),
        metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        webhooks: Arc::new(webhooks),
    });
    HttpKit { runtime, app }
}

/// The status and headers of one request to the router.
fn call(request: Request<Body>) -> (StatusCode, HeaderMap) {
    HTTP.with(|kit| {
        let service = axum::routing::any_service(kit.app.clone());
        let response = kit.runtime.block_on(Handler::call(service, request, ()));
        (response.status(), response.headers().clone())
    })
}

fn request(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Option<Request<Body>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).ok()?;
        let value = HeaderValue::from_str(v).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(Body::from(body)).ok()
}

/// Key/value pairs from `a=b` lines.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn form(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `X-Twilio-Signature`: Base64(HMAC-SHA1(token, URL + sorted name/value pairs)).
pub fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, data.as_bytes()).as_ref())
}

fn vonage_signature(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sig").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut signed = String::new();
    for (k, v) in sorted {
        signed.push('&');
        signed.push_str(k);
        signed.push('=');
        signed.push_str(&v.replace(['&', '='], "_"));
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, VONAGE_SECRET.as_bytes());
    hmac::sign(&key, signed.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Only a click token we sealed redirects, and only to its own http(s) link.
fn check_redirect(status: StatusCode, headers: &HeaderMap, token: &str) {
    if !status.is_redirection() {
        return;
    }
    let location = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let opened = SEALER.with(|s| s.open(Purpose::Click, token));
    let url = opened.and_then(|t| t.url);
    assert_eq!(
        url.as_deref(),
        Some(location),
        "a redirect the token does not name: {status} {location:?} for {token:?}"
    );
    let lower = location.to_ascii_lowercase();
    assert!(lower.starts_with("https://") || lower.starts_with("http://"));
}

pub fn http(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let p = parts(rest, 3);
    let now = jiff::Timestamp::now().as_second().to_string();
    match selector % 8 {
        // LINE, signed by us: parsed; never 401.
        0 => {
            let body = p[0].as_bytes().to_vec();
            let sig = line_signature(&body);
            if let Some(req) = request(
                Method::POST,
                "/webhooks/line",
                &[("x-line-signature", &sig)],
                body,
            ) {
                let (status, _) = call(req);
                assert!(
                    [200, 400, 413, 503].contains(&status.as_u16()),
                    "signed LINE webhook: {status}"
                );
            }
        }
        // LINE with whatever signature: never accepted.
        1 => {
            if let Some(req) = request(
                Method::POST,
                "/webhooks/line",
                &[("x-line-signature", &p[1])],
                p[0].as_bytes().to_vec(),
            ) {
                let (status, _) = call(req);
                assert!(status.is_client_error(), "forged LINE webhook: {status}");
            }
        }
        // Twilio, signed by us (form body, query from the input).
        2 => {
            let params = pairs(&p[0]);
            let path = format!("/webhooks/twilio?{}", form(&pairs(&p[1])));
            let sig = twilio_signature(TWILIO_TOKEN, &format!("{PUBLIC_URL}{path}"), &params);
            let headers = [
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-twilio-signature", sig.as_str()),
            ];
            if let Some(req) = request(Method::POST, &path, &headers, form(&params).into_bytes()) {
                let (status, _) = call(req);
                assert!(
                    [413, 503].contains(&status.as_u16()),
                    "signed Twilio webhook: {status}"
                );
            }
        }
        // Twilio with whatever signature: refused.
        3 => {
            let path = format!("/webhooks/twilio?{}", form(&pairs(&p[1])));
            let headers = [("x-twilio-signature", p[2].as_str())];
            if let Some(req) = request(Method::POST, &path, &headers, p[0].as_bytes().to_vec()) {
                let (status, _) = call(req);
                assert!(status.is_client_error(), "forged Twilio webhook: {status}");
            }
        }
        // Vonage, signed by us, as GET, form POST or JSON POST.
        4 => {
            let mut params: Vec<(String, String)> = pairs(&p[0])
                .into_iter()
                .filter(|(k, _)| k != "sig")
                .collect();
            if !params.iter().any(|(k, _)| k == "timestamp") {
                params.push(("timestamp".to_owned(), now.clone()));
            }
            let via = pick(rest, 3);
            if via == 2 {
                // A JSON object keeps one value per name.
                let object: serde_json::Map<String, Value> = params
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                params = object
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
            }
            let sig = vonage_signature(&params);
            params.push(("sig".to_owned(), sig));
            let req = match via {
                0 => request(
                    Method::GET,
                    &format!("/webhooks/vonage?{}", form(&params)),
                    &[],
                    Vec::new(),
                ),
                1 => request(
                    Method::POST,
                    "/webhooks/vonage",
                    &[("content-type", "application/x-www-form-urlencoded")],
                    form(&params).into_bytes(),
                ),
                _ => {
                    let object: serde_json::Map<String, Value> = params
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect();
                    request(
                        Method::POST,
                        "/webhooks/vonage",
                        &[("content-type", "application/json")],
                        Value::Object(object).to_string().into_bytes(),
                    )
                }
            };
            if let Some(req) = req {
                let (status, _) = call(req);
                let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
                names.sort_unstable();
                let unique = names.windows(2).all(|w| w[0] != w[1]);
                let fresh = params
                    .iter()
                    .find(|(k, _)| k == "timestamp")
                    .and_then(|(_, v)| v.trim().parse::<i64>().ok())
                    .is_some_and(|t| t.abs_diff(now.parse::<i64>().unwrap_or(0)) <= 300);
                if unique && fresh {
                    assert!(
                        [413, 503].contains(&status.as_u16()),
                        "signed fresh Vonage webhook: {status}"
                    );
                } else {
                    assert!(status.is_client_error(), "Vonage: {status}");
                }
            }
        }
        // Vonage, raw: whatever comes, never accepted.
        5 => {
            let uri = format!("/webhooks/vonage?{}", p[1]);
            let method = if pick(rest, 2) == 0 {
                Method::GET
            } else {
                Method::POST
            };
            let headers = [("content-type", p[2].as_str())];
            if let Some(req) = request(method, &uri, &headers, p[0].as_bytes().to_vec()) {
                let (status, _) = call(req);
                assert!(status.is_client_error(), "forged Vonage webhook: {status}");
            }
        }
        // Tracking links, short links and unsubscribe pages with the token as given.
        6 => {
            let token = &p[0];
            for (method, prefix) in [
                (Method::GET, "/t/c/"),
                (Method::HEAD, "/t/c/"),
                (Method::GET, "/t/o/"),
                (Method::GET, "/s/"),
                (Method::GET, "/u/"),
                (Method::POST, "/u/"),
            ] {
                let Some(req) = request(
                    method,
                    &format!("{prefix}{token}"),
                    &[],
                    p[1].as_bytes().to_vec(),
                ) else {
                    continue;
                };
                let (status, headers) = call(req);
                assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
                if prefix == "/t/c/" {
                    check_redirect(status, &headers, token);
                } else {
                    assert!(!status.is_redirection(), "{prefix}: {status}");
                }
            }
        }
        // Anything at all.
        _ => {
            let method = Method::from_bytes(p[2].as_bytes()).unwrap_or(Method::GET);
            if let Some(req) = request(method, &p[1], &[], p[0].as_bytes().to_vec()) {
                let (status, headers) = call(req);
                assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
                let token = p[1].strip_prefix("/t/c/").unwrap_or("");
                check_redirect(status, &headers, token);
            }
        }
    }
}

fn http_seeds() -> Vec<Vec<u8>> {
    let with = |selector: u8, rest: Vec<u8>| {
        let mut v = vec![selector];
        v.extend(rest);
        v
    };
    let s = Sealer::new(SECRET);
    let t = Tracked {
        channel: tayori::channel::email::ID,
        job_id: "spring26-C1001".into(),
        address: "taro@example.com".into(),
        campaign: None,
        customer_id: None,
        sent_at: 1_790_000_000,
        url: Some("https://shop.example.com/p/1".into()),
    };
    let bad_url = Tracked {
        url: Some("javascript:alert(1)".into()),
        ..t.clone()
    };
    let line = line_seeds();
    vec![
        with(0, line[0].clone()),
        with(1, join(&[&String::from_utf8_lossy(&line[0]), "bm90IGl0"])),
        with(
            2,
            join(&[
                "MessageSid=SM1\nMessageStatus=delivered\nFrom=+819012345678\nBody=STOP",
                "job=spring26-C1001",
            ]),
        ),
        with(3, join(&["MessageSid=SM1&MessageStatus=failed", "job=x", "AAAA"])),
        with(
            4,
            join(&["messageId=0A1\nstatus=delivered\nclient-ref=spring26-C1001\nmsisdn=819012345678\nerr-code=0"]),
        ),
        with(4, join(&["messageId=0A1\nmsisdn=819012345678\ntext=STOP\ntimestamp=1"])),
        with(5, join(&["{\"status\":\"delivered\",\"sig\":\"00\"}", "sig=00&timestamp=1", "application/json"])),
        with(6, join(&[&s.seal(Purpose::Click, &t), ""])),
        with(6, join(&[&s.seal(Purpose::Click, &bad_url), ""])),
        with(6, join(&[&s.seal(Purpose::Unsubscribe, &t), "List-Unsubscribe=One-Click"])),
        with(6, join(&["AAAAAAAAAAA", ""])),
        with(7, join(&["", "/t/c/..%2f..%2fmetrics", "GET"])),
        with(7, join(&["x", "/webhooks/bounce", "POST"])),
    ]
}

// ---------------------------------------------------------------------------
// sms: segment counting and phone numbers.

pub fn sms(data: &[u8]) {
    let p = parts(data, 2);
    let text = &p[0];
    let s = segments::count(text);
    assert!(s.count >= 1);
    let (single, multi) = match s.encoding {
        segments::Encoding::Gsm7 => {
            let septets: u32 = text
                .chars()
                .map(|c| segments::gsm7_septets(c).unwrap_or(0))
                .sum();
            assert_eq!(s.units, septets);
            (160_u32, 153_u32)
        }
        segments::Encoding::Ucs2 => {
            assert_eq!(s.units as usize, text.encode_utf16().count());
            assert!(text.chars().any(|c| segments::gsm7_septets(c).is_none()));
            (70_u32, 67_u32)
        }
    };
    if s.count == 1 {
        assert!(s.units <= single);
    } else {
        assert!(s.units > single);
        // Whole characters per segment: never fewer segments than units allow,
        // and at most one segment lost per character boundary pushed over.
        assert!(u64::from(s.count) * u64::from(multi) >= u64::from(s.units));
        assert!(u64::from(s.count - 1) * u64::from(multi - 1) < u64::from(s.units));
    }
    let _ = segments::check_limit(&s, 10);
    for region in ["JP", "US", "ZZ", &p[1]] {
        if let Ok(n) = phone::to_e164(text, region) {
            assert!(
                n.starts_with('+') && n.len() <= 16 && n[1..].bytes().all(|b| b.is_ascii_digit()),
                "{n:?} is not E.164"
            );
            assert_eq!(
                phone::to_e164(&n, "ZZ").as_deref(),
                Ok(n.as_str()),
                "not idempotent"
            );
        }
    }
    let message = Message {
        job_id: "j".into(),
        attempt: 1,
        idempotency_key: "j".into(),
        campaign: None,
        customer_id: None,
        to: Recipient {
            name: None,
            address: p[1].clone(),
            postal: None,
        },
        content: Content::Sms { text: text.clone() },
    };
    let limits = tayori_channels::sms::SmsLimits {
        default_region: "JP".into(),
        max_segments: 10,
    };
    let _ = tayori_channels::sms::prepare(&message, &limits);
}

fn sms_seeds() -> Vec<Vec<u8>> {
    vec![
        join(&[
            "山田様、春のセール開始 — 1200ポイントをお持ちです",
            "090-1234-5678",
        ]),
        join(&[&"^{}[]~|€\\".repeat(20), "+1 (415) 555-0100"]),
        join(&[&"a".repeat(161), "０９０－１２３４－５６７８"]),
        join(&[&"😀".repeat(40), "+81 90 ｰ 1234 ｰ 5678"]),
        join(&["0901234567", "010-1-415-555-0100"]),
    ]
}

// ---------------------------------------------------------------------------
// dm: postal codes, the customer barcode and print rows (written to a scratch
// batch directory, UTF-8 and Shift_JIS).

struct DmKit {
    runtime: tokio::runtime::Runtime,
    batches: Vec<tayori_channels::dm::PrintBatches>,
    _dirs: Vec<tempfile::TempDir>,
}

thread_local! {
    static DM: RefCell<Option<DmKit>> = const { RefCell::new(None) };
}

fn dm_kit() -> DmKit {
    use tayori_channels::dm::{
        default_columns, Column, PrintBatches, PrintSettings, TextEncoding, Unmappable,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut batches = Vec::new();
    let mut dirs = Vec::new();
    for (encoding, unmappable) in [
        (TextEncoding::Utf8, Unmappable::Fail),
        (TextEncoding::ShiftJis, Unmappable::Fail),
        (TextEncoding::ShiftJis, Unmappable::Replace),
    ] {
        let dir = tempfile::tempdir().expect("a scratch dir");
        let mut settings = PrintSettings::new(dir.path());
        settings.encoding = encoding;
        settings.unmappable = unmappable;
        settings.batch_max_rows = 200;
        settings.columns = default_columns();
        settings.columns.push(Column::Barcode);
        batches.push(PrintBatches::open(settings).expect("a print directory"));
        dirs.push(dir);
    }
    DmKit {
        runtime,
        batches,
        _dirs: dirs,
    }
}

pub fn dm(data: &[u8]) {
    use tayori_channels::dm::customer_barcode;
    let p = parts(data, 9);
    let address = format!("{}{}", p[1], p[2]);
    if let Ok(code) = customer_barcode(&p[0], &address) {
        assert_eq!(code.chars().count(), 21, "{code:?}");
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || (b'a'..=b'h').contains(&b)),
            "{code:?}"
        );
    }
    let number = tayori_channels::dm::barcode::address_number(&address);
    assert!(
        number
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b.is_ascii_uppercase()),
        "{number:?}"
    );
    let postal = PostalAddress {
        postal_code: p[0].clone(),
        address1: p[1].clone(),
        address2: p[2].clone(),
        address3: p[3].clone(),
        company: p[4].clone(),
        name: p[5].clone(),
        honorific: p[6].clone(),
    };
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("message1".to_owned(), p[7].clone());
    if !p[8].is_empty() {
        fields.insert(p[8].clone(), "x".to_owned());
    }
    let message = Message {
        job_id: format!("dm-{}", pick(data, 1 << 30)),
        attempt: 1,
        idempotency_key: "k".into(),
        campaign: Some(p[8].clone()),
        customer_id: Some(p[4].clone()),
        to: Recipient {
            name: non_empty(&p[5]),
            address: p[0].clone(),
            postal: Some(postal),
        },
        content: Content::Dm { fields },
    };
    let _ = tayori_channels::dm::DmEncoder.encode(&message);
    DM.with(|kit| {
        let mut kit = kit.borrow_mut();
        let kit = kit.get_or_insert_with(dm_kit);
        let batches = &kit.batches[pick(data, kit.batches.len())];
        let _ = kit
            .runtime
            .block_on(tayori_channels::Channel::send(batches, &message));
    });
}

fn dm_seeds() -> Vec<Vec<u8>> {
    vec![
        join(&[
            "100-0001",
            "東京都千代田区千代田1-1",
            "",
            "",
            "",
            "山田 太郎",
            "様",
            "春のセールのご案内です",
            "spring26",
        ]),
        join(&[
            "〒１００－００１３",
            "東京都千代田区霞が関1丁目3番1号",
            "郵便・A&bコーポB604号",
            "=HYPERLINK(\"http://evil\")",
            "+cmd|' /C calc'!A0",
            "𠮷野 家",
            "@SUM(1+1)",
            "line1\r\nline2\u{0}",
            "../../x",
        ]),
        join(&[
            "1000013",
            "十一丁目二十番地の三",
            "",
            "",
            "",
            "x",
            "",
            "",
            "unknown_field",
        ]),
    ]
}

// ---------------------------------------------------------------------------
// provider_answers: what LINE, Twilio, Vonage and a generic gateway answer.

pub fn provider_answers(data: &[u8]) {
    use tayori_channels::sms::http_gateway::{BodyFormat, GatewayMethod, HttpGatewaySettings};
    if data.len() < 3 {
        return;
    }
    let status = StatusCode::from_u16(100 + u16::from_be_bytes([data[1], data[2]]) % 500)
        .unwrap_or(StatusCode::OK);
    let p = parts(&data[3..], 3);
    let body = &p[0];
    let retry = Some(std::time::Duration::from_secs(1));
    let check = |r: Result<tayori_channels::Sent, tayori_channels::SendError>| {
        if let Err(e) = r {
            assert!(!e.code().is_empty());
            // Provider text is capped before it reaches events and logs.
            assert!(
                e.message().chars().count() <= 700,
                "{} chars",
                e.message().len()
            );
        }
    };
    match data[0] % 4 {
        0 => check(tayori_channels::sms::twilio::classify(status, body, retry)),
        1 => check(tayori_channels::sms::vonage::classify(status, body, retry)),
        2 => {
            let settings = HttpGatewaySettings {
                url: "https://sms.example.com/send".into(),
                method: GatewayMethod::Post,
                headers: Vec::new(),
                content_type: BodyFormat::Json,
                body: json!({}),
                success_status: Vec::new(),
                id_pointer: non_empty(&p[1]),
                error_pointer: non_empty(&p[2]),
                timeout: std::time::Duration::from_secs(1),
            };
            check(tayori_channels::sms::http_gateway::classify(
                &settings, status, body, retry,
            ));
        }
        _ => {
            let mut headers = HeaderMap::new();
            for line in p[1].lines() {
                if let Some((k, v)) = line.split_once(':') {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(k.trim().as_bytes()),
                        HeaderValue::from_str(v.trim()),
                    ) {
                        headers.append(k, v);
                    }
                }
            }
            let _ = tayori_channels::line::client::classify(status, &headers, body);
        }
    }
}

fn provider_seeds() -> Vec<Vec<u8>> {
    let with = |which: u8, status: u16, rest: Vec<u8>| {
        let code = (status - 100).to_be_bytes();
        let mut v = vec![which, code[0], code[1]];
        v.extend(rest);
        v
    };
    vec![
        with(0, 201, br#"{"sid":"SM123","status":"queued"}"#.to_vec()),
        with(
            0,
            400,
            br#"{"code":21211,"message":"The 'To' number is not valid.","status":400}"#.to_vec(),
        ),
        with(
            1,
            200,
            br#"{"message-count":"1","messages":[{"status":"0","message-id":"0A"}]}"#.to_vec(),
        ),
        with(
            1,
            200,
            br#"{"messages":[{"status":"6","error-text":"anti-spam"}]}"#.to_vec(),
        ),
        with(
            2,
            500,
            join(&[r#"{"error":{"message":"down"}}"#, "/id", "/error/message"]),
        ),
        with(
            3,
            429,
            join(&[
                r#"{"message":"The monthly limit was reached","details":[{"message":"x","property":"y"}]}"#,
                "retry-after: 3\nx-line-request-id: r",
            ]),
        ),
        with(3, 409, join(&["{}", "x-line-accepted-request-id: abc"])),
    ]
}
