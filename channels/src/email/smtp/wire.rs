//! SMTP on the wire, without I/O: replies (RFC 5321 §4.2) parsed from the bytes
//! read so far, the EHLO extension list, and the DATA transparency (dot-stuffing,
//! §4.5.2) of a message.

use std::fmt;

/// Longest reply line we accept. RFC 5321 §4.5.3.1.5 allows 512 bytes; Postfix's
/// `line_length_limit` is 2048. A relay sending more is broken or hostile: we stop
/// reading instead of buffering without end.
pub const MAX_LINE: usize = 2048;
/// Largest whole (multi-line) reply; an EHLO reply is a few hundred bytes.
pub const MAX_REPLY: usize = 64 * 1024;

/// One reply: its code and its lines' text (without code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx and 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The RFC 3463 enhanced status code (`5.1.1`) the reply's first line starts
    /// with (RFC 2034 puts it there), if any.
    pub fn enhanced_code(&self) -> Option<&str> {
        let first = self.lines.first()?;
        let word = first.split_whitespace().next()?;
        is_enhanced_code(word).then_some(word)
    }
}

impl fmt::Display for Reply {
    /// `550 5.1.1 <a@b>: User unknown`; the lines of a multi-line reply joined by a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        for line in &self.lines {
            if !line.is_empty() {
                write!(f, " {line}")?;
            }
        }
        Ok(())
    }
}

/// Whether `word` is an RFC 3463 status code: `class.subject.detail`, class 2, 4 or 5,
/// subject and detail of 1 to 3 digits.
pub fn is_enhanced_code(word: &str) -> bool {
    let mut parts = word.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |s: &str| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    matches!(class, "2" | "4" | "5") && digits(subject) && digits(detail)
}

/// Why the bytes from the relay are not an SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("a reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("a reply longer than {MAX_REPLY} bytes")]
    ReplyTooLong,
    #[error("not an SMTP reply line: {0:?}")]
    Garbage(String),
    #[error("a multi-line reply changes its code from {0} to {1}")]
    MixedCodes(u16, u16),
}

/// Parses the first complete reply in `buf`: `Ok(Some((reply, bytes used)))`,
/// `Ok(None)` when more bytes are needed, or an error once the bytes cannot become
/// a reply (including one over the size limits, so the caller never buffers more
/// than [`MAX_REPLY`] for one reply).
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, WireError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_LINE {
                return Err(WireError::LineTooLong);
            }
            if buf.len() > MAX_REPLY {
                return Err(WireError::ReplyTooLong);
            }
            return Ok(None);
        };
        if end > MAX_LINE {
            return Err(WireError::LineTooLong);
        }
        if pos + end + 1 > MAX_REPLY {
            return Err(WireError::ReplyTooLong);
        }
        // CRLF by the RFC; a bare LF is accepted (the line is still unambiguous).
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        pos += end + 1;
        let garbage = || WireError::Garbage(String::from_utf8_lossy(line).into_owned());
        let (digits, tail) = line.split_at_checked(3).ok_or_else(garbage)?;
        if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
            return Err(garbage());
        }
        let this = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        match code {
            Some(c) if c != this => return Err(WireError::MixedCodes(c, this)),
            _ => code = Some(this),
        }
        let (last, text) = match tail.split_first() {
            None => (true, &[][..]),
            Some((b' ', text)) => (true, text),
            Some((b'-', text)) => (false, text),
            Some(_) => return Err(garbage()),
        };
        lines.push(String::from_utf8_lossy(text).into_owned());
        if last {
            return Ok(Some((Reply { code: this, lines }, pos)));
        }
    }
}

/// What the relay offers, from its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    /// AUTH mechanisms, upper case (`PLAIN`, `LOGIN`).
    pub auth: Vec<String>,
    /// The SIZE limit in bytes, if one was announced (0 means none).
    pub size: Option<u64>,
}

impl Extensions {
    /// The keywords of an EHLO reply's lines after the first (the greeting line).
    pub fn from_ehlo(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "STARTTLS" => ext.starttls = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "SIZE" => ext.size = words.next().and_then(|n| n.parse().ok()),
                "AUTH" => ext.auth.extend(words.map(|m| m.to_ascii_uppercase())),
                _ => {}
            }
        }
        ext
    }
}

/// Appends `message` to `out` as DATA content: a `.` doubled at the start of every
/// line (RFC 5321 §4.5.2), a CRLF added if the message does not end with one, then
/// the `.` line that ends the data. Lines are CRLF-delimited, as the message
/// builder writes them (and as lettre's codec, which this replaces, counted them).
pub fn put_data(message: &[u8], out: &mut Vec<u8>) {
    // Every line could start with a dot; a few bytes of slack cover real mail.
    out.reserve(message.len() + message.len() / 64 + 5);
    let mut rest = message;
    if rest.first() == Some(&b'.') {
        out.push(b'.');
    }
    while let Some(i) = find_line_start_dot(rest) {
        // `i` is the CR of "\r\n."; copy through the LF, then the extra dot.
        out.extend_from_slice(&rest[..i + 2]);
        out.push(b'.');
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    if !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// Where the next "\r\n." starts in `bytes`.
fn find_line_start_dot(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(|&b| b == b'\n') {
        let lf = from + i;
        if lf > 0 && bytes[lf - 1] == b'\r' && bytes.get(lf + 1) == Some(&b'.') {
            return Some(lf - 1);
        }
        from = lf + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<(Reply, usize)>, WireError> {
        parse_reply(s.as_bytes())
    }

    #[test]
    fn a_single_line_reply_is_parsed_with_what_it_used() {
        let (reply, used) = parse("250 2.1.0 Ok\r\n354 go\r\n").unwrap().unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, ["2.1.0 Ok"]);
        assert_eq!(used, 14);
        assert_eq!(reply.enhanced_code(), Some("2.1.0"));
        assert_eq!(reply.to_string(), "250 2.1.0 Ok");
    }

    #[test]
    fn a_multi_line_reply_ends_at_its_space_line() {
        let ehlo = "250-relay.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
                    250-AUTH PLAIN login\r\n250-8BITMIME\r\n250 STARTTLS\r\n";
        let (reply, used) = parse(ehlo).unwrap().unwrap();
        assert_eq!(used, ehlo.len());
        assert_eq!(reply.lines.len(), 6);
        let ext = Extensions::from_ehlo(&reply);
        assert!(ext.pipelining && ext.starttls && ext.eight_bit_mime && !ext.smtputf8);
        assert_eq!(ext.auth, ["PLAIN", "LOGIN"]);
        assert_eq!(ext.size, Some(10_240_000));
        // Not complete until the last line: more bytes are needed.
        assert_eq!(parse("250-relay.example\r\n250-PIPELINING\r\n"), Ok(None));
        assert_eq!(parse("250 Ok"), Ok(None));
    }

    #[test]
    fn bare_codes_and_bare_lf_are_accepted() {
        let (reply, _) = parse("250\n").unwrap().unwrap();
        assert_eq!((reply.code, reply.lines.len()), (250, 1));
        assert_eq!(reply.enhanced_code(), None);
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "HTTP/1.1 400 Bad\r\n",
            "25\r\n",
            "250x\r\n",
            "100 hi\r\n",
            "\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(WireError::Garbage(_))),
                "{bad:?}: {:?}",
                parse(bad)
            );
        }
        assert_eq!(
            parse("250-a\r\n550 b\r\n"),
            Err(WireError::MixedCodes(250, 550))
        );
    }

    #[test]
    fn overlong_replies_are_refused_before_they_are_complete() {
        let long = format!("250 {}", "x".repeat(MAX_LINE));
        assert_eq!(parse(&long), Err(WireError::LineTooLong));
        assert_eq!(parse(&format!("{long}\r\n")), Err(WireError::LineTooLong));
        let many = "250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n".repeat(MAX_REPLY / 40);
        assert_eq!(parse(&many), Err(WireError::ReplyTooLong));
    }

    #[test]
    fn enhanced_codes_are_only_well_formed_ones() {
        assert!(is_enhanced_code("5.1.1"));
        assert!(is_enhanced_code("4.7.100"));
        assert!(!is_enhanced_code("5.1"));
        assert!(!is_enhanced_code("3.1.1"));
        assert!(!is_enhanced_code("5.1.1."));
        assert!(!is_enhanced_code("5.1234.1"));
    }

    fn data(message: &str) -> String {
        let mut out = Vec::new();
        put_data(message.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dots_at_line_starts_are_doubled_and_the_data_is_terminated_once() {
        assert_eq!(data("a\r\n.b\r\n"), "a\r\n..b\r\n.\r\n");
        assert_eq!(data(".\r\n..\r\n"), "..\r\n...\r\n.\r\n");
        assert_eq!(data("no final crlf"), "no final crlf\r\n.\r\n");
        assert_eq!(data("a.b\r\nc .\r\n"), "a.b\r\nc .\r\n.\r\n");
        assert_eq!(data("x\r\n."), "x\r\n..\r\n.\r\n");
        assert_eq!(data(""), "\r\n.\r\n");
        // A bare LF is not a line end for transparency (as in lettre's codec).
        assert_eq!(data("a\n.b\r\n"), "a\n.b\r\n.\r\n");
    }
}
