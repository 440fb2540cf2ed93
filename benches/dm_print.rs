//! Direct mail into print batches: 100,000 DM jobs end to end (intake, rendering
//! the `dm.json` part, validation, Shift_JIS encoding, group-committed fsync,
//! batches closed to `ready/` with manifests), then every ready file is counted.
//!
//! Each run's line gives CPU per job beside the rate and peak RSS: the daemon's
//! (its whole life, `wait4`; it is stopped only once its profile updater has read
//! every event, so that work counts too) and Redis's (`INFO cpu` around the
//! drain; the enqueue is not counted).
//!
//! `cargo bench --bench dm_print`; knobs: `BENCH_JOBS` (100000),
//! `BENCH_CONCURRENCY` (256), `BENCH_ENCODING` (shift_jis), `BENCH_BATCH_ROWS` (5000).

mod support;

use support::{cpu_per_job, env_or, under_cargo_bench, Bench};

fn main() {
    if !under_cargo_bench("dm_print") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 100_000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 256);
    let encoding: String = env_or("BENCH_ENCODING", "shift_jis".to_owned());
    let batch_rows: usize = env_or("BENCH_BATCH_ROWS", 5000);
    let mut bench = Bench::start();
    let dir = bench.dir.path().join("dm");
    let cfg = bench.write_config(&format!(
        "{}[channels.dm]\ndir = \"{}\"\nencoding = \"{encoding}\"\nbatch_max_rows = {batch_rows}\nbatch_max_age = \"10m\"\nrate = \"1000000/s\"\nconcurrency = {concurrency}\n",
        bench.config_head(),
        dir.display()
    ));
    let file = bench.write_jobs(jobs, &["dm"], "dm");
    bench.enqueue(&cfg, &file);
    let (run, redis) = bench.drain_cpu(&cfg, jobs);
    let sent = bench.count_sent();

    // What the vendor would collect: every ready batch, its rows counted.
    let mut batches = 0;
    let mut rows = 0;
    for entry in std::fs::read_dir(dir.join("ready"))
        .expect("ready/")
        .flatten()
    {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some("csv") {
            let manifest = path.with_extension("manifest.json");
            assert!(manifest.exists(), "{} has its manifest", path.display());
            let bytes = std::fs::read(&path).expect("batch");
            rows += bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count()
                - 1;
            batches += 1;
        }
    }
    println!(
        "dm print        {jobs} rows ({encoding}, concurrency {concurrency}) in {:.2} s: {:.0} rows/s end to end, {batches} batches, {}, daemon peak RSS {:.1} MiB",
        run.secs,
        jobs as f64 / run.secs,
        cpu_per_job(&run, redis, jobs),
        run.peak_mib
    );
    assert_eq!(sent, jobs, "every job has its sent event");
    assert_eq!(rows, jobs, "every job is one row in a ready batch");
}
