//! The job a CRM enqueues (stream entry field `job`, JSON), and its validation.
//!
//! The types here are the published contract: `docs/job.schema.json` is
//! generated from them (`tayori schema`).

use crate::channel_id::ChannelId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
                let d = crate::units::duration::parse(within)?;
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

/// The recipient: a name, a time zone, and an address per channel (`email`,
/// `line_user_id`, `phone`, `postal`, …: each channel reads its own key).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct To {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// IANA time zone of the recipient (e.g. Asia/Tokyo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Each channel's address, under the key the channel reads.
    #[serde(flatten)]
    pub addresses: serde_json::Map<String, Value>,
}

impl To {
    /// A text address, without surrounding blanks (`None` when missing or blank).
    pub fn text(&self, key: &str) -> Option<&str> {
        self.addresses
            .get(key)?
            .as_str()
            .map(str::trim)
            .filter(|a| !a.is_empty())
    }

    /// Checks that `key`, if given, is a string (or null).
    pub fn check_text(&self, key: &str) -> Result<(), JobError> {
        match self.addresses.get(key) {
            None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
            Some(other) => {
                let kind = match other {
                    Value::Bool(_) => "boolean",
                    Value::Number(_) => "number",
                    Value::Array(_) => "sequence",
                    _ => "map",
                };
                Err(JobError::new(
                    &format!("to.{key}"),
                    format!("invalid job JSON: invalid type: {kind}, expected a string"),
                ))
            }
        }
    }
}

/// Inline content per channel, used instead of `template`: `{"email": {…}, "sms": {…}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct InlineContent {
    #[serde(flatten)]
    pub parts: serde_json::Map<String, Value>,
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
                let kind = ChannelId::parse(c).map_err(|e| JobError::new(&field, e.to_string()))?;
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
            false => vec![self.channel_id()?],
        };
        for (i, f) in self.fallback.iter().enumerate() {
            let field = format!("fallback[{i}]");
            let kind = ChannelId::parse(f).map_err(|e| JobError::new(&field, e.to_string()))?;
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
    pub fn stream_channel(&self) -> Result<ChannelId, JobError> {
        if self.is_best() {
            let first = self.channels.first().ok_or_else(|| {
                JobError::new(
                    "channels",
                    "channel \"best\" needs the channels to choose from",
                )
            })?;
            return ChannelId::parse(first)
                .map_err(|e| JobError::new("channels[0]", e.to_string()));
        }
        self.channel_id()
    }

    pub fn channel_id(&self) -> Result<ChannelId, JobError> {
        ChannelId::parse(&self.channel).map_err(|e| JobError::new("channel", e.to_string()))
    }

    /// The channel at fallback position `hop` (0 is the job's own channel).
    pub fn channel_at(&self, hop: usize) -> Option<ChannelId> {
        if hop == 0 {
            self.channel_id().ok()
        } else {
            ChannelId::parse(self.fallback.get(hop - 1)?).ok()
        }
    }

    /// Every channel the job names (its own or `best`'s candidates, then the
    /// fallback), with the field each is named in.
    pub fn named_channels(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        if self.is_best() {
            for (i, c) in self.channels.iter().enumerate() {
                out.push((format!("channels[{i}]"), c.as_str()));
            }
        } else {
            out.push(("channel".to_owned(), self.channel.as_str()));
        }
        for (i, c) in self.fallback.iter().enumerate() {
            out.push((format!("fallback[{i}]"), c.as_str()));
        }
        out
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
pub fn field_path(path: &serde_path_to_error::Path) -> String {
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

pub fn push_key(out: &mut String, key: &str) {
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
