//! Redis memory per job: what N delivered email jobs leave in Redis besides
//! their results events — the dedupe claims, above all, which are kept for
//! `queue.dedupe_window` (7 days).
//!
//! `cargo bench --bench footprint`, knobs by env: `BENCH_JOBS` (1,000,000),
//! `BENCH_ROUND` (100,000 jobs enqueued and drained at a time, so the job
//! streams never hold all of them), `BENCH_CONCURRENCY` (256). Email from a
//! named template, tracking on, null transport, profiles off (a profile is per
//! customer, not per job: `benches/profiles.rs`). Prints `used_memory` after
//! the drain, with the results streams deleted, minus `used_memory` before the
//! first job, divided by N; the claims' share (`MEMORY USAGE` of every claims
//! and `seen:` key); and the drain's CPU per job, daemon and Redis.

mod support;

use support::{cpu_per_job, env_or, under_cargo_bench, Bench};

fn main() {
    if !under_cargo_bench("footprint") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 1_000_000);
    let round: usize = env_or("BENCH_ROUND", 100_000).min(jobs).max(1);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 256);
    let mut bench = Bench::start();
    let config = format!(
        "{}[profiles]\nenabled = false\n[channels.email]\ntransport = \"null\"\nfrom = \"Example Shop <news@example.com>\"\nrate = \"1000000/s\"\nconcurrency = {concurrency}\n",
        bench.config_head()
    );
    let cfg = bench.write_config(&config);
    // The schema marker and the consumer groups exist before the first job.
    let status = bench
        .tayori(&cfg)
        .arg("stats")
        .output()
        .expect("tayori stats");
    assert!(status.status.success(), "tayori stats failed");
    let before = used_memory(&mut bench);
    println!(
        "jobs            {jobs} email (template, tracking on, null transport), {round} a round, concurrency {concurrency}"
    );
    let (mut daemon_us, mut redis_us, mut secs) = (0.0, 0.0, 0.0);
    let mut done = 0;
    let mut n = 0;
    while done < jobs {
        let this = round.min(jobs - done);
        let file = bench.write_jobs(this, &["email"], &format!("r{n}"));
        bench.enqueue(&cfg, &file);
        let _ = std::fs::remove_file(&file);
        let (drained, redis) = bench.drain_cpu(&cfg, this);
        daemon_us += drained.cpu_us;
        redis_us += redis;
        secs += drained.secs;
        done += this;
        n += 1;
    }
    let results = bench.results_bytes();
    for key in bench.results_keys() {
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query(bench.keys_conn())
            .expect("DEL results");
    }
    let after = used_memory(&mut bench);
    let (claims, claim_keys) = bytes_of(&mut bench, "*:claims:*");
    let (seen, seen_keys) = bytes_of(&mut bench, "*:seen:*");
    let per = |b: i64| b as f64 / jobs as f64;
    println!(
        "memory/job      {:.1} B of Redis memory outside the results streams (used_memory {} → {})",
        per(after - before),
        before,
        after
    );
    println!(
        "dedupe claims   {:.1} B/job in {claim_keys} claims keys; {:.1} B/job in {seen_keys} seen: keys",
        per(claims),
        per(seen)
    );
    println!(
        "results         {:.1} B/event (deleted before the figure above)",
        per(results)
    );
    println!(
        "drain           {:.0} jobs/s; {}",
        jobs as f64 / secs,
        cpu_per_job(
            &support::Drained {
                secs,
                events: jobs,
                peak_mib: 0.0,
                cpu_us: daemon_us,
                settle_secs: 0.0,
            },
            redis_us,
            jobs
        )
    );
}

fn used_memory(bench: &mut Bench) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut bench.conn)
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// `MEMORY USAGE` summed over the keys matching `pattern`, and their count.
fn bytes_of(bench: &mut Bench, pattern: &str) -> (i64, usize) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query(&mut bench.conn)
        .expect("KEYS");
    let mut total = 0;
    for key in &keys {
        let bytes: Option<i64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query(&mut bench.conn)
            .unwrap_or(None);
        total += bytes.unwrap_or(0);
    }
    (total, keys.len())
}
