//! Japan Post customer barcode (カスタマバーコード) data for an address label.
//!
//! The barcode encodes the 7-digit postal code and the address's block numbers
//! (住所表示番号: `1丁目3番2号 郵便プラザ503室` → `1-3-2-503`), so sorting machines
//! can route a letter to the door; printing it earns a postage discount.
//!
//! # Output convention
//!
//! [`customer_barcode`] returns the 21 characters between the start and stop
//! codes, which barcode fonts and label software add themselves:
//! 7 postal-code digits, 13 address characters and the check digit. Digits and
//! `-` stand for themselves and the control codes CC1–CC8 are written `a`–`h`
//! (CC4, `d`, pads the address part). A Latin letter takes two characters: its
//! control code and a digit (A–J → `a0`–`a9`, K–T → `b0`–`b9`, U–Z → `c0`–`c5`).
//! The check digit uses the same characters: `0`–`9`, `-` for 10, `a`–`h` for
//! 11–18. Example: `100-0013` with `1丁目3番2号 郵便プラザ503室` gives
//! `10000131-3-2-503dddd9`.
//!
//! # What this does not know
//!
//! Japan Post extracts the numbers from the part of the address *after* the town
//! name (町域), which only its postal-code database tells apart. This function
//! sees the whole address, so a town whose name holds a number in Arabic digits
//! (`南4条西`) or a kanji numeral before 丁目/丁/番地/番/号/地割/線/の/ノ (`一番町`,
//! `一ノ関`) yields a wrong barcode: pass only the part after the town name when
//! you have it. Nor does it know representative postal codes (no barcode is
//! assigned) or business codes (the address part is left empty).

/// Why no barcode can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarcodeError {
    #[error("postal code {0:?} is not 7 digits")]
    PostalCode(String),
}

/// Symbols of the address part, and the control-code pad.
const ADDRESS_LEN: usize = 13;
const HYPHEN: u8 = 10;
const CC1: u8 = 11;
const CC4: u8 = 14;

/// The customer barcode data for `postal_code` (`1000013`, `100-0013`, full
/// width or with `〒`) and `address`, in the convention of the module docs.
pub fn customer_barcode(postal_code: &str, address: &str) -> Result<String, BarcodeError> {
    let digits = super::postal::postal_digits(postal_code)
        .ok_or_else(|| BarcodeError::PostalCode(postal_code.to_owned()))?;
    let mut symbols: Vec<u8> = digits.iter().map(|d| d - b'0').collect();
    symbols.extend(address_symbols(&address_number(address)));
    let sum: u32 = symbols.iter().map(|&s| u32::from(s)).sum();
    // The check digit makes the sum of all 21 values a multiple of 19.
    let check = ((19 - sum % 19) % 19) as u8;
    symbols.push(check);
    Ok(symbols.into_iter().map(symbol_char).collect())
}

/// The address number Japan Post's extraction rules take from `address`: digits,
/// `-` and single Latin letters, e.g. `東3丁目-20-5 郵便・A&bコーポB604号` →
/// `3-20-5B604`.
///
/// The rules: full width becomes half width and letters upper case; `&`, `/`,
/// `・` and `.` are deleted; kanji numerals followed by 丁目, 丁, 番地, 番, 号, 地割,
/// 線, の or ノ become digits (`十一丁目` → `11`); everything that is not a digit,
/// a hyphen or a lone letter separates numbers (other kanji, kana, blanks, runs
/// of two or more letters, and `F` right after a digit, which means a floor);
/// separators and hyphens become one `-`, none at either end, and none next to a
/// letter.
pub fn address_number(address: &str) -> String {
    let text = kanji_numbers_to_digits(&normalize(address));
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut dash = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_uppercase() {
            let run = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_uppercase())
                .count();
            let floor = c == 'F' && i > 0 && chars[i - 1].is_ascii_digit();
            if run == 1 && !floor {
                push_symbol(&mut out, &mut dash, c);
            } else {
                dash = true;
            }
            i += run;
            continue;
        }
        if c.is_ascii_digit() {
            push_symbol(&mut out, &mut dash, c);
        } else {
            dash = true;
        }
        i += 1;
    }
    out
}

/// Appends a digit or letter, preceded by a pending `-` unless it would lead the
/// number or touch a letter.
fn push_symbol(out: &mut String, dash: &mut bool, c: char) {
    let after_letter = out.ends_with(|p: char| p.is_ascii_uppercase());
    if *dash && !out.is_empty() && !after_letter && !c.is_ascii_uppercase() {
        out.push('-');
    }
    *dash = false;
    out.push(c);
}

/// Half width, upper case, and the four characters the rules delete.
fn normalize(address: &str) -> String {
    address
        .chars()
        .map(super::postal::half_width)
        .map(|c| {
            if super::postal::is_dash(c) {
                '-'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .filter(|c| !matches!(c, '&' | '/' | '.' | '・' | '･'))
        .collect()
}

/// The characters after which a kanji numeral is a number.
const NUMBER_MARKERS: [&str; 9] = ["丁目", "丁", "番地", "番", "号", "地割", "線", "の", "ノ"];

fn kanji_digit(c: char) -> Option<u32> {
    Some(match c {
        '〇' | '零' => 0,
        '一' | '壱' => 1,
        '二' | '弐' => 2,
        '三' | '参' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

fn kanji_unit(c: char) -> Option<u32> {
    Some(match c {
        '十' | '拾' => 10,
        '百' => 100,
        '千' => 1000,
        _ => return None,
    })
}

/// Replaces each run of kanji numerals that is followed by a number marker with
/// its value in digits; other runs (`北六条`, `三田`) are part of a name.
fn kanji_numbers_to_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if kanji_digit(c).is_none() && kanji_unit(c).is_none() {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let end = rest
            .char_indices()
            .find(|&(_, c)| kanji_digit(c).is_none() && kanji_unit(c).is_none())
            .map_or(rest.len(), |(i, _)| i);
        let (run, after) = rest.split_at(end);
        if NUMBER_MARKERS.iter().any(|m| after.starts_with(m)) {
            out.push_str(&kanji_value(run));
        } else {
            out.push_str(run);
        }
        rest = after;
    }
    out
}

/// `十一` → `11`, `二十一` → `21`, `百一` → `101`; digits alone are positional
/// (`一〇三` → `103`).
fn kanji_value(run: &str) -> String {
    if !run.chars().any(|c| kanji_unit(c).is_some()) {
        return run
            .chars()
            .filter_map(kanji_digit)
            .map(|d| d.to_string())
            .collect();
    }
    let (mut total, mut digit) = (0u32, None);
    for c in run.chars() {
        if let Some(unit) = kanji_unit(c) {
            total += digit.take().unwrap_or(1) * unit;
        } else if let Some(d) = kanji_digit(c) {
            digit = Some(digit.map_or(d, |prev| prev * 10 + d));
        }
    }
    (total + digit.unwrap_or(0)).to_string()
}

/// The 13 address symbols: truncated (a letter's control code may be the 13th
/// symbol without its digit, as Japan Post specifies) or padded with CC4.
fn address_symbols(number: &str) -> Vec<u8> {
    let mut symbols = Vec::with_capacity(ADDRESS_LEN + 1);
    for c in number.chars() {
        match c {
            '0'..='9' => symbols.push(c as u8 - b'0'),
            '-' => symbols.push(HYPHEN),
            'A'..='Z' => {
                let n = c as u8 - b'A';
                symbols.push(CC1 + n / 10);
                symbols.push(n % 10);
            }
            _ => {}
        }
    }
    symbols.truncate(ADDRESS_LEN);
    symbols.resize(ADDRESS_LEN, CC4);
    symbols
}

fn symbol_char(symbol: u8) -> char {
    match symbol {
        0..=9 => char::from(b'0' + symbol),
        HYPHEN => '-',
        _ => char::from(b'a' + (symbol - CC1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Japan Post's published examples (郵便番号・バーコードマニュアル, バーコードに
    /// 必要な文字情報の抜き出し法): postal code, address, address number, and the
    /// barcode with CC1–CC8 written a–h.
    #[rustfmt::skip]
    const JAPAN_POST: [(&str, &str, &str, &str); 16] = [
        ("263-0023", "千葉市稲毛区緑町3丁目30-8　郵便ビル403号", "3-30-8-403", "26300233-30-8-403ddd5"),
        ("014-0113", "秋田県大仙市堀見内　南田茂木　添60-1", "60-1", "014011360-1dddddddddh"),
        ("110-0016", "東京都台東区台東5-6-3　ABCビル10F", "5-6-3-10", "11000165-6-3-10ddddd9"),
        ("060-0906", "北海道札幌市東区北六条東4丁目　郵便センター6号館", "4-6", "06009064-6dddddddddd9"),
        ("065-0006", "北海道札幌市東区北六条東8丁目　郵便センター10号館", "8-10", "06500068-10ddddddddd9"),
        ("407-0033", "山梨県韮崎市龍岡町下條南割　韮崎400", "400", "4070033400dddddddddd-"),
        ("273-0102", "千葉県鎌ケ谷市右京塚　東3丁目-20-5　郵便・A&bコーポB604号", "3-20-5B604", "27301023-20-5a1604dd0"),
        ("198-0036", "東京都青梅市河辺町十一丁目六番地一号　郵便タワー601", "11-6-1-601", "198003611-6-1-601dddh"),
        ("027-0203", "岩手県宮古市大字津軽石第二十一地割大淵川480", "21-480", "027020321-480ddddddde"),
        ("590-0016", "大阪府堺市堺区中田出井町四丁六番十九号", "4-6-19", "59000164-6-19dddddddb"),
        ("080-0831", "北海道帯広市稲田町南七線　西28", "7-28", "08008317-28dddddddddg"),
        ("317-0055", "茨城県日立市宮田町6丁目7-14　ABCビル2F", "6-7-14-2", "31700556-7-14-2ddddda"),
        ("650-0046", "神戸市中央区港島中町9丁目7-6　郵便シティA棟1F1号", "9-7-6A1-1", "65000469-7-6a01-1ddd5"),
        ("623-0011", "京都府綾部市青野町綾部6-7　LプラザB106", "6-7LB106", "62300116-7b1a1106ddd4"),
        ("064-0804", "札幌市中央区南四条西29丁目1524-23　第2郵便ハウス501", "29-1524-23-2-501", "064080429-1524-23-2-3"),
        ("910-0067", "福井県福井市新田塚3丁目80-25　J1ビル2-B", "3-80-25J1-2B", "91000673-80-25a91-2a9"),
    ];

    #[test]
    fn japan_posts_examples_extract_and_encode() {
        for (postal, address, number, barcode) in JAPAN_POST {
            assert_eq!(address_number(address), number, "{address}");
            assert_eq!(
                customer_barcode(postal, address).as_deref(),
                Ok(barcode),
                "{address}"
            );
        }
    }

    #[test]
    fn the_manuals_overview_example() {
        assert_eq!(
            customer_barcode("100-0013", "1丁目3番2号 郵便プラザ503室").as_deref(),
            Ok("10000131-3-2-503dddd9")
        );
    }

    #[test]
    fn every_barcode_sums_to_a_multiple_of_19() {
        let value = |c: char| match c {
            '0'..='9' => c as u32 - '0' as u32,
            '-' => 10,
            'a'..='h' => c as u32 - 'a' as u32 + 11,
            _ => panic!("unexpected {c:?}"),
        };
        for (postal, address, _, _) in JAPAN_POST {
            let code = customer_barcode(postal, address).unwrap();
            assert_eq!(code.chars().count(), 21, "{code}");
            assert_eq!(code.chars().map(value).sum::<u32>() % 19, 0, "{code}");
        }
    }

    #[test]
    fn full_width_and_kanji_forms_give_the_same_number() {
        for address in [
            "1丁目2番3号",
            "１丁目２番３号",
            "一丁目二番三号",
            "1-2-3",
            "１－２－３",
            "1の2の3",
            "1ノ2ノ3",
        ] {
            assert_eq!(address_number(address), "1-2-3", "{address}");
        }
        assert_eq!(address_number("百一番地"), "101");
        assert_eq!(address_number("千二百三十四番地"), "1234");
        assert_eq!(address_number("一〇三号"), "103");
        // Kanji numerals in names stay names.
        assert_eq!(address_number("三田二丁目"), "2");
    }

    #[test]
    fn letters_become_a_control_code_and_a_digit() {
        assert_eq!(
            customer_barcode("1000001", "A K U Z").as_deref(),
            Ok("1000001a0b0c0c5ddddd7")
        );
        // A letter whose control code is the 13th symbol keeps only its control code.
        let code = customer_barcode("9100067", "3丁目80-25 J1ビル2-B").unwrap();
        assert_eq!(&code[7..20], "3-80-25a91-2a");
    }

    #[test]
    fn no_number_pads_with_cc4_and_a_bad_postal_code_is_an_error() {
        assert_eq!(
            customer_barcode("100-0001", "東京都千代田区千代田").as_deref(),
            Ok("1000001ddddddddddddd6")
        );
        assert_eq!(
            customer_barcode("12-345", "1-2-3"),
            Err(BarcodeError::PostalCode("12-345".into()))
        );
    }
}
