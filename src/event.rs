//! Events written to `{prefix}:results` (entry field `event`, JSON), and the one
//! place their `event_id`s are made.
//!
//! The types here are the published contract: `docs/event.schema.json` is
//! generated from them (`tayori schema --events`).
//!
//! # Event ids
//!
//! An `event_id` names one fact, so a CRM can drop a repeat by it. Its shapes:
//!
//! - an outcome of a job that holds its id's dedupe claim:
//!   `{job_id}/{channel}/{attempt}/{type}`, and for `deferred` (which can repeat at
//!   one attempt while a channel is paused) `…/deferred/{retry_at_ms}`;
//! - an outcome of a job copy that holds no claim on its id (a `duplicate`, the
//!   `failed` of a job that cannot be parsed): `{job_id}/{channel}/{attempt}/{type}/{origin}`,
//!   `job_id` `-` when it cannot be read — the origin, never the entry's current
//!   id, so a re-driven dead letter keeps it;
//! - a recipient's reaction to a tracked message (open, click, unsubscribe):
//!   `{job_id}/{channel}/0/{type}[/{detail}]`;
//! - a provider's report: `{source}/{the provider's id}[/{status}]` (`line/…`,
//!   `twilio/…`, `vonage/…`, `bounce/…`);
//! - the `failed` of an unreadable delayed entry: `{dead-letter stream}/{entry id}/failed`.
//!
//! Ids repeat only when the same job is tried at the same attempt again, which a
//! re-driven dead letter is: the finish script then writes an event only if it
//! can claim its id ([`crate::queue`], `finish.lua`).

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::job::Job;

/// What happened. Which types end a job: README, "Events".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Sent,
    Delivered,
    Deferred,
    Failed,
    Bounced,
    Opened,
    Clicked,
    Blocked,
    Unblocked,
    Unsubscribed,
    Replied,
    Suppressed,
    Duplicate,
    Expired,
    Fallback,
    // The recipient reported the message as spam (a feedback-loop report). A
    // plain comment: a doc comment would make the schema's enum a oneOf.
    Complained,
    // An operator cancelled the job or its campaign (`tayori cancel`).
    Cancelled,
    // LINE's own per-unit statistics of a campaign for one day (no job).
    LineStats,
}

impl EventType {
    /// Every type, in declaration order.
    pub const ALL: [EventType; 18] = [
        Self::Sent,
        Self::Delivered,
        Self::Deferred,
        Self::Failed,
        Self::Bounced,
        Self::Opened,
        Self::Clicked,
        Self::Blocked,
        Self::Unblocked,
        Self::Unsubscribed,
        Self::Replied,
        Self::Suppressed,
        Self::Duplicate,
        Self::Expired,
        Self::Fallback,
        Self::Complained,
        Self::Cancelled,
        Self::LineStats,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Failed => "failed",
            Self::Bounced => "bounced",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
            Self::Blocked => "blocked",
            Self::Unblocked => "unblocked",
            Self::Unsubscribed => "unsubscribed",
            Self::Replied => "replied",
            Self::Suppressed => "suppressed",
            Self::Duplicate => "duplicate",
            Self::Expired => "expired",
            Self::Fallback => "fallback",
            Self::Complained => "complained",
            Self::Cancelled => "cancelled",
            Self::LineStats => "line_stats",
        }
    }
}

/// One results-stream event. `extra` holds the per-type fields.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(
    title = "Tayori event",
    description = "One entry of the stream {prefix}:{k}:results (its field `event`, JSON): what happened to a job, or a recipient's or provider's reaction."
)]
pub struct Event {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Names this fact: the same id is never written twice; drop a repeat by it.
    /// Shapes: README, "Events".
    pub event_id: String,
    /// When Tayori recorded it: RFC 3339, milliseconds, UTC.
    pub at: String,
    /// The job's `id`; `null` when the job could not be read, or a provider's
    /// report names no job.
    pub job_id: Option<String>,
    /// The entry id the job first arrived as in its job stream (kept through
    /// retries, fallbacks and `dead retry`): with `channel`, which copy of a
    /// job id this is. `null` for reactions (the message's token does not carry it).
    pub origin: Option<String>,
    pub campaign: Option<String>,
    pub customer_id: Option<String>,
    /// The channel the event is about; `null` for an unreadable delayed entry.
    pub channel: Option<String>,
    /// The send attempt on `channel` (1 for the first, +1 per retry and per
    /// redelivery after a crash); 0 for reactions.
    pub attempt: u32,
    #[serde(flatten)]
    #[schemars(with = "ExtraFields")]
    pub extra: Map<String, Value>,
}

/// The per-type fields (only for the published schema; which type carries
/// which: README, "Events").
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ExtraFields {
    /// Why: `code` (README lists them), `message`, and `field` when a job field is to blame.
    error: Option<ErrorField>,
    /// `deferred`: when the job comes back (RFC 3339).
    retry_at: Option<String>,
    /// `fallback`: the channel the job moved on to.
    to_channel: Option<String>,
    /// `sent`, `delivered`: the provider's id for the message.
    provider_id: Option<String>,
    /// `clicked`: the original link.
    url: Option<String>,
    /// `opened`, `clicked`: the request looked automated (a scanner, a prefetch).
    suspected_bot: Option<bool>,
    /// `opened`: an image proxy fetched it when the mail arrived, not when a
    /// person read it (Apple Mail Privacy Protection).
    machine_open: Option<bool>,
    /// `opened`: the image proxy that fetched it (`apple`, `google`, `yahoo`).
    proxy: Option<String>,
    /// `suppressed`: why the address is suppressed; `cancelled`: the operator's
    /// reason; `fallback`: `quota` when the channel's monthly quota was used up.
    reason: Option<String>,
    /// `cancelled`: who cancelled (`tayori cancel --by`, or the user and host).
    cancelled_by: Option<String>,
    /// `cancelled`: when the cancel was made (RFC 3339).
    cancelled_at: Option<String>,
    /// `cancelled`: what was cancelled (`campaign`, `campaign/<channel>` or `job`).
    cancel: Option<String>,
    /// The recipient's address (unsubscribes, SMS replies, DSN bounces, complaints).
    address: Option<String>,
    /// `complained`: the report's `Feedback-Type` (`abuse`, `fraud`, `virus`, `other`).
    feedback_type: Option<String>,
    /// `replied`: the message text.
    text: Option<String>,
    /// LINE reactions: the user.
    line_user_id: Option<String>,
    /// A provider's report: when it happened at the provider.
    occurred_at: Option<String>,
    /// `sent`, `delivered` on LINE: `pnp` for a notification message (sent to
    /// the user of a phone number).
    via: Option<String>,
    /// `channel: "best"` jobs: how the channel was chosen.
    channel_choice: Option<Value>,
    /// `line_stats`: the aggregation unit (the campaign) and LINE's day (`YYYY-MM-DD`, UTC+9).
    unit: Option<String>,
    day: Option<String>,
    /// `line_stats`: LINE's figures as it returns them (nulls kept): `overview`
    /// (uniqueImpression, uniqueClick, …), `messages` (per bubble) and `clicks` (per URL).
    overview: Option<Value>,
    messages: Option<Value>,
    clicks: Option<Value>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct ErrorField {
    code: String,
    message: String,
    field: Option<String>,
}

/// The published JSON Schema of an event (`docs/event.schema.json`).
pub fn event_schema() -> String {
    let mut root = schemars::SchemaGenerator::default().into_root_schema_for::<Event>();
    // Per-type fields may come and go with channels: unknown ones are allowed.
    if let Some(obj) = root.as_object_mut() {
        obj.remove("unevaluatedProperties");
        obj.insert("additionalProperties".into(), true.into());
        // The common fields are always there (`null` when unknown).
        obj.insert(
            "required".into(),
            serde_json::json!([
                "type",
                "event_id",
                "at",
                "job_id",
                "origin",
                "campaign",
                "customer_id",
                "channel",
                "attempt"
            ]),
        );
    }
    serde_json::to_string_pretty(&root).unwrap_or_default() + "\n"
}

/// The current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// The id of an outcome of a job that holds its id's dedupe claim.
pub fn outcome_id(job_id: &str, channel: &str, attempt: u32, kind: EventType) -> String {
    format!("{job_id}/{channel}/{attempt}/{}", kind.as_str())
}

/// The id of an outcome of a job copy that holds no claim on its id (a
/// `duplicate`, an unparseable job's `failed`): the origin tells the copies
/// apart and stays the same when a dead letter is re-driven.
pub fn unclaimed_id(
    job_id: Option<&str>,
    channel: &str,
    attempt: u32,
    kind: EventType,
    origin: &str,
) -> String {
    format!(
        "{}/{origin}",
        outcome_id(job_id.unwrap_or("-"), channel, attempt, kind)
    )
}

/// The id of a recipient's reaction to a tracked message; `detail` tells apart
/// reactions of one kind (a link and a time window), if there can be several.
pub fn reaction_id(job_id: &str, channel: &str, kind: EventType, detail: Option<&str>) -> String {
    let base = outcome_id(job_id, channel, 0, kind);
    match detail {
        Some(d) => format!("{base}/{d}"),
        None => base,
    }
}

impl Event {
    /// An outcome of a job that holds its id's claim; `job` is the parsed job,
    /// `job_id` the id when only that could be read.
    pub fn for_job(
        kind: EventType,
        job: Option<&Job>,
        job_id: Option<&str>,
        channel: &str,
        attempt: u32,
        origin: Option<&str>,
    ) -> Event {
        let job_id = job
            .map(|j| j.id.clone())
            .or_else(|| job_id.map(str::to_owned));
        let event_id = match (&job_id, origin) {
            (Some(id), _) => outcome_id(id, channel, attempt, kind),
            (None, Some(o)) => unclaimed_id(None, channel, attempt, kind, o),
            (None, None) => format!("-/{channel}/{attempt}/{}/{}", kind.as_str(), now_rfc3339()),
        };
        Event {
            kind,
            event_id,
            at: now_rfc3339(),
            job_id,
            origin: origin.map(str::to_owned),
            campaign: job.and_then(|j| j.campaign.clone()),
            customer_id: job.and_then(|j| j.customer_id.clone()),
            channel: Some(channel.to_owned()),
            attempt,
            extra: Map::new(),
        }
    }

    /// An event a recipient or provider caused (a LINE block, a reply, a click):
    /// `attempt` 0, no origin.
    pub fn reaction(kind: EventType, channel: &str, event_id: String) -> Event {
        Event {
            kind,
            event_id,
            at: now_rfc3339(),
            job_id: None,
            origin: None,
            campaign: None,
            customer_id: None,
            channel: Some(channel.to_owned()),
            attempt: 0,
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Adds `error: {code, message}`.
    pub fn with_error(self, code: &str, message: &str) -> Event {
        self.with(
            "error",
            serde_json::json!({ "code": code, "message": message }),
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"failed","error":{{"code":"internal","message":"{e}"}}}}"#)
        })
    }
}

/// A provider's report about a recipient (a LINE unfollow, an SMS STOP), recorded once.
#[derive(Debug, Clone, Copy)]
pub struct Reaction<'a> {
    /// `line`, `twilio`, …: with `event_id`, the deduplication key.
    pub source: &'a str,
    pub event_id: &'a str,
    /// `(channel, address, Some(reason))` suppresses, `(…, None)` lifts a suppression.
    pub suppress: Option<(crate::channel_id::ChannelId, &'a str, Option<&'a str>)>,
    /// The results-stream event (JSON), if the reaction produces one.
    pub event: Option<&'a str>,
    /// When it happened at the provider (ms): older suppression changes lose to newer ones.
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_event_type_once() {
        // No wildcard: a new type fails to compile here until ALL has it too.
        let index = |t: EventType| match t {
            EventType::Sent => 0,
            EventType::Delivered => 1,
            EventType::Deferred => 2,
            EventType::Failed => 3,
            EventType::Bounced => 4,
            EventType::Opened => 5,
            EventType::Clicked => 6,
            EventType::Blocked => 7,
            EventType::Unblocked => 8,
            EventType::Unsubscribed => 9,
            EventType::Replied => 10,
            EventType::Suppressed => 11,
            EventType::Duplicate => 12,
            EventType::Expired => 13,
            EventType::Fallback => 14,
            EventType::Complained => 15,
            EventType::Cancelled => 16,
            EventType::LineStats => 17,
        };
        for (i, t) in EventType::ALL.iter().enumerate() {
            assert_eq!(index(*t), i, "{t:?}");
        }
    }

    #[test]
    fn the_published_event_schema_matches_the_code() {
        let published = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/event.schema.json"
        ))
        .unwrap_or_default();
        assert_eq!(
            event_schema(),
            published,
            "regenerate with: tayori schema --events > docs/event.schema.json"
        );
    }

    #[test]
    fn event_ids_have_their_documented_shapes() {
        assert_eq!(
            outcome_id("j1", "email", 2, EventType::Sent),
            "j1/email/2/sent"
        );
        assert_eq!(
            unclaimed_id(None, "sms", 1, EventType::Failed, "1700000000000-0"),
            "-/sms/1/failed/1700000000000-0"
        );
        assert_eq!(
            reaction_id("j1", "email", EventType::Clicked, Some("a1b2/42")),
            "j1/email/0/clicked/a1b2/42"
        );
        let ev = Event::for_job(EventType::Failed, None, None, "line", 1, Some("5-0"));
        assert_eq!(ev.event_id, "-/line/1/failed/5-0");
        assert_eq!(ev.origin.as_deref(), Some("5-0"));
    }
}
