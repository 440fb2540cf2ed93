//! Email tracking and the links that come back: open pixel, click redirects,
//! one-click unsubscribe and VERP bounce addresses, all made from signed tokens
//! (`token`) and applied to rendered mail (`rewrite`).

pub mod rewrite;
pub mod token;

use tayori_channels::{ChannelKind, Content, EmailExtras};

use crate::job::Job;
use crate::render::{RenderError, Renderer, TemplateOptions};
pub use token::{Purpose, Sealer, Tracked};

/// What tracking does, from config.
#[derive(Debug, Clone)]
pub struct TrackingSettings {
    pub secret: String,
    /// The public base URL of the HTTP server (`http.public_url`).
    pub public_url: String,
    pub opens: bool,
    pub clicks: bool,
    /// `bounces@example.com` → VERP return paths `bounces+{token}@example.com`.
    pub verp: Option<String>,
    /// Route LINE `uri` actions through the click tracker.
    pub line_clicks: bool,
    /// Replace links in SMS text by short tracked links.
    pub sms_clicks: bool,
}

pub struct Tracker {
    sealer: Sealer,
    base: String,
    opens: bool,
    clicks: bool,
    line_clicks: bool,
    sms_clicks: bool,
    verp: Option<(String, String)>,
}

/// The longest local part of an address (RFC 5321), which a VERP return path
/// must fit.
const MAX_LOCAL_PART: usize = 64;

/// A job id to store for a VERP return path too short to carry it:
/// `{prefix}:verp:{token}` → `job_id`, before the message goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerpRecord {
    pub token: String,
    pub job_id: String,
}

/// What a message needs in Redis before it is sent, so that what comes back
/// (a click on a short link, a bounce) can be traced to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub short_links: Vec<ShortLink>,
    pub verp: Option<VerpRecord>,
}

impl Records {
    pub fn is_empty(&self) -> bool {
        self.short_links.is_empty() && self.verp.is_none()
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
struct RecipientLinks(Vec<String>);

impl RecipientLinks {
    fn of(job: &Job) -> RecipientLinks {
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
    fn covers(&self, url: &str) -> bool {
        self.0
            .iter()
            .any(|r| url.contains(r.as_str()) || r.contains(url))
    }
}

impl Tracker {
    pub fn new(s: &TrackingSettings) -> Result<Tracker, String> {
        let verp = s
            .verp
            .as_deref()
            .map(|a| {
                let (local, domain) = a
                    .rsplit_once('@')
                    .filter(|(l, d)| !l.is_empty() && !d.is_empty() && !l.contains('+'))
                    .ok_or_else(|| {
                        format!("{a:?} is not an address like bounces@example.com (without '+')")
                    })?;
                Ok::<_, String>((local.to_owned(), domain.to_owned()))
            })
            .transpose()?;
        Ok(Tracker {
            sealer: Sealer::new(&s.secret),
            base: s.public_url.trim_end_matches('/').to_owned(),
            opens: s.opens,
            clicks: s.clicks,
            line_clicks: s.line_clicks,
            sms_clicks: s.sms_clicks,
            verp,
        })
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The VERP mailbox (`bounces`, `example.com`), if VERP is on.
    pub fn verp_mailbox(&self) -> Option<(&str, &str)> {
        self.verp.as_ref().map(|(l, d)| (l.as_str(), d.as_str()))
    }

    /// Who a job's message on `kind` goes to, as tokens carry it.
    pub fn tracked(&self, job: &Job, kind: ChannelKind) -> Tracked {
        Tracked {
            channel: kind,
            job_id: job.id.clone(),
            address: job.address(kind).unwrap_or_default().to_owned(),
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

    fn click_url(&self, t: &Tracked, url: &str) -> String {
        let t = Tracked {
            url: Some(url.to_owned()),
            ..t.clone()
        };
        format!("{}/t/c/{}", self.base, self.sealer.seal(Purpose::Click, &t))
    }

    fn pixel(&self, t: &Tracked) -> String {
        format!(
            r#"<img src="{}/t/o/{}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">"#,
            self.base,
            self.sealer.seal(Purpose::Open, t)
        )
    }

    /// The VERP return path for a message, if VERP is on, and the record it
    /// needs stored when the job id is too long to carry in it.
    pub fn return_path(&self, t: &Tracked) -> Option<(String, Option<VerpRecord>)> {
        let (local, domain) = self.verp.as_ref()?;
        let inline = self.sealer.verp_token(&t.job_id, &t.address);
        if local.len() + 1 + inline.len() <= MAX_LOCAL_PART {
            return Some((format!("{local}+{inline}@{domain}"), None));
        }
        let token = self.sealer.stored_verp_token(&t.job_id, &t.address);
        let path = format!("{local}+{token}@{domain}");
        let record = VerpRecord {
            token,
            job_id: t.job_id.clone(),
        };
        Some((path, Some(record)))
    }

    /// A job's email rendered with its unsubscribe link, then tracked, and the
    /// VERP record to store before sending it (for long job ids).
    pub fn compose_email(
        &self,
        renderer: &Renderer,
        job: &Job,
    ) -> Result<(Content, Option<VerpRecord>), RenderError> {
        let t = self.tracked(job, ChannelKind::Email);
        let unsubscribe = self.unsubscribe_url(&t);
        let content = renderer.render(job, ChannelKind::Email, Some(&unsubscribe))?;
        let theirs = RecipientLinks::of(job);
        self.finish_email(&t, content, unsubscribe, &renderer.options(job), &theirs)
    }

    /// A job's LINE messages rendered, with every `uri` action (buttons, carousels,
    /// quick replies, Flex) and imagemap `linkUri` routed through the click tracker.
    /// URLs typed into text messages stay as they are: LINE shows them, and a long
    /// tracking URL in a chat bubble helps nobody.
    pub fn compose_line(&self, renderer: &Renderer, job: &Job) -> Result<Content, RenderError> {
        let content = renderer.render(job, ChannelKind::Line, None)?;
        if !self.line_clicks || !renderer.options(job).tracking {
            return Ok(content);
        }
        let Content::Line { mut messages } = content else {
            return Ok(content);
        };
        let t = self.tracked(job, ChannelKind::Line);
        let theirs = RecipientLinks::of(job);
        for m in &mut messages {
            self.track_line_links(&t, &theirs, m);
        }
        Ok(Content::Line { messages })
    }

    /// A job's SMS rendered, each web link replaced by a short tracked link
    /// (`{public_url}/s/{code}`): a sealed click token is too long for a text
    /// message, so the token is stored under the code and the caller must save
    /// the returned links before sending.
    pub fn compose_sms(
        &self,
        renderer: &Renderer,
        job: &Job,
    ) -> Result<(Content, Vec<ShortLink>), RenderError> {
        let content = renderer.render(job, ChannelKind::Sms, None)?;
        if !self.sms_clicks || !renderer.options(job).tracking {
            return Ok((content, Vec::new()));
        }
        let Content::Sms { text } = content else {
            return Ok((content, Vec::new()));
        };
        let t = self.tracked(job, ChannelKind::Sms);
        let theirs = RecipientLinks::of(job);
        let mut links = Vec::new();
        let text = rewrite::rewrite_text(&text, |url| {
            if !self.may_track(url, &theirs) {
                return None;
            }
            let code = self.sealer.short_code(&t.job_id, url);
            let token = self.sealer.seal(
                Purpose::Click,
                &Tracked {
                    url: Some(url.to_owned()),
                    ..t.clone()
                },
            );
            let short = self.short_url(&code);
            links.push(ShortLink { code, token });
            Some(short)
        });
        Ok((Content::Sms { text }, links))
    }

    pub fn short_url(&self, code: &str) -> String {
        format!("{}/s/{code}", self.base)
    }

    /// A web link that is neither ours nor the recipient's.
    fn may_track(&self, url: &str, theirs: &RecipientLinks) -> bool {
        rewrite::trackable(url) && !url.starts_with(&self.base) && !theirs.covers(url)
    }

    fn track_line_links(
        &self,
        t: &Tracked,
        theirs: &RecipientLinks,
        value: &mut serde_json::Value,
    ) {
        match value {
            serde_json::Value::Object(map) => {
                let is_uri_action = map.get("type").and_then(|v| v.as_str()) == Some("uri");
                for (key, v) in map.iter_mut() {
                    let link = (is_uri_action && key == "uri") || key == "linkUri";
                    match v {
                        serde_json::Value::String(url) if link && self.may_track(url, theirs) => {
                            *url = self.click_url(t, url);
                        }
                        _ => self.track_line_links(t, theirs, v),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    self.track_line_links(t, theirs, v);
                }
            }
            _ => {}
        }
    }

    /// Tracking applied to a rendered email: links through the click tracker (not
    /// our own links nor the recipient's), the pixel, the unsubscribe URL and the return path.
    fn finish_email(
        &self,
        t: &Tracked,
        content: Content,
        unsubscribe: String,
        opts: &TemplateOptions,
        theirs: &RecipientLinks,
    ) -> Result<(Content, Option<VerpRecord>), RenderError> {
        let Content::Email {
            subject,
            html,
            text,
            ..
        } = content
        else {
            return Ok((content, None));
        };
        let clicks = self.clicks && opts.tracking;
        let link = |u: &str| (clicks && self.may_track(u, theirs)).then(|| self.click_url(t, u));
        let text = match (text, &html) {
            (Some(text), _) => Some(text),
            (None, Some(html)) => Some(rewrite::html_to_text(html).map_err(RenderError)?),
            (None, None) => None,
        }
        .map(|text| rewrite::rewrite_text(&text, link));
        let pixel = (self.opens && opts.tracking).then(|| self.pixel(t));
        let html = html
            .map(|h| rewrite::rewrite_html(&h, pixel.as_deref(), link))
            .transpose()
            .map_err(RenderError)?;
        let (return_path, verp) = self.return_path(t).unzip();
        let content = Content::Email {
            subject,
            html,
            text,
            extras: EmailExtras {
                unsubscribe_url: (!opts.transactional).then_some(unsubscribe),
                return_path,
            },
        };
        Ok((content, verp.flatten()))
    }
}
