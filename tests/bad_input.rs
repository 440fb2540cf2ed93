//! Malformed jobs become dead letters plus a `failed` event naming the field;
//! the daemon keeps going.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn dead_letters(conn: &mut redis::Connection) -> Vec<Vec<(String, String)>> {
    xrange(conn, "t:{0}:dead")
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}

#[test]
fn malformed_jobs_are_dead_lettered_with_the_field_named() {
    let redis = Redis::start();
    let s = setup(&redis, "max_job_bytes = 4096", ALL_FILE);
    let mut conn = redis.conn();
    let mut no_address = job("noaddr-1", "email");
    no_address["to"].as_object_mut().unwrap().remove("email");
    let mut wrong_type = job("wrongtype-1", "email");
    wrong_type["fallback"] = json!("sms");
    let mut huge = job("huge-1", "email");
    huge["vars"]["blob"] = json!("x".repeat(10_000));
    let bad: Vec<(String, &str)> = vec![
        ("{not json".to_owned(), "job"),
        (
            json!({"channel": "email", "template": "spring_sale"}).to_string(),
            "id",
        ),
        (
            json!({"id": "fax-1", "channel": "fax", "template": "spring_sale"}).to_string(),
            "channel",
        ),
        (
            json!({"id": "wrongstream-1", "channel": "sms", "template": "spring_sale"}).to_string(),
            "channel",
        ),
        (no_address.to_string(), "to.email"),
        (wrong_type.to_string(), "fallback"),
        (huge.to_string(), "job"),
        ("[1,2,3]".to_owned(), "job"),
    ];
    let raws: Vec<String> = bad.iter().map(|(r, _)| r.clone()).collect();
    enqueue_raw(&mut conn, "email", &raws);
    // An entry without a `job` field at all.
    let _: String = redis::cmd("XADD")
        .arg("t:{0}:jobs:email")
        .arg("*")
        .arg("payload")
        .arg("x")
        .query(&mut conn)
        .unwrap();
    // A good job behind them still goes out.
    enqueue(&mut conn, &[job("good-1", "email")]);
    let _d = s.start();
    let evs = wait_for(&mut conn, Duration::from_secs(30), "all outcomes", |e| {
        count(e, "failed") == 9 && count(e, "sent") == 1
    });
    let failed: Vec<&Value> = evs.iter().filter(|e| e["type"] == "failed").collect();
    // Outcomes are written as they happen, not in queue order: compare the fields named.
    let mut named: Vec<String> = failed
        .iter()
        .map(|e| e["error"]["field"].as_str().unwrap_or("?").to_owned())
        .collect();
    let mut expected: Vec<String> = bad
        .iter()
        .map(|(_, f)| f.to_string())
        .chain(["job".to_owned()])
        .collect();
    named.sort();
    expected.sort();
    assert_eq!(named, expected, "{failed:?}");
    let by_id = |id: &str| {
        failed
            .iter()
            .find(|e| e["job_id"] == id)
            .copied()
            .unwrap_or_else(|| panic!("no failed event for {id}"))
    };
    // Ids are salvaged where the JSON is readable, and the field is the right one.
    assert_eq!(by_id("fax-1")["error"]["field"], "channel");
    assert!(by_id("fax-1")["error"]["message"]
        .as_str()
        .unwrap()
        .contains("fax"));
    assert_eq!(by_id("wrongstream-1")["error"]["field"], "channel");
    assert_eq!(by_id("noaddr-1")["error"]["field"], "to.email");
    assert_eq!(by_id("noaddr-1")["error"]["code"], "no_address");
    assert_eq!(by_id("huge-1")["error"]["code"], "invalid_job");
    assert!(by_id("huge-1")["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limit"));
    assert_eq!(
        failed.iter().filter(|e| e["job_id"].is_null()).count(),
        4,
        "unparsable jobs have no id"
    );
    assert!(failed
        .iter()
        .all(|e| e["error"]["message"].as_str().unwrap().len() > 10));
    let dead = dead_letters(&mut conn);
    assert_eq!(dead.len(), 9);
    let first = dead
        .iter()
        .find(|f| f.iter().any(|(k, v)| k == "job" && v == "{not json"))
        .expect("the original job is kept");
    let get = |k: &str| {
        first
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get("channel"), "email");
    assert!(get("reason").contains("invalid_job"));
    assert_eq!(s.outbox_files("email"), vec!["good-1.eml"]);
    assert_eq!(
        xlen(&mut conn, "t:{0}:jobs:email"),
        0,
        "nothing blocks the queue"
    );
}

#[test]
fn hostile_values_cannot_inject_headers_templates_or_paths() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    let mut j = job("../../escape", "email");
    j["to"]["name"] = json!("Eve\r\nBcc: victim@example.net");
    let mut l = job("inject-1", "line");
    l["vars"]["points"] = json!("{{ 7 * 7 }}{% for i in range(3) %}x{% endfor %}");
    enqueue(&mut conn, &[j, l]);
    let _d = s.start();
    let evs = wait_for(&mut conn, Duration::from_secs(30), "an outcome", |e| {
        count(e, "sent") + count(e, "failed") == 2
    });
    assert_eq!(count(&evs, "sent"), 2, "{evs:?}");
    let files = s.outbox_files("email");
    assert_eq!(files.len(), 1);
    assert!(!files[0].contains('/') && !files[0].starts_with('.'));
    assert!(!s.dir.path().join("escape.eml").exists());
    let eml = std::fs::read_to_string(s.outbox("email").join(&files[0])).unwrap();
    // The name may appear in the body (quoted-printable keeps its line break there);
    // what must not happen is a new header.
    let headers = eml.split("\r\n\r\n").next().unwrap();
    assert!(!headers.contains("\r\nBcc:"), "header injection: {headers}");
    let line: Value =
        serde_json::from_slice(&std::fs::read(s.outbox("line").join("inject-1.json")).unwrap())
            .unwrap();
    let text = line["messages"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("{{ 7 * 7 }}{% for i in range(3) %}x{% endfor %}ポイント"),
        "variables are data, not templates: {text}"
    );
}

#[test]
fn crafted_routing_fields_and_delayed_members_do_not_stop_the_queue() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    // Routing fields at their extremes on an otherwise good job.
    let raw = job("extreme-1", "email").to_string();
    let _: String = redis::cmd("XADD")
        .arg("t:{0}:jobs:email")
        .arg("*")
        .arg(&[
            "job",
            raw.as_str(),
            "attempt",
            "4294967295",
            "first_at",
            "-9223372036854775808",
            "hop",
            "99",
        ])
        .query(&mut conn)
        .unwrap();
    // Delayed members that are not ours, due now, ahead of a good one.
    let good = serde_json::json!({"c": "sms", "f": ["job", job("delayed-ok", "sms").to_string()]})
        .to_string();
    for (score, member) in [
        (1, "not json".to_owned()),
        (2, r#"{"c":"email","f":[]}"#.to_owned()),
        (3, r#"{"c":"nosuch","f":["job","{}"]}"#.to_owned()),
        (4, r#"{"c":"email","f":["job",1]}"#.to_owned()),
        (5, good),
    ] {
        let _: i64 = redis::cmd("ZADD")
            .arg("t:{0}:delayed")
            .arg(score)
            .arg(member)
            .query(&mut conn)
            .unwrap();
    }
    let _d = s.start();
    let evs = wait_for(&mut conn, Duration::from_secs(30), "all outcomes", |e| {
        count(e, "failed") == 5 && count(e, "sent") == 1
    });
    let sent = evs.iter().find(|e| e["type"] == "sent").unwrap();
    assert_eq!(sent["job_id"], "delayed-ok");
    // hop 99 names no channel of the job: a dead letter naming `channel`.
    let extreme = evs.iter().find(|e| e["job_id"] == "extreme-1").unwrap();
    assert_eq!(extreme["type"], "failed");
    assert_eq!(extreme["error"]["field"], "channel");
    let unreadable = evs
        .iter()
        .filter(|e| e["error"]["code"] == "internal")
        .count();
    assert_eq!(unreadable, 4, "{evs:?}");
    let delayed: usize = redis::cmd("ZCARD")
        .arg("t:{0}:delayed")
        .query(&mut conn)
        .unwrap();
    assert_eq!(delayed, 0);
    assert_eq!(xlen(&mut conn, "t:{0}:dead"), 5);
    // The daemon is still reading.
    enqueue(&mut conn, &[job("after-1", "email")]);
    wait_for(&mut conn, Duration::from_secs(30), "a later job", |e| {
        count(e, "sent") == 2
    });
}
