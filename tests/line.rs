//! The LINE channel against a server that plays the Messaging API and checks every
//! request against LINE's official OpenAPI description, and the LINE webhook.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tayori_testkit::line_api::{self, LineApi, Reply};
use tayori_testkit::sign::line_signature;

const TOKEN: &str = "test-channel-access-token";
const SECRET: &str = "test-channel-secret";
const WAIT: Duration = Duration::from_secs(30);

/// LINE on the test API (plus email on files, for fallbacks); fast retries.
fn line_setup(redis: &Redis, api: &LineApi, extra: &str) -> Setup {
    let channels = format!(
        r#"
[channels.line]
api_base = "{base}"
channel_access_token = "{TOKEN}"
channel_secret = "{SECRET}"
timeout = "2s"
pause = "1s"
rate = "100000/s"
concurrency = 32
{extra}

[channels.email]
transport = "file"
dir = "{{outbox}}/email"
from = "Example Shop <news@example.com>"
"#,
        base = api.base_url()
    );
    setup(
        redis,
        "[retry]\nmax_attempts = 4\nbase_delay = \"200ms\"\nmax_delay = \"400ms\"",
        &channels,
    )
}

/// Redis, the LINE API and a running daemon with its HTTP server up: the webhook tests' start.
fn started_line() -> (Redis, LineApi, Setup, Daemon) {
    let redis = Redis::start();
    let api = LineApi::start(TOKEN);
    let s = line_setup(&redis, &api, "");
    let d = s.start();
    s.wait_http();
    (redis, api, s, d)
}

fn line_job(id: &str, user: &str) -> Value {
    let mut j = job(id, "line");
    j["to"]["line_user_id"] = json!(user);
    j
}

fn of_type<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["type"] == kind).collect()
}

#[test]
fn pushes_are_valid_per_the_spec_and_carry_a_stable_retry_key() {
    let redis = Redis::start();
    let api = LineApi::start(TOKEN);
    let s = line_setup(&redis, &api, "custom_aggregation_units = true");
    let mut conn = redis.conn();
    let jobs: Vec<_> = (0..40)
        .map(|i| line_job(&format!("push-{i}"), &format!("U{i:032x}")))
        .collect();
    enqueue(&mut conn, &jobs);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "40 sent", |e| count(e, "sent") == 40);
    api.assert_no_violations();
    let deliveries = api.deliveries();
    assert_eq!(deliveries.len(), 40, "each job delivered once");
    for d in &deliveries {
        assert_eq!(
            d.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let id = d.body["to"].as_str().unwrap().trim_start_matches('U');
        let i = usize::from_str_radix(id, 16).unwrap();
        let expected = tayori_channels::line::retry_key(&format!("push-{i}/line")).to_string();
        assert_eq!(
            d.retry_key.as_deref(),
            Some(expected.as_str()),
            "the retry key is derived from the job id"
        );
        assert!(d.body["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("1200ポイント"));
    }
    // The provider id is LINE's request id.
    let sent = of_type(&evs, "sent");
    let ids: Vec<&str> = sent
        .iter()
        .map(|e| e["provider_id"].as_str().unwrap())
        .collect();
    assert!(ids
        .iter()
        .all(|id| !id.is_empty() && !id.starts_with("file:")));
}

#[test]
fn server_errors_and_429_are_retried_with_the_same_key() {
    let redis = Redis::start();
    let api = LineApi::start(TOKEN);
    api.script(vec![Reply::ServerError, Reply::TooManyRequests]);
    let s = line_setup(&redis, &api, "");
    let mut conn = redis.conn();
    enqueue(&mut conn, &[line_job("flaky-1", "U0001")]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    let deferred = of_type(&evs, "deferred");
    assert_eq!(deferred.len(), 2, "{evs:?}");
    assert_eq!(deferred[0]["error"]["code"], "line_500");
    assert_eq!(deferred[1]["error"]["code"], "line_429");
    let keys: Vec<_> = api.requests().iter().map(|r| r.retry_key.clone()).collect();
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter().all(|k| k.is_some() && *k == keys[0]),
        "one retry key for every attempt: {keys:?}"
    );
    assert_eq!(api.deliveries().len(), 1);
    assert_eq!(of_type(&evs, "sent")[0]["attempt"], 3);
}

#[test]
fn a_timed_out_push_that_line_accepted_is_not_delivered_twice() {
    let redis = Redis::start();
    let api = LineApi::start(TOKEN);
    // LINE takes the message but answers after our timeout: the retry gets 409.
    api.script(vec![Reply::Slow(Duration::from_millis(1500))]);
    let s = line_setup(&redis, &api, "timeout = \"500ms\"")
        .replace_config("\ntimeout = \"2s\"\n", "\n");
    let mut conn = redis.conn();
    enqueue(&mut conn, &[line_job("slow-1", "U0002")]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    assert_eq!(
        of_type(&evs, "deferred")[0]["error"]["code"],
        "line_timeout"
    );
    let deliveries = api.deliveries();
    assert_eq!(deliveries.len(), 1, "delivered once");
    let first_request_id = deliveries[0].request_id.clone();
    assert_eq!(
        of_type(&evs, "sent")[0]["provider_id"],
        first_request_id,
        "sent names the accepted request"
    );
    assert!(api.requests().iter().any(|r| r.status == 409));
}

#[test]
fn an_unknown_user_falls_back_and_an_invalid_message_fails() {
    let redis = Redis::start();
    let api = LineApi::start(TOKEN);
    api.script(vec![Reply::BadRequest("Failed to send messages".into())]);
    let s = line_setup(&redis, &api, "");
    let mut conn = redis.conn();
    let mut j = line_job("gone-1", "Udeadbeef");
    j["fallback"] = json!(["email"]);
    enqueue(&mut conn, &[j]);
    let _d = s.start();
    let evs = wait_for(&mut conn, WAIT, "sent by email", |e| count(e, "sent") == 1);
    let fb = of_type(&evs, "fallback");
    assert_eq!(fb[0]["to_channel"], "email");
    assert_eq!(fb[0]["error"]["code"], "line_400");
    assert_eq!(of_type(&evs, "sent")[0]["channel"], "email");

    // A message LINE refuses (caught by our own limits before any request).
    let mut bad = line_job("toolong-1", "U0003");
    bad["template"] = Value::Null;
    bad["content"] = json!({"line": {"messages": [{"type": "text", "text": "あ".repeat(5001)}]}});
    enqueue(&mut conn, &[bad]);
    let evs = wait_for(&mut conn, WAIT, "failed", |e| count(e, "failed") == 1);
    let failed = of_type(&evs, "failed")[0];
    assert_eq!(failed["error"]["code"], "invalid_message");
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("5000"));
    assert_eq!(
        api.requests().len(),
        1,
        "the invalid message never reached LINE"
    );
}

#[test]
fn a_refused_token_pauses_the_channel_until_it_works_again() {
    let redis = Redis::start();
    let api = LineApi::start("the-real-token");
    let s = line_setup(&redis, &api, "");
    let mut conn = redis.conn();
    let n = 50;
    let jobs: Vec<_> = (0..n)
        .map(|i| line_job(&format!("auth-{i}"), &format!("U{i:04}")))
        .collect();
    enqueue(&mut conn, &jobs);
    let _d = s.start();
    s.wait_http();
    let evs = wait_for(&mut conn, WAIT, "deferred", |e| count(e, "deferred") >= 1);
    assert_eq!(of_type(&evs, "deferred")[0]["error"]["code"], "line_401");
    assert_eq!(s.metric("tayori_channel_paused{channel=\"line\"}"), 1.0);
    // Refused for two and a half pauses (pause = 1s): nothing fails, nothing is sent,
    // and after each pause a single job probes instead of all of them retrying.
    std::thread::sleep(Duration::from_millis(2500));
    let evs = events(&mut conn);
    assert_eq!(count(&evs, "failed") + count(&evs, "sent"), 0, "{evs:?}");
    let refused = api.requests().len();
    assert!(
        refused <= n + 3,
        "the channel must not hammer the API while refused ({refused} requests for {n} jobs)"
    );
    // The token is fixed at LINE's side: after the pause, everything goes out.
    api.set_token(TOKEN);
    let evs = wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") == n);
    assert_eq!(count(&evs, "failed"), 0);
    api.assert_no_violations();
    assert_eq!(api.deliveries().len(), n);
    assert_eq!(s.metric("tayori_channel_paused{channel=\"line\"}"), 0.0);
}

#[test]
fn the_monthly_limit_pauses_the_channel_instead_of_burning_retries() {
    let redis = Redis::start();
    let api = LineApi::start(TOKEN);
    api.set_default(Reply::MonthlyLimit);
    let s = line_setup(&redis, &api, "");
    let mut conn = redis.conn();
    let jobs: Vec<_> = (0..5)
        .map(|i| line_job(&format!("quota-{i}"), &format!("U{i:04}")))
        .collect();
    enqueue(&mut conn, &jobs);
    let _d = s.start();
    s.wait_http();
    let evs = wait_for(&mut conn, WAIT, "deferred", |e| count(e, "deferred") >= 1);
    assert_eq!(
        of_type(&evs, "deferred")[0]["error"]["code"],
        "line_monthly_limit"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let evs = events(&mut conn);
    assert_eq!(
        count(&evs, "failed"),
        0,
        "no job burns its retries on a quota"
    );
    let calls = api.requests().len();
    assert!(
        calls <= 5,
        "paused for the quota: no new calls ({calls} requests)"
    );
    assert_eq!(s.metric("tayori_channel_paused{channel=\"line\"}"), 1.0);
    assert!(
        s.metric("tayori_channel_pauses_total{channel=\"line\",reason=\"line_monthly_limit\"}")
            >= 1.0
    );
    // `tayori stats` shows the pause (from Redis) and the daemon as a consumer.
    let out = s.tayori().args(["stats", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let line = v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "line")
        .unwrap();
    assert_eq!(line["paused"]["reason"], "line_monthly_limit", "{line}");
    assert!(line["paused"]["remaining_ms"].as_u64().unwrap() > 60_000);
    let consumers = line["consumer_list"].as_array().unwrap();
    assert_eq!(consumers.len(), 1, "{line}");
    assert!(consumers[0]["idle_ms"].as_u64().is_some());
    let table = s.tayori().arg("stats").output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("paused (line_monthly_limit"), "{table}");
}

fn webhook_body(events: Value) -> Vec<u8> {
    let body = json!({"destination": "Uf0000000000000000000000000000000", "events": events});
    let violations = line_api::webhook_violations(&body);
    assert!(
        violations.is_empty(),
        "test webhook bodies must follow LINE's spec: {violations:?}"
    );
    serde_json::to_vec(&body).unwrap()
}

fn follow_event(kind: &str, id: &str, user: &str) -> Value {
    let mut e = json!({
        "type": kind, "mode": "active", "timestamp": 1_790_000_000_000_i64,
        "source": {"type": "user", "userId": user},
        "webhookEventId": id, "deliveryContext": {"isRedelivery": false}
    });
    if kind == "follow" {
        e["replyToken"] = json!("nHuyWiB7yP5Zw52FIkcQobQuGDXCTA");
        e["follow"] = json!({"isUnblocked": true});
    }
    e
}

fn post_webhook(s: &Setup, body: &[u8], signature: Option<&str>) -> u16 {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(sig) = signature {
        headers.push(("X-Line-Signature", sig));
    }
    s.post("/webhooks/line", &headers, body)
        .map(|r| r.0)
        .unwrap_or(0)
}

#[test]
fn a_block_from_the_webhook_stops_pushes_and_a_follow_lifts_it() {
    let (redis, api, s, _d) = started_line();
    let mut conn = redis.conn();
    let user = "U4af4980629a1b2c3d4e5f60718293a4b";
    let unfollow = webhook_body(json!([follow_event(
        "unfollow",
        "01JBLOCK000000000000000000",
        user
    )]));
    let sig = line_signature(SECRET, &unfollow);
    assert_eq!(post_webhook(&s, &unfollow, Some(&sig)), 200);
    // LINE redelivers: counted once.
    assert_eq!(post_webhook(&s, &unfollow, Some(&sig)), 200);
    let evs = wait_for(&mut conn, WAIT, "blocked", |e| count(e, "blocked") >= 1);
    std::thread::sleep(Duration::from_millis(200));
    let evs = [evs, events(&mut conn)].concat();
    let blocked = of_type(&evs, "blocked");
    assert!(blocked
        .iter()
        .all(|e| e["event_id"] == blocked[0]["event_id"]));
    assert_eq!(
        count(&events(&mut conn), "blocked"),
        1,
        "a redelivery is recorded once"
    );
    assert_eq!(blocked[0]["line_user_id"], user);
    assert!(blocked[0]["job_id"].is_null());

    // A push to the blocked user is not sent: suppressed, or its fallback.
    let mut with_fallback = line_job("blocked-fb", user);
    with_fallback["fallback"] = json!(["email"]);
    enqueue(&mut conn, &[line_job("blocked-1", user), with_fallback]);
    let evs = wait_for(&mut conn, WAIT, "suppressed and sent by email", |e| {
        count(e, "suppressed") == 1 && count(e, "sent") == 1
    });
    let sup = of_type(&evs, "suppressed")[0];
    assert_eq!(sup["job_id"], "blocked-1");
    assert_eq!(sup["reason"], "blocked");
    assert_eq!(of_type(&evs, "sent")[0]["channel"], "email");
    assert_eq!(api.requests().len(), 0, "nothing pushed to a blocked user");

    // The user adds the account again: pushes resume.
    let follow = webhook_body(json!([follow_event(
        "follow",
        "01JFOLLOW00000000000000000",
        user
    )]));
    assert_eq!(
        post_webhook(&s, &follow, Some(&line_signature(SECRET, &follow))),
        200
    );
    wait_for(&mut conn, WAIT, "unblocked", |e| count(e, "unblocked") == 1);
    enqueue(&mut conn, &[line_job("after-follow", user)]);
    wait_for(&mut conn, WAIT, "sent on LINE", |e| {
        e.iter()
            .any(|x| x["type"] == "sent" && x["channel"] == "line")
    });
    assert_eq!(api.deliveries().len(), 1);
}

#[test]
fn webhook_requests_without_a_valid_signature_are_refused_without_an_event() {
    let (redis, _api, s, _d) = started_line();
    let mut conn = redis.conn();
    let body = webhook_body(json!([follow_event(
        "unfollow",
        "01JFORGED00000000000000000",
        "U1"
    )]));
    assert_eq!(post_webhook(&s, &body, None), 401);
    assert_eq!(
        post_webhook(&s, &body, Some("bm90IHRoZSBzaWduYXR1cmU=")),
        401
    );
    assert_eq!(
        post_webhook(&s, &body, Some(&line_signature("another-secret", &body))),
        401
    );
    // A valid signature over a different body does not carry over.
    let other = webhook_body(json!([]));
    assert_eq!(
        post_webhook(&s, &body, Some(&line_signature(SECRET, &other))),
        401
    );
    // Connectivity check, unknown event types and oversized bodies.
    assert_eq!(
        post_webhook(&s, &other, Some(&line_signature(SECRET, &other))),
        200
    );
    let unknown = serde_json::to_vec(&json!({"destination": "U0", "events": [
        {"type": "somethingNew", "mode": "active", "timestamp": 1, "source": {"type": "user", "userId": "U9"},
         "webhookEventId": "01JNEW0000000000000000000", "deliveryContext": {"isRedelivery": false}}
    ]}))
    .unwrap();
    assert_eq!(
        post_webhook(&s, &unknown, Some(&line_signature(SECRET, &unknown))),
        200
    );
    let huge = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(
        post_webhook(&s, &huge, Some(&line_signature(SECRET, &huge))),
        413
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        events(&mut conn).is_empty(),
        "no event from refused or unknown webhooks"
    );
    let suppressed: usize = redis::cmd("HLEN")
        .arg("t:{0}:suppressed:line")
        .query(&mut conn)
        .unwrap();
    assert_eq!(suppressed, 0);
    assert_eq!(
        s.metric("tayori_webhook_rejected_total{source=\"line\",reason=\"bad_signature\"}"),
        4.0
    );
}

#[test]
fn replies_and_postbacks_become_events() {
    let (redis, _api, s, _d) = started_line();
    let mut conn = redis.conn();
    let body = webhook_body(json!([
        {"type": "message", "mode": "active", "timestamp": 1_790_000_000_000_i64, "source": {"type": "user", "userId": "U7"},
         "webhookEventId": "01JMSG00000000000000000000", "deliveryContext": {"isRedelivery": false},
         "replyToken": "r", "message": {"type": "text", "id": "468789577898262530", "quoteToken": "q", "text": "クーポンありがとう"}},
        {"type": "postback", "mode": "active", "timestamp": 1_790_000_000_001_i64, "source": {"type": "user", "userId": "U7"},
         "webhookEventId": "01JPB000000000000000000000", "deliveryContext": {"isRedelivery": false},
         "replyToken": "r2", "postback": {"data": "coupon=SPRING"}}
    ]));
    assert_eq!(
        post_webhook(&s, &body, Some(&line_signature(SECRET, &body))),
        200
    );
    let evs = wait_for(&mut conn, WAIT, "two reactions", |e| e.len() == 2);
    assert_eq!(evs[0]["type"], "replied");
    assert_eq!(evs[0]["text"], "クーポンありがとう");
    assert_eq!(evs[1]["type"], "clicked");
    assert_eq!(evs[1]["data"], "coupon=SPRING");
    assert!(evs
        .iter()
        .all(|e| e["line_user_id"] == "U7" && e["channel"] == "line"));
}

#[test]
fn a_late_redelivered_unfollow_does_not_undo_a_newer_follow() {
    let (redis, api, s, _d) = started_line();
    let mut conn = redis.conn();
    let user = "U4af4980629a1b2c3d4e5f60718293a4b";
    let mut follow = follow_event("follow", "01JLATEFOLLOW0000000000000", user);
    follow["timestamp"] = json!(2_000_000_000_000_i64);
    let mut unfollow = follow_event("unfollow", "01JLATEUNFOLLOW00000000000", user);
    unfollow["timestamp"] = json!(1_000_000_000_000_i64);
    unfollow["deliveryContext"]["isRedelivery"] = json!(true);
    for body in [
        webhook_body(json!([follow])),
        webhook_body(json!([unfollow])),
    ] {
        assert_eq!(
            post_webhook(&s, &body, Some(&line_signature(SECRET, &body))),
            200
        );
    }
    wait_for(&mut conn, WAIT, "both recorded", |e| {
        count(e, "blocked") == 1 && count(e, "unblocked") == 1
    });
    enqueue(&mut conn, &[line_job("after-late", &format!(" {user} "))]);
    let evs = wait_for(&mut conn, WAIT, "an outcome", |e| {
        count(e, "sent") + count(e, "suppressed") == 1
    });
    assert_eq!(count(&evs, "sent"), 1, "the newer follow wins: {evs:?}");
    assert_eq!(
        api.deliveries()[0].body["to"],
        user,
        "the address is sent trimmed"
    );
}

#[test]
fn a_suspended_job_still_ends_at_max_age_and_a_new_friend_is_not_an_unblock() {
    let redis = Redis::start();
    let api = LineApi::start("another-token");
    let s = line_setup(&redis, &api, "").replace_config(
        "max_delay = \"400ms\"",
        "max_delay = \"400ms\"\nmax_age = \"2s\"",
    );
    let mut conn = redis.conn();
    enqueue(&mut conn, &[line_job("stuck-1", "U0009")]);
    let _d = s.start();
    s.wait_http();
    let evs = wait_for(&mut conn, WAIT, "failed", |e| count(e, "failed") == 1);
    let failed = of_type(&evs, "failed")[0];
    assert_eq!(failed["error"]["code"], "line_401");
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_age"));
    let ids: Vec<&str> = of_type(&evs, "deferred")
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "each deferral has its own event id: {ids:?}"
    );

    let mut follow = follow_event("follow", "01JNEWFRIEND00000000000000", "U0010");
    follow["follow"]["isUnblocked"] = json!(false);
    let body = webhook_body(json!([follow]));
    assert_eq!(
        post_webhook(&s, &body, Some(&line_signature(SECRET, &body))),
        200
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&events(&mut conn), "unblocked"), 0);
}

/// `uri` actions go through the click tracker, and a URL in a text message
/// becomes a short tracked link (issue 22), stored before the push: both
/// redirect to the original and record a LINE click.
#[test]
fn uri_actions_and_text_urls_go_through_the_click_tracker() {
    let (redis, api, s, _d) = started_line();
    let mut conn = redis.conn();
    enqueue(
        &mut conn,
        &[line_job("track-1", "U4af4980629a1b2c3d4e5f60718293a4b")],
    );
    wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    api.assert_no_violations();
    let body = &api.deliveries()[0].body;
    let uri = body["messages"][2]["template"]["actions"][0]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("http://127.0.0.1:{}/t/c/", s.http_port);
    assert!(uri.starts_with(&base), "{uri}");
    let text = body["messages"][1]["text"].as_str().unwrap();
    assert!(
        !text.contains("https://shop.example.com/p/1"),
        "the text's URL is tracked: {body}"
    );
    let short_base = format!("http://127.0.0.1:{}/s/", s.http_port);
    let short = text
        .split(&short_base)
        .nth(1)
        .map(|rest| &rest[..12])
        .unwrap_or_else(|| panic!("no short link in {text:?}"));
    let token = &uri[base.len()..];
    let opened = tayori::tracking::Sealer::new(TRACKING_SECRET)
        .open(tayori::tracking::Purpose::Click, token)
        .expect("a click token of ours");
    assert_eq!(opened.channel, tayori::channel::line::ID);
    assert_eq!(opened.job_id, "track-1");
    // Following either redirects to the original link and records a LINE click.
    let (status, location) = get_with_location(&s, &uri[base.len() - "/t/c/".len()..]);
    assert_eq!(status, 302);
    assert_eq!(
        location.as_deref(),
        Some("https://shop.example.com/sale?from=line")
    );
    let (status, location) = get_with_location(&s, &format!("/s/{short}"));
    assert_eq!(status, 302);
    assert_eq!(location.as_deref(), Some("https://shop.example.com/p/1"));
    let evs = wait_for(&mut conn, WAIT, "two clicks", |e| count(e, "clicked") == 2);
    let mut urls: Vec<&str> = of_type(&evs, "clicked")
        .iter()
        .map(|c| {
            assert_eq!(c["channel"], "line");
            assert_eq!(c["job_id"], "track-1");
            c["url"].as_str().unwrap()
        })
        .collect();
    urls.sort();
    assert_eq!(
        urls,
        [
            "https://shop.example.com/p/1",
            "https://shop.example.com/sale?from=line"
        ]
    );
}

/// A plain GET returning the status and the Location header.
fn get_with_location(s: &Setup, path: &str) -> (u16, Option<String>) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.0\r\nHost: x\r\nUser-Agent: Mozilla/5.0\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = resp
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .map(|l| l.trim().to_owned());
    (status, location)
}
