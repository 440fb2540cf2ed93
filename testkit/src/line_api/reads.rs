//! The read endpoints of the fake LINE API: the monthly quota
//! (`GET /v2/bot/message/quota`, `GET /v2/bot/message/quota/consumption`, in
//! `tests/specs/line-messaging-api.json`) and the per-unit statistics
//! (`GET /v2/bot/insight/message/event/aggregation`, in `tests/specs/line-insight.json`).
//!
//! Every request is checked against its operation in the spec: the method, the
//! `Authorization: Bearer` header, each query parameter (required ones present,
//! values matching their schema, none the spec does not list) and no body. What the
//! server answers is set by the test ([`super::LineApi::set_quota`] and friends),
//! and checked against the operation's response schema when it is set, so a test
//! cannot make the fake answer what LINE never would.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::schema::{Validator, Violation};
use super::ServerState;
use crate::server::Incoming;

pub const QUOTA_PATH: &str = "/v2/bot/message/quota";
pub const CONSUMPTION_PATH: &str = "/v2/bot/message/quota/consumption";
pub const UNIT_STATS_PATH: &str = "/v2/bot/insight/message/event/aggregation";

const INSIGHT_JSON: &str = include_str!("../../../tests/specs/line-insight.json");

/// LINE's official Insight API description (vendored, see `tests/specs/README.md`).
pub fn insight_spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(INSIGHT_JSON).expect("tests/specs/line-insight.json"))
}

/// What the read endpoints answer.
pub(super) struct Reads {
    pub(super) quota: Value,
    pub(super) consumption: Value,
    /// Unit name → the statistics answered for it (any dates).
    pub(super) unit_stats: HashMap<String, Value>,
}

impl Default for Reads {
    fn default() -> Reads {
        Reads {
            quota: json!({"type": "none"}),
            consumption: json!({"totalUsage": 0}),
            unit_stats: HashMap::new(),
        }
    }
}

/// The statistics of a unit LINE has no figures for yet: every count null.
pub fn empty_unit_stats() -> Value {
    json!({
        "overview": {
            "uniqueImpression": null,
            "uniqueClick": null,
            "uniqueMediaPlayed": null,
            "uniqueMediaPlayed100Percent": null
        },
        "messages": [],
        "clicks": []
    })
}

/// Whether `path` is one of the read endpoints.
pub fn is_read(path: &str) -> bool {
    spec_for(path).is_some()
}

fn spec_for(path: &str) -> Option<&'static Value> {
    match path {
        QUOTA_PATH | CONSUMPTION_PATH => Some(super::messaging_api_spec()),
        UNIT_STATS_PATH => Some(insight_spec()),
        _ => None,
    }
}

/// Panics unless `answer` is what the spec lets `GET path` answer with 200.
pub(super) fn check_answer(path: &str, answer: &Value) {
    let spec = spec_for(path).expect("a read endpoint");
    let schema = super::operation(spec, "GET", path)
        .and_then(|op| op.pointer("/responses/200/content/application~1json/schema"))
        .expect("the spec has a 200 answer");
    let v = Validator::new(spec).validate(schema, answer, "");
    assert!(
        v.is_empty(),
        "LINE never answers GET {path} with {answer}: {}",
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
}

/// The answer to a read request (`None`: not a read endpoint), with the
/// request's violations.
pub(super) fn answer(st: &mut ServerState, req: &Incoming) -> Option<(u16, Value, Vec<Violation>)> {
    let path = req.path();
    let spec = spec_for(path)?;
    let mut violations = Vec::new();
    let Some(op) = super::operation(spec, req.method.as_str(), path) else {
        violations.push(Violation::new(
            "(method)",
            format!("{} {path}: the spec has only GET", req.method),
        ));
        return Some((405, json!({"message": "Method not allowed"}), violations));
    };
    let authorized = match req.header("authorization") {
        None => {
            violations.push(Violation::new(
                "Authorization",
                "header missing; the spec requires `Authorization: Bearer <channel access token>`",
            ));
            false
        }
        Some(value) => match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                token.trim() == st.token
            }
            _ => {
                violations.push(Violation::new(
                    "Authorization",
                    format!("must be `Bearer <channel access token>`, found {value:?}"),
                ));
                false
            }
        },
    };
    if !req.body.is_empty() {
        violations.push(Violation::new("(body)", "a GET request takes no body"));
    }
    let query = query_pairs(req.uri.query().unwrap_or(""));
    violations.extend(query_violations(spec, op, &query));
    if !authorized {
        let body = json!({"message": "Authentication failed. Confirm that the access token in the authorization header is valid."});
        return Some((401, body, violations));
    }
    if !violations.is_empty() {
        let details: Vec<Value> = violations
            .iter()
            .map(|v| json!({"message": v.message, "property": v.property}))
            .collect();
        return Some((
            400,
            json!({"message": "The request has error(s)", "details": details}),
            violations,
        ));
    }
    let body = match path {
        QUOTA_PATH => st.reads.quota.clone(),
        CONSUMPTION_PATH => st.reads.consumption.clone(),
        _ => {
            let unit = query
                .iter()
                .find(|(k, _)| k == "customAggregationUnit")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            st.reads
                .unit_stats
                .get(unit)
                .cloned()
                .unwrap_or_else(empty_unit_stats)
        }
    };
    Some((200, body, violations))
}

/// `a=1&b=2`, percent-decoded.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Each query parameter against the operation's `parameters`; the documented
/// 30-day limit of the statistics period besides.
fn query_violations(spec: &Value, op: &Value, query: &[(String, String)]) -> Vec<Violation> {
    let validator = Validator::new(spec);
    let mut out = Vec::new();
    let params: Vec<&Value> = op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
        .collect();
    for (name, _) in query {
        if !params
            .iter()
            .any(|p| p.get("name").and_then(Value::as_str) == Some(name))
        {
            out.push(Violation::new(name, "query parameter not in the spec"));
        }
    }
    for p in &params {
        let Some(name) = p.get("name").and_then(Value::as_str) else {
            continue;
        };
        let values: Vec<&String> = query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect();
        match (values.as_slice(), p.get("schema")) {
            ([], _) if p.get("required") == Some(&Value::Bool(true)) => {
                out.push(Violation::new(name, "required query parameter missing"));
            }
            ([], _) => {}
            ([one], Some(schema)) => {
                out.extend(validator.validate(schema, &Value::String((*one).clone()), name))
            }
            ([_], None) => {}
            _ => out.push(Violation::new(name, "given more than once")),
        }
    }
    let date = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<u32>().ok())
    };
    if let (Some(from), Some(to)) = (date("from"), date("to")) {
        if to < from {
            out.push(Violation::new(
                "to",
                "the end date is before the start date",
            ));
        } else if days(to) - days(from) > 30 {
            out.push(Violation::new(
                "to",
                "the period may end at most 30 days after its start",
            ));
        }
    }
    out
}

/// A yyyyMMdd date as days since 1970-01-01 (proleptic Gregorian).
fn days(yyyymmdd: u32) -> i64 {
    let (y, m, d) = (
        i64::from(yyyymmdd / 10_000),
        i64::from(yyyymmdd / 100 % 100),
        i64::from(yyyymmdd % 100),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_queries() {
        assert_eq!(days(19700101), 0);
        assert_eq!(days(20210331) - days(20210301), 30);
        assert_eq!(
            query_pairs("customAggregationUnit=spring_26&from=20210301"),
            vec![
                ("customAggregationUnit".to_owned(), "spring_26".to_owned()),
                ("from".to_owned(), "20210301".to_owned())
            ]
        );
        assert_eq!(decode("a%2Fb"), "a/b");
    }

    #[test]
    fn the_statistics_query_is_checked_against_the_insight_spec() {
        let spec = insight_spec();
        let op = super::super::operation(spec, "GET", UNIT_STATS_PATH).unwrap();
        let q = |s: &str| query_violations(spec, op, &query_pairs(s));
        assert!(q("customAggregationUnit=spring_26&from=20210301&to=20210331").is_empty());
        assert!(!q("customAggregationUnit=spring-26&from=20210301&to=20210301").is_empty());
        assert!(!q("customAggregationUnit=a&from=2021031&to=20210301").is_empty());
        assert!(!q("from=20210301&to=20210301").is_empty());
        assert!(!q("customAggregationUnit=a&from=20210301&to=20210401").is_empty());
        assert!(!q("customAggregationUnit=a&from=20210301&to=20210301&x=1").is_empty());
        check_answer(UNIT_STATS_PATH, &empty_unit_stats());
        check_answer(QUOTA_PATH, &json!({"type": "limited", "value": 1000}));
        check_answer(CONSUMPTION_PATH, &json!({"totalUsage": 5}));
    }
}
