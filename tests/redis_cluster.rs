//! Redis Cluster at the connection level: `[redis] cluster = [...]` through
//! `RedisTarget::from_config`, against real clusters made by the test (the test kit's
//! testkit/src/cluster.rs): keys on every primary, single-slot pipelines, scripts, a
//! reshard under writes, a failover, `WAIT` on the primary that took the writes, and
//! `check()`'s causes (TLS, ACL, unreachable).
//!
//! Clusters that tests only read and write their own keys on are shared (one per
//! binary, in a `OnceLock`); a test that moves slots or kills a node has its own.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tayori::config::RedisConfig;
use tayori::redis_connection::{key_slot, Cause, RedisConnection, RedisTarget};

use common::cluster::{ClusterOpts, RedisCluster};
use common::tls::Pki;

/// The reply timeout the tests' connections use.
const REPLY: Duration = Duration::from_secs(5);

/// Three primaries with a replica each, plain TCP: shared by the tests that only
/// touch keys of their own.
fn shared() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        RedisCluster::start_with(ClusterOpts {
            replicas: 1,
            ..ClusterOpts::default()
        })
    })
}

const USER: &str = "tayori";
const PASSWORD: &str = "cluster-s3cret-pw";

/// Three primaries, TLS only, an ACL user (`default` off), and the PKI's
/// directory (kept alive with it).
fn secure() -> &'static (RedisCluster, tempfile::TempDir) {
    static CLUSTER: OnceLock<(RedisCluster, tempfile::TempDir)> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(dir.path());
        let cluster = RedisCluster::start_with(ClusterOpts {
            tls: Some(pki),
            auth: Some((USER.into(), PASSWORD.into())),
            ..ClusterOpts::default()
        });
        (cluster, dir)
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `RedisTarget::from_config` of a `[redis]` body.
fn target_of(section: &str) -> Result<RedisTarget, (String, String)> {
    let c: RedisConfig = toml::from_str(section).expect("a valid [redis] body");
    RedisTarget::from_config(&c).map_err(|e| (e.key, e.message))
}

fn target(section: &str) -> RedisTarget {
    target_of(section).unwrap_or_else(|e| panic!("from_config refused {section:?}: {e:?}"))
}

async fn connect(section: &str) -> RedisConnection {
    let t = target(section);
    assert!(t.is_cluster(), "{section}");
    t.connect(REPLY).await.expect("connect to the cluster")
}

#[test]
fn keys_land_on_every_primary_and_read_back() {
    let cl = shared();
    let masters = cl.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    rt().block_on(async {
        let mut c = connect(&cl.redis_section("")).await;
        assert!(c.is_cluster());
        for &m in &masters {
            let key = cl.key_on(m, "kv");
            let value = format!("on {m}");
            redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .exec_async(&mut c)
                .await
                .unwrap();
            let got: String = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(got, value);
            // It is on that primary: a direct GET there is no MOVED.
            let mut node = cl.node_conn(m).unwrap();
            let direct: String = redis::cmd("GET").arg(&key).query(&mut node).unwrap();
            assert_eq!(direct, value, "{key} on {m}");
            // key_slot agrees with the server.
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&key)
                .query(&mut node)
                .unwrap();
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
        }
    });
}

#[test]
fn a_pipeline_of_one_hash_tag_runs_on_its_primary_and_a_cross_slot_one_is_refused() {
    let cl = shared();
    rt().block_on(async {
        let mut c = connect(&cl.redis_section("")).await;
        let (a, b) = ("{pipe-tag}:a", "{pipe-tag}:b");
        let (x, y): (i64, String) = redis::pipe()
            .cmd("DEL")
            .arg(a)
            .arg(b)
            .ignore()
            .cmd("INCRBY")
            .arg(a)
            .arg(5)
            .cmd("SET")
            .arg(b)
            .arg("bee")
            .ignore()
            .cmd("GET")
            .arg(b)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!((x, y.as_str()), (5, "bee"));
        // Atomic too (MULTI/EXEC goes to the same slot's primary).
        let (x2,): (i64,) = redis::pipe()
            .atomic()
            .cmd("INCRBY")
            .arg(a)
            .arg(2)
            .cmd("EXPIRE")
            .arg(b)
            .arg(600)
            .ignore()
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(x2, 7);
        let m = cl.master_for_key(a);
        let mut node = cl.node_conn(m).unwrap();
        let (da, db): (i64, String) = redis::pipe().get(a).get(b).query(&mut node).unwrap();
        assert_eq!((da, db.as_str()), (7, "bee"));
        // Two slots in one pipeline: refused before anything is sent.
        let cross = cl.key_on(*cl.masters().iter().find(|&&p| p != m).unwrap(), "other");
        let e = redis::pipe()
            .cmd("SET")
            .arg(a)
            .arg("x")
            .cmd("SET")
            .arg(&cross)
            .arg("x")
            .exec_async(&mut c)
            .await
            .unwrap_err();
        assert_eq!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot),
            "{e}"
        );
        let still: i64 = redis::cmd("GET").arg(a).query_async(&mut c).await.unwrap();
        assert_eq!(still, 7, "nothing of the refused pipeline ran");
    });
}

#[test]
fn scripts_run_on_the_primary_of_their_first_key_even_when_not_loaded() {
    let cl = shared();
    let masters = cl.masters();
    // Never loaded anywhere before: the first EVALSHA gets NOSCRIPT.
    let unique = format!("{:?}", Instant::now());
    let script = redis::Script::new(&format!(
        "-- {unique}\n\
         redis.call('SET', KEYS[1], ARGV[1])\n\
         redis.call('SET', KEYS[2], ARGV[1] .. '!')\n\
         return redis.call('GET', KEYS[2])"
    ));
    let loaded_on = |port: u16| -> bool {
        let mut node = cl.node_conn(port).unwrap();
        let loaded: Vec<bool> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(script.get_hash())
            .query(&mut node)
            .unwrap();
        loaded == [true]
    };
    for &m in &masters {
        assert!(!loaded_on(m), "the script is new, yet loaded on {m}");
    }
    let run = |c: &mut RedisConnection, m: u16, round: &str| {
        let tag = cl.key_on(m, "script");
        let (k1, k2) = (format!("{{{tag}}}:one"), format!("{{{tag}}}:two"));
        let value = format!("{m}-{round}");
        let script = &script;
        let mut c = c.clone();
        async move {
            let got: String = script
                .key(&k1)
                .key(&k2)
                .arg(&value)
                .invoke_async(&mut c)
                .await
                .unwrap();
            assert_eq!(got, format!("{value}!"));
            let mut node = cl.node_conn(m).unwrap();
            let direct: String = redis::cmd("GET").arg(&k1).query(&mut node).unwrap();
            assert_eq!(direct, value, "the script ran on {m}");
        }
    };
    rt().block_on(async {
        let mut c = connect(&cl.redis_section("")).await;
        for &m in &masters {
            run(&mut c, m, "first").await;
        }
        // The NOSCRIPT fallback's SCRIPT LOAD went to every primary (not to
        // the replicas: the crate holds no connection to them, and nothing
        // runs there).
        for &m in &masters {
            assert!(loaded_on(m), "script on primary {m}");
        }
        // A primary without the script (as a promoted replica is: Redis 7
        // replicates no SCRIPT LOAD): the next call loads it again.
        let m = masters[1];
        let mut node = cl.node_conn(m).unwrap();
        redis::cmd("SCRIPT").arg("FLUSH").exec(&mut node).unwrap();
        assert!(!loaded_on(m));
        run(&mut c, m, "after-flush").await;
        assert!(loaded_on(m), "script on primary {m} after the flush");
    });
}

#[test]
fn wait_replicas_asks_the_primary_that_took_the_writes() {
    let cl = shared();
    let masters = cl.masters();
    let waits = |port: u16| -> u64 {
        let mut node = cl.node_conn(port).unwrap();
        let text: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut node)
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    rt().block_on(async {
        let main = connect(&cl.redis_section("")).await;
        // WAIT blocks its socket: the writes and the WAIT on a connection of their own.
        let mut c = main.detached();
        assert!(c.is_cluster());
        for &m in &masters {
            let before: BTreeMap<u16, u64> = masters.iter().map(|&p| (p, waits(p))).collect();
            let key = cl.key_on(m, "durable");
            redis::cmd("SET")
                .arg(&key)
                .arg("v")
                .exec_async(&mut c)
                .await
                .unwrap();
            let reached = c.wait_replicas(&key, 1, 2000).await.unwrap();
            assert_eq!(reached, 1, "replicas of {m}");
            // Two asked, one exists: the timeout passes and it says 1.
            let reached = c.wait_replicas(&key, 2, 100).await.unwrap();
            assert_eq!(reached, 1, "replicas of {m}");
            for &p in &masters {
                let asked = waits(p) - before[&p];
                assert_eq!(asked, if p == m { 2 } else { 0 }, "WAITs on {p} for {key}");
            }
        }
    });
}

#[test]
fn a_detached_connection_has_sockets_of_its_own() {
    let cl = shared();
    let m = cl.masters()[0];
    let tag = cl.key_on(m, "block");
    let (stream, other) = (format!("{{{tag}}}:stream"), format!("{{{tag}}}:other"));
    // XREADs blocked on that primary now (CLIENT LIST: flags b, cmd xread).
    let blocked_reads = || -> usize {
        let mut node = cl.node_conn(m).unwrap();
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut node).unwrap();
        list.lines()
            .filter(|l| {
                l.contains(" cmd=xread")
                    && l.split(' ')
                        .any(|f| f.starts_with("flags=") && f.contains('b'))
            })
            .count()
    };
    let wait_blocked = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while blocked_reads() != n {
            assert!(Instant::now() < deadline, "never {n} blocked XREAD on {m}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    rt().block_on(async {
        // A reply timeout longer than the BLOCK, which only an XADD ends.
        let c = target(&cl.redis_section(""))
            .connect(Duration::from_secs(60))
            .await
            .unwrap();
        let read = |mut conn: RedisConnection| {
            let stream = stream.clone();
            tokio::spawn(async move {
                redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(30_000)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg("$")
                    .query_async::<redis::Value>(&mut conn)
                    .await
            })
        };
        let add = |value: &str| {
            let mut node = cl.node_conn(m).unwrap();
            let _: String = redis::cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("v")
                .arg(value)
                .query(&mut node)
                .unwrap();
        };
        let get = |mut conn: RedisConnection| {
            let other = other.clone();
            tokio::spawn(async move {
                redis::cmd("GET")
                    .arg(&other)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
        };
        // Blocking on a detached connection holds up nobody: a GET on the
        // shared sockets answers while the read still blocks.
        let reader = read(c.detached());
        wait_blocked(1);
        get(c.clone()).await.unwrap().unwrap();
        assert_eq!(blocked_reads(), 1, "the read ended before the GET answered");
        add("one");
        let got = format!("{:?}", reader.await.unwrap().unwrap());
        assert!(got.contains("one"), "{got}");
        // Blocking on a clone holds up the other clones' commands to that node
        // (the reason blocking callers need `detached`): the GET answers only
        // once the read has its entry.
        let reader = read(c.clone());
        wait_blocked(1);
        let pending = get(c.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !pending.is_finished(),
            "a GET on a clone answered while the shared socket was blocked"
        );
        add("two");
        let got = format!("{:?}", reader.await.unwrap().unwrap());
        assert!(got.contains("two"), "{got}");
        pending.await.unwrap().unwrap();
    });
}

#[test]
fn writes_keep_succeeding_while_slots_move() {
    let cl = RedisCluster::start();
    let masters = cl.masters();
    let (from, to) = (masters[0], masters[1]);
    let owned = |port: u16| -> u32 {
        cl.slot_map()
            .iter()
            .filter(|&&(_, _, m)| m == port)
            .map(|&(a, b, _)| u32::from(b - a) + 1)
            .sum()
    };
    let (from_before, to_before) = (owned(from), owned(to));
    let rt = rt();
    let mut c = rt.block_on(connect(&cl.redis_section("")));
    // Keys in every slot range, so that migrating slots hold keys to move.
    const KEYS: u64 = 3000;
    rt.block_on(async {
        for i in 0..KEYS {
            redis::cmd("SET")
                .arg(format!("reshard:{i}"))
                .arg(0)
                .exec_async(&mut c)
                .await
                .unwrap();
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    // Rounds done so far, to show that writes ran while the slots moved.
    let progress = Arc::new(AtomicU64::new(0));
    let writer = {
        let stop = stop.clone();
        let progress = progress.clone();
        let mut c = c.clone();
        rt.spawn(async move {
            let script = redis::Script::new(
                "redis.call('INCR', KEYS[1]) return redis.call('INCR', KEYS[2])",
            );
            let (mut rounds, mut errors) = (0u64, Vec::new());
            let mut last: BTreeMap<u64, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) || rounds < 2 * KEYS {
                let i = rounds % KEYS;
                let n = last.get(&i).copied().unwrap_or(0) + 1;
                let key = format!("reshard:{i}");
                match redis::cmd("SET").arg(&key).arg(n).exec_async(&mut c).await {
                    Ok(()) => {
                        last.insert(i, n);
                    }
                    Err(e) => errors.push(format!("SET {key}: {e}")),
                }
                let tag = format!("{{reshard-script:{i}}}");
                let r: redis::RedisResult<i64> = script
                    .key(format!("{tag}:a"))
                    .key(format!("{tag}:b"))
                    .invoke_async(&mut c)
                    .await;
                if let Err(e) = r {
                    errors.push(format!("script {tag}: {e}"));
                }
                rounds += 1;
                progress.store(rounds, Ordering::Relaxed);
            }
            (rounds, errors, last)
        })
    };
    let started = Instant::now();
    let before = progress.load(Ordering::Relaxed);
    cl.reshard(from, to, 2000);
    let during = progress.load(Ordering::Relaxed) - before;
    let reshard_took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (rounds, errors, last) = rt.block_on(writer).unwrap();
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert_eq!(owned(from), from_before - 2000);
    assert_eq!(owned(to), to_before + 2000);
    // Every write is there, once: the last value of every key, and each
    // script's two counters equal.
    rt.block_on(async {
        for (i, n) in &last {
            let got: u64 = redis::cmd("GET")
                .arg(format!("reshard:{i}"))
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(got, *n, "reshard:{i}");
        }
        for i in 0..KEYS.min(rounds) {
            let tag = format!("{{reshard-script:{i}}}");
            let (a, b): (u64, u64) = redis::pipe()
                .get(format!("{tag}:a"))
                .get(format!("{tag}:b"))
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(a, b, "{tag}");
            assert_eq!(a, rounds / KEYS + u64::from(i < rounds % KEYS), "{tag}");
        }
    });
    assert!(during > 0, "no write ran while the slots moved");
    eprintln!(
        "reshard of 2000 slots took {reshard_took:?}; {during} of {rounds} rounds of SET + \
         script ran during it, no error"
    );
}

#[test]
fn a_failover_is_followed_without_a_new_connection() {
    let mut cl = RedisCluster::start_with(ClusterOpts {
        replicas: 1,
        ..ClusterOpts::default()
    });
    let rt = rt();
    let mut c = rt.block_on(connect(&cl.redis_section("")));
    let victim = cl.masters()[0];
    let replicas_before = cl.replicas();
    let key = cl.key_on(victim, "failover");
    rt.block_on(async {
        redis::cmd("SET")
            .arg(&key)
            .arg("before")
            .exec_async(&mut c)
            .await
            .unwrap();
        assert_eq!(c.wait_replicas(&key, 1, 2000).await.unwrap(), 1);
    });
    cl.kill_master(victim);
    let started = Instant::now();
    let recovered = rt.block_on(async {
        loop {
            let r = redis::cmd("SET")
                .arg(&key)
                .arg("after")
                .exec_async(&mut c)
                .await;
            if r.is_ok() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no write to {key} within 30 s of killing {victim}: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    cl.wait_ok(Duration::from_secs(30));
    // The key's slots are served by what was a replica.
    let promoted = cl.master_for_key(&key);
    assert!(
        replicas_before.contains(&promoted),
        "{key} is on {promoted}, not one of the replicas {replicas_before:?}"
    );
    rt.block_on(async {
        let got: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(got, "after");
        target(&cl.redis_section("")).check().await.unwrap();
    });
    eprintln!("writes to the killed primary's slots resumed after {recovered:?}");
}

#[test]
fn check_passes_on_a_healthy_cluster() {
    let cl = shared();
    let t = target(&cl.redis_section(""));
    assert!(t.shown().contains("Redis Cluster"), "{}", t.shown());
    rt().block_on(t.check()).unwrap();
}

/// A primary with no replica to take over is gone: the survivors say
/// `cluster_state:fail`, and `check()` says the cluster is not ok (something
/// that may fix itself, so the daemon keeps trying) rather than passing.
#[test]
fn check_names_a_cluster_that_lost_a_shard() {
    let mut cl = RedisCluster::start();
    let section = cl.redis_section("");
    let victim = cl.masters()[0];
    cl.kill_master(victim);
    let survivors: Vec<u16> = cl.masters();
    let state_of = |port: u16| -> Option<String> {
        let mut node = cl.node_conn(port).ok()?;
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut node).ok()?;
        info.lines()
            .find_map(|l| l.trim().strip_prefix("cluster_state:"))
            .map(str::to_owned)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !survivors
        .iter()
        .all(|&p| state_of(p).as_deref() == Some("fail"))
    {
        assert!(
            Instant::now() < deadline,
            "the survivors {survivors:?} never said cluster_state:fail"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let e = rt().block_on(target(&section).check()).unwrap_err();
    let text = e.to_string();
    eprintln!("a shard lost: {text}");
    assert_eq!(e.cause, Cause::ClusterNotOk, "{text}");
    assert!(!e.cause.is_permanent());
    assert!(text.contains("cluster_state:fail"), "{text}");
}

#[test]
fn tls_and_an_acl_user_work_and_their_mistakes_are_named() {
    let (cl, _pki_dir) = secure();
    let pki = cl.opts.tls.as_ref().unwrap();
    let login = format!("username = \"{USER}\"\npassword = \"{PASSWORD}\"\n");
    let rt = rt();
    // Right CA and login: check passes, keys go everywhere.
    let good = target(&cl.redis_section(&login));
    assert!(good.is_tls());
    rt.block_on(good.check()).unwrap();
    rt.block_on(async {
        let mut c = good.connect(REPLY).await.unwrap();
        for m in cl.masters() {
            let key = cl.key_on(m, "tls");
            redis::cmd("SET")
                .arg(&key)
                .arg(m)
                .exec_async(&mut c)
                .await
                .unwrap();
            let got: u16 = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(got, m);
        }
    });
    // The login in the seed URLs instead of the keys.
    let seeds: Vec<String> = cl
        .seeds()
        .iter()
        .map(|s| s.replacen("rediss://", &format!("rediss://{USER}:{PASSWORD}@"), 1))
        .collect();
    let in_urls = format!(
        "cluster = {seeds:?}\ntls_ca_file = {:?}\n",
        pki.ca.display().to_string()
    );
    rt.block_on(target(&in_urls).check()).unwrap();
    // A wrong password.
    let wrong = "wrong-pw-not-shown";
    let t = target(&cl.redis_section(&format!("username = \"{USER}\"\npassword = \"{wrong}\"\n")));
    let e = rt.block_on(t.check()).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.cause, Cause::Auth, "{text}");
    assert!(e.cause.is_permanent());
    assert!(
        text.contains("redis.password") && text.contains("redis.cluster"),
        "{text}"
    );
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
    // No login at all (`default` is off).
    let e = rt
        .block_on(target(&cl.redis_section("")).check())
        .unwrap_err();
    assert_eq!(e.cause, Cause::Auth, "{e}");
    // A CA that did not sign the nodes' certificates.
    let other_ca = cl.redis_section(&login).replace(
        &pki.ca.display().to_string(),
        &pki.other_ca.display().to_string(),
    );
    assert!(other_ca.contains("other-ca.pem"), "{other_ca}");
    let e = rt.block_on(target(&other_ca).check()).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.cause, Cause::Certificate, "{text}");
    assert!(text.contains("redis.tls_ca_file"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    // Plain seeds to TLS-only nodes.
    let plain: Vec<String> = cl
        .seeds()
        .iter()
        .map(|s| s.replacen("rediss://", "redis://", 1))
        .collect();
    let e = rt
        .block_on(target(&format!("cluster = {plain:?}\n{login}")).check())
        .unwrap_err();
    // A TLS-only node drops a plain client: named as such, not as a certificate.
    let text = e.to_string();
    assert_eq!(e.cause, Cause::Unreachable, "{text}");
    assert!(
        text.contains("rediss://") && text.contains("redis.cluster"),
        "{text}"
    );
}

#[test]
fn unreachable_seeds_are_named() {
    let ports = [common::free_port(), common::free_port()];
    let section = format!(
        "cluster = [\"redis://127.0.0.1:{}\", \"redis://127.0.0.1:{}\"]",
        ports[0], ports[1]
    );
    let e = rt().block_on(target(&section).check()).unwrap_err();
    let text = e.to_string();
    eprintln!("unreachable seeds: {text}");
    assert_eq!(e.cause, Cause::Unreachable, "{text}");
    assert!(!e.cause.is_permanent());
    assert!(text.contains("redis.cluster"), "{text}");
}

#[test]
fn cluster_settings_that_cannot_work_are_refused() {
    let key = |section: &str| match target_of(section) {
        Ok(_) => "ok".to_owned(),
        Err((k, _)) => k,
    };
    let seed = "cluster = [\"redis://127.0.0.1:7000\"]\n";
    assert_eq!(key(seed), "ok");
    assert_eq!(
        key(&format!("{seed}url = \"redis://127.0.0.1:6379\"")),
        "redis.url"
    );
    assert_eq!(
        key(&format!(
            "{seed}sentinels = [\"redis://127.0.0.1:26379\"]\nmaster_name = \"m\""
        )),
        "redis.sentinels"
    );
    assert_eq!(
        key("cluster = [\"redis://127.0.0.1:7000\", \"rediss://127.0.0.1:7001\"]"),
        "redis.cluster"
    );
    assert_eq!(
        key("cluster = [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001/1\"]"),
        "redis.cluster[1]"
    );
    let Err((_, message)) = target_of(&format!("{seed}url = \"redis://127.0.0.1:6379\"")) else {
        panic!("cluster with url accepted");
    };
    assert!(message.contains("cluster"), "{message}");
}
