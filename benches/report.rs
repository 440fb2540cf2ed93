//! `tayori report` over a results stream of 1,000,000 events: synthetic events in
//! the daemon's exact shapes, several campaigns interleaved, written with pipelined
//! `XADD`s to a private redis-server; then the release binary reports one campaign
//! with `--json`, and its wall time and peak RSS are measured. The report's numbers
//! are checked against what was generated.
//!
//! `cargo bench --bench report`, knobs by env: `BENCH_EVENTS` (1000000),
//! `BENCH_CAMPAIGNS` (4; the first is reported), `BENCH_RUNS` (3).

mod support;

use std::process::{Command, Stdio};
use std::time::Instant;

use support::{env_or, under_cargo_bench, Bench};

const CHANNELS: [&str; 4] = ["email", "line", "sms", "dm"];

/// What the generator wrote for the reported campaign, per channel: unique jobs.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    sent: u64,
    delivered: u64,
    opened: u64,
    clicked: u64,
    bounced: u64,
    unsubscribed: u64,
    failed: u64,
    bot_clicks: u64,
}

fn ts(ms: i64) -> String {
    format!(
        "{:.3}",
        jiff::Timestamp::from_millisecond(ms).expect("time")
    )
}

fn main() {
    if !under_cargo_bench("report") {
        return;
    }
    let total: usize = env_or("BENCH_EVENTS", 1_000_000);
    let campaigns: usize = env_or("BENCH_CAMPAIGNS", 4);
    let runs: usize = env_or("BENCH_RUNS", 3);
    let mut bench = Bench::start();
    let cfg = bench.write_config(&bench.config_head());

    // Generate: per job a `sent`, then its reactions, until `total` events.
    let t = Instant::now();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut expected = [Expected::default(); 4];
    let base = 1_793_491_200_000i64; // 2026-11-01T00:00:00Z
    let mut written = 0usize;
    let mut job = 0usize;
    let mut pipe = redis::pipe();
    let mut in_pipe = 0;
    let mut events: Vec<String> = Vec::with_capacity(8);
    while written < total {
        let campaign = format!("campaign-{}", job % campaigns);
        let mine = job.is_multiple_of(campaigns);
        let c = (job / campaigns) % 4;
        let channel = CHANNELS[c];
        let id = format!("{campaign}-C{job}");
        let sent_at = base + job as i64 * 20;
        let head = |kind: &str, at: i64, attempt: u32, campaign: Option<&str>| {
            let campaign = campaign
                .map(|c| format!("\"{c}\""))
                .unwrap_or_else(|| "null".into());
            format!(
                "{{\"type\":\"{kind}\",\"event_id\":\"{id}/{channel}/{attempt}/{kind}/{at}\",\"at\":\"{}\",\"job_id\":\"{id}\",\"campaign\":{campaign},\"customer_id\":\"C{job}\",\"channel\":\"{channel}\",\"attempt\":{attempt}",
                ts(at)
            )
        };
        events.clear();
        let e = &mut expected[c];
        let failed = rng.u32(..100) < 2;
        if failed {
            events.push(format!(
                "{},\"error\":{{\"code\":\"invalid_address\",\"message\":\"the channel refused the address\"}}}}",
                head("failed", sent_at, 1, Some(&campaign))
            ));
            if mine {
                e.failed += 1;
            }
        } else {
            events.push(format!(
                "{},\"provider_id\":\"<{id}@example.com>\"}}",
                head("sent", sent_at, 1, Some(&campaign))
            ));
            if mine {
                e.sent += 1;
            }
            let later = |rng: &mut fastrand::Rng| sent_at + 11_000 + rng.i64(0..172_800_000);
            match channel {
                "email" => {
                    let opens = if rng.u32(..100) < 40 {
                        rng.u32(1..4)
                    } else {
                        0
                    };
                    for _ in 0..opens {
                        let at = later(&mut rng);
                        events.push(format!(
                            "{},\"suspected_bot\":false}}",
                            head("opened", at, 0, Some(&campaign))
                        ));
                    }
                    let clicks = if rng.u32(..100) < 15 {
                        rng.u32(1..3)
                    } else {
                        0
                    };
                    for _ in 0..clicks {
                        let at = later(&mut rng);
                        events.push(format!(
                            "{},\"suspected_bot\":false,\"url\":\"https://shop.example.com/p/{}?utm_source=mail\"}}",
                            head("clicked", at, 0, Some(&campaign)),
                            rng.u32(..25)
                        ));
                    }
                    // A link scanner on arrival.
                    let scanned = rng.u32(..100) < 5;
                    if scanned {
                        events.push(format!(
                            "{},\"suspected_bot\":true,\"url\":\"https://shop.example.com/p/0?utm_source=mail\"}}",
                            head("clicked", sent_at + 900, 0, Some(&campaign))
                        ));
                    }
                    let bounced = rng.u32(..100) < 2;
                    if bounced {
                        events.push(format!(
                            "{},\"error\":{{\"code\":\"dsn_5.1.1\",\"message\":\"550 5.1.1 user unknown\"}},\"address\":\"c{job}@example.com\",\"source\":\"dsn\"}}",
                            head("bounced", later(&mut rng), 0, None)
                        ));
                    }
                    let unsubscribed = rng.u32(..1000) < 5;
                    if unsubscribed {
                        events.push(format!(
                            "{},\"address\":\"c{job}@example.com\"}}",
                            head("unsubscribed", later(&mut rng), 0, Some(&campaign))
                        ));
                    }
                    if mine {
                        e.opened += u64::from(opens > 0);
                        e.clicked += u64::from(clicks > 0);
                        e.bot_clicks += u64::from(scanned);
                        e.bounced += u64::from(bounced);
                        e.unsubscribed += u64::from(unsubscribed);
                    }
                }
                "line" => {
                    let clicked = rng.u32(..100) < 10;
                    if clicked {
                        events.push(format!(
                            "{},\"suspected_bot\":false,\"url\":\"https://shop.example.com/sale?from=line\"}}",
                            head("clicked", later(&mut rng), 0, Some(&campaign))
                        ));
                    }
                    if rng.u32(..100) < 2 {
                        // A block: LINE names the user, not the job.
                        events.push(format!(
                            "{{\"type\":\"blocked\",\"event_id\":\"line/01J{job:023}\",\"at\":\"{}\",\"job_id\":null,\"campaign\":null,\"customer_id\":null,\"channel\":\"line\",\"attempt\":0,\"line_user_id\":\"U{job:032x}\",\"occurred_at\":\"{}\"}}",
                            ts(later(&mut rng)),
                            ts(sent_at)
                        ));
                    }
                    if mine {
                        e.clicked += u64::from(clicked);
                    }
                }
                "sms" => {
                    // Delivery receipts name the job but not the campaign.
                    let delivered = rng.u32(..100) < 95;
                    let kind = if delivered { "delivered" } else { "failed" };
                    events.push(format!(
                        "{},\"provider_id\":\"SM{job:032x}\"}}",
                        head(kind, sent_at + 3_000, 0, None)
                    ));
                    if mine {
                        if delivered {
                            e.delivered += 1;
                        } else {
                            e.failed += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        for ev in &events {
            if written == total {
                break;
            }
            pipe.cmd("XADD")
                .arg("bench:{0}:results")
                .arg("*")
                .arg("event")
                .arg(ev)
                .ignore();
            in_pipe += 1;
            written += 1;
        }
        if in_pipe >= 10_000 || written == total {
            pipe.query::<()>(&mut bench.conn).expect("XADD");
            pipe = redis::pipe();
            in_pipe = 0;
        }
        job += 1;
    }
    let write_secs = t.elapsed().as_secs_f64();
    let used: String = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("bench:{0}:results")
        .query::<Option<u64>>(&mut bench.conn)
        .ok()
        .flatten()
        .map(|b| format!("{:.0} MiB in Redis", b as f64 / 1048576.0))
        .unwrap_or_default();
    println!(
        "events          {written} in bench:{{0}}:results ({job} jobs, {campaigns} campaigns; {used}), written in {write_secs:.1} s"
    );

    let mut times = Vec::new();
    let mut peaks = Vec::new();
    let mut report = serde_json::Value::Null;
    for _ in 0..runs {
        let t = Instant::now();
        let child = Command::new(&bench.bin)
            .arg("-c")
            .arg(&cfg)
            .args(["report", "--campaign", "campaign-0", "--json"])
            .env("TAYORI_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("tayori report");
        let (out, peak_kib) = wait_with_peak(child);
        times.push(t.elapsed().as_secs_f64());
        peaks.push(peak_kib as f64 / 1024.0);
        report = serde_json::from_slice(&out).expect("the report is JSON");
    }
    let events = report["stream"]["events"].as_u64().unwrap_or(0);
    println!(
        "report          {} s wall ({} runs), {} entries read, {events} events of campaign-0",
        times
            .iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(" / "),
        runs,
        report["stream"]["entries"]
    );
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "throughput      {:.0} entries/s (best run)",
        written as f64 / best
    );
    println!(
        "peak RSS        {} MiB",
        peaks
            .iter()
            .map(|p| format!("{p:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );

    // The numbers are the generated ones.
    for (i, ch) in CHANNELS.iter().enumerate() {
        let c = &report["channels"][ch]["counts"];
        let got = Expected {
            sent: c["sent"].as_u64().unwrap_or(0),
            delivered: c["delivered"].as_u64().unwrap_or(0),
            opened: c["opened"].as_u64().unwrap_or(0),
            clicked: c["clicked"].as_u64().unwrap_or(0),
            bounced: c["bounced"].as_u64().unwrap_or(0),
            unsubscribed: c["unsubscribed"].as_u64().unwrap_or(0),
            failed: c["failed"].as_u64().unwrap_or(0),
            bot_clicks: report["channels"][ch]["suspected_bots"]["clicks"]
                .as_u64()
                .unwrap_or(0),
        };
        // The last job may have been cut short at `total`: then its counts are not checked.
        if !(job - 1).is_multiple_of(campaigns) {
            assert_eq!(got, expected[i], "{ch}: report vs generated");
        }
        println!("{ch:<6} {got:?}");
    }
}

/// Waits for the child, returning its stdout and peak RSS (KiB, from `wait4`'s rusage).
fn wait_with_peak(mut child: std::process::Child) -> (Vec<u8>, i64) {
    use std::io::Read;
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read the report");
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value; the pid is our child's,
    // not yet waited for (std's `Child` is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "tayori report failed"
    );
    (out, usage.ru_maxrss)
}
