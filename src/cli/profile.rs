//! `tayori profile CUSTOMER_ID`: what Tayori has learned about one customer.

use std::collections::BTreeMap;

use crate::channel_id::ChannelId;
use serde_json::json;

use crate::config::Config;
use crate::profile::{Profile, HOURS};

/// Hours shown as the customer's best.
const TOP_HOURS: usize = 5;

pub async fn show(
    config: &Config,
    customer_id: &str,
    timezone: Option<&str>,
    json_out: bool,
) -> anyhow::Result<i32> {
    let tz_name = timezone.unwrap_or(&config.policy.timezone);
    let tz = jiff::tz::TimeZone::get(tz_name).map_err(|_| {
        anyhow::anyhow!("unknown time zone {tz_name:?}: use an IANA name such as \"Asia/Tokyo\"")
    })?;
    let q = super::dead::open(config).await?;
    let fields: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(config.redis.keys().profile(customer_id))
        .query_async(&mut q.conn())
        .await?;
    if fields.is_empty() {
        eprintln!(
            "no profile for {customer_id:?} (no events with this customer_id yet, or it expired)"
        );
        return Ok(1);
    }
    let now = jiff::Timestamp::now();
    let p = Profile::from_fields(&fields, now.as_millisecond(), config.profiles.half_life);
    let hours = top_hours(&p, &tz, now);
    let channels: Vec<_> = crate::channel::registry::ids()
        .filter(|k| {
            p.sent.contains_key(k) || p.reactions.contains_key(k) || p.refusals.contains_key(k)
        })
        .map(|k| {
            let get = |m: &BTreeMap<ChannelId, f64>| m.get(&k).copied().unwrap_or(0.0);
            (
                k.label(),
                get(&p.sent),
                get(&p.reactions),
                get(&p.refusals),
                p.channel_score(k),
            )
        })
        .collect();
    if json_out {
        let doc = json!({
            "customer_id": customer_id,
            "timezone": tz_name,
            "updated_at": p.updated_ms.and_then(|t| jiff::Timestamp::from_millisecond(t).ok()).map(|t| t.to_string()),
            "reactions": round(p.total_reactions()),
            "channels": channels.iter().map(|(c, s, r, x, score)| json!({
                "channel": c, "sent": round(*s), "reactions": round(*r), "refusals": round(*x), "score": round(*score)
            })).collect::<Vec<_>>(),
            "best_hours": hours.iter().map(|(label, w)| json!({"hour": label, "reactions": round(*w)})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    println!(
        "customer {customer_id}: {:.1} reactions (decayed to now, half-life {})",
        p.total_reactions(),
        jiff::SignedDuration::try_from(config.profiles.half_life)
            .map(|d| format!("{:#}", d))
            .unwrap_or_default()
    );
    println!();
    println!(
        "{:<8} {:>8} {:>10} {:>9} {:>7}",
        "channel", "sent", "reactions", "refusals", "score"
    );
    for (c, s, r, x, score) in &channels {
        println!("{c:<8} {s:>8.1} {r:>10.1} {x:>9.1} {score:>7.3}");
    }
    println!();
    println!("best hours ({tz_name}):");
    for (label, w) in &hours {
        println!("  {label}  {w:.1}");
    }
    Ok(0)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The hours of the week with the most reactions, in `tz` ("Tue 20:00").
fn top_hours(p: &Profile, tz: &jiff::tz::TimeZone, now: jiff::Timestamp) -> Vec<(String, f64)> {
    // The UTC hour-of-week slots, labelled by an instant of this week in that slot.
    let this_monday = now.as_second()
        - crate::profile::hour_of_week(now.as_millisecond()) as i64 * 3600
        - now.as_second().rem_euclid(3600);
    let mut ranked: Vec<(usize, f64)> = (0..HOURS)
        .map(|h| (h, p.hours[h]))
        .filter(|(_, w)| *w > 0.0)
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
        .into_iter()
        .take(TOP_HOURS)
        .filter_map(|(h, w)| {
            let at = jiff::Timestamp::from_second(this_monday + h as i64 * 3600).ok()?;
            Some((at.to_zoned(tz.clone()).strftime("%a %H:00").to_string(), w))
        })
        .collect()
}
