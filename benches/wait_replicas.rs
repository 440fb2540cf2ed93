//! What `redis.wait_replicas = 1` costs with a live replica: the same N email jobs
//! (null transport) enqueued and drained with `WAIT` after every outcome batch,
//! reaction and enqueue pipeline, and without.
//!
//! `cargo bench --bench wait_replicas`, knobs by env: `BENCH_JOBS` (50000),
//! `BENCH_CONCURRENCY` (256). The replica is a second redis-server on the same
//! machine (`--replicaof`), so this is the cost of the round trip to it, not of a
//! network: on one host a `WAIT` answers as soon as the replica has read the stream.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{env_or, free_port, under_cargo_bench, Bench};

fn main() {
    if !under_cargo_bench("wait_replicas") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 50_000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 256);
    let mut bench = Bench::start();
    let primary_port = bench.url.rsplit(':').next().unwrap_or("6379").to_owned();
    let replica_port = free_port();
    let replica_dir = tempfile::tempdir().expect("tempdir");
    let mut replica = Command::new("redis-server")
        .args(["--port", &replica_port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--replicaof", "127.0.0.1", &primary_port])
        .arg("--dir")
        .arg(replica_dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("replica redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut bench.conn)
            .unwrap_or_default();
        if info.contains("connected_slaves:1") && info.contains("state=online") {
            break;
        }
        assert!(Instant::now() < deadline, "the replica did not come online");
        std::thread::sleep(Duration::from_millis(50));
    }

    println!("jobs            {jobs} email (null transport, concurrency {concurrency}), one replica on this host");
    for wait in [0, 1] {
        let config = format!(
            "{}wait_replicas = {wait}\nwait_timeout = \"100ms\"\n[channels.email]\ntransport = \"null\"\nfrom = \"Example Shop <news@example.com>\"\nrate = \"1000000/s\"\nconcurrency = {concurrency}\n",
            bench.config_head()
        );
        // wait_replicas belongs to [redis], the first section of the head.
        let config = move_to_redis_section(&config);
        let cfg = bench.write_config(&config);
        let file = bench.write_jobs(jobs, &["email"], &format!("wait{wait}"));
        let enqueue_secs = bench.enqueue(&cfg, &file);
        let drained = bench.drain(&cfg, jobs);
        println!(
            "wait_replicas {wait}  enqueue {:>7.0} jobs/s   drain {:>7.0} jobs/s ({} events in {:.2} s)   peak RSS {:.1} MiB",
            jobs as f64 / enqueue_secs,
            drained.events as f64 / drained.secs,
            drained.events,
            drained.secs,
            drained.peak_mib
        );
    }
    let _ = replica.kill();
    let _ = replica.wait();
}

/// Moves the `wait_*` lines appended after the head into its `[redis]` section.
fn move_to_redis_section(config: &str) -> String {
    let (wait, rest): (Vec<&str>, Vec<&str>) = config.lines().partition(|l| l.starts_with("wait_"));
    let mut out = String::new();
    for line in rest {
        out.push_str(line);
        out.push('\n');
        if line == "[redis]" {
            for w in &wait {
                out.push_str(w);
                out.push('\n');
            }
        }
    }
    out
}
