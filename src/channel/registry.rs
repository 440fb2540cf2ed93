//! Looking channels up: by id, by name, every one of them (the list itself is
//! [`PLUGINS`], declared with the channels' folders in `channel/mod.rs`); and
//! what needs every channel to check a job or publish its schema.

use crate::channel_id::ChannelId;
use crate::job::{push_key, Job, JobError};

use super::ChannelPlugin;

pub use super::PLUGINS;

/// The plugin of a channel id, if this build has it.
pub fn plugin(id: ChannelId) -> Option<&'static dyn ChannelPlugin> {
    PLUGINS.iter().copied().find(|p| p.id() == id)
}

/// Every channel id, in registry order.
pub fn ids() -> impl Iterator<Item = ChannelId> {
    PLUGINS.iter().map(|p| p.id())
}

/// Each channel with the quiet hours it has when the config sets none (what
/// [`crate::policy::Policy::from_config`] checks a policy against).
pub fn quiet_hours_defaults() -> Vec<(ChannelId, Option<&'static str>)> {
    PLUGINS
        .iter()
        .map(|p| (p.id(), p.default_quiet_hours()))
        .collect()
}

/// Every template part file a channel reads, without repeats.
pub fn template_files() -> Vec<&'static str> {
    let mut files: Vec<&'static str> = Vec::new();
    for p in PLUGINS {
        for f in p.template_files() {
            if !files.contains(f) {
                files.push(f);
            }
        }
    }
    files
}

/// A channel name from a job, a config or a command line.
pub fn parse(name: &str) -> Result<ChannelId, UnknownChannel> {
    ChannelId::parse(name)
        .ok()
        .filter(|id| plugin(*id).is_some())
        .ok_or_else(|| UnknownChannel(name.chars().take(40).collect()))
}

/// A name no channel of this build has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?} (known: {known})", known = known_list())]
pub struct UnknownChannel(pub String);

/// `email, line, sms, dm`.
pub fn known_list() -> String {
    ids().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// Parses a job and checks what its channels say about it: the channels it
/// names exist, each address in `to` and each part of inline `content` has the
/// shape its channel reads.
pub fn parse_job(raw: &str, max_bytes: usize) -> Result<Job, JobError> {
    let job = Job::parse(raw, max_bytes)?;
    check_job(&job)?;
    Ok(job)
}

/// The channel checks of [`parse_job`], for a job already parsed.
pub fn check_job(job: &Job) -> Result<(), JobError> {
    for (field, name) in job.named_channels() {
        parse(name).map_err(|e| JobError::new(&field, e.to_string()))?;
    }
    for p in PLUGINS {
        p.check_address(&job.to)?;
    }
    if let Some(content) = &job.content {
        for (key, part) in &content.parts {
            if part.is_null() {
                continue;
            }
            let Some(plugin) = ChannelId::parse(key).ok().and_then(plugin) else {
                let mut field = "content".to_owned();
                push_key(&mut field, key);
                let known: Vec<String> = ids().map(|i| format!("`{i}`")).collect();
                return Err(JobError::new(
                    &field,
                    format!(
                        "invalid job JSON: unknown field `{}`, expected one of {}",
                        key.chars().take(40).collect::<String>(),
                        known.join(", ")
                    ),
                ));
            };
            plugin.check_content(part)?;
        }
    }
    Ok(())
}

/// The JSON Schema of a job, as published in `docs/job.schema.json`: the
/// [`Job`] type with each channel's address under `to` and content part under
/// `content`.
pub fn job_schema() -> String {
    let mut gen = schemars::SchemaGenerator::default();
    let mut addresses = Vec::new();
    let mut contents = Vec::new();
    for p in PLUGINS {
        addresses.push((p.address_key(), p.address_schema(&mut gen)));
        contents.push((p.id().to_string(), p.content_schema(&mut gen)));
    }
    let mut root = gen.into_root_schema_for::<Job>();
    if let Some(defs) = root.get_mut("$defs").and_then(|d| d.as_object_mut()) {
        if let Some(to) = defs.get_mut("To").and_then(|d| d.as_object_mut()) {
            let props = to
                .entry("properties")
                .or_insert_with(|| serde_json::json!({}));
            for (key, schema) in addresses {
                props[key] = nullable(schema.to_value());
            }
        }
        if let Some(content) = defs
            .get_mut("InlineContent")
            .and_then(|d| d.as_object_mut())
        {
            let props = content
                .entry("properties")
                .or_insert_with(|| serde_json::json!({}));
            for (id, schema) in contents {
                props[id.as_str()] = nullable(schema.to_value());
            }
            content.insert("additionalProperties".into(), false.into());
        }
    }
    serde_json::to_string_pretty(&root).unwrap_or_default() + "\n"
}

/// A part a job may also give as `null` (as if absent).
fn nullable(schema: serde_json::Value) -> serde_json::Value {
    if schema.get("$ref").is_some() {
        serde_json::json!({ "anyOf": [schema, { "type": "null" }] })
    } else {
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_resolve_to_their_plugin() {
        let all: Vec<ChannelId> = ids().collect();
        for (i, id) in all.iter().enumerate() {
            assert!(!all[..i].contains(id), "{id} registered twice");
            assert_eq!(plugin(*id).map(|p| p.id()), Some(*id));
            assert_eq!(parse(id.as_str()), Ok(*id));
        }
        let e = parse("fax").unwrap_err().to_string();
        assert!(e.contains("fax") && e.contains("email"), "{e}");
    }
}

#[cfg(test)]
mod job_tests {
    //! Parsing jobs, with the channels' checks.
    use super::*;
    use crate::job::MAX_REF_BYTES;
    use serde_json::Value;

    const OK: &str =
        r#"{"id":"j1","channel":"email","to":{"email":"a@example.com"},"template":"welcome"}"#;

    fn err(raw: &str) -> JobError {
        parse_job(raw, 1 << 20).unwrap_err()
    }

    #[test]
    fn a_valid_job_parses() {
        let job = parse_job(OK, 1 << 20).unwrap();
        assert_eq!(
            super::super::email::Email.address(&job.to),
            Some("a@example.com")
        );
        assert_eq!(super::super::sms::Sms.address(&job.to), None);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"channel":"email","template":"t"}"#).field, "id");
        assert_eq!(
            err(r#"{"id":"x","channel":"fax","template":"t"}"#).field,
            "channel"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","fallback":["dm","pigeon"],"template":"t"}"#).field,
            "fallback[1]"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","template":"../etc"}"#).field,
            "template"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","fallback":["sms","email"],"template":"t"}"#).field,
            "fallback[1]"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","fallback":["sms","sms"],"template":"t"}"#).field,
            "fallback[1]"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","template":"t","send_at":"tomorrow"}"#).field,
            "send_at"
        );
        assert_eq!(
            err(r#"{"id":" ","channel":"email","template":"t"}"#).field,
            "id"
        );
        assert_eq!(err("not json").field, "job");
        assert_eq!(err(r#"{"id":"x","channel":"email"}"#).field, "template");
    }

    #[test]
    fn json_errors_name_the_whole_path() {
        let inline = |content: &str| {
            err(&format!(
                r#"{{"id":"x","channel":"email","content":{content}}}"#
            ))
        };
        let e = inline(r#"{"email":{"subject":"s","text":"t","bcc":"x@example.net"}}"#);
        assert_eq!(e.field, "content.email.bcc");
        assert!(e.message.contains("unknown field `bcc`"), "{e}");
        assert_eq!(inline(r#"{"":1}"#).field, r#"content."""#);
        assert_eq!(inline(r#"{"a.b":1}"#).field, r#"content."a.b""#);
        assert_eq!(
            inline(r#"{"email":{"text":"t"}}"#).field,
            "content.email.subject"
        );
        assert_eq!(inline(r#"{"sms":{"text":5}}"#).field, "content.sms.text");
        assert_eq!(
            inline(r#"{"dm":{"fields":{"coupon code":1}}}"#).field,
            r#"content.dm.fields."coupon code""#
        );
        let long = inline(&format!(r#"{{"{}":1}}"#, "k".repeat(500))).field;
        assert_eq!(long, format!(r#"content."{}…""#, "k".repeat(64)));
        let e = err(r#"{"id":"x","channel":"email","template":"t","fallback":["sms",3]}"#);
        assert_eq!(e.field, "fallback[1]");
        assert_eq!(
            err(r#"{"id":12,"channel":"email","template":"t"}"#).field,
            "id"
        );
        assert_eq!(
            err(r#"{"id":"a","id":"b","channel":"email","template":"t"}"#).field,
            "id"
        );
        assert_eq!(
            err(r#"{"id":"x","channel":"email","template":"t","send_at":5}"#).field,
            "send_at"
        );
        // Not a field's fault: the JSON itself, or its top-level shape.
        assert_eq!(err("[1,2,3]").field, "job");
        assert_eq!(err(r#"{"id":"x","#).field, "job");
        assert_eq!(err(&format!("{OK} x")).field, "job");
    }

    #[test]
    fn campaign_and_customer_ids_are_bounded() {
        let with = |key: &str, len: usize| {
            let mut v: Value = serde_json::from_str(OK).unwrap();
            v[key] = Value::from("c".repeat(len));
            parse_job(&v.to_string(), 1 << 20)
        };
        for key in ["campaign", "customer_id"] {
            assert!(with(key, MAX_REF_BYTES).is_ok());
            let e = with(key, MAX_REF_BYTES + 1).unwrap_err();
            assert_eq!(e.field, key);
            assert!(e.message.contains("128 bytes"), "{e}");
        }
    }

    #[test]
    fn oversize_jobs_are_refused() {
        let e = parse_job(OK, 10).unwrap_err();
        assert_eq!(e.field, "job");
        assert!(e.message.contains("limit"));
    }
}
