//! Keeps this daemon's [`CancelBook`] current, prunes lapsed cancels, and makes
//! cancelled jobs in the delayed set due at once.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use crate::cancel::CancelBook;
use crate::channel_id::ChannelId;
use crate::metrics as m;
use crate::queue::Queue;

/// How often the book is refreshed: a job waiting for a rate permit ends at
/// most this long after its cancel (one `HGETALL` of a small hash per second
/// per daemon).
pub const REFRESH: Duration = Duration::from_secs(1);

/// After a new cancel the delayed sets are swept again this much later: a
/// worker whose book was not yet refreshed may have put a job of the campaign
/// there meanwhile (a retry, a reserved domain slot).
const RESWEEP_AFTER: Duration = Duration::from_secs(3);

/// Refreshes `book` until `stop`; sweeps the delayed sets whenever a cancel is
/// new. Every daemon sweeps (the sweep only moves scores, so two sweeps do no
/// harm); a sweep costs one `ZSCAN` pass over the delayed sets.
pub async fn run(queue: Queue, book: Arc<CancelBook>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resweep: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let all = match queue.cancels().await {
            Ok(all) => all,
            Err(e) => {
                metrics::counter!(m::REDIS_ERRORS, "op" => "cancels").increment(1);
                tracing::debug!(error = %e, "could not read the cancels");
                continue;
            }
        };
        let now = jiff::Timestamp::now().as_millisecond();
        let (active, lapsed): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|(_, c)| c.active_at(now));
        if !lapsed.is_empty() {
            let fields: Vec<String> = lapsed.into_iter().map(|(f, _)| f).collect();
            if let Err(e) = queue.remove_cancels(&fields).await {
                tracing::debug!(error = %e, "could not prune lapsed cancels");
            }
        }
        let added = book.replace(active.into_iter().collect());
        let due_again = resweep.is_some_and(|at| at <= tokio::time::Instant::now());
        if added || due_again {
            resweep = added.then(|| tokio::time::Instant::now() + RESWEEP_AFTER);
            match sweep(&queue, &book).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "cancelled jobs in the delayed set made due"),
                Err(e) => {
                    metrics::counter!(m::REDIS_ERRORS, "op" => "cancels").increment(1);
                    tracing::warn!(error = %e, "sweeping the delayed set for cancelled jobs failed");
                    // Try again next round.
                    resweep = Some(tokio::time::Instant::now());
                }
            }
        }
    }
}

/// What a delayed member says of its job: the channel it goes back to and the
/// job's id and campaign (the rest of the job is not parsed).
#[derive(Deserialize)]
struct Member<'a> {
    c: &'a str,
    f: Vec<String>,
}

#[derive(Deserialize)]
struct JobIds {
    id: String,
    #[serde(default)]
    campaign: Option<String>,
}

/// Whether a delayed member is a job the book cancels.
fn cancelled(book: &CancelBook, member: &str) -> bool {
    let Ok(m) = serde_json::from_str::<Member>(member) else {
        return false;
    };
    let Ok(channel) = ChannelId::parse(m.c) else {
        return false;
    };
    let Some(job) =
        m.f.chunks_exact(2)
            .find(|kv| kv[0] == "job")
            .map(|kv| kv[1].as_str())
    else {
        return false;
    };
    let Ok(ids) = serde_json::from_str::<JobIds>(job) else {
        return false;
    };
    // Any active cancel: a delayed job is checked again when it comes back.
    book.find(&ids.id, ids.campaign.as_deref(), channel, None)
        .is_some()
}

/// One pass over every partition's delayed set; returns the jobs made due.
async fn sweep(queue: &Queue, book: &CancelBook) -> crate::queue::RedisResult<usize> {
    let mut hurried = 0;
    for p in queue.keys().all_partitions() {
        let mut cursor = 0;
        loop {
            let (next, members) = queue.scan_delayed(p, cursor).await?;
            let mine: Vec<String> = members.into_iter().filter(|m| cancelled(book, m)).collect();
            hurried += queue.hurry_delayed(p, &mine).await?;
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(hurried)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::{Cancel, Target};

    #[test]
    fn a_delayed_member_is_matched_by_its_job_id_and_campaign() {
        let book = CancelBook::default();
        let mut m = std::collections::HashMap::new();
        m.insert(
            Target::Campaign {
                id: "spring".into(),
                channel: None,
            }
            .field(),
            Cancel {
                reason: "r".into(),
                by: "b".into(),
                at_ms: 0,
                until_ms: i64::MAX,
            },
        );
        book.replace(m);
        let member = |job: &str| {
            serde_json::json!({"c": "email", "f": ["attempt", "1", "job", job]}).to_string()
        };
        assert!(cancelled(
            &book,
            &member(r#"{"id":"j1","campaign":"spring","channel":"email"}"#)
        ));
        assert!(!cancelled(
            &book,
            &member(r#"{"id":"j1","campaign":"autumn","channel":"email"}"#)
        ));
        assert!(!cancelled(&book, &member("not json")));
        assert!(!cancelled(&book, "not a member"));
    }
}
