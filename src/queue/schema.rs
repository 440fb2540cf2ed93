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
    /// Where and since when dedupe claims are compact (`claims.rs`): a marker
    /// written before them gets `claims_since` now (the string claims of the
    /// layout before are read for one window more) and `claims_partitions` the
    /// partition count (claims stay where they are when partitions change).
    async fn read_claims_layout(
        &self,
        schema: &str,
        recorded: &[(String, String)],
    ) -> Result<(), SchemaError> {
        let get = |f: &str| {
            recorded
                .iter()
                .find(|(k, _)| k == f)
                .map(|(_, v)| v.clone())
        };
        let (mut since, mut partitions) = (get("claims_since"), get("claims_partitions"));
        if since.is_none() || partitions.is_none() {
            let mut c = self.conn();
            let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut c).await?;
            let (s, p): (String, String) = redis::pipe()
                .cmd("HSETNX")
                .arg(schema)
                .arg("claims_since")
                .arg(secs * 1000 + micros / 1000)
                .ignore()
                .cmd("HSETNX")
                .arg(schema)
                .arg("claims_partitions")
                .arg(self.keys().partitions())
                .ignore()
                .cmd("HGET")
                .arg(schema)
                .arg("claims_since")
                .cmd("HGET")
                .arg(schema)
                .arg("claims_partitions")
                .query_async(&mut c)
                .await?;
            (since, partitions) = (Some(s), Some(p));
        }
        let since = since.and_then(|s| s.parse::<i64>().ok());
        let partitions = partitions
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|p| (1..=crate::keys::MAX_PARTITIONS).contains(p));
        match (since, partitions) {
            (Some(since), Some(partitions)) => {
                self.claims().set_layout(since, partitions);
                Ok(())
            }
            _ => Err(SchemaError::Unknown {
                schema: schema.to_owned(),
                found: format!(
                    "claims_since {:?}, claims_partitions {:?}",
                    get("claims_since"),
                    get("claims_partitions")
                ),
            }),
        }
    }

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
            // A new Redis never had the claims' string keys: `claims_since` 0.
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
                .cmd("HSETNX")
                .arg(&schema)
                .arg("claims_since")
                .arg(0)
                .ignore()
                .cmd("HSETNX")
                .arg(&schema)
                .arg("claims_partitions")
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
            Ok(n) if n == keys.partitions() => {
                self.read_claims_layout(&schema, &recorded).await?;
                Ok(())
            }
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
