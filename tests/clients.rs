//! The client libraries (`clients/python`, `clients/node`) against a real
//! redis-server and the real daemon: each client's own test programs run here.
//! The acceptance programs enqueue jobs through the client, let the daemon deliver
//! them (file transports, 4 partitions), read the events with the client's
//! consumer, SIGKILL it twice mid-stream, and check that every event was handled
//! exactly once and every job has exactly one terminal outcome. The cancel
//! programs cancel jobs scheduled an hour ahead through the client and read their
//! `cancelled` events with the client's consumer.
//!
//! Python: the test venv (`scripts/python-env.sh`, which installs the client
//! editable). Node: `node` on PATH and the client built by `scripts/node-env.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::cluster::RedisCluster;
use common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Prints a program's output (seen with `--nocapture` or on failure) and asserts it
/// exited 0.
fn assert_ok(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{what}: {stdout}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// Redis and a daemon with 4 partitions and file transports, ready (so the layout
/// marker the clients read is written).
fn daemon_on_four_partitions(redis: &Redis) -> (Setup, Daemon) {
    let s = setup_with_redis(
        &format!("url = \"{}\"\npartitions = 4", redis.url()),
        "",
        ALL_FILE,
    );
    let d = s.start();
    s.wait_http();
    (s, d)
}

/// A 3-master Redis Cluster and a daemon on it with 12 partitions (spread over the
/// masters), file transports, ready.
fn daemon_on_cluster(cluster: &RedisCluster) -> (Setup, Daemon) {
    let s = setup_with_redis(&cluster.redis_section("partitions = 12\n"), "", ALL_FILE);
    let d = s.start();
    s.wait_http();
    (s, d)
}

/// The acceptance program's summary line (its last line of output, JSON).
fn summary(stdout: &str) -> serde_json::Value {
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary {last:?}: {e}"))
}

/// What the test checks from outside the client: the events the daemon wrote and
/// the CRM group's state, read with plain Redis commands.
fn assert_all_read(redis: &Redis, jobs: usize) {
    let mut conn = redis.conn();
    let mut events = 0;
    for k in 0..4 {
        let stream = format!("t:{{{k}}}:results");
        events += xlen(&mut conn, &stream);
        let pending: (usize, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("crm")
            .query(&mut conn)
            .expect("XPENDING");
        assert_eq!(pending.0, 0, "{stream}: entries left pending in group crm");
    }
    assert_eq!(events, jobs, "one terminal event per job, nothing else");
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TAYORI_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = repo().join("target/test-python/bin/python");
    assert!(
        venv.exists(),
        "no Python with the client: run ./scripts/python-env.sh (it installs clients/python \
         into target/test-python), or set TAYORI_TEST_PYTHON"
    );
    venv
}

/// `clients/node/dist`, built by scripts/node-env.sh.
fn node_client() -> PathBuf {
    let dist = repo().join("clients/node/dist");
    assert!(
        dist.join("index.js").exists(),
        "the Node client is not built: run ./scripts/node-env.sh (npm ci and the build in clients/node)"
    );
    dist
}

/// Over RESP2 (redis-py's default) and RESP3 (`protocol=3`), whose replies differ in shape.
#[test]
fn python_client_unit_tests() {
    let redis = Redis::start();
    for url in [redis.url(), format!("{}?protocol=3", redis.url())] {
        let out = Command::new(python())
            .args([
                "-m",
                "unittest",
                "discover",
                "-s",
                "tests",
                "-p",
                "test_*.py",
            ])
            .current_dir(repo().join("clients/python"))
            .env("TAYORI_TEST_REDIS_URL", &url)
            .output()
            .expect("run python");
        assert_ok(&format!("python -m unittest ({url})"), out);
    }
}

/// A client's acceptance program (`drive`): enqueues `jobs` through the client,
/// consumes the events with two consumer kills on the way, and prints a summary.
enum Client {
    Python,
    Node,
}

fn drive(
    client: Client,
    url: &str,
    cluster: bool,
    partitions: u32,
    jobs: usize,
) -> serde_json::Value {
    let work = tempfile::tempdir().expect("tempdir");
    let (mut cmd, what) = match client {
        Client::Python => {
            let mut c = Command::new(python());
            c.arg(repo().join("clients/python/tests/acceptance.py"));
            (c, "python acceptance")
        }
        Client::Node => {
            let mut c = Command::new("node");
            c.arg(node_client().join("../test/acceptance.mjs"));
            (c, "node acceptance")
        }
    };
    cmd.arg("drive");
    if cluster {
        cmd.arg("--cluster");
    }
    let out = cmd
        .args(["--url", url, "--prefix", "t"])
        .args([
            "--partitions",
            &partitions.to_string(),
            "--jobs",
            &jobs.to_string(),
        ])
        .arg("--dir")
        .arg(work.path())
        .output()
        .expect("run the client (scripts/python-env.sh and scripts/node-env.sh install them)");
    summary(&assert_ok(what, out))
}

/// The outcomes the acceptance programs ask for: 1 % expire, 0.1 % fail, the rest sent.
fn assert_outcomes(s: &serde_json::Value, jobs: usize) {
    assert_eq!(s["events"], jobs);
    assert_eq!(s["types"]["sent"], jobs - jobs / 100 - jobs / 1000);
    assert_eq!(s["types"]["expired"], jobs / 100);
    assert_eq!(s["types"]["failed"], jobs / 1000);
}

#[test]
fn python_client_10000_jobs_exactly_once_through_two_consumer_kills() {
    const JOBS: usize = 10_000;
    let redis = Redis::start();
    let (_s, _daemon) = daemon_on_four_partitions(&redis);
    assert_outcomes(&drive(Client::Python, &redis.url(), false, 4, JOBS), JOBS);
    assert_all_read(&redis, JOBS);
}

#[test]
fn node_client_unit_tests() {
    let redis = Redis::start();
    let dir = node_client().join("..");
    let out = Command::new("node")
        .args(["--test", "test/client.test.mjs"])
        .current_dir(&dir)
        .env("TAYORI_TEST_REDIS_URL", redis.url())
        .output()
        .expect("run node (scripts/node-env.sh installs it)");
    assert_ok("node --test", out);
}

#[test]
fn node_client_2000_jobs_exactly_once_through_two_consumer_kills() {
    const JOBS: usize = 2_000;
    let redis = Redis::start();
    let (_s, _daemon) = daemon_on_four_partitions(&redis);
    assert_outcomes(&drive(Client::Node, &redis.url(), false, 4, JOBS), JOBS);
    assert_all_read(&redis, JOBS);
}

/// On a Redis Cluster: one pipeline per partition (slot), one XREADGROUP per stream.
#[test]
fn python_client_on_a_redis_cluster() {
    const JOBS: usize = 1_000;
    let cluster = RedisCluster::start();
    let (_s, _daemon) = daemon_on_cluster(&cluster);
    let s = drive(Client::Python, &cluster.seeds()[0], true, 12, JOBS);
    assert_outcomes(&s, JOBS);
}

#[test]
fn node_client_on_a_redis_cluster() {
    const JOBS: usize = 1_000;
    let cluster = RedisCluster::start();
    let (_s, _daemon) = daemon_on_cluster(&cluster);
    let s = drive(Client::Node, &cluster.seeds()[0], true, 12, JOBS);
    assert_outcomes(&s, JOBS);
}

/// A client's cancel program (`acceptance.* cancel`): jobs scheduled an hour ahead,
/// a campaign cancelled on every channel, another on sms only, a job; one
/// `cancelled` event per cancelled job (reason and `by` as given), the other job
/// still waiting, the list, the lifts. It prints a summary line.
fn cancel_through(client: Client, url: &str, jobs: usize) -> serde_json::Value {
    let (mut cmd, what, tag) = match client {
        Client::Python => {
            let mut c = Command::new(python());
            c.arg(repo().join("clients/python/tests/acceptance.py"));
            (c, "python cancel", "py")
        }
        Client::Node => {
            let mut c = Command::new("node");
            c.arg(node_client().join("../test/acceptance.mjs"));
            (c, "node cancel", "node")
        }
    };
    let out = cmd
        .args(["cancel", "--url", url, "--prefix", "t", "--partitions", "4"])
        .args(["--jobs", &jobs.to_string(), "--tag", tag])
        .output()
        .expect("run the client (scripts/python-env.sh and scripts/node-env.sh install them)");
    summary(&assert_ok(what, out))
}

/// Both clients on one daemon, at the same time (their campaigns, jobs and
/// consumer groups are their own).
#[test]
fn python_and_node_clients_cancel_campaigns_and_jobs_through_the_daemon() {
    const JOBS: usize = 30;
    let redis = Redis::start();
    let (_s, _daemon) = daemon_on_four_partitions(&redis);
    let url = redis.url();
    let (py, node) = std::thread::scope(|t| {
        let py = t.spawn(|| cancel_through(Client::Python, &url, JOBS));
        let node = t.spawn(|| cancel_through(Client::Node, &url, JOBS));
        (py.join(), node.join())
    });
    for s in [py.expect("python"), node.expect("node")] {
        // The campaign's jobs, the sms one of the other campaign, the single job.
        assert_eq!(s["cancelled"], JOBS + 2);
        assert_eq!(s["listed"], 3);
        assert_eq!(s["lifted"], 3);
    }
}
