//! The print batch writer against a real directory: what a vendor finds in
//! `ready/`, and what a restart after a crash makes of `open/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::*;
use crate::{Channel, Content, Message, PostalAddress, Recipient, SendError, Sent};

fn message(job_id: &str, campaign: Option<&str>) -> Message {
    Message {
        job_id: job_id.into(),
        attempt: 1,
        idempotency_key: job_id.into(),
        campaign: campaign.map(str::to_owned),
        customer_id: Some(format!("C-{job_id}")),
        to: Recipient {
            name: Some("山田 太郎".into()),
            address: "100-0001".into(),
            postal: Some(PostalAddress {
                postal_code: "100-0001".into(),
                address1: "東京都千代田区千代田1-1".into(),
                name: "山田 太郎".into(),
                ..Default::default()
            }),
        },
        content: Content::Dm {
            fields: BTreeMap::from([("coupon_code".to_owned(), format!("SPRING-{job_id}"))]),
        },
    }
}

fn with_postal(mut m: Message, edit: impl FnOnce(&mut PostalAddress)) -> Message {
    if let Some(p) = m.to.postal.as_mut() {
        edit(p);
    }
    m
}

fn settings(dir: &Path) -> PrintSettings {
    PrintSettings::new(dir)
}

fn open(settings: PrintSettings) -> PrintBatches {
    PrintBatches::open(settings).expect("open the print directory")
}

fn batch_of(sent: &Sent) -> &str {
    let batch = sent
        .details
        .iter()
        .find(|(k, _)| *k == "batch")
        .map(|(_, v)| v);
    batch.and_then(Value::as_str).expect("a batch detail")
}

/// A batch as a vendor reads it: the manifest and the file's bytes.
struct Ready {
    manifest: Value,
    bytes: Vec<u8>,
}

impl Ready {
    fn text(&self) -> String {
        let encoding: TextEncoding = self.manifest["encoding"].as_str().unwrap().parse().unwrap();
        encoding
            .decode(&self.bytes)
            .expect("decodes in its encoding")
    }

    /// The data rows, split into cells (no cell in these tests holds a comma).
    fn rows(&self) -> Vec<Vec<String>> {
        self.text()
            .split_terminator("\r\n")
            .skip(1)
            .map(|line| line.split(',').map(str::to_owned).collect())
            .collect()
    }

    fn job_ids(&self) -> Vec<String> {
        self.rows().into_iter().map(|r| r[0].clone()).collect()
    }
}

/// Every batch in `ready/`, checking that each CSV has its manifest and that
/// the manifest's checksum and row count match the file.
fn ready(dir: &Path) -> Vec<Ready> {
    let mut batches = Vec::new();
    let mut csvs = 0;
    for entry in std::fs::read_dir(dir.join("ready")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".csv") {
            csvs += 1;
            continue;
        }
        assert!(name.ends_with(".manifest.json"), "unexpected {name}");
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        let bytes =
            std::fs::read(dir.join("ready").join(manifest["file"].as_str().unwrap())).unwrap();
        let sha256: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(manifest["sha256"], sha256.as_str(), "{manifest}");
        assert_eq!(manifest["bytes"], bytes.len(), "{manifest}");
        let time =
            |key: &str| -> jiff::Timestamp { manifest[key].as_str().unwrap().parse().unwrap() };
        assert!(time("first_at") <= time("last_at"), "{manifest}");
        let batch = Ready { manifest, bytes };
        assert_eq!(
            batch.manifest["rows"],
            batch.rows().len(),
            "{}",
            batch.manifest
        );
        batches.push(batch);
    }
    assert_eq!(csvs, batches.len(), "every CSV in ready/ has a manifest");
    batches.sort_by_key(|b| {
        let first: jiff::Timestamp = b.manifest["first_at"].as_str().unwrap().parse().unwrap();
        first
    });
    batches
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn open_csv(dir: &Path) -> PathBuf {
    let name = names_in(&dir.join("open"))
        .into_iter()
        .find(|n| n.ends_with(".csv"))
        .expect("an open batch");
    dir.join("open").join(name)
}

#[tokio::test]
async fn rows_follow_a_header_and_close_with_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(settings(tmp.path()));
    let a = batches
        .send(&message("j1", Some("spring26")))
        .await
        .unwrap();
    let b = batches
        .send(&message("j2", Some("spring26")))
        .await
        .unwrap();
    assert_eq!(batch_of(&a), batch_of(&b));
    assert_eq!(a.provider_id, batch_of(&a));
    assert!(ready(tmp.path()).is_empty(), "the batch is still open");
    batches.shutdown().await;

    assert_eq!(names_in(&tmp.path().join("open")), Vec::<String>::new());
    let ready = ready(tmp.path());
    assert_eq!(ready.len(), 1);
    let m = &ready[0].manifest;
    assert_eq!(m["batch"], batch_of(&a));
    assert!(batch_of(&a).starts_with("spring26-"), "{m}");
    assert_eq!(m["campaign"], "spring26");
    assert_eq!(m["encoding"], "utf-8");
    assert_eq!(m["rows"], 2);
    let columns: Vec<String> = default_columns().iter().map(|c| c.to_string()).collect();
    assert_eq!(m["columns"], serde_json::json!(columns));
    let first: jiff::Timestamp = m["first_at"].as_str().unwrap().parse().unwrap();
    let last: jiff::Timestamp = m["last_at"].as_str().unwrap().parse().unwrap();
    assert!(first <= last);
    assert_eq!(
        ready[0].text(),
        "job_id,customer_id,postal_code,address1,address2,address3,company,name,honorific,\
         coupon_code,message1,message2,message3\r\n\
         j1,C-j1,100-0001,東京都千代田区千代田1-1,,,,山田 太郎,様,SPRING-j1,,,\r\n\
         j2,C-j2,100-0001,東京都千代田区千代田1-1,,,,山田 太郎,様,SPRING-j2,,,\r\n"
    );
}

#[tokio::test]
async fn jobs_without_a_campaign_go_to_default() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(settings(tmp.path()));
    let sent = batches.send(&message("j1", None)).await.unwrap();
    assert!(batch_of(&sent).starts_with("default-"), "{sent:?}");
    batches.shutdown().await;
    assert_eq!(ready(tmp.path())[0].manifest["campaign"], "default");
}

#[tokio::test]
async fn shift_jis_files_decode_to_the_original_text() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(PrintSettings {
        encoding: TextEncoding::ShiftJis,
        ..settings(tmp.path())
    });
    let m = with_postal(message("j1", Some("c")), |p| {
        p.postal_code = "〒５３０－０００１".into();
        p.address2 = "グランフロント大阪　タワーＡ　２０階".into();
        p.company = "株式会社サンプル".into();
        p.name = "髙橋 一郎".into();
        p.honorific = "御中".into();
    });
    batches.send(&m).await.unwrap();
    let e = batches
        .send(&with_postal(message("j2", Some("c")), |p| {
            p.name = "𠮷田 花子".into()
        }))
        .await
        .unwrap_err();
    assert_eq!((e.class(), e.code()), ("permanent", "unencodable"));
    assert!(
        e.message().contains('𠮷') && e.message().contains("U+20BB7"),
        "{e}"
    );
    assert!(e.message().contains("column name"), "{e}");
    batches.shutdown().await;

    let ready = ready(tmp.path());
    assert_eq!(ready[0].manifest["encoding"], "shift_jis");
    assert!(!ready[0].bytes.starts_with(b"\xEF\xBB\xBF"));
    let (text, _, malformed) = encoding_rs::SHIFT_JIS.decode(&ready[0].bytes);
    assert!(!malformed);
    assert!(
        text.ends_with(
            "\r\nj1,C-j1,530-0001,東京都千代田区千代田1-1,グランフロント大阪　タワーＡ　２０階,,\
             株式会社サンプル,髙橋 一郎,御中,SPRING-j1,,,\r\n"
        ),
        "{text}"
    );
    assert_eq!(ready[0].job_ids(), ["j1"], "the unencodable job has no row");
}

#[tokio::test]
async fn replace_mode_prints_geta_marks() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(PrintSettings {
        encoding: TextEncoding::ShiftJis,
        unmappable: Unmappable::Replace,
        ..settings(tmp.path())
    });
    let m = with_postal(message("j1", None), |p| p.name = "𠮷田 花子🌸".into());
    batches.send(&m).await.unwrap();
    batches.shutdown().await;
    assert_eq!(ready(tmp.path())[0].rows()[0][7], "〓田 花子〓");
}

#[tokio::test]
async fn utf8_bom_files_start_with_the_bom_once() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(PrintSettings {
        encoding: TextEncoding::Utf8Bom,
        ..settings(tmp.path())
    });
    batches.send(&message("j1", None)).await.unwrap();
    batches.send(&message("j2", None)).await.unwrap();
    batches.shutdown().await;
    let ready = ready(tmp.path());
    assert!(ready[0].bytes.starts_with(b"\xEF\xBB\xBFjob_id,"));
    assert_eq!(
        ready[0]
            .bytes
            .windows(3)
            .filter(|w| w == b"\xEF\xBB\xBF")
            .count(),
        1
    );
    assert_eq!(ready[0].manifest["encoding"], "utf-8-bom");
}

#[tokio::test]
async fn hostile_cells_are_neutralized_and_stay_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(settings(tmp.path()));
    let mut m = with_postal(message("evil-1", None), |p| {
        p.name = "=HYPERLINK(\"http://evil.example\")".into();
        p.address2 = "+81-3-0000\u{7}\r\n2行目".into();
        p.address3 = "@SUM(A1)".into();
        p.company = "-2+3".into();
    });
    m.customer_id = Some("a,\"quoted\"\ncell".into());
    batches.send(&m).await.unwrap();
    batches.shutdown().await;
    let ready = ready(tmp.path());
    let text = ready[0].text();
    assert_eq!(
        text.matches("\r\n").count(),
        2,
        "header and one row: {text}"
    );
    assert!(
        text.contains(
            "\r\nevil-1,\"a,\"\"quoted\"\"cell\",100-0001,東京都千代田区千代田1-1,'+81-3-00002行目,\
             '@SUM(A1),'-2+3,\"'=HYPERLINK(\"\"http://evil.example\"\")\",様,"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn campaign_ids_cannot_leave_the_directory_or_collide() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dm");
    let batches = open(settings(&dir));
    let campaigns = ["../../etc", "..", "a/b", "a_b", ".hidden", "spring26"];
    for (i, c) in campaigns.iter().enumerate() {
        batches
            .send(&message(&format!("j{i}"), Some(c)))
            .await
            .unwrap();
    }
    batches.shutdown().await;
    assert_eq!(
        names_in(tmp.path()),
        ["dm"],
        "nothing written beside the directory"
    );
    assert_eq!(names_in(&dir), ["index", "lock", "open", "ready"]);
    for name in names_in(&dir.join("ready"))
        .iter()
        .chain(&names_in(&dir.join("index")))
    {
        assert!(!name.starts_with('.') && !name.contains(".."), "{name}");
    }
    let ready = ready(&dir);
    let mut found: Vec<&str> = ready
        .iter()
        .map(|b| b.manifest["campaign"].as_str().unwrap())
        .collect();
    found.sort();
    let mut expected = campaigns.to_vec();
    expected.sort();
    assert_eq!(
        found, expected,
        "one batch per campaign, named by its real id"
    );
}

#[tokio::test]
async fn bad_addresses_are_unreachable_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(settings(tmp.path()));
    let cases = [
        (
            with_postal(message("p", None), |p| p.postal_code = "12-345".into()),
            "to.postal.postal_code",
        ),
        (
            with_postal(message("a", None), |p| p.address1 = " ".into()),
            "to.postal.address1",
        ),
        (
            with_postal(message("n", None), |p| p.name = String::new()),
            "to.postal.name",
        ),
    ];
    for (m, field) in cases {
        let e = batches.send(&m).await.unwrap_err();
        assert_eq!(
            (e.class(), e.code()),
            ("unreachable", "invalid_address"),
            "{e}"
        );
        assert!(e.message().starts_with(field), "{e}");
    }
    let mut m = message("none", None);
    m.to.postal = None;
    let e = batches.send(&m).await.unwrap_err();
    assert_eq!((e.class(), e.code()), ("unreachable", "no_address"));
    assert_eq!(
        batches.send(&message("ok", None)).await.map(|_| ()),
        Ok::<(), SendError>(())
    );
}

#[tokio::test]
async fn a_field_that_is_not_a_column_fails_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(settings(tmp.path()));
    let mut m = message("j1", None);
    if let Content::Dm { fields } = &mut m.content {
        fields.insert("secret_column".into(), "y".into());
    }
    let e = batches.send(&m).await.unwrap_err();
    assert_eq!((e.class(), e.code()), ("permanent", "unknown_dm_field"));
    assert!(e.message().contains("secret_column"), "{e}");
}

#[test]
fn settings_without_job_id_or_rows_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let no_id = PrintSettings {
        columns: vec![Column::Name],
        ..settings(tmp.path())
    };
    assert!(
        matches!(PrintBatches::open(no_id), Err(PrintError::Settings(m)) if m.contains("job_id"))
    );
    let no_rows = PrintSettings {
        batch_max_rows: 0,
        ..settings(tmp.path())
    };
    assert!(matches!(
        PrintBatches::open(no_rows),
        Err(PrintError::Settings(_))
    ));
}

#[test]
fn one_process_at_a_time_writes_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(settings(tmp.path()));
    assert!(matches!(
        PrintBatches::open(settings(tmp.path())),
        Err(PrintError::Locked { .. })
    ));
    drop(first);
    open(settings(tmp.path()));
}

#[tokio::test]
async fn a_batch_closes_when_full() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(PrintSettings {
        batch_max_rows: 3,
        ..settings(tmp.path())
    });
    let mut ids = Vec::new();
    for i in 0..7 {
        let sent = batches
            .send(&message(&format!("j{i}"), Some("c")))
            .await
            .unwrap();
        ids.push(batch_of(&sent).to_owned());
    }
    // Closed by the send that filled it, before that send returned.
    let ready_now = ready(tmp.path());
    assert_eq!(ready_now.len(), 2);
    assert_eq!(
        ready_now.iter().map(|b| b.job_ids()).collect::<Vec<_>>(),
        [["j0", "j1", "j2"], ["j3", "j4", "j5"]]
    );
    assert_eq!(ids[0..3], [ids[0].clone(), ids[0].clone(), ids[0].clone()]);
    assert_ne!(ids[2], ids[3]);
    assert_ne!(ids[5], ids[6]);
    batches.shutdown().await;
    assert_eq!(ready(tmp.path()).len(), 3);
}

#[tokio::test]
async fn a_batch_closes_at_the_first_tick_after_its_max_age() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(PrintSettings {
        batch_max_age: Duration::from_millis(200),
        ..settings(tmp.path())
    });
    batches.send(&message("j1", Some("c"))).await.unwrap();
    batches.tick().await;
    assert!(ready(tmp.path()).is_empty(), "too young to close");
    tokio::time::sleep(Duration::from_millis(250)).await;
    batches.tick().await;
    assert_eq!(ready(tmp.path()).len(), 1);
    assert_eq!(names_in(&tmp.path().join("open")), Vec::<String>::new());
    // The next row opens a new batch.
    let sent = batches.send(&message("j2", Some("c"))).await.unwrap();
    assert_ne!(ready(tmp.path())[0].manifest["batch"], batch_of(&sent));
}

#[tokio::test]
async fn a_job_is_written_once_within_a_run_and_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(settings(tmp.path()));
    let first = batches.send(&message("j1", Some("c"))).await.unwrap();
    let again = batches.send(&message("j1", Some("c"))).await.unwrap();
    assert_eq!(batch_of(&first), batch_of(&again));
    batches.shutdown().await;
    drop(batches);

    let batches = open(settings(tmp.path()));
    let after_restart = batches.send(&message("j1", Some("c"))).await.unwrap();
    assert_eq!(batch_of(&first), batch_of(&after_restart));
    // Another campaign is another set of batches.
    let other = batches.send(&message("j1", Some("other"))).await.unwrap();
    assert_ne!(batch_of(&first), batch_of(&other));
    batches.shutdown().await;
    let ready = ready(tmp.path());
    let rows: usize = ready.iter().map(|b| b.rows().len()).sum();
    assert_eq!(rows, 2, "j1 once in c, once in other");
}

#[tokio::test]
async fn a_crash_leaves_open_batches_that_the_next_start_closes_and_remembers() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(settings(tmp.path()));
    let j1 = batches.send(&message("j1", Some("c"))).await.unwrap();
    batches.send(&message("j2", Some("c"))).await.unwrap();
    drop(batches); // no shutdown: the batch stays in open/

    // The crash tore a row in half.
    let path = open_csv(tmp.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"j3,C-j3,100-00");
    std::fs::write(&path, &bytes).unwrap();

    let batches = open(settings(tmp.path()));
    assert_eq!(names_in(&tmp.path().join("open")), Vec::<String>::new());
    let ready_now = ready(tmp.path());
    assert_eq!(ready_now.len(), 1);
    assert_eq!(
        ready_now[0].job_ids(),
        ["j1", "j2"],
        "the torn row is cut away"
    );
    assert_eq!(ready_now[0].manifest["batch"], batch_of(&j1));
    assert_eq!(ready_now[0].manifest["campaign"], "c");

    // j1 is remembered; j3, never acknowledged, is written anew.
    let again = batches.send(&message("j1", Some("c"))).await.unwrap();
    assert_eq!(batch_of(&again), batch_of(&j1));
    let j3 = batches.send(&message("j3", Some("c"))).await.unwrap();
    assert_ne!(batch_of(&j3), batch_of(&j1));
    batches.shutdown().await;
    let all: Vec<String> = ready(tmp.path()).iter().flat_map(|b| b.job_ids()).collect();
    assert_eq!(all.len(), 3, "{all:?}");
}

#[tokio::test]
async fn a_power_cut_tail_of_zeros_is_cut_with_what_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(PrintSettings {
        encoding: TextEncoding::ShiftJis,
        ..settings(tmp.path())
    });
    batches.send(&message("j1", Some("c"))).await.unwrap();
    drop(batches);
    // Blocks written after the last fsync: one never reached the disk (zeros),
    // the next did. Neither row was acknowledged.
    let path = open_csv(tmp.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let row = bytes[bytes.len() - 60..].to_vec();
    bytes.extend_from_slice(&[0; 100]);
    bytes.extend_from_slice(&row);
    bytes.extend_from_slice(b"j3,x\r\n");
    std::fs::write(&path, &bytes).unwrap();

    // Reopened as UTF-8: the batch is recovered in the encoding it was begun in.
    drop(open(settings(tmp.path())));
    let ready = ready(tmp.path());
    assert_eq!(ready[0].manifest["encoding"], "shift_jis");
    assert_eq!(ready[0].job_ids(), ["j1"]);
}

#[tokio::test]
async fn a_crash_between_moving_the_file_and_writing_its_manifest_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(settings(tmp.path()));
    let j1 = batches.send(&message("j1", Some("c"))).await.unwrap();
    drop(batches);
    let path = open_csv(tmp.path());
    let moved = tmp.path().join("ready").join(path.file_name().unwrap());
    std::fs::rename(&path, &moved).unwrap();
    std::fs::write(
        tmp.path().join("open").join(".half.manifest.json.tmp"),
        b"{\"ba",
    )
    .unwrap();

    let batches = open(settings(tmp.path()));
    assert_eq!(names_in(&tmp.path().join("open")), Vec::<String>::new());
    let ready_now = ready(tmp.path());
    assert_eq!(ready_now.len(), 1);
    assert_eq!(ready_now[0].manifest["batch"], batch_of(&j1));
    let again = batches.send(&message("j1", Some("c"))).await.unwrap();
    assert_eq!(batch_of(&again), batch_of(&j1), "indexed during recovery");
}

#[tokio::test]
async fn an_empty_leftover_batch_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = open(settings(tmp.path()));
    batches.send(&message("j1", Some("c"))).await.unwrap();
    drop(batches);
    // As if the crash came before the first row reached the file.
    let path = open_csv(tmp.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let header_len = text.find("\r\n").unwrap() + 2;
    std::fs::write(&path, &text.as_bytes()[..header_len + 5]).unwrap();

    drop(open(settings(tmp.path())));
    assert_eq!(names_in(&tmp.path().join("open")), Vec::<String>::new());
    assert!(ready(tmp.path()).is_empty());
}

#[test]
fn a_batch_file_without_its_journal_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(settings(tmp.path())));
    let stray = tmp.path().join("open").join("stray.csv");
    std::fs::write(&stray, b"job_id\r\nj1\r\n").unwrap();
    match PrintBatches::open(settings(tmp.path())) {
        Err(PrintError::Corrupt { path, .. }) => assert_eq!(path, stray),
        other => panic!("expected a corrupt-file error, got {:?}", other.err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_share_fsyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = Arc::new(open(PrintSettings {
        batch_max_rows: 100_000,
        ..settings(tmp.path())
    }));
    let n = 2000;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let batches = batches.clone();
            let campaign = ["a", "b"][i % 2];
            tokio::spawn(async move {
                batches
                    .send(&message(&format!("j{i}"), Some(campaign)))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let syncs = batches.syncs();
    batches.shutdown().await;
    let ready = ready(tmp.path());
    let mut ids: Vec<String> = ready.iter().flat_map(|b| b.job_ids()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "every row exactly once");
    assert_eq!(ready.iter().map(|b| b.rows().len()).sum::<usize>(), n);
    assert!(syncs < n as u64 / 10, "{syncs} fsyncs for {n} rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_job_sent_at_once_is_written_once_in_one_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = Arc::new(open(PrintSettings {
        batch_max_rows: 7,
        ..settings(tmp.path())
    }));
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let batches = batches.clone();
            let job = format!("j{}", i % 100);
            tokio::spawn(async move {
                let sent = batches.send(&message(&job, Some("c"))).await.unwrap();
                (job, batch_of(&sent).to_owned())
            })
        })
        .collect();
    let mut batch_of_job = std::collections::HashMap::new();
    for task in tasks {
        let (job, batch) = task.await.unwrap();
        let first = batch_of_job
            .entry(job.clone())
            .or_insert_with(|| batch.clone());
        assert_eq!(*first, batch, "{job}: every send names the same batch");
    }
    batches.shutdown().await;
    let ready = ready(tmp.path());
    let mut ids: Vec<String> = ready.iter().flat_map(|b| b.job_ids()).collect();
    assert_eq!(ids.len(), 100);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
    for b in &ready {
        for id in b.job_ids() {
            assert_eq!(b.manifest["batch"], batch_of_job[&id].as_str());
        }
    }
}

/// Throughput with durability, as the daemon drives it: 256 sends in flight.
/// `cargo test --release -p tayori-channels print_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check"]
async fn print_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let batches = Arc::new(open(PrintSettings {
        encoding: TextEncoding::ShiftJis,
        ..settings(tmp.path())
    }));
    let (workers, per_worker) = (256, 400);
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let batches = batches.clone();
            tokio::spawn(async move {
                for i in 0..per_worker {
                    let m = message(&format!("w{w}-{i}"), Some(["a", "b", "c"][i % 3]));
                    batches.send(&m).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let rows = workers * per_worker;
    eprintln!(
        "{rows} rows in {elapsed:?}: {:.0} rows/s, {} fsyncs",
        rows as f64 / elapsed.as_secs_f64(),
        batches.syncs()
    );
    batches.shutdown().await;
}

/// The dry-run encoder (`file`, `null`) refuses what the batch writer refuses,
/// with the same class, code and message, and writes a batch of one row: the
/// same bytes as a batch closed after that row.
#[tokio::test]
async fn the_dry_run_encoder_is_the_batch_writer_without_the_disk() {
    use crate::Encode;
    let tmp = tempfile::tempdir().unwrap();
    let s = PrintSettings {
        encoding: TextEncoding::ShiftJis,
        batch_max_rows: 1,
        ..settings(tmp.path())
    };
    let encoder = DmEncoder::of(&s).unwrap();
    let batches = open(s);
    let mut unknown = message("u", None);
    if let Content::Dm { fields } = &mut unknown.content {
        fields.insert("secret_column".into(), "y".into());
    }
    let mut no_postal = message("none", None);
    no_postal.to.postal = None;
    let refused = [
        with_postal(message("p", None), |p| p.postal_code = "abc".into()),
        with_postal(message("a", None), |p| p.address1 = String::new()),
        with_postal(message("k", None), |p| p.name = "𠮷田 花子".into()),
        message("=cmd", None),
        unknown,
        no_postal,
    ];
    for m in &refused {
        let real = batches.send(m).await.unwrap_err();
        let dry = encoder.encode_with_details(m).unwrap_err();
        assert_eq!(dry, real, "{}", m.job_id);
    }

    let m = with_postal(message("j1", Some("c")), |p| p.name = "髙橋 一郎".into());
    let dry = encoder.encode_with_details(&m).unwrap();
    assert_eq!(dry.details, [("batch", Value::from("j1"))]);
    batches.send(&m).await.unwrap();
    let ready = ready(tmp.path());
    assert_eq!(ready.len(), 1);
    assert_eq!(
        dry.bytes, ready[0].bytes,
        "the file transport's file is the batch"
    );
    assert_eq!(encoder.extension(), "csv");
    // `tayori render` shows the Shift_JIS row as text.
    assert!(std::str::from_utf8(&dry.bytes).is_err());
    assert!(encoder.to_text(&dry.bytes).contains("髙橋 一郎"));
}
