//! Compact dedupe claims (`src/queue/claims.rs`) against a real redis-server:
//! the same id from another job is a duplicate within the window — across a
//! bucket boundary too — and free again after it; a redelivery of the same job
//! passes; a bucket that outgrows its shards adds a generation and still finds
//! every claim, with every shard a listpack; the string claims of the layout
//! before are read for one window after an upgrade; `tayori forget`.

mod common;

use std::time::Duration;

use common::*;
use tayori::channel_id::ChannelId;
use tayori::config::Config;
use tayori::queue::{Claim, ClaimRequest, Queue};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A queue on `redis` as the daemon opens it (schema checked), with `window`.
fn queue(rt: &tokio::runtime::Runtime, s: &Setup) -> (Queue, Duration) {
    let config = Config::load(&s.config).expect("config");
    let window = config.queue.dedupe_window;
    let q = rt.block_on(async {
        let q = Queue::connect(&config.redis_target().expect("target"), config.redis.keys())
            .await
            .expect("connect");
        q.check_schema().await.expect("schema");
        q
    });
    (q, window)
}

/// Each (id, origin)'s claim, in one batch.
fn claim(
    rt: &tokio::runtime::Runtime,
    q: &Queue,
    window: Duration,
    jobs: &[(&str, &str)],
) -> Vec<Claim> {
    let requests: Vec<ClaimRequest> = jobs
        .iter()
        .map(|(id, origin)| ClaimRequest {
            partition: Default::default(),
            job_id: id,
            campaign: None,
            origin,
            address: None,
            redelivered: None,
        })
        .collect();
    rt.block_on(q.claim(ChannelId::new("email"), &requests, window))
        .expect("claim")
        .into_iter()
        .map(|c| c.claim)
        .collect()
}

/// Redis's clock in ms (buckets follow it, not ours).
fn redis_ms(conn: &mut redis::Connection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(conn).unwrap();
    s * 1000 + us / 1000
}

/// Sleeps until `ms` past the start of the next bucket of `window`.
fn into_next_bucket(conn: &mut redis::Connection, window: Duration, ms: u64) {
    let w = window.as_millis() as u64;
    let now = redis_ms(conn);
    std::thread::sleep(Duration::from_millis(w - now % w + ms));
}

#[test]
fn a_claim_holds_for_its_window_across_a_bucket_boundary_and_lapses_after() {
    let redis = Redis::start();
    let s = setup(&redis, "dedupe_window = \"2s\"", "");
    let rt = rt();
    let (q, window) = queue(&rt, &s);
    let mut conn = redis.conn();
    // Just after a boundary, so the first checks fall in one bucket.
    into_next_bucket(&mut conn, window, 50);
    let first = "1733600000000-0";
    assert_eq!(
        claim(
            &rt,
            &q,
            window,
            &[
                ("a", first),
                ("a", "1733600000001-0"),
                ("b", "1733600000002-7")
            ]
        ),
        [Claim::Mine, Claim::Duplicate, Claim::Mine],
        "a second job with the id, in the same batch"
    );
    assert_eq!(
        claim(&rt, &q, window, &[("a", first)]),
        [Claim::Mine],
        "a redelivery"
    );
    // The next bucket: the claim is in the one before, still within the window.
    into_next_bucket(&mut conn, window, 50);
    assert_eq!(
        claim(
            &rt,
            &q,
            window,
            &[("a", "1733600000009-0"), ("a", first), ("b", "x-api1")]
        ),
        [Claim::Duplicate, Claim::Mine, Claim::Duplicate]
    );
    // Two buckets on, the claim has lapsed: the id is free for a new job.
    into_next_bucket(&mut conn, window, 50);
    into_next_bucket(&mut conn, window, 50);
    assert_eq!(
        claim(&rt, &q, window, &[("a", "1733600000009-0")]),
        [Claim::Mine],
        "older than two windows"
    );
    // And its keys expire: nothing of the first bucket is left.
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("t:{0}:claims:*")
        .query(&mut conn)
        .unwrap();
    let now_bucket = redis_ms(&mut conn) / window.as_millis() as u64;
    for key in &left {
        let bucket: u64 = key.split(':').nth(4).unwrap().parse().unwrap();
        assert!(
            bucket + 2 > now_bucket,
            "{key} outlived its bucket ({now_bucket} now)"
        );
    }
}

#[test]
fn a_busy_bucket_grows_and_every_shard_stays_a_listpack() {
    let redis = Redis::start();
    let s = setup(&redis, "dedupe_window = \"1h\"", "");
    let rt = rt();
    let (q, window) = queue(&rt, &s);
    // 64 shards to start with instead of 65,536: a bucket that grows with
    // thousands of claims, not millions.
    q.claims().set_min_shards(64);
    let ids: Vec<String> = (0..30_000).map(|i| format!("job-{i}")).collect();
    let origins: Vec<String> = (0..30_000)
        .map(|i| format!("1733600000000-{}", i % 4096))
        .collect();
    let jobs: Vec<(&str, &str)> = ids
        .iter()
        .map(String::as_str)
        .zip(origins.iter().map(String::as_str))
        .collect();
    for chunk in jobs.chunks(500) {
        assert!(claim(&rt, &q, window, chunk)
            .iter()
            .all(|c| *c == Claim::Mine));
    }
    let mut conn = redis.conn();
    let metas: Vec<String> = redis::cmd("KEYS")
        .arg("t:{0}:claims:3600:*")
        .query(&mut conn)
        .unwrap();
    let meta = metas
        .iter()
        .find(|k| k.matches(':').count() == 4)
        .expect("the bucket's meta");
    let gens: String = redis::cmd("HGET")
        .arg(meta)
        .arg("gens")
        .query(&mut conn)
        .unwrap();
    assert!(
        gens.contains(','),
        "30,000 claims in a bucket sized for 64 × 48: {gens}"
    );
    let n: u64 = redis::cmd("HGET")
        .arg(meta)
        .arg("n")
        .query(&mut conn)
        .unwrap();
    assert_eq!(n, 30_000);
    // Every claim is found again, in whichever generation it went to.
    let others: Vec<(&str, &str)> = ids
        .iter()
        .map(|id| (id.as_str(), "1733600000001-0"))
        .collect();
    for chunk in others.chunks(500) {
        assert!(claim(&rt, &q, window, chunk)
            .iter()
            .all(|c| *c == Claim::Duplicate));
    }
    for chunk in jobs.chunks(500) {
        assert!(claim(&rt, &q, window, chunk)
            .iter()
            .all(|c| *c == Claim::Mine));
    }
    let shards: Vec<String> = metas
        .iter()
        .filter(|k| k.matches(':').count() == 6)
        .cloned()
        .collect();
    assert!(shards.len() > 64);
    for key in &shards {
        let encoding: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(key)
            .query(&mut conn)
            .unwrap();
        assert_eq!(encoding, "listpack", "{key}");
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
        assert!(ttl > 3_600_000 && ttl <= 3 * 3_600_000, "{key}: {ttl}");
    }
}

#[test]
fn claims_of_the_layout_before_are_read_for_one_window_after_an_upgrade() {
    let redis = Redis::start();
    let mut conn = redis.conn();
    // A Redis of the layout before: schema 2 without `claims_since`, and a
    // claim as a string key.
    let _: () = redis::cmd("HSET")
        .arg("t:schema")
        .arg("version")
        .arg(2)
        .arg("partitions")
        .arg(1)
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("t:{0}:seen:old-1")
        .arg("1700000000000-3")
        .arg("EX")
        .arg(3600)
        .query(&mut conn)
        .unwrap();
    let s = setup(&redis, "dedupe_window = \"1h\"", "");
    let rt = rt();
    let (q, window) = queue(&rt, &s);
    assert_eq!(
        claim(
            &rt,
            &q,
            window,
            &[("old-1", "1733600000000-0"), ("old-1", "1700000000000-3")]
        ),
        [Claim::Duplicate, Claim::Mine],
        "the old claim stops another job and lets its own through"
    );
    let since: i64 = redis::cmd("HGET")
        .arg("t:schema")
        .arg("claims_since")
        .query(&mut conn)
        .unwrap();
    assert!(since > 0);
    // A Redis that started with compact claims never reads the old keys.
    let redis2 = Redis::start();
    let s2 = setup(&redis2, "dedupe_window = \"1h\"", "");
    let (q2, _) = queue(&rt, &s2);
    let mut conn2 = redis2.conn();
    let since: i64 = redis::cmd("HGET")
        .arg("t:schema")
        .arg("claims_since")
        .query(&mut conn2)
        .unwrap();
    assert_eq!(since, 0);
    let _: () = redis::cmd("SET")
        .arg("t:{0}:seen:old-1")
        .arg("1700000000000-3")
        .query(&mut conn2)
        .unwrap();
    assert_eq!(
        claim(&rt, &q2, window, &[("old-1", "1733600000000-0")]),
        [Claim::Mine]
    );
}

#[test]
fn forget_frees_an_id() {
    let redis = Redis::start();
    let s = setup(&redis, "dedupe_window = \"1h\"", "");
    let rt = rt();
    let (q, window) = queue(&rt, &s);
    assert_eq!(
        claim(&rt, &q, window, &[("f-1", "1733600000000-0")]),
        [Claim::Mine]
    );
    let out = s
        .tayori()
        .args(["forget", "f-1", "never-sent"])
        .output()
        .expect("tayori forget");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "an id without a claim: {text}");
    assert!(text.contains("forgot f-1"), "{text}");
    assert!(text.contains("never-sent: no claim"), "{text}");
    assert_eq!(
        claim(&rt, &q, window, &[("f-1", "1733600000005-0")]),
        [Claim::Mine],
        "after forget, another job may use the id"
    );
}
