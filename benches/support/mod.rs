//! What the benchmarks share: a release build, a private redis-server, personalized
//! jobs, and a drain measured end to end with the daemon's peak RSS.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// `cargo bench` passes --bench; `cargo test --all-targets` runs bench binaries without it.
pub fn under_cargo_bench(name: &str) -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        println!("{name} benchmark: skipped (run it with `cargo bench --bench {name}`)");
    }
    yes
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

pub struct Bench {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub bin: PathBuf,
    pub url: String,
    pub conn: redis::Connection,
    redis: Child,
}

pub struct Drained {
    pub secs: f64,
    pub events: usize,
    pub peak_mib: f64,
}

impl Bench {
    pub fn start() -> Bench {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let status = Command::new("cargo")
            .args(["build", "--release", "--quiet", "--bin", "tayori"])
            .current_dir(&root)
            .status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "cargo build --release failed"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let redis = Command::new("redis-server")
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
        let conn = loop {
            if let Ok(c) = client.get_connection() {
                break c;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Bench {
            bin: root.join("target/release/tayori"),
            root,
            dir,
            url,
            conn,
            redis,
        }
    }

    /// The config sections every benchmark shares; channels are appended.
    pub fn config_head(&self) -> String {
        format!(
            "[redis]\nurl = \"{}\"\nprefix = \"bench\"\n[http]\nlisten = \"\"\ntracking_secret = \"bench-tracking-secret-0123456789\"\n[templates]\ndir = \"{}\"\n[policy.quiet_hours]\nsms = \"\"\n[queue]\npoll_interval = \"20ms\"\nread_batch = 512\n",
            self.url,
            self.root.join("config/templates").display()
        )
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let cfg = self.dir.path().join("bench.toml");
        std::fs::write(&cfg, text).expect("config");
        cfg
    }

    /// `n` jobs round-robin over `channels`, each with its own name, points and links.
    pub fn write_jobs(&self, n: usize, channels: &[&str], tag: &str) -> PathBuf {
        let file = self.dir.path().join(format!("{tag}.jsonl"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("jobs file"));
        for i in 0..n {
            let job = serde_json::json!({
                "id": format!("{tag}-{i}"), "campaign": "bench", "customer_id": format!("C{i}"), "channel": channels[i % channels.len()],
                "to": {"name": format!("顧客 {i}"), "email": format!("c{i}@example.com"), "line_user_id": format!("U{i:032x}"),
                       "phone": "090-1234-5678",
                       "postal": {"postal_code": "100-0001", "address1": "東京都千代田区千代田1-1", "name": format!("顧客 {i}"), "honorific": "様"}},
                "template": "spring_sale",
                "vars": {"points": i % 5000, "items": [{"name": "化粧水", "url": format!("https://shop.example.com/p/{}", i % 97)}]}
            });
            writeln!(out, "{job}").expect("write");
        }
        file
    }

    /// Runs `tayori enqueue`; returns its wall time.
    pub fn enqueue(&self, cfg: &Path, file: &Path) -> f64 {
        let t = Instant::now();
        let status = Command::new(&self.bin)
            .arg("-c")
            .arg(cfg)
            .arg("enqueue")
            .arg(file)
            .stderr(Stdio::null())
            .status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "enqueue failed"
        );
        t.elapsed().as_secs_f64()
    }

    /// Starts the daemon and waits until the results stream has `events` more entries.
    pub fn drain(&mut self, cfg: &Path, events: usize) -> Drained {
        let before = self.results_len();
        let t = Instant::now();
        let mut daemon = Command::new(&self.bin)
            .arg("-c")
            .arg(cfg)
            .arg("run")
            .env("TAYORI_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("daemon");
        let status_path = format!("/proc/{}/status", daemon.id());
        let mut peak_kib = 0u64;
        let mut done;
        loop {
            done = self.results_len() - before;
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
            if done >= events || t.elapsed() > Duration::from_secs(600) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let secs = t.elapsed().as_secs_f64();
        let _ = Command::new("kill")
            .args(["-TERM", &daemon.id().to_string()])
            .status();
        let _ = daemon.wait();
        Drained {
            secs,
            events: done,
            peak_mib: peak_kib as f64 / 1024.0,
        }
    }

    pub fn results_len(&mut self) -> usize {
        redis::cmd("XLEN")
            .arg("bench:{0}:results")
            .query::<usize>(&mut self.conn)
            .unwrap_or(0)
    }

    /// `sent` events in the results stream.
    pub fn count_sent(&mut self) -> usize {
        let evs: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg("bench:{0}:results")
            .arg("-")
            .arg("+")
            .query::<redis::Value>(&mut self.conn)
            .ok()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or_default();
        evs.iter()
            .filter(|(_, f)| {
                f.iter()
                    .any(|(k, v)| k == "event" && v.contains("\"type\":\"sent\""))
            })
            .count()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = redis::cmd("SHUTDOWN")
            .arg("NOSAVE")
            .query::<()>(&mut self.conn);
        let _ = self.redis.wait();
    }
}
