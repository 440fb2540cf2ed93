//! Self-tests of the SMTP test peer (`tests/peers/smtp_peer.py`) and its harness
//! (`tests/common/smtp.rs`), speaking SMTP by hand over a plain `TcpStream`: the peer
//! stores exactly what it accepts, answers each scripted recipient as documented, can
//! require AUTH, and can go down and come back on the same port.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::smtp::{dkim_verify, ed25519_test_key, python, SmtpPeer};

const WAIT: Duration = Duration::from_secs(10);

/// A minimal SMTP client: one command, one (possibly multi-line) reply.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects and checks the 220 greeting.
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the SMTP peer");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut c = Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let (code, text) = c.reply();
        assert_eq!(code, 220, "greeting: {text}");
        c
    }

    /// Reads a reply: (code, text of all its lines joined by '\n').
    fn reply(&mut self) -> (u16, String) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read a reply");
            assert!(n > 0, "the peer closed the connection; so far: {lines:?}");
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                break;
            }
        }
        let code = lines[0][..3].parse().expect("a reply code");
        let text = lines
            .iter()
            .map(|l| &l[4.min(l.len())..])
            .collect::<Vec<_>>();
        (code, text.join("\n"))
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// DATA with `message` (CRLF lines, ending with CRLF), dot-stuffed here.
    fn data(&mut self, message: &[u8]) -> (u16, String) {
        let (code, text) = self.cmd("DATA");
        assert_eq!(code, 354, "DATA: {text}");
        let mut wire = Vec::new();
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                wire.push(b'.');
            }
            wire.extend_from_slice(line);
        }
        wire.extend_from_slice(b".\r\n");
        self.writer.write_all(&wire).unwrap();
        self.reply()
    }

    fn ehlo(&mut self) -> String {
        let (code, text) = self.cmd("EHLO client.test");
        assert_eq!(code, 250, "EHLO: {text}");
        text
    }
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Example Shop <news@example.com>\r\nTo: taro@example.com\r\n\
         Subject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         山田様\r\n.a line starting with a dot\r\n..and two\r\n\r\nend\r\n"
    )
    .into_bytes()
}

#[test]
fn stores_messages_byte_exact_with_their_envelope() {
    let peer = SmtpPeer::start();
    let mut c = Client::connect(peer.port);
    let features = c.ehlo();
    assert!(features.contains("SMTPUTF8"), "{features}");
    assert!(
        !features.contains("AUTH"),
        "no AUTH without --auth: {features}"
    );
    assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<taro@example.com>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<hanako@example.com>").0, 250);
    let (code, text) = c.data(&message("first"));
    assert_eq!(code, 250, "{text}");
    // A second message on the same connection: one connection for both.
    assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<jiro@example.com>").0, 250);
    assert_eq!(c.data(&message("second")).0, 250);
    assert_eq!(c.cmd("QUIT").0, 221);

    let got = peer.wait_for(2, WAIT);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].raw,
        message("first"),
        "stored byte-exact, dots unstuffed"
    );
    assert_eq!(got[0].mail_from, "bounce@example.com");
    assert_eq!(got[0].rcpt_tos, ["taro@example.com", "hanako@example.com"]);
    assert_eq!(got[0].auth_user, None);
    assert_eq!(got[0].helo.as_deref(), Some("client.test"));
    assert_eq!(got[1].raw, message("second"));
    assert_eq!(got[1].rcpt_tos, ["jiro@example.com"]);
    assert_eq!(peer.connections(), 1);

    Client::connect(peer.port).cmd("QUIT");
    assert_eq!(peer.connections(), 2);
}

#[test]
fn rejects_unknown_and_disabled_recipients_at_rcpt() {
    let peer = SmtpPeer::start();
    let mut c = Client::connect(peer.port);
    c.ehlo();
    assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 250);
    let (code, text) = c.cmd("RCPT TO:<unknown@example.com>");
    assert_eq!(code, 550);
    assert_eq!(
        text,
        "5.1.1 <unknown@example.com>: Recipient address rejected: User unknown"
    );
    assert_eq!(c.cmd("RCPT TO:<Unknown.Someone@example.com>").0, 550);
    assert_eq!(
        c.cmd("RCPT TO:<disabled-1@example.com>"),
        (550, "5.2.1 Mailbox disabled".to_owned())
    );
    // The transaction goes on with the recipients that were accepted.
    assert_eq!(c.cmd("RCPT TO:<taro@example.com>").0, 250);
    assert_eq!(c.data(&message("one good")).0, 250);
    let got = peer.wait_for(1, WAIT);
    assert_eq!(got[0].rcpt_tos, ["taro@example.com"]);
}

#[test]
fn tempfail_fails_once_per_address_then_accepts() {
    let peer = SmtpPeer::start();
    let mut c = Client::connect(peer.port);
    c.ehlo();
    assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<tempfail-7@example.com>").0, 250);
    assert_eq!(
        c.data(&message("try 1")),
        (451, "4.3.0 Temporary failure, try again".to_owned())
    );
    assert!(peer.messages().is_empty(), "a 451 stores nothing");
    assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<tempfail-7@example.com>").0, 250);
    assert_eq!(c.data(&message("try 2")).0, 250);
    // Another tempfail address fails once too, on a new connection.
    let mut c2 = Client::connect(peer.port);
    c2.ehlo();
    assert_eq!(c2.cmd("MAIL FROM:<bounce@example.com>").0, 250);
    assert_eq!(c2.cmd("RCPT TO:<tempfail-8@example.com>").0, 250);
    assert_eq!(c2.data(&message("other")).0, 451);

    let got = peer.wait_for(1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].raw, message("try 2"));
}

#[test]
fn busy_is_452_and_reject_is_554_every_time() {
    let peer = SmtpPeer::start();
    let mut c = Client::connect(peer.port);
    c.ehlo();
    for _ in 0..2 {
        assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 250);
        assert_eq!(
            c.cmd("RCPT TO:<busy@example.com>"),
            (452, "4.2.2 Mailbox full".to_owned())
        );
        assert_eq!(c.cmd("RCPT TO:<REJECT.me@example.com>").0, 250);
        assert_eq!(
            c.data(&message("spam?")),
            (554, "5.7.1 Message rejected as spam".to_owned())
        );
    }
    assert!(peer.messages().is_empty());
}

#[test]
fn auth_is_required_before_mail() {
    let peer = SmtpPeer::start_with_auth("mailer", "s3cret");
    let mut c = Client::connect(peer.port);
    let features = c.ehlo();
    assert!(
        features.contains("AUTH") && features.contains("PLAIN") && features.contains("LOGIN"),
        "{features}"
    );
    assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 530);
    // base64("\0mailer\0wrong"), then base64("\0mailer\0s3cret").
    assert_eq!(c.cmd("AUTH PLAIN AG1haWxlcgB3cm9uZw==").0, 535);
    assert_eq!(c.cmd("AUTH PLAIN AG1haWxlcgBzM2NyZXQ=").0, 235);
    assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<taro@example.com>").0, 250);
    assert_eq!(c.data(&message("authed")).0, 250);

    // AUTH LOGIN: base64("mailer"), base64("s3cret").
    let mut c = Client::connect(peer.port);
    c.ehlo();
    assert_eq!(c.cmd("AUTH LOGIN").0, 334);
    assert_eq!(c.cmd("bWFpbGVy").0, 334);
    assert_eq!(c.cmd("czNjcmV0").0, 235);
    assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 250);

    let got = peer.wait_for(1, WAIT);
    assert_eq!(got[0].auth_user.as_deref(), Some("mailer"));
}

#[test]
fn stop_and_restart_on_the_same_port() {
    let mut peer = SmtpPeer::start();
    let send = |port: u16, subject: &str| {
        let mut c = Client::connect(port);
        c.ehlo();
        assert_eq!(c.cmd("MAIL FROM:<bounce@example.com>").0, 250);
        assert_eq!(c.cmd("RCPT TO:<taro@example.com>").0, 250);
        assert_eq!(c.data(&message(subject)).0, 250);
        c.cmd("QUIT");
    };
    send(peer.port, "before");
    peer.wait_for(1, WAIT);
    let port = peer.port;

    peer.stop();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "connections are refused while the peer is down"
    );
    peer.restart();
    assert_eq!(peer.port, port);
    send(peer.port, "after");

    let got = peer.wait_for(2, WAIT);
    assert_eq!(got.len(), 2, "the numbering carries on after a restart");
    assert_eq!(got[0].raw, message("before"));
    assert_eq!(got[1].raw, message("after"));
    assert_eq!(peer.connections(), 2);
}

#[test]
fn dkim_verify_rejects_unsigned_and_forged_messages() {
    let (_, public) = ed25519_test_key();
    let err = dkim_verify(&message("unsigned"), "s1", "example.com", &public).unwrap_err();
    assert!(err.contains("no DKIM-Signature"), "{err}");

    // A well-formed signature header whose signature is not the key's.
    let mut forged = b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;\r\n \
        s=s1; h=from:to:subject:list-unsubscribe; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n \
        b=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\r\n"
        .to_vec();
    forged.extend(message("forged"));
    let err = dkim_verify(&forged, "s1", "example.com", &public).unwrap_err();
    assert!(err.contains("from:to:subject:list-unsubscribe"), "{err}");
}

#[test]
fn ed25519_test_key_is_a_key_pair() {
    let (private, public) = ed25519_test_key();
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import base64, sys, nacl.signing; \
             k = nacl.signing.SigningKey(base64.b64decode(sys.argv[1])); \
             print(base64.b64encode(bytes(k.verify_key)).decode())",
            &private,
        ])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public);
}

/// Tayori's own DKIM signer (channels/src/email/dkim.rs, ring) against dkimpy, for
/// both key types: a Japanese subject and name, two parts, the unsubscribe headers;
/// and a changed subject breaks the signature.
#[test]
fn tayoris_dkim_signatures_verify_with_dkimpy_for_ed25519_and_rsa() {
    use common::smtp::{dkim_verify_rsa, TEST_DKIM_RSA_PRIVATE_PEM, TEST_DKIM_RSA_PUBLIC_B64};
    use tayori_channels::email::{DkimKey, EmailEncoder, EmailOptions};
    use tayori_channels::{Content, Message, Recipient};

    let (ed_private, ed_public) = ed25519_test_key();
    let keys = [
        ("ed25519", ed_private, ed_public),
        (
            "rsa",
            TEST_DKIM_RSA_PRIVATE_PEM.to_owned(),
            TEST_DKIM_RSA_PUBLIC_B64.to_owned(),
        ),
    ];
    for (algorithm, private_key, public_key) in keys {
        let encoder = EmailEncoder::with_options(&EmailOptions {
            from: "Example Shop <news@example.com>".into(),
            unsubscribe_mailto: Some("unsub@example.com".into()),
            dkim: Some(DkimKey {
                selector: "s1".into(),
                domain: "example.com".into(),
                algorithm: algorithm.into(),
                private_key,
            }),
            ..EmailOptions::default()
        })
        .expect("encoder");
        let extras = tayori_channels::EmailExtras {
            unsubscribe_url: Some("https://t.example.com/u/abc".into()),
            ..Default::default()
        };
        let message = Message {
            job_id: format!("dkim-{algorithm}"),
            attempt: 1,
            idempotency_key: "k".into(),
            campaign: None,
            customer_id: None,
            to: Recipient {
                name: Some("山田 太郎".into()),
                address: "taro@example.com".into(),
                postal: None,
            },
            content: Content::Email {
                subject: "春のセール  最終日".into(),
                html: Some("<p>こんにちは  \t</p>\r\n\r\n".into()),
                text: Some("こんにちは".into()),
                extras,
            },
        };
        let raw = encoder.build(&message).expect("build").bytes;
        let verify = |raw: &[u8]| match algorithm {
            "rsa" => dkim_verify_rsa(raw, "s1", "example.com", &public_key),
            _ => dkim_verify(raw, "s1", "example.com", &public_key),
        };
        let signed = verify(&raw).unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert!(signed.contains("list-unsubscribe"), "{algorithm}: {signed}");

        let text = String::from_utf8(raw).expect("ASCII message");
        let tampered = text.replacen("Subject: ", "Subject: Re: ", 1);
        assert_ne!(tampered, text);
        assert!(
            verify(tampered.as_bytes()).is_err(),
            "{algorithm}: a changed subject must fail"
        );
    }
}
