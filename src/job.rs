//! The job a CRM enqueues (stream entry field `job`, JSON), and its validation.
//!
//! The types here are the published contract: `docs/job.schema.json` is
//! generated from them (`tayori schema`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tayori_channels::{ChannelKind, PostalAddress};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "Tayori job",
    description = "One personalized send, as the `job` field of an entry in the stream {prefix}:jobs:{channel}."
)]
pub struct Job {
    /// Idempotency key: the same id is never sent twice within the dedupe window.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// `email`, `line`, `sms` or `dm`; must match the stream the job was added to.
    pub channel: String,
    /// Channels to try, in order, when this one cannot reach the recipient.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
    #[serde(default)]
    pub to: To,
    /// Name of a template directory under the templates dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Inline content per channel, used instead of `template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<InlineContent>,
    /// Values for the template.
    #[serde(default)]
    pub vars: serde_json::Map<String, Value>,
    /// RFC 3339; a job due later waits in the delayed set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    /// RFC 3339; a job not sent by then is `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// `transactional` (an order confirmation, a password reset): exempt from
    /// frequency caps and quiet hours. Default: `marketing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    /// What a frequency cap does to this job: `defer` it until the window allows,
    /// or `drop` it (`suppressed`, reason `frequency_cap`). Default: `policy.on_cap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<crate::policy::OnCap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Marketing,
    Transactional,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct To {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal: Option<PostalAddress>,
    /// IANA time zone of the recipient (e.g. Asia/Tokyo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LineContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<DmContent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailContent {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineContent {
    /// LINE message objects; every string in them is a template.
    pub messages: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsContent {
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DmContent {
    pub fields: BTreeMap<String, String>,
}

/// Why a job cannot be processed; `field` names the culprit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct JobError {
    pub field: String,
    pub message: String,
}

impl JobError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Job {
    /// Parses and checks a job; `max_bytes` caps its size.
    pub fn parse(raw: &str, max_bytes: usize) -> Result<Job, JobError> {
        if raw.len() > max_bytes {
            return Err(JobError::new(
                "job",
                format!(
                    "job is {} bytes, over the {max_bytes}-byte limit",
                    raw.len()
                ),
            ));
        }
        let job: Job = serde_json::from_str(raw).map_err(|e| {
            let msg = e.to_string();
            // serde names missing and mistyped fields in its message; pick the field out for the event.
            let field = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.starts_with("missing field") || msg.starts_with("unknown field"))
                .unwrap_or("job");
            JobError::new(field, format!("invalid job JSON: {msg}"))
        })?;
        job.validate()?;
        Ok(job)
    }

    fn validate(&self) -> Result<(), JobError> {
        if self.id.trim().is_empty() {
            return Err(JobError::new("id", "must not be empty"));
        }
        if self.id.len() > 256 || self.id.chars().any(char::is_control) {
            return Err(JobError::new(
                "id",
                "must be at most 256 bytes without control characters",
            ));
        }
        // Each channel at most once along the way: a hop's attempts and event ids
        // are per channel, and a loop would never end.
        let mut seen = vec![self.channel_kind()?];
        for (i, f) in self.fallback.iter().enumerate() {
            let field = format!("fallback[{i}]");
            let kind = f
                .parse::<ChannelKind>()
                .map_err(|e| JobError::new(&field, e))?;
            if seen.contains(&kind) {
                return Err(JobError::new(
                    &field,
                    format!("{kind} is already on the job's way (each channel at most once)"),
                ));
            }
            seen.push(kind);
        }
        match (&self.template, &self.content) {
            (None, None) => {
                return Err(JobError::new(
                    "template",
                    "a job needs a template or inline content",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(JobError::new(
                    "content",
                    "give either template or content, not both",
                ))
            }
            (Some(name), None) if !valid_template_name(name) => {
                return Err(JobError::new(
                    "template",
                    "template names are letters, digits, '-' and '_'",
                ));
            }
            _ => {}
        }
        for (field, value) in [("send_at", &self.send_at), ("expires_at", &self.expires_at)] {
            if let Some(v) = value {
                parse_time(v).map_err(|m| JobError::new(field, m))?;
            }
        }
        Ok(())
    }

    pub fn channel_kind(&self) -> Result<ChannelKind, JobError> {
        self.channel
            .parse()
            .map_err(|e| JobError::new("channel", e))
    }

    /// The channel at fallback position `hop` (0 is the job's own channel).
    pub fn channel_at(&self, hop: usize) -> Option<ChannelKind> {
        if hop == 0 {
            self.channel_kind().ok()
        } else {
            self.fallback.get(hop - 1)?.parse().ok()
        }
    }

    pub fn send_at(&self) -> Option<jiff::Timestamp> {
        self.send_at.as_deref().and_then(|s| parse_time(s).ok())
    }

    pub fn expires_at(&self) -> Option<jiff::Timestamp> {
        self.expires_at.as_deref().and_then(|s| parse_time(s).ok())
    }

    /// The recipient's address on a channel, if the job has one (without surrounding blanks).
    pub fn address(&self, kind: ChannelKind) -> Option<&str> {
        let a = match kind {
            ChannelKind::Email => self.to.email.as_deref(),
            ChannelKind::Line => self.to.line_user_id.as_deref(),
            ChannelKind::Sms => self.to.phone.as_deref(),
            ChannelKind::Dm => self.to.postal.as_ref().map(|p| p.postal_code.as_str()),
        };
        // Trimmed: the suppression lookup and the send must see the same address.
        a.map(str::trim).filter(|a| !a.is_empty())
    }

    /// The recipient as the channel adapter sees it (`address` empty when the job has none).
    pub fn recipient(&self, kind: ChannelKind) -> tayori_channels::Recipient {
        tayori_channels::Recipient {
            name: self.to.name.clone(),
            address: self.address(kind).unwrap_or_default().to_owned(),
            postal: self.to.postal.clone(),
        }
    }

    /// The field a channel's address lives in (for error messages).
    pub fn address_field(kind: ChannelKind) -> &'static str {
        match kind {
            ChannelKind::Email => "to.email",
            ChannelKind::Line => "to.line_user_id",
            ChannelKind::Sms => "to.phone",
            ChannelKind::Dm => "to.postal",
        }
    }
}

pub fn valid_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_time(s: &str) -> Result<jiff::Timestamp, String> {
    s.parse::<jiff::Timestamp>()
        .map_err(|e| format!("not an RFC 3339 time with offset: {e}"))
}

/// The JSON Schema of [`Job`], as published in `docs/job.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Job);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str =
        r#"{"id":"j1","channel":"email","to":{"email":"a@example.com"},"template":"welcome"}"#;

    fn err(raw: &str) -> JobError {
        Job::parse(raw, 1 << 20).unwrap_err()
    }

    #[test]
    fn a_valid_job_parses() {
        let job = Job::parse(OK, 1 << 20).unwrap();
        assert_eq!(job.address(ChannelKind::Email), Some("a@example.com"));
        assert_eq!(job.address(ChannelKind::Sms), None);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"channel":"email","template":"t"}"#).field, "id");
        assert_eq!(
            err(r#"{"id":"x","channel":"fax","template":"t"}"#).field,
            "channel"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","fallback":["dm","pigeon"],"template":"t"}"#).field,
            "fallback[1]"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","template":"../etc"}"#).field,
            "template"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","fallback":["sms","email"],"template":"t"}"#).field,
            "fallback[1]"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","fallback":["sms","sms"],"template":"t"}"#).field,
            "fallback[1]"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","template":"t","send_at":"tomorrow"}"#).field,
            "send_at"
        );
        assert_eq!(
            err(r#"{"id":" ","channel":"email","template":"t"}"#).field,
            "id"
        );
        assert_eq!(err("not json").field, "job");
        assert_eq!(err(r#"{"id":"x","channel":"email"}"#).field, "template");
    }

    #[test]
    fn oversize_jobs_are_refused() {
        let e = Job::parse(OK, 10).unwrap_err();
        assert_eq!(e.field, "job");
        assert!(e.message.contains("limit"));
    }
}
