//! Vonage (Nexmo) legacy SMS API: `POST {api_base}/sms/json` (form-encoded, key and
//! secret in the body) and what each answer means.
//!
//! Vonage answers HTTP 200 for every API-level result: the outcome is in
//! `messages[].status`, one entry per segment of a concatenated message.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::segments::Encoding;
use super::{prepare, Prepared, SmsLimits};
use crate::{Channel, Message, SendError, Sent};

/// Where the legacy SMS API lives.
pub const DEFAULT_API_BASE: &str = "https://rest.nexmo.com";

/// Vonage caps `client-ref` at 100 characters.
const CLIENT_REF_MAX: usize = 100;

#[derive(Clone)]
pub struct VonageSettings {
    /// `https://rest.nexmo.com` ([`DEFAULT_API_BASE`]) unless testing.
    pub api_base: String,
    pub api_key: String,
    pub api_secret: String,
    /// The sender: a number (digits, no `+`) or an alphanumeric sender id.
    pub from: String,
    /// Where Vonage posts delivery receipts (`{public_url}/webhooks/vonage`). The
    /// receipts carry `client-ref`, which is the job id, so nothing is appended.
    pub callback: Option<String>,
    pub timeout: Duration,
}

pub struct VonageClient {
    http: reqwest::Client,
    url: String,
    settings: VonageSettings,
    limits: SmsLimits,
}

impl VonageSettings {
    /// The checks [`VonageClient::new`] makes, without building the client.
    pub fn check(&self) -> Result<(), String> {
        if self.api_key.is_empty() || self.api_secret.is_empty() {
            return Err("vonage needs `api_key` and `api_secret`".into());
        }
        if self.from.trim().is_empty() {
            return Err("vonage needs `from`".into());
        }
        Ok(())
    }
}

impl VonageClient {
    pub fn new(settings: VonageSettings, limits: SmsLimits) -> Result<Self, String> {
        settings.check()?;
        let http = crate::provider_http::client(settings.timeout)?;
        Ok(Self {
            url: format!("{}/sms/json", settings.api_base.trim_end_matches('/')),
            http,
            settings,
            limits,
        })
    }
}

/// The form Vonage receives for one message. Pure, so the request is tested.
fn form(
    settings: &VonageSettings,
    prepared: &Prepared<'_>,
    job_id: &str,
) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("api_key", settings.api_key.clone()),
        ("api_secret", settings.api_secret.clone()),
        ("from", settings.from.clone()),
        // E.164 without the '+': Vonage takes digits only.
        ("to", prepared.to.trim_start_matches('+').to_owned()),
        ("text", prepared.text.to_owned()),
    ];
    if prepared.segments.encoding == Encoding::Ucs2 {
        form.push(("type", "unicode".to_owned()));
    }
    if let Some(cb) = &settings.callback {
        form.push(("callback", cb.clone()));
    }
    form.push(("client-ref", job_id.chars().take(CLIENT_REF_MAX).collect()));
    form
}

#[async_trait::async_trait]
impl Channel for VonageClient {
    async fn send(&self, message: &Message) -> Result<Sent, SendError> {
        let prepared = prepare(message, &self.limits)?;
        let response = self
            .http
            .post(&self.url)
            .form(&form(&self.settings, &prepared, &message.job_id))
            .send()
            .await
            .map_err(|e| crate::provider_http::request_error("vonage", e))?;
        let status = response.status();
        let retry_after = crate::provider_http::retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        let mut sent = classify(status, &body, retry_after)?;
        sent.details = prepared.details();
        Ok(sent)
    }
}

/// Maps Vonage's answer to an outcome. Pure, so every documented answer is tested.
///
/// HTTP errors are coded `vonage_http_{status}`; API results `vonage_{status}`
/// from the first segment that was not accepted.
pub fn classify(
    status: StatusCode,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<Sent, SendError> {
    if status != StatusCode::OK {
        let label = format!("vonage_http_{}", status.as_u16());
        let message = capped(body.trim());
        return Err(match status.as_u16() {
            429 => SendError::RateLimited {
                code: label,
                message,
                retry_after,
            },
            401 | 403 => SendError::Suspended {
                code: label,
                message: format!("Vonage refused the account's credentials: {message}"),
                retry_after: None,
            },
            s if s >= 500 => SendError::transient(&label, message),
            _ => SendError::permanent(&label, message),
        });
    }
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let messages = match json.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m,
        // A 200 without results: we cannot tell whether Vonage took the message.
        _ => {
            return Err(SendError::transient(
                "vonage_bad_response",
                format!(
                    "HTTP 200 without `messages`: {}",
                    body.trim().chars().take(200).collect::<String>()
                ),
            ))
        }
    };
    let status_of = |m: &Value| match m.get("status") {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let Some(failed) = messages.iter().find(|m| status_of(m) != "0") else {
        let id = messages[0]
            .get("message-id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Ok(Sent::new(id));
    };
    let code = status_of(failed);
    let label = if code.is_empty() {
        "vonage_unknown".to_owned()
    } else {
        format!("vonage_{code}")
    };
    let text = failed
        .get("error-text")
        .and_then(Value::as_str)
        .unwrap_or("");
    let accepted = messages.iter().filter(|m| status_of(m) == "0").count();
    let message = if accepted > 0 {
        capped(&format!(
            "{accepted} of {} parts accepted; {text}",
            messages.len()
        ))
    } else {
        capped(text)
    };
    Err(match code.as_str() {
        // Throttled; too many existing binds.
        "1" | "10" => SendError::RateLimited {
            code: label,
            message,
            retry_after,
        },
        // Invalid credentials; partner account barred; partner quota exceeded.
        "4" | "8" | "9" => SendError::Suspended {
            code: label,
            message: format!("Vonage refused the account: {message}"),
            retry_after: None,
        },
        // Internal error.
        "5" => SendError::transient(&label, message),
        // Number barred; non-whitelisted destination.
        "7" | "29" => SendError::unreachable(&label, message),
        // Missing/invalid parameters, invalid message, invalid sender, the rest.
        _ => SendError::permanent(&label, message),
    })
}

fn capped(s: &str) -> String {
    s.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recipient;
    use crate::{Content, Message};

    fn ok_body(ids: &[&str]) -> String {
        let messages: Vec<Value> = ids
            .iter()
            .map(|id| serde_json::json!({"to": "819012345678", "message-id": id, "status": "0"}))
            .collect();
        serde_json::json!({"message-count": ids.len().to_string(), "messages": messages})
            .to_string()
    }

    fn err(status: &str) -> SendError {
        let body = format!(
            r#"{{"message-count":"1","messages":[{{"status":"{status}","error-text":"why {status}"}}]}}"#
        );
        classify(StatusCode::OK, &body, None).unwrap_err()
    }

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

    fn limits() -> SmsLimits {
        SmsLimits {
            default_region: "JP".into(),
            max_segments: 5,
        }
    }

    fn settings(api_base: &str) -> VonageSettings {
        VonageSettings {
            api_base: api_base.into(),
            api_key: "key1".into(),
            api_secret: "s3cret".into(),
            from: "Tayori".into(),
            callback: Some("https://tayori.example/webhooks/vonage".into()),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn every_documented_status_is_classified() {
        assert!(matches!(err("1"), SendError::RateLimited { .. }));
        assert!(matches!(err("2"), SendError::Permanent { .. }));
        assert!(matches!(err("3"), SendError::Permanent { .. }));
        assert!(matches!(err("4"), SendError::Suspended { .. }));
        assert!(matches!(err("5"), SendError::Transient { .. }));
        assert!(matches!(err("6"), SendError::Permanent { .. }));
        assert!(matches!(err("7"), SendError::Unreachable { .. }));
        assert!(matches!(err("8"), SendError::Suspended { .. }));
        assert!(matches!(err("9"), SendError::Suspended { .. }));
        assert!(matches!(err("10"), SendError::RateLimited { .. }));
        assert!(matches!(err("15"), SendError::Permanent { .. }));
        assert!(matches!(err("29"), SendError::Unreachable { .. }));
        assert!(matches!(err("99"), SendError::Permanent { .. }));
        assert_eq!(err("29").code(), "vonage_29");
        assert_eq!(err("6").message(), "why 6");
    }

    #[test]
    fn accepted_messages_give_the_first_id() {
        let sent = classify(StatusCode::OK, &ok_body(&["0A01", "0A02"]), None).unwrap();
        assert_eq!(sent.provider_id, "0A01");
        // A numeric status is read too.
        let body = r#"{"messages":[{"status":0,"message-id":"X1"}]}"#;
        assert_eq!(
            classify(StatusCode::OK, body, None).unwrap().provider_id,
            "X1"
        );
    }

    #[test]
    fn a_multipart_message_needs_every_part() {
        let body = r#"{"message-count":"2","messages":[
            {"status":"0","message-id":"0A01"},
            {"status":"9","error-text":"Quota Exceeded - rejected"}]}"#;
        let e = classify(StatusCode::OK, body, None).unwrap_err();
        assert!(matches!(e, SendError::Suspended { .. }), "{e:?}");
        assert_eq!(e.code(), "vonage_9");
        assert!(e.message().contains("1 of 2 parts accepted"), "{e:?}");
    }

    #[test]
    fn http_errors_and_odd_answers() {
        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            "",
            Some(Duration::from_secs(3)),
        )
        .unwrap_err();
        assert_eq!(
            e,
            SendError::RateLimited {
                code: "vonage_http_429".into(),
                message: String::new(),
                retry_after: Some(Duration::from_secs(3)),
            }
        );
        let e = classify(StatusCode::UNAUTHORIZED, "", None).unwrap_err();
        assert!(matches!(e, SendError::Suspended { .. }));
        let e = classify(StatusCode::BAD_GATEWAY, "<html>", None).unwrap_err();
        assert!(matches!(e, SendError::Transient { .. }));
        assert_eq!(e.code(), "vonage_http_502");
        let e = classify(StatusCode::NOT_FOUND, "", None).unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }));
        let e = classify(StatusCode::OK, "not json", None).unwrap_err();
        assert!(matches!(e, SendError::Transient { .. }));
        assert_eq!(e.code(), "vonage_bad_response");
        let long = format!(
            r#"{{"messages":[{{"status":"6","error-text":"{}"}}]}}"#,
            "x".repeat(900)
        );
        let e = classify(StatusCode::OK, &long, None).unwrap_err();
        assert_eq!(e.message().chars().count(), 500);
    }

    #[test]
    fn the_form_has_digits_only_unicode_and_a_short_client_ref() {
        let limits = limits();
        let s = settings(DEFAULT_API_BASE);
        let m = message("090-1234-5678", "Hello", "job-1");
        let p = prepare(&m, &limits).unwrap();
        assert_eq!(
            form(&s, &p, &m.job_id),
            vec![
                ("api_key", "key1".to_owned()),
                ("api_secret", "s3cret".to_owned()),
                ("from", "Tayori".to_owned()),
                ("to", "819012345678".to_owned()),
                ("text", "Hello".to_owned()),
                (
                    "callback",
                    "https://tayori.example/webhooks/vonage".to_owned()
                ),
                ("client-ref", "job-1".to_owned()),
            ]
        );
        let long_id = "あ".repeat(150);
        let m = message("+81 90 1234 5678", "こんにちは", &long_id);
        let p = prepare(&m, &limits).unwrap();
        let f = form(&s, &p, &m.job_id);
        assert!(f.contains(&("type", "unicode".to_owned())));
        let client_ref = &f.iter().find(|(k, _)| *k == "client-ref").unwrap().1;
        assert_eq!(client_ref.chars().count(), 100);
    }

    #[tokio::test]
    async fn sends_one_request_end_to_end() {
        let body: &'static str = Box::leak(ok_body(&["0A0000001"]).into_boxed_str());
        let (addr, server) = crate::one_shot::serve(body).await;
        let client = VonageClient::new(settings(&format!("http://{addr}/")), limits()).unwrap();
        let sent = client
            .send(&message("09012345678", "Hi {there}", "job/1"))
            .await
            .unwrap();
        assert_eq!(sent.provider_id, "0A0000001");
        assert_eq!(
            sent.details,
            vec![("segments", 1.into()), ("encoding", "gsm7".into())]
        );
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /sms/json HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request
            .to_ascii_lowercase()
            .contains("content-type: application/x-www-form-urlencoded"));
        let body = request.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.contains("to=819012345678"), "{body}");
        assert!(body.contains("text=Hi+%7Bthere%7D"), "{body}");
        assert!(body.contains("client-ref=job%2F1"), "{body}");
        assert!(!body.contains("type="), "{body}");
    }
}
