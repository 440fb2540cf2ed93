//! Tracking and the links that come back: open pixels, click redirects, short
//! links, one-click unsubscribe and VERP bounce addresses, all made from sealed
//! tokens (`token`); `rewrite` finds links in text and HTML. Which of them a
//! message gets is its channel's choice (`crate::channel`).

pub mod rewrite;
pub mod token;

use crate::channel_id::ChannelId;
use crate::job::Job;
pub use token::{Purpose, Sealer, Tracked};

/// How long a short link (SMS, LINE text) keeps working when `link_ttl` is not set: 30
/// days. An SMS is read within hours; almost all clicks on a campaign link come in
/// its first days, and each kept link costs Redis memory for as long as it is
/// kept: 449 bytes as a key of its own (a UUID job id; benches/footprint_links.rs),
/// so a million linked SMS a day held 90 days was 40 GB; in buckets 66 bytes, and
/// 30 days of them 2 GB (docs/scaling.md, "Redis memory per job"). A link past its
/// time answers 404, never a redirect.
pub const DEFAULT_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// How long a VERP token's job id is kept: bounce reports come within days (MTAs
/// give up on a message after about 5), late ones within weeks.
pub const VERP_RECORD_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// What every tracked link is made from: `http.tracking_secret` and `http.public_url`.
#[derive(Debug, Clone)]
pub struct TrackingSettings {
    pub secret: String,
    /// `http.previous_tracking_secrets`: open only.
    pub previous_secrets: Vec<String>,
    /// The public base URL of the HTTP server (`http.public_url`).
    pub public_url: String,
}

pub struct Tracker {
    sealer: Sealer,
    base: String,
    links: Buckets<{ token::LINK_BUCKET_LEN }>,
    verps: Buckets<{ token::VERP_BUCKET_LEN }>,
}

/// How many records a bucket (one hash) takes before the next is opened. A
/// hash of at most `hash-max-listpack-entries` (128) fields, each value at most
/// `hash-max-listpack-value` (64) bytes, is one listpack: a few bytes a field,
/// where a key of its own costs about 100 before its value. 64, not 128: two
/// daemons that draw the same random bucket still stay under 128 together.
pub const LINKS_PER_BUCKET: u32 = 64;

/// How long a bucket takes records. The hash lives until its last record's TTL
/// (its EXPIRE is renewed by each write), so a record may outlive its own TTL by
/// this much: a short link works up to 10 minutes past `link_ttl`.
pub const BUCKET_OPEN_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// The bucket being filled, per TTL (links of different TTLs never share one, so
/// a bucket's EXPIRE is right for all of its records).
struct Buckets<const N: usize> {
    open: std::sync::Mutex<Vec<OpenBucket<N>>>,
}

struct OpenBucket<const N: usize> {
    ttl: std::time::Duration,
    id: [u8; N],
    taken: u32,
    opened: std::time::Instant,
}

impl<const N: usize> Buckets<N> {
    fn new() -> Self {
        Buckets {
            open: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A bucket with room for one more record kept `ttl`: random ids, so
    /// daemons need not agree on anything (two that draw the same id share it).
    fn take(&self, ttl: std::time::Duration) -> [u8; N] {
        use ring::rand::SecureRandom as _;
        let fresh = || {
            let mut id = [0u8; N];
            // The system RNG does not fail on Linux once booted; a zero id would
            // only crowd one bucket, never mix records (each field is a MAC).
            let _ = ring::rand::SystemRandom::new().fill(&mut id);
            OpenBucket {
                ttl,
                id,
                taken: 0,
                opened: std::time::Instant::now(),
            }
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let i = match open.iter().position(|b| b.ttl == ttl) {
            Some(i) => i,
            None => {
                open.push(fresh());
                open.len() - 1
            }
        };
        let b = &mut open[i];
        if b.taken >= LINKS_PER_BUCKET || b.opened.elapsed() >= BUCKET_OPEN_FOR {
            *b = fresh();
        }
        b.taken += 1;
        b.id
    }
}

/// A job id to store for a VERP return path too short to carry it: the field
/// `tag` of `{prefix}:verps:{bucket}` → the packed job id, before the message
/// goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerpRecord {
    pub token: String,
    pub bucket: [u8; token::VERP_BUCKET_LEN],
    pub tag: [u8; 8],
    pub job_id: String,
}

/// A LINE notification message's delivery tag and its job, stored before the
/// message goes out (`{prefix}:line:tag:{tag}` → `job_id`): LINE's delivery
/// event names only the tag, and a job id may be longer than a tag can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTag {
    pub tag: String,
    pub job_id: String,
}

/// What a message needs in Redis before it is sent, so that what comes back
/// (a click on a short link, a bounce) can be traced to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub short_links: Vec<ShortLink>,
    /// How long the short links keep working.
    pub link_ttl: std::time::Duration,
    pub verp: Option<VerpRecord>,
    pub delivery_tag: Option<DeliveryTag>,
}

impl Records {
    pub fn is_empty(&self) -> bool {
        self.short_links.is_empty() && self.verp.is_none() && self.delivery_tag.is_none()
    }
}

/// A short link to store before the message that carries it goes out: its
/// record, the field `field` of `{prefix}:links:{bucket}` (see
/// [`Sealer::seal_link`]), and its content, `{prefix}:linkc:{content_ref}` → a
/// sealed click token without recipient (channel, campaign, URL), one for all
/// the jobs of a campaign's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortLink {
    pub code: String,
    pub bucket: [u8; token::LINK_BUCKET_LEN],
    pub field: [u8; token::LINK_FIELD_LEN],
    pub record: Vec<u8>,
    pub content_ref: [u8; token::CONTENT_REF_LEN],
    pub content: String,
}

/// Web links found inside the recipient's own data (`to`: a name or an address a
/// customer typed into a form). They are never tracked: a tracked link is a
/// redirect from the sender's domain, and one minted on demand to a URL a customer
/// chose is an open redirect for phishing. Links in `vars` are the CRM's choices
/// (recommended items) and are tracked.
pub struct RecipientLinks(Vec<String>);

impl RecipientLinks {
    pub fn of(job: &Job) -> RecipientLinks {
        fn walk(v: &serde_json::Value, finder: &linkify::LinkFinder, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) if s.contains(':') => {
                    out.extend(finder.links(s).map(|l| l.as_str().to_owned()));
                }
                serde_json::Value::Object(m) => m.values().for_each(|v| walk(v, finder, out)),
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, finder, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        if let Ok(to) = serde_json::to_value(&job.to) {
            let mut finder = linkify::LinkFinder::new();
            finder.kinds(&[linkify::LinkKind::Url]);
            walk(&to, &finder, &mut found);
        }
        RecipientLinks(found)
    }

    /// Whether `url` is, contains or is part of a link from the recipient's data.
    pub fn covers(&self, url: &str) -> bool {
        self.0
            .iter()
            .any(|r| url.contains(r.as_str()) || r.contains(url))
    }
}

impl Tracker {
    pub fn new(s: &TrackingSettings) -> Tracker {
        Tracker {
            sealer: Sealer::rotated(&s.secret, &s.previous_secrets),
            base: s.public_url.trim_end_matches('/').to_owned(),
            links: Buckets::new(),
            verps: Buckets::new(),
        }
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Who a job's message on `channel` (to `address`) goes to, as tokens carry it.
    pub fn tracked(&self, job: &Job, channel: ChannelId, address: &str) -> Tracked {
        Tracked {
            channel,
            job_id: job.id.clone(),
            address: address.to_owned(),
            campaign: job.campaign.clone(),
            customer_id: job.customer_id.clone(),
            sent_at: jiff::Timestamp::now().as_second(),
            url: None,
        }
    }

    pub fn unsubscribe_url(&self, t: &Tracked) -> String {
        format!(
            "{}/u/{}",
            self.base,
            self.sealer.seal(Purpose::Unsubscribe, t)
        )
    }

    /// A redirect through the click tracker to `url`.
    pub fn click_url(&self, t: &Tracked, url: &str) -> String {
        let t = Tracked {
            url: Some(url.to_owned()),
            ..t.clone()
        };
        format!("{}/t/c/{}", self.base, self.sealer.seal(Purpose::Click, &t))
    }

    /// The open pixel, an `<img>` element.
    pub fn pixel(&self, t: &Tracked) -> String {
        format!(
            r#"<img src="{}/t/o/{}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">"#,
            self.base,
            self.sealer.seal(Purpose::Open, t)
        )
    }

    /// A short tracked link for `url` (`{public_url}/s/{code}`) kept `ttl`: a
    /// sealed click token is too long for a text message, so what it would carry
    /// is stored under the code, and the caller must save the returned record
    /// before sending. Each call makes a new code (a retry's message has links
    /// of its own; the earlier ones keep working).
    pub fn short_link(
        &self,
        t: &Tracked,
        url: &str,
        ttl: std::time::Duration,
    ) -> (String, ShortLink) {
        let content = Tracked {
            channel: t.channel,
            campaign: t.campaign.clone(),
            url: Some(url.to_owned()),
            ..Tracked::default()
        };
        let content_ref = self.sealer.content_ref(&content);
        let bucket = self.links.take(ttl);
        let (field, record) = self.sealer.seal_link(bucket, t, content_ref);
        let code = token::link_code(bucket, field);
        let link = ShortLink {
            code,
            bucket,
            field,
            record,
            content_ref,
            content: self.sealer.seal(Purpose::Click, &content),
        };
        (self.short_url(&link.code), link)
    }

    /// The click a bucketed short link's record (opened by
    /// [`Sealer::open_link`]) and its content record stand for, if the content
    /// is ours and is the one the record names.
    pub fn short_link_click(&self, r: token::LinkRecord, content: &str) -> Option<Tracked> {
        let c = self.sealer.open(Purpose::Click, content)?;
        if !self.sealer.content_matches(&r.content_ref, &c) {
            return None;
        }
        Some(Tracked {
            channel: c.channel,
            job_id: r.job_id,
            address: r.address,
            campaign: c.campaign,
            customer_id: r.customer_id,
            sent_at: r.sent_at,
            url: c.url,
        })
    }

    /// A VERP token whose job id is stored (see [`VerpRecord`]).
    pub fn stored_verp(&self, t: &Tracked) -> VerpRecord {
        let bucket = self.verps.take(VERP_RECORD_TTL);
        let token = self
            .sealer
            .bucketed_verp_token(bucket, &t.job_id, &t.address);
        let (_, tag) = Sealer::verp_bucket(&token).unwrap_or((bucket, [0; 8]));
        VerpRecord {
            token,
            bucket,
            tag,
            job_id: t.job_id.clone(),
        }
    }

    pub fn short_url(&self, code: &str) -> String {
        format!("{}/s/{code}", self.base)
    }

    /// A web link that is neither ours nor the recipient's.
    pub fn may_track(&self, url: &str, theirs: &RecipientLinks) -> bool {
        rewrite::trackable(url) && !url.starts_with(&self.base) && !theirs.covers(url)
    }
}
