//! End to end: N personalized jobs through a real redis-server and the release
//! `tayori` binary, drained through the null or file transport.
//!
//! `cargo bench --bench pipeline`, knobs by env: `BENCH_JOBS` (100000),
//! `BENCH_TRANSPORT` (null | file), `BENCH_CONCURRENCY` (512). Prints jobs/s end to
//! end (daemon start to the last event), the enqueue rate, and the daemon's peak RSS.

mod support;

use support::{env_or, under_cargo_bench, Bench};

fn main() {
    if !under_cargo_bench("pipeline") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 100_000);
    let transport: String = env_or("BENCH_TRANSPORT", "null".to_owned());
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 512);
    let mut bench = Bench::start();
    let channels = ["email", "line", "sms", "dm"];
    let mut config = bench.config_head();
    for ch in channels {
        config.push_str(&format!(
            "[channels.{ch}]\ntransport = \"{transport}\"\ndir = \"{}\"\nrate = \"1000000/s\"\nconcurrency = {concurrency}\n{}",
            bench.dir.path().join("outbox").join(ch).display(),
            if ch == "email" { "from = \"Example Shop <news@example.com>\"\n" } else { "" }
        ));
    }
    let cfg = bench.write_config(&config);
    let file = bench.write_jobs(jobs, &channels, "bench");
    let enqueue_secs = bench.enqueue(&cfg, &file);
    let drained = bench.drain(&cfg, jobs);
    let sent = bench.count_sent();

    println!("jobs            {jobs} ({transport} transport, concurrency {concurrency}/channel, 4 channels)");
    println!(
        "enqueue         {enqueue_secs:.2} s  ({:.0} jobs/s, tayori enqueue, pipelined XADD)",
        jobs as f64 / enqueue_secs
    );
    println!(
        "drain           {:.2} s  ({:.0} jobs/s end to end, {} events, {sent} sent)",
        drained.secs,
        jobs as f64 / drained.secs,
        drained.events
    );
    println!("daemon peak RSS {:.1} MiB", drained.peak_mib);
    assert_eq!(sent, jobs, "every job must have its sent event");
}
