//! Tayori's test kit (issue 18): what the integration tests (`tests/`), the
//! benchmarks (`benches/`) and the fuzz targets (`fuzz/`, with the stable smoke run
//! `tests/fuzz_smoke.rs`) share, each in one place:
//!
//! - [`server`]: the fake-provider HTTP server scaffold (127.0.0.1, port 0, its
//!   own runtime, a locked state, scripted answers), and on it the providers'
//!   spec-checking fakes [`line_api`], [`twilio_api`] and [`vonage_api`];
//! - [`sign`]: webhook signatures as LINE, Twilio and Vonage make them;
//! - [`redis_server`], [`daemon`], [`tls`], [`cluster`]: a private redis-server
//!   (standalone, TLS, or a local Redis Cluster) on a free port, and the daemon as
//!   a child process.
//!
//! The fakes live here rather than in `tests/` because they use each other (the
//! Twilio fake validates with the LINE fake's schema validator, the Vonage fake
//! decodes forms and counts segments with the Twilio fake's helpers), which test
//! files could only do with `#[path]` copies, and because the benchmarks and the
//! tests then build them once.
//!
//! Nothing here uses Tayori's own code: what checks Tayori must not share its bugs.

pub mod sign;

#[cfg(feature = "fakes")]
pub mod line_api;
#[cfg(feature = "fakes")]
pub mod server;
#[cfg(feature = "fakes")]
pub mod twilio_api;
#[cfg(feature = "fakes")]
pub mod vonage_api;

#[cfg(feature = "harness")]
pub mod cluster;
#[cfg(feature = "harness")]
pub mod daemon;
#[cfg(feature = "harness")]
pub mod redis_server;
#[cfg(feature = "harness")]
pub mod tls;

#[cfg(feature = "harness")]
pub use daemon::Daemon;
#[cfg(feature = "harness")]
pub use redis_server::{free_port, Redis};
