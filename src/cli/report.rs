//! `tayori report --campaign ID`: what a campaign did, from the results stream.

use std::path::Path;

use anyhow::Context;
use jiff::tz::TimeZone;

use crate::config::Config;
use crate::queue::Keys;
use crate::report::{self, Reader, Summary};

pub struct Options<'a> {
    pub campaign: &'a str,
    pub json: bool,
    pub html: Option<&'a Path>,
    pub include_bots: bool,
    pub timezone: Option<&'a str>,
}

/// Exit 0, or 1 when the stream holds no event of the campaign.
pub fn run(config: &Config, o: Options<'_>) -> anyhow::Result<i32> {
    let zone = o.timezone.unwrap_or(&config.policy.timezone);
    let tz = TimeZone::get(zone).with_context(|| {
        format!("unknown time zone {zone:?}: use an IANA name such as \"Asia/Tokyo\" or \"UTC\"")
    })?;
    let mut reader = Reader::connect(&config.redis.url)
        .with_context(|| format!("connecting to Redis at {}", config.redis_url_redacted()))?;
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
