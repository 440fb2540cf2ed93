//! The layout marker `P:schema` (`version`, `partitions`): a daemon or command
//! of this build works only on data of its own layout, and says how to get there
//! when the data is of another.

use redis::Value;

use super::Queue;
use crate::keys::{v1, SCHEMA_VERSION};

/// Why this build will not use the data it found.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "Redis holds schema-1 data ({key} and others, from a Tayori before partitions): \
         stop the daemons and run `tayori migrate` (docs/operations.md, \"Upgrading from schema 1\")"
    )]
    Old { key: String },
    #[error(
        "Redis holds data laid out for redis.partitions = {recorded} ({schema}), but the config says \
         {configured}: set redis.partitions = {recorded}, or stop the daemons and run `tayori migrate`"
    )]
    Partitions {
        schema: String,
        recorded: u32,
        configured: u32,
    },
    #[error(
        "Redis holds data of schema {found} ({schema}); this build reads schema {SCHEMA_VERSION}: \
         run the Tayori version that wrote it, or a newer one"
    )]
    Unknown { schema: String, found: String },
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

impl Queue {
    /// Checks `P:schema` against this build and `redis.partitions`; on a Redis
    /// with no marker and no schema-1 data, writes the marker. Two starts racing
    /// with different partition counts: the first marker written wins and the
    /// other start is refused.
    pub async fn check_schema(&self) -> Result<(), SchemaError> {
        let keys = self.keys();
        let schema = keys.schema();
        let mut c = self.conn();
        let mut recorded: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&schema)
            .query_async(&mut c)
            .await?;
        // Schema-1 keys refuse the start even with a marker: a CRM still writing
        // the old names after an upgrade would otherwise go unnoticed. One EXISTS
        // per key: on a cluster they are in different slots.
        let mut batch = self.batch();
        let markers = v1::markers(keys.prefix());
        for key in &markers {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(key);
            batch.add(key, exists);
        }
        let found = batch.query(&c).await?;
        if let Some((key, _)) = markers
            .iter()
            .zip(found)
            .find(|(_, v)| matches!(v, Value::Int(n) if *n > 0))
        {
            return Err(SchemaError::Old { key: key.clone() });
        }
        if recorded.is_empty() {
            let _: () = redis::pipe()
                .cmd("HSETNX")
                .arg(&schema)
                .arg("version")
                .arg(SCHEMA_VERSION)
                .ignore()
                .cmd("HSETNX")
                .arg(&schema)
                .arg("partitions")
                .arg(keys.partitions())
                .ignore()
                .query_async(&mut c)
                .await?;
            recorded = redis::cmd("HGETALL")
                .arg(&schema)
                .query_async(&mut c)
                .await?;
        }
        let get = |f: &str| {
            recorded
                .iter()
                .find(|(k, _)| k == f)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let version = get("version");
        if version != SCHEMA_VERSION.to_string() {
            return Err(SchemaError::Unknown {
                schema,
                found: version.to_owned(),
            });
        }
        match get("partitions").parse::<u32>() {
            Ok(n) if n == keys.partitions() => Ok(()),
            Ok(n) => Err(SchemaError::Partitions {
                schema,
                recorded: n,
                configured: keys.partitions(),
            }),
            Err(_) => Err(SchemaError::Unknown {
                schema,
                found: format!("{version} with partitions {:?}", get("partitions")),
            }),
        }
    }
}
