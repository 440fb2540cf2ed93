//! The email channel against real peers: a redis-server and a real SMTP server
//! (`tests/peers/smtp_peer.py`, aiosmtpd) per test. Received mail is read with a
//! MIME parser (mail-parser) and its DKIM signature checked with dkimpy; tracking,
//! unsubscribe and bounce links are followed over HTTP against the running daemon.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use common::smtp::{dkim_verify, ed25519_test_key, Received, SmtpPeer};
use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{json, Value};
use tayori::tracking::{Purpose, Sealer, Tracked};

const WAIT: Duration = Duration::from_secs(30);
/// Fast retries: a deferred job comes back within half a second.
const RETRY: &str = "[retry]\nmax_attempts = 40\nbase_delay = \"200ms\"\nmax_delay = \"500ms\"";
const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";

/// Redis, the SMTP peer and a config sending email to it (plus SMS on files for
/// fallbacks). The DKIM key lives in `_key`.
struct Env {
    redis: Redis,
    peer: SmtpPeer,
    s: Setup,
    _key: tempfile::TempDir,
}

/// The `[channels.email]` of these tests, sending to `port`; `smtp_extra` goes into
/// `[channels.email.smtp]`.
fn email_channels(port: u16, key_file: &std::path::Path, smtp_extra: &str) -> String {
    format!(
        r#"
[channels.email]
transport = "smtp"
from = "Example Shop <news@example.com>"
reply_to = "Support <support@example.com>"
envelope_from = "bounces@example.com"
verp = true
unsubscribe_mailto = "unsubscribe@example.com"
headers = {{ "X-Campaign-System" = "tayori" }}
rate = "1000/s"
concurrency = 8

[channels.email.smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
pool_size = 4
timeout = "5s"
{smtp_extra}

[channels.email.dkim]
selector = "test"
domain = "example.com"
algorithm = "ed25519"
key_file = "{key}"

[channels.sms]
transport = "file"
dir = "{{outbox}}/sms"
rate = "1000/s"
"#,
        key = key_file.display()
    )
}

fn env_with(peer: SmtpPeer, smtp_extra: &str) -> Env {
    let redis = Redis::start();
    let key = tempfile::tempdir().expect("tempdir");
    let key_file = key.path().join("dkim.key");
    std::fs::write(&key_file, ed25519_test_key().0).expect("write the DKIM key");
    let s = setup(
        &redis,
        RETRY,
        &email_channels(peer.port, &key_file, smtp_extra),
    );
    Env {
        redis,
        peer,
        s,
        _key: key,
    }
}

fn env() -> Env {
    env_with(SmtpPeer::start(), "")
}

fn email_job(id: &str, address: &str) -> Value {
    let mut j = job(id, "email");
    j["to"]["email"] = json!(address);
    j
}

fn of_type<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["type"] == kind).collect()
}

fn for_job<'a>(evs: &'a [Value], kind: &str, job_id: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["type"] == kind && e["job_id"] == job_id)
        .collect()
}

fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    MessageParser::default()
        .parse(raw)
        .expect("the received message parses as MIME")
}

/// The header field as sent (still encoded), unfolded.
fn raw_header(msg: &mail_parser::Message<'_>, name: &str) -> String {
    let v = msg
        .header_raw(name)
        .unwrap_or_else(|| panic!("no {name} header"));
    v.replace("\r\n", "").replace('\n', "").trim().to_owned()
}

/// The decoded body of the one leaf part of type text/`subtype`.
fn part(msg: &mail_parser::Message<'_>, subtype: &str) -> String {
    let found: Vec<&str> = msg
        .parts
        .iter()
        .filter(|p| {
            p.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("text")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
            })
        })
        .map(|p| p.text_contents().expect("a text part"))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one text/{subtype} part (parts: {:?})",
        msg.parts
            .iter()
            .map(|p| p
                .content_type()
                .map(|c| format!("{}/{:?}", c.ctype(), c.subtype())))
            .collect::<Vec<_>>()
    );
    found[0].to_owned()
}

/// Values of `attr="…"` in HTML, in order, with character references decoded
/// (`&#x2f;` is a `/` to a browser).
fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest.find('"')
                .map(|end| html_escape::decode_html_entities(&rest[..end]).into_owned())
        })
        .collect()
}

/// URLs in text starting with `prefix`, up to the token's end.
fn urls_with(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            format!("{prefix}{}", &rest[..end])
        })
        .collect()
}

fn token_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

fn sealer() -> Sealer {
    Sealer::new(TRACKING_SECRET)
}

/// The `List-Unsubscribe` URLs, in order.
fn list_unsubscribe(msg: &mail_parser::Message<'_>) -> Vec<String> {
    raw_header(msg, "List-Unsubscribe")
        .split(',')
        .map(|s| {
            let s = s.trim();
            assert!(s.starts_with('<') && s.ends_with('>'), "{s:?}");
            s[1..s.len() - 1].to_owned()
        })
        .collect()
}

fn suppression(conn: &mut redis::Connection, address: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg("t:{0}:suppressed:email")
        .arg(address)
        .query(conn)
        .unwrap()
}

/// A raw HTTP/1.0 exchange: (status, headers lowercased, body).
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn http(s: &Setup, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let (status, headers, body) = parse_response(&raw);
    Resp {
        status,
        headers,
        body,
    }
}

/// The path part of one of the daemon's own URLs.
fn path_of(s: &Setup, url: &str) -> String {
    let base = format!("http://127.0.0.1:{}", s.http_port);
    url.strip_prefix(&base)
        .unwrap_or_else(|| panic!("{url} is not under {base}"))
        .to_owned()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sends one spring_sale job to taro@example.com and returns the message the peer got.
/// `n` email jobs, `{prefix}-{i}` to `{local}{i}@example.com`.
fn jobs_to(prefix: &str, local: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| email_job(&format!("{prefix}-{i}"), &format!("{local}{i}@example.com")))
        .collect()
}

/// Enqueues `n` jobs, starts the daemon, waits for `n` `sent` events and returns
/// the `n` messages the peer stored.
fn deliver_all(e: &Env, conn: &mut redis::Connection, prefix: &str, n: usize) -> Vec<Received> {
    enqueue(conn, &jobs_to(prefix, "member", n));
    let _d = e.s.start();
    wait_for(conn, WAIT, "all sent", |e| count(e, "sent") == n);
    let msgs = e.peer.wait_for(n, WAIT);
    assert_eq!(msgs.len(), n);
    msgs
}

fn send_one(e: &Env, conn: &mut redis::Connection, id: &str) -> Received {
    let before = e.peer.messages().len();
    enqueue(conn, &[email_job(id, "taro@example.com")]);
    wait_for(conn, WAIT, "sent", |evs| {
        !for_job(evs, "sent", id).is_empty()
    });
    e.peer.wait_for(before + 1, WAIT).pop().unwrap()
}

#[test]
fn a_personalized_marketing_mail_arrives_signed_tracked_and_unsubscribable() {
    let e = env();
    let s = e.s.replace_config(
        "from = \"Example Shop <news@example.com>\"",
        "from = \"山田商店 <news@example.com>\"",
    );
    let mut conn = e.redis.conn();
    enqueue(&mut conn, &[email_job("spring-1", "taro@example.com")]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    let msgs = e.peer.wait_for(1, WAIT);
    assert_eq!(msgs.len(), 1, "one message");
    let got = &msgs[0];
    let base = format!("http://127.0.0.1:{}", s.http_port);

    // Envelope: a VERP return path that maps back to this job and recipient.
    assert_eq!(got.rcpt_tos, ["taro@example.com"]);
    let verp = got
        .mail_from
        .strip_prefix("bounces+")
        .and_then(|r| r.strip_suffix("@example.com"))
        .unwrap_or_else(|| panic!("MAIL FROM {:?} is not VERP", got.mail_from));
    let (id_hex, tag_hex) = verp.split_once('-').expect("{hex}-{hex}");
    assert!(
        !id_hex.is_empty()
            && !tag_hex.is_empty()
            && verp.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
        "{verp}"
    );
    assert_eq!(
        sealer().open_verp(verp, "taro@example.com").as_deref(),
        Some("spring-1")
    );

    // Headers, decoded by a MIME parser.
    let msg = parse(&got.raw);
    let from = msg.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), Some("山田商店"));
    assert_eq!(from.address(), Some("news@example.com"));
    let to = msg.to().and_then(|a| a.first()).expect("To");
    assert_eq!(to.name(), Some("山田 太郎"));
    assert_eq!(to.address(), Some("taro@example.com"));
    assert!(
        raw_header(&msg, "To")
            .to_ascii_lowercase()
            .contains("=?utf-8?"),
        "the To display name is RFC 2047 encoded: {}",
        raw_header(&msg, "To")
    );
    let head_end = got
        .raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header section");
    assert!(
        got.raw[..head_end].is_ascii(),
        "no raw 8-bit bytes in the header section"
    );
    assert_eq!(
        msg.subject(),
        Some("山田 太郎様、春のセール開始 — 1200ポイントをお持ちです")
    );
    let message_id = msg.message_id().expect("Message-ID");
    assert!(message_id.contains("spring-1"), "{message_id}");
    assert!(msg.date().is_some(), "Date");
    let reply_to = msg.reply_to().and_then(|a| a.first()).expect("Reply-To");
    assert_eq!(reply_to.address(), Some("support@example.com"));
    assert_eq!(reply_to.name(), Some("Support"));
    assert_eq!(
        msg.header("X-Campaign-System").and_then(|h| h.as_text()),
        Some("tayori")
    );

    // One-click unsubscribe (RFC 2369 / RFC 8058).
    let list = list_unsubscribe(&msg);
    assert_eq!(list.len(), 2, "{list:?}");
    let unsubscribe_url = list[0].clone();
    assert!(
        unsubscribe_url.starts_with(&format!("{base}/u/")),
        "{unsubscribe_url}"
    );
    let t = sealer()
        .open(Purpose::Unsubscribe, token_of(&unsubscribe_url))
        .expect("an unsubscribe token of ours");
    assert_eq!(
        (t.job_id.as_str(), t.address.as_str()),
        ("spring-1", "taro@example.com")
    );
    assert_eq!(
        list[1],
        "mailto:unsubscribe@example.com?subject=unsubscribe"
    );
    assert_eq!(
        raw_header(&msg, "List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );

    // Structure: multipart/alternative with a text and an html part.
    let ct = msg.content_type().expect("Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );
    let html = part(&msg, "html");
    let text = part(&msg, "plain");

    // HTML: the product link through the click tracker, the pixel, our own
    // unsubscribe link left as it is.
    let hrefs = attr_values(&html, "href");
    assert_eq!(hrefs.len(), 2, "{hrefs:?}");
    assert!(hrefs[0].starts_with(&format!("{base}/t/c/")), "{hrefs:?}");
    let click = sealer()
        .open(Purpose::Click, token_of(&hrefs[0]))
        .expect("a click token of ours");
    assert_eq!(click.url.as_deref(), Some("https://shop.example.com/p/1"));
    assert_eq!(click.job_id, "spring-1");
    assert_eq!(click.campaign.as_deref(), Some("test"));
    assert_eq!(hrefs[1], unsubscribe_url, "the body's unsubscribe link");
    let srcs = attr_values(&html, "src");
    assert_eq!(srcs.len(), 1, "{srcs:?}");
    assert!(srcs[0].starts_with(&format!("{base}/t/o/")), "{srcs:?}");
    let open = sealer()
        .open(Purpose::Open, token_of(&srcs[0]))
        .expect("an open token of ours");
    assert_eq!(open.job_id, "spring-1");
    let shown = html_escape::decode_html_entities(&html);
    assert!(shown.contains("1200ポイント"), "{html}");
    assert!(shown.contains("化粧水"), "{html}");
    assert!(
        !shown.contains("https://shop.example.com/p/1"),
        "the product link is only behind the tracker: {html}"
    );

    // Text: the same, as plain URLs.
    assert!(text.contains("山田 太郎様"), "{text}");
    assert!(!text.contains("https://shop.example.com"), "{text}");
    let clicks = urls_with(&text, &format!("{base}/t/c/"));
    assert_eq!(clicks.len(), 1, "{text}");
    assert_eq!(
        sealer()
            .open(Purpose::Click, token_of(&clicks[0]))
            .and_then(|t| t.url)
            .as_deref(),
        Some("https://shop.example.com/p/1")
    );
    assert_eq!(
        urls_with(&text, &format!("{base}/u/")),
        [unsubscribe_url.as_str()],
        "{text}"
    );

    // DKIM: valid, and covering the unsubscribe headers.
    let signed = dkim_verify(&got.raw, "test", "example.com", &ed25519_test_key().1)
        .expect("the DKIM signature verifies");
    let signed: Vec<String> = signed
        .to_ascii_lowercase()
        .split(':')
        .map(str::to_owned)
        .collect();
    for h in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "content-type",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(signed.iter().any(|s| s == h), "{h} not in h={signed:?}");
    }

    // The event names the message.
    let sent = of_type(&evs, "sent")[0];
    assert_eq!(sent["job_id"], "spring-1");
    assert_eq!(sent["channel"], "email");
    let provider_id = sent["provider_id"].as_str().expect("provider_id");
    assert_eq!(provider_id, message_id);
}

#[test]
fn an_html_only_message_gets_a_text_part_and_a_text_only_one_stays_single() {
    let e = env();
    let mut conn = e.redis.conn();
    let j = json!({
        "id": "inline-1",
        "campaign": "inline",
        "channel": "email",
        "to": {"email": "hanako@example.com", "name": "Hanako"},
        "content": {"email": {
            "subject": "Spring news",
            "html": "<html><head><style>p{color:red}</style></head><body><h1>Spring news</h1><p>Dear Hanako, see <a href=\"https://shop.example.com/sale?x=1&amp;y=2\">our sale</a> today.</p></body></html>"
        }}
    });
    enqueue(&mut conn, &[j]);
    let _d = e.s.start();
    wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    let got = e.peer.wait_for(1, WAIT).pop().unwrap();
    let msg = parse(&got.raw);
    let ct = msg.content_type().expect("Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );
    let text = part(&msg, "plain");
    let html = part(&msg, "html");
    assert!(text.contains("Spring news"), "{text}");
    assert!(text.contains("Dear Hanako, see"), "{text}");
    assert!(text.contains("our sale"), "{text}");
    assert!(
        !text.contains('<') && !text.contains("color:red"),
        "no markup or styles in the text part: {text}"
    );
    let base = format!("http://127.0.0.1:{}", e.s.http_port);
    let clicks = urls_with(&text, &format!("{base}/t/c/"));
    assert_eq!(clicks.len(), 1, "the link as a tracked URL: {text}");
    assert!(!text.contains("https://shop.example.com"), "{text}");
    assert_eq!(
        sealer()
            .open(Purpose::Click, token_of(&clicks[0]))
            .and_then(|t| t.url)
            .as_deref(),
        Some("https://shop.example.com/sale?x=1&y=2")
    );
    let hrefs = attr_values(&html, "href");
    assert_eq!(hrefs.len(), 1, "{html}");
    assert!(hrefs[0].starts_with(&format!("{base}/t/c/")), "{html}");
    dkim_verify(&got.raw, "test", "example.com", &ed25519_test_key().1)
        .expect("the DKIM signature verifies");

    // A transactional, text-only template: one text/plain part, signed, and no
    // List-Unsubscribe.
    let mut welcome = email_job("welcome-1", "hanako@example.com");
    welcome["template"] = json!("welcome");
    enqueue(&mut conn, &[welcome]);
    wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 2);
    let got = e.peer.wait_for(2, WAIT).pop().unwrap();
    let msg = parse(&got.raw);
    let ct = msg.content_type().expect("Content-Type");
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
    assert_eq!(msg.subject(), Some("ようこそ、山田 太郎様"));
    assert!(part(&msg, "plain").contains("ご登録ありがとうございます。"));
    assert!(msg.header_raw("List-Unsubscribe").is_none());
    assert!(msg.header_raw("List-Unsubscribe-Post").is_none());
    let signed = dkim_verify(&got.raw, "test", "example.com", &ed25519_test_key().1)
        .expect("the DKIM signature verifies");
    assert!(signed
        .to_ascii_lowercase()
        .split(':')
        .any(|h| h == "content-type"));
}

#[test]
fn clicks_and_opens_come_back_as_events_and_forged_tokens_do_not() {
    let e = env();
    let s = &e.s;
    let mut conn = e.redis.conn();
    let _d = s.start();
    s.wait_http();
    let got = send_one(&e, &mut conn, "track-1");
    let msg = parse(&got.raw);
    let html = part(&msg, "html");
    let click_url = attr_values(&html, "href")
        .into_iter()
        .find(|h| h.contains("/t/c/"))
        .expect("a tracked link");
    let pixel_url = attr_values(&html, "src")
        .into_iter()
        .find(|h| h.contains("/t/o/"))
        .expect("the pixel");
    let events_now = |conn: &mut redis::Connection| events(conn).len();

    // The link from the mail redirects to the original, right after sending: a prefetch.
    let before = events_now(&mut conn);
    let r = http(
        s,
        "GET",
        &path_of(s, &click_url),
        &[("User-Agent", BROWSER)],
    );
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://shop.example.com/p/1"));
    let evs = events(&mut conn);
    assert_eq!(evs.len(), before + 1);
    let clicked = evs.last().unwrap();
    assert_eq!(clicked["type"], "clicked");
    assert_eq!(clicked["url"], "https://shop.example.com/p/1");
    assert_eq!(clicked["job_id"], "track-1");
    assert_eq!(clicked["campaign"], "test");
    assert_eq!(clicked["customer_id"], "C-track-1");
    assert_eq!(clicked["channel"], "email");
    // Within seconds of sending, a browser's request is a link scanner's prefetch
    // (checked only while that still holds: a slow machine may take longer).
    let sent_at = sealer()
        .open(Purpose::Click, token_of(&click_url))
        .unwrap()
        .sent_at;
    if now_secs() - sent_at < 10 {
        assert_eq!(clicked["suspected_bot"], true, "{clicked}");
    }

    let r = http(
        s,
        "GET",
        &path_of(s, &pixel_url),
        &[("User-Agent", BROWSER)],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/gif"));
    assert!(r.body.starts_with(b"GIF89a"), "a GIF");
    let evs = events(&mut conn);
    let opened = evs.last().unwrap();
    assert_eq!(opened["type"], "opened");
    assert_eq!(opened["job_id"], "track-1");
    if now_secs() - sent_at < 10 {
        assert_eq!(opened["suspected_bot"], true, "{opened}");
    }

    // A token of a message sent an hour ago: a person with a browser is not a bot,
    // a HEAD request or curl is.
    let hour_ago = Tracked {
        channel: tayori::channel::email::ID,
        job_id: "old-1".into(),
        address: "taro@example.com".into(),
        campaign: Some("spring26".into()),
        customer_id: Some("C1001".into()),
        sent_at: now_secs() - 3600,
        url: Some("https://shop.example.com/p/2?ref=mail".into()),
    };
    let old_click = sealer().seal(Purpose::Click, &hour_ago);
    let old_open = sealer().seal(Purpose::Open, &hour_ago);
    // (method, route, User-Agent, suspected_bot); each case its own message, since
    // a repeat within a minute is recorded once.
    let cases = [
        ("GET", "c", Some(BROWSER), false),
        ("GET", "o", Some(BROWSER), false),
        ("HEAD", "c", Some(BROWSER), true),
        ("GET", "c", Some("curl/8.5.0"), true),
        ("GET", "o", Some("curl/8.5.0"), true),
        ("GET", "o", None, true),
    ];
    for (i, (method, kind, agent, bot)) in cases.into_iter().enumerate() {
        let message = Tracked {
            job_id: format!("old-{i}"),
            ..hour_ago.clone()
        };
        let purpose = if kind == "c" {
            Purpose::Click
        } else {
            Purpose::Open
        };
        let token = sealer().seal(purpose, &message);
        let headers: Vec<(&str, &str)> = agent.map(|a| ("User-Agent", a)).into_iter().collect();
        let before = events_now(&mut conn);
        let r = http(s, method, &format!("/t/{kind}/{token}"), &headers);
        let expected_status = if kind == "c" { 302 } else { 200 };
        assert_eq!(r.status, expected_status, "{method} /t/{kind} {headers:?}");
        if kind == "c" {
            assert_eq!(
                r.header("location"),
                Some("https://shop.example.com/p/2?ref=mail")
            );
        }
        let evs = events(&mut conn);
        assert_eq!(evs.len(), before + 1, "{method} /t/{kind} {headers:?}");
        let ev = evs.last().unwrap();
        assert_eq!(ev["type"], if kind == "c" { "clicked" } else { "opened" });
        assert_eq!(ev["job_id"], message.job_id);
        assert_eq!(ev["campaign"], "spring26");
        assert_eq!(
            ev["suspected_bot"], bot,
            "{method} /t/{kind} {headers:?}: {ev}"
        );
    }

    // Tokens that are not ours, or not for this route: 404, no redirect, no event.
    let click_token = token_of(&click_url).to_owned();
    let mut flipped: Vec<char> = click_token.chars().collect();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == 'A' { 'B' } else { 'A' };
    let flipped: String = flipped.into_iter().collect();
    let foreign = Sealer::new("another-secret-0123456789abcdef").seal(Purpose::Click, &hour_ago);
    let forged = [
        format!("/t/c/{flipped}"),
        format!("/t/c/{old_open}"),
        format!("/t/c/{}", token_of(&pixel_url)),
        format!("/t/c/{foreign}"),
        format!("/t/o/{old_click}"),
        format!("/t/c/{}", &click_token[..click_token.len() - 4]),
        "/t/c/not-a-token".to_owned(),
    ];
    let before = events_now(&mut conn);
    for path in &forged {
        let r = http(s, "GET", path, &[("User-Agent", BROWSER)]);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("location"), None, "{path}");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(events_now(&mut conn), before, "no event from a bad token");
}

#[test]
fn one_click_unsubscribe_suppresses_the_address_once() {
    let e = env();
    let s = &e.s;
    let mut conn = e.redis.conn();
    let _d = s.start();
    s.wait_http();
    let got = send_one(&e, &mut conn, "unsub-1");
    let msg = parse(&got.raw);
    let url = list_unsubscribe(&msg).remove(0);
    let path = path_of(s, &url);

    // GET shows a confirmation form and changes nothing (scanners follow links).
    let before = events(&mut conn).len();
    let r = http(s, "GET", &path, &[("User-Agent", BROWSER)]);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    let page = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        page.contains("<form") && page.contains("method=\"post\""),
        "{page}"
    );
    assert!(page.contains("List-Unsubscribe"), "{page}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(events(&mut conn).len(), before, "GET records nothing");
    assert_eq!(suppression(&mut conn, "taro@example.com"), None);

    // RFC 8058 one-click POST.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, _) = s
        .post(&path, &form, b"List-Unsubscribe=One-Click")
        .expect("POST");
    assert_eq!(status, 200);
    let evs = events(&mut conn);
    let unsubscribed = of_type(&evs, "unsubscribed");
    assert_eq!(unsubscribed.len(), 1, "{evs:?}");
    assert_eq!(unsubscribed[0]["address"], "taro@example.com");
    assert_eq!(unsubscribed[0]["job_id"], "unsub-1");
    assert_eq!(unsubscribed[0]["channel"], "email");
    assert_eq!(
        suppression(&mut conn, "taro@example.com").as_deref(),
        Some("unsubscribed")
    );
    // Again (a second click, a retrying mail client): no second event.
    let (status, _) = s
        .post(&path, &form, b"List-Unsubscribe=One-Click")
        .expect("POST");
    assert_eq!(status, 200);
    assert_eq!(count(&events(&mut conn), "unsubscribed"), 1);

    // Later mail to the address, in any case, is not sent.
    let delivered = e.peer.messages().len();
    enqueue(&mut conn, &[email_job("unsub-2", "TARO@Example.com")]);
    let evs = wait_for(&mut conn, WAIT, "suppressed", |e| {
        count(e, "suppressed") == 1
    });
    let sup = of_type(&evs, "suppressed")[0];
    assert_eq!(sup["job_id"], "unsub-2");
    assert_eq!(sup["reason"], "unsubscribed");
    assert!(for_job(&evs, "sent", "unsub-2").is_empty());
    assert_eq!(
        e.peer.messages().len(),
        delivered,
        "nothing reached the peer"
    );

    // A tampered token unsubscribes no one.
    let token = token_of(&url);
    let mut chars: Vec<char> = token.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'x' { 'y' } else { 'x' };
    let bad: String = chars.into_iter().collect();
    let before = events(&mut conn).len();
    assert_eq!(http(s, "GET", &format!("/u/{bad}"), &[]).status, 404);
    let (status, _) = s
        .post(&format!("/u/{bad}"), &form, b"List-Unsubscribe=One-Click")
        .expect("POST");
    assert_eq!(status, 404);
    // A click token is not an unsubscribe token.
    let click = attr_values(&part(&msg, "html"), "href")
        .into_iter()
        .find(|h| h.contains("/t/c/"))
        .unwrap();
    let (status, _) = s
        .post(
            &format!("/u/{}", token_of(&click)),
            &form,
            b"List-Unsubscribe=One-Click",
        )
        .expect("POST");
    assert_eq!(status, 404);
    assert_eq!(events(&mut conn).len(), before);
}

#[test]
fn a_temporary_failure_is_retried_and_delivered_once() {
    let e = env();
    let mut conn = e.redis.conn();
    enqueue(&mut conn, &[email_job("temp-1", "tempfail-1@example.com")]);
    let _d = e.s.start();
    let evs = wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    let deferred = of_type(&evs, "deferred");
    assert_eq!(deferred.len(), 1, "{evs:?}");
    assert_eq!(deferred[0]["error"]["code"], "smtp_451");
    assert!(deferred[0]["retry_at"].is_string());
    let sent = of_type(&evs, "sent")[0];
    assert_eq!(sent["job_id"], "temp-1");
    assert_eq!(sent["attempt"], 2);
    let msgs = e.peer.wait_for(1, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(e.peer.messages().len(), 1, "exactly one copy stored");
    assert_eq!(msgs[0].rcpt_tos, ["tempfail-1@example.com"]);
    assert_eq!(count(&events(&mut conn), "failed"), 0);
}

#[test]
fn an_unknown_recipient_bounces_falls_back_and_stays_suppressed() {
    let e = env();
    let mut conn = e.redis.conn();
    let mut j = email_job("gone-1", "unknown-1@example.com");
    j["fallback"] = json!(["sms"]);
    enqueue(&mut conn, &[j]);
    let _d = e.s.start();
    let evs = wait_for(&mut conn, WAIT, "sent by sms", |e| {
        e.iter()
            .any(|x| x["type"] == "sent" && x["channel"] == "sms")
    });
    let bounced = of_type(&evs, "bounced");
    assert_eq!(bounced.len(), 1, "{evs:?}");
    assert_eq!(bounced[0]["job_id"], "gone-1");
    assert_eq!(bounced[0]["channel"], "email");
    assert_eq!(bounced[0]["error"]["code"], "smtp_550");
    let message = bounced[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("5.1.1"), "{message}");
    assert_eq!(
        suppression(&mut conn, "unknown-1@example.com").as_deref(),
        Some("bounced")
    );
    let fb = of_type(&evs, "fallback");
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0]["to_channel"], "sms");
    assert_eq!(fb[0]["error"]["code"], "smtp_550");
    assert_eq!(count(&evs, "deferred"), 0, "a hard bounce is not retried");
    assert_eq!(e.s.outbox_files("sms").len(), 1);

    // The next job to the address is not tried at all.
    let connections = e.peer.connections();
    enqueue(&mut conn, &[email_job("gone-2", "Unknown-1@example.com")]);
    let evs = wait_for(&mut conn, WAIT, "suppressed", |e| {
        count(e, "suppressed") == 1
    });
    let sup = of_type(&evs, "suppressed")[0];
    assert_eq!(sup["job_id"], "gone-2");
    assert_eq!(sup["reason"], "bounced");
    assert_eq!(count(&evs, "bounced"), 1);
    assert_eq!(
        e.peer.connections(),
        connections,
        "a suppressed address is not even tried"
    );

    // A policy rejection at DATA fails the job but is no reason to suppress the address.
    enqueue(&mut conn, &[email_job("spam-1", "reject-1@example.com")]);
    let evs = wait_for(&mut conn, WAIT, "failed", |e| count(e, "failed") == 1);
    let failed = of_type(&evs, "failed")[0];
    assert_eq!(failed["job_id"], "spam-1");
    assert_eq!(failed["error"]["code"], "smtp_554");
    assert_eq!(count(&evs, "bounced"), 1);
    assert_eq!(suppression(&mut conn, "reject-1@example.com"), None);
    assert!(e.peer.messages().is_empty(), "the peer stored nothing");
}

#[test]
fn jobs_wait_out_a_relay_outage_and_are_each_delivered_once() {
    let mut e = env();
    let mut conn = e.redis.conn();
    let _d = e.s.start();
    // A connection in the pool before the outage, dead after it.
    send_one(&e, &mut conn, "warm-1");
    e.peer.stop();
    let n = 20;
    enqueue(&mut conn, &jobs_to("down", "user", n));
    let evs = wait_for(&mut conn, WAIT, "deferrals", |e| count(e, "deferred") >= 5);
    let codes: HashSet<&str> = of_type(&evs, "deferred")
        .iter()
        .filter_map(|d| d["error"]["code"].as_str())
        .collect();
    assert!(codes.iter().all(|c| c.starts_with("smtp_")), "{codes:?}");
    assert_eq!(count(&evs, "failed"), 0);
    e.peer.restart();
    let evs = wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") == n + 1);
    let terminal = terminal_by_job(&evs);
    for i in 0..n {
        assert_eq!(
            terminal.get(&format!("down-{i}")).map(Vec::as_slice),
            Some(&["sent".to_owned()][..]),
            "down-{i}"
        );
    }
    let msgs = e.peer.wait_for(n + 1, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let msgs_after = e.peer.messages();
    assert_eq!(msgs_after.len(), msgs.len());
    assert_eq!(msgs_after.len(), n + 1, "the warm-up plus each job once");
    let ids: HashSet<String> = msgs_after[1..]
        .iter()
        .map(|m| parse(&m.raw).message_id().expect("Message-ID").to_owned())
        .collect();
    assert_eq!(ids.len(), n, "distinct Message-IDs");
    for i in 0..n {
        assert!(
            ids.contains(&format!("down-{i}@example.com")),
            "down-{i} arrived"
        );
    }
}

#[test]
fn authenticated_delivery_stays_within_the_pool() {
    let e = env_with(
        SmtpPeer::start_with_auth("tayori", "pw"),
        "username = \"tayori\"\npassword = \"pw\"",
    );
    let mut conn = e.redis.conn();
    let n = 30;
    let msgs = deliver_all(&e, &mut conn, "auth", n);
    assert!(
        msgs.iter()
            .all(|m| m.auth_user.as_deref() == Some("tayori")),
        "every message went over an authenticated session"
    );
    let connections = e.peer.connections();
    assert!(
        (1..=4).contains(&connections),
        "at most pool_size = 4 connections, got {connections}"
    );
}

#[test]
fn a_refused_login_pauses_the_channel_instead_of_failing_jobs() {
    let e = env_with(
        SmtpPeer::start_with_auth("tayori", "pw"),
        "username = \"tayori\"\npassword = \"wrong\"",
    );
    let mut conn = e.redis.conn();
    let jobs: Vec<Value> = (0..3)
        .map(|i| email_job(&format!("badauth-{i}"), &format!("member{i}@example.com")))
        .collect();
    enqueue(&mut conn, &jobs);
    let _d = e.s.start();
    e.s.wait_http();
    let evs = wait_for(&mut conn, WAIT, "deferred", |e| count(e, "deferred") >= 1);
    let deferred = of_type(&evs, "deferred");
    assert_eq!(deferred[0]["error"]["code"], "smtp_auth");
    assert!(e.s.metric("tayori_channel_paused{channel=\"email\"}") == 1.0);
    std::thread::sleep(Duration::from_millis(1000));
    let evs = events(&mut conn);
    assert_eq!(count(&evs, "failed"), 0, "{evs:?}");
    assert_eq!(count(&evs, "sent"), 0, "{evs:?}");
    assert_eq!(count(&evs, "bounced"), 0, "{evs:?}");
    assert!(e.peer.messages().is_empty(), "nothing stored");
}

/// `tayori bounce` with `input` on stdin: (exit code, stderr).
fn pipe_bounce(s: &Setup, input: &[u8]) -> (i32, String) {
    let mut child = s
        .tayori()
        .arg("bounce")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tayori bounce");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("channels/tests/fixtures/dsn")
            .join(name),
    )
    .expect("DSN fixture")
}

/// A hard (5.1.1) Postfix DSN for mail sent with return path `verp` to `recipient`.
fn hard_dsn(verp: &str, recipient: &str) -> String {
    fixture("postfix_user_unknown.eml")
        .replace("bounces+7370-c1001@example.com", verp)
        .replace("nosuchuser@example.net", recipient)
}

/// Carrier addresses issued before RFC 5322 was enforced (issue 21) go out quoted
/// on the listed domains (docomo.ne.jp and ezweb.ne.jp by default) and fail as
/// `invalid_address` elsewhere; a bounce naming the quoted form, as the relay
/// reports it, suppresses the bare address the CRM sends to.
#[test]
fn a_carriers_legacy_address_goes_out_quoted_and_its_bounce_suppresses_it() {
    let e = env();
    let s = &e.s;
    let mut conn = e.redis.conn();
    enqueue(
        &mut conn,
        &[
            email_job("legacy-1", "taro..yamada@docomo.ne.jp"),
            email_job("legacy-2", "hanako.@ezweb.ne.jp"),
            email_job("strict-1", "taro..yamada@example.com"),
        ],
    );
    let _d = s.start();
    s.wait_http();
    let evs = wait_for(&mut conn, WAIT, "two sent, one failed", |e| {
        count(e, "sent") == 2 && count(e, "failed") == 1
    });
    let failed = for_job(&evs, "failed", "strict-1");
    assert_eq!(failed.len(), 1, "{evs:?}");
    assert_eq!(failed[0]["error"]["code"], "invalid_address", "{evs:?}");
    let msgs = e.peer.wait_for(2, WAIT);
    for (rcpt, to) in [
        (
            "TO:<\"taro..yamada\"@docomo.ne.jp>",
            "<\"taro..yamada\"@docomo.ne.jp>",
        ),
        ("TO:<\"hanako.\"@ezweb.ne.jp>", "<\"hanako.\"@ezweb.ne.jp>"),
    ] {
        let m = msgs
            .iter()
            .find(|m| m.rcpt_args == [rcpt])
            .unwrap_or_else(|| {
                panic!(
                    "no RCPT {rcpt} in {:?}",
                    msgs.iter().map(|m| &m.rcpt_args).collect::<Vec<_>>()
                )
            });
        let header = raw_header(&parse(&m.raw), "To");
        assert!(header.contains(to), "To: {header}");
    }
    let taro = msgs
        .iter()
        .find(|m| m.rcpt_tos[0].starts_with("taro"))
        .unwrap();

    // The relay bounces it, naming the address as it was sent.
    let dsn = hard_dsn(&taro.mail_from, "\"taro..yamada\"@docomo.ne.jp");
    let (code, stderr) = pipe_bounce(s, dsn.as_bytes());
    assert_eq!(code, 0, "{stderr}");
    let evs = wait_for(&mut conn, WAIT, "bounced", |e| count(e, "bounced") == 1);
    assert_eq!(for_job(&evs, "bounced", "legacy-1").len(), 1, "{evs:?}");
    assert_eq!(
        suppression(&mut conn, "taro..yamada@docomo.ne.jp").as_deref(),
        Some("bounced")
    );
    // The CRM's next job to the bare address is suppressed.
    enqueue(
        &mut conn,
        &[email_job("legacy-3", "taro..yamada@docomo.ne.jp")],
    );
    let evs = wait_for(&mut conn, WAIT, "suppressed", |e| {
        !for_job(e, "suppressed", "legacy-3").is_empty()
    });
    assert!(for_job(&evs, "sent", "legacy-3").is_empty(), "{evs:?}");
}

/// An ARF feedback report (`channels/tests/fixtures/arf`) about the message sent
/// with return path `verp` to `recipient`, of `feedback_type`.
fn arf(verp: &str, recipient: &str, feedback_type: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("channels/tests/fixtures/arf/abuse_rfc822.eml"),
    )
    .expect("ARF fixture")
    .replace("bounces+7370-c1001@example.com", verp)
    .replace("taro@example.net", recipient)
    .replace(
        "Feedback-Type: abuse",
        &format!("Feedback-Type: {feedback_type}"),
    )
}

/// A complaint (issue 21) through the bounce pipe: one `complained` event with its
/// feedback type, the address suppressed, the report's complaint rate; a repeat,
/// a forgery naming another address, and a `not-spam` report record nothing.
#[test]
fn a_complaint_is_recorded_once_suppresses_the_address_and_shows_in_the_report() {
    let e = env();
    let s = &e.s;
    let mut conn = e.redis.conn();
    let _d = s.start();
    s.wait_http();
    let taro = send_one(&e, &mut conn, "fbl-1");
    let hanako = {
        let before = e.peer.messages().len();
        enqueue(&mut conn, &[email_job("fbl-2", "hanako@example.com")]);
        e.peer.wait_for(before + 1, WAIT).pop().unwrap()
    };
    wait_for(&mut conn, WAIT, "both sent", |e| count(e, "sent") == 2);

    // A not-spam report, and a forgery: taro's token naming hanako.
    for raw in [
        arf(&taro.mail_from, "taro@example.com", "not-spam"),
        arf(&taro.mail_from, "hanako@example.com", "abuse"),
    ] {
        let (code, stderr) = pipe_bounce(s, raw.as_bytes());
        assert_eq!(code, 0, "{stderr}");
    }
    assert_eq!(count(&events(&mut conn), "complained"), 0);
    assert_eq!(suppression(&mut conn, "hanako@example.com"), None);

    // taro's provider reports his complaint, twice.
    let report = arf(&taro.mail_from, "taro@example.com", "abuse");
    for _ in 0..2 {
        let (code, stderr) = pipe_bounce(s, report.as_bytes());
        assert_eq!(code, 0, "{stderr}");
    }
    let evs = events(&mut conn);
    let complained = of_type(&evs, "complained");
    assert_eq!(complained.len(), 1, "{evs:?}");
    assert_eq!(complained[0]["job_id"], "fbl-1");
    assert_eq!(complained[0]["feedback_type"], "abuse");
    assert_eq!(complained[0]["address"], "taro@example.com");
    assert_eq!(
        suppression(&mut conn, "taro@example.com").as_deref(),
        Some("complained")
    );
    // Over HTTP too: hanako's, from her own token.
    let body = arf(&hanako.mail_from, "hanako@example.com", "fraud");
    let resp = s
        .post("/webhooks/bounce", &[], body.as_bytes())
        .expect("POST /webhooks/bounce");
    assert_eq!(resp.0, 200, "{}", resp.1);
    assert!(resp.1.contains("\"complained\":1"), "{}", resp.1);

    // The campaign report: 2 complaints of 2 sent.
    let out = s
        .tayori()
        .args(["report", "--campaign", "test", "--json"])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["channels"]["email"]["counts"]["complained"], 2, "{r}");
    assert_eq!(r["channels"]["email"]["rates"]["complained"], 1.0, "{r}");
    // Counted for the complaint-rate alert by the daemon's profile updater, which
    // reads every event once, the pipe's too.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, body) = s.get("/metrics").expect("GET /metrics");
        if body.contains("tayori_complaints_total{channel=\"email\"} 2\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The next job to taro is suppressed.
    enqueue(&mut conn, &[email_job("fbl-3", "taro@example.com")]);
    wait_for(&mut conn, WAIT, "suppressed", |e| {
        !for_job(e, "suppressed", "fbl-3").is_empty()
    });
}

/// Rotating `http.tracking_secret` (issue 21): with the old secret in
/// `previous_tracking_secrets` a link sent before the rotation still redirects;
/// once it is removed from the list, the link is a 404, never a redirect.
#[test]
fn a_link_sent_before_a_secret_rotation_keeps_working_until_the_old_secret_goes() {
    let e = env();
    let s = &e.s;
    let mut conn = e.redis.conn();
    let click_url = {
        let _d = s.start();
        s.wait_http();
        let got = send_one(&e, &mut conn, "rot-1");
        let html = part(&parse(&got.raw), "html");
        attr_values(&html, "href")
            .into_iter()
            .find(|h| h.contains("/t/c/"))
            .expect("a tracked link")
    };
    let config = std::fs::read_to_string(&s.config).unwrap();
    let old = format!("tracking_secret = \"{TRACKING_SECRET}\"");
    assert!(config.contains(&old));
    let rotate = |previous: &str| {
        let new = format!(
            "tracking_secret = \"a-brand-new-secret-0123456789\"\nprevious_tracking_secrets = [{previous}]"
        );
        std::fs::write(&s.config, config.replace(&old, &new)).unwrap();
    };
    let click = || {
        http(
            s,
            "GET",
            &path_of(s, &click_url),
            &[("User-Agent", BROWSER)],
        )
    };
    rotate(&format!("\"{TRACKING_SECRET}\""));
    {
        let _d = s.start();
        s.wait_http();
        let r = click();
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location"), Some("https://shop.example.com/p/1"));
    }
    rotate("");
    let _d = s.start();
    s.wait_http();
    let r = click();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("location"), None);
}

/// Apple Mail Privacy Protection (issue 21): an open fetched by Apple's image
/// proxy — its bare `Mozilla/5.0` user agent, or an address in 17.0.0.0/8 that a
/// trusted reverse proxy forwarded — is `machine_open: true, proxy: "apple"`;
/// the phone's own open stays human. Profiles learn only from the human one and
/// the report counts machine opens apart.
#[test]
fn an_apple_proxy_open_is_a_machine_open_and_teaches_the_profile_nothing() {
    let peer = SmtpPeer::start();
    let e = env_with(peer, "");
    // The test's own requests come from 127.0.0.1: let it play the reverse proxy.
    let text = std::fs::read_to_string(&e.s.config).unwrap();
    let old = format!("tracking_secret = \"{TRACKING_SECRET}\"");
    std::fs::write(
        &e.s.config,
        text.replace(&old, &format!("{old}\ntrusted_proxies = [\"127.0.0.1\"]")),
    )
    .unwrap();
    let s = &e.s;
    let mut conn = e.redis.conn();
    let _d = s.start();
    s.wait_http();
    let got = send_one(&e, &mut conn, "mpp-1");
    let html = part(&parse(&got.raw), "html");
    let pixel = attr_values(&html, "src")
        .into_iter()
        .find(|h| h.contains("/t/o/"))
        .expect("the pixel");
    // Past the prefetch window, so the phone's open is not a suspected bot.
    let sent_at = sealer()
        .open(Purpose::Open, token_of(&pixel))
        .unwrap()
        .sent_at;
    while now_secs() - sent_at < 11 {
        std::thread::sleep(Duration::from_millis(200));
    }
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";
    let path = path_of(s, &pixel);
    assert_eq!(
        http(s, "GET", &path, &[("User-Agent", "Mozilla/5.0")]).status,
        200
    );
    let by_address = [("User-Agent", IPHONE), ("X-Forwarded-For", "17.58.1.2")];
    assert_eq!(http(s, "GET", &path, &by_address).status, 200);
    assert_eq!(http(s, "GET", &path, &[("User-Agent", IPHONE)]).status, 200);
    let evs = wait_for(&mut conn, WAIT, "two opens", |e| count(e, "opened") == 2);
    let opens = of_type(&evs, "opened");
    // The proxy's two fetches are one machine open (the same message, window and verdict).
    assert_eq!(opens[0]["machine_open"], true, "{opens:?}");
    assert_eq!(opens[0]["proxy"], "apple", "{opens:?}");
    assert_eq!(opens[1]["machine_open"], false, "{opens:?}");
    assert!(opens[1].get("proxy").is_none(), "{opens:?}");

    // The profile, once the updater has applied every event: one send, one
    // reaction (the phone's), equal weights (they are seconds apart).
    let results = "t:{0}:results";
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(results)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(&mut conn)
            .unwrap();
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(results)
            .query(&mut conn)
            .unwrap();
        let done = groups.groups.iter().any(|g| {
            g.name == "tayori-profiles"
                && g.pending == 0
                && last
                    .ids
                    .first()
                    .is_some_and(|l| l.id == g.last_delivered_id)
        });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the profile updater lags"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let fields: std::collections::HashMap<String, f64> = redis::cmd("HGETALL")
        .arg("t:{0}:profile:C-mpp-1")
        .query(&mut conn)
        .unwrap();
    let (sent, reacted) = (fields["s:email"], fields["r:email"]);
    assert!(
        (reacted / sent - 1.0).abs() < 1e-3,
        "sent {sent}, reacted {reacted}: {fields:?}"
    );

    let out = s
        .tayori()
        .args(["report", "--campaign", "test", "--json"])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["channels"]["email"]["counts"]["opened"], 1, "{r}");
    assert_eq!(r["channels"]["email"]["machine_opens"], 1, "{r}");
}

/// Too long to ride in the return path, and not a UUID (which rides packed).
const LONG_ID: &str = "order-20261208-customer-0000123456";

#[test]
fn bounce_reports_map_back_to_their_jobs_and_forgeries_do_not() {
    let e = env();
    let s = &e.s;
    let mut conn = e.redis.conn();
    let _d = s.start();
    s.wait_http();
    let taro = send_one(&e, &mut conn, "dsn-1");
    enqueue(
        &mut conn,
        &[
            email_job("dsn-2", "hanako@example.com"),
            // Too long for the job id to ride in the return path itself.
            email_job(LONG_ID, "jiro@example.com"),
        ],
    );
    wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 3);
    let msgs = e.peer.wait_for(3, WAIT);
    let verp_of = |rcpt: &str| {
        msgs.iter()
            .find(|m| m.rcpt_tos == [rcpt])
            .map(|m| m.mail_from.clone())
            .unwrap()
    };
    assert!(taro.mail_from.starts_with("bounces+"));

    // A hard bounce through the MTA pipe.
    let dsn = hard_dsn(&taro.mail_from, "taro@example.com");
    let before = events(&mut conn).len();
    let (code, stderr) = pipe_bounce(s, dsn.as_bytes());
    assert_eq!(code, 0, "{stderr}");
    let evs = events(&mut conn);
    assert_eq!(evs.len(), before + 1, "{stderr}");
    let bounced = evs.last().unwrap();
    assert_eq!(bounced["type"], "bounced");
    assert_eq!(bounced["job_id"], "dsn-1");
    assert_eq!(bounced["channel"], "email");
    assert_eq!(bounced["error"]["code"], "dsn_5.1.1");
    assert_eq!(
        suppression(&mut conn, "taro@example.com").as_deref(),
        Some("bounced")
    );
    // The MTA delivers the same report again: nothing new.
    let (code, stderr) = pipe_bounce(s, dsn.as_bytes());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(events(&mut conn).len(), before + 1);

    // A forged report naming someone else with our token: ignored.
    let forged = hard_dsn(&taro.mail_from, "someone-else@example.com");
    let (code, stderr) = pipe_bounce(s, forged.as_bytes());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(events(&mut conn).len(), before + 1);
    assert_eq!(suppression(&mut conn, "someone-else@example.com"), None);

    // A delay notice: deferred, nothing suppressed.
    let soft = fixture("postfix_delayed.eml")
        .replace(
            "bounces+7370-d2001@example.com",
            &verp_of("hanako@example.com"),
        )
        .replace("slow@example.org", "hanako@example.com");
    let (code, stderr) = pipe_bounce(s, soft.as_bytes());
    assert_eq!(code, 0, "{stderr}");
    let evs = events(&mut conn);
    assert_eq!(evs.len(), before + 2);
    let deferred = evs.last().unwrap();
    assert_eq!(deferred["type"], "deferred");
    assert_eq!(deferred["job_id"], "dsn-2");
    assert_eq!(deferred["error"]["code"], "dsn_4.4.1");
    assert_eq!(suppression(&mut conn, "hanako@example.com"), None);

    // Not a DSN at all.
    let (code, _) = pipe_bounce(s, fixture("not_a_bounce.eml").as_bytes());
    assert_eq!(code, 65);
    assert_eq!(events(&mut conn).len(), before + 2);

    // The same over HTTP, for MTAs that post; the long id's return path carries a
    // stored token instead, within the 64 bytes a local part may have.
    let jiro_verp = verp_of("jiro@example.com");
    let local = jiro_verp.split('@').next().unwrap();
    assert!(
        local.len() <= 64 && local.starts_with("bounces+b"),
        "{jiro_verp}"
    );
    // Kept as a field of a bucket hash (`P:verps:<bucket>`), not a key of its own.
    let token = local.trim_start_matches("bounces+");
    let bucket_key = format!("t:verps:{}", &token[1..9]);
    let kind: String = redis::cmd("TYPE")
        .arg(&bucket_key)
        .query(&mut conn)
        .unwrap();
    assert_eq!(kind, "hash", "{bucket_key}");
    let forged = hard_dsn(&jiro_verp, "someone-else@example.com");
    let (status, body) = s
        .post(
            "/webhooks/bounce",
            &[("Content-Type", "message/rfc822")],
            forged.as_bytes(),
        )
        .expect("POST /webhooks/bounce");
    assert_eq!(
        (status, body.contains("\"unmatched\":1")),
        (200, true),
        "{body}"
    );
    let dsn3 = hard_dsn(&jiro_verp.to_uppercase(), "jiro@example.com");
    let (status, body) = s
        .post(
            "/webhooks/bounce",
            &[("Content-Type", "message/rfc822")],
            dsn3.as_bytes(),
        )
        .expect("POST /webhooks/bounce");
    assert_eq!(status, 200, "{body}");
    let summary: Value = serde_json::from_str(&body).expect("a JSON summary");
    assert_eq!(summary["bounced"], 1, "{summary}");
    let evs = events(&mut conn);
    let last = evs.last().unwrap();
    assert_eq!(last["type"], "bounced");
    assert_eq!(last["job_id"], LONG_ID);
    assert_eq!(
        suppression(&mut conn, "jiro@example.com").as_deref(),
        Some("bounced")
    );

    // A stored token of the form before buckets (`s{tag}` → `P:verp:<token>`),
    // written before an upgrade, still resolves while it is kept; its tag still
    // binds the recipient.
    let old_id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let old_token = sealer().stored_verp_token(old_id, "saburo@example.com");
    let _: () = redis::cmd("SET")
        .arg(format!("t:verp:{old_token}"))
        .arg(old_id)
        .arg("EX")
        .arg(600)
        .query(&mut conn)
        .unwrap();
    let old_path = format!("bounces+{old_token}@example.com");
    for (rcpt, bounced) in [("someone-else@example.com", 0), ("saburo@example.com", 1)] {
        let dsn = hard_dsn(&old_path, rcpt);
        let (status, body) = s
            .post(
                "/webhooks/bounce",
                &[("Content-Type", "message/rfc822")],
                dsn.as_bytes(),
            )
            .expect("POST /webhooks/bounce");
        assert_eq!(status, 200, "{body}");
        let summary: Value = serde_json::from_str(&body).expect("a JSON summary");
        assert_eq!(summary["bounced"], bounced, "{rcpt}: {summary}");
    }
    let evs = events(&mut conn);
    assert_eq!(evs.last().unwrap()["job_id"], old_id);
    let (status, _) = s
        .post(
            "/webhooks/bounce",
            &[],
            fixture("not_a_bounce.eml").as_bytes(),
        )
        .expect("POST");
    assert_eq!(status, 422);
}

#[test]
fn a_marketing_template_without_an_unsubscribe_link_is_warned_about() {
    let e = env();
    let templates = tempfile::tempdir().expect("tempdir");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
    for name in ["spring_sale", "welcome"] {
        let to = templates.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(src.join(name)).unwrap().flatten() {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    // A copy of spring_sale without its unsubscribe lines.
    let nounsub = templates.path().join("nounsub");
    std::fs::create_dir_all(&nounsub).unwrap();
    for f in std::fs::read_dir(src.join("spring_sale"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(f.path()).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| !l.contains("unsubscribe_url"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(nounsub.join(f.file_name()), kept).unwrap();
    }
    let templates_line = format!(
        "dir = \"{}\"",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/templates")
            .display()
    );
    let s = e.s.replace_config(
        &templates_line,
        &format!("dir = \"{}\"", templates.path().display()),
    );

    let mut j = email_job("render-1", "taro@example.com");
    j["template"] = json!("nounsub");
    let job_file = s.dir.path().join("job.json");
    std::fs::write(&job_file, j.to_string()).unwrap();
    let out = s.tayori().arg("render").arg(&job_file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning") && l.contains("unsubscribe"))
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("nounsub/email.html"))
            && warnings.iter().any(|w| w.contains("nounsub/email.txt")),
        "{stderr}"
    );
    assert!(
        stdout.contains("Subject:"),
        "the message is still shown: {stdout}"
    );

    // The same job on the original template: no such warning.
    j["template"] = json!("spring_sale");
    std::fs::write(&job_file, j.to_string()).unwrap();
    let out = s.tayori().arg("render").arg(&job_file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("unsubscribe"), "{stderr}");

    let out = s.tayori().arg("check-config").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning") && l.contains("unsubscribe"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("nounsub/email.html"))
            && lines.iter().any(|l| l.contains("nounsub/email.txt")),
        "{stdout}"
    );
    assert!(
        lines.iter().all(|l| l.contains("nounsub/")),
        "only the copy is warned about: {stdout}"
    );
}

/// Redis, a TLS peer and the email channel on `tls` (`starttls` | `tls`), trusting the
/// peer's throwaway CA when `trust` is set.
fn env_tls(mode: &'static str, tls: &str, trust: bool) -> Env {
    let peer = SmtpPeer::start_with_tls(mode);
    let redis = Redis::start();
    let key = tempfile::tempdir().expect("tempdir");
    let key_file = key.path().join("dkim.key");
    std::fs::write(&key_file, ed25519_test_key().0).expect("write the DKIM key");
    let ca = if trust {
        format!("ca_file = \"{}\"", peer.ca_pem().display())
    } else {
        String::new()
    };
    let channels = email_channels(peer.port, &key_file, &ca)
        .replace("tls = \"none\"", &format!("tls = \"{tls}\""));
    let s = setup(&redis, RETRY, &channels);
    Env {
        redis,
        peer,
        s,
        _key: key,
    }
}

#[test]
fn starttls_and_implicit_tls_deliver_to_a_relay_with_a_private_ca() {
    for (mode, tls) in [("starttls", "starttls"), ("implicit", "tls")] {
        let e = env_tls(mode, tls, true);
        let mut conn = e.redis.conn();
        let _d = e.s.start();
        let got = send_one(&e, &mut conn, &format!("tls-{mode}"));
        assert!(got.tls, "{mode}: the message came over TLS");
        assert_eq!(got.rcpt_tos, ["taro@example.com"]);
        let (_, pub_key) = ed25519_test_key();
        dkim_verify(&got.raw, "test", "example.com", &pub_key).expect("DKIM verifies");
    }
}

#[test]
fn a_relay_whose_certificate_cannot_be_verified_gets_no_mail() {
    let e = env_tls("starttls", "starttls", false);
    let mut conn = e.redis.conn();
    enqueue(&mut conn, &[email_job("tls-untrusted", "taro@example.com")]);
    let _d = e.s.start();
    let evs = wait_for(&mut conn, WAIT, "deferred", |e| count(e, "deferred") >= 1);
    let deferred = of_type(&evs, "deferred");
    assert_eq!(deferred[0]["error"]["code"], "smtp_tls", "{evs:?}");
    assert_eq!(count(&evs, "sent"), 0, "{evs:?}");
    assert!(
        e.peer.messages().is_empty(),
        "nothing sent, in clear or otherwise"
    );
}

/// Redis, `peer` and the email channel on `tls` (`none` | `starttls` | `tls`), with
/// `smtp_extra` in `[channels.email.smtp]`.
fn env_on(peer: SmtpPeer, tls: &str, smtp_extra: &str) -> Env {
    let redis = Redis::start();
    let key = tempfile::tempdir().expect("tempdir");
    let key_file = key.path().join("dkim.key");
    std::fs::write(&key_file, ed25519_test_key().0).expect("write the DKIM key");
    let channels = email_channels(peer.port, &key_file, smtp_extra)
        .replace("tls = \"none\"", &format!("tls = \"{tls}\""));
    let s = setup(&redis, RETRY, &channels);
    Env {
        redis,
        peer,
        s,
        _key: key,
    }
}

#[test]
fn messages_are_pipelined_over_starttls_and_auth() {
    let peer = SmtpPeer::start_custom(Some(("tayori", "pw")), Some("starttls"), &[]);
    let extra = format!(
        "ca_file = \"{}\"\nusername = \"tayori\"\npassword = \"pw\"",
        peer.ca_pem().display()
    );
    let e = env_on(peer, "starttls", &extra);
    let mut conn = e.redis.conn();
    let n = 12;
    let msgs = deliver_all(&e, &mut conn, "pipe", n);
    assert!(
        msgs.iter()
            .all(|m| m.tls && m.auth_user.as_deref() == Some("tayori")),
        "every message over TLS, logged in"
    );
    assert_eq!(
        e.peer.pipelined(),
        n as u64,
        "each MAIL came in one write with its RCPT and DATA"
    );
    let (_, pub_key) = ed25519_test_key();
    dkim_verify(&msgs[0].raw, "test", "example.com", &pub_key).expect("DKIM verifies");
}

#[test]
fn a_refused_recipient_in_a_pipeline_bounces_and_the_connection_carries_on() {
    let e = env();
    let mut conn = e.redis.conn();
    let _d = e.s.start();
    // One job at a time: all of them go over the one pooled connection.
    enqueue(&mut conn, &[email_job("gone-p", "unknown-p@example.com")]);
    let evs = wait_for(&mut conn, WAIT, "bounced", |e| count(e, "bounced") == 1);
    let bounced = of_type(&evs, "bounced")[0];
    assert_eq!(bounced["error"]["code"], "smtp_550");
    let message = bounced["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("RCPT TO") && message.contains("5.1.1"),
        "the refused command and the enhanced code: {message}"
    );
    send_one(&e, &mut conn, "after-bounce");
    // A refusal of the message itself (554 after its final dot) leaves the session usable too.
    enqueue(&mut conn, &[email_job("spam-p", "reject-p@example.com")]);
    let evs = wait_for(&mut conn, WAIT, "failed", |e| count(e, "failed") == 1);
    let failed = of_type(&evs, "failed")[0];
    assert_eq!(failed["error"]["code"], "smtp_554");
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("message: 554 5.7.1"));
    send_one(&e, &mut conn, "after-reject");
    let msgs = e.peer.messages();
    assert_eq!(msgs.len(), 2, "only the two good messages were stored");
    assert_eq!(msgs[0].rcpt_tos, ["taro@example.com"]);
    assert_eq!(
        e.peer.connections(),
        1,
        "the refusals did not cost the connection: it stayed in step"
    );
    assert_eq!(e.peer.pipelined(), 4);
}

#[test]
fn a_relay_without_pipelining_gets_one_command_at_a_time() {
    let e = env_with(SmtpPeer::start_custom(None, None, &["--no-pipelining"]), "");
    let mut conn = e.redis.conn();
    let _d = e.s.start();
    enqueue(&mut conn, &[email_job("gone-s", "unknown-s@example.com")]);
    let evs = wait_for(&mut conn, WAIT, "bounced", |e| count(e, "bounced") == 1);
    assert_eq!(of_type(&evs, "bounced")[0]["error"]["code"], "smtp_550");
    let got = send_one(&e, &mut conn, "stepwise-1");
    assert_eq!(got.rcpt_tos, ["taro@example.com"]);
    send_one(&e, &mut conn, "stepwise-2");
    assert_eq!(e.peer.messages().len(), 2);
    assert_eq!(
        e.peer.pipelined(),
        0,
        "no command was sent ahead of a reply"
    );
    assert_eq!(e.peer.connections(), 1);
}

#[test]
fn a_pooled_connection_the_relay_closed_is_replaced_and_the_job_delivered_once() {
    let e = env_with(
        SmtpPeer::start_custom(None, None, &["--close-idle-after", "1"]),
        "",
    );
    let mut conn = e.redis.conn();
    let _d = e.s.start();
    send_one(&e, &mut conn, "before-idle");
    // The relay drops the idle connection; the pool finds out only when it uses it
    // (it checks with NOOP only after 5 s of idleness).
    let deadline = std::time::Instant::now() + WAIT;
    while e.peer.closed() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the peer never closed the idle connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = send_one(&e, &mut conn, "after-idle");
    assert_eq!(got.rcpt_tos, ["taro@example.com"]);
    let evs = events(&mut conn);
    assert_eq!(
        count(&evs, "deferred"),
        0,
        "retried on a fresh connection within the send: {evs:?}"
    );
    let msgs = e.peer.messages();
    assert_eq!(msgs.len(), 2, "each job exactly once");
    let ids: HashSet<String> = msgs
        .iter()
        .map(|m| parse(&m.raw).message_id().expect("Message-ID").to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(e.peer.connections(), 2);
}
