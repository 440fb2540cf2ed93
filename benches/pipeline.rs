//! End to end: N personalized jobs through a real Redis and the release `tayori`
//! binary, drained through the null or file transport, on a standalone
//! redis-server (`partitions = 1`) and then on a local 3-master Redis Cluster
//! (`partitions = 12`): the same jobs, the same binary.
//!
//! `cargo bench --bench pipeline`, knobs by env: `BENCH_JOBS` (100000),
//! `BENCH_TRANSPORT` (null | file), `BENCH_CONCURRENCY` (512), `BENCH_REDIS`
//! (standalone | cluster | both), `BENCH_PARTITIONS` (12, the cluster pass's),
//! `BENCH_STANDALONE_PARTITIONS` (1: set it to the cluster's N to tell what
//! partitions cost from what the cluster costs).
//!
//! Each pass prints jobs/s end to end (daemon start to the last event), the
//! enqueue rate, the daemon's CPU per job and peak RSS, and from every
//! redis-server's `INFO`: CPU per job during the drain, bytes per job queued and
//! left after the drain, and each primary's share of the commands. The daemon is
//! stopped only once its profile updater has read every event too, so the CPU,
//! commands and bytes per job count all the work a job causes in every pass.
//! Everything runs on one machine, so on a cluster the primaries and the daemon
//! share its cores: the cluster pass measures what partitioning costs per job,
//! not what separate machines would gain (docs/benchmarks.md).

mod support;

use std::collections::BTreeMap;

use support::{env_or, under_cargo_bench, Bench, NodeStats, Topology};

/// What one pass measured.
struct Pass {
    name: &'static str,
    partitions: u32,
    jobs: usize,
    enqueue_secs: f64,
    /// Redis CPU of every node during `tayori enqueue`.
    enqueue_redis_us: f64,
    drain_secs: f64,
    events: usize,
    sent: usize,
    daemon_cpu_us: f64,
    peak_mib: f64,
    settle_secs: f64,
    nodes: Vec<NodeRow>,
    results_bytes: i64,
    /// Calls per command during the drain, every node summed.
    calls: BTreeMap<String, u64>,
}

/// One redis-server's part of a pass.
struct NodeRow {
    port: u16,
    partitions: Vec<u32>,
    /// CPU during the drain.
    cpu_us: f64,
    /// Command calls during the drain.
    calls: u64,
    /// `used_memory` after the enqueue minus before it.
    queued_bytes: i64,
    /// `used_memory` after the drain (daemon gone) minus before the enqueue.
    kept_bytes: i64,
    /// Keys after the drain minus before the enqueue.
    kept_keys: i64,
}

impl Pass {
    fn per_job(&self, x: f64) -> f64 {
        x / self.jobs as f64
    }
    fn redis_us(&self) -> f64 {
        self.nodes.iter().map(|n| n.cpu_us).sum()
    }
    fn calls(&self) -> u64 {
        self.nodes.iter().map(|n| n.calls).sum()
    }
    fn queued_bytes(&self) -> i64 {
        self.nodes.iter().map(|n| n.queued_bytes).sum()
    }
    fn kept_bytes(&self) -> i64 {
        self.nodes.iter().map(|n| n.kept_bytes).sum()
    }
    fn kept_keys(&self) -> i64 {
        self.nodes.iter().map(|n| n.kept_keys).sum()
    }
    /// Jobs/s at which the busiest primary's thread would be saturated, if
    /// nothing else limited: 1e6 / (its Redis µs per job of the whole run).
    fn redis_ceiling(&self) -> f64 {
        let busiest = self.nodes.iter().map(|n| n.cpu_us).fold(0.0, f64::max);
        1e6 / self.per_job(busiest)
    }
}

fn main() {
    if !under_cargo_bench("pipeline") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 100_000);
    let transport: String = env_or("BENCH_TRANSPORT", "null".to_owned());
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 512);
    let which: String = env_or("BENCH_REDIS", "both".to_owned());
    let cluster_partitions: u32 = env_or("BENCH_PARTITIONS", 12);
    let standalone_partitions: u32 = env_or("BENCH_STANDALONE_PARTITIONS", 1);
    let (standalone, cluster) = match which.as_str() {
        "standalone" => (true, false),
        "cluster" => (false, true),
        "both" => (true, true),
        other => panic!("BENCH_REDIS={other}: standalone, cluster or both"),
    };
    println!(
        "jobs            {jobs} ({transport} transport, concurrency {concurrency}/channel, 4 channels)"
    );
    let mut passes = Vec::new();
    // One pass at a time: each Bench (and its redis-servers) is gone before the
    // next starts, so the passes do not share the cores.
    if standalone {
        passes.push(run_pass(
            "standalone",
            Topology::Standalone,
            standalone_partitions,
            jobs,
            &transport,
            concurrency,
        ));
    }
    if cluster {
        passes.push(run_pass(
            "cluster",
            Topology::Cluster { masters: 3 },
            cluster_partitions,
            jobs,
            &transport,
            concurrency,
        ));
    }
    if passes.len() > 1 {
        print_comparison(&passes);
    }
    for p in &passes {
        assert_eq!(
            p.sent, p.jobs,
            "{}: every job must have its sent event",
            p.name
        );
    }
}

fn run_pass(
    name: &'static str,
    topology: Topology,
    partitions: u32,
    jobs: usize,
    transport: &str,
    concurrency: usize,
) -> Pass {
    let mut bench = Bench::start_on(topology, partitions);
    let channels = ["email", "line", "sms", "dm"];
    let mut config = bench.config_head();
    for ch in channels {
        config.push_str(&format!(
            "[channels.{ch}]\ntransport = \"{transport}\"\ndir = \"{}\"\nrate = \"1000000/s\"\nconcurrency = {concurrency}\n{}",
            bench.dir.path().join("outbox").join(ch).display(),
            if ch == "email" { "from = \"Example Shop <news@example.com>\"\n" } else { "" }
        ));
    }
    let cfg = bench.write_config(&config);
    // The same tag in every pass: the same ids and customers, so the same
    // partitions and payload sizes.
    let file = bench.write_jobs(jobs, &channels, "bench");
    let held = bench.partitions_by_node();

    let before_enqueue = bench.node_stats();
    let enqueue_secs = bench.enqueue(&cfg, &file);
    let before_drain = bench.node_stats();
    let drained = bench.drain_with(&cfg, jobs, true);
    let after_drain = bench.node_stats();
    let results_bytes = bench.results_bytes();
    let sent = bench.count_sent();

    let cpu = |a: &[NodeStats], b: &[NodeStats]| -> f64 {
        a.iter().zip(b).map(|(a, b)| b.cpu_us - a.cpu_us).sum()
    };
    let mut calls = BTreeMap::new();
    for (a, b) in before_drain.iter().zip(&after_drain) {
        for (cmd, n) in &b.calls {
            *calls.entry(cmd.clone()).or_insert(0) +=
                n.saturating_sub(a.calls.get(cmd).copied().unwrap_or(0));
        }
    }
    let nodes = held
        .into_iter()
        .zip(
            before_enqueue
                .iter()
                .zip(before_drain.iter().zip(&after_drain)),
        )
        .map(|((port, partitions), (s0, (s1, s2)))| NodeRow {
            port,
            partitions,
            cpu_us: s2.cpu_us - s1.cpu_us,
            calls: s2.total_calls().saturating_sub(s1.total_calls()),
            queued_bytes: s1.used_memory - s0.used_memory,
            kept_bytes: s2.used_memory - s0.used_memory,
            kept_keys: s2.keys - s0.keys,
        })
        .collect();
    let pass = Pass {
        name,
        partitions,
        jobs,
        enqueue_secs,
        enqueue_redis_us: cpu(&before_enqueue, &before_drain),
        drain_secs: drained.secs,
        events: drained.events,
        sent,
        daemon_cpu_us: drained.cpu_us,
        peak_mib: drained.peak_mib,
        settle_secs: drained.settle_secs,
        nodes,
        results_bytes,
        calls,
    };
    print_pass(&pass);
    pass
}

fn print_pass(p: &Pass) {
    let servers = p.nodes.len();
    println!();
    println!(
        "== {} ({} redis-server{}, partitions = {})",
        p.name,
        servers,
        if servers == 1 { "" } else { "s" },
        p.partitions
    );
    println!(
        "enqueue         {:.2} s  ({:.0} jobs/s, tayori enqueue, pipelined XADD; Redis {:.1} µs/job)",
        p.enqueue_secs,
        p.jobs as f64 / p.enqueue_secs,
        p.per_job(p.enqueue_redis_us)
    );
    println!(
        "drain           {:.2} s  ({:.0} jobs/s end to end, {} events, {} sent)",
        p.drain_secs,
        p.jobs as f64 / p.drain_secs,
        p.events,
        p.sent
    );
    if p.events < p.jobs {
        println!(
            "STALLED         no new event for 60 s: {} of {} (the figures below are not per sent job)",
            p.events, p.jobs
        );
    }
    println!(
        "daemon          {:.1} µs CPU/job (user + system), peak RSS {:.1} MiB",
        p.per_job(p.daemon_cpu_us),
        p.peak_mib
    );
    println!(
        "profiles        the updater read the last event {:.2} s after it was written (the figures below include its work)",
        p.settle_secs
    );
    println!(
        "redis CPU       {:.1} µs/job during the drain, all servers; {:.1} commands/job",
        p.per_job(p.redis_us()),
        p.per_job(p.calls() as f64)
    );
    println!(
        "redis memory    {:.0} B/job queued; {:.0} B/job left after the drain (results streams {:.0} B/job; {:.2} keys/job)",
        p.per_job(p.queued_bytes() as f64),
        p.per_job(p.kept_bytes() as f64),
        p.per_job(p.results_bytes as f64),
        p.per_job(p.kept_keys() as f64)
    );
    println!("per server      port   partitions                 commands  CPU µs/job  queued B/job  kept B/job  saturates at");
    for n in &p.nodes {
        let share = n.calls as f64 / p.calls().max(1) as f64 * 100.0;
        let us = p.per_job(n.cpu_us);
        println!(
            "                {:<6} {:<26} {:>7.1}%  {:>10.1}  {:>12.0}  {:>10.0}  {:>9.0} jobs/s",
            n.port,
            partition_list(&n.partitions),
            share,
            us,
            p.per_job(n.queued_bytes as f64),
            p.per_job(n.kept_bytes as f64),
            1e6 / us
        );
    }
    // Which commands the jobs cost: per-job counts show the constant ones (a few
    // per job) apart from the per-partition housekeeping, which grows with the
    // partitions and the drain's length, not with the jobs.
    let mut top: Vec<(&String, &u64)> = p.calls.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    let top: Vec<String> = top
        .iter()
        .take(10)
        .map(|(c, n)| format!("{c} {:.3}", p.per_job(**n as f64)))
        .collect();
    println!("commands/job    {}", top.join(", "));
}

/// `{0,4,8}`.
fn partition_list(ps: &[u32]) -> String {
    let list: Vec<String> = ps.iter().map(u32::to_string).collect();
    format!("{{{}}}", list.join(","))
}

/// The passes side by side, as a Markdown table for docs/benchmarks.md.
fn print_comparison(passes: &[Pass]) {
    println!();
    let head: Vec<String> = passes
        .iter()
        .map(|p| format!("{} (N = {})", p.name, p.partitions))
        .collect();
    println!("| | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(passes.len()));
    let row = |label: &str, f: &dyn Fn(&Pass) -> String| {
        let cells: Vec<String> = passes.iter().map(f).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    row("jobs/s end to end", &|p| {
        format!("{:.0}", p.jobs as f64 / p.drain_secs)
    });
    row("enqueue jobs/s", &|p| {
        format!("{:.0}", p.jobs as f64 / p.enqueue_secs)
    });
    row("daemon CPU µs/job", &|p| {
        format!("{:.1}", p.per_job(p.daemon_cpu_us))
    });
    row("Redis CPU µs/job, total", &|p| {
        format!("{:.1}", p.per_job(p.redis_us()))
    });
    row("Redis CPU µs/job, per server", &|p| {
        let per: Vec<String> = p
            .nodes
            .iter()
            .map(|n| format!("{:.1}", p.per_job(n.cpu_us)))
            .collect();
        per.join(" / ")
    });
    row("commands/job", &|p| {
        format!("{:.2}", p.per_job(p.calls() as f64))
    });
    row("commands per server", &|p| {
        let per: Vec<String> = p
            .nodes
            .iter()
            .map(|n| format!("{:.0}%", n.calls as f64 / p.calls().max(1) as f64 * 100.0))
            .collect();
        per.join(" / ")
    });
    row("busiest server saturates at", &|p| {
        format!("{:.0} jobs/s", p.redis_ceiling())
    });
    row("Redis bytes/job queued", &|p| {
        format!("{:.0}", p.per_job(p.queued_bytes() as f64))
    });
    row("Redis bytes/job after the drain", &|p| {
        format!(
            "{:.0} (results {:.0})",
            p.per_job(p.kept_bytes() as f64),
            p.per_job(p.results_bytes as f64)
        )
    });
    row("daemon peak RSS", &|p| format!("{:.1} MiB", p.peak_mib));
}
