//! A real HTTP server that plays Vonage's legacy SMS API (`POST /sms/json`) for the
//! integration tests, and checks every request against the documented shape: a form
//! (`application/x-www-form-urlencoded`) of known parameters, each at most once;
//! `api_key` and `api_secret`; `from` (digits, or an alphanumeric sender id of at most
//! 11 characters); `to` in international format, digits only (no `+`); a non-empty
//! `text`, with `type=unicode` exactly when it holds a character outside GSM-7 (all
//! Japanese text); `callback` an absolute http(s) URL; `client-ref` at most 100
//! characters.
//!
//! Tests use it as `tayori_testkit::vonage_api`; it runs on the kit's
//! [`FakeServer`](crate::server::FakeServer), and counts segments and decodes forms
//! with [`crate::twilio_api`]'s helpers, written independently of Tayori's own.
//!
//! Like the real API it answers HTTP 200 to everything on its path, with the outcome in
//! `messages[].status`, one entry per segment:
//! 1. another path: 404, another method: 405 (and a violation);
//! 2. a request that breaks the shape: the status Vonage gives for the first problem
//!    ("2" missing, "3" invalid, "6" invalid message, "15" invalid sender, "23" invalid
//!    callback) and a violation;
//! 3. the right key with a wrong secret: "4" (Bad Credentials), without a violation;
//! 4. otherwise the next [`Reply`] scripted for the `to` number, else "0" for every
//!    segment, each with its own `message-id`.

use std::collections::{HashMap, VecDeque};
use std::sync::MutexGuard;

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Value};

use crate::server::{FakeServer, Incoming, Options};
use crate::twilio_api::{form_decode, segments};

pub const SMS_PATH: &str = "/sms/json";
/// Vonage's limit on `client-ref`.
pub const CLIENT_REF_MAX: usize = 100;
/// The send request's documented parameters.
const KNOWN: &[&str] = &[
    "api_key",
    "api_secret",
    "sig",
    "from",
    "to",
    "text",
    "type",
    "ttl",
    "status-report-req",
    "callback",
    "message-class",
    "udh",
    "protocol-id",
    "body",
    "title",
    "url",
    "validity",
    "client-ref",
    "account-ref",
    "entity-id",
    "content-id",
];
const TYPES: &[&str] = &["text", "binary", "wappush", "unicode", "vcal", "vcard"];

/// How the server answers a valid request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// "0" for every segment.
    Accepted,
    /// "1", Throttled.
    Throttled,
    /// Any status and `error-text` (e.g. "9", "Quota Exceeded - rejected").
    Status(&'static str, &'static str),
}

/// One request as received and answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    /// The decoded form, in the order sent.
    pub form: Vec<(String, String)>,
    pub answer: Value,
    /// What breaks the documented shape (empty: a valid request).
    pub violations: Vec<String>,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `message-id` of every accepted segment, in order.
    pub fn message_ids(&self) -> Vec<String> {
        self.answer["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["status"] == "0")
            .filter_map(|m| m["message-id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Every segment accepted.
    pub fn accepted(&self) -> bool {
        let messages = self.answer["messages"].as_array();
        messages.is_some_and(|m| !m.is_empty() && m.iter().all(|m| m["status"] == "0"))
    }
}

struct ServerState {
    api_key: String,
    api_secret: String,
    scripts: HashMap<String, VecDeque<Reply>>,
    requests: Vec<Recorded>,
    next_id: u64,
}

/// The fake Vonage API: the kit's [`FakeServer`] (a free port of 127.0.0.1, its own
/// runtime on a background thread, axum's default body limit) answering as this
/// module says. Stops when dropped.
pub struct VonageApi {
    server: FakeServer<ServerState>,
}

impl VonageApi {
    /// Starts the server for one account's key and secret.
    pub fn start(api_key: &str, api_secret: &str) -> VonageApi {
        let state = ServerState {
            api_key: api_key.to_owned(),
            api_secret: api_secret.to_owned(),
            scripts: HashMap::new(),
            requests: Vec::new(),
            next_id: 0x0A00_0000_0000_0001,
        };
        let options = Options {
            body_limit: true,
            ..Options::new("vonage-api")
        };
        let server = FakeServer::start_with(options, state, |st, req| answer(st, &req).into());
        VonageApi { server }
    }

    /// `http://127.0.0.1:PORT`: the `api_base` for the client.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.server.state()
    }

    /// The next valid requests to `to` (digits, as sent) get these replies, then
    /// [`Reply::Accepted`].
    pub fn script(&self, to: &str, replies: Vec<Reply>) {
        self.lock().scripts.insert(to.to_owned(), replies.into());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests whose every segment was accepted.
    pub fn accepted(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.accepted())
            .collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .flat_map(|r| r.violations.clone())
            .collect()
    }

    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "requests to the Vonage API broke its documented shape:\n{}",
            v.join("\n")
        );
    }

    /// A raw HTTP/1.1 request to the server: (HTTP status, JSON answer).
    pub fn send_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, Value) {
        let (status, body) = self.server.send_raw(method, path, content_type, body);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

fn respond(status: u16, body: &Value) -> Response {
    crate::server::json_response(status, &[], body)
}

fn failure(status: &str, text: &str) -> Value {
    json!({"message-count": "1", "messages": [{"status": status, "error-text": text}]})
}

/// Everything wrong with a send form, each with the status Vonage answers it with.
pub fn form_problems(form: &[(String, String)]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in form {
        if !KNOWN.contains(&name.as_str()) {
            out.push(("3", format!("{name}: not a parameter of the SMS API")));
        }
        if seen.contains(&name.as_str()) {
            out.push(("3", format!("{name}: given more than once")));
        }
        seen.push(name);
    }
    let get = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    for required in ["api_key", "from", "to"] {
        if get(required).is_none_or(str::is_empty) {
            out.push(("2", format!("{required}: missing")));
        }
    }
    if get("api_secret").is_none() && get("sig").is_none() {
        out.push(("2", "api_secret: missing (and no sig)".into()));
    }
    if let Some(from) = get("from") {
        let number =
            !from.is_empty() && from.len() <= 15 && from.bytes().all(|b| b.is_ascii_digit());
        let alpha = (1..=11).contains(&from.len())
            && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
            && from.bytes().any(|b| b.is_ascii_alphabetic());
        if !number && !alpha {
            out.push((
                "15",
                format!("from: {from:?} is neither a number nor a sender id"),
            ));
        }
    }
    if let Some(to) = get("to") {
        let ok = (7..=15).contains(&to.len())
            && to.bytes().all(|b| b.is_ascii_digit())
            && !to.starts_with('0');
        if !ok {
            out.push((
                "3",
                format!("to: {to:?} is not international digits without `+`"),
            ));
        }
    }
    let ty = get("type").unwrap_or("text");
    if !TYPES.contains(&ty) {
        out.push(("3", format!("type: {ty:?} is not a message type")));
    }
    match get("text") {
        None | Some("") => out.push(("2", "text: missing".into())),
        Some(text) => {
            let (_, encoding) = segments(text);
            if encoding == "ucs2" && ty != "unicode" {
                out.push(("6", "type: text outside GSM-7 needs type=unicode".into()));
            }
            if encoding == "gsm7" && ty == "unicode" {
                out.push((
                    "6",
                    "type: GSM-7 text sent as unicode (70-character parts)".into(),
                ));
            }
        }
    }
    if let Some(cb) = get("callback") {
        let rest = cb
            .strip_prefix("https://")
            .or_else(|| cb.strip_prefix("http://"));
        if rest.is_none_or(|r| r.split('/').next().unwrap_or("").is_empty()) {
            out.push((
                "23",
                format!("callback: {cb:?} is not an absolute http(s) URL"),
            ));
        }
    }
    if let Some(r) = get("client-ref") {
        let n = r.chars().count();
        if n > CLIENT_REF_MAX {
            out.push((
                "3",
                format!("client-ref: {n} characters, at most {CLIENT_REF_MAX}"),
            ));
        }
    }
    out
}

fn answer(st: &mut ServerState, req: &Incoming) -> Response {
    let (method, uri, raw) = (&req.method, &req.uri, &req.body[..]);
    let content_type = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut violations = Vec::new();
    let form = match std::str::from_utf8(raw)
        .map_err(|e| e.to_string())
        .and_then(form_decode)
    {
        Ok(f) => f,
        Err(e) => {
            violations.push(format!("(body): not a form: {e}"));
            Vec::new()
        }
    };
    let (status, answer) = decide(
        st,
        method,
        uri.path(),
        content_type.as_deref(),
        &form,
        &mut violations,
    );
    st.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        content_type,
        form,
        answer: answer.clone(),
        violations,
    });
    respond(status, &answer)
}

/// The HTTP status and answer for a request; its violations are added to `violations`.
fn decide(
    st: &mut ServerState,
    method: &Method,
    path: &str,
    content_type: Option<&str>,
    form: &[(String, String)],
    violations: &mut Vec<String>,
) -> (u16, Value) {
    if path != SMS_PATH {
        violations.push(format!(
            "{method} {path}: the fake plays only POST {SMS_PATH}"
        ));
        return (404, json!({"error": "not found"}));
    }
    if method != Method::POST {
        violations.push(format!("{method} {SMS_PATH}: only POST sends"));
        return (405, json!({"error": "method not allowed"}));
    }
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if essence.as_deref() != Some("application/x-www-form-urlencoded") {
        violations.push(format!(
            "Content-Type: Tayori sends a form, found {essence:?}"
        ));
    }
    let problems = form_problems(form);
    violations.extend(problems.iter().map(|(_, p)| p.clone()));
    if let Some((status, text)) = problems.first() {
        return (200, failure(status, text));
    }
    if let Some(first) = violations.first() {
        return (200, failure("2", first));
    }
    let get = |n: &str| {
        form.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    if get("api_key") != st.api_key || get("api_secret") != st.api_secret {
        return (200, failure("4", "Bad Credentials"));
    }
    let to = get("to");
    let reply = st
        .scripts
        .get_mut(&to)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Reply::Accepted);
    let body = match reply {
        Reply::Throttled => failure("1", "Throttled"),
        Reply::Status(status, text) => failure(status, text),
        Reply::Accepted => {
            let (parts, _) = segments(&get("text"));
            let client_ref = get("client-ref");
            let messages: Vec<Value> = (0..parts)
                .map(|_| {
                    st.next_id += 1;
                    let mut m = json!({
                        "to": to,
                        "message-id": format!("{:016X}", st.next_id),
                        "status": "0",
                        "remaining-balance": "15.53590000",
                        "message-price": "0.07400000",
                        "network": "44010",
                    });
                    if !client_ref.is_empty() {
                        m["client-ref"] = json!(client_ref);
                    }
                    m
                })
                .collect();
            json!({"message-count": parts.to_string(), "messages": messages})
        }
    };
    (200, body)
}
