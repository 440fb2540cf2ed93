//! `[channels.email]`: the keys beyond those every channel has, typed and checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tayori_channels::email::smtp::{SmtpSettings, TlsMode};
use tayori_channels::email::{DkimKey, EmailEncoder, EmailOptions};

use crate::config::{duration, ChannelConfig};

/// A config problem: the key (under `channels.email.`) and what to do about it.
pub type KeyError = (String, String);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    pub smtp: Option<SmtpSection>,
    /// Envelope sender (Return-Path). Default: the From address.
    pub envelope_from: Option<String>,
    /// Envelope sender `local+{token}@domain` per message, so bounces map to jobs.
    #[serde(default)]
    pub verp: bool,
    /// A mailbox listed in List-Unsubscribe beside the one-click URL.
    pub unsubscribe_mailto: Option<String>,
    /// Extra headers on every message.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub dkim: Option<DkimSection>,
    #[serde(default = "yes")]
    pub track_opens: bool,
    #[serde(default = "yes")]
    pub track_clicks: bool,
    /// Limits per recipient domain (`"docomo.ne.jp" = "20/s"`), shared by all
    /// daemons; `"*"` gives every other domain its own bucket at that rate.
    #[serde(default)]
    pub domain_rates: BTreeMap<String, crate::config::Rate>,
    /// Common to all channels; read by `ChannelConfig::pause`.
    #[serde(default)]
    pub pause: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    pub host: String,
    /// Default: 25 without TLS, 587 with STARTTLS, 465 with TLS.
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Default: the channel's concurrency.
    pub pool_size: Option<u32>,
    /// Default: "30s".
    pub timeout: Option<String>,
    pub helo_name: Option<String>,
    /// A CA (PEM file) to trust besides the system's, for a relay with a private CA.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSection {
    pub selector: String,
    /// Default: the From address's domain.
    pub domain: Option<String>,
    /// `ed25519` (default) or `rsa`.
    #[serde(default = "ed25519")]
    pub algorithm: String,
    /// ed25519: base64 of the 32-byte seed; rsa: a PKCS#1 PEM.
    pub key_file: PathBuf,
}

fn ed25519() -> String {
    "ed25519".into()
}

impl EmailSettings {
    pub fn from_channel(ch: &ChannelConfig) -> Result<EmailSettings, KeyError> {
        let table: toml::Table = ch
            .provider
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            (
                format!("channels.email.{}", e.path()),
                e.inner().to_string(),
            )
        })
    }

    /// Composition options; reads the DKIM key file.
    pub fn encoder_options(&self, ch: &ChannelConfig) -> Result<EmailOptions, KeyError> {
        let from = ch.from.clone().ok_or((
            "channels.email.from".to_owned(),
            "required: the sender, e.g. \"Shop <news@example.com>\"".to_owned(),
        ))?;
        let dkim = match &self.dkim {
            None => None,
            Some(d) => {
                let private_key = std::fs::read_to_string(&d.key_file).map_err(|e| {
                    (
                        "channels.email.dkim.key_file".to_owned(),
                        format!("{}: {e}", d.key_file.display()),
                    )
                })?;
                let domain = match &d.domain {
                    Some(domain) => domain.clone(),
                    None => from_domain(&from).ok_or((
                        "channels.email.dkim.domain".to_owned(),
                        "required when `from` has no domain".to_owned(),
                    ))?,
                };
                Some(DkimKey {
                    selector: d.selector.clone(),
                    domain,
                    algorithm: d.algorithm.clone(),
                    private_key,
                })
            }
        };
        Ok(EmailOptions {
            from,
            reply_to: ch.reply_to.clone(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            unsubscribe_mailto: self.unsubscribe_mailto.clone(),
            dkim,
        })
    }

    /// The relay for `transport = "smtp"`.
    pub fn smtp_settings(&self, ch: &ChannelConfig) -> Result<SmtpSettings, KeyError> {
        let s = self.smtp.as_ref().ok_or((
            "channels.email.smtp".to_owned(),
            "transport = \"smtp\" needs the relay: add [channels.email.smtp] with host = \"…\""
                .to_owned(),
        ))?;
        let timeout = match &s.timeout {
            Some(t) => {
                duration::parse(t).map_err(|m| ("channels.email.smtp.timeout".to_owned(), m))?
            }
            None => Duration::from_secs(30),
        };
        let credentials = match (&s.username, &s.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err((
                    "channels.email.smtp.password".to_owned(),
                    "username and password go together: set both or neither".to_owned(),
                ))
            }
        };
        let ca_pem = s
            .ca_file
            .as_ref()
            .map(|f| {
                std::fs::read(f).map_err(|e| {
                    (
                        "channels.email.smtp.ca_file".to_owned(),
                        format!("{}: {e}", f.display()),
                    )
                })
            })
            .transpose()?;
        Ok(SmtpSettings {
            host: s.host.clone(),
            port: s.port.unwrap_or(match s.tls {
                TlsMode::None => 25,
                TlsMode::Starttls => 587,
                TlsMode::Tls => 465,
            }),
            tls: s.tls,
            credentials,
            pool_size: s
                .pool_size
                .unwrap_or(u32::try_from(ch.concurrency).unwrap_or(u32::MAX)),
            timeout,
            helo_name: s.helo_name.clone(),
            envelope_from: self.envelope_from.clone(),
            ca_pem,
        })
    }

    /// The mailbox VERP addresses are made from, when VERP is on.
    pub fn verp_base(&self, ch: &ChannelConfig) -> Option<String> {
        if !self.verp {
            return None;
        }
        self.envelope_from
            .clone()
            .or_else(|| ch.from.as_deref().and_then(bare_address))
    }
}

fn bare_address(mailbox: &str) -> Option<String> {
    EmailEncoder::new(mailbox, None)
        .ok()
        .map(|e| e.from_address().to_string())
}

fn from_domain(mailbox: &str) -> Option<String> {
    EmailEncoder::new(mailbox, None)
        .ok()
        .map(|e| e.from_address().domain().to_owned())
}
