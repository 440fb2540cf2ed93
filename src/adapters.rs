//! Builds each enabled channel's adapter from its config section.

use std::sync::Arc;

use tayori_channels::dm::{DmEncoder, PrintBatches};
use tayori_channels::email::smtp::SmtpChannel;
use tayori_channels::email::EmailEncoder;
use tayori_channels::line::{LineClient, LineEncoder};
use tayori_channels::sms::http_gateway::HttpGatewayClient;
use tayori_channels::sms::twilio::TwilioClient;
use tayori_channels::sms::vonage::VonageClient;
use tayori_channels::sms::SmsEncoder;
use tayori_channels::{Channel, ChannelKind, Encode, FileTransport, NullTransport};

use crate::config::ChannelConfig;
use crate::dm_settings::DmSettings;
use crate::email_settings::EmailSettings;
use crate::sms_settings::SmsSettings;

/// The protocol encoder for a channel.
pub fn encoder(kind: ChannelKind, ch: &ChannelConfig) -> Result<Box<dyn Encode>, String> {
    Ok(match kind {
        ChannelKind::Email => Box::new(email_encoder(ch)?),
        ChannelKind::Line => Box::new(line_encoder(ch)),
        ChannelKind::Sms => Box::new(SmsEncoder),
        ChannelKind::Dm => Box::new(DmEncoder),
    })
}

fn email_encoder(ch: &ChannelConfig) -> Result<EmailEncoder, String> {
    let settings = EmailSettings::from_channel(ch).map_err(key_error)?;
    let options = settings.encoder_options(ch).map_err(key_error)?;
    EmailEncoder::with_options(&options)
}

fn key_error((key, message): (String, String)) -> String {
    format!("{key}: {message}")
}

fn line_encoder(ch: &ChannelConfig) -> LineEncoder {
    let aggregation_units = ch
        .provider
        .get("custom_aggregation_units")
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    LineEncoder { aggregation_units }
}

/// The adapter for a channel: its encoder behind the configured transport.
/// `public_url` is the base of the webhooks providers are told to call.
pub fn build(
    kind: ChannelKind,
    ch: &ChannelConfig,
    public_url: &str,
) -> Result<Arc<dyn Channel>, String> {
    let enc = encoder(kind, ch)?;
    match ch.transport.as_deref() {
        Some("file") => {
            let dir = ch.dir.as_ref().ok_or_else(|| {
                format!("channels.{kind}.dir is required for transport = \"file\"")
            })?;
            let t = FileTransport::new(dir, enc)
                .map_err(|e| format!("channels.{kind}.dir {}: {e}", dir.display()))?;
            Ok(Arc::new(t))
        }
        Some("null") => Ok(Arc::new(NullTransport::new(enc))),
        None | Some("smtp") if kind == ChannelKind::Email => {
            let settings = EmailSettings::from_channel(ch).map_err(key_error)?;
            let smtp = settings.smtp_settings(ch).map_err(key_error)?;
            Ok(Arc::new(SmtpChannel::new(&smtp, email_encoder(ch)?)?))
        }
        None | Some("api") if kind == ChannelKind::Sms => {
            let settings = SmsSettings::from_channel(ch).map_err(key_error)?;
            match settings.provider.as_deref() {
                Some("twilio") => {
                    let twilio = settings.twilio(public_url).map_err(key_error)?;
                    Ok(Arc::new(TwilioClient::new(twilio, settings.limits())?))
                }
                Some("vonage") => {
                    let vonage = settings.vonage(public_url).map_err(key_error)?;
                    Ok(Arc::new(VonageClient::new(vonage, settings.limits())?))
                }
                Some("http") => {
                    let gateway = settings.http_gateway().map_err(key_error)?;
                    Ok(Arc::new(HttpGatewayClient::new(
                        gateway,
                        settings.limits(),
                    )?))
                }
                other => Err(format!("channels.sms.provider {other:?} is not available")),
            }
        }
        None | Some("print") if kind == ChannelKind::Dm => {
            let settings = DmSettings::from_channel(ch).map_err(key_error)?;
            let print = settings.print_settings(ch).map_err(key_error)?;
            Ok(Arc::new(
                PrintBatches::open(print).map_err(|e| e.to_string())?,
            ))
        }
        None | Some("api") if kind == ChannelKind::Line => {
            let token = ch
                .setting("channel_access_token")
                .ok_or("channels.line.channel_access_token is required")?;
            let timeout = ch
                .setting("timeout")
                .map(crate::config::duration::parse)
                .transpose()?;
            let client = LineClient::new(
                ch.setting("api_base").unwrap_or("https://api.line.me"),
                token,
                timeout.unwrap_or(std::time::Duration::from_secs(10)),
                line_encoder(ch),
            )?;
            Ok(Arc::new(client))
        }
        other => Err(format!(
            "channels.{kind}.transport {other:?} is not available in this build"
        )),
    }
}
