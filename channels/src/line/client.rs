//! The LINE Messaging API push call, and what each answer means.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use serde_json::Value;

use super::reads::SentUnits;
use super::{pnp, retry_key, LineEncoder};
use crate::{Channel, Content, Message, SendError, Sent};

/// LINE's wording for an exhausted monthly quota (a 429 that retrying cannot fix).
const MONTHLY_LIMIT: &str = "monthly limit";
/// The code of [`SendError::QuotaExhausted`] for it (and of the channel's pause).
pub const MONTHLY_LIMIT_CODE: &str = "line_monthly_limit";

pub struct LineClient {
    http: reqwest::Client,
    push_url: String,
    /// `POST /bot/pnp/push`: notification messages ([`pnp`]).
    pnp_url: String,
    /// `Bearer {token}`, marked sensitive so it is never printed.
    authorization: HeaderValue,
    encoder: LineEncoder,
    /// Where sends with an aggregation unit are noted, for fetching its statistics.
    units: Option<Arc<SentUnits>>,
}

/// LINE's answers are small; a larger body is cut, not read into memory.
const MAX_ANSWER: usize = 64 * 1024;

impl LineClient {
    /// `api_base` is `https://api.line.me` in production.
    pub fn new(
        api_base: &str,
        token: &str,
        timeout: Duration,
        encoder: LineEncoder,
    ) -> Result<Self, String> {
        let mut authorization = authorization(token)?;
        authorization.set_sensitive(true);
        let http = crate::provider_http::client(timeout)?;
        Ok(Self {
            http,
            push_url: format!("{}/v2/bot/message/push", api_base.trim_end_matches('/')),
            pnp_url: format!("{}{}", api_base.trim_end_matches('/'), pnp::PNP_PATH),
            authorization,
            encoder,
            units: None,
        })
    }

    /// Notes in `units` each (aggregation unit, day) this client sends with.
    pub fn with_units(mut self, units: Arc<SentUnits>) -> Self {
        self.units = Some(units);
        self
    }
}

/// The `Authorization` header for a channel access token. Secret files often
/// end in a newline: trimmed, then refused if it cannot be a header. A config
/// check calls this alone, building no client.
pub fn authorization(token: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
        "channel_access_token contains characters that cannot be sent in a header".to_owned()
    })
}

#[async_trait::async_trait]
impl Channel for LineClient {
    async fn send(&self, message: &Message) -> Result<Sent, SendError> {
        if let Content::LineNotification { .. } = &message.content {
            return self.send_notification(message).await;
        }
        let body = self.encoder.push_body(message)?;
        let response = self
            .http
            .post(&self.push_url)
            .header(AUTHORIZATION, self.authorization.clone())
            // The same key on every attempt of this job: LINE accepts it once.
            .header(
                "X-Line-Retry-Key",
                retry_key(&message.idempotency_key).to_string(),
            )
            .json(&body)
            .send()
            .await
            .map_err(|e| crate::provider_http::request_error("line", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = read_capped(response).await;
        let outcome = classify(status, &headers, &text);
        if let (Ok(_), Some(units)) = (&outcome, &self.units) {
            if let Some(unit) = body["customAggregationUnits"][0].as_str() {
                units.note(unit);
            }
        }
        outcome
    }
}

impl LineClient {
    /// A notification message: tagged so the delivery event finds the job, and
    /// without a retry key, which PNP does not have ([`pnp::classify`] decides
    /// what may be retried).
    async fn send_notification(&self, message: &Message) -> Result<Sent, SendError> {
        let body = self.encoder.pnp_body(message)?;
        let response = self
            .http
            .post(&self.pnp_url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(
                pnp::DELIVERY_TAG_HEADER,
                pnp::delivery_tag(&message.idempotency_key),
            )
            .json(&body)
            .send()
            .await
            .map_err(pnp::request_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = read_capped(response).await;
        pnp::classify(status, &headers, &text)
    }
}

async fn read_capped(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER - body.len())]);
        if body.len() >= MAX_ANSWER {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Maps LINE's answer to an outcome. Pure, so every documented answer is unit-tested.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Result<Sent, SendError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let error: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let with_details = || match error.get("details").and_then(Value::as_array) {
        Some(d) if !d.is_empty() => {
            let parts: Vec<String> = d
                .iter()
                .map(|x| {
                    let p = x.get("property").and_then(Value::as_str).unwrap_or("?");
                    let m = x.get("message").and_then(Value::as_str).unwrap_or("?");
                    format!("{p}: {m}")
                })
                .collect();
            format!("{message} ({})", parts.join("; "))
        }
        _ => message.clone(),
    };
    match status.as_u16() {
        200 => Ok(Sent::new(header("x-line-request-id").unwrap_or_default())),
        // LINE answers 409 to a push only for a retry key it accepted before: the
        // message went out then (never fall back and deliver it a second time).
        409 => Ok(Sent::new(
            header("x-line-accepted-request-id")
                .or_else(|| header("x-line-request-id"))
                .unwrap_or_default(),
        )),
        // LINE says only this for an unknown or unreachable user id.
        400 if message == "Failed to send messages" => {
            Err(SendError::unreachable("line_400", with_details()))
        }
        400 => Err(SendError::permanent("line_400", with_details())),
        401 | 403 => Err(SendError::Suspended {
            code: format!("line_{}", status.as_u16()),
            message: format!("the channel access token was refused: {message}"),
            retry_after: None,
        }),
        429 if message.to_ascii_lowercase().contains(MONTHLY_LIMIT) => {
            Err(SendError::QuotaExhausted {
                code: MONTHLY_LIMIT_CODE.into(),
                message,
                retry_after: Some(super::reads::QUOTA_PAUSE),
            })
        }
        429 => Err(SendError::RateLimited {
            code: "line_429".into(),
            message,
            retry_after: None,
        }),
        s if s >= 500 => Err(SendError::transient(&format!("line_{s}"), with_details())),
        s => Err(SendError::permanent(&format!("line_{s}"), with_details())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn tokens_are_trimmed_and_impossible_ones_refused() {
        let enc = || LineEncoder::default();
        assert!(LineClient::new(
            "http://127.0.0.1:1",
            "token-from-a-file\n",
            Duration::from_secs(1),
            enc()
        )
        .is_ok());
        let err = LineClient::new(
            "http://127.0.0.1:1",
            "bad\u{0}token",
            Duration::from_secs(1),
            enc(),
        )
        .err()
        .unwrap();
        assert!(
            !err.contains("bad"),
            "the token never appears in the error: {err}"
        );
    }

    #[test]
    fn every_documented_answer_is_classified() {
        let ok = classify(
            StatusCode::OK,
            &headers(&[("x-line-request-id", "req-1")]),
            "{}",
        )
        .unwrap();
        assert_eq!(ok.provider_id, "req-1");
        let replay = classify(
            StatusCode::CONFLICT,
            &headers(&[
                ("x-line-request-id", "req-2"),
                ("x-line-accepted-request-id", "req-1"),
            ]),
            r#"{"message":"The retry key is already accepted"}"#,
        )
        .unwrap();
        assert_eq!(replay.provider_id, "req-1");
        let unknown = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            r#"{"message":"Failed to send messages"}"#,
        );
        assert!(matches!(unknown, Err(SendError::Unreachable { .. })));
        let invalid = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            r#"{"message":"The request body has 1 error(s)","details":[{"message":"must be specified","property":"messages[0].text"}]}"#,
        );
        match invalid {
            Err(SendError::Permanent { message, .. }) => assert!(
                message.contains("messages[0].text: must be specified"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), "{}"),
            Err(SendError::Suspended { .. })
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &HeaderMap::new(), "{}"),
            Err(SendError::Suspended { .. })
        ));
        let quota = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            r#"{"message":"You have reached your monthly limit."}"#,
        );
        assert!(
            matches!(quota, Err(SendError::QuotaExhausted { ref code, .. }) if code == "line_monthly_limit")
        );
        let busy = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            r#"{"message":"The API rate limit has been exceeded. Try again later."}"#,
        );
        assert!(matches!(
            busy,
            Err(SendError::RateLimited {
                retry_after: None,
                ..
            })
        ));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), ""),
            Err(SendError::Transient { .. })
        ));
        // A 409 is a replay of an accepted key even without the header.
        let bare = classify(
            StatusCode::CONFLICT,
            &headers(&[("x-line-request-id", "req-3")]),
            "{}",
        )
        .unwrap();
        assert_eq!(bare.provider_id, "req-3");
    }
}
