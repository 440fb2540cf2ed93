//! Choosing by engagement profile before a send: the channel of a
//! `"channel": "best"` job, and the send time of a `"send_at": {"best_…"}` one.

use std::collections::BTreeMap;

use crate::channel_id::ChannelId;
use serde_json::{json, Value};

use super::ChannelWorker;
use crate::event::EventType;
use crate::job::{BestTime, Job};
use crate::metrics as m;
use crate::profile::choose::{best_time, rank_channels};
use crate::profile::Profile;
use crate::queue::{AppendTo, Completion, Entry, Op, Routing};

/// A best-time job whose time is now: how it was chosen.
pub(super) enum Timing {
    Now(&'static str),
    Done(Completion),
}

impl ChannelWorker {
    /// The customer's profile, decayed to now (`None` without a customer id or profile).
    async fn profile(&self, job: &Job) -> redis::RedisResult<Option<Profile>> {
        let Some(customer) = job.customer_id.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.queue.keys().profile(customer))
            .query_async(&mut self.queue.conn())
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let now = jiff::Timestamp::now().as_millisecond();
        Ok(Some(Profile::from_fields(
            &fields,
            now,
            self.profiles.half_life,
        )))
    }

    /// `"channel": "best"`: ranks the candidates that can reach the recipient by
    /// the profile and forwards the job to the best one's stream, the rest as its
    /// fallback. The choice is written into the job (`choice`) and so into its events.
    pub(super) async fn choose_channel(&self, entry: &Entry, job: &Job) -> Completion {
        let attempt = self.attempt(entry);
        let candidates: Vec<ChannelId> =
            job.channels.iter().filter_map(|c| c.parse().ok()).collect();
        let mut eligible = Vec::new();
        let mut skipped = Vec::new();
        for kind in candidates {
            let address = crate::channel::registry::plugin(kind).and_then(|p| p.address(&job.to));
            let why = if !self.enabled.contains(&kind) {
                Some("not enabled")
            } else if address.is_none() {
                Some("no address")
            } else {
                None
            };
            match why {
                Some(why) => skipped.push(json!({"channel": kind.as_str(), "why": why})),
                None => eligible.push(kind),
            }
        }
        let lookups: Vec<(ChannelId, String)> = eligible
            .iter()
            .map(|k| (*k, self.address_key(job, *k)))
            .collect();
        let suppressed = super::until_redis_answers(self.kind, "suppressions", || {
            self.queue.suppressed_many(&lookups)
        })
        .await;
        let mut reachable = Vec::new();
        for (kind, reason) in eligible.into_iter().zip(suppressed) {
            match reason {
                Some(r) => skipped.push(json!({"channel": kind.as_str(), "why": r})),
                None => reachable.push(kind),
            }
        }
        if reachable.is_empty() {
            let ev = self
                .event(entry, EventType::Failed, job, attempt)
                .with_error("no_channel", "no candidate channel can reach the recipient")
                .with("skipped", Value::Array(skipped));
            return self.complete(entry, vec![ev.into()]);
        }
        let profile = super::until_redis_answers(self.kind, "profiles", || self.profile(job)).await;
        let (ranked, rule) = rank_channels(
            profile.as_ref(),
            &reachable,
            self.profiles.min_reactions,
            self.profiles.explore,
            fastrand::f64(),
            fastrand::usize(..),
        );
        metrics::counter!(m::CHANNEL_CHOICES, "channel" => ranked[0].label(), "rule" => rule.as_str()).increment(1);
        let scores: serde_json::Map<String, Value> = ranked
            .iter()
            .map(|k| {
                let score = profile.as_ref().map(|p| p.channel_score(*k));
                (
                    k.as_str().to_owned(),
                    json!(score.map(|s| (s * 1000.0).round() / 1000.0)),
                )
            })
            .collect();
        let choice = json!({
            "channel": ranked[0].as_str(),
            "rule": rule.as_str(),
            "scores": scores,
            "skipped": skipped,
        });
        // The job as the chosen channel's worker will see it.
        let mut raw: Value = entry
            .job
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or(Value::Null);
        if let Value::Object(map) = &mut raw {
            map.insert("channel".into(), json!(ranked[0].as_str()));
            map.insert(
                "fallback".into(),
                json!(ranked[1..].iter().map(|k| k.as_str()).collect::<Vec<_>>()),
            );
            map.insert("choice".into(), choice);
        }
        let routing = Routing {
            attempt: 0,
            origin: Some(entry.origin().to_owned()),
            first_at_ms: Some(entry.first_at_ms()),
            hop: 0,
            slot_ms: None,
            scheduled: entry.routing.scheduled.clone(),
            redrive: entry.routing.redrive,
        };
        let forward = Op::Append {
            to: AppendTo::Jobs(ranked[0]),
            fields: routing.fields(&raw.to_string()),
        };
        self.complete(entry, vec![forward])
    }

    /// A best-time job not yet scheduled: the time it should go out, from the
    /// profile, outside quiet hours. Later than now: back to the delayed set until
    /// then, the rule kept with it for the `sent` event.
    pub(super) async fn best_timing(&self, entry: &Entry, job: &Job, best: &BestTime) -> Timing {
        let now = jiff::Timestamp::now();
        let window = match best.window(now) {
            Ok((from, to)) if from < to => (from, to),
            // The window is already over: send now rather than never.
            _ => return Timing::Now("window_passed"),
        };
        let profile = super::until_redis_answers(self.kind, "profiles", || self.profile(job)).await;
        let tz = job
            .to
            .timezone
            .as_deref()
            .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            .unwrap_or_else(|| self.policy.timezone().clone());
        let default_hour = jiff::civil::Time::strptime("%H:%M", &self.profiles.default_hour)
            .unwrap_or(jiff::civil::Time::constant(10, 0, 0, 0));
        let zone = job.to.timezone.as_deref();
        let quiet = |t: jiff::Timestamp| self.policy.quiet_until(self.kind, zone, t).ok().flatten();
        let (at, rule) = best_time(
            profile.as_ref(),
            window,
            &tz,
            self.profiles.min_reactions,
            default_hour,
            quiet,
        );
        if at.duration_since(now) <= jiff::SignedDuration::from_secs(30) {
            return Timing::Now(rule.as_str());
        }
        self.meters.count_outcome("scheduled");
        let mut routing = entry.routing.clone();
        routing.origin = Some(entry.origin().to_owned());
        routing.first_at_ms = Some(at.as_millisecond());
        routing.scheduled = Some(rule.as_str().to_owned());
        let raw = entry.job.clone().unwrap_or_default();
        Timing::Done(self.complete(
            entry,
            vec![Op::Delay {
                due_ms: at.as_millisecond(),
                channel: self.kind,
                fields: routing.fields(&raw),
            }],
        ))
    }
}
