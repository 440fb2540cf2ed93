//! Mail relayed through SendGrid (issue 21): each message carries its job id in
//! `X-SMTPAPI`, and SendGrid's signed Event Webhook at `/webhooks/sendgrid` turns
//! delivered, bounce, dropped, spamreport and unsubscribe events into events and
//! suppressions. The test signs as SendGrid does (P-256 ECDSA, made with `ring`
//! in the test kit) and first has SendGrid's own Python library verify each
//! signature; forged, unsigned and stale requests are refused and record nothing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::smtp::SmtpPeer;
use common::*;
use serde_json::{json, Value};
use tayori_testkit::sign::SendgridKey;

const WAIT: Duration = Duration::from_secs(30);

fn channels(port: u16, public_key: &str) -> String {
    format!(
        r#"
[channels.email]
transport = "smtp"
from = "Example Shop <news@example.com>"
rate = "1000/s"
concurrency = 4

[channels.email.smtp]
host = "127.0.0.1"
port = {port}
tls = "none"

[channels.email.sendgrid]
webhook_public_key = "{public_key}"
"#
    )
}

/// SendGrid's own verifier (`tests/peers/sendgrid_verify.py`) on each request.
fn sendgrid_accepts(public_key: &str, requests: &[(String, String, String)]) -> Vec<bool> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(common::smtp::python())
        .arg(root.join("tests/peers/sendgrid_verify.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tests/peers/sendgrid_verify.py");
    let mut stdin = child.stdin.take().unwrap();
    for (timestamp, payload, signature) in requests {
        let line = json!({"public_key": public_key, "payload": payload,
                          "signature": signature, "timestamp": timestamp});
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let out: Vec<bool> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| l.unwrap() == "true")
        .collect();
    assert!(child.wait().unwrap().success());
    out
}

fn post(s: &Setup, timestamp: Option<&str>, signature: Option<&str>, body: &str) -> (u16, String) {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(t) = timestamp {
        headers.push(("X-Twilio-Email-Event-Webhook-Timestamp", t));
    }
    if let Some(sig) = signature {
        headers.push(("X-Twilio-Email-Event-Webhook-Signature", sig));
    }
    s.post("/webhooks/sendgrid", &headers, body.as_bytes())
        .expect("POST /webhooks/sendgrid")
}

fn suppression(conn: &mut redis::Connection, address: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg("t:{0}:suppressed:email")
        .arg(address)
        .query(conn)
        .unwrap()
}

#[test]
fn sendgrid_events_become_reactions_and_unsigned_or_stale_ones_record_nothing() {
    let redis = Redis::start();
    let peer = SmtpPeer::start();
    let key = SendgridKey::generate();
    let s = setup(&redis, "", &channels(peer.port, &key.public_key));
    let mut conn = redis.conn();
    let addresses = [
        "taro@example.net",
        "hanako@example.net",
        "jiro@example.net",
        "saburo@example.net",
        "shiro@example.net",
    ];
    let jobs: Vec<Value> = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut j = job(&format!("sg-{i}"), "email");
            j["to"]["email"] = json!(a);
            j
        })
        .collect();
    enqueue(&mut conn, &jobs);
    let _d = s.start();
    s.wait_http();
    wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") == 5);
    // Each message names its job for SendGrid.
    for m in peer.wait_for(5, WAIT) {
        let raw = String::from_utf8_lossy(&m.raw);
        let header = raw
            .lines()
            .find_map(|l| l.strip_prefix("X-SMTPAPI: "))
            .unwrap_or_else(|| panic!("no X-SMTPAPI in\n{raw}"));
        let args: Value = serde_json::from_str(header).unwrap();
        let job_id = args["unique_args"]["tayori_job_id"].as_str().unwrap();
        let i: usize = job_id.strip_prefix("sg-").unwrap().parse().unwrap();
        assert_eq!(m.rcpt_tos, [addresses[i]], "{header}");
    }

    let ev = |event: &str, i: usize, extra: Value| {
        let mut e = json!({"email": addresses[i], "timestamp": 1_700_000_000,
                           "event": event, "sg_event_id": format!("ev-{event}-{i}"),
                           "sg_message_id": "m.filter0001", "tayori_job_id": format!("sg-{i}")});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e
    };
    let body = json!([
        ev("processed", 0, json!({})),
        ev("delivered", 0, json!({"response": "250 OK"})),
        ev("bounce", 1, json!({"type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 no such user"})),
        ev("bounce", 2, json!({"type": "blocked", "status": "4.0.0", "reason": "421 try again later"})),
        ev("spamreport", 3, json!({})),
        ev("unsubscribe", 4, json!({})),
        ev("open", 0, json!({"useragent": "Mozilla/5.0"})),
        // Not one of ours.
        {"email": "other@example.net", "timestamp": 1_700_000_000, "event": "bounce",
         "type": "bounce", "sg_event_id": "ev-foreign"},
    ])
    .to_string();
    let now = jiff::Timestamp::now().as_second();
    let fresh = now.to_string();
    let stale = (now - 25 * 3600).to_string();
    let forger = SendgridKey::generate();
    let signed = (
        fresh.clone(),
        body.clone(),
        key.sign(&fresh, body.as_bytes()),
    );
    let stale_signed = (
        stale.clone(),
        body.clone(),
        key.sign(&stale, body.as_bytes()),
    );
    let forged = (
        fresh.clone(),
        body.clone(),
        forger.sign(&fresh, body.as_bytes()),
    );
    // SendGrid's library agrees with the test's signer, both ways.
    assert_eq!(
        sendgrid_accepts(
            &key.public_key,
            &[signed.clone(), stale_signed.clone(), forged.clone()]
        ),
        [true, true, false]
    );

    let before = events(&mut conn).len();
    assert_eq!(post(&s, Some(&fresh), None, &body).0, 401);
    assert_eq!(post(&s, None, Some(&signed.2), &body).0, 401);
    assert_eq!(post(&s, Some(&forged.0), Some(&forged.2), &body).0, 403);
    assert_eq!(
        post(&s, Some(&stale_signed.0), Some(&stale_signed.2), &body).0,
        403
    );
    // A signature over another body.
    assert_eq!(
        post(
            &s,
            Some(&fresh),
            Some(&signed.2),
            &body.replace("taro", "tarou")
        )
        .0,
        403
    );
    // A correctly signed body that is not a list of events: 400.
    let junk = r#"{"event":"delivered"}"#;
    let junk_sig = key.sign(&fresh, junk.as_bytes());
    assert_eq!(post(&s, Some(&fresh), Some(&junk_sig), junk).0, 400);
    assert_eq!(
        events(&mut conn).len(),
        before,
        "a refused request recorded something"
    );

    let (status, answer) = post(&s, Some(&signed.0), Some(&signed.2), &body);
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["recorded"], 5, "{answer}");
    assert_eq!(answer["unmatched"], 1, "{answer}");
    assert_eq!(answer["ignored"], 2, "{answer}");
    let evs = events(&mut conn);
    let of = |t: &str, job: &str| {
        evs.iter()
            .filter(|e| e["type"] == t && e["job_id"] == job && e["source"] == "sendgrid")
            .count()
    };
    assert_eq!(of("delivered", "sg-0"), 1, "{evs:?}");
    assert_eq!(of("bounced", "sg-1"), 1, "{evs:?}");
    assert_eq!(of("deferred", "sg-2"), 1, "{evs:?}");
    assert_eq!(of("complained", "sg-3"), 1, "{evs:?}");
    assert_eq!(of("unsubscribed", "sg-4"), 1, "{evs:?}");
    let bounced = evs.iter().find(|e| e["type"] == "bounced").unwrap();
    assert_eq!(
        bounced["error"]["code"], "sendgrid_bounce_5.1.1",
        "{bounced}"
    );
    assert_eq!(
        suppression(&mut conn, "hanako@example.net").as_deref(),
        Some("bounced")
    );
    assert_eq!(
        suppression(&mut conn, "jiro@example.net"),
        None,
        "a block is not a bounce"
    );
    assert_eq!(
        suppression(&mut conn, "saburo@example.net").as_deref(),
        Some("complained")
    );
    assert_eq!(
        suppression(&mut conn, "shiro@example.net").as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(suppression(&mut conn, "other@example.net"), None);

    // SendGrid retries the batch: nothing new.
    let n = events(&mut conn).len();
    let (status, answer) = post(&s, Some(&signed.0), Some(&signed.2), &body);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"repeated\":5"), "{answer}");
    assert_eq!(events(&mut conn).len(), n);
}
