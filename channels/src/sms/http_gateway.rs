//! A generic HTTP SMS gateway, described entirely by configuration: the URL, the
//! method, the headers, a body template and where the answer keeps the message id.
//! Gateways such as Karaden's REST API work without code:
//!
//! ```text
//! POST https://prm.karaden.jp/api/{tenant}/messages
//! Authorization: Bearer {token}
//! Karaden-Version: 2024-03-01
//! {"service_id": 1, "to": "{{to_national}}", "body": "{{text}}"}   → 200 {"id": "…"}
//! ```
//!
//! The body template is parsed JSON whose string leaves may hold the placeholders
//! `{{to}}` (E.164), `{{to_national}}` (national digits: `09012345678`),
//! `{{text}}`, `{{job_id}}` and `{{segments}}`. Substitution happens on the parsed
//! values, in one pass, so a text with quotes, newlines or `{{…}}` of its own stays
//! what it is. A leaf that is exactly `{{segments}}` becomes a JSON number.

use std::str::FromStr;
use std::time::Duration;

use phonenumber::metadata::DATABASE;
use phonenumber::Mode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::{prepare, Prepared, SmsLimits};
use crate::{Channel, Message, SendError, Sent};

/// HTTP statuses that mean "accepted" unless configured otherwise.
pub const DEFAULT_SUCCESS_STATUS: [u16; 3] = [200, 201, 202];

/// How the request goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GatewayMethod {
    #[default]
    Post,
    Put,
}

impl FromStr for GatewayMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Ok(Self::Post),
            "PUT" => Ok(Self::Put),
            _ => Err(format!("unknown method {s:?} (known: POST, PUT)")),
        }
    }
}

/// How the body template is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// `application/json`: the template as JSON.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`: the template must be a flat object of
    /// strings (numbers and booleans are written as text).
    Form,
}

impl FromStr for BodyFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "form" => Ok(Self::Form),
            _ => Err(format!("unknown content_type {s:?} (known: json, form)")),
        }
    }
}

#[derive(Clone)]
pub struct HttpGatewaySettings {
    /// The full endpoint, tenant and all (no templating here).
    pub url: String,
    pub method: GatewayMethod,
    /// Sent as they are. Values may be secrets: they never appear in errors.
    pub headers: Vec<(String, String)>,
    pub content_type: BodyFormat,
    /// The body template (see the module documentation).
    pub body: Value,
    /// Statuses that mean accepted; empty means [`DEFAULT_SUCCESS_STATUS`].
    pub success_status: Vec<u16>,
    /// JSON pointer to the message id in a success answer (`/id`); no pointer or
    /// nothing there: the send succeeds with an empty provider id.
    pub id_pointer: Option<String>,
    /// JSON pointer to an error code or text in a failure answer (`/error/message`);
    /// without it the error is the answer's body.
    pub error_pointer: Option<String>,
    pub timeout: Duration,
}

pub struct HttpGatewayClient {
    http: reqwest::Client,
    method: Method,
    url: Url,
    headers: HeaderMap,
    settings: HttpGatewaySettings,
    limits: SmsLimits,
    /// The default region's country calling code, when the template needs
    /// `{{to_national}}`.
    national_code: Option<u16>,
}

/// The values a template can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    To,
    ToNational,
    Text,
    JobId,
    Segments,
}

impl Placeholder {
    fn named(name: &str) -> Option<Self> {
        match name.trim() {
            "to" => Some(Self::To),
            "to_national" => Some(Self::ToNational),
            "text" => Some(Self::Text),
            "job_id" => Some(Self::JobId),
            "segments" => Some(Self::Segments),
            _ => None,
        }
    }
}

/// One message's values for the template.
struct Values<'a> {
    to: &'a str,
    to_national: &'a str,
    text: &'a str,
    job_id: &'a str,
    segments: u32,
}

impl Values<'_> {
    fn get(&self, p: Placeholder) -> String {
        match p {
            Placeholder::To => self.to.to_owned(),
            Placeholder::ToNational => self.to_national.to_owned(),
            Placeholder::Text => self.text.to_owned(),
            Placeholder::JobId => self.job_id.to_owned(),
            Placeholder::Segments => self.segments.to_string(),
        }
    }
}

/// The pieces of `s`: literal text and placeholders, in order. Fails on an
/// unclosed `{{` or an unknown name (caught when the client is built).
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Literal(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(format!("unclosed {{{{ in {s:?}"));
        };
        let name = &after[..end];
        let p = Placeholder::named(name).ok_or_else(|| {
            format!(
                "unknown placeholder {{{{{name}}}}} (known: to, to_national, text, job_id, segments)"
            )
        })?;
        out.push(Piece::Placeholder(p));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest));
    }
    Ok(out)
}

enum Piece<'a> {
    Literal(&'a str),
    Placeholder(Placeholder),
}

/// Every placeholder in the template's string leaves; an error names the leaf.
fn placeholders(template: &Value, path: &str, found: &mut Vec<Placeholder>) -> Result<(), String> {
    match template {
        Value::String(s) => {
            for piece in pieces(s).map_err(|e| format!("body{path}: {e}"))? {
                if let Piece::Placeholder(p) = piece {
                    found.push(p);
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| placeholders(v, &format!("{path}/{i}"), found)),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| placeholders(v, &format!("{path}/{k}"), found)),
        _ => Ok(()),
    }
}

/// The template with this message's values.
fn expand(template: &Value, values: &Values<'_>) -> Value {
    match template {
        Value::String(s) => expand_str(s, values),
        Value::Array(items) => Value::Array(items.iter().map(|v| expand(v, values)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expand(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn expand_str(s: &str, values: &Values<'_>) -> Value {
    // Validated when the client was built; an invalid leaf stays as written.
    let Ok(pieces) = pieces(s) else {
        return Value::String(s.to_owned());
    };
    if let [Piece::Placeholder(Placeholder::Segments)] = pieces.as_slice() {
        return Value::from(values.segments);
    }
    let mut out = String::with_capacity(s.len() + values.text.len());
    for piece in pieces {
        match piece {
            Piece::Literal(l) => out.push_str(l),
            Piece::Placeholder(p) => out.push_str(&values.get(p)),
        }
    }
    Value::String(out)
}

/// A flat object's fields as form pairs.
fn form_pairs(body: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(map) = body else {
        return Err("a form body must be a table of strings".into());
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(n) => Ok((k.clone(), n.to_string())),
            Value::Bool(b) => Ok((k.clone(), b.to_string())),
            _ => Err(format!(
                "body/{k}: a form body must be a flat table of strings"
            )),
        })
        .collect()
}

/// `+819012345678` → `09012345678`: the number as dialled within its country,
/// digits only. A number of another country has no national form the gateway
/// would understand, so it is unreachable here (the job falls back).
fn national_digits(e164: &str, country_code: u16) -> Result<String, SendError> {
    let number = phonenumber::parse(None, e164)
        .map_err(|e| SendError::unreachable("invalid_phone", e.to_string()))?;
    if number.code().value() != country_code {
        return Err(SendError::unreachable(
            "invalid_phone",
            format!(
                "the gateway takes national numbers of +{country_code}; this number is of +{}",
                number.code().value()
            ),
        ));
    }
    Ok(number
        .format()
        .mode(Mode::National)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect())
}

/// What a gateway's settings say once checked: everything the client needs but
/// the HTTP client itself.
struct Checked {
    method: Method,
    url: Url,
    headers: HeaderMap,
    national_code: Option<u16>,
}

impl HttpGatewaySettings {
    /// Every check [`HttpGatewayClient::new`] makes, without building the client
    /// (a config check builds nothing it would throw away).
    pub fn check(&self, limits: &SmsLimits) -> Result<(), String> {
        checked(self, limits).map(drop)
    }
}

fn checked(settings: &HttpGatewaySettings, limits: &SmsLimits) -> Result<Checked, String> {
    // The URL may carry a key in its query: errors never quote it.
    let url = Url::parse(&settings.url).map_err(|e| format!("invalid url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url: expected http:// or https://".into());
    }
    let method = match settings.method {
        GatewayMethod::Post => Method::POST,
        GatewayMethod::Put => Method::PUT,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &settings.headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("headers.{name}: the value is not a valid header value"))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    match (settings.content_type, &settings.body) {
        (BodyFormat::Json, Value::Object(_) | Value::Array(_)) => {}
        (BodyFormat::Json, _) => return Err("body: expected a JSON object or array".into()),
        (BodyFormat::Form, body) => {
            form_pairs(body)?;
        }
    }
    let mut used = Vec::new();
    placeholders(&settings.body, "", &mut used)?;
    let national_code = if used.contains(&Placeholder::ToNational) {
        let region = limits.default_region.trim().to_ascii_uppercase();
        let meta = DATABASE.by_id(region.as_str()).ok_or_else(|| {
            format!(
                "{{{{to_national}}}} needs default_region to be a country, not {:?}",
                limits.default_region
            )
        })?;
        Some(meta.country_code())
    } else {
        None
    };
    for (what, pointer) in [
        ("id_pointer", &settings.id_pointer),
        ("error_pointer", &settings.error_pointer),
    ] {
        if let Some(p) = pointer {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!(
                    "{what}: a JSON pointer starts with '/' (\"/id\", \"/error/message\")"
                ));
            }
        }
    }
    if let Some(bad) = settings
        .success_status
        .iter()
        .find(|s| !(100..=599).contains(*s))
    {
        return Err(format!("success_status: {bad} is not an HTTP status"));
    }
    Ok(Checked {
        method,
        url,
        headers,
        national_code,
    })
}

impl HttpGatewayClient {
    pub fn new(settings: HttpGatewaySettings, limits: SmsLimits) -> Result<Self, String> {
        let Checked {
            method,
            url,
            headers,
            national_code,
        } = checked(&settings, &limits)?;
        let http = crate::provider_http::client(settings.timeout)?;
        Ok(Self {
            http,
            method,
            url,
            headers,
            settings,
            limits,
            national_code,
        })
    }

    /// The request for one message, ready to execute. Pure (no I/O).
    fn request(
        &self,
        message: &Message,
        prepared: &Prepared<'_>,
    ) -> Result<reqwest::Request, SendError> {
        let to_national = match self.national_code {
            Some(code) => national_digits(&prepared.to, code)?,
            None => String::new(),
        };
        let values = Values {
            to: &prepared.to,
            to_national: &to_national,
            text: prepared.text,
            job_id: &message.job_id,
            segments: prepared.segments.count,
        };
        let body = expand(&self.settings.body, &values);
        let builder = self
            .http
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        let builder = match self.settings.content_type {
            BodyFormat::Json => builder.json(&body),
            BodyFormat::Form => builder
                .form(&form_pairs(&body).map_err(|e| SendError::permanent("invalid_message", e))?),
        };
        builder
            .build()
            .map_err(|e| SendError::permanent("invalid_message", e.without_url().to_string()))
    }
}

#[async_trait::async_trait]
impl Channel for HttpGatewayClient {
    async fn send(&self, message: &Message) -> Result<Sent, SendError> {
        let prepared = prepare(message, &self.limits)?;
        let request = self.request(message, &prepared)?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| crate::provider_http::request_error("http", e))?;
        let status = response.status();
        let retry_after = crate::provider_http::retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        let mut sent = classify(&self.settings, status, &body, retry_after)?;
        sent.details = prepared.details();
        Ok(sent)
    }
}

/// Maps the gateway's answer to an outcome, by the settings' `success_status`,
/// `id_pointer` and `error_pointer`. Pure, so every kind of answer is tested.
pub fn classify(
    settings: &HttpGatewaySettings,
    status: StatusCode,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<Sent, SendError> {
    let code = status.as_u16();
    let success = if settings.success_status.is_empty() {
        DEFAULT_SUCCESS_STATUS.contains(&code)
    } else {
        settings.success_status.contains(&code)
    };
    let json = || serde_json::from_str::<Value>(body).unwrap_or(Value::Null);
    let at = |pointer: &Option<String>| -> Option<String> {
        let p = pointer.as_deref().filter(|p| !p.is_empty())?;
        match json().pointer(p)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    };
    if success {
        return Ok(Sent::new(at(&settings.id_pointer).unwrap_or_default()));
    }
    let label = format!("http_{code}");
    let message: String = at(&settings.error_pointer)
        .unwrap_or_else(|| body.trim().to_owned())
        .chars()
        .take(500)
        .collect();
    Err(match code {
        429 => SendError::RateLimited {
            code: label,
            message,
            retry_after,
        },
        401 | 403 => SendError::Suspended {
            code: label,
            message: format!("the gateway refused the credentials: {message}"),
            retry_after: None,
        },
        408 | 500..=599 => SendError::transient(&label, message),
        _ => SendError::permanent(&label, message),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Content, Recipient};

    fn message(to: &str, text: &str, job_id: &str) -> Message {
        Message {
            job_id: job_id.into(),
            attempt: 1,
            idempotency_key: "k".into(),
            campaign: None,
            customer_id: None,
            to: Recipient {
                address: to.into(),
                ..Recipient::default()
            },
            content: Content::Sms { text: text.into() },
        }
    }

    fn limits(region: &str) -> SmsLimits {
        SmsLimits {
            default_region: region.into(),
            max_segments: 5,
        }
    }

    fn karaden(url: &str) -> HttpGatewaySettings {
        HttpGatewaySettings {
            url: url.into(),
            method: GatewayMethod::Post,
            headers: vec![
                ("Authorization".into(), "Bearer t0ken".into()),
                ("Karaden-Version".into(), "2024-03-01".into()),
            ],
            content_type: BodyFormat::Json,
            body: json!({"service_id": 1, "to": "{{to_national}}", "body": "{{text}}"}),
            success_status: DEFAULT_SUCCESS_STATUS.to_vec(),
            id_pointer: Some("/id".into()),
            error_pointer: Some("/error/message".into()),
            timeout: Duration::from_secs(5),
        }
    }

    fn build(settings: HttpGatewaySettings, m: &Message) -> Result<reqwest::Request, SendError> {
        let client = HttpGatewayClient::new(settings, limits("JP")).unwrap();
        let prepared = prepare(m, &client.limits).unwrap();
        client.request(m, &prepared)
    }

    fn body_json(r: &reqwest::Request) -> Value {
        serde_json::from_slice(r.body().unwrap().as_bytes().unwrap()).unwrap()
    }

    #[test]
    fn a_karaden_config_makes_the_karaden_request() {
        let m = message("090-1234-5678", "ご予約ありがとうございます", "job-1");
        let r = build(karaden("https://prm.karaden.jp/api/tayori/messages"), &m).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(
            r.url().as_str(),
            "https://prm.karaden.jp/api/tayori/messages"
        );
        let h = r.headers();
        assert_eq!(h["authorization"], "Bearer t0ken");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h["karaden-version"], "2024-03-01");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(
            body_json(&r),
            json!({"service_id": 1, "to": "09012345678", "body": "ご予約ありがとうございます"})
        );
    }

    #[test]
    fn a_form_gateway_with_put() {
        let settings = HttpGatewaySettings {
            method: GatewayMethod::Put,
            content_type: BodyFormat::Form,
            headers: vec![("X-Api-Key".into(), "k".into())],
            body: json!({"to": "{{to}}", "msg": "{{text}}", "ref": "tayori-{{job_id}}",
                          "parts": "{{segments}}", "unicode": true, "route": 3}),
            ..karaden("http://gw.example/send?key=abc")
        };
        let m = message("09012345678", "a&b=c é", "j/1");
        let r = build(settings, &m).unwrap();
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.url().as_str(), "http://gw.example/send?key=abc");
        assert_eq!(
            r.headers()["content-type"],
            "application/x-www-form-urlencoded"
        );
        let body = std::str::from_utf8(r.body().unwrap().as_bytes().unwrap()).unwrap();
        let mut pairs: Vec<&str> = body.split('&').collect();
        pairs.sort_unstable();
        assert_eq!(
            pairs,
            [
                "msg=a%26b%3Dc+%C3%A9",
                "parts=1",
                "ref=tayori-j%2F1",
                "route=3",
                "to=%2B819012345678",
                "unicode=true",
            ]
        );
    }

    #[test]
    fn substitution_happens_on_values_in_one_pass() {
        let settings = HttpGatewaySettings {
            body: json!({
                "message": {"text": "{{text}}", "count": "{{ segments }}", "label": "{{segments}} parts"},
                "list": ["{{to}}", 7, null],
                "ref": "{{job_id}}"
            }),
            ..karaden("https://gw.example/")
        };
        // Quotes, backslashes and newlines, and placeholders of its own.
        let text = "He said \"hi\"\\\nline two {{job_id}} {{to}}";
        let m = message("+81 90 1234 5678", text, "job-\"7\"");
        let r = build(settings, &m).unwrap();
        assert_eq!(
            body_json(&r),
            json!({
                "message": {"text": text, "count": 1, "label": "1 parts"},
                "list": ["+819012345678", 7, null],
                "ref": "job-\"7\""
            })
        );
    }

    #[test]
    fn national_numbers_only_of_the_default_region() {
        let m = message("+1 650 253 0000", "hi", "j");
        let e = build(karaden("https://gw.example/"), &m).unwrap_err();
        assert!(matches!(e, SendError::Unreachable { .. }), "{e:?}");
        assert!(!e.message().contains("253"), "{e:?}");
        assert_eq!(national_digits("+16502530000", 1).unwrap(), "6502530000");
        assert_eq!(national_digits("+81312345678", 81).unwrap(), "0312345678");
        // Without {{to_national}} any country goes.
        let settings = HttpGatewaySettings {
            body: json!({"to": "{{to}}"}),
            ..karaden("https://gw.example/")
        };
        assert_eq!(
            body_json(&build(settings, &m).unwrap()),
            json!({"to": "+16502530000"})
        );
    }

    #[test]
    fn bad_configs_are_refused_without_quoting_secrets() {
        let new = |s: HttpGatewaySettings| HttpGatewayClient::new(s, limits("JP")).err();
        let base = || karaden("https://gw.example/");
        let e = new(HttpGatewaySettings {
            headers: vec![("Authorization".into(), "Bearer sec\nret".into())],
            ..base()
        })
        .unwrap();
        assert!(!e.contains("sec"), "{e}");
        assert!(new(HttpGatewaySettings {
            body: json!({"to": "{{phone}}"}),
            ..base()
        })
        .unwrap()
        .contains("unknown placeholder {{phone}}"));
        assert!(new(HttpGatewaySettings {
            body: json!({"to": "{{to"}),
            ..base()
        })
        .unwrap()
        .contains("unclosed"));
        assert!(new(HttpGatewaySettings {
            content_type: BodyFormat::Form,
            body: json!({"to": {"nested": "{{to}}"}}),
            ..base()
        })
        .is_some());
        assert!(new(HttpGatewaySettings {
            body: json!("{{text}}"),
            ..base()
        })
        .is_some());
        assert!(new(HttpGatewaySettings {
            id_pointer: Some("id".into()),
            ..base()
        })
        .is_some());
        assert!(new(HttpGatewaySettings {
            url: "ftp://gw.example/".into(),
            ..base()
        })
        .is_some());
        assert!(new(HttpGatewaySettings {
            success_status: vec![2000],
            ..base()
        })
        .is_some());
        // {{to_national}} needs a country.
        assert!(HttpGatewayClient::new(base(), limits("ZZ")).is_err());
        assert!(HttpGatewayClient::new(
            HttpGatewaySettings {
                body: json!({"to": "{{to}}"}),
                ..base()
            },
            limits("ZZ")
        )
        .is_ok());
        assert_eq!("put".parse(), Ok(GatewayMethod::Put));
        assert_eq!("FORM".parse(), Ok(BodyFormat::Form));
        assert!("GET".parse::<GatewayMethod>().is_err());
    }

    #[test]
    fn answers_are_classified_by_status() {
        let s = karaden("https://gw.example/");
        let c = |status: u16, body: &str| {
            classify(&s, StatusCode::from_u16(status).unwrap(), body, None)
        };
        assert_eq!(
            c(200, r#"{"id":"abc","object":"message"}"#)
                .unwrap()
                .provider_id,
            "abc"
        );
        assert_eq!(c(201, r#"{"id":42}"#).unwrap().provider_id, "42");
        assert_eq!(c(202, "").unwrap().provider_id, "");
        let e = classify(
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            "",
            Some(Duration::from_secs(9)),
        )
        .unwrap_err();
        assert_eq!(
            e,
            SendError::RateLimited {
                code: "http_429".into(),
                message: String::new(),
                retry_after: Some(Duration::from_secs(9)),
            }
        );
        assert!(matches!(
            c(401, "").unwrap_err(),
            SendError::Suspended { .. }
        ));
        assert!(matches!(
            c(403, "").unwrap_err(),
            SendError::Suspended { .. }
        ));
        assert!(matches!(
            c(500, "").unwrap_err(),
            SendError::Transient { .. }
        ));
        assert!(matches!(
            c(503, "").unwrap_err(),
            SendError::Transient { .. }
        ));
        let e = c(
            422,
            r#"{"error":{"code":"invalid","message":"to is invalid"}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }));
        assert_eq!(e.code(), "http_422");
        assert_eq!(e.message(), "to is invalid");
        // No pointer match: the raw body, capped.
        let e = c(400, &"x".repeat(900)).unwrap_err();
        assert_eq!(e.message().len(), 500);
        // Custom success statuses.
        let s = HttpGatewaySettings {
            success_status: vec![204],
            id_pointer: None,
            ..karaden("https://gw.example/")
        };
        assert!(classify(&s, StatusCode::NO_CONTENT, "", None).is_ok());
        assert!(classify(&s, StatusCode::OK, "", None).is_err());
    }

    #[tokio::test]
    async fn sends_one_request_end_to_end() {
        let (addr, server) = crate::one_shot::serve(
            r#"{"id":"82bdf9de-a532-4bf5-86bc-c9a1366e5f4a","object":"message"}"#,
        )
        .await;
        let client = HttpGatewayClient::new(
            karaden(&format!("http://{addr}/api/tayori/messages")),
            limits("JP"),
        )
        .unwrap();
        let sent = client
            .send(&message("080-1234-5678", "こんにちは\n\"世界\"", "job-9"))
            .await
            .unwrap();
        assert_eq!(sent.provider_id, "82bdf9de-a532-4bf5-86bc-c9a1366e5f4a");
        assert_eq!(
            sent.details,
            vec![("segments", 1.into()), ("encoding", "ucs2".into())]
        );
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /api/tayori/messages HTTP/1.1\r\n"),
            "{request}"
        );
        let lower = request.to_ascii_lowercase();
        assert!(
            lower.contains("authorization: bearer t0ken\r\n"),
            "{request}"
        );
        assert!(
            lower.contains("karaden-version: 2024-03-01\r\n"),
            "{request}"
        );
        let body: Value = serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"service_id": 1, "to": "08012345678", "body": "こんにちは\n\"世界\""})
        );
    }

    #[tokio::test]
    async fn connection_errors_are_transient_and_quote_no_url() {
        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = HttpGatewayClient::new(
            karaden(&format!("http://{addr}/send?key=s3cret")),
            limits("JP"),
        )
        .unwrap();
        let e = client
            .send(&message("09012345678", "hi", "j"))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Transient { .. }), "{e:?}");
        assert_eq!(e.code(), "http_connection");
        assert!(!e.message().contains("s3cret"), "{e:?}");
    }
}
