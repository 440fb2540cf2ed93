//! The results stream's retention (issue 20): an event older than
//! `results_retention` goes only once every group of `results_groups` and the
//! profile updater have acknowledged it; an event a listed group has not read is
//! never trimmed, and `tayori_results_held_back` says how many one holds back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use redis::Commands;

const RESULTS: &str = "t:{0}:results";

/// The ids in the results stream, oldest first.
fn ids(conn: &mut redis::Connection) -> Vec<String> {
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(RESULTS).expect("XRANGE");
    entries.ids.into_iter().map(|e| e.id).collect()
}

/// A sample of the daemon's `/metrics`: `name{labels}` → value.
fn metric(s: &Setup, series: &str) -> Option<f64> {
    let (_, body) = s.get("/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Polls `f` until it holds, for up to 30 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_lagging_group_holds_old_events_back_until_it_acknowledges_them() {
    let redis = Redis::start();
    let s = setup(
        &redis,
        "results_retention = \"1s\"\nresults_groups = [\"crm\"]",
        ALL_FILE,
    );
    let mut conn = redis.conn();
    let _daemon = s.start();
    s.wait_http();
    let jobs: Vec<_> = (0..6).map(|i| job(&format!("r-{i}"), "email")).collect();
    s.enqueue_cli(&jobs);
    wait_for(&mut conn, Duration::from_secs(30), "6 sent", |e| {
        count(e, "sent") == 6
    });
    let all = ids(&mut conn);
    assert!(all.len() >= 6, "{all:?}");
    let held = r#"tayori_results_held_back{group="crm"}"#;

    // The CRM's group does not exist yet: it has read nothing, so nothing goes,
    // although the profile updater has read and acknowledged every event.
    eventually("the profile updater to acknowledge every event", || {
        let pending: redis::streams::StreamPendingReply =
            conn.xpending(RESULTS, "tayori-profiles").expect("XPENDING");
        pending.count() == 0
            && ids(&mut conn).last().is_some_and(|last| {
                let groups: redis::streams::StreamInfoGroupsReply =
                    conn.xinfo_groups(RESULTS).expect("XINFO GROUPS");
                groups
                    .groups
                    .iter()
                    .any(|g| g.name == "tayori-profiles" && g.last_delivered_id == *last)
            })
    });
    eventually("every old event counted as held back by crm", || {
        metric(&s, held) == Some(all.len() as f64)
    });
    assert_eq!(
        ids(&mut conn),
        all,
        "an event nobody in crm read was trimmed"
    );

    // crm reads three and acknowledges none: still nothing goes.
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", RESULTS, "crm", "0"])
        .query(&mut conn)
        .expect("XGROUP CREATE");
    let read: redis::streams::StreamReadReply = conn
        .xread_options(
            &[RESULTS],
            &[">"],
            &redis::streams::StreamReadOptions::default()
                .group("crm", "c1")
                .count(3),
        )
        .expect("XREADGROUP");
    assert_eq!(read.keys[0].ids.len(), 3);
    // Two more trim rounds (100 ms apart) with the group pending.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ids(&mut conn), all, "a pending event was trimmed");
    assert_eq!(metric(&s, held), Some(all.len() as f64));

    // It acknowledges the first two: exactly those go.
    let acked: i64 = conn
        .xack(RESULTS, "crm", &[&all[0], &all[1]])
        .expect("XACK");
    assert_eq!(acked, 2);
    eventually("the two acknowledged events to go", || {
        ids(&mut conn) == all[2..]
    });
    eventually("the gauge to count the rest", || {
        metric(&s, held) == Some((all.len() - 2) as f64)
    });

    // It reads and acknowledges everything: the stream empties.
    let rest: redis::streams::StreamReadReply = conn
        .xread_options(
            &[RESULTS],
            &[">"],
            &redis::streams::StreamReadOptions::default()
                .group("crm", "c1")
                .count(100),
        )
        .expect("XREADGROUP");
    let mut unacked: Vec<String> = vec![all[2].clone()];
    unacked.extend(rest.keys[0].ids.iter().map(|e| e.id.clone()));
    let _: i64 = conn.xack(RESULTS, "crm", &unacked).expect("XACK");
    eventually("every event to go", || ids(&mut conn).is_empty());
    eventually("the gauge to drop to 0", || metric(&s, held) == Some(0.0));
    assert_eq!(
        metric(&s, "tayori_results_trimmed_total"),
        Some(all.len() as f64)
    );
}

#[test]
fn results_groups_without_a_retention_are_refused_by_name() {
    let redis = Redis::start_volatile();
    let s = setup(&redis, "results_groups = [\"crm\"]", ALL_FILE);
    let out = s.tayori().arg("check-config").output().expect("tayori");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("queue.results_groups") && said.contains("results_retention"),
        "{said}"
    );
}
