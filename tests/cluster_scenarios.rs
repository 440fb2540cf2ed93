//! The scheduling, fallback, dead-letter, rate-limit and recovery paths on a
//! real 3-master Redis Cluster with `partitions = 6`: one shared cluster, each
//! test under a prefix of its own. The same paths on a standalone Redis are
//! tested in delivery.rs, bad_input.rs, scale_out.rs and recovery.rs.

mod common;

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::cluster::RedisCluster;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

fn cluster_setup(prefix: &str, queue: &str, channels: &str) -> Setup {
    setup_with_redis(
        &cluster().redis_section(&format!("partitions = 6\nprefix = \"{prefix}\"\n")),
        queue,
        channels,
    )
}

fn wait_events(s: &Setup, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let evs = s.events_cli(&[]);
        if pred(&evs) {
            return evs;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {evs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A raw XADD to `key` on the primary that owns it (what a CRM does).
fn xadd(key: &str, job: &Value) {
    let c = cluster();
    let mut conn = c.node_conn(c.master_for_key(key)).unwrap();
    let _: String = redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg("job")
        .arg(job.to_string())
        .query(&mut conn)
        .unwrap();
}

#[test]
fn fallback_moves_a_job_across_its_partitions_streams() {
    let s = cluster_setup("fb", "", ALL_FILE);
    let mut j = job("fb-1", "line");
    j["to"].as_object_mut().unwrap().remove("line_user_id");
    j["to"].as_object_mut().unwrap().remove("phone");
    j["fallback"] = json!(["sms", "email"]);
    s.enqueue_cli(&[j]);
    let mut d = s.start();
    let evs = wait_events(&s, "sent by email", |e| count(e, "sent") == 1);
    let fallbacks: Vec<_> = evs.iter().filter(|e| e["type"] == "fallback").collect();
    assert_eq!(fallbacks.len(), 2, "line → sms → email: {evs:?}");
    let sent = evs.iter().find(|e| e["type"] == "sent").unwrap();
    assert_eq!(sent["channel"], "email");
    assert_eq!(s.outbox_files("email"), vec!["fb-1.eml"]);
    assert_eq!(d.terminate(Duration::from_secs(20)), Some(0));
}

#[test]
fn scheduled_jobs_wait_in_their_partitions_delayed_set() {
    let s = cluster_setup("sch", "", ALL_FILE);
    let due = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(2500);
    // Customers in several partitions, so several movers' leases are used.
    let jobs: Vec<Value> = (0..12)
        .map(|i| {
            let mut j = job(&format!("later-{i}"), "email");
            j["customer_id"] = format!("S{i}").into();
            j["send_at"] = json!(due.to_string());
            j
        })
        .collect();
    s.enqueue_cli(&jobs);
    let mut d = s.start();
    let evs = wait_events(&s, "scheduled sends", |e| count(e, "sent") == 12);
    for sent in evs.iter().filter(|e| e["type"] == "sent") {
        let at: jiff::Timestamp = sent["at"].as_str().unwrap().parse().unwrap();
        assert!(at >= due, "sent at {at}, before send_at {due}");
    }
    assert_eq!(d.terminate(Duration::from_secs(20)), Some(0));
}

#[test]
fn a_dead_letter_is_listed_and_retried_on_its_partition() {
    let s = cluster_setup("dl", "", ALL_FILE);
    // An SMS job in an email stream: a dead letter in that partition.
    let keys = tayori::keys::Keys::new("dl", 6);
    let p = keys.job_partition(Some("C-dl-1"), "dl-1");
    let mut j = job("dl-1", "sms");
    j["customer_id"] = "C-dl-1".into();
    xadd(&keys.jobs(p, tayori::channel::email::ID), &j);
    let out = drain(&s);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = s
        .tayori()
        .args(["dead", "list", "--json"])
        .output()
        .unwrap();
    let listed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let name = listed[0]["id"].as_str().unwrap().to_owned();
    assert!(name.starts_with(&format!("{p}/")), "{name}");
    let out = s.tayori().args(["dead", "retry", &name]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = drain(&s);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Re-driven to the stream it died in (its partition's email stream), read
    // again there, and dead again for the same reason: in the same partition.
    // The same failure again is no news: its event (same id) is not written twice.
    let evs = s.events_cli(&[]);
    assert_eq!(terminal_by_job(&evs)["dl-1"], ["failed"], "{evs:?}");
    let out = s
        .tayori()
        .args(["dead", "list", "--json"])
        .output()
        .unwrap();
    let again: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    let renamed = again[0]["id"].as_str().unwrap();
    assert!(
        renamed.starts_with(&format!("{p}/")) && renamed != name,
        "{renamed}"
    );
}

#[test]
fn the_shared_rate_limit_holds_on_a_cluster() {
    let channels = r#"
[channels.sms]
transport = "file"
dir = "{outbox}/sms"
rate = "20/s"
burst = 2
concurrency = 8
"#;
    let s = cluster_setup("rl", "", channels);
    let n = 60;
    let jobs: Vec<Value> = (0..n).map(|i| job(&format!("r{i}"), "sms")).collect();
    s.enqueue_cli(&jobs);
    let mut d = s.start();
    let evs = wait_events(&s, "all sent", |e| count(e, "sent") == n);
    let mut times: Vec<i64> = evs
        .iter()
        .filter(|e| e["type"] == "sent")
        .filter_map(|e| e["at"].as_str()?.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .collect();
    times.sort_unstable();
    // The bucket lives on the cluster (tag {rate:sms}): never more than the rate
    // plus the burst within any second, and no faster than the rate overall.
    for (i, t) in times.iter().enumerate() {
        let within = times[i..].iter().take_while(|u| **u < t + 1000).count();
        assert!(within <= 20 + 2, "{within} sends within a second of {t}");
    }
    let span = (times[n - 1] - times[0]) as f64 / 1000.0;
    assert!(
        span >= (n - 2 - 1) as f64 / 20.0 * 0.95,
        "{n} sends in {span:.2} s"
    );
    let mut c = cluster()
        .node_conn(cluster().master_for_key("rl:{rate:sms}"))
        .unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg("rl:{rate:sms}")
        .query(&mut c)
        .unwrap();
    assert!(exists, "the shared bucket is on the cluster");
    assert_eq!(d.terminate(Duration::from_secs(20)), Some(0));
}

#[test]
fn a_killed_daemons_jobs_are_reclaimed_on_every_partition_and_end_once() {
    let channels = ALL_FILE.replace(
        "dir = \"{outbox}/sms\"\nrate = \"100000/s\"",
        "dir = \"{outbox}/sms\"\nrate = \"50/s\"\nburst = 1",
    );
    let s = cluster_setup(
        "rc",
        "reclaim_idle = \"1s\"\nshutdown_grace = \"1s\"",
        &channels,
    );
    let n = 200;
    let jobs: Vec<Value> = (0..n)
        .map(|i| {
            let mut j = job(&format!("k{i}"), "sms");
            j["customer_id"] = format!("K{i}").into();
            j
        })
        .collect();
    s.enqueue_cli(&jobs);
    let mut first = s.start();
    wait_events(&s, "some sent", |e| count(e, "sent") >= 20);
    // Killed with jobs read and pending in several partitions.
    first.kill9();
    let mut second = s.start();
    let evs = wait_events(&s, "all ended", |e| terminal_by_job(e).len() == n);
    let by_job = terminal_by_job(&evs);
    for (id, t) in &by_job {
        assert_eq!(t.len(), 1, "{id}: {t:?}");
    }
    let files: HashSet<String> = s.outbox_files("sms").into_iter().collect();
    assert_eq!(files.len(), n, "one message per job");
    assert_eq!(second.terminate(Duration::from_secs(20)), Some(0));
}

/// `tayori run --drain`, within 2 minutes.
fn drain(s: &Setup) -> std::process::Output {
    let mut cmd = s.tayori();
    cmd.args(["run", "--drain"]);
    tayori_testkit::daemon::output_within(cmd, Duration::from_secs(120))
}
