//! End-to-end throughput: N personalized jobs through a real redis-server and
//! the release `tayori` binary, drained through the null or file transport.
//!
//! `cargo bench --bench pipeline` (or `scripts/bench.sh`), knobs by env:
//! `BENCH_JOBS` (100000), `BENCH_TRANSPORT` (null | file), `BENCH_CONCURRENCY` (512).
//! Prints jobs/s end to end (first read to last event), enqueue rate, and the
//! daemon's peak RSS (VmHWM).

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pipeline benchmark: skipped (run it with `cargo bench --bench pipeline`)");
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 100_000);
    let transport: String = env_or("BENCH_TRANSPORT", "null".to_owned());
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 512);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/tayori");
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "tayori"])
        .current_dir(root)
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "cargo build --release failed"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (install it: apt-get install redis-server)");
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut conn = loop {
        if let Ok(c) = client.get_connection() {
            break c;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    let channels = ["email", "line", "sms", "dm"];
    let mut config = format!(
        "[redis]\nurl = \"{url}\"\nprefix = \"bench\"\n[http]\nlisten = \"\"\n[templates]\ndir = \"{}\"\n[queue]\npoll_interval = \"20ms\"\nread_batch = 512\n",
        root.join("config/templates").display()
    );
    for ch in channels {
        config.push_str(&format!(
            "[channels.{ch}]\ntransport = \"{transport}\"\ndir = \"{}\"\nrate = \"1000000/s\"\nconcurrency = {concurrency}\n{}",
            dir.path().join("outbox").join(ch).display(),
            if ch == "email" { "from = \"Example Shop <news@example.com>\"\n" } else { "" }
        ));
    }
    let cfg = dir.path().join("bench.toml");
    std::fs::write(&cfg, config).expect("config");

    // Personalized jobs: every one has its own name, points and items.
    let file = dir.path().join("jobs.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("jobs file"));
    for i in 0..jobs {
        let ch = channels[i % 4];
        let job = serde_json::json!({
            "id": format!("bench-{i}"), "campaign": "bench", "customer_id": format!("C{i}"), "channel": ch,
            "to": {"name": format!("顧客 {i}"), "email": format!("c{i}@example.com"), "line_user_id": format!("U{i:032x}"),
                   "phone": "090-1234-5678",
                   "postal": {"postal_code": "100-0001", "address1": "東京都千代田区千代田1-1", "name": format!("顧客 {i}"), "honorific": "様"}},
            "template": "spring_sale",
            "vars": {"points": i % 5000, "items": [{"name": "化粧水", "url": format!("https://shop.example.com/p/{}", i % 97)}]}
        });
        writeln!(out, "{job}").expect("write");
    }
    drop(out);

    let t = Instant::now();
    let status = Command::new(&bin)
        .arg("-c")
        .arg(&cfg)
        .arg("enqueue")
        .arg(&file)
        .stderr(Stdio::null())
        .status()
        .expect("enqueue");
    assert!(status.success(), "enqueue failed");
    let enqueue_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut daemon = Command::new(&bin)
        .arg("-c")
        .arg(&cfg)
        .args(["run"])
        .env("TAYORI_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("daemon");
    let status_path = format!("/proc/{}/status", daemon.id());
    let mut peak_kib = 0u64;
    let mut done;
    loop {
        done = redis::cmd("XLEN")
            .arg("bench:results")
            .query::<usize>(&mut conn)
            .unwrap_or(0);
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(v) = s.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak_kib = v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(peak_kib);
            }
        }
        if done >= jobs || t.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let drain_secs = t.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    let sent: usize = {
        let evs: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg("bench:results")
            .arg("-")
            .arg("+")
            .query::<redis::Value>(&mut conn)
            .ok()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or_default();
        evs.iter()
            .filter(|(_, f)| {
                f.iter()
                    .any(|(k, v)| k == "event" && v.contains("\"type\":\"sent\""))
            })
            .count()
    };
    let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut conn);
    let _ = redis.wait();

    println!("jobs            {jobs} ({transport} transport, concurrency {concurrency}/channel, 4 channels)");
    println!(
        "enqueue         {enqueue_secs:.2} s  ({:.0} jobs/s, tayori enqueue, pipelined XADD)",
        jobs as f64 / enqueue_secs
    );
    println!(
        "drain           {drain_secs:.2} s  ({:.0} jobs/s end to end, {done} events, {sent} sent)",
        jobs as f64 / drain_secs
    );
    println!("daemon peak RSS {:.1} MiB", peak_kib as f64 / 1024.0);
    assert_eq!(sent, jobs, "every job must have its sent event");
}
