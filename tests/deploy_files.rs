//! The dashboards and alerts in `deploy/` must only use metrics the daemon exports.

use std::collections::BTreeSet;

/// Metric names in a text: `tayori_` followed by name characters, histogram
/// series suffixes folded into their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("tayori_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        // Part of a longer identifier (e.g. a label or job name), not a metric.
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
                .unwrap_or(name);
            out.insert(family.to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

fn check(path: &str) {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let used = metric_names(&text);
    assert!(!used.is_empty(), "{path} uses no Tayori metric at all?");
    let unknown: Vec<_> = used
        .iter()
        .filter(|n| !tayori::metrics::ALL.contains(&n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "{path} uses metrics the daemon does not export: {unknown:?}"
    );
}

#[test]
fn alerts_use_only_exported_metrics() {
    check("deploy/prometheus/alerts.yml");
}

#[test]
fn the_dashboard_uses_only_exported_metrics() {
    check("deploy/grafana/tayori.json");
}

#[test]
fn the_check_itself_notices_an_unknown_metric() {
    let used = metric_names(
        r#"rate(tayori_messages_total[5m]) + tayori_send_duration_seconds_bucket + tayori_nonexistent_total"#,
    );
    assert!(used.contains("tayori_send_duration_seconds"));
    assert!(used
        .iter()
        .any(|n| !tayori::metrics::ALL.contains(&n.as_str())));
}
