//! The sending policy, applied before a send: quiet hours in the recipient's
//! time zone, then frequency caps per customer (counted atomically in Redis).
//! Transactional jobs — `"kind": "transactional"`, or a template marked
//! `transactional = true` — are exempt from both.

use std::time::Duration;

use tayori_channels::SendError;

use super::ChannelWorker;
use crate::event::EventType;
use crate::job::{Job, JobKind};
use crate::metrics as m;
use crate::policy::{CapVerdict, OnCap};
use crate::queue::{Completion, Entry};

/// What the policy decided for a job.
pub(super) enum Gate {
    /// Send; `counted` when the job took a slot of a frequency cap.
    Send { counted: bool },
    /// Held back: deferred, suppressed or failed.
    Done(Completion),
}

impl ChannelWorker {
    pub(super) async fn policy_gate(&self, entry: &Entry, job: &Job, attempt: u32) -> Gate {
        if self.is_transactional(job) {
            return Gate::Send { counted: false };
        }
        let now = jiff::Timestamp::now();
        match self
            .policy
            .quiet_until(self.kind, job.to.timezone.as_deref(), now)
        {
            Err(message) => {
                let ev = self
                    .event(entry, EventType::Failed, job, attempt)
                    .with_error("invalid_job", &format!("to.timezone: {message}"));
                return Gate::Done(self.complete(entry, vec![ev.into()]));
            }
            Ok(Some(until)) => {
                metrics::counter!(m::POLICY_HELD, "channel" => self.kind.label(), "reason" => "quiet_hours").increment(1);
                // Rounded up to the next millisecond: never due a moment early.
                let wait = until.duration_since(now).unsigned_abs() + Duration::from_millis(1);
                let err = SendError::transient(
                    "quiet_hours",
                    format!("inside the recipient's quiet hours until {until}"),
                );
                return Gate::Done(self.defer(
                    entry,
                    job,
                    attempt,
                    &err,
                    wait,
                    attempt.saturating_sub(1),
                ));
            }
            Ok(None) => {}
        }
        let customer = job.customer_id.as_deref().unwrap_or("");
        if customer.is_empty() || !self.policy.has_caps(self.kind) {
            return Gate::Send { counted: false };
        }
        // Counting is idempotent per job id, so a retry after a lost reply counts once.
        let verdict = super::until_redis_answers(self.kind, "frequency_cap", || async {
            self.policy
                .check_and_count(
                    &mut self.queue.conn(),
                    self.queue.keys(),
                    self.kind,
                    customer,
                    &job.id,
                    now.as_millisecond(),
                )
                .await
        })
        .await;
        match verdict {
            CapVerdict::Allowed => Gate::Send { counted: true },
            CapVerdict::Capped { until_ms, cap } => {
                metrics::counter!(m::POLICY_HELD, "channel" => self.kind.label(), "reason" => "frequency_cap").increment(1);
                match job.cap.unwrap_or(self.policy.on_cap()) {
                    OnCap::Drop => {
                        let ev = self
                            .event(entry, EventType::Suppressed, job, attempt)
                            .with("reason", "frequency_cap")
                            .with("cap", cap);
                        Gate::Done(self.complete(entry, vec![ev.into()]))
                    }
                    OnCap::Defer => {
                        let wait = Duration::from_millis(
                            u64::try_from(until_ms - now.as_millisecond()).unwrap_or(0),
                        );
                        let err = SendError::transient(
                            "frequency_cap",
                            format!("the customer reached {cap}"),
                        );
                        Gate::Done(self.defer(
                            entry,
                            job,
                            attempt,
                            &err,
                            wait,
                            attempt.saturating_sub(1),
                        ))
                    }
                }
            }
        }
    }

    /// Gives back a cap slot the job took but did not use (the send did not happen).
    pub(super) fn uncount(&self, job: &Job) {
        let Some(customer) = job.customer_id.clone() else {
            return;
        };
        let (policy, queue, kind, job_id) = (
            self.policy.clone(),
            self.queue.clone(),
            self.kind,
            job.id.clone(),
        );
        tokio::spawn(async move {
            let r = policy
                .uncount(&mut queue.conn(), queue.keys(), kind, &customer, &job_id)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "could not give back a frequency-cap slot");
            }
        });
    }

    fn is_transactional(&self, job: &Job) -> bool {
        job.kind == Some(JobKind::Transactional) || self.templates.options(job).transactional
    }
}
