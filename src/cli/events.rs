//! `tayori events`: the results events of every partition as JSON lines, for
//! shell scripts and operators (no partition arithmetic, no stream names).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use crate::config::Config;
use crate::keys::Partition;

/// Events per stream per read.
const PAGE: usize = 1000;
/// How long one blocking read waits while following (then it asks again, so a
/// signal or a closed pipe is noticed).
const BLOCK: Duration = Duration::from_secs(1);

pub struct Options<'a> {
    /// Read as this consumer group (one per partition), acknowledging what is printed.
    pub group: Option<&'a str>,
    pub follow: bool,
    pub from_start: bool,
}

/// Prints events until caught up (or, following, until the output closes).
pub async fn run(config: &Config, o: Options<'_>) -> anyhow::Result<i32> {
    // Refuses data of another layout, like every command.
    let queue = super::dead::open(config).await?;
    let keys = queue.keys().clone();
    let mut conn = super::connect(config, BLOCK + Duration::from_secs(10)).await?;
    let streams: Vec<(Partition, String)> = keys
        .all_partitions()
        .map(|p| (p, keys.results(p)))
        .collect();
    // One read can name every stream on a single server; on a cluster streams of
    // different slots cannot share a read, so each is asked without blocking.
    let groups: Vec<Vec<String>> = if conn.is_cluster() {
        streams.iter().map(|(_, s)| vec![s.clone()]).collect()
    } else {
        vec![streams.iter().map(|(_, s)| s.clone()).collect()]
    };
    let block = (o.follow && !conn.is_cluster()).then_some(BLOCK);
    let consumer = format!("tayori-events-{}", std::process::id());
    // Where each stream is read from next.
    let mut next: HashMap<String, String> = HashMap::new();
    for (_, stream) in &streams {
        let start = match o.group {
            Some(group) => {
                let at = if o.from_start { "0" } else { "$" };
                let created: redis::RedisResult<()> =
                    conn.xgroup_create_mkstream(stream, group, at).await;
                match created {
                    Err(e) if e.code() == Some("BUSYGROUP") => {}
                    other => {
                        other.with_context(|| format!("creating group {group} on {stream}"))?
                    }
                }
                // Ours first: what a previous run read and did not acknowledge.
                "0".to_owned()
            }
            // Not following: everything there is. Following: from now, unless
            // asked for the start.
            None if o.from_start || !o.follow => "0-0".to_owned(),
            None => last_id(&mut conn, stream).await?,
        };
        next.insert(stream.clone(), start);
    }
    let stdout = std::io::stdout();
    loop {
        let mut printed = 0usize;
        // A round that read a group's own pending entries is not the last one,
        // even when it found none: new entries come next.
        let was_pending = next.values().any(|v| v == "0");
        for names in &groups {
            let ids: Vec<String> = names.iter().map(|s| next[s].clone()).collect();
            let mut opts = StreamReadOptions::default().count(PAGE);
            if let Some(group) = o.group {
                opts = opts.group(group, &consumer);
            }
            if let Some(b) = block {
                opts = opts.block(b.as_millis() as usize);
            }
            let reply: Option<StreamReadReply> = conn
                .xread_options(names, &ids, &opts)
                .await
                .context("reading the results streams")?;
            let Some(reply) = reply else { continue };
            for stream in reply.keys {
                let mut out = stdout.lock();
                let mut acked = Vec::with_capacity(stream.ids.len());
                for entry in &stream.ids {
                    if let Some(redis::Value::BulkString(event)) = entry.map.get("event") {
                        // A closed pipe (`| head`) ends the command quietly.
                        if out
                            .write_all(event)
                            .and_then(|()| out.write_all(b"\n"))
                            .is_err()
                        {
                            return Ok(0);
                        }
                    }
                    acked.push(entry.id.clone());
                }
                if out.flush().is_err() {
                    return Ok(0);
                }
                drop(out);
                printed += acked.len();
                match (o.group, acked.last()) {
                    (Some(group), Some(_)) => {
                        let _: i64 = conn
                            .xack(&stream.key, group, &acked)
                            .await
                            .with_context(|| format!("acknowledging on {}", stream.key))?;
                    }
                    (None, Some(last)) => {
                        next.insert(stream.key.clone(), last.clone());
                    }
                    _ => {}
                }
                // A group's own pending entries come back only while there are
                // any; then new ones.
                if o.group.is_some() && stream.ids.is_empty() {
                    next.insert(stream.key.clone(), ">".to_owned());
                }
            }
        }
        if printed == 0 {
            if !o.follow && !was_pending {
                return Ok(0);
            }
            if block.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The id of a stream's last entry (`0-0` when empty): where "from now" starts.
async fn last_id(
    conn: &mut crate::redis_connection::RedisConnection,
    stream: &str,
) -> anyhow::Result<String> {
    let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .with_context(|| format!("reading the end of {stream}"))?;
    Ok(last
        .into_iter()
        .next()
        .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
}
