//! The metrics every job touches, registered once per channel worker.
//!
//! `metrics::counter!` with labels builds its key, hashes it and looks it up in
//! the recorder's registry on every call: 3.1 % of the daemon's CPU per tracked
//! email in `cargo bench --bench bullmq` (perf, issue 19). A handle registered
//! once skips all of that; outcome counters are registered on first use, so
//! `/metrics` shows the same series as before.

use std::sync::OnceLock;

use metrics::{Counter, Histogram};

use crate::event::EventType;
use crate::metrics as m;

/// Outcomes counted in `tayori_messages_total`: every event type, and `scheduled`.
const SCHEDULED: &str = "scheduled";
const OUTCOMES: usize = EventType::ALL.len() + 1;

pub(super) struct Meters {
    channel: &'static str,
    pub jobs_taken: Counter,
    pub send_seconds: Histogram,
    pub end_to_end_seconds: Histogram,
    outcomes: [OnceLock<Counter>; OUTCOMES],
}

impl Meters {
    pub fn new(channel: &'static str) -> Meters {
        Meters {
            channel,
            jobs_taken: metrics::counter!(m::JOBS_TAKEN, "channel" => channel),
            send_seconds: metrics::histogram!(m::SEND_SECONDS, "channel" => channel),
            end_to_end_seconds: metrics::histogram!(m::END_TO_END_SECONDS, "channel" => channel),
            outcomes: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Counts one message ending in `outcome` (an event type's name, or `scheduled`).
    pub fn count_outcome(&self, outcome: &str) {
        let slot = EventType::ALL
            .iter()
            .map(|t| t.as_str())
            .chain([SCHEDULED])
            .position(|name| name == outcome);
        match slot {
            Some(i) => self.outcomes[i]
                .get_or_init(|| self.register_outcome(outcome))
                .increment(1),
            None => self.register_outcome(outcome).increment(1),
        }
    }

    fn register_outcome(&self, outcome: &str) -> Counter {
        metrics::counter!(m::MESSAGES, "channel" => self.channel, "outcome" => outcome.to_owned())
    }
}
