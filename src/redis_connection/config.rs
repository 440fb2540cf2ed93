//! `[redis]`: where Redis is and how writes are confirmed, as written in the config.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::units::duration;

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
    pub fn durability(&self) -> super::Durability {
        super::Durability {
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

fn default_prefix() -> String {
    "tayori".into()
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
