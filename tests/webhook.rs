//! The webhook channel against a receiver that verifies every request with the
//! official `standardwebhooks` library (tests/peers/webhook_receiver.py): the
//! signature, a retried 500 under the same `webhook-id`, a 410 that suppresses the
//! endpoint and falls back, a 400 that fails with its code.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A Standard Webhooks secret: `whsec_` and base64 of 32 bytes.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwTayoriTest0=";

/// The Python receiver, its port and its log of requests.
struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start(script: Value) -> Receiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("requests.jsonl");
        let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/webhook_receiver.py");
        let mut child = Command::new(common::smtp::python())
            .arg(&peer)
            .arg("0")
            .arg(script.to_string())
            .env("WEBHOOK_SECRET", SECRET)
            .env("WEBHOOK_LOG", &log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the webhook receiver starts (scripts/test.sh makes its venv)");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("the receiver prints its port");
        let port = first
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the receiver said {first:?}"));
        Receiver {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests it received, in order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a log line"))
            .collect()
    }

    fn to(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhook_job(id: &str, to: Option<&str>, fallback: &[&str]) -> Value {
    let mut to_json = json!({"name": "山田 太郎", "email": "taro@example.com"});
    if let Some(url) = to {
        to_json["webhook_url"] = json!(url);
    }
    json!({
        "id": id,
        "campaign": "hooks",
        "channel": "webhook",
        "fallback": fallback,
        "to": to_json,
        "content": {
            "webhook": {"body": {"type": "order.shipped", "text": "{{ to.name }}様 {{ points }}pt", "n": 3}},
            "email": {"subject": "s", "text": "{{ points }}pt"}
        },
        "vars": {"points": 1200}
    })
}

fn events_of(evs: &[Value], job: &str) -> Vec<String> {
    evs.iter()
        .filter(|e| e["job_id"] == job)
        .map(|e| {
            format!(
                "{}:{}",
                e["channel"].as_str().unwrap_or(""),
                e["type"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn signed_posts_are_verified_retried_suppressed_and_failed_as_the_receiver_answers() {
    let receiver = Receiver::start(json!({
        "/retry": [500],
        "/gone": [410],
        "/bad": [{"status": 400, "body": format!("missing field 'customer' {}", "x".repeat(300))}],
    }));
    let redis = Redis::start();
    let channels = format!(
        r#"
[channels.webhook]
url = "{default}"
secret = "{SECRET}"
allow_http = true
timeout = "5s"
rate = "1000/s"

[channels.email]
transport = "file"
dir = "{{outbox}}/email"
from = "Example Shop <news@example.com>"

[retry]
base_delay = "100ms"
max_delay = "300ms"
"#,
        default = receiver.url("/default"),
    );
    let s = setup(&redis, "", &channels);
    let mut conn = redis.conn();
    let _d = s.start();
    s.enqueue_cli(&[
        webhook_job("ok-1", None, &[]),
        webhook_job("retry-1", Some(&receiver.url("/retry")), &[]),
        webhook_job("gone-1", Some(&receiver.url("/gone")), &["email"]),
        webhook_job("bad-1", Some(&receiver.url("/bad")), &[]),
    ]);
    let done = |evs: &[Value], job: &str| {
        events_of(evs, job)
            .iter()
            .any(|e| e.ends_with(":sent") || e.ends_with(":failed"))
    };
    let evs = wait_for(
        &mut conn,
        Duration::from_secs(30),
        "every job done",
        |evs| {
            ["ok-1", "retry-1", "gone-1", "bad-1"]
                .iter()
                .all(|j| done(evs, j))
        },
    );

    // Every request verified with the reference library, and the body rendered.
    let all = receiver.requests();
    assert!(!all.is_empty());
    for r in &all {
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["content_type"], "application/json", "{r}");
        assert_eq!(r["body"]["text"], "山田 太郎様 1200pt", "{r}");
        assert_eq!(r["body"]["n"], 3, "{r}");
    }
    assert_eq!(events_of(&evs, "ok-1"), ["webhook:sent"]);
    assert_eq!(receiver.to("/default").len(), 1);

    // A 500 is retried with the same webhook-id, then sent.
    let retried = receiver.to("/retry");
    assert_eq!(retried.len(), 2, "{retried:?}");
    assert_eq!(retried[0]["status"], 500);
    assert_eq!(retried[1]["status"], 200);
    assert_eq!(retried[0]["webhook_id"], retried[1]["webhook_id"]);
    assert_ne!(retried[0]["timestamp"], Value::Null);
    assert_eq!(
        events_of(&evs, "retry-1"),
        ["webhook:deferred", "webhook:sent"]
    );
    let sent = evs
        .iter()
        .find(|e| e["job_id"] == "retry-1" && e["type"] == "sent")
        .unwrap();
    assert_eq!(sent["provider_id"], retried[0]["webhook_id"]);

    // A 410 suppresses the endpoint and the job falls back to email.
    assert_eq!(
        events_of(&evs, "gone-1"),
        ["webhook:bounced", "webhook:fallback", "email:sent"]
    );
    // A 400 fails with its status and at most 200 bytes of the answer.
    let failed = evs
        .iter()
        .find(|e| e["job_id"] == "bad-1" && e["type"] == "failed")
        .expect("bad-1 failed");
    assert_eq!(failed["error"]["code"], "http_400", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("missing field 'customer'"), "{message}");
    assert!(message.len() < 300, "{} bytes", message.len());
    assert_eq!(receiver.to("/bad").len(), 1, "a 400 is not retried");

    // The suppressed endpoint is never posted again: the next job to it falls back at once.
    s.enqueue_cli(&[webhook_job(
        "gone-2",
        Some(&receiver.url("/gone")),
        &["email"],
    )]);
    let evs = wait_for(&mut conn, Duration::from_secs(30), "gone-2 done", |evs| {
        done(evs, "gone-2")
    });
    let gone2 = events_of(&evs, "gone-2");
    assert!(gone2.contains(&"email:sent".to_owned()), "{gone2:?}");
    assert!(!gone2.contains(&"webhook:sent".to_owned()), "{gone2:?}");
    assert_eq!(
        receiver.to("/gone").len(),
        1,
        "the gone endpoint was posted again"
    );
}

#[test]
fn a_bad_secret_or_url_is_a_config_error_naming_the_key() {
    let redis = Redis::start();
    for (section, key) in [
        (
            "url = \"https://hooks.example.com/in\"\nsecret = \"whsec_%%%\"",
            "channels.webhook.secret",
        ),
        (
            "url = \"https://hooks.example.com/in\"",
            "channels.webhook.secret",
        ),
        (
            "url = \"http://hooks.example.com/in\"\nsecret = \"{SECRET}\"",
            "channels.webhook.url",
        ),
        (
            "url = \"https://hooks.example.com/in\"\nsecret = \"{SECRET}\"\nsecrte = 1",
            "channels.webhook.secrte",
        ),
    ] {
        let section = section.replace("{SECRET}", SECRET);
        let s = setup(&redis, "", &format!("[channels.webhook]\n{section}\n"));
        let out = s.tayori().arg("check-config").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{section}");
        assert!(err.contains(key), "{section}: {err}");
        assert!(
            !err.contains("MfKQ9r8GKYqrTwjUPD8"),
            "the secret leaked: {err}"
        );
    }
}
