//! Every connection Tayori opens to Redis: the daemon's, the CLI's and the
//! report's. One place decides the address (direct, the primary Sentinel names
//! now, or a Redis Cluster's nodes), TLS (the redis crate's rustls support) and
//! the ACL user.
//!
//! [`RedisConnection`] is a multiplexed connection that replaces itself: after an
//! error that leaves the socket unusable (reset, EOF, timeout) or a `READONLY`
//! reply (we are talking to a primary that was demoted), the next command opens a
//! new connection, asking Sentinel again for the primary. The failing command's
//! error still reaches its caller, which retries as it does after any Redis error
//! (nothing is resent blindly: a write whose reply was lost may have happened).
//!
//! Why not the crate's `ConnectionManager`: it is bound to one address (no
//! Sentinel lookup on reconnect) and takes no DNS resolver, which
//! `tls_server_name` needs.
//!
//! With `redis.cluster` the same [`RedisConnection`] wraps the crate's async
//! cluster connection (one multiplexed socket per node), which repairs itself:
//! it reconnects to nodes, refreshes the slot map and follows `MOVED`/`ASK`.
//! What callers must know on a cluster:
//!
//! - A command goes to the primary of its first key's slot. `EVAL`/`EVALSHA`
//!   (so `Script::invoke_async`) go by their first KEY: every key a script
//!   touches must share that slot (a `{hash tag}`); with no KEYS they go to a
//!   random node. A `NOSCRIPT` reply makes `invoke_async` send `SCRIPT LOAD`,
//!   which the crate sends to every node it holds a socket to (the primaries:
//!   with no read routing it opens none to replicas), then retry. Redis does
//!   not replicate `SCRIPT LOAD`, so a replica promoted by a failover starts
//!   without the scripts and its first `EVALSHA` takes that same path.
//! - A pipeline (atomic or not) goes to the slot of its first keyed command; a
//!   later command of another slot fails the whole pipeline with `CrossSlot`
//!   before anything is sent.
//! - Some keyless commands fan out to every primary and merge the replies
//!   (`PING`, `WAIT` (the smallest count), `INFO`, `DBSIZE`, `KEYS`, `FLUSHDB`,
//!   `SCRIPT EXISTS`; `SCRIPT LOAD`/`FLUSH` to every connected node); other
//!   keyless commands (`TIME`, `CLIENT …`) go to a random node. Use
//!   [`RedisConnection::wait_replicas`], not a raw `WAIT`.
//! - `DEL`, `UNLINK`, `EXISTS`, `TOUCH`, `MGET`, `MSET` with keys of several
//!   slots are split by slot and sent to each primary: not atomic, and
//!   `MSET`'s parts may succeed one by one. Inside a pipeline they must stay in
//!   one slot like any other command.
//! - The crate resends a request after a lost connection or a `MOVED`/`ASK`/
//!   `TRYAGAIN`/`CLUSTERDOWN` reply (up to 16 tries within the reply timeout), so
//!   a write whose reply was lost may happen twice, and a non-atomic pipeline
//!   that was partly redirected during a slot migration is resent whole. Writes
//!   that must not repeat belong in a script or a `MULTI` pipeline.
//! - A blocking command (`XREADGROUP … BLOCK`, `WAIT`) holds its node's socket
//!   for every clone of the connection: give such callers
//!   [`RedisConnection::detached`], which has sockets of its own.

mod config;
mod error;
mod target;

pub use config::{redact_url, RedisConfig, DEFAULT_REDIS_URL};
pub use error::{Cause, ConnectError};
pub use target::RedisTarget;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

/// How long opening a connection (TCP, TLS, AUTH) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A self-replacing multiplexed connection to the primary, or a connection to a
/// Redis Cluster's nodes. Cheap to clone: clones share the sockets.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    /// A direct address or Sentinel's primary.
    Single(Arc<Shared>),
    /// `redis.cluster`.
    Cluster(Arc<ClusterShared>),
}

/// A cluster connection, opened on first use.
struct ClusterShared {
    target: RedisTarget,
    reply_timeout: Duration,
    /// The crate's connection reconnects to its nodes (from the seeds again if
    /// it has lost them all) by itself; it is replaced only after a request
    /// timed out (see [`ClusterShared::after_error`]).
    conn: tokio::sync::RwLock<Option<ClusterConnection>>,
}

impl ClusterShared {
    fn new(target: RedisTarget, reply_timeout: Duration) -> ClusterShared {
        ClusterShared {
            target,
            reply_timeout,
            conn: tokio::sync::RwLock::new(None),
        }
    }

    /// The connection (a handle on it: cheap to clone), opening it if it is not
    /// yet open. A failed open is tried again on the next call.
    async fn get(&self) -> RedisResult<ClusterConnection> {
        if let Some(c) = self.conn.read().await.as_ref() {
            return Ok(c.clone());
        }
        let mut slot = self.conn.write().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.target.open_cluster(self.reply_timeout).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// After a request timed out, the next one opens a new connection (a new
    /// slot map and new sockets). Seen once in CI on a loaded 2-core machine:
    /// after two reshards a daemon's claims timed out on every try for minutes,
    /// while a new process on the same cluster worked. Other errors (MOVED,
    /// a lost node) the crate handles itself.
    async fn after_error(&self, e: &redis::RedisError) {
        if e.is_timeout() {
            tracing::warn!(target = %self.target.shown(), "a Redis Cluster request timed out; opening a new cluster connection");
            *self.conn.write().await = None;
        }
    }
}

struct Shared {
    target: RedisTarget,
    reply_timeout: Duration,
    current: RwLock<Option<Current>>,
    /// One reconnection at a time; others wait for its result.
    connecting: tokio::sync::Mutex<()>,
    db: i64,
}

#[derive(Clone)]
struct Current {
    generation: u64,
    conn: MultiplexedConnection,
}

impl RedisTarget {
    /// Opens a connection now (so a wrong password or certificate shows at once).
    /// `reply_timeout` must exceed any BLOCK used on it.
    pub async fn connect(&self, reply_timeout: Duration) -> RedisResult<RedisConnection> {
        if self.is_cluster() {
            let shared = Arc::new(ClusterShared::new(self.clone(), reply_timeout));
            shared.get().await?;
            return Ok(RedisConnection {
                inner: Inner::Cluster(shared),
            });
        }
        let shared = Arc::new(Shared {
            target: self.clone(),
            reply_timeout,
            current: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            db: self.inner.settings.db(),
        });
        shared.get().await?;
        Ok(RedisConnection {
            inner: Inner::Single(shared),
        })
    }

    /// Connects once and checks the server answers as a primary (a cluster:
    /// every primary says `cluster_state:ok` and answers PING), classifying
    /// any failure (for `check-config --connect` and the daemon's start).
    pub async fn check(&self) -> Result<(), ConnectError> {
        let fail = |e: redis::RedisError| ConnectError::new(self, &e);
        let attempt = async {
            let mut c = self.connect(CONNECT_TIMEOUT).await.map_err(fail)?;
            if c.is_cluster() {
                // The nodes' own verdict first: a cluster that lost a shard says
                // so, whereas PING would fail on the lost node's address with a
                // bare I/O error.
                let states = c.cluster_states().await.map_err(fail)?;
                let bad: Vec<String> = states
                    .iter()
                    .filter(|(_, state)| state != "ok")
                    .map(|(node, state)| format!("{node} says cluster_state:{state}"))
                    .collect();
                if !bad.is_empty() {
                    return Err(ConnectError::cluster_not_ok(self, &bad.join(", ")));
                }
            }
            // On a cluster PING goes to every primary of the slot map.
            redis::cmd("PING")
                .query_async::<()>(&mut c)
                .await
                .map_err(fail)?;
            if c.is_cluster() {
                return Ok(());
            }
            let role: Value = redis::cmd("ROLE").query_async(&mut c).await.map_err(fail)?;
            let is_primary = matches!(&role, Value::Array(v) if matches!(v.first(),
                Some(Value::BulkString(b)) if b == b"master"));
            if !is_primary {
                return Err(ConnectError::not_primary(self));
            }
            Ok(())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, attempt).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::timed_out(self)),
        }
    }

    /// The rustls config for the report's own reader, when the target speaks TLS:
    /// the same roots and client certificate, and the name to check.
    pub fn rustls(&self) -> Option<(Arc<rustls::ClientConfig>, Option<&str>)> {
        self.inner
            .tls
            .as_ref()
            .map(|t| (t.rustls.clone(), t.server_name.as_deref()))
    }

    /// Where the primary is now (looked up through Sentinel when configured), and
    /// the user, password and db to use on it.
    pub async fn primary_info(&self) -> RedisResult<redis::ConnectionInfo> {
        target::primary(&self.inner).await
    }

    /// A new cluster connection: every seed tried at once, then every node of the
    /// slot map, within `2 × CONNECT_TIMEOUT` in all (like a single connection).
    async fn open_cluster(&self, reply_timeout: Duration) -> RedisResult<ClusterConnection> {
        let client = target::cluster_client(&self.inner, reply_timeout)?;
        // Dropping the crate's pending connection on timeout ends its task too.
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, client.get_async_connection()).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no connection to the cluster within 10 s",
            ))),
        }
    }

    /// A new connection to the primary, within `2 × CONNECT_TIMEOUT` in all (the
    /// Sentinel lookup's own connections have no timeout of their own).
    async fn open(&self, reply_timeout: Duration) -> RedisResult<MultiplexedConnection> {
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, self.open_now(reply_timeout)).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no connection to the primary within 10 s",
            ))),
        }
    }

    async fn open_now(&self, reply_timeout: Duration) -> RedisResult<MultiplexedConnection> {
        let info = target::primary(&self.inner).await?;
        let mut config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(reply_timeout));
        let server_name = self.inner.tls.as_ref().and_then(|t| t.server_name.clone());
        let info = match (server_name, info.addr().clone()) {
            // The certificate names `server_name`, not the host: connect to the
            // host, but tell TLS the name (the crate checks the name it connects
            // to, so the resolver maps the name back to the host's addresses).
            (
                Some(name),
                ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure,
                    tls_params,
                },
            ) => {
                config = config.set_dns_resolver(FixedHost { host });
                info.set_addr(ConnectionAddr::TcpTls {
                    host: name,
                    port,
                    insecure,
                    tls_params,
                })
            }
            _ => info,
        };
        let client = redis::Client::open(info)?;
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// Resolves whatever name it is asked for to one host's addresses.
struct FixedHost {
    host: String,
}

impl redis::io::AsyncDNSResolver for FixedHost {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        _name: &'b str,
        port: u16,
    ) -> RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((self.host.as_str(), port)).await?;
            Ok(Box::new(addrs) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

impl Shared {
    /// The current connection, opening one if there is none.
    async fn get(&self) -> RedisResult<Current> {
        if let Some(c) = self.current.read().ok().and_then(|g| g.clone()) {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.current.read().ok().and_then(|g| g.clone()) {
            return Ok(c);
        }
        let conn = self.target.open(self.reply_timeout).await?;
        let mut slot = self.current.write().map_err(|_| {
            redis::RedisError::from((ErrorKind::Client, "connection lock poisoned"))
        })?;
        let generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let c = Current { generation, conn };
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Drops the connection a command failed on, if the error says it is unusable
    /// or no longer the primary's.
    fn after_error(&self, generation: u64, e: &redis::RedisError) {
        let replace = e.is_unrecoverable_error()
            || e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || matches!(
                e.kind(),
                ErrorKind::Server(ServerErrorKind::ReadOnly)
                    | ErrorKind::Server(ServerErrorKind::MasterDown)
            );
        if !replace {
            return;
        }
        if let Ok(mut slot) = self.current.write() {
            if slot.as_ref().is_some_and(|c| c.generation == generation) {
                *slot = None;
                if self.target.is_sentinel()
                    || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
                {
                    tracing::warn!(error = %e, target = %self.target.shown(), "Redis connection lost or no longer the primary; reconnecting");
                }
            }
        }
    }
}

static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match &self.inner {
                Inner::Single(shared) => {
                    let mut c = shared.get().await?;
                    let r = c.conn.send_packed_command(cmd).await;
                    if let Err(e) = &r {
                        shared.after_error(c.generation, e);
                    }
                    r
                }
                Inner::Cluster(shared) => {
                    let r = shared.get().await?.req_packed_command(cmd).await;
                    if let Err(e) = &r {
                        shared.after_error(e).await;
                    }
                    r
                }
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match &self.inner {
                Inner::Single(shared) => {
                    let mut c = shared.get().await?;
                    let r = c.conn.send_packed_commands(pipeline, offset, count).await;
                    if let Err(e) = &r {
                        shared.after_error(c.generation, e);
                    }
                    r
                }
                Inner::Cluster(shared) => {
                    let r = shared
                        .get()
                        .await?
                        .req_packed_commands(pipeline, offset, count)
                        .await;
                    if let Err(e) = &r {
                        shared.after_error(e).await;
                    }
                    r
                }
            }
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(shared) => shared.db,
            // A cluster has only db 0.
            Inner::Cluster(_) => 0,
        }
    }
}

impl RedisConnection {
    pub fn target(&self) -> &RedisTarget {
        match &self.inner {
            Inner::Single(shared) => &shared.target,
            Inner::Cluster(shared) => &shared.target,
        }
    }

    /// Whether this is a Redis Cluster connection (commands routed by slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// A connection of its own to the same target, opened on first use. For a
    /// caller whose commands must not queue behind others' (or hold others up):
    /// a `WAIT` or a blocking `XREADGROUP` blocks the socket it is sent on. On a
    /// cluster it is a second cluster connection, with its own socket to every
    /// node and its own slot map.
    pub fn detached(&self) -> RedisConnection {
        let inner = match &self.inner {
            Inner::Single(shared) => Inner::Single(Arc::new(Shared {
                target: shared.target.clone(),
                reply_timeout: shared.reply_timeout,
                current: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                db: shared.db,
            })),
            Inner::Cluster(shared) => Inner::Cluster(Arc::new(ClusterShared::new(
                shared.target.clone(),
                shared.reply_timeout,
            ))),
        };
        RedisConnection { inner }
    }

    /// `WAIT replicas timeout_ms` where the writes went: how many replicas have
    /// every write this connection sent to that server. On a single server, this
    /// connection's server. On a cluster, the primary that owns `slot_key`'s slot
    /// (a raw `WAIT` would go to every primary): `WAIT` counts only writes made on
    /// the same socket, so call it on the connection that wrote, once per slot
    /// (or primary) written; it says nothing about another primary's writes.
    /// `slot_key` is ignored on a single server.
    pub async fn wait_replicas(
        &mut self,
        slot_key: &str,
        replicas: u32,
        timeout_ms: u64,
    ) -> RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout_ms);
        match &self.inner {
            Inner::Single(_) => wait.query_async(self).await,
            Inner::Cluster(shared) => {
                let route = Route::with_key(slot_key.as_bytes(), SlotAddr::Master);
                let reply = shared
                    .get()
                    .await?
                    .route_command(
                        wait,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(redis::from_redis_value(reply)?)
            }
        }
    }

    /// `cluster_state` of every node the connection holds a socket to (the
    /// primaries: with no read routing the crate opens none to replicas),
    /// as (node, state); a node that answers with an error has that error as
    /// its state.
    async fn cluster_states(&mut self) -> RedisResult<Vec<(String, String)>> {
        let Inner::Cluster(shared) = &self.inner else {
            return Ok(Vec::new());
        };
        let mut info = redis::cmd("CLUSTER");
        info.arg("INFO");
        // No response policy: the crate answers a map of node address → reply.
        let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None));
        let reply = shared.get().await?.route_command(info, all).await?;
        let Value::Map(per_node) = reply else {
            return Err(redis::RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "CLUSTER INFO to every node did not answer one reply per node",
            )));
        };
        let mut states = Vec::with_capacity(per_node.len());
        for (node, reply) in per_node {
            let node: String = redis::from_redis_value(node)?;
            let state = match reply {
                Value::ServerError(e) => format!("error ({e})"),
                other => {
                    let text: String = redis::from_redis_value(other)?;
                    text.lines()
                        .find_map(|l| l.trim().strip_prefix("cluster_state:"))
                        .unwrap_or("missing")
                        .to_owned()
                }
            };
            states.push((node, state));
        }
        if states.is_empty() {
            return Err(redis::RedisError::from((
                ErrorKind::ClusterConnectionNotFound,
                "no cluster node answered CLUSTER INFO",
            )));
        }
        states.sort();
        Ok(states)
    }
}

/// The hash slot of `key` (0–16383), as Redis Cluster computes it: CRC16
/// (XMODEM) of the key, or of its `{hash tag}` — the text between the first `{`
/// and the first `}` after it, when that is not empty — modulo 16384. Keys with
/// the same tag are in the same slot, so one script or pipeline may use them all.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % 16384
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the checksum the Redis
/// Cluster specification names. Written here because the redis crate (1.8)
/// does not hand out the number: `cluster_routing::Slot::for_key` is public
/// but `Slot`'s field is private and so is `Route::slot()`, and its `crc16`
/// dependency is not one of ours. The crate routes with `Route::with_key`
/// (as [`RedisConnection::wait_replicas`] does); the test below checks that
/// both agree. Bitwise: keys are short, and it is not worth a table.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// How many replicas must acknowledge a write (`WAIT`), and for how long to wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct Durability {
    pub replicas: u32,
    pub timeout: Duration,
}

impl Durability {
    /// `WAIT replicas timeout` on `conn`, after the writes made on it. Fewer
    /// replicas than asked is counted (`tayori_redis_wait_short_total{op}`) and
    /// logged, not an error: the write is on the primary, only not yet on enough
    /// replicas to survive its loss. An error (Redis went away) is returned: the
    /// caller retries its write, which every caller does idempotently.
    /// Returns whether enough replicas have the writes.
    /// `slot_key` is a key the writes went to: on a cluster, `WAIT` goes to the
    /// primary that owns its slot (the writes of one call share a slot).
    pub async fn wait(
        &self,
        conn: &mut RedisConnection,
        slot_key: &str,
        op: &'static str,
    ) -> RedisResult<bool> {
        if self.replicas == 0 {
            return Ok(true);
        }
        let reached = conn
            .wait_replicas(
                slot_key,
                self.replicas,
                self.timeout.as_millis().max(1) as u64,
            )
            .await?;
        if reached < self.replicas {
            metrics::counter!(crate::metrics::REDIS_WAIT_SHORT, "op" => op).increment(1);
            tracing::warn!(
                op,
                asked = self.replicas,
                reached,
                timeout_ms = self.timeout.as_millis() as u64,
                "WAIT reached fewer replicas than redis.wait_replicas: a failover now could lose this write"
            );
        }
        Ok(reached >= self.replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_follow_the_cluster_spec() {
        // The specification's check value for CRC16/XMODEM.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        // 0x31C3 is below 16384: the slot is the checksum itself.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        // Hash tags: only the first {…} counts, and only when not empty.
        let following = key_slot(b"{user1000}.following");
        assert_eq!(following, key_slot(b"{user1000}.followers"));
        assert_eq!(following, key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16_xmodem(b"foo{}{bar}") % 16384);
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{}"), crc16_xmodem(b"{}") % 16384);
        assert_eq!(
            key_slot(b"no-close{tag"),
            crc16_xmodem(b"no-close{tag") % 16384
        );
    }

    #[test]
    fn key_slots_agree_with_the_crates_routing() {
        // The crate routes by the same slot; a difference would send WAIT to
        // another primary than the writes.
        let mut keys: Vec<String> = (0..2000)
            .map(|i| format!("tayori:jobs:email:{i}"))
            .collect();
        keys.extend((0..200).map(|i| format!("{{p{i}}}:results")));
        keys.extend(["", "{", "}", "{}", "}{", "a{b}c", "{a}{b}", "日本{語}"].map(String::from));
        for key in keys {
            assert_eq!(
                Route::with_key(key.as_bytes(), SlotAddr::Master),
                Route::new(key_slot(key.as_bytes()), SlotAddr::Master),
                "{key:?}"
            );
        }
    }
}
