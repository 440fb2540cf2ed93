//! Serves the router over HTTP/1.1 with timeouts, and drains it on shutdown.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout is off and
//! nothing bounds a body: a client that sends half a request head, or announces
//! `Content-Length: 100` and sends 3 bytes, holds a connection (and a file
//! descriptor) for ever, and a few thousand of them exhaust the descriptors and
//! with them the daemon's Redis reconnects (slowloris). This is axum's accept
//! loop with those bounds added:
//!
//! - the request head must arrive within `header_read` (hyper, with a Tokio
//!   timer); the timer also runs while a kept-alive connection waits for its
//!   next request, so idle connections close too;
//! - reading the body and handling the request must finish within `request`,
//!   else the answer is 408 and the connection closes (hyper does not keep a
//!   connection whose request body was left unread);
//! - on shutdown, no new connections are accepted, kept-alive ones close after
//!   their current request, and `serve` returns once all are closed or after
//!   `drain`, whichever comes first.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

/// How long each part of a connection's life may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From connecting (or the previous response) to the end of a request head.
    pub header_read: Duration,
    /// From the end of a request head to the response head: body and handler (408 after).
    pub request: Duration,
    /// After the shutdown signal, how long open connections may take to finish.
    pub drain: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains open
/// connections within `timeouts.drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        timeouts.request,
    ));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // The peer gave up between connecting and our accept: nothing to do.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Most likely out of file descriptors (EMFILE): retrying at once would
                // spin; open connections closing (or timing out) will free some.
                tracing::error!(error = %e, "HTTP accept failed; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        // The peer's address for handlers that need it (`ConnectInfo`: machine opens).
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Timeouts and clients hanging up end up here: normal, not worth a warning.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection closed with an error");
            }
        });
    }

    drop(listener);
    if tokio::time::timeout(timeouts.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still open after the grace period end with the process");
    }
}

/// Accept errors about one connection (not the listener), as axum's loop treats them.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
