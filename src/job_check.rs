//! Checking a job against the live config before it is enqueued (`tayori
//! check-jobs`, `tayori enqueue`, `POST /v1/jobs`): what the daemon would
//! otherwise find only when the job's turn comes, as a failed event.
//!
//! Past the job's own syntax ([`registry::parse_job`]): each channel it may go
//! out on (its own, `channels` of a `best` job, each fallback) is enabled; its
//! message composes, through the channel's own compose, exactly as the daemon
//! would (template or inline content, every variable defined); and it has an
//! address the channel can send to, read by the channel's own rules (SMS's
//! E.164 reading in `default_region`, email's address parsing, a webhook's
//! endpoint rules). Nothing here writes anywhere.

use std::sync::Arc;

use serde::Serialize;

use crate::channel::{registry, Channels, Compose, Enabled, Source};
use crate::config::Config;
use crate::job::{Job, JobError};
use crate::render::{context, Renderer};

/// Why a job would not go out as asked: a stable `code`, the `field` at fault
/// (its JSON path in the job) and a message saying what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CheckError {
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

impl CheckError {
    fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        CheckError {
            code,
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
    /// `channels.webhook.allow_http`: a job's own endpoint may be plain http.
    webhook_allow_http: bool,
}

impl JobChecker {
    pub fn new(config: &Config, channels: Arc<Channels>, renderer: Arc<Renderer>) -> JobChecker {
        let webhook_allow_http = config
            .channels
            .get("webhook")
            .and_then(|s| s.get("allow_http"))
            .and_then(toml::Value::as_bool)
            .unwrap_or(false);
        JobChecker {
            channels,
            renderer,
            max_job_bytes: config.queue.max_job_bytes,
            webhook_allow_http,
        }
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

    /// Each address the job gives must be one its channel can send to; at least
    /// one of its channels must have one (a channel without may fall back).
    fn check_addresses(&self, job: &Job, enabled: &[(String, &Enabled)]) -> Result<(), CheckError> {
        let mut reachable = false;
        for (_, e) in enabled {
            let key = e.plugin.address_key();
            match e.plugin.address(&job.to) {
                Some(address) => {
                    self.check_address(e, address)
                        .map_err(|m| CheckError::new("invalid_address", format!("to.{key}"), m))?;
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

    /// One address, read by its channel's own rules; the reason never quotes it.
    fn check_address(&self, e: &Enabled, address: &str) -> Result<(), String> {
        match e.id.as_str() {
            "email" => tayori_channels::email::address::ascii_address(address)
                .map(drop)
                .map_err(|err| format!("invalid email address: {err}")),
            "sms" => {
                // The channel's settings read the number in its default_region
                // (E.164 when it reads, the address unchanged when not); an
                // E.164 number reads in any region, so "ZZ" (no region) takes
                // exactly the numbers the channel took.
                let normalized = e.settings.suppression_address(address);
                tayori_channels::sms::phone::to_e164(&normalized, "ZZ")
                    .map(drop)
                    .map_err(|_| {
                        "invalid phone number: not a valid number (national numbers are read in channels.sms.default_region)"
                            .to_owned()
                    })
            }
            "webhook" => {
                tayori_channels::webhook::endpoint_allowed(address, self.webhook_allow_http)
            }
            _ => Ok(()),
        }
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
