//! The TOML configuration: what ops write, checked at start with errors that
//! name the file, the key and the fix.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tayori_channels::ChannelKind;

pub const DEFAULT_PATH: &str = "config/tayori.toml";

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
    #[serde(default)]
    pub channels: ChannelsConfig,
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
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` (TLS), `valkey://`, `valkeys://`; default
    /// `redis://127.0.0.1:6379`. Not with `sentinels`.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The ACL user and password (override the URL's).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// PEM CA bundle that signed the server's certificate; default: Mozilla's roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), for mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// The name the server's certificate carries, when it is not the host connected to.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Sentinel addresses (`redis://host:26379`, or `rediss://` for TLS to the
    /// sentinels and the data nodes): the primary is looked up through them.
    #[serde(default)]
    pub sentinels: Vec<String>,
    /// The service name the sentinels monitor (`sentinel monitor <name> …`).
    #[serde(default)]
    pub master_name: Option<String>,
    #[serde(default)]
    pub sentinel_username: Option<String>,
    #[serde(default)]
    pub sentinel_password: Option<String>,
    /// Redis Cluster seed nodes (`redis://10.0.0.1:7000`, or `rediss://`): the
    /// cluster's other nodes are discovered from them. Not with `url` or `sentinels`.
    #[serde(default)]
    pub cluster: Vec<String>,
    /// How many partitions the job streams, results streams, delayed sets and
    /// dead letters are split into (docs/scaling.md). Changed only by `tayori migrate`.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// After each write that must survive a failover (a finish batch, a reaction,
    /// an enqueue pipeline), wait for this many replicas to have it (`WAIT`).
    #[serde(default)]
    pub wait_replicas: u32,
    #[serde(default = "default_wait_timeout", with = "duration")]
    pub wait_timeout: Duration,
}

impl RedisConfig {
    /// Key names for `prefix` and `partitions`.
    pub fn keys(&self) -> crate::keys::Keys {
        crate::keys::Keys::new(&self.prefix, self.partitions)
    }

    /// How many replicas must have a write before it counts (`WAIT`).
    pub fn durability(&self) -> crate::queue::Durability {
        crate::queue::Durability {
            replicas: self.wait_replicas,
            timeout: self.wait_timeout,
        }
    }

    /// The same settings with empty optional strings as unset, so a config can
    /// leave a key to the environment: `tls_ca_file = "${TAYORI_REDIS_CA_FILE:-}"`.
    pub fn without_empty_strings(&self) -> RedisConfig {
        fn text(o: &Option<String>) -> Option<String> {
            o.clone().filter(|s| !s.trim().is_empty())
        }
        fn path(o: &Option<PathBuf>) -> Option<PathBuf> {
            o.clone().filter(|p| !p.as_os_str().is_empty())
        }
        RedisConfig {
            url: text(&self.url),
            prefix: self.prefix.clone(),
            username: text(&self.username),
            password: text(&self.password),
            tls_ca_file: path(&self.tls_ca_file),
            tls_cert_file: path(&self.tls_cert_file),
            tls_key_file: path(&self.tls_key_file),
            tls_server_name: text(&self.tls_server_name),
            sentinels: self
                .sentinels
                .iter()
                .filter(|s| !s.trim().is_empty())
                .cloned()
                .collect(),
            master_name: text(&self.master_name),
            cluster: self
                .cluster
                .iter()
                .filter(|s| !s.trim().is_empty())
                .cloned()
                .collect(),
            partitions: self.partitions,
            sentinel_username: text(&self.sentinel_username),
            sentinel_password: text(&self.sentinel_password),
            wait_replicas: self.wait_replicas,
            wait_timeout: self.wait_timeout,
        }
    }

    /// The URL of a direct connection (the default when none is set).
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_REDIS_URL)
    }
}

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

fn default_partitions() -> u32 {
    1
}

fn default_wait_timeout() -> Duration {
    Duration::from_millis(100)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Empty disables the HTTP server.
    pub listen: String,
    pub public_url: String,
    pub tracking_secret: Option<String>,
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            tracking_secret: None,
            repeat_window: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
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
    /// Approximate cap on the results stream (XADD MAXLEN ~); 0 keeps everything.
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    pub email: Option<ChannelConfig>,
    pub line: Option<ChannelConfig>,
    pub sms: Option<ChannelConfig>,
    pub dm: Option<ChannelConfig>,
}

impl ChannelsConfig {
    pub fn get(&self, kind: ChannelKind) -> Option<&ChannelConfig> {
        match kind {
            ChannelKind::Email => self.email.as_ref(),
            ChannelKind::Line => self.line.as_ref(),
            ChannelKind::Sms => self.sms.as_ref(),
            ChannelKind::Dm => self.dm.as_ref(),
        }
    }

    /// The enabled channels, in a fixed order.
    pub fn enabled(&self) -> impl Iterator<Item = (ChannelKind, &ChannelConfig)> {
        ChannelKind::ALL
            .into_iter()
            .filter_map(|k| self.get(k).map(|c| (k, c)))
    }
}

/// Settings every channel has, plus the channel-specific ones kept as TOML
/// until their adapters read them.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelConfig {
    /// `file` writes what would be sent into `dir`; `null` encodes and discards (benchmarks).
    pub transport: Option<String>,
    pub dir: Option<PathBuf>,
    #[serde(default = "default_rate")]
    pub rate: Rate,
    pub burst: Option<NonZeroU32>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// `global` (default): `rate` and `burst` hold for every daemon on this Redis
    /// together; `daemon`: for each process on its own.
    #[serde(default)]
    pub rate_scope: RateScope,
    /// Email: the From header.
    pub from: Option<String>,
    pub reply_to: Option<String>,
    /// Provider-specific settings (`[channels.email.smtp]`, `api_base`, …).
    #[serde(flatten)]
    pub provider: BTreeMap<String, toml::Value>,
}

impl ChannelConfig {
    /// How long the channel pauses when its provider refuses it (a revoked token)
    /// without saying for how long: `pause`, default 60 s.
    pub fn pause(&self) -> Duration {
        self.setting("pause")
            .and_then(|p| duration::parse(p).ok())
            .unwrap_or(Duration::from_secs(60))
    }

    /// A provider-specific string setting (`api_base`, `channel_secret`, …).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.provider.get(key).and_then(toml::Value::as_str)
    }
}

/// Whom a channel's rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateScope {
    /// All daemons together, through Redis: what a provider counts per account.
    #[default]
    Global,
    /// Each process on its own.
    Daemon,
}

/// A rate such as `100/s`, `6000/min` or `1000/h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    pub fn quota(&self, burst: Option<NonZeroU32>) -> governor::Quota {
        let period = self.per / self.count.get();
        let period = period.max(Duration::from_nanos(1));
        governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_second(self.count))
            .allow_burst(burst.unwrap_or_else(|| self.default_burst()))
    }
}

impl Rate {
    /// 100 ms worth of sends (at least 1): smooth enough that a provider counting per
    /// second never sees a spike, and above the 1 ms timer granularity that makes a
    /// burst of 1 lose slots at high rates (measured: 1,640/s for 2,000/s).
    pub fn default_burst(&self) -> NonZeroU32 {
        let per_100ms = u128::from(self.count.get()) * 100 / self.per.as_millis().max(1);
        NonZeroU32::new(u32::try_from(per_100ms).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hint = || {
            format!(
                "invalid rate {s:?}: write COUNT/UNIT, e.g. \"100/s\", \"6000/min\", \"1000/h\""
            )
        };
        let (count, unit) = s.split_once('/').ok_or_else(hint)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| hint())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86400),
            _ => return Err(hint()),
        };
        Ok(Rate { count, per })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_prefix() -> String {
    "tayori".into()
}
fn default_rate() -> Rate {
    Rate {
        count: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
        per: Duration::from_secs(1),
    }
}
fn default_concurrency() -> usize {
    16
}

/// Durations written as `30s`, `10m`, `7d`, `1h 30m` (jiff's friendly format).
pub mod duration {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn parse(s: &str) -> Result<Duration, String> {
        // jiff's durations stop at hours (days vary in calendars); a queue's day is 24 h.
        if let Some(days) = s
            .trim()
            .strip_suffix('d')
            .and_then(|n| n.trim().parse::<u64>().ok())
        {
            return Ok(Duration::from_secs(days * 86_400));
        }
        let d: jiff::SignedDuration = s.parse().map_err(|_| {
            format!(
                "invalid duration {s:?}: write e.g. \"500ms\", \"30s\", \"10m\", \"24h\", \"7d\""
            )
        })?;
        Duration::try_from(d).map_err(|_| format!("invalid duration {s:?}: must not be negative"))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
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

    /// Parses config text; `env` supplies `${VAR}` values (the process environment in production).
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.clone(),
            message: e.to_string(),
        })?;
        expand_env(&mut value, &mut String::new(), &env).map_err(|(key, message)| {
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
        crate::redis_connection::RedisTarget::from_config(&self.redis)?;
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
        if self.queue.read_batch == 0 {
            return key("queue.read_batch", "must be at least 1".into());
        }
        if self.retry.max_attempts == 0 {
            return key("retry.max_attempts", "must be at least 1".into());
        }
        crate::policy::Policy::from_config(&self.policy)?;
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
        for (kind, ch) in self.channels.enabled() {
            let k = |f: &str| format!("channels.{kind}.{f}");
            if ch.concurrency == 0 {
                return key(&k("concurrency"), "must be at least 1".into());
            }
            if let Some(p) = ch.setting("pause") {
                duration::parse(p).map_err(|m| (k("pause"), m))?;
            }
            match ch.transport.as_deref() {
                Some("file") if ch.dir.is_none() => {
                    return key(
                        &k("dir"),
                        "transport = \"file\" needs a directory: add dir = \"./outbox/...\"".into(),
                    )
                }
                Some("file") | Some("null") => {}
                None | Some("smtp") if kind == ChannelKind::Email => {
                    let settings = crate::email_settings::EmailSettings::from_channel(ch)?;
                    settings.smtp_settings(ch)?;
                }
                None | Some("api") if kind == ChannelKind::Sms => {
                    let settings = crate::sms_settings::SmsSettings::from_channel(ch)?;
                    settings.check_region()?;
                    match settings.provider.as_deref() {
                        Some("twilio") => {
                            settings.twilio(&self.http.public_url)?;
                        }
                        Some("vonage") => {
                            let v = settings.vonage(&self.http.public_url)?;
                            tayori_channels::sms::vonage::VonageClient::new(v, settings.limits())
                                .map_err(|m| (k("vonage"), m))?;
                        }
                        Some("http") => {
                            let h = settings.http_gateway()?;
                            tayori_channels::sms::http_gateway::HttpGatewayClient::new(
                                h,
                                settings.limits(),
                            )
                            .map_err(|m| (k("http"), m))?;
                        }
                        other => {
                            return key(
                                &k("provider"),
                                format!(
                                "provider {other:?} is not available: use provider = \"twilio\", \"vonage\" or \"http\", \
                                     or transport = \"file\" with dir = \"...\""
                            ),
                            )
                        }
                    }
                }
                None | Some("api") if kind == ChannelKind::Line => {
                    if ch
                        .setting("channel_access_token")
                        .map(str::trim)
                        .is_none_or(str::is_empty)
                    {
                        return key(
                            &k("channel_access_token"),
                            "required for the Messaging API: channel_access_token = \"${LINE_CHANNEL_ACCESS_TOKEN}\"".into(),
                        );
                    }
                    if let Some(t) = ch.setting("timeout") {
                        duration::parse(t).map_err(|m| (k("timeout"), m))?;
                    }
                }
                None | Some("print") if kind == ChannelKind::Dm => {
                    crate::dm_settings::DmSettings::from_channel(ch)?.print_settings(ch)?;
                }
                other => {
                    let name = other.unwrap_or("(default)");
                    return key(
                        &k("transport"),
                        format!(
                            "transport {name:?} is not available in this build; use transport = \"file\" with dir = \"...\" \
                             (writes what would be sent) until the {kind} provider adapter lands"
                        ),
                    );
                }
            }
            if kind == ChannelKind::Email {
                let settings = crate::email_settings::EmailSettings::from_channel(ch)?;
                let options = settings.encoder_options(ch)?;
                tayori_channels::email::EmailEncoder::with_options(&options).map_err(|m| {
                    let key = if m.contains("DKIM") {
                        "dkim"
                    } else if m.contains("header") {
                        "headers"
                    } else if m.contains("unsubscribe") {
                        "unsubscribe_mailto"
                    } else if ch.reply_to.as_deref().is_some_and(|r| m.contains(r)) {
                        "reply_to"
                    } else {
                        "from"
                    };
                    (k(key), m)
                })?;
                if self
                    .http
                    .tracking_secret
                    .as_deref()
                    .is_none_or(|s| s.trim().len() < 16)
                {
                    return key(
                        "http.tracking_secret",
                        "email needs it (16+ characters): it signs unsubscribe, tracking and bounce \
                         links. Set tracking_secret = \"${TAYORI_TRACKING_SECRET}\" and export \
                         TAYORI_TRACKING_SECRET=$(openssl rand -hex 32)"
                            .into(),
                    );
                }
                if let Some(base) = settings.verp_base(ch) {
                    crate::tracking::Tracker::new(
                        &self.tracking_settings_for(&settings, Some(base)),
                    )
                    .map_err(|m| (k("envelope_from"), m))?;
                }
            }
        }
        Ok(())
    }

    /// Tracking, if a tracking secret is set and a channel uses it: email (pixel,
    /// links, unsubscribe, VERP) and LINE (`uri` actions, `track_clicks`, default on).
    pub fn tracking(&self) -> Option<crate::tracking::TrackingSettings> {
        self.http
            .tracking_secret
            .as_deref()
            .filter(|s| !s.trim().is_empty())?;
        let line_clicks = self.channels.line.as_ref().is_some_and(|l| {
            l.provider
                .get("track_clicks")
                .and_then(toml::Value::as_bool)
                .unwrap_or(true)
        });
        let sms_clicks = self.channels.sms.as_ref().is_some_and(|ch| {
            crate::sms_settings::SmsSettings::from_channel(ch)
                .map(|s| s.track_clicks.unwrap_or(true))
                .unwrap_or(false)
        });
        let email = self.channels.email.as_ref().and_then(|ch| {
            crate::email_settings::EmailSettings::from_channel(ch)
                .ok()
                .map(|s| (ch, s))
        });
        let mut settings = match email {
            Some((ch, s)) => self.tracking_settings_for(&s, s.verp_base(ch)),
            None if line_clicks || sms_clicks => crate::tracking::TrackingSettings {
                secret: self.http.tracking_secret.clone().unwrap_or_default(),
                public_url: self.http.public_url.clone(),
                opens: false,
                clicks: false,
                verp: None,
                line_clicks: false,
                sms_clicks: false,
            },
            None => return None,
        };
        settings.line_clicks = line_clicks;
        settings.sms_clicks = sms_clicks;
        Some(settings)
    }

    fn tracking_settings_for(
        &self,
        settings: &crate::email_settings::EmailSettings,
        verp: Option<String>,
    ) -> crate::tracking::TrackingSettings {
        crate::tracking::TrackingSettings {
            secret: self.http.tracking_secret.clone().unwrap_or_default(),
            public_url: self.http.public_url.clone(),
            opens: settings.track_opens,
            clicks: settings.track_clicks,
            verp,
            line_clicks: false,
            sms_clicks: false,
        }
    }

    /// The Redis URL with any password replaced, for messages and logs.
    pub fn redis_url_redacted(&self) -> String {
        redact_url(self.redis.url())
    }

    /// Where Redis is and how to reach it (checked by `load`, so this only fails
    /// for a config built without it).
    pub fn redis_target(&self) -> Result<crate::redis_connection::RedisTarget, ConfigError> {
        crate::redis_connection::RedisTarget::from_config(&self.redis).map_err(|(key, message)| {
            ConfigError::Key {
                file: self.source.display().to_string(),
                key,
                message,
            }
        })
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

/// `redis://user:secret@host` → `redis://user:***@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo
        .split_once(':')
        .map(|(u, _)| format!("{u}:***"))
        .unwrap_or_else(|| "***".to_owned());
    format!("{scheme}://{user}@{host}")
}

/// Replaces `${VAR}` (or `${VAR:-default}`) in every string value. Expansion happens on parsed values,
/// never on the raw text, so a variable cannot inject TOML.
fn expand_env(
    value: &mut toml::Value,
    path: &mut String,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            *s = expand_str(s, env).map_err(|m| (path.clone(), m))?;
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                expand_env(v, path, env)?;
                path.truncate(len);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(v, path, env)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(s: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
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
        let value = env(name).or_else(|| default.map(str::to_owned)).ok_or_else(|| {
            format!("environment variable {name} is not set: export {name}=... before starting tayori")
        })?;
        out.push_str(&value);
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
    fn rates_and_durations() {
        let r: Rate = "6000/min".parse().unwrap();
        assert_eq!(r.count.get(), 6000);
        assert_eq!(r.per, Duration::from_secs(60));
        assert!("fast".parse::<Rate>().is_err());
        assert_eq!("2000/s".parse::<Rate>().unwrap().default_burst().get(), 200);
        assert_eq!("10/s".parse::<Rate>().unwrap().default_burst().get(), 1);
        assert_eq!(
            "6000/min".parse::<Rate>().unwrap().default_burst().get(),
            10
        );
        assert_eq!(duration::parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(
            duration::parse("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            duration::parse("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert!(duration::parse("soon").is_err());
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
        let e = parse("[redis]\n[channels.sms]\nrate = \"lots\"\ntransport = \"null\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("channels.sms.rate") && e.contains("100/s"),
            "{e}"
        );
        let e = parse("[redis]\n[channels.dm]\ntransport = \"file\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("channels.dm.dir"), "{e}");
        let e = parse("[redis]\n[queue]\nreclaim_idel = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("reclaim_idel"), "{e}");
    }
}
