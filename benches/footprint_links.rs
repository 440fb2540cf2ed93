//! Redis memory per job of what a message leaves behind for what comes back: an
//! SMS's short link and an email's stored VERP token (a UUID job id, too long to
//! carry in the return path). Each record is made and stored by the daemon's own
//! code (`Tracker::short_link` / `Tracker::stored_verp`, then
//! `Queue::store_records`, one call per job, 64 in flight) in a fresh
//! redis-server; the figure is `INFO memory` `used_memory` after minus before,
//! divided by the jobs.
//!
//! "before" is the layout this replaced (2ae9688): one string key with a TTL per
//! record, `P:link:<code>` → the sealed click token and `P:verp:<token>` → the
//! job id, written with the same commands the old `store_records` sent (`SET …
//! EX`), the same code (`Sealer::short_code`) and the same token (`Sealer::seal`).
//!
//! `cargo bench --bench footprint_links`; knob: `BENCH_JOBS` (1000000).

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tayori::channel_id::ChannelId;
use tayori::config::RedisConfig;
use tayori::keys::Keys;
use tayori::queue::Queue;
use tayori::redis_connection::RedisTarget;
use tayori::tracking::{
    Purpose, Records, Tracked, Tracker, TrackingSettings, DEFAULT_LINK_TTL, VERP_RECORD_TTL,
};
use tayori_testkit::Redis;

mod support;

const IN_FLIGHT: usize = 64;
const URL: &str = "https://shop.example.com/winter-sale?utm_source=sms&utm_campaign=winter-2026";

/// A job as a CRM sends it: a UUID id, a customer id, a Japanese mobile number.
fn tracked(i: usize, channel: &'static str) -> Tracked {
    Tracked {
        channel: ChannelId::new(channel),
        job_id: format!("{:08x}-7d1c-4b8e-9f3a-{:012x}", i, i * 7919),
        address: if channel == "sms" {
            format!("+8190{:08}", i % 100_000_000)
        } else {
            format!("customer{i}@example.jp")
        },
        campaign: Some("winter-2026".into()),
        customer_id: Some(format!("C{i:07}")),
        sent_at: jiff::Timestamp::now().as_second(),
        url: None,
    }
}

fn used_memory(conn: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

/// Bytes per job that `write` leaves in a freshly flushed Redis.
fn measure(
    rt: &tokio::runtime::Runtime,
    conn: &mut redis::Connection,
    what: &str,
    jobs: usize,
    write: impl Fn(usize) -> futures_util::future::BoxFuture<'static, ()>,
) -> f64 {
    let _: () = redis::cmd("FLUSHALL").query(conn).expect("FLUSHALL");
    std::thread::sleep(Duration::from_millis(200));
    let before = used_memory(conn);
    let start = Instant::now();
    rt.block_on(
        stream::iter(0..jobs)
            .map(&write)
            .buffer_unordered(IN_FLIGHT)
            .collect::<()>(),
    );
    let secs = start.elapsed().as_secs_f64();
    let after = used_memory(conn);
    let keys: i64 = redis::cmd("DBSIZE").query(conn).expect("DBSIZE");
    let per_job = (after - before) as f64 / jobs as f64;
    // A bucket hash must stay a listpack: a hashtable costs several times more.
    let sample: Option<String> = redis::cmd("RANDOMKEY").query(conn).expect("RANDOMKEY");
    if let Some(key) = sample {
        let encoding: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(&key)
            .query(conn)
            .expect("OBJECT ENCODING");
        println!("  a key: {key:?} ({encoding})");
    }
    println!(
        "{what}: {jobs} jobs, {keys} keys, used_memory +{} bytes = {per_job:.1} bytes per job ({secs:.1} s)",
        after - before
    );
    per_job
}

fn main() {
    if !support::under_cargo_bench("footprint_links") {
        return;
    }
    let jobs: usize = support::env_or("BENCH_JOBS", 1_000_000);
    let redis = Redis::start_volatile();
    let mut conn = redis.conn();
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query::<String>(&mut conn)
        .ok()
        .and_then(|i| {
            i.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("redis-server {version}, {jobs} jobs per layout");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config: RedisConfig =
        toml::from_str(&format!("url = {:?}", redis.url())).expect("a [redis] body");
    let target = RedisTarget::from_config(&config).expect("a Redis target");
    let queue = rt
        .block_on(Queue::connect(&target, Keys::new(support::PREFIX, 1)))
        .expect("Redis");
    let tracker = std::sync::Arc::new(Tracker::new(&TrackingSettings {
        secret: "a-benchmark-secret-of-32-bytes!!".into(),
        previous_secrets: Vec::new(),
        public_url: "https://t.example.com".into(),
    }));
    let keys = Keys::new(support::PREFIX, 1);

    // Short links, as 2ae9688 stored them: a key per link.
    let (q, tr, k) = (queue.clone(), tracker.clone(), keys.clone());
    let links_before = measure(
        &rt,
        &mut conn,
        "sms link, before (P:link:<code>)",
        jobs,
        |i| {
            let (q, tr, k) = (q.clone(), tr.clone(), k.clone());
            Box::pin(async move {
                let t = Tracked {
                    url: Some(URL.into()),
                    ..tracked(i, "sms")
                };
                let code = tr.sealer().short_code(&t.job_id, URL);
                let token = tr.sealer().seal(Purpose::Click, &t);
                let mut c = q.conn();
                let _: () = redis::cmd("SET")
                    .arg(k.short_link(&code))
                    .arg(token)
                    .arg("EX")
                    .arg(DEFAULT_LINK_TTL.as_secs())
                    .query_async(&mut c)
                    .await
                    .expect("SET");
            })
        },
    );
    // Short links now: Tracker::short_link and Queue::store_records.
    let (q, tr) = (queue.clone(), tracker.clone());
    let links_after = measure(
        &rt,
        &mut conn,
        "sms link, after (P:links:<bucket>)",
        jobs,
        |i| {
            let (q, tr) = (q.clone(), tr.clone());
            Box::pin(async move {
                let (_, link) = tr.short_link(&tracked(i, "sms"), URL, DEFAULT_LINK_TTL);
                let records = Records {
                    short_links: vec![link],
                    link_ttl: DEFAULT_LINK_TTL,
                    ..Records::default()
                };
                q.store_records(&records).await.expect("store_records");
            })
        },
    );

    // VERP records of UUID job ids, as 2ae9688 stored them.
    let (q, tr, k) = (queue.clone(), tracker.clone(), keys.clone());
    let verp_before = measure(&rt, &mut conn, "verp, before (P:verp:<token>)", jobs, |i| {
        let (q, tr, k) = (q.clone(), tr.clone(), k.clone());
        Box::pin(async move {
            let t = tracked(i, "email");
            let token = tr.sealer().stored_verp_token(&t.job_id, &t.address);
            let mut c = q.conn();
            let _: () = redis::cmd("SET")
                .arg(k.verp(&token))
                .arg(&t.job_id)
                .arg("EX")
                .arg(VERP_RECORD_TTL.as_secs())
                .query_async(&mut c)
                .await
                .expect("SET");
        })
    });
    let (q, tr) = (queue.clone(), tracker.clone());
    let verp_after = measure(
        &rt,
        &mut conn,
        "verp, after (P:verps:<bucket>)",
        jobs,
        |i| {
            let (q, tr) = (q.clone(), tr.clone());
            Box::pin(async move {
                let records = Records {
                    verp: Some(tr.stored_verp(&tracked(i, "email"))),
                    ..Records::default()
                };
                q.store_records(&records).await.expect("store_records");
            })
        },
    );
    println!(
        "footprint_links: sms link {links_before:.0} → {links_after:.0} bytes per job; \
         verp {verp_before:.0} → {verp_after:.0} bytes per job"
    );
}
