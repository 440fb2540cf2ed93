//! Tayori, the daemon: queue, workers, scheduling, HTTP, metrics and CLI.
//! Protocol code lives in the `tayori-channels` crate; this crate orchestrates.

pub mod cancel;
pub mod cancel_sweeper;
pub mod channel;
pub mod channel_id;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod event;
pub mod http;
pub mod job;
pub mod job_check;
pub mod job_intake;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod profile;
pub mod queue;
pub mod rate_limit;
pub mod redis_connection;
pub mod render;
pub mod report;
pub mod retention;
pub mod retry_policy;
pub mod tracking;
pub mod units;
pub mod worker;
