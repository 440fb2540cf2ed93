//! A job's content for one channel, personalized: the template rendered and, for
//! email, tracking, the unsubscribe link and the bounce address applied.

use tayori_channels::{ChannelKind, Content};

use crate::job::Job;
use crate::render::{RenderError, Renderer};
use crate::tracking::{ShortLink, Tracker};

pub struct Composer {
    pub renderer: Renderer,
    /// Present when `http.tracking_secret` is set (required with email).
    pub tracker: Option<std::sync::Arc<Tracker>>,
}

impl Composer {
    /// Templates from `templates.dir`, and the tracker when email is tracked.
    pub fn load(config: &crate::config::Config) -> Result<Composer, String> {
        let renderer = Renderer::load(&config.templates_dir(), config.templates.fuel)
            .map_err(|e| format!("templates: {}", e.0))?;
        let tracker = config
            .tracking()
            .map(|t| Tracker::new(&t).map(std::sync::Arc::new))
            .transpose()?;
        Ok(Composer { renderer, tracker })
    }

    pub fn compose(&self, job: &Job, kind: ChannelKind) -> Result<Content, RenderError> {
        match (&self.tracker, kind) {
            (Some(tracker), ChannelKind::Email) => tracker.compose_email(&self.renderer, job),
            (Some(tracker), ChannelKind::Line) => tracker.compose_line(&self.renderer, job),
            (Some(tracker), ChannelKind::Sms) => {
                tracker.compose_sms(&self.renderer, job).map(|(c, _)| c)
            }
            _ => self.renderer.render(job, kind, None),
        }
    }

    /// Like [`compose`](Self::compose), plus the short links the content points
    /// to (SMS), which must be stored before the message is sent.
    pub fn compose_for_send(
        &self,
        job: &Job,
        kind: ChannelKind,
    ) -> Result<(Content, Vec<ShortLink>), RenderError> {
        match (&self.tracker, kind) {
            (Some(tracker), ChannelKind::Sms) => tracker.compose_sms(&self.renderer, job),
            _ => self.compose(job, kind).map(|c| (c, Vec::new())),
        }
    }
}
