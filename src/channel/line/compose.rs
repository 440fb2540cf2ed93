//! LINE messages for a job: rendered, with every `uri` action (buttons,
//! carousels, quick replies, Flex) and imagemap `linkUri` routed through the
//! click tracker, and every http(s) URL in the text of a `text` (or `textV2`)
//! message replaced by a short tracked link (`{public_url}/s/{code}`, as SMS
//! does): LINE shows a text's URLs as they are, and a short one reads better in
//! a chat bubble than a sealed token. The short links are stored before the
//! message goes out ([`Records`]).

use serde_json::Value;
use tayori_channels::Content;

use super::LineContent;
use crate::channel::{inline_content, ChannelPlugin, Compose, Source};
use crate::job::Job;
use crate::render::{context, RenderError};
use crate::tracking::{rewrite, RecipientLinks, Records, ShortLink, Tracked, Tracker};

pub fn compose(
    job: &Job,
    cx: &Compose<'_>,
    track_clicks: bool,
    link_ttl: std::time::Duration,
) -> Result<(Content, Records), RenderError> {
    let ctx = context(job, None);
    let r = cx.renderer;
    let rendered = match Source::of(&super::Line, job, r)? {
        Source::Template(name) => r.json_part(name, "line.json", &ctx)?.unwrap_or_default(),
        Source::Inline(value) => {
            let l: LineContent = inline_content(super::ID, value)?;
            r.inline_json("content.line.messages", &Value::Array(l.messages), &ctx)?
        }
    };
    let mut messages = match rendered {
        Value::Array(a) => a,
        other => vec![other],
    };
    if let Some(tracker) = cx
        .tracker
        .filter(|_| track_clicks && r.options(job).tracking)
    {
        let address = super::Line.address(&job.to).unwrap_or_default();
        let t = tracker.tracked(job, super::ID, address);
        let theirs = RecipientLinks::of(job);
        let mut short_links = Vec::new();
        for m in &mut messages {
            track_links(tracker, &t, &theirs, m);
            shorten_text_links(tracker, &t, &theirs, m, &mut short_links, link_ttl);
        }
        let records = Records {
            short_links,
            link_ttl,
            ..Records::default()
        };
        return Ok((Content::Line { messages }, records));
    }
    Ok((Content::Line { messages }, Records::default()))
}

/// The URLs in a text message's `text` (`text` and `textV2` messages, at the
/// top level: a text inside a Flex bubble is a component, not a message).
fn shorten_text_links(
    tracker: &Tracker,
    t: &Tracked,
    theirs: &RecipientLinks,
    message: &mut Value,
    short_links: &mut Vec<ShortLink>,
    link_ttl: std::time::Duration,
) {
    let Value::Object(map) = message else {
        return;
    };
    if !matches!(
        map.get("type").and_then(Value::as_str),
        Some("text" | "textV2")
    ) {
        return;
    }
    if let Some(Value::String(text)) = map.get_mut("text") {
        *text = rewrite::rewrite_text(text, |url| {
            if !tracker.may_track(url, theirs) {
                return None;
            }
            let (short, record) = tracker.short_link(t, url, link_ttl);
            short_links.push(record);
            Some(short)
        });
    }
}

fn track_links(tracker: &Tracker, t: &Tracked, theirs: &RecipientLinks, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_uri_action = map.get("type").and_then(|v| v.as_str()) == Some("uri");
            for (key, v) in map.iter_mut() {
                let link = (is_uri_action && key == "uri") || key == "linkUri";
                match v {
                    Value::String(url) if link && tracker.may_track(url, theirs) => {
                        *url = tracker.click_url(t, url);
                    }
                    _ => track_links(tracker, t, theirs, v),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                track_links(tracker, t, theirs, v);
            }
        }
        _ => {}
    }
}
