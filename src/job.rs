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
    /// The campaign, for events and reports; at most 128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// The CRM's customer id, for events and profiles; at most 128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// `email`, `line`, `sms` or `dm`; must match the stream the job was added to.
    /// Or `best`: Tayori picks among `channels` the one this customer reacts to
    /// most (the job goes to the stream of any of them, e.g. the first).
    pub channel: String,
    /// With `channel: "best"`, the channels to choose from; the others become the
    /// fallback, best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
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
    /// RFC 3339 (a job due later waits in the delayed set), or the customer's best
    /// time: `{"best_within": "24h"}` or `{"best_between": [from, to]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<SendAt>,
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
    /// Written by Tayori when it picks the channel of a `best` job: the choice and
    /// why (it is repeated in the job's events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<Value>,
}

/// When to send.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SendAt {
    /// RFC 3339 with offset.
    At(String),
    /// At the hour this customer reacts most, within a window.
    Best(BestTime),
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BestTime {
    /// From now, e.g. "24h" (at most "7d").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_within: Option<String>,
    /// `[from, to]`, RFC 3339 with offset (at most 7 days apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_between: Option<Vec<String>>,
}

/// The longest window a best time is searched in.
pub const BEST_WINDOW_MAX: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

impl BestTime {
    /// The window `[from, to)` as of `now`.
    pub fn window(
        &self,
        now: jiff::Timestamp,
    ) -> Result<(jiff::Timestamp, jiff::Timestamp), String> {
        match (&self.best_within, &self.best_between) {
            (Some(within), None) => {
                let d = crate::config::duration::parse(within)?;
                if d.is_zero() || d > BEST_WINDOW_MAX {
                    return Err("best_within must be between 1s and 7d".into());
                }
                let end = now
                    .checked_add(jiff::SignedDuration::try_from(d).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                Ok((now, end))
            }
            (None, Some(between)) => {
                let [from, to] = between.as_slice() else {
                    return Err("best_between must be [from, to]".into());
                };
                let (from, to) = (parse_time(from)?, parse_time(to)?);
                let span = to.duration_since(from);
                if span <= jiff::SignedDuration::ZERO
                    || span > jiff::SignedDuration::from_secs(BEST_WINDOW_MAX.as_secs() as i64)
                {
                    return Err(
                        "best_between: `to` must be after `from`, at most 7 days later".into(),
                    );
                }
                Ok((from.max(now), to))
            }
            _ => Err("give one of best_within or best_between".into()),
        }
    }
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
        let job: Job = serde_json::from_str(raw).map_err(|e| json_error(raw, e))?;
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
        for (field, value) in [
            ("campaign", &self.campaign),
            ("customer_id", &self.customer_id),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_REF_BYTES) {
                return Err(JobError::new(
                    field,
                    format!("must be at most {MAX_REF_BYTES} bytes"),
                ));
            }
        }
        if self.is_best() {
            if self.channels.is_empty() {
                return Err(JobError::new(
                    "channels",
                    "channel \"best\" needs the channels to choose from",
                ));
            }
            if !self.fallback.is_empty() {
                return Err(JobError::new(
                    "fallback",
                    "with channel \"best\" the other `channels` are the fallback",
                ));
            }
            let mut seen = Vec::new();
            for (i, c) in self.channels.iter().enumerate() {
                let field = format!("channels[{i}]");
                let kind = c
                    .parse::<ChannelKind>()
                    .map_err(|e| JobError::new(&field, e))?;
                if seen.contains(&kind) {
                    return Err(JobError::new(&field, format!("{kind} is listed twice")));
                }
                seen.push(kind);
            }
        }
        // Each channel at most once along the way: a hop's attempts and event ids
        // are per channel, and a loop would never end.
        let mut seen = match self.is_best() {
            true => Vec::new(),
            false => vec![self.channel_kind()?],
        };
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
        match &self.send_at {
            Some(SendAt::At(v)) => {
                parse_time(v).map_err(|m| JobError::new("send_at", m))?;
            }
            Some(SendAt::Best(b)) => {
                b.window(jiff::Timestamp::now())
                    .map_err(|m| JobError::new("send_at", m))?;
            }
            None => {}
        }
        if let Some(v) = &self.expires_at {
            parse_time(v).map_err(|m| JobError::new("expires_at", m))?;
        }
        Ok(())
    }

    /// Whether Tayori is to pick the channel (`channel: "best"`).
    pub fn is_best(&self) -> bool {
        self.channel == "best"
    }

    /// The stream a CRM adds the job to: its channel's, or for `best` the first candidate's.
    pub fn stream_channel(&self) -> Result<ChannelKind, JobError> {
        if self.is_best() {
            return self
                .channels
                .first()
                .ok_or_else(|| {
                    JobError::new(
                        "channels",
                        "channel \"best\" needs the channels to choose from",
                    )
                })?
                .parse()
                .map_err(|e| JobError::new("channels[0]", e));
        }
        self.channel_kind()
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

    /// A fixed send time, if the job has one (not a best-time window).
    pub fn send_at(&self) -> Option<jiff::Timestamp> {
        match &self.send_at {
            Some(SendAt::At(s)) => parse_time(s).ok(),
            _ => None,
        }
    }

    /// The best-time window asked for, if any.
    pub fn best_time(&self) -> Option<&BestTime> {
        match &self.send_at {
            Some(SendAt::Best(b)) => Some(b),
            _ => None,
        }
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

/// The longest `campaign` and `customer_id`. Both ride in every tracking and
/// unsubscribe token, so in the `List-Unsubscribe` header, which must keep its URL
/// on one line of at most 998 bytes (RFC 5322; a URL is not folded). With both
/// this long and a public URL of some 25 characters the line still fits when the
/// job id and the address together are under about 400 bytes (a 256-byte id with a
/// 150-byte address, a 90-byte id with the longest address); the encoder refuses a
/// message whose line would not fit rather than write it.
pub const MAX_REF_BYTES: usize = 128;

/// The error for a job that does not deserialize. A data error (a wrong type, an
/// unknown, missing or repeated field) names the field by its whole path
/// (`content.email.bcc`, `fallback[1]`); a syntax error names the `job`. The path
/// is worked out only here, by a second parse through serde_path_to_error, so a
/// good job pays nothing for it.
fn json_error(raw: &str, e: serde_json::Error) -> JobError {
    let message = |e: &serde_json::Error| format!("invalid job JSON: {e}");
    if e.classify() != serde_json::error::Category::Data {
        return JobError::new("job", message(&e));
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    let Err(traced) = serde_path_to_error::deserialize::<_, Job>(&mut de) else {
        return JobError::new("job", message(&e));
    };
    // A job is an object: one given as an array (which serde would read field by
    // field, in order) is the job's fault, not its first element's.
    let is_object = !matches!(
        traced.path().iter().next(),
        Some(serde_path_to_error::Segment::Seq { .. })
    );
    let mut field = match is_object {
        true => field_path(traced.path()),
        false => String::new(),
    };
    let e = traced.into_inner();
    // serde names a missing or repeated field only in its message, at its struct's path.
    let text = e.to_string();
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|p| text.strip_prefix(p)?.split_once('`'))
        .map(|(name, _)| name);
    if let Some(name) = named {
        push_key(&mut field, name);
    }
    if field.is_empty() {
        field.push_str("job");
    }
    JobError::new(&field, message(&e))
}

/// A path as the job's author reads it: `content.email.bcc`, `channels[2]`; a key
/// that is not a plain name in quotes (`content.""`, `content."a.b"`), cut at 64
/// characters.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => push_key(&mut out, key),
            Segment::Unknown => {
                separate(&mut out);
                out.push('?');
            }
        }
    }
    out
}

fn separate(out: &mut String) {
    if !out.is_empty() {
        out.push('.');
    }
}

fn push_key(out: &mut String, key: &str) {
    const MAX_CHARS: usize = 64;
    separate(out);
    let plain = !key.is_empty()
        && key.len() <= MAX_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        out.push_str(key);
        return;
    }
    let mut cut: String = key.chars().take(MAX_CHARS).collect();
    if cut.len() < key.len() {
        cut.push('…');
    }
    out.push_str(&serde_json::Value::from(cut).to_string());
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
    fn json_errors_name_the_whole_path() {
        let inline = |content: &str| {
            err(&format!(
                r#"{{"id":"x","channel":"email","content":{content}}}"#
            ))
        };
        let e = inline(r#"{"email":{"subject":"s","text":"t","bcc":"x@example.net"}}"#);
        assert_eq!(e.field, "content.email.bcc");
        assert!(e.message.contains("unknown field `bcc`"), "{e}");
        assert_eq!(inline(r#"{"":1}"#).field, r#"content."""#);
        assert_eq!(inline(r#"{"a.b":1}"#).field, r#"content."a.b""#);
        assert_eq!(
            inline(r#"{"email":{"text":"t"}}"#).field,
            "content.email.subject"
        );
        assert_eq!(inline(r#"{"sms":{"text":5}}"#).field, "content.sms.text");
        assert_eq!(
            inline(r#"{"dm":{"fields":{"coupon code":1}}}"#).field,
            r#"content.dm.fields."coupon code""#
        );
        let long = inline(&format!(r#"{{"{}":1}}"#, "k".repeat(500))).field;
        assert_eq!(long, format!(r#"content."{}…""#, "k".repeat(64)));
        let e = err(r#"{"id":"x","channel":"email","template":"t","fallback":["sms",3]}"#);
        assert_eq!(e.field, "fallback[1]");
        assert_eq!(
            err(r#"{"id":12,"channel":"email","template":"t"}"#).field,
            "id"
        );
        assert_eq!(
            err(r#"{"id":"a","id":"b","channel":"email","template":"t"}"#).field,
            "id"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","template":"t","send_at":5}"#).field,
            "send_at"
        );
        // Not a field's fault: the JSON itself, or its top-level shape.
        assert_eq!(err("[1,2,3]").field, "job");
        assert_eq!(err(r#"{"id":"x","#).field, "job");
        assert_eq!(err(&format!("{OK} x")).field, "job");
    }

    #[test]
    fn campaign_and_customer_ids_are_bounded() {
        let with = |key: &str, len: usize| {
            let mut v: Value = serde_json::from_str(OK).unwrap();
            v[key] = Value::from("c".repeat(len));
            Job::parse(&v.to_string(), 1 << 20)
        };
        for key in ["campaign", "customer_id"] {
            assert!(with(key, MAX_REF_BYTES).is_ok());
            let e = with(key, MAX_REF_BYTES + 1).unwrap_err();
            assert_eq!(e.field, key);
            assert!(e.message.contains("128 bytes"), "{e}");
        }
    }

    #[test]
    fn oversize_jobs_are_refused() {
        let e = Job::parse(OK, 10).unwrap_err();
        assert_eq!(e.field, "job");
        assert!(e.message.contains("limit"));
    }
}
