//! The character encodings of a print file, and what to do with a character the
//! encoding cannot represent.
//!
//! Print vendors have no standard: some take UTF-8, Excel-minded ones want a BOM
//! so that Excel does not guess ANSI, and many label systems still read only
//! Shift_JIS. Shift_JIS here is the WHATWG encoder of `encoding_rs`, which is
//! Microsoft's Windows-31J (cp932): the variant Japanese vendors and Excel use,
//! with the NEC and IBM extensions (`髙`, `﨑`, `①`).

use std::fmt;
use std::str::FromStr;

use encoding_rs::{EncoderResult, SHIFT_JIS};

/// The encoding of a print file's bytes (`encoding` in `[channels.dm]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextEncoding {
    #[default]
    Utf8,
    /// UTF-8 starting with a byte order mark, for vendors who open files in Excel.
    Utf8Bom,
    /// Shift_JIS as Windows-31J (cp932).
    ShiftJis,
}

impl TextEncoding {
    pub const ALL: [TextEncoding; 3] = [Self::Utf8, Self::Utf8Bom, Self::ShiftJis];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Utf8 => "utf-8",
            Self::Utf8Bom => "utf-8-bom",
            Self::ShiftJis => "shift_jis",
        }
    }

    /// The bytes a file starts with, before its header row.
    pub(crate) fn preamble(self) -> &'static [u8] {
        match self {
            Self::Utf8Bom => b"\xEF\xBB\xBF",
            Self::Utf8 | Self::ShiftJis => b"",
        }
    }

    /// Appends `text` in this encoding to `out`. A character the encoding cannot
    /// represent is replaced by 〓 with [`Unmappable::Replace`] (and the result is
    /// `Ok(true)`), or is returned as the error with [`Unmappable::Fail`].
    pub(crate) fn encode_into(
        self,
        text: &str,
        unmappable: Unmappable,
        out: &mut Vec<u8>,
    ) -> Result<bool, char> {
        match self {
            Self::Utf8 | Self::Utf8Bom => {
                out.extend_from_slice(text.as_bytes());
                Ok(false)
            }
            Self::ShiftJis => encode_shift_jis(text, unmappable, out),
        }
    }

    /// Decodes a whole file written in this encoding (its preamble included),
    /// for recovery; `None` if the bytes are not valid in it.
    pub(crate) fn decode(self, bytes: &[u8]) -> Option<String> {
        match self {
            Self::Utf8 | Self::Utf8Bom => {
                let bytes = bytes.strip_prefix(self.preamble()).unwrap_or(bytes);
                std::str::from_utf8(bytes).ok().map(str::to_owned)
            }
            Self::ShiftJis => SHIFT_JIS
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|text| text.into_owned()),
        }
    }
}

impl fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TextEncoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown encoding {s:?} (known: utf-8, utf-8-bom, shift_jis)"))
    }
}

/// What to do with a character the file's encoding cannot represent
/// (`unmappable` in `[channels.dm]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmappable {
    /// The job fails (`unencodable`): a misprinted name is worse than no letter.
    #[default]
    Fail,
    /// The character is printed as 〓 (geta), the typesetters' mark for a missing glyph.
    Replace,
}

impl Unmappable {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Replace => "replace",
        }
    }
}

impl fmt::Display for Unmappable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Unmappable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Fail, Self::Replace]
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or_else(|| format!("unknown unmappable policy {s:?} (known: fail, replace)"))
    }
}

/// 〓 in Shift_JIS.
const GETA: [u8; 2] = [0x81, 0xAC];

fn encode_shift_jis(text: &str, unmappable: Unmappable, out: &mut Vec<u8>) -> Result<bool, char> {
    let mut encoder = SHIFT_JIS.new_encoder();
    let mut rest = text;
    let mut replaced = false;
    loop {
        // Every character takes at most 2 bytes in Shift_JIS, so this always fits.
        out.reserve(rest.len() * 2 + 2);
        let (result, read) = encoder.encode_from_utf8_to_vec_without_replacement(rest, out, true);
        rest = &rest[read..];
        match result {
            EncoderResult::InputEmpty => return Ok(replaced),
            EncoderResult::OutputFull => continue,
            EncoderResult::Unmappable(c) => {
                if let Some(bytes) = windows_31j_twin(c) {
                    out.extend_from_slice(bytes);
                } else if unmappable == Unmappable::Replace {
                    out.extend_from_slice(&GETA);
                    replaced = true;
                } else {
                    return Err(c);
                }
            }
        }
    }
}

/// Characters that JIS X 0208 and Windows-31J map to different code points for
/// the same glyph. Text typed on a Mac or converted by an EUC-JP system carries
/// the JIS ones (`〜` U+301C where Windows has `～` U+FF5E), which the WHATWG
/// encoder does not accept; a vendor's printer shows the same glyph for both.
fn windows_31j_twin(c: char) -> Option<&'static [u8]> {
    Some(match c {
        '\u{301C}' => b"\x81\x60", // WAVE DASH → ～
        '\u{2016}' => b"\x81\x61", // DOUBLE VERTICAL LINE → ∥
        '\u{2212}' => b"\x81\x7C", // MINUS SIGN → －
        '\u{00A2}' => b"\x81\x91", // CENT SIGN → ￠
        '\u{00A3}' => b"\x81\x92", // POUND SIGN → ￡
        '\u{00AC}' => b"\x81\xCA", // NOT SIGN → ￢
        '\u{2014}' => b"\x81\x5C", // EM DASH → ―
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sjis(text: &str, unmappable: Unmappable) -> Result<(Vec<u8>, bool), char> {
        let mut out = Vec::new();
        let replaced = TextEncoding::ShiftJis.encode_into(text, unmappable, &mut out)?;
        Ok((out, replaced))
    }

    #[test]
    fn names_parse_and_print_back() {
        for e in TextEncoding::ALL {
            assert_eq!(e.as_str().parse::<TextEncoding>(), Ok(e));
        }
        assert!("sjis".parse::<TextEncoding>().is_err());
        assert_eq!("replace".parse::<Unmappable>(), Ok(Unmappable::Replace));
        assert_eq!("fail".parse::<Unmappable>(), Ok(Unmappable::Fail));
        assert!("ignore".parse::<Unmappable>().is_err());
    }

    #[test]
    fn shift_jis_round_trips_windows_31j_text() {
        let text = "髙橋 﨑 ①～ ﾃｽﾄ 東京都千代田区";
        let (bytes, replaced) = sjis(text, Unmappable::Fail).unwrap();
        assert!(!replaced);
        assert_eq!(TextEncoding::ShiftJis.decode(&bytes).as_deref(), Some(text));
    }

    #[test]
    fn jis_code_points_print_as_their_windows_twins() {
        let (bytes, replaced) = sjis("10〜20−3", Unmappable::Fail).unwrap();
        assert!(!replaced);
        assert_eq!(
            TextEncoding::ShiftJis.decode(&bytes).as_deref(),
            Some("10～20－3")
        );
    }

    #[test]
    fn unmappable_characters_fail_or_become_geta() {
        assert_eq!(sjis("𠮷田", Unmappable::Fail), Err('𠮷'));
        assert_eq!(sjis("🌸", Unmappable::Fail), Err('🌸'));
        let (bytes, replaced) = sjis("𠮷田🌸", Unmappable::Replace).unwrap();
        assert!(replaced);
        assert_eq!(
            TextEncoding::ShiftJis.decode(&bytes).as_deref(),
            Some("〓田〓")
        );
    }

    #[test]
    fn utf8_with_bom_decodes_without_it() {
        let mut bytes = TextEncoding::Utf8Bom.preamble().to_vec();
        TextEncoding::Utf8Bom
            .encode_into("𠮷", Unmappable::Fail, &mut bytes)
            .unwrap();
        assert_eq!(TextEncoding::Utf8Bom.decode(&bytes).as_deref(), Some("𠮷"));
    }
}
