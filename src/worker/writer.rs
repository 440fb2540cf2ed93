//! The completion writer and the set of entries a worker holds.

use std::sync::Arc;

use crate::channel_id::ChannelId;
use tokio::sync::mpsc;

use super::backoff;
use crate::keys::Partition;
use crate::metrics as m;
use crate::queue::{Completion, Queue};

/// Most completions written in one script call.
pub(super) const FINISH_BATCH: usize = 512;

/// The set of entry ids a worker holds, shared with its completion writer.
#[derive(Clone, Default)]
/// Entry ids are unique within one stream only: held by (partition, id).
pub(super) struct Held(Arc<std::sync::Mutex<std::collections::HashSet<(Partition, String)>>>);

impl Held {
    pub(super) fn add(&self, ids: impl Iterator<Item = (Partition, String)>) {
        if let Ok(mut set) = self.0.lock() {
            set.extend(ids);
        }
    }
    pub(super) fn remove<'a>(&self, ids: impl Iterator<Item = (Partition, &'a str)>) {
        if let Ok(mut set) = self.0.lock() {
            for (p, id) in ids {
                set.remove(&(p, id.to_owned()));
            }
        }
    }
    pub(super) fn contains(&self, p: Partition, id: &str) -> bool {
        self.0
            .lock()
            .map(|set| set.contains(&(p, id.to_owned())))
            .unwrap_or(false)
    }
    pub(super) fn ids(&self) -> Vec<(Partition, String)> {
        self.0
            .lock()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Writes completions in batches until every sender is gone. A batch that fails
/// is retried as it is: the script only records outcomes for entries it
/// acknowledges, so a retry after a lost reply cannot double an event.
pub(super) async fn write_completions(
    queue: Queue,
    kind: ChannelId,
    mut rx: mpsc::Receiver<Completion>,
    held: Held,
) {
    let mut batch = Vec::with_capacity(FINISH_BATCH);
    while rx.recv_many(&mut batch, FINISH_BATCH).await > 0 {
        let mut failures = 0;
        loop {
            match queue.finish(&batch).await {
                Ok(_) => {
                    held.remove(batch.iter().map(|c| (c.partition, c.id.as_str())));
                    break;
                }
                Err(e) => {
                    failures += 1;
                    metrics::counter!(m::REDIS_ERRORS, "op" => "finish").increment(1);
                    tracing::warn!(channel = %kind, error = %e, jobs = batch.len(), "recording outcomes failed; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
        batch.clear();
    }
}
