//! A pool of SMTP connections to one relay.
//!
//! lettre's own pool sent a NOOP before every reuse (a round trip per message). This
//! pool checks a connection with NOOP only after it sat idle, and drops connections
//! that broke, lost step with the relay or idled too long. The sessions themselves
//! are [`super::smtp::client::Connection`]s (pipelined when the relay allows).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::smtp::client::{Connection, Endpoint, Security, SmtpError};
use super::smtp::wire::Reply;
use super::smtp::SmtpSettings;
use tokio::sync::Semaphore;

/// Idle longer than this and a connection is checked with NOOP before use.
const CHECK_AFTER: Duration = Duration::from_secs(5);
/// Idle longer than this and it is closed (relays drop idle clients after ~60–300 s).
const MAX_IDLE: Duration = Duration::from_secs(50);

/// Why a send did not get an answer.
#[derive(Debug)]
pub enum Failure {
    /// Opening the session failed (connect, greeting, TLS, EHLO, AUTH).
    Connect(SmtpError),
    /// The relay refused the message, or the connection broke mid-way.
    Send(SmtpError),
    /// No answer within the timeout.
    Timeout(&'static str),
}

pub struct Pool {
    idle: Mutex<Vec<(Connection, Instant)>>,
    slots: Semaphore,
    endpoint: Endpoint,
    timeout: Duration,
}

impl Pool {
    pub fn new(s: &SmtpSettings, security: Security) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(s.pool_size.max(1) as usize),
            endpoint: Endpoint {
                host: s.host.clone(),
                port: s.port,
                security,
                hello: s.helo_name.clone().unwrap_or_else(host_name),
                login: s.credentials.clone(),
            },
            timeout: s.timeout,
        }
    }

    /// Sends one message on a pooled connection: `from` and `to` are bare addresses,
    /// `raw` the RFC 5322 message (CRLF line ends).
    pub async fn send(&self, from: &str, to: &[&str], raw: &[u8]) -> Result<Reply, Failure> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Failure::Timeout("pool closed"))?;
        let Some(mut conn) = self.take_idle().await else {
            let mut conn = self.connect().await?;
            let result = self.send_on(&mut conn, from, to, raw).await;
            self.put_back(conn);
            return result;
        };
        match self.send_on(&mut conn, from, to, raw).await {
            // A pooled connection the relay had closed meanwhile (idle timeout, restart)
            // shows only now: the pipelined write goes to a dead socket and the first
            // reply is an EOF, a reset or a 421. One more try on a fresh connection
            // instead of failing (deferring) the job. This cannot send the message
            // twice: the failure came at MAIL, before any reply accepted anything, and
            // the message itself is written only after a 354 to DATA; a transaction
            // cut off before its final "." is discarded by the relay (RFC 5321 §3.8).
            Err(Failure::Send(e)) if e.lost_before_mail() => {
                drop(conn);
                let mut fresh = self.connect().await?;
                let result = self.send_on(&mut fresh, from, to, raw).await;
                self.put_back(fresh);
                result
            }
            result => {
                self.put_back(conn);
                result
            }
        }
    }

    async fn send_on(
        &self,
        conn: &mut Connection,
        from: &str,
        to: &[&str],
        raw: &[u8],
    ) -> Result<Reply, Failure> {
        // A whole message gets a few timeouts' worth: the limit is per command in spirit.
        let limit = self.timeout.saturating_mul(4);
        match tokio::time::timeout(limit, conn.send(from, to, raw)).await {
            Ok(result) => result.map_err(Failure::Send),
            Err(_) => {
                // Cut off mid-transaction: its replies may still come.
                conn.abandon();
                Err(Failure::Timeout("no answer to the message"))
            }
        }
    }

    async fn take_idle(&self) -> Option<Connection> {
        loop {
            let (mut conn, since) = self.idle.lock().ok()?.pop()?;
            let idle = since.elapsed();
            if !conn.is_usable() {
                continue; // dropped: closes the socket
            }
            if idle > MAX_IDLE {
                // Goodbye in the background: the job does not wait for it.
                let timeout = self.timeout;
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(timeout, conn.quit()).await;
                });
                continue;
            }
            if idle < CHECK_AFTER {
                return Some(conn);
            }
            if let Ok(true) = tokio::time::timeout(self.timeout, conn.noop()).await {
                return Some(conn);
            }
        }
    }

    /// Keeps a connection for the next message if it can carry one.
    fn put_back(&self, conn: Connection) {
        if !conn.is_usable() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Connection, Failure> {
        tokio::time::timeout(self.timeout, Connection::open(&self.endpoint))
            .await
            .map_err(|_| Failure::Timeout("connecting to the relay"))?
            .map_err(Failure::Connect)
    }
}

/// This host's name for EHLO.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "localhost".to_owned())
}
