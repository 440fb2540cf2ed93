//! `tayori report` on a campaign whose reactions are known, made as clients make
//! them: jobs on all four channels go out (email, LINE and DM on file transports, SMS
//! through the fake Twilio API), then the tracking links found in what was sent are
//! followed over HTTP with a browser's User-Agent (and some with curl's, which the
//! daemon flags as bots), an unsubscribe is posted, a bounce report is posted to
//! `/webhooks/bounce`, Twilio's status callbacks and an inbound STOP are posted
//! signed, and LINE's webhook brings a block and a reply. Every number of the JSON
//! report is checked against what was done (and the medians and hours against the
//! events' own times); the HTML report is opened in a real headless Chromium.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tayori::tracking::{Purpose, Sealer};
use tayori_testkit::line_api;
use tayori_testkit::sign::{line_signature, twilio_signature};
use tayori_testkit::twilio_api::{form_encode, TwilioApi};

const CAMPAIGN: &str = "spring26";
const WAIT: Duration = Duration::from_secs(30);
const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";
const CURL: &str = "curl/8.5.0";
const LINE_SECRET: &str = "test-channel-secret";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "test-auth-token";
const P1: &str = "https://shop.example.com/p/1";
const P2: &str = "https://shop.example.com/p/2";
const LINE_LINK: &str = "https://shop.example.com/sale?from=line";
const SMS_LINK: &str = "https://shop.example.com/sms-sale";
/// SMS recipients in E.164 (`default_region = "JP"`).
const PHONES: [(&str, &str); 3] = [
    ("090-1234-5678", "+819012345678"),
    ("080-1111-2222", "+818011112222"),
    ("070-1234-5678", "+817012345678"),
];

/// A finished test campaign: Redis, the daemon and the fake Twilio, kept alive.
struct Campaign {
    // Dropped in this order: the daemon before Redis.
    _daemon: Daemon,
    _api: TwilioApi,
    s: Setup,
    redis: Redis,
}

fn channels(api: &TwilioApi) -> String {
    format!(
        r#"
[channels.email]
transport = "file"
dir = "{{outbox}}/email"
from = "Example Shop <news@example.com>"
envelope_from = "bounces@example.com"
verp = true
rate = "1000/s"

[channels.line]
transport = "file"
dir = "{{outbox}}/line"
channel_secret = "{LINE_SECRET}"
rate = "1000/s"

[channels.sms]
provider = "twilio"
default_region = "JP"
rate = "1000/s"

[channels.sms.twilio]
api_base = "{base}"
account_sid = "{ACCOUNT_SID}"
auth_token = "{TWILIO_TOKEN}"
from = "+15005550006"
timeout = "2s"

[channels.dm]
transport = "file"
dir = "{{outbox}}/dm"
rate = "1000/s"
"#,
        base = api.base_url()
    )
}

fn email_job(id: &str, campaign: &str) -> Value {
    let mut j = job(id, "email");
    j["campaign"] = json!(campaign);
    j["to"]["email"] = json!(format!("{id}@example.com"));
    j["vars"]["items"] = json!([
        {"name": "化粧水", "url": P1},
        {"name": "乳液", "url": P2}
    ]);
    j
}

fn campaign_job(id: &str, channel: &str) -> Value {
    let mut j = job(id, channel);
    j["campaign"] = json!(CAMPAIGN);
    j
}

/// Sends the campaign and makes its reactions; returns once every one is recorded.
fn run_campaign() -> Campaign {
    let redis = Redis::start();
    let api = TwilioApi::start(ACCOUNT_SID, TWILIO_TOKEN);
    // Every hit recorded: the report counts repeat opens and clicks apart from unique ones.
    let s = setup(&redis, "", &channels(&api))
        .replace_config("[templates]", "repeat_window = \"0s\"\n\n[templates]");
    let mut conn = redis.conn();

    let mut jobs: Vec<Value> = (1..=5)
        .map(|i| email_job(&format!("e{i}"), CAMPAIGN))
        .collect();
    // A template variable missing: failed.
    let mut e6 = email_job("e6", CAMPAIGN);
    e6["vars"] = json!({"items": []});
    jobs.push(e6);
    // No email address: falls back to direct mail.
    let mut f1 = campaign_job("f1", "email");
    f1["to"].as_object_mut().unwrap().remove("email");
    f1["fallback"] = json!(["dm"]);
    jobs.push(f1);
    for i in 1..=3 {
        let mut l = campaign_job(&format!("l{i}"), "line");
        l["to"]["line_user_id"] = json!(format!("U{i:032x}"));
        jobs.push(l);
    }
    for (i, (phone, _)) in PHONES.iter().enumerate() {
        let mut sms = campaign_job(&format!("s{}", i + 1), "sms");
        sms["to"]["phone"] = json!(phone);
        sms["template"] = Value::Null;
        sms["content"] = json!({"sms": {"text": format!("春のセール {SMS_LINK}")}});
        jobs.push(sms);
    }
    // Another campaign on the same stream.
    jobs.push(email_job("o1", "autumn25"));
    enqueue(&mut conn, &jobs);
    let daemon = s.start();
    s.wait_http();
    let evs = wait_for(&mut conn, WAIT, "every job finished", |e| {
        count(e, "sent") == 13 && count(e, "failed") == 1
    });

    // Clicks within 10 s of sending are taken for link scanners' prefetches
    // (src/http/tracking.rs): react as people do, a little later.
    let last_sent = evs
        .iter()
        .filter(|e| e["type"] == "sent")
        .map(at_ms)
        .max()
        .unwrap();
    let ready_at = last_sent / 1000 + 11;
    while now_ms() / 1000 < ready_at {
        std::thread::sleep(Duration::from_millis(100));
    }

    // Email: the links of each message, as its recipient's mail client shows them.
    let mail = |id: &str| Mail::read(&s.outbox("email").join(format!("{id}.eml")));
    let (e1, e2, e3, e4, e5, o1) = (
        mail("e1"),
        mail("e2"),
        mail("e3"),
        mail("e4"),
        mail("e5"),
        mail("o1"),
    );
    for _ in 0..3 {
        assert_eq!(get(&s, &e1.pixel, BROWSER).0, 200);
    }
    get_redirect(&s, &e1.click(P1), BROWSER, P1);
    get_redirect(&s, &e1.click(P1), BROWSER, P1);
    assert_eq!(get(&s, &e2.pixel, BROWSER).0, 200);
    get_redirect(&s, &e2.click(P1), BROWSER, P1);
    get_redirect(&s, &e2.click(P2), BROWSER, P2);
    assert_eq!(get(&s, &e3.pixel, CURL).0, 200); // a script: suspected bot
    get_redirect(&s, &e4.click(P2), BROWSER, P2);
    get_redirect(&s, &e5.click(P1), CURL, P1); // a scanner: suspected bot
    let (status, _) = s
        .post(
            &e5.unsubscribe,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"List-Unsubscribe=One-Click",
        )
        .expect("POST the unsubscribe");
    assert_eq!(status, 200);
    assert_eq!(get(&s, &o1.pixel, BROWSER).0, 200);
    // The relay's bounce reports for e3 and for the other campaign's o1, to their
    // VERP return paths: these events carry the job but not the campaign.
    for id in ["e3", "o1"] {
        let address = format!("{id}@example.com");
        let verp = format!(
            "bounces+{}@example.com",
            Sealer::new(TRACKING_SECRET).verp_token(id, &address)
        );
        let dsn = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("channels/tests/fixtures/dsn/postfix_user_unknown.eml"),
        )
        .expect("DSN fixture")
        .replace("bounces+7370-c1001@example.com", &verp)
        .replace("nosuchuser@example.net", &address);
        let (status, body) = s
            .post(
                "/webhooks/bounce",
                &[("Content-Type", "message/rfc822")],
                dsn.as_bytes(),
            )
            .expect("POST /webhooks/bounce");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"bounced\":1"), "{body}");
    }

    // LINE: the tracked button of l1's message.
    let l1 = std::fs::read_to_string(s.outbox("line").join("l1.json")).expect("l1's LINE file");
    let token = token_after(&l1, "/t/c/").expect("a tracked LINE button");
    get_redirect(&s, &format!("/t/c/{token}"), BROWSER, LINE_LINK);
    // LINE's webhook: a block and a reply, which name a user but no job.
    let body = serde_json::to_vec(&json!({
        "destination": "Uf0000000000000000000000000000000",
        "events": [
            {"type": "unfollow", "mode": "active", "timestamp": now_ms(),
             "source": {"type": "user", "userId": format!("U{:032x}", 2)},
             "webhookEventId": "01JREPORTBLOCK000000000000", "deliveryContext": {"isRedelivery": false}},
            {"type": "message", "mode": "active", "timestamp": now_ms(),
             "source": {"type": "user", "userId": format!("U{:032x}", 3)},
             "webhookEventId": "01JREPORTMSG00000000000000", "deliveryContext": {"isRedelivery": false},
             "replyToken": "r", "message": {"type": "text", "id": "468789577898262530", "quoteToken": "q", "text": "ありがとう"}}
        ]
    }))
    .unwrap();
    let violations = line_api::webhook_violations(&serde_json::from_slice(&body).unwrap());
    assert!(violations.is_empty(), "{violations:?}");
    let (status, _) = s
        .post(
            "/webhooks/line",
            &[
                ("Content-Type", "application/json"),
                ("X-Line-Signature", &line_signature(LINE_SECRET, &body)),
            ],
            &body,
        )
        .expect("POST /webhooks/line");
    assert_eq!(status, 200);

    // SMS: Twilio reports s1 and s2 delivered and s3 undelivered; s1's recipient
    // follows the short link; s2's replies STOP.
    let messages = _api_messages(&api);
    let by_phone = |e164: &str| {
        messages
            .iter()
            .find(|(to, _, _, _)| to == e164)
            .cloned()
            .unwrap_or_else(|| panic!("no SMS to {e164}"))
    };
    for (i, status) in ["delivered", "delivered", "undelivered"].iter().enumerate() {
        let (to, sid, callback, _) = by_phone(PHONES[i].1);
        let mut params = vec![
            ("SmsSid", sid.as_str()),
            ("SmsStatus", status),
            ("MessageStatus", status),
            ("To", to.as_str()),
            ("MessageSid", sid.as_str()),
            ("AccountSid", ACCOUNT_SID),
            ("From", "+15005550006"),
            ("ApiVersion", "2010-04-01"),
        ];
        if *status == "undelivered" {
            params.push(("ErrorCode", "30003"));
        }
        assert_eq!(post_twilio(&s, &callback, &params), 200);
    }
    let (_, _, _, body) = by_phone(PHONES[0].1);
    let code = token_after(&body, "/s/").expect("a short link in the SMS");
    get_redirect(&s, &format!("/s/{code}"), BROWSER, SMS_LINK);
    let inbound = format!("http://127.0.0.1:{}/webhooks/twilio", s.http_port);
    let stop = [
        ("SmsMessageSid", "SM00000000000000000000000000000001"),
        ("SmsSid", "SM00000000000000000000000000000001"),
        ("SmsStatus", "received"),
        ("Body", "STOP"),
        ("To", "+15005550006"),
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("AccountSid", ACCOUNT_SID),
        ("From", PHONES[1].1),
        ("NumSegments", "1"),
        ("ApiVersion", "2010-04-01"),
    ];
    assert_eq!(post_twilio(&s, &inbound, &stop), 200);

    // 13 sent + 1 failed + 1 fallback, then 23 reactions and reports.
    let evs = wait_for(&mut conn, WAIT, "every reaction recorded", |e| {
        e.len() == 38
    });
    // The daemon judged the agents as intended.
    let bots: Vec<(&str, &str)> = evs
        .iter()
        .filter(|e| e["suspected_bot"] == true)
        .map(|e| (e["type"].as_str().unwrap(), e["job_id"].as_str().unwrap()))
        .collect();
    assert_eq!(bots, [("opened", "e3"), ("clicked", "e5")], "{evs:#?}");
    Campaign {
        _daemon: daemon,
        _api: api,
        s,
        redis,
    }
}

/// (To, sid, StatusCallback, Body) of every message Twilio accepted.
fn _api_messages(api: &TwilioApi) -> Vec<(String, String, String, String)> {
    api.messages()
        .iter()
        .map(|m| {
            (
                m.field("To").unwrap_or_default().to_owned(),
                m.sid().unwrap_or_default().to_owned(),
                m.field("StatusCallback").unwrap_or_default().to_owned(),
                m.field("Body").unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A sent email's tracking paths.
struct Mail {
    pixel: String,
    clicks: Vec<(String, String)>,
    unsubscribe: String,
}

impl Mail {
    fn read(path: &Path) -> Mail {
        let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let msg = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("a MIME message");
        let html = msg.body_html(0).expect("an HTML part").into_owned();
        let html = html_escape::decode_html_entities(&html).into_owned();
        let pixel = format!("/t/o/{}", token_after(&html, "/t/o/").expect("the pixel"));
        let sealer = Sealer::new(TRACKING_SECRET);
        let clicks = html
            .match_indices("/t/c/")
            .filter_map(|(i, _)| token_after(&html[i..], "/t/c/"))
            .map(|t| {
                let url = sealer
                    .open(Purpose::Click, &t)
                    .and_then(|t| t.url)
                    .expect("a click token of ours");
                (url, format!("/t/c/{t}"))
            })
            .collect();
        let list = msg
            .header_raw("List-Unsubscribe")
            .expect("List-Unsubscribe")
            .replace(['\r', '\n'], "");
        let unsubscribe = format!(
            "/u/{}",
            token_after(&list, "/u/").expect("an unsubscribe URL")
        );
        Mail {
            pixel,
            clicks,
            unsubscribe,
        }
    }

    /// The tracked path of the link to `url`.
    fn click(&self, url: &str) -> String {
        self.clicks
            .iter()
            .find(|(u, _)| u == url)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no link to {url}: {:?}", self.clicks))
    }
}

/// The token after the first `prefix` in `text` (URL-safe Base64 characters).
fn token_after(text: &str, prefix: &str) -> Option<String> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_owned())
}

/// A GET with a User-Agent: (status, Location).
fn get(s: &Setup, path: &str, agent: &str) -> (u16, Option<String>) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: {agent}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = raw.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_owned())
    });
    (status, location)
}

fn get_redirect(s: &Setup, path: &str, agent: &str, to: &str) {
    assert_eq!(
        get(s, path, agent),
        (302, Some(to.to_owned())),
        "GET {path}"
    );
}

/// POSTs a form to one of the daemon's Twilio URLs, signed as Twilio signs:
/// Base64(HMAC-SHA1(auth token, URL + each parameter's name and value, sorted)).
fn post_twilio(s: &Setup, url: &str, params: &[(&str, &str)]) -> u16 {
    let signature = twilio_signature(TWILIO_TOKEN, url, params);
    let path = url
        .strip_prefix(&format!("http://127.0.0.1:{}", s.http_port))
        .expect("a URL of the daemon");
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", "TwilioProxy/1.1"),
        ("X-Twilio-Signature", signature.as_str()),
    ];
    s.post(path, &headers, form_encode(params).as_bytes())
        .expect("the daemon answers")
        .0
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn at_ms(e: &Value) -> i64 {
    e["at"]
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .unwrap_or_else(|| panic!("no time: {e}"))
}

/// `tayori report` with `args`: (exit code, stdout, stderr).
fn report(s: &Setup, args: &[&str]) -> (i32, String, String) {
    let out = s
        .tayori()
        .arg("report")
        .args(args)
        .output()
        .expect("run tayori report");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report_json(s: &Setup, extra: &[&str]) -> Value {
    let mut args = vec!["--campaign", CAMPAIGN, "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = report(s, &args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// What the report should say about time and hours, worked out from the events
/// themselves: per channel (and "total"), the sorted waits from a job's `sent` to
/// its first human reaction, and the jobs that reacted per hour in Tokyo.
fn timing(evs: &[Value]) -> HashMap<String, (Vec<i64>, [u64; 24])> {
    let tokyo = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    let mut sent: HashMap<(String, String), i64> = HashMap::new();
    let mut first: HashMap<(String, String), i64> = HashMap::new();
    let mut hours: HashMap<(String, String), [bool; 24]> = HashMap::new();
    for e in evs {
        if e["campaign"] != CAMPAIGN {
            continue;
        }
        let key = (
            e["job_id"].as_str().unwrap().to_owned(),
            e["channel"].as_str().unwrap().to_owned(),
        );
        let at = at_ms(e);
        match e["type"].as_str().unwrap() {
            "sent" => {
                sent.entry(key).or_insert(at);
            }
            "opened" | "clicked" | "replied" if e["suspected_bot"] != true => {
                let f = first.entry(key.clone()).or_insert(at);
                *f = (*f).min(at);
                let hour = jiff::Timestamp::from_millisecond(at)
                    .unwrap()
                    .to_zoned(tokyo.clone())
                    .hour() as usize;
                hours.entry(key).or_insert([false; 24])[hour] = true;
            }
            _ => {}
        }
    }
    let mut out: HashMap<String, (Vec<i64>, [u64; 24])> = HashMap::new();
    for (key, at) in &first {
        let wait = (at - sent[key]).max(0);
        for ch in [key.1.as_str(), "total"] {
            out.entry(ch.to_owned()).or_default().0.push(wait);
        }
    }
    for (key, hs) in &hours {
        for ch in [key.1.as_str(), "total"] {
            let entry = out.entry(ch.to_owned()).or_default();
            for (h, on) in hs.iter().enumerate() {
                entry.1[h] += u64::from(*on);
            }
        }
    }
    for v in out.values_mut() {
        v.0.sort_unstable();
    }
    out
}

fn median_seconds(sorted: &[i64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2] as f64 / 1000.0),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2000.0),
    }
}

const COUNT_NAMES: [&str; 15] = [
    "sent",
    "delivered",
    "opened",
    "clicked",
    "replied",
    "bounced",
    "blocked",
    "unsubscribed",
    "complained",
    "failed",
    "suppressed",
    "fallback",
    "expired",
    "cancelled",
    "duplicate",
];

/// Expected counts by name (the rest 0).
fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = COUNT_NAMES.iter().map(|k| (k.to_string(), 0)).collect();
    for (k, v) in pairs {
        m.insert(k.to_string(), *v);
    }
    m
}

fn check_channel(
    r: &Value,
    name: &str,
    want: &BTreeMap<String, u64>,
    events: (u64, u64),
    bots: (u64, u64),
    links: &[(&str, u64, u64)],
    timing: &HashMap<String, (Vec<i64>, [u64; 24])>,
) {
    let c = if name == "total" {
        &r["total"]
    } else {
        &r["channels"][name]
    };
    let got: BTreeMap<String, u64> = serde_json::from_value(c["counts"].clone()).unwrap();
    assert_eq!(&got, want, "{name} counts");
    let sent = want["sent"];
    for k in [
        "delivered",
        "opened",
        "clicked",
        "replied",
        "bounced",
        "blocked",
        "unsubscribed",
        "complained",
        "failed",
    ] {
        let rate = &c["rates"][k];
        if sent == 0 {
            assert!(rate.is_null(), "{name} {k} rate: {rate}");
        } else {
            let expected = want[k] as f64 / sent as f64;
            let rate = rate.as_f64().unwrap_or_else(|| panic!("{name} {k} rate"));
            assert!(
                (rate - expected).abs() < 1e-12,
                "{name} {k}: {rate} vs {expected}"
            );
        }
    }
    assert_eq!(
        c["rates"].as_object().unwrap().len(),
        9,
        "{name}: {}",
        c["rates"]
    );
    assert_eq!(
        (
            c["events"]["opens"].as_u64(),
            c["events"]["clicks"].as_u64()
        ),
        (Some(events.0), Some(events.1)),
        "{name} events"
    );
    assert_eq!(c["events"]["replies"], 0, "{name}");
    assert_eq!(
        (
            c["suspected_bots"]["opens"].as_u64(),
            c["suspected_bots"]["clicks"].as_u64()
        ),
        (Some(bots.0), Some(bots.1)),
        "{name} bots"
    );
    let got_links: Vec<(String, u64, u64)> = c["top_links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["url"].as_str().unwrap().to_owned(),
                l["clickers"].as_u64().unwrap(),
                l["clicks"].as_u64().unwrap(),
            )
        })
        .collect();
    let want_links: Vec<(String, u64, u64)> = links
        .iter()
        .map(|(u, a, b)| (u.to_string(), *a, *b))
        .collect();
    assert_eq!(got_links, want_links, "{name} links");

    let (waits, hours) = timing.get(name).cloned().unwrap_or_default();
    let ttfr = &c["time_to_first_reaction"];
    assert_eq!(ttfr["jobs"], waits.len() as u64, "{name}: {ttfr}");
    match median_seconds(&waits) {
        None => assert!(ttfr["median_seconds"].is_null(), "{name}: {ttfr}"),
        Some(m) => {
            let got = ttfr["median_seconds"].as_f64().unwrap();
            assert!((got - m).abs() < 1e-9, "{name} median: {got} vs {m}");
            assert!(
                got >= 10.0,
                "{name}: reactions came after the 10 s wait: {got}"
            );
        }
    }
    let got_hours: Vec<u64> = serde_json::from_value(c["hours"].clone()).unwrap();
    assert_eq!(got_hours, hours.to_vec(), "{name} hours");
    let mut best: Vec<(u64, u64)> = hours
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(h, n)| (h as u64, *n))
        .collect();
    best.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    best.truncate(3);
    let got_best: Vec<(u64, u64)> = c["best_hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["hour"].as_u64().unwrap(), h["jobs"].as_u64().unwrap()))
        .collect();
    assert_eq!(got_best, best, "{name} best hours");
}

#[test]
fn a_campaign_report_counts_exactly_what_recipients_did() {
    let c = run_campaign();
    let s = &c.s;
    let evs = events(&mut c.redis.conn());
    let timing = timing(&evs);
    let r = report_json(s, &[]);

    assert_eq!(r["campaign"], CAMPAIGN);
    assert_eq!(r["timezone"], "Asia/Tokyo");
    assert_eq!(r["include_bots"], false);
    assert_eq!(r["stream"]["entries"], 38);
    assert_eq!(r["stream"]["unreadable"], 0);
    // Everything but the other campaign's sent, open and bounce, and the three
    // reactions without a job.
    assert_eq!(r["stream"]["events"], 38 - 3 - 3);
    // Its events: those naming it, and the bounce and SMS reports about its jobs.
    let jobs: Vec<&Value> = evs
        .iter()
        .filter(|e| e["campaign"] == CAMPAIGN)
        .map(|e| &e["job_id"])
        .collect();
    let campaign_times: Vec<i64> = evs
        .iter()
        .filter(|e| jobs.contains(&&e["job_id"]))
        .map(at_ms)
        .collect();
    assert_eq!(campaign_times.len(), 38 - 3 - 3);
    let first = jiff::Timestamp::from_millisecond(*campaign_times.iter().min().unwrap()).unwrap();
    let last = jiff::Timestamp::from_millisecond(*campaign_times.iter().max().unwrap()).unwrap();
    assert_eq!(r["first_event_at"], format!("{first:.3}"));
    assert_eq!(r["last_event_at"], format!("{last:.3}"));

    let email = counts(&[
        ("sent", 5),
        ("opened", 2),
        ("clicked", 3),
        ("bounced", 1),
        ("unsubscribed", 1),
        ("failed", 1),
        ("fallback", 1),
    ]);
    check_channel(
        &r,
        "email",
        &email,
        (4, 5),
        (1, 1),
        &[(P1, 2, 3), (P2, 2, 2)],
        &timing,
    );
    let line = counts(&[("sent", 3), ("clicked", 1)]);
    check_channel(
        &r,
        "line",
        &line,
        (0, 1),
        (0, 0),
        &[(LINE_LINK, 1, 1)],
        &timing,
    );
    let sms = counts(&[("sent", 3), ("delivered", 2), ("clicked", 1), ("failed", 1)]);
    check_channel(
        &r,
        "sms",
        &sms,
        (0, 1),
        (0, 0),
        &[(SMS_LINK, 1, 1)],
        &timing,
    );
    check_channel(
        &r,
        "dm",
        &counts(&[("sent", 1)]),
        (0, 0),
        (0, 0),
        &[],
        &timing,
    );
    let total = counts(&[
        ("sent", 12),
        ("delivered", 2),
        ("opened", 2),
        ("clicked", 5),
        ("bounced", 1),
        ("unsubscribed", 1),
        ("failed", 2),
        ("fallback", 1),
    ]);
    check_channel(
        &r,
        "total",
        &total,
        (4, 7),
        (1, 1),
        &[(P1, 2, 3), (P2, 2, 2), (LINE_LINK, 1, 1), (SMS_LINK, 1, 1)],
        &timing,
    );
    assert_eq!(timing["email"].0.len(), 3, "e1, e2 and e4 reacted");
    // The block, the LINE reply and the SMS STOP name no job.
    assert_eq!(
        r["unattributed"],
        json!({"events": 3, "by_channel": {
            "line": {"blocked": 1, "replied": 1},
            "sms": {"unsubscribed": 1}
        }})
    );

    // --include-bots counts e3's scripted open and e5's scanned click.
    let with_bots = report_json(s, &["--include-bots"]);
    assert_eq!(with_bots["include_bots"], true);
    let e = &with_bots["channels"]["email"];
    assert_eq!(e["counts"]["opened"], 3);
    assert_eq!(e["counts"]["clicked"], 4);
    assert_eq!(e["events"]["opens"], 5);
    assert_eq!(e["events"]["clicks"], 6);
    assert_eq!(e["suspected_bots"]["clicks"], 1);
    assert_eq!(
        e["top_links"][0],
        json!({"url": P1, "clickers": 3, "clicks": 4})
    );

    // The hours in another zone: the same jobs, shifted.
    let utc = report_json(s, &["--timezone", "UTC"]);
    let tokyo_hours: Vec<u64> = serde_json::from_value(r["total"]["hours"].clone()).unwrap();
    let utc_hours: Vec<u64> = serde_json::from_value(utc["total"]["hours"].clone()).unwrap();
    for h in 0..24 {
        assert_eq!(utc_hours[h], tokyo_hours[(h + 9) % 24], "hour {h} UTC");
    }

    // The table says the same.
    let (code, table, err) = report(s, &["--campaign", CAMPAIGN]);
    assert_eq!(code, 0, "{err}");
    let row = |metric: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(metric))
            .unwrap_or_else(|| panic!("no {metric} row:\n{table}"))
            .split_whitespace()
            .skip(1)
            .map(str::to_owned)
            .collect()
    };
    let header: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with(' '))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["email", "line", "sms", "dm", "total"], "{table}");
    assert_eq!(row("sent"), ["5", "3", "3", "1", "12"], "{table}");
    assert_eq!(
        row("clicked"),
        ["3", "60.0%", "1", "33.3%", "1", "33.3%", "0", "0.0%", "5", "41.7%"],
        "{table}"
    );
    assert!(
        table.contains(P1) && table.contains("best hours"),
        "{table}"
    );
    assert!(
        table.contains("line: blocked 1, replied 1; sms: unsubscribed 1"),
        "{table}"
    );

    // A campaign without events: said so, exit 1.
    let (code, _, err) = report(s, &["--campaign", "nosuch", "--json"]);
    assert_eq!(code, 1);
    assert!(err.contains("no events of campaign \"nosuch\""), "{err}");
    let (code, _, err) = report(s, &["--campaign", CAMPAIGN, "--timezone", "Mars/Olympus"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown time zone"), "{err}");
}

#[test]
fn without_redis_the_report_fails_clearly() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    drop(redis);
    let t = Instant::now();
    let (code, out, err) = report(&s, &["--campaign", CAMPAIGN]);
    assert_eq!(code, 2, "{out}{err}");
    // The cause and the key to fix.
    assert!(
        err.contains("Redis unreachable") && err.contains("redis.url"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(20));
}

/// The report reads with a connection of its own: it must honour the URL's
/// password and database like the daemon's. (The events here are written with
/// `XADD` in the daemon's shape; what matters is where they are.)
#[test]
fn the_report_authenticates_and_selects_the_database_of_the_url() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let mut conn = redis.conn();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("SELECT").arg(3).query::<()>(&mut conn).unwrap();
    for (kind, job) in [("sent", "a1"), ("sent", "a2"), ("failed", "a3")] {
        let event = json!({"type": kind, "event_id": format!("{job}/sms/1/{kind}"),
            "at": "2026-11-24T08:07:51.850Z", "job_id": job, "campaign": CAMPAIGN,
            "customer_id": "C1", "channel": "sms", "attempt": 1});
        redis::cmd("XADD")
            .arg("t:{0}:results")
            .arg("*")
            .arg("event")
            .arg(event.to_string())
            .query::<String>(&mut conn)
            .unwrap();
    }
    let url = format!("redis://:s3cret@127.0.0.1:{}/3", redis.port);
    let s = s.replace_config(&redis.url(), &url);
    let r = report_json(&s, &[]);
    assert_eq!(r["channels"]["sms"]["counts"]["sent"], 2);
    assert_eq!(r["channels"]["sms"]["counts"]["failed"], 1);
    assert_eq!(r["channels"]["sms"]["rates"]["failed"], 0.5);

    let s = s.replace_config(":s3cret@", ":wrong@");
    let (code, _, err) = report(&s, &["--campaign", CAMPAIGN]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("Redis auth: redis://") && err.contains("redis.password"),
        "{err}"
    );
    assert!(
        !err.contains("wrong"),
        "the password stays out of messages: {err}"
    );
}

/// Elements `<tag …>inner</tag>` of a serialized DOM whose opening tag has all of
/// `attrs`: (attributes, inner HTML). Enough for the page Tayori writes.
fn elements(dom: &str, tag: &str) -> Vec<(BTreeMap<String, String>, String)> {
    let open = format!("<{tag} ");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(end) = rest.find('>') else { break };
        let mut attrs = BTreeMap::new();
        let mut a = &rest[..end];
        while let Some(eq) = a.find("=\"") {
            let name = a[..eq].trim().to_owned();
            let v = &a[eq + 2..];
            let q = v.find('"').unwrap_or(v.len());
            attrs.insert(name, v[..q].to_owned());
            a = &v[(q + 1).min(v.len())..];
        }
        let body = &rest[end + 1..];
        let inner = body.find(&close).map(|j| &body[..j]).unwrap_or("");
        out.push((attrs, inner.to_owned()));
    }
    out
}

fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[test]
fn the_html_report_renders_in_chromium_and_its_charts_show_the_tables_numbers() {
    let chromium = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    assert!(
        !chromium.is_empty(),
        "chromium is not installed: the HTML report is checked in a real headless browser. \
         Run ./scripts/test.sh, which installs it, or apt-get install chromium"
    );
    let c = run_campaign();
    let s = &c.s;
    let page = s.dir.path().join("report.html");
    let (code, _, err) = report(
        s,
        &[
            "--campaign",
            CAMPAIGN,
            "--json",
            "--html",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = report_json(s, &[]);
    let html = std::fs::read_to_string(&page).expect("the page was written");
    // Self-contained: nothing to fetch, nothing to run.
    for banned in ["<script", "src=", "href=", "url(", "@import", "<link"] {
        assert!(!html.contains(banned), "the page has {banned:?}");
    }

    let profile = tempfile::tempdir().unwrap();
    let run_chromium = |args: &[String]| {
        let out = Command::new(&chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = format!("file://{}", page.display());
    let dom = run_chromium(&["--dump-dom".into(), url.clone()]);
    assert!(dom.contains("<svg"), "the DOM has the charts: {dom}");
    let shot = s.dir.path().join("report.png");
    run_chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1200,2400".into(),
        url,
    ]);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    // The table: every count of every column, as in the JSON.
    let mut table: BTreeMap<(String, String), u64> = BTreeMap::new();
    let start = dom
        .find("<table id=\"counts\">")
        .expect("the summary table");
    let counts_table = &dom[start..start + dom[start..].find("</table>").unwrap()];
    for (attrs, inner) in elements(counts_table, "td") {
        let (Some(ch), Some(m), Some(v)) = (
            attrs.get("data-channel"),
            attrs.get("data-metric"),
            attrs.get("data-value"),
        ) else {
            continue;
        };
        if !COUNT_NAMES.contains(&m.as_str()) {
            continue;
        }
        let v: u64 = v.parse().unwrap();
        let shown = text_of(&inner);
        assert!(
            shown.starts_with(&v.to_string()),
            "{ch} {m}: cell shows {shown:?}, value {v}"
        );
        table.insert((ch.clone(), m.clone()), v);
    }
    let columns = ["email", "line", "sms", "dm", "total"];
    assert_eq!(table.len(), columns.len() * COUNT_NAMES.len(), "{table:?}");
    for ch in columns {
        let json = if ch == "total" {
            &r["total"]
        } else {
            &r["channels"][ch]
        };
        for m in COUNT_NAMES {
            assert_eq!(
                Some(table[&(ch.to_owned(), m.to_owned())]),
                json["counts"][m].as_u64(),
                "{ch} {m}"
            );
        }
    }

    // The charts: one labelled bar per outcome and column, equal to the table.
    let bars: Vec<_> = elements(&dom, "g")
        .into_iter()
        .filter(|(a, _)| a.get("class").map(String::as_str) == Some("bar"))
        .collect();
    let mut charted = 0;
    let mut hours: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (attrs, inner) in &bars {
        let ch = &attrs["data-channel"];
        let value: u64 = attrs["data-value"].parse().unwrap();
        let labels: Vec<String> = elements(inner, "text")
            .into_iter()
            .filter(|(a, _)| a.get("class").map(String::as_str) == Some("value"))
            .map(|(_, t)| t)
            .collect();
        if let Some(m) = attrs.get("data-metric") {
            assert_eq!(labels, [value.to_string()], "{ch} {m} label");
            assert_eq!(
                value,
                table[&(ch.clone(), m.clone())],
                "{ch} {m}: chart vs table"
            );
            charted += 1;
        } else {
            let hour: usize = attrs["data-hour"].parse().unwrap();
            let expected: Vec<String> = if value > 0 {
                vec![value.to_string()]
            } else {
                vec![]
            };
            assert_eq!(labels, expected, "{ch} {hour}:00 label");
            let v = hours.entry(ch.clone()).or_insert_with(|| vec![0; 24]);
            v[hour] = value;
        }
    }
    assert_eq!(charted, columns.len() * 10, "10 outcomes per column");
    for ch in columns {
        let json = if ch == "total" {
            &r["total"]
        } else {
            &r["channels"][ch]
        };
        let want: Vec<u64> = serde_json::from_value(json["hours"].clone()).unwrap();
        if want.iter().any(|n| *n > 0) {
            assert_eq!(hours.get(ch), Some(&want), "{ch} hours chart");
        } else {
            assert_eq!(hours.get(ch), None, "{ch}: no reactions, no hours chart");
        }
    }

    // Top links, as in the JSON.
    let links: Vec<(String, String)> = elements(&dom, "tr")
        .into_iter()
        .filter_map(|(a, inner)| Some((a.get("data-url")?.clone(), text_of(&inner))))
        .collect();
    assert!(
        links.contains(&(P1.to_owned(), format!("{P1}23"))),
        "{links:?}"
    );
}
