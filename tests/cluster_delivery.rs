//! The daemon on a real 3-master Redis Cluster with `partitions = 12`: every job
//! ends once over all four channels with two daemons, and a reshard while jobs
//! flow loses nothing and doubles nothing.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::cluster::RedisCluster;
use common::*;
use serde_json::Value;

const CHANNELS: [&str; 4] = ["email", "line", "sms", "dm"];

fn cluster_setup(cluster: &RedisCluster) -> Setup {
    setup_with_redis(&cluster.redis_section("partitions = 12\n"), "", ALL_FILE)
}

/// Jobs `{tag}-0…` over the four channels and a few hundred customers.
fn jobs(tag: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut j = job(&format!("{tag}-{i}"), CHANNELS[i % 4]);
            j["customer_id"] = format!("C{}", i % 397).into();
            j
        })
        .collect()
}

/// Waits until each of `ids` has a terminal event; then checks each has exactly
/// one and that no event is printed twice.
fn wait_each_once(s: &Setup, ids: &HashSet<String>, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let evs = s.events_cli(&[]);
        let by_job = terminal_by_job(&evs);
        let done = ids.iter().filter(|id| by_job.contains_key(*id)).count();
        if done == ids.len() {
            for id in ids {
                assert_eq!(by_job[id], ["sent"], "{id}");
            }
            let mut seen = HashSet::new();
            for e in &evs {
                let id = e["event_id"].as_str().unwrap_or_default().to_owned();
                assert!(seen.insert(id.clone()), "event {id} printed twice");
            }
            return evs;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} jobs ended; {} events",
            ids.len(),
            evs.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn outbox_count(setups: &[&Setup]) -> usize {
    let mut names = HashSet::new();
    for s in setups {
        for ch in CHANNELS {
            for f in s.outbox_files(ch) {
                assert!(names.insert(format!("{ch}/{f}")), "{ch}/{f} written twice");
            }
        }
    }
    names.len()
}

#[test]
fn six_thousand_jobs_on_twelve_partitions_end_once_with_two_daemons() {
    let cluster = RedisCluster::start();
    let a = cluster_setup(&cluster);
    let b = cluster_setup(&cluster);
    let jobs = jobs("cj", 6000);
    a.enqueue_cli(&jobs);
    // Every master holds some partitions' job streams.
    for port in cluster.masters() {
        let mut c = cluster.node_conn(port).unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("t:{*}:jobs:*")
            .query(&mut c)
            .unwrap();
        assert!(!keys.is_empty(), "master {port} holds no job stream");
    }
    let mut d1 = a.start();
    let mut d2 = b.start();
    let ids: HashSet<String> = jobs
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    let evs = wait_each_once(&a, &ids, Duration::from_secs(180));
    assert_eq!(d1.terminate(Duration::from_secs(20)), Some(0));
    assert_eq!(d2.terminate(Duration::from_secs(20)), Some(0));
    assert_eq!(outbox_count(&[&a, &b]), 6000);
    // Both daemons took part.
    assert!(
        !a.outbox_files("email").is_empty() || !a.outbox_files("line").is_empty(),
        "the first daemon sent nothing"
    );
    assert!(
        !b.outbox_files("email").is_empty() || !b.outbox_files("line").is_empty(),
        "the second daemon sent nothing"
    );
    // Per channel, a quarter each.
    let mut per_channel: HashMap<String, usize> = HashMap::new();
    for e in evs.iter().filter(|e| e["type"] == "sent") {
        *per_channel
            .entry(e["channel"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    for ch in CHANNELS {
        assert_eq!(per_channel.get(ch), Some(&1500), "{per_channel:?}");
    }
    // A consumer group reads each event once, over every partition.
    let out = a
        .tayori()
        .args(["events", "--group", "audit", "--from-start"])
        .output()
        .unwrap();
    let n = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(n, evs.len(), "{:?}", String::from_utf8_lossy(&out.stderr));
    let out = a
        .tayori()
        .args(["events", "--group", "audit"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 0);
    // stats sums every partition on every master.
    let out = a.tayori().args(["stats", "--json"]).output().unwrap();
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(stats["results"].as_u64().unwrap_or(0) >= 6000, "{stats}");
}

#[test]
fn a_reshard_while_jobs_flow_loses_nothing_and_doubles_nothing() {
    let cluster = RedisCluster::start();
    let s = cluster_setup(&cluster);
    let first = jobs("rs", 3000);
    s.enqueue_cli(&first);
    let mut daemon = s.start();
    let masters = cluster.masters();
    // Slots (and the partitions' keys in them) move between masters while the
    // daemon reads, acknowledges and writes events: MOVED and ASK replies.
    cluster.reshard(masters[0], masters[1], 2000);
    let second = jobs("rs2", 1000);
    s.enqueue_cli(&second);
    cluster.reshard(masters[1], masters[2], 2000);
    let ids: HashSet<String> = first
        .iter()
        .chain(&second)
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    wait_each_once(&s, &ids, Duration::from_secs(180));
    assert_eq!(daemon.terminate(Duration::from_secs(20)), Some(0));
    assert_eq!(outbox_count(&[&s]), 4000);
}
