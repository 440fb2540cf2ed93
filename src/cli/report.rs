//! `tayori report --campaign ID`: what a campaign did, from the results stream.

use std::path::Path;

use anyhow::Context;
use jiff::tz::TimeZone;

use crate::config::Config;
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
    rt.block_on(super::dead::open(config))?;
    let keys = config.redis.keys();
    let mut summary = Summary::new(o.campaign, o.include_bots, tz.clone());
    if target.is_cluster() {
        // A cluster's partitions are on several primaries: read through the
        // cluster connection (slower per entry than the socket reader below).
        let conn = rt
            .block_on(target.connect(std::time::Duration::from_secs(30)))
            .map_err(|e| ConnectError::new(&target, &e))?;
        for p in keys.all_partitions() {
            let key = keys.results(p);
            rt.block_on(report::stream::scan_via(&conn, &key, &mut summary))
                .with_context(|| format!("reading {key}"))?;
        }
    } else {
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
        for p in keys.all_partitions() {
            let key = keys.results(p);
            reader
                .scan(&key, &mut summary)
                .with_context(|| format!("reading {key}"))?;
        }
    }
    let key = if keys.partitions() > 1 {
        format!("the {} results streams", keys.partitions())
    } else {
        keys.results(crate::keys::Partition::default())
    };
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
