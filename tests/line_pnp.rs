//! LINE notification messages (PNP): transactional jobs with a phone number and
//! no LINE user id, against the fake LINE API that checks every request against
//! LINE's OpenAPI description (`POST /bot/pnp/push`), and the webhook's
//! `delivery` event. One Redis, one fake API and one daemon for the whole flow
//! (the fake's scripted answers go to requests in order, so the steps run one
//! after another).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tayori_testkit::line_api::{self, LineApi, Recorded, Reply, PNP_PATH, PUSH_PATH};
use tayori_testkit::sign::{hex, line_signature, sha256};

const TOKEN: &str = "test-channel-access-token";
const SECRET: &str = "test-channel-secret";
const WAIT: Duration = Duration::from_secs(30);

/// The hash LINE asks for, computed here with the kit's SHA-256 (ring), not Tayori's.
fn hashed(e164: &str) -> String {
    hex(&sha256(e164.as_bytes()))
}

/// The tag Tayori sends for a job on LINE (the README's rule).
fn tag_of(job_id: &str) -> String {
    format!(
        "tayori-{}",
        hex(&sha256(format!("{job_id}/line").as_bytes()))
    )
}

/// A job on LINE with only a phone number: `kind` transactional unless `None`.
fn phone_job(id: &str, phone: &str, kind: Option<&str>) -> Value {
    let mut j = job(id, "line");
    j["to"] = json!({"name": "山田 太郎", "phone": phone, "email": "taro@example.com"});
    j["customer_id"] = json!("C-pnp"); // one partition for all (customer ids ≤ 128 bytes)
    if let Some(k) = kind {
        j["kind"] = json!(k);
    }
    j
}

fn pnp_requests(api: &LineApi) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(|r| r.path == PNP_PATH)
        .collect()
}

fn of_job<'a>(evs: &'a [Value], id: &str, kind: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["job_id"] == id && e["type"] == kind)
        .collect()
}

fn delivery_webhook(event_id: &str, data: &str) -> Vec<u8> {
    let body = json!({
        "destination": "U0123456789abcdef0123456789abcdef",
        "events": [{
            "type": "delivery", "mode": "active", "timestamp": 1_790_000_000_000_i64,
            "webhookEventId": event_id, "deliveryContext": {"isRedelivery": false},
            "delivery": {"data": data}
        }]
    });
    let violations = line_api::webhook_violations(&body);
    assert!(
        violations.is_empty(),
        "test webhook bodies must follow LINE's spec: {violations:?}"
    );
    serde_json::to_vec(&body).unwrap()
}

fn post_webhook(s: &Setup, body: &[u8]) -> u16 {
    let sig = line_signature(SECRET, body);
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Line-Signature", sig.as_str()),
    ];
    s.post("/webhooks/line", &headers, body)
        .map(|(status, _)| status)
        .unwrap_or(0)
}

#[test]
fn transactional_jobs_with_a_phone_go_as_notification_messages_and_come_back_delivered() {
    let redis = Redis::start();
    let api = LineApi::start(TOKEN);
    let channels = format!(
        r#"
[channels.line]
api_base = "{base}"
channel_access_token = "{TOKEN}"
channel_secret = "{SECRET}"
pnp = true
timeout = "2s"
pause = "1s"
rate = "100000/s"

[channels.email]
transport = "file"
dir = "{{outbox}}/email"
from = "Example Shop <news@example.com>"
"#,
        base = api.base_url()
    );
    let s = setup(
        &redis,
        "[retry]\nmax_attempts = 4\nbase_delay = \"200ms\"\nmax_delay = \"400ms\"",
        &channels,
    );
    let mut conn = redis.conn();
    // A 256-byte job id: no tag could carry it.
    let long_id = format!("注文-{}", "x".repeat(256 - "注文-".len()));
    let mut welcome = phone_job("welcome-1", "０９０－１２３４－５６７９", None);
    welcome["template"] = json!("welcome"); // transactional by its template
    let mut both = phone_job("both-1", "090-1234-5670", Some("transactional"));
    both["to"]["line_user_id"] = json!("U4af4980629a1b2c3d4e5f60718293a4b");
    // Through `tayori enqueue`: its check takes a phone as their LINE address.
    s.enqueue_cli(&[
        phone_job("order-1", "090-1234-5678", Some("transactional")),
        welcome,
        phone_job(&long_id, "+81 90 1234 5670", Some("transactional")),
        both,
    ]);
    // Marketing never goes through PNP: no address on LINE, as without pnp
    // (`tayori enqueue` would refuse them; added as a CRM's XADD would).
    enqueue(
        &mut conn,
        &[
            phone_job("promo-1", "090-1234-5678", None),
            phone_job("promo-2", "090-1234-5678", Some("marketing")),
        ],
    );
    let d = s.start();
    s.wait_http();
    let evs = wait_for(&mut conn, WAIT, "4 sent, 2 without address", |e| {
        count(e, "sent") == 4 && count(e, "failed") == 2
    });
    api.assert_no_violations();

    // Each notification message: the hashed E.164 number, a tag, no retry key.
    let pnp = pnp_requests(&api);
    let expected = [
        ("order-1", "+819012345678"),
        ("welcome-1", "+819012345679"),
        (long_id.as_str(), "+819012345670"),
    ];
    assert_eq!(pnp.len(), expected.len(), "{pnp:?}");
    for (id, e164) in expected {
        let tag = tag_of(id);
        let r = pnp
            .iter()
            .find(|r| r.header("x-line-delivery-tag") == Some(tag.as_str()))
            .unwrap_or_else(|| panic!("no request tagged for {id}: {pnp:?}"));
        assert!((16..=100).contains(&tag.len()));
        assert_eq!(r.body["to"], hashed(e164), "{id}");
        assert!(!r.body.to_string().contains("9012345"), "no plain number");
        assert_eq!(r.retry_key, None, "PNP has no retry key");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let sent = of_job(&evs, id, "sent");
        assert_eq!(sent.len(), 1, "{id}: {evs:?}");
        assert_eq!(sent[0]["via"], "pnp");
        assert_eq!(sent[0]["channel"], "line");
        assert_eq!(sent[0]["provider_id"], r.request_id);
    }
    // A user id wins over the phone: an ordinary push.
    let push: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == PUSH_PATH)
        .collect();
    assert_eq!(push.len(), 1);
    assert_eq!(push[0].body["to"], "U4af4980629a1b2c3d4e5f60718293a4b");
    assert!(of_job(&evs, "both-1", "sent")[0].get("via").is_none());
    for id in ["promo-1", "promo-2"] {
        let failed = of_job(&evs, id, "failed");
        assert_eq!(failed[0]["error"]["code"], "no_address", "{id}: {failed:?}");
    }

    // The delivery completion event: `delivered` for the job, once.
    for (n, id) in ["order-1", long_id.as_str()].into_iter().enumerate() {
        let body = delivery_webhook(&format!("01JDELIVERY00000000000000{n}"), &tag_of(id));
        assert_eq!(post_webhook(&s, &body), 200);
        assert_eq!(post_webhook(&s, &body), 200, "a redelivery");
    }
    // Not ours: a send without a tag reports the hashed number.
    let foreign = delivery_webhook("01JDELIVERY0000000000000X", &hashed("+819012345678"));
    assert_eq!(post_webhook(&s, &foreign), 200);
    let evs = wait_for(&mut conn, WAIT, "2 delivered", |e| {
        count(e, "delivered") == 2
    });
    for id in ["order-1", long_id.as_str()] {
        let delivered = of_job(&evs, id, "delivered");
        assert_eq!(delivered.len(), 1, "{id}: {evs:?}");
        assert_eq!(delivered[0]["channel"], "line");
        assert_eq!(delivered[0]["via"], "pnp");
        assert_eq!(delivered[0]["occurred_at"], "2026-09-21T14:13:20.000Z");
    }

    // A 5xx may have delivered: never sent again (no retry key to make a retry
    // safe), and not on the fallback channel either.
    api.script(vec![Reply::ServerError]);
    let mut j = phone_job("order-500", "090-1111-2222", Some("transactional"));
    j["fallback"] = json!(["email"]);
    s.enqueue_cli(&[j]);
    let evs = wait_for(&mut conn, WAIT, "order-500 failed", |e| {
        !of_job(e, "order-500", "failed").is_empty()
    });
    let failed = of_job(&evs, "order-500", "failed")[0];
    assert_eq!(failed["error"]["code"], "line_pnp_unconfirmed");
    assert!(of_job(&evs, "order-500", "fallback").is_empty());
    let tag = tag_of("order-500");
    let tried = |api: &LineApi, tag: &str| {
        pnp_requests(api)
            .iter()
            .filter(|r| r.header("x-line-delivery-tag") == Some(tag))
            .count()
    };
    assert_eq!(tried(&api, &tag), 1, "one request, not retried");

    // A 429 proves nothing was taken: retried, sent once.
    api.script(vec![Reply::TooManyRequests]);
    s.enqueue_cli(&[phone_job(
        "order-429",
        "090-1111-3333",
        Some("transactional"),
    )]);
    let evs = wait_for(&mut conn, WAIT, "order-429 sent", |e| {
        !of_job(e, "order-429", "sent").is_empty()
    });
    assert_eq!(
        of_job(&evs, "order-429", "deferred")[0]["error"]["code"],
        "line_429"
    );
    assert_eq!(tried(&api, &tag_of("order-429")), 2);

    // 422: no LINE user for the number can get it: the job falls back.
    api.script(vec![Reply::Unprocessable("Failed to send messages".into())]);
    let mut j = phone_job("order-422", "090-1111-4444", Some("transactional"));
    j["fallback"] = json!(["email"]);
    s.enqueue_cli(&[j]);
    let evs = wait_for(&mut conn, WAIT, "order-422 sent by email", |e| {
        !of_job(e, "order-422", "sent").is_empty()
    });
    let fb = of_job(&evs, "order-422", "fallback")[0];
    assert_eq!(fb["to_channel"], "email");
    assert_eq!(fb["error"]["code"], "line_pnp_422");
    assert_eq!(of_job(&evs, "order-422", "sent")[0]["channel"], "email");

    // A number that is no number never reaches LINE; `check-jobs` names to.phone.
    let before = api.requests().len();
    enqueue(
        &mut conn,
        &[phone_job("order-bad", "12", Some("transactional"))],
    );
    let evs = wait_for(&mut conn, WAIT, "order-bad failed", |e| {
        !of_job(e, "order-bad", "failed").is_empty()
    });
    assert_eq!(
        of_job(&evs, "order-bad", "failed")[0]["error"]["code"],
        "invalid_phone"
    );
    assert_eq!(api.requests().len(), before);
    api.assert_no_violations();
    drop(d);
}

#[test]
fn check_jobs_and_the_config_check_know_notification_messages() {
    let redis = Redis::start();
    let channels = r#"
[channels.line]
transport = "file"
dir = "{outbox}/line"
pnp = true
"#;
    let s = setup(&redis, "", channels);
    let jobs = [
        phone_job("ok-1", "090-1234-5678", Some("transactional")),
        phone_job("bad-phone", "12", Some("transactional")),
        phone_job("promo-1", "090-1234-5678", None),
    ];
    let text: String = jobs.iter().map(|j| format!("{j}\n")).collect();
    let out = s.run_with_stdin(&["check-jobs", "-"], &text);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("bad-phone") && lines[0].contains("to.phone"),
        "{stdout}"
    );
    assert!(lines[0].contains("invalid_phone"), "{stdout}");
    assert!(
        lines[1].contains("promo-1") && lines[1].contains("missing_address"),
        "{stdout}"
    );

    // The file transport writes the notification body: the hash, never the number.
    let d = s.start();
    let mut conn = redis.conn();
    enqueue(&mut conn, &jobs[..1]);
    wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    drop(d);
    let files = s.outbox_files("line");
    assert_eq!(files.len(), 1);
    let written: Value =
        serde_json::from_slice(&std::fs::read(s.outbox("line").join(&files[0])).unwrap()).unwrap();
    assert_eq!(written["to"], hashed("+819012345678"));
    assert!(line_api::pnp_violations(&written).is_empty());

    // A region libphonenumber has no plan for: the file, the key and the fix.
    let bad = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace("pnp = true", "pnp = true\npnp_default_region = \"XX\"");
    let cfg = s.dir.path().join("bad-region.toml");
    std::fs::write(&cfg, bad).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tayori"))
        .arg("-c")
        .arg(&cfg)
        .arg("check-config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad-region.toml")
            && stderr.contains("channels.line.pnp_default_region")
            && stderr.contains("\"JP\""),
        "{stderr}"
    );
}

/// One request to the fake, over a plain socket: (status, body).
fn post_to_fake(api: &LineApi, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", api.port())).unwrap();
    let mut head = format!(
        "POST {PNP_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    stream
        .write_all(format!("{head}\r\n{body}").as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let (status, _, body): (u16, Vec<(String, String)>, Vec<u8>) = parse_response(&raw);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[test]
fn the_fake_refuses_a_number_in_clear_and_a_tag_outside_16_to_100_characters() {
    let api = LineApi::start(TOKEN);
    let messages = json!([{"type": "text", "text": "ご注文を承りました"}]);
    let clear = json!({"to": "+819012345678", "messages": messages});
    let (status, _) = post_to_fake(&api, &[("X-Line-Delivery-Tag", "short")], &clear);
    assert_eq!(status, 400);
    let violations = api.violations().join("\n");
    assert!(
        violations.contains("to: must be the SHA-256"),
        "{violations}"
    );
    assert!(violations.contains("X-Line-Delivery-Tag"), "{violations}");
    assert!(api.deliveries().is_empty());

    let long = "t".repeat(101);
    let hashed_body = json!({"to": hashed("+819012345678"), "messages": messages});
    let (status, _) = post_to_fake(&api, &[("X-Line-Delivery-Tag", &long)], &hashed_body);
    assert_eq!(status, 400, "{:?}", api.violations());

    let tag = tag_of("order-1");
    let (status, body) = post_to_fake(&api, &[("X-Line-Delivery-Tag", &tag)], &hashed_body);
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(api.deliveries().len(), 1);
}
