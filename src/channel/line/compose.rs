//! LINE messages for a job: rendered, with every `uri` action (buttons,
//! carousels, quick replies, Flex) and imagemap `linkUri` routed through the
//! click tracker. URLs typed into text messages stay as they are: LINE shows
//! them, and a long tracking URL in a chat bubble helps nobody.

use serde_json::Value;
use tayori_channels::Content;

use super::LineContent;
use crate::channel::{inline_content, ChannelPlugin, Compose, Source};
use crate::job::Job;
use crate::render::{context, RenderError};
use crate::tracking::{RecipientLinks, Records, Tracked, Tracker};

pub fn compose(
    job: &Job,
    cx: &Compose<'_>,
    track_clicks: bool,
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
        for m in &mut messages {
            track_links(tracker, &t, &theirs, m);
        }
    }
    Ok((Content::Line { messages }, Records::default()))
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
