//! Phone numbers to E.164 (`+819012345678`), the form every SMS gateway takes
//! and LINE notification messages hash (`line::pnp`).
//!
//! Parsing and validation are libphonenumber's (through the `phonenumber`
//! crate, which bundles Google's metadata): which lengths and prefixes a region
//! allows changes every few months, and hand-written rules go stale silently.
//! What this module adds is the input clean-up Japanese data needs before that:
//! full-width digits and the many hyphen lookalikes (`－`, `ー`, `‐`, `−`)
//! that IMEs and spreadsheets produce.

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::Mode;

/// Why a number (or the configured region) was refused. Either way the job
/// fails with code `invalid_phone`; `InvalidRegion` is a configuration error
/// that [`check_region`] catches at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// `default_region` is not a region code libphonenumber has metadata for.
    #[error("invalid default_region {0:?}: expected a two-letter region code such as \"JP\"")]
    InvalidRegion(String),
    /// The number can't be parsed, or parses but is not a valid number. The
    /// reason never quotes the number: errors end up in logs and events.
    #[error("invalid phone number: {0}")]
    Invalid(String),
}

/// Checks a `default_region` without a number, for config validation at load.
pub fn check_region(default_region: &str) -> Result<(), PhoneError> {
    region(default_region).map(|_| ())
}

/// Normalizes `raw` to E.164, reading national formats as numbers of
/// `default_region`.
///
/// Accepted: digits (ASCII or full-width), one leading `+` (or `＋`), and
/// separators — spaces (incl. the ideographic space), hyphens and their
/// lookalikes, dots, parentheses — which are dropped. A `+`-prefixed number is
/// read as international whatever the region; one dialled with the region's
/// international prefix (`010` from Japan) also works, as libphonenumber reads
/// it. Refused: letters (no vanity-number or extension parsing: an SMS goes to
/// a line, not an extension), any other character, no digits, and numbers that
/// libphonenumber's metadata says are invalid for their region (too short, too
/// long, an unassigned prefix).
///
/// `default_region` is an ISO 3166-1 alpha-2 code, case-insensitive (`"jp"`
/// works). `"ZZ"`, libphonenumber's "unknown region", means no default: only
/// international numbers are accepted.
pub fn to_e164(raw: &str, default_region: &str) -> Result<String, PhoneError> {
    let region = region(default_region)?;
    let cleaned = clean(raw)?;
    if region.is_none() && !cleaned.starts_with('+') {
        return Err(invalid(
            "a national number, and default_region ZZ has no national format: use +<country code>",
        ));
    }
    let number = phonenumber::parse(region, &cleaned).map_err(|e| invalid(&e.to_string()))?;
    if !phonenumber::is_valid(&number) {
        return Err(invalid(&match region {
            Some(id) if !cleaned.starts_with('+') => {
                format!("not a valid number in {}", id.as_ref())
            }
            _ => "not a valid number".to_string(),
        }));
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

fn invalid(reason: &str) -> PhoneError {
    PhoneError::Invalid(reason.to_string())
}

/// The region's id, `None` for `ZZ`. Checked against the metadata as well as the
/// id list: the crate knows a few ids it has no numbering plan for.
fn region(code: &str) -> Result<Option<Id>, PhoneError> {
    let upper = code.trim().to_ascii_uppercase();
    if upper == "ZZ" {
        return Ok(None);
    }
    match upper.parse::<Id>() {
        Ok(id) if DATABASE.by_id(id.as_ref()).is_some() => Ok(Some(id)),
        _ => Err(PhoneError::InvalidRegion(code.to_string())),
    }
}

/// `raw` as `+`? and ASCII digits only: full-width digits and plus folded,
/// separators dropped, anything else refused.
///
/// libphonenumber folds full-width digits itself, but not every hyphen
/// lookalike (`ー`, the katakana prolonged sound mark, is a common one in
/// typed Japanese numbers), and it reads letters as keypad digits; doing the
/// clean-up here keeps what is accepted small and explicit.
fn clean(raw: &str) -> Result<String, PhoneError> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '0'..='9' => out.push(c),
            '０'..='９' => out.push(char::from(b'0' + (u32::from(c) - u32::from('０')) as u8)),
            '+' | '＋' if out.is_empty() => out.push('+'),
            '+' | '＋' => return Err(invalid("'+' is only allowed at the start")),
            c if is_separator(c) => {}
            c if c.is_alphabetic() => return Err(invalid("letters are not allowed")),
            c => return Err(invalid(&format!("unexpected character {c:?}"))),
        }
    }
    if !out.bytes().any(|b| b.is_ascii_digit()) {
        return Err(invalid("no digits"));
    }
    Ok(out)
}

/// Characters people put between digit groups.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        // Hyphen-minus, hyphen, non-breaking hyphen, figure dash, en dash, em
        // dash, horizontal bar, minus sign, small and full-width hyphen-minus,
        // and the katakana prolonged sound mark in both widths (ー, ｰ).
        '-' | '\u{2010}'
            ..='\u{2015}' | '\u{2212}' | '\u{FE63}' | '\u{FF0D}' | '\u{30FC}' | '\u{FF70}'
        // Dots, parentheses and slashes, half and full width.
        | '.' | '\u{FF0E}' | '(' | ')' | '\u{FF08}' | '\u{FF09}' | '/' | '\u{FF0F}'
    ) || c.is_whitespace() // includes NBSP and the ideographic space (U+3000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str, region: &str) -> String {
        to_e164(raw, region).unwrap_or_else(|e| panic!("{raw:?} in {region}: {e}"))
    }

    fn refused(raw: &str, region: &str) -> String {
        match to_e164(raw, region) {
            Err(PhoneError::Invalid(reason)) => reason,
            other => panic!("{raw:?} in {region}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn japanese_mobiles() {
        assert_eq!(ok("090-1234-5678", "JP"), "+819012345678");
        assert_eq!(ok("080-1234-5678", "JP"), "+818012345678");
        assert_eq!(ok("070-1234-5678", "JP"), "+817012345678");
        assert_eq!(ok("09012345678", "JP"), "+819012345678");
        assert_eq!(ok("090 1234 5678", "JP"), "+819012345678");
        assert_eq!(ok("(090) 1234-5678", "JP"), "+819012345678");
        assert_eq!(ok(" 090.1234.5678 ", "JP"), "+819012345678");
    }

    #[test]
    fn japanese_landlines() {
        assert_eq!(ok("03-1234-5678", "JP"), "+81312345678");
        assert_eq!(ok("(03) 1234-5678", "JP"), "+81312345678");
        assert_eq!(ok("06-6123-4567", "JP"), "+81661234567");
    }

    #[test]
    fn full_width_and_hyphen_lookalikes() {
        assert_eq!(ok("０９０－１２３４－５６７８", "JP"), "+819012345678");
        assert_eq!(ok("０９０ー１２３４ー５６７８", "JP"), "+819012345678");
        assert_eq!(ok("090‐1234‐5678", "JP"), "+819012345678");
        assert_eq!(ok("090−1234−5678", "JP"), "+819012345678");
        assert_eq!(ok("090–1234–5678", "JP"), "+819012345678");
        assert_eq!(ok("（０３）１２３４－５６７８", "JP"), "+81312345678");
        assert_eq!(
            ok("０９０\u{3000}１２３４\u{3000}５６７８", "JP"),
            "+819012345678"
        );
        assert_eq!(
            ok("＋８１　９０－１２３４－５６７８", "JP"),
            "+819012345678"
        );
    }

    #[test]
    fn international_numbers_ignore_the_region() {
        assert_eq!(ok("+81 90-1234-5678", "JP"), "+819012345678");
        assert_eq!(ok("+81 90-1234-5678", "US"), "+819012345678");
        assert_eq!(ok("+1 650-253-0000", "JP"), "+16502530000");
        assert_eq!(ok("+1 (650) 253-0000", "JP"), "+16502530000");
        assert_eq!(ok("+44 20 7031 3000", "JP"), "+442070313000");
        // A trunk 0 kept after the country code is dropped, as libphonenumber does.
        assert_eq!(ok("+81 (0)90-1234-5678", "JP"), "+819012345678");
    }

    #[test]
    fn national_numbers_of_other_regions() {
        assert_eq!(ok("(650) 253-0000", "US"), "+16502530000");
        assert_eq!(ok("020 7031 3000", "GB"), "+442070313000");
        // Read in Japan, a US national number is not Japanese.
        refused("(650) 253-0000", "JP");
    }

    #[test]
    fn international_prefix_of_the_region() {
        // 010 is Japan's international call prefix.
        assert_eq!(ok("010-1-650-253-0000", "JP"), "+16502530000");
    }

    #[test]
    fn region_is_case_insensitive() {
        assert_eq!(ok("090-1234-5678", "jp"), "+819012345678");
        assert_eq!(ok("090-1234-5678", " Jp "), "+819012345678");
        assert_eq!(check_region("jp"), Ok(()));
    }

    #[test]
    fn zz_accepts_only_international_numbers() {
        assert_eq!(ok("+81 90-1234-5678", "ZZ"), "+819012345678");
        assert_eq!(ok("+1 650 253 0000", "zz"), "+16502530000");
        let reason = refused("090-1234-5678", "ZZ");
        assert!(reason.contains("+<country code>"), "{reason}");
        assert_eq!(check_region("ZZ"), Ok(()));
    }

    #[test]
    fn unknown_regions_are_refused() {
        for region in ["", "XX", "JPN", "J", "81", "日本"] {
            assert_eq!(
                to_e164("090-1234-5678", region),
                Err(PhoneError::InvalidRegion(region.to_string())),
                "{region:?}"
            );
            assert!(check_region(region).is_err(), "{region:?}");
        }
        // The region is checked even when the number wouldn't need it.
        assert!(matches!(
            to_e164("+81 90-1234-5678", "XX"),
            Err(PhoneError::InvalidRegion(_))
        ));
        assert_eq!(
            PhoneError::InvalidRegion("XX".into()).to_string(),
            "invalid default_region \"XX\": expected a two-letter region code such as \"JP\""
        );
    }

    #[test]
    fn too_short_or_too_long() {
        refused("090-1234", "JP");
        refused("090-1234-567", "JP");
        refused("090-1234-56789", "JP");
        refused("12", "JP");
        refused("+81", "JP");
        refused("+81 90", "JP");
    }

    #[test]
    fn right_length_but_unassigned() {
        // Japanese mobiles are [789]0 followed by 1-9: 0900… is no number.
        refused("090-0234-5678", "JP");
        refused("+81 90-0234-5678", "JP");
    }

    #[test]
    fn letters_symbols_and_empty_are_refused() {
        assert_eq!(refused("", "JP"), "no digits");
        assert_eq!(refused("   ", "JP"), "no digits");
        assert_eq!(refused("+", "JP"), "no digits");
        assert_eq!(refused("---", "JP"), "no digits");
        assert_eq!(refused("0120-ABC-DEF", "JP"), "letters are not allowed");
        assert_eq!(refused("1-800-FLOWERS", "US"), "letters are not allowed");
        assert_eq!(
            refused("03-1234-5678 ext. 9", "JP"),
            "letters are not allowed"
        );
        assert_eq!(refused("090-1234-5678#", "JP"), "unexpected character '#'");
        assert_eq!(refused("*090-1234-5678", "JP"), "unexpected character '*'");
        assert_eq!(
            refused("81+90-1234-5678", "JP"),
            "'+' is only allowed at the start"
        );
        assert_eq!(
            refused("++81 90-1234-5678", "JP"),
            "'+' is only allowed at the start"
        );
    }

    #[test]
    fn reasons_never_quote_the_number() {
        for (raw, region) in [
            ("090-1234", "JP"),
            ("090-0234-5678", "JP"),
            ("+81 90-0234-5678", "JP"),
            ("09012345678", "ZZ"),
        ] {
            let message = to_e164(raw, region).unwrap_err().to_string();
            assert!(message.starts_with("invalid phone number: "), "{message}");
            assert!(!message.contains("1234"), "{message}");
        }
    }

    #[test]
    fn odd_inputs_never_panic() {
        for raw in [
            "0",
            "00",
            "000000000000000000000000000000",
            "+0",
            "+000",
            "+999 123456",
            "010",
            "010-",
            "0000-0000",
            "  2 22",
            "(((",
            "+()",
            "9".repeat(40).as_str(),
        ] {
            let _ = to_e164(raw, "JP");
            let _ = to_e164(raw, "ZZ");
            let _ = to_e164(raw, "CH");
        }
    }
}
