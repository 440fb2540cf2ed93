//! Personalization: templates from `templates/{name}/` and inline job content,
//! rendered with minijinja.
//!
//! A template directory holds one file per channel part (`subject.txt`,
//! `email.html`, `line.json`, `sms.txt`, …): which files exist is each channel's
//! business (`crate::channel`), which composes its message from them with the
//! primitives here. A `.json` part is a JSON document whose string leaves are
//! templates.
//!
//! In the JSON parts only string values are templates: the structure is fixed
//! and values are inserted as JSON strings, so a variable can never change the
//! shape of a LINE message. Variables are data, never compiled, so a `{{ … }}`
//! inside a customer's name prints as text. Undefined variables are errors (no
//! "Dear ," mails) and a fuel limit stops runaway loops.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value as Ctx};
use serde_json::Value;

use crate::job::{valid_template_name, Job};
use crate::metrics as m;

/// Fuel per render when the config sets none: ample for real templates, finite for loops.
pub const DEFAULT_FUEL: u64 = 200_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// A JSON part whose string leaves are templates: `(JSON pointer, template name)`.
#[derive(Debug, Clone)]
struct JsonPart {
    skeleton: Value,
    leaves: Vec<(String, String)>,
}

/// A template's own settings (`template.toml` beside its parts).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateOptions {
    /// Open pixel and click tracking for this template. Default: true.
    pub tracking: bool,
    /// Transactional mail (receipts, password resets) has no List-Unsubscribe
    /// header; marketing mail (the default) always does.
    pub transactional: bool,
}

impl Default for TemplateOptions {
    fn default() -> Self {
        Self {
            tracking: true,
            transactional: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct TemplateSet {
    options: TemplateOptions,
    /// File name → its compiled form.
    parts: HashMap<String, Part>,
}

#[derive(Debug, Clone)]
enum Part {
    /// A text template, compiled under `{set}/{file}`.
    Text,
    Json(JsonPart),
}

/// What a template sees (`to`, `job`, the job's `vars`, `unsubscribe_url`).
pub type Context = Ctx;

pub struct Renderer {
    env: Environment<'static>,
    sets: HashMap<String, TemplateSet>,
    inline: InlineCache,
}

/// Weight budget of the inline cache, in estimated bytes ([`inline_weight`]):
/// 16 MiB holds the compiled forms of ~1,000 distinct email contents of a few
/// KiB each (subject, text and HTML are three entries), far more than the
/// campaigns running at once, while a daemon fed ever-new content stays bounded.
pub const INLINE_CACHE_BYTES: u64 = 16 << 20;

/// An entry's fixed cost: its environment (a clone of the renderer's, whose
/// filters, tests and globals are shared `Arc`s; only the map of named
/// templates is copied, one pointer pair per template) and the compiled
/// template's bookkeeping.
const INLINE_ENTRY_BYTES: u64 = 1024;

/// The compiled form of inline content, keyed by what changes the compile: the
/// source and its auto-escaping (`inline.html` or `inline.txt`).
///
/// Before it, `Renderer::inline` compiled the content for every job (a campaign
/// of 100,000 jobs sharing one content compiled it 100,000 times; see
/// docs/benchmarks.md, "Inline content").
///
/// Design: minijinja's `Template` borrows its environment and source, so a
/// cache cannot hold one. Each entry instead owns a small `Environment`: a
/// clone of the renderer's (same undefined behaviour, fuel, auto-escape
/// callback, filters and named templates, so rendering is exactly as before)
/// holding one template under the name `inline.html`/`inline.txt` the old
/// code used, so errors read the same. Cloning shares the environment's
/// filters, tests and globals (`Arc`s) and copies only the map of template
/// pointers. An `Arc` makes a hit a pointer copy under the shard's read lock,
/// and the render runs with no cache lock held.
///
/// The crate: `quick_cache` (sync, sharded, weight-bounded, CLOCK-Pro
/// eviction; two small dependencies, `equivalent` and `hashbrown`, both
/// already in the tree) over `lru` (one global `Mutex`: every worker's render
/// would take it, and it bounds entries only, not bytes) and `moka` (a larger
/// tree and background housekeeping for what is a plain bounded map here).
/// The key is the source itself, hashed by the cache: equal hashes of
/// different contents cannot share an entry, as they could with a bare hash.
struct InlineCache {
    entries: quick_cache::sync::Cache<InlineKey, Arc<Environment<'static>>, InlineWeighter>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// `(auto-escape is HTML, source)`.
type InlineKey = (bool, String);

/// A borrowed [`InlineKey`], to look up without copying the source: it hashes
/// as the tuple does (the bool, then the string).
#[derive(Hash)]
struct InlineKeyRef<'a>(bool, &'a str);

impl quick_cache::Equivalent<InlineKey> for InlineKeyRef<'_> {
    fn equivalent(&self, key: &InlineKey) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

#[derive(Clone)]
struct InlineWeighter;

impl quick_cache::Weighter<InlineKey, Arc<Environment<'static>>> for InlineWeighter {
    fn weight(&self, key: &InlineKey, _: &Arc<Environment<'static>>) -> u64 {
        inline_weight(&key.1)
    }
}

/// An entry's estimated bytes: the source twice (the key's copy and the
/// template's own, which also bounds its compiled instructions: one per tag or
/// run of text) plus the fixed [`INLINE_ENTRY_BYTES`].
fn inline_weight(source: &str) -> u64 {
    INLINE_ENTRY_BYTES + 2 * source.len() as u64
}

impl InlineCache {
    fn new(bytes: u64) -> InlineCache {
        let items = (bytes / (INLINE_ENTRY_BYTES + 4096)).max(1) as usize;
        InlineCache {
            entries: quick_cache::sync::Cache::with_weighter(items, bytes, InlineWeighter),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }
}

impl Renderer {
    /// Loads every template directory under `dir` (a missing `dir` means no
    /// named templates), reading the part files the channels name in `files`.
    pub fn load(dir: &Path, fuel: Option<u64>, files: &[&str]) -> Result<Renderer, RenderError> {
        let mut renderer = Renderer::empty(fuel);
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(renderer),
            Err(e) => return Err(RenderError(format!("{}: {e}", dir.display()))),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if !path.is_dir() || !valid_template_name(&name) {
                continue;
            }
            let read = |file: &str| -> Result<Option<String>, RenderError> {
                match std::fs::read_to_string(path.join(file)) {
                    Ok(s) => Ok(Some(s)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(RenderError(format!("{}: {e}", path.join(file).display()))),
                }
            };
            let mut sources = Vec::new();
            for file in files {
                if let Some(source) = read(file)? {
                    sources.push((*file, source));
                }
            }
            renderer
                .add_set(&name, sources)
                .map_err(|e| RenderError(format!("{}: {}", path.display(), e.0)))?;
            if let Some(text) = read("template.toml")? {
                let options = toml::from_str(&text).map_err(|e| {
                    RenderError(format!("{}: {e}", path.join("template.toml").display()))
                })?;
                if let Some(set) = renderer.sets.get_mut(&name) {
                    set.options = options;
                }
            }
        }
        Ok(renderer)
    }

    pub fn empty(fuel: Option<u64>) -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(fuel.unwrap_or(DEFAULT_FUEL)));
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        Renderer {
            env,
            sets: HashMap::new(),
            inline: InlineCache::new(INLINE_CACHE_BYTES),
        }
    }

    /// Adds a template set from `(file name, source)` pairs: a `.json` file is a
    /// JSON part, any other a text template.
    pub fn add_set(&mut self, name: &str, files: Vec<(&str, String)>) -> Result<(), RenderError> {
        let mut set = TemplateSet::default();
        for (file, source) in files {
            let tname = format!("{name}/{file}");
            let part = if file.ends_with(".json") {
                Part::Json(self.add_json_part(&tname, &source)?)
            } else {
                self.env
                    .add_template_owned(tname, source)
                    .map_err(|e| RenderError(format!("{file}: {e:#}")))?;
                Part::Text
            };
            set.parts.insert(file.to_owned(), part);
        }
        self.sets.insert(name.to_owned(), set);
        Ok(())
    }

    fn add_json_part(&mut self, tname: &str, source: &str) -> Result<JsonPart, RenderError> {
        let skeleton: Value = serde_json::from_str(source)
            .map_err(|e| RenderError(format!("{tname}: invalid JSON: {e}")))?;
        let mut leaves = Vec::new();
        collect_leaves(&skeleton, &mut String::new(), &mut leaves);
        let mut named = Vec::with_capacity(leaves.len());
        for (pointer, text) in leaves {
            let leaf = format!("{tname}:{pointer}");
            self.env
                .add_template_owned(leaf.clone(), text)
                .map_err(|e| RenderError(format!("{tname} at {pointer}: {e:#}")))?;
            named.push((pointer, leaf));
        }
        Ok(JsonPart {
            skeleton,
            leaves: named,
        })
    }

    pub fn template_names(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    /// Whether template `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.sets.contains_key(name)
    }

    /// Whether template `name` has the part `file`.
    pub fn has_part(&self, name: &str, file: &str) -> bool {
        self.sets
            .get(name)
            .is_some_and(|s| s.parts.contains_key(file))
    }

    /// The source of a text part, as written (for checks such as email's
    /// compliance warnings).
    pub fn source(&self, name: &str, file: &str) -> Option<String> {
        if !matches!(self.sets.get(name)?.parts.get(file)?, Part::Text) {
            return None;
        }
        let t = self.env.get_template(&format!("{name}/{file}")).ok()?;
        Some(t.source().to_owned())
    }

    /// The settings of template `name` (defaults when it has none).
    pub fn template_options(&self, name: &str) -> TemplateOptions {
        self.sets
            .get(name)
            .map(|s| s.options.clone())
            .unwrap_or_default()
    }

    /// The settings of the job's template (defaults for inline content).
    pub fn options(&self, job: &Job) -> TemplateOptions {
        job.template
            .as_deref()
            .map(|n| self.template_options(n))
            .unwrap_or_default()
    }

    /// A text part of template `name` rendered; `None` when the template has no such part.
    pub fn text_part(
        &self,
        name: &str,
        file: &str,
        ctx: &Context,
    ) -> Result<Option<String>, RenderError> {
        match self.sets.get(name).and_then(|s| s.parts.get(file)) {
            Some(Part::Text) => self.named(&format!("{name}/{file}"), ctx).map(Some),
            _ => Ok(None),
        }
    }

    /// A JSON part of template `name` with its string leaves rendered; `None`
    /// when the template has no such part.
    pub fn json_part(
        &self,
        name: &str,
        file: &str,
        ctx: &Context,
    ) -> Result<Option<Value>, RenderError> {
        let Some(Part::Json(part)) = self.sets.get(name).and_then(|s| s.parts.get(file)) else {
            return Ok(None);
        };
        let mut out = part.skeleton.clone();
        for (pointer, tname) in &part.leaves {
            let text = self.named(tname, ctx)?;
            if let Some(slot) = out.pointer_mut(pointer) {
                *slot = Value::String(text);
            }
        }
        Ok(Some(out))
    }

    fn named(&self, tname: &str, ctx: &Ctx) -> Result<String, RenderError> {
        let t = self
            .env
            .get_template(tname)
            .map_err(|e| RenderError(format!("{tname}: {e}")))?;
        t.render(ctx)
            .map_err(|e| RenderError(describe_render(tname, &t, ctx, &e)))
    }

    /// Inline job content rendered; `what` names it in errors (`content.sms.text`)
    /// and, ending in `.html`, turns on HTML escaping of variables.
    pub fn inline(&self, what: &str, source: &str, ctx: &Context) -> Result<String, RenderError> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_owned());
        }
        // The name picks auto-escaping: HTML parts escape variables.
        let html = what.ends_with(".html");
        let name = if html { "inline.html" } else { "inline.txt" };
        let env = self.compiled_inline(html, name, source, what)?;
        let t = env
            .get_template(name)
            .map_err(|e| RenderError(describe(what, &e)))?;
        t.render(ctx)
            .map_err(|e| RenderError(describe_render(what, &t, ctx, &e)))
    }

    /// The environment holding `source` compiled as `name`, from the cache or
    /// compiled now (content that does not compile is not cached: its job fails).
    fn compiled_inline(
        &self,
        html: bool,
        name: &'static str,
        source: &str,
        what: &str,
    ) -> Result<Arc<Environment<'static>>, RenderError> {
        let cache = &self.inline;
        if let Some(env) = cache.entries.get(&InlineKeyRef(html, source)) {
            cache.hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::INLINE_CACHE, "result" => "hit").increment(1);
            return Ok(env);
        }
        cache.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::INLINE_CACHE, "result" => "miss").increment(1);
        let mut env = self.env.clone();
        env.add_template_owned(name, source.to_owned())
            .map_err(|e| RenderError(describe(what, &e)))?;
        let env = Arc::new(env);
        // Two workers missing the same content at once both compile it; the
        // second insert replaces the first. Cheaper than making one wait.
        cache
            .entries
            .insert((html, source.to_owned()), Arc::clone(&env));
        Ok(env)
    }

    /// Inline JSON content with every string in it rendered in place.
    pub fn inline_json(
        &self,
        what: &str,
        value: &Value,
        ctx: &Context,
    ) -> Result<Value, RenderError> {
        Ok(match value {
            Value::String(s) => Value::String(self.inline(what, s, ctx)?),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|v| self.inline_json(what, v, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| Ok((k.clone(), self.inline_json(what, v, ctx)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
            other => other.clone(),
        })
    }
}

impl Renderer {
    /// Every variable the parts `files` of template `name` read that `ctx` does
    /// not define, sorted and without repeats: what a job must add to its
    /// `vars` (a render stops at the first; a check before a campaign names them
    /// all). A variable read only under `{% if x is defined %}` is listed too.
    pub fn missing_in_template(&self, name: &str, files: &[&str], ctx: &Ctx) -> Vec<String> {
        let mut missing = std::collections::BTreeSet::new();
        let Some(set) = self.sets.get(name) else {
            return Vec::new();
        };
        for file in files {
            let names: Vec<String> = match set.parts.get(*file) {
                Some(Part::Text) => vec![format!("{name}/{file}")],
                Some(Part::Json(part)) => part.leaves.iter().map(|(_, t)| t.clone()).collect(),
                None => Vec::new(),
            };
            for tname in names {
                if let Ok(t) = self.env.get_template(&tname) {
                    missing.extend(self.undefined_in(&t, ctx));
                }
            }
        }
        missing.into_iter().collect()
    }

    /// [`Renderer::missing_in_template`] for inline content: every string in `value`.
    pub fn missing_in_inline(&self, value: &Value, ctx: &Ctx) -> Vec<String> {
        let mut missing = std::collections::BTreeSet::new();
        let mut sources = Vec::new();
        collect_leaves(value, &mut String::new(), &mut sources);
        // Through the cache: the checks before enqueueing (check-jobs, POST
        // /v1/jobs) see the same content for every job of a campaign too.
        for (_, source) in sources {
            let Ok(env) = self.compiled_inline(false, "inline.txt", &source, "") else {
                continue;
            };
            if let Ok(t) = env.get_template("inline.txt") {
                missing.extend(self.undefined_in(&t, ctx));
            }
        }
        missing.into_iter().collect()
    }

    /// The top-level names `t` reads that neither `ctx` nor the environment's
    /// globals (`range`, `dict`, …) define.
    fn undefined_in(&self, t: &minijinja::Template<'_, '_>, ctx: &Ctx) -> Vec<String> {
        t.undeclared_variables(false)
            .into_iter()
            .filter(|name| ctx.get_attr(name).map(|v| v.is_undefined()).unwrap_or(true))
            .filter(|name| !self.env.globals().any(|(g, _)| g == name))
            .collect()
    }
}

/// What a template sees: the job's `vars`, plus `to` and `job` (id, campaign, customer_id, tags).
/// `job` in a template: borrowed, not built as a JSON value first.
#[derive(serde::Serialize)]
struct JobVars<'a> {
    id: &'a str,
    campaign: Option<&'a str>,
    customer_id: Option<&'a str>,
    tags: &'a [String],
}

pub fn context(job: &Job, unsubscribe_url: Option<&str>) -> Context {
    let mut map: BTreeMap<&str, Ctx> = BTreeMap::new();
    map.insert("to", Ctx::from(Serde(&job.to)));
    map.insert(
        "job",
        Ctx::from(Serde(JobVars {
            id: &job.id,
            campaign: job.campaign.as_deref(),
            customer_id: job.customer_id.as_deref(),
            tags: &job.tags,
        })),
    );
    for (k, v) in &job.vars {
        map.insert(k.as_str(), Ctx::from(Serde(v)));
    }
    // After the job's vars: a job cannot point the unsubscribe link elsewhere.
    // Safe: our own URL, and HTML escaping would turn its slashes into &#x2f;.
    map.insert(
        "unsubscribe_url",
        Ctx::from_safe_string(unsubscribe_url.unwrap_or("").to_owned()),
    );
    Ctx::from(map)
}

fn collect_leaves(value: &Value, pointer: &mut String, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            out.push((pointer.clone(), s.clone()))
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                collect_leaves(v, pointer, out);
                pointer.truncate(len);
            }
        }
        Value::Object(o) => {
            for (k, v) in o {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                collect_leaves(v, pointer, out);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

fn describe(what: &str, e: &minijinja::Error) -> String {
    format!("{what}: {e}")
}

/// Like [`describe`], but names the missing variables when a variable is undefined:
/// minijinja's own message does not say which.
fn describe_render(
    what: &str,
    t: &minijinja::Template<'_, '_>,
    ctx: &Ctx,
    e: &minijinja::Error,
) -> String {
    if e.kind() != minijinja::ErrorKind::UndefinedError {
        return describe(what, e);
    }
    let mut missing: Vec<String> = t
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| ctx.get_attr(name).map(|v| v.is_undefined()).unwrap_or(true))
        .collect();
    if missing.is_empty() {
        return describe(what, e);
    }
    missing.sort();
    format!(
        "{}; missing variable: {}",
        describe(what, e),
        missing.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(name: &str) -> Ctx {
        let mut map = BTreeMap::new();
        map.insert("name", Ctx::from(name));
        Ctx::from(map)
    }

    fn counts(r: &Renderer) -> (u64, u64) {
        (
            r.inline.hits.load(Ordering::Relaxed),
            r.inline.misses.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn render_inline_same_content_compiles_once() {
        let r = Renderer::empty(None);
        let a = r.inline("content.sms.text", "Hi {{ name }}", &ctx("Aoi"));
        let b = r.inline("content.sms.text", "Hi {{ name }}", &ctx("Ren"));
        assert_eq!(a, Ok("Hi Aoi".to_owned()));
        assert_eq!(b, Ok("Hi Ren".to_owned()));
        assert_eq!(counts(&r), (1, 1));
        assert_eq!(r.inline.entries.len(), 1);
    }

    #[test]
    fn render_inline_different_content_misses() {
        let r = Renderer::empty(None);
        r.inline("content.sms.text", "Hi {{ name }}", &ctx("Aoi"))
            .unwrap();
        r.inline("content.sms.text", "Bye {{ name }}", &ctx("Aoi"))
            .unwrap();
        // Content without tags is returned as is, never compiled nor cached.
        r.inline("content.sms.text", "Plain", &ctx("Aoi")).unwrap();
        assert_eq!(counts(&r), (0, 2));
        assert_eq!(r.inline.entries.len(), 2);
    }

    #[test]
    fn render_inline_cache_stays_within_its_bound() {
        let mut r = Renderer::empty(None);
        let bytes = 64 * 1024;
        r.inline = InlineCache::new(bytes);
        for i in 0..1_000 {
            let source = format!("{{{{ name }}}} #{i} {}", "x".repeat(i % 200));
            let out = r.inline("content.sms.text", &source, &ctx("Aoi")).unwrap();
            assert!(out.starts_with(&format!("Aoi #{i} ")), "{out}");
            assert!(
                r.inline.entries.weight() <= bytes,
                "weight {} over {bytes} after {i}",
                r.inline.entries.weight()
            );
        }
        let len = r.inline.entries.len() as u64;
        assert!(len > 0 && len < 1_000, "{len} entries");
        assert_eq!(counts(&r), (0, 1_000));
    }

    #[test]
    fn render_inline_html_and_text_are_different_entries() {
        let r = Renderer::empty(None);
        let source = "<p>{{ name }}</p>";
        let html = r.inline("content.email.html", source, &ctx("<b>&"));
        let text = r.inline("content.email.text", source, &ctx("<b>&"));
        assert_eq!(html, Ok("<p>&lt;b&gt;&amp;</p>".to_owned()));
        assert_eq!(text, Ok("<p><b>&</p>".to_owned()));
        assert_eq!(counts(&r), (0, 2));
        // Each hit keeps its own escaping.
        let html = r.inline("content.email.html", source, &ctx("<i>"));
        let text = r.inline("content.email.text", source, &ctx("<i>"));
        assert_eq!(html, Ok("<p>&lt;i&gt;</p>".to_owned()));
        assert_eq!(text, Ok("<p><i></p>".to_owned()));
        assert_eq!(counts(&r), (2, 2));
    }

    #[test]
    fn render_inline_errors_name_the_field_from_cache_too() {
        let r = Renderer::empty(None);
        // A syntax error: not cached, named every time.
        for _ in 0..2 {
            let e = r
                .inline("content.sms.text", "Hi {{ name", &ctx("Aoi"))
                .unwrap_err();
            assert!(e.0.starts_with("content.sms.text: "), "{e}");
        }
        assert_eq!(counts(&r), (0, 2));
        assert_eq!(r.inline.entries.len(), 0);
        // An undefined variable, on a miss and then on a hit.
        for _ in 0..2 {
            let e = r
                .inline("content.line.text", "Hi {{ nickname }}", &ctx("Aoi"))
                .unwrap_err();
            assert!(e.0.starts_with("content.line.text: "), "{e}");
            assert!(e.0.ends_with("missing variable: nickname"), "{e}");
        }
        assert_eq!(counts(&r), (1, 3));
    }

    #[test]
    fn render_inline_fuel_limit_holds_on_a_hit() {
        let r = Renderer::empty(Some(100));
        let source = "{% for i in range(100000) %}{{ i }}{% endfor %}";
        for _ in 0..2 {
            let e = r
                .inline("content.sms.text", source, &ctx("Aoi"))
                .unwrap_err();
            assert!(e.0.starts_with("content.sms.text: "), "{e}");
        }
        assert_eq!(counts(&r), (1, 1));
    }
}
