//! The happy paths and the policies around them, against a real redis-server.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn every_job_is_sent_once_with_one_outbox_file() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    let channels = ["email", "line", "sms", "dm"];
    let jobs: Vec<_> = (0..400)
        .map(|i| job(&format!("j{i:04}"), channels[i % 4]))
        .collect();
    enqueue(&mut conn, &jobs);
    let _d = s.start();
    wait_for(&mut conn, WAIT, "400 sent events", |e| {
        count(e, "sent") >= 400
    });
    std::thread::sleep(Duration::from_millis(300));
    let evs = events(&mut conn);
    assert_eq!(count(&evs, "sent"), 400, "nothing doubled");
    let by_job = terminal_by_job(&evs);
    assert_eq!(by_job.len(), 400);
    assert!(by_job.values().all(|v| v == &["sent"]));
    for (i, ch) in channels.iter().enumerate() {
        let files = s.outbox_files(ch);
        assert_eq!(files.len(), 100, "{ch} outbox");
        let ext = match *ch {
            "email" => "eml",
            "dm" => "csv",
            _ => "json",
        };
        let sample = format!("j{i:04}.{ext}");
        assert!(files.contains(&sample), "{ch}: {sample} missing");
    }
    // Acknowledged and removed: nothing pending, nothing left in the streams.
    for ch in channels {
        assert_eq!(
            xlen(&mut conn, &format!("t:{{0}}:jobs:{ch}")),
            0,
            "{ch} stream"
        );
    }
    // Events carry the contract's common fields.
    let e = evs.iter().find(|e| e["job_id"] == "j0001").unwrap();
    assert_eq!(e["channel"], "line");
    assert_eq!(e["campaign"], "test");
    assert_eq!(e["customer_id"], "C-j0001");
    assert_eq!(e["attempt"], 1);
    assert!(e["at"].as_str().unwrap().ends_with('Z'));
    assert!(e["provider_id"].as_str().unwrap().starts_with("file:"));
    // The personalization reached the message.
    let eml = std::fs::read_to_string(s.outbox("email").join("j0000.eml")).unwrap();
    assert!(eml.contains("Message-ID: <j0000@example.com>"));
    let line: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.outbox("line").join("j0001.json")).unwrap())
            .unwrap();
    assert_eq!(line["to"], "U4af4980629a1b2c3d4e5f60718293a4b");
    assert!(line["messages"][0]["text"]
        .as_str()
        .unwrap()
        .contains("1200ポイント"));
}

#[test]
fn a_repeated_id_is_a_duplicate_and_not_sent_again() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    enqueue(&mut conn, &[job("dup-1", "sms")]);
    let _d = s.start();
    wait_for(&mut conn, WAIT, "first send", |e| count(e, "sent") == 1);
    let first = std::fs::read(s.outbox("sms").join("dup-1.json")).unwrap();
    let mut again = job("dup-1", "sms");
    again["vars"]["points"] = json!(99999);
    enqueue(&mut conn, &[again]);
    let evs = wait_for(&mut conn, WAIT, "duplicate event", |e| {
        count(e, "duplicate") == 1
    });
    assert_eq!(count(&evs, "sent"), 1);
    assert_eq!(
        std::fs::read(s.outbox("sms").join("dup-1.json")).unwrap(),
        first,
        "the message was not sent again"
    );
}

#[test]
fn fallback_moves_the_job_to_the_next_channel() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    let mut j = job("fb-1", "line");
    j["to"].as_object_mut().unwrap().remove("line_user_id");
    j["fallback"] = json!(["sms", "email"]);
    j["to"].as_object_mut().unwrap().remove("phone");
    enqueue(&mut conn, &[j]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "sent by email", |e| count(e, "sent") == 1);
    let fallbacks: Vec<_> = evs.iter().filter(|e| e["type"] == "fallback").collect();
    assert_eq!(fallbacks.len(), 2, "line → sms → email: {evs:?}");
    assert_eq!(fallbacks[0]["channel"], "line");
    assert_eq!(fallbacks[0]["to_channel"], "sms");
    assert_eq!(fallbacks[0]["error"]["code"], "no_address");
    assert_eq!(fallbacks[1]["to_channel"], "email");
    let sent = evs.iter().find(|e| e["type"] == "sent").unwrap();
    assert_eq!(sent["channel"], "email");
    assert_eq!(sent["job_id"], "fb-1");
    assert!(s.outbox_files("line").is_empty() && s.outbox_files("sms").is_empty());
    assert_eq!(s.outbox_files("email"), vec!["fb-1.eml"]);
}

#[test]
fn scheduled_jobs_wait_until_send_at_and_expired_ones_are_not_sent() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    let due = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(2500);
    let mut later = job("later-1", "email");
    later["send_at"] = json!(due.to_string());
    let mut stale = job("stale-1", "email");
    stale["expires_at"] = json!("2020-01-01T00:00:00+09:00");
    enqueue(&mut conn, &[later, stale]);
    let _d = s.start();
    wait_for(&mut conn, WAIT, "expired event", |e| {
        count(e, "expired") == 1
    });
    // Before send_at the job waits in the delayed set and nothing is sent.
    let delayed: usize = redis::cmd("ZCARD")
        .arg("t:{0}:delayed")
        .query(&mut conn)
        .unwrap();
    assert_eq!(delayed, 1);
    assert_eq!(count(&events(&mut conn), "sent"), 0);
    let evs = wait_for(&mut conn, WAIT, "scheduled send", |e| count(e, "sent") == 1);
    let sent = evs.iter().find(|e| e["type"] == "sent").unwrap();
    let at: jiff::Timestamp = sent["at"].as_str().unwrap().parse().unwrap();
    assert!(at >= due, "sent at {at}, before send_at {due}");
    assert_eq!(s.outbox_files("email"), vec!["later-1.eml"]);
}

/// A channel whose outbox directory is replaced by a plain file fails every
/// write: a real transient I/O error, retried with backoff.
fn break_outbox(s: &Setup, ch: &str) {
    let dir = s.outbox(ch);
    // The daemon creates it once its channels are built (the SMS channel loads
    // the phone-number metadata first): wait for that, not for a fixed time.
    let deadline = std::time::Instant::now() + WAIT;
    while !dir.is_dir() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never created",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
}

fn mend_outbox(s: &Setup, ch: &str) {
    let dir = s.outbox(ch);
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
}

const FAST_RETRY: &str =
    "[retry]\nmax_attempts = 3\nbase_delay = \"200ms\"\nmax_delay = \"400ms\"\n";

#[test]
fn a_transient_failure_is_retried_until_it_succeeds() {
    let redis = Redis::start();
    let s = setup(&redis, FAST_RETRY, ALL_FILE);
    let mut conn = redis.conn();
    let mut d = s.start();
    break_outbox(&s, "dm");
    enqueue(&mut conn, &[job("retry-1", "dm")]);
    let evs = wait_for(&mut conn, WAIT, "a deferred event", |e| {
        count(e, "deferred") >= 1
    });
    let deferred = evs.iter().find(|e| e["type"] == "deferred").unwrap();
    assert_eq!(deferred["error"]["code"], "file_io");
    assert_eq!(deferred["attempt"], 1);
    assert!(deferred["retry_at"].as_str().is_some());
    mend_outbox(&s, "dm");
    let evs = wait_for(&mut conn, WAIT, "sent after retry", |e| {
        count(e, "sent") == 1
    });
    let sent = evs.iter().find(|e| e["type"] == "sent").unwrap();
    assert!(sent["attempt"].as_u64().unwrap() >= 2, "{sent}");
    assert_eq!(count(&evs, "failed"), 0);
    assert_eq!(d.terminate(Duration::from_secs(15)), Some(0));
}

#[test]
fn retries_exhausted_fail_with_the_last_error() {
    let redis = Redis::start();
    let s = setup(&redis, FAST_RETRY, ALL_FILE);
    let mut conn = redis.conn();
    let _d = s.start();
    break_outbox(&s, "sms");
    enqueue(&mut conn, &[job("doomed-1", "sms")]);
    let evs = wait_for(&mut conn, WAIT, "failed after retries", |e| {
        count(e, "failed") == 1
    });
    assert_eq!(
        count(&evs, "deferred"),
        2,
        "attempts 1 and 2 deferred, attempt 3 failed"
    );
    let failed = evs.iter().find(|e| e["type"] == "failed").unwrap();
    assert_eq!(failed["attempt"], 3);
    assert_eq!(failed["error"]["code"], "file_io");
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 attempts"));
    assert_eq!(count(&evs, "sent"), 0);
}

#[test]
fn a_missing_template_variable_fails_the_job_without_a_message() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    let mut j = job("novar-1", "email");
    j["vars"] = json!({"items": []});
    enqueue(&mut conn, &[j, job("ok-1", "email")]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "both outcomes", |e| {
        count(e, "failed") == 1 && count(e, "sent") == 1
    });
    let failed = evs.iter().find(|e| e["type"] == "failed").unwrap();
    assert_eq!(failed["job_id"], "novar-1");
    assert_eq!(failed["error"]["code"], "template");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("points"),
        "{failed}"
    );
    assert_eq!(
        s.outbox_files("email"),
        vec!["ok-1.eml"],
        "no half-rendered message"
    );
}

#[test]
fn a_throttled_channel_does_not_hold_up_the_others() {
    let redis = Redis::start();
    // SMS limited to 2 per second; email unlimited.
    let channels = ALL_FILE.replace(
        "dir = \"{outbox}/sms\"\nrate = \"100000/s\"",
        "dir = \"{outbox}/sms\"\nrate = \"2/s\"\nburst = 1",
    );
    let s = setup(&redis, "", &channels);
    let mut conn = redis.conn();
    let sms: Vec<_> = (0..20).map(|i| job(&format!("s{i}"), "sms")).collect();
    let email: Vec<_> = (0..200).map(|i| job(&format!("e{i}"), "email")).collect();
    enqueue(&mut conn, &sms);
    enqueue(&mut conn, &email);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "all email sent", |e| {
        e.iter()
            .filter(|e| e["type"] == "sent" && e["channel"] == "email")
            .count()
            == 200
    });
    let sms_sent = evs
        .iter()
        .filter(|e| e["type"] == "sent" && e["channel"] == "sms")
        .count();
    assert!(
        sms_sent < 20,
        "email finished while sms was still throttled ({sms_sent}/20 sms sent)"
    );
}
