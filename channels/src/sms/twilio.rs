//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{sid}/Messages.json`
//! (form-encoded, HTTP basic auth) and what each answer means.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::{prepare, SmsLimits};
use crate::{Channel, Message, SendError, Sent};

/// Twilio's error codes that say something about the recipient or the account.
const INVALID_TO: &[u64] = &[21211, 21612, 21614, 21408, 21635];
const OPTED_OUT: u64 = 21610;
const QUEUE_FULL: &[u64] = &[20429, 21611, 30001];
const AUTH: &[u64] = &[20003, 20005, 20006];

#[derive(Clone)]
pub struct TwilioSettings {
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: String,
    /// The sender number, or `messaging_service_sid` instead.
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    /// Where Twilio reports delivery (`{public_url}/webhooks/twilio`); the job id is
    /// appended as `?job=…`.
    pub status_callback: Option<String>,
    pub timeout: Duration,
}

pub struct TwilioClient {
    http: reqwest::Client,
    url: String,
    settings: TwilioSettings,
    limits: SmsLimits,
}

impl TwilioClient {
    pub fn new(settings: TwilioSettings, limits: SmsLimits) -> Result<Self, String> {
        let http = crate::provider_http::client(settings.timeout)?;
        Ok(Self {
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                settings.api_base.trim_end_matches('/'),
                settings.account_sid
            ),
            http,
            settings,
            limits,
        })
    }
}

#[async_trait::async_trait]
impl Channel for TwilioClient {
    async fn send(&self, message: &Message) -> Result<Sent, SendError> {
        let prepared = prepare(message, &self.limits)?;
        let mut form: Vec<(&str, String)> = vec![
            ("To", prepared.to.clone()),
            ("Body", prepared.text.to_owned()),
        ];
        match (&self.settings.messaging_service_sid, &self.settings.from) {
            (Some(sid), _) => form.push(("MessagingServiceSid", sid.clone())),
            (None, Some(from)) => form.push(("From", from.clone())),
            (None, None) => {
                return Err(SendError::permanent(
                    "invalid_message",
                    "twilio needs `from` or `messaging_service_sid`",
                ))
            }
        }
        if let Some(cb) = &self.settings.status_callback {
            let job: String = form_urlencoded(&message.job_id);
            form.push(("StatusCallback", format!("{cb}?job={job}")));
        }
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.settings.account_sid, Some(&self.settings.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| crate::provider_http::request_error("twilio", e))?;
        let status = response.status();
        let retry_after = crate::provider_http::retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        let mut sent = classify(status, &body, retry_after)?;
        sent.details = prepared.details();
        Ok(sent)
    }
}

/// Maps Twilio's answer to an outcome. Pure, so every documented answer is tested.
pub fn classify(
    status: StatusCode,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<Sent, SendError> {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if status.is_success() {
        let sid = json.get("sid").and_then(Value::as_str).unwrap_or_default();
        return Ok(Sent::new(sid));
    }
    let code = json.get("code").and_then(Value::as_u64);
    let message = json
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(500)
        .collect::<String>();
    let label = match code {
        Some(c) => format!("twilio_{c}"),
        None => format!("twilio_{}", status.as_u16()),
    };
    match (status.as_u16(), code) {
        (_, Some(c)) if c == OPTED_OUT => Err(SendError::OptedOut {
            code: label,
            message,
        }),
        (_, Some(c)) if INVALID_TO.contains(&c) => Err(SendError::unreachable(&label, message)),
        (_, Some(c)) if QUEUE_FULL.contains(&c) => Err(SendError::RateLimited {
            code: label,
            message,
            retry_after,
        }),
        (429, _) => Err(SendError::RateLimited {
            code: label,
            message,
            retry_after,
        }),
        (_, Some(c)) if AUTH.contains(&c) => Err(SendError::Suspended {
            code: label,
            message: format!("Twilio refused the account's credentials: {message}"),
            retry_after: None,
        }),
        (401 | 403, _) => Err(SendError::Suspended {
            code: label,
            message: format!("Twilio refused the account's credentials: {message}"),
            retry_after: None,
        }),
        (s, _) if s >= 500 => Err(SendError::transient(&label, message)),
        _ => Err(SendError::permanent(&label, message)),
    }
}

/// `application/x-www-form-urlencoded` for one value.
fn form_urlencoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, code: u64) -> SendError {
        let body = format!(r#"{{"code":{code},"message":"m","more_info":"x","status":{status}}}"#);
        classify(StatusCode::from_u16(status).unwrap(), &body, None).unwrap_err()
    }

    #[test]
    fn answers_are_classified_by_twilio_code_then_status() {
        let ok = classify(
            StatusCode::CREATED,
            r#"{"sid":"SM123","status":"queued"}"#,
            None,
        );
        assert_eq!(ok.unwrap().provider_id, "SM123");
        assert!(matches!(err(400, 21211), SendError::Unreachable { .. }));
        assert!(matches!(err(400, 21610), SendError::OptedOut { .. }));
        assert!(matches!(err(429, 20429), SendError::RateLimited { .. }));
        assert!(matches!(err(400, 21611), SendError::RateLimited { .. }));
        assert!(matches!(err(401, 20003), SendError::Suspended { .. }));
        assert!(matches!(err(500, 20500), SendError::Transient { .. }));
        assert!(matches!(err(400, 21602), SendError::Permanent { .. }));
        assert_eq!(err(400, 21211).code(), "twilio_21211");
    }

    #[test]
    fn job_ids_are_form_encoded_in_the_callback() {
        assert_eq!(form_urlencoded("spring26/C 1&x"), "spring26%2FC%201%26x");
    }
}
