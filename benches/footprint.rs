//! Redis memory per job: what N delivered jobs of a channel leave in Redis
//! besides their results events — the dedupe claims above all, kept for
//! `queue.dedupe_window` (7 days), and a LINE message's short links.
//!
//! `cargo bench --bench footprint`, knobs by env: `BENCH_JOBS` (1,000,000 per
//! channel), `BENCH_CHANNELS` (`email,line`), `BENCH_ROUND` (100,000 jobs
//! enqueued and drained at a time, so the job streams never hold all of them),
//! `BENCH_CONCURRENCY` (256), `BENCH_WINDOW` (`queue.dedupe_window`, 7d).
//! Template `spring_sale`, tracking on, null
//! transport, profiles off (a profile is per customer, not per job:
//! `benches/profiles.rs`). Prints, per channel, `used_memory` after the drain
//! with the results streams deleted minus `used_memory` before its first job,
//! divided by N; each kind of per-job key's share (`MEMORY USAGE`); and the
//! drain's CPU per job, daemon and Redis.

mod support;

use support::{cpu_per_job, env_or, under_cargo_bench, Bench};

fn main() {
    if !under_cargo_bench("footprint") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 1_000_000);
    let round: usize = env_or("BENCH_ROUND", 100_000).min(jobs).max(1);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 256);
    let channels: String = env_or("BENCH_CHANNELS", "email,line".to_owned());
    // A short window (`20s`) makes buckets roll during the run: a claim then
    // also looks in the bucket before, as in a deployment's steady state (the
    // memory figure is then only the last windows' claims).
    let window: String = env_or("BENCH_WINDOW", "7d".to_owned());
    let mut bench = Bench::start();
    println!(
        "jobs            {jobs} per channel (template spring_sale, tracking on, null transport), {round} a round, concurrency {concurrency}"
    );
    for channel in channels.split(',').filter(|c| !c.is_empty()) {
        run(&mut bench, channel, jobs, round, concurrency, &window);
    }
}

/// N jobs of one channel, drained; what they left behind, per job.
fn run(
    bench: &mut Bench,
    channel: &str,
    jobs: usize,
    round: usize,
    concurrency: usize,
    window: &str,
) {
    let own = match channel {
        "email" => "from = \"Example Shop <news@example.com>\"\n",
        _ => "",
    };
    let head = bench.config_head().replace(
        "[queue]\n",
        &format!("[queue]\ndedupe_window = \"{window}\"\n"),
    );
    let config = format!(
        "{head}[profiles]\nenabled = false\n[channels.{channel}]\ntransport = \"null\"\n{own}rate = \"1000000/s\"\nconcurrency = {concurrency}\n"
    );
    let cfg = bench.write_config(&config);
    // The schema marker and the consumer groups exist before the first job.
    let status = bench
        .tayori(&cfg)
        .arg("stats")
        .output()
        .expect("tayori stats");
    assert!(status.status.success(), "tayori stats failed");
    let before = used_memory(bench);
    let keys_before = patterns().map(|p| bytes_of(bench, p));
    let (mut daemon_us, mut redis_us, mut secs) = (0.0, 0.0, 0.0);
    let mut done = 0;
    let mut n = 0;
    while done < jobs {
        let this = round.min(jobs - done);
        let file = bench.write_jobs(this, &[channel], &format!("{channel}{n}"));
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
    let after = used_memory(bench);
    let per = |b: i64| b as f64 / jobs as f64;
    println!(
        "{channel:<15} {:.1} B/job of Redis memory outside the results streams (used_memory {before} → {after})",
        per(after - before)
    );
    for (pattern, (bytes_before, keys_before)) in patterns().iter().zip(keys_before) {
        let (bytes, keys) = bytes_of(bench, pattern);
        println!(
            "  {pattern:<13} {:.1} B/job in {} keys",
            per(bytes - bytes_before),
            keys - keys_before
        );
    }
    println!(
        "  results       {:.1} B/event (deleted before the figure above)",
        per(results)
    );
    println!(
        "  drain         {:.0} jobs/s; {}",
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
    // The next channel starts from what this one left, so its figure is its own.
}

/// The per-job keys, by kind.
fn patterns() -> [&'static str; 5] {
    [
        "*:claims:*",
        "*:seen:*",
        "*:link*",
        "*:verp*",
        "*:line:tag:*",
    ]
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
