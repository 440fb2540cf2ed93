//! The daemon's modules depend on each other in one direction only: the graph
//! of `crate::` references between the top-level modules of `src/` (and between
//! the modules one level down) has no cycle. A cycle here means two modules that
//! can no longer be read, or changed, one without the other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file is, cut to `depth` segments (`channel::email`); `None` for
/// the crate roots.
fn module_of(path: &Path, depth: usize) -> Option<Vec<String>> {
    let rel = path.strip_prefix(SRC).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        return None;
    }
    parts.truncate(depth);
    Some(parts)
}

/// The code of a file without its unit tests and comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` path in the code, and the names in `crate::{a, b::c}`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.push(path_of(item.trim()));
            }
            continue;
        }
        out.push(path_of(rest));
    }
    out
}

fn path_of(text: &str) -> Vec<String> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[..end]
        .split("::")
        .filter(|s| !s.is_empty() && s.chars().next().is_some_and(|c| c.is_lowercase()))
        .map(str::to_owned)
        .collect()
}

/// The graph at `depth`: module → the modules it names.
fn graph(depth: usize) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().filter_map(|f| module_of(f, depth)).collect();
    let mut g: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(file, depth) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a source file");
        for mut path in crate_paths(&code(&text)) {
            path.truncate(depth);
            // Only modules (a path to an item stops at its module).
            while !path.is_empty() && !modules.contains(&path) {
                path.pop();
            }
            // A module may use its parent and its children: that is its own folder.
            let related = path.starts_with(&from) || from.starts_with(&path);
            if !path.is_empty() && !related {
                g.entry(from.clone()).or_default().insert(path);
            }
        }
        g.entry(from).or_default();
    }
    g
}

/// A cycle in `g`, if it has one.
fn find_cycle(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in g.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|n| n.join("::")).collect();
                    cycle.push(next.join("::"));
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in g.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(node, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_top_level_modules_have_no_cycle() {
    let g = graph(1);
    assert!(g.len() > 10, "the scan found only {} modules", g.len());
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "modules of src/ import each other in a cycle: {}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_modules_one_level_down_have_no_cycle() {
    let g = graph(2);
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "modules of src/ import each other in a cycle: {}",
            cycle.join(" → ")
        );
    }
}

/// The check itself finds a cycle when there is one.
#[test]
fn a_cycle_is_found() {
    let m = |s: &str| vec![s.to_owned()];
    let mut g = BTreeMap::new();
    g.insert(m("a"), BTreeSet::from([m("b")]));
    g.insert(m("b"), BTreeSet::from([m("c")]));
    g.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4));
    g.insert(m("c"), BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
}

/// Outside a channel's folder and the registry, nothing names a channel: no
/// channel's id, and no path into a channel's folder but the registry's.
#[test]
fn only_channel_folders_know_their_channel() {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let folders = ["email", "line", "sms", "dm", "webhook"];
    let mut found = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(SRC)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let in_channel = rel.starts_with("channel/");
        let text = code(&std::fs::read_to_string(file).unwrap());
        for name in folders {
            let own = rel.starts_with(&format!("channel/{name}/"));
            for pattern in [format!("channel::{name}::"), format!("{name}::ID")] {
                if !own && text.contains(&pattern) && !(in_channel && rel == "channel/registry.rs")
                {
                    // A channel's own CLI command may reach into its folder.
                    if rel == "cli/bounce.rs" && name == "email" {
                        continue;
                    }
                    found.push(format!("{rel}: {pattern}"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "channel-specific code outside its folder: {found:#?}"
    );
}
