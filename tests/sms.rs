//! SMS through Twilio: the channel against a server that plays Twilio's Messages
//! endpoint and checks every request against Twilio's official OpenAPI description
//! (`tayori_testkit::twilio_api`), and `POST /webhooks/twilio` (status callbacks and
//! inbound STOP/START replies) signed by Twilio's own helper library
//! (`tests/peers/twilio_sign.py`).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tayori::channel_id::ChannelId;
use tayori::tracking::{Purpose, Sealer, Tracked};
use tayori_testkit::twilio_api::{self, form_encode, form_escape, Reply, TwilioApi};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token";
const FROM: &str = "+15005550006";
/// `common::job`'s `090-1234-5678` in E.164 (`default_region = "JP"`).
const TO: &str = "+819012345678";
/// `080-1111-2222` in E.164.
const TO2: &str = "+818011122222";
/// `070-1234-5678` in E.164.
const TO3: &str = "+817012345678";
const WAIT: Duration = Duration::from_secs(30);

/// SMS on the test Twilio API (plus email on files, for fallbacks); fast retries.
fn sms_setup(redis: &Redis, api: &TwilioApi) -> Setup {
    let channels = format!(
        r#"
[channels.sms]
provider = "twilio"
default_region = "JP"
max_segments = 3
rate = "1000/s"

[channels.sms.twilio]
api_base = "{base}"
account_sid = "{ACCOUNT_SID}"
auth_token = "{TOKEN}"
from = "{FROM}"
timeout = "2s"

[channels.email]
transport = "file"
dir = "{{outbox}}/email"
from = "Example Shop <news@example.com>"
"#,
        base = api.base_url()
    );
    setup(
        redis,
        "[retry]\nmax_attempts = 4\nbase_delay = \"200ms\"\nmax_delay = \"400ms\"",
        &channels,
    )
}

/// Redis, the Twilio API and a running daemon with its HTTP server up.
fn started() -> (Redis, TwilioApi, Setup, Daemon) {
    let redis = Redis::start();
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    let s = sms_setup(&redis, &api);
    let d = s.start();
    s.wait_http();
    (redis, api, s, d)
}

fn sms_job(id: &str, phone: &str) -> Value {
    let mut j = job(id, "sms");
    j["to"]["phone"] = json!(phone);
    j
}

/// A job whose SMS text is given inline instead of the template.
fn text_job(id: &str, text: &str) -> Value {
    let mut j = job(id, "sms");
    j["template"] = Value::Null;
    j["content"] = json!({"sms": {"text": text}});
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

fn suppression(conn: &mut redis::Connection, address: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg("t:{0}:suppressed:sms")
        .arg(address)
        .query(conn)
        .expect("HGET")
}

/// Polls the suppression of `address` until it is `want` (or 5 s pass) and returns it.
fn wait_suppression(
    conn: &mut redis::Connection,
    address: &str,
    want: Option<&str>,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = suppression(conn, address);
        if got.as_deref() == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Percent-decoding of a query value (`+` is a space).
fn query_decode(value: &str) -> String {
    let pairs = twilio_api::form_decode(&format!("v={value}")).expect("a valid query value");
    pairs[0].1.clone()
}

/// `X-Twilio-Signature` for a request to `url` with this form body, computed by
/// Twilio's own `RequestValidator` (tests/peers/twilio_sign.py).
fn twilio_signature(token: &str, url: &str, body: &str) -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/twilio_sign.py");
    let mut child = Command::new(common::smtp::python())
        .arg(&script)
        .args(["--token", token, url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/peers/twilio_sign.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write the body to twilio_sign.py");
    let out = child.wait_with_output().expect("twilio_sign.py output");
    assert!(
        out.status.success(),
        "twilio_sign.py failed (is the twilio package in the venv? run ./scripts/python-env.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// The URL Twilio calls for a job's status callback (`http.public_url` of the setup).
fn callback_url(s: &Setup, job_id: &str) -> String {
    format!(
        "http://127.0.0.1:{}/webhooks/twilio?job={}",
        s.http_port,
        form_escape(job_id)
    )
}

/// The URL Twilio calls for an inbound message.
fn inbound_url(s: &Setup) -> String {
    format!("http://127.0.0.1:{}/webhooks/twilio", s.http_port)
}

/// POSTs a form to `url` on the daemon with an optional `X-Twilio-Signature`, as
/// Twilio does: (status, body).
fn post_twilio(s: &Setup, url: &str, body: &str, signature: Option<&str>) -> (u16, String) {
    let base = format!("http://127.0.0.1:{}", s.http_port);
    let path = url.strip_prefix(&base).expect("a URL of the daemon");
    let mut headers = vec![
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", "TwilioProxy/1.1"),
        (
            "I-Twilio-Idempotency-Token",
            "3b5f7a0c-1d2e-4f60-8a9b-0c1d2e3f4a5b",
        ),
    ];
    if let Some(sig) = signature {
        headers.push(("X-Twilio-Signature", sig));
    }
    s.post(path, &headers, body.as_bytes())
        .expect("the daemon answers HTTP")
}

/// Signs `params` for `url` and POSTs them: (status, body).
fn post_signed(s: &Setup, url: &str, params: &[(&str, &str)]) -> (u16, String) {
    let body = form_encode(params);
    let sig = twilio_signature(TOKEN, url, &body);
    post_twilio(s, url, &body, Some(&sig))
}

/// A status callback's parameters as Twilio sends them, plus `extra`.
fn status_params<'a>(
    sid: &'a str,
    status: &'a str,
    to: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", to),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", FROM),
        ("ApiVersion", "2010-04-01"),
    ];
    p.extend_from_slice(extra);
    p
}

/// An inbound SMS's parameters as Twilio sends them.
fn inbound_params<'a>(sid: &'a str, from: &'a str, body: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", sid),
        ("FromState", ""),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", body),
        ("FromCountry", "JP"),
        ("To", FROM),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
}

// ---------------------------------------------------------------------------------
// The fake Twilio itself: it accepts what the real one accepts and flags the rest, so
// an empty `violations()` in the tests below means something.

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn valid_form() -> Vec<(&'static str, String)> {
    vec![
        ("To", TO.to_owned()),
        ("From", FROM.to_owned()),
        ("Body", "山田 太郎様 春のセール開催中。".to_owned()),
        (
            "StatusCallback",
            "http://127.0.0.1:8080/webhooks/twilio?job=a%2Fb".to_owned(),
        ),
    ]
}

fn send_form(api: &TwilioApi, form: &[(&str, String)]) -> (u16, Value) {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(n, v)| (*n, v.as_str())).collect();
    api.post_raw(
        &api.messages_path(),
        &[
            ("Authorization", &basic(ACCOUNT_SID, TOKEN)),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form_encode(&pairs),
    )
}

#[test]
fn the_fake_twilio_accepts_a_valid_message_and_answers_as_the_spec_says() {
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    let (status, answer) = send_form(&api, &valid_form());
    assert_eq!(status, 201, "{answer}");
    api.assert_no_violations();
    // The answer has exactly the spec's properties, each of its type.
    let props = twilio_api::response_properties();
    let mut names: Vec<&String> = answer.as_object().unwrap().keys().collect();
    let mut spec_names: Vec<&String> = props.keys().collect();
    names.sort();
    spec_names.sort();
    assert_eq!(names, spec_names);
    let validator = twilio_api::schema::Validator::new(twilio_api::spec());
    for (name, schema) in props {
        if name == "sid" {
            continue; // its pattern `^(SM|MM)…` has a group: checked below instead
        }
        let v = validator.validate(schema, &answer[name], name);
        assert!(v.is_empty(), "{name}: {v:?}");
    }
    let sid = answer["sid"].as_str().unwrap();
    assert!(
        sid.len() == 34 && sid.starts_with("SM") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{sid}"
    );
    assert_eq!(answer["status"], "queued");
    assert_eq!(answer["num_segments"], "1");
    assert_eq!(answer["to"], TO);
    let recorded = &api.requests()[0];
    assert_eq!(recorded.sid(), Some(sid));
    assert_eq!(
        recorded.field("Body"),
        Some("山田 太郎様 春のセール開催中。")
    );
    assert_eq!(
        recorded.field("StatusCallback"),
        Some("http://127.0.0.1:8080/webhooks/twilio?job=a%2Fb")
    );

    // Also valid: a Messaging Service instead of From (or both), repeated MediaUrl,
    // typed optional parameters.
    let mut with_service = valid_form();
    with_service[1] = (
        "MessagingServiceSid",
        "MG0123456789abcdef0123456789abcdef".to_owned(),
    );
    with_service.push(("ValidityPeriod", "600".to_owned()));
    with_service.push(("SmartEncoded", "false".to_owned()));
    with_service.push(("ContentRetention", "discard".to_owned()));
    with_service.push(("MediaUrl", "https://example.com/a.png".to_owned()));
    with_service.push(("MediaUrl", "https://example.com/b.png".to_owned()));
    assert_eq!(send_form(&api, &with_service).0, 201);
    let mut both = valid_form();
    both.push((
        "MessagingServiceSid",
        "MG0123456789abcdef0123456789abcdef".to_owned(),
    ));
    assert_eq!(send_form(&api, &both).0, 201);
    api.assert_no_violations();
}

#[test]
fn the_fake_twilio_flags_every_request_the_real_one_would_refuse() {
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    type Edit = fn(&mut Vec<(&'static str, String)>);
    let cases: Vec<(&str, Edit, u64, &str)> = vec![
        ("no To", |f| f.retain(|(n, _)| *n != "To"), 21604, "To"),
        (
            "a national To",
            |f| f[0].1 = "09012345678".into(),
            21211,
            "To",
        ),
        (
            "no sender",
            |f| f.retain(|(n, _)| *n != "From"),
            21603,
            "From",
        ),
        (
            "no Body",
            |f| f.retain(|(n, _)| *n != "Body"),
            21602,
            "Body",
        ),
        (
            "a Body over 1600 characters",
            |f| f[2].1 = "a".repeat(1601),
            21617,
            "Body",
        ),
        (
            "an unknown parameter",
            |f| f.push(("Tags", "x".into())),
            21600,
            "Tags",
        ),
        (
            "a lower-case parameter name",
            |f| f.push(("status_callback", "https://example.com".into())),
            21600,
            "status_callback",
        ),
        (
            "an enum value the spec does not list",
            |f| f.push(("ContentRetention", "keep".into())),
            21600,
            "ContentRetention",
        ),
        (
            "a non-integer ValidityPeriod",
            |f| f.push(("ValidityPeriod", "10m".into())),
            21600,
            "ValidityPeriod",
        ),
        (
            "a non-boolean SmartEncoded",
            |f| f.push(("SmartEncoded", "yes".into())),
            21600,
            "SmartEncoded",
        ),
        (
            "a malformed MessagingServiceSid",
            |f| f.push(("MessagingServiceSid", "MG123".into())),
            21600,
            "MessagingServiceSid",
        ),
        (
            "a relative StatusCallback",
            |f| f[3].1 = "/webhooks/twilio".into(),
            21609,
            "StatusCallback",
        ),
        (
            "an underscore in the StatusCallback host",
            |f| f[3].1 = "https://my_host.example.com/cb".into(),
            21609,
            "StatusCallback",
        ),
        (
            "a repeated Body",
            |f| f.push(("Body", "again".into())),
            21600,
            "Body",
        ),
    ];
    for (what, edit, code, property) in cases {
        let mut form = valid_form();
        edit(&mut form);
        let before = api.requests().len();
        let (status, answer) = send_form(&api, &form);
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["code"], code, "{what}: {answer}");
        assert_eq!(answer["status"], 400, "{what}");
        assert!(answer["more_info"].as_str().is_some(), "{what}");
        let recorded = &api.requests()[before];
        assert!(
            recorded
                .violations
                .iter()
                .any(|v| v.starts_with(&format!("{property}:"))),
            "{what}: {:?}",
            recorded.violations
        );
    }

    // The request itself: path, content type and credentials.
    let body = form_encode(&[("To", TO), ("From", FROM), ("Body", "hi")]);
    let auth = basic(ACCOUNT_SID, TOKEN);
    let token_as_user = basic(TOKEN, TOKEN);
    let form_ct = ("Content-Type", "application/x-www-form-urlencoded");
    let other_account = "/2010-04-01/Accounts/ACffffffffffffffffffffffffffffffff/Messages.json";
    /// (what, path or "" for the right one, headers, body, expected status)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, String, u16);
    let refused: Vec<Case> = vec![
        (
            "a malformed account SID",
            "/2010-04-01/Accounts/AC123/Messages.json",
            vec![("Authorization", auth.as_str()), form_ct],
            body.clone(),
            400,
        ),
        (
            "another account in the path",
            other_account,
            vec![("Authorization", auth.as_str()), form_ct],
            body.clone(),
            400,
        ),
        (
            "JSON instead of a form",
            "",
            vec![
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            json!({"To": TO, "From": FROM, "Body": "hi"}).to_string(),
            400,
        ),
        ("no credentials", "", vec![form_ct], body.clone(), 401),
        (
            "the auth token as the user",
            "",
            vec![("Authorization", token_as_user.as_str()), form_ct],
            body.clone(),
            401,
        ),
        (
            "a bearer token",
            "",
            vec![("Authorization", "Bearer test-auth-token"), form_ct],
            body.clone(),
            401,
        ),
        (
            "a GET",
            "/2010-04-01/Messages.json",
            vec![],
            String::new(),
            404,
        ),
    ];
    for (what, path, headers, body, want) in refused {
        let path = if path.is_empty() {
            api.messages_path()
        } else {
            path.to_owned()
        };
        let before = api.requests().len();
        let (status, answer) = api.post_raw(&path, &headers, &body);
        assert_eq!(status, want, "{what}: {answer}");
        if want == 401 {
            assert_eq!(answer["code"], 20003, "{what}");
        }
        assert!(
            !api.requests()[before].violations.is_empty(),
            "{what} is a violation"
        );
    }
    // A wrong token is the account's problem, not the client's: 401 but no violation.
    let before = api.requests().len();
    let (status, answer) = api.post_raw(
        &api.messages_path(),
        &[("Authorization", &basic(ACCOUNT_SID, "rotated")), form_ct],
        &body,
    );
    assert_eq!((status, answer["code"].clone()), (401, json!(20003)));
    assert!(api.requests()[before].violations.is_empty());
    assert!(api.messages().is_empty(), "nothing refused was created");
}

#[test]
fn the_fake_twilio_answers_as_scripted_per_number() {
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    api.fail_times(TO, Reply::TooManyRequests, 2);
    api.script(TO2, vec![Reply::Unsubscribed, Reply::InvalidTo]);
    let to = |n: &str| {
        let mut f = valid_form();
        f[0].1 = n.to_owned();
        f
    };
    let answers: Vec<(u16, Value)> = [TO, TO2, TO, TO2, TO, TO2, TO]
        .iter()
        .map(|n| send_form(&api, &to(n)))
        .collect();
    let got: Vec<(u16, Value)> = answers
        .iter()
        .map(|(s, a)| (*s, a["code"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (429, json!(20429)),
            (400, json!(21610)),
            (429, json!(20429)),
            (400, json!(21211)),
            (201, Value::Null),
            (201, Value::Null),
            (201, Value::Null),
        ]
    );
    api.set_default(Reply::ServerError);
    let (status, answer) = send_form(&api, &to("+15005550009"));
    assert_eq!((status, answer["code"].clone()), (500, json!(20500)));
    api.set_default(Reply::Unauthorized);
    let (status, answer) = send_form(&api, &to("+15005550009"));
    assert_eq!((status, answer["code"].clone()), (401, json!(20003)));
    api.assert_no_violations();
}

#[test]
fn segments_and_signatures_of_the_test_helpers_are_right() {
    use twilio_api::segments;
    assert_eq!(segments("a".repeat(160).as_str()), (1, "gsm7"));
    assert_eq!(segments("a".repeat(161).as_str()), (2, "gsm7"));
    assert_eq!(segments("a".repeat(306).as_str()), (2, "gsm7"));
    assert_eq!(segments("a".repeat(307).as_str()), (3, "gsm7"));
    // Extension characters cost two septets and an escape pair is never split.
    assert_eq!(segments("{".repeat(80).as_str()), (1, "gsm7"));
    // 306 septets would fill two parts exactly, but the first escape pair would straddle.
    assert_eq!(
        segments(&format!("{}{}", "a".repeat(152), "€".repeat(77))),
        (3, "gsm7")
    );
    assert_eq!(segments("あ".repeat(70).as_str()), (1, "ucs2"));
    assert_eq!(segments("あ".repeat(71).as_str()), (2, "ucs2"));
    assert_eq!(segments("あ".repeat(201).as_str()), (3, "ucs2"));
    assert_eq!(segments("あ".repeat(300).as_str()), (5, "ucs2"));
    // A character outside the BMP is two UTF-16 units and never split.
    assert_eq!(segments(&format!("{}😀", "あ".repeat(68))), (1, "ucs2"));
    assert_eq!(segments(&format!("{}😀", "あ".repeat(69))), (2, "ucs2"));
    let straddling = format!("{}😀{}", "あ".repeat(66), "あ".repeat(66));
    assert_eq!(segments(&straddling), (3, "ucs2"));

    // Twilio's documented example (token 12345), through Twilio's own library.
    let body = form_encode(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]);
    assert_eq!(
        twilio_signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &body
        ),
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    );
    // Non-ASCII values: HMAC-SHA1 over the UTF-8 of URL + sorted name/value pairs,
    // checked against a plain HMAC computed separately.
    assert_eq!(
        twilio_signature(
            TOKEN,
            "http://127.0.0.1:1234/webhooks/twilio?job=a",
            "MessageSid=SM1&MessageStatus=delivered&B=%E9%85%8D"
        ),
        "hTe9ARbU7+wfN6/+ZhBcej8XDR4="
    );
}

// ---------------------------------------------------------------------------------
// Sending.

#[test]
fn messages_follow_the_spec_and_sent_events_carry_sid_segments_and_encoding() {
    let redis = Redis::start();
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    let s = sms_setup(&redis, &api);
    let mut conn = redis.conn();
    // A job id that needs percent-encoding in the callback URL.
    let id = "spring/sms 1&x=ü";
    let mut gsm = text_job("gsm-1", "Your code is 1234 {ok}");
    gsm["to"]["phone"] = json!("070-1234-5678");
    let mut two = text_job("two-1", &"あ".repeat(100));
    two["to"]["phone"] = json!("080-1112-2222");
    enqueue(&mut conn, &[job(id, "sms"), gsm, two]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "3 sent", |e| count(e, "sent") == 3);
    api.assert_no_violations();
    let messages = api.messages();
    assert_eq!(messages.len(), 3, "each job posted once");
    let by_to = |to: &str| {
        messages
            .iter()
            .find(|m| m.field("To") == Some(to))
            .unwrap_or_else(|| panic!("no message to {to}: {messages:?}"))
    };
    let m = by_to(TO);
    assert_eq!(m.path, api.messages_path());
    assert_eq!(m.field("From"), Some(FROM));
    assert_eq!(m.field("MessagingServiceSid"), None);
    assert_eq!(
        m.field("Body"),
        Some("山田 太郎様 春のセール開催中。1200pt保有中です。Example Shop"),
        "the rendered sms.txt"
    );
    let callback = m.field("StatusCallback").expect("a StatusCallback");
    let prefix = format!("http://127.0.0.1:{}/webhooks/twilio?job=", s.http_port);
    let encoded = callback
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{callback} is not under {prefix}"));
    assert!(
        !encoded.contains(['/', ' ', '&', '=']) && encoded.is_ascii(),
        "the job id is percent-encoded: {callback}"
    );
    assert_eq!(query_decode(encoded), id);

    // `sent` names Twilio's sid and the segments as Twilio counts them.
    for (job_id, to, encoding) in [
        (id, TO, "ucs2"),
        ("gsm-1", TO3, "gsm7"),
        ("two-1", TO2, "ucs2"),
    ] {
        let m = by_to(to);
        let sent = for_job(&evs, "sent", job_id);
        assert_eq!(sent.len(), 1, "{job_id}: {evs:?}");
        let sent = sent[0];
        assert_eq!(sent["channel"], "sms");
        assert_eq!(sent["provider_id"], m.sid().unwrap(), "{job_id}");
        let twilio_segments: u64 = m.answer["num_segments"].as_str().unwrap().parse().unwrap();
        assert_eq!(sent["segments"], json!(twilio_segments), "{job_id}: {sent}");
        assert_eq!(sent["encoding"], encoding, "{job_id}: {sent}");
    }
    assert_eq!(for_job(&evs, "sent", "two-1")[0]["segments"], 2);
}

#[test]
fn numbers_and_bodies_twilio_would_refuse_never_leave() {
    let redis = Redis::start();
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    let s = sms_setup(&redis, &api);
    let mut conn = redis.conn();
    let mut fb = sms_job("short-fb", "090-1234");
    fb["fallback"] = json!(["email"]);
    enqueue(
        &mut conn,
        &[
            sms_job("short-1", "090-1234"),
            fb,
            text_job("long-1", &"あ".repeat(300)),
        ],
    );
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "2 failed and 1 sent by email", |e| {
        count(e, "failed") == 2 && count(e, "sent") == 1
    });
    assert_eq!(
        for_job(&evs, "failed", "short-1")[0]["error"]["code"],
        "invalid_phone"
    );
    let fallback = for_job(&evs, "fallback", "short-fb");
    assert_eq!(fallback.len(), 1, "{evs:?}");
    assert_eq!(fallback[0]["error"]["code"], "invalid_phone");
    assert_eq!(fallback[0]["to_channel"], "email");
    assert_eq!(for_job(&evs, "sent", "short-fb")[0]["channel"], "email");
    let long = for_job(&evs, "failed", "long-1");
    assert_eq!(long[0]["error"]["code"], "too_many_segments", "{long:?}");
    assert_eq!(count(&evs, "deferred"), 0, "nothing to retry: {evs:?}");
    assert!(api.requests().is_empty(), "nothing reached Twilio");
}

#[test]
fn a_number_twilio_calls_invalid_fails_or_falls_back() {
    let redis = Redis::start();
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    api.script(TO, vec![Reply::InvalidTo, Reply::InvalidTo]);
    let s = sms_setup(&redis, &api);
    let mut conn = redis.conn();
    let mut fb = job("invalid-fb", "sms");
    fb["fallback"] = json!(["email"]);
    enqueue(&mut conn, &[job("invalid-1", "sms"), fb]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "failed and sent by email", |e| {
        count(e, "failed") == 1 && count(e, "sent") == 1
    });
    let failed = for_job(&evs, "failed", "invalid-1");
    assert_eq!(failed[0]["error"]["code"], "twilio_21211", "{failed:?}");
    let fallback = for_job(&evs, "fallback", "invalid-fb");
    assert_eq!(fallback.len(), 1, "{evs:?}");
    assert_eq!(fallback[0]["error"]["code"], "twilio_21211");
    assert_eq!(fallback[0]["to_channel"], "email");
    assert_eq!(for_job(&evs, "sent", "invalid-fb")[0]["channel"], "email");
    assert_eq!(
        count(&evs, "deferred"),
        0,
        "a 21211 is not retried: {evs:?}"
    );
    assert_eq!(api.requests().len(), 2);
    api.assert_no_violations();
}

#[test]
fn a_recipient_who_replied_stop_at_twilio_is_suppressed_from_then_on() {
    let redis = Redis::start();
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    api.script(TO, vec![Reply::Unsubscribed]);
    let s = sms_setup(&redis, &api);
    let mut conn = redis.conn();
    enqueue(&mut conn, &[job("optout-1", "sms")]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "failed", |e| count(e, "failed") == 1);
    assert_eq!(
        for_job(&evs, "failed", "optout-1")[0]["error"]["code"],
        "twilio_21610"
    );
    assert_eq!(
        wait_suppression(&mut conn, TO, Some("unsubscribed")).as_deref(),
        Some("unsubscribed")
    );
    // The number as the job writes it (national format) is the same recipient.
    enqueue(&mut conn, &[job("optout-2", "sms")]);
    let evs = wait_for(&mut conn, WAIT, "suppressed", |e| {
        count(e, "suppressed") == 1
    });
    assert_eq!(of_type(&evs, "suppressed")[0]["job_id"], "optout-2");
    assert_eq!(api.requests().len(), 1, "nothing sent after the opt-out");
    api.assert_no_violations();
}

#[test]
fn rate_limits_and_server_errors_are_retried_until_sent() {
    let redis = Redis::start();
    let api = TwilioApi::start(ACCOUNT_SID, TOKEN);
    api.fail_times(TO, Reply::TooManyRequests, 1);
    api.fail_times(TO2, Reply::ServerError, 1);
    let s = sms_setup(&redis, &api);
    let mut conn = redis.conn();
    enqueue(
        &mut conn,
        &[job("busy-1", "sms"), sms_job("oops-1", "080-1112-2222")],
    );
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "2 sent", |e| count(e, "sent") == 2);
    let busy = for_job(&evs, "deferred", "busy-1");
    assert_eq!(busy.len(), 1, "{evs:?}");
    assert_eq!(busy[0]["error"]["code"], "twilio_20429");
    let oops = for_job(&evs, "deferred", "oops-1");
    assert_eq!(oops.len(), 1, "{evs:?}");
    let code = oops[0]["error"]["code"].as_str().unwrap();
    assert!(
        code == "twilio_20500" || code == "twilio_500",
        "a 500 is deferred as a Twilio error: {code}"
    );
    assert_eq!(count(&evs, "failed"), 0);
    for to in [TO, TO2] {
        let created: Vec<_> = api
            .messages()
            .into_iter()
            .filter(|m| m.field("To") == Some(to))
            .collect();
        assert_eq!(created.len(), 1, "one 201 for {to}");
    }
    assert_eq!(api.requests().len(), 4);
    for (job_id, to) in [("busy-1", TO), ("oops-1", TO2)] {
        let sent = for_job(&evs, "sent", job_id)[0];
        assert_eq!(sent["attempt"], 2, "{sent}");
        let sid = api
            .messages()
            .into_iter()
            .find(|m| m.field("To") == Some(to))
            .and_then(|m| m.sid().map(str::to_owned));
        assert_eq!(sent["provider_id"].as_str(), sid.as_deref());
    }
    api.assert_no_violations();
}

#[test]
fn refused_credentials_defer_and_pause_the_channel() {
    let redis = Redis::start();
    let api = TwilioApi::start(ACCOUNT_SID, "the-real-token");
    let s = sms_setup(&redis, &api);
    let mut conn = redis.conn();
    let jobs: Vec<_> = (0..5).map(|i| job(&format!("auth-{i}"), "sms")).collect();
    enqueue(&mut conn, &jobs);
    let _d = s.start();
    s.wait_http();
    let evs = wait_for(&mut conn, WAIT, "deferred", |e| count(e, "deferred") >= 1);
    assert_eq!(
        of_type(&evs, "deferred")[0]["error"]["code"],
        "twilio_20003"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.metric("tayori_channel_paused{channel=\"sms\"}") != 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.metric("tayori_channel_paused{channel=\"sms\"}"), 1.0);
    std::thread::sleep(Duration::from_millis(500));
    let evs = events(&mut conn);
    assert_eq!(count(&evs, "failed") + count(&evs, "sent"), 0, "{evs:?}");
    assert!(
        api.requests().len() <= 5 + 3,
        "a refused account is not hammered: {} requests",
        api.requests().len()
    );
    assert!(api.messages().is_empty());
}

// ---------------------------------------------------------------------------------
// POST /webhooks/twilio: status callbacks.

#[test]
fn status_callbacks_become_delivered_and_failed_events_once() {
    let (redis, api, s, _d) = started();
    let mut conn = redis.conn();
    let delivered_id = "cb/1 x";
    enqueue(
        &mut conn,
        &[job(delivered_id, "sms"), sms_job("cb-2", "080-1112-2222")],
    );
    wait_for(&mut conn, WAIT, "2 sent", |e| count(e, "sent") == 2);
    let messages = api.messages();
    let message_to = |to: &str| messages.iter().find(|m| m.field("To") == Some(to)).unwrap();
    let (first, second) = (message_to(TO), message_to(TO2));
    let url1 = first.field("StatusCallback").unwrap().to_owned();
    let url2 = second.field("StatusCallback").unwrap().to_owned();
    let prefix = format!("http://127.0.0.1:{}/webhooks/twilio?job=", s.http_port);
    assert_eq!(
        url1.strip_prefix(&prefix).map(query_decode).as_deref(),
        Some(delivered_id),
        "the callback URL names the job: {url1}"
    );
    let (sid1, sid2) = (first.sid().unwrap(), second.sid().unwrap());

    // Delivered, with parameters Tayori does not know (and signs over them).
    let params = status_params(sid1, "delivered", TO, &[("RawDlrDoneDate", "2604141200")]);
    let (status, _) = post_signed(&s, &url1, &params);
    assert_eq!(status, 200);
    let evs = wait_for(&mut conn, WAIT, "delivered", |e| count(e, "delivered") == 1);
    let delivered = of_type(&evs, "delivered")[0];
    assert_eq!(delivered["job_id"], delivered_id);
    assert_eq!(delivered["provider_id"], sid1);
    assert_eq!(delivered["channel"], "sms");
    // Twilio retries a callback: no second event.
    assert_eq!(post_signed(&s, &url1, &params).0, 200);

    // `sent` (the carrier took it) is no event; undelivered is a failure with its code.
    assert_eq!(
        post_signed(&s, &url2, &status_params(sid2, "sent", TO2, &[])).0,
        200
    );
    let params = status_params(sid2, "undelivered", TO2, &[("ErrorCode", "30003")]);
    assert_eq!(post_signed(&s, &url2, &params).0, 200);
    let evs = wait_for(&mut conn, WAIT, "failed", |e| count(e, "failed") == 1);
    let failed = of_type(&evs, "failed")[0];
    assert_eq!(failed["job_id"], "cb-2");
    assert_eq!(failed["error"]["code"], "twilio_30003");
    std::thread::sleep(Duration::from_millis(300));
    let evs = events(&mut conn);
    assert_eq!(count(&evs, "delivered"), 1, "{evs:?}");
    assert_eq!(count(&evs, "failed"), 1, "{evs:?}");
    assert_eq!(count(&evs, "sent"), 2, "{evs:?}");
    assert_eq!(evs.len(), 4, "nothing else, e.g. for `sent`: {evs:?}");
}

#[test]
fn callbacks_without_a_valid_signature_are_refused_without_an_event() {
    let (redis, _api, s, _d) = started();
    let mut conn = redis.conn();
    let sid = "SM0123456789abcdef0123456789abcdef";
    let url = callback_url(&s, "sig-1");
    let params = status_params(sid, "delivered", TO, &[]);
    let body = form_encode(&params);
    let good = twilio_signature(TOKEN, &url, &body);

    assert_eq!(post_twilio(&s, &url, &body, None).0, 403, "no header");
    assert_eq!(
        post_twilio(&s, &url, &body, Some("bm90IHRoZSBzaWduYXR1cmU=")).0,
        403,
        "garbage"
    );
    assert_eq!(post_twilio(&s, &url, &body, Some("")).0, 403, "empty");
    let tampered = body.replace("delivered", "undelivered");
    assert_eq!(
        post_twilio(&s, &url, &tampered, Some(&good)).0,
        403,
        "a tampered parameter"
    );
    let extra = format!("{body}&ErrorCode=30003");
    assert_eq!(
        post_twilio(&s, &url, &extra, Some(&good)).0,
        403,
        "an added parameter"
    );
    let other_job = twilio_signature(TOKEN, &callback_url(&s, "sig-2"), &body);
    assert_eq!(
        post_twilio(&s, &url, &body, Some(&other_job)).0,
        403,
        "signed for another job's URL"
    );
    let other_token = twilio_signature("another-token", &url, &body);
    assert_eq!(
        post_twilio(&s, &url, &body, Some(&other_token)).0,
        403,
        "another account's token"
    );
    // An inbound STOP with a forged signature does not unsubscribe anyone.
    let stop = form_encode(&inbound_params(sid, TO, "STOP"));
    let forged = twilio_signature("another-token", &inbound_url(&s), &stop);
    assert_eq!(
        post_twilio(&s, &inbound_url(&s), &stop, Some(&forged)).0,
        403
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        events(&mut conn).is_empty(),
        "no event from refused callbacks"
    );
    let suppressed: usize = redis::cmd("HLEN")
        .arg("t:{0}:suppressed:sms")
        .query(&mut conn)
        .unwrap();
    assert_eq!(suppressed, 0);

    // The same request, rightly signed, is taken: the refusals were the signature's.
    assert_eq!(post_twilio(&s, &url, &body, Some(&good)).0, 200);
    let evs = wait_for(&mut conn, WAIT, "delivered", |e| count(e, "delivered") == 1);
    assert_eq!(of_type(&evs, "delivered")[0]["job_id"], "sig-1");
}

// ---------------------------------------------------------------------------------
// POST /webhooks/twilio: inbound replies.

#[test]
fn stop_replies_unsubscribe_and_start_lifts_it() {
    let (redis, api, s, _d) = started();
    let mut conn = redis.conn();
    let url = inbound_url(&s);
    let sids: Vec<String> = (0..10).map(|i| format!("SM{i:032x}")).collect();
    let mut unsubscribed = 0;
    let mut n = 0;
    let mut reply = |text: &str| -> (u16, String) {
        let sid = &sids[n];
        n += 1;
        post_signed(&s, &url, &inbound_params(sid, TO, text))
    };
    for stop in ["STOP", "配信停止", "停止", " stop "] {
        let (status, body) = reply(stop);
        assert_eq!(status, 200, "{stop:?}");
        assert!(
            body.trim().is_empty() || body.contains("<Response"),
            "empty TwiML or nothing: {body:?}"
        );
        unsubscribed += 1;
        let evs = wait_for(&mut conn, WAIT, "unsubscribed", |e| {
            count(e, "unsubscribed") == unsubscribed
        });
        let e = of_type(&evs, "unsubscribed")[unsubscribed - 1];
        assert_eq!(e["channel"], "sms", "{e}");
        assert_eq!(e["address"], TO, "{e}");
        assert!(e["job_id"].is_null(), "{e}");
        assert_eq!(
            wait_suppression(&mut conn, TO, Some("unsubscribed")).as_deref(),
            Some("unsubscribed"),
            "{stop:?}"
        );
        if stop == " stop " {
            break;
        }
        let (status, _) = reply("START");
        assert_eq!(status, 200);
        assert_eq!(
            wait_suppression(&mut conn, TO, None),
            None,
            "START after {stop:?}"
        );
    }
    // An ordinary reply changes nothing: it is a `replied` event (README).
    assert_eq!(reply("ありがとう").0, 200);
    let evs = wait_for(&mut conn, WAIT, "replied", |e| count(e, "replied") == 1);
    let replied = of_type(&evs, "replied")[0];
    assert_eq!(replied["text"], "ありがとう", "{replied}");
    assert_eq!(replied["address"], TO, "{replied}");
    assert_eq!(replied["channel"], "sms", "{replied}");
    assert_eq!(count(&evs, "unsubscribed"), 4);
    // Each START is an `unblocked` event for the number (README).
    let unblocked = of_type(&evs, "unblocked");
    assert_eq!(unblocked.len(), 3, "{evs:?}");
    assert!(unblocked
        .iter()
        .all(|e| e["address"] == TO && e["channel"] == "sms"));
    assert_eq!(suppression(&mut conn, TO).as_deref(), Some("unsubscribed"));
    // A job to the number (in national format) is suppressed.
    enqueue(&mut conn, &[job("after-stop", "sms")]);
    let evs = wait_for(&mut conn, WAIT, "suppressed", |e| {
        count(e, "suppressed") == 1
    });
    assert_eq!(of_type(&evs, "suppressed")[0]["job_id"], "after-stop");
    assert!(api.requests().is_empty());
}

/// A GET against the daemon keeping the headers: (status, `Location`).
fn get_location(s: &Setup, path: &str) -> (u16, Option<String>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0 (iPhone)\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = raw
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or(l.strip_prefix("Location: "))
        })
        .map(|l| l.trim().to_owned());
    (status, location)
}

#[test]
fn links_in_sms_become_short_tracked_links_that_redirect_and_record_clicks() {
    let (redis, api, s, _d) = started();
    let mut conn = redis.conn();
    let link = "https://shop.example.com/p/1?utm_source=sms&x=ü";
    let text = format!("セール開催中 {link} 詳細は https://shop.example.com/faq");
    enqueue(&mut conn, &[text_job("short-1", &text)]);
    let evs = wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    api.assert_no_violations();
    let messages = api.messages();
    let body = messages[0].field("Body").expect("a Body").to_owned();
    let base = format!("http://127.0.0.1:{}/s/", s.http_port);
    let codes: Vec<&str> = body
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(base.as_str()))
        .collect();
    assert_eq!(codes.len(), 2, "both links shortened: {body}");
    assert!(!body.contains("shop.example.com"), "{body}");
    assert!(
        codes.iter().all(|c| c.len() == 12),
        "short codes of 12 characters: {codes:?}"
    );
    assert!(
        body.starts_with("セール開催中 ") && body.contains(" 詳細は "),
        "{body}"
    );
    // Twilio was told the segments of the text as sent, short links included.
    assert_eq!(
        of_type(&evs, "sent")[0]["segments"],
        json!(twilio_api::segments(&body).0),
        "{body}"
    );

    // Following the first link redirects to the original and records the click.
    let (status, location) = get_location(&s, &format!("/s/{}", codes[0]));
    assert_eq!(status, 302);
    assert_eq!(location.as_deref(), Some(link));
    let evs = wait_for(&mut conn, WAIT, "clicked", |e| count(e, "clicked") == 1);
    let clicked = of_type(&evs, "clicked")[0];
    assert_eq!(clicked["job_id"], "short-1", "{clicked}");
    assert_eq!(clicked["channel"], "sms", "{clicked}");
    assert_eq!(clicked["url"], link, "{clicked}");
    let (_, second) = get_location(&s, &format!("/s/{}", codes[1]));
    assert_eq!(second.as_deref(), Some("https://shop.example.com/faq"));

    // A code we never issued, or a malformed one, is 404 and never a redirect.
    let mut forged: Vec<u8> = codes[0].bytes().collect();
    forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for path in [
        format!("/s/{forged}"),
        "/s/short".to_owned(),
        "/s/..%2F..%2Fetc".to_owned(),
    ] {
        let (status, location) = get_location(&s, &path);
        assert_eq!((status, location), (404, None), "{path}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&events(&mut conn), "clicked"), 2);

    // The record behind a code: a field of its bucket's hash (a listpack), and
    // the link's content once for the campaign's URL.
    let bucket = format!("t:links:{}", &codes[0][..4]);
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(&bucket)
        .query(&mut conn)
        .unwrap();
    assert_eq!(encoding, "listpack", "{bucket}");
    let fields: Vec<Vec<u8>> = redis::cmd("HKEYS").arg(&bucket).query(&mut conn).unwrap();
    assert_eq!(fields.len(), 2, "both links of the job in one bucket");

    // A changed record, or a record of ours under another code, never redirects.
    let field = |code: &str| {
        let raw = base64_url(code);
        raw[3..].to_vec()
    };
    let record: Vec<u8> = redis::cmd("HGET")
        .arg(&bucket)
        .arg(field(codes[0]))
        .query(&mut conn)
        .unwrap();
    let mut changed = record.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    let _: () = redis::cmd("HSET")
        .arg(&bucket)
        .arg(field(codes[0]))
        .arg(&changed)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        get_location(&s, &format!("/s/{}", codes[0])),
        (404, None),
        "a changed record"
    );
    let _: () = redis::cmd("HSET")
        .arg(&bucket)
        .arg(field(codes[0]))
        .arg(&record)
        .arg(field(codes[1]))
        .arg(&record)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        get_location(&s, &format!("/s/{}", codes[1])),
        (404, None),
        "moved"
    );
    // A code whose bucket part is changed names nothing.
    let mut other_bucket: Vec<u8> = codes[0].bytes().collect();
    other_bucket[1] = if other_bucket[1] == b'A' { b'B' } else { b'A' };
    let other_bucket = String::from_utf8(other_bucket).unwrap();
    assert_eq!(get_location(&s, &format!("/s/{other_bucket}")), (404, None));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&events(&mut conn), "clicked"), 2);

    // A link stored before buckets (an 11-character code, `P:link:<code>` → a sealed
    // click token) still redirects, and its click carries the token's fields.
    let old = Tracked {
        channel: ChannelId::new("sms"),
        job_id: "before-upgrade-1".into(),
        address: "+819011112222".into(),
        campaign: Some("spring26".into()),
        customer_id: Some("C-9".into()),
        sent_at: jiff::Timestamp::now().as_second() - 3600,
        url: Some("https://shop.example.com/old".into()),
    };
    let sealer = Sealer::new(TRACKING_SECRET);
    let old_code = sealer.short_code(&old.job_id, "https://shop.example.com/old");
    assert_eq!(old_code.len(), 11);
    let _: () = redis::cmd("SET")
        .arg(format!("t:link:{old_code}"))
        .arg(sealer.seal(Purpose::Click, &old))
        .arg("EX")
        .arg(600)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        get_location(&s, &format!("/s/{old_code}")),
        (302, Some("https://shop.example.com/old".to_owned()))
    );
    let evs = wait_for(&mut conn, WAIT, "clicked", |e| count(e, "clicked") == 3);
    let clicked = evs
        .iter()
        .find(|e| e["type"] == "clicked" && e["job_id"] == "before-upgrade-1")
        .expect("the old link's click");
    assert_eq!(clicked["channel"], "sms", "{clicked}");
    assert_eq!(clicked["url"], "https://shop.example.com/old", "{clicked}");
}

/// URL-safe base64 without padding, decoded (a short link's code).
fn base64_url(code: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    };
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in code.bytes() {
        bits = (bits << 6) | u32::from(value(c));
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}
