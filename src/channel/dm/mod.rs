//! Direct mail: rows in print files for a mailing house (`tayori_channels::dm`).

mod config;

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tayori_channels::dm::{DmEncoder, PrintBatches, PrintSettings};
use tayori_channels::{Channel, Content, Encode, PostalAddress};

use crate::channel::section::{self, Common};
use crate::channel::{
    inline_content, typed_content, BuildError, ChannelPlugin, ChannelSettings, Compose,
    ConfigContext, Source, Transport,
};
use crate::channel_id::ChannelId;
use crate::config::KeyError;
use crate::job::{Job, JobError, To};
use crate::render::{context, RenderError};
use crate::tracking::Records;
pub use config::DmSection;

pub const ID: ChannelId = ChannelId::new("dm");

pub struct Dm;

/// `content.dm`: named fields for the print file (coupon code, message lines…).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DmContent {
    pub fields: BTreeMap<String, String>,
}

/// The job's `to.postal`, if it has one that reads as an address.
fn postal(to: &To) -> Option<PostalAddress> {
    serde_json::from_value(to.addresses.get("postal")?.clone()).ok()
}

impl ChannelPlugin for Dm {
    fn id(&self) -> ChannelId {
        ID
    }

    fn address_key(&self) -> &'static str {
        "postal"
    }

    fn example_address(&self) -> serde_json::Value {
        serde_json::json!({
            "postal_code": "100-0001",
            "address1": "東京都千代田区千代田1-1",
            "name": "山田 太郎",
            "honorific": "様"
        })
    }

    /// The postal code identifies a postal address for suppression and logs.
    fn address<'a>(&self, to: &'a To) -> Option<&'a str> {
        to.addresses
            .get("postal")?
            .get("postal_code")?
            .as_str()
            .map(str::trim)
            .filter(|a| !a.is_empty())
    }

    fn check_address(&self, to: &To) -> Result<(), JobError> {
        match to.addresses.get("postal") {
            None | Some(serde_json::Value::Null) => Ok(()),
            Some(v) => super::typed_part::<PostalAddress>("to.postal", v).map(drop),
        }
    }

    fn recipient(&self, to: &To) -> tayori_channels::Recipient {
        tayori_channels::Recipient {
            name: to.name.clone(),
            address: self.address(to).unwrap_or_default().to_owned(),
            postal: postal(to),
        }
    }

    fn template_files(&self) -> &'static [&'static str] {
        &["dm.json"]
    }

    fn check_content(&self, content: &serde_json::Value) -> Result<(), JobError> {
        typed_content::<DmContent>(ID, content).map(drop)
    }

    fn address_schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        gen.subschema_for::<PostalAddress>()
    }

    fn content_schema(&self, gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
        gen.subschema_for::<DmContent>()
    }

    fn transports(&self) -> &'static [&'static str] {
        &["print"]
    }

    fn configure(
        &self,
        section: &toml::Table,
        _cx: &ConfigContext<'_>,
    ) -> Result<(Common, Box<dyn ChannelSettings>), KeyError> {
        let (common, own) = section::split::<DmSection>(ID, section)?;
        let print = match common.transport(ID, self.transports())? {
            Transport::Native => Some(own.print_settings(common.dir.as_deref())?),
            _ => None,
        };
        let encoder = own.encoder()?;
        Ok((common, Box::new(DmSettings { print, encoder })))
    }
}

/// `[channels.dm]`, checked.
pub struct DmSettings {
    /// The print writer's settings, when the transport is print files.
    print: Option<PrintSettings>,
    /// One job's print file in the configured layout (`file`, `null`, `tayori render`).
    encoder: DmEncoder,
}

impl ChannelSettings for DmSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn encoder(&self) -> Result<Box<dyn Encode>, BuildError> {
        Ok(Box::new(self.encoder.clone()))
    }

    fn native_sender(&self) -> Result<Arc<dyn Channel>, BuildError> {
        let print = self
            .print
            .clone()
            .ok_or_else(|| BuildError::new(ID, "dir is required for print files"))?;
        let batches = PrintBatches::open(print).map_err(|e| BuildError::new(ID, e.to_string()))?;
        Ok(Arc::new(batches))
    }

    /// The fields for the print file: the template's `dm.json` (an object;
    /// values that are not strings are written as JSON) or `content.dm.fields`.
    fn compose(&self, job: &Job, cx: &Compose<'_>) -> Result<(Content, Records), RenderError> {
        let ctx = context(job, None);
        let r = cx.renderer;
        let fields = match Source::of(&Dm, job, r)? {
            Source::Template(name) => {
                let Some(Value::Object(map)) = r.json_part(name, "dm.json", &ctx)? else {
                    return Err(RenderError(format!(
                        "{name}/dm.json must be an object of fields"
                    )));
                };
                map.into_iter()
                    .map(|(k, v)| {
                        let text = v
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string());
                        (k, text)
                    })
                    .collect()
            }
            Source::Inline(value) => {
                let d: DmContent = inline_content(ID, value)?;
                let mut fields = BTreeMap::new();
                for (k, v) in &d.fields {
                    fields.insert(
                        k.clone(),
                        r.inline(&format!("content.dm.fields.{k}"), v, &ctx)?,
                    );
                }
                fields
            }
        };
        Ok((Content::Dm { fields }, Records::default()))
    }
}
