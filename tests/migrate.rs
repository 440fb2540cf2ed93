//! `tayori migrate`: a Redis filled by hand with schema-1 data (the names before
//! partitions: `t:jobs:email`, `t:results`, …) is refused by the daemon and the
//! CLI, counted by `--dry-run` without a change, and moved to four partitions:
//! every entry where the partition function puts it with its id, groups where
//! their readers left off, TTLs kept; then a daemon finishes every job once.
//!
//! Changing the partition count: a Redis filled by today's daemon and CLI with
//! 2 (or 4) partitions — sent jobs, backlog, entries a dead daemon held,
//! scheduled jobs, a dead letter, suppressions, a cap, profiles, dedupe claims,
//! a CRM group part read — is refused by the daemon under 5 (or 2), moved, and
//! then every job is delivered once, in the partition the new count names.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tayori::keys::{Keys, Partition};

/// An entry as redis-rs parses XRANGE replies: id and fields.
type StreamEntry = (String, Vec<(String, String)>);

const N: u32 = 4;
const HOUR_MS: i64 = 3_600_000;

/// The liveness window in tests: the fixture's "stopped daemon" read its
/// entries a moment ago, and a test cannot wait 30 s for it to look stopped.
const STOPPED: (&str, &str) = ("TAYORI_MIGRATE_LIVE_WITHIN_MS", "0");

fn partitioned(redis: &Redis, partitions: u32) -> Setup {
    setup_with_redis(
        &format!("url = \"{}\"\npartitions = {partitions}", redis.url()),
        "",
        ALL_FILE,
    )
}

fn keys() -> Keys {
    Keys::new("t", N)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs a command to its end, killing it after `limit`.
use tayori_testkit::daemon::output_within;

fn migrate(s: &Setup, args: &[&str], stopped: bool) -> Output {
    let mut cmd = s.tayori();
    cmd.arg("migrate").args(args);
    if stopped {
        cmd.env(STOPPED.0, STOPPED.1);
    }
    output_within(cmd, Duration::from_secs(20))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The summary table: kind → count.
fn table(out: &str) -> HashMap<String, u64> {
    out.lines()
        .filter_map(|l| {
            let (kind, n) = l.trim_end().rsplit_once(' ')?;
            Some((kind.trim().to_owned(), n.parse().ok()?))
        })
        .collect()
}

fn xadd(conn: &mut redis::Connection, key: &str, id: &str, fields: &[(&str, &str)]) -> String {
    let mut c = redis::cmd("XADD");
    c.arg(key).arg(id);
    for (k, v) in fields {
        c.arg(*k).arg(*v);
    }
    c.query(conn).unwrap()
}

fn cmd<T: redis::FromRedisValue>(conn: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(conn)
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")))
}

/// A job for `channel` of customer `C-<id>`, as `common::job` makes them.
fn job_json(id: &str, channel: &str) -> String {
    job(id, channel).to_string()
}

fn partition_of_job(json: &str) -> Partition {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Partition::default();
    };
    match v["id"].as_str() {
        Some(id) => keys().job_partition(v["customer_id"].as_str(), id),
        None => Partition::default(),
    }
}

fn partition_of_event(json: &str) -> Partition {
    let v: Value = serde_json::from_str(json).unwrap();
    match v["job_id"].as_str() {
        Some(id) => keys().job_partition(v["customer_id"].as_str(), id),
        None => Partition::default(),
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// What the fixture wrote, for the checks.
struct V1 {
    /// Per channel, the schema-1 stream's entries.
    jobs: BTreeMap<&'static str, Vec<StreamEntry>>,
    results: Vec<StreamEntry>,
    dead: Vec<StreamEntry>,
    delayed: Vec<(String, i64)>,
    /// Ids of the events the CRM had read and acknowledged, and read only.
    acked: String,
    pending: String,
    unread: String,
}

/// A schema-1 Redis as a stopped daemon of the old layout leaves it: backlog,
/// entries its consumer held, a retry written back, an unreadable entry,
/// delayed retries, a dead letter, events (one acknowledged by the CRM, one
/// pending, one unread), suppressions with times and marks, dedupe claims,
/// caps and profiles with TTLs, and transient keys.
fn fill_v1(conn: &mut redis::Connection) -> V1 {
    let now = now_ms();
    let now_s = now.to_string();
    // Email: three jobs the stopped daemon had read (pending), backlog, a
    // suppressed address, a job id claimed by another entry, one without a
    // customer, and an unreadable entry.
    let mut pend = Vec::new();
    for i in 0..3 {
        pend.push(xadd(
            conn,
            "t:jobs:email",
            "*",
            &[("job", &job_json(&format!("pend-{i}"), "email"))],
        ));
    }
    for i in 0..4 {
        xadd(
            conn,
            "t:jobs:email",
            "*",
            &[("job", &job_json(&format!("e-{i}"), "email"))],
        );
    }
    let mut sup = job("sup-1", "email");
    sup["to"]["email"] = "sup@example.com".into();
    xadd(conn, "t:jobs:email", "*", &[("job", &sup.to_string())]);
    xadd(
        conn,
        "t:jobs:email",
        "*",
        &[("job", &job_json("dup-1", "email"))],
    );
    let mut nocust = job("nocust-1", "email");
    nocust.as_object_mut().unwrap().remove("customer_id");
    xadd(conn, "t:jobs:email", "*", &[("job", &nocust.to_string())]);
    xadd(conn, "t:jobs:email", "*", &[("job", "not json {")]);
    for i in 0..3 {
        xadd(
            conn,
            "t:jobs:line",
            "*",
            &[("job", &job_json(&format!("l-{i}"), "line"))],
        );
    }
    // A retry the old daemon wrote back, with its routing fields.
    xadd(
        conn,
        "t:jobs:line",
        "*",
        &[
            ("job", &job_json("l-r", "line")),
            ("attempt", "1"),
            ("origin", "1700000000000-5"),
            ("first_at", &now_s),
            ("hop", "0"),
        ],
    );
    xadd(conn, "t:jobs:sms", "*", &[("job", &job_json("s-0", "sms"))]);
    xadd(conn, "t:jobs:dm", "*", &[("job", &job_json("d-0", "dm"))]);
    for ch in ["email", "line", "sms", "dm"] {
        let _: () = cmd(
            conn,
            &["XGROUP", "CREATE", &format!("t:jobs:{ch}"), "tayori", "0"],
        );
    }
    let _: redis::Value = cmd(
        conn,
        &[
            "XREADGROUP",
            "GROUP",
            "tayori",
            "old-daemon",
            "COUNT",
            "3",
            "STREAMS",
            "t:jobs:email",
            ">",
        ],
    );
    // The old daemon's dedupe claims: the pending jobs by their own entries,
    // dup-1 by another entry (a job id enqueued twice), one without expiry.
    for (i, id) in pend.iter().enumerate() {
        let _: () = cmd(
            conn,
            &[
                "SET",
                &format!("t:seen:pend-{i}"),
                id,
                "PX",
                &HOUR_MS.to_string(),
            ],
        );
    }
    let _: () = cmd(
        conn,
        &["SET", "t:seen:dup-1", "1-1", "PX", &HOUR_MS.to_string()],
    );
    let _: () = cmd(conn, &["SET", "t:seen:old-9", "5-0"]);

    // Delayed retries, both due.
    let mut delayed = Vec::new();
    for (id, ch) in [("del-0", "email"), ("del-1", "sms")] {
        let member = json!({
            "c": ch,
            "f": ["job", job_json(id, ch), "attempt", "1", "first_at", now_s, "hop", "0"],
        })
        .to_string();
        let score = now - 1000;
        let _: () = cmd(conn, &["ZADD", "t:delayed", &score.to_string(), &member]);
        delayed.push((member, score));
    }
    xadd(
        conn,
        "t:dead",
        "*",
        &[
            ("job", &job_json("dead-0", "email")),
            (
                "reason",
                r#"{"code":"rejected","message":"550 no such user"}"#,
            ),
            ("channel", "email"),
            ("origin", "1700000000000-9"),
            ("hop", "0"),
        ],
    );

    // Results: the CRM read two events and acknowledged the first; the
    // daemons' profile updater read and acknowledged all three.
    let event = |job_id: Option<&str>, kind: &str| {
        let mut e = json!({"type": kind, "event_id": format!("{kind}-{job_id:?}"), "channel": "email", "attempt": 1});
        if let Some(id) = job_id {
            e["job_id"] = id.into();
            e["customer_id"] = format!("C-{id}").into();
        }
        e.to_string()
    };
    let acked = xadd(
        conn,
        "t:results",
        "*",
        &[("event", &event(Some("r-1"), "sent"))],
    );
    let pending = xadd(
        conn,
        "t:results",
        "*",
        &[("event", &event(Some("r-2"), "sent"))],
    );
    let unread = xadd(
        conn,
        "t:results",
        "*",
        &[("event", &event(None, "unfollow"))],
    );
    for group in ["crm", "tayori-profiles"] {
        let _: () = cmd(conn, &["XGROUP", "CREATE", "t:results", group, "0"]);
    }
    let _: redis::Value = cmd(
        conn,
        &[
            "XREADGROUP",
            "GROUP",
            "crm",
            "crm-1",
            "COUNT",
            "2",
            "STREAMS",
            "t:results",
            ">",
        ],
    );
    let _: i64 = cmd(conn, &["XACK", "t:results", "crm", &acked]);
    let _: redis::Value = cmd(
        conn,
        &[
            "XREADGROUP",
            "GROUP",
            "tayori-profiles",
            "d",
            "STREAMS",
            "t:results",
            ">",
        ],
    );
    let _: i64 = cmd(
        conn,
        &[
            "XACK",
            "t:results",
            "tayori-profiles",
            &acked,
            &pending,
            &unread,
        ],
    );

    // Suppressions: one address suppressed, one lifted (only its time is
    // left), a LINE user.
    let _: () = cmd(
        conn,
        &[
            "HSET",
            "t:suppressed:email",
            "sup@example.com",
            "hard bounce",
        ],
    );
    let _: () = cmd(
        conn,
        &[
            "HSET",
            "t:suppressed:email:at",
            "sup@example.com",
            "1700000000000",
            "lifted@example.com",
            "1700000000001",
        ],
    );
    let _: () = cmd(
        conn,
        &[
            "HSET",
            "t:suppressed:email:by",
            "sup@example.com",
            "t:reaction:dsn:m-1",
        ],
    );
    let _: () = cmd(conn, &["HSET", "t:suppressed:line", "Uabc", "unfollow"]);

    // Caps (two scopes and one this build does not know) and a profile.
    let (a, b) = ((now - 1000).to_string(), (now - 500).to_string());
    let _: () = cmd(conn, &["ZADD", "t:cap:all:C-e-0", &a, "m1", &b, "m2"]);
    let _: () = cmd(
        conn,
        &["PEXPIRE", "t:cap:all:C-e-0", &(24 * HOUR_MS).to_string()],
    );
    let _: () = cmd(conn, &["ZADD", "t:cap:email:C-e-0", &a, "m1"]);
    let _: () = cmd(
        conn,
        &["PEXPIRE", "t:cap:email:C-e-0", &(24 * HOUR_MS).to_string()],
    );
    let _: () = cmd(conn, &["ZADD", "t:cap:campaign:C-e-1", &a, "m1"]);
    let _: () = cmd(
        conn,
        &["HSET", "t:profile:C-prof", "n", "3", "t", "1700000000000"],
    );
    let _: () = cmd(
        conn,
        &[
            "PEXPIRE",
            "t:profile:C-prof",
            &(90 * 24 * HOUR_MS).to_string(),
        ],
    );
    // Transient keys and keys of the same name in both schemas: left alone.
    let _: () = cmd(conn, &["SET", "t:rate:email", "123"]);
    let _: () = cmd(conn, &["SET", "t:link:abc", "sealed"]);

    let mut jobs = BTreeMap::new();
    for ch in tayori::channel::registry::ids() {
        jobs.insert(ch.label(), xrange(conn, &format!("t:jobs:{ch}")));
    }
    V1 {
        jobs,
        results: xrange(conn, "t:results"),
        dead: xrange(conn, "t:dead"),
        delayed,
        acked,
        pending,
        unread,
    }
}

/// Every key with its DUMP and whether it has a TTL.
fn snapshot(conn: &mut redis::Connection) -> BTreeMap<String, (Vec<u8>, bool)> {
    let names: Vec<String> = cmd(conn, &["KEYS", "*"]);
    names
        .into_iter()
        .filter_map(|k| {
            let dump: Vec<u8> = cmd(conn, &["DUMP", &k]);
            let ttl: i64 = cmd(conn, &["PTTL", &k]);
            // A key with a TTL (a lease, a rate limit's state) may expire between
            // KEYS and DUMP: it is gone, not changed.
            (!dump.is_empty()).then_some((k, (dump, ttl != -1)))
        })
        .collect()
}

fn exists(conn: &mut redis::Connection, key: &str) -> bool {
    cmd::<i64>(conn, &["EXISTS", key]) == 1
}

/// Every event in every partition's results stream.
fn all_events(conn: &mut redis::Connection) -> Vec<Value> {
    keys()
        .all_partitions()
        .flat_map(|p| xrange(conn, &keys().results(p)))
        .filter_map(|(_, f)| serde_json::from_str(field(&f, "event")).ok())
        .collect()
}

/// Each of `stream`'s source entries is in its partition's target stream with
/// its id and fields, and the targets hold nothing else.
fn assert_moved(
    conn: &mut redis::Connection,
    what: &str,
    source: &[StreamEntry],
    target: impl Fn(Partition) -> String,
    partition: impl Fn(&[(String, String)]) -> Partition,
) {
    let mut total = 0;
    let mut targets: HashMap<Partition, Vec<StreamEntry>> = HashMap::new();
    for p in keys().all_partitions() {
        let entries = xrange(conn, &target(p));
        total += entries.len();
        targets.insert(p, entries);
    }
    assert_eq!(total, source.len(), "{what}: entries in all partitions");
    for (id, fields) in source {
        let p = partition(fields);
        assert!(
            targets[&p].iter().any(|(i, f)| i == id && f == fields),
            "{what}: entry {id} is not in partition {p} with its fields"
        );
    }
}

#[test]
fn the_old_layout_is_refused_naming_migrate() {
    let redis = Redis::start();
    let s = partitioned(&redis, N);
    let mut conn = redis.conn();
    xadd(
        &mut conn,
        "t:jobs:email",
        "*",
        &[("job", &job_json("x-1", "email"))],
    );
    let jobs = s.dir.path().join("jobs.jsonl");
    std::fs::write(&jobs, job_json("x-2", "email")).unwrap();
    for args in [
        vec!["run"],
        vec!["stats"],
        vec!["enqueue", jobs.to_str().unwrap()],
    ] {
        let mut c = s.tayori();
        c.args(&args);
        let out = output_within(c, Duration::from_secs(20));
        assert_ne!(out.status.code(), Some(0), "{args:?} ran on schema-1 data");
        assert!(
            stderr(&out).contains("tayori migrate"),
            "{args:?} does not name tayori migrate: {}",
            stderr(&out)
        );
    }
    // Nothing was written: no marker, no job in the new layout.
    assert!(!exists(&mut conn, "t:schema"));
    assert_eq!(xlen(&mut conn, "t:jobs:email"), 1);
}

#[test]
fn a_dry_run_counts_and_changes_nothing() {
    let redis = Redis::start();
    let s = partitioned(&redis, N);
    let mut conn = redis.conn();
    fill_v1(&mut conn);
    let before = snapshot(&mut conn);
    // The fixture's consumer read a moment ago: a dry run only notes it.
    let out = migrate(&s, &["--dry-run"], false);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("will refuse"), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("would move"), "{text}");
    let t = table(&text);
    let expect = [
        ("jobs email", 11),
        ("jobs line", 4),
        ("jobs sms", 1),
        ("jobs dm", 1),
        ("results", 3),
        ("dead letters", 1),
        ("delayed", 2),
        ("suppressions", 2),
        ("suppression times, marks", 3),
        ("dedupe claims", 5),
        ("caps", 2),
        ("profiles", 1),
        ("results consumer groups", 2),
    ];
    for (kind, n) in expect {
        assert_eq!(t.get(kind), Some(&n), "{kind} in\n{text}");
    }
    assert_eq!(snapshot(&mut conn), before, "a dry run changed Redis");
}

#[test]
fn a_running_daemon_makes_migrate_refuse() {
    let redis = Redis::start();
    let s = partitioned(&redis, N);
    let mut conn = redis.conn();
    xadd(
        &mut conn,
        "t:jobs:line",
        "*",
        &[("job", &job_json("x-1", "line"))],
    );
    let _: () = cmd(
        &mut conn,
        &["XGROUP", "CREATE", "t:jobs:line", "tayori", "0"],
    );
    let _: redis::Value = cmd(
        &mut conn,
        &[
            "XREADGROUP",
            "GROUP",
            "tayori",
            "host-a-123",
            "STREAMS",
            "t:jobs:line",
            ">",
        ],
    );
    let before = snapshot(&mut conn);
    let out = migrate(&s, &[], false);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("stop every daemon"), "{err}");
    assert!(err.contains("host-a-123"), "{err}");
    assert_eq!(snapshot(&mut conn), before, "a refused run changed Redis");
}

#[test]
fn migrate_moves_everything_and_a_daemon_then_finishes_every_job_once() {
    let redis = Redis::start();
    let s = partitioned(&redis, N);
    let mut conn = redis.conn();
    let v1 = fill_v1(&mut conn);
    let k = keys();

    let out = migrate(&s, &[], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("moved"), "{text}");
    assert_eq!(table(&text).get("jobs email"), Some(&11), "{text}");
    assert!(
        stderr(&out).contains("t:cap:campaign:C-e-1"),
        "{}",
        stderr(&out)
    );

    // Streams: every entry in its partition with its id and fields.
    for kind in tayori::channel::registry::ids() {
        assert_moved(
            &mut conn,
            kind.as_str(),
            &v1.jobs[kind.as_str()],
            |p| k.jobs(p, kind),
            |f| partition_of_job(field(f, "job")),
        );
        for p in k.all_partitions() {
            let groups: Vec<Vec<(String, redis::Value)>> =
                cmd(&mut conn, &["XINFO", "GROUPS", &k.jobs(p, kind)]);
            assert_eq!(groups.len(), 1, "{}", k.jobs(p, kind));
        }
    }
    assert_moved(
        &mut conn,
        "results",
        &v1.results,
        |p| k.results(p),
        |f| partition_of_event(field(f, "event")),
    );
    assert_moved(
        &mut conn,
        "dead",
        &v1.dead,
        |p| k.dead(p),
        |f| partition_of_job(field(f, "job")),
    );
    // The unreadable job and the event without a job are in partition 0.
    let p0 = Partition::default();
    assert!(xrange(&mut conn, &k.jobs(p0, tayori::channel::email::ID))
        .iter()
        .any(|(_, f)| field(f, "job") == "not json {"));

    // Delayed members, unchanged, with their scores, in their job's partition.
    for (member, score) in &v1.delayed {
        let job = serde_json::from_str::<Value>(member).unwrap()["f"][1]
            .as_str()
            .unwrap()
            .to_owned();
        let key = k.delayed(partition_of_job(&job));
        let got: Option<i64> = cmd(&mut conn, &["ZSCORE", &key, member]);
        assert_eq!(got, Some(*score), "{member} in {key}");
    }

    // The CRM reads again the event it had not acknowledged, and the one it
    // had not read, and not the one it had acknowledged; the profile updater
    // reads nothing again.
    let mut read = |group: &str| -> Vec<String> {
        let mut c = redis::cmd("XREADGROUP");
        c.arg("GROUP").arg(group).arg("reader").arg("STREAMS");
        for p in k.all_partitions() {
            c.arg(k.results(p));
        }
        for _ in k.all_partitions() {
            c.arg(">");
        }
        let reply: Option<Vec<(String, Vec<StreamEntry>)>> = c.query(&mut conn).unwrap();
        let mut ids: Vec<String> = reply
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(_, es)| es.into_iter().map(|(id, _)| id))
            .collect();
        ids.sort();
        ids
    };
    let mut want = vec![v1.pending.clone(), v1.unread.clone()];
    want.sort();
    assert_eq!(read("crm"), want, "acknowledged: {}", v1.acked);
    assert!(read("tayori-profiles").is_empty());

    // Suppressions with their times and marks, in the address's partition.
    let [hash, at, by] = k.suppression_keys(tayori::channel::email::ID, "sup@example.com");
    let get = |conn: &mut redis::Connection, key: &str, f: &str| -> Option<String> {
        cmd(conn, &["HGET", key, f])
    };
    assert_eq!(
        get(&mut conn, &hash, "sup@example.com").as_deref(),
        Some("hard bounce")
    );
    assert_eq!(
        get(&mut conn, &at, "sup@example.com").as_deref(),
        Some("1700000000000")
    );
    assert_eq!(
        get(&mut conn, &by, "sup@example.com").as_deref(),
        Some("t:reaction:dsn:m-1")
    );
    let [lifted, lifted_at, _] =
        k.suppression_keys(tayori::channel::email::ID, "lifted@example.com");
    assert_eq!(get(&mut conn, &lifted, "lifted@example.com"), None);
    assert_eq!(
        get(&mut conn, &lifted_at, "lifted@example.com").as_deref(),
        Some("1700000000001")
    );
    let [line, _, _] = k.suppression_keys(tayori::channel::line::ID, "Uabc");
    assert_eq!(get(&mut conn, &line, "Uabc").as_deref(), Some("unfollow"));

    // Claims, caps and profiles with what was left of their TTLs.
    let pttl = |conn: &mut redis::Connection, key: &str| -> i64 { cmd(conn, &["PTTL", key]) };
    let seen = k.legacy_seen("dup-1");
    assert_eq!(cmd::<String>(&mut conn, &["GET", &seen]), "1-1");
    let ttl = pttl(&mut conn, &seen);
    assert!(ttl > HOUR_MS - 60_000 && ttl <= HOUR_MS, "{seen}: {ttl}");
    assert_eq!(pttl(&mut conn, &k.legacy_seen("old-9")), -1);
    let cap = k.cap("all", "C-e-0");
    assert_eq!(
        cmd::<Vec<String>>(&mut conn, &["ZRANGE", &cap, "0", "-1"]),
        ["m1", "m2"]
    );
    let ttl = pttl(&mut conn, &cap);
    assert!(
        ttl > 24 * HOUR_MS - 60_000 && ttl <= 24 * HOUR_MS,
        "{cap}: {ttl}"
    );
    assert!(exists(&mut conn, &k.cap("email", "C-e-0")));
    let profile = k.profile("C-prof");
    assert_eq!(
        cmd::<Option<String>>(&mut conn, &["HGET", &profile, "n"]).as_deref(),
        Some("3")
    );
    assert!(pttl(&mut conn, &profile) > 89 * 24 * HOUR_MS);

    // The old keys are gone, except what does not move.
    let left: BTreeMap<String, (Vec<u8>, bool)> = snapshot(&mut conn);
    let old: Vec<&String> = left
        .keys()
        .filter(|key| !key.starts_with("t:{") && key.as_str() != "t:schema")
        .collect();
    assert_eq!(old, ["t:cap:campaign:C-e-1", "t:link:abc", "t:rate:email"]);
    let schema: HashMap<String, String> = cmd(&mut conn, &["HGETALL", "t:schema"]);
    assert_eq!(schema.get("version").map(String::as_str), Some("2"));
    assert_eq!(schema.get("partitions").map(String::as_str), Some("4"));

    // A daemon finishes it all: every job once, the suppressed address and
    // the job id claimed by another entry caught.
    let mut run = s.tayori();
    run.args(["run", "--drain"]);
    let out = output_within(run, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The moved events are of other job ids (r-1, r-2) than the fixture's jobs.
    let by_job = terminal_by_job(&all_events(&mut conn));
    let mut sent: Vec<&str> = vec!["nocust-1", "l-r", "s-0", "d-0", "del-0", "del-1"];
    let names: Vec<String> = (0..3)
        .map(|i| format!("pend-{i}"))
        .chain((0..4).map(|i| format!("e-{i}")))
        .chain((0..3).map(|i| format!("l-{i}")))
        .collect();
    sent.extend(names.iter().map(String::as_str));
    for id in &sent {
        assert_eq!(
            by_job.get(*id).map(Vec::as_slice),
            Some(&["sent".to_owned()][..]),
            "{id}"
        );
    }
    assert_eq!(by_job["sup-1"], ["suppressed"]);
    assert_eq!(by_job["dup-1"], ["duplicate"]);
    assert_eq!(s.outbox_files("email").len(), 9);
    assert_eq!(s.outbox_files("line").len(), 4);
    assert_eq!(s.outbox_files("sms").len(), 2);
    assert_eq!(s.outbox_files("dm").len(), 1);

    let out = migrate(&s, &[], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("nothing to migrate"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_interrupted_run_is_finished_by_the_next_without_duplicates() {
    let redis = Redis::start();
    let s = partitioned(&redis, N);
    let mut conn = redis.conn();
    let v1 = fill_v1(&mut conn);
    let k = keys();

    // An earlier run, interrupted: it recorded the partition count and copied
    // the first five email entries, the first event and a claim.
    let _: () = cmd(
        &mut conn,
        &["HSET", "t:schema:migrating", "partitions", "4"],
    );
    for (id, fields) in v1.jobs["email"].iter().take(5) {
        let p = partition_of_job(field(fields, "job"));
        let f: Vec<(&str, &str)> = fields
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        xadd(&mut conn, &k.jobs(p, tayori::channel::email::ID), id, &f);
    }
    let (id, fields) = &v1.results[0];
    let p = partition_of_event(field(fields, "event"));
    xadd(
        &mut conn,
        &k.results(p),
        id,
        &[("event", field(fields, "event"))],
    );
    let _: () = cmd(&mut conn, &["SET", &k.legacy_seen("dup-1"), "1-1"]);

    // Another partition count than the interrupted run's is refused.
    let two = partitioned(&redis, 2);
    let out = migrate(&two, &[], true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("redis.partitions = 4"),
        "{}",
        stderr(&out)
    );

    let out = migrate(&s, &[], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("6 entries were already copied"), "{text}");
    assert_eq!(table(&text).get("jobs email"), Some(&11), "{text}");
    assert_moved(
        &mut conn,
        "email",
        &v1.jobs["email"],
        |p| k.jobs(p, tayori::channel::email::ID),
        |f| partition_of_job(field(f, "job")),
    );
    assert_moved(
        &mut conn,
        "results",
        &v1.results,
        |p| k.results(p),
        |f| partition_of_event(field(f, "event")),
    );
    assert!(!exists(&mut conn, "t:schema:migrating"));
    assert!(!exists(&mut conn, "t:jobs:email"));
}

#[test]
fn jobs_written_to_the_old_names_after_the_upgrade_are_moved_too() {
    let redis = Redis::start();
    let s = partitioned(&redis, N);
    let mut conn = redis.conn();
    let k = keys();
    let _: () = cmd(
        &mut conn,
        &["HSET", "t:schema", "version", "2", "partitions", "4"],
    );
    let late = job_json("late-1", "email");
    let p = partition_of_job(&late);
    let target = k.jobs(p, tayori::channel::email::ID);
    // The partition's stream already has a later entry than the old-name one:
    // the moved job gets a new id and keeps its old one as its origin.
    xadd(
        &mut conn,
        &target,
        "2000-0",
        &[("job", &job_json("new-1", "email"))],
    );
    xadd(&mut conn, "t:jobs:email", "1000-0", &[("job", &late)]);
    // One of another partition keeps its id (that stream has no later entry).
    let other = (0..)
        .map(|i| job_json(&format!("late-{i}"), "email"))
        .find(|j| partition_of_job(j) != p)
        .unwrap();
    xadd(&mut conn, "t:jobs:email", "3000-0", &[("job", &other)]);

    let out = migrate(&s, &["--dry-run"], true);
    assert_eq!(
        table(&stdout(&out)).get("jobs email"),
        Some(&2),
        "{}",
        stdout(&out)
    );
    let out = migrate(&s, &[], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 entries got a new id"),
        "{}",
        stdout(&out)
    );
    let moved = xrange(&mut conn, &target);
    let renumbered = moved
        .iter()
        .find(|(_, f)| field(f, "job") == late)
        .expect("late-1 moved");
    assert_ne!(renumbered.0, "1000-0");
    assert_eq!(field(&renumbered.1, "origin"), "1000-0");
    let total: usize = k
        .all_partitions()
        .map(|p| xlen(&mut conn, &k.jobs(p, tayori::channel::email::ID)))
        .sum();
    assert_eq!(total, 3);
    let kept = xrange(
        &mut conn,
        &k.jobs(partition_of_job(&other), tayori::channel::email::ID),
    );
    assert!(kept
        .iter()
        .any(|(id, f)| id == "3000-0" && field(f, "job") == other));
    assert!(!exists(&mut conn, "t:jobs:email"));
}

// --- changing the partition count ---------------------------------------------

const CHANNELS: [&str; 4] = ["email", "line", "sms", "dm"];

/// A setup whose daemon takes over a dead consumer's entries after 1 s.
fn daemon_setup(redis: &Redis, partitions: u32) -> Setup {
    setup_with_redis(
        &format!("url = \"{}\"\npartitions = {partitions}", redis.url()),
        "reclaim_idle = \"1s\"",
        ALL_FILE,
    )
}

/// A job of `customer` with an email address of its own.
fn customer_job(id: &str, customer: &str, channel: &str) -> Value {
    let mut j = job(id, channel);
    j["customer_id"] = customer.into();
    j["to"]["email"] = format!("{}@example.com", customer.to_lowercase()).into();
    j
}

/// `tayori enqueue` of `jobs`, which must all be taken.
fn enqueue_cli(s: &Setup, jobs: &[Value]) {
    let file = s.dir.path().join("batch.jsonl");
    let text: Vec<String> = jobs.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    let mut c = s.tayori();
    c.arg("enqueue").arg(&file);
    let out = output_within(c, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "enqueue: {}", stderr(&out));
}

/// Every event of every partition of `k`: (partition, entry id, event).
fn results_of(conn: &mut redis::Connection, k: &Keys) -> Vec<(Partition, String, Value)> {
    let mut out = Vec::new();
    for p in k.all_partitions() {
        for (id, f) in xrange(conn, &k.results(p)) {
            if let Ok(v) = serde_json::from_str(field(&f, "event")) {
                out.push((p, id, v));
            }
        }
    }
    out
}

fn event_partition(k: &Keys, e: &Value) -> Partition {
    match e["job_id"].as_str() {
        Some(id) => k.job_partition(e["customer_id"].as_str(), id),
        None => Partition::default(),
    }
}

fn job_partition_in(k: &Keys, json: &str) -> Partition {
    match serde_json::from_str::<Value>(json) {
        Ok(v) => match v["id"].as_str() {
            Some(id) => k.job_partition(v["customer_id"].as_str(), id),
            None => Partition::default(),
        },
        Err(_) => Partition::default(),
    }
}

fn delayed_job(member: &str) -> String {
    let v: Value = serde_json::from_str(member).unwrap();
    v["f"][1].as_str().unwrap_or_default().to_owned()
}

/// What a layout holds, by kind, each sorted: job streams (`jobs <ch>`: job
/// JSON), dead letters (job JSON), delayed members, events (event ids).
fn contents(conn: &mut redis::Connection, k: &Keys) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in k.all_partitions() {
        for kind in tayori::channel::registry::ids() {
            for (_, f) in xrange(conn, &k.jobs(p, kind)) {
                out.entry(format!("jobs {kind}"))
                    .or_default()
                    .push(field(&f, "job").to_owned());
            }
        }
        for (_, f) in xrange(conn, &k.dead(p)) {
            out.entry("dead".into())
                .or_default()
                .push(field(&f, "job").to_owned());
        }
        let members: Vec<String> = cmd(conn, &["ZRANGE", &k.delayed(p), "0", "-1"]);
        out.entry("delayed".into()).or_default().extend(members);
    }
    for (_, _, e) in results_of(conn, k) {
        out.entry("results".into())
            .or_default()
            .push(e["event_id"].as_str().unwrap_or_default().to_owned());
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Every job, dead letter, delayed member and event of `k`'s layout is in the
/// partition `k` names for it.
fn assert_in_place(conn: &mut redis::Connection, k: &Keys) {
    for p in k.all_partitions() {
        for kind in tayori::channel::registry::ids() {
            for (id, f) in xrange(conn, &k.jobs(p, kind)) {
                assert_eq!(
                    job_partition_in(k, field(&f, "job")),
                    p,
                    "{} entry {id}: {}",
                    k.jobs(p, kind),
                    field(&f, "job")
                );
            }
        }
        for (id, f) in xrange(conn, &k.dead(p)) {
            assert_eq!(job_partition_in(k, field(&f, "job")), p, "dead {id}");
        }
        let members: Vec<String> = cmd(conn, &["ZRANGE", &k.delayed(p), "0", "-1"]);
        for m in members {
            assert_eq!(job_partition_in(k, &delayed_job(&m)), p, "delayed {m}");
        }
    }
    for (p, id, e) in results_of(conn, k) {
        assert_eq!(event_partition(k, &e), p, "event {id}: {e}");
    }
}

/// A stream's groups: name → (last-delivered id, pending count).
fn groups(conn: &mut redis::Connection, stream: &str) -> HashMap<String, (String, i64)> {
    let Ok(list) = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query::<Vec<HashMap<String, redis::Value>>>(conn)
    else {
        return HashMap::new();
    };
    list.into_iter()
        .map(|g| {
            let name: String = redis::from_redis_value(g["name"].clone()).unwrap();
            let last: String = redis::from_redis_value(g["last-delivered-id"].clone()).unwrap();
            let pending: i64 = redis::from_redis_value(g["pending"].clone()).unwrap();
            (name, (last, pending))
        })
        .collect()
}

fn last_id(conn: &mut redis::Connection, stream: &str) -> String {
    let info: HashMap<String, redis::Value> = cmd(conn, &["XINFO", "STREAM", stream]);
    redis::from_redis_value(info["last-generated-id"].clone()).unwrap()
}

/// Polls `done` every 50 ms for up to `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Those of `candidates` whose partition differs between `n` and `m`.
fn moving(
    n: u32,
    m: u32,
    candidates: impl Iterator<Item = String>,
) -> impl Iterator<Item = String> {
    candidates.filter(move |c| tayori::keys::partition_of(c, n) != tayori::keys::partition_of(c, m))
}

/// What [`fill_with_daemon`] left in Redis, for the checks.
struct Filled {
    s: Setup,
    /// Jobs the daemon sent before the migration.
    sent: Vec<(String, &'static str)>,
    /// Jobs waiting: backlog, a dead daemon's pending entries, scheduled jobs
    /// (in the delayed sets).
    waiting: Vec<(String, &'static str)>,
    /// Jobs to suppressed addresses (in the backlog).
    suppressed: Vec<String>,
    /// The job dead-lettered for being in another channel's stream.
    dead: String,
    /// Suppressed email addresses, and the customer with a cap.
    addresses: Vec<String>,
    capped: String,
    /// Event ids the CRM's group had read (acknowledged or not).
    crm_read: Vec<String>,
}

/// A Redis as today's daemon and CLI leave it with `n` partitions, with
/// addresses and a capped customer whose partition differs under `m`.
fn fill_with_daemon(redis: &Redis, n: u32, m: u32) -> Filled {
    let s = daemon_setup(redis, n);
    let k = Keys::new("t", n);
    let mut conn = redis.conn();
    let channel = |i: usize| CHANNELS[i % 4];

    // Sent by the daemon: 20 customers over the four channels; 3 scheduled
    // for 6 s from now (in the delayed sets while it runs); one job for SMS
    // put into an email stream, which it dead-letters.
    let mut sent = Vec::new();
    let mut first = Vec::new();
    for i in 0..20 {
        let id = format!("a-{i}");
        first.push(customer_job(&id, &format!("C-{i}"), channel(i)));
        sent.push((id, channel(i)));
    }
    let mut waiting = Vec::new();
    let due = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(6);
    for i in 0..3 {
        let id = format!("s-{i}");
        let mut j = customer_job(&id, &format!("C-{}", 40 + i), channel(i));
        j["send_at"] = due.to_string().into();
        first.push(j);
        waiting.push((id, channel(i)));
    }
    enqueue_cli(&s, &first);
    let dead = "wrong-1".to_owned();
    let wrong = customer_job(&dead, "C-90", "sms");
    let p = k.job_partition(Some("C-90"), &dead);
    xadd(
        &mut conn,
        &k.jobs(p, tayori::channel::email::ID),
        "*",
        &[("job", &wrong.to_string())],
    );

    let mut daemon = s.start();
    wait_until(Duration::from_secs(30), "the first jobs' outcomes", || {
        let by_job = terminal_by_job(
            &results_of(&mut conn, &k)
                .into_iter()
                .map(|(_, _, e)| e)
                .collect::<Vec<_>>(),
        );
        let delayed: usize = k
            .all_partitions()
            .map(|p| cmd::<usize>(&mut conn, &["ZCARD", &k.delayed(p)]))
            .sum();
        sent.iter().all(|(id, _)| by_job.contains_key(id))
            && by_job.contains_key(&dead)
            && delayed == 3
    });
    // The profile updater has counted every event: so each moved event is
    // one it had counted.
    wait_until(Duration::from_secs(30), "the profile updater", || {
        k.all_partitions().all(|p| {
            let r = k.results(p);
            let g = groups(&mut conn, &r);
            let top = last_id(&mut conn, &r);
            g.get("tayori-profiles")
                .is_some_and(|(last, pending)| *last == top && *pending == 0)
        })
    });
    assert_eq!(daemon.terminate(Duration::from_secs(20)), Some(0));
    let delayed: usize = k
        .all_partitions()
        .map(|p| cmd::<usize>(&mut conn, &["ZCARD", &k.delayed(p)]))
        .sum();
    assert_eq!(
        delayed, 3,
        "the scheduled jobs were due before the daemon stopped"
    );

    // Backlog: 20 more customers, two jobs to suppressed addresses (written
    // as a webhook would, under the old count, at addresses that move).
    let addresses: Vec<String> = moving(n, m, (0..).map(|i| format!("gone-{i}@example.com")))
        .take(2)
        .collect();
    let mut backlog = Vec::new();
    for i in 0..20 {
        let id = format!("b-{i}");
        backlog.push(customer_job(&id, &format!("C-{}", 20 + i), channel(i)));
        waiting.push((id, channel(i)));
    }
    let mut suppressed = Vec::new();
    for (i, address) in addresses.iter().enumerate() {
        let id = format!("sup-{i}");
        let mut j = customer_job(&id, &format!("C-{}", 60 + i), "email");
        j["to"]["email"] = address.as_str().into();
        backlog.push(j);
        suppressed.push(id);
        let [hash, at, by] = k.suppression_keys(tayori::channel::email::ID, address);
        let _: () = cmd(&mut conn, &["HSET", &hash, address, "unsubscribed"]);
        let _: () = cmd(&mut conn, &["HSET", &at, address, "1700000000000"]);
        let _: () = cmd(&mut conn, &["HSET", &by, address, "t:reaction:test:1"]);
    }
    enqueue_cli(&s, &backlog);
    // A daemon that died holding two email entries of each partition.
    for p in k.all_partitions() {
        let _: redis::Value = cmd(
            &mut conn,
            &[
                "XREADGROUP",
                "GROUP",
                "tayori",
                "dead-daemon",
                "COUNT",
                "2",
                "STREAMS",
                &k.jobs(p, tayori::channel::email::ID),
                ">",
            ],
        );
    }
    // The CRM's group on every results stream: it read three events of each
    // and acknowledged all but the last.
    let mut crm_read = Vec::new();
    for p in k.all_partitions() {
        let r = k.results(p);
        let _: () = cmd(&mut conn, &["XGROUP", "CREATE", &r, "crm", "0"]);
        let reply: Vec<(String, Vec<StreamEntry>)> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("crm")
            .arg("crm-1")
            .arg("COUNT")
            .arg(3)
            .arg("STREAMS")
            .arg(&r)
            .arg(">")
            .query::<Option<_>>(&mut conn)
            .unwrap()
            .unwrap_or_default();
        let read: Vec<StreamEntry> = reply.into_iter().flat_map(|(_, e)| e).collect();
        for (i, (id, f)) in read.iter().enumerate() {
            let e: Value = serde_json::from_str(field(f, "event")).unwrap();
            crm_read.push(e["event_id"].as_str().unwrap().to_owned());
            if i + 1 < read.len() {
                let _: i64 = cmd(&mut conn, &["XACK", &r, "crm", id]);
            }
        }
    }
    // A frequency cap counted for a customer that moves.
    let capped = moving(n, m, (0..).map(|i| format!("C-cap-{i}")))
        .next()
        .unwrap();
    let cap = k.cap("all", &capped);
    let now = now_ms().to_string();
    let _: () = cmd(&mut conn, &["ZADD", &cap, &now, "j-1", &now, "j-2"]);
    let _: () = cmd(&mut conn, &["PEXPIRE", &cap, &(24 * HOUR_MS).to_string()]);

    Filled {
        s,
        sent,
        waiting,
        suppressed,
        dead,
        addresses,
        capped,
        crm_read,
    }
}

/// What the old layout held before the migration.
struct Before {
    contents: BTreeMap<String, Vec<String>>,
    events: Vec<(Partition, String, Value)>,
    /// Per job JSON in a job stream: its partition and entry id.
    entries: HashMap<String, (Partition, String)>,
}

fn before(conn: &mut redis::Connection, n: u32) -> Before {
    let old = Keys::new("t", n);
    let mut entries = HashMap::new();
    for p in old.all_partitions() {
        for kind in tayori::channel::registry::ids() {
            for (id, f) in xrange(conn, &old.jobs(p, kind)) {
                entries.insert(field(&f, "job").to_owned(), (p, id));
            }
        }
    }
    Before {
        contents: contents(conn, &old),
        events: results_of(conn, &old),
        entries,
    }
}

/// Changes the config from `n` to `m` partitions; the daemon then refuses,
/// naming `tayori migrate`.
fn switch_config(f: Filled, n: u32, m: u32) -> Filled {
    let s =
        f.s.replace_config(&format!("partitions = {n}"), &format!("partitions = {m}"));
    let mut run = s.tayori();
    run.args(["run", "--drain"]);
    let out = output_within(run, Duration::from_secs(20));
    assert_ne!(
        out.status.code(),
        Some(0),
        "the daemon ran on {n} partitions' data"
    );
    let err = stderr(&out);
    assert!(
        err.contains("tayori migrate") && err.contains(&format!("redis.partitions = {n}")),
        "{err}"
    );
    Filled { s, ..f }
}

/// The checks common to raising and lowering, after `tayori migrate` moved
/// the data of [`fill_with_daemon`] from `n` to `m` partitions.
fn check_moved(redis: &Redis, f: &Filled, n: u32, m: u32, before: &Before) {
    let (old, new) = (Keys::new("t", n), Keys::new("t", m));
    let mut conn = redis.conn();
    // Everything is still there once, in the partition the new count names.
    assert_eq!(contents(&mut conn, &new), before.contents);
    assert_in_place(&mut conn, &new);
    // A job that moved has a new id, its old one as its origin, and its age.
    let mut moved = 0;
    for p in new.all_partitions() {
        for kind in tayori::channel::registry::ids() {
            for (id, fl) in xrange(&mut conn, &new.jobs(p, kind)) {
                let (was, old_id) = &before.entries[field(&fl, "job")];
                if *was == p {
                    assert_eq!(&id, old_id);
                    continue;
                }
                moved += 1;
                assert_ne!(&id, old_id);
                assert_eq!(field(&fl, "origin"), old_id);
                let ms = old_id.split_once('-').unwrap().0;
                assert_eq!(field(&fl, "first_at"), ms);
            }
        }
    }
    assert!(moved > 0);

    // Groups: the daemons' on every job stream, the CRM's on every results
    // stream. The CRM gets again every event that moved (new ids) and, as
    // before, what it had not read; the profile updater nothing (it had
    // counted all of it).
    for p in new.all_partitions() {
        for kind in tayori::channel::registry::ids() {
            assert!(groups(&mut conn, &new.jobs(p, kind)).contains_key("tayori"));
        }
        let r = new.results(p);
        let g = groups(&mut conn, &r);
        assert!(g.contains_key("crm"), "{r}: {g:?}");
        let consumers: Vec<HashMap<String, redis::Value>> =
            cmd(&mut conn, &["XINFO", "CONSUMERS", &r, "tayori-profiles"]);
        assert!(
            consumers
                .iter()
                .all(|c| c["name"] != redis::Value::BulkString(b"tayori-migrate".to_vec())),
            "{r}"
        );
        let (last, pending) = &g["tayori-profiles"];
        assert_eq!(
            (last.as_str(), *pending),
            (last_id(&mut conn, &r).as_str(), 0),
            "{r}"
        );
    }
    let mut read = redis::cmd("XREADGROUP");
    read.arg("GROUP")
        .arg("crm")
        .arg("crm-2")
        .arg("COUNT")
        .arg(10_000)
        .arg("STREAMS");
    for p in new.all_partitions() {
        read.arg(new.results(p));
    }
    for _ in new.all_partitions() {
        read.arg(">");
    }
    let reply: Option<Vec<(String, Vec<StreamEntry>)>> = read.query(&mut conn).unwrap();
    let mut delivered: Vec<String> = reply
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(_, es)| es)
        .map(|(_, fl)| {
            let e: Value = serde_json::from_str(field(&fl, "event")).unwrap();
            e["event_id"].as_str().unwrap().to_owned()
        })
        .collect();
    delivered.sort();
    let mut want: Vec<String> = before
        .events
        .iter()
        .filter(|(p, _, e)| {
            let id = e["event_id"].as_str().unwrap();
            event_partition(&new, e) != *p || !f.crm_read.iter().any(|r| r == id)
        })
        .map(|(_, _, e)| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    want.sort();
    assert_eq!(delivered, want, "events the CRM gets after the migration");
    // Put back: the test's own read is not the CRM's.
    let _: () = cmd(
        &mut conn,
        &[
            "XGROUP",
            "DELCONSUMER",
            &new.results(Partition::default()),
            "crm",
            "crm-2",
        ],
    );

    // Suppressions with their times and marks, dedupe claims, the cap with its
    // TTL and the profiles, under their new names only.
    for address in &f.addresses {
        let [hash, at, by] = new.suppression_keys(tayori::channel::email::ID, address);
        let get = |conn: &mut redis::Connection, key: &str| -> Option<String> {
            cmd(conn, &["HGET", key, address])
        };
        assert_eq!(get(&mut conn, &hash).as_deref(), Some("unsubscribed"));
        assert_eq!(get(&mut conn, &at).as_deref(), Some("1700000000000"));
        assert_eq!(get(&mut conn, &by).as_deref(), Some("t:reaction:test:1"));
        let [old_hash, ..] = old.suppression_keys(tayori::channel::email::ID, address);
        assert_eq!(get(&mut conn, &old_hash), None);
    }
    // The dedupe claims (compact) stay where they are: the
    // re-enqueued sent ids of `drain_and_check` end as duplicates.
    let cap = new.cap("all", &f.capped);
    assert_eq!(cmd::<i64>(&mut conn, &["ZCARD", &cap]), 2);
    let ttl: i64 = cmd(&mut conn, &["PTTL", &cap]);
    assert!(ttl > 23 * HOUR_MS, "{cap}: {ttl}");
    assert!(!exists(&mut conn, &old.cap("all", &f.capped)));
    let profiles: Vec<String> = cmd(&mut conn, &["KEYS", "t:{*}:profile:*"]);
    assert!(profiles.len() >= 20, "{profiles:?}");
    for key in &profiles {
        let customer = key.rsplit_once(":profile:").unwrap().1;
        assert_eq!(key, &new.profile(customer));
    }
    let claims: Vec<String> = cmd(&mut conn, &["KEYS", "t:{*}:seen:*"]);
    for key in &claims {
        let id = key.rsplit_once(":seen:").unwrap().1;
        assert_eq!(key, &new.legacy_seen(id));
    }
}

/// Drains with the new config (after re-enqueuing three sent job ids whose
/// claims moved) and checks every job's outcome: each once.
fn drain_and_check(redis: &Redis, f: &Filled, n: u32, m: u32) {
    let new = Keys::new("t", m);
    let mut conn = redis.conn();
    let again: Vec<String> = moving(n, m, f.sent.iter().map(|(id, _)| id.clone()))
        .take(3)
        .collect();
    assert_eq!(again.len(), 3);
    let jobs: Vec<Value> = again
        .iter()
        .map(|id| customer_job(id, "C-again", "email"))
        .collect();
    enqueue_cli(&f.s, &jobs);

    let mut run = f.s.tayori();
    run.args(["run", "--drain"]);
    let out = output_within(run, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events: Vec<Value> = results_of(&mut conn, &new)
        .into_iter()
        .map(|(_, _, e)| e)
        .collect();
    let by_job = terminal_by_job(&events);
    let one = |t: &str| vec![t.to_owned()];
    for (id, _) in f.sent.iter().chain(&f.waiting) {
        let mut got = by_job.get(id).cloned().unwrap_or_default();
        got.sort();
        let want = if again.contains(id) {
            vec!["duplicate".to_owned(), "sent".to_owned()]
        } else {
            one("sent")
        };
        assert_eq!(got, want, "{id}");
    }
    for id in &f.suppressed {
        assert_eq!(by_job.get(id), Some(&one("suppressed")), "{id}");
    }
    assert_eq!(by_job.get(&f.dead), Some(&one("failed")));
    for ch in CHANNELS {
        let sent = f
            .sent
            .iter()
            .chain(&f.waiting)
            .filter(|(_, c)| *c == ch)
            .count();
        assert_eq!(f.s.outbox_files(ch).len(), sent, "{ch} outbox");
    }
    // Nothing is left to send.
    assert_in_place(&mut conn, &new);
    let left = contents(&mut conn, &new);
    for kind in tayori::channel::registry::ids() {
        assert!(
            left.get(&format!("jobs {kind}")).is_none_or(Vec::is_empty),
            "{kind}: {left:?}"
        );
    }

    let out = migrate(&f.s, &[], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("nothing to migrate"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn raising_the_partition_count_moves_everything_and_every_job_is_delivered_once() {
    let (n, m) = (2, 5);
    let redis = Redis::start();
    let f = switch_config(fill_with_daemon(&redis, n, m), n, m);
    let mut conn = redis.conn();
    let before = before(&mut conn, n);

    // A dry run counts what changes partition and changes nothing.
    let snap = snapshot(&mut conn);
    let out = migrate(&f.s, &["--dry-run"], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dry = stdout(&out);
    assert!(
        dry.starts_with("would move (redis.partitions 2 → 5)"),
        "{dry}"
    );
    // (The stopped daemon's leases may expire meanwhile.)
    let after = snapshot(&mut conn);
    for (key, v) in &after {
        assert_eq!(snap.get(key), Some(v), "a dry run changed {key}");
    }
    for (key, (_, ttl)) in &snap {
        assert!(*ttl || after.contains_key(key), "a dry run deleted {key}");
    }
    let new = Keys::new("t", m);
    let moving_events = before
        .events
        .iter()
        .filter(|(p, _, e)| event_partition(&new, e) != *p)
        .count() as u64;
    assert!(moving_events > 0);
    assert_eq!(table(&dry).get("results"), Some(&moving_events), "{dry}");
    assert_eq!(
        table(&dry).get("results consumer groups"),
        Some(&(3 * 2)),
        "{dry}"
    );

    let out = migrate(&f.s, &[], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("moved (redis.partitions 2 → 5)"), "{text}");
    for kind in [
        "jobs email",
        "jobs line",
        "results",
        "dead letters",
        "delayed",
        "suppressions",
        "dedupe claims",
        "caps",
        "profiles",
    ] {
        assert_eq!(
            table(&text).get(kind),
            table(&dry).get(kind),
            "{kind}:\n{text}\n{dry}"
        );
    }
    assert!(
        table(&text)["jobs email"] > 0 && table(&text)["suppressions"] == 2,
        "{text}"
    );
    assert!(
        text.contains("the profile updater had counted were acknowledged"),
        "{text}"
    );
    let schema: HashMap<String, String> = cmd(&mut conn, &["HGETALL", "t:schema"]);
    assert_eq!(schema.get("partitions").map(String::as_str), Some("5"));
    assert!(!exists(&mut conn, "t:schema:migrating"));

    check_moved(&redis, &f, n, m, &before);
    drain_and_check(&redis, &f, n, m);
}

#[test]
fn lowering_the_partition_count_empties_the_removed_partitions() {
    let (n, m) = (4, 2);
    let redis = Redis::start();
    let f = switch_config(fill_with_daemon(&redis, n, m), n, m);
    let mut conn = redis.conn();
    let before = before(&mut conn, n);
    // The stopped daemon left its movers' leases there.
    assert!(!cmd::<Vec<String>>(&mut conn, &["KEYS", "t:{3}:*"]).is_empty());

    let out = migrate(&f.s, &[], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("moved (redis.partitions 4 → 2)"), "{text}");
    assert!(text.contains("Partitions 2 to 3 are gone"), "{text}");
    // Everything but the dedupe claims: they stay where they were written
    // (`P:schema` `claims_partitions`, 4 here) until they expire.
    let left = |conn: &mut redis::Connection, k: u32| -> Vec<String> {
        cmd::<Vec<String>>(conn, &["KEYS", &format!("t:{{{k}}}:*")])
            .into_iter()
            .filter(|key| !key.starts_with(&format!("t:{{{k}}}:claims:")))
            .collect()
    };
    for k in [2, 3] {
        let left = left(&mut conn, k);
        assert!(left.is_empty(), "partition {k}: {left:?}");
    }
    check_moved(&redis, &f, n, m, &before);
    drain_and_check(&redis, &f, n, m);
    for k in [2, 3] {
        let left = left(&mut conn, k);
        assert!(left.is_empty(), "partition {k} after the drain: {left:?}");
    }
    let schema: HashMap<String, String> = cmd(&mut conn, &["HGETALL", "t:schema"]);
    assert_eq!(
        schema.get("claims_partitions").map(String::as_str),
        Some("4")
    );
}

#[test]
fn an_interrupted_repartition_is_finished_without_a_second_send() {
    let (n, m) = (2, 3);
    let redis = Redis::start();
    let s = daemon_setup(&redis, n);
    let old = Keys::new("t", n);
    let new = Keys::new("t", m);
    let mut conn = redis.conn();
    let jobs: Vec<Value> = (0..30)
        .map(|i| customer_job(&format!("i-{i}"), &format!("C-{i}"), CHANNELS[i % 4]))
        .collect();
    enqueue_cli(&s, &jobs);
    let s = s.replace_config("partitions = 2", "partitions = 3");

    // An interrupted run into 3 partitions: it recorded the count and appended
    // one entry to its new partition (a new id, its old id as origin), but
    // had not deleted the old one.
    let _: () = cmd(
        &mut conn,
        &["HSET", "t:schema:migrating", "partitions", "3"],
    );
    let (entry, job, target) = old
        .all_partitions()
        .flat_map(|p| {
            xrange(&mut conn, &old.jobs(p, tayori::channel::email::ID))
                .into_iter()
                .map(move |e| (p, e))
        })
        .find_map(|(p, (id, f))| {
            let job = field(&f, "job").to_owned();
            let q = job_partition_in(&new, &job);
            (q != p).then(|| (id, job, new.jobs(q, tayori::channel::email::ID)))
        })
        .expect("an email job that moves");
    xadd(
        &mut conn,
        &target,
        "*",
        &[("job", &job), ("origin", &entry)],
    );

    // A run into another count is refused while that one is unfinished.
    let four = daemon_setup(&redis, 4);
    let out = migrate(&four, &[], true);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("redis.partitions = 3"),
        "{}",
        stderr(&out)
    );

    let out = migrate(&s, &[], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("1 entries were already copied"), "{text}");
    assert_in_place(&mut conn, &new);
    let copies = new
        .all_partitions()
        .flat_map(|p| xrange(&mut conn, &new.jobs(p, tayori::channel::email::ID)))
        .filter(|(_, f)| field(f, "job") == job)
        .count();
    assert_eq!(copies, 1);

    let mut run = s.tayori();
    run.args(["run", "--drain"]);
    let out = output_within(run, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events: Vec<Value> = results_of(&mut conn, &new)
        .into_iter()
        .map(|(_, _, e)| e)
        .collect();
    let by_job = terminal_by_job(&events);
    for j in &jobs {
        let id = j["id"].as_str().unwrap();
        assert_eq!(by_job.get(id), Some(&vec!["sent".to_owned()]), "{id}");
    }
    assert_eq!(s.outbox_files("email").len(), 8);
}

#[test]
fn schema_1_keys_beside_data_of_another_count_are_refused() {
    let redis = Redis::start();
    let s = partitioned(&redis, 2);
    let mut conn = redis.conn();
    let _: () = cmd(
        &mut conn,
        &["HSET", "t:schema", "version", "2", "partitions", "4"],
    );
    xadd(
        &mut conn,
        "t:jobs:email",
        "*",
        &[("job", &job_json("x-1", "email"))],
    );
    let before = snapshot(&mut conn);
    let out = migrate(&s, &[], true);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("redis.partitions = 4"), "{err}");
    assert_eq!(snapshot(&mut conn), before);
}
