//! SMS through a gateway described only by config (`provider = "http"`), shaped like
//! Karaden's REST API: a local server records what arrives and answers like it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tayori_testkit::server::{json_response, FakeServer};

/// What the gateway received: method, path, headers (lowercase names), body.
type Seen = Vec<(String, String, Vec<(String, String)>, Value)>;

/// The gateway: records every request and answers 200 `{"id": "msg-N", "status": "accepted"}`.
fn start_gateway() -> FakeServer<Seen> {
    FakeServer::start("sms-gateway", Seen::new(), |seen, req| {
        let headers = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        seen.push((req.method.to_string(), req.path().to_owned(), headers, body));
        let n = seen.len();
        json_response(
            200,
            &[],
            &json!({ "id": format!("msg-{n}"), "status": "accepted" }),
        )
        .into()
    })
}

#[test]
fn a_karaden_shaped_gateway_gets_the_request_config_describes() {
    let gateway = start_gateway();
    let port = gateway.port();
    let redis = Redis::start();
    let channels = format!(
        r#"
[channels.sms]
provider = "http"
default_region = "JP"
max_segments = 4
rate = "1000/s"

[channels.sms.http]
url = "http://127.0.0.1:{port}/api/tenant-1/messages"
headers = {{ Authorization = "Bearer gateway-token", "Karaden-Version" = "2024-03-01" }}
body = {{ service_id = 1, to = "{{{{to_national}}}}", body = "{{{{text}}}}", ref = "{{{{job_id}}}}" }}
success_status = [200]
id_pointer = "/id"
timeout = "2s"
"#
    );
    let s = setup(&redis, "", &channels);
    let mut conn = redis.conn();
    let mut j = job("gw-1", "sms");
    j["to"]["phone"] = json!("０９０－１２３４－５６７８");
    enqueue(&mut conn, &[j]);
    let _d = s.start();
    let evs = wait_for(&mut conn, Duration::from_secs(30), "sent", |e| {
        count(e, "sent") == 1
    });
    let sent = evs.iter().find(|e| e["type"] == "sent").unwrap();
    assert_eq!(sent["provider_id"], "msg-1");
    assert_eq!(sent["encoding"], "ucs2");
    assert!(sent["segments"].as_u64().unwrap() >= 1);
    let seen = gateway.state();
    assert_eq!(seen.len(), 1);
    let (method, path, headers, body) = &seen[0];
    assert_eq!(method, "POST");
    assert_eq!(path, "/api/tenant-1/messages");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("authorization"), Some("Bearer gateway-token"));
    assert_eq!(header("karaden-version"), Some("2024-03-01"));
    assert!(header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));
    assert_eq!(body["service_id"], 1);
    assert_eq!(
        body["to"], "09012345678",
        "national digits, from full-width input"
    );
    assert_eq!(body["ref"], "gw-1");
    assert!(
        body["body"].as_str().unwrap().contains("1200pt保有中"),
        "{body}"
    );
}
