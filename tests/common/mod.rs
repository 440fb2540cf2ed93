//! Test harness: a private `redis-server` per test on a free port, the real
//! `tayori` binary as a child process, and helpers to enqueue jobs and read
//! results. Nothing here is mocked. The redis-servers (standalone, TLS,
//! cluster), free ports and the daemon process come from the test kit
//! (`testkit/`, shared with the benchmarks); the test configs are made here.

#![allow(dead_code)]

pub mod sentinel;
pub mod smtp;

#[allow(unused_imports)] // not every test binary uses the cluster
pub use tayori_testkit::{cluster, tls};
pub use tayori_testkit::{free_port, Daemon, Redis};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A working directory with a config and outbox dirs for one daemon setup.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub http_port: u16,
}

/// The tracking secret of test configs (tests open tokens with it).
pub const TRACKING_SECRET: &str = "test-tracking-secret-0123456789abcdef";

/// A setup on `redis`: [`setup_with_redis`] with `url = "{redis.url()}"`.
pub fn setup(redis: &Redis, queue: &str, channels: &str) -> Setup {
    setup_with_redis(&format!("url = \"{}\"", redis.url()), queue, channels)
}

/// A setup whose config has `redis_section` as the body of `[redis]` (`prefix =
/// "t"` is added unless it sets a prefix), `queue` as extra lines of `[queue]`, and `channels` at the end
/// (the channels, e.g. [`ALL_FILE`], and any further tables), where `{outbox}`
/// stands for the setup dir's `outbox`: a channel `{outbox}/email` writes into
/// [`Setup::outbox`]`("email")`.
pub fn setup_with_redis(redis_section: &str, queue: &str, channels: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
    let out = dir.path().join("outbox");
    let channels = channels.replace("{outbox}", &out.display().to_string());
    let http_port = free_port();
    let prefix = if redis_section.contains("prefix =") {
        ""
    } else {
        "prefix = \"t\""
    };
    let text = format!(
        r#"
[redis]
{redis_section}
{prefix}

[http]
listen = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"
tracking_secret = "{TRACKING_SECRET}"
# Shorter than the defaults (10s, 30s) so the slow-client tests wait less; still far
# above what any test request takes.
header_read_timeout = "2s"
request_timeout = "5s"

[templates]
dir = "{templates}"

[queue]
poll_interval = "50ms"
block = "200ms"
{queue}

# SMS's default quiet hours (21:00-08:00 JST) would hold tests run in the evening.
[policy.quiet_hours]
sms = ""

{channels}
"#,
        templates = templates.display(),
        TRACKING_SECRET = TRACKING_SECRET,
    );
    let config = dir.path().join("tayori.toml");
    std::fs::write(&config, text).expect("write config");
    Setup {
        dir,
        config,
        http_port,
    }
}

/// File transports for all four channels.
pub const ALL_FILE: &str = r#"
[channels.email]
transport = "file"
dir = "{outbox}/email"
from = "Example Shop <news@example.com>"
rate = "100000/s"
concurrency = 64

[channels.line]
transport = "file"
dir = "{outbox}/line"
rate = "100000/s"
concurrency = 64

[channels.sms]
transport = "file"
dir = "{outbox}/sms"
rate = "100000/s"
concurrency = 64

[channels.dm]
transport = "file"
dir = "{outbox}/dm"
rate = "100000/s"
concurrency = 64
"#;

impl Setup {
    /// `tayori enqueue` of `jobs`, as a JSON Lines file in the setup's dir;
    /// asserts it exits 0.
    pub fn enqueue_cli(&self, jobs: &[Value]) {
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.path().join(format!("jobs-{n}.jsonl"));
        let text: Vec<String> = jobs.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n")).expect("write jobs");
        let out = self
            .tayori()
            .arg("enqueue")
            .arg(&path)
            .output()
            .expect("tayori enqueue");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }

    /// The events `tayori events` prints (every partition's), parsed.
    pub fn events_cli(&self, args: &[&str]) -> Vec<Value> {
        let out = self
            .tayori()
            .arg("events")
            .args(args)
            .output()
            .expect("tayori events");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    /// Edits the config file in place (a test's variant of the common setup).
    pub fn replace_config(self, from: &str, to: &str) -> Setup {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, text.replacen(from, to, 1)).expect("write config");
        self
    }

    pub fn outbox(&self, channel: &str) -> PathBuf {
        self.dir.path().join("outbox").join(channel)
    }

    /// Files in a channel's outbox (not counting temporaries).
    pub fn outbox_files(&self, channel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.outbox(channel))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn tayori(&self) -> Command {
        let mut c =
            tayori_testkit::daemon::tayori(Path::new(env!("CARGO_BIN_EXE_tayori")), &self.config);
        c.current_dir(self.dir.path());
        c
    }

    /// `tayori ARGS` with `stdin` as its standard input; stdout and stderr captured.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .tayori()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tayori");
        // A command that exits before reading all of it closes the pipe: not an error here.
        let _ = child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes());
        child.wait_with_output().expect("wait for tayori")
    }

    /// A plain HTTP/1.0 GET against the daemon: (status, body). `None` while it is not listening.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        self.request("GET", path, &[], b"")
    }

    /// A POST with extra headers and a raw body: (status, body).
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, String)> {
        self.request("POST", path, headers, body)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<(u16, String)> {
        http_request(self.http_port, method, path, headers, body)
    }

    /// Waits until the daemon answers HTTP and, if Redis is up, has connected to it
    /// (webhooks answer 503 until then; a test that keeps Redis away just waits the
    /// readiness part out).
    pub fn wait_http(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.get("/healthz").is_none() {
            assert!(
                Instant::now() < deadline,
                "the daemon's HTTP server never came up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let ready_by = Instant::now() + Duration::from_secs(5);
        while self.get("/readyz").map(|r| r.0) != Some(200) && Instant::now() < ready_by {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of a metric sample (exact name with labels), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        metric_at(self.http_port, sample)
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(self.tayori())
    }
}

/// A job for `channel` with the recipient fields every channel needs.
pub fn job(id: &str, channel: &str) -> Value {
    json!({
        "id": id,
        "campaign": "test",
        "customer_id": format!("C-{id}"),
        "channel": channel,
        "to": {
            "name": "山田 太郎",
            "email": "taro@example.com",
            "line_user_id": "U4af4980629a1b2c3d4e5f60718293a4b",
            "phone": "090-1234-5678",
            "postal": {"postal_code": "100-0001", "address1": "東京都千代田区千代田1-1", "name": "山田 太郎", "honorific": "様"}
        },
        "template": "spring_sale",
        "vars": {"points": 1200, "items": [{"name": "化粧水", "url": "https://shop.example.com/p/1"}]}
    })
}

/// XADDs raw `job` field values to `t:{0}:jobs:{channel}`, pipelined.
pub fn enqueue_raw(conn: &mut redis::Connection, channel: &str, jobs: &[String]) {
    for chunk in jobs.chunks(1000) {
        let mut pipe = redis::pipe();
        for j in chunk {
            pipe.cmd("XADD")
                .arg(format!("t:{{0}}:jobs:{channel}"))
                .arg("*")
                .arg("job")
                .arg(j)
                .ignore();
        }
        pipe.query::<()>(conn).expect("XADD");
    }
}

pub fn enqueue(conn: &mut redis::Connection, jobs: &[Value]) {
    let mut by_channel: HashMap<String, Vec<String>> = HashMap::new();
    for j in jobs {
        let ch = j["channel"].as_str().unwrap_or("email").to_owned();
        by_channel.entry(ch).or_default().push(j.to_string());
    }
    for (ch, raws) in by_channel {
        enqueue_raw(conn, &ch, &raws);
    }
}

/// Every entry of a stream: (id, fields).
pub fn xrange(conn: &mut redis::Connection, key: &str) -> Vec<(String, Vec<(String, String)>)> {
    redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query::<redis::Value>(conn)
        .ok()
        .and_then(|v| redis::from_redis_value(v).ok())
        .unwrap_or_default()
}

/// All events in `t:{0}:results`, in order.
pub fn events(conn: &mut redis::Connection) -> Vec<Value> {
    xrange(conn, "t:{0}:results")
        .into_iter()
        .filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == "event"))
        .filter_map(|(_, v)| serde_json::from_str(&v).ok())
        .collect()
}

pub const TERMINAL: [&str; 6] = [
    "sent",
    "failed",
    "suppressed",
    "expired",
    "duplicate",
    "cancelled",
];

/// Waits until `pred(events)` holds, returning the events; panics with them after `timeout`.
pub fn wait_for(
    conn: &mut redis::Connection,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let evs = events(conn);
        if pred(&evs) {
            return evs;
        }
        if Instant::now() > deadline {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for e in &evs {
                *counts
                    .entry(e["type"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            panic!("timed out waiting for {what}; events so far by type: {counts:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn count(evs: &[Value], kind: &str) -> usize {
    evs.iter().filter(|e| e["type"] == kind).count()
}

/// Terminal events per job id.
pub fn terminal_by_job(evs: &[Value]) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for e in evs {
        let t = e["type"].as_str().unwrap_or("");
        if TERMINAL.contains(&t) {
            if let Some(id) = e["job_id"].as_str() {
                m.entry(id.to_owned()).or_default().push(t.to_owned());
            }
        }
    }
    m
}

pub fn xlen(conn: &mut redis::Connection, key: &str) -> usize {
    redis::cmd("XLEN").arg(key).query(conn).unwrap_or(0)
}

/// An HTTP/1.x response as read off the socket: (status, headers with lowercase
/// names, body bytes). Panics when there is no complete head.
pub fn parse_response<H: FromIterator<(String, String)>>(raw: &[u8]) -> (u16, H, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

/// A plain HTTP/1.0 request to a daemon on `port`: (status, body). `None` while
/// it is not listening.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    // The server may answer (413) before reading a large body: a failed write is fine.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A sample's value on the daemon listening on `port` (`sample` is the series,
/// labels included); 0 when it is absent or the daemon does not answer.
pub fn metric_at(port: u16, sample: &str) -> f64 {
    let Some((_, body)) = http_request(port, "GET", "/metrics", &[], b"") else {
        return 0.0;
    };
    body.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}
