//! What operators watch: every metric the shipped dashboard and alerts read is
//! in the first scrape after a start (before any job), the log written to a
//! file has no colour codes, and the lag gauges (results consumer groups, the
//! oldest pending job, due delayed jobs) follow what is in Redis, over two
//! partitions and on a Redis Cluster.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::RedisCluster;
use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// Every `tayori_…` name in the shipped Grafana dashboards and alerting rules.
fn names_in_deploy_files() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files = vec![root.join("prometheus/alerts.yml")];
    for entry in std::fs::read_dir(root.join("grafana")).expect("deploy/grafana") {
        let path = entry.expect("a dashboard file").path();
        if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    let mut names = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a deploy file");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("tayori_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            // `tayori_` inside a longer word (a datasource uid, say) is no metric.
            let starts_word = rest[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            if starts_word {
                names.insert(tail[..end].trim_end_matches('_').to_owned());
            }
            rest = &tail[end..];
        }
    }
    assert!(names.len() > 10, "found only {names:?} in {files:?}");
    names
}

/// The `op` label values of `tayori_redis_errors_total` in src/: literal ones at
/// the counter, and the steps `until_redis_answers` counts under their name.
fn redis_error_ops_in_source() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("src dir") {
            let path = entry.expect("a src entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(std::fs::read_to_string(&path).expect("read a source file"));
            }
        }
    }
    let mut sources = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let literal_after = |text: &str, marker: &str| -> Vec<String> {
        text.match_indices(marker)
            .filter_map(|(at, _)| {
                let rest = text[at + marker.len()..].trim_start();
                let rest = rest.strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_owned())
            })
            .collect()
    };
    let mut ops = BTreeSet::new();
    for text in &sources {
        ops.extend(literal_after(text, "REDIS_ERRORS, \"op\" =>"));
        ops.extend(literal_after(text, "until_redis_answers(self.kind,"));
    }
    assert!(ops.len() >= 10, "found only {ops:?}");
    ops
}

/// The scrape, once housekeeping has sampled Redis (it sets `tayori_redis_up`
/// last in its round) and `ready(body)` holds.
fn scrape_when(s: &Setup, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = s.get("/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        if body.lines().any(|l| l == "tayori_redis_up 1") && ready(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample line `series` (name and labels exactly as rendered).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[test]
fn the_first_scrape_has_every_metric_the_dashboard_and_alerts_read_and_the_log_no_colour() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    // A CRM's reader of the results stream, as the README sets one up.
    let mut conn = redis.conn();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("t:{0}:results")
        .arg("crm")
        .arg("$")
        .arg("MKSTREAM")
        .query(&mut conn)
        .expect("XGROUP CREATE");
    let mut cmd = s.tayori();
    // Info lines too, so the log has the levels and fields colour would mark.
    cmd.env("TAYORI_LOG", "info").env_remove("NO_COLOR");
    let d = Daemon::start(cmd);
    s.wait_http();
    let body = scrape_when(&s, "sampled Redis", |_| true);

    let mut missing = Vec::new();
    for name in names_in_deploy_files() {
        let histogram = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix));
        let present = match histogram {
            // A histogram renders once its series is registered (a worker
            // registers its channel's at start), with zero counts: no fake
            // observation needed.
            Some(family) => {
                body.contains(&format!("# TYPE {family} histogram\n"))
                    && body.contains(&format!("{name}{{"))
            }
            None => body.lines().any(|l| {
                l.strip_prefix(&name)
                    .is_some_and(|r| r.starts_with(['{', ' ']))
            }),
        };
        if !present {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "read by deploy/grafana or deploy/prometheus/alerts.yml but not in the first scrape: {missing:?}\n{body}"
    );
    // Registered at 0, not merely present: the first increment is a step.
    for series in [
        r#"tayori_channel_paused{channel="sms"}"#,
        r#"tayori_retries_total{channel="line",class="transient"}"#,
        r#"tayori_reclaimed_total{channel="dm"}"#,
        r#"tayori_redis_errors_total{op="finish"}"#,
        r#"tayori_rate_limit_waits_total{channel="email"}"#,
        r#"tayori_webhook_events_total{source="line",type="follow"}"#,
        r#"tayori_results_group_lag{group="crm"}"#,
    ] {
        assert_eq!(sample(&body, series), Some(0.0), "{series}:\n{body}");
    }

    // Every Redis operation whose failures are counted, as the source names it.
    for op in redis_error_ops_in_source() {
        let series = format!("tayori_redis_errors_total{{op=\"{op}\"}}");
        assert_eq!(sample(&body, &series), Some(0.0), "{series}:\n{body}");
    }

    // The log goes to a file here (the test kit's), not a terminal: plain text.
    let log = d.log_tail(100_000);
    assert!(
        log.contains("HTTP server up"),
        "the daemon logged nothing at info:\n{log}"
    );
    assert!(
        !log.contains('\x1b'),
        "escape codes in a log written to a file:\n{log:?}"
    );
}

/// Runs `args` as one command on `conn`.
fn cmd(conn: &mut redis::Connection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<redis::Value>(conn)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The queue config of the lag tests: the job a stopped daemon holds is not taken
/// over during the test.
const LAG_QUEUE: &str = "reclaim_idle = \"1h\"";
const EMAIL_ONLY: &str = r#"
[channels.email]
transport = "file"
dir = "{outbox}/email"
from = "Example Shop <news@example.com>"
"#;

/// The lag gauges against what is in Redis, on `partitions` partitions (prefix
/// `t`), where `conn(key)` is a connection to the server holding `key`.
fn lag_gauges_follow_redis(s: &Setup, partitions: usize, conn: &dyn Fn(&str) -> redis::Connection) {
    let key = |p: usize, rest: &str| format!("t:{{{p}}}:{rest}");
    let run = |k: &str, args: &[&str]| cmd(&mut conn(k), args);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    // Two CRM readers: `crm` on every partition, `audit` on partition 0 only.
    for p in 0..partitions {
        let results = key(p, "results");
        run(
            &results,
            &["XGROUP", "CREATE", &results, "crm", "$", "MKSTREAM"],
        );
    }
    let results0 = key(0, "results");
    run(&results0, &["XGROUP", "CREATE", &results0, "audit", "$"]);
    // A job read ten minutes ago by a daemon that has since stopped, on the last partition.
    let last = partitions - 1;
    let stream = key(last, "jobs:email");
    let old_id = format!("{}-0", now_ms - 600_000);
    let ghost_job = job("mon-ghost", "email").to_string();
    run(&stream, &["XADD", &stream, &old_id, "job", &ghost_job]);
    run(&stream, &["XGROUP", "CREATE", &stream, "tayori", "0"]);
    run(
        &stream,
        &[
            "XREADGROUP",
            "GROUP",
            "tayori",
            "ghost",
            "COUNT",
            "1",
            "STREAMS",
            &stream,
            ">",
        ],
    );
    // A due delayed job on the last partition, whose mover lease another daemon
    // holds (so it stays due), and one due in an hour on partition 0.
    let (delayed, lease) = (key(last, "delayed"), key(last, "lease:mover"));
    let past = (now_ms - 1_000).to_string();
    run(&delayed, &["ZADD", &delayed, &past, "due"]);
    run(&lease, &["SET", &lease, "another-daemon", "PX", "3600000"]);
    let delayed0 = key(0, "delayed");
    let later = (now_ms + 3_600_000).to_string();
    run(&delayed0, &["ZADD", &delayed0, &later, "later"]);

    let _d = s.start();
    s.wait_http();
    let body = scrape_when(s, "the groups", |b| {
        b.contains("tayori_results_group_lag{group=\"audit\"}")
    });
    let v = |body: &str, series: &str| {
        sample(body, series).unwrap_or_else(|| panic!("no {series}:\n{body}"))
    };
    assert_eq!(v(&body, "tayori_delayed_jobs"), 2.0);
    assert_eq!(v(&body, "tayori_delayed_jobs_due"), 1.0);
    let oldest = v(
        &body,
        r#"tayori_queue_oldest_pending_seconds{channel="email"}"#,
    );
    // Added ten minutes before the test started; the test takes seconds.
    assert!((600.0..3600.0).contains(&oldest), "{oldest}\n{body}");
    for group in ["crm", "audit"] {
        assert_eq!(
            v(
                &body,
                &format!("tayori_results_group_lag{{group=\"{group}\"}}")
            ),
            0.0
        );
    }

    // Events for both readers: one `sent` per job (file transport), in the
    // customer's partition.
    let jobs: Vec<_> = (0..6).map(|i| job(&format!("mon-{i}"), "email")).collect();
    s.enqueue_cli(&jobs);
    let xlen = |k: &str| match run(k, &["XLEN", k]) {
        redis::Value::Int(n) => n as f64,
        other => panic!("XLEN {k}: {other:?}"),
    };
    let deadline = Instant::now() + WAIT;
    let lengths = loop {
        let lengths: Vec<f64> = (0..partitions).map(|p| xlen(&key(p, "results"))).collect();
        if lengths.iter().sum::<f64>() >= 6.0 {
            break lengths;
        }
        assert!(
            Instant::now() < deadline,
            "the six jobs never ended: {lengths:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(lengths.iter().sum::<f64>(), 6.0, "{lengths:?}");
    assert!(
        lengths.iter().filter(|n| **n > 0.0).count() >= 2,
        "events in one partition only: {lengths:?}"
    );
    let lags = |crm: f64, audit: f64| {
        move |b: &str| {
            sample(b, r#"tayori_results_group_lag{group="crm"}"#) == Some(crm)
                && sample(b, r#"tayori_results_group_lag{group="audit"}"#) == Some(audit)
        }
    };
    let body = scrape_when(s, "the lag of both readers", lags(6.0, lengths[0]));
    assert_eq!(v(&body, "tayori_results_size"), 6.0);
    assert_eq!(
        v(&body, r#"tayori_results_group_pending{group="crm"}"#),
        0.0
    );

    // The CRM reads two events of its fullest partition and acknowledges none yet.
    let fullest = (0..partitions)
        .max_by(|a, b| lengths[*a].total_cmp(&lengths[*b]))
        .expect("a partition");
    assert!(lengths[fullest] >= 2.0, "{lengths:?}");
    let results = key(fullest, "results");
    run(
        &results,
        &[
            "XREADGROUP",
            "GROUP",
            "crm",
            "crm-1",
            "COUNT",
            "2",
            "STREAMS",
            &results,
            ">",
        ],
    );
    let body = scrape_when(s, "the read events pending", |b| {
        sample(b, r#"tayori_results_group_pending{group="crm"}"#) == Some(2.0)
    });
    assert_eq!(v(&body, r#"tayori_results_group_lag{group="crm"}"#), 4.0);
    assert_eq!(
        v(&body, r#"tayori_results_group_lag{group="audit"}"#),
        lengths[0]
    );
}

#[test]
fn the_lag_gauges_follow_redis_over_two_partitions() {
    let redis = Redis::start();
    let s = setup_with_redis(
        &format!("url = \"{}\"\npartitions = 2", redis.url()),
        LAG_QUEUE,
        EMAIL_ONLY,
    );
    lag_gauges_follow_redis(&s, 2, &|_| redis.conn());
}

/// On a cluster each partition's keys are on the primary of its hash tag: one
/// pipeline per partition, each to its own node.
#[test]
fn the_lag_gauges_follow_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let partitions = 3;
    let masters: BTreeSet<u16> = (0..partitions)
        .map(|p| cluster.master_for_key(&format!("t:{{{p}}}:results")))
        .collect();
    assert!(
        masters.len() >= 2,
        "every partition on one node: {masters:?}"
    );
    let s = setup_with_redis(
        &cluster.redis_section(&format!("partitions = {partitions}\n")),
        LAG_QUEUE,
        EMAIL_ONLY,
    );
    lag_gauges_follow_redis(&s, partitions, &|key| {
        cluster
            .node_conn(cluster.master_for_key(key))
            .expect("connect to the key's primary")
    });
}
