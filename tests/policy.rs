//! The sending policy end to end: quiet hours in the recipient's time zone and
//! frequency caps per customer, with transactional jobs exempt from both.
//! (The caps' counting under concurrency is in `tests/policy_caps.rs`.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn of<'a>(evs: &'a [Value], kind: &str, job_id: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["type"] == kind && e["job_id"] == job_id)
        .collect()
}

#[test]
fn quiet_hours_defer_to_their_end_in_the_recipients_time_zone() {
    let redis = Redis::start();
    // A window around the current UTC hour: in UTC it is quiet now; twelve hours
    // east it is not.
    let hour = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .hour();
    let (start, end) = ((hour + 23) % 24, (hour + 2) % 24);
    let s = setup(&redis, "", ALL_FILE).replace_config(
        "sms = \"\"",
        &format!("sms = \"\"\nemail = \"{start:02}:00-{end:02}:00\""),
    );
    let mut conn = redis.conn();
    let mut quiet = job("quiet", "email");
    quiet["to"]["timezone"] = json!("UTC");
    let mut east = job("east", "email");
    east["to"]["timezone"] = json!("Etc/GMT-12");
    let mut urgent = job("urgent", "email");
    urgent["to"]["timezone"] = json!("UTC");
    urgent["kind"] = json!("transactional");
    let mut bad = job("bad-tz", "email");
    bad["to"]["timezone"] = json!("Mars/Olympus_Mons");
    let line = job("line-now", "line");
    enqueue(&mut conn, &[quiet, east, urgent, bad, line]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "outcomes", |e| {
        count(e, "sent") == 3 && count(e, "deferred") == 1 && count(e, "failed") == 1
    });

    let deferred = of(&evs, "deferred", "quiet")[0];
    assert_eq!(deferred["error"]["code"], "quiet_hours", "{deferred}");
    let retry_at: jiff::Timestamp = deferred["retry_at"].as_str().unwrap().parse().unwrap();
    let at_utc = retry_at.to_zoned(jiff::tz::TimeZone::UTC);
    assert_eq!((at_utc.hour(), at_utc.minute()), (end, 0), "{deferred}");
    let ahead = retry_at.duration_since(jiff::Timestamp::now());
    assert!(
        ahead > jiff::SignedDuration::from_secs(3600)
            && ahead < jiff::SignedDuration::from_secs(3 * 3600),
        "the end of today's window: {retry_at}"
    );
    // Not sent, not dropped: waiting in the delayed set.
    assert_eq!(xlen(&mut conn, "t:{0}:jobs:email"), 0);
    let delayed: usize = redis::cmd("ZCARD")
        .arg("t:{0}:delayed")
        .query(&mut conn)
        .unwrap();
    assert_eq!(delayed, 1);

    for id in ["east", "urgent", "line-now"] {
        assert_eq!(of(&evs, "sent", id).len(), 1, "{id}: {evs:?}");
    }
    let failed = of(&evs, "failed", "bad-tz")[0];
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("to.timezone"),
        "{failed}"
    );
}

#[test]
fn frequency_caps_count_per_customer_per_channel_and_across_channels() {
    let redis = Redis::start();
    let s = setup(
        &redis,
        "",
        &format!(
            "{ALL_FILE}\n[[policy.caps]]\nchannel = \"email\"\nmax = 2\nper = \"1d\"\n\n[[policy.caps]]\nchannel = \"all\"\nmax = 3\nper = \"1d\"\n"
        ),
    );
    let mut conn = redis.conn();
    let _d = s.start();
    // `job` gives each job a customer id of its own: these are all one customer's.
    let email = |id: &str| {
        let mut j = job(id, "email");
        j["customer_id"] = json!("C1");
        j
    };
    // Four emails for one customer at once: exactly two go out, two wait a day.
    enqueue(
        &mut conn,
        &[email("e1"), email("e2"), email("e3"), email("e4")],
    );
    let evs = wait_for(&mut conn, WAIT, "2 sent, 2 deferred", |e| {
        count(e, "sent") == 2 && count(e, "deferred") == 2
    });
    for d in evs.iter().filter(|e| e["type"] == "deferred") {
        assert_eq!(d["error"]["code"], "frequency_cap", "{d}");
        let retry_at: jiff::Timestamp = d["retry_at"].as_str().unwrap().parse().unwrap();
        let ahead = retry_at.duration_since(jiff::Timestamp::now());
        assert!(ahead > jiff::SignedDuration::from_hours(23), "{d}");
    }
    // A job that asks to be dropped when capped is suppressed instead.
    let mut drop = email("e5");
    drop["cap"] = json!("drop");
    // Transactional mail is never capped.
    let mut receipt = email("receipt");
    receipt["kind"] = json!("transactional");
    // Another customer has an allowance of their own.
    let mut other = email("other");
    other["customer_id"] = json!("C-someone-else");
    enqueue(&mut conn, &[drop, receipt, other]);
    let evs = wait_for(&mut conn, WAIT, "suppressed", |e| {
        count(e, "suppressed") == 1 && count(e, "sent") == 4
    });
    let s5 = of(&evs, "suppressed", "e5")[0];
    assert_eq!(s5["reason"], "frequency_cap", "{s5}");
    assert_eq!(of(&evs, "sent", "receipt").len(), 1);
    assert_eq!(of(&evs, "sent", "other").len(), 1);

    // Across channels: the customer's two emails leave one of three for the day.
    let customer = json!("C1");
    let mut l1 = job("l1", "line");
    l1["customer_id"] = customer.clone();
    enqueue(&mut conn, &[l1]);
    wait_for(&mut conn, WAIT, "l1 sent", |e| {
        !of(e, "sent", "l1").is_empty()
    });
    let mut l2 = job("l2", "line");
    l2["customer_id"] = customer;
    enqueue(&mut conn, &[l2]);
    let evs = wait_for(&mut conn, WAIT, "l2 deferred", |e| {
        !of(e, "deferred", "l2").is_empty()
    });
    assert_eq!(
        of(&evs, "deferred", "l2")[0]["error"]["code"],
        "frequency_cap"
    );
    assert_eq!(s.outbox_files("email").len(), 4);
    assert_eq!(s.outbox_files("line").len(), 1);
}
