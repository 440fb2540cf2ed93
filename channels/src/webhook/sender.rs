//! The signed POST: which URL a message goes to, the request, and reading the answer.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Url;

use super::{classify, webhook_id, WebhookSecret};
use crate::{Channel, Content, Encode, Message, SendError, Sent};

/// The Standard Webhooks headers.
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// An answer is read up to this much; the rest is never read into memory.
pub const MAX_ANSWER: usize = 64 * 1024;

/// The channel's configuration, once parsed.
#[derive(Clone)]
pub struct WebhookSettings {
    /// The default endpoint, for messages whose `to` names none (`to.webhook_url`).
    pub url: Option<String>,
    pub secret: WebhookSecret,
    pub timeout: Duration,
    /// Accept `http://` to a loopback host (tests, a sidecar on the same machine).
    pub allow_http: bool,
}

/// The request body: the JSON document of `Content::Json`, serialized compactly.
/// What is signed and sent are these exact bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct WebhookEncoder;

impl Encode for WebhookEncoder {
    fn extension(&self) -> &'static str {
        "json"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        let Content::Json { body } = &message.content else {
            return Err(SendError::permanent(
                "invalid_message",
                "no webhook content (a JSON body)",
            ));
        };
        serde_json::to_vec(body).map_err(|e| SendError::permanent("invalid_message", e.to_string()))
    }
}

/// Which endpoint a message goes to: its own address (the job's `to.webhook_url`)
/// when it has one, else the channel's default `url`. `None`: neither. The daemon
/// keys a 410's suppression by this URL (see [`parse_endpoint`] for its normal form).
pub fn endpoint_for<'a>(address: &'a str, default: Option<&'a str>) -> Option<&'a str> {
    let address = address.trim();
    if !address.is_empty() {
        return Some(address);
    }
    default.map(str::trim).filter(|u| !u.is_empty())
}

/// Checks that `url` may be posted to: `https://` with a host, or — only when
/// `allow_http` — `http://` to a loopback host (127.0.0.0/8, `::1`, `localhost`).
/// For the daemon's config check of the default `url` as well as for each message.
/// The error names the scheme or host at fault, never the path or query (a chat
/// tool's webhook URL carries its token there).
pub fn endpoint_allowed(url: &str, allow_http: bool) -> Result<(), String> {
    parse_endpoint(url, allow_http).map(|_| ())
}

/// [`endpoint_allowed`], returning the parsed URL. Its `as_str()` is a normal form
/// (scheme and host lowercased, default port dropped, `/` path when none was
/// given), fit to key a suppression by.
pub fn parse_endpoint(url: &str, allow_http: bool) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("not a valid URL ({e})"))?;
    let host = parsed.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_http && is_loopback(host) => Ok(parsed),
        "http" if allow_http => Err(format!(
            "http:// is accepted only to a loopback host (127.0.0.0/8, ::1, localhost), not {host}: use https://"
        )),
        "http" => Err(
            "only https:// URLs are accepted (http:// to a loopback host needs allow_http = true)"
                .into(),
        ),
        other => Err(format!("the scheme {other}: is not accepted: use https://")),
    }
}

fn is_loopback(host: &str) -> bool {
    // `host_str` gives an IPv6 address in brackets.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Posts each message to its endpoint, signed.
pub struct WebhookSender {
    http: reqwest::Client,
    settings: WebhookSettings,
    encoder: WebhookEncoder,
}

impl WebhookSender {
    /// Fails when the default `url` is not allowed or the HTTP client cannot be built.
    pub fn new(settings: WebhookSettings) -> Result<Self, String> {
        if let Some(url) = &settings.url {
            endpoint_allowed(url, settings.allow_http).map_err(|e| format!("webhook url: {e}"))?;
        }
        let http = crate::provider_http::client(settings.timeout)?;
        Ok(Self {
            http,
            settings,
            encoder: WebhookEncoder,
        })
    }

    /// The message's endpoint, checked: `no_address` (unreachable: the job falls
    /// back) when there is none, `invalid_url` (permanent, never posted) when it is
    /// not allowed.
    pub fn endpoint(&self, message: &Message) -> Result<Url, SendError> {
        let url =
            endpoint_for(&message.to.address, self.settings.url.as_deref()).ok_or_else(|| {
                SendError::unreachable(
                    "no_address",
                    "no webhook URL: the job has no to.webhook_url and the channel no default url",
                )
            })?;
        parse_endpoint(url, self.settings.allow_http)
            .map_err(|e| SendError::permanent("invalid_url", e))
    }
}

#[async_trait::async_trait]
impl Channel for WebhookSender {
    async fn send(&self, message: &Message) -> Result<Sent, SendError> {
        let body = self.encoder.encode(message)?;
        let url = self.endpoint(message)?;
        let id = webhook_id(&message.idempotency_key);
        let timestamp = jiff::Timestamp::now().as_second();
        let signature = self.settings.secret.sign(&id, timestamp, &body);
        let response = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_ID, id.as_str())
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| crate::provider_http::request_error("webhook", e))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers(), jiff::Timestamp::now());
        let answer = read_capped(response, MAX_ANSWER).await;
        classify(status, wait, &String::from_utf8_lossy(&answer))?;
        let mut sent = Sent::new(id);
        sent.details.push(("http_status", status.into()));
        Ok(sent)
    }
}

/// Reads the answer's body chunk by chunk and stops at `max` bytes (or at an error:
/// the status is what counts). The connection of a longer answer is dropped.
async fn read_capped(mut response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = max - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3); a date already
/// past means now.
fn retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    if let Some(wait) = crate::provider_http::retry_after(headers) {
        return Some(wait);
    }
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value.trim())
        .ok()?;
    let millis = at.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use serde_json::json;

    use super::*;
    use crate::Recipient;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn message(address: &str, content: Content) -> Message {
        Message {
            job_id: "order.42".into(),
            attempt: 1,
            idempotency_key: "order.42/webhook".into(),
            campaign: None,
            customer_id: None,
            to: Recipient {
                address: address.into(),
                ..Recipient::default()
            },
            content,
        }
    }

    fn json_message(address: &str) -> Message {
        message(
            address,
            Content::Json {
                body: json!({"type": "order.shipped", "data": {"name": "山田 太郎", "n": 3}}),
            },
        )
    }

    fn sender(url: Option<&str>, allow_http: bool, timeout: Duration) -> WebhookSender {
        WebhookSender::new(WebhookSettings {
            url: url.map(str::to_owned),
            secret: WebhookSecret::parse(SECRET).unwrap(),
            timeout,
            allow_http,
        })
        .unwrap()
    }

    #[test]
    fn only_https_or_loopback_http_when_allowed() {
        for ok in [
            "https://hooks.example.com/in?token=x",
            "https://192.0.2.7:8443/",
            "HTTPS://Example.COM",
        ] {
            assert_eq!(endpoint_allowed(ok, false), Ok(()), "{ok}");
            assert_eq!(endpoint_allowed(ok, true), Ok(()), "{ok}");
        }
        for loopback in [
            "http://127.0.0.1:8080/hook",
            "http://127.9.8.7/",
            "http://[::1]:9000/x",
            "http://localhost/x",
            "http://LOCALHOST:1/",
        ] {
            assert_eq!(endpoint_allowed(loopback, true), Ok(()), "{loopback}");
            let e = endpoint_allowed(loopback, false).unwrap_err();
            assert!(e.contains("allow_http"), "{e}");
        }
        for refused in [
            "http://example.com/hook",
            "http://10.0.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost.example.com/",
            "http://128.0.0.1/",
        ] {
            let e = endpoint_allowed(refused, true).unwrap_err();
            assert!(e.contains("loopback"), "{refused}: {e}");
        }
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "example.com/hook",
            "",
            "https://",
            "data:text/plain,hi",
        ] {
            assert!(endpoint_allowed(bad, true).is_err(), "{bad}");
        }
        // The path and query (a token) are never quoted.
        let e =
            endpoint_allowed("http://chat.example.com/hooks/T0KEN?k=s3cret", false).unwrap_err();
        assert!(!e.contains("T0KEN") && !e.contains("s3cret"), "{e}");
        let e = endpoint_allowed("http://chat.example.com/hooks/T0KEN?k=s3cret", true).unwrap_err();
        assert!(!e.contains("T0KEN") && !e.contains("s3cret"), "{e}");
        assert_eq!(
            parse_endpoint("HTTPS://Example.COM:443", false)
                .unwrap()
                .as_str(),
            "https://example.com/"
        );
    }

    #[test]
    fn the_message_address_overrides_the_default_url() {
        let default = Some("https://default.example/hook");
        assert_eq!(
            endpoint_for(" https://job.example/x ", default),
            Some("https://job.example/x")
        );
        assert_eq!(endpoint_for("", default), default);
        assert_eq!(endpoint_for("  ", default), default);
        assert_eq!(endpoint_for("", None), None);
        assert_eq!(endpoint_for("", Some(" ")), None);
    }

    #[test]
    fn a_bad_default_url_is_a_config_error() {
        let err = WebhookSender::new(WebhookSettings {
            url: Some("http://example.com/hook".into()),
            secret: WebhookSecret::parse(SECRET).unwrap(),
            timeout: Duration::from_secs(1),
            allow_http: true,
        })
        .err()
        .unwrap();
        assert!(err.starts_with("webhook url: "), "{err}");
    }

    #[test]
    fn the_encoder_writes_the_json_body_and_refuses_other_content() {
        let m = json_message("");
        assert_eq!(WebhookEncoder.extension(), "json");
        let bytes = WebhookEncoder.encode(&m).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"data":{"n":3,"name":"山田 太郎"},"type":"order.shipped"}"#
        );
        let sms = message("", Content::Sms { text: "hi".into() });
        assert_eq!(
            WebhookEncoder.encode(&sms).unwrap_err().code(),
            "invalid_message"
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now: jiff::Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(reqwest::header::RETRY_AFTER, v.parse().unwrap());
            retry_after(&h, now)
        };
        assert_eq!(with("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            with("Sun, 01 Mar 2026 12:01:30 GMT"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(with("Sun, 01 Mar 2026 11:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(with("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[tokio::test]
    async fn missing_or_refused_endpoints_are_never_posted() {
        let s = sender(None, true, Duration::from_secs(1));
        let e = s.send(&json_message("")).await.unwrap_err();
        assert!(matches!(e, SendError::Unreachable { .. }), "{e:?}");
        assert_eq!(e.code(), "no_address");
        // A port nobody listens on would give webhook_connection if it were tried.
        let e = s
            .send(&json_message("http://192.0.2.1:9/hook"))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert_eq!(e.code(), "invalid_url");
        let e = s
            .send(&message(
                "https://x.example/",
                Content::Sms { text: "hi".into() },
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid_message");
    }

    #[tokio::test]
    async fn connection_errors_are_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let s = sender(None, true, Duration::from_secs(2));
        let e = s
            .send(&json_message(&format!("http://{addr}/hook?token=s3cret")))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Transient { .. }), "{e:?}");
        assert_eq!(e.code(), "webhook_connection");
        assert!(!e.message().contains("s3cret"), "{e:?}");
    }

    async fn serve(
        head: String,
        body: Vec<u8>,
        hold: bool,
    ) -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
        crate::one_shot::serve_raw(head, body, hold).await
    }

    /// The request's head (lowercased header names) and body.
    fn split(request: &[u8]) -> (Vec<(String, String)>, String, Vec<u8>) {
        let text = String::from_utf8_lossy(request);
        let end = text.find("\r\n\r\n").unwrap();
        let mut lines = text[..end].lines();
        let request_line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        (headers, request_line, request[end + 4..].to_vec())
    }

    #[tokio::test]
    async fn posts_the_signed_body_with_the_standard_headers() {
        let answer = "{\"ok\":true}";
        let head = format!(
            "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            answer.len()
        );
        let (addr, request) = serve(head, answer.as_bytes().to_vec(), false).await;
        // The default url is used: the message names no endpoint.
        let s = sender(
            Some(&format!("http://{addr}/hooks/in?team=7")),
            true,
            Duration::from_secs(5),
        );
        let m = json_message("");
        let sent = s.send(&m).await.unwrap();
        let before = jiff::Timestamp::now().as_second();
        let (headers, request_line, body) = split(&request.await.unwrap());
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        };
        assert_eq!(request_line, "POST /hooks/in?team=7 HTTP/1.1");
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(body, WebhookEncoder.encode(&m).unwrap());
        let id = header("webhook-id");
        assert_eq!(id, webhook_id("order.42/webhook"));
        assert_eq!(sent.provider_id, id);
        assert_eq!(sent.details, vec![("http_status", json!(202))]);
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        assert!((before - 5..=before).contains(&timestamp), "{timestamp}");
        let signature = header("webhook-signature");
        assert_eq!(
            signature,
            WebhookSecret::parse(SECRET)
                .unwrap()
                .sign(&id, timestamp, &body)
        );
        // A vector to check by hand against the Python library (see the report):
        // `cargo test -p tayori-channels webhook -- --nocapture`.
        println!(
            "VECTOR secret={SECRET} id={id} timestamp={timestamp} signature={signature} body={}",
            String::from_utf8_lossy(&body)
        );
    }

    #[tokio::test]
    async fn an_endless_answer_is_read_only_up_to_64_kib() {
        // A 400 that announces 100 MiB, sends 256 KiB and then never finishes:
        // read to its end, it would only stop at the 30-second timeout.
        let head = "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 104857600\r\n\r\n".to_owned();
        let mut body = "bad payload: missing field `type` ".as_bytes().to_vec();
        body.resize(256 * 1024, b'x');
        let (addr, _request) = serve(head, body, true).await;
        let s = sender(None, true, Duration::from_secs(30));
        let started = std::time::Instant::now();
        let e = tokio::time::timeout(
            Duration::from_secs(10),
            s.send(&json_message(&format!("http://{addr}/hook"))),
        )
        .await
        .expect("the answer was read past 64 KiB")
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert_eq!(e.code(), "http_400");
        assert!(
            e.message()
                .starts_with("the endpoint answered 400: bad payload: missing field `type` xxx"),
            "{e:?}"
        );
        assert!(
            e.message().len() <= "the endpoint answered 400: ".len() + 200,
            "{}",
            e.message().len()
        );
    }

    #[tokio::test]
    async fn answers_are_classified_with_their_retry_after() {
        let cases: [(&str, &str, &str); 4] = [
            ("503 Service Unavailable", "retry-after: 7\r\n", "http_503"),
            ("429 Too Many Requests", "", "http_429"),
            ("410 Gone", "", "http_410"),
            (
                "302 Found",
                "location: https://elsewhere.example/\r\n",
                "http_3xx",
            ),
        ];
        for (status, extra, code) in cases {
            let head = format!(
                "HTTP/1.1 {status}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n"
            );
            let (addr, _request) = serve(head, Vec::new(), false).await;
            let s = sender(None, true, Duration::from_secs(5));
            let e = s
                .send(&json_message(&format!(
                    "http://127.0.0.1:{}/h",
                    addr.port()
                )))
                .await
                .unwrap_err();
            assert_eq!(e.code(), code, "{e:?}");
            match code {
                "http_503" => assert!(
                    matches!(e, SendError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7))
                ),
                "http_429" => assert!(matches!(
                    e,
                    SendError::RateLimited {
                        retry_after: None,
                        ..
                    }
                )),
                "http_410" => assert!(matches!(e, SendError::Bounced { .. })),
                _ => assert!(matches!(e, SendError::Permanent { .. })),
            }
        }
    }
}
