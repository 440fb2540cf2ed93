//! Events written to `{prefix}:results` (entry field `event`, JSON).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::job::Job;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
}

impl EventType {
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
        }
    }
}

/// One results-stream event. `extra` holds the per-type fields.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Deterministic for job outcomes (`job id / channel / attempt / type`), so a
    /// consumer can drop an event it has already seen.
    pub event_id: String,
    pub at: String,
    pub job_id: Option<String>,
    pub campaign: Option<String>,
    pub customer_id: Option<String>,
    pub channel: Option<String>,
    pub attempt: u32,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

impl Event {
    /// An event about a job; `job` is `None` when the job could not be parsed.
    pub fn for_job(
        kind: EventType,
        job: Option<&Job>,
        job_id: Option<&str>,
        channel: &str,
        attempt: u32,
    ) -> Event {
        let job_id = job
            .map(|j| j.id.clone())
            .or_else(|| job_id.map(str::to_owned));
        let event_id = match &job_id {
            Some(id) => format!("{id}/{channel}/{attempt}/{}", kind.as_str()),
            None => format!("{}/{channel}/{}", kind.as_str(), now_rfc3339()),
        };
        Event {
            kind,
            event_id,
            at: now_rfc3339(),
            job_id,
            campaign: job.and_then(|j| j.campaign.clone()),
            customer_id: job.and_then(|j| j.customer_id.clone()),
            channel: Some(channel.to_owned()),
            attempt,
            extra: Map::new(),
        }
    }

    /// An event a recipient caused with no job behind it (a LINE block, a reply).
    pub fn reaction(kind: EventType, channel: &str, event_id: String) -> Event {
        Event {
            kind,
            event_id,
            at: now_rfc3339(),
            job_id: None,
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
