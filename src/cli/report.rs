//! `tayori report --campaign ID`: what a campaign did, from the results stream.

use std::path::Path;

use anyhow::Context;
use jiff::tz::TimeZone;

use crate::config::Config;
use crate::queue::Keys;
use crate::redis_connection::ConnectError;
use crate::report::{self, ReadError, Reader, Summary};

pub struct Options<'a> {
    pub campaign: &'a str,
    pub json: bool,
    pub html: Option<&'a Path>,
    pub include_bots: bool,
    pub timezone: Option<&'a str>,
}

/// Exit 0, or 1 when the stream holds no event of the campaign.
pub fn run(config: &Config, rt: &tokio::runtime::Handle, o: Options<'_>) -> anyhow::Result<i32> {
    let zone = o.timezone.unwrap_or(&config.policy.timezone);
    let tz = TimeZone::get(zone).with_context(|| {
        format!("unknown time zone {zone:?}: use an IANA name such as \"Asia/Tokyo\" or \"UTC\"")
    })?;
    let target = config.redis_target()?;
    let info = rt
        .block_on(target.primary_info())
        .map_err(|e| ConnectError::new(&target, &e))?;
    let mut reader = Reader::connect(&info, target.rustls()).map_err(|e| match e {
        ReadError::Redis(m) => anyhow::anyhow!(
            "Redis auth: {}: {m} (fix: check redis.username and redis.password)",
            target.shown()
        ),
        ReadError::Connect(m) if m.starts_with("certificate") => anyhow::anyhow!(
            "Redis {m}: {} (fix: set redis.tls_ca_file to the CA that signed the server's certificate)",
            target.shown()
        ),
        e => anyhow::anyhow!("Redis unreachable: {}: {e} (fix: check redis.url)", target.shown()),
    })?;
    let key = Keys::new(&config.redis.prefix).results();
    let mut summary = Summary::new(o.campaign, o.include_bots, tz.clone());
    reader
        .scan(&key, &mut summary)
        .with_context(|| format!("reading {key}"))?;
    let r = summary.finish(zone);
    if o.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", report::table::render(&r, &tz));
    }
    if let Some(path) = o.html {
        std::fs::write(path, report::html::render(&r, &tz))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if r.stream.events == 0 {
        eprintln!(
            "no events of campaign {:?} among the {} entries of {key}",
            o.campaign, r.stream.entries
        );
        return Ok(1);
    }
    Ok(0)
}
