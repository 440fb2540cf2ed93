//! The enqueue API (`POST /v1/jobs`) and the job checks before a campaign
//! (`tayori check-jobs`, `enqueue --check`), as a CRM and an operator meet them.
//!
//! One redis-server and one daemon (file transports, two API keys) serve every
//! API test of this file; each test uses job ids of its own. Every exchange is
//! checked against docs/openapi.yaml by a real JSON Schema 2020-12 validator
//! (`jsonschema`, tests/peers/openapi_check.py).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const KEY_1: &str = "tyk_first-key-for-the-tests-0123456789";
const KEY_2: &str = "tyk_second-key-rotated-in-abcdefghij";

/// The `[http.api]` table for the two keys.
fn api_table() -> String {
    format!(
        "[http.api]\nkeys = [\"{}\", \"{}\"]\n",
        tayori::http::api::key_hash(KEY_1),
        tayori::http::api::key_hash(KEY_2)
    )
}

/// The shared redis-server and daemon; killed when the test binary exits.
struct Env {
    redis: Mutex<Option<Redis>>,
    daemon: Mutex<Option<Daemon>>,
    setup: Setup,
    port: u16,
}

extern "C" fn stop_env() {
    if let Some(env) = ENV.get() {
        if let Ok(mut d) = env.daemon.lock() {
            drop(d.take());
        }
        if let Ok(mut r) = env.redis.lock() {
            drop(r.take());
        }
    }
}

static ENV: OnceLock<Env> = OnceLock::new();

fn env() -> &'static Env {
    ENV.get_or_init(|| {
        let redis = Redis::start();
        // A batch of 1,000 jobs takes seconds to check in a debug build on a
        // loaded machine: more than the test configs' 5 s request timeout.
        let setup = setup(&redis, "", &format!("{ALL_FILE}\n{}", api_table()))
            .replace_config("request_timeout = \"5s\"", "request_timeout = \"120s\"");
        let daemon = setup.start();
        setup.wait_http();
        // Statics are never dropped: the servers go when the process exits.
        unsafe { libc::atexit(stop_env) };
        let port = redis.port;
        Env {
            redis: Mutex::new(Some(redis)),
            daemon: Mutex::new(Some(daemon)),
            setup,
            port,
        }
    })
}

impl Env {
    fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .and_then(|c| c.get_connection())
            .expect("redis")
    }
}

/// An HTTP answer: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.0 request to `port`.
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    // The server may answer (413) before reading a large body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let (status, headers, body) = common::parse_response(&raw);
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The OpenAPI checker peer, one per test binary.
struct Checker {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn checker() -> &'static Mutex<Checker> {
    static PEER: OnceLock<Mutex<Checker>> = OnceLock::new();
    PEER.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(common::smtp::python())
            .arg(root.join("tests/peers/openapi_check.py"))
            .arg(root.join("docs/openapi.yaml"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the OpenAPI checker peer");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Mutex::new(Checker {
            _child: child,
            stdin,
            stdout,
        })
    })
}

/// The peer's verdict on one exchange: (request problem, response problem).
/// `check_request: false` skips the request (a request meant to be wrong, or
/// the acceptance run's 10,000 jobs, whose format other tests check).
fn validate(
    content_type: &str,
    sent: &[u8],
    check_request: bool,
    answer: &Answer,
) -> (Option<String>, Option<String>) {
    let request_body: Value = match content_type {
        "application/json" if check_request => serde_json::from_slice(sent).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let response_body: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    let exchange = json!({
        "method": "post", "path": "/v1/jobs", "status": answer.status,
        "headers": answer.headers,
        "request": {"content_type": content_type, "body": request_body},
        "response": {"content_type": answer.headers.get("content-type"), "body": response_body},
    });
    let mut peer = checker().lock().unwrap_or_else(|e| e.into_inner());
    writeln!(peer.stdin, "{exchange}").expect("write to the checker");
    peer.stdin.flush().unwrap();
    let mut line = String::new();
    peer.stdout
        .read_line(&mut line)
        .expect("the checker's verdict");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let text = |k: &str| v[k].as_str().map(str::to_owned);
    (text("request"), text("response"))
}

/// Posts to `/v1/jobs` on the shared daemon and checks the answer against the
/// OpenAPI document (and the request, when `request_valid`).
fn post(
    key: Option<&str>,
    query: &str,
    content_type: &str,
    body: &[u8],
    request_valid: bool,
) -> Answer {
    post_to(
        env().setup.http_port,
        key,
        query,
        content_type,
        body,
        request_valid,
    )
}

fn post_to(
    port: u16,
    key: Option<&str>,
    query: &str,
    content_type: &str,
    body: &[u8],
    request_valid: bool,
) -> Answer {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", content_type)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let answer = request(port, "POST", &format!("/v1/jobs{query}"), &headers, body);
    let (req, resp) = validate(content_type, body, request_valid, &answer);
    assert_eq!(
        resp, None,
        "the answer is not as docs/openapi.yaml says: {} {}",
        answer.status, answer.body
    );
    if request_valid {
        assert_eq!(req, None, "the request is not as docs/openapi.yaml says");
    }
    answer
}

fn post_jobs(jobs: &[Value]) -> Answer {
    let body = serde_json::to_vec(jobs).unwrap();
    post(Some(KEY_1), "", "application/json", &body, true)
}

/// [`post_jobs`] without checking the request against the document (only the answer).
fn post_jobs_unchecked(jobs: &[Value]) -> Answer {
    let body = serde_json::to_vec(jobs).unwrap();
    post(Some(KEY_1), "", "application/json", &body, false)
}

/// An SMS job with everything it needs.
fn sms(id: &str) -> Value {
    job(id, "sms")
}

/// The stream entries carrying job `id` (any channel of partition 0).
fn entries_of(conn: &mut redis::Connection, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ch in ["email", "line", "sms", "dm"] {
        // Entries still there (finished ones are deleted): for jobs never sent.
        for (entry, fields) in xrange(conn, &format!("t:{{0}}:jobs:{ch}")) {
            let carries = fields.iter().any(|(k, v)| {
                k == "job" && serde_json::from_str::<Value>(v).is_ok_and(|j| j["id"] == id)
            });
            if carries {
                out.push(entry);
            }
        }
    }
    out
}

fn wait_terminal(ids: &[String], what: &str) -> HashMap<String, Vec<String>> {
    let mut conn = env().conn();
    let evs = wait_for(&mut conn, Duration::from_secs(120), what, |evs| {
        let t = terminal_by_job(evs);
        ids.iter().all(|id| t.contains_key(id))
    });
    terminal_by_job(&evs)
}

#[test]
fn requests_without_a_valid_key_are_refused() {
    let body = serde_json::to_vec(&[sms("auth-1")]).unwrap();
    for key in [None, Some("tyk_not-a-key"), Some("")] {
        let a = post(key, "", "application/json", &body, true);
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(
            a.headers
                .get("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{:?}",
            a.headers
        );
        assert_eq!(a.json()["error"]["code"], "unauthorized");
    }
    // Basic with the right secret is still not a bearer key.
    let a = request(
        env().setup.http_port,
        "POST",
        "/v1/jobs",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Basic {KEY_1}")),
        ],
        &body,
    );
    assert_eq!(a.status, 401);
    let mut conn = env().conn();
    assert!(
        entries_of(&mut conn, "auth-1").is_empty(),
        "nothing enqueued"
    );
}

#[test]
fn both_keys_of_a_rotation_work() {
    let a = post(
        Some(KEY_1),
        "",
        "application/json",
        &serde_json::to_vec(&[sms("rot-1")]).unwrap(),
        true,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["results"][0]["status"], "enqueued");
    let a = post(
        Some(KEY_2),
        "",
        "application/json",
        &serde_json::to_vec(&[sms("rot-2")]).unwrap(),
        true,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["results"][0]["status"], "enqueued");
    let t = wait_terminal(
        &["rot-1".into(), "rot-2".into()],
        "the jobs posted with either key",
    );
    assert_eq!(t["rot-1"], ["sent"]);
    assert_eq!(t["rot-2"], ["sent"]);
}

#[test]
fn oversize_bodies_are_refused_with_a_json_error() {
    // Over 5 MiB of bytes: one job with a huge variable.
    let mut big = sms("big-1");
    big["vars"]["padding"] = json!("x".repeat(5 * 1024 * 1024));
    let body = serde_json::to_vec(&[big]).unwrap();
    let a = post(Some(KEY_1), "", "application/json", &body, false);
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "body_too_large");
    // The same without Content-Length (chunked): cut off at the limit.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", env().setup.http_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAuthorization: Bearer {KEY_1}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    for chunk in body.chunks(64 * 1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).is_err() {
            break; // answered and closed before the end: fine
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    assert!(
        raw.starts_with("HTTP/1.1 413"),
        "{}",
        raw.lines().next().unwrap_or("")
    );
    assert!(raw.contains("body_too_large"), "{raw}");
    // Over 1,000 jobs.
    let jobs: Vec<Value> = (0..1001).map(|i| sms(&format!("many-{i}"))).collect();
    let a = post(
        Some(KEY_1),
        "",
        "application/json",
        &serde_json::to_vec(&jobs).unwrap(),
        false,
    );
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "too_many_jobs");
    let mut conn = env().conn();
    assert!(
        entries_of(&mut conn, "many-0").is_empty(),
        "nothing enqueued"
    );
    assert!(
        entries_of(&mut conn, "big-1").is_empty(),
        "nothing enqueued"
    );
}

#[test]
fn malformed_json_names_line_and_column() {
    let body = format!("[\n{},\n{{\"id\": \"mal-2\",,}}\n]", sms("mal-1"));
    let a = post(Some(KEY_1), "", "application/json", body.as_bytes(), false);
    assert_eq!(a.status, 400, "{}", a.body);
    let e = &a.json()["error"];
    assert_eq!(e["code"], "malformed_json");
    assert_eq!(e["line"], 3, "{e}");
    assert!(e["column"].as_u64().is_some_and(|c| c > 0), "{e}");
    assert!(e["message"].as_str().unwrap().contains("line 3"), "{e}");
    let mut conn = env().conn();
    assert!(
        entries_of(&mut conn, "mal-1").is_empty(),
        "a malformed array enqueues nothing"
    );
    // Not JSON, nor NDJSON: 415.
    let a = post(Some(KEY_1), "", "text/plain", b"[]", false);
    assert_eq!(a.status, 415, "{}", a.body);
}

#[test]
fn ndjson_bodies_are_read_line_by_line() {
    let body = format!(
        "{}\n\n{{\"id\": \"nd-2\", broken\n{}\n",
        sms("nd-1"),
        job("nd-3", "line")
    );
    let a = post(
        Some(KEY_1),
        "",
        "application/x-ndjson",
        body.as_bytes(),
        true,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let r = &a.json()["results"];
    assert_eq!(r.as_array().unwrap().len(), 3, "{r}");
    assert_eq!(r[0]["status"], "enqueued");
    assert_eq!(r[1]["status"], "invalid");
    assert_eq!(r[1]["error"]["code"], "malformed_json");
    assert!(
        r[1]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 3"),
        "{r}"
    );
    assert_eq!(r[2]["status"], "enqueued");
    assert_eq!(r[2]["index"], 2);
    let t = wait_terminal(&["nd-1".into(), "nd-3".into()], "the NDJSON jobs");
    assert_eq!(t["nd-1"], ["sent"]);
    assert_eq!(t["nd-3"], ["sent"]);
}

#[test]
fn a_partial_batch_enqueues_its_valid_jobs() {
    let mut unknown = sms("part-2");
    unknown["template"] = json!("no_such_template");
    let mut vars = job("part-3", "email");
    vars["vars"] = json!({});
    let mut phone = sms("part-4");
    phone["to"]["phone"] = json!("12");
    let mut disabled = sms("part-5");
    disabled["channel"] = json!("webhook");
    let a = post_jobs(&[
        sms("part-1"),
        unknown,
        vars,
        phone,
        disabled,
        job("part-6", "email"),
    ]);
    assert_eq!(a.status, 200, "{}", a.body);
    let r = a.json()["results"].clone();
    let status: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        ["enqueued", "invalid", "invalid", "invalid", "invalid", "enqueued"]
    );
    assert_eq!(r[1]["error"]["code"], "unknown_template");
    assert_eq!(r[1]["error"]["field"], "template");
    assert_eq!(r[2]["error"]["code"], "missing_variable");
    let m = r[2]["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("items") && m.contains("points"),
        "every missing variable named: {m}"
    );
    assert_eq!(r[3]["error"]["code"], "invalid_phone");
    assert_eq!(r[3]["error"]["field"], "to.phone");
    assert_eq!(r[4]["error"]["code"], "channel_disabled");
    assert_eq!(r[4]["error"]["field"], "channel");
    assert_eq!(r[4]["job_id"], "part-5");
    let t = wait_terminal(
        &["part-1".into(), "part-6".into()],
        "the valid jobs of the batch",
    );
    assert_eq!(t["part-1"], ["sent"]);
    assert_eq!(t["part-6"], ["sent"]);
    let mut conn = env().conn();
    for id in ["part-2", "part-3", "part-4", "part-5"] {
        assert!(
            entries_of(&mut conn, id).is_empty(),
            "{id} was not enqueued"
        );
    }
    assert!(
        env()
            .setup
            .metric("tayori_api_jobs_total{status=\"invalid\"}")
            >= 4.0
    );
}

/// How many entries `stream` has ever had added (XINFO STREAM `entries-added`):
/// finished entries are deleted, this count stays.
fn entries_added(conn: &mut redis::Connection, stream: &str) -> i64 {
    let info: HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query(conn)
        .expect("XINFO STREAM");
    match info.get("entries-added") {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("entries-added: {other:?}"),
    }
}

#[test]
fn a_reposted_job_answers_its_first_entry() {
    // Direct mail: no other test of this file posts to its stream.
    let dm = |id: &str| job(id, "dm");
    let first = post_jobs(&[dm("dup-1")]);
    let entry = first.json()["results"][0]["entry_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Again at once, and twice in one batch: the first entry each time.
    let again = post_jobs(&[dm("dup-1"), dm("dup-2"), dm("dup-2")]);
    let r = again.json()["results"].clone();
    assert_eq!(r[0]["status"], "duplicate");
    assert_eq!(r[0]["entry_id"], entry.as_str());
    assert_eq!(r[1]["status"], "enqueued");
    assert_eq!(r[2]["status"], "duplicate");
    assert_eq!(r[2]["entry_id"], r[1]["entry_id"]);
    // After the daemon sent it: still the first entry, still one send.
    let t = wait_terminal(&["dup-1".into(), "dup-2".into()], "the reposted jobs");
    let late = post_jobs(&[dm("dup-1")]);
    assert_eq!(late.json()["results"][0]["status"], "duplicate");
    assert_eq!(late.json()["results"][0]["entry_id"], entry.as_str());
    assert_eq!(
        t["dup-1"],
        ["sent"],
        "the API's claim is the daemon's: not a duplicate"
    );
    assert_eq!(t["dup-2"], ["sent"]);
    let mut conn = env().conn();
    assert_eq!(
        entries_added(&mut conn, "t:{0}:jobs:dm"),
        2,
        "one entry per job id, however often posted"
    );
}

#[test]
fn check_true_enqueues_nothing() {
    let mut bad = sms("chk-2");
    bad["to"] = json!({"name": "x"});
    let body = serde_json::to_vec(&[sms("chk-1"), bad]).unwrap();
    let a = post(Some(KEY_1), "?check=true", "application/json", &body, true);
    assert_eq!(a.status, 200, "{}", a.body);
    let r = a.json()["results"].clone();
    assert_eq!(r[0]["status"], "valid");
    assert_eq!(r[1]["status"], "invalid");
    assert_eq!(r[1]["error"]["code"], "missing_address");
    assert_eq!(r[1]["error"]["field"], "to.phone");
    let mut conn = env().conn();
    assert!(
        entries_of(&mut conn, "chk-1").is_empty(),
        "nothing enqueued"
    );
    // No claim either: posted for real, it is enqueued, not a duplicate.
    let a = post_jobs(&[sms("chk-1")]);
    assert_eq!(a.json()["results"][0]["status"], "enqueued");
}

#[test]
fn the_api_is_off_without_keys() {
    let e = env();
    let redis_url = format!("redis://127.0.0.1:{}", e.port);
    let s = setup_with_redis(&format!("url = \"{redis_url}\"\nprefix = \"off\""), "", "");
    let mut d = s.start();
    s.wait_http();
    let a = request(
        s.http_port,
        "POST",
        "/v1/jobs",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {KEY_1}")),
        ],
        b"[]",
    );
    assert_eq!(a.status, 404);
    d.terminate(Duration::from_secs(10));
}

/// The acceptance run: 10,000 jobs posted in batches of 1,000 to a
/// daemon with file transports; every job gets exactly one terminal outcome.
#[test]
fn ten_thousand_posted_jobs_each_end_once() {
    let channels = ["sms", "line", "email"];
    let ids: Vec<String> = (0..10_000).map(|i| format!("acc-{i}")).collect();
    let started = std::time::Instant::now();
    for batch in ids.chunks(1000) {
        let jobs: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, id)| job(id, channels[i % channels.len()]))
            .collect();
        let a = post_jobs_unchecked(&jobs);
        assert_eq!(a.status, 200);
        let r = a.json()["results"].clone();
        assert!(
            r.as_array()
                .unwrap()
                .iter()
                .all(|x| x["status"] == "enqueued"),
            "{r}"
        );
    }
    eprintln!("posted 10,000 jobs in {:?}", started.elapsed());
    let t = wait_terminal(&ids, "10,000 posted jobs");
    for id in &ids {
        assert_eq!(t[id], ["sent"], "{id}: exactly one terminal outcome");
    }
    eprintln!(
        "10,000 jobs sent {:?} after the first post",
        started.elapsed()
    );
}

// --- tayori check-jobs / enqueue --check --------------------------------------

/// A config with every channel but webhook (file transports), no daemon.
fn check_setup(redis: &Redis) -> Setup {
    setup(redis, "", ALL_FILE)
}

fn check_lines() -> Vec<Value> {
    let mut unknown = sms("cj-2");
    unknown["template"] = json!("no_such_template");
    let mut vars = job("cj-3", "email");
    vars["vars"] = json!({"points": 5});
    let mut no_address = sms("cj-4");
    no_address["to"] = json!({"name": "x"});
    let mut phone = sms("cj-5");
    phone["to"]["phone"] = json!("0120-ABC");
    let mut disabled = sms("cj-6");
    disabled["fallback"] = json!(["webhook"]);
    // Refused by the channels' encoders, as the transports would refuse them.
    let mut long = sms("cj-8");
    long["template"] = Value::Null;
    long["content"] = json!({"sms": {"text": "春".repeat(800)}});
    let mut postal = job("cj-9", "dm");
    postal["to"]["postal"]["postal_code"] = json!("abc");
    vec![
        sms("cj-1"),
        unknown,
        vars,
        no_address,
        phone,
        disabled,
        job("cj-7", "line"),
        long,
        postal,
    ]
}

#[test]
fn check_jobs_reports_each_failing_line_and_enqueues_nothing() {
    let redis = Redis::start();
    let s = check_setup(&redis);
    let text: Vec<String> = check_lines().iter().map(Value::to_string).collect();
    let text = text.join("\n");
    let path = s.dir.path().join("jobs.jsonl");
    std::fs::write(&path, &text).unwrap();
    for args in [
        vec!["check-jobs", path.to_str().unwrap()],
        vec!["enqueue", "--check", path.to_str().unwrap()],
        vec!["check-jobs", "-"],
    ] {
        let out = s.run_with_stdin(&args, &text);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            7,
            "{args:?}: one line per failing job: {stdout}"
        );
        let expect = [
            ("line 2: job \"cj-2\": template:", "unknown_template"),
            ("line 3: job \"cj-3\": vars.items:", "missing_variable"),
            ("line 4: job \"cj-4\": to.phone:", "missing_address"),
            ("line 5: job \"cj-5\": to.phone:", "invalid_phone"),
            ("line 6: job \"cj-6\": fallback[0]:", "channel_disabled"),
            ("line 8: job \"cj-8\": content.sms:", "too_many_segments"),
            (
                "line 9: job \"cj-9\": to.postal.postal_code:",
                "invalid_address",
            ),
        ];
        for (line, (start, code)) in lines.iter().zip(expect) {
            assert!(
                line.starts_with(start) && line.ends_with(&format!("[{code}]")),
                "{line}"
            );
        }
        assert!(
            lines[1].contains("items") && !lines[1].contains("points"),
            "{}",
            lines[1]
        );
    }
    let mut conn = redis.conn();
    for ch in ["email", "line", "sms", "dm"] {
        assert_eq!(
            xlen(&mut conn, &format!("t:{{0}}:jobs:{ch}")),
            0,
            "nothing enqueued"
        );
    }
    // All good: exit 0.
    let good = format!("{}\n{}", sms("cj-1"), job("cj-7", "line"));
    let out = s.run_with_stdin(&["check-jobs", "-"], &good);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn enqueue_refuses_the_lines_that_fail_the_checks() {
    let redis = Redis::start();
    let s = check_setup(&redis);
    let text: Vec<String> = check_lines().iter().map(Value::to_string).collect();
    let out = s.run_with_stdin(&["enqueue", "-"], &text.join("\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("enqueued 2 jobs; 7 bad lines"), "{stderr}");
    assert!(
        stderr.contains("line 5: job \"cj-5\": to.phone"),
        "{stderr}"
    );
    let mut conn = redis.conn();
    assert_eq!(xlen(&mut conn, "t:{0}:jobs:sms"), 1);
    assert_eq!(xlen(&mut conn, "t:{0}:jobs:line"), 1);
    assert_eq!(xlen(&mut conn, "t:{0}:jobs:email"), 0);
}

/// On a Redis Cluster a job's claim (its id's partition) and its stream (its
/// customer's) may be in two slots: the API claims first with an origin token
/// the entry carries, and the daemon still sends each job once.
#[test]
fn on_a_cluster_claims_in_another_slot_still_send_once() {
    let cluster = common::cluster::RedisCluster::start();
    let s = setup_with_redis(
        &cluster.redis_section("partitions = 12\n"),
        "",
        &format!("{ALL_FILE}\n{}", api_table()),
    );
    let _daemon = s.start();
    s.wait_http();
    let keys = tayori::keys::Keys::new("t", 12);
    let jobs: Vec<Value> = (0..24)
        .map(|i| {
            let mut j = job(&format!("cl-{i}"), "sms");
            // Without a customer the stream is in the id's partition too.
            j["customer_id"] = match i % 3 {
                0 => Value::Null,
                _ => format!("C{i}").into(),
            };
            j
        })
        .collect();
    let split: Vec<bool> = jobs
        .iter()
        .map(|j| {
            let id = j["id"].as_str().unwrap();
            // The stream's partition against the claim's.
            keys.job_partition(j["customer_id"].as_str(), id) != tayori::keys::partition_of(id, 12)
        })
        .collect();
    assert!(
        split.iter().any(|s| *s) && split.iter().any(|s| !*s),
        "both kinds of job"
    );
    let body = serde_json::to_vec(&jobs).unwrap();
    let post = || {
        post_to(
            s.http_port,
            Some(KEY_1),
            "",
            "application/json",
            &body,
            true,
        )
    };
    let first = post();
    assert_eq!(first.status, 200, "{}", first.body);
    let first = first.json()["results"].clone();
    let again = post().json()["results"].clone();
    for (i, is_split) in split.iter().enumerate() {
        assert_eq!(first[i]["status"], "enqueued", "{first}");
        assert_eq!(again[i]["status"], "duplicate", "{again}");
        if !is_split {
            assert_eq!(again[i]["entry_id"], first[i]["entry_id"]);
        }
    }
    let ids: Vec<String> = (0..24).map(|i| format!("cl-{i}")).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t = terminal_by_job(&s.events_cli(&[]));
        if ids.iter().all(|id| t.contains_key(id)) {
            for id in &ids {
                assert_eq!(t[id], ["sent"], "{id}: sent once, not a duplicate");
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jobs not ended: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let late = post().json()["results"].clone();
    for (i, r) in late.as_array().unwrap().iter().enumerate() {
        assert_eq!(r["status"], "duplicate");
        assert_eq!(
            r["entry_id"], again[i]["entry_id"],
            "the same answer as before"
        );
    }
}
