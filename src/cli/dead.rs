//! `tayori dead list|retry`: dead letters, looked at and re-driven.

use std::time::Duration;

use crate::channel_id::ChannelId;
use redis::Value;

use crate::config::Config;
use crate::keys::{Keys, Partition};
use crate::queue::{self, Queue};
use crate::redis_connection::ConnectError;

pub(super) async fn open(config: &Config) -> anyhow::Result<Queue> {
    let target = config.redis_target()?;
    let q = Queue::connect(&target, config.redis.keys())
        .await
        .map(|q| q.with_durability(config.redis.durability()))
        .map_err(|e| ConnectError::new(&target, &e))?;
    q.check_schema().await?;
    Ok(q)
}

/// One dead letter: its partition, entry id and fields.
struct DeadLetter {
    partition: Partition,
    id: String,
    fields: Vec<(String, String)>,
}

impl DeadLetter {
    fn get(&self, k: &str) -> &str {
        self.fields
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// How `dead list` names it and `dead retry` takes it: the entry id, after
    /// its partition and a `/` when there are several.
    fn name(&self, keys: &Keys) -> String {
        if keys.partitions() > 1 {
            format!("{}/{}", self.partition, self.id)
        } else {
            self.id.clone()
        }
    }
}

/// A `dead retry` argument: `k/entry-id`, or a bare entry id (looked for in
/// every partition). Anything else is an error naming the argument and the
/// form expected, before Redis is asked.
fn parse_name(keys: &Keys, name: &str) -> anyhow::Result<(Option<Partition>, String)> {
    let form = if keys.partitions() > 1 {
        "k/1234567890123-0 or 1234567890123-0"
    } else {
        "1234567890123-0"
    };
    let (partition, id) = match name.split_once('/') {
        Some((k, id)) => {
            let k: u32 = k.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{name:?} is not a dead-letter id: expected {form}, as `tayori dead list` shows them"
                )
            })?;
            if k >= keys.partitions() {
                anyhow::bail!(
                    "{name:?}: there is no partition {k} (redis.partitions is {}): expected {form}, as `tayori dead list` shows them",
                    keys.partitions()
                );
            }
            (keys.all_partitions().nth(k as usize), id)
        }
        None => (None, name),
    };
    let entry_id = id
        .split_once('-')
        .is_some_and(|(ms, seq)| is_number(ms) && is_number(seq));
    if !entry_id {
        anyhow::bail!(
            "{name:?} is not a dead-letter id: expected {form} (a stream entry id), as `tayori dead list` shows them"
        );
    }
    Ok((partition, id.to_owned()))
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Up to `count` dead letters, oldest first over every partition (entry ids
/// are times), or the named ones.
async fn read_dead(q: &Queue, names: &[String], count: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let keys = q.keys();
    let parsed = names
        .iter()
        .map(|n| parse_name(keys, n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut batch = q.batch();
    let mut asked = Vec::new();
    for p in keys.all_partitions() {
        let key = keys.dead(p);
        if names.is_empty() {
            let mut range = redis::cmd("XRANGE");
            range.arg(&key).arg("-").arg("+").arg("COUNT").arg(count);
            batch.add(&key, range);
            asked.push(p);
        } else {
            for (only, id) in &parsed {
                if only.is_some_and(|o| o != p) {
                    continue;
                }
                let mut range = redis::cmd("XRANGE");
                range.arg(&key).arg(id).arg(id);
                batch.add(&key, range);
                asked.push(p);
            }
        }
    }
    let replies = batch.query(&q.conn()).await?;
    let mut out = Vec::new();
    for (reply, p) in replies.into_iter().zip(asked) {
        let Value::Array(items) = reply else { continue };
        for item in items {
            let Value::Array(pair) = item else { continue };
            let [Value::BulkString(id), Value::Array(flat)] = pair.as_slice() else {
                continue;
            };
            let fields = flat
                .chunks(2)
                .filter_map(|kv| match kv {
                    [Value::BulkString(k), Value::BulkString(v)] => Some((
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )),
                    _ => None,
                })
                .collect();
            out.push(DeadLetter {
                partition: p,
                id: String::from_utf8_lossy(id).into_owned(),
                fields,
            });
        }
    }
    out.sort_by_key(|d| entry_time(&d.id));
    out.truncate(count);
    Ok(out)
}

/// An entry id's (ms, seq), for ordering entries of several streams.
fn entry_time(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

pub async fn list(config: &Config, count: usize, json: bool) -> anyhow::Result<i32> {
    let q = open(config).await?;
    let letters = read_dead(&q, &[], count).await?;
    for d in &letters {
        if json {
            let obj: serde_json::Map<String, serde_json::Value> = d
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            println!(
                "{}",
                serde_json::json!({ "id": d.name(q.keys()), "fields": obj })
            );
        } else {
            let reason: serde_json::Value =
                serde_json::from_str(d.get("reason")).unwrap_or_default();
            let job_id = serde_json::from_str::<serde_json::Value>(d.get("job"))
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".into());
            println!(
                "{}  {:<6} job {:<24} {}: {}",
                d.name(q.keys()),
                d.get("channel"),
                job_id,
                reason["code"].as_str().unwrap_or("?"),
                reason["message"].as_str().unwrap_or(d.get("reason"))
            );
        }
    }
    if !json {
        eprintln!("{} dead letters shown", letters.len());
    }
    Ok(0)
}

/// Re-drives dead letters: each goes back to its channel stream with its
/// original identity (its `origin`, so deduplication lets it through and its
/// events keep their ids), a fresh attempt count and its re-drive counted (so
/// the finish script writes only events whose ids are new: see
/// `worker::outcome::once_only`), and leaves the dead-letter stream in the
/// same transaction.
/// KEYS: the partition's dead letters and the channel's job stream (one slot).
/// ARGV: entry id, fields… Returns the new entry id, or nil.
static REDRIVE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('XDEL', KEYS[1], ARGV[1]) == 1 then \
           return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2)) \
         end \
         return false",
    )
});

/// Dead letters re-driven per `dead retry` run when no ids are given.
const RETRY_PAGE: usize = 10_000;

/// Why a letter is dead (`reason.code`).
fn reason_code(d: &DeadLetter) -> String {
    serde_json::from_str::<serde_json::Value>(d.get("reason"))
        .ok()
        .and_then(|r| r["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `invalid_job` letters fail again as they are: `dead retry` without ids leaves
/// them unless `include_invalid`; named by id, they go.
pub async fn retry(config: &Config, ids: &[String], include_invalid: bool) -> anyhow::Result<i32> {
    let q = open(config).await?;
    // A page at a time keeps memory bounded; run again to re-drive more.
    let letters = read_dead(&q, ids, RETRY_PAGE).await?;
    let mut c = super::connect(config, Duration::from_secs(30)).await?;
    let mut moved = 0;
    let mut skipped = 0;
    let mut invalid = 0;
    for d in &letters {
        if ids.is_empty() && !include_invalid && reason_code(d) == "invalid_job" {
            invalid += 1;
            continue;
        }
        let Ok(kind) = d.get("channel").parse::<ChannelId>() else {
            skipped += 1;
            eprintln!("{}: no channel recorded; left in place", d.name(q.keys()));
            continue;
        };
        let routing = queue::Routing {
            attempt: 0,
            // Dead letters always record it; one of an older build may not.
            origin: Some(d.get("origin"))
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .or_else(|| Some(d.id.clone())),
            first_at_ms: Some(jiff::Timestamp::now().as_millisecond()),
            hop: d.get("hop").parse().unwrap_or(0),
            slot_ms: None,
            scheduled: None,
            redrive: d
                .get("redrive")
                .parse::<u32>()
                .unwrap_or(0)
                .saturating_add(1),
        };
        let fields = routing.fields(d.get("job"));
        // Delete first and re-add only if this run deleted it: two overlapping
        // `dead retry` runs must not both put the job back.
        let [dead, stream] = q.keys().redrive_keys(d.partition, kind);
        let requeued: Option<String> = REDRIVE
            .prepare_invoke()
            .key(dead)
            .key(stream)
            .arg(&d.id)
            .arg(&fields)
            .invoke_async(&mut c)
            .await?;
        if requeued.is_none() {
            eprintln!("{}: already re-driven by someone else", d.name(q.keys()));
            continue;
        }
        moved += 1;
    }
    for id in ids {
        if !letters
            .iter()
            .any(|d| &d.name(q.keys()) == id || &d.id == id)
        {
            eprintln!("{id}: no such dead letter");
            skipped += 1;
        }
    }
    eprintln!("re-queued {moved} dead letters");
    if invalid > 0 {
        eprintln!(
            "left {invalid} invalid_job dead letters: they would fail again as they are (fix the job and enqueue it anew); re-drive them by id, or all with --include-invalid"
        );
    }
    if ids.is_empty() && letters.len() == RETRY_PAGE {
        if moved == 0 && invalid > 0 {
            // A page is the oldest letters: left invalid ones would fill it every run.
            eprintln!(
                "more dead letters remain behind these: `tayori dead list` shows them; re-drive them by id, or all with --include-invalid"
            );
        } else {
            eprintln!("more dead letters remain: run `tayori dead retry` again");
        }
    }
    Ok(if skipped > 0 { 1 } else { 0 })
}
