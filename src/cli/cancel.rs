//! `tayori cancel`: stop a campaign or a job, list the active cancels, lift one.

use anyhow::{bail, Context};

use crate::cancel::{Cancel, Target};
use crate::config::Config;
use crate::queue::Queue;

/// How long a cancel lasts when `--until` is not given: a campaign's
/// enqueueing rarely runs longer, and a forgotten cancel must not stop next
/// week's campaign of the same name.
const DEFAULT_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub struct NewCancel<'a> {
    pub target: Target,
    pub reason: &'a str,
    pub by: Option<&'a str>,
    pub until: Option<&'a str>,
}

/// `--until`: an RFC 3339 time, or a duration from now (`48h`, `7d`).
pub fn parse_until(s: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let d = crate::units::duration::parse(s).map_err(|_| {
        anyhow::anyhow!(
            "--until {s:?}: write an RFC 3339 time (2027-03-01T09:00:00+09:00) or a duration from now (48h, 7d)"
        )
    })?;
    let d = jiff::SignedDuration::try_from(d).context("--until: too far")?;
    now.checked_add(d).context("--until: too far")
}

/// Who cancels, when `--by` is not given: the user and host, as `who` shows them.
fn default_by() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    match host.is_empty() {
        true => user,
        false => format!("{user}@{host}"),
    }
}

/// Builds the cancel `tayori cancel` (or the HTTP API) records.
pub fn make(new: &NewCancel<'_>, now: jiff::Timestamp) -> anyhow::Result<Cancel> {
    if new.reason.trim().is_empty() {
        bail!("--reason is required: say why (it goes into every `cancelled` event)");
    }
    if new.target.id().is_empty() {
        bail!("the campaign or job id is empty");
    }
    let until = match new.until {
        Some(s) => parse_until(s, now)?,
        None => now + jiff::SignedDuration::try_from(DEFAULT_FOR)?,
    };
    if until <= now {
        bail!("--until {until} is not in the future");
    }
    Ok(Cancel {
        reason: new.reason.to_owned(),
        by: new.by.map_or_else(default_by, str::to_owned),
        at_ms: now.as_millisecond(),
        until_ms: until.as_millisecond(),
    })
}

pub async fn cancel(config: &Config, new: NewCancel<'_>) -> anyhow::Result<i32> {
    let cancel = make(&new, jiff::Timestamp::now())?;
    let q = super::dead::open(config).await?;
    q.set_cancel(&new.target, &cancel).await?;
    println!(
        "cancelled {} until {} ({}); every daemon stops its jobs within seconds",
        new.target,
        show_ms(cancel.until_ms),
        cancel.reason
    );
    Ok(0)
}

/// The active cancels, as `--list` prints them.
pub async fn active(q: &Queue) -> anyhow::Result<Vec<(Target, Cancel)>> {
    let now = jiff::Timestamp::now().as_millisecond();
    let mut all: Vec<(Target, Cancel)> = q
        .cancels()
        .await?
        .into_iter()
        .filter(|(_, c)| c.active_at(now))
        .filter_map(|(f, c)| Some((Target::from_field(&f)?, c)))
        .collect();
    all.sort_by_key(|(_, c)| c.at_ms);
    Ok(all)
}

pub async fn list(config: &Config, json: bool) -> anyhow::Result<i32> {
    let q = super::dead::open(config).await?;
    let all = active(&q).await?;
    if json {
        for (t, c) in &all {
            println!("{}", listed_json(t, c));
        }
        return Ok(0);
    }
    if all.is_empty() {
        println!("no active cancels");
        return Ok(0);
    }
    for line in table(&all) {
        println!("{line}");
    }
    Ok(0)
}

/// One active cancel as JSON (`--list --json`, `tayori stats --json`).
pub fn listed_json(t: &Target, c: &Cancel) -> serde_json::Value {
    let (kind, channel) = match t {
        Target::Campaign { channel, .. } => ("campaign", channel.map(|c| c.label())),
        Target::Job { .. } => ("job", None),
    };
    serde_json::json!({
        "cancel": kind,
        "id": t.id(),
        "channel": channel,
        "reason": c.reason,
        "by": c.by,
        "at": show_ms(c.at_ms),
        "until": show_ms(c.until_ms),
    })
}

/// The table `--list` and `tayori stats` print.
pub fn table(all: &[(Target, Cancel)]) -> Vec<String> {
    let mut out = vec![format!(
        "{:<40} {:<25} {:<25} {:<20} reason",
        "cancelled", "since", "until", "by"
    )];
    for (t, c) in all {
        out.push(format!(
            "{:<40} {:<25} {:<25} {:<20} {}",
            t.to_string(),
            show_ms(c.at_ms),
            show_ms(c.until_ms),
            c.by,
            c.reason
        ));
    }
    out
}

pub async fn lift(config: &Config, id: &str) -> anyhow::Result<i32> {
    let q = super::dead::open(config).await?;
    let fields: Vec<String> = q
        .cancels()
        .await?
        .into_keys()
        .filter(|f| Target::from_field(f).is_some_and(|t| t.id() == id))
        .collect();
    let lifted = q.remove_cancels(&fields).await?;
    if lifted == 0 {
        eprintln!("no cancel of a campaign or job {id:?} (see `tayori cancel --list`)");
        return Ok(1);
    }
    for f in &fields {
        if let Some(t) = Target::from_field(f) {
            println!("lifted: {t}");
        }
    }
    println!("jobs already cancelled stay cancelled; jobs enqueued from now on are sent");
    Ok(0)
}

fn show_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.0}"))
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_a_time_or_a_duration_from_now() {
        let now: jiff::Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            parse_until("48h", now).unwrap().to_string(),
            "2027-01-03T00:00:00Z"
        );
        assert_eq!(
            parse_until("2027-03-01T09:00:00+09:00", now)
                .unwrap()
                .to_string(),
            "2027-03-01T00:00:00Z"
        );
        assert!(parse_until("tomorrow", now).is_err());
    }

    #[test]
    fn a_cancel_needs_a_reason_and_a_future_end() {
        let now: jiff::Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let new = |reason, until| NewCancel {
            target: Target::Job { id: "j1".into() },
            reason,
            by: Some("ops"),
            until,
        };
        assert!(make(&new("", None), now).is_err());
        let c = make(&new("wrong template", None), now).unwrap();
        assert_eq!(c.until_ms - c.at_ms, 24 * 3600 * 1000);
        assert!(make(&new("x", Some("2026-01-01T00:00:00Z")), now).is_err());
    }
}
