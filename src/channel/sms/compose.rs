//! An SMS for a job: rendered, each web link replaced by a short tracked link
//! (`{public_url}/s/{code}`) whose token the caller stores before sending.

use tayori_channels::Content;

use super::SmsContent;
use crate::channel::{inline_content, ChannelPlugin, Compose, Source};
use crate::job::Job;
use crate::render::{context, RenderError};
use crate::tracking::{rewrite, RecipientLinks, Records};

pub fn compose(
    job: &Job,
    cx: &Compose<'_>,
    track_clicks: bool,
    link_ttl: std::time::Duration,
) -> Result<(Content, Records), RenderError> {
    let ctx = context(job, None);
    let r = cx.renderer;
    let text = match Source::of(&super::Sms, job, r)? {
        Source::Template(name) => r.text_part(name, "sms.txt", &ctx)?.unwrap_or_default(),
        Source::Inline(value) => {
            let s: SmsContent = inline_content(super::ID, value)?;
            r.inline("content.sms.text", &s.text, &ctx)?
        }
    };
    let text = text.trim_end().to_owned();
    let Some(tracker) = cx
        .tracker
        .filter(|_| track_clicks && r.options(job).tracking)
    else {
        return Ok((Content::Sms { text }, Records::default()));
    };
    let address = super::Sms.address(&job.to).unwrap_or_default();
    let t = tracker.tracked(job, super::ID, address);
    let theirs = RecipientLinks::of(job);
    let mut short_links = Vec::new();
    let text = rewrite::rewrite_text(&text, |url| {
        if !tracker.may_track(url, &theirs) {
            return None;
        }
        let (short, record) = tracker.short_link(&t, url, link_ttl);
        short_links.push(record);
        Some(short)
    });
    let records = Records {
        short_links,
        link_ttl,
        ..Records::default()
    };
    Ok((Content::Sms { text }, records))
}
