//! Counting one campaign's events: a single pass over the results stream, one
//! `add` per entry, then `finish` into a [`Report`].
//!
//! Memory is per job of the campaign, not per event: each (job, channel) pair is
//! one [`Slot`] of a few words (a bit per outcome, a bit per hour of the day, the
//! first send and first reaction times), so "a job opened five times counts once"
//! is a bit test, and unique counts, medians and best hours all come from the slots
//! at the end. Events are parsed into a borrowed struct that skips every field the
//! report does not use.

use std::borrow::Cow;
use std::collections::HashMap;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// The channels, in report order: the registry's. A report counts at most
/// this many (a bit each in a link's clickers).
pub const MAX_CHANNELS: usize = 32;

fn channel_names() -> Vec<&'static str> {
    crate::channel::registry::ids()
        .map(|id| id.label())
        .take(MAX_CHANNELS)
        .collect()
}

/// Links listed per channel (and in total).
pub const TOP_LINKS: usize = 10;
/// Hours listed as the best ones.
pub const BEST_HOURS: usize = 3;

/// The event types the report knows, each with its bit in [`Slot::flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sent,
    Delivered,
    Opened,
    Clicked,
    Replied,
    Bounced,
    Blocked,
    Unsubscribed,
    Failed,
    Suppressed,
    Fallback,
    Expired,
    Duplicate,
    Deferred,
    Unblocked,
    Complained,
    Cancelled,
}

impl Kind {
    const ALL: [Kind; 17] = [
        Kind::Sent,
        Kind::Delivered,
        Kind::Opened,
        Kind::Clicked,
        Kind::Replied,
        Kind::Bounced,
        Kind::Blocked,
        Kind::Unsubscribed,
        Kind::Failed,
        Kind::Suppressed,
        Kind::Fallback,
        Kind::Expired,
        Kind::Duplicate,
        Kind::Deferred,
        Kind::Unblocked,
        Kind::Complained,
        Kind::Cancelled,
    ];

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Sent => "sent",
            Kind::Delivered => "delivered",
            Kind::Opened => "opened",
            Kind::Clicked => "clicked",
            Kind::Replied => "replied",
            Kind::Bounced => "bounced",
            Kind::Blocked => "blocked",
            Kind::Unsubscribed => "unsubscribed",
            Kind::Failed => "failed",
            Kind::Suppressed => "suppressed",
            Kind::Fallback => "fallback",
            Kind::Expired => "expired",
            Kind::Duplicate => "duplicate",
            Kind::Deferred => "deferred",
            Kind::Unblocked => "unblocked",
            Kind::Complained => "complained",
            Kind::Cancelled => "cancelled",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// A recipient's reaction: what "time to first reaction" and "best hours" measure.
    fn is_reaction(self) -> bool {
        matches!(self, Kind::Opened | Kind::Clicked | Kind::Replied)
    }
}

/// The fields of an event the report reads; the rest are skipped unparsed.
/// `Cow` borrows from the entry unless a string has JSON escapes.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    job_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    campaign: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    url: Option<Cow<'a, str>>,
    #[serde(default)]
    suspected_bot: Option<bool>,
    #[serde(default)]
    machine_open: Option<bool>,
}

const NONE: u32 = u32::MAX;

/// One job on one channel.
#[derive(Clone, Copy)]
struct Slot {
    /// The job's next slot (another channel, after a fallback), or `NONE`.
    next: u32,
    channel: u8,
    /// One bit per [`Kind`] seen (reactions only when they count).
    flags: u32,
    /// Bit h: the recipient reacted in local hour h.
    hours: u32,
    /// First `sent`, ms since the epoch (`i64::MAX`: none).
    sent_at: i64,
    /// First counted reaction (opened, clicked, replied), ms (`i64::MAX`: none).
    first_reaction: i64,
}

/// An event with a job id but no campaign (a bounce report, an SMS delivery
/// receipt): it belongs to the campaign if its job does, which is settled at the end.
struct Pending {
    job: Box<str>,
    kind: Kind,
    channel: u8,
    at: i64,
    bot: bool,
}

/// Per channel event totals.
#[derive(Clone, Copy, Default)]
struct ChannelTotals {
    opens: u64,
    clicks: u64,
    replies: u64,
    bot_opens: u64,
    bot_clicks: u64,
    /// Opens an image proxy made on delivery (never counted as opens).
    machine_opens: u64,
    duplicates: u64,
}

/// The accumulator: feed it every entry of the stream, in order.
pub struct Summary {
    campaign: String,
    include_bots: bool,
    tz: TimeZone,
    /// Job id → the job's index (into `heads`).
    jobs: HashMap<Box<str>, u32>,
    /// Job index → its first slot.
    heads: Vec<u32>,
    slots: Vec<Slot>,
    /// The channels counted, in report order (an event's channel is its index here).
    names: Vec<&'static str>,
    totals: Vec<ChannelTotals>,
    /// URL → index into `link_urls`.
    links: HashMap<Box<str>, u32>,
    link_urls: Vec<Box<str>>,
    /// (URL index, channel) → clicks.
    link_clicks: HashMap<(u32, u8), u64>,
    /// (URL index, job index) → bit per channel it was clicked on.
    link_clickers: HashMap<(u32, u32), u32>,
    pending: Vec<Pending>,
    /// Events without a job id, per channel and type, since the campaign's first event.
    unattributed: Vec<[u64; Kind::ALL.len()]>,
    entries: u64,
    unreadable: u64,
    matched: u64,
    first_at: i64,
    last_at: i64,
    /// LINE's own statistics of the campaign (`line_stats` events).
    line: super::line_stats::LineStats,
}

impl Summary {
    pub fn new(campaign: &str, include_bots: bool, tz: TimeZone) -> Summary {
        let names = channel_names();
        Summary {
            totals: vec![ChannelTotals::default(); names.len()],
            unattributed: vec![[0; Kind::ALL.len()]; names.len()],
            names,
            campaign: campaign.to_owned(),
            include_bots,
            tz,
            jobs: HashMap::new(),
            heads: Vec::new(),
            slots: Vec::new(),
            links: HashMap::new(),
            link_urls: Vec::new(),
            link_clicks: HashMap::new(),
            link_clickers: HashMap::new(),
            pending: Vec::new(),
            entries: 0,
            unreadable: 0,
            matched: 0,
            first_at: i64::MAX,
            last_at: i64::MIN,
            line: Default::default(),
        }
    }

    /// One entry's `event` field (JSON).
    pub fn add(&mut self, event: &[u8]) {
        self.entries += 1;
        let Ok(ev) = serde_json::from_slice::<RawEvent<'_>>(event) else {
            self.unreadable += 1;
            return;
        };
        // LINE's figures for a whole campaign and day: kept apart, never counted per job.
        if ev.kind == "line_stats" {
            if ev.campaign.as_deref() == Some(self.campaign.as_str()) {
                if let Ok(full) = serde_json::from_slice::<serde_json::Value>(event) {
                    self.matched += 1;
                    self.line.add(&full);
                }
            }
            return;
        }
        let (Some(kind), Some(channel)) = (
            Kind::parse(&ev.kind),
            ev.channel.as_deref().and_then(|c| self.channel_index(c)),
        ) else {
            return;
        };
        let at = ev.at.as_deref().and_then(parse_ms);
        // An image proxy's open on delivery (Apple Mail Privacy Protection) says
        // nothing about the recipient: counted apart, never as an open, with or
        // without --include-bots. Opens always carry their campaign.
        if kind == Kind::Opened && ev.machine_open == Some(true) {
            if ev.campaign.as_deref() == Some(self.campaign.as_str()) {
                self.matched += 1;
                self.totals[usize::from(channel)].machine_opens += 1;
            }
            return;
        }
        let bot = ev.suspected_bot.unwrap_or(false);
        match (ev.campaign.as_deref(), ev.job_id.as_deref()) {
            (Some(c), Some(job)) if c == self.campaign => {
                let j = self.job_index(job);
                self.record(j, kind, channel, at, bot, ev.url.as_deref());
            }
            (Some(_), _) => {}
            (None, Some(job)) => match self.jobs.get(job) {
                Some(&j) => self.record(j, kind, channel, at, bot, ev.url.as_deref()),
                None => self.pending.push(Pending {
                    job: job.into(),
                    kind,
                    channel,
                    at: at.unwrap_or(i64::MAX),
                    bot,
                }),
            },
            (None, None) => {
                if self.matched > 0 {
                    self.unattributed[usize::from(channel)][kind as usize] += 1;
                }
            }
        }
    }

    fn job_index(&mut self, job: &str) -> u32 {
        if let Some(&j) = self.jobs.get(job) {
            return j;
        }
        let j = self.heads.len() as u32;
        self.jobs.insert(job.into(), j);
        self.heads.push(NONE);
        j
    }

    /// The slot of job `j` on `channel`, made on first use.
    fn channel_index(&self, name: &str) -> Option<u8> {
        self.names
            .iter()
            .position(|c| *c == name)
            .and_then(|i| u8::try_from(i).ok())
    }

    fn slot(&mut self, j: u32, channel: u8) -> usize {
        let mut i = self.heads[j as usize];
        while i != NONE {
            if self.slots[i as usize].channel == channel {
                return i as usize;
            }
            i = self.slots[i as usize].next;
        }
        let new = self.slots.len();
        self.slots.push(Slot {
            next: self.heads[j as usize],
            channel,
            flags: 0,
            hours: 0,
            sent_at: i64::MAX,
            first_reaction: i64::MAX,
        });
        self.heads[j as usize] = new as u32;
        new
    }

    fn record(
        &mut self,
        j: u32,
        kind: Kind,
        channel: u8,
        at: Option<i64>,
        bot: bool,
        url: Option<&str>,
    ) {
        self.matched += 1;
        if let Some(at) = at {
            self.first_at = self.first_at.min(at);
            self.last_at = self.last_at.max(at);
        }
        let ch = usize::from(channel);
        let s = self.slot(j, channel);
        match kind {
            Kind::Sent => {
                let slot = &mut self.slots[s];
                slot.flags |= kind.bit();
                slot.sent_at = slot.sent_at.min(at.unwrap_or(i64::MAX));
            }
            Kind::Duplicate => self.totals[ch].duplicates += 1,
            k if k.is_reaction() => {
                if bot {
                    match kind {
                        Kind::Opened => self.totals[ch].bot_opens += 1,
                        Kind::Clicked => self.totals[ch].bot_clicks += 1,
                        _ => {}
                    }
                    if !self.include_bots {
                        return;
                    }
                }
                match kind {
                    Kind::Opened => self.totals[ch].opens += 1,
                    Kind::Clicked => self.totals[ch].clicks += 1,
                    _ => self.totals[ch].replies += 1,
                }
                let hour = at.map(|ms| self.local_hour(ms));
                let slot = &mut self.slots[s];
                slot.flags |= kind.bit();
                if let Some(at) = at {
                    slot.first_reaction = slot.first_reaction.min(at);
                }
                if let Some(h) = hour {
                    slot.hours |= 1 << h;
                }
                if let (Kind::Clicked, Some(url)) = (kind, url) {
                    self.link(url, j, channel);
                }
            }
            _ => self.slots[s].flags |= kind.bit(),
        }
    }

    fn link(&mut self, url: &str, j: u32, channel: u8) {
        let u = match self.links.get(url) {
            Some(&u) => u,
            None => {
                let u = self.link_urls.len() as u32;
                self.links.insert(url.into(), u);
                self.link_urls.push(url.into());
                u
            }
        };
        *self.link_clicks.entry((u, channel)).or_default() += 1;
        *self.link_clickers.entry((u, j)).or_default() |= 1 << channel;
    }

    /// The hour of the day (0–23) at `ms` in the report's time zone.
    fn local_hour(&self, ms: i64) -> u32 {
        let offset = jiff::Timestamp::from_millisecond(ms)
            .map(|t| i64::from(self.tz.to_offset(t).seconds()))
            .unwrap_or(0);
        ((ms.div_euclid(1000) + offset).rem_euclid(86_400) / 3600) as u32
    }

    /// Settles the pending events and computes the report.
    pub fn finish(mut self, timezone: &str) -> Report {
        for p in std::mem::take(&mut self.pending) {
            if let Some(&j) = self.jobs.get(&p.job) {
                let at = (p.at != i64::MAX).then_some(p.at);
                self.record(j, p.kind, p.channel, at, p.bot, None);
            }
        }
        let channels: Vec<(&'static str, ChannelReport)> = self
            .names
            .iter()
            .enumerate()
            .map(|(c, name)| (*name, self.channel(Some(c as u8))))
            .collect();
        let total = self.channel(None);
        let mut by_channel = std::collections::BTreeMap::new();
        let mut unattributed_events = 0;
        for (c, counts) in self.unattributed.iter().enumerate() {
            let types: std::collections::BTreeMap<&'static str, u64> = Kind::ALL
                .iter()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.as_str(), *n))
                .collect();
            unattributed_events += types.values().sum::<u64>();
            if !types.is_empty() {
                by_channel.insert(self.names[c], types);
            }
        }
        Report {
            campaign: self.campaign,
            generated_at: format!("{:.3}", jiff::Timestamp::now()),
            timezone: timezone.to_owned(),
            include_bots: self.include_bots,
            stream: StreamInfo {
                entries: self.entries,
                unreadable: self.unreadable,
                events: self.matched,
            },
            first_event_at: (self.first_at != i64::MAX).then(|| format_ms(self.first_at)),
            last_event_at: (self.last_at != i64::MIN).then(|| format_ms(self.last_at)),
            channels: Channels(channels),
            total,
            unattributed: Unattributed {
                events: unattributed_events,
                by_channel,
            },
            line_stats: self.line.finish(),
        }
    }

    /// One channel's figures, or the total of all of them (`None`).
    fn channel(&self, channel: Option<u8>) -> ChannelReport {
        let on = |c: u8| channel.is_none_or(|want| want == c);
        let mut counts = [0u64; Kind::ALL.len()];
        let mut hours = [0u64; 24];
        let mut waits = Vec::new();
        for s in self.slots.iter().filter(|s| on(s.channel)) {
            for k in Kind::ALL {
                if s.flags & k.bit() != 0 {
                    counts[k as usize] += 1;
                }
            }
            for (h, n) in hours.iter_mut().enumerate() {
                if s.hours & (1 << h) != 0 {
                    *n += 1;
                }
            }
            if s.sent_at != i64::MAX && s.first_reaction != i64::MAX {
                waits.push((s.first_reaction - s.sent_at).max(0));
            }
        }
        let mut totals = ChannelTotals::default();
        for c in (0..self.names.len() as u8).filter(|c| on(*c)) {
            let t = &self.totals[usize::from(c)];
            totals.opens += t.opens;
            totals.clicks += t.clicks;
            totals.replies += t.replies;
            totals.bot_opens += t.bot_opens;
            totals.bot_clicks += t.bot_clicks;
            totals.machine_opens += t.machine_opens;
            totals.duplicates += t.duplicates;
        }
        let n = |k: Kind| counts[k as usize];
        let counts = Counts {
            sent: n(Kind::Sent),
            delivered: n(Kind::Delivered),
            opened: n(Kind::Opened),
            clicked: n(Kind::Clicked),
            replied: n(Kind::Replied),
            bounced: n(Kind::Bounced),
            blocked: n(Kind::Blocked),
            unsubscribed: n(Kind::Unsubscribed),
            complained: n(Kind::Complained),
            failed: n(Kind::Failed),
            suppressed: n(Kind::Suppressed),
            fallback: n(Kind::Fallback),
            expired: n(Kind::Expired),
            cancelled: n(Kind::Cancelled),
            duplicate: totals.duplicates,
        };
        waits.sort_unstable();
        ChannelReport {
            rates: Rates::of(&counts),
            counts,
            events: EventTotals {
                opens: totals.opens,
                clicks: totals.clicks,
                replies: totals.replies,
            },
            suspected_bots: BotTotals {
                opens: totals.bot_opens,
                clicks: totals.bot_clicks,
            },
            machine_opens: totals.machine_opens,
            time_to_first_reaction: TimeToFirstReaction {
                jobs: waits.len() as u64,
                median_seconds: median_seconds(&waits),
            },
            top_links: self.top_links(channel),
            best_hours: best_hours(&hours),
            hours,
        }
    }

    fn top_links(&self, channel: Option<u8>) -> Vec<Link> {
        let mut clicks = vec![0u64; self.link_urls.len()];
        for (&(u, c), &n) in &self.link_clicks {
            if channel.is_none_or(|want| want == c) {
                clicks[u as usize] += n;
            }
        }
        let mut clickers = vec![0u64; self.link_urls.len()];
        for (&(u, _), &mask) in &self.link_clickers {
            if channel.is_none_or(|c| mask & (1 << c) != 0) {
                clickers[u as usize] += 1;
            }
        }
        let mut links: Vec<Link> = self
            .link_urls
            .iter()
            .enumerate()
            .filter(|(u, _)| clicks[*u] > 0)
            .map(|(u, url)| Link {
                url: url.to_string(),
                clickers: clickers[u],
                clicks: clicks[u],
            })
            .collect();
        links.sort_by(|a, b| {
            (b.clickers, b.clicks)
                .cmp(&(a.clickers, a.clicks))
                .then_with(|| a.url.cmp(&b.url))
        });
        links.truncate(TOP_LINKS);
        links
    }
}

/// The median of sorted milliseconds, in seconds (the mean of the two middle
/// values for an even count).
fn median_seconds(sorted_ms: &[i64]) -> Option<f64> {
    let n = sorted_ms.len();
    if n == 0 {
        return None;
    }
    Some(if n % 2 == 1 {
        sorted_ms[n / 2] as f64 / 1000.0
    } else {
        (sorted_ms[n / 2 - 1] + sorted_ms[n / 2]) as f64 / 2000.0
    })
}

fn best_hours(hours: &[u64; 24]) -> Vec<Hour> {
    let mut v: Vec<Hour> = hours
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(h, n)| Hour {
            hour: h as u8,
            jobs: *n,
        })
        .collect();
    v.sort_by(|a, b| b.jobs.cmp(&a.jobs).then(a.hour.cmp(&b.hour)));
    v.truncate(BEST_HOURS);
    v
}

/// Milliseconds since the epoch of an event time. The daemon writes
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, read here without a general parser; anything else
/// goes through jiff.
pub fn parse_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let fixed = b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z';
    if fixed {
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            b[r].iter().try_fold(0i64, |n, d| {
                d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
            })
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
        if (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && sec < 61 {
            let days = days_from_civil(y, mo, d);
            return Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms);
        }
    }
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn format_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// The report: what `--json` prints (see the README for the shape).

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub campaign: String,
    pub generated_at: String,
    /// The zone of `hours` and `best_hours`.
    pub timezone: String,
    /// Whether reactions flagged `suspected_bot` were counted.
    pub include_bots: bool,
    pub stream: StreamInfo,
    pub first_event_at: Option<String>,
    pub last_event_at: Option<String>,
    pub channels: Channels,
    /// All channels together: each (job, channel) pair counted once.
    pub total: ChannelReport,
    pub unattributed: Unattributed,
    /// LINE's own per-unit statistics of the campaign, one entry per day (the
    /// latest fetch), as LINE returned them. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub line_stats: Vec<super::line_stats::LineStatsDay>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// Entries read from the results stream (those with an `event` field).
    pub entries: u64,
    /// Entries whose `event` was not JSON.
    pub unreadable: u64,
    /// Events that belong to the campaign.
    pub events: u64,
}

/// Each channel's figures, in report order; JSON: an object keyed by channel.
#[derive(Debug, Clone)]
pub struct Channels(pub Vec<(&'static str, ChannelReport)>);

impl Channels {
    /// (name, report) in report order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &ChannelReport)> {
        self.0.iter().map(|(n, r)| (*n, r))
    }

    /// One channel's figures.
    pub fn get(&self, name: &str) -> Option<&ChannelReport> {
        self.iter().find(|(n, _)| *n == name).map(|(_, r)| r)
    }
}

impl Serialize for Channels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, report) in &self.0 {
            map.serialize_entry(name, report)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelReport {
    pub counts: Counts,
    pub rates: Rates,
    /// Reaction events as counted (a job opened five times: 5 opens).
    pub events: EventTotals,
    /// Reactions flagged `suspected_bot` (counted above only with `--include-bots`).
    pub suspected_bots: BotTotals,
    /// Opens an image proxy made when the mail arrived (`machine_open`: Apple Mail
    /// Privacy Protection): never in the counts above, with or without bots.
    pub machine_opens: u64,
    pub time_to_first_reaction: TimeToFirstReaction,
    pub top_links: Vec<Link>,
    /// Jobs that reacted in each local hour of the day (index 0 = 00:00–00:59).
    pub hours: [u64; 24],
    pub best_hours: Vec<Hour>,
}

impl ChannelReport {
    /// Whether anything happened on this channel.
    pub fn is_empty(&self) -> bool {
        COUNTS.iter().all(|m| self.counts.get(m) == 0)
            && self.suspected_bots.opens == 0
            && self.suspected_bots.clicks == 0
            && self.machine_opens == 0
    }
}

/// Unique jobs, except `duplicate` (events: each a second job with a used id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sent: u64,
    pub delivered: u64,
    pub opened: u64,
    pub clicked: u64,
    pub replied: u64,
    pub bounced: u64,
    pub blocked: u64,
    pub unsubscribed: u64,
    /// Recipients who reported the message as spam (feedback-loop reports).
    pub complained: u64,
    pub failed: u64,
    pub suppressed: u64,
    pub fallback: u64,
    pub expired: u64,
    /// Jobs an operator cancelled (`tayori cancel`).
    pub cancelled: u64,
    pub duplicate: u64,
}

/// Every count, in report order.
pub const COUNTS: [&str; 15] = [
    "sent",
    "delivered",
    "opened",
    "clicked",
    "replied",
    "bounced",
    "blocked",
    "unsubscribed",
    "complained",
    "failed",
    "suppressed",
    "fallback",
    "expired",
    "cancelled",
    "duplicate",
];

/// The counts that have a rate (over `sent`).
pub const RATED: [&str; 9] = [
    "delivered",
    "opened",
    "clicked",
    "replied",
    "bounced",
    "blocked",
    "unsubscribed",
    "complained",
    "failed",
];

impl Counts {
    pub fn get(&self, name: &str) -> u64 {
        match name {
            "sent" => self.sent,
            "delivered" => self.delivered,
            "opened" => self.opened,
            "clicked" => self.clicked,
            "replied" => self.replied,
            "bounced" => self.bounced,
            "blocked" => self.blocked,
            "unsubscribed" => self.unsubscribed,
            "complained" => self.complained,
            "failed" => self.failed,
            "suppressed" => self.suppressed,
            "fallback" => self.fallback,
            "expired" => self.expired,
            "cancelled" => self.cancelled,
            "duplicate" => self.duplicate,
            _ => 0,
        }
    }
}

/// Count / sent; `null` when nothing was sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rates {
    pub delivered: Option<f64>,
    pub opened: Option<f64>,
    pub clicked: Option<f64>,
    pub replied: Option<f64>,
    pub bounced: Option<f64>,
    pub blocked: Option<f64>,
    pub unsubscribed: Option<f64>,
    /// The complaint rate: mailbox providers hold bulk senders under 0.3 %.
    pub complained: Option<f64>,
    pub failed: Option<f64>,
}

impl Rates {
    fn of(c: &Counts) -> Rates {
        let r = |n: u64| (c.sent > 0).then(|| n as f64 / c.sent as f64);
        Rates {
            delivered: r(c.delivered),
            opened: r(c.opened),
            clicked: r(c.clicked),
            replied: r(c.replied),
            bounced: r(c.bounced),
            blocked: r(c.blocked),
            unsubscribed: r(c.unsubscribed),
            complained: r(c.complained),
            failed: r(c.failed),
        }
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "delivered" => self.delivered,
            "opened" => self.opened,
            "clicked" => self.clicked,
            "replied" => self.replied,
            "bounced" => self.bounced,
            "blocked" => self.blocked,
            "unsubscribed" => self.unsubscribed,
            "complained" => self.complained,
            "failed" => self.failed,
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EventTotals {
    pub opens: u64,
    pub clicks: u64,
    pub replies: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BotTotals {
    pub opens: u64,
    pub clicks: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TimeToFirstReaction {
    /// Sent jobs with a reaction.
    pub jobs: u64,
    pub median_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub url: String,
    /// Jobs whose recipient followed it.
    pub clickers: u64,
    pub clicks: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hour {
    /// Local hour of the day, 0–23.
    pub hour: u8,
    /// Jobs whose recipient reacted in that hour.
    pub jobs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unattributed {
    /// Events without a job id since the campaign's first event (all campaigns).
    pub events: u64,
    /// channel → type → events.
    pub by_channel:
        std::collections::BTreeMap<&'static str, std::collections::BTreeMap<&'static str, u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tz() -> TimeZone {
        TimeZone::get("Asia/Tokyo").unwrap()
    }

    fn ev(kind: &str, job: &str, channel: &str, campaign: Option<&str>, at: &str) -> Vec<u8> {
        json!({"type": kind, "event_id": "x", "at": at, "job_id": job, "campaign": campaign,
               "customer_id": "C1", "channel": channel, "attempt": 1})
        .to_string()
        .into_bytes()
    }

    fn reaction(kind: &str, job: &str, at: &str, bot: bool, url: Option<&str>) -> Vec<u8> {
        let mut v = json!({"type": kind, "event_id": "y", "at": at, "job_id": job, "campaign": "c",
                           "customer_id": "C1", "channel": "email", "attempt": 0, "suspected_bot": bot});
        if let Some(u) = url {
            v["url"] = json!(u);
        }
        v.to_string().into_bytes()
    }

    #[test]
    fn event_times_parse_fast_and_slow_alike() {
        for s in [
            "2026-11-24T08:07:51.850Z",
            "1970-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
            "2000-03-01T00:00:00.001Z",
        ] {
            let slow = s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
            assert_eq!(parse_ms(s), Some(slow), "{s}");
        }
        assert_eq!(
            parse_ms("2026-11-24T17:07:51.850+09:00"),
            parse_ms("2026-11-24T08:07:51.850Z")
        );
        assert_eq!(parse_ms("yesterday"), None);
    }

    #[test]
    fn unique_jobs_bots_links_medians_and_hours() {
        let mut s = Summary::new("c", false, tz());
        // Two jobs sent at 00:00:00 UTC (09:00 in Tokyo), one of another campaign.
        s.add(&ev(
            "sent",
            "j1",
            "email",
            Some("c"),
            "2026-01-01T00:00:00.000Z",
        ));
        s.add(&ev(
            "sent",
            "j2",
            "email",
            Some("c"),
            "2026-01-01T00:00:00.000Z",
        ));
        s.add(&ev(
            "sent",
            "x1",
            "email",
            Some("other"),
            "2026-01-01T00:00:00.000Z",
        ));
        // j1 opened 3 times (first after 10 s), clicked twice; j2 clicked once after 30 s.
        s.add(&reaction(
            "opened",
            "j1",
            "2026-01-01T00:00:10.000Z",
            false,
            None,
        ));
        s.add(&reaction(
            "opened",
            "j1",
            "2026-01-01T01:00:00.000Z",
            false,
            None,
        ));
        s.add(&reaction(
            "opened",
            "j1",
            "2026-01-01T01:00:01.000Z",
            false,
            None,
        ));
        s.add(&reaction(
            "clicked",
            "j1",
            "2026-01-01T01:00:02.000Z",
            false,
            Some("https://a/"),
        ));
        s.add(&reaction(
            "clicked",
            "j1",
            "2026-01-01T01:00:03.000Z",
            false,
            Some("https://a/"),
        ));
        s.add(&reaction(
            "clicked",
            "j2",
            "2026-01-01T00:00:30.000Z",
            false,
            Some("https://b/"),
        ));
        // A scanner: counted apart.
        s.add(&reaction(
            "clicked",
            "j2",
            "2026-01-01T00:00:01.000Z",
            true,
            Some("https://c/"),
        ));
        // A bounce report without a campaign, and a job-less LINE block.
        s.add(
            &json!({"type": "bounced", "at": "2026-01-01T02:00:00.000Z", "job_id": "j2",
                    "campaign": null, "channel": "email"})
            .to_string()
            .into_bytes(),
        );
        s.add(
            &json!({"type": "blocked", "at": "2026-01-01T02:00:00.000Z", "job_id": null,
                    "campaign": null, "channel": "line"})
            .to_string()
            .into_bytes(),
        );
        s.add(b"not json");
        let r = s.finish("Asia/Tokyo");
        let e = &r.channels.get("email").unwrap();
        assert_eq!(e.counts.sent, 2);
        assert_eq!(e.counts.opened, 1);
        assert_eq!(e.counts.clicked, 2);
        assert_eq!(e.counts.bounced, 1);
        assert_eq!(e.events.opens, 3);
        assert_eq!(e.events.clicks, 3);
        assert_eq!(e.suspected_bots.clicks, 1);
        assert_eq!(e.rates.clicked, Some(1.0));
        assert_eq!(e.rates.opened, Some(0.5));
        assert_eq!(e.time_to_first_reaction.jobs, 2);
        assert_eq!(e.time_to_first_reaction.median_seconds, Some(20.0));
        assert_eq!(e.top_links.len(), 2);
        assert_eq!(
            (
                e.top_links[0].url.as_str(),
                e.top_links[0].clickers,
                e.top_links[0].clicks
            ),
            ("https://a/", 1, 2)
        );
        // j1 reacted at 09:00 and 10:00 Tokyo, j2 at 09:00.
        assert_eq!(e.hours[9], 2);
        assert_eq!(e.hours[10], 1);
        assert_eq!(e.best_hours[0].hour, 9);
        assert_eq!(r.total.counts, e.counts);
        assert_eq!(r.unattributed.events, 1);
        assert_eq!(r.unattributed.by_channel["line"]["blocked"], 1);
        assert_eq!(r.stream.entries, 13);
        assert_eq!(r.stream.unreadable, 1);
        assert!(r.channels.get("line").unwrap().is_empty());
    }

    #[test]
    fn bots_count_when_asked_and_fallbacks_keep_channels_apart() {
        let mut s = Summary::new("c", true, TimeZone::UTC);
        s.add(&ev(
            "fallback",
            "j1",
            "email",
            Some("c"),
            "2026-01-01T00:00:00.000Z",
        ));
        s.add(&ev(
            "sent",
            "j1",
            "sms",
            Some("c"),
            "2026-01-01T00:00:01.000Z",
        ));
        s.add(&reaction(
            "clicked",
            "j1",
            "2026-01-01T00:00:02.000Z",
            true,
            Some("https://a/"),
        ));
        let r = s.finish("UTC");
        assert_eq!(r.channels.get("email").unwrap().counts.fallback, 1);
        assert_eq!(r.channels.get("email").unwrap().counts.sent, 0);
        assert_eq!(r.channels.get("email").unwrap().rates.clicked, None);
        assert_eq!(r.channels.get("sms").unwrap().counts.sent, 1);
        assert_eq!(r.total.counts.sent, 1);
        assert_eq!(r.total.counts.fallback, 1);
        // The click came through the email token (channel email): counted there.
        assert_eq!(r.channels.get("email").unwrap().counts.clicked, 1);
        assert_eq!(r.channels.get("email").unwrap().suspected_bots.clicks, 1);
    }
}
