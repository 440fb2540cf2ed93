//! `tayori stats`: per channel backlog, pending, stream length and consumers, over
//! every partition, then the active cancels. `--json` prints the same figures
//! under the same names as the table's columns (`cancels`: as `tayori cancel
//! --list --json` prints them). Each channel's last quota reading too (LINE's),
//! when a daemon made one (`quotas` in JSON, by channel: `limit`, null when the
//! provider sets none, `used`, `read_at`).

use crate::config::Config;

pub async fn run(config: &Config, json: bool) -> anyhow::Result<i32> {
    let q = super::dead::open(config).await?;
    let s = q
        .stats_detailed(&crate::channel::registry::ids().collect::<Vec<_>>())
        .await?;
    let cancels = super::cancel::active(&q).await?;
    let mut quotas = Vec::new();
    for kind in crate::channel::registry::ids() {
        if let Some(reading) = q.quota_reading(kind).await? {
            quotas.push((kind, reading));
        }
    }
    if json {
        let mut v = serde_json::to_value(&s)?;
        if let Some(obj) = v.as_object_mut() {
            let listed = cancels
                .iter()
                .map(|(t, c)| super::cancel::listed_json(t, c))
                .collect();
            obj.insert("cancels".into(), serde_json::Value::Array(listed));
        }
        if let (Some(obj), false) = (v.as_object_mut(), quotas.is_empty()) {
            let by_channel: serde_json::Map<String, serde_json::Value> = quotas
                .iter()
                .map(|(k, r)| Ok((k.label().to_owned(), serde_json::to_value(r)?)))
                .collect::<Result<_, serde_json::Error>>()?;
            obj.insert("quotas".into(), by_channel.into());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10}  state",
        "channel", "backlog", "pending", "stream", "consumers"
    );
    for c in &s.channels {
        let state = match &c.paused {
            Some(p) => format!(
                "paused ({}, {} s left)",
                p.reason,
                p.remaining_ms.div_ceil(1000)
            ),
            None => "flowing".to_owned(),
        };
        println!(
            "{:<8} {:>10} {:>10} {:>10} {:>10}  {state}",
            c.channel, c.backlog, c.pending, c.stream_length, c.consumers
        );
    }
    println!(
        "delayed {}   delayed_due {}   dead_letters {}   results {}",
        s.delayed, s.delayed_due, s.dead_letters, s.results
    );
    for (kind, reading) in &quotas {
        println!("{}", quota_line(kind.label(), reading));
    }
    let consumers: Vec<_> = s
        .channels
        .iter()
        .flat_map(|c| c.consumer_list.iter().map(move |k| (&c.channel, k)))
        .collect();
    if !consumers.is_empty() {
        println!();
        println!(
            "{:<8} {:<40} {:>8} {:>12}",
            "channel", "consumer", "pending", "idle"
        );
        for (channel, k) in consumers {
            println!(
                "{:<8} {:<40} {:>8} {:>11.1}s",
                channel,
                k.name,
                k.pending,
                k.idle_ms as f64 / 1000.0
            );
        }
    }
    if !cancels.is_empty() {
        println!();
        println!("active cancels ({}):", cancels.len());
        for line in super::cancel::table(&cancels) {
            println!("{line}");
        }
    }
    Ok(0)
}

/// `line quota: 950 of 1000 messages this month (95.0 %), read at …`.
fn quota_line(channel: &str, q: &crate::channel::background::QuotaReading) -> String {
    match q.limit {
        Some(limit) => {
            let pct = if limit == 0 {
                100.0
            } else {
                q.used as f64 * 100.0 / limit as f64
            };
            format!(
                "{channel} quota: {} of {limit} messages this month ({pct:.1} %), read at {}",
                q.used, q.read_at
            )
        }
        None => format!(
            "{channel} quota: {} messages this month, no limit, read at {}",
            q.used, q.read_at
        ),
    }
}
