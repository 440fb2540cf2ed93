//! LINE's monthly quota and per-unit statistics, against the fake LINE API that
//! checks every request (pushes, quota reads, insight reads) against LINE's
//! OpenAPI files: the monthly-limit 429 moves jobs with a fallback on and keeps
//! the others waiting; quota readings reach the metrics, `tayori stats` and the
//! channel's pause; statistics land in `tayori report`. One redis-server for the
//! binary, one prefix per test.

mod common;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tayori_testkit::line_api::{reads, LineApi, Reply};

const TOKEN: &str = "test-channel-access-token";
const WAIT: Duration = Duration::from_secs(30);

/// The binary's redis-server: started by the first test that needs it, stopped
/// when the last one running lets go of it.
fn redis() -> Arc<Redis> {
    static SHARED: Mutex<Weak<Redis>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = shared.upgrade() {
        return r;
    }
    let r = Arc::new(Redis::start());
    *shared = Arc::downgrade(&r);
    r
}

/// LINE on `api` (plus email on files, the fallback) under `prefix`.
fn line_setup(redis: &Redis, prefix: &str, api: &LineApi, extra: &str) -> Setup {
    let channels = format!(
        r#"
[channels.line]
api_base = "{base}"
channel_access_token = "{TOKEN}"
timeout = "2s"
pause = "1s"
{extra}

[channels.email]
transport = "file"
dir = "{{outbox}}/email"
from = "Example Shop <news@example.com>"
"#,
        base = api.base_url()
    );
    setup_with_redis(
        &format!("url = \"{}\"\nprefix = \"{prefix}\"", redis.url()),
        "",
        &channels,
    )
}

fn line_job(id: &str, fallback: bool) -> Value {
    let mut j = job(id, "line");
    let n = id
        .bytes()
        .fold(0u128, |h, b| h.wrapping_mul(31).wrapping_add(u128::from(b)));
    j["to"]["line_user_id"] = json!(format!("U{n:032x}"));
    if fallback {
        j["fallback"] = json!(["email"]);
    }
    j
}

fn enqueue_as(conn: &mut redis::Connection, prefix: &str, jobs: &[Value]) {
    for j in jobs {
        let channel = j["channel"].as_str().unwrap();
        let _: String = redis::cmd("XADD")
            .arg(format!("{prefix}:{{0}}:jobs:{channel}"))
            .arg("*")
            .arg("job")
            .arg(j.to_string())
            .query(conn)
            .unwrap();
    }
}

fn results(conn: &mut redis::Connection, prefix: &str) -> Vec<Value> {
    xrange(conn, &format!("{prefix}:{{0}}:results"))
        .into_iter()
        .filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == "event"))
        .filter_map(|(_, v)| serde_json::from_str(&v).ok())
        .collect()
}

fn wait_results(
    conn: &mut redis::Connection,
    prefix: &str,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let evs = results(conn, prefix);
        if pred(&evs) {
            return evs;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {evs:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The job's event of `kind`, if there is one.
fn event<'a>(evs: &'a [Value], job: &str, kind: &str) -> Option<&'a Value> {
    evs.iter().find(|e| e["job_id"] == job && e["type"] == kind)
}

fn has(evs: &[Value], job: &str, kind: &str) -> bool {
    event(evs, job, kind).is_some()
}

fn pushes(api: &LineApi) -> usize {
    api.requests().len()
}

/// Waits until the daemon's `/metrics` shows `sample` at `value`.
fn wait_metric(s: &Setup, sample: &str, value: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = s.metric(sample);
        if now == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sample} stayed at {now}, not {value}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stats_text(s: &Setup) -> String {
    let out = s.tayori().arg("stats").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_fake_checks_reads_against_lines_specs() {
    let api = LineApi::start(TOKEN);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let stats = |query: &str| {
        api.request(
            "GET",
            &format!("{}?{query}", reads::UNIT_STATS_PATH),
            &auth,
            "",
        )
    };
    let (status, body) = stats("customAggregationUnit=spring_26&from=20261201&to=20261207");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["overview"]["uniqueImpression"], Value::Null);
    api.assert_no_violations();
    // A unit LINE refuses, a missing `to`, a period over 30 days.
    for (query, property) in [
        (
            "customAggregationUnit=spring-26&from=20261201&to=20261207",
            "customAggregationUnit",
        ),
        ("customAggregationUnit=spring_26&from=20261201", "to"),
        (
            "customAggregationUnit=spring_26&from=20261101&to=20261207",
            "to",
        ),
    ] {
        let before = api.violations().len();
        assert_eq!(stats(query).0, 400, "{query}");
        let found = api.violations();
        assert!(
            found[before..].iter().any(|v| v.contains(property)),
            "{query}: {found:?}"
        );
    }
    assert_eq!(api.request("GET", reads::QUOTA_PATH, &[], "").0, 401);
    assert_eq!(
        api.request("POST", reads::CONSUMPTION_PATH, &auth, "").0,
        405
    );
    assert_eq!(api.reads().len(), 6);
}

#[test]
fn the_monthly_limit_moves_jobs_with_a_fallback_on_and_the_others_wait() {
    let redis = redis();
    let api = LineApi::start(TOKEN);
    api.set_default(Reply::MonthlyLimit);
    let s = line_setup(&redis, "q1", &api, "");
    let mut conn = redis.conn();
    enqueue_as(
        &mut conn,
        "q1",
        &[line_job("with-fb-1", true), line_job("no-fb-1", false)],
    );
    let _d = s.start();
    s.wait_http();
    let evs = wait_results(&mut conn, "q1", "a fallback and a deferral", |e| {
        has(e, "with-fb-1", "fallback") && has(e, "no-fb-1", "deferred")
    });
    let fb = event(&evs, "with-fb-1", "fallback").unwrap();
    assert_eq!(fb["reason"], "quota", "{fb}");
    assert_eq!(fb["to_channel"], "email");
    assert_eq!(fb["error"]["code"], "line_monthly_limit");
    let waiting = event(&evs, "no-fb-1", "deferred").unwrap();
    assert_eq!(waiting["error"]["code"], "line_monthly_limit");
    assert_eq!(s.metric("tayori_channel_paused{channel=\"line\"}"), 1.0);

    // Jobs arriving during the pause are read at once: the one with a fallback
    // moves on, the other waits; neither reaches LINE.
    let before = pushes(&api);
    enqueue_as(
        &mut conn,
        "q1",
        &[line_job("with-fb-2", true), line_job("no-fb-2", false)],
    );
    let evs = wait_results(&mut conn, "q1", "the second pair", |e| {
        has(e, "with-fb-2", "fallback")
            && has(e, "no-fb-2", "deferred")
            && has(e, "with-fb-1", "sent")
            && has(e, "with-fb-2", "sent")
    });
    assert_eq!(pushes(&api), before, "no push while the quota is used up");
    assert_eq!(
        event(&evs, "with-fb-2", "fallback").unwrap()["reason"],
        "quota"
    );
    for job in ["with-fb-1", "with-fb-2"] {
        assert_eq!(event(&evs, job, "sent").unwrap()["channel"], "email");
    }
    let retry_at = event(&evs, "no-fb-2", "deferred").unwrap()["retry_at"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    assert!(
        retry_at > jiff::Timestamp::now() + jiff::SignedDuration::from_mins(50),
        "a waiting job comes back when the pause ends, not every `pause`: {retry_at}"
    );
    assert_eq!(count(&evs, "failed"), 0, "{evs:#?}");
    assert!(!has(&evs, "no-fb-1", "fallback") && !has(&evs, "no-fb-2", "fallback"));
    api.assert_no_violations();
}

#[test]
fn with_on_quota_pause_a_job_with_a_fallback_waits_too() {
    let redis = redis();
    let api = LineApi::start(TOKEN);
    api.set_default(Reply::MonthlyLimit);
    let s = line_setup(&redis, "q2", &api, "on_quota = \"pause\"");
    let mut conn = redis.conn();
    enqueue_as(&mut conn, "q2", &[line_job("fb-waits", true)]);
    let _d = s.start();
    let evs = wait_results(&mut conn, "q2", "a deferral", |e| {
        has(e, "fb-waits", "deferred")
    });
    assert_eq!(
        event(&evs, "fb-waits", "deferred").unwrap()["error"]["code"],
        "line_monthly_limit"
    );
    assert!(!has(&evs, "fb-waits", "fallback"), "{evs:#?}");

    // Bad values are refused, naming the key.
    for (line, key) in [
        ("on_quota = \"stop\"", "channels.line.on_quota"),
        ("quota_poll = \"0s\"", "channels.line.quota_poll"),
        ("stats_days = 0", "channels.line.stats_days"),
    ] {
        let bad = line_setup(&redis, "q2", &api, line);
        let out = bad.tayori().arg("check-config").output().unwrap();
        assert_ne!(out.status.code(), Some(0), "{line}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{line}: {err}");
    }
}

#[test]
fn quota_readings_reach_the_metrics_the_stats_and_the_channel() {
    let redis = redis();
    let api = LineApi::start(TOKEN);
    api.set_quota(json!({"type": "limited", "value": 1000}));
    api.set_consumption(950);
    let s = line_setup(&redis, "q3", &api, "quota_poll = \"100ms\"");
    let mut conn = redis.conn();
    let _d = s.start();
    s.wait_http();
    wait_metric(&s, "tayori_channel_quota_limit{channel=\"line\"}", 1000.0);
    wait_metric(&s, "tayori_channel_quota_used{channel=\"line\"}", 950.0);
    assert!(
        s.metric("tayori_channel_account_reads_total{channel=\"line\",op=\"quota\",result=\"ok\"}")
            >= 1.0
    );
    let table = stats_text(&s);
    assert!(
        table.contains("line quota: 950 of 1000 messages this month (95.0 %)"),
        "{table}"
    );
    let out = s.tayori().args(["stats", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["quotas"]["line"]["limit"], 1000, "{v}");
    assert_eq!(v["quotas"]["line"]["used"], 950);

    // Used up: the channel pauses before any push gets LINE's 429.
    api.set_consumption(1000);
    wait_metric(&s, "tayori_channel_paused{channel=\"line\"}", 1.0);
    enqueue_as(&mut conn, "q3", &[line_job("read-fb", true)]);
    let evs = wait_results(&mut conn, "q3", "the fallback", |e| {
        has(e, "read-fb", "fallback")
    });
    assert_eq!(
        event(&evs, "read-fb", "fallback").unwrap()["reason"],
        "quota"
    );
    assert_eq!(pushes(&api), 0);

    // A new month: the reading ends the pause, and jobs go to LINE again.
    api.set_consumption(3);
    wait_metric(&s, "tayori_channel_paused{channel=\"line\"}", 0.0);
    enqueue_as(&mut conn, "q3", &[line_job("new-month", false)]);
    wait_results(&mut conn, "q3", "the send", |e| has(e, "new-month", "sent"));
    assert_eq!(api.deliveries().len(), 1);

    // No limit: the gauge reads +Inf (used / limit is 0, no alert), stats say so.
    api.set_quota(json!({"type": "none"}));
    wait_metric(
        &s,
        "tayori_channel_quota_limit{channel=\"line\"}",
        f64::INFINITY,
    );
    let deadline = Instant::now() + WAIT;
    while !stats_text(&s).contains("no limit") {
        assert!(Instant::now() < deadline, "{}", stats_text(&s));
        std::thread::sleep(Duration::from_millis(50));
    }
    api.assert_no_violations();
    let seen = api.reads();
    assert!(seen.iter().all(|r| r.method == "GET" && r.status == 200));
    assert!(seen.iter().any(|r| r.path == reads::CONSUMPTION_PATH));
}

#[test]
fn line_statistics_land_in_the_report_once_per_day() {
    let redis = redis();
    let api = LineApi::start(TOKEN);
    let unit = "spring_26";
    let stats = |clicks: u64| {
        json!({
            "overview": {"uniqueImpression": 40, "uniqueClick": null,
                         "uniqueMediaPlayed": null, "uniqueMediaPlayed100Percent": null},
            "messages": [{"seq": 1, "impression": 42, "mediaPlayed": null}],
            "clicks": [{"seq": 1, "url": "https://shop.example.com/p/1",
                        "click": clicks, "uniqueClick": 25, "uniqueClickOfRequest": null}]
        })
    };
    api.set_unit_stats(unit, stats(35));
    let s = line_setup(
        &redis,
        "q4",
        &api,
        "custom_aggregation_units = true\nstats_poll = \"200ms\"",
    );
    let mut conn = redis.conn();
    let mut j = line_job("stats-1", false);
    j["campaign"] = json!(unit);
    enqueue_as(&mut conn, "q4", &[j]);
    let _d = s.start();
    let evs = wait_results(&mut conn, "q4", "LINE's statistics", |e| {
        e.iter().any(|e| e["type"] == "line_stats")
    });
    let ev = evs.iter().find(|e| e["type"] == "line_stats").unwrap();
    let day = tayori_channels::line::reads::line_day(jiff::Timestamp::now());
    assert_eq!(ev["campaign"], unit);
    assert_eq!(ev["channel"], "line");
    assert_eq!(ev["job_id"], Value::Null);
    assert_eq!(
        ev["day"],
        format!("{}-{}-{}", &day[..4], &day[4..6], &day[6..])
    );
    assert_eq!(
        ev["overview"]["uniqueClick"],
        Value::Null,
        "nulls stay null"
    );
    assert_eq!(ev["clicks"][0]["click"], 35);
    let fetches: Vec<_> = api
        .reads()
        .into_iter()
        .filter(|r| r.path == reads::UNIT_STATS_PATH)
        .collect();
    assert_eq!(
        fetches[0].query,
        format!("customAggregationUnit={unit}&from={day}&to={day}")
    );

    // LINE counts on: the next fetch writes the day again, and the report
    // shows the latest figures once, not the sum of the fetches.
    api.set_unit_stats(unit, stats(60));
    wait_results(&mut conn, "q4", "the second fetch", |e| {
        e.iter()
            .any(|e| e["type"] == "line_stats" && e["clicks"][0]["click"] == 60)
    });
    let out = s
        .tayori()
        .args(["report", "--campaign", unit])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let row = |label: &str| {
        text.lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row:\n{text}"))
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    };
    assert_eq!(row("LINE* unique opens"), "40", "{text}");
    assert_eq!(row("LINE* unique clicks"), "-", "{text}");
    assert_eq!(row("LINE* impressions"), "42", "{text}");
    assert!(text.contains("LINE's aggregate figures"), "{text}");
    let url_line = text
        .lines()
        .find(|l| l.ends_with("https://shop.example.com/p/1") && !l.contains("clickers"))
        .filter(|l| l.split_whitespace().count() == 5)
        .unwrap_or_else(|| panic!("no per-URL row:\n{text}"));
    assert!(
        url_line.contains(" 60 ") && url_line.contains(" 25 "),
        "{url_line}"
    );
    let html = s.dir.path().join("report.html");
    let out = s
        .tayori()
        .args(["report", "--campaign", unit, "--html"])
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("LINE's aggregate figures")
            && page.contains("https://shop.example.com/p/1 (60 clicks, 25 users)"),
        "{page}"
    );
    let out = s
        .tayori()
        .args(["report", "--campaign", unit, "--json"])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let days = r["line_stats"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{r}");
    assert_eq!(days[0]["clicks"][0]["click"], 60);
    assert_eq!(days[0]["overview"]["uniqueClick"], Value::Null);
    assert_eq!(r["channels"]["line"]["counts"]["sent"], 1);
    api.assert_no_violations();
}
