//! `tayori cancel`: a campaign's jobs end within seconds wherever they wait
//! (queued, scheduled hours ahead, retrying, waiting for a rate permit), each
//! exactly once, across two daemons; jobs enqueued later are cancelled too;
//! a channel-only cancel, a job cancel, `--list`, `--lift` and `stats`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

/// A second daemon on the setup's Redis, with its own HTTP port.
fn second_daemon(s: &Setup) -> (Daemon, u16) {
    let text = std::fs::read_to_string(&s.config).expect("config");
    let port = free_port();
    let text = text.replace(
        &format!("listen = \"127.0.0.1:{}\"", s.http_port),
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let path = s.config.with_file_name("tayori-2.toml");
    std::fs::write(&path, text).expect("write config");
    let daemon = Daemon::start(tayori_testkit::daemon::tayori(
        Path::new(env!("CARGO_BIN_EXE_tayori")),
        &path,
    ));
    (daemon, port)
}

fn tayori_ok(s: &Setup, args: &[&str]) -> String {
    let out = s.tayori().args(args).output().expect("run tayori");
    assert!(
        out.status.success(),
        "tayori {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn campaign_job(id: &str, channel: &str, campaign: &str) -> Value {
    let mut j = job(id, channel);
    j["campaign"] = json!(campaign);
    j
}

/// Outcomes that end a job, per job id.
fn endings(evs: &[Value]) -> HashMap<String, Vec<String>> {
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

#[test]
fn a_cancelled_campaign_ends_everywhere_it_waits_once_per_job_across_two_daemons() {
    let redis = Redis::start();
    // Nothing listens on this port: every SMS attempt fails as transient and
    // the jobs keep retrying through the delayed set.
    let dead_gateway = free_port();
    let channels = format!(
        r#"
[channels.email]
transport = "file"
dir = "{{outbox}}/email"
from = "Example Shop <news@example.com>"
rate = "100000/s"
concurrency = 64

[channels.line]
transport = "file"
dir = "{{outbox}}/line"
rate = "20/s"
concurrency = 64

[channels.sms]
provider = "http"
default_region = "JP"
rate = "1000/s"

[channels.sms.http]
url = "http://127.0.0.1:{dead_gateway}/messages"
body = {{ to = "{{{{to}}}}", text = "{{{{text}}}}" }}
success_status = [200]
timeout = "1s"

[retry]
max_attempts = 1000
base_delay = "500ms"
max_delay = "1s"
"#
    );
    let s = setup(&redis, "", &channels);
    let mut conn = redis.conn();
    let in_an_hour = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let mut jobs = Vec::new();
    for i in 0..500 {
        jobs.push(campaign_job(&format!("now-{i}"), "email", "spring"));
        let mut later = campaign_job(&format!("later-{i}"), "email", "spring");
        later["send_at"] = json!(in_an_hour);
        jobs.push(later);
        jobs.push(campaign_job(&format!("line-{i}"), "line", "spring"));
    }
    for i in 0..300 {
        jobs.push(campaign_job(&format!("sms-{i}"), "sms", "spring"));
    }
    for i in 0..200 {
        jobs.push(campaign_job(&format!("other-{i}"), "email", "autumn"));
    }
    assert_eq!(jobs.len(), 2000);
    let _a = s.start();
    let (_b, b_port) = second_daemon(&s);
    enqueue(&mut conn, &jobs);

    // Every kind of waiting is under way: LINE sends at its rate, SMS retries,
    // the scheduled emails wait.
    wait_for(&mut conn, WAIT, "LINE sending and SMS retrying", |e| {
        let line_sent = e
            .iter()
            .filter(|e| e["type"] == "sent" && e["channel"] == "line")
            .count();
        let sms_deferred: std::collections::HashSet<_> = e
            .iter()
            .filter(|e| e["type"] == "deferred" && e["channel"] == "sms")
            .filter_map(|e| e["job_id"].as_str())
            .collect();
        // The email stream read to its end: every scheduled email is waiting.
        let email_sent = e
            .iter()
            .filter(|e| e["type"] == "sent" && e["channel"] == "email")
            .count();
        line_sent >= 20 && sms_deferred.len() == 300 && email_sent == 700
    });
    let delayed: usize = redis::cmd("ZCARD")
        .arg("t:{0}:delayed")
        .query(&mut conn)
        .unwrap();
    assert!(
        delayed >= 500,
        "the scheduled jobs wait in the delayed set ({delayed})"
    );

    tayori_ok(
        &s,
        &[
            "cancel",
            "--campaign",
            "spring",
            "--reason",
            "wrong template",
            "--by",
            "ops-test",
        ],
    );
    // Enqueued after the cancel: cancelled too; another campaign's: sent.
    let mut late = Vec::new();
    for i in 0..100 {
        late.push(campaign_job(&format!("late-{i}"), "email", "spring"));
        late.push(campaign_job(&format!("other-late-{i}"), "email", "autumn"));
    }
    enqueue(&mut conn, &late);

    let all: Vec<String> = jobs
        .iter()
        .chain(&late)
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    let evs = wait_for(&mut conn, WAIT, "every job ended", |e| {
        let ended = endings(e);
        all.iter().all(|id| ended.contains_key(id))
    });
    let ended = endings(&evs);
    for id in &all {
        let outcomes = &ended[id];
        assert_eq!(outcomes.len(), 1, "{id} ended more than once: {outcomes:?}");
        assert!(
            outcomes[0] == "sent" || outcomes[0] == "cancelled",
            "{id} ended {outcomes:?}"
        );
    }
    let outcome = |id: &str| ended[id][0].as_str();
    fn ids(prefix: &'static str, n: usize) -> impl Iterator<Item = String> {
        (0..n).map(move |i| format!("{prefix}-{i}"))
    }
    for id in ids("later", 500)
        .chain(ids("sms", 300))
        .chain(ids("late", 100))
    {
        assert_eq!(outcome(&id), "cancelled", "{id}");
    }
    for id in ids("other", 200).chain(ids("other-late", 100)) {
        assert_eq!(outcome(&id), "sent", "{id} is of another campaign");
    }
    for id in ids("now", 500) {
        assert_eq!(outcome(&id), "sent", "{id} went out before the cancel");
    }
    let line_cancelled = ids("line", 500)
        .filter(|id| outcome(id) == "cancelled")
        .count();
    assert!(
        line_cancelled > 0 && line_cancelled < 500,
        "LINE jobs waiting for their rate permit were cancelled ({line_cancelled} of 500)"
    );
    // Nothing was sent for a cancelled job: the outbox has exactly the sent ones.
    let sent_line = ids("line", 500).filter(|id| outcome(id) == "sent").count();
    assert_eq!(s.outbox_files("line").len(), sent_line);

    let cancelled: Vec<&Value> = evs.iter().filter(|e| e["type"] == "cancelled").collect();
    for e in &cancelled {
        assert_eq!(e["reason"], "wrong template");
        assert_eq!(e["cancelled_by"], "ops-test");
        assert_eq!(e["cancel"], "campaign");
        assert_eq!(e["campaign"], "spring");
        assert!(e["cancelled_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    let mut event_ids: Vec<&str> = evs.iter().filter_map(|e| e["event_id"].as_str()).collect();
    let n = event_ids.len();
    event_ids.sort_unstable();
    event_ids.dedup();
    assert_eq!(event_ids.len(), n, "no event is written twice");
    let delayed: usize = redis::cmd("ZCARD")
        .arg("t:{0}:delayed")
        .query(&mut conn)
        .unwrap();
    assert_eq!(delayed, 0, "nothing of the campaign is left waiting");

    // The operator's view.
    let stats = tayori_ok(&s, &["stats"]);
    assert!(
        stats.contains("campaign spring") && stats.contains("wrong template"),
        "{stats}"
    );
    let listed = tayori_ok(&s, &["cancel", "--list", "--json"]);
    let listed: Value = serde_json::from_str(listed.trim()).expect("one JSON line");
    assert_eq!(listed["cancel"], "campaign");
    assert_eq!(listed["id"], "spring");
    assert_eq!(listed["channel"], Value::Null);
    let report = tayori_ok(&s, &["report", "--campaign", "spring", "--json"]);
    let report: Value = serde_json::from_str(&report).expect("report JSON");
    assert_eq!(report["channels"]["sms"]["counts"]["cancelled"], 300);
    assert_eq!(report["channels"]["email"]["counts"]["cancelled"], 600);
    assert_eq!(
        report["channels"]["line"]["counts"]["cancelled"],
        line_cancelled
    );
    let per_channel = |channel: &str| {
        let sample =
            format!("tayori_messages_total{{channel=\"{channel}\",outcome=\"cancelled\"}}");
        metric_at(s.http_port, &sample) + metric_at(b_port, &sample)
    };
    assert_eq!(
        per_channel("sms"),
        300.0,
        "cancelled jobs are counted per channel"
    );
}

#[test]
fn a_channel_cancel_a_job_cancel_and_a_lift() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    // Before the daemon runs: the cancels are checked with the dedupe claim,
    // not only by the daemon's copy.
    tayori_ok(
        &s,
        &[
            "cancel",
            "--campaign",
            "spring",
            "--channel",
            "sms",
            "--reason",
            "sms copy wrong",
        ],
    );
    tayori_ok(
        &s,
        &["cancel", "--job", "vip-1", "--reason", "customer asked"],
    );
    let out = s
        .tayori()
        .args(["cancel", "--campaign", "spring"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--reason is required"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s
        .tayori()
        .args([
            "cancel",
            "--campaign",
            "x",
            "--channel",
            "fax",
            "--reason",
            "r",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown channel \"fax\""));

    let _d = s.start();
    enqueue(
        &mut conn,
        &[
            campaign_job("e-1", "email", "spring"),
            campaign_job("s-1", "sms", "spring"),
            campaign_job("vip-1", "email", "autumn"),
            campaign_job("e-2", "email", "autumn"),
        ],
    );
    let evs = wait_for(&mut conn, WAIT, "four endings", |e| endings(e).len() == 4);
    let ended = endings(&evs);
    assert_eq!(
        ended["e-1"],
        ["sent"],
        "the email copy of the campaign goes out"
    );
    assert_eq!(ended["s-1"], ["cancelled"]);
    assert_eq!(ended["vip-1"], ["cancelled"]);
    assert_eq!(ended["e-2"], ["sent"]);
    let vip = evs
        .iter()
        .find(|e| e["type"] == "cancelled" && e["job_id"] == "vip-1")
        .unwrap();
    assert_eq!(vip["cancel"], "job");
    assert_eq!(vip["reason"], "customer asked");

    // Lifted: later jobs go out again.
    let lifted = tayori_ok(&s, &["cancel", "--lift", "spring"]);
    assert!(lifted.contains("campaign spring on sms"), "{lifted}");
    let out = s
        .tayori()
        .args(["cancel", "--lift", "spring"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "nothing left to lift");
    enqueue(&mut conn, &[campaign_job("s-2", "sms", "spring")]);
    let evs = wait_for(&mut conn, WAIT, "s-2 ended", |e| {
        endings(e).contains_key("s-2")
    });
    assert_eq!(endings(&evs)["s-2"], ["sent"]);
    let listed = tayori_ok(&s, &["cancel", "--list", "--json"]);
    assert_eq!(
        listed.lines().count(),
        1,
        "only the job cancel is left: {listed}"
    );

    // A cancel that lapsed is not applied (and is pruned).
    tayori_ok(&s, &["cancel", "--lift", "vip-1"]);
    let out = s
        .tayori()
        .args([
            "cancel",
            "--job",
            "x",
            "--reason",
            "r",
            "--until",
            "2020-01-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an end in the past is refused");
    let list = tayori_ok(&s, &["cancel", "--list"]);
    assert!(list.contains("no active cancels"), "{list}");
}
