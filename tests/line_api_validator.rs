//! Self-tests of the fake LINE API (the test kit's `line_api`): it accepts a valid
//! push, and it can fail — every malformed request gets LINE's answer and a violation
//! naming the property, so a test that uses it can trust an empty `violations()`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tayori_testkit::line_api::{self, schema, LineApi, Reply, PUSH_PATH};
// The kit's signing helpers, under the names the known-answer test below gave the
// hand-written SHA-256/HMAC/Base64 they replace (tests/line_api/crypto.rs).
use tayori_testkit::sign::{self as crypto, line_signature as sign};

const TOKEN: &str = "test-channel-access-token";
const USER: &str = "U4af4980629a1b2c3d4e5f60718293a4b";

/// An answer as the minimal client below read it.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client over `TcpStream` (one request per connection).
fn send(api: &LineApi, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(("127.0.0.1", api.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        api.port(),
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read answer");

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the header block");
    let head = String::from_utf8(raw[..split].to_vec()).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut payload = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        payload = dechunk(&payload);
    }
    let body = serde_json::from_slice(&payload).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// A push as a correct client sends it.
fn push(api: &LineApi, retry_key: Option<&str>, body: &Value) -> Resp {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(key) = retry_key {
        headers.push(("X-Line-Retry-Key", key));
    }
    send(
        api,
        "POST",
        PUSH_PATH,
        &headers,
        body.to_string().as_bytes(),
    )
}

fn text(s: &str) -> Value {
    json!({"type": "text", "text": s})
}

fn valid_messages() -> Vec<Value> {
    vec![
        text("山田様、春のセールのお知らせです 🌸"),
        json!({"type": "sticker", "packageId": "446", "stickerId": "1988"}),
        json!({
            "type": "image",
            "originalContentUrl": "https://shop.example.com/img/sale.jpg",
            "previewImageUrl": "https://shop.example.com/img/sale-preview.jpg"
        }),
        json!({
            "type": "flex",
            "altText": "春のセール: 1200ポイント",
            "contents": {
                "type": "bubble",
                "hero": {"type": "image", "url": "https://shop.example.com/img/hero.jpg", "size": "full"},
                "body": {
                    "type": "box",
                    "layout": "vertical",
                    "contents": [
                        {"type": "text", "text": "化粧水", "weight": "bold", "wrap": true},
                        {"type": "separator"},
                        {"type": "button", "action": {"type": "uri", "label": "見る", "uri": "https://shop.example.com/p/1"}}
                    ]
                }
            }
        }),
    ]
}

fn valid_body() -> Value {
    json!({"to": USER, "messages": valid_messages()})
}

const KEY: &str = "123e4567-e89b-12d3-a456-426614174000";

fn is_uuid(s: &str) -> bool {
    schema::is_uuid(s)
}

#[test]
fn a_valid_push_is_delivered_without_violations() {
    let api = LineApi::start(TOKEN);
    let resp = push(&api, Some(KEY), &valid_body());
    assert_eq!(resp.status, 200, "{resp:?}\n{:?}", api.violations());
    assert!(is_uuid(
        resp.header("x-line-request-id").expect("x-line-request-id")
    ));
    let sent = resp.body["sentMessages"].as_array().expect("sentMessages");
    assert_eq!(sent.len(), 4);
    for m in sent {
        let id = m["id"].as_str().expect("id");
        assert!(
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
            "{id}"
        );
        assert!(m["quoteToken"].as_str().is_some_and(|q| !q.is_empty()));
    }
    api.assert_no_violations();
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.status),
        ("POST", PUSH_PATH, 200)
    );
    assert_eq!(r.retry_key.as_deref(), Some(KEY));
    assert_eq!(
        r.header("Authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(r.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
    assert_eq!(r.body, valid_body());
    assert_eq!(r.request_id, resp.header("x-line-request-id").unwrap());
    assert_eq!(api.deliveries().len(), 1);

    // Exactly 5000 UTF-16 code units (2500 emoji outside the BMP) is still valid.
    let resp = push(
        &api,
        None,
        &json!({"to": USER, "messages": [text(&"😀".repeat(2500))]}),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    // Optional properties of the spec: notificationDisabled, one aggregation unit.
    let body = json!({"to": USER, "messages": [text("hi")], "notificationDisabled": true,
                      "customAggregationUnits": ["spring_26"]});
    assert_eq!(push(&api, None, &body).status, 200);
    api.assert_no_violations();
    assert_eq!(api.deliveries().len(), 3);
}

/// A bad request: a name, its headers and body, and the property its violation must name.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Value, &'a str);

#[test]
fn every_kind_of_bad_request_gets_400_and_a_violation_naming_the_property() {
    let api = LineApi::start(TOKEN);
    let auth = format!("Bearer {TOKEN}");
    let json_headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = valid_body();
        f(&mut b);
        b
    };
    let over_limit = format!("{}a", "😀".repeat(2500)); // 2501 chars, 5001 UTF-16 units
    let cases: Vec<Case> = vec![
        (
            "missing to",
            json_headers.clone(),
            with(&|b| {
                b.as_object_mut().unwrap().remove("to");
            }),
            "to",
        ),
        (
            "no messages",
            json_headers.clone(),
            json!({"to": USER, "messages": []}),
            "messages",
        ),
        (
            "six messages",
            json_headers.clone(),
            json!({"to": USER, "messages": vec![text("x"); 6]}),
            "messages",
        ),
        (
            "unknown message type",
            json_headers.clone(),
            json!({"to": USER, "messages": [{"type": "letter", "text": "x"}]}),
            "messages[0].type",
        ),
        (
            "text without text",
            json_headers.clone(),
            json!({"to": USER, "messages": [{"type": "text"}]}),
            "messages[0].text",
        ),
        (
            "text of 5001 UTF-16 units",
            json_headers.clone(),
            json!({"to": USER, "messages": [text("ok"), text(&over_limit)]}),
            "messages[1].text",
        ),
        (
            "image without previewImageUrl",
            json_headers.clone(),
            json!({"to": USER, "messages": [{"type": "image", "originalContentUrl": "https://e.example/a.jpg"}]}),
            "messages[0].previewImageUrl",
        ),
        (
            "altText over 1500",
            json_headers.clone(),
            with(&|b| b["messages"][3]["altText"] = json!("あ".repeat(1501))),
            "messages[3].altText",
        ),
        (
            "unknown flex component deep in a bubble",
            json_headers.clone(),
            with(&|b| b["messages"][3]["contents"]["body"]["contents"][1]["type"] = json!("line")),
            "messages[3].contents.body.contents[1].type",
        ),
        (
            "flex box with a bad layout",
            json_headers.clone(),
            with(&|b| b["messages"][3]["contents"]["body"]["layout"] = json!("diagonal")),
            "messages[3].contents.body.layout",
        ),
        (
            "text that is a number",
            json_headers.clone(),
            json!({"to": USER, "messages": [{"type": "text", "text": 42}]}),
            "messages[0].text",
        ),
        (
            "two aggregation units",
            json_headers.clone(),
            with(&|b| b["customAggregationUnits"] = json!(["a", "b"])),
            "customAggregationUnits",
        ),
        (
            "non-UUID retry key",
            vec![
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
                ("X-Line-Retry-Key", "job-spring26-C1001-attempt-1"),
            ],
            valid_body(),
            "X-Line-Retry-Key",
        ),
        (
            "no Content-Type",
            vec![("Authorization", auth.as_str())],
            valid_body(),
            "Content-Type",
        ),
        (
            "Content-Type text/plain",
            vec![
                ("Authorization", auth.as_str()),
                ("Content-Type", "text/plain"),
            ],
            valid_body(),
            "Content-Type",
        ),
    ];
    for (i, (name, headers, body, property)) in cases.iter().enumerate() {
        let resp = send(
            &api,
            "POST",
            PUSH_PATH,
            headers,
            body.to_string().as_bytes(),
        );
        assert_eq!(resp.status, 400, "{name}: {resp:?}");
        assert!(resp.header("x-line-request-id").is_some(), "{name}");
        let details = resp.body["details"].as_array().expect("details");
        assert!(
            details.iter().any(|d| d["property"] == json!(property)),
            "{name}: no detail for {property}: {resp:?}"
        );
        assert!(resp.body["message"].is_string(), "{name}");
        let recorded = &api.requests()[i];
        assert_eq!(recorded.status, 400, "{name}");
        assert!(
            recorded
                .violations
                .iter()
                .any(|v| v.starts_with(&format!("{property}: "))),
            "{name}: violations {:?} do not name {property}",
            recorded.violations
        );
    }
    // A body-only error says how many errors the body has, like LINE.
    let resp = push(&api, None, &json!({"messages": [{"type": "text"}]}));
    assert_eq!(
        resp.body["message"],
        json!("The request body has 2 error(s)"),
        "{resp:?}"
    );
    let resp = send(&api, "POST", PUSH_PATH, &json_headers, b"{not json");
    assert_eq!(resp.status, 400);
    assert!(api.requests().last().unwrap().violations[0].starts_with("(body): not valid JSON"));
    assert!(api.deliveries().is_empty(), "{:?}", api.deliveries());
    assert_eq!(
        api.violations().len(),
        api.requests()
            .iter()
            .map(|r| r.violations.len())
            .sum::<usize>()
    );
    assert!(api
        .violations()
        .iter()
        .all(|v| v.starts_with(&format!("{PUSH_PATH}: "))));
}

#[test]
fn a_repeated_accepted_retry_key_gets_409_and_is_not_a_delivery() {
    let api = LineApi::start(TOKEN);
    let first = push(&api, Some(KEY), &valid_body());
    assert_eq!(first.status, 200);
    let first_id = first.header("x-line-request-id").unwrap().to_string();

    api.script(vec![Reply::ServerError]); // 409 wins over the script
    let again = push(&api, Some(KEY), &valid_body());
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(
        again.body["message"],
        json!("The retry key is already accepted")
    );
    assert_eq!(
        again.header("x-line-accepted-request-id"),
        Some(first_id.as_str())
    );
    assert_ne!(again.header("x-line-request-id"), Some(first_id.as_str()));
    assert_eq!(again.body["sentMessages"], first.body["sentMessages"]);
    assert_eq!(api.deliveries().len(), 1);
    assert_eq!(api.requests().len(), 2);
    assert_eq!(api.requests()[1].status, 409);
    api.assert_no_violations();

    // The script was not consumed by the 409: a new key gets the 500, and a key whose
    // request failed is not accepted, so its retry is delivered.
    let other = "8f14e45f-ceea-4e67-a5b3-7c1d2b3c4d5e";
    assert_eq!(push(&api, Some(other), &valid_body()).status, 500);
    assert_eq!(push(&api, Some(other), &valid_body()).status, 200);
    assert_eq!(push(&api, Some(other), &valid_body()).status, 409);
    assert_eq!(api.deliveries().len(), 2);
}

#[test]
fn scripted_replies_come_in_order_then_the_default() {
    let api = LineApi::start(TOKEN);
    api.script(vec![Reply::MonthlyLimit]);
    let r = push(&api, None, &valid_body());
    assert_eq!(r.status, 429);
    assert_eq!(
        r.body["message"],
        json!("You have reached your monthly limit.")
    );
    assert!(r.header("retry-after").is_none());
    assert_eq!(push(&api, None, &valid_body()).status, 200);

    api.script(vec![
        Reply::TooManyRequests,
        Reply::ServerError,
        Reply::BadRequest("Failed to send messages".into()),
        Reply::Forbidden,
        Reply::Unauthorized,
    ]);
    let r = push(&api, None, &valid_body());
    assert_eq!(
        (r.status, r.body["message"].clone()),
        (
            429,
            json!("The API rate limit has been exceeded. Try again later.")
        )
    );
    let r = push(&api, None, &valid_body());
    assert_eq!(
        (r.status, r.body["message"].clone()),
        (500, json!("Internal server error"))
    );
    let r = push(&api, None, &valid_body());
    assert_eq!(
        (r.status, r.body["message"].clone()),
        (400, json!("Failed to send messages"))
    );
    assert_eq!(push(&api, None, &valid_body()).status, 403);
    assert_eq!(push(&api, None, &valid_body()).status, 401);

    api.set_default(Reply::ServerError);
    assert_eq!(push(&api, None, &valid_body()).status, 500);
    api.set_default(Reply::Ok);
    assert_eq!(push(&api, None, &valid_body()).status, 200);

    let statuses: Vec<u16> = api.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200, 429, 500, 400, 403, 401, 500, 200]);
    assert_eq!(api.deliveries().len(), 2);
    for r in api.requests() {
        assert!(is_uuid(&r.request_id));
    }
    api.assert_no_violations();
}

#[test]
fn a_slow_reply_waits_then_answers_200() {
    let api = LineApi::start(TOKEN);
    api.script(vec![Reply::Slow(Duration::from_millis(300))]);
    let started = Instant::now();
    let r = push(&api, Some(KEY), &valid_body());
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 200);
    assert_eq!(api.deliveries().len(), 1);
    // A retry after a timeout with the same key is answered 409, not delivered twice.
    assert_eq!(push(&api, Some(KEY), &valid_body()).status, 409);
    assert_eq!(api.deliveries().len(), 1);
}

#[test]
fn authentication() {
    let api = LineApi::start(TOKEN);
    let body = valid_body().to_string();
    let json_ct = ("Content-Type", "application/json");

    // A wrong token: 401, recorded, not a violation, not a delivery.
    let r = send(
        &api,
        "POST",
        PUSH_PATH,
        &[("Authorization", "Bearer revoked"), json_ct],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body["message"],
        json!("Authentication failed. Confirm that the access token in the authorization header is valid.")
    );
    assert!(r.header("x-line-request-id").is_some());
    assert_eq!(api.requests().len(), 1);
    assert_eq!(api.requests()[0].status, 401);
    api.assert_no_violations();

    // No Authorization at all, or not a Bearer token: 401 and a violation.
    let r = send(&api, "POST", PUSH_PATH, &[json_ct], body.as_bytes());
    assert_eq!(r.status, 401);
    let r = send(
        &api,
        "POST",
        PUSH_PATH,
        &[("Authorization", TOKEN), json_ct],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    let v = api.violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(
        v.iter()
            .all(|v| v.starts_with(&format!("{PUSH_PATH}: Authorization: "))),
        "{v:?}"
    );

    // The token is fixed: the old one fails, the new one works.
    api.set_token("rotated");
    assert_eq!(push(&api, None, &valid_body()).status, 401);
    let r = send(
        &api,
        "POST",
        PUSH_PATH,
        &[("Authorization", "Bearer rotated"), json_ct],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(api.deliveries().len(), 1);
}

#[test]
fn other_paths_and_methods_are_violations() {
    let api = LineApi::start(TOKEN);
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = valid_body().to_string();
    let r = send(
        &api,
        "POST",
        "/v2/bot/message/multicast",
        &headers,
        body.as_bytes(),
    );
    assert_eq!(r.status, 404);
    assert!(r.header("x-line-request-id").is_some());
    let r = send(&api, "GET", PUSH_PATH, &headers, b"");
    assert_eq!(r.status, 405);
    let v = api.violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].starts_with("/v2/bot/message/multicast: "), "{v:?}");
    assert!(api.deliveries().is_empty());
}

#[test]
fn the_validator_follows_refs_allof_and_discriminators() {
    let spec = line_api::messaging_api_spec();
    // Every discriminator mapping in the spec points at a schema that exists.
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    let validator = schema::Validator::new(spec);
    let mut mappings = 0;
    for s in schemas.values() {
        if let Some(mapping) = s
            .pointer("/discriminator/mapping")
            .and_then(Value::as_object)
        {
            for target in mapping.values() {
                assert!(
                    validator.resolve(target.as_str().unwrap()).is_some(),
                    "{target}"
                );
                mappings += 1;
            }
        }
    }
    assert!(mappings > 50, "{mappings}");

    // Message -> TextMessage -> allOf[Message] does not loop, and reports once.
    let v = line_api::push_violations(
        &json!({"to": USER, "messages": [{"type": "text", "sender": {"name": 5}}]}),
    );
    let shown: Vec<String> = v.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "messages[0].sender.name: must be of type string (found integer)",
            "messages[0].text: must be specified",
        ]
    );
    // A schema-named type is not an implicit mapping.
    let v = line_api::push_violations(
        &json!({"to": USER, "messages": [{"type": "TextMessage", "text": "x"}]}),
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].message.contains("template, text, textV2, video"),
        "{v:?}"
    );

    // Patterns as the LINE specs write them.
    assert_eq!(
        schema::pattern_matches("^[a-zA-Z0-9_]{1,30}$", "spring_26"),
        Ok(true)
    );
    assert_eq!(
        schema::pattern_matches("^[a-zA-Z0-9_]{1,30}$", "spring-26"),
        Ok(false)
    );
    assert_eq!(
        schema::pattern_matches("^[a-zA-Z0-9_]{1,30}$", &"a".repeat(31)),
        Ok(false)
    );
    assert_eq!(
        schema::pattern_matches("^[a-z0-9_-]{1,32}$", "rich-menu_1"),
        Ok(true)
    );
    assert_eq!(schema::pattern_matches("^[0-9]{8}$", "20260701"), Ok(true));
    assert_eq!(schema::pattern_matches("^[0-9]{8}$", "2026070"), Ok(false));
    assert_eq!(schema::pattern_matches("^U[0-9a-f]{32}$", USER), Ok(true));
    assert!(schema::pattern_matches("^(a|b)$", "a").is_err());
}

#[test]
fn webhook_bodies_are_checked_against_the_webhook_spec() {
    let event = json!({
        "type": "follow",
        "mode": "active",
        "timestamp": 1_795_507_671_850_i64,
        "webhookEventId": "01HZXK9Q8M3V7T2B5N6C4D1E0F",
        "deliveryContext": {"isRedelivery": false},
        "source": {"type": "user", "userId": USER},
        "replyToken": "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA",
        "follow": {"isUnblocked": true}
    });
    let body = json!({"destination": USER, "events": [event]});
    assert_eq!(line_api::webhook_violations(&body), []);
    assert_eq!(
        line_api::webhook_violations(&json!({"destination": USER, "events": []})),
        []
    );

    let mut bad = body.clone();
    bad["events"][0]
        .as_object_mut()
        .unwrap()
        .remove("webhookEventId");
    bad["events"][0]["follow"] = json!({});
    bad["destination"] = json!("Uxyz");
    let shown: Vec<String> = line_api::webhook_violations(&bad)
        .iter()
        .map(ToString::to_string)
        .collect();
    for expected in [
        "events[0].webhookEventId: ",
        "events[0].follow.isUnblocked: ",
        "destination: ",
    ] {
        assert!(
            shown.iter().any(|s| s.starts_with(expected)),
            "{expected} not in {shown:?}"
        );
    }
}

#[test]
fn sha256_hmac_base64_and_sign_known_answers() {
    // FIPS 180-2 examples.
    assert_eq!(
        crypto::hex(&crypto::sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        crypto::hex(&crypto::sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        crypto::hex(&crypto::sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        crypto::hex(&crypto::sha256(&[b'a'; 1000])),
        "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
    );
    // RFC 4231 test case 2 (a key shorter than the block) and 6 (longer: hashed first).
    assert_eq!(
        crypto::hex(&crypto::hmac_sha256(
            b"Jefe",
            b"what do ya want for nothing?"
        )),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        crypto::hex(&crypto::hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
    // RFC 4648 section 10.
    for (input, expected) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(crypto::base64(input.as_bytes()), expected, "{input:?}");
    }
    // X-Line-Signature: Base64 of the RFC 4231 case 2 digest.
    assert_eq!(
        sign("Jefe", b"what do ya want for nothing?"),
        "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
    );
}
