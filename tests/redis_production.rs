//! Redis in production: TLS (`rediss://`, a private CA, mutual TLS, a server name
//! other than the host), the least-privilege ACL user docs/security.md documents,
//! the scheme spellings, and a Sentinel failover under load. Real redis-server
//! processes (TLS-only, or a primary, a replica and a sentinel) and the real
//! `tayori` binary; the certificates are made by the test (the test kit's testkit/src/tls.rs).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::sentinel::{SentinelOpts, SentinelSet};
use common::tls::{CertKey, Pki, TlsOpts, TlsRedis};
use common::*;

/// How long a config or connection problem may take to be reported (the contract).
const FAIL_FAST: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(60);

/// The four channels of `ALL_FILE`.
const CHANNELS: [&str; 4] = ["email", "line", "sms", "dm"];

/// The common setup (file channels, the default queue) with `redis_section` as
/// the body of `[redis]`.
fn setup_all_file(redis_section: &str) -> Setup {
    setup_with_redis(redis_section, "", ALL_FILE)
}

/// `ALL_FILE` with VERP on (so `tayori bounce` has a return path to read).
fn channels_with_verp() -> String {
    ALL_FILE.replacen(
        "from = \"Example Shop <news@example.com>\"\n",
        "from = \"Example Shop <news@example.com>\"\nenvelope_from = \"bounces@example.com\"\nverp = true\n",
        1,
    )
}

/// `[redis]` for `url` trusting the CA certificate `ca`, plus `extra` lines.
fn tls_section(url: &str, ca: &Path, extra: &str) -> String {
    format!("url = \"{url}\"\n{}{extra}", path_line("tls_ca_file", ca))
}

fn path_line(key: &str, p: &Path) -> String {
    format!("{key} = \"{}\"\n", p.display())
}

/// `tls_cert_file` and `tls_key_file` lines presenting `cert` (mutual TLS).
fn client_cert_lines(cert: &CertKey) -> String {
    format!(
        "{}{}",
        path_line("tls_cert_file", &cert.cert),
        path_line("tls_key_file", &cert.key)
    )
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

/// `tayori ARGS`, given `WAIT` to finish.
fn tayori(s: &Setup, args: &[&str]) -> Out {
    let mut c = s.tayori();
    c.args(args);
    finish(c, None, WAIT)
}

/// `tayori ARGS` for a command that must connect or give up within `FAIL_FAST`
/// (killed a little after it, so that [`assert_refused`] sees the overrun).
fn tayori_fail_fast(s: &Setup, args: &[&str]) -> Out {
    let mut c = s.tayori();
    c.args(args);
    finish(c, None, FAIL_FAST + Duration::from_secs(5))
}

fn check_connect(s: &Setup) -> Out {
    tayori_fail_fast(s, &["check-config", "--connect"])
}

/// `tayori run`, which exits 2 when it cannot reach Redis.
fn run_daemon(s: &Setup) -> Out {
    tayori_fail_fast(s, &["run"])
}

/// `cmd bounce` with the DSN fixture on stdin.
fn bounce(mut cmd: Command) -> Out {
    let dsn = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("channels/tests/fixtures/dsn/postfix_user_unknown.eml"),
    )
    .expect("DSN fixture");
    cmd.arg("bounce");
    finish(cmd, Some(&dsn), WAIT)
}

/// The command exited `code` within `FAIL_FAST` with a message holding every one
/// of `words` (case-insensitively).
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

fn enqueue_cli(s: &Setup, mut cmd: Command, jobs: &[Value]) {
    let path = jobs_file(s, "jobs.jsonl", jobs);
    cmd.arg("enqueue").arg(&path);
    let out = finish(cmd, None, WAIT);
    assert_eq!(out.code, Some(0), "tayori enqueue: {out:?}");
}

fn drain(mut cmd: Command) {
    cmd.args(["run", "--drain"]);
    let out = finish(cmd, None, WAIT);
    assert_eq!(out.code, Some(0), "tayori run --drain: {out:?}");
}

/// `tayori enqueue` of `jobs`, then `tayori run --drain`.
fn enqueue_and_drain(s: &Setup, jobs: &[Value]) {
    enqueue_cli(s, s.tayori(), jobs);
    drain(s.tayori());
}

/// `n` jobs on each of the four channels.
fn four_channel_jobs(tag: &str, n: usize) -> Vec<Value> {
    CHANNELS
        .iter()
        .flat_map(|ch| (0..n).map(move |i| job(&format!("{tag}-{ch}-{i}"), ch)))
        .collect()
}

/// Every channel's outbox holds `n` messages.
fn assert_each_outbox_holds(s: &Setup, n: usize) {
    for ch in CHANNELS {
        assert_eq!(s.outbox_files(ch).len(), n, "{ch}");
    }
}

/// `stats --json` and `report --json` succeed and print JSON, the report naming
/// the email channel; returns both outputs.
fn assert_stats_and_report(s: &Setup) -> [Out; 2] {
    let stats = tayori(s, &["stats", "--json"]);
    assert_eq!(stats.code, Some(0), "{stats:?}");
    let _: Value = serde_json::from_str(&stats.stdout).expect("stats --json prints JSON");
    let report = tayori(s, &["report", "--campaign", "test", "--json"]);
    assert_eq!(report.code, Some(0), "{report:?}");
    let json: Value = serde_json::from_str(&report.stdout).expect("report --json prints JSON");
    assert!(json.to_string().contains("email"), "{json}");
    [stats, report]
}

/// `CONFIG GET port` on `c` is 0: the server listens on its TLS port only.
fn assert_no_plaintext_port(c: &mut redis::Connection) {
    let port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query(c)
        .unwrap();
    assert_eq!(port[1], "0", "no plaintext port");
}

/// PING over a fresh TLS connection to `url` with `certs`.
fn tls_ping(url: String, certs: redis::TlsCertificates) -> redis::RedisResult<String> {
    redis::Client::build_with_tls(url, certs)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
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
        .arg("t:{0}:jobs:email")
        .query(&mut c)
        .unwrap_or(redis::Value::Nil);
    let consumers: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("t:{0}:jobs:email")
        .arg("tayori")
        .query(&mut c)
        .unwrap_or(redis::Value::Nil);
    let delayed: usize = redis::cmd("ZCARD")
        .arg("t:{0}:delayed")
        .query(&mut c)
        .unwrap_or(0);
    format!(
        "t:{{0}}:results length {}, t:{{0}}:jobs:email length {}, groups {groups:?}, consumers {consumers:?}, \
         t:{{0}}:delayed {delayed}, t:{{0}}:dead {}",
        xlen(&mut c, "t:{0}:results"),
        xlen(&mut c, "t:{0}:jobs:email"),
        xlen(&mut c, "t:{0}:dead"),
    )
}

/// The primary behind `c` has one replica acknowledging everything so far.
fn assert_replicated(c: &mut redis::Connection) {
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(2000).query(c).unwrap();
    assert_eq!(acked, 1);
}

/// SIGKILLs the set's first primary and waits up to `timeout` for its first
/// replica to take over; returns the new primary's port.
fn fail_over_to_the_replica(set: &mut SentinelSet, timeout: Duration) -> u16 {
    let started = Instant::now();
    assert_eq!(set.kill_primary(), set.first_primary_port);
    let new_port = set.wait_for_failover(timeout);
    eprintln!("failover took {:?}", started.elapsed());
    assert_eq!(new_port, set.replica_port);
    new_port
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
    assert_no_plaintext_port(&mut c);
    let wrong_ca = tls_ping(
        r.url(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&pki.other_ca).unwrap()),
        },
    );
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
    let no_client_cert = tls_ping(
        format!("rediss://:admin-pw@127.0.0.1:{}", r.port),
        pki.certificates(false),
    );
    assert!(no_client_cert.is_err(), "{no_client_cert:?}");
    let mut t = r
        .conn_as("tayori", "tayori-pw")
        .expect("the ACL user logs in");
    let _: String = redis::cmd("XADD")
        .arg("t:{0}:jobs:email")
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
        let tls = tls_ping(r.url(), r.certificates());
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
    assert_eq!(
        set.role_of(set.first_primary_port).as_deref(),
        Some("master")
    );
    assert_eq!(set.role_of(set.replica_port).as_deref(), Some("slave"));
    let mut p = set.primary_conn();
    let _: () = redis::cmd("SET")
        .arg("t:before")
        .arg("1")
        .query(&mut p)
        .unwrap();
    assert_replicated(&mut p);
    let new = fail_over_to_the_replica(&mut set, Duration::from_secs(30));
    assert_eq!(set.role_of(new).as_deref(), Some("master"));
    let mut p = set.primary_conn();
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
    let s = setup_with_redis(
        &tls_section(&r.url(), &pki.ca, ""),
        "",
        &channels_with_verp(),
    );
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let jobs = four_channel_jobs("tls", 5);
    enqueue_and_drain(&s, &jobs);
    let evs = events(&mut r.conn());
    assert_eq!(count(&evs, "sent"), jobs.len(), "{evs:?}");
    assert_each_outbox_holds(&s, 5);

    assert_stats_and_report(&s);
    let out = tayori(&s, &["dead", "list"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = bounce(s.tayori());
    assert_eq!(out.code, Some(0), "tayori bounce (75: Redis away): {out:?}");
}

/// (b) A server whose certificate the configured CA did not sign: a certificate
/// error naming redis.tls_ca_file, at once, from check-config and from `run`.
#[test]
fn a_wrong_ca_is_a_certificate_error_naming_tls_ca_file() {
    let (_d, pki) = pki();
    let r = TlsRedis::start(&pki, TlsOpts::default());
    let s = setup_all_file(&tls_section(&r.url(), &pki.other_ca, ""));
    assert_refused(&check_connect(&s), 1, &["certificate", "redis.tls_ca_file"]);
    assert_refused(&run_daemon(&s), 2, &["certificate", "redis.tls_ca_file"]);

    // No tls_ca_file: Mozilla's roots do not know the test CA either.
    let s = setup_all_file(&format!("url = \"{}\"", r.url()));
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
    let login = |password: &str| {
        tls_section(
            &r.url(),
            &pki.ca,
            &format!("username = \"tayori\"\npassword = \"{password}\""),
        )
    };
    let s = setup_all_file(&login(WRONG));
    let out = check_connect(&s);
    assert_refused(&out, 1, &["auth", "redis.password"]);
    for secret in [RIGHT, WRONG] {
        assert!(!out.all().contains(secret), "{secret} printed: {out:?}");
    }
    let out = run_daemon(&s);
    assert_refused(&out, 2, &["auth", "redis.password"]);
    assert!(!out.all().contains(WRONG), "the password printed: {out:?}");

    // The bounce pipe: a refused password is a config error (78) the MTA reports,
    // not a temporary failure (75) it would retry for days.
    let s = setup_with_redis(&login(WRONG), "", &channels_with_verp());
    let out = bounce(s.tayori());
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(out.stderr.contains("auth"), "{out:?}");
    assert!(!out.all().contains(WRONG), "the password printed: {out:?}");

    // The same password in the URL: refused, and not printed either.
    let s = setup_all_file(&tls_section(
        &format!("rediss://tayori:{WRONG}@127.0.0.1:{}", r.port),
        &pki.ca,
        "",
    ));
    let out = check_connect(&s);
    assert_refused(&out, 1, &["auth"]);
    assert!(
        out.stderr.contains("redis.url") || out.stderr.contains("redis.password"),
        "names the key to fix: {out:?}"
    );
    assert!(!out.all().contains(WRONG), "the password printed: {out:?}");

    // And the right one works.
    let s = setup_all_file(&login(RIGHT));
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
    let with_client_cert = |extra: &str| setup_all_file(&tls_section(&r.url(), &pki.ca, extra));
    assert_refused(
        &check_connect(&with_client_cert("")),
        1,
        &["certificate", "redis.tls_cert_file"],
    );

    let foreign = with_client_cert(&client_cert_lines(&pki.other_client));
    assert_refused(&check_connect(&foreign), 1, &["certificate"]);

    let s = with_client_cert(&client_cert_lines(&pki.client));
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let jobs = four_channel_jobs("mtls", 3);
    enqueue_and_drain(&s, &jobs);
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
    let s = setup_with_redis(
        &tls_section(
            &r.url(),
            &pki.ca,
            "username = \"tayori\"\npassword = \"${TAYORI_TEST_REDIS_PASSWORD}\"",
        ),
        "",
        &channels_with_verp(),
    );
    // Every command gets the password through the environment.
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
    let out = bounce(cmd());
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
    let with_extra = |extra: &str| setup_all_file(&tls_section(&r.url(), &pki.ca, extra));
    let s = with_extra("tls_server_name = \"redis.internal\"");
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let jobs = four_channel_jobs("sni", 2);
    enqueue_and_drain(&s, &jobs);
    let evs = events(&mut r.conn());
    assert_eq!(count(&evs, "sent"), jobs.len(), "{evs:?}");

    for extra in ["", "tls_server_name = \"other.internal\""] {
        assert_refused(&check_connect(&with_extra(extra)), 1, &["certificate"]);
    }
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
    let s = setup_all_file(&tls_section(&r.url(), &pki.ca, ""));
    assert_refused(&check_connect(&s), 1, &["certificate"]);
}

/// (g) The scheme is case-insensitive and `valkey(s)://` means `redis(s)://`.
/// Nothing listens at `redis.url`: `check-config --connect` says so at once;
/// `run` retries for its start deadline (10 s: Redis may be starting beside it)
/// and then exits 2 naming the cause and the key, instead of waiting forever.
#[test]
fn an_unreachable_redis_at_start_fails_run_after_its_start_deadline() {
    let port = free_port();
    let s = setup_all_file(&format!("url = \"redis://127.0.0.1:{port}\""));
    assert_refused(&check_connect(&s), 1, &["unreachable", "redis.url"]);

    let out = run_daemon(&s);
    assert_eq!(out.code, Some(2), "{out:?}");
    // The deadline plus the last attempt's refusal and the exit.
    assert!(
        out.took < FAIL_FAST + Duration::from_secs(3),
        "took {:?}",
        out.took
    );
    assert!(
        out.took >= FAIL_FAST - Duration::from_secs(1),
        "gave up early: {out:?}"
    );
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("unreachable") && stderr.contains("redis.url"),
        "{out:?}"
    );
}

#[test]
fn every_scheme_spelling_connects() {
    let (_d, pki) = pki();
    let r = TlsRedis::start(&pki, TlsOpts::default());
    let plain = Redis::start();
    let tls_urls = [
        format!("REDISS://127.0.0.1:{}", r.port),
        format!("valkeys://localhost:{}", r.port),
        format!("Valkeys://127.0.0.1:{}", r.port),
    ];
    let plain_urls = [
        format!("valkey://127.0.0.1:{}", plain.port),
        format!("VALKEY://127.0.0.1:{}", plain.port),
        format!("Redis://127.0.0.1:{}", plain.port),
    ];
    let sections = tls_urls
        .iter()
        .map(|url| tls_section(url, &pki.ca, ""))
        .chain(plain_urls.iter().map(|url| format!("url = \"{url}\"")));
    for redis in sections {
        let out = check_connect(&setup_all_file(&redis));
        assert_eq!(out.code, Some(0), "{redis}: {out:?}");
    }
    // And a job goes through valkey://.
    let s = setup_all_file(&format!("url = \"{}\"", plain_urls[0]));
    enqueue_and_drain(&s, &[job("vk-1", "dm")]);
    assert_eq!(count(&events(&mut plain.conn()), "sent"), 1);
}

// ---------------------------------------------------------------------------
// Sentinel

/// What a failover run saw.
struct FailoverRun {
    setup: Setup,
    daemon: Daemon,
    /// Events in `t:{0}:results` when the primary was killed.
    at_kill: usize,
    failover: Duration,
    new_port: u16,
}

/// A Sentinel set with `replicas` replicas; a daemon (`wait_replicas = 1`,
/// `wait_timeout = "1s"`) started, then `n` email jobs enqueued through Sentinel
/// with `tayori enqueue` (finished before the kill); the primary SIGKILLed once
/// `kill_after` events are in `t:{0}:results`; then every job must end with exactly
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
    let s = setup_with_redis(
        &set.redis_section("wait_replicas = 1\nwait_timeout = \"1s\""),
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
        let results = xlen(&mut primary, "t:{0}:results");
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
            .arg("t:{0}:results")
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
                assert!(Instant::now() < until, "reading t:{{0}}:results: {e}");
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
    let (complete, once, summary) = check(&new_events().expect("read t:{0}:results"));
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
    let mut set = SentinelSet::start_with(SentinelOpts {
        replicas: 2,
        ..SentinelOpts::default()
    });
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

/// The terminal events in `t:{0}:results` on `conn`'s node, by job id.
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
    let mut set = SentinelSet::start_with(SentinelOpts {
        tls: Some(pki.clone()),
        ..SentinelOpts::default()
    });
    // The fixture is TLS-only: no plaintext port on the data nodes, and the
    // sentinel names the primary by its TLS port.
    assert_no_plaintext_port(&mut set.primary_conn());
    assert_eq!(set.primary_port().unwrap(), set.first_primary_port);
    assert_eq!(set.role_of(set.replica_port).as_deref(), Some("slave"));

    let s = setup_all_file(&set.redis_section(&path_line("tls_ca_file", &pki.ca)));
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let first = four_channel_jobs("stls1", 3);
    enqueue_and_drain(&s, &first);
    let sent = sent_ids(&mut set.primary_conn());
    assert_eq!(sent.len(), first.len(), "{sent:?}");
    assert_each_outbox_holds(&s, 3);
    assert_stats_and_report(&s);
    // The replica has the first batch before the kill (AOF + replication).
    assert_replicated(&mut set.primary_conn());

    let new_port = fail_over_to_the_replica(&mut set, Duration::from_secs(20));
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "after the failover: {out:?}");
    let second = four_channel_jobs("stls2", 3);
    enqueue_and_drain(&s, &second);
    let sent = sent_ids(&mut set.conn_to(new_port));
    for j in first.iter().chain(&second) {
        let id = j["id"].as_str().unwrap();
        assert!(
            sent.contains(id),
            "{id} not sent on the new primary: {sent:?}"
        );
    }
    assert_each_outbox_holds(&s, 6);
    let out = tayori(&s, &["report", "--campaign", "test", "--json"]);
    assert_eq!(out.code, Some(0), "report after the failover: {out:?}");

    // A CA that signed none of the certificates: the sentinel itself is refused.
    let s = setup_all_file(&set.redis_section(&path_line("tls_ca_file", &pki.other_ca)));
    assert_refused(&check_connect(&s), 1, &["certificate", "redis.tls_ca_file"]);
}

/// The sentinel's ACL user and password of the Sentinel ACL tests.
const SENTINEL_USER: &str = "sentinel-user";
const SENTINEL_RIGHT: &str = "spw-right-5c1d7e9a3b";
const SENTINEL_WRONG: &str = "spw-wrong-8f2a6c0e4d";

/// A plain-TCP Sentinel set whose sentinel has the ACL user `SENTINEL_USER` with
/// `SENTINEL_RIGHT`, `default` off.
fn sentinel_with_acl_user() -> SentinelSet {
    let set = SentinelSet::start_with(SentinelOpts {
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

/// `sentinel_username = SENTINEL_USER` and `sentinel_password = password` lines.
fn sentinel_login(password: &str) -> String {
    format!("sentinel_username = \"{SENTINEL_USER}\"\nsentinel_password = \"{password}\"\n")
}

/// A sentinel whose only user is an ACL user (`default` off): Tayori logs in with
/// sentinel_username / sentinel_password and jobs flow; a wrong sentinel password
/// (or none) is an auth error, at once, from check-config (exit 1) and from `run`
/// (exit 2), and neither password is ever printed.
#[test]
fn a_sentinel_acl_user_logs_in_and_a_wrong_sentinel_password_is_an_auth_error() {
    let set = sentinel_with_acl_user();
    let s = setup_all_file(&set.redis_section(&sentinel_login(SENTINEL_RIGHT)));
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !out.all().contains(SENTINEL_RIGHT),
        "the password printed: {out:?}"
    );
    let jobs = four_channel_jobs("sacl", 3);
    enqueue_and_drain(&s, &jobs);
    let sent = sent_ids(&mut set.primary_conn());
    assert_eq!(sent.len(), jobs.len(), "{sent:?}");
    let out = tayori(&s, &["stats", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !out.all().contains(SENTINEL_RIGHT),
        "the password printed: {out:?}"
    );

    let s = setup_all_file(&set.redis_section(&sentinel_login(SENTINEL_WRONG)));
    for (out, code) in [(check_connect(&s), 1), (run_daemon(&s), 2)] {
        assert_refused(&out, code, &["auth"]);
        for secret in [SENTINEL_RIGHT, SENTINEL_WRONG] {
            assert!(!out.all().contains(secret), "{secret} printed: {out:?}");
        }
    }

    // No sentinel credentials at all: the sentinel answers NOAUTH.
    let s = setup_all_file(&set.redis_section(""));
    assert_refused(&check_connect(&s), 1, &["auth"]);
}

/// The keys a refused sentinel login names: the sentinels' login
/// (redis.sentinel_password), and never redis.url, which cannot be set with
/// sentinels. (The crate's error does not say which login was refused, so the
/// message names the primary's keys too.)
#[test]
fn a_refused_sentinel_login_names_the_sentinel_keys() {
    let set = sentinel_with_acl_user();
    for login in [sentinel_login(SENTINEL_WRONG), String::new()] {
        let s = setup_all_file(&set.redis_section(&login));
        for (args, code) in [(&["check-config", "--connect"][..], 1), (&["run"][..], 2)] {
            let out = tayori_fail_fast(&s, args);
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
    let set = SentinelSet::start_with(SentinelOpts {
        tls: Some(pki.clone()),
        mutual_tls: true,
        sentinel_user: Some((SENTINEL_USER.into(), PASSWORD.into())),
        ..SentinelOpts::default()
    });
    let login = format!(
        "{}{}",
        path_line("tls_ca_file", &pki.ca),
        sentinel_login(PASSWORD)
    );
    let s =
        setup_all_file(&set.redis_section(&format!("{login}{}", client_cert_lines(&pki.client))));
    let out = check_connect(&s);
    assert_eq!(out.code, Some(0), "{out:?}");
    let jobs = four_channel_jobs("smtls", 2);
    enqueue_and_drain(&s, &jobs);
    let sent = sent_ids(&mut set.primary_conn());
    assert_eq!(sent.len(), jobs.len(), "{sent:?}");
    for out in assert_stats_and_report(&s) {
        assert!(!out.all().contains(PASSWORD), "the password printed");
    }

    let s = setup_all_file(&set.redis_section(&login));
    let out = check_connect(&s);
    eprintln!("no client certificate through Sentinel: {out:?}");
    assert_refused(&out, 1, &["certificate", "redis.tls_cert_file"]);
}
