//! A small JSON-Schema validator for the OpenAPI 3.0 schemas of LINE's official
//! API descriptions. It supports what those schemas use: `$ref` (local, `#/...`),
//! `type` (with `nullable`), `required`, `properties`, `additionalProperties`,
//! `items`, `minItems`/`maxItems`, `minLength`/`maxLength` (Unicode scalar values, as
//! JSON Schema counts), `pattern` (anchored sequences of literals and character classes
//! with quantifiers, which is all the LINE specs contain), `enum`, `minimum`/`maximum`,
//! `format` (`uri`, `uuid`, `int32`, `int64`; others are annotations), `allOf`, and
//! `discriminator` with `propertyName` + `mapping`.
//!
//! Discriminator semantics (OpenAPI 3.0): when a schema with a discriminator is
//! validated, the value of `propertyName` picks the schema in `mapping`, and the value
//! is validated against that schema as well. The mapped schemas in the LINE specs
//! refer back to the base through `allOf` (`TextMessage = allOf[Message, {...}]`), so
//! the base is re-entered for the same value: there it must not dispatch again, which
//! is what the `dispatched` list is for. A value absent from `mapping` is a violation
//! (only explicit mappings are honoured: the API rejects a type named after a schema,
//! such as `"TextMessage"`). `oneOf`, `anyOf` and `not` are not used by these specs and
//! are reported as unsupported rather than silently accepted.

use std::fmt;

use serde_json::Value;

/// One violation: where (`messages[0].text`, LINE's notation for `property`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub property: String,
    pub message: String,
}

impl Violation {
    pub fn new(property: impl Into<String>, message: impl Into<String>) -> Violation {
        let property = property.into();
        Violation {
            property: if property.is_empty() {
                "(body)".to_string()
            } else {
                property
            },
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.message)
    }
}

/// Validates values against schemas of one OpenAPI document (`root`), which holds the
/// targets of `$ref`.
pub struct Validator<'a> {
    root: &'a Value,
}

const MAX_DEPTH: usize = 256;

impl<'a> Validator<'a> {
    pub fn new(root: &'a Value) -> Validator<'a> {
        Validator { root }
    }

    /// The schema a local `$ref` (`#/components/schemas/Message`) points to.
    pub fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        self.root.pointer(pointer)
    }

    /// Every violation of `schema` by `instance`; property paths start at `base`
    /// (empty for a request body). Duplicates are removed, order is kept.
    pub fn validate(&self, schema: &'a Value, instance: &Value, base: &str) -> Vec<Violation> {
        let mut out = Vec::new();
        self.check(schema, instance, base, &[], 0, &mut out);
        let mut unique: Vec<Violation> = Vec::with_capacity(out.len());
        for v in out {
            if !unique.contains(&v) {
                unique.push(v);
            }
        }
        unique
    }

    fn check(
        &self,
        schema: &'a Value,
        inst: &Value,
        path: &str,
        dispatched: &[&'a Value],
        depth: usize,
        out: &mut Vec<Violation>,
    ) {
        if depth > MAX_DEPTH {
            out.push(Violation::new(
                path,
                "schema nesting too deep (a $ref cycle?)",
            ));
            return;
        }
        let Some(schema_obj) = schema.as_object() else {
            // `true`/`{}`-like schemas accept anything.
            return;
        };
        // OpenAPI 3.0: siblings of `$ref` are ignored.
        if let Some(reference) = schema_obj.get("$ref").and_then(Value::as_str) {
            match self.resolve(reference) {
                Some(target) => self.check(target, inst, path, dispatched, depth + 1, out),
                None => out.push(Violation::new(
                    path,
                    format!("spec error: unresolvable $ref {reference}"),
                )),
            }
            return;
        }
        for unsupported in ["oneOf", "anyOf", "not"] {
            if schema_obj.contains_key(unsupported) {
                out.push(Violation::new(
                    path,
                    format!("validator does not support `{unsupported}`"),
                ));
            }
        }
        if inst.is_null() && schema_obj.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(ty) = schema_obj.get("type").and_then(Value::as_str) {
            if !type_matches(ty, inst) {
                out.push(Violation::new(
                    path,
                    format!("must be of type {ty} (found {})", kind(inst)),
                ));
                return;
            }
        }
        if let Some(options) = schema_obj.get("enum").and_then(Value::as_array) {
            if !options.contains(inst) {
                let list: Vec<String> = options.iter().map(Value::to_string).collect();
                out.push(Violation::new(
                    path,
                    format!(
                        "must be one of the following values: [{}] (found {inst})",
                        list.join(", ")
                    ),
                ));
            }
        }
        if let Some(format) = schema_obj.get("format").and_then(Value::as_str) {
            check_format(format, inst, path, out);
        }
        if let Some(s) = inst.as_str() {
            let len = s.chars().count() as u64;
            let min = schema_obj.get("minLength").and_then(Value::as_u64);
            let max = schema_obj.get("maxLength").and_then(Value::as_u64);
            if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
                out.push(Violation::new(
                    path,
                    format!(
                        "length must be between {} and {} (found {len})",
                        min.unwrap_or(0),
                        max.map_or("unbounded".to_string(), |m| m.to_string())
                    ),
                ));
            }
            if let Some(pattern) = schema_obj.get("pattern").and_then(Value::as_str) {
                match pattern_matches(pattern, s) {
                    Ok(true) => {}
                    Ok(false) => out.push(Violation::new(path, format!("must match {pattern}"))),
                    Err(e) => out.push(Violation::new(
                        path,
                        format!("validator cannot evaluate pattern {pattern}: {e}"),
                    )),
                }
            }
        }
        if let Some(n) = inst.as_f64() {
            if let Some(min) = schema_obj.get("minimum").and_then(Value::as_f64) {
                if n < min {
                    out.push(Violation::new(path, format!("must be at least {min}")));
                }
            }
            if let Some(max) = schema_obj.get("maximum").and_then(Value::as_f64) {
                if n > max {
                    out.push(Violation::new(path, format!("must be at most {max}")));
                }
            }
        }
        if let Some(items) = inst.as_array() {
            let len = items.len() as u64;
            let min = schema_obj.get("minItems").and_then(Value::as_u64);
            let max = schema_obj.get("maxItems").and_then(Value::as_u64);
            if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
                out.push(Violation::new(
                    path,
                    format!(
                        "size must be between {} and {} (found {len})",
                        min.unwrap_or(0),
                        max.map_or("unbounded".to_string(), |m| m.to_string())
                    ),
                ));
            }
            if let Some(item_schema) = schema_obj.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.check(item_schema, item, &item_path, &[], depth + 1, out);
                }
            }
        }
        if let Some(obj) = inst.as_object() {
            if let Some(required) = schema_obj.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(name) {
                        out.push(Violation::new(join(path, name), "must be specified"));
                    }
                }
            }
            let properties = schema_obj.get("properties").and_then(Value::as_object);
            if let Some(properties) = properties {
                for (name, sub) in properties {
                    if let Some(value) = obj.get(name) {
                        self.check(sub, value, &join(path, name), &[], depth + 1, out);
                    }
                }
            }
            match schema_obj.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    for name in obj.keys() {
                        if !properties.is_some_and(|p| p.contains_key(name)) {
                            out.push(Violation::new(join(path, name), "unknown property"));
                        }
                    }
                }
                Some(sub @ Value::Object(_)) => {
                    for (name, value) in obj {
                        if !properties.is_some_and(|p| p.contains_key(name)) {
                            self.check(sub, value, &join(path, name), &[], depth + 1, out);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(all) = schema_obj.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, inst, path, dispatched, depth + 1, out);
            }
        }
        if let Some(disc) = schema_obj.get("discriminator") {
            let already = dispatched.iter().any(|d| std::ptr::eq(*d, schema));
            if let (false, Some(obj)) = (already, inst.as_object()) {
                let prop = disc
                    .get("propertyName")
                    .and_then(Value::as_str)
                    .unwrap_or("type");
                // A missing or non-string value is reported by `required`/`type`.
                if let Some(value) = obj.get(prop).and_then(Value::as_str) {
                    let mapping = disc.get("mapping").and_then(Value::as_object);
                    match mapping.and_then(|m| m.get(value)).and_then(Value::as_str) {
                        Some(target_ref) => match self.resolve(target_ref) {
                            Some(target) => {
                                let mut next = dispatched.to_vec();
                                next.push(schema);
                                self.check(target, inst, path, &next, depth + 1, out);
                            }
                            None => out.push(Violation::new(
                                path,
                                format!("spec error: unresolvable mapping {target_ref}"),
                            )),
                        },
                        None => {
                            let known: Vec<&str> = mapping
                                .map(|m| m.keys().map(String::as_str).collect())
                                .unwrap_or_default();
                            out.push(Violation::new(
                                join(path, prop),
                                format!(
                                    "unknown {prop} \"{value}\"; the spec's discriminator allows: {}",
                                    known.join(", ")
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => {
            v.is_i64()
                || v.is_u64()
                || v.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        // An unknown type name in the spec: do not guess.
        _ => true,
    }
}

fn check_format(format: &str, inst: &Value, path: &str, out: &mut Vec<Violation>) {
    match (format, inst) {
        ("uuid", Value::String(s)) if !is_uuid(s) => out.push(Violation::new(
            path,
            format!("must be a UUID (8-4-4-4-12 hexadecimal digits), found {s:?}"),
        )),
        ("uri", Value::String(s)) if !is_absolute_uri(s) => out.push(Violation::new(
            path,
            format!("must be an absolute URI, found {s:?}"),
        )),
        ("int32", Value::Number(n)) if n.as_i64().is_none_or(|i| i32::try_from(i).is_err()) => out
            .push(Violation::new(
                path,
                format!("must be a 32-bit integer, found {n}"),
            )),
        ("int64", Value::Number(n)) if n.as_i64().is_none() => out.push(Violation::new(
            path,
            format!("must be a 64-bit integer, found {n}"),
        )),
        _ => {}
    }
}

/// `123e4567-e89b-12d3-a456-426614174000`: 8-4-4-4-12 hexadecimal digits, any case.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// RFC 3986 absolute URI: a scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`),
/// a colon and something after it, with no whitespace.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !s.chars().any(char::is_whitespace)
}

#[derive(Debug)]
enum Atom {
    Literal(char),
    Any,
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Literal(l) => *l == c,
            Atom::Any => c != '\n',
            Atom::Class { ranges, negated } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

fn escape_ranges(c: char) -> Option<Vec<(char, char)>> {
    match c {
        'd' => Some(vec![('0', '9')]),
        'w' => Some(vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')]),
        's' => Some(vec![(' ', ' '), ('\t', '\r')]),
        _ => None,
    }
}

/// Whether `s` matches the ECMA-262 `pattern` (unanchored unless it says `^`/`$`).
/// Supports literals, `.`, `\d \w \s` and escaped punctuation, `[...]` classes with
/// ranges and negation, and the quantifiers `? * + {n} {n,} {n,m}`; anything else
/// (groups, alternation) is an error, so an unsupported pattern is never ignored.
pub fn pattern_matches(pattern: &str, s: &str) -> Result<bool, String> {
    let mut p: Vec<char> = pattern.chars().collect();
    let anchored_start = p.first() == Some(&'^');
    if anchored_start {
        p.remove(0);
    }
    let anchored_end = p.last() == Some(&'$') && !(p.len() >= 2 && p[p.len() - 2] == '\\');
    if anchored_end {
        p.pop();
    }
    let mut atoms: Vec<(Atom, usize, usize)> = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let atom = match p[i] {
            '(' | ')' | '|' | '^' | '$' => return Err(format!("unsupported `{}`", p[i])),
            '.' => {
                i += 1;
                Atom::Any
            }
            '\\' => {
                let c = *p.get(i + 1).ok_or("trailing backslash")?;
                i += 2;
                match escape_ranges(c) {
                    Some(ranges) => Atom::Class {
                        ranges,
                        negated: false,
                    },
                    None if c.is_ascii_alphanumeric() => {
                        return Err(format!("unsupported escape \\{c}"))
                    }
                    None => Atom::Literal(c),
                }
            }
            '[' => {
                i += 1;
                let negated = p.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let c = *p.get(i).ok_or("unterminated character class")?;
                    if c == ']' && !first {
                        i += 1;
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        let e = *p.get(i + 1).ok_or("trailing backslash")?;
                        i += 2;
                        if let Some(r) = escape_ranges(e) {
                            ranges.extend(r);
                            continue;
                        }
                        e
                    } else {
                        i += 1;
                        c
                    };
                    if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&n| n != ']') {
                        let hi = p[i + 1];
                        i += 2;
                        ranges.push((lo, hi));
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                Atom::Class { ranges, negated }
            }
            c => {
                i += 1;
                Atom::Literal(c)
            }
        };
        let (min, max) = match p.get(i) {
            Some('?') => {
                i += 1;
                (0, 1)
            }
            Some('*') => {
                i += 1;
                (0, usize::MAX)
            }
            Some('+') => {
                i += 1;
                (1, usize::MAX)
            }
            Some('{') => {
                let close = p[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("unterminated {")?
                    + i;
                let inner: String = p[i + 1..close].iter().collect();
                i = close + 1;
                let parse = |t: &str| {
                    t.trim()
                        .parse::<usize>()
                        .map_err(|e| format!("{{{inner}}}: {e}"))
                };
                match inner.split_once(',') {
                    None => {
                        let n = parse(&inner)?;
                        (n, n)
                    }
                    Some((lo, "")) => (parse(lo)?, usize::MAX),
                    Some((lo, hi)) => (parse(lo)?, parse(hi)?),
                }
            }
            _ => (1, 1),
        };
        atoms.push((atom, min, max));
    }
    let chars: Vec<char> = s.chars().collect();
    let starts = if anchored_start {
        0..=0
    } else {
        0..=chars.len()
    };
    Ok(starts
        .into_iter()
        .any(|start| match_here(&atoms, &chars, start, anchored_end)))
}

fn match_here(atoms: &[(Atom, usize, usize)], s: &[char], pos: usize, anchored_end: bool) -> bool {
    let Some(((atom, min, max), rest)) = atoms.split_first() else {
        return !anchored_end || pos == s.len();
    };
    let mut n = 0;
    while n < *max && pos + n < s.len() && atom.matches(s[pos + n]) {
        n += 1;
    }
    (*min..=n)
        .rev()
        .any(|k| match_here(rest, s, pos + k, anchored_end))
}
