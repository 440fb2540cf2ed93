//! Helpers of `tests/faults.rs` only: the four real peers of one run and their
//! `[channels.*]` sections, what each receiver got per job (to count duplicates),
//! the daemon's CPU time from `/proc`, and an incremental reader of `t:{0}:results`
//! (a run of 20,000 jobs has too many events to re-read on every poll).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::smtp::{python, SmtpPeer};
use crate::common::TERMINAL;
use tayori_testkit::line_api::LineApi;
use tayori_testkit::twilio_api::{self, TwilioApi};

pub const LINE_TOKEN: &str = "faults-channel-access-token";
pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "faults-auth-token";
pub const TWILIO_FROM: &str = "+15005550006";

/// A real SMTP server (aiosmtpd), the fake LINE API and the fake Twilio API.
pub struct Peers {
    pub smtp: SmtpPeer,
    pub line: LineApi,
    pub twilio: TwilioApi,
}

impl Peers {
    pub fn start() -> Peers {
        Peers {
            smtp: SmtpPeer::start(),
            line: LineApi::start(LINE_TOKEN),
            twilio: TwilioApi::start(TWILIO_SID, TWILIO_TOKEN),
        }
    }

    /// `[channels.email]` over SMTP to the peer, one pooled connection per slot.
    pub fn email(&self, rate: &str, concurrency: usize, timeout: &str) -> String {
        format!(
            r#"
[channels.email]
transport = "smtp"
from = "Example Shop <news@example.com>"
rate = "{rate}"
concurrency = {concurrency}

[channels.email.smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
pool_size = {concurrency}
timeout = "{timeout}"
"#,
            port = self.smtp.port
        )
    }

    /// `[channels.line]` on the fake Messaging API.
    pub fn line(&self, rate: &str, concurrency: usize, timeout: &str) -> String {
        format!(
            r#"
[channels.line]
api_base = "{base}"
channel_access_token = "{LINE_TOKEN}"
timeout = "{timeout}"
pause = "1s"
rate = "{rate}"
concurrency = {concurrency}
"#,
            base = self.line.base_url()
        )
    }

    /// `[channels.sms]` through the fake Twilio (status callbacks on, which is how a
    /// request names its job: `StatusCallback=…?job={id}`).
    pub fn sms(&self, rate: &str, concurrency: usize, timeout: &str) -> String {
        format!(
            r#"
[channels.sms]
provider = "twilio"
default_region = "JP"
rate = "{rate}"
concurrency = {concurrency}

[channels.sms.twilio]
api_base = "{base}"
account_sid = "{TWILIO_SID}"
auth_token = "{TWILIO_TOKEN}"
from = "{TWILIO_FROM}"
timeout = "{timeout}"
"#,
            base = self.twilio.base_url()
        )
    }

    /// Panics if a request to either fake API broke its spec.
    pub fn assert_no_violations(&self) {
        self.line.assert_no_violations();
        self.twilio.assert_no_violations();
    }
}

/// `[channels.dm]`: print batches (UTF-8) under the setup's outbox.
pub fn dm(rate: &str, concurrency: usize) -> String {
    format!(
        r#"
[channels.dm]
dir = "{{outbox}}/dm"
encoding = "utf-8"
batch_max_rows = 1000
batch_max_age = "1h"
rate = "{rate}"
concurrency = {concurrency}
"#
    )
}

/// How many copies of each job one receiver got.
#[derive(Debug, Default)]
pub struct Copies(pub HashMap<String, usize>);

impl Copies {
    /// Copies beyond the first, over all jobs.
    pub fn duplicates(&self) -> usize {
        self.0.values().map(|n| n.saturating_sub(1)).sum()
    }

    pub fn jobs(&self) -> HashSet<String> {
        self.0.keys().cloned().collect()
    }

    fn add(&mut self, job: String) {
        *self.0.entry(job).or_default() += 1;
    }
}

/// Messages the SMTP peer stored, per job (the Message-ID is `<{job id}@example.com>`).
pub fn smtp_copies(peer: &SmtpPeer) -> Copies {
    let mut c = Copies::default();
    for m in peer.messages() {
        let id = message_id(&m.raw).unwrap_or_else(|| {
            panic!(
                "a stored message without a Message-ID: {}",
                String::from_utf8_lossy(&m.raw)
            )
        });
        let job = id.split('@').next().unwrap_or_default().to_owned();
        c.add(job);
    }
    c
}

/// The Message-ID of a raw message, without the angle brackets.
fn message_id(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("message-id")
            .then(|| value.trim().trim_matches(['<', '>']).to_owned())
    })
}

/// What the fake LINE API did with the pushes of `job_ids`: deliveries (200) per
/// job, found by the job's `X-Line-Retry-Key`; and how many requests were 409
/// replays of a key already delivered (the duplicates LINE itself refused).
pub struct LineCopies {
    pub delivered: Copies,
    pub replays: usize,
    /// Requests answered 200 whose retry key belongs to none of the jobs.
    pub unknown_keys: usize,
}

pub fn line_copies<'a>(api: &LineApi, job_ids: impl IntoIterator<Item = &'a str>) -> LineCopies {
    let by_key: HashMap<String, &str> = job_ids
        .into_iter()
        .map(|id| {
            (
                tayori_channels::line::retry_key(&format!("{id}/line")).to_string(),
                id,
            )
        })
        .collect();
    let mut out = LineCopies {
        delivered: Copies::default(),
        replays: 0,
        unknown_keys: 0,
    };
    for r in api.requests() {
        match r.status {
            200 => match r.retry_key.as_deref().and_then(|k| by_key.get(k)) {
                Some(id) => out.delivered.add((*id).to_owned()),
                None => out.unknown_keys += 1,
            },
            409 => out.replays += 1,
            _ => {}
        }
    }
    out
}

/// Messages the fake Twilio created (201), per job (`StatusCallback=…?job={id}`).
pub fn sms_copies(api: &TwilioApi) -> Copies {
    let mut c = Copies::default();
    for r in api.messages() {
        let callback = r.field("StatusCallback").unwrap_or_else(|| {
            panic!("a message without StatusCallback: {:?}", r.form);
        });
        let query = callback.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let job = twilio_api::form_decode(query)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "job"))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no job in the StatusCallback {callback:?}"));
        c.add(job);
    }
    c
}

/// Rows per job in every print batch under `ready`, read back by
/// `tests/peers/dm_read.py` (which also checks each batch against its manifest).
pub fn dm_copies(ready: &Path) -> Copies {
    let mut c = Copies::default();
    if !ready.exists() {
        return c;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dm_read.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(ready)
        .output()
        .expect("run tests/peers/dm_read.py");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("dm_read.py: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        report["errors"],
        serde_json::json!([]),
        "the print vendor's reader found errors"
    );
    for batch in report["batches"].as_array().into_iter().flatten() {
        for row in batch["rows"].as_array().into_iter().flatten() {
            c.add(row["job_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    c
}

/// CPU time (user + system, all threads) the process has used so far, from
/// `/proc/{pid}/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e} (has the daemon exited?)"));
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// The daemon's CPU use over a wall-clock window.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub cpu: Duration,
    pub wall: Duration,
}

impl CpuUse {
    /// CPU time as a share of wall time (1.0 = one core busy all along).
    pub fn share(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} s CPU in {:.1} s ({:.1} % of one core)",
            self.cpu.as_secs_f64(),
            self.wall.as_secs_f64(),
            self.share() * 100.0
        )
    }
}

/// Sleeps `window`, returning how much CPU the process used meanwhile.
pub fn measure_cpu(pid: u32, window: Duration) -> CpuUse {
    let cpu0 = cpu_time(pid);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    CpuUse {
        cpu,
        wall: t0.elapsed(),
    }
}

/// Reads `t:{0}:results` incrementally: each poll fetches only the entries added since.
#[derive(Default)]
pub struct EventLog {
    last: Option<String>,
    pub events: Vec<Value>,
    terminal: usize,
}

impl EventLog {
    /// Fetches new events (`None` while Redis is away); returns how many arrived.
    pub fn poll(&mut self, conn: &mut redis::Connection) -> Option<usize> {
        let mut added = 0;
        loop {
            let start = match &self.last {
                Some(id) => format!("({id}"),
                None => "-".to_owned(),
            };
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg("t:{0}:results")
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(5000)
                .query(conn)
                .ok()?;
            let n = entries.len();
            for (id, fields) in entries {
                self.last = Some(id);
                let Some((_, raw)) = fields.into_iter().find(|(k, _)| k == "event") else {
                    continue;
                };
                let ev: Value = serde_json::from_str(&raw).expect("an event is JSON");
                if TERMINAL.contains(&ev["type"].as_str().unwrap_or_default()) {
                    self.terminal += 1;
                }
                self.events.push(ev);
            }
            added += n;
            if n < 5000 {
                return Some(added);
            }
        }
    }

    /// Terminal events (`sent`, `failed`, `suppressed`, `expired`, `duplicate`) so far.
    pub fn terminal(&self) -> usize {
        self.terminal
    }

    /// Polls until `pred` holds; panics after `timeout`, naming `what`.
    pub fn wait(
        &mut self,
        conn: &mut redis::Connection,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&EventLog) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll(conn);
            if pred(self) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}: {} events, {} terminal, by type {:?}",
                    self.events.len(),
                    self.terminal,
                    self.by_type()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Events per type.
    pub fn by_type(&self) -> HashMap<String, usize> {
        let mut m: HashMap<String, usize> = HashMap::new();
        for e in &self.events {
            *m.entry(e["type"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        m
    }

    /// Events of `kind`.
    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["type"] == kind)
    }

    /// Ids of the jobs with a `sent` event on `channel`.
    pub fn sent_on(&self, channel: &str) -> HashSet<String> {
        self.of_type("sent")
            .filter(|e| e["channel"] == channel)
            .filter_map(|e| e["job_id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// A small deterministic generator: the test's "random" moments, reproducible from
/// the seed it prints.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn from_clock() -> Lcg {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Lcg(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Entries read by the group but not finished, over the four job streams.
pub fn pending(conn: &mut redis::Connection) -> u64 {
    ["email", "line", "sms", "dm"]
        .iter()
        .map(|ch| {
            redis::cmd("XPENDING")
                .arg(format!("t:{{0}}:jobs:{ch}"))
                .arg("tayori")
                .query::<(
                    u64,
                    Option<String>,
                    Option<String>,
                    Option<Vec<(String, String)>>,
                )>(conn)
                .map(|p| p.0)
                .unwrap_or(0)
        })
        .sum()
}

/// Entries left in the four job streams (deleted once finished) plus the delayed set.
pub fn queued(conn: &mut redis::Connection) -> usize {
    let streams: usize = ["email", "line", "sms", "dm"]
        .iter()
        .map(|ch| crate::common::xlen(conn, &format!("t:{{0}}:jobs:{ch}")))
        .sum();
    let delayed: usize = redis::cmd("ZCARD")
        .arg("t:{0}:delayed")
        .query(conn)
        .unwrap_or(0);
    streams + delayed
}

/// Polls `cond` every 50 ms until it holds; panics after `timeout`, naming `what`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
