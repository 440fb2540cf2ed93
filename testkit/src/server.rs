//! The one fake-provider HTTP server scaffold: a real HTTP/1.1 server on a free
//! port of 127.0.0.1 (bound to port 0 and held, so no other process can take the
//! port first), with its own tokio runtime on a background thread, stopped when
//! dropped.
//!
//! What a fake does is its own: a state `S` (its script, what it recorded, its
//! ids) and a handler that sees each request with that state locked and returns
//! the answer. The providers' spec checkers ([`crate::line_api`],
//! [`crate::twilio_api`], [`crate::vonage_api`]) are handlers on it; a test or
//! benchmark with a simpler endpoint writes a few lines of handler.

use std::future::IntoFuture;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::Value;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// When the server read it (before the state was locked).
    pub at: Instant,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Incoming {
    /// The path only, without the query.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The first value of a header (any case), lossily as UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// Every header: names in lower case, in the order received.
    pub fn header_list(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect()
    }

    /// The `Content-Type` without parameters, in lower case.
    pub fn content_type_essence(&self) -> Option<String> {
        self.header("content-type").map(|ct| essence(&ct))
    }
}

/// A media type without its parameters, trimmed, in lower case.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// What the handler answers: a response, sent after `delay` (without the state
/// locked meanwhile), for client timeouts.
pub struct Answer {
    pub response: Response,
    pub delay: Option<Duration>,
}

impl Answer {
    /// `response`, sent once `delay` has passed.
    pub fn after(response: Response, delay: Option<Duration>) -> Answer {
        Answer { response, delay }
    }
}

impl From<Response> for Answer {
    fn from(response: Response) -> Answer {
        Answer {
            response,
            delay: None,
        }
    }
}

/// A response with `status`, `headers` in order and `body`.
pub fn response(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut builder = Response::builder().status(StatusCode::from_u16(status).expect("status"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).expect("response")
}

/// A JSON response (`content-type: application/json`) with extra `headers`.
pub fn json_response(status: u16, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    response(status, &all, body.to_string())
}

/// How a [`FakeServer`] runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The thread's name (`{name}-{port}`) and the name in error messages.
    pub name: String,
    /// axum's default 2 MB body limit (a larger body is answered 413 before the
    /// handler sees it) or none.
    pub body_limit: bool,
    /// `None`: a current-thread runtime. `Some(n)`: a multi-thread runtime with
    /// `n` workers (benchmarks).
    pub worker_threads: Option<usize>,
}

impl Options {
    /// A current-thread runtime and no body limit.
    pub fn new(name: &str) -> Options {
        Options {
            name: name.to_owned(),
            body_limit: false,
            worker_threads: None,
        }
    }
}

type Handler<S> = dyn Fn(&mut S, Incoming) -> Answer + Send + Sync;

/// The server. Its state is shared with the handler; [`FakeServer::state`]
/// locks it.
pub struct FakeServer<S> {
    port: u16,
    state: Arc<Mutex<S>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl<S: Send + 'static> FakeServer<S> {
    /// Starts the server with [`Options::new`]`(name)`.
    pub fn start(
        name: &str,
        state: S,
        handler: impl Fn(&mut S, Incoming) -> Answer + Send + Sync + 'static,
    ) -> FakeServer<S> {
        FakeServer::start_with(Options::new(name), state, handler)
    }

    /// Starts the server; every request goes to `handler`, with the state locked.
    pub fn start_with(
        options: Options,
        state: S,
        handler: impl Fn(&mut S, Incoming) -> Answer + Send + Sync + 'static,
    ) -> FakeServer<S> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(state));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shared = Shared {
            state: state.clone(),
            handler: Arc::new(handler),
        };
        let name = options.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{port}"))
            .spawn(move || {
                let rt = match options.worker_threads {
                    None => tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build(),
                    Some(n) => tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(n)
                        .enable_all()
                        .build(),
                }
                .unwrap_or_else(|e| panic!("tokio runtime for the {name} server: {e}"));
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let mut app = Router::new().fallback(handle::<S>).with_state(shared);
                    if !options.body_limit {
                        app = app.layer(DefaultBodyLimit::disable());
                    }
                    tokio::select! {
                        r = axum::serve(listener, app).into_future() => {
                            if let Err(e) = r {
                                eprintln!("{name} server on port {port} failed: {e}");
                            }
                        }
                        _ = rx => {}
                    }
                });
                // Dropping the runtime cancels the connections still open.
            })
            .expect("spawn the fake server's thread");
        FakeServer {
            port,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

impl<S> FakeServer<S> {
    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The state, locked. A handler or test thread that panicked while holding
    /// it does not hide it from the others.
    pub fn state(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A raw HTTP/1.1 request to the server: (HTTP status, body).
    pub fn send_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, String) {
        self.request(method, path, &[("Content-Type", content_type)], body)
    }

    /// A raw HTTP/1.1 request with exactly `headers` besides `Host`, `Connection`
    /// and `Content-Length` (a test may leave out what a client must send):
    /// (HTTP status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("write head");
        stream.write_all(body.as_bytes()).expect("write body");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read answer");
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let status = raw
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_owned())
    }
}

impl<S> Drop for FakeServer<S> {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Shared<S> {
    state: Arc<Mutex<S>>,
    handler: Arc<Handler<S>>,
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared {
            state: self.state.clone(),
            handler: self.handler.clone(),
        }
    }
}

async fn handle<S: Send + 'static>(
    State(shared): State<Shared<S>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = Incoming {
        at: Instant::now(),
        method,
        uri,
        headers,
        body,
    };
    let answer = {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        (shared.handler)(&mut st, incoming)
    };
    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    answer.response
}
