//! A job's content for one channel, personalized: the template rendered and, for
//! email, tracking, the unsubscribe link and the bounce address applied.

use tayori_channels::{ChannelKind, Content};

use crate::job::Job;
use crate::render::{RenderError, Renderer};
use crate::tracking::{Records, Tracker};

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
        self.compose_for_send(job, kind).map(|(c, _)| c)
    }

    /// Like [`compose`](Self::compose), plus what must be stored in Redis before
    /// the message is sent: its short links (SMS) and, for a job id too long for a
    /// VERP return path, the job id under the path's token (email).
    pub fn compose_for_send(
        &self,
        job: &Job,
        kind: ChannelKind,
    ) -> Result<(Content, Records), RenderError> {
        let Some(tracker) = &self.tracker else {
            return Ok((self.renderer.render(job, kind, None)?, Records::default()));
        };
        Ok(match kind {
            ChannelKind::Email => {
                let (content, verp) = tracker.compose_email(&self.renderer, job)?;
                let records = Records {
                    verp,
                    ..Records::default()
                };
                (content, records)
            }
            ChannelKind::Line => (
                tracker.compose_line(&self.renderer, job)?,
                Records::default(),
            ),
            ChannelKind::Sms => {
                let (content, short_links) = tracker.compose_sms(&self.renderer, job)?;
                let records = Records {
                    short_links,
                    ..Records::default()
                };
                (content, records)
            }
            _ => (self.renderer.render(job, kind, None)?, Records::default()),
        })
    }
}
