//! Header lines within RFC 5322's limit of 998 bytes (section 2.1.1).
//!
//! lettre folds a header only at blanks, so a word longer than a line stays on
//! one: a relay that wraps or refuses that line breaks the DKIM signature over
//! the header, or the mail. What comes from a job is kept foldable where it can
//! be (a subject as RFC 2047 encoded-words, which split anywhere; a display name
//! left out), config is checked once at start, and every composed header block
//! is checked before it goes out, so nothing over the limit is ever written.

use email_encoding::headers::writer::EmailWriter;
use lettre::message::header::{HeaderName, HeaderValue, Headers};

/// RFC 5322: at most 998 characters on a line, CRLF excluded.
pub const MAX_LINE: usize = 998;

/// The longest stretch lettre's folding cannot break: a run of blanks and the
/// word after it (a folded line starts with the blanks before its first word),
/// and for the last word the blanks after it too (written on its line).
pub(crate) fn longest_unfoldable(value: &str) -> usize {
    let body = value.trim_end_matches(' ');
    let trailing = value.len() - body.len();
    let (mut longest, mut current, mut in_word) = (0, 0, false);
    for b in body.bytes() {
        if b == b' ' && in_word {
            longest = longest.max(current);
            (current, in_word) = (0, false);
        } else if b != b' ' {
            in_word = true;
        }
        current += 1;
    }
    longest.max(current + trailing)
}

/// Whether `value`, folded at its blanks, fits after `Name: `.
pub(crate) fn folds(name: &str, value: &str) -> bool {
    name.len() + ": ".len() + longest_unfoldable(value) <= MAX_LINE
}

/// An unstructured header (`Subject`): lettre's own encoding and folding when it
/// folds under the limit, else the whole value as RFC 2047 encoded-words.
pub(crate) fn unstructured(name: HeaderName, value: &str) -> HeaderValue {
    if folds(&name, value) {
        return HeaderValue::new(name, value.to_owned());
    }
    let mut encoded = String::with_capacity(value.len() * 3 / 2 + 64);
    {
        let mut w = EmailWriter::new(&mut encoded, name.len() + ": ".len(), 0, false);
        // Writing to a String cannot fail.
        let _ = email_encoding::headers::rfc2047::encode(value, &mut w);
    }
    // Only `=?utf-8?b?…?=` words, CRLF and blanks: ASCII, folded, nothing to inject.
    HeaderValue::dangerous_new_pre_encoded(name, value.to_owned(), encoded)
}

/// Whether a display name leaves the `To:` line under the limit. A name with any
/// character but letters, digits, blanks and `\ " - _ .` (any non-ASCII one, so
/// any Japanese name) is written as RFC 2047 encoded-words, which split anywhere;
/// the others are written as they are or quoted (each byte possibly escaped,
/// folded at blanks only), followed on the same line by ` <address>` (at most
/// 64 + 1 + 254 bytes).
pub(crate) fn display_name_fits(name: &str) -> bool {
    const AROUND: usize = "To: \"\" <>".len() + 64 + 1 + 254;
    let encoded = !name.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'\\' | b'"' | b' ' | b'-' | b'_' | b'.')
    });
    encoded || 2 * longest_unfoldable(name) + AROUND <= MAX_LINE
}

/// The first header line over the limit: the header's name and the line's length.
pub(crate) fn overlong(headers: &Headers) -> Option<(String, usize)> {
    let text = headers.to_string();
    let mut name = "";
    for line in text.split("\r\n") {
        if !line.starts_with([' ', '\t']) {
            name = line.split_once(':').map_or(line, |(n, _)| n);
        }
        if line.len() > MAX_LINE {
            return Some((name.to_owned(), line.len()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(h: HeaderValue) -> Vec<String> {
        let mut headers = Headers::new();
        headers.insert_raw(h);
        headers
            .to_string()
            .trim_end()
            .split("\r\n")
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_unfoldable_stretch_is_a_word_with_the_blanks_before_it() {
        assert_eq!(longest_unfoldable(""), 0);
        assert_eq!(longest_unfoldable("abc de"), 3);
        assert_eq!(longest_unfoldable("a    bcdef"), 9);
        assert_eq!(longest_unfoldable(&" ".repeat(5)), 5);
        assert_eq!(longest_unfoldable("ab     "), 7);
    }

    #[test]
    fn a_subject_that_folds_is_left_to_lettre() {
        let subject = "spring sale ".repeat(30);
        let h = unstructured(HeaderName::new_from_ascii_str("Subject"), &subject);
        let lines = lines(h);
        assert!(
            lines.len() > 1 && lines.iter().all(|l| l.len() <= 78),
            "{lines:?}"
        );
        assert!(!lines.concat().contains("=?utf-8?"), "{lines:?}");
    }

    #[test]
    fn a_subject_word_longer_than_a_line_becomes_encoded_words() {
        for subject in [
            "x".repeat(1200),
            format!("sale {} end", "y".repeat(5000)),
            format!("{}z", " ".repeat(1000)),
            format!("z{}", " ".repeat(1000)),
            format!("{}\r\nBcc: evil@example.net", "w".repeat(999)),
        ] {
            let h = unstructured(HeaderName::new_from_ascii_str("Subject"), &subject);
            let lines = lines(h);
            assert!(
                lines.iter().all(|l| l.len() <= 78 && l.is_ascii()),
                "{lines:?}"
            );
            assert!(!lines.iter().any(|l| l.starts_with("Bcc")), "{lines:?}");
            assert!(lines[0].starts_with("Subject: =?utf-8?b?"), "{lines:?}");
        }
    }

    #[test]
    fn names_with_a_word_too_long_for_the_to_line_do_not_fit() {
        assert!(display_name_fits("山田 太郎"));
        assert!(display_name_fits(&"x".repeat(300)));
        assert!(!display_name_fits(&"x".repeat(400)));
        assert!(display_name_fits(&"x y ".repeat(1000)));
        assert!(!display_name_fits(&format!("\"{}\"", "x".repeat(400))));
        // Encoded-words split anywhere: a long Japanese name without blanks is fine.
        assert!(display_name_fits(&"山".repeat(400)));
        assert!(display_name_fits(&format!("{},", "x".repeat(400))));
    }

    #[test]
    fn overlong_lines_are_found_and_named() {
        let mut headers = Headers::new();
        headers.insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Short"),
            "a b c".into(),
        ));
        assert_eq!(overlong(&headers), None);
        headers.insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Long"),
            format!("a {}", "b".repeat(998)),
        ));
        assert_eq!(overlong(&headers), Some(("X-Long".into(), 999)));
    }
}
