//! A real HTTP server that plays the LINE Messaging API push endpoint
//! (`POST /v2/bot/message/push`) and the notification message endpoint
//! (`POST /bot/pnp/push`: `to` must be a SHA-256 in lowercase hex, 200 answers
//! `{}`, 422 is [`Reply::Unprocessable`], and there is no retry key) for the
//! integration tests, and checks every request
//! against LINE's official OpenAPI description (`tests/specs/line-messaging-api.json`,
//! embedded at compile time) plus the limits the description does not encode
//! (`/work/shared/specs/README.md`: text ≤ 5000 UTF-16 code units, altText ≤ 1500,
//! at most one `customAggregationUnits` entry matching `^[a-zA-Z0-9_]{1,30}$`).
//!
//! Tests use it as `tayori_testkit::line_api`; it runs on the kit's
//! [`FakeServer`](crate::server::FakeServer).
//!
//! How a request is answered, in this order:
//! 0. the quota and per-unit statistics reads (`GET`): as [`reads`] says;
//! 1. a path other than the push endpoint: 404 (and a violation); another method: 405;
//! 2. no `Authorization: Bearer …` header at all: 401 and a violation; a wrong token: 401
//!    (no violation: a revoked token is a situation to handle, not a client bug);
//! 3. any violation (a malformed `X-Line-Retry-Key`, a `Content-Type` other than
//!    `application/json`, a body the spec rejects): 400 in LINE's error shape;
//! 4. an `X-Line-Retry-Key` already accepted (answered 200): 409 with
//!    `x-line-accepted-request-id` and the original `sentMessages`, whatever the script;
//! 5. otherwise the next scripted [`Reply`], or the default one.
//!
//! The body and headers are validated whatever the answer, so a request that got a
//! 401 still records its violations. Only step 5 consumes the script. Every answer
//! carries a fresh `x-line-request-id`.

pub mod reads;
pub mod schema;

use std::collections::{HashMap, VecDeque};
use std::sync::{MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

use crate::server::{Answer, FakeServer, Incoming};
use schema::{Validator, Violation};

/// The push endpoint's path, as in the spec.
pub const PUSH_PATH: &str = "/v2/bot/message/push";
/// The notification message (PNP) endpoint's path, as in the spec.
pub const PNP_PATH: &str = "/bot/pnp/push";
/// Text message limit in UTF-16 code units (not in the spec).
pub const MAX_TEXT_UTF16: usize = 5000;
/// `altText` limit (not in the spec), counted in UTF-16 code units like `text`.
pub const MAX_ALT_TEXT_UTF16: usize = 1500;

const MESSAGING_API_JSON: &str = include_str!("../../tests/specs/line-messaging-api.json");
const WEBHOOK_JSON: &str = include_str!("../../tests/specs/line-webhook.json");

/// LINE's official Messaging API description (vendored, see `tests/specs/README.md`).
pub fn messaging_api_spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_json::from_str(MESSAGING_API_JSON).expect("tests/specs/line-messaging-api.json")
    })
}

/// LINE's official webhook description: events modelled as `POST /callback`.
pub fn webhook_spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(WEBHOOK_JSON).expect("tests/specs/line-webhook.json"))
}

/// The operation object for `method` + `path` in `spec` (paths without templates).
pub fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    spec.get("paths")?
        .get(path)?
        .get(method.to_ascii_lowercase())
}

/// Violations of the `application/json` request body schema of an operation.
pub fn request_body_violations(
    spec: &Value,
    method: &str,
    path: &str,
    body: &Value,
) -> Vec<Violation> {
    let Some(op) = operation(spec, method, path) else {
        return vec![Violation::new(
            "(path)",
            format!("{method} {path} is not in the spec"),
        )];
    };
    let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") else {
        return vec![Violation::new(
            "(path)",
            format!("{method} {path} takes no JSON body"),
        )];
    };
    Validator::new(spec).validate(schema, body, "")
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Everything wrong with a push request body: the spec's `PushMessageRequest` schema,
/// then the limits LINE documents but the spec leaves out.
pub fn push_violations(body: &Value) -> Vec<Violation> {
    let mut out = request_body_violations(messaging_api_spec(), "POST", PUSH_PATH, body);
    out.extend(message_limit_violations(body));
    out
}

/// Everything wrong with a notification message body: the spec's
/// `PnpMessagesRequest`, the message limits, and `to` as LINE describes it ("a
/// phone number normalized to E.164 and hashed with SHA256": 64 lowercase hex
/// digits, never the number itself).
pub fn pnp_violations(body: &Value) -> Vec<Violation> {
    let mut out = request_body_violations(messaging_api_spec(), "POST", PNP_PATH, body);
    out.extend(message_limit_violations(body));
    if let Some(to) = body.get("to").and_then(Value::as_str) {
        let hashed = to.len() == 64
            && to
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hashed {
            out.push(Violation::new(
                "to",
                "must be the SHA-256 (lowercase hex) of an E.164 number",
            ));
        }
    }
    out
}

/// The limits LINE documents for `messages` and `customAggregationUnits` but
/// the spec leaves out.
fn message_limit_violations(body: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for (i, m) in messages.iter().enumerate() {
            let is_text = matches!(
                m.get("type").and_then(Value::as_str),
                Some("text" | "textV2")
            );
            if let (true, Some(text)) = (is_text, m.get("text").and_then(Value::as_str)) {
                let n = utf16_len(text);
                if n > MAX_TEXT_UTF16 {
                    out.push(Violation::new(
                        format!("messages[{i}].text"),
                        format!("length must be between 0 and {MAX_TEXT_UTF16} UTF-16 code units (found {n})"),
                    ));
                }
            }
            if let Some(alt) = m.get("altText").and_then(Value::as_str) {
                let n = utf16_len(alt);
                if n > MAX_ALT_TEXT_UTF16 {
                    out.push(Violation::new(
                        format!("messages[{i}].altText"),
                        format!("length must be between 0 and {MAX_ALT_TEXT_UTF16} UTF-16 code units (found {n})"),
                    ));
                }
            }
        }
    }
    if let Some(units) = body.get("customAggregationUnits").and_then(Value::as_array) {
        if units.len() > 1 {
            out.push(Violation::new(
                "customAggregationUnits",
                format!("at most 1 aggregation unit (found {})", units.len()),
            ));
        }
        for (i, unit) in units.iter().enumerate() {
            let ok = unit
                .as_str()
                .is_some_and(|u| schema::pattern_matches("^[a-zA-Z0-9_]{1,30}$", u) == Ok(true));
            if !ok {
                out.push(Violation::new(
                    format!("customAggregationUnits[{i}]"),
                    "must match ^[a-zA-Z0-9_]{1,30}$",
                ));
            }
        }
    }
    out
}

/// Violations of a webhook body (`{destination, events}`) against the official webhook
/// description, for tests that build webhook requests to send to Tayori.
pub fn webhook_violations(body: &Value) -> Vec<Violation> {
    request_body_violations(webhook_spec(), "POST", "/callback", body)
}

/// How the server answers a request that passed every check.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 `{"sentMessages":[{"id":"<digits>","quoteToken":"..."}, …]}`, one per message.
    Ok,
    /// 400 `{"message": <the string>, "details": []}`, e.g. `"Failed to send messages"`
    /// as LINE answers for an unknown user id.
    BadRequest(String),
    /// 401, LINE's authentication-failed message.
    Unauthorized,
    /// 403 (the channel may not use this API).
    Forbidden,
    /// 429, the per-second rate limit (no `Retry-After`, like LINE).
    TooManyRequests,
    /// 429 `"You have reached your monthly limit."`.
    MonthlyLimit,
    /// 500 `"Internal server error"`.
    ServerError,
    /// 422 `{"message": <the string>}`: a notification message LINE could not
    /// deliver (no LINE user for the number, or one who has not agreed).
    Unprocessable(String),
    /// Waits, then answers like [`Reply::Ok`]: for client timeouts. The message counts as
    /// delivered (status 200 is recorded, and the retry key is accepted) as soon as the
    /// request arrives, like a real send whose answer the client never saw; a retry with
    /// the same key then gets 409.
    Slow(Duration),
}

/// One request as the server received and answered it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path only, without the query.
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Null` if it is not JSON.
    pub body: Value,
    /// `X-Line-Retry-Key`, as sent.
    pub retry_key: Option<String>,
    /// What the server answered.
    pub status: u16,
    /// Spec/contract violations found in this request (empty = valid), each
    /// `property: message`, e.g. `messages[0].text: must be specified`.
    pub violations: Vec<String>,
    /// The `x-line-request-id` the server answered with.
    pub request_id: String,
    /// The query string, as sent (empty without one).
    pub query: String,
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
}

struct Accepted {
    request_id: String,
    sent_messages: Value,
}

struct ServerState {
    token: String,
    script: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Recorded>,
    accepted: HashMap<String, Accepted>,
    rng: u64,
    /// What the quota and statistics endpoints answer ([`reads`]).
    reads: reads::Reads,
}

impl ServerState {
    fn next_u64(&mut self) -> u64 {
        // xorshift64*: plenty for ids in tests.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random version-4 UUID, as LINE's `x-line-request-id` looks.
    fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// One `sentMessages` entry: an 18-digit id and a quote token.
    fn sent_message(&mut self) -> Value {
        let id = format!(
            "{}",
            100_000_000_000_000_000 + self.next_u64() % 900_000_000_000_000_000
        );
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let quote: String = (0..64)
            .map(|_| ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize] as char)
            .collect();
        json!({"id": id, "quoteToken": quote})
    }
}

/// The fake LINE API: the kit's [`FakeServer`] (a free port of 127.0.0.1, its own
/// tokio runtime on a background thread) answering as this module says. Stops when
/// dropped.
pub struct LineApi {
    server: FakeServer<ServerState>,
}

impl LineApi {
    /// Starts the server; `token` is the valid channel access token.
    pub fn start(token: &str) -> LineApi {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let state = ServerState {
            token: token.to_string(),
            script: VecDeque::new(),
            default: Reply::Ok,
            requests: Vec::new(),
            accepted: HashMap::new(),
            rng: seed | 1,
            reads: reads::Reads::default(),
        };
        // Parse the spec here, so a broken spec fails the test, not a request.
        messaging_api_spec();
        let server = FakeServer::start("line-api", state, |st, req| answer(st, &req));
        // The port in the seed: two servers started in the same nanosecond differ.
        let port = server.port();
        server.state().rng = (seed ^ (u64::from(port) << 48)) | 1;
        LineApi { server }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the API base URL for the client.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.server.state()
    }

    /// The next requests that pass every check get these replies, in order, then the
    /// default. Replaces whatever was left of an earlier script.
    pub fn script(&self, replies: Vec<Reply>) {
        self.lock().script = replies.into();
    }

    /// The reply once the script is used up (initially [`Reply::Ok`]).
    pub fn set_default(&self, reply: Reply) {
        self.lock().default = reply;
    }

    /// Changes the valid token (a revoked token being fixed).
    pub fn set_token(&self, token: &str) {
        self.lock().token = token.to_string();
    }

    /// What `GET /v2/bot/message/quota` answers (initially `{"type":"none"}`);
    /// panics if the spec does not allow it.
    pub fn set_quota(&self, answer: Value) {
        reads::check_answer(reads::QUOTA_PATH, &answer);
        self.lock().reads.quota = answer;
    }

    /// The `totalUsage` `GET /v2/bot/message/quota/consumption` answers (initially 0).
    pub fn set_consumption(&self, total_usage: u64) {
        self.lock().reads.consumption = json!({ "totalUsage": total_usage });
    }

    /// What the per-unit statistics endpoint answers for `unit` (whatever the
    /// dates); other units get [`reads::empty_unit_stats`]. Panics if the spec
    /// does not allow it.
    pub fn set_unit_stats(&self, unit: &str, answer: Value) {
        reads::check_answer(reads::UNIT_STATS_PATH, &answer);
        self.lock().reads.unit_stats.insert(unit.to_owned(), answer);
    }

    /// Everything received, in order, except the quota and statistics reads
    /// (a daemon makes them on its own schedule; [`LineApi::reads`] has them).
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|r| !reads::is_read(&r.path))
            .cloned()
            .collect()
    }

    /// A raw HTTP/1.1 request to the server (a test's own, e.g. one the spec
    /// forbids): (HTTP status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        self.server.request(method, path, headers, body)
    }

    /// The quota and statistics reads received, in order.
    pub fn reads(&self) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|r| reads::is_read(&r.path))
            .cloned()
            .collect()
    }

    /// Requests that delivered a message: answered 200 (a 409 replay is not one).
    pub fn deliveries(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
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
            "requests to the LINE API violated the spec:\n{}",
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

    /// Like [`LineApi::wait_for_requests`], counting deliveries only.
    pub fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let deliveries = self.deliveries();
            if deliveries.len() >= n || Instant::now() >= deadline {
                return deliveries;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn error_body(message: &str) -> Value {
    json!({ "message": message })
}

fn respond(status: u16, request_id: &str, body: &Value, extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![("x-line-request-id", request_id)];
    headers.extend_from_slice(extra);
    crate::server::json_response(status, &headers, body)
}

/// Decides the answer and records the request; runs under the state lock.
fn answer(st: &mut ServerState, req: &Incoming) -> Answer {
    let (response, delay) = decide(st, req);
    Answer::after(response, delay)
}

fn decide(st: &mut ServerState, req: &Incoming) -> (Response, Option<Duration>) {
    let (method, raw_body) = (&req.method, &req.body[..]);
    let request_id = st.uuid();
    let path = req.path().to_string();
    let header_list = req.header_list();
    let header = |name: &str| req.header(name);
    let parsed: Result<Value, String> = serde_json::from_slice(raw_body).map_err(|e| e.to_string());
    let retry_key = header("x-line-retry-key");
    let mut violations: Vec<Violation> = Vec::new();
    let record = |st: &mut ServerState, status: u16, violations: &[Violation]| {
        st.requests.push(Recorded {
            method: method.as_str().to_string(),
            path: path.clone(),
            headers: header_list.clone(),
            body: parsed.clone().unwrap_or(Value::Null),
            retry_key: retry_key.clone(),
            status,
            violations: violations.iter().map(ToString::to_string).collect(),
            request_id: request_id.clone(),
            query: req.uri.query().unwrap_or("").to_owned(),
        });
    };

    // 0. The quota and statistics reads.
    if let Some((status, body, violations)) = reads::answer(st, req) {
        record(st, status, &violations);
        return (respond(status, &request_id, &body, &[]), None);
    }

    // 1. Route.
    let pnp = path == PNP_PATH;
    if path != PUSH_PATH && !pnp {
        let v = Violation::new(
            "(path)",
            format!("{method} {path}: this server plays only POST {PUSH_PATH} and {PNP_PATH}"),
        );
        record(st, 404, &[v]);
        return (
            respond(404, &request_id, &error_body("Not found"), &[]),
            None,
        );
    }
    if method != Method::POST {
        let v = Violation::new(
            "(method)",
            format!("{method} {path}: the spec has only POST"),
        );
        record(st, 405, &[v]);
        return (
            respond(405, &request_id, &error_body("Method not allowed"), &[]),
            None,
        );
    }
    let spec = messaging_api_spec();
    let op = operation(spec, "POST", &path).expect("the spec has both POST paths");

    // 2. Authentication (security scheme `Bearer`: http, scheme bearer).
    let authorized = match header("authorization") {
        None => {
            violations.push(Violation::new(
                "Authorization",
                "header missing; the spec requires `Authorization: Bearer <channel access token>`",
            ));
            false
        }
        Some(value) => {
            let token = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
                .filter(|t| !t.is_empty());
            match token {
                None => {
                    violations.push(Violation::new(
                        "Authorization",
                        format!("must be `Bearer <channel access token>`, found {value:?}"),
                    ));
                    false
                }
                Some(t) => t == st.token,
            }
        }
    };

    // 3. Header parameters from the spec (X-Line-Retry-Key: string, format uuid).
    let validator = Validator::new(spec);
    let mut header_violation = false;
    for param in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if param.get("in").and_then(Value::as_str) != Some("header") {
            continue;
        }
        let Some(name) = param.get("name").and_then(Value::as_str) else {
            continue;
        };
        match (header(&name.to_ascii_lowercase()), param.get("schema")) {
            (Some(value), Some(schema)) => {
                let found = validator.validate(schema, &Value::String(value), name);
                header_violation |= !found.is_empty();
                violations.extend(found);
            }
            (None, _) if param.get("required") == Some(&Value::Bool(true)) => {
                header_violation = true;
                violations.push(Violation::new(name, "required header missing"));
            }
            _ => {}
        }
    }

    // Content-Type must be one the spec's requestBody lists.
    let content_types: Vec<&String> = op
        .pointer("/requestBody/content")
        .and_then(Value::as_object)
        .map(|c| c.keys().collect())
        .unwrap_or_default();
    let essence = header("content-type").map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match &essence {
        Some(e) if content_types.contains(&e) => {}
        other => {
            header_violation = true;
            violations.push(Violation::new(
                "Content-Type",
                format!(
                    "must be application/json, found {}",
                    other
                        .as_deref()
                        .map_or("no Content-Type".to_string(), |e| format!("{e:?}"))
                ),
            ));
        }
    }

    // The body, against the spec and the documented limits.
    match &parsed {
        Ok(body) if pnp => violations.extend(pnp_violations(body)),
        Ok(body) => violations.extend(push_violations(body)),
        Err(e) => violations.push(Violation::new("(body)", format!("not valid JSON: {e}"))),
    }

    if !authorized {
        record(st, 401, &violations);
        let body = error_body(
            "Authentication failed. Confirm that the access token in the authorization header is valid.",
        );
        return (respond(401, &request_id, &body, &[]), None);
    }
    if !violations.is_empty() {
        record(st, 400, &violations);
        let details: Vec<Value> = violations
            .iter()
            .map(|v| json!({"message": v.message, "property": v.property}))
            .collect();
        let retry_key_bad = violations.iter().any(|v| v.property == "X-Line-Retry-Key");
        let message = if retry_key_bad {
            "The value for the 'X-Line-Retry-Key' header is invalid".to_string()
        } else if header_violation {
            "The request has error(s) in its headers".to_string()
        } else {
            format!("The request body has {} error(s)", violations.len())
        };
        let body = json!({"message": message, "details": details});
        return (respond(400, &request_id, &body, &[]), None);
    }

    // 4. A retry key already accepted (push only: PNP has none).
    let replay_key = retry_key.as_ref().filter(|_| !pnp);
    if let Some(accepted) = replay_key.and_then(|k| st.accepted.get(k)) {
        let original = accepted.request_id.clone();
        let body = json!({
            "message": "The retry key is already accepted",
            "sentMessages": accepted.sent_messages,
        });
        record(st, 409, &[]);
        let extra = [("x-line-accepted-request-id", original.as_str())];
        return (respond(409, &request_id, &body, &extra), None);
    }

    // 5. The script, then the default.
    let reply = st.script.pop_front().unwrap_or_else(|| st.default.clone());
    let (status, body, delay) = match reply {
        Reply::Ok | Reply::Slow(_) => {
            let count = parsed
                .as_ref()
                .ok()
                .and_then(|b| b.get("messages"))
                .and_then(Value::as_array)
                .map_or(1, Vec::len);
            let sent: Vec<Value> = (0..count).map(|_| st.sent_message()).collect();
            let sent = Value::Array(sent);
            if let Some(key) = replay_key {
                st.accepted.insert(
                    key.clone(),
                    Accepted {
                        request_id: request_id.clone(),
                        sent_messages: sent.clone(),
                    },
                );
            }
            let delay = match reply {
                Reply::Slow(d) => Some(d),
                _ => None,
            };
            // PNP's 200 has no body in the spec; LINE sends `{}`.
            let body = if pnp {
                json!({})
            } else {
                json!({ "sentMessages": sent })
            };
            (200, body, delay)
        }
        Reply::Unprocessable(message) => (422, error_body(&message), None),
        Reply::BadRequest(message) => (400, json!({"message": message, "details": []}), None),
        Reply::Unauthorized => (
            401,
            error_body(
                "Authentication failed. Confirm that the access token in the authorization header is valid.",
            ),
            None,
        ),
        Reply::Forbidden => (
            403,
            error_body("Access to this API is not available for your account"),
            None,
        ),
        Reply::TooManyRequests => (
            429,
            error_body("The API rate limit has been exceeded. Try again later."),
            None,
        ),
        Reply::MonthlyLimit => (429, error_body("You have reached your monthly limit."), None),
        Reply::ServerError => (500, error_body("Internal server error"), None),
    };
    record(st, status, &[]);
    (respond(status, &request_id, &body, &[]), delay)
}
