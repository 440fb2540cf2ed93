//! Several daemons on one Redis: a channel's rate holds for all of them together,
//! a pause set by one stops them all, a throttled email domain holds back only its
//! own mail, and a daemon killed with `kill -9` loses nothing. Each daemon is its
//! own process with its own HTTP port.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

/// A daemon process on the setup's config, with its own HTTP port (SIGKILLed on drop).
struct Peer {
    daemon: Daemon,
    port: u16,
}

impl Peer {
    fn start(s: &Setup, n: usize) -> Peer {
        let text = std::fs::read_to_string(&s.config).expect("config");
        let port = free_port();
        let text = text.replace(
            &format!("listen = \"127.0.0.1:{}\"", s.http_port),
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        let path = s.config.with_file_name(format!("tayori-{n}.toml"));
        std::fs::write(&path, text).expect("write config");
        let tayori = tayori_testkit::daemon::tayori(Path::new(env!("CARGO_BIN_EXE_tayori")), &path);
        Peer {
            daemon: Daemon::start(tayori),
            port,
        }
    }

    /// `tayori_messages_total{channel,outcome="sent"}` as this daemon counts it.
    fn sent(&self, channel: &str) -> f64 {
        let sample = format!("tayori_messages_total{{channel=\"{channel}\",outcome=\"sent\"}}");
        metric_at(self.port, &sample)
    }

    fn kill9(&mut self) {
        self.daemon.kill9();
    }
}

/// Milliseconds of each `sent` event on `channel`, sorted.
fn sent_times(evs: &[Value], channel: &str) -> Vec<i64> {
    let mut t: Vec<i64> = evs
        .iter()
        .filter(|e| e["type"] == "sent" && e["channel"] == channel)
        .filter_map(|e| e["at"].as_str())
        .filter_map(|at| at.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .collect();
    t.sort_unstable();
    t
}

/// The most sends in any window of `window_ms`.
fn max_in_window(times: &[i64], window_ms: i64) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[test]
fn three_daemons_together_hold_one_channel_rate_within_5_percent() {
    let redis = Redis::start();
    let s = setup(
        &redis,
        "",
        r#"
[channels.sms]
transport = "file"
dir = "{outbox}/sms"
rate = "50/s"
burst = 5
concurrency = 16
"#,
    );
    let mut conn = redis.conn();
    let n = 1100;
    let jobs: Vec<Value> = (0..n).map(|i| job(&format!("r{i}"), "sms")).collect();
    enqueue(&mut conn, &jobs);
    let peers: Vec<Peer> = (0..3).map(|i| Peer::start(&s, i)).collect();
    let evs = wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") == n);

    let times = sent_times(&evs, "sms");
    assert_eq!(times.len(), n);
    // Over the run (about 22 s), the aggregate rate is the configured 50/s.
    let span_s = (times[n - 1] - times[0]) as f64 / 1000.0;
    let rate = (n - 1) as f64 / span_s;
    assert!(span_s > 20.0, "a run of over 20 s: {span_s:.1} s");
    assert!(
        (rate - 50.0).abs() <= 2.5,
        "aggregate {rate:.2}/s over {span_s:.1} s, configured 50/s"
    );
    // And never more than the rate plus the burst in any second, give or take
    // one send: the times are those of the `sent` events, written after the
    // permit, and on a loaded machine one event lagging its permit by a few
    // ms (at 50/s a send is 20 ms) moves it into the next window (seen once in
    // CI: 56).
    let peak = max_in_window(&times, 1000);
    assert!(peak <= 50 + 5 + 1, "{peak} sends within one second");
    // Every daemon took part: the limit is shared, not held by one of them.
    let per_daemon: Vec<f64> = peers.iter().map(|p| p.sent("sms")).collect();
    assert!(
        per_daemon.iter().all(|&x| x >= 100.0),
        "each daemon sent a share: {per_daemon:?}"
    );
    assert_eq!(per_daemon.iter().sum::<f64>() as usize, n);
}

/// Calls per command so far (`INFO commandstats`; commands a script runs count too).
fn command_calls(conn: &mut redis::Connection) -> HashMap<String, u64> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO");
    text.lines()
        .filter_map(|l| {
            let (name, stats) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

#[test]
fn two_daemons_hold_the_rate_with_one_lease_per_many_sends() {
    let redis = Redis::start();
    let (rate, burst) = (500, 10);
    let s = setup(
        &redis,
        "",
        &format!(
            r#"
[channels.sms]
transport = "file"
dir = "{{outbox}}/sms"
rate = "{rate}/s"
burst = {burst}
concurrency = 64

[profiles]
enabled = false
"#
        ),
    );
    let mut conn = redis.conn();
    let n = 1500;
    let jobs: Vec<Value> = (0..n).map(|i| job(&format!("l{i}"), "sms")).collect();
    enqueue(&mut conn, &jobs);
    let before = command_calls(&mut conn);
    let peers: Vec<Peer> = (0..2).map(|i| Peer::start(&s, i)).collect();
    let evs = wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") == n);
    let after = command_calls(&mut conn);
    let calls =
        |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);

    let times = sent_times(&evs, "sms");
    assert_eq!(times.len(), n);
    // Never more than the rate plus the burst in any second (give or take one
    // send, as above: event times lag their permits), nor faster overall.
    let peak = max_in_window(&times, 1000);
    assert!(peak <= rate + burst + 1, "{peak} sends within one second");
    let span_s = (times[n - 1] - times[0]) as f64 / 1000.0;
    assert!(
        span_s >= (n - burst - 1) as f64 / rate as f64,
        "{n} sends in {span_s:.2} s at {rate}/s"
    );
    let per_daemon: Vec<f64> = peers.iter().map(|p| p.sent("sms")).collect();
    assert!(
        per_daemon.iter().all(|&x| x >= (n / 10) as f64),
        "each daemon sent a share: {per_daemon:?}"
    );
    // One lease serves about 20 ms of sends (10 at 500/s), for both daemons
    // together. A lease is one call of the lease script, which calls TIME once;
    // so does each dedupe claim script, which here (every job new) also calls
    // HINCRBYFLOAT once: leases are the difference. (EVALSHA counts the
    // completions' script too.) Measured 0.11–0.15; before leases carried due
    // times, 0.7–1.3 per send.
    let leases = calls("time").saturating_sub(calls("hincrbyfloat")) as f64 / n as f64;
    assert!(leases <= 0.2, "{leases:.3} leases per send");
    // Jobs waiting for permits fill most slots: reads come in batches, not one
    // per freed slot (measured 0.06; 0.68 per job before). Profiles are off: their
    // updater reads the results stream with XREADGROUP too.
    let reads = calls("xreadgroup") as f64 / n as f64;
    println!(
        "{peak} sends in the busiest second, {leases:.3} leases and {reads:.3} reads per send"
    );
    assert!(reads <= 0.25, "{reads:.3} reads per send");
}

#[test]
fn a_pause_set_by_one_daemon_holds_every_daemon_until_it_expires() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    // As a daemon records it when LINE refuses its token or answers 429 with Retry-After.
    let _: () = redis::cmd("SET")
        .arg("t:{rate:line}:paused")
        .arg("line_429")
        .arg("PX")
        .arg(2500)
        .query(&mut conn)
        .unwrap();
    let paused_at = Instant::now();
    enqueue(&mut conn, &[job("p1", "line"), job("p2", "email")]);
    let _peers: Vec<Peer> = (0..2).map(|i| Peer::start(&s, i)).collect();
    let evs = wait_for(&mut conn, WAIT, "email sent, line deferred", |e| {
        count(e, "sent") == 1 && count(e, "deferred") >= 1
    });
    assert!(paused_at.elapsed() < Duration::from_millis(2500));
    let deferred = evs.iter().find(|e| e["type"] == "deferred").unwrap();
    assert_eq!(deferred["job_id"], "p1");
    assert_eq!(deferred["error"]["code"], "line_429", "{deferred}");
    assert!(
        s.outbox_files("line").is_empty(),
        "nothing sent while paused"
    );
    let evs = wait_for(&mut conn, WAIT, "line sent after the pause", |e| {
        count(e, "sent") == 2
    });
    assert!(
        paused_at.elapsed() >= Duration::from_millis(2400),
        "not before the pause expired: {:?}",
        paused_at.elapsed()
    );
    assert_eq!(s.outbox_files("line").len(), 1);
    let sent: Vec<&Value> = evs.iter().filter(|e| e["type"] == "sent").collect();
    assert_eq!(sent.len(), 2);
}

#[test]
fn a_throttled_email_domain_holds_back_only_its_own_mail() {
    let redis = Redis::start();
    let s = setup(
        &redis,
        "",
        r#"
[channels.email]
transport = "file"
dir = "{outbox}/email"
from = "Example Shop <news@example.com>"
rate = "100000/s"
concurrency = 8

[channels.email.domain_rates]
"docomo.ne.jp" = "4/s"
"#,
    );
    let mut conn = redis.conn();
    let mut jobs: Vec<Value> = (0..40)
        .map(|i| {
            let mut j = job(&format!("docomo-{i}"), "email");
            j["to"]["email"] = json!(format!("user{i}@DoCoMo.ne.jp"));
            j
        })
        .collect();
    jobs.extend((0..400).map(|i| {
        let mut j = job(&format!("other-{i}"), "email");
        j["to"]["email"] = json!(format!("user{i}@example.com"));
        j
    }));
    // Carrier mail first in the stream: it must not hold the 8 worker slots.
    enqueue(&mut conn, &jobs);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") == 440);

    let at = |e: &Value| {
        e["at"]
            .as_str()
            .and_then(|a| a.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond())
            .unwrap()
    };
    let sent_at: HashMap<&str, i64> = evs
        .iter()
        .filter(|e| e["type"] == "sent")
        .map(|e| (e["job_id"].as_str().unwrap(), at(e)))
        .collect();
    let last_other = (0..400)
        .map(|i| sent_at[format!("other-{i}").as_str()])
        .max()
        .unwrap();
    let mut docomo: Vec<i64> = (0..40)
        .map(|i| sent_at[format!("docomo-{i}").as_str()])
        .collect();
    docomo.sort_unstable();
    // 40 at 4/s take about 10 s; the other 400 are not held up behind them.
    assert!(
        last_other < docomo[20],
        "other domains finished before half the carrier mail: {last_other} vs {}",
        docomo[20]
    );
    let span_s = (docomo[39] - docomo[0]) as f64 / 1000.0;
    assert!(
        span_s >= 8.0,
        "docomo.ne.jp kept to 4/s: 40 in {span_s:.1} s"
    );
    assert!(max_in_window(&docomo, 1000) <= 4 + 1, "{docomo:?}");
    // Put aside with a reserved slot: one `deferred` each at most, each sent once.
    let deferred: Vec<&Value> = evs.iter().filter(|e| e["type"] == "deferred").collect();
    assert!(!deferred.is_empty());
    let mut per_job: HashMap<&str, usize> = HashMap::new();
    for d in &deferred {
        assert_eq!(d["error"]["code"], "domain_throttled", "{d}");
        assert!(d["job_id"].as_str().unwrap().starts_with("docomo-"), "{d}");
        *per_job.entry(d["job_id"].as_str().unwrap()).or_default() += 1;
    }
    assert!(
        per_job.values().all(|&n| n == 1),
        "a reserved slot is kept: {per_job:?}"
    );
    let by_job = terminal_by_job(&evs);
    assert!(by_job.values().all(|v| v == &["sent"]), "{by_job:?}");
    assert_eq!(s.outbox_files("email").len(), 440);
}

#[test]
fn killing_one_daemon_of_three_loses_nothing_and_doubles_nothing() {
    let redis = Redis::start();
    let s = setup(&redis, "reclaim_idle = \"1s\"", ALL_FILE);
    let mut conn = redis.conn();
    let n = 3000;
    let jobs: Vec<Value> = (0..n)
        .map(|i| job(&format!("k{i}"), ["email", "line", "sms"][i % 3]))
        .collect();
    enqueue(&mut conn, &jobs);
    let mut peers: Vec<Peer> = (0..3).map(|i| Peer::start(&s, i)).collect();
    wait_for(&mut conn, WAIT, "a first share", |e| {
        count(e, "sent") >= 300
    });
    peers[1].kill9();
    let evs = wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") >= n);
    let by_job = terminal_by_job(&evs);
    let ids: HashSet<String> = (0..n).map(|i| format!("k{i}")).collect();
    assert_eq!(by_job.len(), n);
    assert!(ids.iter().all(|id| by_job[id] == ["sent"]), "one sent each");
    let files =
        s.outbox_files("email").len() + s.outbox_files("line").len() + s.outbox_files("sms").len();
    assert_eq!(files, n);
}
