//! Every connection Tayori opens to Redis: the daemon's, the CLI's and the
//! report's. One place decides the address (direct, or the primary Sentinel names
//! now), TLS (the redis crate's rustls support) and the ACL user.
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

mod error;
mod target;

pub use error::{Cause, ConnectError};
pub use target::RedisTarget;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

/// How long opening a connection (TCP, TLS, AUTH) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A self-replacing multiplexed connection to the primary. Cheap to clone: clones
/// share the socket.
#[derive(Clone)]
pub struct RedisConnection {
    shared: Arc<Shared>,
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
        let shared = Arc::new(Shared {
            target: self.clone(),
            reply_timeout,
            current: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            db: self.inner.settings.db(),
        });
        shared.get().await?;
        Ok(RedisConnection { shared })
    }

    /// Connects once and checks the server answers as a primary, classifying any
    /// failure (for `check-config --connect` and the daemon's start).
    pub async fn check(&self) -> Result<(), ConnectError> {
        let fail = |e: redis::RedisError| ConnectError::new(self, &e);
        let attempt = async {
            let mut c = self.connect(CONNECT_TIMEOUT).await.map_err(fail)?;
            redis::cmd("PING")
                .query_async::<()>(&mut c)
                .await
                .map_err(fail)?;
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
            let mut c = self.shared.get().await?;
            let r = c.conn.send_packed_command(cmd).await;
            if let Err(e) = &r {
                self.shared.after_error(c.generation, e);
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut c = self.shared.get().await?;
            let r = c.conn.send_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &r {
                self.shared.after_error(c.generation, e);
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.db
    }
}

impl RedisConnection {
    pub fn target(&self) -> &RedisTarget {
        &self.shared.target
    }

    /// A connection of its own to the same target, opened on first use. For a
    /// caller whose commands must not queue behind others' (or hold others up):
    /// a `WAIT` blocks the whole connection it is sent on.
    pub fn detached(&self) -> RedisConnection {
        RedisConnection {
            shared: Arc::new(Shared {
                target: self.shared.target.clone(),
                reply_timeout: self.shared.reply_timeout,
                current: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                db: self.shared.db,
            }),
        }
    }
}
