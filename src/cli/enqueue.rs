//! `tayori enqueue`: validate every line first, then add the good ones with pipelined XADDs.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;

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
    let keys = config.redis.keys();
    let mut good = Vec::new();
    let mut bad = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match crate::channel::registry::parse_job(line, config.queue.max_job_bytes) {
            Ok(job) => match job.stream_channel() {
                Ok(kind) => {
                    let p = keys.job_partition(job.customer_id.as_deref(), &job.id);
                    good.push((keys.jobs(p, kind), line))
                }
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
    // Refuses data of another layout before writing a job into this one.
    super::dead::open(config).await?;
    let mut conn = super::connect(config, std::time::Duration::from_secs(30)).await?;
    let bar = ProgressBar::new(good.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} jobs  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let durability = config.redis.durability();
    let mut unconfirmed = 0;
    for chunk in good.chunks(PIPELINE) {
        // One pipeline per partition on a cluster (a pipeline is one slot's).
        let mut batch = crate::queue::Grouped::new(conn.is_cluster());
        for (stream, line) in chunk {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(stream).arg("*").arg("job").arg(*line);
            batch.add_ignored(stream, xadd);
        }
        batch.query(&conn).await.context("XADD failed")?;
        // redis.wait_replicas: the jobs must be on the replicas before we say so:
        // on a cluster, on each primary written to (one stream per partition
        // names it); on one server, once.
        let mut written: Vec<&str> = chunk.iter().map(|(s, _)| s.as_str()).collect();
        written.sort_unstable();
        written.dedup();
        if !conn.is_cluster() {
            written.truncate(1);
        }
        let mut confirmed = true;
        for stream in written {
            confirmed &= durability
                .wait(&mut conn, stream, "enqueue")
                .await
                .context(
                    "WAIT failed (the jobs were added; whether a replica has them is unknown)",
                )?;
        }
        if !confirmed {
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
