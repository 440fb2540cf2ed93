//! A Redis Cluster of the test's own: `masters` primaries and `replicas` replicas
//! of each, on free ports (and free cluster-bus ports), made with
//! `redis-cli --cluster create`, no persistence.
//!
//! [`RedisCluster::start`] is plain TCP with the open `default` user.
//! [`ClusterOpts`] adds:
//!
//! - TLS: every node listens only on a `tls-port` (`port 0`) with `pki.server`
//!   (IP SAN 127.0.0.1), and the cluster bus and replication speak TLS too
//!   (`tls-cluster yes`, `tls-replication yes`). Clients need no certificate
//!   (`tls-auth-clients no`), but the cluster bus always asks for one whatever
//!   that says, and `pki.server` is for serverAuth only: the nodes present
//!   `pki.client` on their outgoing bus and replication links
//!   (`tls-client-cert-file`). Without it no node ever meets another and
//!   `--cluster create` waits forever.
//! - A login: `("default", pw)` is `requirepass`; any other user is an ACL user
//!   with every right and `user default off`. Replicas log in to their primary
//!   with it (`masteruser`, `masterauth`).
//!
//! Every node runs under a small `sh` watchdog that SIGKILLs it when the test
//! process is gone, so a cluster kept in a `static` (never dropped) does not
//! outlive the test binary. [`Drop`] kills every node at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::tls::Pki;

/// How a [`RedisCluster`] is set up. `Default`: three primaries, no replicas,
/// plain TCP, no password, a 2 s node timeout.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    /// At least three (`redis-cli --cluster create` wants three primaries).
    pub masters: usize,
    /// Replicas of each primary.
    pub replicas: usize,
    /// TLS only, with this PKI's certificates.
    pub tls: Option<Pki>,
    /// (user, password): `default` means `requirepass`; another user is an ACL
    /// user and `default` is then off.
    pub auth: Option<(String, String)>,
    /// `cluster-node-timeout` in milliseconds (2000: failovers in tests are quick;
    /// the benchmarks, which never fail over, use 5000).
    pub node_timeout_ms: u32,
}

impl Default for ClusterOpts {
    fn default() -> ClusterOpts {
        ClusterOpts {
            masters: 3,
            replicas: 0,
            tls: None,
            auth: None,
            node_timeout_ms: 2000,
        }
    }
}

struct Node {
    port: u16,
    dir: PathBuf,
    /// The redis-server's own pid (`INFO server`), not the watchdog's.
    pid: Option<u32>,
    /// The watchdog shell.
    child: Child,
    killed: bool,
}

pub struct RedisCluster {
    pub opts: ClusterOpts,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

/// Polls `f` every 50 ms until it returns `Some`, panicking with `what()` after `timeout`.
fn poll<T>(timeout: Duration, what: impl Fn() -> String, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A path as a double-quoted redis.conf value.
fn quoted(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// `k:v` lines (`INFO`, `CLUSTER INFO`) as key → value.
pub fn info_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Who serves which slots: (first slot, last slot, primary's port), sorted.
pub type SlotMap = Vec<(u16, u16, u16)>;

impl RedisCluster {
    /// Three primaries, no replicas, plain TCP, no password.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(ClusterOpts::default())
    }

    /// Starts every node, creates the cluster and returns once every node says
    /// `cluster_state:ok`, knows every other node and agrees on who serves
    /// which slot, and every replica is in sync with its primary.
    pub fn start_with(opts: ClusterOpts) -> RedisCluster {
        assert!(
            opts.masters >= 3,
            "redis-cli --cluster create wants 3 primaries"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cluster = RedisCluster {
            opts,
            dir,
            nodes: Vec::new(),
        };
        let count = cluster.opts.masters * (1 + cluster.opts.replicas);
        for _ in 0..count {
            cluster.spawn_node();
        }
        for i in 0..count {
            let port = cluster.nodes[i].port;
            let pid = poll(
                Duration::from_secs(10),
                || {
                    format!(
                        "redis-server to answer on {port}: {}",
                        cluster.log_tail(port)
                    )
                },
                || cluster.server_pid(port),
            );
            cluster.nodes[i].pid = Some(pid);
        }
        let mut create = cluster.redis_cli();
        create.arg("--cluster").arg("create");
        for n in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create
            .arg("--cluster-replicas")
            .arg(cluster.opts.replicas.to_string())
            .arg("--cluster-yes");
        cluster.run_cli(create, "redis-cli --cluster create");
        cluster.wait_ok(Duration::from_secs(30));
        cluster
    }

    /// Writes `<dir>/node-P/redis.conf` and starts redis-server on it under the watchdog.
    fn spawn_node(&mut self) {
        let port = free_port();
        let bus = free_port();
        let data = self.dir.path().join(format!("node-{port}"));
        std::fs::create_dir_all(&data).expect("node dir");
        let mut conf = String::from("bind 127.0.0.1\n");
        match &self.opts.tls {
            None => conf.push_str(&format!("port {port}\n")),
            Some(pki) => conf.push_str(&format!(
                "port 0\n\
                 tls-port {port}\n\
                 tls-cert-file {cert}\n\
                 tls-key-file {key}\n\
                 tls-ca-cert-file {ca}\n\
                 tls-client-cert-file {client_cert}\n\
                 tls-client-key-file {client_key}\n\
                 tls-auth-clients no\n\
                 tls-cluster yes\n\
                 tls-replication yes\n",
                cert = quoted(&pki.server.cert),
                key = quoted(&pki.server.key),
                client_cert = quoted(&pki.client.cert),
                client_key = quoted(&pki.client.key),
                ca = quoted(&pki.ca),
            )),
        }
        // The bus port is given: the default (port + 10000) could fall in the
        // ephemeral range or on another test's port.
        conf.push_str(&format!(
            "cluster-enabled yes\n\
             cluster-config-file {nodes}\n\
             cluster-node-timeout {timeout}\n\
             cluster-port {bus}\n\
             save \"\"\n\
             appendonly no\n\
             dir {dir}\n\
             logfile {log}\n",
            nodes = quoted(&data.join(format!("nodes-{port}.conf"))),
            dir = quoted(&data),
            log = quoted(&data.join("redis.log")),
            timeout = self.opts.node_timeout_ms,
        ));
        match &self.opts.auth {
            Some((user, password)) if user == "default" => conf.push_str(&format!(
                "requirepass \"{password}\"\nmasterauth \"{password}\"\n"
            )),
            Some((user, password)) => conf.push_str(&format!(
                "user default off\n\
                 user {user} on >{password} ~* &* +@all\n\
                 masteruser {user}\n\
                 masterauth \"{password}\"\n"
            )),
            None => {}
        }
        let path = data.join("redis.conf");
        std::fs::write(&path, conf).expect("write redis.conf");
        // The watchdog: ends with the node, and kills the node once the test
        // process is gone.
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
            dir: data,
            pid: None,
            child,
            killed: false,
        });
    }

    fn scheme(&self) -> &'static str {
        if self.opts.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// `redis-cli` speaking to these nodes: TLS with the test CA, the login.
    fn redis_cli(&self) -> Command {
        let mut cli = Command::new("redis-cli");
        if let Some(pki) = &self.opts.tls {
            cli.arg("--tls").arg("--cacert").arg(&pki.ca);
        }
        if let Some((user, password)) = &self.opts.auth {
            if user != "default" {
                cli.arg("--user").arg(user);
            }
            // Not `-a`: redis-cli warns about a password on its command line.
            cli.env("REDISCLI_AUTH", password);
        }
        cli.stdin(Stdio::null());
        cli
    }

    /// Runs `cli` to its end, within 60 s: `--cluster create` waits forever
    /// for nodes that cannot meet (a bus that refuses their TLS), so a cluster
    /// that cannot form fails the test with the nodes' logs instead of hanging.
    fn run_cli(&self, mut cli: Command, what: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
        let mut child = cli
            .stdout(std::fs::File::create(&out_path).expect("redis-cli stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("redis-cli stderr file"))
            .spawn()
            .expect("redis-cli is not installed (it comes with redis-server)");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for redis-cli") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        match status {
            Some(status) if status.success() => stdout,
            _ => panic!(
                "{what} failed ({}):\n{stdout}\n{stderr}{}",
                status.map_or("no end within 60 s".to_owned(), |s| s.to_string()),
                self.logs()
            ),
        }
    }

    /// Every node's last log lines, for failure messages.
    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("\n--- node {} ---\n{}", n.port, self.log_tail(n.port)))
            .collect()
    }

    /// The seeds for `redis.cluster`: every node's URL, no credentials.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("{}://127.0.0.1:{}", self.scheme(), n.port))
            .collect()
    }

    /// The body of Tayori's `[redis]` that reaches this cluster (`cluster = […]`,
    /// and `tls_ca_file` with TLS), with `extra` lines (credentials…) after it.
    pub fn redis_section(&self, extra: &str) -> String {
        let mut s = format!("cluster = {:?}\n", self.seeds());
        if let Some(pki) = &self.opts.tls {
            s.push_str(&format!(
                "tls_ca_file = {:?}\n",
                pki.ca.display().to_string()
            ));
        }
        s.push_str(extra);
        s
    }

    /// A connection to the node on `port`, logged in.
    pub fn node_conn(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        let auth = match &self.opts.auth {
            Some((user, password)) => format!("{user}:{password}@"),
            None => String::new(),
        };
        let url = format!("{}://{auth}127.0.0.1:{port}", self.scheme());
        let client = match &self.opts.tls {
            Some(pki) => redis::Client::build_with_tls(url, pki.certificates(false))?,
            None => redis::Client::open(url)?,
        };
        client.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// The node's `INFO server` process_id, once it answers.
    fn server_pid(&self, port: u16) -> Option<u32> {
        let mut c = self.node_conn(port).ok()?;
        let text: String = redis::cmd("INFO").arg("server").query(&mut c).ok()?;
        info_fields(&text).get("process_id")?.parse().ok()
    }

    /// Every node's port, killed ones too.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| !n.killed)
    }

    /// `ROLE`'s first word on the node on `port` (`master`, `slave`).
    pub fn role_of(&self, port: u16) -> Option<String> {
        let mut c = self.node_conn(port).ok()?;
        match redis::cmd("ROLE").query::<redis::Value>(&mut c).ok()? {
            redis::Value::Array(v) => match v.first() {
                Some(redis::Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            },
            _ => None,
        }
    }

    /// The ports of the live primaries, sorted.
    pub fn masters(&self) -> Vec<u16> {
        self.live()
            .map(|n| n.port)
            .filter(|&p| self.role_of(p).as_deref() == Some("master"))
            .collect()
    }

    /// The ports of the live replicas, sorted.
    pub fn replicas(&self) -> Vec<u16> {
        self.live()
            .map(|n| n.port)
            .filter(|&p| self.role_of(p).as_deref() == Some("slave"))
            .collect()
    }

    /// `CLUSTER MYID` of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        let mut c = self.node_conn(port).expect("connect to the node");
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut c)
            .expect("CLUSTER MYID")
    }

    /// The slot map as the node on `port` sees it (`CLUSTER SLOTS`).
    pub fn slot_map_of(&self, port: u16) -> Option<SlotMap> {
        let mut c = self.node_conn(port).ok()?;
        let raw: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).ok()?;
        let mut map = SlotMap::new();
        for range in raw {
            let redis::Value::Array(parts) = range else {
                return None;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(i) => u16::try_from(*i).ok(),
                _ => None,
            };
            let master = match parts.get(2)? {
                redis::Value::Array(m) => int(m.get(1)?)?,
                _ => return None,
            };
            map.push((int(parts.first()?)?, int(parts.get(1)?)?, master));
        }
        map.sort();
        Some(map)
    }

    /// The slot map, once every live node agrees on it.
    pub fn slot_map(&self) -> SlotMap {
        poll(
            Duration::from_secs(10),
            || "the nodes to agree on the slot map".into(),
            || self.agreed_slot_map(),
        )
    }

    fn agreed_slot_map(&self) -> Option<SlotMap> {
        let maps: BTreeSet<SlotMap> = self
            .live()
            .map(|n| self.slot_map_of(n.port))
            .collect::<Option<_>>()?;
        (maps.len() == 1).then(|| maps.into_iter().next()).flatten()
    }

    /// The port of the primary serving `key` (asks the cluster for its slot).
    pub fn master_for_key(&self, key: &str) -> u16 {
        let port = self.live().next().expect("a live node").port;
        let mut c = self.node_conn(port).expect("connect to a node");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .expect("CLUSTER KEYSLOT");
        self.slot_map()
            .into_iter()
            .find(|&(first, last, _)| (first..=last).contains(&slot))
            .map(|(_, _, master)| master)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// A key (`{prefix}-N`) that the primary on `port` serves now.
    pub fn key_on(&self, port: u16, prefix: &str) -> String {
        let map = self.slot_map();
        let mut c = self.node_conn(port).expect("connect to the node");
        for i in 0..100_000 {
            let key = format!("{prefix}-{i}");
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&key)
                .query(&mut c)
                .expect("CLUSTER KEYSLOT");
            if map
                .iter()
                .any(|&(first, last, m)| m == port && (first..=last).contains(&slot))
            {
                return key;
            }
        }
        panic!("no key with prefix {prefix} lands on {port}")
    }

    /// Moves `slots` slots from the primary on `from_port` to the one on
    /// `to_port` (`redis-cli --cluster reshard`, which migrates their keys one
    /// by one), and returns once every node agrees on the new slot map.
    pub fn reshard(&self, from_port: u16, to_port: u16, slots: u32) {
        let mut cli = self.redis_cli();
        cli.arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{from_port}"))
            .arg("--cluster-from")
            .arg(self.node_id(from_port))
            .arg("--cluster-to")
            .arg(self.node_id(to_port))
            .arg("--cluster-slots")
            .arg(slots.to_string())
            .arg("--cluster-yes");
        self.run_cli(cli, "redis-cli --cluster reshard");
        self.wait_ok(Duration::from_secs(30));
    }

    /// SIGKILLs the node on `port` (a primary, for a failover test).
    pub fn kill_master(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on {port}"));
        if let Some(pid) = node.pid {
            kill9(pid);
        }
        node.killed = true;
        let _ = node.child.wait();
    }

    /// Waits until every live node says `cluster_state:ok`, knows every node,
    /// agrees on the slot map (which covers every slot and names live
    /// primaries), and every live replica is in sync. Panics after `timeout`
    /// with the state it saw and the nodes' logs.
    pub fn wait_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let problem = self.not_ok();
            let Some(problem) = problem else { return };
            if Instant::now() > deadline {
                panic!(
                    "the cluster is not ok after {timeout:?}: {problem}{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What is not ok yet, if anything.
    fn not_ok(&self) -> Option<String> {
        let total = self.nodes.len().to_string();
        for n in self.live() {
            let Ok(mut c) = self.node_conn(n.port) else {
                return Some(format!("{} does not answer", n.port));
            };
            let info: String = match redis::cmd("CLUSTER").arg("INFO").query(&mut c) {
                Ok(i) => i,
                Err(e) => return Some(format!("{}: CLUSTER INFO: {e}", n.port)),
            };
            let f = info_fields(&info);
            for (key, want) in [
                ("cluster_state", "ok"),
                ("cluster_slots_assigned", "16384"),
                ("cluster_known_nodes", total.as_str()),
            ] {
                if f.get(key).map(String::as_str) != Some(want) {
                    return Some(format!("{} says {key}:{:?}", n.port, f.get(key)));
                }
            }
            if self.role_of(n.port).as_deref() == Some("slave") {
                let repl: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut c)
                    .unwrap_or_default();
                let r = info_fields(&repl);
                if r.get("master_link_status").map(String::as_str) != Some("up")
                    || r.get("master_sync_in_progress").map(String::as_str) != Some("0")
                {
                    return Some(format!("replica {} is not in sync", n.port));
                }
            }
        }
        let Some(map) = self.agreed_slot_map() else {
            return Some("the nodes do not agree on the slot map yet".into());
        };
        let live: BTreeSet<u16> = self.live().map(|n| n.port).collect();
        if let Some(&(first, last, m)) = map.iter().find(|(_, _, m)| !live.contains(m)) {
            return Some(format!(
                "slots {first}-{last} are still on the killed node {m}"
            ));
        }
        None
    }

    /// The last lines of the node's log, for failure messages.
    pub fn log_tail(&self, port: u16) -> String {
        let Some(n) = self.nodes.iter().find(|n| n.port == port) else {
            return String::new();
        };
        let log = std::fs::read_to_string(n.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn kill9(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid of our own node; no memory is involved.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            match (n.pid, n.killed) {
                // Its watchdog ends within 0.2 s of it.
                (Some(pid), false) => kill9(pid),
                (Some(_), true) => {}
                // It never answered: stop the watchdog (and whatever started).
                (None, _) => {
                    let _ = n.child.kill();
                }
            }
        }
        for n in &mut self.nodes {
            let _ = n.child.wait();
        }
    }
}
