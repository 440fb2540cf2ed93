//! SMS encoding and segment counting (3GPP TS 23.038 / GSM 03.38, TS 23.040).
//!
//! An SMS carries 140 octets of user data. A text that fits the GSM 7-bit
//! default alphabet is packed as septets (160 per message); anything else is
//! sent as UCS-2 — in practice UTF-16 — at 2 octets per unit (70 per message).
//! A longer text is split into concatenated segments, each losing 6 octets to
//! the user data header (UDH) that numbers the parts: 153 septets or 67 UTF-16
//! units per segment.
//!
//! Gateways bill per segment and a handset shows a message only when every
//! segment has arrived, so the count must match what the gateway's encoder
//! will actually send. Two details make a naive `ceil(len / 153)` wrong:
//!
//! * an extension-table character (`€`, `[`, `{`, …) is an escape septet
//!   followed by its code; the pair can't be split across segments (the
//!   receiver would decode the lone escape of the first part as a space or
//!   drop it and misread the second part's first septet), so encoders move the
//!   whole pair to the next segment and leave one septet of the previous
//!   segment unused;
//! * a character outside the Basic Multilingual Plane (most emoji) is a UTF-16
//!   surrogate pair, two units; a lone surrogate is not a character, so
//!   encoders likewise never split a pair across segments.
//!
//! [`count`] simulates that packing rather than dividing, so both cases come
//! out as the gateway counts them.

use std::fmt;

/// Septets in a single, unconcatenated GSM-7 message.
const GSM7_SINGLE: u32 = 160;
/// Septets per segment of a concatenated GSM-7 message (160 less the UDH).
const GSM7_MULTI: u32 = 153;
/// UTF-16 units in a single, unconcatenated UCS-2 message.
const UCS2_SINGLE: u32 = 70;
/// UTF-16 units per segment of a concatenated UCS-2 message (70 less the UDH).
const UCS2_MULTI: u32 = 67;

/// How a message's text goes over the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The GSM 03.38 default alphabet and its extension table, 7 bits a character.
    Gsm7,
    /// UCS-2 (UTF-16 in practice: surrogate pairs for characters outside the BMP).
    Ucs2,
}

impl Encoding {
    /// The name in events and logs: `"gsm7"` or `"ucs2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// What [`Segments::units`] counts in this encoding.
    fn unit_name(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "septets",
            Encoding::Ucs2 => "UTF-16 units",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a text costs as an SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segments {
    /// The encoding the whole text needs: one character outside GSM-7 makes it UCS-2.
    pub encoding: Encoding,
    /// Messages the gateway sends (and bills). At least 1, even for an empty text.
    pub count: u32,
    /// The text's length in the encoding's units: septets for GSM-7 (an
    /// extension character is 2), UTF-16 code units for UCS-2 (a character
    /// outside the BMP is 2). Padding left by unsplittable pairs is not included.
    pub units: u32,
}

/// Septets a character takes in the GSM 03.38 default alphabet, or `None` if it
/// has no GSM-7 representation.
///
/// 1 for the default table, 2 for the extension table (escape + code). The
/// default table is the spec's 128 positions less the escape (0x1B), which is
/// not a character. Position 0x09 is the capital `Ç`; the lowercase `ç` is not
/// in the alphabet (some handsets display 0x09 as `ç`, but an encoder that
/// follows the spec sends `ç` as UCS-2, and so do we). No lookalike mapping is
/// done (a Greek `Α` is not sent as a Latin `A`): what the job says is what the
/// recipient sees.
pub fn gsm7_septets(c: char) -> Option<u32> {
    match c {
        // 0x00–0x0F, with LF (0x0A) and CR (0x0D).
        '@' | '£' | '$' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | '\n' | 'Ø' | 'ø' | '\r'
        | 'Å' | 'å'
        // 0x10–0x1F, less the escape at 0x1B.
        | 'Δ' | '_' | 'Φ' | 'Γ' | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß'
        | 'É'
        // 0x20–0x3F: ASCII punctuation and digits, with ¤ in place of $ (0x24).
        | ' ' | '!' | '"' | '#' | '¤' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ','
        | '-' | '.' | '/' | '0'..='9' | ':' | ';' | '<' | '=' | '>' | '?'
        // 0x40–0x7F.
        | '¡' | 'A'..='Z' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'a'..='z' | 'ä' | 'ö' | 'ñ'
        | 'ü' | 'à' => Some(1),
        // The extension table, reached through the escape: form feed, ^ { } \ [ ~ ] | €.
        '\u{0C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        _ => None,
    }
}

/// Encoding and segment count of `text`, as a standard encoder sends it.
///
/// GSM-7 when every character is in the default alphabet or its extension
/// table, else UCS-2 for the whole text. Up to 160 septets (70 UTF-16 units)
/// is one message; beyond that, segments of 153 septets (67 units) into which
/// escape pairs and surrogate pairs are packed whole (see the module docs for
/// why they are never split).
///
/// An empty text is reported as one GSM-7 segment of 0 units: sending it (if a
/// gateway accepts it at all) costs one message. The SMS encoder refuses empty
/// texts before this matters.
pub fn count(text: &str) -> Segments {
    let gsm7: Option<Vec<u32>> = text.chars().map(gsm7_septets).collect();
    match gsm7 {
        Some(costs) => pack(Encoding::Gsm7, costs, GSM7_SINGLE, GSM7_MULTI),
        None => {
            let costs = text.chars().map(|c| c.len_utf16() as u32).collect();
            pack(Encoding::Ucs2, costs, UCS2_SINGLE, UCS2_MULTI)
        }
    }
}

/// Packs characters of the given unit costs: one message if they fit `single`,
/// else segments of `multi` units where no character straddles two segments.
fn pack(encoding: Encoding, costs: Vec<u32>, single: u32, multi: u32) -> Segments {
    let units: u32 = costs.iter().sum();
    if units <= single {
        return Segments {
            encoding,
            count: 1,
            units,
        };
    }
    let (mut count, mut used) = (1, 0);
    for cost in costs {
        if used + cost > multi {
            count += 1;
            used = 0;
        }
        used += cost;
    }
    Segments {
        encoding,
        count,
        units,
    }
}

/// Fails a message longer than `max` segments, with a message that says why.
///
/// Checked before anything is sent, so a text that would cost more than the
/// operator allowed never reaches the gateway. `max` comes from
/// `channels.sms.max_segments` (validated as at least 1 where the config is
/// loaded; a `max` of 0 fails every message).
pub fn check_limit(s: &Segments, max: u32) -> Result<(), String> {
    if s.count <= max {
        return Ok(());
    }
    Err(format!(
        "message is {} segments ({}, {} {}); channels.sms.max_segments is {}",
        s.count,
        s.encoding,
        s.units,
        s.encoding.unit_name(),
        max
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gsm(count: u32, units: u32) -> Segments {
        Segments {
            encoding: Encoding::Gsm7,
            count,
            units,
        }
    }

    fn ucs(count: u32, units: u32) -> Segments {
        Segments {
            encoding: Encoding::Ucs2,
            count,
            units,
        }
    }

    #[test]
    fn the_default_alphabet_has_127_characters_and_the_extension_10() {
        // € (U+20AC) is the highest code point in either table.
        let all: Vec<char> = (0..=0x20ACu32).filter_map(char::from_u32).collect();
        let single = all.iter().filter(|&&c| gsm7_septets(c) == Some(1)).count();
        let double = all.iter().filter(|&&c| gsm7_septets(c) == Some(2)).count();
        assert_eq!(single, 127, "128 positions less the escape");
        assert_eq!(double, 10);
    }

    #[test]
    fn empty_text_is_one_segment_of_nothing() {
        assert_eq!(count(""), gsm(1, 0));
    }

    #[test]
    fn gsm7_single_message_up_to_160() {
        assert_eq!(count("a"), gsm(1, 1));
        assert_eq!(count(&"a".repeat(160)), gsm(1, 160));
        assert_eq!(count(&"a".repeat(161)), gsm(2, 161));
    }

    #[test]
    fn gsm7_segments_of_153() {
        assert_eq!(count(&"a".repeat(306)), gsm(2, 306));
        assert_eq!(count(&"a".repeat(307)), gsm(3, 307));
        assert_eq!(count(&"a".repeat(459)), gsm(3, 459));
        assert_eq!(count(&"a".repeat(460)), gsm(4, 460));
    }

    #[test]
    fn national_and_accented_letters_are_gsm7() {
        for c in "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà".chars()
        {
            assert_eq!(gsm7_septets(c), Some(1), "{c:?}");
        }
        assert_eq!(count("¥1,000 café"), gsm(1, 11));
    }

    #[test]
    fn lowercase_c_cedilla_is_not_gsm7() {
        // 0x09 is the capital Ç; ç needs UCS-2 (and takes the whole text with it).
        assert_eq!(gsm7_septets('Ç'), Some(1));
        assert_eq!(gsm7_septets('ç'), None);
        assert_eq!(count("Ça va"), gsm(1, 5));
        assert_eq!(count("garçon"), ucs(1, 6));
    }

    #[test]
    fn other_latin_lookalikes_are_not_gsm7() {
        for c in [
            'á', 'í', 'ó', 'ú', 'â', 'ê', 'õ', '`', '’', '“', '…', '\t', 'Α',
        ] {
            assert_eq!(gsm7_septets(c), None, "{c:?}");
        }
    }

    #[test]
    fn cr_and_lf_are_one_septet_each() {
        assert_eq!(count("a\r\nb\n"), gsm(1, 5));
        assert_eq!(count(&"\r\n".repeat(80)), gsm(1, 160));
        assert_eq!(count(&format!("{}\n", "a".repeat(160))), gsm(2, 161));
    }

    #[test]
    fn extension_characters_are_two_septets() {
        for c in "^{}\\[~]|€\u{0C}".chars() {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
        }
        assert_eq!(count("€5"), gsm(1, 3));
        // 80 euros are 160 septets: still one message; one more character is not.
        assert_eq!(count(&"€".repeat(80)), gsm(1, 160));
        assert_eq!(count(&format!("{}a", "€".repeat(80))), gsm(2, 161));
        // 159 + an extension char = 161 septets, though only 160 characters.
        assert_eq!(count(&format!("{}€", "a".repeat(159))), gsm(2, 161));
        assert_eq!(count(&format!("{}€", "a".repeat(158))), gsm(1, 160));
    }

    #[test]
    fn an_escape_pair_is_never_split_across_segments() {
        // 151 + € fills the first segment exactly (153 septets), 153 more the second.
        assert_eq!(count(&format!("{}€", "a".repeat(151))), gsm(1, 153));
        let fits = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(count(&fits), gsm(2, 306));
        // 153 + € + 151: the € opens segment 2, which holds € + 151 = 153.
        let after = format!("{}€{}", "a".repeat(153), "a".repeat(151));
        assert_eq!(count(&after), gsm(2, 306));
        // 152 + € would straddle septets 153/154: the pair moves whole to
        // segment 2 and septet 153 stays empty, so 306 septets, which a division
        // fits in 2 segments, take 3; one fewer fits in 2.
        let straddle = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(count(&straddle), gsm(3, 306));
        let straddle = format!("{}€{}", "a".repeat(152), "a".repeat(151));
        assert_eq!(count(&straddle), gsm(2, 305));
        // The same at the second boundary (306/307).
        assert_eq!(count(&format!("{}€", "a".repeat(304))), gsm(2, 306));
        let second = format!("{}€{}", "a".repeat(305), "a".repeat(152));
        assert_eq!(count(&second), gsm(4, 459));
        let second = format!("{}€{}", "a".repeat(305), "a".repeat(151));
        assert_eq!(count(&second), gsm(3, 458));
        // Only extension chars: 76 pairs (152 septets) per segment, never 153.
        assert_eq!(count(&"€".repeat(81)), gsm(2, 162));
        assert_eq!(count(&"€".repeat(152)), gsm(2, 304));
        assert_eq!(count(&"€".repeat(153)), gsm(3, 306));
    }

    #[test]
    fn japanese_single_message_up_to_70() {
        assert_eq!(count("こんにちは"), ucs(1, 5));
        assert_eq!(count(&"あ".repeat(70)), ucs(1, 70));
        assert_eq!(count(&"あ".repeat(71)), ucs(2, 71));
    }

    #[test]
    fn japanese_segments_of_67() {
        assert_eq!(count(&"あ".repeat(134)), ucs(2, 134));
        assert_eq!(count(&"あ".repeat(135)), ucs(3, 135));
        assert_eq!(count(&"漢".repeat(201)), ucs(3, 201));
        assert_eq!(count(&"漢".repeat(202)), ucs(4, 202));
    }

    #[test]
    fn one_non_gsm_character_makes_the_whole_text_ucs2() {
        let latin = "a".repeat(100);
        assert_eq!(count(&latin), gsm(1, 100));
        assert_eq!(count(&format!("{latin}あ")), ucs(2, 101));
        // Extension characters are one UTF-16 unit in UCS-2, not two.
        assert_eq!(count("€ 1,000円"), ucs(1, 8));
        assert_eq!(count(&format!("{}ç", "a".repeat(69))), ucs(1, 70));
    }

    #[test]
    fn emoji_are_two_utf16_units() {
        assert_eq!(count("😀"), ucs(1, 2));
        assert_eq!(count(&"😀".repeat(35)), ucs(1, 70));
        assert_eq!(count(&format!("{}a", "😀".repeat(35))), ucs(2, 71));
        // 69 + 😀 = 71 units in 70 characters: two segments.
        assert_eq!(count(&format!("{}😀", "あ".repeat(69))), ucs(2, 71));
        assert_eq!(count(&format!("{}😀", "あ".repeat(68))), ucs(1, 70));
        // A flag is two characters outside the BMP: 4 units.
        assert_eq!(count("🇯🇵"), ucs(1, 4));
    }

    #[test]
    fn a_surrogate_pair_is_never_split_across_segments() {
        // 65 + 😀 fills the first segment exactly (67 units), 67 more the second.
        let fits = format!("{}😀{}", "あ".repeat(65), "あ".repeat(67));
        assert_eq!(count(&fits), ucs(2, 134));
        // 66 + 😀 would straddle units 67/68: the pair opens segment 2 and unit
        // 67 stays empty, so 134 units, which a division fits in 2, take 3.
        let straddle = format!("{}😀{}", "あ".repeat(66), "あ".repeat(66));
        assert_eq!(count(&straddle), ucs(3, 134));
        let straddle = format!("{}😀{}", "あ".repeat(66), "あ".repeat(65));
        assert_eq!(count(&straddle), ucs(2, 133));
        // Only emoji: 33 pairs (66 units) per segment, never 67.
        assert_eq!(count(&"😀".repeat(66)), ucs(2, 132));
        assert_eq!(count(&"😀".repeat(67)), ucs(3, 134));
        assert_eq!(count(&"😀".repeat(99)), ucs(3, 198));
        assert_eq!(count(&"😀".repeat(100)), ucs(4, 200));
    }

    #[test]
    fn encoding_names() {
        assert_eq!(Encoding::Gsm7.as_str(), "gsm7");
        assert_eq!(Encoding::Ucs2.to_string(), "ucs2");
    }

    #[test]
    fn limit_passes_at_and_below_max() {
        assert_eq!(check_limit(&gsm(1, 10), 1), Ok(()));
        assert_eq!(check_limit(&ucs(4, 268), 4), Ok(()));
    }

    #[test]
    fn limit_fails_above_max_with_a_clear_message() {
        let s = count(&"あ".repeat(312));
        assert_eq!(s, ucs(5, 312));
        assert_eq!(
            check_limit(&s, 4).unwrap_err(),
            "message is 5 segments (ucs2, 312 UTF-16 units); channels.sms.max_segments is 4"
        );
        assert_eq!(
            check_limit(&count(&"a".repeat(161)), 1).unwrap_err(),
            "message is 2 segments (gsm7, 161 septets); channels.sms.max_segments is 1"
        );
    }
}
