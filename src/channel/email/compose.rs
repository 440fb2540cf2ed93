//! An email for a job: subject and parts rendered, then tracked (links through
//! the click tracker, the open pixel), with its unsubscribe URL and VERP
//! return path.

use tayori_channels::{Content, EmailExtras};

use super::EmailContent;
use crate::channel::{inline_content, ChannelPlugin, Compose, Source};
use crate::job::Job;
use crate::render::{context, RenderError};
use crate::tracking::{rewrite, RecipientLinks, Records, Tracked, Tracker, VerpRecord};

/// The longest local part of an address (RFC 5321), which a VERP return path must fit.
const MAX_LOCAL_PART: usize = 64;

/// What the email channel's settings say about tracking.
pub struct Tracking {
    pub opens: bool,
    pub clicks: bool,
    /// The VERP mailbox (`bounces`, `example.com`), when VERP is on.
    pub verp: Option<(String, String)>,
}

struct Rendered {
    subject: String,
    html: Option<String>,
    text: Option<String>,
}

fn render(job: &Job, cx: &Compose<'_>, unsubscribe: Option<&str>) -> Result<Rendered, RenderError> {
    let ctx = context(job, unsubscribe);
    let r = cx.renderer;
    match Source::of(&super::Email, job, r)? {
        Source::Template(name) => Ok(Rendered {
            subject: r
                .text_part(name, "subject.txt", &ctx)?
                .unwrap_or_default()
                .trim()
                .to_owned(),
            html: r.text_part(name, "email.html", &ctx)?,
            text: r.text_part(name, "email.txt", &ctx)?,
        }),
        Source::Inline(value) => {
            let e: EmailContent = inline_content(super::Email.id(), value)?;
            if e.html.is_none() && e.text.is_none() {
                return Err(RenderError("content.email needs html or text".into()));
            }
            Ok(Rendered {
                subject: r
                    .inline("content.email.subject", &e.subject, &ctx)?
                    .trim()
                    .to_owned(),
                html: e
                    .html
                    .as_deref()
                    .map(|s| r.inline("content.email.html", s, &ctx))
                    .transpose()?,
                text: e
                    .text
                    .as_deref()
                    .map(|s| r.inline("content.email.text", s, &ctx))
                    .transpose()?,
            })
        }
    }
}

/// The job's email: without a tracker (no `http.tracking_secret`) as
/// rendered; with one, with its unsubscribe link, tracking and return path,
/// and the VERP record to store before sending it (for long job ids).
pub fn compose(
    job: &Job,
    cx: &Compose<'_>,
    tracking: &Tracking,
) -> Result<(Content, Records), RenderError> {
    let Some(tracker) = cx.tracker else {
        let r = render(job, cx, None)?;
        let content = Content::Email {
            subject: r.subject,
            html: r.html,
            text: r.text,
            extras: EmailExtras::default(),
        };
        return Ok((content, Records::default()));
    };
    let address = super::Email.address(&job.to).unwrap_or_default();
    let t = tracker.tracked(job, super::ID, address);
    let unsubscribe = tracker.unsubscribe_url(&t);
    let r = render(job, cx, Some(&unsubscribe))?;
    let opts = cx.renderer.options(job);
    let theirs = RecipientLinks::of(job);
    let clicks = tracking.clicks && opts.tracking;
    let link =
        |u: &str| (clicks && tracker.may_track(u, &theirs)).then(|| tracker.click_url(&t, u));
    let text = match (r.text, &r.html) {
        (Some(text), _) => Some(text),
        (None, Some(html)) => Some(rewrite::html_to_text(html).map_err(RenderError)?),
        (None, None) => None,
    }
    .map(|text| rewrite::rewrite_text(&text, link));
    let pixel = (tracking.opens && opts.tracking).then(|| tracker.pixel(&t));
    let html = r
        .html
        .map(|h| rewrite::rewrite_html(&h, pixel.as_deref(), link))
        .transpose()
        .map_err(RenderError)?;
    let (return_path, verp) = return_path(tracker, tracking, &t).unzip();
    let content = Content::Email {
        subject: r.subject,
        html,
        text,
        extras: EmailExtras {
            unsubscribe_url: (!opts.transactional).then_some(unsubscribe),
            return_path,
        },
    };
    let records = Records {
        verp: verp.flatten(),
        ..Records::default()
    };
    Ok((content, records))
}

/// The VERP return path for a message, if VERP is on, and the record it needs
/// stored when the job id is too long to carry in it.
fn return_path(
    tracker: &Tracker,
    tracking: &Tracking,
    t: &Tracked,
) -> Option<(String, Option<VerpRecord>)> {
    let (local, domain) = tracking.verp.as_ref()?;
    let sealer = tracker.sealer();
    let inline = sealer.verp_token(&t.job_id, &t.address);
    if local.len() + 1 + inline.len() <= MAX_LOCAL_PART {
        return Some((format!("{local}+{inline}@{domain}"), None));
    }
    let record = tracker.stored_verp(t);
    let path = format!("{local}+{}@{domain}", record.token);
    Some((path, Some(record)))
}

/// What a marketing email template lacks under Japan's Act on Specified Electronic
/// Mail (and Gmail/Yahoo bulk-sender rules): a visible unsubscribe link in every
/// body part, and the sender's identity. `sender` is the From display name.
pub fn compliance_warnings(
    renderer: &crate::render::Renderer,
    name: &str,
    sender: Option<&str>,
) -> Vec<String> {
    if !renderer.exists(name) || renderer.template_options(name).transactional {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    for file in ["email.html", "email.txt"] {
        let Some(source) = renderer.source(name, file) else {
            continue;
        };
        if !source.contains("unsubscribe_url") {
            warnings.push(format!(
                "{name}/{file}: no visible unsubscribe link: add {{{{ unsubscribe_url }}}} \
                 (or set transactional = true in {name}/template.toml)"
            ));
        }
        if !sender.is_some_and(|s| source.contains(s))
            && !source.contains('〒')
            && !source.contains("住所")
        {
            warnings.push(format!(
                "{name}/{file}: no sender identity found: name the sender ({}) and its address \
                 in the footer",
                sender.unwrap_or("the From display name")
            ));
        }
    }
    warnings
}
