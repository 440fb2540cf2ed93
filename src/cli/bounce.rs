//! `tayori bounce`: one DSN on stdin, for an MTA's pipe transport, e.g. Postfix
//! `bounces unix - n n - - pipe user=tayori argv=/usr/bin/tayori bounce`.

use std::io::Read;

use crate::channel::email::bounce::{self, BounceError, Bounces};
use crate::channel::email::{EmailSettings, ID as EMAIL};
use crate::channel::Channels;
use crate::config::Config;

/// sysexits.h: the MTA keeps the message and tries again later.
const EX_TEMPFAIL: i32 = 75;
const EX_DATAERR: i32 = 65;
const EX_CONFIG: i32 = 78;

/// Bounce reports larger than this are not DSNs worth reading.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

pub async fn run(config: &Config, channels: &Channels) -> anyhow::Result<i32> {
    let email = channels
        .get(EMAIL)
        .and_then(|c| c.settings.as_any().downcast_ref::<EmailSettings>());
    let (Some(email), Some(tracker)) = (email, channels.tracker.as_deref()) else {
        eprintln!(
            "tayori bounce: email is not enabled (or http.tracking_secret is unset) in {}",
            config.source.display()
        );
        return Ok(EX_CONFIG);
    };
    let bounces = Bounces {
        sealer: tracker.sealer(),
        verp: email.verp_mailbox(),
        message_id_domain: email.message_id_domain(),
    };
    let mut raw = Vec::new();
    std::io::stdin().take(MAX_BYTES).read_to_end(&mut raw)?;
    let queue = match super::dead::open(config).await {
        Ok(q) => q,
        Err(e) => {
            eprintln!("tayori bounce: {e:#}");
            // A certificate or password problem will not pass by itself: the MTA
            // should bounce to its postmaster, not retry for days.
            let permanent = e
                .downcast_ref::<crate::redis_connection::ConnectError>()
                .is_some_and(|c| c.cause.is_permanent());
            return Ok(if permanent { EX_CONFIG } else { EX_TEMPFAIL });
        }
    };
    let recorder = crate::queue::ReactionRecorder {
        queue: &queue,
        window: config.queue.dedupe_window,
    };
    match bounce::record(&recorder, &bounces, &raw).await {
        Ok(s) => {
            eprintln!(
                "tayori bounce: {} bounced, {} deferred, {} complained, {} repeated, {} unmatched, {} ignored",
                s.bounced, s.deferred, s.complained, s.repeated, s.unmatched, s.ignored
            );
            Ok(0)
        }
        Err(e @ (BounceError::NotAReport(_) | BounceError::NoVerp)) => {
            eprintln!("tayori bounce: {e}");
            Ok(if matches!(e, BounceError::NoVerp) {
                EX_CONFIG
            } else {
                EX_DATAERR
            })
        }
        Err(BounceError::Redis(e)) => {
            eprintln!("tayori bounce: Redis: {e}");
            Ok(EX_TEMPFAIL)
        }
    }
}
