//! `/webhooks/vonage` (GET, or POST as a form or JSON, whichever the account is set
//! to): delivery receipts and inbound replies from Vonage's SMS API.
//!
//! The signature is checked before anything else (Vonage's "Signing Messages"):
//! every parameter but `sig`, sorted by name, joined as `&name=value` with `&` and `=`
//! in values replaced by `_`, hashed with the account's signature secret by the
//! method chosen in the dashboard — `md5hash` = MD5(string + secret), the others
//! HMAC-<alg>(secret, string) — and compared, as hex in any case, in constant time.
//! `timestamp` (Unix seconds, signed with the rest) must be within five minutes of
//! now, so a captured request cannot be replayed later. A bad, missing or stale
//! signature is 403 and records nothing; without a secret configured the route is
//! 404. If Redis is away the answer is 503, and Vonage retries.
//!
//! Receipts come one per segment, each with the segment's own `messageId` but the
//! same `client-ref` (the job id). A job's `delivered` and its `failed` are each
//! recorded once (keyed by `client-ref` and the event type): when every segment
//! arrives the CRM sees one `delivered`; when one segment fails it also sees one
//! `failed`, whatever the order — the recipient got an incomplete message, and a
//! `delivered` already sent cannot be taken back.

use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use tayori_channels::sms::signatures::{verify_vonage as verify, VonageSignature};
use super::twilio_webhook::{START_WORDS, STOP_WORDS};
use crate::channel::inbound::{Recorder, Request, Route};
use crate::event::Reaction;
use crate::event::{Event, EventType};
use crate::metrics as m;


type Params = Vec<(String, String)>;

/// `/webhooks/vonage`, when SMS goes through Vonage with a signature secret.
pub struct VonageWebhook {
    pub key: VonageSignature,
}

#[async_trait::async_trait]
impl Route for VonageWebhook {
    fn path(&self) -> &'static str {
        "/webhooks/vonage"
    }

    fn accepts_get(&self) -> bool {
        true
    }

    async fn handle(&self, request: Request<'_>, recorder: Option<&dyn Recorder>) -> Response {
        receive(&self.key, request, recorder).await
    }
}

async fn receive(
    key: &VonageSignature,
    request: Request<'_>,
    recorder: Option<&dyn Recorder>,
) -> Response {
    let (method, uri, headers, body) = (request.method, request.uri, request.headers, request.body);
    let params = match params(method, uri, headers, body) {
        Ok(p) => p,
        Err(why) => {
            reject("bad_body", &why);
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    if let Err(reason) = verify(key, &params, jiff::Timestamp::now().as_second()) {
        reject(reason, "signature refused");
        return StatusCode::FORBIDDEN.into_response();
    }
    let Some(recorder) = recorder else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let (report, counted_as) = match get("status") {
        Some(status) => (receipt(status, &get), "status"),
        None => (inbound(&get), "other"),
    };
    let Some(report) = report else {
        // accepted, buffered, unknown; or nothing Tayori can key an event on.
        metrics::counter!(m::WEBHOOK_EVENTS, "source" => "vonage", "type" => counted_as)
            .increment(1);
        return StatusCode::NO_CONTENT.into_response();
    };
    let json = report.event.to_json();
    let reaction = Reaction {
        source: "vonage",
        event_id: &report.dedupe_key,
        suppress: report
            .suppress
            .as_ref()
            .map(|(address, reason)| (super::ID, address.as_str(), *reason)),
        event: Some(&json),
        at_ms: jiff::Timestamp::now().as_millisecond(),
    };
    match recorder.record(&reaction).await {
        Ok(fresh) => {
            if fresh {
                let kind = report.event.kind.as_str();
                metrics::counter!(m::WEBHOOK_EVENTS, "source" => "vonage", "type" => kind)
                    .increment(1);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            metrics::counter!(m::WEBHOOK_REJECTED, "source" => "vonage", "reason" => "redis")
                .increment(1);
            tracing::warn!(error = %e, "Vonage webhook: Redis unavailable; answering 503");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

fn reject(reason: &'static str, why: &str) {
    metrics::counter!(m::WEBHOOK_REJECTED, "source" => "vonage", "reason" => reason).increment(1);
    tracing::debug!(reason, why, "Vonage webhook refused");
}

/// What one verified request records.
struct Report {
    /// With the source, the deduplication key.
    dedupe_key: String,
    event: Event,
    /// `(E.164 number, Some(reason))` suppresses, `(…, None)` lifts.
    suppress: Option<(String, Option<&'static str>)>,
}

/// A delivery receipt: `delivered`, or `failed` for failed/rejected/expired; `None`
/// for the others (accepted, buffered, unknown), which are only counted.
fn receipt<'a>(status: &str, get: &impl Fn(&str) -> Option<&'a str>) -> Option<Report> {
    let kind = match status {
        "delivered" => EventType::Delivered,
        "failed" | "rejected" | "expired" => EventType::Failed,
        _ => return None,
    };
    let message_id = get("messageId").unwrap_or("");
    // One per job (client-ref) and type, whichever segment reports it; a receipt
    // without a client-ref (a message Tayori did not send) is keyed by its message.
    let dedupe_key = match get("client-ref") {
        Some(job) => format!("job/{job}/{}", kind.as_str()),
        None if !message_id.is_empty() => format!("msg/{message_id}/{}", kind.as_str()),
        None => return None,
    };
    let mut event = Event::reaction(kind, "sms", format!("vonage/{dedupe_key}"));
    event.job_id = get("client-ref").map(str::to_owned);
    let event = event.with("provider_id", message_id);
    let event = match kind {
        EventType::Failed => {
            let code = get("err-code").unwrap_or(status);
            event.with_error(
                &format!("vonage_{code}"),
                &format!(
                    "Vonage reports the message {status}{}",
                    error_text(code)
                        .map(|t| format!(": {t}"))
                        .unwrap_or_default()
                ),
            )
        }
        _ => event,
    };
    Some(Report {
        dedupe_key,
        event,
        suppress: None,
    })
}

/// The meaning of a delivery receipt's `err-code` (Vonage's table).
fn error_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "1" => "unknown",
        "2" => "absent subscriber (temporary)",
        "3" => "absent subscriber (permanent)",
        "4" => "call barred by user",
        "5" => "portability error",
        "6" => "anti-spam rejection",
        "7" => "handset busy",
        "8" => "network error",
        "9" => "illegal number",
        "10" => "illegal message",
        "11" => "unroutable",
        "12" => "destination unreachable",
        "13" => "subscriber age restriction",
        "14" => "number blocked by carrier",
        "15" => "prepaid insufficient funds",
        "99" => "general error",
        _ => return None,
    })
}

/// An inbound message: STOP words unsubscribe the sender, START words lift it, the
/// rest is a `replied`. `None` without a message id or a sender.
fn inbound<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Option<Report> {
    let message_id = get("messageId")?;
    // `msisdn` is international without the `+`: suppressions are keyed in E.164.
    let digits = get("msisdn")?.trim().trim_start_matches('+');
    let from = format!("+{digits}");
    let text = get("text").unwrap_or("").trim();
    let word = text.to_uppercase();
    let (kind, suppress) = if STOP_WORDS.contains(&word.as_str()) {
        (EventType::Unsubscribed, Some(Some("unsubscribed")))
    } else if START_WORDS.contains(&word.as_str()) {
        (EventType::Unblocked, Some(None))
    } else {
        (EventType::Replied, None)
    };
    let mut event =
        Event::reaction(kind, "sms", format!("vonage/{message_id}")).with("address", from.as_str());
    if kind == EventType::Replied {
        event = event.with("text", text);
    }
    Some(Report {
        dedupe_key: message_id.to_owned(),
        event,
        suppress: suppress.map(|reason| (from, reason)),
    })
}

/// The request's parameters: the query of a GET (or of a POST without a body), else
/// the body as JSON (by `Content-Type`, or a body starting with `{`) or as a form.
/// A name given twice is refused: what it signs would be ambiguous.
fn params(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Params, String> {
    let body = body.trim_ascii();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
        || body.starts_with(b"{");
    let params: Params = if method == Method::GET || body.is_empty() {
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    } else if is_json {
        json_params(body)?
    } else {
        form_urlencoded::parse(body).into_owned().collect()
    };
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("parameter {:?} given twice", w[0]));
    }
    Ok(params)
}

/// A JSON object's fields as parameters: strings as they are, numbers and booleans
/// as written, null as empty; nested values are refused (Vonage sends none).
fn json_params(body: &[u8]) -> Result<Params, String> {
    let object: serde_json::Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON object: {e}"))?;
    object
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                Value::Array(_) | Value::Object(_) => {
                    return Err(format!("{k:?} is not a plain value"));
                }
            };
            Ok((k, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Params {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_come_from_the_query_a_form_or_json() {
        let uri: Uri = "/webhooks/vonage?status=delivered&client-ref=a%2Fb&text=x+y"
            .parse()
            .unwrap();
        let none = HeaderMap::new();
        let got = params(&Method::GET, &uri, &none, b"").unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("status", "delivered"),
                ("client-ref", "a/b"),
                ("text", "x y")
            ])
        );
        let bare: Uri = "/webhooks/vonage".parse().unwrap();
        let form = params(&Method::POST, &bare, &none, b"a=1&b=%26").unwrap();
        assert_eq!(form, pairs(&[("a", "1"), ("b", "&")]));
        let mut json_ct = HeaderMap::new();
        json_ct.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let json = br#"{"status":"delivered","timestamp":1461605396,"x":null,"y":true}"#;
        let mut got = params(&Method::POST, &bare, &json_ct, json).unwrap();
        got.sort();
        assert_eq!(
            got,
            pairs(&[
                ("status", "delivered"),
                ("timestamp", "1461605396"),
                ("x", ""),
                ("y", "true")
            ])
        );
        // JSON is recognized without the header too; a POST without a body reads the query.
        assert!(params(&Method::POST, &bare, &none, json).is_ok());
        assert_eq!(params(&Method::POST, &uri, &none, b"").unwrap().len(), 3);
        assert!(params(&Method::POST, &bare, &json_ct, br#"{"a":{"b":1}}"#).is_err());
        assert!(params(&Method::POST, &bare, &json_ct, b"[1]").is_err());
        assert!(params(&Method::POST, &bare, &none, b"a=1&a=2").is_err());
    }

    #[test]
    fn receipts_map_to_events_once_per_job_and_type() {
        let p = pairs(&[
            ("messageId", "0A01"),
            ("client-ref", "job-1"),
            ("err-code", "9"),
        ]);
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let r = receipt("delivered", &get).unwrap();
        assert_eq!(r.dedupe_key, "job/job-1/delivered");
        assert_eq!(r.event.job_id.as_deref(), Some("job-1"));
        for status in ["failed", "rejected", "expired"] {
            let r = receipt(status, &get).unwrap();
            assert_eq!(r.dedupe_key, "job/job-1/failed", "{status}");
            let json: Value = serde_json::from_str(&r.event.to_json()).unwrap();
            assert_eq!(json["error"]["code"], "vonage_9");
            assert_eq!(json["provider_id"], "0A01");
            assert!(json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("illegal number"));
        }
        for status in ["accepted", "buffered", "unknown", "other"] {
            assert!(receipt(status, &get).is_none(), "{status}");
        }
        let p = pairs(&[("messageId", "0A02")]);
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let r = receipt("failed", &get).unwrap();
        assert_eq!(r.dedupe_key, "msg/0A02/failed");
        assert!(r.event.job_id.is_none());
        let json: Value = serde_json::from_str(&r.event.to_json()).unwrap();
        assert_eq!(json["error"]["code"], "vonage_failed");
    }
}
