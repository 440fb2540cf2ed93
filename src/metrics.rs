//! Prometheus metrics: names, help texts and buckets in one place.
//!
//! Labels are bounded: channel, outcome, error class, route, status, a results
//! consumer group's name (the operator's choice) — never an address, a job id
//! or a campaign id.

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
/// Events removed from the results stream by `queue.results_retention` and `results_max_len`.
pub const RESULTS_TRIMMED: &str = "tayori_results_trimmed_total";
/// Events older than the retention kept because a results group has not acknowledged them, by `group`.
pub const RESULTS_HELD_BACK: &str = "tayori_results_held_back";
/// `complained` events (feedback-loop reports), by channel, counted by the profile updater.
pub const COMPLAINTS: &str = "tayori_complaints_total";
/// Entries in the results streams (all partitions).
pub const RESULTS_SIZE: &str = "tayori_results_size";
/// Events a results consumer group has not been delivered yet, by `group`.
pub const RESULTS_GROUP_LAG: &str = "tayori_results_group_lag";
/// Events a results consumer group read and has not acknowledged, by `group`.
pub const RESULTS_GROUP_PENDING: &str = "tayori_results_group_pending";
/// Age of the oldest job read and not yet acknowledged, by `channel`.
pub const OLDEST_PENDING_SECONDS: &str = "tayori_queue_oldest_pending_seconds";
/// Delayed jobs already due (the mover is behind when this stays above 0).
pub const DELAYED_DUE: &str = "tayori_delayed_jobs_due";

/// The `type` values the LINE webhook counts under their own name (others: `other`).
pub const LINE_EVENT_TYPES: [&str; 13] = [
    "message",
    "unsend",
    "follow",
    "unfollow",
    "join",
    "leave",
    "memberJoined",
    "memberLeft",
    "postback",
    "videoPlayComplete",
    "beacon",
    "accountLink",
    "delivery",
];
/// Opens and clicks never written to Redis, by `reason` (src/http/backlog.rs).
pub const REACTIONS_LOST: &str = "tayori_reactions_lost_total";
/// A channel's monthly message limit at the last reading, by `channel` (+Inf: none).
pub const QUOTA_LIMIT: &str = "tayori_channel_quota_limit";
/// Messages a channel's provider counts as sent this month at the last reading, by `channel`.
pub const QUOTA_USED: &str = "tayori_channel_quota_used";
/// Reads of a provider's account endpoints, by `channel`, `op` (quota, stats)
/// and `result` (ok, error).
pub const ACCOUNT_READS: &str = "tayori_channel_account_reads_total";

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
    RESULTS_TRIMMED,
    RESULTS_HELD_BACK,
    COMPLAINTS,
    RESULTS_SIZE,
    RESULTS_GROUP_LAG,
    RESULTS_GROUP_PENDING,
    OLDEST_PENDING_SECONDS,
    DELAYED_DUE,
    REACTIONS_LOST,
    QUOTA_LIMIT,
    QUOTA_USED,
    ACCOUNT_READS,
];

/// The `op` labels of [`REDIS_ERRORS`]: every Redis step that counts its failures.
const REDIS_OPS: [&str; 15] = [
    "read",
    "claim",
    "finish",
    "reclaim",
    "heartbeat",
    "stats",
    "move_due",
    "rate_lease",
    "frequency_cap",
    "store_records",
    "suppressions",
    "profiles",
    "trim",
    "tracking",
    "cancels",
];

/// Registers, at 0, every series a dashboard or an alert reads that would
/// otherwise be born at its first increment: a series born at 1 looks flat to
/// `increase()` and `rate()`, so the first dead letter, retry or pause after a
/// start would go unseen, and a panel would show "no data" instead of 0. Label
/// values are the ones the call sites emit, so these are the very series
/// incremented later. Label values that come from a provider's answer (the pause
/// reason of an SMS gateway's HTTP status, say) cannot be listed; those series
/// start at their first increment, and the `tayori_channel_paused` gauge, which
/// alerts use, is here.
pub fn register_zeroes(kinds: &[crate::channel_id::ChannelId]) {
    const OUTCOMES: [&str; 9] = [
        "sent",
        "deferred",
        "failed",
        "bounced",
        "suppressed",
        "duplicate",
        "expired",
        "fallback",
        "cancelled",
    ];
    const DEAD_REASONS: [&str; 4] = [
        "invalid_job",
        "too_many_deliveries",
        "no_address",
        "internal",
    ];
    // Only these classes are retried (worker::outcome::retry_or_fail).
    const RETRY_CLASSES: [&str; 2] = ["transient", "rate_limited"];
    let enabled = |name: &str| kinds.iter().any(|k| k.label() == name);
    for kind in kinds {
        let ch = kind.label();
        if ch == "email" {
            metrics::counter!(COMPLAINTS, "channel" => ch).increment(0);
        }
        if ch == "line" {
            // Before the first reading (and with a file transport, which has no
            // quota): no limit known. The quota task overwrites both; it starts
            // after this.
            metrics::gauge!(QUOTA_LIMIT, "channel" => ch).set(f64::INFINITY);
            metrics::gauge!(QUOTA_USED, "channel" => ch).set(0.0);
        }
        for outcome in OUTCOMES {
            metrics::counter!(MESSAGES, "channel" => ch, "outcome" => outcome).increment(0);
        }
        for reason in DEAD_REASONS {
            metrics::counter!(DEAD_LETTERS, "channel" => ch, "reason" => reason).increment(0);
        }
        for class in RETRY_CLASSES {
            metrics::counter!(RETRIES, "channel" => ch, "class" => class).increment(0);
        }
        metrics::counter!(RECLAIMED, "channel" => ch).increment(0);
        metrics::counter!(RATE_LIMIT_WAITS, "channel" => ch).increment(0);
        metrics::gauge!(CHANNEL_PAUSED, "channel" => ch).set(0.0);
        // Pause reasons with a fixed code; the others are a provider's status.
        let pauses: &[&str] = match ch {
            "email" => &["smtp_auth", "smtp_session", "domain_throttled"],
            "line" => &["line_401", "line_403", "line_monthly_limit"],
            "webhook" => &["endpoint_gone"],
            _ => &[],
        };
        for reason in pauses {
            metrics::counter!(PAUSES, "channel" => ch, "reason" => *reason).increment(0);
        }
    }
    // Webhook sources by the channel that receives them; tracking serves every channel.
    let mut rejected: Vec<(&str, &str)> = vec![
        ("tracking", "bad_token"),
        ("tracking", "unknown_link"),
        ("tracking", "redis"),
        ("tracking", "repeat"),
    ];
    let mut events: Vec<(&str, &str)> = ["opened", "clicked", "unsubscribed"]
        .map(|t| ("tracking", t))
        .to_vec();
    if enabled("line") {
        for op in ["quota", "stats"] {
            for result in ["ok", "error"] {
                metrics::counter!(ACCOUNT_READS, "channel" => "line", "op" => op, "result" => result)
                    .increment(0);
            }
        }
        rejected.extend([
            ("line", "bad_signature"),
            ("line", "bad_body"),
            ("line", "redis"),
        ]);
        events.extend(LINE_EVENT_TYPES.iter().map(|t| ("line", *t)));
        events.push(("line", "other"));
    }
    if enabled("email") {
        rejected.extend([("bounce", "bad_body"), ("bounce", "unmatched")]);
        events.extend([
            ("bounce", "bounced"),
            ("bounce", "deferred"),
            ("bounce", "complained"),
        ]);
    }
    if enabled("sms") {
        rejected.extend([
            ("twilio", "bad_signature"),
            ("twilio", "redis"),
            ("vonage", "bad_signature"),
            ("vonage", "stale"),
            ("vonage", "bad_body"),
            ("vonage", "redis"),
        ]);
        for t in [
            "status",
            "delivered",
            "undelivered",
            "failed",
            "unsubscribed",
            "unblocked",
            "replied",
            "other",
        ] {
            events.push(("twilio", t));
        }
        for t in [
            "status",
            "delivered",
            "failed",
            "unsubscribed",
            "unblocked",
            "replied",
            "other",
        ] {
            events.push(("vonage", t));
        }
    }
    for (source, reason) in rejected {
        metrics::counter!(WEBHOOK_REJECTED, "source" => source, "reason" => reason).increment(0);
    }
    for (source, kind) in events {
        metrics::counter!(WEBHOOK_EVENTS, "source" => source, "type" => kind).increment(0);
    }
    for op in REDIS_OPS {
        metrics::counter!(REDIS_ERRORS, "op" => op).increment(0);
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
    describe_gauge!(
        DELAYED_DUE,
        "Delayed jobs already due: above 0 for long, no daemon is moving them back to their streams."
    );
    describe_gauge!(
        RESULTS_SIZE,
        "Entries in the results streams (events for the CRM), all partitions."
    );
    describe_gauge!(
        RESULTS_GROUP_LAG,
        "Events of the results streams not yet delivered to a consumer group, by group (all partitions; NaN when Redis cannot tell)."
    );
    describe_gauge!(
        RESULTS_GROUP_PENDING,
        "Events delivered to a results consumer group and not yet acknowledged (XACK), by group."
    );
    describe_gauge!(
        OLDEST_PENDING_SECONDS,
        "Age of the oldest job read by a daemon and not yet acknowledged, by channel (0 when none): high when a daemon died holding jobs or a send hangs."
    );
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
        RESULTS_TRIMMED,
        "Events removed from the results stream: older than queue.results_retention and acknowledged by every results group, or over results_max_len."
    );
    describe_gauge!(
        RESULTS_HELD_BACK,
        "Events older than queue.results_retention still kept because this results group has not acknowledged them (counted up to 10,000 per partition)."
    );
    describe_counter!(
        COMPLAINTS,
        "Complaints (complained events from feedback-loop reports), by channel; counted once by the daemons' profile updater, whichever process recorded them."
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
    describe_gauge!(
        QUOTA_LIMIT,
        "A channel's monthly message limit at the last reading, by channel (LINE: GET /v2/bot/message/quota); +Inf when the provider sets none (LINE: type none)."
    );
    describe_gauge!(
        QUOTA_USED,
        "Messages the provider counts as sent this month at the last reading, by channel (LINE: GET /v2/bot/message/quota/consumption)."
    );
    describe_counter!(
        ACCOUNT_READS,
        "Reads of a provider's account endpoints, by channel, op (quota, stats: LINE's per-unit statistics) and result (ok, error)."
    );
    describe_counter!(REACTIONS_LOST, "Opens and clicks answered but never written to Redis, by reason: full (10,000 already waiting for Redis), expired (Redis away over 10 minutes), shutdown (still waiting at exit).");
}
