//! Tayori, the daemon: queue, workers, scheduling, HTTP, metrics and CLI.
//! Protocol code lives in the `tayori-channels` crate; this crate orchestrates.

pub mod adapters;
pub mod bounce;
pub mod cli;
pub mod compose;
pub mod config;
pub mod daemon;
pub mod dm_settings;
pub mod email_settings;
pub mod event;
pub mod http;
pub mod job;
pub mod keys;
pub mod mask;
pub mod metrics;
pub mod migrate;
pub mod policy;
pub mod profile;
pub mod queue;
pub mod rate_limit;
pub mod redis_connection;
pub mod render;
pub mod report;
pub mod retry_policy;
pub mod sms_settings;
pub mod tracking;
pub mod worker;
