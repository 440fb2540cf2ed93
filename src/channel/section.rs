//! A `[channels.<id>]` section: the keys every channel has ([`Common`]), split
//! from the channel's own, which its plugin types with `deny_unknown_fields`.
//! A key neither knows is an error naming the closest known key.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::channel_id::ChannelId;
use crate::config::KeyError;
use crate::units::{duration, Rate, RateScope};

/// The keys of every channel section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    /// The channel's own transport (`smtp`, `api`, `print`; its default when
    /// unset), or `file` (writes what would be sent into `dir`) or `null`
    /// (encodes and discards: benchmarks).
    #[serde(default)]
    pub transport: Option<String>,
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_rate")]
    pub rate: Rate,
    #[serde(default)]
    pub burst: Option<NonZeroU32>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// `global` (default): `rate` and `burst` hold for every daemon on this Redis
    /// together; `daemon`: for each process on its own.
    #[serde(default)]
    pub rate_scope: RateScope,
    /// How long the channel pauses when its provider refuses it (a revoked
    /// token) without saying for how long.
    #[serde(default = "default_pause", with = "duration")]
    pub pause: Duration,
}

/// The keys of [`Common`], as written.
pub const COMMON_KEYS: &[&str] = &[
    "transport",
    "dir",
    "rate",
    "burst",
    "concurrency",
    "rate_scope",
    "pause",
];

fn default_rate() -> Rate {
    Rate {
        count: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
        per: Duration::from_secs(1),
    }
}

fn default_concurrency() -> usize {
    16
}

fn default_pause() -> Duration {
    Duration::from_secs(60)
}

/// Where a transport comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The channel's own (SMTP, the provider's API, print files).
    Native,
    /// Writes each encoded message into `dir`.
    File,
    /// Encodes and discards.
    Null,
}

impl Common {
    /// The transport this section asks for, checked against the channel's own
    /// (`native`: its names, the first the default).
    pub fn transport(&self, id: ChannelId, native: &[&str]) -> Result<Transport, KeyError> {
        match self.transport.as_deref() {
            Some("file") if self.dir.is_none() => Err(KeyError::new(
                format!("channels.{id}.dir"),
                "transport = \"file\" needs a directory: add dir = \"./outbox/...\"",
            )),
            Some("file") => Ok(Transport::File),
            Some("null") => Ok(Transport::Null),
            None => Ok(Transport::Native),
            Some(t) if native.contains(&t) => Ok(Transport::Native),
            Some(other) => {
                let mut known: Vec<&str> = native.to_vec();
                known.extend(["file", "null"]);
                Err(KeyError::new(
                    format!("channels.{id}.transport"),
                    format!(
                        "transport {other:?} is not available for {id}: use one of {}",
                        quoted(&known)
                    ),
                ))
            }
        }
    }

    /// The transport's name for logs and `check-config`.
    pub fn transport_name<'a>(&'a self, native: &'a [&'a str]) -> &'a str {
        self.transport
            .as_deref()
            .or_else(|| native.first().copied())
            .unwrap_or("-")
    }
}

/// Splits a section into its common keys and the channel's own, typed as `T`.
/// Keys neither has are refused, naming the closest known key.
pub fn split<T: DeserializeOwned>(
    id: ChannelId,
    section: &toml::Table,
) -> Result<(Common, T), KeyError> {
    let own = field_names::<T>();
    let mut common = toml::Table::new();
    let mut rest = toml::Table::new();
    for (key, value) in section {
        if COMMON_KEYS.contains(&key.as_str()) {
            common.insert(key.clone(), value.clone());
        } else if own.contains(&key.as_str()) {
            rest.insert(key.clone(), value.clone());
        } else {
            let known: Vec<&str> = COMMON_KEYS.iter().chain(own).copied().collect();
            let hint = match closest(key, &known) {
                Some(k) => format!("did you mean `{k}`?"),
                None => format!("the keys of [channels.{id}] are {}", quoted(&known)),
            };
            return Err(KeyError::new(
                format!("channels.{id}.{key}"),
                format!("unknown key: {hint}"),
            ));
        }
    }
    let common: Common = typed(id, common)?;
    if common.concurrency == 0 {
        return Err(KeyError::new(
            format!("channels.{id}.concurrency"),
            "must be at least 1",
        ));
    }
    Ok((common, typed(id, rest)?))
}

fn typed<T: DeserializeOwned>(id: ChannelId, table: toml::Table) -> Result<T, KeyError> {
    serde_path_to_error::deserialize(toml::Value::Table(table))
        .map_err(|e| KeyError::new(format!("channels.{id}.{}", e.path()), e.inner().to_string()))
}

fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The known key a mistyped one most likely meant: at most two edits away (or
/// one for short keys).
pub fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = if key.chars().count() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

/// The field names of a struct as serde reads them: the struct is asked to
/// deserialize from a deserializer that only records the names it is offered.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Stop {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut names = Names(None);
    let _ = T::deserialize(&mut names);
    names.0.unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Own {
        #[allow(dead_code)]
        channel_secret: Option<String>,
    }

    fn section(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn unknown_keys_name_the_closest_known_one() {
        let id = ChannelId::new("line");
        let e = split::<Own>(id, &section("chanel_secret = \"x\"")).unwrap_err();
        assert_eq!(e.key, "channels.line.chanel_secret");
        assert!(e.message.contains("`channel_secret`"), "{e}");
        let e = split::<Own>(id, &section("concurency = 3")).unwrap_err();
        assert!(e.message.contains("`concurrency`"), "{e}");
        let e = split::<Own>(id, &section("zzz = 3")).unwrap_err();
        assert!(e.message.contains("`rate`"), "lists the keys: {e}");
        let (common, _own) =
            split::<Own>(id, &section("rate = \"5/s\"\nchannel_secret = \"s\"")).unwrap();
        assert_eq!(common.rate.count.get(), 5);
        assert_eq!(common.pause, Duration::from_secs(60));
    }

    #[test]
    fn field_names_come_from_the_type() {
        assert_eq!(field_names::<Own>(), &["channel_secret"]);
        assert_eq!(closest("tiemout", &["timeout", "rate"]), Some("timeout"));
        assert_eq!(closest("xyz", &["timeout"]), None);
    }
}
