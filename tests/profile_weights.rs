//! Profile weights cannot overflow: with a 1-hour half-life, 2026-12 is some
//! 8,000 half-lives past the first reference time (2026-01-01), where a fixed
//! reference's weight 2^8000 was infinite and Redis refused the update. The
//! daemon's updater (`src/profile/add.lua`) moves each profile's reference
//! forward and rescales what it holds.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use redis::Commands;

const HALF_LIFE_MS: i64 = 3_600_000;

fn profile(conn: &mut redis::Connection, customer: &str) -> HashMap<String, f64> {
    let raw: HashMap<String, String> = conn
        .hgetall(format!("t:{{0}}:profile:{customer}"))
        .expect("HGETALL");
    raw.into_iter()
        .map(|(k, v)| {
            let n = v.parse().unwrap_or_else(|_| panic!("{k} = {v:?}"));
            (k, n)
        })
        .collect()
}

fn reaction(customer: &str, channel: &str, at: jiff::Timestamp) -> String {
    serde_json::json!({
        "type": "clicked", "channel": channel, "customer_id": customer,
        "job_id": format!("{customer}-1"), "at": at.to_string(), "suspected_bot": false,
    })
    .to_string()
}

#[test]
fn a_one_hour_half_life_rescales_profiles_instead_of_overflowing() {
    let redis = Redis::start();
    let mut conn = redis.conn();
    let now = jiff::Timestamp::now();
    let now_ms = now.as_millisecond();
    // C1: rescaled 100 half-lives ago, 4 reactions then; C2: written before the
    // reference time was stored (it counts from 2026-01-01), so only a rescale
    // can hold anything new.
    let behind = now_ms - 100 * HALF_LIFE_MS;
    let _: () = conn
        .hset_multiple(
            "t:{0}:profile:C1",
            &[("r:line", "4"), ("e", &behind.to_string())],
        )
        .unwrap();
    let _: () = conn.hset("t:{0}:profile:C2", "r:email", "3").unwrap();
    for (customer, channel) in [("C1", "line"), ("C2", "email")] {
        let _: String = conn
            .xadd(
                "t:{0}:results",
                "*",
                &[("event", reaction(customer, channel, now))],
            )
            .unwrap();
    }

    let s = setup(
        &redis,
        "",
        &format!("{ALL_FILE}\n[profiles]\nhalf_life = \"1h\"\n"),
    );
    let _daemon = s.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (c1, c2) = loop {
        let (c1, c2) = (profile(&mut conn, "C1"), profile(&mut conn, "C2"));
        if c1.contains_key("t") && c2.contains_key("t") {
            break (c1, c2);
        }
        assert!(
            Instant::now() < deadline,
            "profiles never updated: {c1:?} {c2:?}\n{}",
            _daemon.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for (name, p) in [("C1", &c1), ("C2", &c2)] {
        // The reference moved to the update's time (within the test's minute).
        let e = p["e"] as i64;
        assert!((e - now_ms).abs() < 60_000, "{name}: {p:?}");
        assert!(p.values().all(|v| v.is_finite()), "{name}: {p:?}");
        // The new click weighs about one (its time is a moment before `e`), the
        // old ones were scaled down by 2^-100 (C1) and 2^-8000 (C2, to 0).
        let key = if name == "C1" { "r:line" } else { "r:email" };
        let w = p[key];
        assert!(
            w > 0.99 && w <= 1.0 + 4.0 * 2f64.powi(-100),
            "{name}: {p:?}"
        );
    }
    // And the CLI reads it as one recent reaction.
    let out = s
        .tayori()
        .args(["profile", "C1", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let reactions = doc["reactions"].as_f64().unwrap();
    assert!((0.99..=1.0).contains(&reactions), "{doc}");
}
