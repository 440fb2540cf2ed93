//! What a webhook endpoint's answer means (Standard Webhooks, "Delivery success and
//! failure", narrowed to Tayori's outcomes by issue 18).

use std::time::Duration;

use crate::SendError;

/// At most this much of an error answer's body goes into the event's message.
pub const MAX_MESSAGE_BYTES: usize = 200;

/// Maps an endpoint's answer to an outcome. Pure, so every rule is unit-tested.
///
/// `body` is the answer as read (at most 64 KiB, lossily decoded); only its first
/// [`MAX_MESSAGE_BYTES`] bytes, cut on a character boundary, reach the message.
///
/// - 2xx: sent.
/// - 410 Gone: [`SendError::Bounced`], code `http_410`. The spec says the receiver
///   wants no more webhooks from us and the sender should disable the endpoint.
///   `Bounced` is the variant whose contract is "the address is dead on this
///   channel: the daemon suppresses it and the job falls back" — exactly that, with
///   the endpoint URL as the address. `Unreachable` only falls back and would post
///   the next job to the same endpoint again.
/// - 429: [`SendError::RateLimited`] with the answer's `Retry-After`.
/// - 5xx: retried. With a `Retry-After` (a 503 that says when) it is
///   [`SendError::RateLimited`], because only that variant carries a wait and the
///   daemon retries no sooner than it; without one, [`SendError::Transient`] (the
///   daemon's own backoff).
/// - 3xx: [`SendError::Permanent`] with code `http_3xx` (redirects are never
///   followed: the message would be posted somewhere the configuration did not name).
/// - any other status (other 4xx, 1xx): [`SendError::Permanent`], code `http_{status}`.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> Result<(), SendError> {
    let said = excerpt(body, MAX_MESSAGE_BYTES);
    let answered = |what: &str| {
        if said.is_empty() {
            format!("the endpoint answered {status}{what}")
        } else {
            format!("the endpoint answered {status}{what}: {said}")
        }
    };
    match status {
        200..=299 => Ok(()),
        410 => Err(SendError::Bounced {
            code: "http_410".into(),
            message: answered(" (gone: the endpoint asks for no more webhooks)"),
        }),
        429 => Err(SendError::RateLimited {
            code: "http_429".into(),
            message: answered(""),
            retry_after,
        }),
        500..=599 => match retry_after {
            Some(_) => Err(SendError::RateLimited {
                code: format!("http_{status}"),
                message: answered(""),
                retry_after,
            }),
            None => Err(SendError::transient(
                &format!("http_{status}"),
                answered(""),
            )),
        },
        300..=399 => Err(SendError::permanent(
            "http_3xx",
            answered(" (a redirect, not followed: configure the final URL)"),
        )),
        _ => Err(SendError::permanent(
            &format!("http_{status}"),
            answered(""),
        )),
    }
}

/// The first `max` bytes of `text`, trimmed, cut back to a character boundary.
fn excerpt(text: &str, max: usize) -> &str {
    let text = text.trim_start();
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, retry_after: Option<Duration>, body: &str) -> SendError {
        classify(status, retry_after, body).unwrap_err()
    }

    #[test]
    fn success_is_any_2xx() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(classify(status, None, "whatever"), Ok(()), "{status}");
        }
    }

    #[test]
    fn gone_is_a_dead_address() {
        let e = err(410, None, "endpoint deleted");
        assert!(matches!(e, SendError::Bounced { .. }), "{e:?}");
        assert_eq!(e.code(), "http_410");
        assert!(e.message().contains("endpoint deleted"), "{e:?}");
    }

    #[test]
    fn too_many_requests_carries_retry_after() {
        let wait = Some(Duration::from_secs(30));
        assert_eq!(
            err(429, wait, ""),
            SendError::RateLimited {
                code: "http_429".into(),
                message: "the endpoint answered 429".into(),
                retry_after: wait,
            }
        );
        assert!(matches!(
            err(429, None, ""),
            SendError::RateLimited {
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn server_errors_are_retried_no_sooner_than_retry_after() {
        let e = err(500, None, "boom");
        assert_eq!(
            e,
            SendError::transient("http_500", "the endpoint answered 500: boom")
        );
        for status in [502, 504, 599] {
            assert!(matches!(err(status, None, ""), SendError::Transient { .. }));
        }
        let wait = Some(Duration::from_secs(120));
        let e = err(503, wait, "maintenance");
        assert!(
            matches!(e, SendError::RateLimited { retry_after, ref code, .. } if retry_after == wait && code == "http_503"),
            "{e:?}"
        );
    }

    #[test]
    fn redirects_fail_as_http_3xx() {
        for status in [301, 302, 303, 307, 308] {
            let e = err(status, None, "");
            assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
            assert_eq!(e.code(), "http_3xx");
            assert!(e.message().contains(&status.to_string()), "{e:?}");
        }
    }

    #[test]
    fn other_client_errors_fail_with_their_status_and_200_bytes_of_body() {
        for status in [400, 401, 403, 404, 408, 413, 422] {
            let e = err(status, None, "");
            assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
            assert_eq!(e.code(), format!("http_{status}"));
        }
        assert_eq!(err(100, None, "").code(), "http_100");
        // 300 bytes of body: only the first 200 are kept.
        let body = format!("{}{}", "a".repeat(200), "b".repeat(100));
        let e = err(400, None, &body);
        assert_eq!(
            e.message(),
            format!("the endpoint answered 400: {}", "a".repeat(200))
        );
        // Cut on a character boundary: 199 ASCII bytes and a 3-byte character
        // crossing byte 200 keep only the 199.
        let body = format!("{}日本", "x".repeat(199));
        let e = err(422, None, &body);
        assert!(e.message().ends_with(&"x".repeat(199)), "{e:?}");
        assert!(!e.message().contains('日'), "{e:?}");
        let kept = e.message().len() - "the endpoint answered 422: ".len();
        assert!(kept <= MAX_MESSAGE_BYTES, "{kept}");
    }
}
