//! `tayori stats`: per channel backlog, pending, stream length and consumers, over
//! every partition, then the active cancels. `--json` prints the same figures under the same names as the
//! table's columns.

use crate::config::Config;

pub async fn run(config: &Config, json: bool) -> anyhow::Result<i32> {
    let q = super::dead::open(config).await?;
    let s = q
        .stats_detailed(&crate::channel::registry::ids().collect::<Vec<_>>())
        .await?;
    let cancels = super::cancel::active(&q).await?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        if let Some(obj) = v.as_object_mut() {
            let listed = cancels
                .iter()
                .map(|(t, c)| super::cancel::listed_json(t, c))
                .collect();
            obj.insert("cancels".into(), serde_json::Value::Array(listed));
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
