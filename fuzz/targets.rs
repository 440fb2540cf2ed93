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
use tayori_testkit::sign;

// One file per target (`targets/{name}.rs`), which takes the imports and helpers
// of this file with `use super::*`. The paths are spelled out so that this file
// works as the fuzz crate's root and as a `#[path]` module of tests/fuzz_smoke.rs
// and tests/hostile_input.rs alike.
#[path = "targets/dm.rs"]
mod dm;
#[path = "targets/dsn.rs"]
mod dsn;
#[path = "targets/email.rs"]
mod email;
#[path = "targets/http.rs"]
mod http;
#[path = "targets/job.rs"]
mod job;
#[path = "targets/line_webhook.rs"]
mod line_webhook;
#[path = "targets/provider_answers.rs"]
mod provider_answers;
#[path = "targets/render.rs"]
mod render;
#[path = "targets/sms.rs"]
mod sms;
#[path = "targets/tracking_token.rs"]
mod tracking_token;

pub use dm::dm;
pub use dsn::dsn;
pub use email::{check_mail, email};
pub use http::http;
pub use job::job;
pub use line_webhook::line_webhook;
pub use provider_answers::provider_answers;
pub use render::render;
pub use sms::sms;
pub use tracking_token::tracking_token;

use dm::dm_seeds;
use dsn::dsn_seeds;
use email::email_seeds;
use http::http_seeds;
use job::job_seeds;
use line_webhook::{line_seeds, line_signature};
use provider_answers::provider_seeds;
use sms::sms_seeds;
use tracking_token::{token_seeds, SEALER};

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
