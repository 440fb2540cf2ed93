//! Direct mail: printed letters and postcards, delivered as rows of print files
//! a vendor collects.
//!
//! - [`PrintBatches`] (`batch.rs`, `disk.rs`): the channel. Jobs become CSV rows in
//!   per-campaign batches that move to `ready/` with a manifest, durably and once.
//! - `row.rs`: the [`Column`]s, and one job → one safe CSV row.
//! - `encoding.rs`: UTF-8, UTF-8 with BOM or Shift_JIS, and unencodable characters.
//! - `postal.rs`: checking the postal address; [`barcode`]: Japan Post's customer barcode.
//! - [`DmEncoder`]: the JSON row the `file` transport and `tayori render` show.

pub mod barcode;
mod batch;
mod disk;
mod encoding;
mod postal;
mod row;
#[cfg(test)]
mod tests;

pub use barcode::{customer_barcode, BarcodeError};
pub use batch::{PrintBatches, PrintError, PrintSettings};
pub use encoding::{TextEncoding, Unmappable};
pub use row::{default_columns, Column};

use serde_json::json;

use crate::{Content, Encode, Message, SendError};

/// Encodes the row a print vendor receives: the postal address and the rendered fields.
#[derive(Default)]
pub struct DmEncoder;

impl Encode for DmEncoder {
    fn extension(&self) -> &'static str {
        "json"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        let Content::Dm { fields } = &message.content else {
            return Err(SendError::permanent("invalid_message", "no DM content"));
        };
        let postal = message
            .to
            .postal
            .as_ref()
            .ok_or_else(|| SendError::unreachable("no_address", "to.postal is missing"))?;
        let row = json!({ "job_id": message.job_id, "postal": postal, "fields": fields });
        serde_json::to_vec(&row).map_err(|e| SendError::permanent("invalid_message", e.to_string()))
    }
}
