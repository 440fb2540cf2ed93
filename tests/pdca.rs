//! The PDCA loop: profiles learned from the results stream, then used to pick a
//! customer's best channel and best time. Reactions are written to the results
//! stream in exactly the shape the daemon writes them (the profile updater reads
//! whatever is there; tracking and webhooks producing those events are tested
//! in their own files).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
/// Deterministic choices: no exploration.
const PROFILES: &str = "[profiles]\nexplore = 0.0\nmin_reactions = 3.0\n";

/// `sent` events of this test's jobs (not of the made-up history).
fn sent_now(evs: &[Value]) -> usize {
    evs.iter()
        .filter(|e| e["type"] == "sent" && !e["job_id"].as_str().unwrap_or("").starts_with("old-"))
        .count()
}

fn at(t: jiff::Timestamp) -> String {
    format!("{t:.3}")
}

/// Adds an event to `t:{0}:results` as the daemon would.
fn add_event(
    conn: &mut redis::Connection,
    kind: &str,
    customer: &str,
    channel: &str,
    when: jiff::Timestamp,
) {
    let ev = json!({
        "type": kind, "event_id": format!("{customer}/{channel}/{kind}/{}", when.as_millisecond()),
        "at": at(when), "job_id": format!("old-{customer}"), "campaign": "past",
        "customer_id": customer, "channel": channel, "attempt": 1
    });
    let _: String = redis::cmd("XADD")
        .arg("t:{0}:results")
        .arg("*")
        .arg("event")
        .arg(ev.to_string())
        .query(conn)
        .unwrap();
}

/// The profile hash of a customer once the updater has written it.
fn wait_profile(conn: &mut redis::Connection, customer: &str, field: &str) -> HashMap<String, f64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(format!("t:{{0}}:profile:{customer}"))
            .query(conn)
            .unwrap();
        if h.contains_key(field) {
            return h
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "no profile for {customer}: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A past history for `customer`: `n` sends and reactions on `channel` at `when`.
fn history(
    conn: &mut redis::Connection,
    customer: &str,
    channel: &str,
    n: usize,
    reacted: usize,
    when: jiff::Timestamp,
) {
    for _ in 0..n {
        add_event(conn, "sent", customer, channel, when);
    }
    for _ in 0..reacted {
        add_event(conn, "clicked", customer, channel, when);
    }
}

#[test]
fn profiles_count_sends_reactions_and_refusals_by_channel_and_hour() {
    let redis = Redis::start();
    let s = setup(&redis, "", &format!("{ALL_FILE}\n{PROFILES}"));
    let mut conn = redis.conn();
    let now = jiff::Timestamp::now();
    history(&mut conn, "C1", "line", 4, 3, now);
    add_event(&mut conn, "opened", "C1", "email", now);
    add_event(&mut conn, "bounced", "C1", "email", now);
    // A bot's open and an event without a customer teach nothing.
    let mut bot = json!({"type": "opened", "event_id": "b", "at": at(now), "job_id": "j",
        "customer_id": "C1", "channel": "email", "attempt": 1, "suspected_bot": true});
    let _: String = redis::cmd("XADD")
        .arg("t:{0}:results")
        .arg("*")
        .arg("event")
        .arg(bot.to_string())
        .query(&mut conn)
        .unwrap();
    bot["customer_id"] = Value::Null;
    let _: String = redis::cmd("XADD")
        .arg("t:{0}:results")
        .arg("*")
        .arg("event")
        .arg(bot.to_string())
        .query(&mut conn)
        .unwrap();
    let _d = s.start();
    let p = wait_profile(&mut conn, "C1", "x:email");
    // Weights are in the growing unit 2^((t - 2026-01-01) / 30d); compare ratios.
    let unit = p["r:email"];
    assert!(unit > 0.0);
    let ratio = |f: &str| p.get(f).copied().unwrap_or(0.0) / unit;
    assert!((ratio("s:line") - 4.0).abs() < 1e-3, "{p:?}");
    assert!((ratio("r:line") - 3.0).abs() < 1e-3, "{p:?}");
    assert!(
        (ratio("r:email") - 1.0).abs() < 1e-9,
        "the bot's open is not counted: {p:?}"
    );
    assert!((ratio("x:email") - 1.0).abs() < 1e-3, "{p:?}");
    let utc = now.to_zoned(jiff::tz::TimeZone::UTC);
    let how = (utc.weekday().to_monday_zero_offset() as i64) * 24 + i64::from(utc.hour());
    assert!(
        (ratio(&format!("h:{how}")) - 4.0).abs() < 1e-3,
        "4 reactions this hour of the week: {p:?}"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t:{0}:profile:C1")
        .query(&mut conn)
        .unwrap();
    assert!(ttl > 300 * 86_400_000, "kept for profiles.ttl: {ttl}");
    // Each event once: the updater's group has read everything and acknowledged it.
    std::thread::sleep(Duration::from_millis(300));
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("t:{0}:results")
        .query(&mut conn)
        .unwrap();
    let group = groups
        .iter()
        .find(|g| g.get("name") == Some(&redis::Value::BulkString(b"tayori-profiles".to_vec())))
        .expect("the updater's consumer group");
    let int = |k: &str| redis::from_redis_value::<i64>(group[k].clone()).unwrap();
    assert_eq!(
        (int("pending"), int("lag")),
        (0, 0),
        "every event read and acknowledged"
    );

    // `tayori profile` shows it, decayed to now (the events are seconds old).
    let out = s
        .tayori()
        .args(["profile", "C1", "--json", "--timezone", "UTC"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let line = doc["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "line")
        .unwrap();
    assert!((line["sent"].as_f64().unwrap() - 4.0).abs() < 0.01, "{doc}");
    assert!(
        (line["reactions"].as_f64().unwrap() - 3.0).abs() < 0.01,
        "{doc}"
    );
    assert!(
        (doc["reactions"].as_f64().unwrap() - 4.0).abs() < 0.01,
        "{doc}"
    );
    let best = &doc["best_hours"][0];
    assert_eq!(best["hour"], utc.strftime("%a %H:00").to_string(), "{doc}");
    let missing = s.tayori().args(["profile", "nobody"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn a_best_channel_job_goes_where_the_customer_reacts_and_skips_what_cannot_reach_them() {
    let redis = Redis::start();
    let s = setup(&redis, "", &format!("{ALL_FILE}\n{PROFILES}"));
    let mut conn = redis.conn();
    let now = jiff::Timestamp::now();
    // C-line reacts on LINE, ignores email; C-blocked too, but has blocked the account.
    for c in ["C-line", "C-blocked"] {
        history(&mut conn, c, "line", 5, 4, now);
        history(&mut conn, c, "email", 5, 0, now);
    }
    let _d = s.start();
    wait_profile(&mut conn, "C-line", "r:line");
    wait_profile(&mut conn, "C-blocked", "r:line");
    let _: () = redis::cmd("HSET")
        .arg("t:{0}:suppressed:line")
        .arg("U4af4980629a1b2c3d4e5f60718293a4b")
        .arg("blocked")
        .query(&mut conn)
        .unwrap();
    let best = |id: &str, customer: &str| {
        let mut j = job(id, "email");
        j["to"]["line_user_id"] = json!(format!("U{:032x}", customer.len() * 7919));
        j["channel"] = json!("best");
        j["channels"] = json!(["email", "line", "sms"]);
        j["customer_id"] = json!(customer);
        j
    };
    // C-blocked has a LINE account of their own (the one blocked above).
    let mut blocked = best("b-2", "C-blocked");
    blocked["to"]["line_user_id"] = json!("U4af4980629a1b2c3d4e5f60718293a4b");
    let mut no_line = best("b-3", "C-line");
    no_line["to"]["line_user_id"] = Value::Null;
    // Added to the first candidate's stream, as `tayori enqueue` does.
    enqueue_raw(
        &mut conn,
        "email",
        &[
            best("b-1", "C-line").to_string(),
            blocked.to_string(),
            no_line.to_string(),
            best("b-4", "C-new").to_string(),
        ],
    );
    let evs = wait_for(&mut conn, WAIT, "4 sent", |e| sent_now(e) == 4);
    let sent: HashMap<&str, &Value> = evs
        .iter()
        .filter(|e| e["type"] == "sent")
        .map(|e| (e["job_id"].as_str().unwrap(), e))
        .filter(|(id, _)| !id.starts_with("old-"))
        .collect();
    let b1 = sent["b-1"];
    assert_eq!(b1["channel"], "line", "{b1}");
    assert_eq!(b1["channel_choice"]["rule"], "profile", "{b1}");
    assert!(
        b1["channel_choice"]["scores"]["line"].as_f64()
            > b1["channel_choice"]["scores"]["email"].as_f64(),
        "{b1}"
    );
    // Blocked on LINE: the best remaining channel, and why LINE was skipped.
    let b2 = sent["b-2"];
    assert_ne!(b2["channel"], "line", "{b2}");
    assert!(
        b2["channel_choice"]["skipped"]
            .to_string()
            .contains("blocked"),
        "{b2}"
    );
    // No LINE id: LINE is not a candidate.
    assert_ne!(sent["b-3"]["channel"], "line");
    assert!(sent["b-3"]["channel_choice"]["skipped"]
        .to_string()
        .contains("no address"));
    // No profile: the job's own order.
    let b4 = sent["b-4"];
    assert_eq!(
        (
            b4["channel"].as_str(),
            b4["channel_choice"]["rule"].as_str()
        ),
        (Some("email"), Some("order"))
    );
    assert_eq!(s.outbox_files("line").len(), 1);
}

#[test]
fn a_best_time_job_waits_for_the_hour_the_customer_reacts_or_goes_now_if_that_is_now() {
    let redis = Redis::start();
    let s = setup(&redis, "", &format!("{ALL_FILE}\n{PROFILES}"));
    let mut conn = redis.conn();
    let now = jiff::Timestamp::now();
    let hours = |h: i64| {
        now.checked_add(jiff::SignedDuration::from_hours(h))
            .unwrap()
    };
    // "Now" reacts at this hour of the week (a week ago); "later" three hours from now.
    history(&mut conn, "C-now", "email", 4, 4, hours(-7 * 24));
    history(&mut conn, "C-later", "email", 4, 4, hours(3 - 7 * 24));
    let _d = s.start();
    wait_profile(&mut conn, "C-now", "r:email");
    wait_profile(&mut conn, "C-later", "r:email");
    let best = |id: &str, customer: &str| {
        let mut j = job(id, "email");
        j["customer_id"] = json!(customer);
        j["send_at"] = json!({"best_within": "24h"});
        j["to"]["timezone"] = json!("UTC");
        j
    };
    enqueue(
        &mut conn,
        &[
            best("t-now", "C-now"),
            best("t-later", "C-later"),
            best("t-thin", "C-none"),
        ],
    );
    let evs = wait_for(&mut conn, WAIT, "t-now sent", |e| {
        e.iter()
            .any(|e| e["type"] == "sent" && e["job_id"] == "t-now")
    });
    let sent = evs
        .iter()
        .find(|e| e["type"] == "sent" && e["job_id"] == "t-now")
        .unwrap();
    assert_eq!(sent["send_time_rule"], "best_hour", "{sent}");

    // The others wait in the delayed set: "later" at the top of its hour, the thin
    // profile at the default 10:00 (UTC here), never inside quiet hours.
    std::thread::sleep(Duration::from_millis(500));
    let delayed: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("t:{0}:delayed")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut conn)
        .unwrap();
    let due = |id: &str| {
        delayed
            .iter()
            .find(|(m, _)| m.contains(&format!("\\\"id\\\":\\\"{id}\\\"")))
            .map(|(m, score)| (m.clone(), *score as i64))
            .unwrap_or_else(|| panic!("{id} not delayed: {delayed:?}"))
    };
    let (member, later) = due("t-later");
    let expected = hours(3).as_second().div_euclid(3600) * 3600 * 1000;
    assert_eq!(later, expected, "the top of the hour three hours from now");
    assert!(
        member.contains("best_hour"),
        "the rule travels with the job: {member}"
    );
    let (_, thin) = due("t-thin");
    let ten = jiff::Timestamp::from_millisecond(thin)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC);
    assert_eq!((ten.hour(), ten.minute()), (10, 0), "the default hour");
    assert_eq!(sent_now(&events(&mut conn)), 1);
}
