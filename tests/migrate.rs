//! `tayori migrate`: a Redis filled by hand with schema-1 data (the names before
//! partitions: `t:jobs:email`, `t:results`, …) is refused by the daemon and the
//! CLI, counted by `--dry-run` without a change, and moved to four partitions:
//! every entry where the partition function puts it with its id, groups where
//! their readers left off, TTLs kept; then a daemon finishes every job once.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tayori::keys::{Keys, Partition};
use tayori_channels::ChannelKind;

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
fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tayori");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tayori did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

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
    for ch in ChannelKind::ALL {
        jobs.insert(ch.as_str(), xrange(conn, &format!("t:jobs:{ch}")));
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
        .map(|k| {
            let dump: Vec<u8> = cmd(conn, &["DUMP", &k]);
            let ttl: i64 = cmd(conn, &["PTTL", &k]);
            (k, (dump, ttl != -1))
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
    for kind in ChannelKind::ALL {
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
    assert!(xrange(&mut conn, &k.jobs(p0, ChannelKind::Email))
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
    let [hash, at, by] = k.suppression_keys(ChannelKind::Email, "sup@example.com");
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
    let [lifted, lifted_at, _] = k.suppression_keys(ChannelKind::Email, "lifted@example.com");
    assert_eq!(get(&mut conn, &lifted, "lifted@example.com"), None);
    assert_eq!(
        get(&mut conn, &lifted_at, "lifted@example.com").as_deref(),
        Some("1700000000001")
    );
    let [line, _, _] = k.suppression_keys(ChannelKind::Line, "Uabc");
    assert_eq!(get(&mut conn, &line, "Uabc").as_deref(), Some("unfollow"));

    // Claims, caps and profiles with what was left of their TTLs.
    let pttl = |conn: &mut redis::Connection, key: &str| -> i64 { cmd(conn, &["PTTL", key]) };
    let seen = k.seen("dup-1");
    assert_eq!(cmd::<String>(&mut conn, &["GET", &seen]), "1-1");
    let ttl = pttl(&mut conn, &seen);
    assert!(ttl > HOUR_MS - 60_000 && ttl <= HOUR_MS, "{seen}: {ttl}");
    assert_eq!(pttl(&mut conn, &k.seen("old-9")), -1);
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
        xadd(&mut conn, &k.jobs(p, ChannelKind::Email), id, &f);
    }
    let (id, fields) = &v1.results[0];
    let p = partition_of_event(field(fields, "event"));
    xadd(
        &mut conn,
        &k.results(p),
        id,
        &[("event", field(fields, "event"))],
    );
    let _: () = cmd(&mut conn, &["SET", &k.seen("dup-1"), "1-1"]);

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
        |p| k.jobs(p, ChannelKind::Email),
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
    let target = k.jobs(p, ChannelKind::Email);
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
        .map(|p| xlen(&mut conn, &k.jobs(p, ChannelKind::Email)))
        .sum();
    assert_eq!(total, 3);
    let kept = xrange(
        &mut conn,
        &k.jobs(partition_of_job(&other), ChannelKind::Email),
    );
    assert!(kept
        .iter()
        .any(|(id, f)| id == "3000-0" && field(f, "job") == other));
    assert!(!exists(&mut conn, "t:jobs:email"));
}

#[test]
fn a_changed_partition_count_is_refused() {
    let redis = Redis::start();
    let s = partitioned(&redis, 2);
    let mut conn = redis.conn();
    let _: () = cmd(
        &mut conn,
        &["HSET", "t:schema", "version", "2", "partitions", "4"],
    );
    let out = migrate(&s, &[], true);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not supported") && err.contains("redis.partitions = 4"),
        "{err}"
    );
}
