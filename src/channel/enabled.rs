//! The channels a config enables, each typed and checked by its plugin, in
//! registry order: what `run`, `render`, `check-config` and `stats` work from.

use std::sync::Arc;

use tayori_channels::{Channel, Content, FileTransport, NullTransport};

use super::section::closest;
use super::{
    registry, BuildError, ChannelPlugin, ChannelSettings, Common, Compose, ConfigContext, Transport,
};
use crate::channel_id::ChannelId;
use crate::config::{Config, ConfigError, KeyError};
use crate::job::Job;
use crate::policy::Policy;
use crate::render::{RenderError, Renderer};
use crate::tracking::{Records, Tracker, TrackingSettings};

/// One enabled channel.
pub struct Enabled {
    pub id: ChannelId,
    pub plugin: &'static dyn ChannelPlugin,
    pub common: Common,
    pub transport: Transport,
    pub settings: Box<dyn ChannelSettings>,
}

impl Enabled {
    /// The transport the config asks for, built: the channel's own, a file
    /// writer or null (both around the channel's encoder).
    pub fn sender(&self) -> Result<Arc<dyn Channel>, BuildError> {
        match self.transport {
            Transport::Native => self.settings.native_sender(),
            Transport::Null => Ok(Arc::new(NullTransport::new(self.settings.encoder()?))),
            Transport::File => {
                let dir = self.common.dir.as_ref().ok_or_else(|| {
                    BuildError::new(self.id, "transport = \"file\" needs dir = \"...\"")
                })?;
                let t = FileTransport::new(dir, self.settings.encoder()?)
                    .map_err(|e| BuildError::new(self.id, format!("dir {}: {e}", dir.display())))?;
                Ok(Arc::new(t))
            }
        }
    }

    /// The transport's name, for logs and `check-config`.
    pub fn transport_name(&self) -> &str {
        self.common.transport_name(self.plugin.transports())
    }

    /// The job's message on this channel, and what to store before sending it.
    pub fn compose(&self, job: &Job, cx: &Compose<'_>) -> Result<(Content, Records), RenderError> {
        self.settings.compose(job, cx)
    }
}

/// The enabled channels, the tracker their links are made with, and the
/// policy (which names channels).
pub struct Channels {
    enabled: Vec<Enabled>,
    pub tracker: Option<Arc<Tracker>>,
    pub policy: Arc<Policy>,
}

impl Channels {
    /// Types and checks every `[channels.<id>]` section and the policy; errors
    /// name the file, the key and the fix.
    pub fn from_config(config: &Config) -> Result<Channels, ConfigError> {
        let file = config.source.as_path();
        let known: Vec<String> = registry::ids().map(|i| i.to_string()).collect();
        for name in config.channels.keys() {
            if registry::parse(name).is_err() {
                let names: Vec<&str> = known.iter().map(String::as_str).collect();
                let hint = match closest(name, &names) {
                    Some(k) => format!("did you mean [channels.{k}]?"),
                    None => format!("the channels are {}", registry::known_list()),
                };
                return Err(KeyError::new(
                    format!("channels.{name}"),
                    format!("unknown channel: {hint}"),
                )
                .in_file(file));
            }
        }
        let cx = ConfigContext { config };
        let mut enabled = Vec::new();
        for plugin in registry::PLUGINS {
            let id = plugin.id();
            let Some(section) = config.channels.get(id.as_str()) else {
                continue;
            };
            let (common, settings) = plugin
                .configure(section, &cx)
                .map_err(|e| e.in_file(file))?;
            let transport = common
                .transport(id, plugin.transports())
                .map_err(|e| e.in_file(file))?;
            enabled.push(Enabled {
                id,
                plugin: *plugin,
                common,
                transport,
                settings,
            });
        }
        let tracker = cx.tracking_secret().map(|secret| {
            Arc::new(Tracker::new(&TrackingSettings {
                secret: secret.to_owned(),
                previous_secrets: config.http.previous_tracking_secrets.clone(),
                public_url: config.http.public_url.clone(),
            }))
        });
        let policy = Policy::from_config(&config.policy, &registry::quiet_hours_defaults())
            .map_err(|e| e.in_file(file))?;
        Ok(Channels {
            enabled,
            tracker,
            policy: Arc::new(policy),
        })
    }

    pub fn get(&self, id: ChannelId) -> Option<&Enabled> {
        self.enabled.iter().find(|e| e.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Enabled> {
        self.enabled.iter()
    }

    pub fn ids(&self) -> Vec<ChannelId> {
        self.enabled.iter().map(|e| e.id).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.enabled.is_empty()
    }

    /// The address as suppressions are keyed, by the channel's settings when
    /// it is enabled (SMS: E.164 in its region).
    pub fn suppression_address(&self, id: ChannelId, address: &str) -> String {
        match self.get(id) {
            Some(e) => e.settings.suppression_address(address),
            None => address.to_owned(),
        }
    }
}

/// The templates under `templates.dir`, reading every part file a channel of
/// this build names.
pub fn load_templates(config: &Config) -> Result<Renderer, RenderError> {
    let files = registry::template_files();
    Renderer::load(&config.templates_dir(), config.templates.fuel, &files)
        .map_err(|e| RenderError(format!("templates: {}", e.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(text: &str) -> Result<Channels, String> {
        let config = Config::parse(text, std::path::Path::new("t.toml"), |_| None)
            .map_err(|e| e.to_string())?;
        Channels::from_config(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn channel_errors_name_the_file_the_key_and_the_fix() {
        let e = channels("[redis]\n[channels.sms]\nrate = \"lots\"\ntransport = \"null\"\n")
            .err()
            .unwrap();
        assert!(
            e.contains("t.toml") && e.contains("channels.sms.rate") && e.contains("100/s"),
            "{e}"
        );
        let e = channels("[redis]\n[channels.dm]\ntransport = \"file\"\n")
            .err()
            .unwrap();
        assert!(e.contains("channels.dm.dir"), "{e}");
        let e = channels("[redis]\n[channels.line]\ntransport = \"null\"\nchanel_secret = \"x\"\n")
            .err()
            .unwrap();
        assert!(
            e.contains("channels.line.chanel_secret") && e.contains("`channel_secret`"),
            "{e}"
        );
        let e = channels("[redis]\n[channels.emial]\ntransport = \"null\"\n")
            .err()
            .unwrap();
        assert!(
            e.contains("channels.emial") && e.contains("[channels.email]"),
            "{e}"
        );
        let e = channels("[redis]\n[channels.sms]\ntransport = \"carrier-pigeon\"\n")
            .err()
            .unwrap();
        assert!(
            e.contains("channels.sms.transport") && e.contains("`api`"),
            "{e}"
        );
    }

    #[test]
    fn enabled_channels_come_in_registry_order() {
        let c = channels(
            "[redis]\n[channels.dm]\ntransport = \"null\"\n[channels.line]\ntransport = \"null\"\n",
        )
        .unwrap();
        let ids: Vec<String> = c.ids().iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["line", "dm"]);
        assert_eq!(
            c.get(ChannelId::new("line")).map(|e| e.transport),
            Some(Transport::Null)
        );
    }
}
