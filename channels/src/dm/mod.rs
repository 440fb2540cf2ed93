//! Direct mail: printed letters and postcards, delivered as rows of print files
//! a vendor collects.
//!
//! - [`PrintBatches`] (`batch.rs`, `disk.rs`): the channel. Jobs become CSV rows in
//!   per-campaign batches that move to `ready/` with a manifest, durably and once.
//! - `row.rs`: the [`Column`]s, and one job → one safe CSV row.
//! - `encoding.rs`: UTF-8, UTF-8 with BOM or Shift_JIS, and unencodable characters.
//! - `postal.rs`: checking the postal address; [`barcode`]: Japan Post's customer barcode.
//! - [`DmEncoder`]: one job's print file (the header and its row, checked and
//!   encoded as the batch writer does), what the `file` transport writes and
//!   `tayori render` shows.

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

use crate::file::file_stem;
use crate::{Encode, Encoded, Message, SendError};
use row::RowEncoder;

/// One job's print file: the header and the job's row, in the configured
/// columns and encoding, exactly as the batch writer writes them (the same
/// [`RowEncoder`], so the same checks and codes: `invalid_address` naming the
/// field, `unencodable`, `unknown_dm_field`, `invalid_job_id`). The `file`
/// transport writes it as `{job}.csv`: a batch of one row.
#[derive(Debug, Clone)]
pub struct DmEncoder {
    rows: RowEncoder,
}

impl DmEncoder {
    /// The columns' checks are [`PrintBatches::open`]'s: `job_id` required,
    /// names unique and writable in the encoding.
    pub fn new(
        columns: Vec<Column>,
        encoding: TextEncoding,
        unmappable: Unmappable,
    ) -> Result<DmEncoder, String> {
        Ok(DmEncoder {
            rows: RowEncoder::new(columns, encoding, unmappable)?,
        })
    }

    /// The encoder of a print writer's settings.
    pub fn of(settings: &PrintSettings) -> Result<DmEncoder, String> {
        DmEncoder::new(
            settings.columns.clone(),
            settings.encoding,
            settings.unmappable,
        )
    }
}

impl Encode for DmEncoder {
    fn extension(&self) -> &'static str {
        "csv"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        self.encode_with_details(message).map(|e| e.bytes)
    }
    /// `batch`, as the batch writer's `sent` event has it: here the one-row
    /// file's name without `.csv` (the `file` transport's name for the job).
    fn encode_with_details(&self, message: &Message) -> Result<Encoded, SendError> {
        let row = self.rows.row(message)?;
        let mut bytes = Vec::with_capacity(self.rows.header().len() + row.len());
        bytes.extend_from_slice(self.rows.header());
        bytes.extend_from_slice(&row);
        Ok(Encoded {
            bytes,
            details: vec![("batch", json!(file_stem(&message.job_id)))],
        })
    }
    fn to_text(&self, bytes: &[u8]) -> String {
        self.rows
            .encoding()
            .decode(bytes)
            .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
    }
}
