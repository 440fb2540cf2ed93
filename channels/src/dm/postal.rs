//! Checking a job's postal address before it is printed, and the small text
//! normalizations Japanese addresses need.

use crate::{PostalAddress, SendError};

/// The full-width form of an ASCII character (`１` → `1`, `Ａ` → `A`), and the
/// ideographic space as a space; other characters are returned as they are.
/// CRM exports mix both widths freely.
pub(crate) fn half_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

/// Dashes people type between the parts of a postal code or a block number:
/// hyphen-minus in both widths, the Unicode hyphens and dashes, the minus sign.
pub(crate) fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{FF0D}' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}'
    )
}

/// The seven digits of a Japanese postal code written as `1000001`, `100-0001`,
/// full width (`１００－０００１`) or with the postal mark (`〒100-0001`);
/// `None` for anything else.
pub fn postal_digits(postal_code: &str) -> Option<[u8; 7]> {
    let text = postal_code.trim_matches(|c: char| c.is_whitespace());
    let text = text.strip_prefix('〒').unwrap_or(text).trim_start();
    let mut digits = [0u8; 7];
    let mut n = 0;
    for (i, c) in text.chars().map(half_width).enumerate() {
        match c {
            '0'..='9' if n < 7 => {
                digits[n] = c as u8;
                n += 1;
            }
            // One dash, between the third and fourth digit.
            c if is_dash(c) && n == 3 && i == 3 => {}
            _ => return None,
        }
    }
    (n == 7).then_some(digits)
}

/// `NNN-NNNN`, the form printed on the label.
pub fn format_postal_code(digits: &[u8; 7]) -> String {
    let mut out = String::with_capacity(8);
    out.extend(digits[..3].iter().map(|&b| char::from(b)));
    out.push('-');
    out.extend(digits[3..].iter().map(|&b| char::from(b)));
    out
}

/// The job's postal address if it can be printed, with its postal code in
/// `NNN-NNNN` form. A missing or unusable address makes the recipient
/// unreachable on this channel (the job falls back to its next channel), with
/// the field named so the CRM can fix its data.
pub(crate) fn checked_address(
    postal: Option<&PostalAddress>,
) -> Result<(&PostalAddress, String), SendError> {
    let postal =
        postal.ok_or_else(|| SendError::unreachable("no_address", "to.postal is missing"))?;
    let digits = postal_digits(&postal.postal_code).ok_or_else(|| {
        SendError::unreachable(
            "invalid_address",
            format!(
                "to.postal.postal_code: {:?} is not a 7-digit postal code (NNN-NNNN)",
                postal.postal_code
            ),
        )
    })?;
    for (field, value) in [("address1", &postal.address1), ("name", &postal.name)] {
        if value.trim().is_empty() {
            return Err(SendError::unreachable(
                "invalid_address",
                format!("to.postal.{field}: is empty"),
            ));
        }
    }
    Ok((postal, format_postal_code(&digits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postal_codes_in_every_common_form_normalize() {
        for s in [
            "1000001",
            "100-0001",
            "１００－０００１",
            "〒100-0001",
            " 100‐0001 ",
            "１０００００１",
        ] {
            let digits = postal_digits(s).unwrap_or_else(|| panic!("{s:?}"));
            assert_eq!(format_postal_code(&digits), "100-0001", "{s:?}");
        }
        for s in [
            "",
            "12-345",
            "abc",
            "100-00011",
            "1000-001",
            "10000-01",
            "100--0001",
        ] {
            assert_eq!(postal_digits(s), None, "{s:?}");
        }
    }

    #[test]
    fn a_bad_address_names_its_field() {
        let ok = PostalAddress {
            postal_code: "100-0001".into(),
            address1: "東京都千代田区千代田1-1".into(),
            name: "山田 太郎".into(),
            ..Default::default()
        };
        assert_eq!(checked_address(Some(&ok)).unwrap().1, "100-0001");
        let e = checked_address(None).unwrap_err();
        assert_eq!((e.class(), e.code()), ("unreachable", "no_address"));
        for (broken, field) in [
            (
                PostalAddress {
                    postal_code: "12-345".into(),
                    ..ok.clone()
                },
                "to.postal.postal_code",
            ),
            (
                PostalAddress {
                    address1: " ".into(),
                    ..ok.clone()
                },
                "to.postal.address1",
            ),
            (
                PostalAddress {
                    name: "\u{3000}".into(),
                    ..ok.clone()
                },
                "to.postal.name",
            ),
        ] {
            let e = checked_address(Some(&broken)).unwrap_err();
            assert_eq!((e.class(), e.code()), ("unreachable", "invalid_address"));
            assert!(e.message().starts_with(field), "{e}");
        }
    }
}
