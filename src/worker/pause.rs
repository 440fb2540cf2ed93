//! Pausing a channel the provider refuses as a whole, and probing it afterwards.

use std::sync::atomic::Ordering;
use std::time::Duration;

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

    /// Sleeps out a pause; then the next job probes whether the provider accepts us
    /// again. False if the daemon is stopping.
    pub(super) async fn wait_while_paused(&self, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            let until = match self.paused.lock() {
                Ok(p) => p.as_ref().map(|(u, _)| *u),
                Err(_) => None,
            };
            let Some(until) = until else { return true };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = stop.changed() => return false,
            }
            if let Ok(mut p) = self.paused.lock() {
                if p.as_ref()
                    .is_some_and(|(u, _)| *u <= tokio::time::Instant::now())
                {
                    *p = None;
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
