//! The `http` fuzz target: the daemon's router, in process, without Redis (handlers
//! that got past their checks answer 503): webhooks signed and unsigned, tracking
//! links, unsubscribe pages, anything else.

use super::*;

struct HttpKit {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
}

thread_local! {
    static HTTP: HttpKit = http_kit();
}

fn http_kit() -> HttpKit {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // SMS goes through one provider at a time: Twilio's routes from one
    // config, Vonage's from another.
    let hooks = tayori::channel::inbound::RouteContext {
        public_url: PUBLIC_URL.to_owned(),
        tracker: None,
        dedupe_window: std::time::Duration::from_secs(60),
    };
    let twilio = channels(TWILIO_SMS);
    let vonage = channels(VONAGE_SMS);
    let tracker = twilio.tracker.clone();
    let hooks = tayori::channel::inbound::RouteContext { tracker, ..hooks };
    let mut routes: Vec<_> = twilio
        .iter()
        .flat_map(|c| c.settings.routes(&hooks))
        .collect();
    routes.extend(
        vonage
            .get(tayori::channel::sms::ID)
            .map(|c| c.settings.routes(&hooks))
            .unwrap_or_default(),
    );
    let webhooks = tayori::http::Webhooks {
        queue: Default::default(),
        dedupe_window: std::time::Duration::from_secs(60),
        repeat_window: std::time::Duration::from_secs(60),
        tracker: twilio.tracker.clone(),
        routes,
        trusted_proxies: Vec::new(),
    };
    let app = tayori::http::router(tayori::http::AppState {
        health: Default::default(),
        metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
        webhooks: Arc::new(webhooks),
        api: None,
    });
    HttpKit { runtime, app }
}

/// The status and headers of one request to the router.
fn call(request: Request<Body>) -> (StatusCode, HeaderMap) {
    HTTP.with(|kit| {
        let service = axum::routing::any_service(kit.app.clone());
        let response = kit.runtime.block_on(Handler::call(service, request, ()));
        (response.status(), response.headers().clone())
    })
}

fn request(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Option<Request<Body>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).ok()?;
        let value = HeaderValue::from_str(v).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(Body::from(body)).ok()
}

/// Key/value pairs from `a=b` lines.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn form(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Vonage's `sig` (HMAC-SHA256) under the targets' signature secret.
fn vonage_signature(params: &[(String, String)]) -> String {
    sign::vonage_signature(VONAGE_SECRET, sign::VonageHmac::Sha256, params)
}

/// Only a click token we sealed redirects, and only to its own http(s) link.
fn check_redirect(status: StatusCode, headers: &HeaderMap, token: &str) {
    if !status.is_redirection() {
        return;
    }
    let location = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let opened = SEALER.with(|s| s.open(Purpose::Click, token));
    let url = opened.and_then(|t| t.url);
    assert_eq!(
        url.as_deref(),
        Some(location),
        "a redirect the token does not name: {status} {location:?} for {token:?}"
    );
    let lower = location.to_ascii_lowercase();
    assert!(lower.starts_with("https://") || lower.starts_with("http://"));
}

pub fn http(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let p = parts(rest, 3);
    let now = jiff::Timestamp::now().as_second().to_string();
    match selector % 8 {
        // LINE, signed by us: parsed; never 401.
        0 => {
            let body = p[0].as_bytes().to_vec();
            let sig = line_signature(&body);
            if let Some(req) = request(
                Method::POST,
                "/webhooks/line",
                &[("x-line-signature", &sig)],
                body,
            ) {
                let (status, _) = call(req);
                assert!(
                    [200, 400, 413, 503].contains(&status.as_u16()),
                    "signed LINE webhook: {status}"
                );
            }
        }
        // LINE with whatever signature: never accepted.
        1 => {
            if let Some(req) = request(
                Method::POST,
                "/webhooks/line",
                &[("x-line-signature", &p[1])],
                p[0].as_bytes().to_vec(),
            ) {
                let (status, _) = call(req);
                assert!(status.is_client_error(), "forged LINE webhook: {status}");
            }
        }
        // Twilio, signed by us (form body, query from the input).
        2 => {
            let params = pairs(&p[0]);
            let path = format!("/webhooks/twilio?{}", form(&pairs(&p[1])));
            let sig = sign::twilio_signature(TWILIO_TOKEN, &format!("{PUBLIC_URL}{path}"), &params);
            let headers = [
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-twilio-signature", sig.as_str()),
            ];
            if let Some(req) = request(Method::POST, &path, &headers, form(&params).into_bytes()) {
                let (status, _) = call(req);
                assert!(
                    [413, 503].contains(&status.as_u16()),
                    "signed Twilio webhook: {status}"
                );
            }
        }
        // Twilio with whatever signature: refused.
        3 => {
            let path = format!("/webhooks/twilio?{}", form(&pairs(&p[1])));
            let headers = [("x-twilio-signature", p[2].as_str())];
            if let Some(req) = request(Method::POST, &path, &headers, p[0].as_bytes().to_vec()) {
                let (status, _) = call(req);
                assert!(status.is_client_error(), "forged Twilio webhook: {status}");
            }
        }
        // Vonage, signed by us, as GET, form POST or JSON POST.
        4 => {
            let mut params: Vec<(String, String)> = pairs(&p[0])
                .into_iter()
                .filter(|(k, _)| k != "sig")
                .collect();
            if !params.iter().any(|(k, _)| k == "timestamp") {
                params.push(("timestamp".to_owned(), now.clone()));
            }
            let via = pick(rest, 3);
            if via == 2 {
                // A JSON object keeps one value per name.
                let object: serde_json::Map<String, Value> = params
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                params = object
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
            }
            let sig = vonage_signature(&params);
            params.push(("sig".to_owned(), sig));
            let req = match via {
                0 => request(
                    Method::GET,
                    &format!("/webhooks/vonage?{}", form(&params)),
                    &[],
                    Vec::new(),
                ),
                1 => request(
                    Method::POST,
                    "/webhooks/vonage",
                    &[("content-type", "application/x-www-form-urlencoded")],
                    form(&params).into_bytes(),
                ),
                _ => {
                    let object: serde_json::Map<String, Value> = params
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect();
                    request(
                        Method::POST,
                        "/webhooks/vonage",
                        &[("content-type", "application/json")],
                        Value::Object(object).to_string().into_bytes(),
                    )
                }
            };
            if let Some(req) = req {
                let (status, _) = call(req);
                let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
                names.sort_unstable();
                let unique = names.windows(2).all(|w| w[0] != w[1]);
                let fresh = params
                    .iter()
                    .find(|(k, _)| k == "timestamp")
                    .and_then(|(_, v)| v.trim().parse::<i64>().ok())
                    .is_some_and(|t| t.abs_diff(now.parse::<i64>().unwrap_or(0)) <= 300);
                if unique && fresh {
                    assert!(
                        [413, 503].contains(&status.as_u16()),
                        "signed fresh Vonage webhook: {status}"
                    );
                } else {
                    assert!(status.is_client_error(), "Vonage: {status}");
                }
            }
        }
        // Vonage, raw: whatever comes, never accepted.
        5 => {
            let uri = format!("/webhooks/vonage?{}", p[1]);
            let method = if pick(rest, 2) == 0 {
                Method::GET
            } else {
                Method::POST
            };
            let headers = [("content-type", p[2].as_str())];
            if let Some(req) = request(method, &uri, &headers, p[0].as_bytes().to_vec()) {
                let (status, _) = call(req);
                assert!(status.is_client_error(), "forged Vonage webhook: {status}");
            }
        }
        // Tracking links, short links and unsubscribe pages with the token as given.
        6 => {
            let token = &p[0];
            for (method, prefix) in [
                (Method::GET, "/t/c/"),
                (Method::HEAD, "/t/c/"),
                (Method::GET, "/t/o/"),
                (Method::GET, "/s/"),
                (Method::GET, "/u/"),
                (Method::POST, "/u/"),
            ] {
                let Some(req) = request(
                    method,
                    &format!("{prefix}{token}"),
                    &[],
                    p[1].as_bytes().to_vec(),
                ) else {
                    continue;
                };
                let (status, headers) = call(req);
                assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
                if prefix == "/t/c/" {
                    check_redirect(status, &headers, token);
                } else {
                    assert!(!status.is_redirection(), "{prefix}: {status}");
                }
            }
        }
        // Anything at all.
        _ => {
            let method = Method::from_bytes(p[2].as_bytes()).unwrap_or(Method::GET);
            if let Some(req) = request(method, &p[1], &[], p[0].as_bytes().to_vec()) {
                let (status, headers) = call(req);
                assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR);
                let token = p[1].strip_prefix("/t/c/").unwrap_or("");
                check_redirect(status, &headers, token);
            }
        }
    }
}

pub fn http_seeds() -> Vec<Vec<u8>> {
    let with = |selector: u8, rest: Vec<u8>| {
        let mut v = vec![selector];
        v.extend(rest);
        v
    };
    let s = Sealer::new(SECRET);
    let t = Tracked {
        channel: tayori::channel::email::ID,
        job_id: "spring26-C1001".into(),
        address: "taro@example.com".into(),
        campaign: None,
        customer_id: None,
        sent_at: 1_790_000_000,
        url: Some("https://shop.example.com/p/1".into()),
    };
    let bad_url = Tracked {
        url: Some("javascript:alert(1)".into()),
        ..t.clone()
    };
    let line = line_seeds();
    vec![
        with(0, line[0].clone()),
        with(1, join(&[&String::from_utf8_lossy(&line[0]), "bm90IGl0"])),
        with(
            2,
            join(&[
                "MessageSid=SM1\nMessageStatus=delivered\nFrom=+819012345678\nBody=STOP",
                "job=spring26-C1001",
            ]),
        ),
        with(3, join(&["MessageSid=SM1&MessageStatus=failed", "job=x", "AAAA"])),
        with(
            4,
            join(&["messageId=0A1\nstatus=delivered\nclient-ref=spring26-C1001\nmsisdn=819012345678\nerr-code=0"]),
        ),
        with(4, join(&["messageId=0A1\nmsisdn=819012345678\ntext=STOP\ntimestamp=1"])),
        with(5, join(&["{\"status\":\"delivered\",\"sig\":\"00\"}", "sig=00&timestamp=1", "application/json"])),
        with(6, join(&[&s.seal(Purpose::Click, &t), ""])),
        with(6, join(&[&s.seal(Purpose::Click, &bad_url), ""])),
        with(6, join(&[&s.seal(Purpose::Unsubscribe, &t), "List-Unsubscribe=One-Click"])),
        with(6, join(&["AAAAAAAAAAA", ""])),
        with(7, join(&["", "/t/c/..%2f..%2fmetrics", "GET"])),
        with(7, join(&["x", "/webhooks/bounce", "POST"])),
    ]
}
