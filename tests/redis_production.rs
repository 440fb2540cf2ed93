//! Redis in production: TLS (`rediss://`, a private CA, mutual TLS, a server name
//! other than the host), the least-privilege ACL user docs/security.md documents,
//! the scheme spellings, and a Sentinel failover under load. Real redis-server
//! processes (TLS-only, or a primary, a replica and a sentinel) and the real
//! `tayori` binary; the certificates are made by the test (tests/common/tls.rs).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::sentinel::{SentinelSet, MASTER_NAME};
use common::sentinel_tls::{SecureSentinelSet, SentinelOpts};
use common::tls::{Pki, TlsOpts, TlsRedis};
use common::*;

/// How long a config or connection problem may take to be reported (the contract).
const FAIL_FAST: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(60);

/// The test's own config (as `common::setup` writes it) with `redis` as the body of
/// `[redis]` (`prefix = "t"` is added).
fn config(redis: &str, queue: &str, channels: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
    let out = dir.path().join("outbox");
    let channels = channels.replace("{outbox}", &out.display().to_string());
    let http_port = free_port();
    let text = format!(
        r#"
[redis]
{redis}
prefix = "t"

[http]
listen = "127.0.0.1:{http_port}"
public_url = "http://127.0.0.1:{http_port}"
tracking_secret = "{TRACKING_SECRET}"
header_read_timeout = "2s"
request_timeout = "5s"

[templates]
dir = "{templates}"

[queue]
poll_interval = "50ms"
block = "200ms"
{queue}

[policy.quiet_hours]
sms = ""

{channels}
"#,
        templates = templates.display(),
    );
    let config = dir.path().join("tayori.toml");
    std::fs::write(&config, text).expect("write config");
    Setup {
        dir,
        config,
        http_port,
    }
}

/// `ALL_FILE` with VERP on (so `tayori bounce` has a return path to read).
fn channels_with_verp() -> String {
    ALL_FILE.replacen(
        "from = \"Example Shop <news@example.com>\"\n",
        "from = \"Example Shop <news@example.com>\"\nenvelope_from = \"bounces@example.com\"\nverp = true\n",
        1,
    )
}

/// `[redis]` for a TLS server trusting the test CA, plus `extra` lines.
fn tls_redis(r: &TlsRedis, pki: &Pki, extra: &str) -> String {
    format!(
        "url = \"{}\"\ntls_ca_file = \"{}\"\n{extra}",
        r.url(),
        pki.ca.display()
    )
}

fn path_line(key: &str, p: &Path) -> String {
    format!("{key} = \"{}\"\n", p.display())
}

/// What a finished (or timed-out: `code` None) command did.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` with `stdin`, killing it after `timeout`.
fn finish(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Out {
    let start = Instant::now();
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tayori");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    Out {
        code,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        took,
    }
}

fn tayori(s: &Setup, args: &[&str]) -> Out {
    let mut c = s.tayori();
    c.args(args);
    finish(c, None, WAIT)
}

fn check_connect(s: &Setup) -> Out {
    let mut c = s.tayori();
    c.args(["check-config", "--connect"]);
    finish(c, None, FAIL_FAST + Duration::from_secs(5))
}

/// `check-config --connect` exits 1 in time with a message holding every one of
/// `words` (case-insensitively).
fn assert_refused(out: &Out, code: i32, words: &[&str]) {
    assert_eq!(out.code, Some(code), "{out:?}");
    assert!(out.took < FAIL_FAST, "took {:?}: {out:?}", out.took);
    let stderr = out.stderr.to_lowercase();
    for w in words {
        assert!(
            stderr.contains(&w.to_lowercase()),
            "stderr does not name {w:?}: {}",
            out.stderr
        );
    }
}

fn jobs_file(s: &Setup, name: &str, jobs: &[Value]) -> PathBuf {
    let path = s.dir.path().join(name);
    let mut text = String::new();
    for j in jobs {
        text.push_str(&j.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write jobs");
    path
}

fn enqueue_cli(s: &Setup, cmd: Command, jobs: &[Value]) {
    let path = jobs_file(s, "jobs.jsonl", jobs);
    let mut cmd = cmd;
    cmd.arg("enqueue").arg(&path);
    let out = finish(cmd, None, WAIT);
    assert_eq!(out.code, Some(0), "tayori enqueue: {out:?}");
}

fn drain(cmd: Command) {
    let mut cmd = cmd;
    cmd.args(["run", "--drain"]);
    let out = finish(cmd, None, WAIT);
    assert_eq!(out.code, Some(0), "tayori run --drain: {out:?}");
}

/// `n` jobs on each of the four channels.
fn four_channel_jobs(tag: &str, n: usize) -> Vec<Value> {
    ["email", "line", "sms", "dm"]
        .iter()
        .flat_map(|ch| (0..n).map(move |i| job(&format!("{tag}-{ch}-{i}"), ch)))
        .collect()
}

fn bounce_fixture() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("channels/tests/fixtures/dsn/postfix_user_unknown.eml"),
    )
    .expect("DSN fixture")
}

fn role(conn: &mut redis::Connection) -> String {
    match redis::cmd("ROLE").query::<redis::Value>(conn) {
        Ok(redis::Value::Array(v)) => match v.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    }
}

/// The email stream, its group and the delayed and dead sets on the node on
/// `port`, for failure messages.
fn queue_state(port: u16) -> String {
    let Ok(mut c) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
    else {
        return "unreachable".into();
    };
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("t:jobs:email")
        .query(&mut c)
        .unwrap_or(redis::Value::Nil);
    let consumers: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("t:jobs:email")
        .arg("tayori")
        .query(&mut c)
        .unwrap_or(redis::Value::Nil);
    let delayed: usize = redis::cmd("ZCARD")
        .arg("t:delayed")
        .query(&mut c)
        .unwrap_or(0);
    format!(
        "t:results length {}, t:jobs:email length {}, groups {groups:?}, consumers {consumers:?}, \
         t:delayed {delayed}, t:dead {}",
        xlen(&mut c, "t:results"),
        xlen(&mut c, "t:jobs:email"),
        xlen(&mut c, "t:dead"),
    )
}

fn pki() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    (dir, pki)
}

// ---------------------------------------------------------------------------
// The fixtures themselves

/// The fixtures work without Tayori: TLS-only redis (with and without client
/// certificates, with the documented ACL user), the name-only certificate, the
/// expired one, and the Sentinel set's failover.
#[test]
fn fixtures_start() {
    let (_d, pki) = pki();

    // TLS only, no client certificates: PING over TLS, no plaintext port.
    let r = TlsRedis::start(&pki, TlsOpts::default());
    let mut c = r.conn();
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
    let port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query(&mut c)
        .unwrap();
    assert_eq!(port[1], "0", "no plaintext port");
    let wrong_ca = redis::Client::build_with_tls(
        r.url(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&pki.other_ca).unwrap()),
        },
    )
    .unwrap()
    .get_connection_with_timeout(Duration::from_secs(2))
    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(
        wrong_ca.is_err(),
        "the other CA is not trusted: {wrong_ca:?}"
    );

    // Mutual TLS, a password on `default` and the documented ACL user.
    let r = TlsRedis::start(
        &pki,
        TlsOpts {
            auth_clients: true,
            requirepass: Some("admin-pw".into()),
            acl_password: Some("tayori-pw".into()),
            ..TlsOpts::default()
        },
    );
    let mut c = r.conn();
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
    let no_client_cert = redis::Client::build_with_tls(
        format!("rediss://:admin-pw@127.0.0.1:{}", r.port),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&pki.ca).unwrap()),
        },
    )
    .unwrap()
    .get_connection_with_timeout(Duration::from_secs(2))
    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(no_client_cert.is_err(), "{no_client_cert:?}");
    let mut t = r
        .conn_as("tayori", "tayori-pw")
        .expect("the ACL user logs in");
    let _: String = redis::cmd("XADD")
        .arg("t:jobs:email")
        .arg("*")
        .arg("job")
        .arg("{}")
        .query(&mut t)
        .expect("XADD on the prefix");
    let other_key = redis::cmd("GET")
        .arg("other:key")
        .query::<Option<String>>(&mut t);
    assert!(other_key.is_err(), "keys outside the prefix: {other_key:?}");
    let flush = redis::cmd("FLUSHALL").query::<String>(&mut t);
    assert!(flush.is_err(), "FLUSHALL: {flush:?}");
    assert!(r.conn_as("tayori", "wrong").is_err());
    let rules: Vec<redis::Value> = redis::cmd("ACL")
        .arg("GETUSER")
        .arg("tayori")
        .query(&mut c)
        .unwrap();
    assert!(!rules.is_empty());

    // The `redis.internal`-only certificate: 127.0.0.1 does not match it; the
    // expired one does not verify either. Both have a plaintext admin port.
    for cert in [pki.internal.clone(), pki.expired.clone()] {
        let r = TlsRedis::start(
            &pki,
            TlsOpts {
                server_cert: Some(cert.clone()),
                ..TlsOpts::default()
            },
        );
        assert!(r.plain_port.is_some());
        let mut c = r.conn();
        assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
        let tls = redis::Client::build_with_tls(r.url(), r.certificates())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        assert!(tls.is_err(), "{cert:?}: {tls:?}");
        // redis-cli checks the chain but not the name: the internal one is served.
        if cert == pki.internal {
            let out = Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(&pki.ca)
                .args(["-h", "127.0.0.1", "-p", &r.port.to_string(), "PING"])
                .output()
                .expect("redis-cli");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");
        }
    }

    // Sentinel: the replica takes over after the primary is killed.
    let mut set = SentinelSet::start();
    let mut p = set.primary_conn();
    assert_eq!(role(&mut p), "master");
    assert_eq!(role(&mut set.conn_to(set.replica_port)), "slave");
    let _: () = redis::cmd("SET")
        .arg("t:before")
        .arg("1")
        .query(&mut p)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(2000).query(&mut p).unwrap();
    assert_eq!(acked, 1);
    let started = Instant::now();
    let killed = set.kill_primary();
    assert_eq!(killed, set.first_primary_port);
    let new = set.wait_for_failover(Duration::from_secs(30));
    eprintln!("failover took {:?}", started.elapsed());
    assert_eq!(new, set.replica_port);
    let mut p = set.primary_conn();
    assert_eq!(role(&mut p), "master");
    let before: Option<String> = redis::cmd("GET").arg("t:before").query(&mut p).unwrap();
    assert_eq!(before.as_deref(), Some("1"));
}

// ---------------------------------------------------------------------------
// TLS

/// (a) A TLS-only Redis (no plaintext port): enqueue, the daemon, stats, dead
/// letters, the report and the bounce pipe all work over `rediss://`.
#[test]
fn a_tls_only_redis_carries_the_daemon_and_every_cli_command() {
    let (_d, pki) = pki();
    let r = TlsRedis::start(&pki, TlsOpts::default());
    let s = config(&tls_redis(&r, &pki, ""), "", &channels_with_verp());
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let jobs = four_channel_jobs("tls", 5);
    enqueue_cli(&s, s.tayori(), &jobs);
    drain(s.tayori());
    let mut conn = r.conn();
    let evs = events(&mut conn);
    assert_eq!(count(&evs, "sent"), jobs.len(), "{evs:?}");
    for ch in ["email", "line", "sms", "dm"] {
        assert_eq!(s.outbox_files(ch).len(), 5, "{ch}");
    }

    let out = tayori(&s, &["stats", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let _: Value = serde_json::from_str(&out.stdout).expect("stats --json prints JSON");
    let out = tayori(&s, &["dead", "list"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = tayori(&s, &["report", "--campaign", "test", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let report: Value = serde_json::from_str(&out.stdout).expect("report --json prints JSON");
    assert!(report.to_string().contains("email"), "{report}");
    let mut c = s.tayori();
    c.arg("bounce");
    let out = finish(c, Some(&bounce_fixture()), WAIT);
    assert_eq!(out.code, Some(0), "tayori bounce (75: Redis away): {out:?}");
}

/// (b) A server whose certificate the configured CA did not sign: a certificate
/// error naming redis.tls_ca_file, at once, from check-config and from `run`.
#[test]
fn a_wrong_ca_is_a_certificate_error_naming_tls_ca_file() {
    let (_d, pki) = pki();
    let r = TlsRedis::start(&pki, TlsOpts::default());
    let s = config(
        &format!(
            "url = \"{}\"\n{}",
            r.url(),
            path_line("tls_ca_file", &pki.other_ca)
        ),
        "",
        ALL_FILE,
    );
    assert_refused(&check_connect(&s), 1, &["certificate", "redis.tls_ca_file"]);
    let mut c = s.tayori();
    c.arg("run");
    let out = finish(c, None, FAIL_FAST + Duration::from_secs(5));
    assert_refused(&out, 2, &["certificate", "redis.tls_ca_file"]);

    // No tls_ca_file: Mozilla's roots do not know the test CA either.
    let s = config(&format!("url = \"{}\"", r.url()), "", ALL_FILE);
    assert_refused(&check_connect(&s), 1, &["certificate", "redis.tls_ca_file"]);
}

/// (c) A wrong password for the ACL user: an auth error naming redis.password, and
/// neither password in anything printed.
#[test]
fn a_wrong_password_is_an_auth_error_and_never_printed() {
    const RIGHT: &str = "right-pw-7f3a9c1e5b";
    const WRONG: &str = "wrong-pw-2d8e4b6a0c";
    let (_d, pki) = pki();
    let r = TlsRedis::start(
        &pki,
        TlsOpts {
            acl_password: Some(RIGHT.into()),
            ..TlsOpts::default()
        },
    );
    let s = config(
        &tls_redis(
            &r,
            &pki,
            &format!("username = \"tayori\"\npassword = \"{WRONG}\""),
        ),
        "",
        ALL_FILE,
    );
    let out = check_connect(&s);
    assert_refused(&out, 1, &["auth", "redis.password"]);
    for secret in [RIGHT, WRONG] {
        assert!(!out.all().contains(secret), "{secret} printed: {out:?}");
    }
    let mut c = s.tayori();
    c.arg("run");
    let out = finish(c, None, FAIL_FAST + Duration::from_secs(5));
    assert_refused(&out, 2, &["auth", "redis.password"]);
    assert!(!out.all().contains(WRONG), "the password printed: {out:?}");

    // The bounce pipe: a refused password is a config error (78) the MTA reports,
    // not a temporary failure (75) it would retry for days.
    let s = config(
        &tls_redis(
            &r,
            &pki,
            &format!("username = \"tayori\"\npassword = \"{WRONG}\""),
        ),
        "",
        &channels_with_verp(),
    );
    let mut c = s.tayori();
    c.arg("bounce");
    let out = finish(c, Some(&bounce_fixture()), WAIT);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.contains("auth"), "{out:?}");
    assert!(!out.all().contains(WRONG), "the password printed: {out:?}");

    // The same password in the URL: refused, and not printed either.
    let s = config(
        &format!(
            "url = \"rediss://tayori:{WRONG}@127.0.0.1:{}\"\n{}",
            r.port,
            path_line("tls_ca_file", &pki.ca)
        ),
        "",
        ALL_FILE,
    );
    let out = check_connect(&s);
    assert_refused(&out, 1, &["auth"]);
    assert!(
        out.stderr.contains("redis.url") || out.stderr.contains("redis.password"),
        "names the key to fix: {out:?}"
    );
    assert!(!out.all().contains(WRONG), "the password printed: {out:?}");

    // And the right one works.
    let s = config(
        &tls_redis(
            &r,
            &pki,
            &format!("username = \"tayori\"\npassword = \"{RIGHT}\""),
        ),
        "",
        ALL_FILE,
    );
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.all().contains(RIGHT), "the password printed: {out:?}");
}

/// (d) Mutual TLS: without a client certificate the server refuses (a certificate
/// error naming redis.tls_cert_file); with one, jobs flow; a client certificate
/// from another CA is refused.
#[test]
fn mutual_tls_needs_the_client_certificate() {
    let (_d, pki) = pki();
    let r = TlsRedis::start(
        &pki,
        TlsOpts {
            auth_clients: true,
            ..TlsOpts::default()
        },
    );
    let s = config(&tls_redis(&r, &pki, ""), "", ALL_FILE);
    assert_refused(
        &check_connect(&s),
        1,
        &["certificate", "redis.tls_cert_file"],
    );

    let foreign = format!(
        "{}{}",
        path_line("tls_cert_file", &pki.other_client.cert),
        path_line("tls_key_file", &pki.other_client.key)
    );
    let s = config(&tls_redis(&r, &pki, &foreign), "", ALL_FILE);
    assert_refused(&check_connect(&s), 1, &["certificate"]);

    let ours = format!(
        "{}{}",
        path_line("tls_cert_file", &pki.client.cert),
        path_line("tls_key_file", &pki.client.key)
    );
    let s = config(&tls_redis(&r, &pki, &ours), "", ALL_FILE);
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let jobs = four_channel_jobs("mtls", 3);
    enqueue_cli(&s, s.tayori(), &jobs);
    drain(s.tayori());
    let evs = events(&mut r.conn());
    assert_eq!(count(&evs, "sent"), jobs.len(), "{evs:?}");
    let out = tayori(&s, &["stats", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
}

/// (e) The least-privilege ACL user of docs/security.md, over TLS, with its
/// password from the environment: the daemon and the CLI work and Redis denies
/// nothing (`ACL LOG` stays empty). `default` has a password of its own, so
/// Tayori cannot be getting in as `default`.
#[test]
fn the_documented_acl_user_runs_everything_over_tls() {
    const PASSWORD: &str = "acl-tls-pw-0123456789";
    let (_d, pki) = pki();
    let r = TlsRedis::start(
        &pki,
        TlsOpts {
            requirepass: Some("admin-only-pw".into()),
            acl_password: Some(PASSWORD.into()),
            ..TlsOpts::default()
        },
    );
    let s = config(
        &tls_redis(
            &r,
            &pki,
            "username = \"tayori\"\npassword = \"${TAYORI_TEST_REDIS_PASSWORD}\"",
        ),
        "",
        &channels_with_verp(),
    );
    let cmd = || {
        let mut c = s.tayori();
        c.env("TAYORI_TEST_REDIS_PASSWORD", PASSWORD);
        c
    };
    let mut c = cmd();
    c.args(["check-config", "--connect"]);
    let out = finish(c, None, WAIT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let jobs = four_channel_jobs("acl", 4);
    enqueue_cli(&s, cmd(), &jobs);
    drain(cmd());
    let mut admin = r.conn();
    let evs = events(&mut admin);
    assert_eq!(count(&evs, "sent"), jobs.len(), "{evs:?}");
    for args in [
        &["stats", "--json"][..],
        &["dead", "list"][..],
        &["report", "--campaign", "test", "--json"][..],
    ] {
        let mut c = cmd();
        c.args(args);
        let out = finish(c, None, WAIT);
        assert_eq!(out.code, Some(0), "tayori {args:?}: {out:?}");
        assert!(!out.all().contains(PASSWORD), "the password printed");
    }
    let mut c = cmd();
    c.arg("bounce");
    let out = finish(c, Some(&bounce_fixture()), WAIT);
    assert_eq!(out.code, Some(0), "tayori bounce: {out:?}");
    let denied: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut admin).unwrap();
    assert!(
        denied.is_empty(),
        "commands or keys the documented ACL does not allow: {denied:?}"
    );
}

/// (f) A certificate for `redis.internal` only, reached at 127.0.0.1: accepted with
/// tls_server_name = "redis.internal", a certificate error without it.
#[test]
fn tls_server_name_checks_the_certificate_against_another_name() {
    let (_d, pki) = pki();
    let r = TlsRedis::start(
        &pki,
        TlsOpts {
            server_cert: Some(pki.internal.clone()),
            ..TlsOpts::default()
        },
    );
    let s = config(
        &tls_redis(&r, &pki, "tls_server_name = \"redis.internal\""),
        "",
        ALL_FILE,
    );
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let jobs = four_channel_jobs("sni", 2);
    enqueue_cli(&s, s.tayori(), &jobs);
    drain(s.tayori());
    let evs = events(&mut r.conn());
    assert_eq!(count(&evs, "sent"), jobs.len(), "{evs:?}");

    let s = config(&tls_redis(&r, &pki, ""), "", ALL_FILE);
    assert_refused(&check_connect(&s), 1, &["certificate"]);
    let s = config(
        &tls_redis(&r, &pki, "tls_server_name = \"other.internal\""),
        "",
        ALL_FILE,
    );
    assert_refused(&check_connect(&s), 1, &["certificate"]);
}

/// An expired server certificate is a certificate error.
#[test]
fn an_expired_server_certificate_is_refused() {
    let (_d, pki) = pki();
    let r = TlsRedis::start(
        &pki,
        TlsOpts {
            server_cert: Some(pki.expired.clone()),
            ..TlsOpts::default()
        },
    );
    let s = config(&tls_redis(&r, &pki, ""), "", ALL_FILE);
    assert_refused(&check_connect(&s), 1, &["certificate"]);
}

/// (g) The scheme is case-insensitive and `valkey(s)://` means `redis(s)://`.
#[test]
fn every_scheme_spelling_connects() {
    let (_d, pki) = pki();
    let r = TlsRedis::start(&pki, TlsOpts::default());
    for url in [
        format!("REDISS://127.0.0.1:{}", r.port),
        format!("valkeys://localhost:{}", r.port),
        format!("Valkeys://127.0.0.1:{}", r.port),
    ] {
        let s = config(
            &format!("url = \"{url}\"\n{}", path_line("tls_ca_file", &pki.ca)),
            "",
            ALL_FILE,
        );
        let out = check_connect(&s);
        assert_eq!(out.code, Some(0), "{url}: {out:?}");
    }
    let plain = Redis::start();
    for url in [
        format!("valkey://127.0.0.1:{}", plain.port),
        format!("VALKEY://127.0.0.1:{}", plain.port),
        format!("Redis://127.0.0.1:{}", plain.port),
    ] {
        let s = config(&format!("url = \"{url}\""), "", ALL_FILE);
        let out = check_connect(&s);
        assert_eq!(out.code, Some(0), "{url}: {out:?}");
    }
    // And a job goes through valkey://.
    let s = config(
        &format!("url = \"valkey://127.0.0.1:{}\"", plain.port),
        "",
        ALL_FILE,
    );
    enqueue_cli(&s, s.tayori(), &[job("vk-1", "dm")]);
    drain(s.tayori());
    assert_eq!(count(&events(&mut plain.conn()), "sent"), 1);
}

// ---------------------------------------------------------------------------
// Sentinel

/// What a failover run saw.
struct FailoverRun {
    setup: Setup,
    daemon: Daemon,
    /// Events in `t:results` when the primary was killed.
    at_kill: usize,
    failover: Duration,
    new_port: u16,
}

/// A Sentinel set with `replicas` replicas; a daemon (`wait_replicas = 1`,
/// `wait_timeout = "1s"`) started, then `n` email jobs enqueued through Sentinel
/// with `tayori enqueue` (finished before the kill); the primary SIGKILLed once
/// `kill_after` events are in `t:results`; then every job must end with exactly
/// one terminal event on the new primary within `deadline`.
fn failover_run(
    set: &mut SentinelSet,
    n: usize,
    kill_after: usize,
    deadline: Duration,
) -> FailoverRun {
    // Email slowed to 500/s so the kill lands mid-run; a short reclaim_idle so
    // entries whose outcome died with the old primary come back within seconds.
    let channels = ALL_FILE.replacen(
        "from = \"Example Shop <news@example.com>\"\nrate = \"100000/s\"",
        "from = \"Example Shop <news@example.com>\"\nrate = \"500/s\"",
        1,
    );
    assert_ne!(channels, ALL_FILE);
    let s = config(
        &format!(
            "sentinels = [\"{}\"]\nmaster_name = \"mymaster\"\nwait_replicas = 1\nwait_timeout = \"1s\"",
            set.sentinel_url()
        ),
        "reclaim_idle = \"4s\"\nshutdown_grace = \"2s\"",
        &channels,
    );
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");

    let daemon = s.start();
    s.wait_http();
    let jobs: Vec<Value> = (0..n)
        .map(|i| {
            let mut j = job(&format!("fo-{i}"), "email");
            j["to"]["email"] = json!(format!("user{i}@example.com"));
            j
        })
        .collect();
    let ids: HashSet<String> = (0..n).map(|i| format!("fo-{i}")).collect();
    enqueue_cli(&s, s.tayori(), &jobs);

    let mut primary = set.primary_conn();
    let until = Instant::now() + WAIT;
    let at_kill = loop {
        let results = xlen(&mut primary, "t:results");
        if results >= kill_after {
            break results;
        }
        assert!(
            Instant::now() < until,
            "only {results} events before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let killed_at = Instant::now();
    let killed = set.kill_primary();
    let new_port = set.wait_for_failover(Duration::from_secs(30));
    let failover = killed_at.elapsed();
    assert!(
        set.replica_ports.contains(&new_port) && new_port != killed,
        "{new_port}"
    );
    // A fresh connection per look, and read errors surfaced: once, a connection
    // opened right after the failover read nothing for 90 s (events() swallows
    // errors) while the node held every outcome.
    let new_events = || {
        let mut c = set.conn_to(new_port);
        redis::cmd("XRANGE")
            .arg("t:results")
            .arg("-")
            .arg("+")
            .query::<Vec<(String, Vec<(String, String)>)>>(&mut c)
            .map(|entries| {
                entries
                    .into_iter()
                    .filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == "event"))
                    .filter_map(|(_, v)| serde_json::from_str::<Value>(&v).ok())
                    .collect::<Vec<_>>()
            })
    };

    let check = |evs: &[Value]| {
        let by_job = terminal_by_job(evs);
        let missing: Vec<&String> = ids.iter().filter(|id| !by_job.contains_key(*id)).collect();
        let doubled: Vec<(&String, &Vec<String>)> =
            by_job.iter().filter(|(_, v)| v.len() > 1).collect();
        let mut types: HashMap<String, usize> = HashMap::new();
        for e in evs {
            *types
                .entry(e["type"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        let summary = format!(
            "{} of {n} jobs without an outcome (e.g. {:?}), {} with more than one (e.g. {:?}); \
             events by type on the new primary: {types:?}; {at_kill} events when the primary \
             was killed, failover took {failover:?}; queue on the new primary: {}",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>(),
            doubled.len(),
            doubled.iter().take(5).collect::<Vec<_>>(),
            queue_state(new_port),
        );
        (missing.is_empty(), doubled.is_empty(), summary)
    };
    let until = Instant::now() + deadline;
    loop {
        let evs = match new_events() {
            Ok(evs) => evs,
            Err(e) => {
                assert!(Instant::now() < until, "reading t:results: {e}");
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
        };
        let (complete, once, summary) = check(&evs);
        assert!(once, "{summary}");
        if complete {
            break;
        }
        assert!(Instant::now() < until, "after {deadline:?}: {summary}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // A late duplicate would show within a reclaim period.
    std::thread::sleep(Duration::from_secs(5));
    let (complete, once, summary) = check(&new_events().expect("read t:results"));
    assert!(complete && once, "{summary}");
    FailoverRun {
        setup: s,
        daemon,
        at_kill,
        failover,
        new_port,
    }
}

/// (h) The daemon follows a failover without a restart: 3,000 email jobs enqueued
/// through Sentinel (WAIT 1 after each pipeline) while it runs; the primary is
/// SIGKILLed after about 1,000 are sent; on the new primary every job ends with
/// exactly one terminal event. Two replicas: the one not promoted follows the new
/// primary, so `WAIT 1` keeps being met (as in production, where
/// `wait_replicas = N` needs N + 1 replicas to survive a failover).
#[test]
fn the_daemon_follows_a_sentinel_failover_and_loses_no_job() {
    let mut set = SentinelSet::start_with_replicas(2);
    let mut run = failover_run(&mut set, 3_000, 1_000, Duration::from_secs(90));
    eprintln!(
        "failover after {} events took {:?}; new primary on port {}",
        run.at_kill, run.failover, run.new_port
    );
    assert_eq!(
        run.daemon.terminate(Duration::from_secs(20)),
        Some(0),
        "the daemon carried on and stops cleanly on SIGTERM"
    );
}

/// A failover that leaves the new primary without a replica: every `WAIT 1` falls
/// short (counted in `tayori_redis_wait_short_total`), and the daemon still
/// finishes every job exactly once.
#[test]
fn after_a_failover_that_leaves_no_replica_jobs_still_finish_once() {
    let mut set = SentinelSet::start();
    let mut run = failover_run(&mut set, 300, 100, Duration::from_secs(90));
    let short = run
        .setup
        .metric("tayori_redis_wait_short_total{op=\"finish\"}");
    assert!(short > 0.0, "WAIT shortfalls counted: {short}");
    assert_eq!(
        run.daemon.terminate(Duration::from_secs(20)),
        Some(0),
        "the daemon carried on and stops cleanly on SIGTERM"
    );
}

// ---------------------------------------------------------------------------
// Sentinel over TLS, and a sentinel with an ACL user

/// `[redis]` through the set's sentinel (`rediss://` when the set speaks TLS),
/// plus `extra` lines.
fn through_sentinel(set: &SecureSentinelSet, extra: &str) -> String {
    format!(
        "sentinels = [\"{}\"]\nmaster_name = \"{MASTER_NAME}\"\n{extra}",
        set.sentinel_url()
    )
}

/// The terminal events in `t:results` on `conn`'s node, by job id.
fn sent_ids(conn: &mut redis::Connection) -> HashSet<String> {
    events(conn)
        .into_iter()
        .filter(|e| e["type"] == "sent")
        .filter_map(|e| e["job_id"].as_str().map(str::to_owned))
        .collect()
}

/// Sentinel over TLS (every node and the sentinel TLS-only, replication and the
/// sentinel's monitoring over TLS): `rediss://` sentinels with the test CA carry
/// check-config, enqueue, the daemon, stats and the report; after a SIGKILL of the
/// primary and the failover, check-config and a second batch reach the new
/// primary; a CA that did not sign the certificates is a certificate error.
#[test]
fn sentinel_over_tls_carries_jobs_and_follows_a_failover() {
    let (_d, pki) = pki();
    let mut set = SecureSentinelSet::start_with(SentinelOpts {
        tls: Some(pki.clone()),
        ..SentinelOpts::default()
    });
    // The fixture is TLS-only: no plaintext port on the data nodes, and the
    // sentinel names the primary by its TLS port.
    let mut p = set.primary_conn();
    let port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query(&mut p)
        .unwrap();
    assert_eq!(port[1], "0", "no plaintext port");
    assert_eq!(set.primary_port().unwrap(), set.first_primary_port);
    assert_eq!(set.role_of(set.replica_port).as_deref(), Some("slave"));

    let s = config(
        &through_sentinel(&set, &path_line("tls_ca_file", &pki.ca)),
        "",
        ALL_FILE,
    );
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let first = four_channel_jobs("stls1", 3);
    enqueue_cli(&s, s.tayori(), &first);
    drain(s.tayori());
    let sent = sent_ids(&mut set.primary_conn());
    assert_eq!(sent.len(), first.len(), "{sent:?}");
    for ch in ["email", "line", "sms", "dm"] {
        assert_eq!(s.outbox_files(ch).len(), 3, "{ch}");
    }
    let out = tayori(&s, &["stats", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let _: Value = serde_json::from_str(&out.stdout).expect("stats --json prints JSON");
    let out = tayori(&s, &["report", "--campaign", "test", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let report: Value = serde_json::from_str(&out.stdout).expect("report --json prints JSON");
    assert!(report.to_string().contains("email"), "{report}");
    // The replica has the first batch before the kill (AOF + replication).
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut set.primary_conn())
        .unwrap();
    assert_eq!(acked, 1);

    let started = Instant::now();
    let killed = set.kill_primary();
    assert_eq!(killed, set.first_primary_port);
    let new_port = set.wait_for_failover(Duration::from_secs(20));
    eprintln!("TLS failover took {:?}", started.elapsed());
    assert_eq!(new_port, set.replica_port);

    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "after the failover: {out:?}");
    let second = four_channel_jobs("stls2", 3);
    enqueue_cli(&s, s.tayori(), &second);
    drain(s.tayori());
    let sent = sent_ids(&mut set.conn_to(new_port));
    for j in first.iter().chain(&second) {
        let id = j["id"].as_str().unwrap();
        assert!(
            sent.contains(id),
            "{id} not sent on the new primary: {sent:?}"
        );
    }
    for ch in ["email", "line", "sms", "dm"] {
        assert_eq!(s.outbox_files(ch).len(), 6, "{ch}");
    }
    let out = tayori(&s, &["report", "--campaign", "test", "--json"]);
    assert_eq!(out.code, Some(0), "report after the failover: {out:?}");

    // A CA that signed none of the certificates: the sentinel itself is refused.
    let s = config(
        &through_sentinel(&set, &path_line("tls_ca_file", &pki.other_ca)),
        "",
        ALL_FILE,
    );
    assert_refused(&check_connect(&s), 1, &["certificate", "redis.tls_ca_file"]);
}

/// The sentinel's ACL user and password of the Sentinel ACL tests.
const SENTINEL_USER: &str = "sentinel-user";
const SENTINEL_RIGHT: &str = "spw-right-5c1d7e9a3b";
const SENTINEL_WRONG: &str = "spw-wrong-8f2a6c0e4d";

/// A plain-TCP Sentinel set whose sentinel has the ACL user `SENTINEL_USER` with
/// `SENTINEL_RIGHT`, `default` off.
fn sentinel_with_acl_user() -> SecureSentinelSet {
    let set = SecureSentinelSet::start_with(SentinelOpts {
        sentinel_user: Some((SENTINEL_USER.into(), SENTINEL_RIGHT.into())),
        ..SentinelOpts::default()
    });
    // Nobody gets into the sentinel anonymously.
    let anonymous = set
        .anonymous_sentinel_conn()
        .and_then(|mut c| redis::cmd("ROLE").query::<redis::Value>(&mut c));
    assert!(anonymous.is_err(), "anonymous ROLE: {anonymous:?}");
    set
}

/// `[redis]` through `set`'s sentinel as `SENTINEL_USER` with `password`.
fn sentinel_login(set: &SecureSentinelSet, password: &str) -> String {
    through_sentinel(
        set,
        &format!("sentinel_username = \"{SENTINEL_USER}\"\nsentinel_password = \"{password}\""),
    )
}

/// A sentinel whose only user is an ACL user (`default` off): Tayori logs in with
/// sentinel_username / sentinel_password and jobs flow; a wrong sentinel password
/// (or none) is an auth error, at once, from check-config (exit 1) and from `run`
/// (exit 2), and neither password is ever printed.
#[test]
fn a_sentinel_acl_user_logs_in_and_a_wrong_sentinel_password_is_an_auth_error() {
    let set = sentinel_with_acl_user();
    let s = config(&sentinel_login(&set, SENTINEL_RIGHT), "", ALL_FILE);
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !out.all().contains(SENTINEL_RIGHT),
        "the password printed: {out:?}"
    );
    let jobs = four_channel_jobs("sacl", 3);
    enqueue_cli(&s, s.tayori(), &jobs);
    drain(s.tayori());
    let sent = sent_ids(&mut set.primary_conn());
    assert_eq!(sent.len(), jobs.len(), "{sent:?}");
    let out = tayori(&s, &["stats", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !out.all().contains(SENTINEL_RIGHT),
        "the password printed: {out:?}"
    );

    let s = config(&sentinel_login(&set, SENTINEL_WRONG), "", ALL_FILE);
    let out = check_connect(&s);
    assert_refused(&out, 1, &["auth"]);
    for secret in [SENTINEL_RIGHT, SENTINEL_WRONG] {
        assert!(!out.all().contains(secret), "{secret} printed: {out:?}");
    }
    let mut c = s.tayori();
    c.arg("run");
    let out = finish(c, None, FAIL_FAST + Duration::from_secs(5));
    assert_refused(&out, 2, &["auth"]);
    for secret in [SENTINEL_RIGHT, SENTINEL_WRONG] {
        assert!(!out.all().contains(secret), "{secret} printed: {out:?}");
    }

    // No sentinel credentials at all: the sentinel answers NOAUTH.
    let s = config(&through_sentinel(&set, ""), "", ALL_FILE);
    assert_refused(&check_connect(&s), 1, &["auth"]);
}

/// The keys a refused sentinel login names: the sentinels' login
/// (redis.sentinel_password), and never redis.url, which cannot be set with
/// sentinels. (The crate's error does not say which login was refused, so the
/// message names the primary's keys too.)
#[test]
fn a_refused_sentinel_login_names_the_sentinel_keys() {
    let set = sentinel_with_acl_user();
    for redis in [
        sentinel_login(&set, SENTINEL_WRONG),
        through_sentinel(&set, ""),
    ] {
        let s = config(&redis, "", ALL_FILE);
        for (args, code) in [(&["check-config", "--connect"][..], 1), (&["run"][..], 2)] {
            let mut c = s.tayori();
            c.args(args);
            let out = finish(c, None, FAIL_FAST + Duration::from_secs(5));
            assert_refused(&out, code, &["auth", "redis.sentinel_password"]);
            assert!(
                !out.stderr.contains("redis.url"),
                "names redis.url, which cannot be set with sentinels: {args:?} {out:?}"
            );
        }
    }
}

/// Mutual TLS through Sentinel, with the sentinel's ACL user over TLS: the client
/// certificate of tls_cert_file / tls_key_file goes to the sentinel and to the
/// data nodes and jobs flow; without it, a certificate error naming
/// redis.tls_cert_file.
#[test]
fn mutual_tls_through_a_sentinel_with_an_acl_user() {
    const PASSWORD: &str = "spw-mtls-1a2b3c4d5e";
    let (_d, pki) = pki();
    let set = SecureSentinelSet::start_with(SentinelOpts {
        tls: Some(pki.clone()),
        mutual_tls: true,
        sentinel_user: Some(("sentinel-user".into(), PASSWORD.into())),
        ..SentinelOpts::default()
    });
    let login = format!(
        "{}sentinel_username = \"sentinel-user\"\nsentinel_password = \"{PASSWORD}\"\n",
        path_line("tls_ca_file", &pki.ca)
    );
    let client_cert = format!(
        "{}{}",
        path_line("tls_cert_file", &pki.client.cert),
        path_line("tls_key_file", &pki.client.key)
    );
    let s = config(
        &through_sentinel(&set, &format!("{login}{client_cert}")),
        "",
        ALL_FILE,
    );
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let jobs = four_channel_jobs("smtls", 2);
    enqueue_cli(&s, s.tayori(), &jobs);
    drain(s.tayori());
    let sent = sent_ids(&mut set.primary_conn());
    assert_eq!(sent.len(), jobs.len(), "{sent:?}");
    for args in [
        &["stats", "--json"][..],
        &["report", "--campaign", "test", "--json"][..],
    ] {
        let out = tayori(&s, args);
        assert_eq!(out.code, Some(0), "tayori {args:?}: {out:?}");
        assert!(!out.all().contains(PASSWORD), "the password printed");
    }

    let s = config(&through_sentinel(&set, &login), "", ALL_FILE);
    let out = check_connect(&s);
    eprintln!("no client certificate through Sentinel: {out:?}");
    assert_refused(&out, 1, &["certificate", "redis.tls_cert_file"]);
}
