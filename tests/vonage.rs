//! SMS through Vonage: the channel against a server that plays Vonage's SMS API and
//! checks every request against the documented shape (`tayori_testkit::vonage_api`),
//! and `/webhooks/vonage` (delivery receipts and inbound replies, as a form POST, a GET
//! or JSON) signed by a second implementation of Vonage's signature scheme in Python
//! (`tests/peers/vonage_sign.py`, stdlib hashlib/hmac), never by Tayori's own code.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use tayori_testkit::twilio_api::form_encode;
use tayori_testkit::vonage_api::{self, Reply, VonageApi};

const API_KEY: &str = "a1b2c3d4";
const API_SECRET: &str = "Sx9ApiSecret01";
const SIG_SECRET: &str = "test-signature-secret-0123456789abcdef";
const FROM: &str = "Tayori";
/// The account's virtual number, which inbound messages are sent to.
const OUR_NUMBER: &str = "815012345678";
/// `common::job`'s `090-1234-5678` in E.164, and as Vonage writes it.
const TO: &str = "+819012345678";
const TO_DIGITS: &str = "819012345678";
const WAIT: Duration = Duration::from_secs(30);
/// The signature settings most tests use.
const SHA256: &str = "signature_method = \"sha256\"";

/// A webhook request's parameters, in the order sent.
type Params = Vec<(String, String)>;

/// SMS through the fake Vonage API with signed webhooks (`signature`: extra lines for
/// `[channels.sms.vonage]`). No `callback` is configured: with a signature secret the
/// daemon asks for receipts at its own route.
fn vonage_setup(redis: &Redis, api: &VonageApi, signature: &str) -> Setup {
    let channels = format!(
        r#"
[channels.sms]
provider = "vonage"
default_region = "JP"
max_segments = 3
rate = "1000/s"

[channels.sms.vonage]
api_base = "{base}"
api_key = "{API_KEY}"
api_secret = "{API_SECRET}"
from = "{FROM}"
timeout = "2s"
{signature}
"#,
        base = api.base_url()
    );
    setup(
        redis,
        "[retry]\nmax_attempts = 4\nbase_delay = \"200ms\"\nmax_delay = \"400ms\"",
        &channels,
    )
}

/// Redis, the Vonage API and a ready daemon whose webhook checks `signature_secret`
/// with `settings` (e.g. the method).
fn started_with(settings: &str) -> (Redis, VonageApi, Setup, Daemon) {
    let redis = Redis::start();
    let api = VonageApi::start(API_KEY, API_SECRET);
    let signature = format!("signature_secret = \"{SIG_SECRET}\"\n{settings}");
    let s = vonage_setup(&redis, &api, &signature);
    let d = s.start();
    wait_ready(&s);
    (redis, api, s, d)
}

fn started() -> (Redis, VonageApi, Setup, Daemon) {
    started_with(SHA256)
}

/// Until `/readyz` is 200: Redis connected, so webhooks are recorded (not 503).
fn wait_ready(s: &Setup) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.get("/readyz").map(|(status, _)| status) != Some(200) {
        assert!(Instant::now() < deadline, "the daemon never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text_job(id: &str, phone: &str, text: &str) -> Value {
    let mut j = job(id, "sms");
    j["to"]["phone"] = json!(phone);
    j["template"] = Value::Null;
    j["content"] = json!({"sms": {"text": text}});
    j
}

fn for_job<'a>(evs: &'a [Value], kind: &str, job_id: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["type"] == kind && e["job_id"] == job_id)
        .collect()
}

fn of_type<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["type"] == kind).collect()
}

fn owned(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Vonage's `sig` over `params` (every one but `sig`), computed by
/// tests/peers/vonage_sign.py.
fn vonage_sig(secret: &str, method: &str, params: &[(String, String)]) -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/vonage_sign.py");
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut child = Command::new(common::smtp::python())
        .arg(&script)
        .args(["--secret", secret, "--method", method])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/peers/vonage_sign.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(form_encode(&pairs).as_bytes())
        .expect("write the parameters to vonage_sign.py");
    let out = child.wait_with_output().expect("vonage_sign.py output");
    assert!(
        out.status.success(),
        "vonage_sign.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// `params` plus `timestamp` (now + `skew` seconds), `nonce` and `sig`, as Vonage
/// sends a signed webhook.
fn signed_by(secret: &str, method: &str, params: &[(String, String)], skew: i64) -> Params {
    let mut p = params.to_vec();
    p.push(("timestamp".into(), (unix_now() + skew).to_string()));
    p.push((
        "nonce".into(),
        format!("8f3c2d1e-{:04x}-4a5b-9c6d-7e8f9a0b1c2d", p.len()),
    ));
    let sig = vonage_sig(secret, method, &p);
    p.push(("sig".into(), sig));
    p
}

/// Signed now with the test secret and SHA-256.
fn signed(params: &[(String, String)]) -> Params {
    signed_by(SIG_SECRET, "sha256", params, 0)
}

/// A delivery receipt as Vonage sends it (one per segment).
fn receipt(message_id: &str, status: &str, client_ref: &str, err_code: &str) -> Params {
    let mut p = owned(&[
        ("msisdn", TO_DIGITS),
        ("to", FROM),
        ("network-code", "44010"),
        ("messageId", message_id),
        ("price", "0.07400000"),
        ("status", status),
        ("scts", "2604141200"),
        ("err-code", err_code),
        ("api-key", API_KEY),
        ("message-timestamp", "2026-04-14 12:00:05"),
    ]);
    if !client_ref.is_empty() {
        p.push(("client-ref".into(), client_ref.into()));
    }
    p
}

/// An inbound message from `msisdn` as Vonage sends it.
fn inbound(message_id: &str, msisdn: &str, text: &str) -> Params {
    let keyword = text.split_whitespace().next().unwrap_or("").to_uppercase();
    let ty = if text.is_ascii() { "text" } else { "unicode" };
    owned(&[
        ("msisdn", msisdn),
        ("to", OUR_NUMBER),
        ("messageId", message_id),
        ("text", text),
        ("type", ty),
        ("keyword", &keyword),
        ("api-key", API_KEY),
        ("message-timestamp", "2026-04-14 12:00:05"),
    ])
}

/// How the account has Vonage call the webhook (the dashboard's "HTTP Method").
#[derive(Clone, Copy, Debug)]
enum Via {
    Post,
    Get,
    Json,
}

/// Sends parameters to `/webhooks/vonage`: the HTTP status.
fn call(s: &Setup, via: Via, params: &[(String, String)]) -> u16 {
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let answer = match via {
        Via::Post => s.post(
            "/webhooks/vonage",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form_encode(&pairs).as_bytes(),
        ),
        Via::Get => s.get(&format!("/webhooks/vonage?{}", form_encode(&pairs))),
        Via::Json => {
            // The timestamp as a JSON number: what is signed is its digits.
            let object: serde_json::Map<String, Value> = pairs
                .iter()
                .map(|(k, v)| match (*k, v.parse::<i64>()) {
                    ("timestamp", Ok(n)) => (k.to_string(), json!(n)),
                    _ => (k.to_string(), json!(v)),
                })
                .collect();
            s.post(
                "/webhooks/vonage",
                &[("Content-Type", "application/json")],
                Value::Object(object).to_string().as_bytes(),
            )
        }
    };
    answer.expect("the daemon answers HTTP").0
}

fn post(s: &Setup, params: &[(String, String)]) -> u16 {
    call(s, Via::Post, params)
}

fn suppression(conn: &mut redis::Connection, address: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg("t:{0}:suppressed:sms")
        .arg(address)
        .query(conn)
        .expect("HGET")
}

/// The suppression of `address` once it is `want`, or whatever it is after 5 s.
fn suppression_becomes(
    conn: &mut redis::Connection,
    address: &str,
    want: Option<&str>,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = suppression(conn, address);
        if got.as_deref() == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The accepted request that carried `job_id` as its `client-ref`.
fn sent_request(api: &VonageApi, job_id: &str) -> vonage_api::Recorded {
    api.accepted()
        .into_iter()
        .find(|r| r.field("client-ref") == Some(job_id))
        .unwrap_or_else(|| panic!("no accepted request for {job_id}"))
}

// ---------------------------------------------------------------------------------
// The test peers themselves.

#[test]
fn the_fake_vonage_accepts_the_documented_request_and_flags_the_rest() {
    let api = VonageApi::start(API_KEY, API_SECRET);
    let valid = owned(&[
        ("api_key", API_KEY),
        ("api_secret", API_SECRET),
        ("from", FROM),
        ("to", TO_DIGITS),
        ("text", "山田 太郎様 春のセール開催中。"),
        ("type", "unicode"),
        ("callback", "https://tayori.example.com/webhooks/vonage"),
        ("client-ref", "spring26-C1001"),
    ]);
    let send = |form: &[(String, String)]| {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        api.send_raw(
            "POST",
            "/sms/json",
            "application/x-www-form-urlencoded",
            &form_encode(&pairs),
        )
    };
    let (status, answer) = send(&valid);
    assert_eq!(status, 200);
    assert_eq!(answer["message-count"], "1", "{answer}");
    assert_eq!(answer["messages"][0]["status"], "0");
    assert_eq!(answer["messages"][0]["client-ref"], "spring26-C1001");
    // A long message: one entry per segment, each with its own id.
    let mut long = valid.clone();
    long[4].1 = "あ".repeat(100);
    let (_, answer) = send(&long);
    assert_eq!(answer["message-count"], "2", "{answer}");
    let ids: Vec<&str> = answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message-id"].as_str().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1]);
    api.assert_no_violations();

    type Edit = fn(&mut Params);
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("no api_key", |f| f.retain(|(n, _)| n != "api_key"), "2"),
        ("no to", |f| f.retain(|(n, _)| n != "to"), "2"),
        ("a + in to", |f| f[3].1 = "+819012345678".into(), "3"),
        ("a national to", |f| f[3].1 = "09012345678".into(), "3"),
        ("no text", |f| f[4].1 = String::new(), "2"),
        (
            "Japanese without unicode",
            |f| f.retain(|(n, _)| n != "type"),
            "6",
        ),
        ("ASCII as unicode", |f| f[4].1 = "Hello".into(), "6"),
        (
            "a sender id over 11",
            |f| f[2].1 = "TayoriShop123".into(),
            "15",
        ),
        (
            "a relative callback",
            |f| f[6].1 = "/webhooks/vonage".into(),
            "23",
        ),
        ("a client-ref over 100", |f| f[7].1 = "x".repeat(101), "3"),
        (
            "an unknown parameter",
            |f| f.push(("tags".into(), "vip".into())),
            "3",
        ),
        (
            "a repeated parameter",
            |f| f.push(("text".into(), "again".into())),
            "3",
        ),
    ];
    for (what, edit, code) in cases {
        let mut form = valid.clone();
        edit(&mut form);
        let before = api.requests().len();
        let (status, answer) = send(&form);
        assert_eq!(status, 200, "{what}");
        assert_eq!(answer["messages"][0]["status"], code, "{what}: {answer}");
        assert!(
            !api.requests()[before].violations.is_empty(),
            "{what} is a violation"
        );
    }
    let (_, answer) = api.send_raw(
        "POST",
        "/sms/json",
        "application/json",
        &json!({"api_key": API_KEY}).to_string(),
    );
    assert_ne!(
        answer["messages"][0]["status"], "0",
        "JSON is not what Tayori sends"
    );
    assert_eq!(api.send_raw("GET", "/sms/json", "text/plain", "").0, 405);
    assert_eq!(api.send_raw("POST", "/sms/xml", "text/plain", "").0, 404);
    // A wrong secret is the account's problem, not the client's: 4, no violation.
    let mut wrong = valid.clone();
    wrong[1].1 = "rotated".into();
    let before = api.requests().len();
    let (_, answer) = send(&wrong);
    assert_eq!(answer["messages"][0]["status"], "4");
    assert!(api.requests()[before].violations.is_empty());
}

#[test]
fn the_signing_peer_reproduces_vonages_published_vector() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/vonage_sign.py");
    let out = Command::new(common::smtp::python())
        .arg(&script)
        .arg("--self-test")
        .output()
        .expect("run vonage_sign.py --self-test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same vector through the command line: md5hash is the default method.
    let params = owned(&[("a", "1"), ("b", "2"), ("timestamp", "1461605396")]);
    assert_eq!(
        vonage_sig("secret", "md5hash", &params),
        "6af838ef94998832dbfc29020b564830"
    );
}

// ---------------------------------------------------------------------------------
// Sending.

#[test]
fn jobs_reach_vonage_as_documented_and_answers_are_classified() {
    let redis = Redis::start();
    let api = VonageApi::start(API_KEY, API_SECRET);
    api.script("818011122222", vec![Reply::Throttled]);
    api.script("817012345678", vec![Reply::Status("7", "Number Barred")]);
    // With a signature secret, receipts are asked for at the daemon's own route.
    let s = vonage_setup(
        &redis,
        &api,
        &format!("signature_secret = \"{SIG_SECRET}\""),
    );
    let mut conn = redis.conn();
    let long_id = "x".repeat(150);
    let mut long_job = text_job(&long_id, "090-1234-5678", "Hi");
    // customer_id may have at most 128 bytes; the test helper derives it from the id.
    long_job["customer_id"] = serde_json::json!("C-long");
    enqueue(
        &mut conn,
        &[
            job("ja-1", "sms"),
            text_job("en-1", "090-1234-5678", "Your code is 1234"),
            text_job("long-1", "090-1234-5678", &"あ".repeat(100)),
            long_job,
            text_job("busy-1", "080-1112-2222", "Hello again"),
            text_job("barred-1", "070-1234-5678", "Hello"),
        ],
    );
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "5 sent and 1 failed", |e| {
        count(e, "sent") == 5 && count(e, "failed") == 1
    });
    api.assert_no_violations();
    let callback = format!("http://127.0.0.1:{}/webhooks/vonage", s.http_port);
    for r in api.requests() {
        assert_eq!(r.field("callback"), Some(callback.as_str()));
        assert_eq!(r.field("from"), Some(FROM));
        assert!(r.field("to").unwrap().bytes().all(|b| b.is_ascii_digit()));
    }
    let ja = sent_request(&api, "ja-1");
    assert_eq!(ja.field("to"), Some(TO_DIGITS));
    assert_eq!(ja.field("type"), Some("unicode"));
    assert!(ja.field("text").unwrap().contains("山田 太郎様"));
    assert_eq!(sent_request(&api, "en-1").field("type"), None);
    // A job id over 100 characters goes as its first 100.
    let short = sent_request(&api, &long_id[..100]);
    assert_eq!(short.field("text"), Some("Hi"));
    // Each `sent` names the first segment's message id.
    for job_id in ["ja-1", "en-1", "long-1"] {
        let sent = for_job(&evs, "sent", job_id);
        assert_eq!(sent.len(), 1, "{job_id}: {evs:?}");
        let ids = sent_request(&api, job_id).message_ids();
        assert_eq!(sent[0]["provider_id"], ids[0].as_str(), "{job_id}");
    }
    assert_eq!(sent_request(&api, "long-1").message_ids().len(), 2);
    assert_eq!(for_job(&evs, "sent", "long-1")[0]["segments"], 2);
    // Throttled ("1") is retried; a barred number ("7") fails without a fallback.
    let busy = for_job(&evs, "deferred", "busy-1");
    assert_eq!(busy.len(), 1, "{evs:?}");
    assert_eq!(busy[0]["error"]["code"], "vonage_1");
    assert_eq!(for_job(&evs, "sent", "busy-1")[0]["attempt"], 2);
    let barred = for_job(&evs, "failed", "barred-1");
    assert_eq!(barred[0]["error"]["code"], "vonage_7", "{barred:?}");
}

// ---------------------------------------------------------------------------------
// Delivery receipts.

#[test]
fn signed_receipts_become_delivered_and_failed_once_per_job() {
    let (redis, api, s, _d) = started();
    let mut conn = redis.conn();
    enqueue(
        &mut conn,
        &[
            text_job("dlr-1", "090-1234-5678", "Your order has shipped"),
            text_job("dlr-2", "090-1234-5678", &"あ".repeat(100)),
            text_job("dlr-3", "090-1234-5678", &"い".repeat(100)),
            text_job("dlr-4", "090-1234-5678", "Sale ends today"),
        ],
    );
    wait_for(&mut conn, WAIT, "4 sent", |e| count(e, "sent") == 4);
    let ids = |job: &str| sent_request(&api, job).message_ids();
    let (one, two, three, four) = (ids("dlr-1"), ids("dlr-2"), ids("dlr-3"), ids("dlr-4"));

    // Intermediate statuses are counted, not events; `delivered` is one event.
    for status in ["accepted", "buffered", "unknown"] {
        assert_eq!(
            post(&s, &signed(&receipt(&one[0], status, "dlr-1", "0"))),
            204
        );
    }
    let delivered = signed(&receipt(&one[0], "delivered", "dlr-1", "0"));
    assert_eq!(post(&s, &delivered), 204);
    let evs = wait_for(&mut conn, WAIT, "delivered", |e| count(e, "delivered") == 1);
    let d = of_type(&evs, "delivered")[0];
    assert_eq!(d["job_id"], "dlr-1");
    assert_eq!(d["provider_id"], one[0].as_str());
    assert_eq!(d["channel"], "sms");
    // Vonage retries a receipt: no second event.
    assert_eq!(post(&s, &delivered), 204);

    // Two segments delivered: the job is delivered once.
    for id in &two {
        assert_eq!(
            post(&s, &signed(&receipt(id, "delivered", "dlr-2", "0"))),
            204
        );
    }
    // One segment delivered, the other expired: `delivered` and `failed`, once each,
    // even when the failure is reported again as another final status.
    assert_eq!(
        post(&s, &signed(&receipt(&three[0], "delivered", "dlr-3", "0"))),
        204
    );
    assert_eq!(
        post(&s, &signed(&receipt(&three[1], "expired", "dlr-3", "2"))),
        204
    );
    assert_eq!(
        post(&s, &signed(&receipt(&three[1], "rejected", "dlr-3", "2"))),
        204
    );
    // A rejection by the carrier.
    assert_eq!(
        post(&s, &signed(&receipt(&four[0], "failed", "dlr-4", "6"))),
        204
    );

    let evs = wait_for(&mut conn, WAIT, "3 delivered, 2 failed", |e| {
        count(e, "delivered") == 3 && count(e, "failed") == 2
    });
    assert_eq!(for_job(&evs, "delivered", "dlr-2").len(), 1);
    assert_eq!(
        for_job(&evs, "delivered", "dlr-2")[0]["provider_id"],
        two[0].as_str()
    );
    let expired = for_job(&evs, "failed", "dlr-3");
    assert_eq!(expired[0]["error"]["code"], "vonage_2", "{expired:?}");
    assert_eq!(expired[0]["provider_id"], three[1].as_str());
    let failed = for_job(&evs, "failed", "dlr-4");
    assert_eq!(failed[0]["error"]["code"], "vonage_6");
    let message = failed[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("failed") && message.contains("anti-spam"),
        "{message}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let evs = events(&mut conn);
    assert_eq!(evs.len(), 4 + 3 + 2, "nothing else: {evs:?}");
    assert_eq!(
        s.metric("tayori_webhook_events_total{source=\"vonage\",type=\"delivered\"}"),
        3.0
    );
    assert_eq!(
        s.metric("tayori_webhook_events_total{source=\"vonage\",type=\"status\"}"),
        3.0
    );
    api.assert_no_violations();
}

#[test]
fn receipts_by_get_and_as_json_are_taken_too() {
    let (redis, _api, s, _d) = started();
    let mut conn = redis.conn();
    let get = signed(&receipt("0A0000000000GET1", "delivered", "by-get", "0"));
    assert_eq!(call(&s, Via::Get, &get), 204);
    let json = signed(&receipt("0A000000000JSON1", "failed", "by-json", "12"));
    assert_eq!(call(&s, Via::Json, &json), 204);
    // An inbound reply as JSON, with `&` and `=` in the text (`_` where signed).
    let reply = signed(&inbound(
        "0B00000000000001",
        TO_DIGITS,
        "ポイント&クーポン=いくら?",
    ));
    assert_eq!(call(&s, Via::Json, &reply), 204);
    let evs = wait_for(&mut conn, WAIT, "delivered, failed, replied", |e| {
        count(e, "delivered") == 1 && count(e, "failed") == 1 && count(e, "replied") == 1
    });
    let d = of_type(&evs, "delivered")[0];
    assert_eq!(
        (d["job_id"].as_str(), d["provider_id"].as_str()),
        (Some("by-get"), Some("0A0000000000GET1"))
    );
    let f = of_type(&evs, "failed")[0];
    assert_eq!(f["job_id"], "by-json");
    assert_eq!(f["error"]["code"], "vonage_12");
    let r = of_type(&evs, "replied")[0];
    assert_eq!(r["text"], "ポイント&クーポン=いくら?");
    assert_eq!(r["address"], TO);
    assert!(r["job_id"].is_null());
    // A receipt with neither client-ref nor a known job still reports its message.
    let orphan = signed(&receipt("0A00000000000ORF", "delivered", "", "0"));
    assert_eq!(call(&s, Via::Get, &orphan), 204);
    let evs = wait_for(&mut conn, WAIT, "2 delivered", |e| {
        count(e, "delivered") == 2
    });
    let orphan = of_type(&evs, "delivered")[1];
    assert!(orphan["job_id"].is_null(), "{orphan}");
    assert_eq!(orphan["provider_id"], "0A00000000000ORF");
}

#[test]
fn requests_without_a_valid_fresh_signature_are_refused_without_an_event() {
    let (redis, _api, s, _d) = started();
    let mut conn = redis.conn();
    let params = receipt("0A00000000000001", "delivered", "sig-1", "0");
    let good = signed(&params);
    let with = |name: &str, value: &str| -> Params {
        let mut p = good.clone();
        match p.iter_mut().find(|(n, _)| n == name) {
            Some(pair) => pair.1 = value.to_owned(),
            None => p.push((name.to_owned(), value.to_owned())),
        }
        p
    };
    let without =
        |name: &str| -> Params { good.iter().filter(|(n, _)| n != name).cloned().collect() };
    let mut unsigned_ts = params.clone();
    let sig = vonage_sig(SIG_SECRET, "sha256", &unsigned_ts);
    unsigned_ts.push(("sig".into(), sig));
    let refused: Vec<(&str, Params, Via)> = vec![
        ("a tampered status", with("status", "failed"), Via::Post),
        (
            "a tampered client-ref",
            with("client-ref", "sig-2"),
            Via::Post,
        ),
        ("an added parameter", with("err-code2", "1"), Via::Post),
        ("no sig", without("sig"), Via::Post),
        ("an empty sig", with("sig", ""), Via::Post),
        (
            "a sig that is not hex",
            with("sig", "not-a-signature"),
            Via::Post,
        ),
        ("no sig, by GET", without("sig"), Via::Get),
        (
            "a tampered status, as JSON",
            with("status", "expired"),
            Via::Json,
        ),
        (
            "a stale timestamp",
            signed_by(SIG_SECRET, "sha256", &params, -400),
            Via::Post,
        ),
        (
            "a timestamp from the future",
            signed_by(SIG_SECRET, "sha256", &params, 400),
            Via::Get,
        ),
        ("signed without a timestamp", unsigned_ts, Via::Post),
        (
            "another secret",
            signed_by("another-secret", "sha256", &params, 0),
            Via::Post,
        ),
        (
            "another method",
            signed_by(SIG_SECRET, "md5hash", &params, 0),
            Via::Post,
        ),
        (
            "a forged STOP",
            signed_by(
                "another-secret",
                "sha256",
                &inbound("0B01", TO_DIGITS, "STOP"),
                0,
            ),
            Via::Post,
        ),
    ];
    for (what, params, via) in &refused {
        assert_eq!(call(&s, *via, params), 403, "{what}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        events(&mut conn).is_empty(),
        "no event from refused requests"
    );
    assert_eq!(suppression(&mut conn, TO), None);
    assert_eq!(
        s.metric("tayori_webhook_rejected_total{source=\"vonage\",reason=\"bad_signature\"}"),
        11.0
    );
    assert_eq!(
        s.metric("tayori_webhook_rejected_total{source=\"vonage\",reason=\"stale\"}"),
        3.0
    );

    // The same request rightly signed is taken (the signature in upper-case hex too):
    // the refusals were the signature's.
    let upper: Params = good
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if k == "sig" {
                    v.to_uppercase()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    assert_eq!(post(&s, &upper), 204);
    let evs = wait_for(&mut conn, WAIT, "delivered", |e| count(e, "delivered") == 1);
    assert_eq!(of_type(&evs, "delivered")[0]["job_id"], "sig-1");
}

#[test]
fn every_signature_method_of_the_dashboard_is_checked() {
    // md5hash is the default when signature_method is not set (sha256: every other test).
    for (method, setting) in [
        ("md5hash", ""),
        ("md5hash", "signature_method = \"md5hash\""),
        ("md5", "signature_method = \"md5\""),
        ("sha1", "signature_method = \"sha1\""),
        ("sha512", "signature_method = \"sha512\""),
    ] {
        let (redis, _api, s, _d) = started_with(setting);
        let mut conn = redis.conn();
        let params = receipt("0A00000000000001", "delivered", method, "0");
        let other = if method == "sha512" {
            "sha256"
        } else {
            "sha512"
        };
        assert_eq!(
            post(&s, &signed_by(SIG_SECRET, other, &params, 0)),
            403,
            "{method} configured, {other} given"
        );
        assert_eq!(
            post(&s, &signed_by(SIG_SECRET, method, &params, 0)),
            204,
            "{method} ({setting:?})"
        );
        let evs = wait_for(&mut conn, WAIT, "delivered", |e| count(e, "delivered") == 1);
        assert_eq!(of_type(&evs, "delivered")[0]["job_id"], method);
    }
}

#[test]
fn without_a_signature_secret_the_route_is_not_there() {
    let redis = Redis::start();
    let api = VonageApi::start(API_KEY, API_SECRET);
    let s = vonage_setup(&redis, &api, SHA256);
    let _d = s.start();
    wait_ready(&s);
    let params = signed(&receipt("0A00000000000001", "delivered", "x", "0"));
    assert_eq!(post(&s, &params), 404);
    assert_eq!(call(&s, Via::Get, &params), 404);
    std::thread::sleep(Duration::from_millis(200));
    assert!(events(&mut redis.conn()).is_empty());
    // Nor is it offered to Vonage as the receipt URL: the dashboard's URL applies.
    let mut conn = redis.conn();
    enqueue(&mut conn, &[job("no-secret-1", "sms")]);
    wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    assert_eq!(api.requests()[0].field("callback"), None);

    // A method the dashboard does not offer is a config error that names the key.
    let bad = vonage_setup(
        &redis,
        &api,
        "signature_secret = \"x\"\nsignature_method = \"sha384\"",
    );
    let out = bad
        .tayori()
        .arg("check-config")
        .output()
        .expect("check-config");
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("channels.sms.vonage.signature_method"),
        "{said}"
    );
}

// ---------------------------------------------------------------------------------
// Inbound replies.

#[test]
fn stop_replies_unsubscribe_and_start_lifts_it() {
    let (redis, api, s, _d) = started();
    let mut conn = redis.conn();
    let mut n = 0;
    let mut reply = |text: &str, via: Via| -> u16 {
        n += 1;
        call(
            &s,
            via,
            &signed(&inbound(&format!("0B{n:014}"), TO_DIGITS, text)),
        )
    };
    assert_eq!(reply("STOP", Via::Post), 204);
    let evs = wait_for(&mut conn, WAIT, "unsubscribed", |e| {
        count(e, "unsubscribed") == 1
    });
    let e = of_type(&evs, "unsubscribed")[0];
    assert_eq!(
        (e["channel"].as_str(), e["address"].as_str()),
        (Some("sms"), Some(TO))
    );
    assert!(e["job_id"].is_null(), "{e}");
    assert_eq!(
        suppression_becomes(&mut conn, TO, Some("unsubscribed")).as_deref(),
        Some("unsubscribed")
    );
    // A job to the number, written nationally, is suppressed and never sent.
    enqueue(&mut conn, &[job("after-stop", "sms")]);
    let evs = wait_for(&mut conn, WAIT, "suppressed", |e| {
        count(e, "suppressed") == 1
    });
    assert_eq!(of_type(&evs, "suppressed")[0]["job_id"], "after-stop");
    assert!(api.requests().is_empty());

    assert_eq!(reply("START", Via::Get), 204);
    assert_eq!(suppression_becomes(&mut conn, TO, None), None, "START");
    let evs = wait_for(&mut conn, WAIT, "unblocked", |e| count(e, "unblocked") == 1);
    assert_eq!(of_type(&evs, "unblocked")[0]["address"], TO);

    // The Japanese opt-out, as JSON; then START again and a job goes out.
    assert_eq!(reply(" 配信停止 ", Via::Json), 204);
    assert_eq!(
        suppression_becomes(&mut conn, TO, Some("unsubscribed")).as_deref(),
        Some("unsubscribed"),
        "配信停止"
    );
    assert_eq!(reply("start", Via::Post), 204);
    assert_eq!(suppression_becomes(&mut conn, TO, None), None);
    enqueue(&mut conn, &[job("after-start", "sms")]);
    let evs = wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    assert_eq!(of_type(&evs, "sent")[0]["job_id"], "after-start");
    assert_eq!(api.accepted().len(), 1);

    // An ordinary reply changes nothing: `replied` with the text.
    assert_eq!(reply("ありがとう", Via::Post), 204);
    let evs = wait_for(&mut conn, WAIT, "replied", |e| count(e, "replied") == 1);
    assert_eq!(of_type(&evs, "replied")[0]["text"], "ありがとう");
    assert_eq!(count(&evs, "unsubscribed"), 2);
    assert_eq!(count(&evs, "unblocked"), 2);
    assert_eq!(suppression(&mut conn, TO), None);
    api.assert_no_violations();
}
