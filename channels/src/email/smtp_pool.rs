//! A pool of SMTP connections to one relay.
//!
//! lettre's own pool sends a NOOP before every reuse and cannot set TCP_NODELAY;
//! lettre writes the message and the final `.` separately, so with Nagle's
//! algorithm each message waited for the relay's delayed ACK (~40 ms): measured
//! 1,360 messages/s over 32 connections. This pool opens the socket itself
//! (no delay), checks a connection with NOOP only after it sat idle, and drops
//! connections that broke or idled too long.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{self, response::Response};
use tokio::sync::Semaphore;

use super::smtp::SmtpSettings;

/// Idle longer than this and a connection is checked with NOOP before use.
const CHECK_AFTER: Duration = Duration::from_secs(5);
/// Idle longer than this and it is closed (relays drop idle clients after ~60–300 s).
const MAX_IDLE: Duration = Duration::from_secs(50);

/// Why a send did not get an answer.
#[derive(Debug)]
pub enum Failure {
    /// The relay could not be reached.
    Io(std::io::Error),
    /// Opening the session failed (greeting, TLS, AUTH).
    Connect(smtp::Error),
    /// The relay answered a command with an error, or the connection broke mid-way.
    Send(smtp::Error),
    /// No answer within the timeout.
    Timeout(&'static str),
}

/// How connections are secured; the parameters are built once (loading roots is
/// costly, and every connection checks the relay the same way).
pub enum Security {
    Plain,
    Starttls(TlsParameters),
    /// TLS from the first byte (port 465).
    Implicit(TlsParameters),
}

pub struct Pool {
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    slots: Semaphore,
    host: String,
    port: u16,
    tls: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
}

impl Pool {
    pub fn new(s: &SmtpSettings, tls: Security) -> Pool {
        let hello = ClientId::Domain(s.helo_name.clone().unwrap_or_else(host_name));
        Pool {
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(s.pool_size.max(1) as usize),
            host: s.host.clone(),
            port: s.port,
            tls,
            credentials: s
                .credentials
                .as_ref()
                .map(|(u, p)| Credentials::new(u.clone(), p.clone())),
            hello,
            timeout: s.timeout,
        }
    }

    /// Sends one message on a pooled connection.
    pub async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Response, Failure> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Failure::Timeout("pool closed"))?;
        let mut conn = match self.take_idle().await {
            Some(c) => c,
            None => self.connect().await?,
        };
        // A whole message gets a few timeouts' worth: the limit is per command in spirit.
        let limit = self.timeout.saturating_mul(4);
        match tokio::time::timeout(limit, conn.send(envelope, raw)).await {
            Ok(Ok(response)) => {
                self.put_back(conn);
                Ok(response)
            }
            Ok(Err(e)) => {
                // lettre ends the session (QUIT) on a failed command; reuse only what still works.
                if !conn.has_broken() {
                    self.put_back(conn);
                }
                Err(Failure::Send(e))
            }
            Err(_) => Err(Failure::Timeout("no answer to the message")),
        }
    }

    async fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, since) = self.idle.lock().ok()?.pop()?;
            let idle = since.elapsed();
            if idle > MAX_IDLE || conn.has_broken() {
                continue; // dropped: closes the socket
            }
            if idle < CHECK_AFTER {
                return Some(conn);
            }
            if let Ok(true) = tokio::time::timeout(self.timeout, conn.test_connected()).await {
                return Some(conn);
            }
        }
    }

    fn put_back(&self, conn: AsyncSmtpConnection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        tokio::time::timeout(self.timeout, self.open())
            .await
            .map_err(|_| Failure::Timeout("connecting to the relay"))?
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, Failure> {
        let mut conn = if let Security::Implicit(params) = &self.tls {
            // TLS from the first byte: lettre opens that socket (without TCP_NODELAY,
            // which TLS records make matter less).
            AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                Some(params.clone()),
                None,
            )
            .await
            .map_err(Failure::Connect)?
        } else {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(Failure::Io)?;
            tcp.set_nodelay(true).map_err(Failure::Io)?;
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(Failure::Connect)?;
            if let Security::Starttls(params) = &self.tls {
                conn.starttls(params.clone(), &self.hello)
                    .await
                    .map_err(Failure::Connect)?;
            }
            conn
        };
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(Failure::Connect)?;
        }
        Ok(conn)
    }
}

/// This host's name for EHLO (lettre's default needs a feature we do not build).
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
