//! Pausing a channel the provider refuses as a whole, and probing it afterwards.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tayori_channels::SendError;

/// How long a quota reading that finds the month used up pauses the channel
/// (as long as LINE's monthly-limit 429 does): a reading with room ends it earlier.
const QUOTA_PAUSE: Duration = Duration::from_secs(3600);
use tokio::sync::watch;

use super::ChannelWorker;
use crate::metrics as m;

impl ChannelWorker {
    /// Why the channel is paused, if it is.
    pub(super) fn pause_reason(&self) -> Option<String> {
        self.paused
            .lock()
            .ok()?
            .as_ref()
            .map(|(_, code)| code.clone())
    }

    pub(super) fn pause_for(&self, wait: Duration, code: &str, message: &str) {
        let until = tokio::time::Instant::now() + wait;
        let Ok(mut paused) = self.paused.lock() else {
            return;
        };
        if paused.as_ref().is_some_and(|(u, _)| *u >= until) {
            return;
        }
        if paused.is_none() {
            metrics::counter!(m::PAUSES, "channel" => self.kind.label(), "reason" => code.to_owned()).increment(1);
            metrics::gauge!(m::CHANNEL_PAUSED, "channel" => self.kind.label()).set(1.0);
            tracing::warn!(channel = %self.kind, code, millis = wait.as_millis() as u64, "channel paused: {message}; jobs stay queued");
        }
        *paused = Some((until, code.to_owned()));
        // Best effort: only `tayori stats` reads it, and a lost write is harmless.
        let (queue, kind, code) = (self.queue.clone(), self.kind, code.to_owned());
        tokio::spawn(async move {
            if let Err(e) = queue.record_pause(kind, &code, wait).await {
                tracing::debug!(channel = %kind, error = %e, "could not record the pause in Redis");
            }
        });
    }

    /// Pauses the channel for a used-up monthly quota (a send's answer).
    pub(super) fn pause_for_quota(&self, wait: Duration, code: &str, message: &str) {
        self.quota_paused.store(true, Ordering::Relaxed);
        self.pause_for(wait, code, message);
    }

    /// A quota reading (`line_reads`, through the daemon): used up, the channel
    /// pauses as for LINE's 429; with room again (a new month, a raised limit),
    /// a pause an earlier reading started ends now. A pause a send's 429 started
    /// runs its time: LINE's answer outranks a reading, which may lag.
    pub fn quota_reading(&self, used_up: bool) {
        let Some(code) = self.quota_code else {
            return;
        };
        if used_up {
            self.pause_for_quota(
                QUOTA_PAUSE,
                code,
                "the quota reading says this month's messages are used up",
            );
            self.quota_by_reading.store(true, Ordering::Relaxed);
            return;
        }
        if !self.quota_by_reading.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Ok(mut p) = self.paused.lock() {
            if let Some((until, _)) = p.as_mut() {
                *until = tokio::time::Instant::now();
            }
        }
        // The pause every daemon sees (`rate_scope = "global"`, `tayori stats`) too.
        let (queue, kind, code) = (self.queue.clone(), self.kind, code.to_owned());
        tokio::spawn(async move {
            if let Err(e) = queue.end_pause(kind, &code).await {
                tracing::debug!(channel = %kind, error = %e, "could not end the pause in Redis");
            }
        });
    }

    /// While the channel is paused for its quota: the error a job gets without
    /// calling the provider, waiting until the pause ends.
    pub(super) fn quota_pause(&self) -> Option<SendError> {
        if !self.quota_paused.load(Ordering::Relaxed) {
            return None;
        }
        let (until, code) = self.paused.lock().ok()?.clone()?;
        // Over, and not yet cleared by the reader: the job may go.
        let left = until.checked_duration_since(tokio::time::Instant::now())?;
        Some(SendError::QuotaExhausted {
            code,
            message: "the channel's monthly quota is used up".into(),
            retry_after: Some(left.max(Duration::from_millis(1))),
        })
    }

    /// Sleeps out a pause; then the next job probes whether the provider accepts us
    /// again. False if the daemon is stopping. A quota pause with
    /// `on_quota = "fallback"` is not slept out: jobs keep being read, so those
    /// with a fallback move on to it (the others are put back until the pause ends).
    pub(super) async fn wait_while_paused(&self, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            let until = match self.paused.lock() {
                Ok(p) => p.as_ref().map(|(u, _)| *u),
                Err(_) => None,
            };
            let Some(until) = until else { return true };
            let reading_on = self.falls_back_on_quota && self.quota_paused.load(Ordering::Relaxed);
            if reading_on && until > tokio::time::Instant::now() {
                // Not a busy loop: the reader blocks in XREADGROUP for new jobs.
                return true;
            }
            if !reading_on {
                // A second at a time: a quota reading may end the pause early.
                let next = until.min(tokio::time::Instant::now() + Duration::from_secs(1));
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stop.changed() => return false,
                }
            }
            if let Ok(mut p) = self.paused.lock() {
                if p.as_ref()
                    .is_some_and(|(u, _)| *u <= tokio::time::Instant::now())
                {
                    *p = None;
                    self.quota_paused.store(false, Ordering::Relaxed);
                    self.quota_by_reading.store(false, Ordering::Relaxed);
                    self.probing.store(true, Ordering::Relaxed);
                    metrics::gauge!(m::CHANNEL_PAUSED, "channel" => self.kind.label()).set(0.0);
                    tracing::info!(channel = %self.kind, "pause over: trying the provider again");
                }
            }
        }
    }

    /// While probing, waits until the probe in flight has its outcome. False if stopping.
    pub(super) async fn wait_for_probe(&self, stop: &mut watch::Receiver<bool>) -> bool {
        while self.probing.load(Ordering::Relaxed) && self.in_flight() > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stop.changed() => return false,
            }
        }
        true
    }
}
