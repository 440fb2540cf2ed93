//! A text part's Content-Transfer-Encoding and its encoded bytes, written straight
//! into the message.
//!
//! The choice is lettre's (`Body::new`, through email-encoding's chooser): 7bit for
//! ASCII with no line of 76 bytes or more, else quoted-printable when at most a
//! third of the bytes need escaping, else base64. lettre copies the text, rewrites
//! its line ends in place, encodes into another buffer and that is copied into the
//! message; quoted-printable alone was 5 % of the daemon's CPU per tracked email
//! (`quoted_printable::_encode`, perf, issue 19). Here one scan chooses and one
//! pass writes. Base64 still goes through email-encoding.

use lettre::message::header::ContentTransferEncoding;

/// The longest encoded line, without its CRLF (RFC 2045 6.7 (5)).
const QP_LINE: usize = 76;

/// Appends `text`'s encoded form (line ends as CRLF) to `out`; returns the encoding.
pub(super) fn write_text(text: &str, out: &mut Vec<u8>) -> ContentTransferEncoding {
    let encoding = choose(text);
    write(text, encoding, out);
    encoding
}

/// The encoding lettre's `Body::new` would choose for `text`.
pub(super) fn choose(text: &str) -> ContentTransferEncoding {
    let bytes = text.as_bytes();
    let mut escaped = 0;
    let mut ascii = true;
    let mut line = 0;
    let mut long_line = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            line = 0;
            continue;
        }
        // A CR that ends no line would be a bare CR in a 7bit part: encode it.
        long_line |= b == b'\r' && bytes.get(i + 1) != Some(&b'\n');
        line += 1;
        long_line |= line >= QP_LINE;
        ascii &= b.is_ascii();
        escaped += usize::from(!matches!(b, b'\t' | b' '..=b'~'));
    }
    if ascii && !long_line {
        ContentTransferEncoding::SevenBit
    } else if escaped <= bytes.len() / 3 {
        ContentTransferEncoding::QuotedPrintable
    } else {
        ContentTransferEncoding::Base64
    }
}

/// Appends `text` encoded as `encoding` (7bit, quoted-printable or base64), line
/// ends as CRLF.
pub(super) fn write(text: &str, encoding: ContentTransferEncoding, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    match encoding {
        ContentTransferEncoding::QuotedPrintable => write_quoted_printable(bytes, out),
        ContentTransferEncoding::Base64 => {
            let mut normalized = Vec::with_capacity(bytes.len() + bytes.len() / 32);
            write_crlf(bytes, &mut normalized);
            let mut encoded =
                String::with_capacity(email_encoding::body::base64::encoded_len(normalized.len()));
            // Writing to a String cannot fail.
            let _ = email_encoding::body::base64::encode(&normalized, &mut encoded);
            out.extend_from_slice(encoded.as_bytes());
        }
        // 7bit (and, never chosen here, 8bit and binary): the text as it is.
        _ => write_crlf(bytes, out),
    }
}

/// Copies `bytes`, every LF not already after a CR written as CRLF.
fn write_crlf(bytes: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(b"\r\n");
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// RFC 2045 6.7: line ends (LF or CRLF) as hard CRLF breaks; `=`, controls, bytes
/// over 126 and a blank before a line end as `=XX`; soft breaks (`=` CRLF) keep
/// every line within 76 bytes.
fn write_quoted_printable(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() + bytes.len() / 2);
    let mut line = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let line_end = |at: usize| match bytes.get(at) {
            None | Some(b'\n') => true,
            Some(b'\r') => bytes.get(at + 1) == Some(&b'\n'),
            _ => false,
        };
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            out.extend_from_slice(b"\r\n");
            line = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        let literal = match b {
            b'!'..=b'<' | b'>'..=b'~' => true,
            b' ' | b'\t' => !line_end(i + 1),
            _ => false,
        };
        let width = if literal { 1 } else { 3 };
        // Room for this and, unless the line ends right after it, a soft break's `=`.
        let need = if line_end(i + 1) { width } else { width + 1 };
        if line + need > QP_LINE {
            out.extend_from_slice(b"=\r\n");
            line = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        line += width;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes with mail-parser (a MIME parser of its own, not this module's logic).
    fn decoded(encoding: ContentTransferEncoding, body: &[u8]) -> String {
        let mut raw = format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(body);
        let message = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("parses");
        message.body_text(0).expect("a text body").into_owned()
    }

    fn check(text: &str) -> ContentTransferEncoding {
        let mut out = Vec::new();
        let encoding = write_text(text, &mut out);
        assert!(out.is_ascii(), "{encoding}: {out:?}");
        let s = String::from_utf8(out.clone()).unwrap();
        for l in s.split("\r\n") {
            assert!(l.len() <= QP_LINE, "{encoding}: line of {}: {l:?}", l.len());
            assert!(
                !l.contains(['\r', '\n']),
                "{encoding}: bare CR or LF in {l:?}"
            );
            if encoding == ContentTransferEncoding::QuotedPrintable {
                assert!(!l.ends_with([' ', '\t']), "QP: trailing blank in {l:?}");
            }
        }
        let want = text.replace("\r\n", "\n").replace('\n', "\r\n");
        let got = decoded(encoding, &out);
        // mail-parser drops one final line break of a part.
        assert_eq!(
            got.trim_end_matches("\r\n"),
            want.trim_end_matches("\r\n"),
            "{encoding}"
        );
        encoding
    }

    #[test]
    fn chooses_as_lettre_does() {
        use ContentTransferEncoding::*;
        assert_eq!(check("Hello,\nworld\n"), SevenBit);
        assert_eq!(check(&format!("a {}\n", "x".repeat(80))), QuotedPrintable);
        assert_eq!(check("01234567899876543210 📬"), QuotedPrintable);
        assert_eq!(check("いつもご利用ありがとうございます。"), Base64);
    }

    #[test]
    fn quoted_printable_round_trips_hard_cases() {
        let cases = [
            format!("{}=\n", "=".repeat(100)),
            format!("trailing blanks \t \nand {} end ", "y".repeat(90)),
            format!("{}é{}", "z".repeat(74), "w".repeat(10)),
            format!("{} \r\nlone\rcarriage {}", "k".repeat(75), "q".repeat(80)),
            format!(
                "<a href=\"https://shop.example.com/p/{}\">山田様</a>\n",
                "1".repeat(70)
            ),
            format!("{}\n\n\n", "x".repeat(76)),
        ];
        for case in &cases {
            let mut out = Vec::new();
            write_quoted_printable(case.as_bytes(), &mut out);
            let encoding = ContentTransferEncoding::QuotedPrintable;
            let want = case.replace("\r\n", "\n").replace('\n', "\r\n");
            assert_eq!(
                decoded(encoding, &out).trim_end_matches("\r\n"),
                want.trim_end_matches("\r\n"),
                "{case:?}"
            );
            let s = String::from_utf8(out).unwrap();
            assert!(s.split("\r\n").all(|l| l.len() <= QP_LINE), "{s}");
        }
    }

    #[test]
    fn random_texts_round_trip_whatever_the_encoding() {
        let alphabet: Vec<char> = "ab =\t\n\r.-~é山📬<>\"".chars().collect();
        let mut rng = fastrand::Rng::with_seed(19);
        for _ in 0..500 {
            let len = rng.usize(0..300);
            let text: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            // A lone CR is not a line end in any encoding; keep the cases comparable.
            let text = text.replace('\r', "\r\n");
            check(&text);
        }
    }
}
