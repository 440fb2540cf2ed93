//! The command line and the HTTP endpoints, as a user meets them.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn enqueue_validates_every_line_and_reports_bad_ones_by_number() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let lines = [
        job("cli-1", "email").to_string(),
        "{broken".to_owned(),
        job("cli-2", "line").to_string(),
        String::new(),
        json!({"id": "cli-3", "channel": "pigeon", "template": "spring_sale"}).to_string(),
        job("cli-4", "dm").to_string(),
    ];
    let out = s.run_with_stdin(&["enqueue", "-"], &lines.join("\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "bad lines make the exit code 1: {stderr}"
    );
    assert!(stderr.contains("line 2:"), "{stderr}");
    assert!(
        stderr.contains("line 5:") && stderr.contains("pigeon"),
        "{stderr}"
    );
    assert!(stderr.contains("enqueued 3 jobs"), "{stderr}");
    let mut conn = redis.conn();
    assert_eq!(xlen(&mut conn, "t:{0}:jobs:email"), 1);
    assert_eq!(xlen(&mut conn, "t:{0}:jobs:line"), 1);
    assert_eq!(xlen(&mut conn, "t:{0}:jobs:dm"), 1);
    assert_eq!(xlen(&mut conn, "t:{0}:jobs:sms"), 0);
}

#[test]
fn stats_reports_backlog_per_channel() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    enqueue(
        &mut conn,
        &(0..7)
            .map(|i| job(&format!("st-{i}"), "sms"))
            .collect::<Vec<_>>(),
    );
    let out = s.tayori().args(["stats", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sms = v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "sms")
        .unwrap();
    assert_eq!(sms["stream"], 7);
    assert_eq!(
        sms["backlog"], 7,
        "not yet read counts as backlog even before a group exists"
    );
}

#[test]
fn render_prints_each_channel_without_sending() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut j = job("render-1", "line");
    j["fallback"] = json!(["email", "sms"]);
    let path = s.dir.path().join("job.json");
    std::fs::write(&path, j.to_string()).unwrap();
    let out = s.tayori().arg("render").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for ch in ["===== line", "===== email", "===== sms"] {
        assert!(stdout.contains(ch), "{stdout}");
    }
    assert!(stdout.contains("1200ポイント"), "{stdout}");
    assert!(
        stdout.contains("Message-ID: <render-1@example.com>"),
        "{stdout}"
    );
    // The email is shown decoded: its Japanese subject and body readable, not
    // as encoded words and base64 or quoted-printable.
    let email = stdout
        .split("===== email =====")
        .nth(1)
        .and_then(|rest| rest.split("=====").next())
        .unwrap_or_default();
    assert!(
        email.contains("Subject: ") && !email.contains("=?utf-8?"),
        "{email}"
    );
    assert!(email.contains("--- text/plain ---"), "{email}");
    assert!(email.contains("1200"), "{email}");
    assert!(
        email
            .chars()
            .any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)),
        "{email}"
    );

    // `-` reads the job from standard input; `--raw` prints the bytes the transport sends.
    let out = s.run_with_stdin(&["render", "--raw", "-"], &j.to_string());
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{raw}");
    let raw_email = raw
        .split("===== email =====")
        .nth(1)
        .and_then(|rest| rest.split("=====").next())
        .unwrap_or_default();
    assert!(
        raw_email.contains("Content-Transfer-Encoding:"),
        "{raw_email}"
    );
    assert!(raw_email.contains("Subject: =?utf-8?"), "{raw_email}");

    let mut conn = redis.conn();
    assert_eq!(count(&events(&mut conn), "sent"), 0);
    assert!(s.outbox_files("line").is_empty());
}

fn check_config(cfg: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tayori"))
        .arg("-c")
        .arg(cfg)
        .arg("check-config")
        .output()
        .unwrap()
}

#[test]
fn config_errors_name_the_file_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[redis]\nurl = \"redis://${TAYORI_TEST_UNSET_VAR}\"\n",
    )
    .unwrap();
    let out = check_config(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("bad.toml")
            && stderr.contains("redis.url")
            && stderr.contains("TAYORI_TEST_UNSET_VAR"),
        "{stderr}"
    );
    std::fs::write(&cfg, "[redis]\n[channels.email]\ntransport = \"file\"\ndir = \"x\"\nrate = \"fast\"\nfrom = \"a@b.jp\"\n").unwrap();
    let out = check_config(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("channels.email.rate") && stderr.contains("100/s"),
        "{stderr}"
    );
}

#[test]
fn the_shipped_configs_pass_check_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let outbox = tempfile::tempdir().unwrap();
    for cfg in [
        "config/dev.toml",
        "config/tayori.toml",
        "config/sms-karaden.toml",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tayori"))
            .arg("-c")
            .arg(format!("{root}/{cfg}"))
            .arg("check-config")
            .current_dir(outbox.path())
            .env("TAYORI_TRACKING_SECRET", "test-secret-0123456789abcdef")
            .env("SMTP_USERNAME", "tayori")
            .env("SMTP_PASSWORD", "test-password")
            .env("KARADEN_TOKEN", "test-token")
            .env("LINE_CHANNEL_ACCESS_TOKEN", "test-token")
            .env("LINE_CHANNEL_SECRET", "test-secret")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cfg}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_published_job_schema_matches_the_code() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tayori"))
        .arg("schema")
        .output()
        .unwrap();
    let published =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/job.schema.json"))
            .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        published,
        "regenerate with: tayori schema > docs/job.schema.json"
    );
}

#[test]
fn health_readiness_and_metrics_are_served() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    enqueue(&mut conn, &[job("m-1", "email"), job("m-2", "line")]);
    let _d = s.start();
    wait_for(&mut conn, Duration::from_secs(30), "2 sent", |e| {
        count(e, "sent") == 2
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get("/readyz").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.get("/healthz").unwrap().0, 200);
    let (status, body) = s.get("/metrics").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        s.metric("tayori_messages_total{channel=\"email\",outcome=\"sent\"}"),
        1.0
    );
    assert_eq!(s.metric("tayori_jobs_taken_total{channel=\"line\"}"), 1.0);
    assert!(
        body.contains("tayori_send_duration_seconds_bucket{channel=\"email\",le=\"0.005\"}"),
        "histograms have buckets"
    );
    assert!(body.contains("# HELP tayori_messages_total"));
    assert!(
        !body.contains("taro@example.com") && !body.contains("m-1"),
        "no personal data or job ids in metrics"
    );
    assert_eq!(s.get("/nope").unwrap().0, 404);
    // Redis gone: readiness turns false, liveness stays.
    drop(redis);
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.get("/readyz").map(|r| r.0) != Some(503) {
        assert!(Instant::now() < deadline, "still ready without Redis");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.get("/healthz").unwrap().0, 200);
}

#[test]
fn json_logs_name_the_job_and_mask_the_address() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    enqueue(&mut conn, &[job("log-1", "email"), job("log-2", "sms")]);
    enqueue_raw(&mut conn, "email", &["{\"id\":\"log-bad\"".to_owned()]);
    let mut drain = s.tayori();
    drain
        .args(["--log-format", "json", "run", "--drain"])
        .env("TAYORI_LOG", "tayori=debug");
    let out = tayori_testkit::daemon::output_within(drain, Duration::from_secs(120));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let sent: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "send finished")
        .collect();
    assert_eq!(sent.len(), 2, "{stderr}");
    let email = sent.iter().find(|l| l["job_id"] == "log-1").unwrap();
    assert_eq!(email["campaign"], "test");
    assert_eq!(email["channel"], "email");
    assert_eq!(email["to"], "t***@example.com");
    let sms = sent.iter().find(|l| l["job_id"] == "log-2").unwrap();
    assert_eq!(sms["to"], "090-1****5678");
    let dead = lines
        .iter()
        .find(|l| l["message"] == "dead letter")
        .expect("the bad job is logged");
    assert_eq!(dead["channel"], "email");
    assert_eq!(dead["code"], "invalid_job");
    for pii in ["taro@example.com", "090-1234-5678", "山田"] {
        assert!(!stderr.contains(pii), "{pii} in the logs: {stderr}");
    }
}

#[test]
fn printing_commands_end_quietly_when_their_reader_goes_away() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tayori"))
        .arg("schema")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `| head` exiting before reading
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn log_lines_to_a_pipe_carry_no_colour_codes() {
    use std::io::BufRead;
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut child = s
        .tayori()
        .env_remove("NO_COLOR")
        .env("TAYORI_LOG", "info")
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("INFO"), "a log line: {first:?}");
    assert!(!first.contains('\x1b'), "no ANSI escape codes: {first:?}");
}
