//! `[channels.dm]`: print batches for the direct-mail vendor, typed and checked.

use std::time::Duration;

use serde::Deserialize;
use tayori_channels::dm::{
    default_columns, Column, DmEncoder, PrintSettings, TextEncoding, Unmappable,
};

use crate::config::KeyError;
use crate::units::duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmSection {
    /// `utf-8` (default), `utf-8-bom` or `shift_jis`.
    pub encoding: Option<String>,
    /// A character the encoding cannot write: `fail` the job (default) or `replace` it by 〓.
    pub unmappable: Option<String>,
    /// Default: 5000.
    pub batch_max_rows: Option<usize>,
    /// Default: "10m".
    pub batch_max_age: Option<String>,
    /// Column names in order; built-ins (`job_id`, `customer_id`, `postal_code`,
    /// `address1`–`address3`, `company`, `name`, `honorific`, `barcode`) or fields
    /// of the template's `dm.json`. Default: the built-ins but `barcode`, then
    /// `coupon_code`, `message1`–`message3`.
    pub columns: Option<Vec<String>>,
}

impl DmSection {
    /// What the print writer needs; every value checked, errors naming the key.
    pub fn print_settings(&self, dir: Option<&std::path::Path>) -> Result<PrintSettings, KeyError> {
        let key = |k: &str| format!("channels.dm.{k}");
        let dir = dir.map(std::path::Path::to_path_buf).ok_or_else(|| {
            KeyError::new(
                key("dir"),
                "required: the directory print batches are written to, e.g. dir = \"/var/lib/tayori/dm\"",
            )
        })?;
        self.settings_in(dir)
    }

    /// The print file's layout (columns, encoding, unmappable) as the `file`
    /// and `null` transports encode it: the same keys and checks as print
    /// batches, so a dry run writes the rows production would.
    pub fn encoder(&self) -> Result<DmEncoder, KeyError> {
        let s = self.settings_in(std::path::PathBuf::new())?;
        DmEncoder::of(&s).map_err(|m| KeyError::new("channels.dm.columns", m))
    }

    fn settings_in(&self, dir: std::path::PathBuf) -> Result<PrintSettings, KeyError> {
        let key = |k: &str| format!("channels.dm.{k}");
        let mut s = PrintSettings::new(dir);
        if let Some(e) = &self.encoding {
            s.encoding = e
                .parse::<TextEncoding>()
                .map_err(|m| KeyError::new(key("encoding"), m.to_string()))?;
        }
        if let Some(u) = &self.unmappable {
            s.unmappable = u
                .parse::<Unmappable>()
                .map_err(|m| KeyError::new(key("unmappable"), m.to_string()))?;
        }
        if let Some(rows) = self.batch_max_rows {
            if rows == 0 {
                return Err(KeyError::new(key("batch_max_rows"), "must be at least 1"));
            }
            s.batch_max_rows = rows;
        }
        if let Some(age) = &self.batch_max_age {
            let age: Duration =
                duration::parse(age).map_err(|m| KeyError::new(key("batch_max_age"), m))?;
            if age.is_zero() {
                return Err(KeyError::new(
                    key("batch_max_age"),
                    "must be longer than 0, e.g. \"10m\"",
                ));
            }
            s.batch_max_age = age;
        }
        s.columns = match &self.columns {
            None => default_columns(),
            Some(names) => names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    n.parse::<Column>().map_err(|m| {
                        KeyError::new(format!("channels.dm.columns[{i}]"), m.to_string())
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if !s.columns.contains(&Column::JobId) {
            return Err(KeyError::new(
                key("columns"),
                "must include \"job_id\": it is how a batch is recovered after a crash without printing a job twice",
            ));
        }
        Ok(s)
    }
}
