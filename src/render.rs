//! Personalization: templates from `templates/{name}/` and inline job content,
//! rendered with minijinja.
//!
//! A template directory holds one file per channel part:
//!
//! | file           | part                                   |
//! |----------------|----------------------------------------|
//! | `subject.txt`  | email subject                          |
//! | `email.html`   | email HTML part (auto-escaped)         |
//! | `email.txt`    | email text part                        |
//! | `line.json`    | LINE `messages` array                  |
//! | `sms.txt`      | SMS text                               |
//! | `dm.json`      | direct-mail fields (object of strings) |
//!
//! In the JSON parts only string values are templates: the structure is fixed
//! and values are inserted as JSON strings, so a variable can never change the
//! shape of a LINE message. Variables are data, never compiled, so a `{{ … }}`
//! inside a customer's name prints as text. Undefined variables are errors (no
//! "Dear ," mails) and a fuel limit stops runaway loops.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value as Ctx};
use serde_json::Value;
use tayori_channels::{ChannelKind, Content};

use crate::job::{valid_template_name, Job};

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
    subject: bool,
    html: bool,
    text: bool,
    sms: bool,
    line: Option<JsonPart>,
    dm: Option<JsonPart>,
}

pub struct Renderer {
    env: Environment<'static>,
    sets: HashMap<String, TemplateSet>,
}

impl Renderer {
    /// Loads every template directory under `dir` (a missing `dir` means no named templates).
    pub fn load(dir: &Path, fuel: Option<u64>) -> Result<Renderer, RenderError> {
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
            let files = [
                ("subject.txt", read("subject.txt")?),
                ("email.html", read("email.html")?),
                ("email.txt", read("email.txt")?),
                ("sms.txt", read("sms.txt")?),
                ("line.json", read("line.json")?),
                ("dm.json", read("dm.json")?),
            ];
            renderer
                .add_set(&name, files)
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
        }
    }

    /// Adds a template set from `(file name, source)` pairs.
    pub fn add_set(
        &mut self,
        name: &str,
        files: [(&str, Option<String>); 6],
    ) -> Result<(), RenderError> {
        let mut set = TemplateSet::default();
        for (file, source) in files {
            let Some(source) = source else { continue };
            let tname = format!("{name}/{file}");
            match file {
                "line.json" | "dm.json" => {
                    let part = self.add_json_part(&tname, &source)?;
                    if file == "line.json" {
                        set.line = Some(part);
                    } else {
                        set.dm = Some(part);
                    }
                }
                _ => {
                    self.env
                        .add_template_owned(tname, source)
                        .map_err(|e| RenderError(format!("{file}: {e:#}")))?;
                    match file {
                        "subject.txt" => set.subject = true,
                        "email.html" => set.html = true,
                        "email.txt" => set.text = true,
                        _ => set.sms = true,
                    }
                }
            }
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

    /// Whether template `name` has what channel `kind` needs.
    pub fn supports(&self, name: &str, kind: ChannelKind) -> Result<(), RenderError> {
        let set = self
            .sets
            .get(name)
            .ok_or_else(|| RenderError(format!("template {name:?} does not exist")))?;
        let ok = match kind {
            ChannelKind::Email => set.subject && (set.html || set.text),
            ChannelKind::Line => set.line.is_some(),
            ChannelKind::Sms => set.sms,
            ChannelKind::Dm => set.dm.is_some(),
        };
        let need = match kind {
            ChannelKind::Email => "subject.txt and email.html or email.txt",
            ChannelKind::Line => "line.json",
            ChannelKind::Sms => "sms.txt",
            ChannelKind::Dm => "dm.json",
        };
        if ok {
            Ok(())
        } else {
            Err(RenderError(format!(
                "template {name:?} has no {kind} part (needs {need})"
            )))
        }
    }

    /// What a marketing email template lacks under Japan's Act on Specified Electronic
    /// Mail (and Gmail/Yahoo bulk-sender rules): a visible unsubscribe link in every
    /// body part, and the sender's identity. `sender` is the From display name.
    pub fn compliance_warnings(&self, name: &str, sender: Option<&str>) -> Vec<String> {
        let Some(set) = self.sets.get(name) else {
            return Vec::new();
        };
        if set.options.transactional || !(set.html || set.text) {
            return Vec::new();
        }
        let mut warnings = Vec::new();
        let parts = [("email.html", set.html), ("email.txt", set.text)];
        for (file, present) in parts {
            let Some(source) = present
                .then(|| self.env.get_template(&format!("{name}/{file}")).ok())
                .flatten()
                .map(|t| t.source().to_owned())
            else {
                continue;
            };
            if !source.contains("unsubscribe_url") {
                warnings.push(format!(
                    "{name}/{file}: no visible unsubscribe link: add {{{{ unsubscribe_url }}}} \
                     (or set transactional = true in {name}/template.toml)"
                ));
            }
            if !sender.is_some_and(|s| source.contains(s))
                && !source.contains('〒')
                && !source.contains("住所")
            {
                warnings.push(format!(
                    "{name}/{file}: no sender identity found: name the sender ({}) and its address \
                     in the footer",
                    sender.unwrap_or("the From display name")
                ));
            }
        }
        warnings
    }

    /// The settings of the job's template (defaults for inline content).
    pub fn options(&self, job: &Job) -> TemplateOptions {
        job.template
            .as_deref()
            .and_then(|n| self.sets.get(n))
            .map(|s| s.options.clone())
            .unwrap_or_default()
    }

    /// Renders the job's content for one channel. `unsubscribe_url` is offered to
    /// templates as `{{ unsubscribe_url }}` (empty when there is none).
    pub fn render(
        &self,
        job: &Job,
        kind: ChannelKind,
        unsubscribe_url: Option<&str>,
    ) -> Result<Content, RenderError> {
        let ctx = context(job, unsubscribe_url);
        if let Some(name) = &job.template {
            return self.render_named(name, kind, &ctx);
        }
        let content = job
            .content
            .as_ref()
            .ok_or_else(|| RenderError("job has neither template nor content".into()))?;
        let missing = || RenderError(format!("content has no {kind} part"));
        match kind {
            ChannelKind::Email => {
                let e = content.email.as_ref().ok_or_else(missing)?;
                if e.html.is_none() && e.text.is_none() {
                    return Err(RenderError("content.email needs html or text".into()));
                }
                Ok(Content::Email {
                    subject: self
                        .inline("content.email.subject", &e.subject, &ctx)?
                        .trim()
                        .to_owned(),
                    html: e
                        .html
                        .as_deref()
                        .map(|s| self.inline("content.email.html", s, &ctx))
                        .transpose()?,
                    text: e
                        .text
                        .as_deref()
                        .map(|s| self.inline("content.email.text", s, &ctx))
                        .transpose()?,
                    extras: Default::default(),
                })
            }
            ChannelKind::Line => {
                let l = content.line.as_ref().ok_or_else(missing)?;
                let rendered = self.inline_json(
                    "content.line.messages",
                    &Value::Array(l.messages.clone()),
                    &ctx,
                )?;
                Ok(Content::Line {
                    messages: as_array(rendered),
                })
            }
            ChannelKind::Sms => {
                let s = content.sms.as_ref().ok_or_else(missing)?;
                Ok(Content::Sms {
                    text: self
                        .inline("content.sms.text", &s.text, &ctx)?
                        .trim_end()
                        .to_owned(),
                })
            }
            ChannelKind::Dm => {
                let d = content.dm.as_ref().ok_or_else(missing)?;
                let mut fields = BTreeMap::new();
                for (k, v) in &d.fields {
                    fields.insert(
                        k.clone(),
                        self.inline(&format!("content.dm.fields.{k}"), v, &ctx)?,
                    );
                }
                Ok(Content::Dm { fields })
            }
        }
    }

    fn render_named(
        &self,
        name: &str,
        kind: ChannelKind,
        ctx: &Ctx,
    ) -> Result<Content, RenderError> {
        self.supports(name, kind)?;
        let set = &self.sets[name];
        let part = |file: &str| self.named(&format!("{name}/{file}"), ctx);
        match kind {
            ChannelKind::Email => Ok(Content::Email {
                subject: part("subject.txt")?.trim().to_owned(),
                html: set.html.then(|| part("email.html")).transpose()?,
                text: set.text.then(|| part("email.txt")).transpose()?,
                extras: Default::default(),
            }),
            ChannelKind::Sms => Ok(Content::Sms {
                text: part("sms.txt")?.trim_end().to_owned(),
            }),
            ChannelKind::Line => {
                let json = self.render_json(set.line.as_ref(), ctx)?;
                Ok(Content::Line {
                    messages: as_array(json),
                })
            }
            ChannelKind::Dm => {
                let json = self.render_json(set.dm.as_ref(), ctx)?;
                let Value::Object(map) = json else {
                    return Err(RenderError(format!(
                        "{name}/dm.json must be an object of fields"
                    )));
                };
                let fields = map
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            v.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect();
                Ok(Content::Dm { fields })
            }
        }
    }

    fn named(&self, tname: &str, ctx: &Ctx) -> Result<String, RenderError> {
        let t = self
            .env
            .get_template(tname)
            .map_err(|e| RenderError(format!("{tname}: {e}")))?;
        t.render(ctx)
            .map_err(|e| RenderError(describe_render(tname, &t, ctx, &e)))
    }

    fn render_json(&self, part: Option<&JsonPart>, ctx: &Ctx) -> Result<Value, RenderError> {
        let part = part.ok_or_else(|| RenderError("missing JSON part".into()))?;
        let mut out = part.skeleton.clone();
        for (pointer, tname) in &part.leaves {
            let text = self.named(tname, ctx)?;
            if let Some(slot) = out.pointer_mut(pointer) {
                *slot = Value::String(text);
            }
        }
        Ok(out)
    }

    fn inline(&self, what: &str, source: &str, ctx: &Ctx) -> Result<String, RenderError> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_owned());
        }
        // The name picks auto-escaping: HTML parts escape variables.
        let name = if what.ends_with(".html") {
            "inline.html"
        } else {
            "inline.txt"
        };
        let t = self
            .env
            .template_from_named_str(name, source)
            .map_err(|e| RenderError(describe(what, &e)))?;
        t.render(ctx)
            .map_err(|e| RenderError(describe_render(what, &t, ctx, &e)))
    }

    fn inline_json(&self, what: &str, value: &Value, ctx: &Ctx) -> Result<Value, RenderError> {
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

/// What a template sees: the job's `vars`, plus `to` and `job` (id, campaign, customer_id, tags).
fn context(job: &Job, unsubscribe_url: Option<&str>) -> Ctx {
    let mut map: BTreeMap<&str, Ctx> = BTreeMap::new();
    map.insert("to", Ctx::from(Serde(&job.to)));
    map.insert(
        "job",
        Ctx::from(Serde(serde_json::json!({
            "id": job.id, "campaign": job.campaign, "customer_id": job.customer_id, "tags": job.tags,
        }))),
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

fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => vec![other],
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

    fn job(json: &str) -> Job {
        Job::parse(json, 1 << 20).unwrap()
    }

    fn renderer() -> Renderer {
        let mut r = Renderer::empty(Some(10_000));
        r.add_set(
            "sale",
            [
                (
                    "subject.txt",
                    Some("{{ to.name }}様 {{ points }}pt\n".into()),
                ),
                ("email.html", Some("<p>{{ to.name }}</p>".into())),
                ("email.txt", None),
                ("sms.txt", Some("{{ points }}pt".into())),
                (
                    "line.json",
                    Some(r#"[{"type":"text","text":"{{ to.name }}: {{ points }}"}]"#.into()),
                ),
                ("dm.json", None),
            ],
        )
        .unwrap();
        r
    }

    #[test]
    fn named_templates_render_per_channel_and_escape_html() {
        let j = job(
            r#"{"id":"1","channel":"email","to":{"name":"<b>山田</b>","email":"a@x.jp"},"template":"sale","vars":{"points":1200}}"#,
        );
        let Content::Email { subject, html, .. } =
            renderer().render(&j, ChannelKind::Email, None).unwrap()
        else {
            panic!()
        };
        assert_eq!(subject, "<b>山田</b>様 1200pt");
        assert_eq!(html.unwrap(), "<p>&lt;b&gt;山田&lt;&#x2f;b&gt;</p>");
        let Content::Line { messages } = renderer().render(&j, ChannelKind::Line, None).unwrap()
        else {
            panic!()
        };
        assert_eq!(messages[0]["text"], "<b>山田</b>: 1200");
    }

    #[test]
    fn variables_are_data_not_templates() {
        let j =
            job(r#"{"id":"1","channel":"sms","template":"sale","vars":{"points":"{{ 7*7 }}"}}"#);
        let Content::Sms { text } = renderer().render(&j, ChannelKind::Sms, None).unwrap() else {
            panic!()
        };
        assert_eq!(text, "{{ 7*7 }}pt");
    }

    #[test]
    fn missing_variables_and_parts_are_errors() {
        let j = job(r#"{"id":"1","channel":"sms","template":"sale"}"#);
        let e = renderer().render(&j, ChannelKind::Sms, None).unwrap_err();
        assert!(
            e.0.contains("undefined") && e.0.contains("missing variable: points"),
            "{e}"
        );
        let e = renderer()
            .render(
                &job(r#"{"id":"1","channel":"dm","template":"sale","vars":{"points":1}}"#),
                ChannelKind::Dm,
                None,
            )
            .unwrap_err();
        assert!(e.0.contains("no dm part"), "{e}");
        let e = renderer()
            .render(
                &job(r#"{"id":"1","channel":"dm","template":"nope"}"#),
                ChannelKind::Dm,
                None,
            )
            .unwrap_err();
        assert!(e.0.contains("does not exist"), "{e}");
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let j = job(
            r#"{"id":"1","channel":"sms","content":{"sms":{"text":"{% for i in range(100000) %}{% for k in range(100000) %}x{% endfor %}{% endfor %}"}}}"#,
        );
        let e = renderer().render(&j, ChannelKind::Sms, None).unwrap_err();
        assert!(e.0.contains("fuel"), "{e}");
    }

    #[test]
    fn inline_json_leaves_are_rendered_in_place() {
        let j = job(
            r#"{"id":"1","channel":"line","to":{"name":"\"quoted\""},"content":{"line":{"messages":[{"type":"text","text":"hi {{ to.name }}"}]}}}"#,
        );
        let Content::Line { messages } = renderer().render(&j, ChannelKind::Line, None).unwrap()
        else {
            panic!()
        };
        assert_eq!(messages[0]["text"], "hi \"quoted\"");
        assert_eq!(messages[0]["type"], "text");
    }
}
