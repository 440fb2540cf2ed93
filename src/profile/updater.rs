//! Keeps engagement profiles current from the results stream.
//!
//! The updater is a consumer group of its own on each partition's results
//! (`tayori-profiles`), so several daemons share the work and each event counts
//! once, and it runs on its own connection and task, so sending never waits for
//! it. Per batch it costs one `add.lua` call (per slot on a cluster), which per
//! event adds its weights (one `HINCRBYFLOAT` per field it touches, one or two)
//! and per profile reads its reference time, sets the update time and the
//! expiry, and rescales it when the reference is due to move
//! (`super::rescale`); per batch (up to 500 events, gathered for
//! up to 100 ms) one `XREADGROUP` and one `XACK`. A daemon that dies leaves its unacknowledged events to be claimed by
//! another after a minute (an event can then count twice: profiles are
//! estimates, and that is cheaper than a transaction per event).

use std::time::Duration;

use crate::redis_connection::RedisConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;
use serde::Deserialize;
use tokio::sync::watch;

use super::{hour_of_week, Signal, EPOCH_MS, RESCALE_AFTER};
use crate::metrics as m;

/// The results stream's consumer group for profiles.
pub const GROUP: &str = "tayori-profiles";
const BATCH: usize = 500;
const BLOCK: Duration = Duration::from_secs(1);
/// After a read that found less than a batch, how long new events gather before
/// the next: reading the moment one is there cost an `XREADGROUP` and an `XACK`
/// per event at a steady trickle (0.86 reads per job with SMS at a 500/s rate).
/// A profile learns over weeks; a tenth of a second late is nothing.
const GATHER: Duration = Duration::from_millis(100);
/// Events another daemon has held unacknowledged this long are taken over.
const CLAIM_IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct UpdaterSettings {
    pub keys: crate::keys::Keys,
    pub consumer: String,
    pub half_life: Duration,
    /// A profile untouched this long expires.
    pub ttl: Duration,
}

/// `add.lua`, hashed once.
static ADD: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("add.lua")));

/// The fields of an event a profile needs (borrowed from the entry's JSON).
#[derive(Deserialize)]
struct EventView<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(default)]
    customer_id: Option<&'a str>,
    #[serde(default)]
    at: Option<&'a str>,
    #[serde(default)]
    suspected_bot: bool,
    /// An image proxy's open on delivery (Apple Mail Privacy Protection): it
    /// says when the mail arrived, not when it was read.
    #[serde(default)]
    machine_open: bool,
}

/// Reads events until `stop` turns true; reconnects after Redis errors.
pub async fn run(
    target: crate::redis_connection::RedisTarget,
    settings: UpdaterSettings,
    partition: crate::keys::Partition,
    mut stop: watch::Receiver<bool>,
) {
    let results = settings.keys.results(partition);
    let mut failures = 0u32;
    while !*stop.borrow() {
        let outcome = async {
            let mut conn = crate::queue::connect(&target, BLOCK + Duration::from_secs(10)).await?;
            ensure_group(&mut conn, &results).await?;
            // Our own unacknowledged events first (after a restart), then new ones.
            let mut cursor = "0".to_owned();
            let mut last_claim = tokio::time::Instant::now();
            loop {
                if *stop.borrow() {
                    return Ok(());
                }
                let opts = StreamReadOptions::default()
                    .group(GROUP, &settings.consumer)
                    .count(BATCH)
                    .block(BLOCK.as_millis() as usize);
                let (keys, ids) = ([results.as_str()], [cursor.as_str()]);
                let reply: StreamReadReply = tokio::select! {
                    r = conn.xread_options(&keys, &ids, &opts) => r?,
                    _ = stop.changed() => return Ok(()),
                };
                let entries: Vec<_> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
                if entries.is_empty() && cursor != ">" {
                    cursor = ">".to_owned();
                }
                apply(&mut conn, &settings, &results, &entries).await?;
                failures = 0;
                if cursor == ">" && !entries.is_empty() && entries.len() < BATCH {
                    tokio::select! {
                        _ = tokio::time::sleep(GATHER) => {}
                        _ = stop.changed() => return Ok(()),
                    }
                }
                if last_claim.elapsed() > CLAIM_IDLE / 2 {
                    last_claim = tokio::time::Instant::now();
                    claim_abandoned(&mut conn, &settings, &results).await?;
                }
            }
        }
        .await;
        if let Err(e) = outcome {
            let e: redis::RedisError = e;
            failures += 1;
            metrics::counter!(m::REDIS_ERRORS, "op" => "profiles").increment(1);
            tracing::debug!(error = %e, "profile updater: Redis error; retrying");
            let wait = Duration::from_millis(200 * u64::from(failures.min(25)));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

async fn ensure_group(conn: &mut RedisConnection, results: &str) -> redis::RedisResult<()> {
    // From the stream's start: a new deployment learns from the history it has.
    let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(results, GROUP, "0").await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Takes over what dead daemons left unacknowledged.
async fn claim_abandoned(
    conn: &mut RedisConnection,
    settings: &UpdaterSettings,
    results: &str,
) -> redis::RedisResult<()> {
    let reply: StreamAutoClaimReply = conn
        .xautoclaim_options(
            results,
            GROUP,
            &settings.consumer,
            CLAIM_IDLE.as_millis() as u64,
            "0-0",
            StreamAutoClaimOptions::default().count(BATCH),
        )
        .await?;
    apply(conn, settings, results, &reply.claimed).await
}

/// One pipeline for a batch: the profile updates, then the acknowledgement.
async fn apply(
    conn: &mut RedisConnection,
    settings: &UpdaterSettings,
    results: &str,
    entries: &[redis::streams::StreamId],
) -> redis::RedisResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    // Per profile, its fields and each event's time (ms), in one script call.
    let mut adds: std::collections::HashMap<String, Vec<(String, i64)>> =
        std::collections::HashMap::new();
    let mut ids = Vec::with_capacity(entries.len());
    let mut updated = 0u64;
    for entry in entries {
        ids.push(entry.id.as_str());
        let Some(redis::Value::BulkString(raw)) = entry.map.get("event") else {
            continue;
        };
        let Ok(ev) = serde_json::from_slice::<EventView>(raw) else {
            continue;
        };
        // Counted here, where every event is read once by one daemon (the
        // group's), whichever process wrote it: `tayori bounce` is not scraped.
        if ev.kind == "complained" {
            let channel = ev.channel.unwrap_or("none").to_owned();
            metrics::counter!(crate::metrics::COMPLAINTS, "channel" => channel).increment(1);
        }
        let (Some(signal), Some(customer), Some(channel)) =
            (Signal::of(ev.kind), ev.customer_id, ev.channel)
        else {
            continue;
        };
        if ev.suspected_bot || ev.machine_open || customer.is_empty() {
            continue;
        }
        // An event from the future (a skewed clock, a CRM's typo) counts as now:
        // it must not weigh more than anything real.
        let at_ms = ev
            .at
            .and_then(|a| a.parse::<jiff::Timestamp>().ok())
            .map_or(now_ms, |t| t.as_millisecond())
            .min(now_ms);
        let field = match signal {
            Signal::Sent => format!("s:{channel}"),
            Signal::Reaction => format!("r:{channel}"),
            Signal::Refusal => format!("x:{channel}"),
        };
        let add = adds.entry(settings.keys.profile(customer)).or_default();
        add.push((field, at_ms));
        if signal == Signal::Reaction {
            add.push((format!("h:{}", hour_of_week(at_ms)), at_ms));
        }
        updated += 1;
    }
    // A customer's events are in its partition's results (a job's partition is
    // its customer's), so on a cluster this is one slot's call; grouped by slot
    // anyway for events a CRM put elsewhere.
    let cluster = conn.is_cluster();
    let mut by_slot: std::collections::HashMap<&str, redis::ScriptInvocation<'static>> =
        std::collections::HashMap::new();
    for (key, fields) in &adds {
        let tag = if cluster {
            crate::keys::hash_tag(key)
        } else {
            ""
        };
        let inv = by_slot.entry(tag).or_insert_with(|| {
            let mut inv = ADD.prepare_invoke();
            inv.arg(now_ms)
                .arg(settings.half_life.as_millis().max(1) as u64)
                .arg(settings.ttl.as_millis() as u64)
                .arg(EPOCH_MS)
                .arg(RESCALE_AFTER);
            inv
        });
        inv.key(key).arg(fields.len());
        for (field, at_ms) in fields {
            inv.arg(field).arg(at_ms);
        }
    }
    let calls = by_slot.into_values().map(|inv| {
        let mut c = conn.clone();
        async move { inv.invoke_async::<i64>(&mut c).await }
    });
    futures_util::future::try_join_all(calls).await?;
    // Acknowledged after the updates: an error before it means the batch is
    // read again (at least once, as before).
    conn.xack::<_, _, _, ()>(results, GROUP, &ids).await?;
    metrics::counter!(m::PROFILE_UPDATES).increment(updated);
    Ok(())
}
