//! The real `/metrics` scrape after a known workload: every counter matches what
//! happened, no label carries an address or a job id, and Prometheus' own linter
//! (`promtool check metrics`) has nothing to say about the exposition.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// One parsed sample line: family/series name, labels (sorted), value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text exposition format (enough of it for our own output).
fn parse(body: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed sample line: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("malformed value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unterminated labels in {line:?}"));
                (name.to_owned(), parse_labels(rest, line))
            }
        };
        out.push((name, labels, value));
    }
    out
}

fn parse_labels(mut rest: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("malformed labels in {line:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("dangling escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The value of the series `name` with exactly these labels; 0 when absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| *v)
        .collect();
    assert!(
        found.len() <= 1,
        "{name}{want:?} appears {} times",
        found.len()
    );
    found.first().copied().unwrap_or(0.0)
}

/// The sum of every series of `name` (all label values).
fn total(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn the_scrape_counts_what_happened_and_passes_promtool() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();

    let email_ids: Vec<String> = (1..=5).map(|i| format!("mtrx-em-{i}")).collect();
    let line_ids: Vec<String> = (1..=3).map(|i| format!("mtrx-ln-{i}")).collect();
    let mut jobs: Vec<_> = email_ids.iter().map(|id| job(id, "email")).collect();
    jobs.extend(line_ids.iter().map(|id| job(id, "line")));
    // Readable, with an id, but a field of the wrong type: a dead letter (invalid_job).
    let mut invalid = job("mtrx-bad-1", "email");
    invalid["fallback"] = json!("sms");
    jobs.push(invalid);
    enqueue(&mut conn, &jobs);

    let _d = s.start();
    s.wait_http(); // exactly one successful GET /healthz
    wait_for(&mut conn, WAIT, "8 sent and 1 failed", |e| {
        count(e, "sent") == 8 && count(e, "failed") == 1
    });
    // The same id again once the first one is sent: a duplicate, not sent again.
    enqueue(&mut conn, &[job("mtrx-em-1", "email")]);
    let evs = wait_for(&mut conn, WAIT, "the duplicate", |e| {
        count(e, "duplicate") == 1
    });
    assert_eq!(count(&evs, "sent"), 8, "{evs:?}");
    assert_eq!(count(&evs, "failed"), 1, "{evs:?}");

    // Known HTTP traffic: two more health checks, an unknown path, and a tracking
    // URL whose path segment looks like a job id (it must not become a label).
    for _ in 0..2 {
        assert_eq!(s.get("/healthz").unwrap().0, 200);
    }
    assert_eq!(s.get("/no-such-page").unwrap().0, 404);
    s.get("/t/o/mtrx-tok-1").unwrap();

    // The queue gauges are sampled by housekeeping: wait until it has seen the end state.
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = s.get("/metrics").expect("GET /metrics");
        assert_eq!(status, 200);
        let samples = parse(&body);
        if value(&samples, "tayori_dead_letter_size", &[]) == 1.0
            && value(&samples, "tayori_queue_backlog", &[("channel", "email")]) == 0.0
            && value(&samples, "tayori_queue_pending", &[("channel", "email")]) == 0.0
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "queue gauges never settled:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let m = parse(&body);
    let v = |name: &str, labels: &[(&str, &str)]| value(&m, name, labels);

    // Jobs read: every entry of a stream, the invalid one and the duplicate included.
    assert_eq!(v("tayori_jobs_taken_total", &[("channel", "email")]), 7.0);
    assert_eq!(v("tayori_jobs_taken_total", &[("channel", "line")]), 3.0);
    assert_eq!(total(&m, "tayori_jobs_taken_total"), 10.0);

    // Outcomes, and nothing else.
    let msg = |ch: &str, outcome: &str| {
        v(
            "tayori_messages_total",
            &[("channel", ch), ("outcome", outcome)],
        )
    };
    assert_eq!(msg("email", "sent"), 5.0);
    assert_eq!(msg("line", "sent"), 3.0);
    assert_eq!(msg("email", "failed"), 1.0);
    assert_eq!(msg("email", "duplicate"), 1.0);
    assert_eq!(total(&m, "tayori_messages_total"), 10.0, "{body}");

    assert_eq!(
        v(
            "tayori_dead_letters_total",
            &[("channel", "email"), ("reason", "invalid_job")]
        ),
        1.0
    );
    assert_eq!(total(&m, "tayori_dead_letters_total"), 1.0);
    // Counters a channel can produce exist from the start at 0, so `increase()` sees
    // their first step (a series born at 1 looks flat to alerts).
    for (name, labels) in [
        (
            "tayori_dead_letters_total",
            [("channel", "line"), ("reason", "invalid_job")],
        ),
        (
            "tayori_messages_total",
            [("channel", "email"), ("outcome", "bounced")],
        ),
        (
            "tayori_webhook_rejected_total",
            [("source", "bounce"), ("reason", "unmatched")],
        ),
    ] {
        assert!(
            m.iter().any(|(n, l, v)| n == name
                && *v == 0.0
                && labels
                    .iter()
                    .all(|(k, val)| l.get(*k).map(String::as_str) == Some(*val))),
            "{name}{labels:?} registered at 0: {body}"
        );
    }
    assert_eq!(total(&m, "tayori_retries_total"), 0.0);

    // One adapter call per send: none for the invalid job or the duplicate.
    for (ch, n) in [("email", 5.0), ("line", 3.0)] {
        assert_eq!(
            v("tayori_send_duration_seconds_count", &[("channel", ch)]),
            n,
            "{ch}"
        );
        assert_eq!(
            v(
                "tayori_send_duration_seconds_bucket",
                &[("channel", ch), ("le", "+Inf")]
            ),
            n,
            "{ch}"
        );
        assert_eq!(
            v("tayori_end_to_end_seconds_count", &[("channel", ch)]),
            n,
            "{ch}"
        );
        assert!(v("tayori_send_duration_seconds_sum", &[("channel", ch)]) > 0.0);
    }
    assert_eq!(total(&m, "tayori_send_duration_seconds_count"), 8.0);

    // Gauges describing Redis and the daemon.
    assert_eq!(v("tayori_redis_up", &[]), 1.0);
    assert_eq!(v("tayori_delayed_jobs", &[]), 0.0);
    assert_eq!(total(&m, "tayori_in_flight"), 0.0);
    assert_eq!(total(&m, "tayori_redis_errors_total"), 0.0);

    // HTTP requests by route pattern, never the raw path.
    let http = |route: &str, status: &str| {
        v(
            "tayori_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(http("/healthz", "200"), 3.0, "{body}");
    assert_eq!(http("unmatched", "404"), 1.0, "{body}");
    assert_eq!(
        m.iter()
            .filter(|(n, l, _)| n == "tayori_http_requests_total"
                && l.get("route").map(String::as_str) == Some("/t/o/{token}"))
            .map(|(_, _, v)| v)
            .sum::<f64>(),
        1.0,
        "{body}"
    );

    // Only bounded label values: no address, no job id, no raw path, anywhere.
    assert!(!body.contains('@'), "an address in the metrics:\n{body}");
    assert!(!body.contains("taro"), "a name in the metrics:\n{body}");
    for id in email_ids
        .iter()
        .chain(&line_ids)
        .map(String::as_str)
        .chain(["mtrx-bad-1", "mtrx-tok-1", "mtrx", "no-such-page"])
    {
        assert!(!body.contains(id), "{id:?} in the metrics:\n{body}");
    }
    for (name, labels, _) in &m {
        assert!(name.starts_with("tayori_"), "foreign metric {name}");
        for (k, val) in labels {
            assert!(
                [
                    "channel", "outcome", "reason", "class", "op", "route", "status", "source",
                    "type", "result", "le", "quantile", "group",
                ]
                .contains(&k.as_str()),
                "unexpected label {k}={val:?} on {name}"
            );
        }
    }

    promtool_check_metrics(&body);
}

/// `promtool check metrics < scrape` lints the exposition (naming, types, help texts).
fn promtool_check_metrics(body: &str) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(body.as_bytes()).expect("write scrape");
    let stdin = std::fs::File::open(file.path()).expect("reopen scrape");
    let out = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(stdin)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "note: promtool is not installed; skipping `promtool check metrics` (CI installs it)"
            );
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !(out.status.success() && said.trim().is_empty()) {
        // Keep the scrape so the complaint can be reproduced.
        let kept = file.into_temp_path().keep().expect("keep scrape");
        panic!(
            "promtool check metrics < {} complains (exit {:?}):\n{said}",
            kept.display(),
            out.status.code()
        );
    }
}
