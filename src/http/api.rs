//! `POST /v1/jobs`: the enqueue API. A batch of jobs (a JSON array or NDJSON),
//! each checked against the live config (`crate::job_check`) and the good ones
//! added where `tayori enqueue` adds them, idempotently by job id
//! (`crate::job_intake`). Bearer API keys, stored as SHA-256 hashes in
//! `[http.api] keys`; without keys the route is not mounted (404).
//! docs/openapi.yaml is the contract.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, value::RawValue, Value};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::job_check::{job_id_of, CheckError, JobChecker};
use crate::job_intake::{Added, Intake, ToAdd};
use crate::metrics as m;

/// The most jobs one request may carry: a batch's checks and adds take a few
/// milliseconds, a partial failure is cheap to retry.
pub const MAX_JOBS: usize = 1000;
/// The largest body, in bytes.
pub const MAX_BODY: usize = 5 * 1024 * 1024;

/// What the API needs: the keys' hashes, the checks, and Redis (set once connected).
pub struct Api {
    keys: Vec<[u8; 32]>,
    checker: JobChecker,
    pub intake: OnceLock<Intake>,
}

impl Api {
    /// `None` when no key is configured: the API is off.
    pub fn new(keys: Vec<[u8; 32]>, checker: JobChecker) -> Option<Api> {
        (!keys.is_empty()).then(|| Api {
            keys,
            checker,
            intake: OnceLock::new(),
        })
    }

    /// Whether the request carries `Authorization: Bearer <a configured key>`.
    /// Every stored hash is compared, each in constant time.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
        else {
            return false;
        };
        let hash = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut ok = subtle::Choice::from(0);
        for key in &self.keys {
            ok |= key.ct_eq(hash.as_ref());
        }
        ok.into()
    }
}

/// A new API key and its config line: 32 random bytes, URL-safe base64, and
/// `sha256:<hex>` of the key as sent.
pub fn new_key() -> Result<(String, String), KeyError> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError)?;
    let key = format!(
        "tyk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    Ok((key.clone(), key_hash(&key)))
}

/// The system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct KeyError;

/// `sha256:<hex>` of a key, as `[http.api] keys` holds it.
pub fn key_hash(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A JSON answer (axum's `Json` needs a feature this build leaves out).
fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An error answer: `{"error": {"code", "message", …}}`.
fn error(status: StatusCode, code: &str, message: impl Into<String>, extra: Value) -> Response {
    let mut e = json!({ "code": code, "message": message.into() });
    if let (Some(obj), Value::Object(more)) = (e.as_object_mut(), extra) {
        obj.extend(more);
    }
    json_response(status, &json!({ "error": e }))
}

fn unauthorized() -> Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send Authorization: Bearer <API key> with a key listed in [http.api] keys",
        Value::Null,
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"tayori\""),
    );
    r
}

/// The body's format, from its Content-Type.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Array,
    Ndjson,
}

fn format_of(headers: &HeaderMap) -> Option<Format> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Some(Format::Array),
        "application/x-ndjson" => Some(Format::Ndjson),
        _ => None,
    }
}

/// `?check=true`: only check.
fn check_only(uri: &Uri) -> Result<bool, String> {
    let mut check = false;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if k == "check" {
            check = match v.as_ref() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err("check must be true or false".into()),
            };
        }
    }
    Ok(check)
}

/// One job of the body: its JSON text, or why it could not be split out.
type Item<'a> = Result<&'a str, CheckError>;

/// Splits the body into jobs; a malformed JSON array is refused whole (the
/// error names line and column), a malformed NDJSON line only fails its job.
/// The error is a `malformed_json` answer's message and extra fields.
fn split(body: &[u8], format: Format) -> Result<Vec<Item<'_>>, (String, Value)> {
    match format {
        Format::Array => {
            let raws: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
                (
                    format!("the body is not a JSON array of jobs: {e}"),
                    json!({ "line": e.line(), "column": e.column() }),
                )
            })?;
            Ok(raws.into_iter().map(|r| Ok(r.get())).collect())
        }
        Format::Ndjson => {
            let text = std::str::from_utf8(body)
                .map_err(|e| (format!("the body is not UTF-8: {e}"), Value::Null))?;
            Ok(text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(n, l)| {
                    serde_json::from_str::<&RawValue>(l)
                        .map(|_| l.trim())
                        .map_err(|e| CheckError {
                            code: "malformed_json".into(),
                            field: "job".into(),
                            message: format!("line {}, column {}: {e}", n + 1, e.column()),
                        })
                })
                .collect())
        }
    }
}

/// The whole body, or `None` as soon as it grows past `max` bytes (a body sent
/// without Content-Length, chunked, is cut off there too).
async fn read_body(body: Body, max: usize) -> Result<Option<Vec<u8>>, axum::Error> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > max {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// `POST /v1/jobs`.
pub async fn post_jobs(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(api) = state.api.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !api.authorized(&headers) {
        return unauthorized();
    }
    let check = match check_only(&uri) {
        Ok(c) => c,
        Err(m) => return error(StatusCode::BAD_REQUEST, "bad_query", m, Value::Null),
    };
    let Some(format) = format_of(&headers) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json (an array of jobs) or application/x-ndjson (one job a line)",
            Value::Null,
        );
    };
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over {MAX_BODY} bytes: send at most {MAX_JOBS} jobs and {MAX_BODY} bytes a request"),
            json!({ "max_bytes": MAX_BODY }),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let bytes = match read_body(body, MAX_BODY).await {
        Ok(Some(b)) => b,
        Ok(None) => return too_large(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                format!("the body could not be read: {e}"),
                Value::Null,
            )
        }
    };
    let items = match split(&bytes, format) {
        Ok(items) => items,
        Err((message, extra)) => {
            return error(StatusCode::BAD_REQUEST, "malformed_json", message, extra)
        }
    };
    if items.len() > MAX_JOBS {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_jobs",
            format!("{} jobs: send at most {MAX_JOBS} a request", items.len()),
            json!({ "max_jobs": MAX_JOBS }),
        );
    }
    if items.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "no_jobs",
            "the body holds no job",
            Value::Null,
        );
    }
    // Checks compose each job on each of its channels: 0.5 ms of CPU a job in
    // a debug build (10,000 SMS, LINE and email jobs through `check-jobs`: 4.9 s),
    // so a batch runs on a blocking thread, off the server's async workers.
    let checker = api.checker.clone();
    let owned: Vec<Result<String, CheckError>> =
        items.into_iter().map(|i| i.map(str::to_owned)).collect();
    let checked = match tokio::task::spawn_blocking(move || {
        owned
            .into_iter()
            .map(|item| {
                let raw = item.map_err(|e| (e, None))?;
                let job = checker.check_raw(&raw).map_err(|e| (e, job_id_of(&raw)))?;
                Ok((job, raw))
            })
            .collect::<Vec<_>>()
    })
    .await
    {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("checking the jobs failed: {e}"),
                Value::Null,
            )
        }
    };
    let mut results: Vec<Value> = Vec::with_capacity(checked.len());
    // The good jobs, and where each one's result is.
    let mut adds: Vec<ToAdd<'_>> = Vec::new();
    let mut at: Vec<usize> = Vec::new();
    for (index, c) in checked.iter().enumerate() {
        match c {
            Ok((job, raw)) => {
                adds.push(ToAdd { job, raw });
                at.push(index);
                results.push(json!({ "index": index, "job_id": job.id, "status": "valid" }));
            }
            Err((e, id)) => results.push(json!({
                "index": index, "job_id": id, "status": "invalid",
                "error": { "code": e.code, "field": e.field, "message": e.message },
            })),
        }
    }
    let mut warning = None;
    if !check && !adds.is_empty() {
        let Some(intake) = api.intake.get() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "redis_unavailable",
                "not connected to Redis yet: retry (posting the same jobs again is safe)",
                Value::Null,
            );
        };
        let (added, confirmed) = match intake.add(&adds).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "POST /v1/jobs: adding jobs failed");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "redis_unavailable",
                    format!(
                        "adding the jobs failed ({e}): retry (posting the same jobs again is safe)"
                    ),
                    Value::Null,
                );
            }
        };
        for (index, a) in at.iter().zip(added) {
            let r = &mut results[*index];
            match a {
                Added::Enqueued(id) => {
                    r["status"] = "enqueued".into();
                    r["entry_id"] = id.into();
                }
                Added::Duplicate(id) => {
                    r["status"] = "duplicate".into();
                    r["entry_id"] = id.into();
                }
            }
        }
        if !confirmed {
            warning = Some("the jobs were added, but fewer replicas than redis.wait_replicas confirmed them in time: a failover now could lose them");
        }
    }
    for r in &results {
        let status = r["status"].as_str().unwrap_or("invalid");
        let status = match status {
            "enqueued" => "enqueued",
            "duplicate" => "duplicate",
            "valid" => "valid",
            _ => "invalid",
        };
        metrics::counter!(m::API_JOBS, "status" => status).increment(1);
    }
    let mut body = json!({ "results": results });
    if let Some(w) = warning {
        body["warning"] = w.into();
    }
    json_response(StatusCode::OK, &body)
}

/// The API's state for the router, built from the config; `None` when it is off.
pub fn from_config(config: &crate::config::Config, checker: JobChecker) -> Option<Arc<Api>> {
    let keys = config.http.api.hashes().ok()?;
    Api::new(keys, checker).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_random_and_its_hash_is_what_the_config_holds() {
        let (key, hash) = new_key().unwrap();
        let (other, _) = new_key().unwrap();
        assert_ne!(key, other);
        assert_eq!(hash, key_hash(&key));
        assert_eq!(
            key_hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn check_takes_true_or_false_only() {
        let uri = |q: &str| format!("/v1/jobs{q}").parse::<Uri>().unwrap();
        assert_eq!(check_only(&uri("")), Ok(false));
        assert_eq!(check_only(&uri("?check=true")), Ok(true));
        assert_eq!(check_only(&uri("?check=false")), Ok(false));
        assert!(check_only(&uri("?check=yes")).is_err());
    }
}
