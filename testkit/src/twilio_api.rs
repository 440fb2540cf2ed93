//! A real HTTP server that plays Twilio's Programmable Messaging endpoint
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`) for the integration tests,
//! and checks every request against Twilio's official OpenAPI description (the
//! `CreateMessage` subset vendored as `tests/specs/twilio_create_message.json`,
//! embedded at compile time) plus the documented facts the description leaves out:
//! HTTP basic auth `AccountSid:AuthToken`, `Body` at most 1600 characters, `To` in
//! E.164, `From` or `MessagingServiceSid` (the spec's `x-twilio.conditional`), and
//! — Tayori's side of the contract — a non-empty `Body` (Tayori sends no media).
//!
//! Tests use it as `tayori_testkit::twilio_api`; it runs on the kit's
//! [`FakeServer`](crate::server::FakeServer) and validates with
//! [`crate::line_api::schema`].
//!
//! How a request is answered, in this order:
//! 1. a path other than the Messages endpoint: 404 (and a violation); another method: 405;
//! 2. no (or a malformed) `Authorization: Basic …`, or a user other than the account
//!    SID: 401 code 20003 and a violation; the right user with a wrong token: 401 code
//!    20003 without a violation (a rotated token is a situation to handle, not a bug);
//! 3. any violation (path SID, `Content-Type`, a form the spec rejects): 400 in Twilio's
//!    error shape, with Twilio's code for the first violation that has one (21604 no
//!    `To`, 21211 `To` not E.164, 21603 no sender, 21602 no `Body`, 21617 `Body` too
//!    long) and the fake's own 21600 otherwise;
//! 4. otherwise the next [`Reply`] scripted for the `To` number, else the default
//!    (initially [`Reply::Created`]).
//!
//! Every request is recorded with its form fields and headers, whatever the answer.
//! Only step 4 consumes a script. Twilio's errors are
//! `{"code", "message", "more_info", "status"}`.

pub use crate::line_api::schema;

use std::collections::{HashMap, VecDeque};
use std::sync::{MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::server::{Answer, FakeServer, Incoming};
use schema::{Validator, Violation};

const SPEC_JSON: &str = include_str!("../../tests/specs/twilio_create_message.json");

/// The path template of `CreateMessage`, as in the spec.
pub const MESSAGES_PATH: &str = "/2010-04-01/Accounts/{AccountSid}/Messages.json";
/// `Body` limit in characters (Twilio's documentation; not in the spec).
pub const MAX_BODY_CHARS: usize = 1600;
const FORM: &str = "application/x-www-form-urlencoded";

/// The vendored `CreateMessage` subset of Twilio's API description.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_json::from_str(SPEC_JSON).expect("tests/specs/twilio_create_message.json")
    })
}

/// The `CreateMessageRequest` schema (form body).
pub fn request_schema() -> &'static Value {
    spec()
        .pointer("/requestBody/content/application~1x-www-form-urlencoded/schema")
        .expect("the spec has the CreateMessageRequest schema")
}

/// The 201 answer's properties (`api.v2010.account.message`): name → schema.
pub fn response_properties() -> &'static Map<String, Value> {
    spec()
        .pointer("/responses/201/properties")
        .and_then(Value::as_object)
        .expect("the spec has the 201 response's properties")
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; the
/// result must be UTF-8.
pub fn form_decode(body: &str) -> Result<Vec<(String, String)>, String> {
    fn decode(part: &str) -> Result<String, String> {
        let bytes = part.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b'%' => {
                    let hex = part
                        .get(i + 1..i + 3)
                        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                        .ok_or_else(|| format!("bad percent-escape in {part:?}"))?;
                    out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                    i += 3;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| format!("{part:?} is not UTF-8 once decoded"))
    }
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` encoding of one value (unreserved bytes kept,
/// everything else `%XX`, so a space is `%20`).
pub fn form_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A form body from name/value pairs, in the given order.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{}={}", form_escape(n), form_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// E.164: `+`, a non-zero digit, at most 15 digits in all.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// A sender Twilio can hold: an E.164 number, a short code (3–8 digits) or an
/// alphanumeric sender id (1–11 letters, digits or spaces, at least one letter).
fn is_sender(s: &str) -> bool {
    is_e164(s)
        || ((3..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        || ((1..=11).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
            && s.bytes().any(|b| b.is_ascii_alphabetic()))
}

/// GSM 03.38 basic character set (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (escape + septet: two each).
const GSM7_EXTENSION: &str = "\x0c^{}\\[~]|€";

/// `(segments, "gsm7" | "ucs2")` for an SMS body, as carriers split it: GSM-7 160 in
/// one segment or 153 per part (an escape pair is never split); otherwise UCS-2, 70 in
/// one or 67 per part, in UTF-16 code units (a surrogate pair is never split).
/// Written independently of Tayori's counter, to check what it reports.
pub fn segments(text: &str) -> (usize, &'static str) {
    let gsm: Option<Vec<usize>> = text
        .chars()
        .map(|c| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .collect();
    let (units, single, part, encoding) = match gsm {
        Some(units) => (units, 160, 153, "gsm7"),
        None => (text.chars().map(char::len_utf16).collect(), 70, 67, "ucs2"),
    };
    let total: usize = units.iter().sum();
    if total <= single {
        return (1, encoding);
    }
    let (mut count, mut used) = (1, 0);
    for u in units {
        if used + u > part {
            count += 1;
            used = 0;
        }
        used += u;
    }
    (count, encoding)
}

/// How the server answers a request that passed every check.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 201 with the Message resource: `sid` `SM…`, `status` `queued`, `num_segments`.
    Created,
    /// 400 code 21211: the `To` number is not a valid phone number.
    InvalidTo,
    /// 400 code 21610: the recipient replied STOP (unsubscribed).
    Unsubscribed,
    /// 429 code 20429: too many concurrent requests.
    TooManyRequests,
    /// 500 code 20500: an internal server error.
    ServerError,
    /// 401 code 20003: authentication failed.
    Unauthorized,
    /// Any error: HTTP status, Twilio code, message.
    Error(u16, u64, String),
    /// Waits, then answers like [`Reply::Created`] (for client timeouts).
    Slow(Duration),
}

/// One request as the server received and answered it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path only, without the query.
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The decoded form fields in the order sent (empty when the body is not a form).
    pub form: Vec<(String, String)>,
    /// What the server answered.
    pub status: u16,
    /// The JSON the server answered with.
    pub answer: Value,
    /// Spec/contract violations found in this request (empty = valid), each
    /// `property: message`.
    pub violations: Vec<String>,
}

impl Recorded {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a form field (exact name).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The sid of the Message this request created (201 only).
    pub fn sid(&self) -> Option<&str> {
        (self.status == 201)
            .then(|| self.answer["sid"].as_str())
            .flatten()
    }
}

struct ServerState {
    account_sid: String,
    token: String,
    scripts: HashMap<String, VecDeque<Reply>>,
    default: Reply,
    requests: Vec<Recorded>,
    rng: u64,
}

impl ServerState {
    fn next_u64(&mut self) -> u64 {
        // xorshift64*: plenty for ids in tests.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A prefix and 32 hexadecimal digits, as Twilio's SIDs look.
    fn sid(&mut self, prefix: &str) -> String {
        format!("{prefix}{:016x}{:016x}", self.next_u64(), self.next_u64())
    }
}

/// The fake Twilio API: the kit's [`FakeServer`] (a free port of 127.0.0.1, its own
/// tokio runtime on a background thread) answering as this module says. Stops when
/// dropped.
pub struct TwilioApi {
    server: FakeServer<ServerState>,
}

impl TwilioApi {
    /// Starts the server for one account: `account_sid` (`AC` + 32 hex digits) and its
    /// valid auth token.
    pub fn start(account_sid: &str, token: &str) -> TwilioApi {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let state = ServerState {
            account_sid: account_sid.to_string(),
            token: token.to_string(),
            scripts: HashMap::new(),
            default: Reply::Created,
            requests: Vec::new(),
            rng: seed | 1,
        };
        // Parse the spec here, so a broken spec fails the test, not a request.
        request_schema();
        response_properties();
        let server = FakeServer::start("twilio-api", state, |st, req| answer(st, &req));
        // The port in the seed: two servers started in the same nanosecond differ.
        let port = server.port();
        server.state().rng = (seed ^ (u64::from(port) << 48)) | 1;
        TwilioApi { server }
    }

    /// A raw HTTP/1.1 POST with exactly these headers: (HTTP status, JSON answer).
    pub fn post_raw(&self, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let (status, body) = self.server.request("POST", path, headers, body);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the `api_base` for the client.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.server.state()
    }

    /// The endpoint's path for this server's account.
    pub fn messages_path(&self) -> String {
        let sid = self.lock().account_sid.clone();
        MESSAGES_PATH.replace("{AccountSid}", &sid)
    }

    /// The next valid requests to `to` (E.164, as sent) get these replies, in order,
    /// then the default. Replaces whatever was left of an earlier script for `to`.
    pub fn script(&self, to: &str, replies: Vec<Reply>) {
        self.lock().scripts.insert(to.to_string(), replies.into());
    }

    /// `reply` for the next `n` valid requests to `to`, then 201.
    pub fn fail_times(&self, to: &str, reply: Reply, n: usize) {
        let mut replies = vec![reply; n];
        replies.push(Reply::Created);
        self.script(to, replies);
    }

    /// The reply once a number's script is used up (initially [`Reply::Created`]).
    pub fn set_default(&self, reply: Reply) {
        self.lock().default = reply;
    }

    /// Changes the valid auth token (a rotated token being fixed).
    pub fn set_token(&self, token: &str) {
        self.lock().token = token.to_string();
    }

    /// Everything received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests that created a Message (answered 201).
    pub fn messages(&self) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.status == 201)
            .cloned()
            .collect()
    }

    /// All violations of all requests, each `"{path}: {property}: {message}"`.
    pub fn violations(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .flat_map(|r| r.violations.iter().map(move |v| format!("{}: {v}", r.path)))
            .collect()
    }

    /// Panics, listing them, if any request violated the spec or the contract.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "requests to the Twilio API violated the spec:\n{}",
            v.join("\n")
        );
    }

    /// Waits until at least `n` requests have arrived or `timeout` passed, and returns
    /// what arrived (the caller asserts on it).
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n || Instant::now() >= deadline {
                return requests;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Twilio's error shape.
pub fn error_body(status: u16, code: u64, message: &str) -> Value {
    json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    })
}

fn respond(status: u16, request_id: &str, body: &Value) -> Response {
    crate::server::response(
        status,
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("twilio-request-id", request_id),
        ],
        body.to_string(),
    )
}

/// A violation and the Twilio error code the real API answers it with, if known.
struct Found {
    violation: Violation,
    code: Option<u64>,
}

fn found(property: &str, message: impl Into<String>, code: Option<u64>) -> Found {
    Found {
        violation: Violation::new(property, message),
        code,
    }
}

/// Everything wrong with a decoded CreateMessage form: the spec's schema (each field a
/// known property of the right type) and the facts it does not encode.
pub fn form_violations(form: &[(String, String)]) -> Vec<Violation> {
    form_findings(form)
        .into_iter()
        .map(|f| f.violation)
        .collect()
}

fn form_findings(form: &[(String, String)]) -> Vec<Found> {
    let schema = request_schema();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .expect("CreateMessageRequest properties");
    let validator = Validator::new(spec());
    let mut out = Vec::new();
    // The form as the JSON object the schema describes: typed values, arrays for
    // repeated (array) parameters.
    let mut object = Map::new();
    for (name, value) in form {
        let Some(prop) = properties.get(name) else {
            out.push(found(
                name,
                "unknown parameter: not a CreateMessageRequest property",
                None,
            ));
            continue;
        };
        let prop = match prop.get("$ref").and_then(Value::as_str) {
            Some(r) => validator.resolve(r).unwrap_or(prop),
            None => prop,
        };
        let ty = prop.get("type").and_then(Value::as_str).unwrap_or("string");
        let item_ty = prop
            .pointer("/items/type")
            .and_then(Value::as_str)
            .unwrap_or("string");
        let typed = match typed_value(if ty == "array" { item_ty } else { ty }, value) {
            Ok(v) => v,
            Err(e) => {
                out.push(found(name, e, None));
                continue;
            }
        };
        if ty == "array" {
            object
                .entry(name.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
                .as_array_mut()
                .expect("array")
                .push(typed);
        } else if object.insert(name.clone(), typed).is_some() {
            out.push(found(
                name,
                "given more than once (only array parameters may repeat)",
                None,
            ));
        }
    }
    let instance = Value::Object(object.clone());
    for v in validator.validate(schema, &instance, "") {
        let code = (v.property == "To" && v.message == "must be specified").then_some(21604);
        out.push(Found { violation: v, code });
    }
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    if let Some(to) = text("To") {
        if !is_e164(to) {
            out.push(found(
                "To",
                format!("must be an E.164 number (+ and up to 15 digits), found {to:?}"),
                Some(21211),
            ));
        }
    }
    match (text("From"), text("MessagingServiceSid")) {
        (None, None) => out.push(found(
            "From",
            "`From` or `MessagingServiceSid` is required (x-twilio.conditional)",
            Some(21603),
        )),
        (Some(from), _) if !is_sender(from) => out.push(found(
            "From",
            format!("must be an E.164 number, a short code or an alphanumeric sender id, found {from:?}"),
            Some(21212),
        )),
        _ => {}
    }
    match text("Body") {
        None | Some("") => out.push(found(
            "Body",
            "must be given and not empty (Tayori sends text only, so neither MediaUrl nor ContentSid may stand in for it)",
            Some(21602),
        )),
        Some(body) => {
            let n = body.chars().count();
            if n > MAX_BODY_CHARS {
                out.push(found(
                    "Body",
                    format!("at most {MAX_BODY_CHARS} characters (found {n})"),
                    Some(21617),
                ));
            }
        }
    }
    for name in ["StatusCallback"] {
        if let Some(url) = text(name) {
            if let Some(problem) = callback_problem(url) {
                out.push(found(name, problem, Some(21609)));
            }
        }
    }
    out
}

/// A form value as the schema's type: strings stay, integers and numbers must parse,
/// booleans are `true` or `false`.
fn typed_value(ty: &str, value: &str) -> Result<Value, String> {
    match ty {
        "integer" => value
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("must be an integer, found {value:?}")),
        "number" => value
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::from)
            .ok_or_else(|| format!("must be a number, found {value:?}")),
        "boolean" => match value {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("must be true or false, found {value:?}")),
        },
        _ => Ok(Value::String(value.to_string())),
    }
}

/// Why Twilio would refuse a callback URL (the spec's description: a valid host name,
/// no underscores), if it would.
fn callback_problem(url: &str) -> Option<String> {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Some(format!("must be an http(s) URL, found {url:?}"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    if host.is_empty() {
        return Some(format!("has no host name: {url:?}"));
    }
    if host.contains('_') {
        return Some(format!("underscores are not allowed in the host: {url:?}"));
    }
    None
}

/// The Message resource of a 201: every property of the spec's
/// `api.v2010.account.message`.
fn created(st: &mut ServerState, form: &[(String, String)]) -> Value {
    let get = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let sid = st.sid("SM");
    let body = get("Body").unwrap_or_default();
    let (segments, _) = segments(&body);
    let account = st.account_sid.clone();
    let now = "Thu, 24 Aug 2023 05:01:45 +0000";
    json!({
        "body": body,
        "num_segments": segments.to_string(),
        "direction": "outbound-api",
        "from": get("From"),
        "to": get("To"),
        "date_updated": now,
        "price": null,
        "error_message": null,
        "uri": format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
        "account_sid": account,
        "num_media": "0",
        "status": "queued",
        "messaging_service_sid": get("MessagingServiceSid"),
        "sid": sid,
        "date_sent": null,
        "date_created": now,
        "error_code": null,
        "price_unit": "USD",
        "api_version": "2010-04-01",
        "subresource_uris": {
            "media": format!("/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json")
        },
    })
}

/// Decides the answer and records the request; runs under the state lock.
fn answer(st: &mut ServerState, req: &Incoming) -> Answer {
    let (response, delay) = decide(st, req);
    Answer::after(response, delay)
}

fn decide(st: &mut ServerState, req: &Incoming) -> (Response, Option<Duration>) {
    let (method, uri, raw_body) = (&req.method, &req.uri, &req.body[..]);
    let request_id = st.sid("RQ");
    let path = uri.path().to_string();
    let header_list = req.header_list();
    let header = |name: &str| req.header(name);
    let mut findings: Vec<Found> = Vec::new();
    let form = match std::str::from_utf8(raw_body)
        .map_err(|e| e.to_string())
        .and_then(form_decode)
    {
        Ok(form) => form,
        Err(e) => {
            findings.push(found("(body)", format!("not a valid form: {e}"), None));
            Vec::new()
        }
    };
    let query = uri.query().map(str::to_string);
    let record = |st: &mut ServerState, status: u16, answer: &Value, findings: &[Found]| {
        st.requests.push(Recorded {
            method: method.as_str().to_string(),
            path: path.clone(),
            query: query.clone(),
            headers: header_list.clone(),
            form: form.clone(),
            status,
            answer: answer.clone(),
            violations: findings.iter().map(|f| f.violation.to_string()).collect(),
        });
    };

    // 1. Route: /2010-04-01/Accounts/{AccountSid}/Messages.json.
    let path_sid = path
        .strip_prefix("/2010-04-01/Accounts/")
        .and_then(|rest| rest.strip_suffix("/Messages.json"))
        .filter(|sid| !sid.contains('/'));
    let Some(path_sid) = path_sid else {
        let body = error_body(
            404,
            20404,
            &format!("The requested resource {path} was not found"),
        );
        findings.push(found(
            "(path)",
            format!("{method} {path}: this server plays only POST {MESSAGES_PATH}"),
            None,
        ));
        record(st, 404, &body, &findings);
        return (respond(404, &request_id, &body), None);
    };
    if method != Method::POST {
        let body = error_body(405, 20004, "Method not allowed");
        findings.push(found(
            "(method)",
            format!("{method} {path}: the fake plays only POST (CreateMessage)"),
            None,
        ));
        record(st, 405, &body, &findings);
        return (respond(405, &request_id, &body), None);
    }
    // The AccountSid path parameter, against the spec's schema.
    let spec = spec();
    let validator = Validator::new(spec);
    for param in spec["parameters"].as_array().into_iter().flatten() {
        if param["name"] == "AccountSid" && param["in"] == "path" {
            for v in validator.validate(&param["schema"], &json!(path_sid), "AccountSid") {
                findings.push(Found {
                    violation: v,
                    code: None,
                });
            }
        }
    }
    if path_sid != st.account_sid {
        findings.push(found(
            "AccountSid",
            format!(
                "the path names account {path_sid:?}, the configured one is {:?}",
                st.account_sid
            ),
            None,
        ));
    }

    // 2. Authentication: the spec's `accountSid_authToken`, HTTP basic.
    let credentials = header("authorization").and_then(|value| {
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    });
    let authorized = match &credentials {
        None => {
            findings.push(found(
                "Authorization",
                "missing or not `Basic base64(AccountSid:AuthToken)`",
                None,
            ));
            false
        }
        Some((user, password)) => {
            if *user != st.account_sid {
                findings.push(found(
                    "Authorization",
                    format!(
                        "the basic-auth user must be the account SID {:?}, found {user:?}",
                        st.account_sid
                    ),
                    None,
                ));
            }
            *user == st.account_sid && *password == st.token
        }
    };

    // The form, as the spec's requestBody says.
    let essence = header("content-type").map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if essence.as_deref() != Some(FORM) {
        findings.push(found(
            "Content-Type",
            format!("must be {FORM}, found {essence:?}"),
            None,
        ));
    }
    findings.extend(form_findings(&form));

    if !authorized {
        let body = error_body(401, 20003, "Authenticate");
        record(st, 401, &body, &findings);
        return (respond(401, &request_id, &body), None);
    }
    if let Some(first) = findings.first() {
        let code = findings.iter().find_map(|f| f.code).unwrap_or(21600);
        let body = error_body(400, code, &format!("{}", first.violation));
        record(st, 400, &body, &findings);
        return (respond(400, &request_id, &body), None);
    }

    // 4. The number's script, then the default.
    let to = form
        .iter()
        .find(|(n, _)| n == "To")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let scripted = st.scripts.get_mut(&to).and_then(VecDeque::pop_front);
    let reply = scripted.unwrap_or_else(|| st.default.clone());
    let (status, body, delay) = match reply {
        Reply::Created => (201, created(st, &form), None),
        Reply::Slow(d) => (201, created(st, &form), Some(d)),
        Reply::InvalidTo => (
            400,
            error_body(
                400,
                21211,
                &format!("Invalid 'To' Phone Number: {}", to.replace('+', "")),
            ),
            None,
        ),
        Reply::Unsubscribed => (
            400,
            error_body(400, 21610, "Attempt to send to unsubscribed recipient"),
            None,
        ),
        Reply::TooManyRequests => (429, error_body(429, 20429, "Too Many Requests"), None),
        Reply::ServerError => (
            500,
            error_body(500, 20500, "An internal server error has occurred"),
            None,
        ),
        Reply::Unauthorized => (401, error_body(401, 20003, "Authenticate"), None),
        Reply::Error(status, code, message) => (status, error_body(status, code, &message), None),
    };
    record(st, status, &body, &[]);
    (respond(status, &request_id, &body), delay)
}
