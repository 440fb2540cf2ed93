//! An email as a person reads it (`tayori render`): encoded words,
//! quoted-printable and base64 decoded; the raw message shows Japanese as
//! `=E3=81=93…`.

use std::fmt::Write;

use mail_parser::{HeaderValue, MessageParser, MimeHeaders};

/// The message as a reader sees it: the top-level headers, decoded where they
/// were encoded, then each part's decoded text (or its type and size).
/// `None` when the bytes do not parse as a message.
pub(crate) fn message(raw: &[u8]) -> Option<String> {
    let message = MessageParser::default().parse(raw)?;
    let mut out = String::new();
    for header in message.headers() {
        let raw_value = message
            .raw_message()
            .get(header.offset_start() as usize..header.offset_end() as usize)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let unfolded = raw_value.replace("\r\n", "").replace('\n', "");
        let value = if unfolded.contains("=?") {
            decoded(header.value()).unwrap_or_else(|| unfolded.trim().to_owned())
        } else {
            unfolded.trim().to_owned()
        };
        let _ = writeln!(out, "{}: {value}", header.name());
    }
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        if ct.ctype().eq_ignore_ascii_case("multipart") {
            continue;
        }
        let kind = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
        match part.text_contents() {
            Some(text) => {
                let _ = write!(out, "\n--- {kind} ---\n{text}");
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => {
                let _ = writeln!(out, "\n--- {kind} ({} bytes) ---", part.len());
            }
        }
    }
    Some(out)
}

/// A header's decoded value: text, or addresses as `name <address>`.
fn decoded(value: &HeaderValue<'_>) -> Option<String> {
    match value {
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(list) => Some(list.join(", ")),
        HeaderValue::Address(addresses) => Some(
            addresses
                .iter()
                .map(|a| match (a.name(), a.address()) {
                    (Some(name), Some(addr)) => format!("{name} <{addr}>"),
                    (None, Some(addr)) => addr.to_owned(),
                    (Some(name), None) => name.to_owned(),
                    (None, None) => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_encoded_words_and_quoted_printable() {
        let raw = b"From: =?utf-8?b?44K/44Oo44Oq?= <news@example.com>\r\n\
Subject: =?utf-8?b?44KI44GG44GT44Gd?=\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
=E3=81=93=E3=82=93=E3=81=AB=E3=81=A1=E3=81=AF\r\n";
        let text = message(raw).unwrap();
        assert!(text.contains("From: タヨリ <news@example.com>"), "{text}");
        assert!(text.contains("Subject: ようこそ"), "{text}");
        assert!(text.contains("MIME-Version: 1.0"), "{text}");
        assert!(text.contains("--- text/plain ---\nこんにちは"), "{text}");
        assert!(!text.contains("=E3"), "{text}");
    }
}
