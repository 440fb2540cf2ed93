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
/// kept (about 350 bytes: a million linked SMS a day held 90 days was 32 GB, 30
/// days is a third of that). A link past its time answers 404, never a redirect.
pub const DEFAULT_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

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
}

/// A job id to store for a VERP return path too short to carry it:
/// `{prefix}:verp:{token}` → `job_id`, before the message goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerpRecord {
    pub token: String,
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

/// A short link to store before the message that carries it goes out:
/// `{prefix}:link:{code}` → the sealed click token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortLink {
    pub code: String,
    pub token: String,
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

    /// A short tracked link for `url` (`{public_url}/s/{code}`): a sealed click
    /// token is too long for a text message, so the token is stored under the
    /// code, and the caller must save the returned record before sending.
    pub fn short_link(&self, t: &Tracked, url: &str) -> (String, ShortLink) {
        let code = self.sealer.short_code(&t.job_id, url);
        let token = self.sealer.seal(
            Purpose::Click,
            &Tracked {
                url: Some(url.to_owned()),
                ..t.clone()
            },
        );
        (self.short_url(&code), ShortLink { code, token })
    }

    pub fn short_url(&self, code: &str) -> String {
        format!("{}/s/{code}", self.base)
    }

    /// A web link that is neither ours nor the recipient's.
    pub fn may_track(&self, url: &str, theirs: &RecipientLinks) -> bool {
        rewrite::trackable(url) && !url.starts_with(&self.base) && !theirs.covers(url)
    }
}
