//! Email over SMTP: personalized HTML mail (tracking on: links rewritten, pixel,
//! List-Unsubscribe, VERP) sent to Postfix's `smtp-sink`, a real SMTP server that
//! accepts and discards. A second run adds DKIM (ed25519).
//!
//! Each run's line gives CPU per job beside the rate and peak RSS: the daemon's
//! (its whole life, `wait4`; it is stopped only once its profile updater has read
//! every event, so that work counts too) and Redis's (`INFO cpu` around the
//! drain; the enqueue is not counted).
//!
//! `cargo bench --bench email_smtp`; needs `smtp-sink` (Debian: postfix), which
//! `scripts/bench.sh` installs. Knobs: `BENCH_JOBS` (50000), `BENCH_CONCURRENCY`
//! (64), `BENCH_POOL` (32, SMTP connections).

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{cpu_per_job, env_or, free_port, under_cargo_bench, Bench};

/// A fixed ed25519 seed for the DKIM run (benchmark only).
const BENCH_DKIM_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";

fn main() {
    if !under_cargo_bench("email_smtp") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 50_000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 64);
    let pool: usize = env_or("BENCH_POOL", 32);
    let port = free_port();
    let mut sink = Command::new("smtp-sink")
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "1024"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (Debian package postfix; scripts/bench.sh installs it)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut bench = Bench::start();
    let key = bench.dir.path().join("dkim.key");
    std::fs::write(&key, BENCH_DKIM_SEED).expect("key");
    let head = bench.config_head();
    let config = |dkim: bool| {
        let dkim = if dkim {
            format!(
                "[channels.email.dkim]\nselector = \"bench\"\nkey_file = \"{}\"\n",
                key.display()
            )
        } else {
            String::new()
        };
        format!(
            "{head}[channels.email]\ntransport = \"smtp\"\nfrom = \"Example Shop <news@example.com>\"\n\
             envelope_from = \"bounces@example.com\"\nverp = true\nrate = \"1000000/s\"\nburst = 1000\n\
             concurrency = {concurrency}\n[channels.email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"none\"\npool_size = {pool}\n{dkim}"
        )
    };
    let mut results = Vec::new();
    for (name, dkim) in [("tracking", false), ("tracking+dkim", true)] {
        let cfg = bench.write_config(&config(dkim));
        let file = bench.write_jobs(jobs, &["email"], name.replace('+', "-").as_str());
        bench.enqueue(&cfg, &file);
        let run = bench.drain_cpu(&cfg, jobs);
        results.push((name, run));
    }
    let sent = bench.count_sent();
    if sent != jobs * results.len() {
        let first: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg("bench:{0}:results")
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(100_000)
            .query(&mut bench.conn)
            .unwrap_or_default();
        let mut kinds = std::collections::BTreeMap::new();
        for (_, fields) in &first {
            let ev = &fields[0].1;
            let kind = ev.get(..ev.find(',').unwrap_or(0)).unwrap_or("");
            *kinds.entry(kind.to_owned()).or_insert(0) += 1;
        }
        eprintln!("events by type: {kinds:?}");
        if let Some(not_sent) = first.iter().find(|(_, f)| !f[0].1.contains("\"sent\"")) {
            eprintln!("first other event: {not_sent:?}");
        }
    }
    let _ = sink.kill();
    let _ = sink.wait();
    for (name, (run, redis)) in &results {
        println!(
            "{name:<14} {jobs} emails in {:.2} s: {:.0} messages/s end to end, {}, daemon peak RSS {:.1} MiB",
            run.secs,
            jobs as f64 / run.secs,
            cpu_per_job(run, *redis, jobs),
            run.peak_mib
        );
    }
    assert_eq!(sent, jobs * results.len(), "every job has its sent event");
}
