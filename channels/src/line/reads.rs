//! What Tayori reads from LINE besides sending: the monthly message quota
//! (`GET /v2/bot/message/quota` and `/quota/consumption`) and the per-unit
//! statistics of campaigns sent with `customAggregationUnits`
//! (`GET /v2/bot/insight/message/event/aggregation`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::Value;

/// The (aggregation unit, day) pairs messages were sent with, each handed over
/// once per process: the day is LINE's (`yyyyMMdd` in UTC+9, the zone of its
/// statistics). A few words per campaign and day.
#[derive(Default)]
pub struct SentUnits {
    inner: Mutex<UnitDays>,
}

#[derive(Default)]
struct UnitDays {
    fresh: Vec<(String, String)>,
    known: HashSet<(String, String)>,
}

impl SentUnits {
    /// A message went out with `unit` today.
    pub fn note(&self, unit: &str) {
        let day = line_day(jiff::Timestamp::now());
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let pair = (unit.to_owned(), day);
        if !inner.known.contains(&pair) {
            inner.known.insert(pair.clone());
            inner.fresh.push(pair);
        }
    }

    /// The pairs noted since the last call.
    pub fn take(&self) -> Vec<(String, String)> {
        self.inner
            .lock()
            .map(|mut i| std::mem::take(&mut i.fresh))
            .unwrap_or_default()
    }

    /// Hands `pairs` back after they could not be stored.
    pub fn give_back(&self, pairs: Vec<(String, String)>) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.fresh.extend(pairs);
        }
    }
}

/// LINE's day of `t`: `yyyyMMdd` in UTC+9.
pub fn line_day(t: jiff::Timestamp) -> String {
    let zone = jiff::tz::TimeZone::fixed(jiff::tz::offset(9));
    t.to_zoned(zone).strftime("%Y%m%d").to_string()
}

/// How long the channel pauses when the quota is used up: a quota reading that
/// shows room again ends the pause earlier.
pub const QUOTA_PAUSE: Duration = Duration::from_secs(3600);

/// The month's quota as LINE reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Messages the account may send this month; `None` when LINE sets no limit
    /// (`"type": "none"`).
    pub limit: Option<u64>,
    /// Messages sent this month (`totalUsage`).
    pub used: u64,
}

impl Quota {
    /// Whether no more messages can be sent this month.
    pub fn exhausted(&self) -> bool {
        self.limit.is_some_and(|limit| self.used >= limit)
    }
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("LINE could not be reached: {0}")]
    Request(String),
    #[error("LINE answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("LINE's answer is not what its API describes: {0}")]
    Answer(String),
}

/// A client for LINE's read endpoints (one per channel access token).
pub struct LineReader {
    http: reqwest::Client,
    base: String,
    authorization: HeaderValue,
}

impl LineReader {
    /// `api_base` is `https://api.line.me` in production.
    pub fn new(api_base: &str, token: &str, timeout: Duration) -> Result<Self, String> {
        let mut authorization = super::client::authorization(token)?;
        authorization.set_sensitive(true);
        Ok(Self {
            http: crate::provider_http::client(timeout)?,
            base: api_base.trim_end_matches('/').to_owned(),
            authorization,
        })
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ReadError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| ReadError::Request(format!("api_base: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .send()
            .await
            .map_err(|e| ReadError::Request(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .map_err(|e| ReadError::Answer(e.without_url().to_string()))?;
        if status != 200 {
            let message = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            return Err(ReadError::Refused { status, message });
        }
        Ok(body)
    }

    /// The month's limit and consumption (two requests).
    pub async fn quota(&self) -> Result<Quota, ReadError> {
        let quota = self.get("/v2/bot/message/quota", &[]).await?;
        let consumption = self.get("/v2/bot/message/quota/consumption", &[]).await?;
        parse_quota(&quota, &consumption)
    }

    /// LINE's statistics of `unit` for the days `from` to `to` (`yyyyMMdd`,
    /// LINE's time zone, UTC+9), as LINE returns them: nulls stay null.
    pub async fn unit_stats(&self, unit: &str, from: &str, to: &str) -> Result<Value, ReadError> {
        let body = self
            .get(
                "/v2/bot/insight/message/event/aggregation",
                &[("customAggregationUnit", unit), ("from", from), ("to", to)],
            )
            .await?;
        check_unit_stats(&body)?;
        Ok(body)
    }
}

/// The two answers as one [`Quota`].
pub fn parse_quota(quota: &Value, consumption: &Value) -> Result<Quota, ReadError> {
    let used = consumption
        .get("totalUsage")
        .and_then(Value::as_u64)
        .ok_or_else(|| ReadError::Answer("consumption without a totalUsage count".into()))?;
    let limit = match quota.get("type").and_then(Value::as_str) {
        Some("none") => None,
        Some("limited") => Some(
            quota
                .get("value")
                .and_then(Value::as_u64)
                .ok_or_else(|| ReadError::Answer("a limited quota without a value".into()))?,
        ),
        other => {
            return Err(ReadError::Answer(format!(
                "quota type {other:?} (expected \"none\" or \"limited\")"
            )))
        }
    };
    Ok(Quota { limit, used })
}

/// The statistics answer has the three parts the spec requires.
fn check_unit_stats(body: &Value) -> Result<(), ReadError> {
    let ok = body.get("overview").is_some_and(Value::is_object)
        && body.get("messages").is_some_and(Value::is_array)
        && body.get("clicks").is_some_and(Value::is_array);
    if ok {
        Ok(())
    } else {
        Err(ReadError::Answer(
            "statistics without overview, messages and clicks".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quotas_limited_and_unlimited() {
        let q = parse_quota(
            &json!({"type":"limited","value":1000}),
            &json!({"totalUsage":1000}),
        )
        .unwrap();
        assert_eq!(
            q,
            Quota {
                limit: Some(1000),
                used: 1000
            }
        );
        assert!(q.exhausted());
        let none = parse_quota(&json!({"type":"none"}), &json!({"totalUsage":5})).unwrap();
        assert_eq!(none.limit, None);
        assert!(!none.exhausted());
        assert!(parse_quota(&json!({"type":"limited"}), &json!({"totalUsage":5})).is_err());
        assert!(parse_quota(&json!({"type":"x"}), &json!({"totalUsage":5})).is_err());
        assert!(parse_quota(&json!({"type":"none"}), &json!({})).is_err());
        assert!(check_unit_stats(&json!({"overview":{},"messages":[],"clicks":[]})).is_ok());
        assert!(check_unit_stats(&json!({"overview":{}})).is_err());
    }

    #[test]
    fn days_are_lines_utc_plus_9_and_each_pair_is_handed_over_once() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(line_day(t("2026-03-01T14:59:59Z")), "20260301");
        assert_eq!(line_day(t("2026-03-01T15:00:00Z")), "20260302");
        let units = SentUnits::default();
        units.note("spring_26");
        units.note("spring_26");
        units.note("autumn");
        let taken = units.take();
        assert_eq!(taken.len(), 2, "{taken:?}");
        units.note("spring_26");
        assert!(units.take().is_empty(), "already handed over");
        units.give_back(taken);
        assert_eq!(units.take().len(), 2, "given back after a failed write");
    }
}
