//! Reading the results stream for a report: `XRANGE` pages on a connection of its
//! own, whose replies are read straight off the socket.
//!
//! Why not the redis crate here: it turns each page into a tree of `Value`s, five
//! allocations per entry, and for a million events that tree was 70% of the
//! report's time (3.3 s of CPU against 0.27 s in Redis). This reader keeps one
//! buffer per field and hands each `event` value to the summary as a slice, so the
//! only per-entry work left is the JSON. It speaks just what it needs of RESP2:
//! `AUTH`, `SELECT` and `XRANGE`, whose commands the redis crate still encodes.
//! Over TLS it uses rustls with the roots and client certificate of `[redis]`
//! (the same files the redis crate is given); the address comes from
//! [`RedisTarget::primary_info`](crate::redis_connection::RedisTarget::primary_info),
//! so Sentinel works too.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::Duration;

use std::sync::Arc;

use redis::{ConnectionAddr, ConnectionInfo};

use super::Summary;

/// Entries per `XRANGE` page: about 3 MB of events, under 3 ms of Redis's time.
pub const PAGE: usize = 10_000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Connect(String),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("Redis answered {0}")]
    Redis(String),
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
}

enum Socket {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Tls(s) => s.read(buf),
            #[cfg(unix)]
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Tls(s) => s.write(buf),
            #[cfg(unix)]
            Socket::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Tls(s) => s.flush(),
            #[cfg(unix)]
            Socket::Unix(s) => s.flush(),
        }
    }
}

/// A connection that sends one command at a time and reads its reply.
pub struct Reader {
    io: BufReader<Socket>,
    line: Vec<u8>,
    id: Vec<u8>,
    field: Vec<u8>,
    value: Vec<u8>,
}

fn tcp(host: &str, port: u16) -> Result<TcpStream, ReadError> {
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(READ_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last.into())
}

impl Reader {
    /// Connects to the primary `info` names (from
    /// [`RedisTarget::primary_info`](crate::redis_connection::RedisTarget::primary_info)),
    /// over TLS with `tls` (the rustls config and the name the certificate must
    /// carry, when not the host), and authenticates and selects the database.
    pub fn connect(
        info: &ConnectionInfo,
        tls: Option<(Arc<rustls::ClientConfig>, Option<&str>)>,
    ) -> Result<Reader, ReadError> {
        let socket = match (info.addr(), tls) {
            (ConnectionAddr::Tcp(host, port), None) => Socket::Tcp(tcp(host, *port)?),
            (ConnectionAddr::TcpTls { host, port, .. }, Some((config, server_name))) => {
                let mut s = tcp(host, *port)?;
                let name = server_name.unwrap_or(host);
                let name = rustls::pki_types::ServerName::try_from(name.to_owned())
                    .map_err(|e| ReadError::Connect(format!("TLS name {name:?}: {e}")))?;
                let mut conn = rustls::ClientConnection::new(config, name)
                    .map_err(|e| ReadError::Connect(format!("TLS: {e}")))?;
                // The handshake now, so a certificate problem is reported as one.
                while conn.is_handshaking() {
                    conn.complete_io(&mut s).map_err(|e| {
                        ReadError::Connect(format!("certificate (TLS handshake): {e}"))
                    })?;
                }
                Socket::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
            }
            #[cfg(unix)]
            (ConnectionAddr::Unix(path), _) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(READ_TIMEOUT))?;
                Socket::Unix(s)
            }
            _ => {
                return Err(ReadError::Connect(
                    "the address and the TLS settings disagree".into(),
                ))
            }
        };
        let mut r = Reader {
            io: BufReader::with_capacity(256 * 1024, socket),
            line: Vec::with_capacity(64),
            id: Vec::with_capacity(32),
            field: Vec::with_capacity(16),
            value: Vec::with_capacity(1024),
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            r.simple(&auth)?;
        }
        if settings.db() != 0 {
            r.simple(redis::cmd("SELECT").arg(settings.db()))?;
        }
        Ok(r)
    }

    /// Feeds every entry of the stream `key` to `summary`, oldest first.
    pub fn scan(&mut self, key: &str, summary: &mut Summary) -> Result<(), ReadError> {
        let mut start = "-".to_owned();
        loop {
            self.send(
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE),
            )?;
            let entries = self.header(b'*')?;
            for _ in 0..entries {
                self.entry(summary)?;
            }
            if entries < PAGE as i64 {
                return Ok(());
            }
            start = format!("({}", String::from_utf8_lossy(&self.id));
        }
    }

    /// One entry: `*2`, its id, then `*2n` field names and values.
    fn entry(&mut self, summary: &mut Summary) -> Result<(), ReadError> {
        if self.header(b'*')? != 2 {
            return Err(ReadError::Protocol("a stream entry is not a pair".into()));
        }
        let mut id = std::mem::take(&mut self.id);
        self.bulk(&mut id)?;
        self.id = id;
        let fields = self.header(b'*')?;
        let mut found = false;
        for _ in 0..fields.max(0) / 2 {
            let (mut field, mut value) = (
                std::mem::take(&mut self.field),
                std::mem::take(&mut self.value),
            );
            self.bulk(&mut field)?;
            self.bulk(&mut value)?;
            if field == b"event" && !found {
                summary.add(&value);
                found = true;
            }
            (self.field, self.value) = (field, value);
        }
        Ok(())
    }

    fn send(&mut self, cmd: &redis::Cmd) -> Result<(), ReadError> {
        let socket = self.io.get_mut();
        socket.write_all(&cmd.get_packed_command())?;
        socket.flush()?;
        Ok(())
    }

    /// Sends a command whose reply is `+OK`-like.
    fn simple(&mut self, cmd: &redis::Cmd) -> Result<(), ReadError> {
        self.send(cmd)?;
        self.read_line()?;
        match self.line.first() {
            Some(b'+') => Ok(()),
            _ => Err(self.unexpected()),
        }
    }

    /// The next line, without its CRLF.
    fn read_line(&mut self) -> Result<(), ReadError> {
        self.line.clear();
        let n = self.io.read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        if self.line.ends_with(b"\r\n") {
            self.line.truncate(self.line.len() - 2);
        }
        Ok(())
    }

    /// A `*N` or `$N` header's N (-1 for a null).
    fn header(&mut self, kind: u8) -> Result<i64, ReadError> {
        self.read_line()?;
        if self.line.first() != Some(&kind) {
            return Err(self.unexpected());
        }
        std::str::from_utf8(&self.line[1..])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.unexpected())
    }

    /// A bulk string into `out` (emptied for a null).
    fn bulk(&mut self, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let len = self.header(b'$')?;
        out.clear();
        if len < 0 {
            return Ok(());
        }
        out.resize(len as usize + 2, 0);
        self.io.read_exact(out)?;
        out.truncate(len as usize);
        Ok(())
    }

    fn unexpected(&self) -> ReadError {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        match line.strip_prefix('-') {
            Some(error) => ReadError::Redis(error.to_owned()),
            None => ReadError::Protocol(line.chars().take(80).collect()),
        }
    }
}

/// An entry as the crate reads it: id, then field and value bytes.
type RawEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Feeds every entry of the stream `key` to `summary`, oldest first, through
/// the redis crate: for a Redis Cluster, where [`Reader`] (one socket to one
/// server) does not reach every partition.
pub async fn scan_via(
    conn: &crate::redis_connection::RedisConnection,
    key: &str,
    summary: &mut Summary,
) -> Result<(), ReadError> {
    let mut conn = conn.clone();
    let mut start = "-".to_owned();
    loop {
        let page: Vec<RawEntry> = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await
            .map_err(|e| ReadError::Redis(e.to_string()))?;
        for (_, fields) in &page {
            if let Some((_, event)) = fields.iter().find(|(f, _)| f == b"event") {
                summary.add(event);
            }
        }
        match page.last() {
            Some((id, _)) if page.len() == PAGE => start = format!("({id}"),
            _ => return Ok(()),
        }
    }
}
