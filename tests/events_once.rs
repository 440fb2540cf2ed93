//! Every event once, and correlatable: dead letters re-driven again and again,
//! one after the other and by two `tayori dead retry` runs at once, never put an
//! event id into the results stream twice; a job that cannot be parsed keeps its
//! event id and origin across re-drives; reactions to tracked messages have the
//! documented shape; `dead retry` refuses ids that are not dead-letter ids and
//! leaves `invalid_job` letters unless asked. One redis-server for the binary,
//! each test under a prefix of its own.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tayori::tracking::{Purpose, Sealer, Tracked};

const WAIT: Duration = Duration::from_secs(60);

/// The binary's redis-server: started by the first test that needs it, killed
/// when the last one running lets go of it.
fn redis() -> Arc<Redis> {
    static SHARED: Mutex<Weak<Redis>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = shared.upgrade() {
        return r;
    }
    let r = Arc::new(Redis::start());
    *shared = Arc::downgrade(&r);
    r
}

fn setup_as(redis: &Redis, prefix: &str) -> Setup {
    setup_with_redis(
        &format!("url = \"{}\"\nprefix = \"{prefix}\"", redis.url()),
        "",
        ALL_FILE,
    )
}

/// Every event of a prefix's results stream, in order.
fn results(conn: &mut redis::Connection, prefix: &str) -> Vec<Value> {
    xrange(conn, &format!("{prefix}:{{0}}:results"))
        .into_iter()
        .filter_map(|(_, f)| f.into_iter().find(|(k, _)| k == "event"))
        .filter_map(|(_, v)| serde_json::from_str(&v).ok())
        .collect()
}

/// The dead letters: entry id → fields.
fn dead(conn: &mut redis::Connection, prefix: &str) -> HashMap<String, HashMap<String, String>> {
    xrange(conn, &format!("{prefix}:{{0}}:dead"))
        .into_iter()
        .map(|(id, f)| (id, f.into_iter().collect()))
        .collect()
}

fn xadd(conn: &mut redis::Connection, key: &str, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query(conn).expect("XADD")
}

fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every re-driven letter has been worked off: the job streams are
/// empty and `n` dead letters are back, none of them one of `before`.
fn settled(
    conn: &mut redis::Connection,
    prefix: &str,
    n: usize,
    before: &HashSet<String>,
) -> HashMap<String, HashMap<String, String>> {
    wait_until("the re-driven letters to be worked off", || {
        let streams_empty = ["email", "line"]
            .iter()
            .all(|c| xlen(conn, &format!("{prefix}:{{0}}:jobs:{c}")) == 0);
        let letters = dead(conn, prefix);
        (streams_empty && letters.len() == n && letters.keys().all(|id| !before.contains(id)))
            .then_some(letters)
    })
}

fn retry(s: &Setup, args: &[&str]) -> std::process::Output {
    s.tayori()
        .args(["dead", "retry"])
        .args(args)
        .output()
        .expect("tayori dead retry")
}

/// Asserts no event id is in the stream twice.
fn each_id_once(evs: &[Value]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for e in evs {
        *seen.entry(e["event_id"].as_str().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "event ids written more than once: {twice:?}"
    );
}

#[test]
fn re_driven_dead_letters_write_every_event_id_once() {
    let redis = redis();
    let p = "once";
    let s = setup_as(&redis, p);
    let mut conn = redis.conn();
    // A: no email address and no fallback (`no_address`); B: not JSON at all; C: a
    // LINE job on the email stream. All three fail the same way every time.
    let mut a = job("once-a", "email");
    a["to"].as_object_mut().unwrap().remove("email");
    let c = job("once-c", "line");
    let origin_a = xadd(
        &mut conn,
        &format!("{p}:{{0}}:jobs:email"),
        &[("job", &a.to_string())],
    );
    let origin_b = xadd(
        &mut conn,
        &format!("{p}:{{0}}:jobs:email"),
        &[("job", "{not json")],
    );
    xadd(
        &mut conn,
        &format!("{p}:{{0}}:jobs:email"),
        &[("job", &c.to_string())],
    );
    // D: a letter of a job that can go now (its worker died on it earlier).
    let d = job("once-d", "email");
    let reason = json!({"code": "too_many_deliveries", "message": "started 6 times"}).to_string();
    xadd(
        &mut conn,
        &format!("{p}:{{0}}:dead"),
        &[
            ("job", &d.to_string()),
            ("attempt", "0"),
            ("origin", "1700000000000-7"),
            ("hop", "0"),
            ("channel", "email"),
            ("reason", &reason),
            ("deliveries", "6"),
        ],
    );
    let _daemon = s.start();
    let first = wait_until("A, B and C to fail", || {
        let evs = results(&mut conn, p);
        (count(&evs, "failed") == 3 && dead(&mut conn, p).len() == 4).then_some(evs)
    });
    let failed_b = first
        .iter()
        .find(|e| e["type"] == "failed" && e["job_id"].is_null())
        .expect("B's failed event");
    assert_eq!(failed_b["origin"], origin_b.as_str());
    assert_eq!(failed_b["event_id"], format!("-/email/1/failed/{origin_b}"));
    let failed_a = first.iter().find(|e| e["job_id"] == "once-a").unwrap();
    assert_eq!(failed_a["event_id"], "once-a/email/1/failed");
    assert_eq!(failed_a["origin"], origin_a.as_str());

    // Without ids: B and C (invalid_job) stay, said so; A and D go.
    let letters = dead(&mut conn, p);
    let invalid: HashSet<String> = letters
        .iter()
        .filter(|(_, f)| f["reason"].contains("invalid_job"))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(invalid.len(), 2, "{letters:?}");
    let out = retry(&s, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("re-queued 2 dead letters"), "{stderr}");
    assert!(
        stderr.contains("left 2 invalid_job dead letters") && stderr.contains("--include-invalid"),
        "{stderr}"
    );
    let sent_d = wait_until("D to be sent", || {
        results(&mut conn, p)
            .into_iter()
            .find(|e| e["type"] == "sent" && e["job_id"] == "once-d")
    });
    assert_eq!(
        sent_d["origin"], "1700000000000-7",
        "the re-drive keeps the origin"
    );
    assert_eq!(sent_d["campaign"], "test");
    let before: HashSet<String> = letters
        .keys()
        .filter(|id| !invalid.contains(*id))
        .cloned()
        .collect();
    let letters = wait_until("A back in the dead letters", || {
        let l = dead(&mut conn, p);
        (l.len() == 3 && l.keys().all(|id| !before.contains(id))).then_some(l)
    });
    assert!(
        invalid.iter().all(|id| letters.contains_key(id)),
        "B and C were left"
    );

    // Twice one after the other, forcing the invalid ones too.
    let mut letters = letters;
    for _ in 0..2 {
        let before: HashSet<String> = letters.keys().cloned().collect();
        let out = retry(&s, &["--include-invalid"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        letters = settled(&mut conn, p, 3, &before);
    }
    // Twice at once.
    let before: HashSet<String> = letters.keys().cloned().collect();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            s.tayori()
                .args(["dead", "retry", "--include-invalid"])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let letters = settled(&mut conn, p, 3, &before);

    // The letters keep what identifies their job.
    let b = letters
        .values()
        .find(|f| f["job"] == "{not json")
        .expect("B's letter");
    assert_eq!(b["origin"], origin_b, "B keeps its origin");
    let a_letter = letters
        .values()
        .find(|f| f["job"].contains("once-a"))
        .expect("A's letter");
    assert_eq!(a_letter["origin"], origin_a);
    // Three re-drives in turn, then the two at once: both took the letter (5), or
    // one took it and the other found it gone, or found it back after A failed
    // again within its run (4 or 5). Either way its events are written once (below).
    assert!(
        matches!(a_letter["redrive"].as_str(), "4" | "5"),
        "A was re-driven four or five times: {}",
        a_letter["redrive"]
    );

    let evs = results(&mut conn, p);
    each_id_once(&evs);
    // The re-drives failed as before: nothing new to report, so nothing written.
    assert_eq!(count(&evs, "failed"), 3, "{evs:?}");
    assert_eq!(count(&evs, "sent"), 1, "{evs:?}");
    let b_events: Vec<_> = evs
        .iter()
        .filter(|e| e["origin"] == origin_b.as_str())
        .collect();
    assert_eq!(b_events.len(), 1, "{b_events:?}");
}

#[test]
fn a_re_driven_job_reports_what_is_new_and_only_that() {
    // The same job dies twice at different attempts (a worker died on it, then it
    // had no address): both failures are news; a third re-drive failing like the
    // second is not.
    let redis = redis();
    let p = "news";
    let s = setup_as(&redis, p);
    let mut conn = redis.conn();
    let mut j = job("news-1", "email");
    j["to"].as_object_mut().unwrap().remove("email");
    let reason = json!({"code": "too_many_deliveries", "message": "started 6 times"}).to_string();
    // Its first life ended at attempt 6, with this event written.
    let earlier = json!({"type": "failed", "event_id": "news-1/email/6/failed", "job_id": "news-1",
        "origin": "1700000000000-1", "channel": "email", "attempt": 6});
    xadd(
        &mut conn,
        &format!("{p}:{{0}}:results"),
        &[("event", &earlier.to_string())],
    );
    xadd(
        &mut conn,
        &format!("{p}:{{0}}:dead"),
        &[
            ("job", &j.to_string()),
            ("attempt", "0"),
            ("origin", "1700000000000-1"),
            ("hop", "0"),
            ("channel", "email"),
            ("reason", &reason),
            ("deliveries", "6"),
        ],
    );
    let _daemon = s.start();
    let mut before: HashSet<String> = dead(&mut conn, p).keys().cloned().collect();
    for _ in 0..3 {
        assert!(retry(&s, &[]).status.success());
        before = settled(&mut conn, p, 1, &before).keys().cloned().collect();
    }
    let evs = results(&mut conn, p);
    each_id_once(&evs);
    let ids: Vec<_> = evs
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["news-1/email/6/failed", "news-1/email/1/failed"],
        "the new failure once, the repeats never"
    );
    assert_eq!(evs[1]["origin"], "1700000000000-1");
    assert_eq!(evs[1]["error"]["code"], "no_address");
}

#[test]
fn dead_retry_names_an_id_it_cannot_take() {
    let redis = redis();
    let s = setup_as(&redis, "bogus");
    for (arg, said) in [
        (
            "bogus",
            "\"bogus\" is not a dead-letter id: expected 1234567890123-0",
        ),
        ("0/bogus", "\"0/bogus\" is not a dead-letter id"),
        (
            "3/1700000000000-0",
            "there is no partition 3 (redis.partitions is 1)",
        ),
    ] {
        let out = retry(&s, &[arg]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{arg}: {stderr}");
        assert!(stderr.contains(said), "{arg}: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("response"),
            "no raw Redis error: {stderr}"
        );
    }
    // A well-formed id that is no dead letter: found nowhere, exit 1.
    let out = retry(&s, &["1700000000000-0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1700000000000-0: no such dead letter"),
        "{stderr}"
    );
}

#[test]
fn opens_clicks_and_unsubscribes_have_the_documented_shape() {
    let redis = redis();
    let p = "react";
    let s = setup_as(&redis, p);
    let mut conn = redis.conn();
    let _daemon = s.start();
    s.wait_http();
    let sealer = Sealer::new(TRACKING_SECRET);
    let tracked = Tracked {
        job_id: "react-1".into(),
        address: "taro@example.com".into(),
        campaign: Some("spring".into()),
        customer_id: Some("C1".into()),
        sent_at: jiff::Timestamp::now().as_second() - 3600,
        url: Some("https://shop.example.com/p/1".into()),
        ..Tracked::default()
    };
    let open = sealer.seal(Purpose::Open, &tracked);
    let click = sealer.seal(Purpose::Click, &tracked);
    let unsubscribe = sealer.seal(Purpose::Unsubscribe, &tracked);
    // Without a User-Agent both look automated (`b` ends the id); the shape is the same.
    assert_eq!(s.get(&format!("/t/o/{open}")).unwrap().0, 200);
    assert_eq!(s.get(&format!("/t/c/{click}")).unwrap().0, 302);
    let form = b"List-Unsubscribe=One-Click";
    let (status, _) = s
        .post(
            &format!("/u/{unsubscribe}"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form,
        )
        .unwrap();
    assert_eq!(status, 200);
    let evs = wait_until("the three reactions", || {
        let evs = results(&mut conn, p);
        (evs.len() == 3).then_some(evs)
    });
    for e in &evs {
        let kind = e["type"].as_str().unwrap();
        let id = e["event_id"].as_str().unwrap();
        let prefix = format!("react-1/email/0/{kind}");
        assert!(id.starts_with(&prefix), "{id} starts with {prefix}");
        assert_eq!(e["attempt"], 0, "{e}");
        assert!(e["origin"].is_null(), "{e}");
        assert_eq!(e["job_id"], "react-1");
        assert_eq!(e["campaign"], "spring");
        assert_eq!(e["channel"], "email");
    }
    let opened = evs.iter().find(|e| e["type"] == "opened").unwrap();
    let parts: Vec<&str> = opened["event_id"].as_str().unwrap().split('/').collect();
    assert_eq!(parts.len(), 6, "{parts:?}: job/channel/0/type/link/slot");
    assert_eq!(parts[4].len(), 12, "a 6-byte link digest in hex");
    let unsubscribed = evs.iter().find(|e| e["type"] == "unsubscribed").unwrap();
    assert_eq!(unsubscribed["event_id"], "react-1/email/0/unsubscribed");
}
