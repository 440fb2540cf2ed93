//! The files in `deploy/`: the dashboards and alerts use only metrics the daemon
//! exports; the configs they ship pass `tayori check-config` with exactly the
//! environment they provide; the manifests carry what running Tayori needs
//! (probes, scrape settings, stop timeouts above `queue.shutdown_grace`).
//!
//! No Docker, Kubernetes or YAML library here: the YAML files are read by
//! indentation, which is enough for these hand-written files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

// ---------------------------------------------------------------------------------
// Metrics

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
    let text = read(path);
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

// ---------------------------------------------------------------------------------
// Reading YAML by indentation

/// Indentation of a YAML line, a list item's `- ` counted as indentation (so the
/// keys of a one-item list read like a mapping).
fn indent(line: &str) -> usize {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    if line[spaces..].starts_with("- ") {
        spaces + 2
    } else {
        spaces
    }
}

/// A line's content without indentation and without a leading `- `.
fn content(line: &str) -> &str {
    let t = line.trim_start_matches(' ');
    t.strip_prefix("- ").unwrap_or(t)
}

fn is_meaningful(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The lines nested under `keys` (a path of mapping keys, each inside the previous).
/// Panics naming the path when a key is missing.
fn yaml_block<'a>(text: &'a str, keys: &[&str]) -> Vec<&'a str> {
    let mut lines: Vec<&str> = text.lines().collect();
    for (depth, key) in keys.iter().enumerate() {
        let base = lines
            .iter()
            .filter(|l| is_meaningful(l))
            .map(|l| indent(l))
            .min()
            .unwrap_or(0);
        let start = lines
            .iter()
            .position(|l| {
                is_meaningful(l) && indent(l) == base && {
                    let c = content(l);
                    c.strip_prefix(key)
                        .is_some_and(|rest| rest == ":" || rest.starts_with(": "))
                }
            })
            .unwrap_or_else(|| panic!("no key {:?} in the YAML", &keys[..=depth]));
        let rest = &lines[start + 1..];
        let end = rest
            .iter()
            .position(|l| is_meaningful(l) && indent(l) <= base)
            .unwrap_or(rest.len());
        lines = rest[..end].to_vec();
    }
    lines
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    ['"', '\'']
        .iter()
        .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(v)
}

/// The `key: value` scalars at the top level of a block.
fn yaml_map(lines: &[&str]) -> BTreeMap<String, String> {
    let base = lines
        .iter()
        .filter(|l| is_meaningful(l))
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .filter(|l| is_meaningful(l) && indent(l) == base)
        .filter_map(|l| content(l).split_once(':'))
        .map(|(k, v)| (unquote(k).to_owned(), unquote(v).to_owned()))
        .collect()
}

/// A block scalar (`key: |`) as text, its indentation removed.
fn yaml_text(lines: &[&str]) -> String {
    let base = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for l in lines {
        out.push_str(l.get(base..).unwrap_or(""));
        out.push('\n');
    }
    out
}

fn yaml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn the_yaml_reader_finds_nested_keys() {
    let text = "a:\n  b:\n    - name: x\n      c:\n        d: \"1\"\n  e: 2\n# note\nf: |\n  [t]\n  k = 1\n";
    assert_eq!(yaml_map(&yaml_block(text, &["a", "b", "c"]))["d"], "1");
    assert_eq!(yaml_map(&yaml_block(text, &["a"]))["e"], "2");
    assert_eq!(yaml_text(&yaml_block(text, &["f"])), "[t]\nk = 1\n");
}

#[test]
fn every_yaml_file_under_deploy_is_plain_block_yaml() {
    let mut files = Vec::new();
    yaml_files(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")),
        &mut files,
    );
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let lead = &line[..line.len() - line.trim_start().len()];
            assert!(
                !lead.contains('\t') && !line.ends_with('\r'),
                "{}:{}: tabs or CR in YAML",
                file.display(),
                n + 1
            );
        }
        let top: Vec<&str> = text
            .lines()
            .filter(|l| is_meaningful(l) && indent(l) == 0 && *l != "---")
            .collect();
        assert!(!top.is_empty(), "{}: empty", file.display());
        for l in &top {
            assert!(
                l.contains(':'),
                "{}: a top-level line that is not a key: {l}",
                file.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// The shipped configs and the environment they are given

/// `${VAR}` and `${VAR:-default}` in a TOML text, comment lines left out:
/// name → whether it has a default.
fn env_refs(toml: &str) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for line in toml.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(pos) = rest.find("${") {
            let inner = &rest[pos + 2..];
            let end = inner.find('}').expect("unclosed ${");
            let (name, default) = match inner[..end].split_once(":-") {
                Some((name, _)) => (name, true),
                None => (&inner[..end], false),
            };
            out.insert(name.to_owned(), default);
            rest = &inner[end..];
        }
    }
    out
}

fn configmap_toml() -> String {
    let yaml = read("deploy/k8s/configmap.yaml");
    yaml_text(&yaml_block(&yaml, &["data", "tayori.toml"]))
}

/// The Secret example's `stringData` (its commented-out entries left out).
fn secret_example() -> BTreeMap<String, String> {
    let yaml = read("deploy/k8s/secret.example.yaml");
    yaml_map(&yaml_block(&yaml, &["stringData"]))
}

/// `tayori check-config` on `toml` written to a fresh directory beside a `templates`
/// link to config/templates (what the image holds), with only `env` set.
fn check_config(toml: &str, env: &BTreeMap<String, String>) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tayori.toml");
    std::fs::write(&cfg, toml).unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/templates"),
        dir.path().join("templates"),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_tayori"))
        .arg("-c")
        .arg(&cfg)
        .arg("check-config")
        .current_dir(dir.path())
        .env_clear()
        .envs(env)
        .output()
        .unwrap()
}

fn assert_checks(name: &str, toml: &str, env: &BTreeMap<String, String>) {
    let out = check_config(toml, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} with {:?}: {stdout}{}",
        env.keys(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("spring_sale") && stdout.contains("welcome"),
        "{name}: the example templates were not loaded: {stdout}"
    );
}

fn shutdown_grace(toml: &str) -> Duration {
    let table: toml::Table = toml::from_str(toml).unwrap();
    let grace = table
        .get("queue")
        .and_then(|q| q.get("shutdown_grace"))
        .and_then(|g| g.as_str())
        .unwrap_or("30s");
    tayori::units::duration::parse(grace).unwrap()
}

fn assert_stop_timeout_covers(what: &str, timeout: Duration, grace: Duration) {
    assert!(
        timeout >= 2 * grace,
        "{what} ({timeout:?}) must stay well above queue.shutdown_grace ({grace:?}): \
         in-flight sends get shutdown_grace, then their outcomes are written"
    );
}

#[test]
fn the_configmap_takes_every_variable_from_the_secret_example() {
    let toml = configmap_toml();
    let refs = env_refs(&toml);
    let secret = secret_example();
    for var in [
        "TAYORI_REDIS_URL",
        "TAYORI_TRACKING_SECRET",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
    ] {
        assert!(refs.contains_key(var), "configmap.yaml does not use {var}");
    }
    let missing: Vec<_> = refs.keys().filter(|v| !secret.contains_key(*v)).collect();
    assert!(
        missing.is_empty(),
        "configmap.yaml uses {missing:?}, not in secret.example.yaml"
    );
    let unused: Vec<_> = secret.keys().filter(|v| !refs.contains_key(*v)).collect();
    assert!(
        unused.is_empty(),
        "secret.example.yaml lists {unused:?}, unused by configmap.yaml"
    );
}

#[test]
fn the_configmap_config_passes_check_config_with_the_secret() {
    let toml = configmap_toml();
    // The image holds config/templates there (the Dockerfile copies it).
    assert!(toml.contains("dir = \"/etc/tayori/templates\""), "{toml}");
    assert!(
        read("deploy/docker/Dockerfile").contains("COPY config/templates /etc/tayori/templates")
    );
    let toml = toml.replace("dir = \"/etc/tayori/templates\"", "dir = \"templates\"");
    // The example's placeholders stand for real values of the same shape.
    let env = secret_example()
        .into_keys()
        .map(|k| {
            let v = match k.as_str() {
                "TAYORI_REDIS_URL" => "redis://:secret@redis:6379/0",
                _ => "test-value-0123456789abcdef",
            };
            (k, v.to_owned())
        })
        .collect();
    assert_checks("deploy/k8s/configmap.yaml", &toml, &env);
}

#[test]
fn the_statefulset_probes_scrapes_and_stops_in_time() {
    let yaml = read("deploy/k8s/statefulset.yaml");
    let container = yaml_block(&yaml, &["spec", "template", "spec", "containers"]);
    let container = container.join("\n");
    // Readiness on /healthz: see the probe's comment (redirects answer without Redis).
    for (probe, path) in [
        ("readinessProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
    ] {
        let get = yaml_map(&yaml_block(&container, &[probe, "httpGet"]));
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "http", "{probe}");
    }
    let annotations = yaml_map(&yaml_block(
        &yaml,
        &["spec", "template", "metadata", "annotations"],
    ));
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8080");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let port = yaml_map(&yaml_block(&container, &["ports"]));
    assert_eq!(port["containerPort"], "8080");
    let toml = configmap_toml();
    assert!(toml.contains("listen = \"0.0.0.0:8080\""), "{toml}");

    let pod = yaml_map(&yaml_block(&yaml, &["spec", "template", "spec"]));
    let grace: u64 = pod["terminationGracePeriodSeconds"].parse().unwrap();
    assert_stop_timeout_covers(
        "terminationGracePeriodSeconds",
        Duration::from_secs(grace),
        shutdown_grace(&toml),
    );
}

/// The `- name: …` items of a YAML list block, each as its own block of lines.
fn yaml_items<'a>(lines: &[&'a str]) -> Vec<Vec<&'a str>> {
    let base = lines
        .iter()
        .filter(|l| is_meaningful(l))
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut items: Vec<Vec<&str>> = Vec::new();
    for l in lines.iter().filter(|l| is_meaningful(l)) {
        let lead = l.len() - l.trim_start().len();
        if lead == base && l.trim_start().starts_with("- ") {
            items.push(Vec::new());
        }
        if let Some(item) = items.last_mut() {
            item.push(l);
        }
    }
    items
}

#[test]
fn the_dm_directory_is_on_a_volume_of_its_own_pod_that_outlives_it() {
    let yaml = read("deploy/k8s/statefulset.yaml");
    let top = yaml_map(&yaml.lines().collect::<Vec<_>>());
    // A Deployment's pods share one claim or get none; a StatefulSet gives each its own.
    assert_eq!(top["kind"], "StatefulSet");
    let claims = yaml_block(&yaml, &["spec", "volumeClaimTemplates"]);
    let claims = yaml_items(&claims);
    assert_eq!(claims.len(), 1, "{claims:?}");
    let claim = claims[0].join("\n");
    let name = yaml_map(&yaml_block(&claim, &["metadata"]))["name"].clone();
    let spec = yaml_block(&claim, &["spec"]).join("\n");
    // One pod per volume: two daemons never write one DM directory.
    assert!(spec.contains("accessModes: [\"ReadWriteOnce\"]"), "{spec}");
    let retention = yaml_map(&yaml_block(
        &yaml,
        &["spec", "persistentVolumeClaimRetentionPolicy"],
    ));
    assert_eq!(
        retention["whenScaled"], "Retain",
        "a scaled-down pod's batches stay"
    );

    // The claim is mounted, and the configmap's DM dir is inside the mount.
    let container = yaml_block(&yaml, &["spec", "template", "spec", "containers"]).join("\n");
    let mounts = yaml_items(&yaml_block(&container, &["volumeMounts"]));
    let mount = mounts
        .iter()
        .map(|m| yaml_map(m))
        .find(|m| m.get("name") == Some(&name))
        .unwrap_or_else(|| panic!("the claim {name} is not mounted: {mounts:?}"));
    let toml: toml::Table = toml::from_str(&configmap_toml()).unwrap();
    let dm = toml["channels"]["dm"].as_table().expect("[channels.dm]");
    assert!(
        dm.get("transport").is_none(),
        "DM writes print batches on Kubernetes, not a dry run: {dm:?}"
    );
    let dir = dm["dir"].as_str().unwrap();
    assert!(
        Path::new(dir).starts_with(&mount["mountPath"]),
        "channels.dm.dir {dir} is not on the volume {name} ({})",
        mount["mountPath"]
    );
    // And no emptyDir (gone with the pod) anywhere in the pod.
    assert!(!yaml.contains("emptyDir"), "{yaml}");
}

#[test]
fn redis_exporter_reads_tayoris_redis_and_is_scraped() {
    let yaml = read("deploy/k8s/redis-exporter.yaml");
    let top = yaml_map(&yaml.lines().collect::<Vec<_>>());
    assert_eq!(top["kind"], "Deployment");
    let labels = yaml_map(&yaml_block(
        &yaml,
        &["spec", "template", "metadata", "labels"],
    ));
    let container = yaml_block(&yaml, &["spec", "template", "spec", "containers"]).join("\n");
    let image = yaml_map(&container.lines().collect::<Vec<_>>())["image"].clone();
    assert!(image.starts_with("oliver006/redis_exporter:v1."), "{image}");
    // The same Redis as the daemon: the Secret's URL.
    let env = yaml_block(&container, &["env"]).join("\n");
    assert!(env.contains("name: REDIS_ADDR"), "{env}");
    let secret = yaml_map(&yaml_block(&env, &["valueFrom", "secretKeyRef"]));
    assert_eq!(secret["name"], "tayori");
    assert_eq!(secret["key"], "TAYORI_REDIS_URL");
    assert!(secret_example().contains_key("TAYORI_REDIS_URL"));
    let port = yaml_map(&yaml_block(&container, &["ports"]));
    assert_eq!(port["containerPort"], "9121");

    let monitor = read("deploy/k8s/redis-exporter-podmonitor.yaml");
    assert_eq!(
        yaml_map(&monitor.lines().collect::<Vec<_>>())["kind"],
        "PodMonitor"
    );
    let selector = yaml_map(&yaml_block(&monitor, &["spec", "selector", "matchLabels"]));
    for (k, v) in &selector {
        assert_eq!(labels.get(k), Some(v), "the PodMonitor selects {k}={v}");
    }
    let endpoint = yaml_map(&yaml_block(&monitor, &["spec", "podMetricsEndpoints"]));
    assert_eq!(endpoint["port"], port["name"]);
}

#[test]
fn the_kustomization_lists_every_manifest_including_the_pdb() {
    let pdb = read("deploy/k8s/pdb.yaml");
    let top = yaml_map(&pdb.lines().collect::<Vec<_>>());
    assert_eq!(top["apiVersion"], "policy/v1");
    assert_eq!(top["kind"], "PodDisruptionBudget");
    let spec = yaml_map(&yaml_block(&pdb, &["spec"]));
    assert!(
        spec.get("maxUnavailable").map(String::as_str) == Some("1")
            || spec.get("minAvailable").map(String::as_str) == Some("1"),
        "{spec:?}"
    );
    let selector = yaml_map(&yaml_block(&pdb, &["spec", "selector", "matchLabels"]));
    assert_eq!(selector["app.kubernetes.io/name"], "tayori");

    let kustomization = read("deploy/k8s/kustomization.yaml");
    let listed: BTreeSet<String> = yaml_block(&kustomization, &["resources"])
        .iter()
        .filter(|l| is_meaningful(l))
        .map(|l| content(l).trim().to_owned())
        .collect();
    let mut present = BTreeSet::new();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "kustomization.yaml" && name != "secret.example.yaml" {
            present.insert(name);
        }
    }
    assert_eq!(listed, present, "kustomization.yaml resources vs files");
    for name in &present {
        let top = yaml_map(
            &read(&format!("deploy/k8s/{name}"))
                .lines()
                .collect::<Vec<_>>(),
        );
        assert!(
            top.contains_key("apiVersion") && top.contains_key("kind"),
            "{name}: {top:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// systemd

#[test]
fn the_systemd_unit_is_hardened_and_stops_in_time() {
    let unit = read("deploy/systemd/tayori.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| is_meaningful(l) && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("tayori.service has no {key}="))
    };
    assert_eq!(get("NoNewPrivileges"), "yes");
    assert_eq!(get("ProtectSystem"), "strict");
    assert_eq!(get("DynamicUser"), "yes");
    assert_eq!(get("Restart"), "on-failure");
    assert_eq!(get("KillSignal"), "SIGTERM");
    assert_eq!(get("EnvironmentFile"), "/etc/tayori/env");
    assert_stop_timeout_covers(
        "TimeoutStopSec",
        tayori::units::duration::parse(get("TimeoutStopSec")).unwrap(),
        shutdown_grace(&read("config/tayori.toml")),
    );
}

#[test]
fn the_systemd_env_example_lists_every_mandatory_variable_of_the_config() {
    let example = read("deploy/systemd/tayori.env.example");
    let listed: BTreeSet<&str> = example
        .lines()
        .filter(|l| is_meaningful(l))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    let refs = env_refs(&read("config/tayori.toml"));
    let missing: Vec<_> = refs
        .iter()
        .filter(|(var, default)| !**default && !listed.contains(var.as_str()))
        .map(|(var, _)| var)
        .collect();
    assert!(
        missing.is_empty(),
        "tayori.env.example lacks {missing:?} (config/tayori.toml needs them)"
    );
    assert!(listed.contains("TAYORI_REDIS_URL"), "{listed:?}");
}

// ---------------------------------------------------------------------------------
// Docker

#[test]
fn the_dockerfile_builds_from_what_cargo_needs_and_runs_as_non_root() {
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count()
            >= 2,
        "multi-stage"
    );
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("USER");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    // Cargo refuses a manifest whose declared targets have no file.
    let manifest = read("Cargo.toml");
    for (section, dir) in [("[[bench]]", "benches"), ("[[example]]", "examples")] {
        if manifest.contains(section) {
            assert!(
                dockerfile.contains(&format!("COPY {dir} ./{dir}")),
                "Cargo.toml declares {section}: the build stage must copy {dir}/"
            );
        }
    }
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        for src in &words[1..words.len() - 1] {
            let path = format!("{}/{src}", env!("CARGO_MANIFEST_DIR"));
            assert!(Path::new(&path).exists(), "Dockerfile copies missing {src}");
        }
    }
}

#[test]
fn the_compose_file_runs_tayori_with_redis_its_exporter_prometheus_and_grafana() {
    let compose = read("deploy/docker/compose.yaml");
    let services = yaml_block(&compose, &["services"]).join("\n");
    for service in ["redis", "redis-exporter", "tayori", "prometheus", "grafana"] {
        yaml_block(&services, &[service]);
    }
    let build = yaml_map(&yaml_block(&services, &["tayori", "build"]));
    assert_eq!(build["context"], "../..");
    assert_eq!(build["dockerfile"], "deploy/docker/Dockerfile");

    // Every file or directory mounted from the repository exists.
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/docker");
    let mut mounts = BTreeMap::new();
    for service in ["redis", "tayori", "prometheus", "grafana"] {
        for line in yaml_block(&services, &[service, "volumes"]) {
            if !is_meaningful(line) {
                continue;
            }
            let spec = unquote(content(line));
            let mut parts = spec.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().unwrap());
            if src.starts_with('.') {
                assert!(
                    Path::new(base).join(src).exists(),
                    "compose.yaml mounts missing {src}"
                );
            }
            mounts.insert(dst.to_owned(), src.to_owned());
        }
    }
    assert_eq!(mounts["/etc/tayori/tayori.toml"], "./tayori.toml");
    assert_eq!(
        mounts["/etc/prometheus/alerts.yml"],
        "../prometheus/alerts.yml"
    );
    assert_eq!(
        mounts["/etc/grafana/dashboards/tayori.json"],
        "../grafana/tayori.json"
    );

    // Prometheus scrapes tayori as job "tayori" (what the alerts expect), Redis
    // through redis_exporter, and loads the alerts.
    let prometheus = read("deploy/docker/prometheus.yml");
    assert!(prometheus.contains("- /etc/prometheus/alerts.yml"));
    let jobs: BTreeMap<String, String> = yaml_items(&yaml_block(&prometheus, &["scrape_configs"]))
        .iter()
        .map(|job| {
            let name = yaml_map(job)["job_name"].clone();
            let targets = yaml_map(&yaml_block(&job.join("\n"), &["static_configs"]));
            (name, targets["targets"].clone())
        })
        .collect();
    assert_eq!(jobs["tayori"], r#"["tayori:8080"]"#);
    assert_eq!(jobs["redis"], r#"["redis-exporter:9121"]"#);
    let exporter = yaml_map(&yaml_block(&services, &["redis-exporter", "environment"]));
    let tayori_env = yaml_map(&yaml_block(&services, &["tayori", "environment"]));
    assert_eq!(exporter["REDIS_ADDR"], tayori_env["TAYORI_REDIS_URL"]);
    // Grafana: the compose Prometheus as default source, the dashboard from its mount.
    let sources = read("deploy/docker/grafana/datasources/prometheus.yaml");
    let source = yaml_map(&yaml_block(&sources, &["datasources"]));
    assert_eq!(source["type"], "prometheus");
    assert_eq!(source["url"], "http://prometheus:9090");
    let providers = read("deploy/docker/grafana/dashboards/tayori.yaml");
    let options = yaml_map(&yaml_block(&providers, &["providers", "options"]));
    assert_eq!(options["path"], "/etc/grafana/dashboards");

    let tayori = yaml_map(&yaml_block(&services, &["tayori"]));
    assert_stop_timeout_covers(
        "compose stop_grace_period",
        tayori::units::duration::parse(&tayori["stop_grace_period"]).unwrap(),
        shutdown_grace(&read("deploy/docker/tayori.toml")),
    );
}

#[test]
fn the_compose_config_passes_check_config_with_the_compose_environment() {
    let compose = read("deploy/docker/compose.yaml");
    let env = yaml_map(&yaml_block(
        &compose,
        &["services", "tayori", "environment"],
    ));
    let toml = read("deploy/docker/tayori.toml");
    let refs = env_refs(&toml);
    let missing: Vec<_> = refs
        .iter()
        .filter(|(var, default)| !**default && !env.contains_key(*var))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/docker/tayori.toml needs {missing:?}, not set in compose.yaml"
    );
    assert_eq!(env["TAYORI_REDIS_URL"], "redis://redis:6379");
    // No provider account: every channel writes files.
    let table: toml::Table = toml::from_str(&toml).unwrap();
    let channels = table["channels"].as_table().unwrap();
    assert_eq!(channels.len(), 4);
    for (name, ch) in channels {
        assert_eq!(ch["transport"].as_str(), Some("file"), "{name}");
    }
    assert_checks("deploy/docker/tayori.toml", &toml, &env);
}
