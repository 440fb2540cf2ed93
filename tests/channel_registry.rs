//! Every channel the registry lists is whole: its section is documented in the
//! shipped `config/tayori.toml`, the shipped templates preview it with
//! `tayori render`, `tayori stats` has its row and `tayori report` its column.
//! A channel added without any of them fails here.

mod common;

use common::*;
use serde_json::{json, Value};
use tayori::channel::registry::PLUGINS;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tayori.toml");

/// Each channel's section as shipped, on the null transport (nothing is sent).
fn null_channels(shipped: &toml::Table) -> String {
    let sections = shipped["channels"].as_table().expect("[channels]");
    let mut out = String::new();
    for p in PLUGINS {
        let mut section = sections
            .get(p.id().as_str())
            .and_then(|s| s.as_table())
            .cloned()
            .unwrap_or_default();
        section.insert("transport".into(), "null".into());
        section.remove("dir");
        let mut root = toml::Table::new();
        let mut channels = toml::Table::new();
        channels.insert(p.id().to_string(), section.into());
        root.insert("channels".into(), channels.into());
        out.push_str(&toml::to_string(&root).expect("toml"));
        out.push('\n');
    }
    out
}

#[test]
fn every_registered_channel_has_config_docs_a_preview_a_stats_row_and_a_report_column() {
    let text = std::fs::read_to_string(SHIPPED).expect("config/tayori.toml");
    let shipped: toml::Table = toml::from_str(&text).expect("the shipped config is TOML");
    for p in PLUGINS {
        assert!(
            shipped["channels"].get(p.id().as_str()).is_some(),
            "config/tayori.toml has no [channels.{}] section",
            p.id()
        );
    }

    let redis = Redis::start();
    let s = setup(&redis, "", &null_channels(&shipped));
    let env = |c: &mut std::process::Command| {
        for var in [
            "SMTP_USERNAME",
            "SMTP_PASSWORD",
            "LINE_CHANNEL_ACCESS_TOKEN",
            "LINE_CHANNEL_SECRET",
            "TAYORI_WEBHOOK_SECRET",
        ] {
            c.env(var, "x");
        }
    };

    // A preview of the shipped template on every channel.
    let mut to = json!({"name": "山田 太郎"});
    for p in PLUGINS {
        to[p.address_key()] = p.example_address();
    }
    let others: Vec<String> = PLUGINS.iter().skip(1).map(|p| p.id().to_string()).collect();
    let job = json!({
        "id": "preview-1", "channel": PLUGINS[0].id().to_string(), "fallback": others,
        "to": to, "template": "spring_sale",
        "vars": {"points": 1200, "items": [{"name": "化粧水", "url": "https://shop.example.com/p/1"}]}
    });
    let path = s.dir.path().join("job.json");
    std::fs::write(&path, job.to_string()).unwrap();
    let mut render = s.tayori();
    env(&mut render);
    let out = render.arg("render").arg(&path).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in PLUGINS {
        let heading = format!("===== {} =====", p.id());
        let section = printed
            .split(&heading)
            .nth(1)
            .unwrap_or_else(|| panic!("no preview of {}: {printed}", p.id()));
        let body = section.split("=====").next().unwrap_or_default().trim();
        assert!(
            !body.is_empty() && !body.starts_with("error"),
            "{}: {body}",
            p.id()
        );
        assert!(
            !body.starts_with("(channel"),
            "{} is not enabled: {body}",
            p.id()
        );
    }

    // A row in `tayori stats`.
    let mut stats = s.tayori();
    env(&mut stats);
    let out = stats.args(["stats", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<&str> = stats["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    for p in PLUGINS {
        assert!(
            rows.contains(&p.id().as_str()),
            "no stats row for {}: {rows:?}",
            p.id()
        );
    }

    // A column in `tayori report`.
    let mut report = s.tayori();
    env(&mut report);
    // A campaign without events: the report says so (exit 1) and still prints its columns.
    let out = report
        .args(["report", "--json", "--campaign", "any"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for p in PLUGINS {
        assert!(
            report["channels"].get(p.id().as_str()).is_some(),
            "no report column for {}: {}",
            p.id(),
            report["channels"]
        );
    }
}
