//! LINE pushes: personalized jobs pushed to a local, fast HTTP endpoint that
//! answers like the Messaging API. Two runs: unlimited (pushes/s the daemon can
//! do) and rate-limited (how closely the configured rate holds).
//!
//! Each run's line gives CPU per job beside the rate and peak RSS: the daemon's
//! (its whole life, `wait4`; it is stopped only once its profile updater has read
//! every event, so that work counts too) and Redis's (`INFO cpu` around the
//! drain; the enqueue is not counted).
//!
//! `cargo bench --bench line_push`; knobs: `BENCH_JOBS` (20000), `BENCH_RATE`
//! (2000, pushes/s for the limited run), `BENCH_CONCURRENCY` (256).

mod support;

use std::time::Instant;

use support::{calls_per_job, cpu_per_job, env_or, under_cargo_bench, Bench};
use tayori_testkit::server::{response, FakeServer, Options};

/// A minimal Messaging API push endpoint: 200 with a request id, nothing else; it
/// keeps the arrival time of every push.
fn start_endpoint() -> FakeServer<Vec<Instant>> {
    let options = Options {
        body_limit: true,
        worker_threads: Some(1),
        ..Options::new("line-push")
    };
    FakeServer::start_with(options, Vec::new(), |arrivals, req| {
        if req.path() != "/v2/bot/message/push" || req.method != "POST" {
            return response(404, &[], "").into();
        }
        arrivals.push(req.at);
        let n = arrivals.len();
        response(
            200,
            &[
                ("content-type", "text/plain; charset=utf-8"),
                ("x-line-request-id", &format!("req-{n}")),
            ],
            "{\"sentMessages\":[]}",
        )
        .into()
    })
}

fn main() {
    if !under_cargo_bench("line_push") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 20_000);
    let rate: usize = env_or("BENCH_RATE", 2000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 256);
    let endpoint = start_endpoint();
    let port = endpoint.port();
    let mut bench = Bench::start();

    let head = bench.config_head();
    let config = |rate: &str, burst: usize| {
        format!(
            "{head}[channels.line]\napi_base = \"http://127.0.0.1:{port}\"\nchannel_access_token = \"bench\"\nrate = \"{rate}\"\nburst = {burst}\nconcurrency = {concurrency}\n"
        )
    };

    // 1. As fast as it goes.
    let cfg = bench.write_config(&config("1000000/s", 1000));
    let file = bench.write_jobs(jobs, &["line"], "fast");
    bench.enqueue(&cfg, &file);
    let calls_before = bench.node_stats();
    let (fast, fast_redis) = bench.drain_cpu(&cfg, jobs);
    let fast_calls = calls_per_job(&calls_before, &bench.node_stats(), jobs);
    let pushed = endpoint.state().len();

    // 2. Limited: the rate the endpoint sees, from first to last arrival.
    let limited_jobs = (rate * 5).min(jobs);
    endpoint.state().clear();
    let cfg = bench.write_config(&config(&format!("{rate}/s"), (rate / 100).max(1)));
    let file = bench.write_jobs(limited_jobs, &["line"], "limited");
    bench.enqueue(&cfg, &file);
    let calls_before = bench.node_stats();
    let (limited, limited_redis) = bench.drain_cpu(&cfg, limited_jobs);
    let limited_calls = calls_per_job(&calls_before, &bench.node_stats(), limited_jobs);
    let times = endpoint.state().clone();
    let observed = match (times.first(), times.last()) {
        (Some(a), Some(b)) if times.len() > 1 => {
            (times.len() - 1) as f64 / b.duration_since(*a).as_secs_f64()
        }
        _ => 0.0,
    };
    let sent = bench.count_sent();

    println!(
        "unlimited       {jobs} pushes in {:.2} s: {:.0} pushes/s end to end, {}, {fast_calls}, daemon peak RSS {:.1} MiB",
        fast.secs,
        jobs as f64 / fast.secs,
        cpu_per_job(&fast, fast_redis, jobs),
        fast.peak_mib
    );
    println!(
        "limited         {limited_jobs} pushes at rate {rate}/s: observed {observed:.0}/s ({:+.2} %), {}, {limited_calls}, peak RSS {:.1} MiB",
        (observed / rate as f64 - 1.0) * 100.0,
        cpu_per_job(&limited, limited_redis, limited_jobs),
        limited.peak_mib
    );
    assert_eq!(
        pushed, jobs,
        "the endpoint received every push of the first run"
    );
    assert_eq!(sent, jobs + limited_jobs, "every job has its sent event");
}
