//! Dry runs predict production: the same SMS and direct-mail jobs go through the
//! real transports (SMS to the fake Twilio API, which checks every request against
//! Twilio's OpenAPI description; DM to the print batch writer) and through
//! `transport = "file"`, and every job ends the same way — the same event type,
//! error code and message (which names the field), the same `segments` and
//! `encoding` — and the file holds what the real transport sent: the E.164
//! number and the text, the print row in its encoding, byte for byte.
//!
//! One redis-server serves both daemons, each under its own key prefix.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tayori_testkit::twilio_api::TwilioApi;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token";
const WAIT: Duration = Duration::from_secs(30);

/// What both daemons share: SMS numbers read in Japan, at most 3 segments; DM
/// rows in Shift_JIS with the default columns.
const SMS_LIMITS: &str = "default_region = \"JP\"\nmax_segments = 3\nrate = \"1000/s\"";
const DM_LAYOUT: &str = "encoding = \"shift_jis\"\nrate = \"1000/s\"";

/// The real transports: Twilio, and print batches closed after every row (so
/// each job's batch file is in `ready/` when its `sent` event is).
fn real(redis: &Redis, api: &TwilioApi) -> Setup {
    let channels = format!(
        r#"
[channels.sms]
provider = "twilio"
{SMS_LIMITS}

[channels.sms.twilio]
api_base = "{base}"
account_sid = "{ACCOUNT_SID}"
auth_token = "{TOKEN}"
from = "+15005550006"
timeout = "5s"

[channels.dm]
dir = "{{outbox}}/dm"
{DM_LAYOUT}
batch_max_rows = 1
batch_max_age = "1h"
"#,
        base = api.base_url()
    );
    let redis_section = format!("url = \"{}\"\nprefix = \"real\"", redis.url());
    setup_with_redis(&redis_section, "", &channels)
}

/// The same channels on `transport = "file"`.
fn dry(redis: &Redis) -> Setup {
    let channels = format!(
        r#"
[channels.sms]
transport = "file"
dir = "{{outbox}}/sms"
{SMS_LIMITS}

[channels.dm]
transport = "file"
dir = "{{outbox}}/dm"
{DM_LAYOUT}
"#
    );
    let redis_section = format!("url = \"{}\"\nprefix = \"dry\"", redis.url());
    setup_with_redis(&redis_section, "", &channels)
}

fn sms_job(id: &str, phone: &str, text: &str) -> Value {
    let mut j = job(id, "sms");
    j["to"]["phone"] = json!(phone);
    j["template"] = Value::Null;
    j["content"] = json!({"sms": {"text": text}});
    j
}

fn dm_job(id: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut j = job(id, "dm");
    edit(&mut j["to"]["postal"]);
    j
}

/// The jobs, and the outcome each must have on both transports: `sent`, or the
/// failure's code and the start of its message.
fn cases() -> Vec<(Value, &'static str, &'static str)> {
    vec![
        (
            sms_job("sms-national", "090-1234-5678", "春のセールのご案内です"),
            "sent",
            "",
        ),
        (
            sms_job("sms-gsm", "+81 80-1111-2222", "Spring sale: 20% off"),
            "sent",
            "",
        ),
        (
            sms_job("sms-short", "12345", "hello"),
            "invalid_phone",
            "invalid phone number",
        ),
        (
            sms_job("sms-long", "090-1234-5678", &"a".repeat(800)),
            "too_many_segments",
            "",
        ),
        (
            dm_job("dm-ok", |p| p["name"] = json!("髙橋 一郎")),
            "sent",
            "",
        ),
        (
            dm_job("dm-postal", |p| p["postal_code"] = json!("abc")),
            "invalid_address",
            "to.postal.postal_code",
        ),
        (
            dm_job("dm-address1", |p| p["address1"] = json!("")),
            "invalid_address",
            "to.postal.address1",
        ),
        (
            dm_job("dm-sjis", |p| p["name"] = json!("𠮷田 花子")),
            "unencodable",
            "column name",
        ),
    ]
}

fn enqueue_under(conn: &mut redis::Connection, prefix: &str, jobs: &[Value]) {
    let mut pipe = redis::pipe();
    for j in jobs {
        let channel = j["channel"].as_str().expect("a channel");
        pipe.cmd("XADD")
            .arg(format!("{prefix}:{{0}}:jobs:{channel}"))
            .arg("*")
            .arg("job")
            .arg(j.to_string())
            .ignore();
    }
    pipe.query::<()>(conn).expect("XADD");
}

/// The terminal event of every job under `prefix`, once each of `n` jobs has one.
fn outcomes(conn: &mut redis::Connection, prefix: &str, n: usize) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let by_job: BTreeMap<String, Value> = xrange(conn, &format!("{prefix}:{{0}}:results"))
            .into_iter()
            .filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == "event"))
            .filter_map(|(_, v)| serde_json::from_str::<Value>(&v).ok())
            .filter(|e| TERMINAL.contains(&e["type"].as_str().unwrap_or("")))
            .map(|e| (e["job_id"].as_str().unwrap_or("").to_owned(), e))
            .collect();
        if by_job.len() >= n {
            return by_job;
        }
        assert!(
            Instant::now() < deadline,
            "{prefix}: {} of {n} jobs finished: {by_job:?}",
            by_job.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What must match between the transports: the type, the error, the SMS facts,
/// and whether the event names a batch.
fn comparable(e: &Value) -> Value {
    json!({
        "type": e["type"],
        "error": e["error"],
        "segments": e["segments"],
        "encoding": e["encoding"],
        "has_batch": e["batch"].is_string(),
    })
}

#[test]
fn the_file_transport_fails_and_sends_as_the_real_transports_do() {
    let redis = Redis::start();
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    let (real, dry) = (real(&redis, &api), dry(&redis));
    let (_real_daemon, _dry_daemon) = (real.start(), dry.start());
    let cases = cases();
    let jobs: Vec<Value> = cases.iter().map(|(j, _, _)| j.clone()).collect();
    let mut conn = redis.conn();
    enqueue_under(&mut conn, "real", &jobs);
    enqueue_under(&mut conn, "dry", &jobs);
    let real_out = outcomes(&mut conn, "real", jobs.len());
    let dry_out = outcomes(&mut conn, "dry", jobs.len());

    for (j, want, message_start) in &cases {
        let id = j["id"].as_str().unwrap();
        let (r, d) = (&real_out[id], &dry_out[id]);
        assert_eq!(comparable(d), comparable(r), "{id}: dry {d}\nreal {r}");
        if *want == "sent" {
            assert_eq!(d["type"], "sent", "{id}: {d}");
        } else {
            assert_eq!(d["type"], "failed", "{id}: {d}");
            assert_eq!(d["error"]["code"], *want, "{id}: {d}");
            let message = d["error"]["message"].as_str().unwrap_or("");
            assert!(message.starts_with(message_start), "{id}: {message}");
        }
    }
    assert_eq!(dry_out["sms-national"]["segments"], 1);
    assert_eq!(dry_out["sms-national"]["encoding"], "ucs2");
    assert_eq!(dry_out["sms-gsm"]["encoding"], "gsm7");

    // SMS: the file is the request Twilio got, the number in E.164; the jobs
    // that failed reached neither Twilio nor the outbox.
    api.assert_no_violations();
    let sent = api.messages();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for (id, e164) in [
        ("sms-national", "+819012345678"),
        ("sms-gsm", "+818011112222"),
    ] {
        let path = dry.outbox("sms").join(format!("{id}.json"));
        let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let twilio = sent
            .iter()
            .find(|m| m.field("To") == Some(e164))
            .unwrap_or_else(|| panic!("no request to {e164}: {sent:?}"));
        assert_eq!(file["to"], e164, "{file}");
        assert_eq!(Some(file["text"].as_str().unwrap()), twilio.field("Body"));
        assert_eq!(file["segments"], dry_out[id]["segments"]);
        assert_eq!(file["encoding"], dry_out[id]["encoding"]);
    }
    assert_eq!(
        dry.outbox_files("sms"),
        ["sms-gsm.json", "sms-national.json"]
    );

    // DM: the file is the batch the vendor got, header and row in Shift_JIS.
    let ready = real.outbox("dm").join("ready");
    let batch = real_out["dm-ok"]["batch"].as_str().unwrap();
    let printed = std::fs::read(ready.join(format!("{batch}.csv"))).unwrap();
    let written = std::fs::read(dry.outbox("dm").join("dm-ok.csv")).unwrap();
    assert_eq!(written, printed, "the dry run's file is the print batch");
    // Shift_JIS, not UTF-8 (the vendor's reader decodes it in tests/dm.rs).
    assert!(String::from_utf8(written.clone()).is_err());
    let ascii = b"\r\ndm-ok,C-dm-ok,100-0001,";
    assert!(written.windows(ascii.len()).any(|w| w == ascii));
    assert_eq!(dry_out["dm-ok"]["batch"], "dm-ok");
    assert_eq!(dry.outbox_files("dm"), ["dm-ok.csv"]);
}
