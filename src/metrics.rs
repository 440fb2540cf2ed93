//! Prometheus metrics: names, help texts and buckets in one place.
//!
//! Labels are bounded: channel, outcome, error class, route, status — never
//! an address, a job id or a campaign id.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const JOBS_TAKEN: &str = "tayori_jobs_taken_total";
pub const MESSAGES: &str = "tayori_messages_total";
pub const SEND_SECONDS: &str = "tayori_send_duration_seconds";
pub const END_TO_END_SECONDS: &str = "tayori_end_to_end_seconds";
pub const RETRIES: &str = "tayori_retries_total";
pub const DEAD_LETTERS: &str = "tayori_dead_letters_total";
pub const RATE_LIMIT_WAITS: &str = "tayori_rate_limit_waits_total";
pub const RECLAIMED: &str = "tayori_reclaimed_total";
pub const REDIS_ERRORS: &str = "tayori_redis_errors_total";
pub const HTTP_REQUESTS: &str = "tayori_http_requests_total";
pub const IN_FLIGHT: &str = "tayori_in_flight";
pub const QUEUE_BACKLOG: &str = "tayori_queue_backlog";
pub const QUEUE_PENDING: &str = "tayori_queue_pending";
pub const DELAYED: &str = "tayori_delayed_jobs";
pub const DEAD_LETTER_SIZE: &str = "tayori_dead_letter_size";
pub const UP: &str = "tayori_redis_up";
pub const PAUSES: &str = "tayori_channel_pauses_total";
pub const DOMAIN_THROTTLED: &str = "tayori_domain_throttled_total";
pub const POLICY_HELD: &str = "tayori_policy_held_total";
pub const PROFILE_UPDATES: &str = "tayori_profile_updates_total";
pub const CHANNEL_CHOICES: &str = "tayori_channel_choices_total";
pub const CHANNEL_PAUSED: &str = "tayori_channel_paused";
pub const WEBHOOK_EVENTS: &str = "tayori_webhook_events_total";
pub const WEBHOOK_REJECTED: &str = "tayori_webhook_rejected_total";
/// `WAIT` (redis.wait_replicas) answered with fewer replicas than asked, by `op`.
pub const REDIS_WAIT_SHORT: &str = "tayori_redis_wait_short_total";
/// Jobs posted to `POST /v1/jobs`, by `status` (enqueued, duplicate, invalid, valid).
pub const API_JOBS: &str = "tayori_api_jobs_total";
/// Inline job content found compiled in the renderer's cache, by `result` (hit, miss).
pub const INLINE_CACHE: &str = "tayori_inline_cache_total";
/// Opens and clicks never written to Redis, by `reason` (src/http/backlog.rs).
pub const REACTIONS_LOST: &str = "tayori_reactions_lost_total";

/// Every metric family the daemon exports (dashboards and alerts may use only these).
pub const ALL: &[&str] = &[
    JOBS_TAKEN,
    MESSAGES,
    SEND_SECONDS,
    END_TO_END_SECONDS,
    RETRIES,
    DEAD_LETTERS,
    RATE_LIMIT_WAITS,
    RECLAIMED,
    REDIS_ERRORS,
    HTTP_REQUESTS,
    IN_FLIGHT,
    QUEUE_BACKLOG,
    QUEUE_PENDING,
    DELAYED,
    DEAD_LETTER_SIZE,
    UP,
    PAUSES,
    DOMAIN_THROTTLED,
    POLICY_HELD,
    PROFILE_UPDATES,
    CHANNEL_CHOICES,
    CHANNEL_PAUSED,
    WEBHOOK_EVENTS,
    WEBHOOK_REJECTED,
    REDIS_WAIT_SHORT,
    API_JOBS,
    INLINE_CACHE,
    REACTIONS_LOST,
];

/// Registers the counters a channel can produce at 0, so the first increment is a
/// change `increase()` and `rate()` can see (a series born at 1 looks flat), and
/// alerts fire on the first dead letter or bounce after a start.
pub fn register_zeroes(kinds: &[crate::channel_id::ChannelId]) {
    const OUTCOMES: [&str; 8] = [
        "sent",
        "deferred",
        "failed",
        "bounced",
        "suppressed",
        "duplicate",
        "expired",
        "fallback",
    ];
    const DEAD_REASONS: [&str; 4] = [
        "invalid_job",
        "too_many_deliveries",
        "no_address",
        "internal",
    ];
    for kind in kinds {
        let ch = kind.label();
        for outcome in OUTCOMES {
            metrics::counter!(MESSAGES, "channel" => ch, "outcome" => outcome).increment(0);
        }
        for reason in DEAD_REASONS {
            metrics::counter!(DEAD_LETTERS, "channel" => ch, "reason" => reason).increment(0);
        }
    }
    for (source, reason) in [
        ("line", "bad_signature"),
        ("line", "bad_body"),
        ("line", "redis"),
        ("tracking", "bad_token"),
        ("tracking", "redis"),
        ("tracking", "repeat"),
        ("bounce", "bad_body"),
        ("bounce", "unmatched"),
        ("twilio", "bad_signature"),
        ("twilio", "redis"),
    ] {
        metrics::counter!(WEBHOOK_REJECTED, "source" => source, "reason" => reason).increment(0);
    }
    for op in ["finish", "reaction", "event"] {
        metrics::counter!(REDIS_WAIT_SHORT, "op" => op).increment(0);
    }
    for result in ["hit", "miss"] {
        metrics::counter!(INLINE_CACHE, "result" => result).increment(0);
    }
}

/// Installs the global recorder and returns the handle `/metrics` renders from.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(SEND_SECONDS.into()),
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(END_TO_END_SECONDS.into()),
                // Fine below a second too: issue 19's p99 ≤ 50 ms is read off these.
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0, 3600.0, 21600.0, 86400.0,
                ],
            )
        })
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(
        JOBS_TAKEN,
        "Jobs read from a channel's stream (new and reclaimed)."
    );
    describe_counter!(MESSAGES, "Job outcomes by channel and outcome (sent, deferred, failed, bounced, suppressed, duplicate, expired, fallback).");
    describe_histogram!(
        SEND_SECONDS,
        Unit::Seconds,
        "Time spent in the channel adapter per send."
    );
    describe_histogram!(
        END_TO_END_SECONDS,
        Unit::Seconds,
        "From enqueue to the provider accepting the message."
    );
    describe_counter!(RETRIES, "Retries scheduled, by channel and error class.");
    describe_counter!(
        DEAD_LETTERS,
        "Jobs moved to the dead-letter stream, by channel and reason code."
    );
    describe_counter!(
        RATE_LIMIT_WAITS,
        "Sends that had to wait for the channel's rate limiter."
    );
    describe_counter!(RECLAIMED, "Pending entries taken over from dead consumers.");
    describe_counter!(REDIS_ERRORS, "Failed Redis operations, by operation.");
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status.");
    describe_gauge!(IN_FLIGHT, "Jobs being processed right now, by channel.");
    describe_gauge!(
        QUEUE_BACKLOG,
        "Jobs in a channel's stream not yet read (consumer lag)."
    );
    describe_gauge!(
        QUEUE_PENDING,
        "Jobs read but not yet acknowledged, by channel."
    );
    describe_gauge!(
        DELAYED,
        "Scheduled jobs and retries waiting in the delayed set."
    );
    describe_gauge!(DEAD_LETTER_SIZE, "Entries in the dead-letter stream.");
    describe_gauge!(UP, "1 when the last Redis check succeeded.");
    describe_counter!(
        PAUSES,
        "Times a channel paused because the provider refused it (auth, quota), by reason."
    );
    describe_gauge!(
        CHANNEL_PAUSED,
        "1 while a channel is paused (jobs stay queued)."
    );
    describe_counter!(
        WEBHOOK_EVENTS,
        "Webhook events received, by source and type (redeliveries counted once)."
    );
    describe_counter!(
        WEBHOOK_REJECTED,
        "Webhook and tracking requests refused or not recorded, by source (line, twilio, vonage, tracking, bounce) and reason (bad_signature, stale, bad_body, bad_token, unknown_link, unmatched, redis; repeat: an open or click again within a minute, answered but recorded once)."
    );
    describe_counter!(
        API_JOBS,
        "Jobs posted to POST /v1/jobs, by status: enqueued, duplicate (its id seen within the dedupe window), invalid (refused by the checks), valid (passed a ?check=true run)."
    );
    describe_counter!(
        INLINE_CACHE,
        "Inline job content (content.*) looked up in the renderer's bounded cache of compiled templates, by result: hit (compiled before), miss (compiled now)."
    );
    describe_counter!(
        REDIS_WAIT_SHORT,
        "WAITs (redis.wait_replicas) that reached fewer replicas than asked within redis.wait_timeout, by op (finish, reaction, event): those writes could be lost in a failover."
    );
    describe_counter!(
        DOMAIN_THROTTLED,
        "Email jobs put aside with a reserved slot because their recipient domain was at its rate limit."
    );
    describe_counter!(
        POLICY_HELD,
        "Jobs held back by the sending policy, by channel and reason (quiet_hours, frequency_cap)."
    );
    describe_counter!(
        PROFILE_UPDATES,
        "Events applied to customers' engagement profiles."
    );
    describe_counter!(
        CHANNEL_CHOICES,
        "Channels chosen for best-channel jobs, by channel and rule (profile, explore, order)."
    );
    describe_counter!(REACTIONS_LOST, "Opens and clicks answered but never written to Redis, by reason: full (10,000 already waiting for Redis), expired (Redis away over 10 minutes), shutdown (still waiting at exit).");
}
