//! Click redirects and open pixels keep answering while Redis is down: they need
//! only the sealed token. Their events wait in the daemon's backlog and reach
//! the results stream once Redis is back, each once; `/readyz` meanwhile says
//! Redis is unreachable.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tayori::tracking::{Purpose, Sealer, Tracked};

const URL: &str = "https://shop.example.com/sale?item=42&lang=ja";
const BROWSER: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";

/// A browser's GET: status, headers (lowercase names) and body bytes. A reply
/// slower than `give_up` counts as none, as for a recipient who closes the tab.
fn browse(port: u16, path: &str, give_up: Duration) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(give_up)).unwrap();
    let head = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: {BROWSER}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("GET {path}: no answer within {give_up:?}: {e}"));
    parse_response(&raw)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The reactions of job `job` in the results stream (none while Redis is down).
fn reactions(redis: &Redis, job: &str) -> Vec<Value> {
    let mut conn = redis.conn();
    events(&mut conn)
        .into_iter()
        .filter(|e| e["job_id"] == job)
        .collect()
}

#[test]
fn clicks_and_opens_answer_while_redis_is_down_and_their_events_arrive_once_after() {
    let mut redis = Redis::start();
    // An hour's repeat window: the test's clicks fall into one (a minute's could
    // straddle two).
    let s = setup(&redis, "", ALL_FILE).replace_config(
        "request_timeout = \"5s\"",
        "request_timeout = \"5s\"\nrepeat_window = \"1h\"",
    );
    let _daemon = s.start();
    s.wait_http();
    assert_eq!(s.get("/readyz").map(|r| r.0), Some(200));

    let sealer = Sealer::new(TRACKING_SECRET);
    let tracked = Tracked {
        job_id: "down-1".into(),
        address: "taro@example.com".into(),
        campaign: Some("spring".into()),
        customer_id: Some("C1".into()),
        sent_at: jiff::Timestamp::now().as_second() - 3600,
        url: Some(URL.into()),
        ..Tracked::default()
    };
    let click = sealer.seal(Purpose::Click, &tracked);
    let open = sealer.seal(Purpose::Open, &tracked);

    // Redis goes away (its data, on disk, comes back with it).
    let _ = redis::cmd("SHUTDOWN").query::<()>(&mut redis.conn());
    wait_until("readiness to notice", || {
        let (status, body) = s.get("/readyz")?;
        (status == 503).then_some(body)
    })
    .contains("redis unreachable")
    .then_some(())
    .expect("/readyz names Redis");

    // A recipient's browser gives up after a few seconds; the answer comes first,
    // every time (the backlog does not make later requests wait either).
    for _ in 0..3 {
        let asked = Instant::now();
        let (status, headers, _) = browse(
            s.http_port,
            &format!("/t/c/{click}"),
            Duration::from_secs(3),
        );
        // Shown, not asserted: the bound that matters is the browser's.
        eprintln!("click answered in {:?} with Redis down", asked.elapsed());
        assert_eq!(status, 302);
        assert_eq!(header(&headers, "location"), Some(URL));
        let (status, headers, body) =
            browse(s.http_port, &format!("/t/o/{open}"), Duration::from_secs(3));
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("image/gif"));
        assert!(body.starts_with(b"GIF89a"), "{body:?}");
    }
    // A forged token is still refused, Redis or not.
    let (status, _, _) = browse(s.http_port, "/t/c/forged", Duration::from_secs(3));
    assert_eq!(status, 404);
    assert_eq!(s.get("/readyz").map(|r| r.0), Some(503));

    redis.restart(Duration::ZERO);
    // All six written (or found written) before the events are counted: a write
    // that doubled one would be in the stream by then.
    let written = || {
        s.metric("tayori_webhook_events_total{source=\"tracking\",type=\"clicked\"}")
            + s.metric("tayori_webhook_events_total{source=\"tracking\",type=\"opened\"}")
            + s.metric("tayori_webhook_rejected_total{source=\"tracking\",reason=\"repeat\"}")
    };
    wait_until("the backlog written", || (written() >= 6.0).then_some(()));
    let evs = reactions(&redis, "down-1");
    assert_eq!(written(), 6.0);
    // Every event once, and three clicks within the repeat window are one (the
    // same for the opens): an hour boundary between them could make two.
    let mut ids: Vec<&str> = evs.iter().filter_map(|e| e["event_id"].as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), evs.len(), "an event written twice: {evs:#?}");
    let clicked: Vec<_> = evs.iter().filter(|e| e["type"] == "clicked").collect();
    let opened: Vec<_> = evs.iter().filter(|e| e["type"] == "opened").collect();
    assert!((1..=2).contains(&clicked.len()), "{evs:#?}");
    assert!((1..=2).contains(&opened.len()), "{evs:#?}");
    assert_eq!(clicked[0]["url"], URL);
    assert_eq!(clicked[0]["campaign"], "spring");
    assert_eq!(clicked[0]["suspected_bot"], false);
    wait_until("readiness again", || {
        (s.get("/readyz").map(|r| r.0) == Some(200)).then_some(())
    });
    assert_eq!(
        s.metric("tayori_reactions_lost_total{reason=\"full\"}")
            + s.metric("tayori_reactions_lost_total{reason=\"expired\"}"),
        0.0
    );
}

/// Frozen rather than gone (SIGSTOP: the socket stays open, nothing answers, as
/// behind a dropped network path): the recipient is not kept waiting for
/// Redis's 10-second reply timeout. The click's first try reaches Redis once it
/// runs again, and the backlog's rewrite with the same event id finds it there.
#[test]
fn a_click_does_not_wait_for_a_redis_that_does_not_answer() {
    let redis = Redis::start();
    let s = setup(&redis, "", ALL_FILE);
    let _daemon = s.start();
    s.wait_http();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut redis.conn())
        .unwrap();
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("process_id in INFO server")
        .trim()
        .to_owned();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    let sealer = Sealer::new(TRACKING_SECRET);
    let tracked = Tracked {
        job_id: "frozen-1".into(),
        address: "taro@example.com".into(),
        sent_at: jiff::Timestamp::now().as_second() - 3600,
        url: Some(URL.into()),
        ..Tracked::default()
    };
    let click = sealer.seal(Purpose::Click, &tracked);
    // One event first, so Redis has the reaction script and a frozen first try
    // is a whole write waiting in the socket (not a NOSCRIPT).
    let warm = sealer.seal(
        Purpose::Open,
        &Tracked {
            job_id: "warm-1".into(),
            ..tracked.clone()
        },
    );
    assert_eq!(
        browse(s.http_port, &format!("/t/o/{warm}"), Duration::from_secs(3)).0,
        200
    );
    let opened = "tayori_webhook_events_total{source=\"tracking\",type=\"opened\"}";
    wait_until("the warm-up open", || {
        (s.metric(opened) == 1.0).then_some(())
    });

    signal("-STOP");
    let asked = Instant::now();
    let answer = std::panic::catch_unwind(|| {
        browse(
            s.http_port,
            &format!("/t/c/{click}"),
            Duration::from_secs(3),
        )
    });
    let took = asked.elapsed();
    signal("-CONT");
    let (status, headers, _) = answer.expect("an answer while Redis is frozen");
    eprintln!("click answered in {took:?} with Redis frozen");
    assert_eq!(status, 302);
    assert_eq!(header(&headers, "location"), Some(URL));

    let written = || {
        s.metric("tayori_webhook_events_total{source=\"tracking\",type=\"clicked\"}")
            + s.metric("tayori_webhook_rejected_total{source=\"tracking\",reason=\"repeat\"}")
    };
    wait_until("the click written", || (written() >= 1.0).then_some(()));
    let evs = reactions(&redis, "frozen-1");
    assert_eq!(evs.len(), 1, "{evs:#?}");
    // The first try did land, after its answer was given up on; the rewrite (on
    // the same connection, so after it) found its claim: a repeat, not a double.
    assert_eq!(
        s.metric("tayori_webhook_rejected_total{source=\"tracking\",reason=\"repeat\"}"),
        1.0
    );
    assert_eq!(evs[0]["type"], "clicked");
}
