//! `[channels.email]`: typed and checked once, at start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tayori_channels::email::smtp::{SmtpSettings, TlsMode};
use tayori_channels::email::{DkimKey, EmailEncoder, EmailOptions};

use crate::config::KeyError;
use crate::units::Rate;

/// The email channel's own keys (beside the common ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    /// The From header, e.g. "Shop <news@example.com>".
    pub from: Option<String>,
    pub reply_to: Option<String>,
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
    pub domain_rates: BTreeMap<String, Rate>,
    /// Recipient domains whose carrier-issued local parts with consecutive,
    /// leading or trailing dots (`taro..yamada@docomo.ne.jp`) are accepted and
    /// sent quoted; every other domain stays strict. `[]` turns it off.
    #[serde(default = "legacy_local_part_domains")]
    pub legacy_local_part_domains: Vec<String>,
    /// The relay is SendGrid: its signed Event Webhook at `/webhooks/sendgrid`.
    pub sendgrid: Option<SendgridSection>,
}

/// `[channels.email.sendgrid]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridSection {
    /// The Event Webhook's verification key (Base64, as SendGrid shows it).
    pub webhook_public_key: String,
    /// Requests signed longer ago than this are refused. Default: "24h", the
    /// time SendGrid keeps retrying a delivery that failed.
    #[serde(default, deserialize_with = "crate::units::duration::optional")]
    pub max_age: Option<Duration>,
}

impl SendgridSection {
    /// The checked key and the age limit.
    pub fn webhook(
        &self,
    ) -> Result<(tayori_channels::email::sendgrid::WebhookKey, Duration), KeyError> {
        let verifier =
            tayori_channels::email::sendgrid::WebhookKey::from_base64(&self.webhook_public_key)
                .map_err(|m| KeyError::new(key("sendgrid.webhook_public_key"), m))?;
        let max_age = self.max_age.unwrap_or(Duration::from_secs(24 * 3600));
        if max_age.is_zero() {
            return Err(KeyError::new(
                key("sendgrid.max_age"),
                "must be longer than 0, e.g. \"24h\"",
            ));
        }
        Ok((verifier, max_age))
    }
}

fn yes() -> bool {
    true
}

/// docomo's and au's (KDDI) mail domains, whose old addresses of this shape are
/// still in Japanese customer lists.
fn legacy_local_part_domains() -> Vec<String> {
    vec!["docomo.ne.jp".into(), "ezweb.ne.jp".into()]
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
    #[serde(default, deserialize_with = "crate::units::duration::optional")]
    pub timeout: Option<Duration>,
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
    /// ed25519: base64 of the 32-byte seed; rsa: a PKCS#1 or PKCS#8 PEM.
    pub key_file: PathBuf,
}

fn ed25519() -> String {
    "ed25519".into()
}

fn key(k: &str) -> String {
    format!("channels.email.{k}")
}

impl EmailSection {
    /// Composition options, each part checked on its own so an error names its
    /// key; reads the DKIM key file.
    pub fn encoder_options(&self) -> Result<EmailOptions, KeyError> {
        let from = self.from.clone().ok_or_else(|| {
            KeyError::new(
                key("from"),
                "required: the sender, e.g. \"Shop <news@example.com>\"",
            )
        })?;
        let mut options = EmailOptions {
            from: from.clone(),
            ..EmailOptions::default()
        };
        let check = |options: &EmailOptions, k: &str| {
            EmailEncoder::with_options(options)
                .map(drop)
                .map_err(|m| KeyError::new(key(k), m))
        };
        check(&options, "from")?;
        options.reply_to = self.reply_to.clone();
        check(&options, "reply_to")?;
        options.headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        check(&options, "headers")?;
        options.unsubscribe_mailto = self.unsubscribe_mailto.clone();
        check(&options, "unsubscribe_mailto")?;
        if let Some(i) = self.legacy_local_part_domains.iter().position(|d| {
            let d = d.trim();
            d.is_empty() || !d.is_ascii() || d.contains(|c: char| c == '@' || c.is_whitespace())
        }) {
            return Err(KeyError::new(
                key(&format!("legacy_local_part_domains[{i}]")),
                "must be a domain in ASCII such as \"docomo.ne.jp\" (no @)",
            ));
        }
        options.legacy_local_part_domains = self.legacy_local_part_domains.clone();
        options.sendgrid_job_arg = self.sendgrid.is_some();
        if let Some(d) = &self.dkim {
            let private_key = std::fs::read_to_string(&d.key_file).map_err(|e| {
                KeyError::new(
                    key("dkim.key_file"),
                    format!("{}: {e}", d.key_file.display()),
                )
            })?;
            let domain = match &d.domain {
                Some(domain) => domain.clone(),
                None => from_domain(&from).ok_or_else(|| {
                    KeyError::new(key("dkim.domain"), "required when `from` has no domain")
                })?,
            };
            options.dkim = Some(DkimKey {
                selector: d.selector.clone(),
                domain,
                algorithm: d.algorithm.clone(),
                private_key,
            });
            check(&options, "dkim")?;
        }
        Ok(options)
    }

    /// The relay for the SMTP transport; `concurrency` is the default pool size.
    pub fn smtp_settings(&self, concurrency: usize) -> Result<SmtpSettings, KeyError> {
        let s = self.smtp.as_ref().ok_or_else(|| {
            KeyError::new(
                key("smtp"),
                "transport = \"smtp\" needs the relay: add [channels.email.smtp] with host = \"…\"",
            )
        })?;
        let credentials = match (&s.username, &s.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(KeyError::new(
                    key("smtp.password"),
                    "username and password go together: set both or neither",
                ))
            }
        };
        let ca_pem = s
            .ca_file
            .as_ref()
            .map(|f| {
                std::fs::read(f).map_err(|e| {
                    KeyError::new(key("smtp.ca_file"), format!("{}: {e}", f.display()))
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
                .unwrap_or(u32::try_from(concurrency).unwrap_or(u32::MAX)),
            timeout: s.timeout.unwrap_or(Duration::from_secs(30)),
            helo_name: s.helo_name.clone(),
            envelope_from: self.envelope_from.clone(),
            ca_pem,
        })
    }

    /// The VERP mailbox (`bounces`, `example.com`), when VERP is on: the
    /// envelope sender, or else the From address.
    pub fn verp_mailbox(&self) -> Result<Option<(String, String)>, KeyError> {
        if !self.verp {
            return Ok(None);
        }
        let Some(base) = self
            .envelope_from
            .clone()
            .or_else(|| self.from.as_deref().and_then(bare_address))
        else {
            return Ok(None);
        };
        let (local, domain) = base
            .rsplit_once('@')
            .filter(|(l, d)| !l.is_empty() && !d.is_empty() && !l.contains('+'))
            .ok_or_else(|| {
                KeyError::new(
                    key("envelope_from"),
                    format!("{base:?} is not an address like bounces@example.com (without '+')"),
                )
            })?;
        Ok(Some((local.to_owned(), domain.to_owned())))
    }

    /// The display name of the From (`Example Shop`), if it has one.
    pub fn sender_name(&self) -> Option<String> {
        let from = self.from.as_deref()?;
        let (name, _) = from.rsplit_once('<')?;
        let name = name.trim().trim_matches('"').trim();
        (!name.is_empty()).then(|| name.to_owned())
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
