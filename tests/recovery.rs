//! Crashes, restarts and shutdowns: every job ends with exactly one terminal event.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

/// An entry as redis-rs parses XRANGE/XREADGROUP replies: id and fields.
type StreamEntry = (String, Vec<(String, String)>);
/// XPENDING's summary: count, first id, last id, per-consumer counts.
type PendingSummary = (
    u64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

const RECLAIM_FAST: &str = "reclaim_idle = \"1s\"\nshutdown_grace = \"1s\"";
const WAIT: Duration = Duration::from_secs(60);

/// Reads `n` entries as a consumer that then "dies" (never acknowledges).
/// Sets an entry's delivery count, as if `times` consumers had taken it.
fn taken_over(conn: &mut redis::Connection, channel: &str, id: &str, times: u32) {
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(format!("t:{{0}}:jobs:{channel}"))
        .arg("tayori")
        .arg("ghost")
        .arg(0)
        .arg(id)
        .arg("RETRYCOUNT")
        .arg(times)
        .query(conn)
        .unwrap();
}

fn ghost_reads(conn: &mut redis::Connection, channel: &str, n: usize) -> Vec<String> {
    let _: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(format!("t:{{0}}:jobs:{channel}"))
        .arg("tayori")
        .arg("0")
        .arg("MKSTREAM")
        .query(conn);
    let reply: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("tayori")
        .arg("ghost")
        .arg("COUNT")
        .arg(n)
        .arg("STREAMS")
        .arg(format!("t:{{0}}:jobs:{channel}"))
        .arg(">")
        .query(conn)
        .unwrap();
    let parsed: Vec<(String, Vec<StreamEntry>)> = redis::from_redis_value(reply).unwrap();
    parsed
        .into_iter()
        .flat_map(|(_, es)| es.into_iter().map(|(id, _)| id))
        .collect()
}

fn assert_exactly_one_terminal(evs: &[serde_json::Value], ids: &HashSet<String>) {
    let by_job = terminal_by_job(evs);
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !by_job.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "jobs without an outcome, e.g. {missing:?}"
    );
    let doubled: Vec<_> = by_job
        .iter()
        .filter(|(_, v)| v.len() != 1)
        .take(5)
        .collect();
    assert!(
        doubled.is_empty(),
        "jobs with more than one terminal event: {doubled:?}"
    );
}

#[test]
fn jobs_held_by_a_dead_consumer_are_reclaimed_and_sent_once() {
    let redis = Redis::start();
    let s = setup(&redis, RECLAIM_FAST, ALL_FILE);
    let mut conn = redis.conn();
    let jobs: Vec<_> = (0..30)
        .map(|i| job(&format!("orphan-{i}"), "line"))
        .collect();
    enqueue(&mut conn, &jobs);
    let held = ghost_reads(&mut conn, "line", 20);
    assert_eq!(held.len(), 20);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "30 sent", |e| count(e, "sent") == 30);
    let ids: HashSet<String> = (0..30).map(|i| format!("orphan-{i}")).collect();
    assert_exactly_one_terminal(&evs, &ids);
    // The reclaimed ones say they are a second delivery.
    let second: usize = evs
        .iter()
        .filter(|e| e["type"] == "sent" && e["attempt"] == 2)
        .count();
    assert_eq!(second, 20);
    assert_eq!(s.outbox_files("line").len(), 30);
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg("t:{0}:jobs:line")
        .arg("tayori")
        .query(&mut conn)
        .unwrap();
    let summary: PendingSummary = redis::from_redis_value(pending).unwrap();
    assert_eq!(summary.0, 0, "nothing left pending");
}

#[test]
fn a_job_that_keeps_crashing_workers_goes_to_dead_letters_and_can_be_retried() {
    let redis = Redis::start();
    let s = setup(
        &redis,
        &format!("{RECLAIM_FAST}\nmax_deliveries = 3"),
        ALL_FILE,
    );
    let mut conn = redis.conn();
    enqueue(&mut conn, &[job("poison-1", "dm")]);
    let held = ghost_reads(&mut conn, "dm", 1);
    // As if three workers had started on it and died.
    taken_over(&mut conn, "dm", &held[0], 3);
    let _: () = redis::cmd("SET")
        .arg(format!("t:{{0}}:starts:dm:{}", held[0]))
        .arg(2)
        .query(&mut conn)
        .unwrap();
    let mut d = s.start();
    let evs = wait_for(&mut conn, WAIT, "failed event", |e| count(e, "failed") == 1);
    let failed = evs.iter().find(|e| e["type"] == "failed").unwrap();
    assert_eq!(failed["error"]["code"], "too_many_deliveries");
    assert_eq!(failed["job_id"], "poison-1");
    assert_eq!(xlen(&mut conn, "t:{0}:dead"), 1);
    assert!(s.outbox_files("dm").is_empty());
    assert_eq!(d.terminate(Duration::from_secs(20)), Some(0));

    // `tayori dead list` shows it; `tayori dead retry` re-drives it, and dedupe lets it through.
    let out = s.tayori().args(["dead", "list"]).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("poison-1") && listing.contains("too_many_deliveries"),
        "{listing}"
    );
    let status = s.tayori().args(["dead", "retry"]).status().unwrap();
    assert!(status.success());
    assert_eq!(xlen(&mut conn, "t:{0}:dead"), 0);
    let _d = s.start();
    wait_for(&mut conn, WAIT, "sent after retry", |e| {
        count(e, "sent") == 1
    });
    assert_eq!(s.outbox_files("dm"), vec!["poison-1.csv"]);
}

/// A crash loop takes the same jobs over again and again, though no worker ever
/// got to them before it died: those takeovers do not count against
/// `max_deliveries`, so the job is sent, not dead-lettered.
#[test]
fn takeovers_by_daemons_that_died_before_starting_do_not_dead_letter_a_job() {
    let redis = Redis::start();
    let s = setup(
        &redis,
        &format!("{RECLAIM_FAST}\nmax_deliveries = 3"),
        ALL_FILE,
    );
    let mut conn = redis.conn();
    enqueue(&mut conn, &[job("victim-1", "dm")]);
    let held = ghost_reads(&mut conn, "dm", 1);
    taken_over(&mut conn, "dm", &held[0], 9);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "an outcome", |e| {
        count(e, "sent") + count(e, "failed") == 1
    });
    assert_eq!(count(&evs, "sent"), 1, "{evs:?}");
    assert_eq!(s.outbox_files("dm"), vec!["victim-1.csv"]);
    assert_eq!(xlen(&mut conn, "t:{0}:dead"), 0);
}

#[test]
fn sigterm_drains_in_flight_jobs_and_a_restart_finishes_the_rest() {
    let redis = Redis::start();
    // SMS is slow (rate limited): SIGTERM arrives with jobs read but not sent.
    let channels = ALL_FILE.replace(
        "dir = \"{outbox}/sms\"\nrate = \"100000/s\"",
        "dir = \"{outbox}/sms\"\nrate = \"25/s\"\nburst = 1",
    );
    let s = setup(&redis, RECLAIM_FAST, &channels);
    let mut conn = redis.conn();
    let jobs: Vec<_> = (0..100).map(|i| job(&format!("term-{i}"), "sms")).collect();
    enqueue(&mut conn, &jobs);
    let mut d = s.start();
    wait_for(&mut conn, WAIT, "some sends", |e| count(e, "sent") >= 10);
    assert_eq!(
        d.terminate(Duration::from_secs(20)),
        Some(0),
        "SIGTERM exits 0"
    );
    let before = count(&events(&mut conn), "sent");
    assert!(
        before < 100,
        "the test needs jobs left over ({before} sent)"
    );
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "100 sent", |e| count(e, "sent") == 100);
    let ids: HashSet<String> = (0..100).map(|i| format!("term-{i}")).collect();
    assert_exactly_one_terminal(&evs, &ids);
    assert_eq!(s.outbox_files("sms").len(), 100);
}

#[test]
fn kill_9_mid_run_loses_nothing_and_doubles_no_event() {
    let redis = Redis::start();
    let s = setup(&redis, RECLAIM_FAST, ALL_FILE);
    let mut conn = redis.conn();
    let n = 3000;
    let jobs: Vec<_> = (0..n)
        .map(|i| job(&format!("k{i}"), if i % 2 == 0 { "email" } else { "line" }))
        .collect();
    enqueue(&mut conn, &jobs);
    let mut d = s.start();
    wait_for(&mut conn, WAIT, "a first share sent", |e| {
        count(e, "sent") >= 300
    });
    d.kill9();
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") >= n);
    let ids: HashSet<String> = (0..n).map(|i| format!("k{i}")).collect();
    assert_exactly_one_terminal(&evs, &ids);
    assert_eq!(
        s.outbox_files("email").len() + s.outbox_files("line").len(),
        n
    );
}

#[test]
fn a_redis_restart_under_load_loses_no_job() {
    let mut redis = Redis::start();
    let channels = ALL_FILE.replace("rate = \"100000/s\"", "rate = \"1500/s\"");
    let s = setup(&redis, RECLAIM_FAST, &channels);
    let mut conn = redis.conn();
    let n = 3000;
    let jobs: Vec<_> = (0..n)
        .map(|i| job(&format!("r{i}"), ["email", "line", "sms", "dm"][i % 4]))
        .collect();
    enqueue(&mut conn, &jobs);
    let _d = s.start();
    wait_for(&mut conn, WAIT, "a first share sent", |e| {
        count(e, "sent") >= 300
    });
    redis.restart(Duration::from_millis(1500));
    let mut conn = redis.conn();
    let evs = wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") >= n);
    let ids: HashSet<String> = (0..n).map(|i| format!("r{i}")).collect();
    assert_exactly_one_terminal(&evs, &ids);
}

#[test]
fn a_send_slower_than_reclaim_idle_is_not_taken_over_and_sent_twice() {
    let redis = Redis::start();
    // One SMS per second: the fifth job waits ~4 s in the limiter, well past reclaim_idle.
    let channels = ALL_FILE.replace(
        "dir = \"{outbox}/sms\"\nrate = \"100000/s\"",
        "dir = \"{outbox}/sms\"\nrate = \"1/s\"\nburst = 1",
    );
    let s = setup(&redis, RECLAIM_FAST, &channels);
    let mut conn = redis.conn();
    let jobs: Vec<_> = (0..5).map(|i| job(&format!("slow-{i}"), "sms")).collect();
    enqueue(&mut conn, &jobs);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "5 sent", |e| count(e, "sent") == 5);
    std::thread::sleep(Duration::from_millis(1500));
    let evs = [evs, events(&mut conn)].concat();
    let sent: Vec<_> = evs.iter().filter(|e| e["type"] == "sent").collect();
    assert!(
        sent.iter().all(|e| e["attempt"] == 1),
        "a held job was redelivered: {sent:?}"
    );
    // Redelivery would show as a reclaim and as more jobs taken than enqueued.
    assert_eq!(s.metric("tayori_reclaimed_total{channel=\"sms\"}"), 0.0);
    assert_eq!(s.metric("tayori_jobs_taken_total{channel=\"sms\"}"), 5.0);
    let ids: HashSet<String> = (0..5).map(|i| format!("slow-{i}")).collect();
    assert_exactly_one_terminal(&events(&mut conn), &ids);
}

#[test]
fn overlapping_dead_retry_runs_put_each_job_back_once() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    let n = 300;
    let mut pipe = redis::pipe();
    for i in 0..n {
        let raw = job(&format!("dl-{i}"), "email").to_string();
        pipe.cmd("XADD")
            .arg("t:{0}:dead")
            .arg("*")
            .arg(&[
                "job",
                raw.as_str(),
                "channel",
                "email",
                "origin",
                &format!("1-{i}"),
                "reason",
                "{}",
            ])
            .ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    let a = s
        .tayori()
        .args(["dead", "retry"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let b = s
        .tayori()
        .args(["dead", "retry"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    a.wait_with_output().unwrap();
    b.wait_with_output().unwrap();
    assert_eq!(xlen(&mut conn, "t:{0}:dead"), 0);
    assert_eq!(
        xlen(&mut conn, "t:{0}:jobs:email"),
        n,
        "each dead letter re-driven exactly once"
    );
}
