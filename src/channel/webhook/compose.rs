//! The body for a job: the template's `webhook.json` or the job's
//! `content.webhook.body`, with every string in it rendered.

use tayori_channels::Content;

use super::WebhookContent;
use crate::channel::{inline_content, Compose, Source};
use crate::job::Job;
use crate::render::{context, RenderError};
use crate::tracking::Records;

pub fn compose(job: &Job, cx: &Compose<'_>) -> Result<(Content, Records), RenderError> {
    let ctx = context(job, None);
    let r = cx.renderer;
    let body = match Source::of(&super::Webhook, job, r)? {
        Source::Template(name) => r.json_part(name, "webhook.json", &ctx)?.unwrap_or_default(),
        Source::Inline(value) => {
            let w: WebhookContent = inline_content(super::ID, value)?;
            r.inline_json("content.webhook.body", &w.body, &ctx)?
        }
    };
    Ok((Content::Json { body }, Records::default()))
}
