//! The CRM's ways in, measured: `tayori check-jobs` (CPU per job checked against
//! the live config: render, tracking, the channel's encoder) and `POST /v1/jobs`
//! (jobs/s accepted over one connection in batches of 1,000, with the checks and
//! the idempotent add, while the same daemon sends them through the null email
//! transport), with the daemon's and Redis's CPU per job.
//!
//! `cargo bench --bench enqueue_api`; knobs: `BENCH_JOBS` (20000), `BENCH_BATCH` (1000).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{env_or, under_cargo_bench, Bench};
use tayori_testkit::daemon::Daemon;

/// `tayori api-key`'s key and its config line.
fn api_key(bench: &Bench, cfg: &std::path::Path) -> (String, String) {
    let out = bench
        .tayori(cfg)
        .arg("api-key")
        .output()
        .expect("tayori api-key");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("a key line")
        .trim()
        .to_owned();
    let hash = text
        .lines()
        .find_map(|l| l.split_once("keys = ").map(|(_, v)| v.trim().to_owned()))
        .expect("a keys line");
    (key, hash)
}

/// One HTTP/1.1 request on a kept-alive connection; the answer's status and body.
fn post(conn: &mut BufReader<TcpStream>, key: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let stream = conn.get_mut();
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body).expect("write");
    let mut status_line = String::new();
    conn.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).expect("header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut answer = vec![0; length];
    conn.read_exact(&mut answer).expect("body");
    (status, answer)
}

fn main() {
    if !under_cargo_bench("enqueue_api") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 20_000);
    let batch: usize = env_or("BENCH_BATCH", 1000);
    let mut bench = Bench::start();
    let port = tayori_testkit::redis_server::free_port();
    let email = "[channels.email]\ntransport = \"null\"\nfrom = \"Example Shop <news@example.com>\"\nrate = \"1000000/s\"\nconcurrency = 256\n";
    let head = bench
        .config_head()
        .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""));
    let cfg = bench.write_config(&format!("{head}{email}"));
    let (key, hash) = api_key(&bench, &cfg);
    let cfg = bench.write_config(&format!("{head}{email}[http.api]\nkeys = {hash}\n"));
    let file = bench.write_jobs(jobs, &["email"], "api");
    let text = std::fs::read_to_string(&file).expect("jobs");

    // check-jobs: the checks alone, in one process.
    let t = Instant::now();
    let child = bench
        .tayori(&cfg)
        .arg("check-jobs")
        .arg(&file)
        .stdout(Stdio::null())
        .spawn()
        .expect("check-jobs");
    let (check_cpu_us, check_rss_kib) = Daemon::new(child).wait_with_usage();
    let check_secs = t.elapsed().as_secs_f64();
    println!(
        "check-jobs      {jobs} jobs in {check_secs:.2} s: {:.1} µs CPU per job, peak RSS {:.1} MiB",
        check_cpu_us / jobs as f64,
        check_rss_kib as f64 / 1024.0
    );

    // POST /v1/jobs to a running daemon that also sends them.
    let redis_before = bench.node_stats();
    let results_before = bench.results_len();
    let daemon = Daemon::start(bench.tayori(&cfg));
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the daemon's HTTP server: {e}"),
        }
    };
    let mut conn = BufReader::new(stream);
    let lines: Vec<&str> = text.lines().collect();
    let t = Instant::now();
    let mut enqueued = 0;
    for chunk in lines.chunks(batch) {
        let (status, answer) = post(&mut conn, &key, chunk.join("\n").as_bytes());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON answer");
        enqueued += answer["results"]
            .as_array()
            .map(|r| r.iter().filter(|x| x["status"] == "enqueued").count())
            .unwrap_or(0);
    }
    let post_secs = t.elapsed().as_secs_f64();
    while bench.results_len() < results_before + jobs && t.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let all_secs = t.elapsed().as_secs_f64();
    daemon.sigterm();
    let (daemon_cpu_us, daemon_rss_kib) = daemon.wait_with_usage();
    let redis_after = bench.node_stats();
    let redis_cpu_us: f64 = redis_before
        .iter()
        .zip(&redis_after)
        .map(|(a, b)| b.cpu_us - a.cpu_us)
        .sum();
    let sent = bench.count_sent();
    println!(
        "POST /v1/jobs   {jobs} jobs in batches of {batch}: accepted in {post_secs:.2} s ({:.0} jobs/s), all sent after {all_secs:.2} s; \
         daemon {:.1} µs CPU per job (checks, intake and the send), Redis {:.1} µs per job, daemon peak RSS {:.1} MiB",
        jobs as f64 / post_secs,
        daemon_cpu_us / jobs as f64,
        redis_cpu_us / jobs as f64,
        daemon_rss_kib as f64 / 1024.0
    );
    assert_eq!(enqueued, jobs, "every job accepted");
    assert_eq!(sent, jobs, "every job has its sent event");
}
