//! What the benchmarks share: a release build, a private redis-server (or a local
//! Redis Cluster), personalized jobs, and a drain measured end to end with the
//! daemon's peak RSS and CPU time. The redis-servers, the daemon process and free
//! ports come from the test kit (`testkit/`), the same the tests use.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use redis::ConnectionLike;
use tayori::keys::Keys;
use tayori_testkit::cluster::{info_fields, ClusterOpts, RedisCluster};
use tayori_testkit::{Daemon, Redis};

#[allow(unused_imports)] // for the benchmarks that start a server of their own
pub use tayori_testkit::free_port;

pub fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// `cargo bench` passes --bench; `cargo test --all-targets` runs bench binaries without it.
pub fn under_cargo_bench(name: &str) -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        println!("{name} benchmark: skipped (run it with `cargo bench --bench {name}`)");
    }
    yes
}

/// The prefix every benchmark's config uses.
pub const PREFIX: &str = "bench";

/// Which Redis a [`Bench`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One redis-server.
    Standalone,
    /// A Redis Cluster of this many primaries, no replicas.
    Cluster { masters: usize },
}

enum Server {
    Standalone(Redis),
    Cluster(Box<RedisCluster>),
}

pub struct Bench {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub bin: PathBuf,
    /// Standalone: the server's URL. Cluster: the first node's.
    pub url: String,
    /// Standalone: the server. Cluster: the first node only, so node-local
    /// commands; keys go through [`Bench::keys_conn`].
    pub conn: redis::Connection,
    /// Key names of the benchmark's prefix and `redis.partitions` (src/keys.rs:
    /// the one place they are made).
    pub keys: Keys,
    /// Cluster only: a connection that sends each key's command to its slot's primary.
    cluster_conn: Option<redis::cluster::ClusterConnection>,
    server: Server,
}

pub struct Drained {
    pub secs: f64,
    pub events: usize,
    pub peak_mib: f64,
    /// The daemon's user + system CPU time over its whole life (start, drain,
    /// shutdown), from `wait4`'s rusage.
    pub cpu_us: f64,
    /// With `settle`: from the last event until the profile updater had read
    /// every event.
    pub settle_secs: f64,
}

/// One redis-server's counters at one moment (`INFO cpu`, `memory`, `commandstats`).
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    pub port: u16,
    /// `used_cpu_user` + `used_cpu_sys`: the whole process, every thread.
    pub cpu_us: f64,
    pub used_memory: i64,
    /// Keys in db 0 (`INFO keyspace`).
    pub keys: i64,
    /// Calls per command (`INFO commandstats`; commands run by scripts count too),
    /// without `info`, `xlen` and `memory`: the benchmark's own probes.
    pub calls: BTreeMap<String, u64>,
    /// Microseconds per command, from the same lines (`usec=`). A script's own
    /// time includes the commands it runs, which are also counted under their names.
    pub usec: BTreeMap<String, u64>,
}

impl NodeStats {
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// `BENCH_PERF=FILE`: samples the daemon's CPU for the whole drain with
/// `perf record` (software clock, 499 Hz, DWARF call graphs) into FILE, or
/// FILE-1, FILE-2, … for a benchmark's later passes. Read it with
/// `perf report -i FILE --no-children`. Off by default: the sampling costs the
/// daemon a few per cent of CPU.
fn perf_record(pid: u32) -> Option<std::process::Child> {
    static PASS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let file = std::env::var("BENCH_PERF").ok().filter(|f| !f.is_empty())?;
    let pass = PASS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = if pass == 0 {
        file
    } else {
        format!("{file}-{pass}")
    };
    let child = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-o",
        ])
        .arg(&file)
        .arg("-p")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("BENCH_PERF: could not start perf: {e}"))
        .ok()?;
    // perf needs a moment to attach; the daemon is still connecting to Redis meanwhile.
    std::thread::sleep(Duration::from_millis(200));
    Some(child)
}

/// Where the benchmarks' daemon is built: a target directory of its own.
/// `cargo bench` builds the shared dependencies with the dev-dependencies'
/// features too, `cargo build --bin tayori` without them; in one target
/// directory each undid the other, and every benchmark run rebuilt ring,
/// rustls and the rest (about two minutes).
const DAEMON_TARGET: &str = "target/bench-daemon";

/// The release binary, built once per bench process: the passes of one
/// benchmark share it.
fn build_release(root: &Path) {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let status = Command::new("cargo")
            .args(["build", "--release", "--quiet", "--bin", "tayori"])
            .env("CARGO_TARGET_DIR", root.join(DAEMON_TARGET))
            .current_dir(root)
            .status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "cargo build --release failed"
        );
    });
}

impl Bench {
    /// One redis-server, one partition.
    pub fn start() -> Bench {
        Bench::start_on(Topology::Standalone, 1)
    }

    /// A redis-server or a local cluster, and `partitions` in the config.
    pub fn start_on(topology: Topology, partitions: u32) -> Bench {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        build_release(&root);
        let dir = tempfile::tempdir().expect("tempdir");
        let (server, cluster_conn) = match topology {
            Topology::Standalone => (Server::Standalone(Redis::start_volatile()), None),
            Topology::Cluster { masters } => {
                // No persistence, no replicas; a benchmark never fails over.
                let cluster = RedisCluster::start_with(ClusterOpts {
                    masters,
                    node_timeout_ms: 5000,
                    ..ClusterOpts::default()
                });
                let conn = redis::cluster::ClusterClient::new(cluster.seeds())
                    .and_then(|c| c.get_connection())
                    .expect("cluster connection");
                (Server::Cluster(Box::new(cluster)), Some(conn))
            }
        };
        let (url, conn) = match &server {
            Server::Standalone(r) => (r.url(), r.conn()),
            Server::Cluster(c) => {
                let port = c.ports()[0];
                let conn = c.node_conn(port).expect("connect to the first node");
                (format!("redis://127.0.0.1:{port}"), conn)
            }
        };
        Bench {
            bin: root.join(DAEMON_TARGET).join("release/tayori"),
            root,
            dir,
            url,
            conn,
            keys: Keys::new(PREFIX, partitions),
            cluster_conn,
            server,
        }
    }

    /// The body of `[redis]` that reaches this Redis.
    fn redis_section(&self) -> String {
        let mut s = match &self.server {
            Server::Standalone(_) => format!("url = \"{}\"\n", self.url),
            Server::Cluster(c) => format!("cluster = {:?}\n", c.seeds()),
        };
        s.push_str(&format!("prefix = \"{PREFIX}\"\n"));
        // Only when not the default: the other benchmarks' configs stay as they were.
        if self.keys.partitions() != 1 {
            s.push_str(&format!("partitions = {}\n", self.keys.partitions()));
        }
        s
    }

    /// The config sections every benchmark shares; channels are appended.
    pub fn config_head(&self) -> String {
        format!(
            "[redis]\n{}[http]\nlisten = \"\"\ntracking_secret = \"bench-tracking-secret-0123456789\"\n[templates]\ndir = \"{}\"\n[policy.quiet_hours]\nsms = \"\"\n[queue]\npoll_interval = \"20ms\"\nread_batch = 512\n",
            self.redis_section(),
            self.root.join("config/templates").display()
        )
    }

    /// `tayori --config cfg` (release build, `TAYORI_LOG=warn`); the caller adds the
    /// subcommand.
    pub fn tayori(&self, cfg: &Path) -> Command {
        tayori_testkit::daemon::tayori(&self.bin, cfg)
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let cfg = self.dir.path().join("bench.toml");
        std::fs::write(&cfg, text).expect("config");
        cfg
    }

    /// `n` jobs round-robin over `channels`, each with its own name, points and links.
    pub fn write_jobs(&self, n: usize, channels: &[&str], tag: &str) -> PathBuf {
        let file = self.dir.path().join(format!("{tag}.jsonl"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("jobs file"));
        for i in 0..n {
            let job = serde_json::json!({
                "id": format!("{tag}-{i}"), "campaign": "bench", "customer_id": format!("C{i}"), "channel": channels[i % channels.len()],
                "to": {"name": format!("顧客 {i}"), "email": format!("c{i}@example.com"), "line_user_id": format!("U{i:032x}"),
                       "phone": "090-1234-5678",
                       "postal": {"postal_code": "100-0001", "address1": "東京都千代田区千代田1-1", "name": format!("顧客 {i}"), "honorific": "様"}},
                "template": "spring_sale",
                "vars": {"points": i % 5000, "items": [{"name": "化粧水", "url": format!("https://shop.example.com/p/{}", i % 97)}]}
            });
            writeln!(out, "{job}").expect("write");
        }
        file
    }

    /// Runs `tayori enqueue`; returns its wall time.
    pub fn enqueue(&self, cfg: &Path, file: &Path) -> f64 {
        let t = Instant::now();
        let status = self
            .tayori(cfg)
            .arg("enqueue")
            .arg(file)
            .stderr(Stdio::null())
            .status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "enqueue failed"
        );
        t.elapsed().as_secs_f64()
    }

    /// Starts the daemon and waits until the results streams have `events` more
    /// entries, then stops it (SIGTERM) and reaps it.
    pub fn drain(&mut self, cfg: &Path, events: usize) -> Drained {
        self.drain_with(cfg, events, false)
    }

    /// [`Bench::drain`]; with `settle`, the daemon is stopped only once the
    /// profile updater has read every event too (`secs` still ends at the last
    /// event). The updater reads the results streams behind the senders, so a
    /// fast drain stops it halfway: its CPU, commands and profiles would be
    /// counted for some jobs only, and a slower run would look costlier per job.
    pub fn drain_with(&mut self, cfg: &Path, events: usize, settle: bool) -> Drained {
        let before = self.results_len();
        let t = Instant::now();
        let daemon = Daemon::start(self.tayori(cfg));
        let profiler = perf_record(daemon.pid());
        let status_path = format!("/proc/{}/status", daemon.pid());
        let mut peak_kib = 0u64;
        let mut done = 0;
        let mut progress = Instant::now();
        loop {
            let now_done = self.results_len().saturating_sub(before);
            if now_done > done {
                progress = Instant::now();
            }
            done = now_done;
            peak_kib = peak_kib.max(vm_hwm_kib(&status_path));
            // Not a time limit on the run: a daemon that wrote no event for a
            // minute is stuck, and the caller's count check reports it.
            if done >= events || progress.elapsed() > Duration::from_secs(60) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let secs = t.elapsed().as_secs_f64();
        let settled = Instant::now();
        if settle && done >= events {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !self.profiles_caught_up() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            peak_kib = peak_kib.max(vm_hwm_kib(&status_path));
        }
        let settle_secs = settled.elapsed().as_secs_f64();
        daemon.sigterm();
        // Its own high-water mark until it exits (a zombie's status has none).
        // Not wait4's ru_maxrss: Linux carries the spawning process's high-water
        // mark into the child's at exec, so it reported this benchmark's own RSS
        // (115 MiB by the third pass of sms_twilio, for a daemon at 40 MiB).
        loop {
            let hwm = vm_hwm_kib(&status_path);
            if hwm == 0 {
                break;
            }
            peak_kib = peak_kib.max(hwm);
            std::thread::sleep(Duration::from_millis(5));
        }
        let (cpu_us, _) = daemon.wait_with_usage();
        if let Some(mut perf) = profiler {
            // perf ends on its own when the process it follows exits.
            let _ = perf.wait();
        }
        Drained {
            secs,
            events: done,
            peak_mib: peak_kib as f64 / 1024.0,
            cpu_us,
            settle_secs,
        }
    }

    /// [`Bench::drain_with`] with `settle`, and Redis's CPU over the drain: the
    /// `INFO cpu` delta of every node ([`redis_us`]). Settled, the daemon's CPU
    /// (`Drained::cpu_us`) includes the profile updater's work for every job, so
    /// both figures divide by jobs evenly (see [`cpu_per_job`]). Redis's delta
    /// also holds the benchmark's own probes (an `XLEN` pipeline every 10 ms,
    /// `XINFO` while settling): small next to a drain's commands.
    pub fn drain_cpu(&mut self, cfg: &Path, events: usize) -> (Drained, f64) {
        let before = self.node_stats();
        let drained = self.drain_with(cfg, events, true);
        let after = self.node_stats();
        if std::env::var_os("BENCH_COMMANDS").is_some() {
            println!("{}", command_costs(&before, &after, events));
        }
        (drained, redis_us(&before, &after))
    }

    /// Whether the profile updater's group (`tayori-profiles`) has read and
    /// acknowledged every entry of every results stream. A missing stream (a
    /// partition without jobs) or one without the group (profiles off) counts as
    /// caught up.
    pub fn profiles_caught_up(&mut self) -> bool {
        for key in self.results_keys() {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query(self.keys_conn())
                .unwrap_or(false);
            if !exists {
                continue;
            }
            let groups: Vec<HashMap<String, redis::Value>> = match redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&key)
                .query(self.keys_conn())
            {
                Ok(g) => g,
                Err(_) => return false,
            };
            let text = |m: &HashMap<String, redis::Value>, k: &str| match m.get(k) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            };
            let Some(group) = groups
                .iter()
                .find(|g| text(g, "name") == tayori::profile::updater::GROUP)
            else {
                continue;
            };
            if !matches!(group.get("pending"), Some(redis::Value::Int(0))) {
                return false;
            }
            let stream: HashMap<String, redis::Value> = match redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&key)
                .query(self.keys_conn())
            {
                Ok(s) => s,
                Err(_) => return false,
            };
            if text(group, "last-delivered-id") != text(&stream, "last-generated-id") {
                return false;
            }
        }
        true
    }

    /// The connection for commands on keys: on a cluster it sends each to the
    /// primary of the key's slot.
    pub fn keys_conn(&mut self) -> &mut dyn ConnectionLike {
        match &mut self.cluster_conn {
            Some(c) => c,
            None => &mut self.conn,
        }
    }

    /// Every partition's results stream.
    pub fn results_keys(&self) -> Vec<String> {
        self.keys
            .all_partitions()
            .map(|p| self.keys.results(p))
            .collect()
    }

    /// Entries in every partition's results stream, summed. One pipeline: on a
    /// cluster the client splits it by node, so a poll costs a round trip per
    /// node, not per partition, and adds little to what is measured.
    pub fn results_len(&mut self) -> usize {
        let keys = self.results_keys();
        let lens: Vec<usize> = match &mut self.cluster_conn {
            Some(c) => {
                let mut pipe = redis::cluster::cluster_pipe();
                for k in &keys {
                    pipe.cmd("XLEN").arg(k);
                }
                pipe.query(c).unwrap_or_default()
            }
            None => {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("XLEN").arg(k);
                }
                pipe.query(&mut self.conn).unwrap_or_default()
            }
        };
        lens.iter().sum()
    }

    /// `sent` events in every partition's results stream.
    pub fn count_sent(&mut self) -> usize {
        let mut sent = 0;
        for key in self.results_keys() {
            // Pages of 10,000: a whole 100,000-entry stream in one reply is a
            // needless spike in both processes.
            let mut start = "-".to_owned();
            loop {
                let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(10_000)
                    .query::<redis::Value>(self.keys_conn())
                    .ok()
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or_default();
                sent += page
                    .iter()
                    .filter(|(_, f)| {
                        f.iter()
                            .any(|(k, v)| k == "event" && v.contains("\"type\":\"sent\""))
                    })
                    .count();
                match page.last() {
                    Some((id, _)) if page.len() == 10_000 => start = format!("({id}"),
                    _ => break,
                }
            }
        }
        sent
    }

    /// Bytes the results streams take (`MEMORY USAGE … SAMPLES 0`: every entry counted).
    pub fn results_bytes(&mut self) -> i64 {
        let mut total = 0;
        for key in self.results_keys() {
            let bytes: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query(self.keys_conn())
                .unwrap_or(None);
            total += bytes.unwrap_or(0);
        }
        total
    }

    /// Every redis-server's port: the one, or each primary of the cluster.
    pub fn nodes(&self) -> Vec<u16> {
        match &self.server {
            Server::Standalone(_) => vec![self.url_port()],
            Server::Cluster(c) => c.ports(),
        }
    }

    fn url_port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in url")
    }

    /// Which partitions each node holds (by its results stream's slot; every key
    /// of a partition shares that slot), in [`Bench::nodes`] order.
    pub fn partitions_by_node(&self) -> Vec<(u16, Vec<u32>)> {
        let nodes = self.nodes();
        let mut held: Vec<(u16, Vec<u32>)> = nodes.iter().map(|&n| (n, Vec::new())).collect();
        for p in self.keys.all_partitions() {
            let owner = match &self.server {
                Server::Standalone(_) => nodes[0],
                Server::Cluster(c) => c.master_for_key(&self.keys.results(p)),
            };
            if let Some((_, ps)) = held.iter_mut().find(|(n, _)| *n == owner) {
                ps.push(p.index());
            }
        }
        held
    }

    /// Every node's counters now, in [`Bench::nodes`] order.
    pub fn node_stats(&self) -> Vec<NodeStats> {
        self.nodes()
            .into_iter()
            .map(|port| {
                let mut c = match &self.server {
                    Server::Standalone(r) => r.conn(),
                    Server::Cluster(c) => c.node_conn(port).expect("connect to a redis-server"),
                };
                let text: String = redis::cmd("INFO")
                    .arg("cpu")
                    .arg("memory")
                    .arg("commandstats")
                    .arg("keyspace")
                    .query(&mut c)
                    .expect("INFO");
                let f = info_fields(&text);
                let num = |k: &str| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                let stat = |field: &'static str| -> BTreeMap<String, u64> {
                    f.iter()
                        .filter_map(|(k, v)| {
                            let name = k.strip_prefix("cmdstat_")?;
                            let n = v.split(',').find_map(|kv| kv.strip_prefix(field))?;
                            Some((name.to_owned(), n.parse().ok()?))
                        })
                        // `memory|usage`: subcommands are counted under `name|sub`.
                        .filter(|(name, _)| {
                            let base = name.split('|').next().unwrap_or_default();
                            !matches!(base, "info" | "xlen" | "memory")
                        })
                        .collect()
                };
                let (calls, usec) = (stat("calls="), stat("usec="));
                NodeStats {
                    port,
                    cpu_us: (num("used_cpu_user") + num("used_cpu_sys")) * 1e6,
                    used_memory: num("used_memory") as i64,
                    keys: f
                        .get("db0")
                        .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("keys=")))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                    calls,
                    usec,
                }
            })
            .collect()
    }
}

/// Redis's CPU (user + system) between two snapshots of the same nodes, summed
/// over the nodes.
pub fn redis_us(before: &[NodeStats], after: &[NodeStats]) -> f64 {
    before
        .iter()
        .zip(after)
        .map(|(a, b)| b.cpu_us - a.cpu_us)
        .sum()
}

/// `BENCH_COMMANDS=1`: what Redis spent its time on between two snapshots, per job:
/// each command's calls and its own µs (`INFO commandstats`), the costliest first.
/// A script's µs includes the commands it ran, which are listed under their own
/// names too; the rest of Redis's CPU (reading and writing sockets, the event
/// loop) is in no command.
pub fn command_costs(before: &[NodeStats], after: &[NodeStats], jobs: usize) -> String {
    let mut per: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (a, b) in before.iter().zip(after) {
        for (name, &calls) in &b.calls {
            let e = per.entry(name.as_str()).or_default();
            e.0 += calls - a.calls.get(name).copied().unwrap_or(0);
            e.1 += b.usec.get(name).copied().unwrap_or(0) - a.usec.get(name).copied().unwrap_or(0);
        }
    }
    let mut rows: Vec<_> = per.into_iter().filter(|(_, (c, _))| *c > 0).collect();
    rows.sort_by_key(|(_, (_, usec))| std::cmp::Reverse(*usec));
    let jobs = jobs.max(1) as f64;
    let mut out = String::from("commands per job (calls, µs):");
    for (name, (calls, usec)) in rows {
        out.push_str(&format!(
            " {name} {:.2} {:.2};",
            calls as f64 / jobs,
            usec as f64 / jobs
        ));
    }
    out
}

/// `XREADGROUP` and script calls (`EVALSHA`, `EVAL`) per job between two
/// snapshots: what a job costs Redis in round trips, beside its CPU.
pub fn calls_per_job(before: &[NodeStats], after: &[NodeStats], jobs: usize) -> String {
    let calls = |stats: &[NodeStats], names: &[&str]| -> u64 {
        stats
            .iter()
            .flat_map(|s| names.iter().filter_map(|n| s.calls.get(*n)))
            .sum()
    };
    let per_job = |names: &[&str]| {
        calls(after, names).saturating_sub(calls(before, names)) as f64 / jobs.max(1) as f64
    };
    format!(
        "{:.3} XREADGROUP/job, {:.3} EVALSHA/job",
        per_job(&["xreadgroup"]),
        per_job(&["evalsha", "eval"])
    )
}

/// `daemon X µs/job, Redis Y µs/job`: a drain's daemon CPU and the Redis CPU
/// around it ([`Bench::drain_cpu`]), each divided by the drain's jobs.
pub fn cpu_per_job(drained: &Drained, redis_us: f64, jobs: usize) -> String {
    format!(
        "daemon {:.1} µs/job, Redis {:.1} µs/job",
        drained.cpu_us / jobs as f64,
        redis_us / jobs as f64
    )
}

/// The process's peak resident set (`VmHWM`), 0 once it is gone.
fn vm_hwm_kib(status_path: &str) -> u64 {
    std::fs::read_to_string(status_path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
