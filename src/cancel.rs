//! Cancels: the operator's kill switch for a campaign (on every channel or on
//! one) or for a single job.
//!
//! A cancel is a field of the hash `P:cancels` ([`crate::keys`]): its
//! [`Target`] as the field, a [`Cancel`] (why, who, when, until) as JSON. Every
//! job is checked against it twice:
//!
//! - in the same round trip as its dedupe claim (`Queue::claim` reads the
//!   job's three possible fields with one `HMGET` per batch), so a job enqueued
//!   after the cancel never starts;
//! - against this daemon's copy, the [`CancelBook`], refreshed every second by
//!   [`crate::cancel_sweeper`], while the job waits for a rate permit and before it is
//!   handed to the provider.
//!
//! Jobs that wait in the delayed set (scheduled ahead, retrying, put aside by a
//! throttled domain) are made due at once by the sweeper, so they come back to
//! a worker within a poll and end there, `cancelled`, through the ordinary
//! finish script (one event, acknowledged once).

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::channel_id::ChannelId;

/// What a cancel stops.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every job of the campaign; on one channel only when `channel` is set.
    Campaign {
        id: String,
        channel: Option<ChannelId>,
    },
    /// One job (every channel it goes through).
    Job { id: String },
}

/// The field separator: channel names are `[a-z0-9_]`, so the id (anything)
/// goes last and the field splits unambiguously.
const SEP: char = '/';
/// The channel part of a campaign cancel on every channel.
const EVERY_CHANNEL: &str = "*";

impl Target {
    /// The field of `P:cancels` this target is stored under.
    pub fn field(&self) -> String {
        match self {
            Target::Campaign { id, channel } => {
                let ch = channel.as_ref().map_or(EVERY_CHANNEL, |c| c.as_str());
                format!("campaign{SEP}{ch}{SEP}{id}")
            }
            Target::Job { id } => format!("job{SEP}{id}"),
        }
    }

    /// The target a field names; `None` for a field this build does not know.
    pub fn from_field(field: &str) -> Option<Target> {
        let (kind, rest) = field.split_once(SEP)?;
        match kind {
            "job" => Some(Target::Job { id: rest.into() }),
            "campaign" => {
                let (ch, id) = rest.split_once(SEP)?;
                let channel = match ch {
                    EVERY_CHANNEL => None,
                    name => Some(ChannelId::parse(name).ok()?),
                };
                Some(Target::Campaign {
                    id: id.into(),
                    channel,
                })
            }
            _ => None,
        }
    }

    /// The campaign or job id.
    pub fn id(&self) -> &str {
        match self {
            Target::Campaign { id, .. } | Target::Job { id } => id,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Campaign { id, channel: None } => write!(f, "campaign {id}"),
            Target::Campaign {
                id,
                channel: Some(c),
            } => write!(f, "campaign {id} on {c}"),
            Target::Job { id } => write!(f, "job {id}"),
        }
    }
}

/// The fields a job can be cancelled by, most specific first: its own id, its
/// campaign on this channel, its campaign on every channel.
pub fn fields_for(job_id: &str, campaign: Option<&str>, channel: ChannelId) -> Vec<String> {
    let mut fields = vec![Target::Job { id: job_id.into() }.field()];
    if let Some(c) = campaign {
        fields.push(
            Target::Campaign {
                id: c.into(),
                channel: Some(channel),
            }
            .field(),
        );
        fields.push(
            Target::Campaign {
                id: c.into(),
                channel: None,
            }
            .field(),
        );
    }
    fields
}

/// One cancel: the operator's reason, who and when, and until when jobs that
/// arrive later are cancelled too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    pub reason: String,
    pub by: String,
    /// When it was made (Unix ms).
    pub at_ms: i64,
    /// When it lapses (Unix ms): jobs checked after that are not cancelled.
    pub until_ms: i64,
}

impl Cancel {
    pub fn active_at(&self, now_ms: i64) -> bool {
        now_ms < self.until_ms
    }

    pub fn from_json(json: &[u8]) -> Option<Cancel> {
        serde_json::from_slice(json).ok()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// This daemon's copy of the active cancels, with a signal for jobs that wait.
///
/// A job checks the book only for cancels the book learned after the job's
/// dedupe claim read Redis (`since`): the claim's answer is newer than anything
/// the book knew before it, so a cancel lifted meanwhile does not stop the job.
pub struct CancelBook {
    /// Field → cancel and when this daemon first saw it; only active ones.
    active: RwLock<HashMap<String, (Cancel, Instant)>>,
    /// Bumped when a cancel is added, so waiting jobs look again.
    added: watch::Sender<u64>,
}

impl Default for CancelBook {
    fn default() -> Self {
        CancelBook {
            active: RwLock::new(HashMap::new()),
            added: watch::channel(0).0,
        }
    }
}

impl CancelBook {
    /// Replaces the copy with what Redis holds (already filtered to active ones).
    /// True when a field is new or changed: the sweeper then sweeps.
    pub fn replace(&self, now: HashMap<String, Cancel>) -> bool {
        let Ok(mut active) = self.active.write() else {
            return false;
        };
        let seen = Instant::now();
        let mut added = false;
        let next = now
            .into_iter()
            .map(|(f, c)| {
                let first_seen = match active.get(&f) {
                    Some((old, at)) if *old == c => *at,
                    _ => {
                        added = true;
                        seen
                    }
                };
                (f, (c, first_seen))
            })
            .collect();
        *active = next;
        drop(active);
        if added {
            self.added.send_modify(|v| *v += 1);
        }
        added
    }

    pub fn is_empty(&self) -> bool {
        self.active.read().map_or(true, |a| a.is_empty())
    }

    /// The cancel that applies to a job on a channel, if one does now and this
    /// daemon learned of it at `since` or later (any time: `None`).
    pub fn find(
        &self,
        job_id: &str,
        campaign: Option<&str>,
        channel: ChannelId,
        since: Option<Instant>,
    ) -> Option<Applied> {
        let active = self.active.read().ok()?;
        if active.is_empty() {
            return None;
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let fields = fields_for(job_id, campaign, channel);
        let found = fields.iter().map(|f| {
            let c = active
                .get(f)
                .filter(|(_, seen)| since.is_none_or(|since| *seen >= since))
                .map(|(c, _)| c);
            (f.as_str(), c)
        });
        first_active(found, now)
    }

    /// Resolves when a cancel applies to the job (never, if none comes): raced
    /// against a wait the job should not sit out once it is cancelled.
    pub async fn wait_for(
        &self,
        job_id: &str,
        campaign: Option<&str>,
        channel: ChannelId,
        since: Instant,
    ) -> Applied {
        let mut added = self.added.subscribe();
        loop {
            if let Some(c) = self.find(job_id, campaign, channel, Some(since)) {
                return c;
            }
            if added.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A cancel that stops a job, and what it was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub target: Target,
    pub cancel: Cancel,
}

impl Applied {
    /// The event's `cancel` field: `campaign` or `job`.
    pub fn scope(&self) -> &'static str {
        match self.target {
            Target::Campaign { .. } => "campaign",
            Target::Job { .. } => "job",
        }
    }
}

/// The first cancel active now among a job's fields (`fields_for`, most
/// specific first) and what was found for each.
pub fn first_active<'a>(
    found: impl IntoIterator<Item = (&'a str, Option<&'a Cancel>)>,
    now_ms: i64,
) -> Option<Applied> {
    found.into_iter().find_map(|(field, c)| {
        let cancel = c.filter(|c| c.active_at(now_ms))?;
        Some(Applied {
            target: Target::from_field(field)?,
            cancel: cancel.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_whatever_the_id_holds() {
        let email = ChannelId::parse("email").unwrap();
        for t in [
            Target::Job { id: "a/b/c".into() },
            Target::Campaign {
                id: "spring/2027 セール".into(),
                channel: None,
            },
            Target::Campaign {
                id: "x/*/y".into(),
                channel: Some(email),
            },
        ] {
            assert_eq!(Target::from_field(&t.field()), Some(t.clone()), "{t}");
        }
        assert_eq!(Target::from_field("nonsense"), None);
        assert_eq!(Target::from_field("campaign/no-such-channel!/x"), None);
    }

    #[test]
    fn a_job_is_found_by_its_id_its_campaign_here_or_everywhere() {
        let email = ChannelId::parse("email").unwrap();
        let line = ChannelId::parse("line").unwrap();
        let book = CancelBook::default();
        let c = |until_ms| Cancel {
            reason: "wrong template".into(),
            by: "ops".into(),
            at_ms: 0,
            until_ms,
        };
        let far = i64::MAX;
        let mut m = HashMap::new();
        m.insert(
            Target::Campaign {
                id: "spring".into(),
                channel: Some(email),
            }
            .field(),
            c(far),
        );
        m.insert(Target::Job { id: "j9".into() }.field(), c(far));
        m.insert(
            Target::Campaign {
                id: "old".into(),
                channel: None,
            }
            .field(),
            c(1),
        );
        let before = Instant::now();
        assert!(book.replace(m.clone()));
        assert!(!book.replace(m), "the same set again adds nothing");
        assert!(book
            .find("j1", Some("spring"), email, Some(before))
            .is_some());
        assert!(book
            .find("j1", Some("spring"), line, Some(before))
            .is_none());
        assert!(book.find("j9", None, line, Some(before)).is_some());
        assert!(
            book.find("j1", Some("old"), email, Some(before)).is_none(),
            "lapsed"
        );
        assert!(book.find("j1", None, email, Some(before)).is_none());
        let after = Instant::now() + std::time::Duration::from_millis(1);
        assert!(
            book.find("j9", None, line, Some(after)).is_none(),
            "a cancel known before the job's claim read Redis is the claim's to apply"
        );
    }
}
