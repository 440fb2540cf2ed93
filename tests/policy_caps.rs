//! Frequency caps against a real redis-server: rolling windows, the `all`
//! scope, idempotent counting per job id, uncount, and exact counts under
//! concurrency.

mod common;

use common::Redis;
use redis::aio::MultiplexedConnection;
use tayori::channel::{dm::ID as Dm, email::ID as Email, line::ID as Line, sms::ID as Sms};
use tayori::channel_id::ChannelId as ChannelKind;
use tayori::policy::{CapVerdict, Policy, PolicyConfig};

fn keys() -> tayori::keys::Keys {
    tayori::keys::Keys::new("tayori", 1)
}
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-11-23T00:00:00Z: explicit clocks, so windows can be slid in tests.
const T0: i64 = 1_795_392_000_000;

fn policy(caps_toml: &str) -> Policy {
    #[derive(serde::Deserialize)]
    struct Root {
        policy: PolicyConfig,
    }
    let root: Root = toml::from_str(&format!("[policy]\n{caps_toml}")).unwrap();
    Policy::from_config(
        &root.policy,
        &tayori::channel::registry::quiet_hours_defaults(),
    )
    .unwrap()
}

fn cap(channel: &str, max: u32, per: &str) -> String {
    format!("[[policy.caps]]\nchannel = \"{channel}\"\nmax = {max}\nper = \"{per}\"\n")
}

async fn conn(redis: &Redis) -> MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

struct Check<'a> {
    policy: &'a Policy,
    conn: MultiplexedConnection,
}

impl Check<'_> {
    async fn send(
        &mut self,
        channel: ChannelKind,
        customer: &str,
        job: &str,
        now: i64,
    ) -> CapVerdict {
        self.policy
            .check_and_count(&mut self.conn, &keys(), channel, customer, job, now)
            .await
            .unwrap()
    }

    async fn uncount(&mut self, channel: ChannelKind, customer: &str, job: &str) {
        self.policy
            .uncount(&mut self.conn, &keys(), channel, customer, job)
            .await
            .unwrap()
    }

    async fn members(&mut self, key: &str) -> Vec<String> {
        redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn)
            .await
            .unwrap()
    }
}

fn capped(until_ms: i64, cap: &str) -> CapVerdict {
    CapVerdict::Capped {
        until_ms,
        cap: cap.to_owned(),
    }
}

#[tokio::test]
async fn email_two_a_day_then_capped_until_the_oldest_ages_out() {
    let redis = Redis::start();
    let p = policy(&cap("email", 2, "1d"));
    let mut c = Check {
        policy: &p,
        conn: conn(&redis).await,
    };
    assert_eq!(c.send(Email, "C1", "j1", T0).await, CapVerdict::Allowed);
    assert_eq!(
        c.send(Email, "C1", "j2", T0 + HOUR).await,
        CapVerdict::Allowed
    );
    assert_eq!(
        c.send(Email, "C1", "j3", T0 + 2 * HOUR).await,
        capped(T0 + DAY, "email 2/1d")
    );
    // Nothing was counted for the capped job.
    assert_eq!(c.members("tayori:{0}:cap:email:C1").await, ["j1", "j2"]);
    // Another customer, and another channel without caps, are not affected.
    assert_eq!(
        c.send(Email, "C2", "k1", T0 + 2 * HOUR).await,
        CapVerdict::Allowed
    );
    assert_eq!(
        c.send(Line, "C1", "l1", T0 + 2 * HOUR).await,
        CapVerdict::Allowed
    );
    assert_eq!(
        c.members("tayori:{0}:cap:line:C1").await,
        Vec::<String>::new()
    );

    // The window slides: one ms before j1 ages out, still capped; then a slot.
    assert_eq!(
        c.send(Email, "C1", "j3", T0 + DAY - 1).await,
        capped(T0 + DAY, "email 2/1d")
    );
    assert_eq!(
        c.send(Email, "C1", "j3", T0 + DAY).await,
        CapVerdict::Allowed
    );
    assert_eq!(
        c.send(Email, "C1", "j4", T0 + DAY + 1).await,
        capped(T0 + DAY + HOUR, "email 2/1d"),
        "now j2 is the oldest in the window"
    );
    // j1 was trimmed away.
    assert_eq!(c.members("tayori:{0}:cap:email:C1").await, ["j2", "j3"]);

    // The set expires by itself after the longest window.
    let pttl: i64 = redis::cmd("PTTL")
        .arg("tayori:{0}:cap:email:C1")
        .query_async(&mut c.conn)
        .await
        .unwrap();
    assert!(pttl > DAY - 60_000 && pttl <= DAY, "{pttl}");
}

#[tokio::test]
async fn the_all_cap_counts_across_channels() {
    let redis = Redis::start();
    let p = policy(&(cap("email", 2, "1d") + &cap("all", 3, "1d")));
    let mut c = Check {
        policy: &p,
        conn: conn(&redis).await,
    };
    assert!(p.has_caps(Dm), "\"all\" applies to every channel");
    assert_eq!(c.send(Email, "C1", "e1", T0).await, CapVerdict::Allowed);
    assert_eq!(c.send(Line, "C1", "l1", T0 + 1).await, CapVerdict::Allowed);
    assert_eq!(c.send(Sms, "C1", "s1", T0 + 2).await, CapVerdict::Allowed);
    assert_eq!(
        c.send(Dm, "C1", "d1", T0 + 3).await,
        capped(T0 + DAY, "all 3/1d")
    );
    assert_eq!(
        c.send(Email, "C1", "e2", T0 + 4).await,
        capped(T0 + DAY, "all 3/1d"),
        "email has room under its own cap, not under all"
    );
    assert_eq!(c.members("tayori:{0}:cap:all:C1").await, ["e1", "l1", "s1"]);
    assert_eq!(c.members("tayori:{0}:cap:email:C1").await, ["e1"]);
    // Only the sets of caps that exist are written.
    let n: i64 = redis::cmd("EXISTS")
        .arg("tayori:{0}:cap:line:C1")
        .arg("tayori:{0}:cap:sms:C1")
        .query_async(&mut c.conn)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn the_cap_that_frees_last_is_reported() {
    let redis = Redis::start();
    // LINE ≤ 2/day and ≤ 3/week, and ≤ 5/week across channels.
    let p = policy(&(cap("line", 2, "1d") + &cap("line", 3, "7d") + &cap("all", 5, "7d")));
    let mut c = Check {
        policy: &p,
        conn: conn(&redis).await,
    };
    assert_eq!(c.send(Line, "C1", "a", T0).await, CapVerdict::Allowed);
    assert_eq!(
        c.send(Line, "C1", "b", T0 + HOUR).await,
        CapVerdict::Allowed
    );
    assert_eq!(
        c.send(Line, "C1", "c", T0 + 2 * HOUR).await,
        capped(T0 + DAY, "line 2/1d")
    );
    // Next day: the daily window has room, the weekly one takes the third.
    assert_eq!(
        c.send(Line, "C1", "c", T0 + DAY + HOUR).await,
        CapVerdict::Allowed
    );
    // Now both line caps are violated (b is still in the daily window): the
    // weekly one frees last, when `a` is a week old. The daily trim must not
    // have dropped what the weekly window still counts.
    assert_eq!(
        c.send(Line, "C1", "d", T0 + DAY + 2 * HOUR).await,
        capped(T0 + 7 * DAY, "line 3/7d")
    );
    assert_eq!(
        c.send(Line, "C1", "d", T0 + 7 * DAY).await,
        CapVerdict::Allowed
    );
}

#[tokio::test]
async fn the_same_job_is_counted_once() {
    let redis = Redis::start();
    let p = policy(&(cap("email", 2, "1d") + &cap("all", 5, "1d")));
    let mut c = Check {
        policy: &p,
        conn: conn(&redis).await,
    };
    assert_eq!(c.send(Email, "C1", "j1", T0).await, CapVerdict::Allowed);
    // A redelivery or retry of j1, later.
    assert_eq!(
        c.send(Email, "C1", "j1", T0 + HOUR).await,
        CapVerdict::Allowed
    );
    assert_eq!(
        c.send(Email, "C1", "j2", T0 + 2 * HOUR).await,
        CapVerdict::Allowed
    );
    // The window is full, yet j1 and j2 themselves still pass (already counted)
    // and keep their first scores.
    assert_eq!(
        c.send(Email, "C1", "j1", T0 + 3 * HOUR).await,
        CapVerdict::Allowed
    );
    assert_eq!(
        c.send(Email, "C1", "j2", T0 + 3 * HOUR).await,
        CapVerdict::Allowed
    );
    assert_eq!(
        c.send(Email, "C1", "j3", T0 + 3 * HOUR).await,
        capped(T0 + DAY, "email 2/1d")
    );
    let scores: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg("tayori:{0}:cap:email:C1")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut c.conn)
        .await
        .unwrap();
    assert_eq!(scores, [("j1".into(), T0), ("j2".into(), T0 + 2 * HOUR)]);
    assert_eq!(c.members("tayori:{0}:cap:all:C1").await, ["j1", "j2"]);
}

#[tokio::test]
async fn uncount_frees_the_slot() {
    let redis = Redis::start();
    let p = policy(&(cap("email", 1, "1d") + &cap("all", 1, "1d")));
    let mut c = Check {
        policy: &p,
        conn: conn(&redis).await,
    };
    assert_eq!(c.send(Email, "C1", "j1", T0).await, CapVerdict::Allowed);
    assert_eq!(
        c.send(Email, "C1", "j2", T0 + 1).await,
        capped(T0 + DAY, "email 1/1d"),
        "both caps free at once: the channel's own is named"
    );
    // j1's send failed permanently: it must not use up the allowance.
    c.uncount(Email, "C1", "j1").await;
    assert_eq!(
        c.members("tayori:{0}:cap:email:C1").await,
        Vec::<String>::new()
    );
    assert_eq!(
        c.members("tayori:{0}:cap:all:C1").await,
        Vec::<String>::new()
    );
    // e.g. its fallback on sms, counted under "all" only.
    assert_eq!(c.send(Sms, "C1", "j1", T0 + 2).await, CapVerdict::Allowed);
    assert_eq!(
        c.send(Email, "C1", "j2", T0 + 3).await,
        capped(T0 + 2 + DAY, "all 1/1d")
    );
    c.uncount(Sms, "C1", "j1").await;
    assert_eq!(c.send(Email, "C1", "j2", T0 + 4).await, CapVerdict::Allowed);
    // Uncounting what was never counted is harmless.
    c.uncount(Email, "C1", "nope").await;
    c.uncount(Line, "C9", "nope").await;
    assert_eq!(c.members("tayori:{0}:cap:email:C1").await, ["j2"]);
}

#[tokio::test]
async fn no_customer_or_no_cap_means_no_round_trip() {
    let redis = Redis::start();
    let p = policy(&cap("email", 1, "1d"));
    let mut c = Check {
        policy: &p,
        conn: conn(&redis).await,
    };
    assert!(p.has_caps(Email));
    assert!(!p.has_caps(Sms));
    for i in 0..3 {
        let job = format!("j{i}");
        assert_eq!(c.send(Email, "", &job, T0).await, CapVerdict::Allowed);
        assert_eq!(c.send(Sms, "C1", &job, T0).await, CapVerdict::Allowed);
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c.conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

/// Runs `jobs` concurrent checks (job `i` on `channel_of(i)`) for one customer
/// over several connections; returns how many were allowed.
async fn race(
    redis: &Redis,
    policy: &std::sync::Arc<Policy>,
    jobs: usize,
    channel_of: fn(usize) -> ChannelKind,
) -> usize {
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(conn(redis).await);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(jobs));
    let tasks: Vec<_> = (0..jobs)
        .map(|i| {
            let mut conn = conns[i % conns.len()].clone();
            let policy = policy.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                policy
                    .check_and_count(
                        &mut conn,
                        &keys(),
                        channel_of(i),
                        "C1",
                        &format!("job-{i}"),
                        T0 + i as i64,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        match t.await.unwrap() {
            CapVerdict::Allowed => allowed += 1,
            CapVerdict::Capped { until_ms, .. } => assert!(until_ms > T0, "{until_ms}"),
        }
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn exactly_max_under_concurrency() {
    let redis = Redis::start();
    let p = std::sync::Arc::new(policy(&cap("email", 7, "1d")));
    assert_eq!(race(&redis, &p, 50, |_| Email).await, 7);
    let mut c = Check {
        policy: &p,
        conn: conn(&redis).await,
    };
    assert_eq!(c.members("tayori:{0}:cap:email:C1").await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn exactly_max_across_channels_under_concurrency() {
    let redis = Redis::start();
    let p = std::sync::Arc::new(policy(&(cap("all", 7, "1d") + &cap("email", 3, "1d"))));
    let allowed = race(&redis, &p, 60, |i| [Email, Line, Sms, Dm][i % 4]).await;
    assert_eq!(allowed, 7);
    let mut c = Check {
        policy: &p,
        conn: conn(&redis).await,
    };
    assert_eq!(c.members("tayori:{0}:cap:all:C1").await.len(), 7);
    assert!(c.members("tayori:{0}:cap:email:C1").await.len() <= 3);
}
