//! `tayori render` and `tayori check-config`: look without sending.

use std::path::Path;

use anyhow::Context;
use tayori_channels::Message;

use crate::channel::{load_templates, registry, Channels, Compose};
use crate::config::Config;

pub fn render(
    config: &Config,
    channels: &Channels,
    path: &Path,
    raw_bytes: bool,
) -> anyhow::Result<i32> {
    let raw = if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let job = registry::parse_job(raw.trim(), config.queue.max_job_bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let renderer = load_templates(config).map_err(|e| anyhow::anyhow!(e.0))?;
    let cx = Compose {
        renderer: &renderer,
        tracker: channels.tracker.as_deref(),
    };
    let mut failures = 0;
    for hop in 0..=job.fallback.len() {
        let Some(kind) = job.channel_at(hop) else {
            continue;
        };
        println!("===== {kind} =====");
        let Some(channel) = channels.get(kind) else {
            println!(
                "(channel {kind} is not enabled in {})\n",
                config.source.display()
            );
            continue;
        };
        let result = channel
            .compose(&job, &cx)
            .map_err(|e| e.0)
            .and_then(|(content, _records)| {
                let message = Message {
                    job_id: job.id.clone(),
                    attempt: 1,
                    idempotency_key: format!("{}/{kind}", job.id),
                    campaign: job.campaign.clone(),
                    customer_id: job.customer_id.clone(),
                    to: channel.plugin.recipient(&job.to),
                    content,
                };
                let enc = channel.settings.encoder().map_err(|e| e.to_string())?;
                let bytes = enc.encode(&message).map_err(|e| e.to_string())?;
                Ok(if raw_bytes {
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    enc.to_text(&bytes)
                })
            });
        if let Some(name) = &job.template {
            for w in channel.settings.template_warnings(&renderer, name) {
                eprintln!("warning: {w}");
            }
        }
        match result {
            Ok(text) => println!("{text}\n"),
            Err(e) => {
                failures += 1;
                println!("error: {e}\n");
            }
        }
    }
    Ok(if failures > 0 { 1 } else { 0 })
}

/// `connect`: also open a connection (through Sentinel when configured),
/// authenticate and check the server is the primary.
pub fn check_config(
    config: &Config,
    channels: &Channels,
    connect: Option<&tokio::runtime::Runtime>,
) -> anyhow::Result<i32> {
    let dir = config.templates_dir();
    let renderer = load_templates(config).map_err(|e| anyhow::anyhow!(e.0))?;
    let mut names: Vec<&str> = renderer.template_names().collect();
    names.sort();
    println!("config     {}: ok", config.source.display());
    let target = config.redis_target()?;
    println!(
        "redis      {}{} (prefix {:?})",
        target.shown(),
        if target.is_tls() { ", TLS" } else { "" },
        config.redis.prefix
    );
    let mut errors = 0;
    if let Some(rt) = connect {
        match rt.block_on(target.check()) {
            Ok(()) => println!("redis      connected: primary, authenticated"),
            Err(e) => {
                errors += 1;
                println!("redis      error: {e}");
                eprintln!("{e}");
            }
        }
    }
    println!(
        "templates  {}: {}",
        dir.display(),
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
    for channel in channels.iter() {
        // Only look: building the transport would create directories or connect.
        match channel.settings.encoder() {
            Ok(_) => {
                let target = channel
                    .common
                    .dir
                    .as_ref()
                    .map(|d| format!(" → {}", d.display()))
                    .unwrap_or_default();
                let c = &channel.common;
                println!(
                    "channel    {}: transport {}{target}, rate {}/{:?}, concurrency {}",
                    channel.id,
                    channel.transport_name(),
                    c.rate.count,
                    c.rate.per,
                    c.concurrency
                );
            }
            Err(e) => {
                errors += 1;
                println!("channel    {}: error: {e}", channel.id);
            }
        }
        for name in &names {
            for w in channel.settings.template_warnings(&renderer, name) {
                println!("warning    {w}");
            }
        }
    }
    if channels.is_empty() {
        println!("warning    no channel is enabled");
    }
    Ok(if errors > 0 { 1 } else { 0 })
}
