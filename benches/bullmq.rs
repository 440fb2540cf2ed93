//! Tayori against BullMQ on the same redis-server: N no-op BullMQ jobs drained by
//! a BullMQ worker, then N personalized Tayori emails drained by the release
//! daemon, and the ratio of the two rates (issue 19's target: ≥ 2.5×).
//!
//! `cargo bench --bench bullmq` (or `scripts/bench.sh bullmq`); needs `node` and
//! `npm` on PATH and the npm registry: it installs BullMQ (`BENCH_BULLMQ`,
//! default 5.47.3; `skip` runs the Tayori pass alone) with `npm install` into
//! its temporary directory. Knobs:
//! `BENCH_JOBS` (100000), `BENCH_CONCURRENCY` (256: the BullMQ worker's and the
//! email channel's).
//!
//! BullMQ pass: a Node producer adds the N jobs (`Queue.addBulk`, chunks of
//! 1,000, a small payload, `removeOnComplete: true` so completed jobs do not
//! pile up in Redis), then a Node worker with an empty async processor runs until
//! its `completed` event has fired N times; its rate is N over the time from the
//! worker's construction to the last completion.
//!
//! Tayori pass (after `FLUSHALL`): N jobs with inline `content.email` (subject,
//! text and an HTML part with one link, rendered with each job's vars), tracking
//! on (`http.tracking_secret` set: the link rewritten, an open pixel,
//! List-Unsubscribe), the null transport, one channel, `tayori enqueue` first;
//! the rate is N over the time from the daemon's start to the last event. The
//! daemon is stopped only once its profile updater has read every event, so its
//! CPU counts all the work a job causes.
//!
//! In both passes the enqueue is not measured: Redis CPU per job is the INFO cpu
//! delta around the drain only.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tayori::channel_id::ChannelId;
use tayori::keys::partition_of;
use tayori_testkit::Daemon;

use support::{cpu_per_job, env_or, free_port, redis_us, under_cargo_bench, Bench};

/// The queue name both Node scripts use (keys `bull:bench:*`).
const QUEUE: &str = "bench";

/// Adds `JOBS` jobs in chunks of 1,000; `removeOnComplete` keeps Redis's memory
/// flat during the drain (BullMQ's default keeps every completed job).
const PRODUCER: &str = r#"
const { Queue } = require('bullmq');
(async () => {
  const n = Number(process.env.JOBS);
  const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
  const queue = new Queue(process.env.QUEUE, { connection });
  for (let i = 0; i < n; i += 1000) {
    const chunk = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) {
      chunk.push({ name: 'email', data: { to: `c${j}@example.com`, points: j % 5000 },
                   opts: { removeOnComplete: true } });
    }
    await queue.addBulk(chunk);
  }
  await queue.close();
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// A no-op processor at `CONCURRENCY`; prints `{"jobs", "secs"}` once `JOBS`
/// jobs completed. Exits 1 when a minute passes without a completion (stuck).
const WORKER: &str = r#"
const { Worker } = require('bullmq');
const n = Number(process.env.JOBS);
const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT), maxRetriesPerRequest: null };
const start = process.hrtime.bigint();
let done = 0;
let last = Date.now();
const worker = new Worker(process.env.QUEUE, async () => {},
  { connection, concurrency: Number(process.env.CONCURRENCY) });
worker.on('completed', async () => {
  done++;
  last = Date.now();
  if (done === n) {
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    await worker.close();
    console.log(JSON.stringify({ jobs: done, secs }));
    process.exit(0);
  }
});
worker.on('failed', (job, err) => { console.error('failed', job && job.id, err); });
setInterval(() => {
  if (Date.now() - last > 60000) {
    console.error(`stuck: ${done} of ${n} completed`);
    process.exit(1);
  }
}, 1000);
"#;

fn main() {
    if !under_cargo_bench("bullmq") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 100_000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 256);
    let version: String = env_or("BENCH_BULLMQ", "5.47.3".to_owned());
    let mut bench = Bench::start();
    // `BENCH_BULLMQ=skip`: the Tayori pass only (to compare builds of Tayori).
    let bull_rate = if version == "skip" {
        None
    } else {
        Some(bullmq_pass(&mut bench, &version, jobs, concurrency))
    };
    tayori_pass(&mut bench, jobs, concurrency, bull_rate);
}

/// Enqueues (not measured), then drains `jobs` no-op jobs with BullMQ's worker;
/// prints its figures and returns its rate.
fn bullmq_pass(bench: &mut Bench, version: &str, jobs: usize, concurrency: usize) -> f64 {
    let port = bench.url.rsplit(':').next().unwrap_or_default().to_owned();
    let node_dir = install_bullmq(bench.dir.path(), version);
    let node = |script: &str, what: &str| -> String {
        let out = Command::new("node")
            .arg(script)
            .current_dir(&node_dir)
            .env("JOBS", jobs.to_string())
            .env("REDIS_PORT", &port)
            .env("QUEUE", QUEUE)
            .env("CONCURRENCY", concurrency.to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("node {script}: {e} (is node on PATH?)"));
        assert!(out.status.success(), "{what} failed: {}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // BullMQ: enqueue (not measured), then the worker's drain.
    let t = Instant::now();
    node("producer.cjs", "the BullMQ producer");
    let bull_enqueue_secs = t.elapsed().as_secs_f64();
    let before = bench.node_stats();
    let report = node("worker.cjs", "the BullMQ worker");
    let after = bench.node_stats();
    let report: serde_json::Value = serde_json::from_str(report.trim())
        .unwrap_or_else(|e| panic!("the BullMQ worker's report {report:?}: {e}"));
    let bull_secs = report["secs"]
        .as_f64()
        .expect("secs in the worker's report");
    assert_eq!(
        report["jobs"].as_u64(),
        Some(jobs as u64),
        "BullMQ jobs completed"
    );
    let bull_rate = jobs as f64 / bull_secs;
    let bull_redis = redis_us(&before, &after) / jobs as f64;
    println!(
        "bullmq no-op  {jobs} jobs: {bull_rate:.0} jobs/s, Redis {bull_redis:.1} µs/job  \
         (BullMQ {version}, concurrency {concurrency}, removeOnComplete; enqueue {:.0} jobs/s, not counted)",
        jobs as f64 / bull_enqueue_secs
    );
    bull_rate
}

/// Tayori on the same server, emptied first: enqueue (not measured), then drain.
fn tayori_pass(bench: &mut Bench, jobs: usize, concurrency: usize, bull_rate: Option<f64>) {
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut bench.conn)
        .expect("FLUSHALL");
    let cfg = bench.write_config(&email_config(bench, concurrency));
    let file = write_inline_emails(bench, jobs, "inline");
    let t = Instant::now();
    bench.enqueue(&cfg, &file);
    let tayori_enqueue_secs = t.elapsed().as_secs_f64();
    let (drained, redis) = bench.drain_cpu(&cfg, jobs);
    let sent = bench.count_sent();
    let tayori_rate = jobs as f64 / drained.secs;
    println!(
        "tayori        {jobs} jobs: {tayori_rate:.0} jobs/s, {}, \
         peak RSS {:.1} MiB  (inline email, tracking on, null transport, concurrency {concurrency}; \
         enqueue {:.0} jobs/s, not counted)",
        cpu_per_job(&drained, redis, jobs),
        drained.peak_mib,
        jobs as f64 / tayori_enqueue_secs
    );
    if let Some(bull_rate) = bull_rate {
        println!(
            "ratio tayori/bullmq: {:.2}×  (issue 19's target: ≥ 2.5×)",
            tayori_rate / bull_rate
        );
    }
    assert_eq!(sent, jobs, "every Tayori job must have its sent event");
    if env_or("BENCH_LATENCY", 1) != 0 {
        latency_pass(bench, concurrency, tayori_rate);
    }
}

/// The email channel's config of the Tayori passes: the null transport, no rate limit.
fn email_config(bench: &Bench, concurrency: usize) -> String {
    format!(
        "{}[channels.email]\ntransport = \"null\"\nfrom = \"Example Shop <news@example.com>\"\n\
         rate = \"1000000/s\"\nconcurrency = {concurrency}\n",
        bench.config_head()
    )
}

/// End-to-end latency at half the peak: a running daemon is fed the same kind
/// of jobs at half the rate the drain reached (`BENCH_LATENCY_SECS`, 5 s of
/// them, one pipelined XADD per 10 ms tick), then its `tayori_end_to_end_seconds`
/// histogram (first XADD → `sent`) gives p50 and p99 as the upper bound of the
/// bucket they fall in. `BENCH_LATENCY=0` skips it.
fn latency_pass(bench: &mut Bench, concurrency: usize, peak: f64) {
    let rate = (peak / 2.0).max(100.0);
    let secs: f64 = env_or("BENCH_LATENCY_SECS", 5.0);
    let n = (rate * secs) as usize;
    let port = free_port();
    let cfg = bench.write_config(&email_config(bench, concurrency).replacen(
        "listen = \"\"",
        &format!("listen = \"127.0.0.1:{port}\""),
        1,
    ));
    let file = write_inline_emails(bench, n, "paced");
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .expect("jobs file")
        .lines()
        .map(str::to_owned)
        .collect();
    let before = bench.results_len();
    let daemon = Daemon::start(bench.tayori(&cfg));
    // Ready once /metrics answers: the workers are reading by then.
    while scrape(port).is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let email = ChannelId::new("email");
    let partitions = bench.keys.partitions();
    let start = Instant::now();
    let mut added = 0;
    while added < n {
        let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(n);
        if due > added {
            let mut pipe = redis::pipe();
            for (i, line) in lines[added..due].iter().enumerate() {
                let id = format!("paced-{}", added + i);
                let stream = bench.keys.jobs(partition_of(&id, partitions), email);
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("job")
                    .arg(line)
                    .ignore();
            }
            let _: () = pipe.query(&mut bench.conn).expect("XADD");
            added = due;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let fed_secs = start.elapsed().as_secs_f64();
    let settle = Instant::now();
    while bench.results_len().saturating_sub(before) < n
        && settle.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let metrics = scrape(port).expect("/metrics");
    daemon.sigterm();
    let _ = daemon.wait_with_usage();
    let buckets = histogram(&metrics, "tayori_end_to_end_seconds", "email");
    let count = buckets.last().map_or(0.0, |b| b.1);
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * count)
            .map_or(f64::INFINITY, |(le, _)| *le)
    };
    println!(
        "latency       {n} jobs fed at {:.0} jobs/s (half of {peak:.0}): enqueue → sent p50 ≤ {} ms, p99 ≤ {} ms \
         ({count:.0} in tayori_end_to_end_seconds; issue 19's target: p99 ≤ 50 ms)",
        n as f64 / fed_secs,
        quantile(0.5) * 1000.0,
        quantile(0.99) * 1000.0,
    );
    assert_eq!(count as usize, n, "every paced job in the histogram");
}

/// `GET /metrics` over a plain socket (the body), or `None` while nothing listens.
fn scrape(port: u16) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// A histogram's cumulative buckets for one channel: `(le, count)`, ascending,
/// `+Inf` last.
fn histogram(text: &str, name: &str, channel: &str) -> Vec<(f64, f64)> {
    let head = format!("{name}_bucket{{");
    let label = format!("channel=\"{channel}\"");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&head) && l.contains(&label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// `npm install bullmq@version` into `dir/bullmq`, with the two Node scripts.
fn install_bullmq(dir: &Path, version: &str) -> PathBuf {
    let node_dir = dir.join("bullmq");
    std::fs::create_dir_all(&node_dir).expect("bullmq dir");
    std::fs::write(
        node_dir.join("package.json"),
        serde_json::json!({"private": true, "dependencies": {"bullmq": version}}).to_string(),
    )
    .expect("package.json");
    std::fs::write(node_dir.join("producer.cjs"), PRODUCER).expect("producer.cjs");
    std::fs::write(node_dir.join("worker.cjs"), WORKER).expect("worker.cjs");
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&node_dir)
        .stdout(Stdio::null())
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "npm install bullmq@{version} failed (are npm and the npm registry reachable?)"
    );
    node_dir
}

/// `n` personalized emails from inline content: each job's own name, points and
/// link, rendered into the subject, the text and an HTML part with one link.
fn write_inline_emails(bench: &Bench, n: usize, tag: &str) -> PathBuf {
    let file = bench.dir.path().join(format!("{tag}.jsonl"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("jobs file"));
    let content = serde_json::json!({"email": {
        "subject": "{{ to.name }}様、春のセール開始 — {{ points }}ポイントをお持ちです",
        "text": "{{ to.name }}様\n\nいつもご利用ありがとうございます。ただいま{{ points }}ポイントをお持ちです。\nおすすめ: {{ item }}\n",
        "html": "<html><body><p>{{ to.name }}様</p><p>いつもご利用ありがとうございます。ただいま<strong>{{ points }}ポイント</strong>をお持ちです。</p><p>おすすめ: <a href=\"{{ url }}\">{{ item }}</a></p></body></html>"
    }});
    for i in 0..n {
        let job = serde_json::json!({
            "id": format!("{tag}-{i}"), "campaign": "bench", "customer_id": format!("C{i}"),
            "channel": "email",
            "to": {"name": format!("顧客 {i}"), "email": format!("c{i}@example.com")},
            "content": content,
            "vars": {"points": i % 5000, "item": "化粧水", "url": format!("https://shop.example.com/p/{}", i % 97)}
        });
        writeln!(out, "{job}").expect("write");
    }
    file
}
