//! The rate limit shared by several daemons through Redis.
//!
//! 1. Overhead: jobs/s on one channel with a null transport and a rate far above
//!    what the daemon can do, with `rate_scope = "global"` (permits leased from
//!    Redis) and `"daemon"` (process-local only).
//! 2. Accuracy: the aggregate send rate of 1 and of 3 daemons against one
//!    configured rate, from the `sent` events' timestamps.
//!
//! `cargo bench --bench shared_rate`; knobs: `BENCH_JOBS` (100000, run 1),
//! `BENCH_RATE` (1000, run 2), `BENCH_SECONDS` (15, run 2).

mod support;

use std::time::{Duration, Instant};

use support::{env_or, under_cargo_bench, Bench};
use tayori_testkit::Daemon;

fn channel(rate: &str, scope: &str) -> String {
    format!(
        "[channels.line]\ntransport = \"null\"\nrate = \"{rate}\"\nrate_scope = \"{scope}\"\nconcurrency = 256\n"
    )
}

/// `sent` times (ms) in the results stream, sorted.
fn sent_times(bench: &mut Bench) -> Vec<i64> {
    let evs: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("bench:{0}:results")
        .arg("-")
        .arg("+")
        .query::<redis::Value>(&mut bench.conn)
        .ok()
        .and_then(|v| redis::from_redis_value(v).ok())
        .unwrap_or_default();
    let mut t: Vec<i64> = evs
        .iter()
        .flat_map(|(_, f)| f.iter().filter(|(k, _)| k == "event"))
        .filter_map(|(_, v)| serde_json::from_str::<serde_json::Value>(v).ok())
        .filter(|e| e["type"] == "sent")
        .filter_map(|e| e["at"].as_str()?.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .collect();
    t.sort_unstable();
    t
}

/// Runs `daemons` daemons on `cfg` until `jobs` events are in; returns the
/// observed rate, the most sends in one second and the leases per send (calls of
/// the lease script, counted by its `TIME`: nothing else a daemon runs calls it).
fn aggregate(
    bench: &mut Bench,
    cfg: &std::path::Path,
    daemons: usize,
    jobs: usize,
) -> (f64, usize, f64) {
    let _: () = redis::cmd("DEL")
        .arg("bench:{0}:results")
        .query(&mut bench.conn)
        .unwrap();
    let file = bench.write_jobs(jobs, &["line"], &format!("agg{daemons}"));
    bench.enqueue(cfg, &file);
    let time_calls = |stats: &[support::NodeStats]| -> u64 {
        stats.iter().filter_map(|s| s.calls.get("time")).sum()
    };
    let before = time_calls(&bench.node_stats());
    let mut children: Vec<Daemon> = (0..daemons)
        .map(|_| Daemon::start(bench.tayori(cfg)))
        .collect();
    let t = Instant::now();
    while bench.results_len() < jobs && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in &mut children {
        c.terminate(Duration::from_secs(3600));
    }
    let leases = time_calls(&bench.node_stats()).saturating_sub(before) as f64 / jobs as f64;
    let times = sent_times(bench);
    let n = times.len();
    let rate = (n.saturating_sub(1)) as f64 / ((times[n - 1] - times[0]) as f64 / 1000.0);
    // The most sends in any one second.
    let (mut peak, mut start) = (0, 0);
    for end in 0..n {
        while times[end] - times[start] >= 1000 {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    (rate, peak, leases)
}

fn main() {
    if !under_cargo_bench("shared_rate") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 100_000);
    let rate: usize = env_or("BENCH_RATE", 1000);
    let seconds: usize = env_or("BENCH_SECONDS", 15);
    let mut bench = Bench::start();
    let head = bench.config_head();

    // 1. Overhead of the shared limiter at a rate no daemon reaches.
    let mut overhead = Vec::new();
    for scope in ["global", "daemon", "global", "daemon"] {
        let cfg = bench.write_config(&format!("{head}{}", channel("10000000/s", scope)));
        let file = bench.write_jobs(jobs, &["line"], &format!("over-{scope}-{}", overhead.len()));
        bench.enqueue(&cfg, &file);
        let run = bench.drain(&cfg, jobs);
        println!(
            "rate_scope = {scope:<7} {jobs} jobs in {:.2} s: {:.0} jobs/s, peak RSS {:.1} MiB",
            run.secs,
            jobs as f64 / run.secs,
            run.peak_mib
        );
        overhead.push((scope, jobs as f64 / run.secs));
    }

    // 2. The configured rate, held by 1 and by 3 daemons together.
    let burst = (rate / 10).max(1);
    let cfg = bench.write_config(&format!(
        "{head}{}burst = {burst}\n",
        channel(&format!("{rate}/s"), "global")
    ));
    for daemons in [1, 3] {
        let (observed, peak, leases) = aggregate(&mut bench, &cfg, daemons, rate * seconds);
        println!(
            "{daemons} daemon(s)      configured {rate}/s (burst {burst}): observed {observed:.1}/s ({:+.2} %), most in one second {peak}, {leases:.3} leases/send",
            (observed / rate as f64 - 1.0) * 100.0
        );
        assert!(peak <= rate + burst, "never above rate + burst in a second");
    }
}
