//! Checking a job against the live config before it is enqueued (`tayori
//! check-jobs`, `tayori enqueue`, `POST /v1/jobs`): what the daemon would
//! otherwise find only when the job's turn comes, as a failed event.
//!
//! Past the job's own syntax ([`registry::parse_job`]): each channel it may go
//! out on (its own, `channels` of a `best` job, each fallback) is enabled; its
//! message composes, through the channel's own compose, exactly as the daemon
//! would (template or inline content, every variable defined); it has an
//! address; and the message encodes through the channel's own encoder, which
//! makes the real transport's checks (an email address as it is sent, an SMS
//! number in E.164 and its segments, a postal address and its characters), so
//! a check fails with the code the delivery's `failed` event would carry. A
//! rule the sender holds (a webhook's endpoint) is the channel settings'
//! `check_address`. Nothing here writes anywhere.

use std::sync::Arc;

use serde::Serialize;

use tayori_channels::{Encode, Message};

use crate::channel::{registry, BuildError, Channels, Compose, Enabled, Source};
use crate::channel_id::ChannelId;
use crate::config::Config;
use crate::job::{Job, JobError};
use crate::render::{context, Renderer};

/// Why a job would not go out as asked: a stable `code`, the `field` at fault
/// (its JSON path in the job) and a message saying what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CheckError {
    pub code: std::borrow::Cow<'static, str>,
    pub field: String,
    pub message: String,
}

impl CheckError {
    fn new(
        code: impl Into<std::borrow::Cow<'static, str>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CheckError {
            code: code.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<JobError> for CheckError {
    fn from(e: JobError) -> Self {
        CheckError::new("invalid_job", e.field, e.message)
    }
}

/// The checks, with what they read from the config. Cheap to share (`Arc`s).
#[derive(Clone)]
pub struct JobChecker {
    channels: Arc<Channels>,
    renderer: Arc<Renderer>,
    max_job_bytes: usize,
    /// Each enabled channel's encoder, built once (email's holds its DKIM key).
    encoders: Arc<Vec<(ChannelId, Box<dyn Encode>)>>,
}

impl JobChecker {
    pub fn new(
        config: &Config,
        channels: Arc<Channels>,
        renderer: Arc<Renderer>,
    ) -> Result<JobChecker, BuildError> {
        let encoders = channels
            .iter()
            .map(|e| Ok((e.id, e.settings.encoder()?)))
            .collect::<Result<Vec<_>, BuildError>>()?;
        Ok(JobChecker {
            channels,
            renderer,
            max_job_bytes: config.queue.max_job_bytes,
            encoders: Arc::new(encoders),
        })
    }

    /// Parses a job (JSON text) and checks it.
    pub fn check_raw(&self, raw: &str) -> Result<Job, CheckError> {
        let job = registry::parse_job(raw, self.max_job_bytes)?;
        self.check(&job)?;
        Ok(job)
    }

    /// Checks a parsed job against the config; the first problem found, in the
    /// order: channels, content (every missing variable at once), addresses.
    pub fn check(&self, job: &Job) -> Result<(), CheckError> {
        let mut enabled: Vec<(String, &Enabled)> = Vec::new();
        for (field, name) in job.named_channels() {
            let id = registry::parse(name)
                .map_err(|e| CheckError::new("invalid_job", &field, e.to_string()))?;
            match self.channels.get(id) {
                Some(e) => enabled.push((field, e)),
                None => {
                    return Err(CheckError::new(
                        "channel_disabled",
                        field,
                        format!(
                        "channel {id} is not enabled in this config (no [channels.{id}] section)"
                    ),
                    ))
                }
            }
        }
        let ctx = context(job, None);
        let cx = Compose {
            renderer: &self.renderer,
            tracker: self.channels.tracker.as_deref(),
        };
        let mut missing: Vec<String> = Vec::new();
        for (_, e) in &enabled {
            let source = Source::of(e.plugin, job, &self.renderer).map_err(|r| {
                let field = if job.template.is_some() {
                    "template".to_owned()
                } else {
                    format!("content.{}", e.id)
                };
                let code = if job
                    .template
                    .as_deref()
                    .is_some_and(|t| !self.renderer.exists(t))
                {
                    "unknown_template"
                } else {
                    "missing_content"
                };
                CheckError::new(code, field, r.0)
            })?;
            if let Err(r) = e.compose(job, &cx) {
                let names = match source {
                    Source::Template(name) => {
                        self.renderer
                            .missing_in_template(name, e.plugin.template_files(), &ctx)
                    }
                    Source::Inline(value) => self.renderer.missing_in_inline(value, &ctx),
                };
                if names.is_empty() {
                    let field = match job.template {
                        Some(_) => "template".to_owned(),
                        None => format!("content.{}", e.id),
                    };
                    return Err(CheckError::new(
                        "render_failed",
                        field,
                        format!("{} does not render: {}", e.id, r.0),
                    ));
                }
                for n in names {
                    if !missing.contains(&n) {
                        missing.push(n);
                    }
                }
            }
        }
        if !missing.is_empty() {
            missing.sort();
            let first = missing[0].clone();
            return Err(CheckError::new(
                "missing_variable",
                format!("vars.{first}"),
                format!(
                    "the message reads variables the job's vars do not define: {}",
                    missing.join(", ")
                ),
            ));
        }
        self.check_addresses(job, &enabled)
    }

    /// Each address the job gives must be one its channel can send to, its
    /// message encoding as the transport would send it; at least one of its
    /// channels must have an address (a channel without one may fall back).
    fn check_addresses(&self, job: &Job, enabled: &[(String, &Enabled)]) -> Result<(), CheckError> {
        let mut reachable = false;
        let cx = Compose {
            renderer: &self.renderer,
            tracker: self.channels.tracker.as_deref(),
        };
        for (_, e) in enabled {
            let key = e.plugin.address_key();
            let address = e
                .plugin
                .address(&job.to)
                .or_else(|| e.settings.alternate_address(job, &self.renderer));
            match address {
                Some(address) => {
                    e.settings
                        .check_address(address)
                        .map_err(|m| CheckError::new("invalid_address", format!("to.{key}"), m))?;
                    self.check_encoding(job, e, &cx)?;
                    reachable = true;
                }
                None => reachable |= e.settings.default_address().is_some(),
            }
        }
        if reachable {
            return Ok(());
        }
        let keys: Vec<String> = enabled
            .iter()
            .map(|(_, e)| format!("to.{}", e.plugin.address_key()))
            .collect();
        let first = keys.first().cloned().unwrap_or_else(|| "to".to_owned());
        Err(CheckError::new(
            "missing_address",
            first,
            format!("no address to send to: give {}", keys.join(" or ")),
        ))
    }

    /// The message, composed and encoded as the worker would, through the
    /// channel's encoder: its refusal is the transport's, with the transport's
    /// code (`invalid_phone`, `too_many_segments`, `unencodable`, …).
    fn check_encoding(&self, job: &Job, e: &Enabled, cx: &Compose<'_>) -> Result<(), CheckError> {
        let Some((_, encoder)) = self.encoders.iter().find(|(id, _)| *id == e.id) else {
            return Ok(());
        };
        let Ok((content, _records)) = e.compose(job, cx) else {
            return Ok(()); // reported by the content check
        };
        let message = Message {
            job_id: job.id.clone(),
            attempt: 1,
            idempotency_key: format!("{}/{}", job.id, e.id),
            campaign: job.campaign.clone(),
            customer_id: job.customer_id.clone(),
            to: e.plugin.recipient(&job.to),
            content,
        };
        encoder.encode(&message).map(drop).map_err(|err| {
            let text = err.message();
            // The transports name the field when it is the recipient's
            // (`to.postal.postal_code: …`); otherwise an address code is the
            // address's, and anything else the message's.
            let field = match text.split_once(':') {
                Some((path, _)) if path.starts_with("to.") && !path.contains(' ') => {
                    path.to_owned()
                }
                _ if matches!(err.code(), "invalid_address" | "invalid_phone") => {
                    format!("to.{}", e.plugin.address_key())
                }
                _ if job.template.is_some() => "template".to_owned(),
                _ => format!("content.{}", e.id),
            };
            CheckError::new(err.code().to_owned(), field, text)
        })
    }
}

/// A check's verdict on one line of a JSON Lines file: `(line number, job id if
/// readable, error)` for each line that fails.
pub fn check_lines(checker: &JobChecker, text: &str) -> Vec<(usize, Option<String>, CheckError)> {
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Err(e) = checker.check_raw(line) {
            bad.push((n + 1, job_id_of(line), e));
        }
    }
    bad
}

/// The `id` of a job that may not parse as one, for reports.
pub fn job_id_of(raw: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    v.get("id")?.as_str().map(str::to_owned)
}
