//! The TOML configuration: what ops write, checked at start with errors that
//! name the file, the key and the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::redis_connection::{redact_url, RedisConfig, DEFAULT_REDIS_URL};
use crate::units::duration;
pub use crate::units::KeyError;
use serde::Deserialize;

pub const DEFAULT_PATH: &str = "config/tayori.toml";

impl KeyError {
    /// The error as the file's: `{file}: key `{key}`: {message}`.
    pub fn in_file(self, file: &Path) -> ConfigError {
        ConfigError::Key {
            file: file.display().to_string(),
            key: self.key,
            message: self.message,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Key {
        file: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub redis: RedisConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub templates: TemplatesConfig,
    /// Each `[channels.<id>]` section as written; the channel's plugin types and
    /// checks it (`crate::channel::Channels::from_config`).
    #[serde(default)]
    pub channels: BTreeMap<String, toml::Table>,
    /// Quiet hours and frequency caps.
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
    /// Engagement profiles learned from reactions (best time, best channel).
    #[serde(default)]
    pub profiles: ProfilesConfig,
    /// Where the config was read from (for messages and relative template paths).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Empty disables the HTTP server.
    pub listen: String,
    pub public_url: String,
    pub tracking_secret: Option<String>,
    /// Secrets `tracking_secret` had before a rotation: tokens, short links and
    /// VERP tags made under them still open; nothing new is made with them.
    pub previous_tracking_secrets: Vec<String>,
    /// Your reverse proxies (CIDRs): a request from one of them is taken to come
    /// from the last `X-Forwarded-For` address they did not add.
    pub trusted_proxies: Vec<String>,
    /// An open or click repeated within this window (per message, link, and
    /// whether it looked automated) is recorded once; `0s` records every hit.
    #[serde(with = "duration")]
    pub repeat_window: Duration,
    /// A client must send a whole request head within this long of connecting (or of
    /// its previous response), else the connection is closed: half-sent requests
    /// cannot hold connections and file descriptors (slowloris).
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// From a request's head to its response: reading the body and handling it.
    /// Past it the answer is 408 and the connection closes, so a body that never
    /// arrives (or trickles in) holds nothing for long.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// `[http.api]`: the enqueue API (`POST /v1/jobs`), on when it has keys.
    pub api: ApiConfig,
}

/// `[http.api]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The API keys' SHA-256 hashes, `"sha256:<64 hex digits>"` (`tayori api-key`
    /// makes one). Several at once let a key be rotated without a gap.
    pub keys: Vec<String>,
}

impl ApiConfig {
    /// Each key's hash, or the index and value of the first that is not one.
    pub fn hashes(&self) -> Result<Vec<[u8; 32]>, usize> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| parse_key_hash(k).ok_or(i))
            .collect()
    }
}

/// `sha256:<64 hex digits>` → the 32 bytes.
fn parse_key_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.trim().strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl HttpConfig {
    /// `trusted_proxies`, parsed (checked at load: entries that do not parse are
    /// refused there, so none is dropped here).
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|n| parse_net(n))
            .collect()
    }
}

/// A CIDR, or a single address as its /32 or /128.
fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            tracking_secret: None,
            previous_tracking_secrets: Vec::new(),
            trusted_proxies: Vec::new(),
            repeat_window: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            api: ApiConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Entries read per XREADGROUP.
    pub read_batch: usize,
    /// How long a blocking read waits for new entries.
    #[serde(with = "duration")]
    pub block: Duration,
    /// Pending entries idle this long belong to a dead consumer and are reclaimed.
    #[serde(with = "duration")]
    pub reclaim_idle: Duration,
    /// A job delivered more than this many times without an outcome goes to the dead letters.
    pub max_deliveries: u32,
    /// How long a job id is remembered for deduplication.
    #[serde(with = "duration")]
    pub dedupe_window: Duration,
    /// Jobs larger than this (bytes of JSON) are refused.
    pub max_job_bytes: usize,
    /// On SIGTERM, how long in-flight sends may take before the daemon exits anyway.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// How long events stay in the results stream at least (0: forever). An
    /// older event goes only once every group of `results_groups` and the
    /// profile updater have acknowledged it.
    #[serde(with = "duration")]
    pub results_retention: Duration,
    /// The consumer groups that read the results stream (the CRM's): an event
    /// none of them has acknowledged is never trimmed by `results_retention`.
    pub results_groups: Vec<String>,
    /// A hard cap on each partition's results stream (about this many events;
    /// 0: none). Unlike `results_retention` it drops events nobody has read.
    pub results_max_len: u64,
    /// How often delayed jobs are checked and queue gauges sampled.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilesConfig {
    /// Learn profiles from the results stream (a consumer group of its own).
    pub enabled: bool,
    /// How fast old reactions fade: an event weighs half after this long.
    #[serde(with = "duration")]
    pub half_life: Duration,
    /// A profile untouched this long is deleted.
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// Below this many (decayed) reactions a profile is too thin to choose by.
    pub min_reactions: f64,
    /// Local time a best-time job goes out at when the profile is too thin ("HH:MM").
    pub default_hour: String,
    /// Share of best-channel jobs sent on another eligible channel, so profiles keep learning.
    pub explore: f64,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            half_life: Duration::from_secs(30 * 86_400),
            ttl: Duration::from_secs(400 * 86_400),
            min_reactions: 3.0,
            default_hour: "10:00".into(),
            explore: 0.1,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            read_batch: 256,
            block: Duration::from_secs(1),
            reclaim_idle: Duration::from_secs(60),
            max_deliveries: 5,
            dedupe_window: Duration::from_secs(7 * 24 * 3600),
            max_job_bytes: 256 * 1024,
            shutdown_grace: Duration::from_secs(30),
            results_retention: Duration::ZERO,
            results_groups: Vec::new(),
            results_max_len: 0,
            poll_interval: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    #[serde(with = "duration")]
    pub max_age: Duration,
    #[serde(with = "duration")]
    pub base_delay: Duration,
    #[serde(with = "duration")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_age: Duration::from_secs(24 * 3600),
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    /// Defaults to `templates/` beside the config file.
    pub dir: Option<PathBuf>,
    /// minijinja fuel per render: bounds runaway loops in templates.
    pub fuel: Option<u64>,
}

impl Config {
    /// The config path from the flag, `TAYORI_CONFIG`, or the default.
    pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| std::env::var_os("TAYORI_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, path, |name| std::env::var(name).ok())
    }

    /// Parses config text; `env` supplies `${VAR}` values (the process environment in production),
    /// secret files (`${file:…}`, `VAR_FILE`) are read from the file system.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::parse_with(text, path, env, |p| std::fs::read_to_string(p))
    }

    /// [`Config::parse`] with the secret files read by `read` (tests give it a map).
    pub fn parse_with(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
        read: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let sources = Sources {
            env: &env,
            read: &read,
            dir: path.parent().unwrap_or(Path::new("")),
        };
        expand_env(&mut value, &mut String::new(), &sources).map_err(|(key, message)| {
            ConfigError::Key {
                file: file.clone(),
                key,
                message,
            }
        })?;
        let mut config: Config =
            serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Key {
                file: file.clone(),
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        config.source = path.to_path_buf();
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Key { file, key, message })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let key = |k: &str, m: String| Err((k.to_owned(), m));
        if self.redis.prefix.is_empty()
            || self
                .redis
                .prefix
                .contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
        {
            return key(
                "redis.prefix",
                "must be a non-empty word without braces such as \"tayori\" (braces are Redis Cluster hash tags)".into(),
            );
        }
        if !(1..=crate::keys::MAX_PARTITIONS).contains(&self.redis.partitions) {
            return key(
                "redis.partitions",
                format!(
                    "must be between 1 and {} (docs/scaling.md says how to choose)",
                    crate::keys::MAX_PARTITIONS
                ),
            );
        }
        crate::redis_connection::RedisTarget::from_config(&self.redis)
            .map_err(|e| (e.key, e.message))?;
        if self.redis.wait_replicas > 0 && self.redis.wait_timeout.is_zero() {
            return key(
                "redis.wait_timeout",
                "must be longer than 0 with wait_replicas (WAIT 0 would block forever), e.g. \"100ms\"".into(),
            );
        }
        if self.http.header_read_timeout.is_zero() {
            return key(
                "http.header_read_timeout",
                "must be longer than 0, e.g. \"10s\"".into(),
            );
        }
        if self.http.request_timeout.is_zero() {
            return key(
                "http.request_timeout",
                "must be longer than 0, e.g. \"30s\"".into(),
            );
        }
        if let Err(i) = self.http.api.hashes() {
            return key(
                &format!("http.api.keys[{i}]"),
                "must be \"sha256:\" and the key's SHA-256 in 64 hex digits (`tayori api-key` makes a key and prints its line)".into(),
            );
        }
        if let Some(i) = self
            .http
            .previous_tracking_secrets
            .iter()
            .position(|s| s.trim().len() < 16)
        {
            return key(
                &format!("http.previous_tracking_secrets[{i}]"),
                "must be a former tracking_secret (16+ characters); remove it once the links made with it may expire".into(),
            );
        }
        if let Some(i) = self
            .http
            .trusted_proxies
            .iter()
            .position(|n| parse_net(n).is_none())
        {
            return key(
                &format!("http.trusted_proxies[{i}]"),
                "must be an address or a CIDR such as \"10.0.0.0/8\" or \"2001:db8::/32\"".into(),
            );
        }
        if self.queue.read_batch == 0 {
            return key("queue.read_batch", "must be at least 1".into());
        }
        if let Some(i) =
            self.queue.results_groups.iter().position(|g| {
                g.is_empty() || g.contains(|c: char| c.is_whitespace() || c.is_control())
            })
        {
            return key(
                &format!("queue.results_groups[{i}]"),
                "must be a consumer group's name, a word such as \"crm\"".into(),
            );
        }
        if !self.queue.results_groups.is_empty() && self.queue.results_retention.is_zero() {
            return key(
                "queue.results_groups",
                "has no effect without queue.results_retention: set it too, e.g. results_retention = \"7d\"".into(),
            );
        }
        if self.retry.max_attempts == 0 {
            return key("retry.max_attempts", "must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.profiles.explore) {
            return key(
                "profiles.explore",
                "must be between 0 and 1, e.g. 0.1".into(),
            );
        }
        if self.profiles.half_life.is_zero() {
            return key(
                "profiles.half_life",
                "must be longer than 0, e.g. \"30d\"".into(),
            );
        }
        if jiff::civil::Time::strptime("%H:%M", &self.profiles.default_hour).is_err() {
            return key(
                "profiles.default_hour",
                format!(
                    "{:?} is not a time like \"10:00\"",
                    self.profiles.default_hour
                ),
            );
        }
        Ok(())
    }

    /// The Redis URL with any password replaced, for messages and logs.
    pub fn redis_url_redacted(&self) -> String {
        redact_url(self.redis.url())
    }

    /// Where Redis is and how to reach it (checked by `load`, so this only fails
    /// for a config built without it).
    pub fn redis_target(&self) -> Result<crate::redis_connection::RedisTarget, ConfigError> {
        crate::redis_connection::RedisTarget::from_config(&self.redis).map_err(
            |KeyError { key, message }| ConfigError::Key {
                file: self.source.display().to_string(),
                key,
                message,
            },
        )
    }

    pub fn templates_dir(&self) -> PathBuf {
        match &self.templates.dir {
            Some(dir) => dir.clone(),
            None => self
                .source
                .parent()
                .unwrap_or(Path::new("."))
                .join("templates"),
        }
    }
}

/// Where `${…}` values come from: the environment and secret files.
struct Sources<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    read: &'a dyn Fn(&Path) -> std::io::Result<String>,
    /// The config file's directory: a relative `${file:…}` path is taken from it.
    dir: &'a Path,
}

/// `${file:PATH}` reads a secret file.
const FILE_PREFIX: &str = "file:";
/// `${VAR}` with `VAR` unset reads the file `VAR_FILE` names.
const FILE_SUFFIX: &str = "_FILE";

impl Sources<'_> {
    /// A secret file's content without its one trailing newline (Docker and
    /// Kubernetes secret files, and `echo … > file`, end in one). `None` when it
    /// does not exist and `missing_ok`. The message names the path, the reason and
    /// the fix, never the content.
    fn secret_file(
        &self,
        path: &str,
        from: &str,
        missing_ok: bool,
    ) -> Result<Option<String>, String> {
        if path.is_empty() {
            return Err(format!(
                "{from} names no file: write the secret file's path, e.g. ${{file:/run/secrets/name}}"
            ));
        }
        let full = self.dir.join(path);
        match (self.read)(&full) {
            Ok(mut text) => {
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                Ok(Some(text))
            }
            Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "cannot read secret file {} ({from}): {e}: mount the secret there, fix the path, or let the user tayori runs as read it",
                full.display()
            )),
        }
    }

    /// One `${…}`'s value: `file:PATH`, or `NAME` from the environment or `NAME_FILE`.
    fn lookup(&self, name: &str, default: Option<&str>) -> Result<String, String> {
        if let Some(path) = name.strip_prefix(FILE_PREFIX) {
            let text = self.secret_file(path, &format!("${{{name}}}"), default.is_some())?;
            return Ok(text.unwrap_or_else(|| default.unwrap_or_default().to_owned()));
        }
        // The variable itself first: a config that worked before `VAR_FILE` was
        // read (with an unrelated `VAR_FILE` in the environment) works the same.
        if let Some(value) = (self.env)(name) {
            return Ok(value);
        }
        let file_var = format!("{name}{FILE_SUFFIX}");
        match (self.env)(&file_var) {
            Some(path) => Ok(self
                .secret_file(&path, &format!("from {file_var}"), false)?
                .unwrap_or_default()),
            None => default.map(str::to_owned).ok_or_else(|| {
                format!(
                    "environment variable {name} is not set: export {name}=... (or {file_var}=/path/to/secret) before starting tayori"
                )
            }),
        }
    }
}

/// Replaces `${VAR}` (or `${VAR:-default}`, `${file:PATH}`) in every string value.
/// Expansion happens on parsed values, never on the raw text, so a variable or a
/// secret file cannot inject TOML.
fn expand_env(
    value: &mut toml::Value,
    path: &mut String,
    sources: &Sources<'_>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            *s = expand_str(s, sources).map_err(|m| (path.clone(), m))?;
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                expand_env(v, path, sources)?;
                path.truncate(len);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(v, path, sources)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(s: &str, sources: &Sources<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("unterminated ${...}")?;
        let (name, default) = match after[..end].split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (&after[..end], None),
        };
        out.push_str(&sources.lookup(name, default)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"), |v| {
            (v == "SET").then(|| "value".to_owned())
        })
    }

    #[test]
    fn bad_proxies_short_old_secrets_and_bad_results_groups_are_named() {
        for (text, key) in [
            ("[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"not a net\"]\n[redis]\n", "http.trusted_proxies[1]"),
            ("[http]\nprevious_tracking_secrets = [\"short\"]\n[redis]\n", "http.previous_tracking_secrets[0]"),
            ("[queue]\nresults_retention = \"7d\"\nresults_groups = [\"crm\", \"two words\"]\n[redis]\n", "queue.results_groups[1]"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("t.toml") && e.contains(key), "{key}: {e}");
        }
        let c = parse("[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n[redis]\n")
            .unwrap();
        let nets = c.http.trusted_proxy_nets();
        assert_eq!(nets.len(), 3);
        assert!(nets[1].contains(&"192.0.2.7".parse::<std::net::IpAddr>().unwrap()));
        assert!(!nets[1].contains(&"192.0.2.8".parse::<std::net::IpAddr>().unwrap()));
    }

    #[test]
    fn api_keys_are_sha256_hashes_and_a_bad_one_is_named() {
        let abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let c = parse(&format!("[redis]\n[http.api]\nkeys = [\"{abc}\"]\n")).unwrap();
        let hashes = c.http.api.hashes().unwrap();
        assert_eq!(hashes.len(), 1);
        assert_eq!(hashes[0][..3], [0xba, 0x78, 0x16]);
        assert!(parse("[redis]\n").unwrap().http.api.keys.is_empty());
        for bad in ["ba7816bf", "sha256:xyz", "sha256:ba7816"] {
            let e = parse(&format!(
                "[redis]\n[http.api]\nkeys = [\"{abc}\", \"{bad}\"]\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("http.api.keys[1]") && e.contains("tayori api-key"),
                "{e}"
            );
        }
    }

    #[test]
    fn http_timeouts_have_defaults_and_must_be_positive() {
        let c = parse("[redis]\n").unwrap();
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.http.request_timeout, Duration::from_secs(30));
        let c = parse("[redis]\n[http]\nheader_read_timeout = \"2s\"\nrequest_timeout = \"1m\"\n")
            .unwrap();
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.http.request_timeout, Duration::from_secs(60));
        for k in ["header_read_timeout", "request_timeout"] {
            let e = parse(&format!("[redis]\n[http]\n{k} = \"0s\"\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("http.{k}")), "{e}");
        }
    }

    #[test]
    fn env_vars_expand_and_missing_ones_are_named() {
        let c =
            parse("[redis]\nurl = \"redis://${SET}:1\"\nprefix = \"${UNSET:-dflt}\"\n").unwrap();
        assert_eq!(c.redis.url(), "redis://value:1");
        assert_eq!(c.redis.prefix, "dflt");
        let e = parse("[http]\ntracking_secret = \"${NOPE}\"\n[redis]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml") && e.contains("http.tracking_secret") && e.contains("NOPE"),
            "{e}"
        );
    }

    /// A config in `/etc/tayori/` with files from a map (anything else: not found)
    /// and the environment `vars`.
    fn parse_files(
        text: &str,
        vars: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        Config::parse_with(
            text,
            Path::new("/etc/tayori/tayori.toml"),
            |v| {
                vars.iter()
                    .find(|(k, _)| *k == v)
                    .map(|(_, x)| x.to_string())
            },
            |p| {
                let p = p.to_str().unwrap_or_default();
                match files.iter().find(|(k, _)| *k == p) {
                    Some((_, text)) => Ok(text.to_string()),
                    None if p.contains("forbidden") => {
                        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
                    }
                    None => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
                }
            },
        )
    }

    const SECRET: &str = "s3cr3t-do-not-print";

    #[test]
    fn secrets_come_from_files_without_their_trailing_newline() {
        let files = [
            ("/run/secrets/tracking", "0123456789abcdef0123\n"),
            ("/run/secrets/crlf", "user-pass\r\n"),
            ("/run/secrets/two", "pw\n\n"),
            ("/etc/tayori/secrets/rel", "beside-config"),
        ];
        let c = parse_files(
            "[redis]\nurl = \"redis://db\"\nusername = \"${file:/run/secrets/crlf}\"\n\
             password = \"${file:/run/secrets/two}\"\nprefix = \"${file:secrets/rel}\"\n\
             [http]\ntracking_secret = \"${file:/run/secrets/tracking}\"\n",
            &[],
            &files,
        )
        .unwrap();
        assert_eq!(
            c.http.tracking_secret.as_deref(),
            Some("0123456789abcdef0123")
        );
        // One newline only: a secret that really ends in one keeps it.
        assert_eq!(c.redis.password.as_deref(), Some("pw\n"));
        assert_eq!(c.redis.username.as_deref(), Some("user-pass"));
        // Relative to the config file's directory.
        assert_eq!(c.redis.prefix, "beside-config");
    }

    #[test]
    fn an_unset_var_is_read_from_the_file_its_var_file_names() {
        let files = [("/run/secrets/line", "line-secret\n")];
        let text = "[redis]\n[http]\ntracking_secret = \"${LINE_SECRET}\"\n";
        let c = parse_files(text, &[("LINE_SECRET_FILE", "/run/secrets/line")], &files).unwrap();
        assert_eq!(c.http.tracking_secret.as_deref(), Some("line-secret"));
        // The variable itself still works, and a default applies when neither is set.
        let c = parse_files(text, &[("LINE_SECRET", "direct")], &files).unwrap();
        assert_eq!(c.http.tracking_secret.as_deref(), Some("direct"));
        let with_default = "[redis]\n[http]\ntracking_secret = \"${LINE_SECRET:-dflt}\"\n";
        let c = parse_files(with_default, &[], &files).unwrap();
        assert_eq!(c.http.tracking_secret.as_deref(), Some("dflt"));
        // Both set: the variable, as before `_FILE` was read.
        let both = [
            ("LINE_SECRET", "direct"),
            ("LINE_SECRET_FILE", "/run/secrets/line"),
        ];
        let c = parse_files(text, &both, &files).unwrap();
        assert_eq!(c.http.tracking_secret.as_deref(), Some("direct"));
        // Unset altogether: the message offers both ways.
        let e = parse_files(text, &[], &files).unwrap_err().to_string();
        assert!(e.contains("LINE_SECRET_FILE=/path/to/secret"), "{e}");
    }

    #[test]
    fn a_secret_file_that_cannot_be_read_is_named_with_the_key_and_the_fix() {
        let cases = [
            (
                "channel_secret = \"${file:/run/secrets/missing}\"",
                vec![],
                "/run/secrets/missing",
            ),
            (
                "channel_secret = \"${LINE_SECRET}\"",
                vec![("LINE_SECRET_FILE", "/run/secrets/gone")],
                "/run/secrets/gone (from LINE_SECRET_FILE)",
            ),
            (
                "channel_secret = \"${file:/run/forbidden}\"",
                vec![],
                "/run/forbidden",
            ),
        ];
        for (line, vars, named) in cases {
            let text = format!("[redis]\n[channels.line]\n{line}\n");
            let e = parse_files(&text, &vars, &[("/other", SECRET)])
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("/etc/tayori/tayori.toml: key `channels.line.channel_secret`: cannot read secret file ")
                    && e.contains(named)
                    && e.contains("mount the secret there, fix the path"),
                "{e}"
            );
            assert!(!e.contains(SECRET), "{e}");
        }
        let e = parse_files("[redis]\nurl = \"${file:/run/forbidden}\"\n", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("permission denied"), "{e}");
        // A default stands in for a missing file, not for one that cannot be read.
        let c = parse_files("[redis]\nprefix = \"${file:/nope:-dflt}\"\n", &[], &[]).unwrap();
        assert_eq!(c.redis.prefix, "dflt");
        assert!(parse_files(
            "[redis]\nprefix = \"${file:/run/forbidden:-d}\"\n",
            &[],
            &[]
        )
        .is_err());
    }

    #[test]
    fn a_secret_file_cannot_inject_toml_or_further_expansions() {
        let files = [("/s", "x\"\n[queue]\nread_batch = 0 ${NOPE}\n")];
        let c = parse_files("[redis]\npassword = \"${file:/s}\"\n", &[], &files).unwrap();
        assert_eq!(
            c.redis.password.as_deref(),
            Some("x\"\n[queue]\nread_batch = 0 ${NOPE}")
        );
        assert_eq!(c.queue.read_batch, 256);
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("redis://:s3cret@db:6379/0"),
            "redis://:***@db:6379/0"
        );
        assert_eq!(redact_url("rediss://app:p@ss@db"), "rediss://app:***@db");
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let e = parse("[redis]\n[queue]\nreclaim_idel = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reclaim_idel"), "{e}");
    }
}
