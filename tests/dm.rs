//! Direct mail: print batches as a vendor receives them. Every file is read back
//! with readers this project did not write — Python's `csv` module and codecs and
//! `hashlib` (`tests/peers/dm_read.py`) — including after `kill -9` at random
//! moments, where every job must end up in exactly one row.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const RECLAIM_FAST: &str = "reclaim_idle = \"1s\"\nshutdown_grace = \"5s\"";

/// Print batches in `encoding` (plus email on files, for fallbacks).
fn dm_channels(encoding: &str, extra: &str) -> String {
    format!(
        r#"
[channels.dm]
dir = "{{outbox}}/dm"
encoding = "{encoding}"
batch_max_rows = 3
batch_max_age = "1h"
rate = "100000/s"
concurrency = 64
{extra}

[channels.email]
transport = "file"
dir = "{{outbox}}/email"
from = "Example Shop <news@example.com>"
"#
    )
}

/// What `tests/peers/dm_read.py` found in a `ready/` directory.
struct Ready {
    batches: Vec<Value>,
}

impl Ready {
    fn read(dir: &Path) -> Ready {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dm_read.py");
        let out = Command::new(common::smtp::python())
            .arg(&script)
            .arg(dir)
            .output()
            .expect("run tests/peers/dm_read.py");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("dm_read.py: {e}: {}", String::from_utf8_lossy(&out.stderr))
        });
        assert_eq!(
            report["errors"],
            json!([]),
            "the vendor's reader found errors"
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ready {
            batches: report["batches"].as_array().cloned().unwrap_or_default(),
        }
    }

    /// Every row of every batch, with its batch's manifest.
    fn rows(&self) -> Vec<(&Value, &Value)> {
        self.batches
            .iter()
            .flat_map(|b| {
                b["rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |r| (&b["manifest"], r))
            })
            .collect()
    }

    fn row(&self, job_id: &str) -> (&Value, &Value) {
        let rows: Vec<_> = self
            .rows()
            .into_iter()
            .filter(|(_, r)| r["job_id"] == job_id)
            .collect();
        assert_eq!(rows.len(), 1, "one row for {job_id}");
        rows[0]
    }
}

fn dm_job(id: &str) -> Value {
    let mut j = job(id, "dm");
    j["campaign"] = json!("spring26");
    j
}

fn sent_batch<'a>(evs: &'a [Value], job_id: &str) -> &'a Value {
    let sent: Vec<_> = evs
        .iter()
        .filter(|e| e["type"] == "sent" && e["job_id"] == job_id)
        .collect();
    assert_eq!(sent.len(), 1, "{job_id}: {evs:?}");
    &sent[0]["batch"]
}

fn error_of<'a>(evs: &'a [Value], kind: &str, job_id: &str) -> &'a Value {
    let e = evs
        .iter()
        .find(|e| e["type"] == kind && e["job_id"] == job_id)
        .unwrap_or_else(|| panic!("no {kind} for {job_id}: {evs:?}"));
    &e["error"]
}

#[test]
fn shift_jis_batches_decode_to_the_original_text_with_manifests_that_match() {
    let redis = Redis::start();
    let s = setup(&redis, "", &dm_channels("shift_jis", ""));
    let mut conn = redis.conn();
    let mut jobs: Vec<Value> = (0..7).map(|i| dm_job(&format!("dm-{i}"))).collect();
    jobs[1]["to"]["postal"] = json!({
        "postal_code": "〒５３０－０００１",
        "address1": "大阪府大阪市北区梅田３丁目１－１",
        "address2": "グランフロント大阪　タワーＡ　２０階",
        "address3": "",
        "company": "株式会社サンプル",
        "name": "髙橋 一郎",
    });
    jobs[2]["campaign"] = json!("autumn26");
    enqueue(&mut conn, &jobs);
    let mut d = s.start();
    let evs = wait_for(&mut conn, WAIT, "7 sent", |e| count(e, "sent") == 7);
    // spring26's two full batches are ready; autumn26's single row waits for more.
    let ready = s.outbox("dm").join("ready");
    assert_eq!(Ready::read(&ready).rows().len(), 6);
    assert_eq!(d.terminate(Duration::from_secs(20)), Some(0));
    let open: Vec<_> = std::fs::read_dir(s.outbox("dm").join("open"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        open.is_empty(),
        "shutdown closes every open batch: {open:?}"
    );

    let ready = Ready::read(&ready);
    assert_eq!(ready.rows().len(), 7);
    assert_eq!(ready.batches.len(), 3, "spring26: 3 + 3 rows; autumn26: 1");
    for b in &ready.batches {
        let m = &b["manifest"];
        assert_eq!(m["encoding"], "shift_jis", "{m}");
        assert!(m["rows"].as_u64().unwrap() <= 3, "{m}");
        assert!(m["first_at"].is_string() && m["last_at"].is_string(), "{m}");
    }
    let (m, r) = ready.row("dm-0");
    assert_eq!(r["postal_code"], "100-0001");
    assert_eq!(r["address1"], "東京都千代田区千代田1-1");
    assert_eq!(r["name"], "山田 太郎");
    assert_eq!(r["honorific"], "様");
    assert_eq!(r["customer_id"], "C-dm-0");
    // The dm part of the spring_sale template, rendered.
    assert_eq!(r["coupon_code"], "SPRING-C-dm-0");
    assert_eq!(r["message1"], "山田 太郎様、春のセールのご案内です。");
    assert_eq!(r["message2"], "1200ポイントをお持ちです。");
    assert_eq!(m["campaign"], "spring26");
    assert_eq!(sent_batch(&evs, "dm-0"), &m["batch"]);

    let (_, r) = ready.row("dm-1");
    assert_eq!(r["postal_code"], "530-0001", "normalized from full width");
    assert_eq!(r["address2"], "グランフロント大阪　タワーＡ　２０階");
    assert_eq!(r["company"], "株式会社サンプル");
    assert_eq!(r["name"], "髙橋 一郎", "髙 is in Windows-31J");
    assert_eq!(r["honorific"], "様", "the default honorific");

    let (m, _) = ready.row("dm-2");
    assert_eq!(
        m["campaign"], "autumn26",
        "each campaign has its own batches"
    );
    let batches: HashSet<&Value> = (0..7)
        .map(|i| sent_batch(&evs, &format!("dm-{i}")))
        .collect();
    assert_eq!(
        batches.len(),
        3,
        "two batches for spring26, one for autumn26"
    );
}

#[test]
fn utf8_with_bom_and_hostile_cells_and_campaign_ids_are_neutralized() {
    let redis = Redis::start();
    let s = setup(&redis, "", &dm_channels("utf-8-bom", ""));
    let mut conn = redis.conn();
    let mut j = dm_job("evil-1");
    j["campaign"] = json!("../../../tmp/escape");
    j["to"]["postal"]["name"] = json!("=HYPERLINK(\"http://evil.example\",\"x\")");
    j["to"]["postal"]["address2"] = json!("+81-3-0000\u{7}\r\n2行目");
    j["to"]["postal"]["address3"] = json!("@SUM(A1)");
    j["to"]["postal"]["company"] = json!("-2+3");
    j["customer_id"] = json!("a,\"quoted\"\ncell");
    let mut j2 = dm_job("evil-2");
    j2["campaign"] = json!("..");
    enqueue(&mut conn, &[j, j2]);
    let mut d = s.start();
    wait_for(&mut conn, WAIT, "2 sent", |e| count(e, "sent") == 2);
    assert_eq!(d.terminate(Duration::from_secs(20)), Some(0));

    // Nothing outside the channel's dir; nothing but batches and manifests in ready/.
    let outbox = s.outbox("dm");
    let ready_dir = outbox.join("ready");
    for entry in std::fs::read_dir(&ready_dir).expect("ready/").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".csv") || name.ends_with(".manifest.json"),
            "{name}"
        );
        assert!(!name.contains("..") && !name.contains('/'), "{name}");
    }
    assert!(!Path::new("/tmp/escape").exists());
    let top: Vec<String> = std::fs::read_dir(s.outbox("dm").parent().unwrap())
        .expect("outbox")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        top.iter().all(|n| n == "dm" || n == "email"),
        "nothing written beside the dm dir: {top:?}"
    );

    let ready = Ready::read(&ready_dir);
    let (m, r) = ready.row("evil-1");
    assert_eq!(
        m["campaign"], "../../../tmp/escape",
        "the manifest keeps the real id"
    );
    assert_eq!(r["name"], "'=HYPERLINK(\"http://evil.example\",\"x\")");
    assert_eq!(
        r["address2"], "'+81-3-00002行目",
        "control characters removed"
    );
    assert_eq!(r["address3"], "'@SUM(A1)");
    assert_eq!(r["company"], "'-2+3");
    assert_eq!(r["customer_id"], "a,\"quoted\"cell", "quoted, not split");
    let campaigns: HashSet<&Value> = ready
        .batches
        .iter()
        .map(|b| &b["manifest"]["campaign"])
        .collect();
    assert_eq!(
        campaigns.len(),
        2,
        "'..' is a campaign of its own: {campaigns:?}"
    );
}

#[test]
fn bad_addresses_and_unencodable_text_fail_naming_the_field_or_fall_back() {
    let redis = Redis::start();
    let s = setup(&redis, "", &dm_channels("shift_jis", ""));
    let mut conn = redis.conn();
    let mut short = dm_job("bad-postal");
    short["to"]["postal"]["postal_code"] = json!("12-345");
    let mut falls = dm_job("bad-postal-fallback");
    falls["to"]["postal"]["postal_code"] = json!("abc");
    falls["fallback"] = json!(["email"]);
    let mut no_name = dm_job("no-name");
    no_name["to"]["postal"]["name"] = json!("  ");
    let mut emoji = dm_job("emoji");
    emoji["to"]["postal"]["address2"] = json!("メゾン🌸 101");
    let mut kanji = dm_job("outside-jis");
    kanji["to"]["postal"]["name"] = json!("𠮷田 花子");
    let mut unknown = dm_job("unknown-field");
    unknown["template"] = Value::Null;
    unknown["content"] = json!({"dm": {"fields": {"coupon_code": "X1", "secret_column": "y"}}});
    enqueue(
        &mut conn,
        &[short, falls, no_name, emoji, kanji, unknown, dm_job("good")],
    );
    let mut d = s.start();
    let evs = wait_for(&mut conn, WAIT, "outcomes", |e| {
        count(e, "failed") == 5 && count(e, "sent") == 2
    });
    assert_eq!(d.terminate(Duration::from_secs(20)), Some(0));

    let e = error_of(&evs, "failed", "bad-postal");
    assert_eq!(e["code"], "invalid_address", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("postal_code"),
        "{e}"
    );
    let fb = evs
        .iter()
        .find(|e| e["type"] == "fallback" && e["job_id"] == "bad-postal-fallback")
        .expect("a fallback");
    assert_eq!(fb["to_channel"], "email");
    assert_eq!(s.outbox_files("email").len(), 1, "sent by email instead");
    let e = error_of(&evs, "failed", "no-name");
    assert!(e["message"].as_str().unwrap().contains("name"), "{e}");
    for (id, ch, field) in [("emoji", "🌸", "address2"), ("outside-jis", "𠮷", "name")] {
        let e = error_of(&evs, "failed", id);
        assert_eq!(e["code"], "unencodable", "{e}");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(ch) && msg.contains(field), "{id}: {msg}");
    }
    let e = error_of(&evs, "failed", "unknown-field");
    assert_eq!(e["code"], "unknown_dm_field", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("secret_column"),
        "{e}"
    );

    let ready = Ready::read(&s.outbox("dm").join("ready"));
    let ids: Vec<&Value> = ready.rows().iter().map(|(_, r)| &r["job_id"]).collect();
    assert_eq!(ids, vec!["good"], "only the good job was printed");
}

#[test]
fn replacement_mode_prints_geta_marks_instead_of_failing() {
    let redis = Redis::start();
    let s = setup(
        &redis,
        "",
        &dm_channels("shift_jis", "unmappable = \"replace\""),
    );
    let mut conn = redis.conn();
    let mut j = dm_job("geta");
    j["to"]["postal"]["name"] = json!("𠮷田 花子");
    enqueue(&mut conn, &[j]);
    let mut d = s.start();
    wait_for(&mut conn, WAIT, "sent", |e| count(e, "sent") == 1);
    assert_eq!(d.terminate(Duration::from_secs(20)), Some(0));
    let ready = Ready::read(&s.outbox("dm").join("ready"));
    assert_eq!(ready.row("geta").1["name"], "〓田 花子");
}

/// A small deterministic generator: the test's "random" moments, reproducible
/// from the seed it prints.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn kill_9_at_random_moments_leaves_every_job_in_exactly_one_row() {
    let redis = Redis::start();
    let s = setup(
        &redis,
        RECLAIM_FAST,
        &dm_channels("shift_jis", "").replace("batch_max_rows = 3", "batch_max_rows = 150"),
    );
    let mut conn = redis.conn();
    let n = 4000;
    let jobs: Vec<Value> = (0..n)
        .map(|i| {
            let mut j = dm_job(&format!("k{i}"));
            j["campaign"] = json!(["spring26", "autumn26", "vip"][i % 3]);
            j
        })
        .collect();
    enqueue(&mut conn, &jobs);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    eprintln!("kill -9 moments from seed {seed}");
    let mut rng = Lcg(seed);
    let mut killed_mid_run = 0;
    for _ in 0..5 {
        let mut d = s.start();
        std::thread::sleep(Duration::from_millis(150 + rng.next(500)));
        d.kill9();
        let sent = count(&events(&mut conn), "sent");
        eprintln!("killed with {sent} of {n} sent");
        if sent > 0 && sent < n {
            killed_mid_run += 1;
        }
    }
    assert!(
        killed_mid_run >= 2,
        "the kills must land mid-run ({killed_mid_run} did)"
    );
    let mut d = s.start();
    let evs = wait_for(&mut conn, WAIT, "all sent", |e| count(e, "sent") >= n);
    assert_eq!(d.terminate(Duration::from_secs(30)), Some(0));

    // One outcome per job in the results stream…
    let by_job = terminal_by_job(&evs);
    let doubled: Vec<_> = by_job
        .iter()
        .filter(|(_, v)| v.len() != 1)
        .take(5)
        .collect();
    assert!(doubled.is_empty(), "more than one outcome: {doubled:?}");
    assert_eq!(by_job.len(), n);
    // …and one row per job across every ready file, in the batch its event names.
    let ready = Ready::read(&s.outbox("dm").join("ready"));
    let mut rows: HashMap<String, Vec<String>> = HashMap::new();
    for (m, r) in ready.rows() {
        rows.entry(r["job_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(m["batch"].as_str().unwrap().to_owned());
    }
    let twice: Vec<_> = rows.iter().filter(|(_, b)| b.len() != 1).take(5).collect();
    assert!(twice.is_empty(), "printed twice: {twice:?}");
    let missing: Vec<_> = (0..n)
        .map(|i| format!("k{i}"))
        .filter(|id| !rows.contains_key(id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "never printed: {missing:?}");
    assert_eq!(rows.len(), n);
    for e in evs.iter().filter(|e| e["type"] == "sent") {
        let id = e["job_id"].as_str().unwrap();
        assert_eq!(
            e["batch"],
            json!(rows[id][0]),
            "{id}: the event names its row's batch"
        );
    }
}
