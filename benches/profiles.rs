//! Engagement-profile updates: how many Redis commands an event costs and how
//! fast the updater keeps up. Writes synthetic events (sends and reactions of
//! 10,000 customers) to the results stream, starts a daemon with no channel but
//! the profile updater, and waits until its consumer group has acknowledged them
//! all; Redis's `INFO commandstats` gives the commands per event.
//!
//! `cargo bench --bench profiles`; knob: `BENCH_EVENTS` (200000).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::{env_or, under_cargo_bench, Bench};
use tayori_testkit::Daemon;

fn commandstats(bench: &mut Bench) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut bench.conn)
        .expect("INFO");
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

fn main() {
    if !under_cargo_bench("profiles") {
        return;
    }
    let events: usize = env_or("BENCH_EVENTS", 200_000);
    let mut bench = Bench::start();
    let kinds = [
        "sent",
        "sent",
        "opened",
        "clicked",
        "delivered",
        "sent",
        "replied",
        "bounced",
    ];
    let channels = ["email", "line", "sms"];
    let now = jiff::Timestamp::now();
    for chunk in (0..events).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let at = now
                .checked_sub(jiff::SignedDuration::from_secs((i % 86_400) as i64))
                .unwrap_or(now);
            let ev = serde_json::json!({
                "type": kinds[i % kinds.len()], "event_id": format!("e{i}"), "at": format!("{at:.3}"),
                "job_id": format!("j{i}"), "campaign": "bench", "customer_id": format!("C{}", i % 10_000),
                "channel": channels[i % channels.len()], "attempt": 1
            });
            pipe.cmd("XADD")
                .arg("bench:{0}:results")
                .arg("*")
                .arg("event")
                .arg(ev.to_string())
                .ignore();
        }
        pipe.query::<()>(&mut bench.conn).expect("XADD");
    }
    let cfg = bench.write_config(&bench.config_head());
    let before = commandstats(&mut bench);
    let t = Instant::now();
    let mut daemon = Daemon::start(bench.tayori(&cfg));
    // Done when the group has read everything and nothing is pending.
    loop {
        let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg("bench:{0}:results")
            .query(&mut bench.conn)
            .unwrap_or_default();
        let done = groups.iter().any(|g| {
            let get = |k: &str| {
                g.get(k)
                    .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok())
            };
            get("lag") == Some(0) && get("pending") == Some(0)
        });
        if done || t.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t.elapsed().as_secs_f64();
    let after = commandstats(&mut bench);
    daemon.terminate(Duration::from_secs(3600));
    let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
    let profile_cmds = delta("hincrbyfloat") + delta("hset") + delta("pexpire");
    let stream_cmds = delta("xreadgroup") + delta("xack");
    let customers: usize = redis::cmd("EVAL")
        .arg("return #redis.call('KEYS', 'bench:{0}:profile:*')")
        .arg(0)
        .query(&mut bench.conn)
        .unwrap_or(0);
    println!(
        "profiles        {events} events in {secs:.2} s ({:.0} events/s, daemon start included); per event: {:.2} profile commands (hincrbyfloat {}, hset {}, pexpire {}), {:.4} stream commands; {customers} profiles",
        events as f64 / secs,
        profile_cmds as f64 / events as f64,
        delta("hincrbyfloat"),
        delta("hset"),
        delta("pexpire"),
        stream_cmds as f64 / events as f64,
    );
    assert_eq!(customers, 10_000, "every customer has a profile");
}
