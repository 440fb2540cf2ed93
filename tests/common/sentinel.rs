//! A Sentinel setup of the test's own: a primary, one replica (or more) and one sentinel
//! (quorum 1) on free ports, plain TCP, AOF on every node. Every process is
//! killed on drop.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The service name the sentinel monitors.
pub const MASTER_NAME: &str = "mymaster";

pub struct SentinelSet {
    /// The first primary's port (it stays the same after a failover: see
    /// [`SentinelSet::primary_port`] for the current one).
    pub first_primary_port: u16,
    /// The first replica's port.
    pub replica_port: u16,
    /// Every replica's port (`replica_port` first).
    pub replica_ports: Vec<u16>,
    pub sentinel_port: u16,
    dir: tempfile::TempDir,
    /// (port, process) of every redis-server and the sentinel.
    children: Vec<(u16, Child)>,
    /// The port of the primary [`SentinelSet::kill_primary`] killed last.
    killed: Option<u16>,
}

fn spawn_redis(dir: &Path, name: &str, port: u16, extra: &[String]) -> Child {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("node dir");
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(&data)
        .arg("--logfile")
        .arg(data.join("redis.log"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is not installed (apt-get install redis-server)")
}

fn plain_conn(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_connection_with_timeout(Duration::from_secs(2))
}

/// `INFO replication` of the node on `port` as key → value.
fn replication_info(port: u16) -> Option<HashMap<String, String>> {
    let mut c = plain_conn(port).ok()?;
    let text: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect(),
    )
}

/// Polls `f` every 50 ms until it returns `Some`, panicking with `what` after `timeout`.
fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl SentinelSet {
    /// Starts the primary, one replica (waits until it is in sync), then the
    /// sentinel, and returns once the sentinel knows the replica as a healthy one.
    pub fn start() -> SentinelSet {
        SentinelSet::start_with_replicas(1)
    }

    /// The same with `replicas` replicas (two keep `WAIT 1` satisfiable after a
    /// failover: the remaining one follows the new primary).
    pub fn start_with_replicas(replicas: usize) -> SentinelSet {
        assert!(replicas >= 1, "a failover needs a replica");
        let dir = tempfile::tempdir().expect("tempdir");
        let primary_port = free_port();
        let replica_ports: Vec<u16> = (0..replicas).map(|_| free_port()).collect();
        let sentinel_port = free_port();
        let mut set = SentinelSet {
            first_primary_port: primary_port,
            replica_port: replica_ports[0],
            replica_ports: replica_ports.clone(),
            sentinel_port,
            dir,
            children: Vec::new(),
            killed: None,
        };
        let primary = spawn_redis(set.dir.path(), "primary", primary_port, &[]);
        set.children.push((primary_port, primary));
        poll(Duration::from_secs(10), "the primary to answer", || {
            let mut c = plain_conn(primary_port).ok()?;
            redis::cmd("PING").query::<String>(&mut c).ok()
        });
        for (i, &port) in replica_ports.iter().enumerate() {
            let replica = spawn_redis(
                set.dir.path(),
                &format!("replica{i}"),
                port,
                &[
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    primary_port.to_string(),
                ],
            );
            set.children.push((port, replica));
        }
        // In sync before the sentinel starts: its first INFO of the primary then
        // lists the replicas (otherwise it would learn them only 10 s later).
        poll(Duration::from_secs(15), "the replicas to sync", || {
            let p = replication_info(primary_port)?;
            for &port in &replica_ports {
                let r = replication_info(port)?;
                if r.get("master_link_status").map(String::as_str) != Some("up") {
                    return None;
                }
            }
            (p.get("connected_slaves") == Some(&replicas.to_string())).then_some(())
        });
        let sdir = set.dir.path().join("sentinel");
        std::fs::create_dir_all(&sdir).expect("sentinel dir");
        let conf = sdir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel_port}\n\
                 bind 127.0.0.1\n\
                 dir \"{dir}\"\n\
                 logfile \"{dir}/sentinel.log\"\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = sdir.display(),
            ),
        )
        .expect("write sentinel.conf");
        let sentinel = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        set.children.push((sentinel_port, sentinel));
        poll(
            Duration::from_secs(20),
            "the sentinel to know the replicas",
            || {
                let known = set.sentinel_replicas().ok()?;
                replica_ports
                    .iter()
                    .all(|port| {
                        known.iter().any(|r| {
                            r.get("port") == Some(&port.to_string())
                                && r.get("flags").map(String::as_str) == Some("slave")
                                && r.get("master-link-status").map(String::as_str) == Some("ok")
                        })
                    })
                    .then_some(())
            },
        );
        set
    }

    /// `redis://127.0.0.1:SENTINEL_PORT`.
    pub fn sentinel_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinel_port)
    }

    pub fn sentinel_conn(&self) -> redis::RedisResult<redis::Connection> {
        plain_conn(self.sentinel_port)
    }

    /// `SENTINEL REPLICAS mymaster`, each replica's fields as key → value.
    pub fn sentinel_replicas(&self) -> redis::RedisResult<Vec<HashMap<String, String>>> {
        let mut c = self.sentinel_conn()?;
        let raw: Vec<Vec<String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(MASTER_NAME)
            .query(&mut c)?;
        Ok(raw
            .into_iter()
            .map(|kv| {
                kv.chunks(2)
                    .filter(|p| p.len() == 2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect()
            })
            .collect())
    }

    /// The primary's port as the sentinel names it now.
    pub fn primary_port(&self) -> redis::RedisResult<u16> {
        let mut c = self.sentinel_conn()?;
        let (_host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME)
            .query(&mut c)?;
        Ok(port)
    }

    /// A connection to the current primary (asks the sentinel where it is).
    pub fn primary_conn(&self) -> redis::Connection {
        poll(
            Duration::from_secs(10),
            "a connection to the primary",
            || plain_conn(self.primary_port().ok()?).ok(),
        )
    }

    /// A connection to the node on `port`.
    pub fn conn_to(&self, port: u16) -> redis::Connection {
        poll(Duration::from_secs(10), "a connection to the node", || {
            plain_conn(port).ok()
        })
    }

    /// SIGKILLs the current primary; returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self
            .primary_port()
            .expect("ask the sentinel for the primary");
        let i = self
            .children
            .iter()
            .position(|(p, _)| *p == port)
            .expect("the primary is one of ours");
        let (_, mut child) = self.children.remove(i);
        let _ = child.kill();
        let _ = child.wait();
        self.killed = Some(port);
        port
    }

    /// Waits until the sentinel names a primary other than the one
    /// [`SentinelSet::kill_primary`] killed and that node answers `ROLE` as a
    /// master; returns its port.
    pub fn wait_for_failover(&self, timeout: Duration) -> u16 {
        let old = self.killed.expect("kill_primary first");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(port) = self.primary_port() {
                if port != old {
                    let role = plain_conn(port)
                        .and_then(|mut c| redis::cmd("ROLE").query::<redis::Value>(&mut c));
                    if let Ok(redis::Value::Array(v)) = role {
                        if matches!(v.first(), Some(redis::Value::BulkString(b)) if b == b"master")
                        {
                            return port;
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("sentinel/sentinel.log"))
                    .unwrap_or_default();
                panic!("no failover within {timeout:?}; sentinel log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for (_, mut child) in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
