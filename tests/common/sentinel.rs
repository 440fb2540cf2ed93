//! A Sentinel set of the test's own: a primary, one replica (or more) and one
//! sentinel (quorum 1) on free ports, AOF on every node. Every process is killed
//! on drop.
//!
//! [`SentinelSet::start`] is plain TCP with open `default` users.
//! [`SentinelSet::start_with`] adds, as [`SentinelOpts`] asks:
//!
//! - TLS everywhere: every node and the sentinel listen only on a `tls-port`
//!   (`port 0`) with `pki.server` (IP SAN 127.0.0.1), trusting `pki.ca`; the
//!   replicas replicate and the sentinel monitors over TLS (`tls-replication yes`).
//!   With `mutual_tls`, every server asks for a client certificate
//!   (`tls-auth-clients yes`) and the replicas and the sentinel present
//!   `pki.client` on their outgoing connections (`tls-client-cert-file`).
//! - An ACL user on the sentinel (`user <name> on >pw ~* &* +@all`) with
//!   `user default off`, so nobody gets in anonymously.
//!
//! The test's own connections speak the same way (TLS with the test CA and, for
//! mutual TLS, the client certificate; the sentinel's ACL user).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::tls::Pki;

/// The service name the sentinel monitors.
pub const MASTER_NAME: &str = "mymaster";

/// How a [`SentinelSet`] is set up. `Default`: one replica, plain TCP, no ACL user.
#[derive(Clone, Debug)]
pub struct SentinelOpts {
    /// At least one (a failover needs a replica). Two keep `WAIT 1` satisfiable
    /// after a failover: the remaining one follows the new primary.
    pub replicas: usize,
    /// TLS only, on the data nodes and the sentinel, with this PKI's certificates.
    pub tls: Option<Pki>,
    /// With `tls`: `tls-auth-clients yes` everywhere (clients need `pki.client`).
    pub mutual_tls: bool,
    /// (user, password) of the sentinel's ACL user; `default` is then off on the
    /// sentinel. The data nodes keep an open `default` user.
    pub sentinel_user: Option<(String, String)>,
}

impl Default for SentinelOpts {
    fn default() -> SentinelOpts {
        SentinelOpts {
            replicas: 1,
            tls: None,
            mutual_tls: false,
            sentinel_user: None,
        }
    }
}

pub struct SentinelSet {
    /// The first primary's port (it stays the same after a failover: see
    /// [`SentinelSet::primary_port`] for the current one). The TLS port with `tls`.
    pub first_primary_port: u16,
    /// The first replica's port.
    pub replica_port: u16,
    /// Every replica's port (`replica_port` first).
    pub replica_ports: Vec<u16>,
    /// The sentinel's port (the TLS port with `tls`).
    pub sentinel_port: u16,
    pub opts: SentinelOpts,
    dir: tempfile::TempDir,
    /// (port, process) of every redis-server and the sentinel.
    children: Vec<(u16, Child)>,
    /// The port of the primary [`SentinelSet::kill_primary`] killed last.
    killed: Option<u16>,
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

/// A path as a double-quoted redis.conf value.
fn quoted(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// `k1 v1 k2 v2 …` (what `SENTINEL MASTER` and `SENTINEL REPLICAS` answer) as key → value.
fn fields(kv: Vec<String>) -> HashMap<String, String> {
    kv.chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

impl SentinelSet {
    /// Plain TCP, one replica: [`SentinelSet::start_with`] the default options.
    pub fn start() -> SentinelSet {
        SentinelSet::start_with(SentinelOpts::default())
    }

    /// Starts the primary, the replicas (waits until they are in sync), then the
    /// sentinel, and returns once the sentinel knows every replica as a healthy one.
    pub fn start_with(opts: SentinelOpts) -> SentinelSet {
        assert!(opts.replicas >= 1, "a failover needs a replica");
        assert!(
            !opts.mutual_tls || opts.tls.is_some(),
            "mutual_tls needs tls"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let primary_port = free_port();
        let replica_ports: Vec<u16> = (0..opts.replicas).map(|_| free_port()).collect();
        let sentinel_port = free_port();
        let mut set = SentinelSet {
            first_primary_port: primary_port,
            replica_port: replica_ports[0],
            replica_ports: replica_ports.clone(),
            sentinel_port,
            opts,
            dir,
            children: Vec::new(),
            killed: None,
        };
        set.spawn_node("primary", primary_port, None);
        poll(Duration::from_secs(10), "the primary to answer", || {
            let mut c = set.node_conn(primary_port).ok()?;
            redis::cmd("PING").query::<String>(&mut c).ok()
        });
        for (i, &port) in replica_ports.iter().enumerate() {
            set.spawn_node(&format!("replica{i}"), port, Some(primary_port));
        }
        // In sync before the sentinel starts: its first INFO of the primary then
        // lists the replicas (otherwise it would learn them only 10 s later).
        poll(Duration::from_secs(15), "the replicas to sync", || {
            let p = set.replication_info(primary_port)?;
            for &port in &replica_ports {
                let r = set.replication_info(port)?;
                if r.get("master_link_status").map(String::as_str) != Some("up") {
                    return None;
                }
            }
            (p.get("connected_slaves") == Some(&replica_ports.len().to_string())).then_some(())
        });
        set.spawn_sentinel(primary_port);
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

    /// The lines a node and the sentinel share: where to listen, and TLS.
    fn listen_lines(&self, port: u16) -> String {
        let mut conf = String::from("bind 127.0.0.1\n");
        match &self.opts.tls {
            None => conf.push_str(&format!("port {port}\n")),
            Some(pki) => {
                conf.push_str(&format!(
                    "port 0\n\
                     tls-port {port}\n\
                     tls-cert-file {cert}\n\
                     tls-key-file {key}\n\
                     tls-ca-cert-file {ca}\n\
                     tls-replication yes\n\
                     tls-auth-clients {auth}\n",
                    cert = quoted(&pki.server.cert),
                    key = quoted(&pki.server.key),
                    ca = quoted(&pki.ca),
                    auth = if self.opts.mutual_tls { "yes" } else { "no" },
                ));
                if self.opts.mutual_tls {
                    // The server certificate is for server auth only: outgoing
                    // connections (replication, the sentinel's) present the client one.
                    conf.push_str(&format!(
                        "tls-client-cert-file {}\ntls-client-key-file {}\n",
                        quoted(&pki.client.cert),
                        quoted(&pki.client.key),
                    ));
                }
            }
        }
        conf
    }

    /// Starts a redis-server from a redis.conf in `<dir>/<name>`, which also holds
    /// its data and its `redis.log`.
    fn spawn_node(&mut self, name: &str, port: u16, replica_of: Option<u16>) {
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data).expect("node dir");
        let mut conf = self.listen_lines(port);
        conf.push_str(&format!(
            "save \"\"\n\
             appendonly yes\n\
             appendfsync always\n\
             dir {dir}\n\
             logfile {log}\n",
            dir = quoted(&data),
            log = quoted(&data.join("redis.log")),
        ));
        if let Some(primary) = replica_of {
            conf.push_str(&format!("replicaof 127.0.0.1 {primary}\n"));
        }
        let path = data.join("redis.conf");
        std::fs::write(&path, conf).expect("write redis.conf");
        let child = Command::new("redis-server")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (apt-get install redis-server)");
        self.children.push((port, child));
    }

    /// Starts the sentinel from `<dir>/sentinel/sentinel.conf` (its log beside it).
    fn spawn_sentinel(&mut self, primary_port: u16) {
        let sdir = self.dir.path().join("sentinel");
        std::fs::create_dir_all(&sdir).expect("sentinel dir");
        let mut conf = self.listen_lines(self.sentinel_port);
        conf.push_str(&format!(
            "dir {dir}\n\
             logfile {log}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 1\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = quoted(&sdir),
            log = quoted(&sdir.join("sentinel.log")),
        ));
        if let Some((user, password)) = &self.opts.sentinel_user {
            conf.push_str(&format!(
                "user {user} on >{password} ~* &* +@all\nuser default off\n"
            ));
        }
        let path = sdir.join("sentinel.conf");
        std::fs::write(&path, conf).expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&path)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        self.children.push((self.sentinel_port, child));
    }

    fn scheme(&self) -> &'static str {
        if self.opts.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// `redis://127.0.0.1:SENTINEL_PORT`, or `rediss://` with TLS; no credentials.
    pub fn sentinel_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.sentinel_port)
    }

    /// The body of Tayori's `[redis]` that reaches this set through its sentinel
    /// (`sentinels` and `master_name`), with `extra` lines (TLS files, sentinel
    /// credentials, `wait_replicas`…) after it.
    pub fn redis_section(&self, extra: &str) -> String {
        format!(
            "sentinels = [\"{}\"]\nmaster_name = \"{MASTER_NAME}\"\n{extra}",
            self.sentinel_url()
        )
    }

    /// What the test's own TLS connections present: the CA and, for mutual TLS,
    /// the client certificate. `None` without TLS.
    pub fn certificates(&self) -> Option<redis::TlsCertificates> {
        let pki = self.opts.tls.as_ref()?;
        Some(pki.certificates(self.opts.mutual_tls))
    }

    /// A connection to `url` the way this set speaks (TLS or not).
    fn open(&self, url: String) -> redis::RedisResult<redis::Connection> {
        let client = match self.certificates() {
            Some(certs) => redis::Client::build_with_tls(url, certs)?,
            None => redis::Client::open(url)?,
        };
        client.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// A connection to the data node on `port` (its `default` user).
    pub fn node_conn(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        self.open(format!("{}://127.0.0.1:{port}", self.scheme()))
    }

    /// A connection to the sentinel as its ACL user, if it has one.
    pub fn sentinel_conn(&self) -> redis::RedisResult<redis::Connection> {
        let auth = match &self.opts.sentinel_user {
            Some((user, password)) => format!("{user}:{password}@"),
            None => String::new(),
        };
        self.open(format!(
            "{}://{auth}127.0.0.1:{}",
            self.scheme(),
            self.sentinel_port
        ))
    }

    /// A connection to the sentinel without credentials (refused when it has an
    /// ACL user: `default` is off).
    pub fn anonymous_sentinel_conn(&self) -> redis::RedisResult<redis::Connection> {
        self.open(self.sentinel_url())
    }

    /// `INFO replication` of the node on `port` as key → value.
    fn replication_info(&self, port: u16) -> Option<HashMap<String, String>> {
        let mut c = self.node_conn(port).ok()?;
        let text: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    /// `SENTINEL REPLICAS mymaster`, each replica's fields as key → value.
    pub fn sentinel_replicas(&self) -> redis::RedisResult<Vec<HashMap<String, String>>> {
        let mut c = self.sentinel_conn()?;
        let raw: Vec<Vec<String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(MASTER_NAME)
            .query(&mut c)?;
        Ok(raw.into_iter().map(fields).collect())
    }

    /// `SENTINEL MASTER mymaster` as key → value.
    pub fn sentinel_master(&self) -> redis::RedisResult<HashMap<String, String>> {
        let mut c = self.sentinel_conn()?;
        let kv: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(MASTER_NAME)
            .query(&mut c)?;
        Ok(fields(kv))
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
            || self.node_conn(self.primary_port().ok()?).ok(),
        )
    }

    /// A connection to the node on `port`.
    pub fn conn_to(&self, port: u16) -> redis::Connection {
        poll(Duration::from_secs(10), "a connection to the node", || {
            self.node_conn(port).ok()
        })
    }

    /// `ROLE`'s first word on the node on `port` (`master`, `slave`), if it answers.
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

    /// Waits until the failover is over: the sentinel names a primary other than
    /// the one [`SentinelSet::kill_primary`] killed, that node answers `ROLE` as a
    /// master, and `SENTINEL MASTER` lists it as a master that is neither down nor
    /// mid-failover (what a client's `SENTINEL MASTERS` lookup accepts:
    /// `get-master-addr-by-name` names the promoted replica earlier, while
    /// `SENTINEL MASTERS` still shows the old, down primary). Returns its port.
    pub fn wait_for_failover(&self, timeout: Duration) -> u16 {
        let old = self.killed.expect("kill_primary first");
        let deadline = Instant::now() + timeout;
        loop {
            if let (Ok(port), Ok(master)) = (self.primary_port(), self.sentinel_master()) {
                let flags = master.get("flags").map(String::as_str).unwrap_or("");
                if port != old
                    && master.get("port") == Some(&port.to_string())
                    && flags.split(',').any(|f| f == "master")
                    && !flags.contains("down")
                    && !flags.contains("failover")
                    && self.role_of(port).as_deref() == Some("master")
                {
                    return port;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "no failover within {timeout:?}; sentinel log:\n{}",
                    self.sentinel_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The sentinel's log so far, for failure messages.
    pub fn sentinel_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel/sentinel.log")).unwrap_or_default()
    }

    /// The log files to keep after a run, named by the role each node started
    /// in: `sentinel`, `primary` and (the first) `replica`.
    pub fn log_files(&self) -> [(&'static str, PathBuf); 3] {
        let dir = self.dir.path();
        [
            ("sentinel", dir.join("sentinel/sentinel.log")),
            ("primary", dir.join("primary/redis.log")),
            ("replica", dir.join("replica0/redis.log")),
        ]
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
