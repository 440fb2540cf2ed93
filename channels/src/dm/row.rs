//! One job → one CSV row: the columns a print file has, and making every cell
//! safe to open in a spreadsheet and to read back line by line.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use super::barcode::customer_barcode;
use super::encoding::{TextEncoding, Unmappable};
use super::postal::checked_address;
use crate::{Content, Message, SendError};

/// A column of the print file. The built-ins come from the job's address; any
/// other name is a field the DM template renders (`coupon_code`, `message1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Column {
    JobId,
    CustomerId,
    /// `NNN-NNNN`.
    PostalCode,
    Address1,
    Address2,
    Address3,
    Company,
    Name,
    /// `様` when the job has none.
    Honorific,
    /// Japan Post customer barcode data (see [`super::barcode`]).
    Barcode,
    Field(String),
}

impl Column {
    const BUILT_IN: [Column; 10] = [
        Column::JobId,
        Column::CustomerId,
        Column::PostalCode,
        Column::Address1,
        Column::Address2,
        Column::Address3,
        Column::Company,
        Column::Name,
        Column::Honorific,
        Column::Barcode,
    ];

    /// The column's name in the header row and in settings.
    pub fn name(&self) -> &str {
        match self {
            Self::JobId => "job_id",
            Self::CustomerId => "customer_id",
            Self::PostalCode => "postal_code",
            Self::Address1 => "address1",
            Self::Address2 => "address2",
            Self::Address3 => "address3",
            Self::Company => "company",
            Self::Name => "name",
            Self::Honorific => "honorific",
            Self::Barcode => "barcode",
            Self::Field(name) => name,
        }
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Column {
    type Err = String;
    /// A built-in name, or else a template field; only an empty name is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err("a column name must not be empty".into());
        }
        Ok(Self::BUILT_IN
            .iter()
            .find(|c| c.name() == s)
            .cloned()
            .unwrap_or_else(|| Self::Field(s.to_owned())))
    }
}

/// The columns of a Japanese address label file: the address as label
/// printers lay it out, then a coupon code and three message lines.
pub fn default_columns() -> Vec<Column> {
    let mut columns: Vec<Column> = Column::BUILT_IN
        .iter()
        .filter(|c| **c != Column::Barcode)
        .cloned()
        .collect();
    columns.extend(
        ["coupon_code", "message1", "message2", "message3"].map(|f| Column::Field(f.to_owned())),
    );
    columns
}

/// Characters a cell loses: control characters (CR and LF included, so one row
/// is always one line, which is how recovery reads a file a crash cut short) and
/// the Unicode line and paragraph separators some readers also break on.
fn is_stripped(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// First characters that make a spreadsheet read a cell as a formula (CSV
/// injection), in both widths since Japanese input methods type the wide ones.
const FORMULA_START: [char; 10] = ['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];

/// The cell as written: stripped of control characters, and prefixed with `'`
/// when it would start a formula (`=HYPERLINK(…)` → `'=HYPERLINK(…)`).
pub(crate) fn safe_cell(value: &str) -> Cow<'_, str> {
    let cleaned = if value.chars().any(is_stripped) {
        Cow::Owned(value.chars().filter(|&c| !is_stripped(c)).collect())
    } else {
        Cow::Borrowed(value)
    };
    if cleaned.starts_with(FORMULA_START) {
        Cow::Owned(format!("'{cleaned}"))
    } else {
        cleaned
    }
}

/// Turns jobs into CSV rows for one column layout and encoding. Pure: the batch
/// writer encodes outside its locks, and [`super::DmEncoder`] (the `file` and
/// `null` transports) encodes the same rows with the same checks.
#[derive(Debug, Clone)]
pub(crate) struct RowEncoder {
    columns: Vec<Column>,
    fields: BTreeSet<String>,
    encoding: TextEncoding,
    unmappable: Unmappable,
    /// The preamble (BOM) and the header row, written first in every file.
    header: Vec<u8>,
}

impl RowEncoder {
    /// Checks the layout: `job_id` is required (recovery and deduplication find
    /// a job's row by it), names are unique, and header cells are written as
    /// they are, so they may not start a formula nor hold control characters.
    pub(crate) fn new(
        columns: Vec<Column>,
        encoding: TextEncoding,
        unmappable: Unmappable,
    ) -> Result<RowEncoder, String> {
        if !columns.contains(&Column::JobId) {
            return Err("columns: job_id is required (rows are deduplicated by it)".into());
        }
        let mut seen = BTreeSet::new();
        for column in &columns {
            let name = column.name();
            if !seen.insert(name) {
                return Err(format!("columns: {name:?} appears twice"));
            }
            if let Column::Field(field) = column {
                if field.trim().is_empty() {
                    return Err("columns: a column name must not be empty".into());
                }
                if Column::BUILT_IN.iter().any(|c| c.name() == field) {
                    return Err(format!(
                        "columns: {field:?} is a built-in column, not a field"
                    ));
                }
                if safe_cell(field) != field.as_str() {
                    return Err(format!(
                        "columns: {field:?} cannot be a header cell (control character or formula start)"
                    ));
                }
            }
        }
        let fields = columns
            .iter()
            .filter_map(|c| match c {
                Column::Field(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let mut cells = Vec::with_capacity(columns.len());
        for column in &columns {
            let mut cell = Vec::new();
            encoding
                .encode_into(column.name(), Unmappable::Fail, &mut cell)
                .map_err(|c| {
                    format!(
                        "columns: {:?} cannot be written in {encoding} ({c:?})",
                        column.name()
                    )
                })?;
            cells.push(cell);
        }
        let mut header = encoding.preamble().to_vec();
        header.extend(csv_line(&cells)?);
        Ok(RowEncoder {
            columns,
            fields,
            encoding,
            unmappable,
            header,
        })
    }

    pub(crate) fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    pub(crate) fn header(&self) -> &[u8] {
        &self.header
    }

    /// The job's row, CRLF-terminated, in the file's encoding.
    ///
    /// Fails with `unreachable` for a missing or invalid address (the job can
    /// fall back to another channel) and `permanent` for content that can never
    /// be printed: a field that is not a column (`unknown_dm_field`; dropping a
    /// coupon code silently is worse than failing), a character the encoding
    /// lacks (`unencodable`), or a job id that would not be printed verbatim.
    pub(crate) fn row(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        let Content::Dm { fields } = &message.content else {
            return Err(SendError::permanent("invalid_message", "no DM content"));
        };
        let (postal, postal_code) = checked_address(message.to.postal.as_ref())?;
        let unknown: Vec<&str> = fields
            .keys()
            .filter(|k| !self.fields.contains(*k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(SendError::permanent(
                "unknown_dm_field",
                format!(
                    "DM field {} is not a column of the print file (add it to channels.dm columns)",
                    unknown.join(", ")
                ),
            ));
        }

        let mut cells = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let value: Cow<str> = match column {
                Column::JobId => Cow::Borrowed(&message.job_id),
                Column::CustomerId => Cow::Borrowed(message.customer_id.as_deref().unwrap_or("")),
                Column::PostalCode => Cow::Borrowed(&postal_code),
                Column::Address1 => Cow::Borrowed(&postal.address1),
                Column::Address2 => Cow::Borrowed(&postal.address2),
                Column::Address3 => Cow::Borrowed(&postal.address3),
                Column::Company => Cow::Borrowed(&postal.company),
                Column::Name => Cow::Borrowed(&postal.name),
                Column::Honorific if postal.honorific.trim().is_empty() => Cow::Borrowed("様"),
                Column::Honorific => Cow::Borrowed(&postal.honorific),
                // The postal code was checked above, so there is always a barcode.
                Column::Barcode => Cow::Owned(
                    customer_barcode(
                        &postal_code,
                        &format!(
                            "{} {} {}",
                            postal.address1, postal.address2, postal.address3
                        ),
                    )
                    .unwrap_or_default(),
                ),
                Column::Field(name) => {
                    Cow::Borrowed(fields.get(name).map(String::as_str).unwrap_or(""))
                }
            };
            let cell = safe_cell(&value);
            if *column == Column::JobId && cell != message.job_id.as_str() {
                return Err(invalid_job_id(&message.job_id));
            }
            let mut bytes = Vec::with_capacity(cell.len() + 2);
            let replaced = self
                .encoding
                .encode_into(&cell, self.unmappable, &mut bytes)
                .map_err(|c| {
                    SendError::permanent(
                        "unencodable",
                        format!(
                            "column {column}: {c:?} (U+{:04X}) cannot be written in {} \
                             (unmappable = \"replace\" prints 〓 instead)",
                            u32::from(c),
                            self.encoding
                        ),
                    )
                })?;
            if replaced && *column == Column::JobId {
                return Err(invalid_job_id(&message.job_id));
            }
            cells.push(bytes);
        }
        csv_line(&cells).map_err(|e| SendError::permanent("invalid_message", e))
    }
}

/// Recovery and deduplication find a job by the `job_id` cell, so it must be the
/// job id itself, not a neutralized or replaced form of it.
fn invalid_job_id(job_id: &str) -> SendError {
    SendError::permanent(
        "invalid_job_id",
        format!(
            "job id {job_id:?} cannot be printed verbatim (it starts like a spreadsheet formula \
             or has characters the file's encoding lacks)"
        ),
    )
}

/// One CSV record of already-encoded cells, CRLF-terminated and quoted where
/// needed. Quoting encoded bytes is safe for Shift_JIS too: its second bytes
/// are never `"`, `,`, CR or LF.
fn csv_line(cells: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let size = cells.iter().map(|c| c.len() + 3).sum::<usize>() + 2;
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .buffer_capacity(size)
        .from_writer(Vec::with_capacity(size));
    writer.write_record(cells).map_err(|e| e.to_string())?;
    writer.into_inner().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{PostalAddress, Recipient};

    pub(crate) fn dm_message(job_id: &str, fields: &[(&str, &str)]) -> Message {
        Message {
            job_id: job_id.into(),
            attempt: 1,
            idempotency_key: job_id.into(),
            campaign: Some("spring26".into()),
            customer_id: Some("C1001".into()),
            to: Recipient {
                name: None,
                address: "100-0001".into(),
                postal: Some(PostalAddress {
                    postal_code: "1000001".into(),
                    address1: "東京都千代田区千代田1-1".into(),
                    address2: "".into(),
                    address3: "".into(),
                    company: "".into(),
                    name: "山田 太郎".into(),
                    honorific: "".into(),
                }),
            },
            content: Content::Dm {
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            },
        }
    }

    fn utf8() -> RowEncoder {
        RowEncoder::new(default_columns(), TextEncoding::Utf8, Unmappable::Fail).unwrap()
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn column_names_parse_to_built_ins_or_fields() {
        for c in Column::BUILT_IN {
            assert_eq!(c.name().parse::<Column>(), Ok(c.clone()));
        }
        assert_eq!(
            "coupon_code".parse(),
            Ok(Column::Field("coupon_code".into()))
        );
        assert!("".parse::<Column>().is_err());
        let names: Vec<String> = default_columns().iter().map(|c| c.to_string()).collect();
        assert_eq!(
            names.join(","),
            "job_id,customer_id,postal_code,address1,address2,address3,company,name,honorific,\
             coupon_code,message1,message2,message3"
        );
    }

    #[test]
    fn layouts_without_job_id_or_with_duplicates_are_refused() {
        let no_id = vec![Column::Name];
        assert!(RowEncoder::new(no_id, TextEncoding::Utf8, Unmappable::Fail)
            .unwrap_err()
            .contains("job_id"));
        let twice = vec![Column::JobId, Column::Name, Column::Name];
        assert!(RowEncoder::new(twice, TextEncoding::Utf8, Unmappable::Fail).is_err());
        let formula = vec![Column::JobId, Column::Field("=cmd".into())];
        assert!(RowEncoder::new(formula, TextEncoding::Utf8, Unmappable::Fail).is_err());
        let built_in = vec![Column::JobId, Column::Field("name".into())];
        assert!(RowEncoder::new(built_in, TextEncoding::Utf8, Unmappable::Fail).is_err());
    }

    #[test]
    fn the_header_and_a_row_follow_the_columns() {
        let rows = utf8();
        assert_eq!(
            text(rows.header().to_vec()),
            "job_id,customer_id,postal_code,address1,address2,address3,company,name,honorific,\
             coupon_code,message1,message2,message3\r\n"
        );
        let m = dm_message(
            "j1",
            &[("coupon_code", "SPRING-1"), ("message1", "春, です")],
        );
        assert_eq!(
            text(rows.row(&m).unwrap()),
            "j1,C1001,100-0001,東京都千代田区千代田1-1,,,,山田 太郎,様,SPRING-1,\"春, です\",,\r\n"
        );
    }

    #[test]
    fn an_unknown_field_fails_naming_it() {
        let m = dm_message("j1", &[("coupon_code", "X"), ("secret_column", "y")]);
        let e = utf8().row(&m).unwrap_err();
        assert_eq!((e.class(), e.code()), ("permanent", "unknown_dm_field"));
        assert!(e.message().contains("secret_column"), "{e}");
    }

    #[test]
    fn formulas_and_control_characters_are_neutralized() {
        for (raw, safe) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+81-3", "'+81-3"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("＝1+1", "'＝1+1"),
            ("a\r\nb\u{7}c", "abc"),
            ("\t=1", "'=1"),
            ("\u{2028}x", "x"),
            ("plain 'quote", "plain 'quote"),
        ] {
            assert_eq!(safe_cell(raw), safe, "{raw:?}");
        }
        let mut m = dm_message("j1", &[("message1", "1行目\r\n2行目")]);
        m.customer_id = Some("a,\"q\"\nb".into());
        let line = text(utf8().row(&m).unwrap());
        assert_eq!(line.matches("\r\n").count(), 1, "{line}");
        assert!(line.contains(",\"a,\"\"q\"\"b\","), "{line}");
        assert!(line.contains(",1行目2行目,"), "{line}");
    }

    #[test]
    fn a_job_id_that_would_be_altered_is_refused() {
        let e = utf8().row(&dm_message("=1+1", &[])).unwrap_err();
        assert_eq!(e.code(), "invalid_job_id");
    }

    #[test]
    fn shift_jis_names_the_unencodable_character_and_column() {
        let rows =
            RowEncoder::new(default_columns(), TextEncoding::ShiftJis, Unmappable::Fail).unwrap();
        let mut m = dm_message("j1", &[]);
        if let Some(p) = m.to.postal.as_mut() {
            p.address2 = "メゾン🌸 101".into();
        }
        let e = rows.row(&m).unwrap_err();
        assert_eq!((e.class(), e.code()), ("permanent", "unencodable"));
        assert!(
            e.message().contains("address2") && e.message().contains("🌸"),
            "{e}"
        );
        assert!(e.message().contains("U+1F338"), "{e}");

        let replace = RowEncoder::new(
            default_columns(),
            TextEncoding::ShiftJis,
            Unmappable::Replace,
        )
        .unwrap();
        let bytes = replace.row(&m).unwrap();
        let line = TextEncoding::ShiftJis.decode(&bytes).unwrap();
        assert!(line.contains(",メゾン〓 101,"), "{line}");
    }

    #[test]
    fn the_barcode_column_prints_the_customer_barcode() {
        let columns = vec![Column::JobId, Column::Barcode];
        let rows = RowEncoder::new(columns, TextEncoding::Utf8, Unmappable::Fail).unwrap();
        let mut m = dm_message("j1", &[]);
        if let Some(p) = m.to.postal.as_mut() {
            p.postal_code = "100-0013".into();
            p.address1 = "東京都千代田区霞が関1丁目3番2号".into();
            p.address2 = "郵便プラザ503室".into();
        }
        assert_eq!(text(rows.row(&m).unwrap()), "j1,10000131-3-2-503dddd9\r\n");
    }
}
