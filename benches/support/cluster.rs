//! A local Redis Cluster for the benchmarks: `masters` primaries, no replicas, no
//! persistence, on free ports, made with `redis-cli --cluster create`.
//!
//! A trimmed copy of the tests' fixture (tests/common/cluster.rs): a bench binary
//! cannot import test modules, and a benchmark needs neither TLS, logins,
//! replicas nor resharding. Every node runs under a small `sh` watchdog that
//! SIGKILLs it once the bench process is gone (an interrupted `cargo bench`
//! leaves no redis-server behind); [`Drop`] kills every node.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

struct Node {
    port: u16,
    /// The redis-server's own pid (`INFO server`), not the watchdog's.
    pid: Option<u32>,
    /// The watchdog shell.
    child: Child,
}

pub struct LocalCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

/// `k:v` lines (`INFO`, `CLUSTER INFO`) as key → value.
pub fn info_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// A connection to the redis-server on `port` (plain TCP, no login).
pub fn node_conn(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_connection_with_timeout(Duration::from_secs(2))
}

fn quoted(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

impl LocalCluster {
    /// Starts the nodes, creates the cluster, and returns once every node says
    /// `cluster_state:ok` with every slot assigned and every node known: a
    /// client that reads the slot map earlier may be sent a `CLUSTERDOWN`.
    pub fn start(masters: usize) -> LocalCluster {
        assert!(masters >= 3, "redis-cli --cluster create wants 3 primaries");
        let mut cluster = LocalCluster {
            dir: tempfile::tempdir().expect("tempdir"),
            nodes: Vec::new(),
        };
        for _ in 0..masters {
            cluster.spawn_node();
        }
        for i in 0..masters {
            let port = cluster.nodes[i].port;
            let pid = cluster.poll(Duration::from_secs(10), "redis-server to answer", || {
                let mut c = node_conn(port).ok()?;
                let text: String = redis::cmd("INFO").arg("server").query(&mut c).ok()?;
                info_fields(&text).get("process_id")?.parse().ok()
            });
            cluster.nodes[i].pid = Some(pid);
        }
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            )
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli (it comes with redis-server)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let total = masters.to_string();
        let ports = cluster.ports();
        cluster.poll(
            Duration::from_secs(30),
            "cluster_state:ok on every node",
            || {
                ports
                    .iter()
                    .all(|&port| {
                        let Ok(mut c) = node_conn(port) else {
                            return false;
                        };
                        let text: String = redis::cmd("CLUSTER")
                            .arg("INFO")
                            .query(&mut c)
                            .unwrap_or_default();
                        let f = info_fields(&text);
                        f.get("cluster_state").map(String::as_str) == Some("ok")
                            && f.get("cluster_slots_assigned").map(String::as_str) == Some("16384")
                            && f.get("cluster_known_nodes") == Some(&total)
                    })
                    .then_some(())
            },
        );
        cluster
    }

    /// Writes `<dir>/node-P/redis.conf` and starts redis-server on it under the watchdog.
    fn spawn_node(&mut self) {
        let port = free_port();
        // The bus port is given: the default (port + 10000) could fall in the
        // ephemeral range or on another process's port.
        let bus = free_port();
        let data = self.dir.path().join(format!("node-{port}"));
        std::fs::create_dir_all(&data).expect("node dir");
        let conf = format!(
            "bind 127.0.0.1\n\
             port {port}\n\
             cluster-enabled yes\n\
             cluster-config-file {nodes}\n\
             cluster-node-timeout 5000\n\
             cluster-port {bus}\n\
             save \"\"\n\
             appendonly no\n\
             dir {dir}\n\
             logfile {log}\n",
            nodes = quoted(&data.join(format!("nodes-{port}.conf"))),
            dir = quoted(&data),
            log = quoted(&data.join("redis.log")),
        );
        let path = data.join("redis.conf");
        std::fs::write(&path, conf).expect("write redis.conf");
        let script = format!(
            "redis-server \"$1\" & r=$!\n\
             while kill -0 {parent} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.2; done\n\
             kill -9 $r 2>/dev/null\n",
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("redis-cluster-node")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        self.nodes.push(Node {
            port,
            pid: None,
            child,
        });
    }

    /// Polls `f` every 50 ms until it returns `Some`; panics after `timeout`.
    fn poll<T>(&self, timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every node's port (all of them primaries).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Every node's URL, as seeds for `redis.cluster` and `ClusterClient`.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The port of the primary serving `key` now (`CLUSTER KEYSLOT`, `CLUSTER SLOTS`).
    pub fn master_for_key(&self, key: &str) -> u16 {
        let mut c = node_conn(self.nodes[0].port).expect("connect to a node");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .expect("CLUSTER KEYSLOT");
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut c)
            .expect("CLUSTER SLOTS");
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(i)) => Some(*i),
            _ => None,
        };
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (Some(first), Some(last)) = (int(parts.first()), int(parts.get(1))) else {
                continue;
            };
            if let Some(redis::Value::Array(master)) = parts.get(2) {
                if (first..=last).contains(&slot) {
                    if let Some(port) = int(master.get(1)) {
                        return u16::try_from(port).expect("port");
                    }
                }
            }
        }
        panic!("no primary serves slot {slot} of {key}")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            match n.pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
                // SAFETY: kill(2) of a redis-server this cluster started; no
                // memory is involved. Its watchdog ends within 0.2 s of it.
                Some(pid) => unsafe {
                    libc::kill(pid, libc::SIGKILL);
                },
                // It never answered: stop the watchdog instead.
                None => {
                    let _ = n.child.kill();
                }
            }
        }
        for n in &mut self.nodes {
            let _ = n.child.wait();
        }
    }
}
