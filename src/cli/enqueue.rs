//! `tayori enqueue`: validate every line first, then add the good ones with pipelined XADDs.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::job::Job;
use crate::queue::Keys;

/// Jobs per pipelined round trip.
const PIPELINE: usize = 1000;

pub async fn run(config: &Config, file: &Path) -> anyhow::Result<i32> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
    } else {
        text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    let keys = Keys::new(&config.redis.prefix);
    let mut good = Vec::new();
    let mut bad = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match Job::parse(line, config.queue.max_job_bytes) {
            Ok(job) => match job.stream_channel() {
                Ok(kind) => good.push((keys.jobs(kind), line)),
                Err(e) => {
                    bad += 1;
                    eprintln!("line {}: {e}", n + 1);
                }
            },
            Err(e) => {
                bad += 1;
                eprintln!("line {}: {e}", n + 1);
            }
        }
    }
    let mut conn = super::connect(config, std::time::Duration::from_secs(30)).await?;
    let bar = ProgressBar::new(good.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} jobs  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let durability = config.redis.durability();
    let mut unconfirmed = 0;
    for chunk in good.chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for (stream, line) in chunk {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("job")
                .arg(*line)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .context("XADD failed")?;
        // redis.wait_replicas: the jobs must be on the replicas before we say so.
        if !durability
            .wait(&mut conn, "enqueue")
            .await
            .context("WAIT failed (the jobs were added; whether a replica has them is unknown)")?
        {
            unconfirmed += chunk.len();
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    eprintln!("enqueued {} jobs; {bad} bad lines not enqueued", good.len());
    if unconfirmed > 0 {
        eprintln!(
            "warning: {unconfirmed} of them were not confirmed by {} replica(s) within {:?} (WAIT): \
             a failover now could lose them",
            durability.replicas, durability.timeout
        );
        return Ok(1);
    }
    Ok(if bad > 0 { 1 } else { 0 })
}
