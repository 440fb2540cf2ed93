//! `tayori render` and `tayori check-config`: look without sending.

use std::path::Path;

use anyhow::Context;
use tayori_channels::{ChannelKind, Message};

use crate::adapters;
use crate::compose::Composer;
use crate::config::Config;
use crate::job::Job;
use crate::render::Renderer;

pub fn render(config: &Config, path: &Path) -> anyhow::Result<i32> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let job = Job::parse(raw.trim(), config.queue.max_job_bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let composer = Composer::load(config).map_err(anyhow::Error::msg)?;
    let mut failures = 0;
    for hop in 0..=job.fallback.len() {
        let Some(kind) = job.channel_at(hop) else {
            continue;
        };
        println!("===== {kind} =====");
        let Some(ch) = config.channels.get(kind) else {
            println!(
                "(channel {kind} is not enabled in {})\n",
                config.source.display()
            );
            continue;
        };
        let result = composer
            .compose(&job, kind)
            .map_err(|e| e.0)
            .and_then(|content| {
                let message = Message {
                    job_id: job.id.clone(),
                    attempt: 1,
                    idempotency_key: format!("{}/{kind}", job.id),
                    campaign: job.campaign.clone(),
                    customer_id: job.customer_id.clone(),
                    to: job.recipient(kind),
                    content,
                };
                let enc = adapters::encoder(kind, ch)?;
                enc.encode(&message).map_err(|e| e.to_string())
            });
        if kind == ChannelKind::Email {
            if let Some(name) = &job.template {
                for w in composer
                    .renderer
                    .compliance_warnings(name, sender_name(ch).as_deref())
                {
                    eprintln!("warning: {w}");
                }
            }
        }
        match result {
            Ok(bytes) => println!("{}\n", String::from_utf8_lossy(&bytes)),
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
    connect: Option<&tokio::runtime::Runtime>,
) -> anyhow::Result<i32> {
    let dir = config.templates_dir();
    let renderer = Renderer::load(&dir, config.templates.fuel)
        .map_err(|e| anyhow::anyhow!("templates: {}", e.0))?;
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
    for (kind, ch) in config.channels.enabled() {
        // Only look: building the transport would create directories or connect.
        match adapters::encoder(kind, ch) {
            Ok(_) => {
                let target = ch
                    .dir
                    .as_ref()
                    .map(|d| format!(" → {}", d.display()))
                    .unwrap_or_default();
                println!(
                    "channel    {kind}: transport {}{target}, rate {}/{:?}, concurrency {}",
                    ch.transport
                        .as_deref()
                        .unwrap_or(if kind == ChannelKind::Line {
                            "api"
                        } else {
                            "-"
                        }),
                    ch.rate.count,
                    ch.rate.per,
                    ch.concurrency
                );
            }
            Err(e) => {
                errors += 1;
                println!("channel    {kind}: error: {e}");
            }
        }
    }
    if config.channels.enabled().next().is_none() {
        println!("warning    no channel is enabled");
    }
    if let Some(email) = &config.channels.email {
        let sender = sender_name(email);
        for name in &names {
            for w in renderer.compliance_warnings(name, sender.as_deref()) {
                println!("warning    {w}");
            }
        }
    }
    Ok(if errors > 0 { 1 } else { 0 })
}

/// The display name of the email channel's From (`Example Shop`), if it has one.
fn sender_name(email: &crate::config::ChannelConfig) -> Option<String> {
    let from = email.from.as_deref()?;
    let (name, _) = from.rsplit_once('<')?;
    let name = name.trim().trim_matches('"').trim();
    (!name.is_empty()).then(|| name.to_owned())
}
