//! `tayori enqueue` and `tayori check-jobs`: check every line against the live
//! config first (`crate::job_check`), then add the good ones with pipelined XADDs
//! (not with `--check`, nor `check-jobs`).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::job_check::{check_lines, JobChecker};

/// Jobs per pipelined round trip.
const PIPELINE: usize = 1000;

/// The jobs of `file` (`-`: standard input).
fn read_jobs(file: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
    } else {
        text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(text)
}

/// Prints one line per job that fails, to `out`; returns how many failed.
fn report(
    checker: &JobChecker,
    text: &str,
    out: &mut dyn std::io::Write,
) -> std::io::Result<Vec<usize>> {
    let bad = check_lines(checker, text);
    for (line, id, e) in &bad {
        let id = match id {
            Some(id) => format!(" job {:?}:", id.chars().take(80).collect::<String>()),
            None => String::new(),
        };
        writeln!(out, "line {line}:{id} {e} [{}]", e.code)?;
    }
    Ok(bad.into_iter().map(|(line, _, _)| line).collect())
}

/// `tayori check-jobs FILE` (or `enqueue --check`): the report, nothing enqueued;
/// exit 1 if any line fails.
pub fn check(checker: &JobChecker, file: &Path) -> anyhow::Result<i32> {
    let text = read_jobs(file)?;
    let total = text.lines().filter(|l| !l.trim().is_empty()).count();
    let bad = report(checker, &text, &mut std::io::stdout().lock())?;
    eprintln!(
        "checked {total} jobs: {} failed, nothing enqueued",
        bad.len()
    );
    Ok(if bad.is_empty() { 0 } else { 1 })
}

pub async fn run(config: &Config, checker: &JobChecker, file: &Path) -> anyhow::Result<i32> {
    let text = read_jobs(file)?;
    let keys = config.redis.keys();
    let refused = report(checker, &text, &mut std::io::stderr().lock())?;
    let bad = refused.len();
    let mut good = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || refused.binary_search(&(n + 1)).is_ok() {
            continue;
        }
        // Checked above: a line that passed parses the same again.
        let job = crate::channel::registry::parse_job(line, config.queue.max_job_bytes)
            .with_context(|| format!("line {}", n + 1))?;
        let (stream, _) =
            crate::job_intake::stream_of(&keys, &job).with_context(|| format!("line {}", n + 1))?;
        good.push((stream, line));
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
