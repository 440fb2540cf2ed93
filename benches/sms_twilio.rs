//! SMS through the Twilio adapter: personalized jobs with national-format Japanese
//! mobile numbers sent to a local endpoint that answers like Twilio's Messages API.
//! Three runs: unlimited (sends/s the daemon can do), unlimited with a link in
//! every message (each one becomes a short tracked link, stored in Redis before the
//! send), and rate-limited (how closely the configured rate holds).
//!
//! Each run's line gives CPU per job beside the rate and peak RSS: the daemon's
//! (its whole life, `wait4`; it is stopped only once its profile updater has read
//! every event, so that work counts too) and Redis's (`INFO cpu` around the
//! drain; the enqueue is not counted).
//!
//! `cargo bench --bench sms_twilio`; knobs: `BENCH_JOBS` (20000), `BENCH_RATE`
//! (500, sends/s for the limited run), `BENCH_CONCURRENCY` (256).

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use axum::body::Bytes;
use support::{calls_per_job, cpu_per_job, env_or, under_cargo_bench, Bench, Drained};
use tayori_testkit::server::{response, FakeServer, Options};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// The product link of the link run, before the daemon shortens it.
const SHOP_URL: &str = "https://shop.example.com/p/";

/// What reached the endpoint: arrival time and the raw form body, parsed after the
/// run so the endpoint stays cheap while the daemon is measured.
type Requests = Vec<(Instant, Bytes)>;

/// A minimal Twilio Messages endpoint: 201 with `sid`, `status` and
/// `num_segments`, nothing else.
fn start_endpoint() -> FakeServer<Requests> {
    let options = Options {
        body_limit: true,
        worker_threads: Some(1),
        ..Options::new("sms-twilio")
    };
    FakeServer::start_with(options, Requests::new(), |requests, req| {
        let is_messages = req
            .path()
            .strip_prefix("/2010-04-01/Accounts/")
            .and_then(|rest| rest.strip_suffix("/Messages.json"))
            .is_some_and(|sid| !sid.is_empty() && !sid.contains('/'));
        if !is_messages || req.method != "POST" {
            return response(404, &[], "").into();
        }
        requests.push((req.at, req.body));
        let n = requests.len();
        response(
            201,
            &[("content-type", "application/json")],
            format!("{{\"sid\":\"SM{n:032x}\",\"status\":\"queued\",\"num_segments\":\"1\"}}"),
        )
        .into()
    })
}

/// A varying, valid national mobile number (`090-1xxx-xxxx` …) for job `i`.
fn phone(i: usize) -> String {
    format!("090-{:04}-{:04}", 1000 + (i / 10_000) % 9000, i % 10_000)
}

/// `phone(i)` in E.164, as Twilio must receive it.
fn e164(i: usize) -> String {
    phone(i).replacen('0', "+81", 1).replace('-', "")
}

/// `n` SMS jobs `{tag}-{i}`: the `spring_sale` template's SMS (no link), or with
/// `link` inline content with a product link in the text.
fn write_jobs(bench: &Bench, n: usize, tag: &str, link: bool) -> PathBuf {
    let file = bench.dir.path().join(format!("{tag}.jsonl"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("jobs file"));
    for i in 0..n {
        let mut job = serde_json::json!({
            "id": format!("{tag}-{i}"), "campaign": "bench", "customer_id": format!("C{i}"), "channel": "sms",
            "to": {"name": format!("顧客 {i}"), "phone": phone(i)},
            "vars": {"points": i % 5000}
        });
        if link {
            job["content"] = serde_json::json!({"sms": {"text": format!(
                "{{{{ to.name }}}}様 春のセール開催中。{{{{ points }}}}pt保有中です。{SHOP_URL}{{{{ points }}}} Example Shop"
            )}});
        } else {
            job["template"] = "spring_sale".into();
        }
        writeln!(out, "{job}").expect("write");
    }
    file
}

/// One request as the endpoint saw it.
struct Request {
    at: Instant,
    job: String,
    to: String,
    body: String,
}

/// Takes the endpoint's requests (and clears them) and parses their forms; the
/// job id comes from the `StatusCallback` URL (`…?job={id}`).
fn take_requests(endpoint: &FakeServer<Requests>) -> Vec<Request> {
    let raw = std::mem::take(&mut *endpoint.state());
    raw.into_iter()
        .map(|(at, bytes)| {
            let form: HashMap<String, String> = form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let callback = form.get("StatusCallback").expect("StatusCallback");
            let job = callback
                .split_once("?job=")
                .map(|(_, j)| j.to_owned())
                .expect("job id in StatusCallback");
            assert_eq!(form.get("From").map(String::as_str), Some("+15005550006"));
            Request {
                at,
                job,
                to: form.get("To").cloned().expect("To"),
                body: form.get("Body").cloned().expect("Body"),
            }
        })
        .collect()
}

/// Job ids with a `sent` event in the results stream.
fn sent_ids(bench: &mut Bench) -> HashSet<String> {
    let evs: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("bench:{0}:results")
        .arg("-")
        .arg("+")
        .query::<redis::Value>(&mut bench.conn)
        .ok()
        .and_then(|v| redis::from_redis_value(v).ok())
        .unwrap_or_default();
    evs.iter()
        .flat_map(|(_, f)| f.iter())
        .filter(|(k, _)| k == "event")
        .filter_map(|(_, v)| serde_json::from_str::<serde_json::Value>(v).ok())
        .filter(|e| e["type"] == "sent")
        .filter_map(|e| e["job_id"].as_str().map(str::to_owned))
        .collect()
}

/// Panics unless every job `{tag}-{i}` has its `sent` event and the endpoint got
/// exactly one request for it, to its own number in E.164.
fn check_run(bench: &mut Bench, tag: &str, n: usize, requests: &[Request]) {
    let sent = sent_ids(bench);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in requests {
        *seen.entry(r.job.as_str()).or_default() += 1;
    }
    assert_eq!(
        requests.len(),
        n,
        "{tag}: the endpoint received one request per job"
    );
    for i in 0..n {
        let id = format!("{tag}-{i}");
        assert!(sent.contains(&id), "{tag}: {id} has no sent event");
        assert_eq!(
            seen.get(id.as_str()),
            Some(&1),
            "{tag}: {id} reached the endpoint exactly once"
        );
    }
    for r in requests {
        let i: usize = r
            .job
            .rsplit('-')
            .next()
            .and_then(|i| i.parse().ok())
            .expect("job index");
        assert_eq!(r.to, e164(i), "{tag}: {} went to its own number", r.job);
    }
}

/// Sends/s the endpoint saw from its first request to its last.
fn observed_rate(requests: &[Request]) -> f64 {
    let first = requests.iter().map(|r| r.at).min();
    let last = requests.iter().map(|r| r.at).max();
    match (first, last) {
        (Some(a), Some(b)) if requests.len() > 1 => {
            (requests.len() - 1) as f64 / b.duration_since(a).as_secs_f64()
        }
        _ => 0.0,
    }
}

fn main() {
    if !under_cargo_bench("sms_twilio") {
        return;
    }
    let jobs: usize = env_or("BENCH_JOBS", 20_000);
    let rate: usize = env_or("BENCH_RATE", 500);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 256);
    let endpoint = start_endpoint();
    let port = endpoint.port();
    let mut bench = Bench::start();

    let head = bench.config_head();
    let config = |rate: &str, burst: usize| {
        format!(
            "{head}[channels.sms]\nprovider = \"twilio\"\ndefault_region = \"JP\"\nrate = \"{rate}\"\nburst = {burst}\nconcurrency = {concurrency}\n\
             [channels.sms.twilio]\napi_base = \"http://127.0.0.1:{port}\"\naccount_sid = \"{ACCOUNT_SID}\"\nauth_token = \"bench\"\nfrom = \"+15005550006\"\n"
        )
    };
    let mut run =
        |tag: &str, n: usize, link: bool, cfg: &str| -> (Drained, f64, Vec<Request>, String) {
            let cfg = bench.write_config(cfg);
            let file = write_jobs(&bench, n, tag, link);
            bench.enqueue(&cfg, &file);
            let before = bench.node_stats();
            let (drained, redis) = bench.drain_cpu(&cfg, n);
            let calls = calls_per_job(&before, &bench.node_stats(), n);
            let reqs = take_requests(&endpoint);
            check_run(&mut bench, tag, n, &reqs);
            (drained, redis, reqs, calls)
        };

    // 1. As fast as it goes, the template's SMS (no link).
    let (fast, fast_redis, fast_reqs, fast_calls) =
        run("fast", jobs, false, &config("1000000/s", 1000));

    // 2. As fast as it goes, a link in every message: one short link stored per send.
    let (linked, linked_redis, linked_reqs, linked_calls) =
        run("link", jobs, true, &config("1000000/s", 1000));
    for r in &linked_reqs {
        assert!(
            r.body.contains("/s/") && !r.body.contains(SHOP_URL),
            "link: {} carries a short link, not the original URL: {}",
            r.job,
            r.body
        );
    }

    // 3. Limited: the rate the endpoint sees, from first to last arrival.
    let limited_jobs = (rate * 5).min(jobs);
    let (limited, limited_redis, limited_reqs, limited_calls) = run(
        "limited",
        limited_jobs,
        false,
        &config(&format!("{rate}/s"), (rate / 100).max(1)),
    );
    let observed = observed_rate(&limited_reqs);
    // Every short link of run 2 is kept in Redis: a field of its bucket's hash
    // (`{prefix}:links:{bucket}`), both named by its code.
    let codes: Vec<String> = linked_reqs
        .iter()
        .filter_map(|r| r.body.split_once("/s/"))
        .map(|(_, rest)| rest.chars().take_while(|c| !c.is_whitespace()).collect())
        .collect();
    let mut pipe = redis::pipe();
    for c in &codes {
        let (bucket, field) = tayori::tracking::token::link_code_parts(c)
            .unwrap_or_else(|| panic!("a bucketed short link code: {c:?}"));
        pipe.hexists(
            bench
                .keys
                .link_bucket(&tayori::tracking::token::link_bucket_name(bucket)),
            &field[..],
        );
    }
    let kept: Vec<bool> = pipe.query(&mut bench.conn).expect("EXISTS");
    assert!(
        codes.len() == jobs && kept.iter().all(|k| *k),
        "link: every short link is stored"
    );

    let line = |name: &str, n: usize, d: &Drained, redis: f64, reqs: &[Request], calls: &str| {
        println!(
            "{name:<15} {n} sends in {:.2} s: {:.0} sends/s end to end ({:.0}/s at the endpoint, first to last), {}, {calls}, daemon peak RSS {:.1} MiB",
            d.secs,
            n as f64 / d.secs,
            observed_rate(reqs),
            cpu_per_job(d, redis, n),
            d.peak_mib
        );
    };
    line(
        "unlimited",
        jobs,
        &fast,
        fast_redis,
        &fast_reqs,
        &fast_calls,
    );
    line(
        "with links",
        jobs,
        &linked,
        linked_redis,
        &linked_reqs,
        &linked_calls,
    );
    println!(
        "limited         {limited_jobs} sends at rate {rate}/s: observed {observed:.0}/s ({:+.2} %), {}, {limited_calls}, peak RSS {:.1} MiB",
        (observed / rate as f64 - 1.0) * 100.0,
        cpu_per_job(&limited, limited_redis, limited_jobs),
        limited.peak_mib
    );
    let sample = &linked_reqs[0].body;
    println!("link run body   {sample}");
}
