//! LINE pushes: personalized jobs pushed to a local, fast HTTP endpoint that
//! answers like the Messaging API. Two runs: unlimited (pushes/s the daemon can
//! do) and rate-limited (how closely the configured rate holds).
//!
//! `cargo bench --bench line_push`; knobs: `BENCH_JOBS` (20000), `BENCH_RATE`
//! (2000, pushes/s for the limited run), `BENCH_CONCURRENCY` (256).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use support::{env_or, free_port, under_cargo_bench, Bench};

/// Arrival times of pushes at the endpoint.
type Arrivals = Arc<Mutex<Vec<Instant>>>;

/// A minimal Messaging API push endpoint: 200 with a request id, nothing else.
fn start_endpoint(arrivals: Arrivals) -> u16 {
    let port = free_port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v2/bot/message/push",
                axum::routing::post(move |_h: HeaderMap, _b: axum::body::Bytes| {
                    let arrivals = arrivals.clone();
                    async move {
                        let n = {
                            let mut a = arrivals.lock().expect("lock");
                            a.push(Instant::now());
                            a.len()
                        };
                        (
                            [("x-line-request-id", format!("req-{n}"))],
                            "{\"sentMessages\":[]}",
                        )
                            .into_response()
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    port
}

fn main() {
    if !under_cargo_bench("line_push") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 20_000);
    let rate: usize = env_or("BENCH_RATE", 2000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 256);
    let arrivals: Arrivals = Arc::default();
    let port = start_endpoint(arrivals.clone());
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
    let fast = bench.drain(&cfg, jobs);
    let pushed = arrivals.lock().map(|a| a.len()).unwrap_or(0);

    // 2. Limited: the rate the endpoint sees, from first to last arrival.
    let limited_jobs = (rate * 5).min(jobs);
    arrivals.lock().expect("lock").clear();
    let cfg = bench.write_config(&config(&format!("{rate}/s"), (rate / 100).max(1)));
    let file = bench.write_jobs(limited_jobs, &["line"], "limited");
    bench.enqueue(&cfg, &file);
    let limited = bench.drain(&cfg, limited_jobs);
    let times = arrivals.lock().expect("lock").clone();
    let observed = match (times.first(), times.last()) {
        (Some(a), Some(b)) if times.len() > 1 => {
            (times.len() - 1) as f64 / b.duration_since(*a).as_secs_f64()
        }
        _ => 0.0,
    };
    let sent = bench.count_sent();

    println!("unlimited       {jobs} pushes in {:.2} s: {:.0} pushes/s end to end, daemon peak RSS {:.1} MiB", fast.secs, jobs as f64 / fast.secs, fast.peak_mib);
    println!(
        "limited         {limited_jobs} pushes at rate {rate}/s: observed {observed:.0}/s ({:+.2} %), peak RSS {:.1} MiB",
        (observed / rate as f64 - 1.0) * 100.0,
        limited.peak_mib
    );
    assert_eq!(
        pushed, jobs,
        "the endpoint received every push of the first run"
    );
    assert_eq!(sent, jobs + limited_jobs, "every job has its sent event");
}
