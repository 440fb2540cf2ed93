//! Turning what happened to a job into its completion: events, retries,
//! deferrals, fallbacks and dead letters.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tayori_channels::SendError;

use super::ChannelWorker;
use crate::event::{Event, EventType};
use crate::job::{Job, JobError};
use crate::metrics as m;
use crate::queue::{self, AppendTo, Completion, Entry, Op};
use crate::retry_policy::Decision;

impl ChannelWorker {
    pub(super) fn retry_or_fail(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        err: &SendError,
    ) -> Completion {
        let age = entry.age();
        let hint = match err {
            SendError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        };
        match self.retry.decide(attempt, age, hint) {
            Decision::RetryIn(wait) => {
                metrics::counter!(m::RETRIES, "channel" => self.kind.label(), "class" => err.class()).increment(1);
                self.defer(entry, job, attempt, err, wait, attempt)
            }
            Decision::GiveUp => {
                let msg = format!("gave up after {attempt} attempts: {}", err.message());
                let ev = self
                    .event(entry, EventType::Failed, job, attempt)
                    .with_error(err.code(), &msg);
                self.complete(entry, vec![ev.into()])
            }
        }
    }

    /// How long a refused channel pauses: as long as the provider said, else
    /// the channel's `pause`.
    fn pause_wait(&self, err: &SendError) -> Duration {
        match err {
            SendError::Suspended {
                retry_after: Some(d),
                ..
            }
            | SendError::QuotaExhausted {
                retry_after: Some(d),
                ..
            } => *d,
            _ => self.pause,
        }
    }

    /// The provider refuses the whole channel: pause it, and let this job wait for
    /// the channel without spending one of its attempts.
    pub(super) fn suspend(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        err: &SendError,
    ) -> Completion {
        let wait = self.pause_wait(err);
        self.pause_for(wait, err.code(), err.message());
        // Waiting for the channel does not spend attempts, but the job's age still
        // bounds it (and keeps it inside LINE's 24 h retry-key window).
        if entry.age().saturating_add(wait) > self.retry.max_age() {
            let msg = format!(
                "gave up: the channel stayed suspended past retry.max_age: {}",
                err.message()
            );
            let ev = self
                .event(entry, EventType::Failed, job, attempt)
                .with_error(err.code(), &msg);
            return self.complete(entry, vec![ev.into()]);
        }
        self.defer(entry, job, attempt, err, wait, attempt.saturating_sub(1))
    }

    /// A `deferred` event and the job back in the delayed set after `wait`.
    /// `attempts_spent` is what the next try counts from.
    pub(super) fn defer(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        err: &SendError,
        wait: Duration,
        attempts_spent: u32,
    ) -> Completion {
        self.defer_with(entry, job, attempt, err, wait, attempts_spent, false)
    }

    /// Like [`defer`](Self::defer); with `slot`, the job holds a rate-limit slot
    /// reserved for when it is due and sends then without another permit.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn defer_with(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        err: &SendError,
        wait: Duration,
        attempts_spent: u32,
        slot: bool,
    ) -> Completion {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let due_ms = now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        let retry_at = jiff::Timestamp::from_millisecond(due_ms)
            .map(|t| format!("{t:.3}"))
            .unwrap_or_default();
        let mut ev = self
            .event(entry, EventType::Deferred, job, attempt)
            .with_error(err.code(), err.message())
            .with("retry_at", retry_at);
        // A job can be deferred more than once at the same attempt (channel pauses).
        ev.event_id = format!("{}/{due_ms}", ev.event_id);
        let mut routing = entry.routing.clone();
        routing.attempt = attempts_spent;
        routing.slot_ms = slot.then_some(due_ms);
        routing.origin = Some(entry.origin().to_owned());
        routing.first_at_ms = Some(entry.first_at_ms());
        let raw = entry.job.clone().unwrap_or_default();
        let delay = Op::Delay {
            due_ms,
            channel: self.kind,
            fields: routing.fields(&raw),
        };
        self.complete(entry, vec![ev.into(), delay])
    }

    /// The address is dead on this channel — a hard bounce, or the recipient opted out
    /// at the provider: the event (`kind`), the address suppressed for `reason`
    /// (atomically with the ack), and the job on to its fallback.
    pub(super) fn address_dead(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        err: &SendError,
        kind: EventType,
        reason: &str,
    ) -> Completion {
        let ev = self
            .event(entry, kind, job, attempt)
            .with_error(err.code(), err.message());
        let mut ops = vec![ev.into()];
        if let Some(address) = self.suppression_address(job) {
            ops.push(Op::Suppress {
                channel: self.kind,
                address,
                reason: reason.into(),
                at_ms: jiff::Timestamp::now().as_millisecond(),
            });
        }
        ops.extend(
            self.fallback(entry, job, attempt, err.code(), err.message(), None)
                .unwrap_or_default(),
        );
        self.complete(entry, ops)
    }

    /// The channel's monthly quota is used up: the channel pauses; with
    /// `on_quota = "fallback"` a job with a fallback moves on to it (a `fallback`
    /// event with `reason: "quota"`), any other waits for the channel like a
    /// [`suspend`](Self::suspend)ed one.
    pub(super) fn over_quota(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        err: &SendError,
    ) -> Completion {
        let wait = self.pause_wait(err);
        self.pause_for_quota(wait, err.code(), err.message());
        if self.falls_back_on_quota {
            if let Some(ops) = self.fallback(
                entry,
                job,
                attempt,
                err.code(),
                err.message(),
                Some("quota"),
            ) {
                return self.complete(entry, ops);
            }
        }
        self.suspend(entry, job, attempt, err)
    }

    /// The `fallback` event (with `reason`, when given) and the job appended to
    /// the next enabled channel in its fallback list, if there is one.
    fn fallback(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        code: &str,
        message: &str,
        reason: Option<&str>,
    ) -> Option<Vec<Op>> {
        let mut hop = entry.routing.hop + 1;
        while let Some(next) = job.channel_at(hop) {
            if self.enabled.contains(&next) {
                let mut ev = self
                    .event(entry, EventType::Fallback, job, attempt)
                    .with("to_channel", next.as_str())
                    .with_error(code, message);
                if let Some(reason) = reason {
                    ev = ev.with("reason", reason);
                }
                let routing = queue::Routing {
                    attempt: 0,
                    origin: Some(entry.origin().to_owned()),
                    first_at_ms: Some(entry.first_at_ms()),
                    hop,
                    slot_ms: None,
                    scheduled: entry.routing.scheduled.clone(),
                    redrive: entry.routing.redrive,
                };
                let raw = entry.job.clone().unwrap_or_default();
                let forward = Op::Append {
                    to: AppendTo::Jobs(next),
                    fields: routing.fields(&raw),
                };
                return Some(vec![ev.into(), forward]);
            }
            hop += 1;
        }
        None
    }

    /// An operator cancelled the job or its campaign: it ends here, on this
    /// channel, with no fallback and no retry.
    pub(super) fn cancelled(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        applied: &crate::cancel::Applied,
    ) -> Completion {
        let c = &applied.cancel;
        let at = jiff::Timestamp::from_millisecond(c.at_ms)
            .map(|t| format!("{t:.3}"))
            .unwrap_or_default();
        let ev = self
            .event(entry, EventType::Cancelled, job, attempt)
            .with("reason", c.reason.as_str())
            .with("cancelled_by", c.by.as_str())
            .with("cancelled_at", at)
            .with("cancel", applied.scope());
        self.complete(entry, vec![ev.into()])
    }

    /// This channel cannot deliver the job: move it to the next fallback channel, or fail it.
    pub(super) fn not_here(
        &self,
        entry: &Entry,
        job: &Job,
        attempt: u32,
        code: &str,
        message: &str,
    ) -> Completion {
        if let Some(ops) = self.fallback(entry, job, attempt, code, message, None) {
            return self.complete(entry, ops);
        }
        if code == "suppressed" {
            let ev = self
                .event(entry, EventType::Suppressed, job, attempt)
                .with("reason", message);
            return self.complete(entry, vec![ev.into()]);
        }
        if code == "no_address" {
            // A job that names no address for its channel is bad input: keep it for inspection.
            let field = format!("to.{}", self.plugin.address_key());
            let reason = Reason {
                code,
                message,
                field: Some(&field),
            };
            return self.dead(entry, Some(job), None, reason);
        }
        let ev = self
            .event(entry, EventType::Failed, job, attempt)
            .with_error(code, message);
        self.complete(entry, vec![ev.into()])
    }

    pub(super) fn dead_invalid(&self, entry: &Entry, raw: &str, e: &JobError) -> Completion {
        // Salvage the id for the event when the JSON is readable.
        let id = serde_json::from_str::<serde_json::Value>(raw)
            .ok()
            .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
        let reason = Reason {
            code: "invalid_job",
            message: &e.to_string(),
            field: Some(&e.field),
        };
        self.dead(entry, None, id.as_deref(), reason)
    }

    /// A dead letter plus its `failed` event naming the reason (and the field, if one is to blame).
    pub(super) fn dead(
        &self,
        entry: &Entry,
        job: Option<&Job>,
        job_id: Option<&str>,
        reason: Reason,
    ) -> Completion {
        let Reason {
            code,
            message,
            field,
        } = reason;
        metrics::counter!(m::DEAD_LETTERS, "channel" => self.kind.label(), "reason" => code.to_owned()).increment(1);
        // The message may quote the job's values (addresses, phone numbers): it goes to
        // the dead letter and the event, never to the log.
        tracing::warn!(
            channel = %self.kind,
            job_id = job.map(|j| j.id.as_str()).or(job_id).unwrap_or("-"),
            campaign = job.and_then(|j| j.campaign.as_deref()).unwrap_or("-"),
            entry = %entry.id,
            code,
            field = field.unwrap_or("-"),
            "dead letter"
        );
        let mut error = serde_json::json!({ "code": code, "message": message });
        if let Some(field) = field {
            error["field"] = field.into();
        }
        let mut fields = entry.routing.fields(entry.job.as_deref().unwrap_or(""));
        if entry.routing.origin.is_none() {
            fields.push(("origin".into(), entry.id.clone()));
        }
        fields.extend([
            ("channel".into(), self.kind.label().into()),
            ("reason".into(), error.to_string()),
            ("deliveries".into(), entry.deliveries.to_string()),
            ("failed_at".into(), crate::event::now_rfc3339()),
        ]);
        let attempt = self.attempt(entry);
        let mut ev = Event::for_job(
            EventType::Failed,
            job,
            job_id,
            self.kind.label(),
            attempt,
            Some(entry.origin()),
        )
        .with("error", error);
        if job.is_none() {
            // Unparsed, the job never claimed its id: the origin tells it apart
            // from other copies, and stays the same when the letter is re-driven.
            ev.event_id = crate::event::unclaimed_id(
                job_id,
                self.kind.label(),
                attempt,
                EventType::Failed,
                entry.origin(),
            );
        }
        self.complete(
            entry,
            vec![
                Op::Append {
                    to: AppendTo::Dead,
                    fields,
                },
                ev.into(),
            ],
        )
    }

    pub(super) fn event(&self, entry: &Entry, kind: EventType, job: &Job, attempt: u32) -> Event {
        let mut ev = Event::for_job(
            kind,
            Some(job),
            None,
            self.kind.label(),
            attempt,
            Some(entry.origin()),
        );
        if kind == EventType::Duplicate {
            // A copy that lost the claim on its id: a third copy must not repeat
            // the second's id.
            ev.event_id = crate::event::unclaimed_id(
                Some(&job.id),
                self.kind.label(),
                attempt,
                kind,
                entry.origin(),
            );
        }
        match &job.choice {
            Some(choice) => ev.with("channel_choice", choice.clone()),
            None => ev,
        }
    }

    pub(super) fn attempt(&self, entry: &Entry) -> u32 {
        entry
            .routing
            .attempt
            .saturating_add(entry.deliveries.max(1))
    }

    /// Packs the outcome with the entry to acknowledge; counts it by event type.
    pub(super) fn complete(&self, entry: &Entry, ops: Vec<Op>) -> Completion {
        for kind in ops.iter().filter_map(event_type) {
            self.meters.count_outcome(kind);
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
        Completion {
            partition: entry.partition,
            channel: self.kind,
            id: entry.id.clone(),
            ops: once_only(self.queue.keys(), entry, ops),
        }
    }
}

/// The rule that keeps every event id once in the results stream. An outcome's
/// id is `job / channel / attempt / type`; one entry is finished once (XACK in
/// `finish.lua`) and every try has its own attempt number, so ids repeat only
/// when a job is tried again from an attempt it already had: a dead letter
/// that `dead retry` puts back (it restarts at attempt 1, and a job that cannot
/// be parsed fails again with the very same id). So the events of a job going to
/// the dead letters, and every event of a re-driven job, are written only if
/// their id is new to the job's record of ids written (`P:{k}:emitted:…`, checked
/// in the script that writes them); the record is dropped when the re-driven job
/// ends other than as a dead letter again. Other jobs pay nothing for it.
pub(super) fn once_only(keys: &crate::keys::Keys, entry: &Entry, ops: Vec<Op>) -> Vec<Op> {
    let dead = ops.iter().any(|o| {
        matches!(
            o,
            Op::Append {
                to: AppendTo::Dead,
                ..
            }
        )
    });
    if !dead && entry.routing.redrive == 0 {
        return ops;
    }
    let continues = ops
        .iter()
        .any(|o| matches!(o, Op::Append { .. } | Op::Delay { .. }));
    let mut record = None;
    let mut out: Vec<Op> = ops
        .into_iter()
        .map(|op| match op {
            Op::Event(json) => {
                let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
                let event_id = v["event_id"].as_str().unwrap_or_default().to_owned();
                let key = record
                    .get_or_insert_with(|| {
                        keys.emitted(entry.partition, v["job_id"].as_str(), entry.origin())
                    })
                    .clone();
                Op::EventOnce {
                    record: key,
                    event_id,
                    json,
                }
            }
            other => other,
        })
        .collect();
    if let (Some(record), false) = (record, continues) {
        out.push(Op::ForgetEvents { record });
    }
    out
}

/// Why a job goes to the dead letters.
pub(super) struct Reason<'a> {
    pub(super) code: &'a str,
    pub(super) message: &'a str,
    pub(super) field: Option<&'a str>,
}

/// The `type` of an event op (the first field `Event` serializes), for the outcome counter.
pub(super) fn event_type(op: &Op) -> Option<&str> {
    match op {
        Op::Event(json) | Op::EventOnce { json, .. } => {
            json.strip_prefix(r#"{"type":""#)?.split('"').next()
        }
        _ => None,
    }
}
