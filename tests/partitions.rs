//! `redis.partitions`: jobs land where the documented function puts them, every
//! partition is read, written back to and reported on, and the layout marker
//! keeps a build off data of another layout.

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `zlib.crc32(customer_id) % 4`, computed with Python's zlib: the function a
/// CRM uses (docs/scaling.md), not Tayori's own code.
const PARTITION_OF: [(&str, u32); 8] = [
    ("C-a1", 0),
    ("C-a2", 2),
    ("C-a3", 0),
    ("C-a4", 3),
    ("C-a5", 1),
    ("C-a6", 3),
    ("C-a7", 1),
    ("C-a8", 0),
];

fn four_partitions(redis: &Redis) -> Setup {
    setup_with_redis(
        &format!("url = \"{}\"\npartitions = 4", redis.url()),
        "",
        ALL_FILE,
    )
}

fn run(s: &Setup, args: &[&str]) -> Output {
    let mut cmd = s.tayori();
    cmd.args(args);
    tayori_testkit::daemon::output_within(cmd, Duration::from_secs(120))
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A job for customer `customer` on `channel`.
fn job_of(id: &str, customer: &str, channel: &str) -> Value {
    let mut j = job(id, channel);
    j["customer_id"] = customer.into();
    j
}

#[test]
fn enqueue_puts_each_job_in_its_customers_partition_and_the_daemon_reads_them_all() {
    let redis = Redis::start();
    let s = four_partitions(&redis);
    let jobs: Vec<Value> = PARTITION_OF
        .iter()
        .map(|(c, _)| job_of(&format!("p-{c}"), c, "email"))
        .collect();
    s.enqueue_cli(&jobs);
    let mut conn = redis.conn();
    // Each job is in the stream the CRM-side function names, and nowhere else.
    for (customer, k) in PARTITION_OF {
        for p in 0..4u32 {
            let entries = xrange(&mut conn, &format!("t:{{{p}}}:jobs:email"));
            let here = entries.iter().any(|(_, f)| {
                f.iter()
                    .any(|(_, v)| v.contains(&format!("\"p-{customer}\"")))
            });
            assert_eq!(here, p == k, "{customer} in partition {p}");
        }
    }
    // The marker records the layout.
    let schema: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg("t:schema")
        .query(&mut conn)
        .unwrap();
    assert_eq!(schema.get("version").map(String::as_str), Some("2"));
    assert_eq!(schema.get("partitions").map(String::as_str), Some("4"));

    // `stats` sums the partitions.
    let out = run(&s, &["stats", "--json"]);
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let email = stats["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "email")
        .unwrap();
    assert_eq!(email["stream"], 8, "{stats}");

    let out = run(&s, &["run", "--drain"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(s.outbox_files("email").len(), 8);
    // Each `sent` event is in its job's partition's results.
    for (customer, k) in PARTITION_OF {
        let evs: Vec<Value> = xrange(&mut conn, &format!("t:{{{k}}}:results"))
            .into_iter()
            .filter_map(|(_, f)| f.into_iter().find(|(k, _)| k == "event"))
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .collect();
        assert!(
            evs.iter()
                .any(|e| e["type"] == "sent" && e["job_id"] == format!("p-{customer}")),
            "{customer}: {evs:?}"
        );
    }

    // `events` prints every partition's events; as a group, each once.
    let all = s.events_cli(&[]);
    assert_eq!(all.iter().filter(|e| e["type"] == "sent").count(), 8);
    let first = run(&s, &["events", "--group", "ops", "--from-start"]);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    assert_eq!(lines(&first).len(), all.len());
    let again = run(&s, &["events", "--group", "ops"]);
    assert_eq!(lines(&again), Vec::<Value>::new(), "acknowledged before");
    // A new group without --from-start starts at the end.
    assert_eq!(s.events_cli(&["--group", "late"]).len(), 0);
    for p in 0..4 {
        let groups: Vec<Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(format!("t:{{{p}}}:results"))
            .query::<redis::Value>(&mut conn)
            .map(|v| vec![Value::String(format!("{v:?}"))])
            .unwrap();
        assert!(format!("{groups:?}").contains("ops"), "partition {p}");
    }

    // The report reads every partition.
    let out = run(&s, &["report", "--campaign", "test", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.to_string().contains("\"sent\":8"), "{report}");
}

#[test]
fn dead_letters_of_every_partition_are_listed_and_retried_by_name() {
    let redis = Redis::start();
    let s = four_partitions(&redis);
    // A job in another channel's stream is a dead letter, in the partition of
    // the stream it was in.
    let mut conn = redis.conn();
    for (c, k) in [("C-a1", 0), ("C-a2", 2), ("C-a4", 3)] {
        let _: String = redis::cmd("XADD")
            .arg(format!("t:{{{k}}}:jobs:email"))
            .arg("*")
            .arg("job")
            .arg(job_of(&format!("d-{c}"), c, "sms").to_string())
            .query(&mut conn)
            .unwrap();
    }
    let out = run(&s, &["run", "--drain"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for (p, n) in [(0, 1), (1, 0), (2, 1), (3, 1)] {
        assert_eq!(
            xlen(&mut conn, &format!("t:{{{p}}}:dead")),
            n,
            "partition {p}"
        );
    }
    let listed = lines(&run(&s, &["dead", "list", "--json"]));
    assert_eq!(listed.len(), 3, "{listed:?}");
    let names: Vec<String> = listed
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    // Named `k/entry-id` when there are several partitions.
    let mut partitions: Vec<&str> = names.iter().filter_map(|n| n.split('/').next()).collect();
    partitions.sort_unstable();
    assert_eq!(partitions, ["0", "2", "3"], "{names:?}");
    let partition_2 = names.iter().find(|n| n.starts_with("2/")).unwrap().clone();
    let out = run(&s, &["dead", "retry", &partition_2]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(xlen(&mut conn, "t:{2}:dead"), 0);
    assert_eq!(
        xlen(&mut conn, "t:{2}:jobs:email"),
        1,
        "back on its own partition's stream"
    );
    assert_eq!(xlen(&mut conn, "t:{0}:dead"), 1, "the others stay");
}

#[test]
fn a_build_refuses_data_of_another_layout_and_names_the_fix() {
    let redis = Redis::start();
    let s = four_partitions(&redis);
    assert_eq!(run(&s, &["stats"]).status.code(), Some(0));
    // The same data under another partition count.
    let s = s.replace_config("partitions = 4", "partitions = 2");
    for args in [&["stats"][..], &["run", "--drain"][..]] {
        let out = run(&s, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            stderr.contains("redis.partitions = 4") && stderr.contains("tayori migrate"),
            "{args:?}: {stderr}"
        );
    }
    // Schema-1 data on a Redis without a marker.
    let other = Redis::start();
    let s = setup(&other, "", ALL_FILE);
    let mut conn = other.conn();
    let _: String = redis::cmd("XADD")
        .arg("t:jobs:email")
        .arg("*")
        .arg("job")
        .arg(job("old-1", "email").to_string())
        .query(&mut conn)
        .unwrap();
    let out = s.run_with_stdin(&["enqueue", "-"], &job("new-1", "email").to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("t:jobs:email") && stderr.contains("tayori migrate"),
        "{stderr}"
    );
    assert_eq!(xlen(&mut conn, "t:{0}:jobs:email"), 0, "nothing written");
}

/// One read over many partitions' streams can return more entries than the
/// channel has slots; the daemon must still take them all (it once waited for
/// more slots than exist).
#[test]
fn a_read_over_more_partitions_than_slots_still_drains() {
    let redis = Redis::start();
    let s = setup_with_redis(
        &format!("url = \"{}\"\npartitions = 12", redis.url()),
        "",
        r#"
[channels.email]
transport = "file"
dir = "{outbox}/email"
from = "Example Shop <news@example.com>"
rate = "100000/s"
concurrency = 2
"#,
    );
    let jobs: Vec<Value> = (0..60)
        .map(|i| job_of(&format!("m-{i}"), &format!("M{i}"), "email"))
        .collect();
    s.enqueue_cli(&jobs);
    let out = run(&s, &["run", "--drain"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(s.outbox_files("email").len(), 60);
    let sent = s.events_cli(&[]);
    assert_eq!(sent.iter().filter(|e| e["type"] == "sent").count(), 60);
}
