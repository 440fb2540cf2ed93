//! A batch of commands whose keys may sit in different Redis Cluster slots.
//!
//! A cluster takes a pipeline only when all its keys share a slot (the redis
//! crate refuses a mixed one with CROSSSLOT). [`Grouped`] keeps one pipeline per
//! hash tag and sends them all at once on the multiplexed connection, so a batch
//! still costs one round trip's wait; on a standalone Redis a batch whose keys
//! share a tag (a partition's) is one pipeline, as before.

use redis::{Cmd, Pipeline, Value};

use super::RedisResult;
use crate::keys::hash_tag;
use crate::redis_connection::RedisConnection;

pub struct Grouped {
    /// Per hash tag: its pipeline and, per command kept, the reply's position.
    groups: Vec<(String, Pipeline, Vec<usize>)>,
    kept: usize,
    /// Split by slot (a cluster), or one pipeline for everything.
    by_slot: bool,
}

impl Grouped {
    /// `by_slot`: the connection is a cluster's.
    pub fn new(by_slot: bool) -> Grouped {
        Grouped {
            groups: Vec::new(),
            kept: 0,
            by_slot,
        }
    }

    fn pipe(&mut self, key: &str) -> &mut (String, Pipeline, Vec<usize>) {
        let tag = if self.by_slot { hash_tag(key) } else { "" };
        let i = match self.groups.iter().position(|(t, _, _)| t == tag) {
            Some(i) => i,
            None => {
                self.groups
                    .push((tag.to_owned(), redis::pipe(), Vec::new()));
                self.groups.len() - 1
            }
        };
        &mut self.groups[i]
    }

    /// Adds `cmd`, whose keys share `key`'s slot; its reply is returned.
    pub fn add(&mut self, key: &str, cmd: Cmd) -> &mut Grouped {
        let at = self.kept;
        let (_, pipe, slots) = self.pipe(key);
        pipe.add_command(cmd);
        slots.push(at);
        self.kept += 1;
        self
    }

    /// Adds `cmd` without returning its reply (an error still fails the batch).
    pub fn add_ignored(&mut self, key: &str, cmd: Cmd) -> &mut Grouped {
        let (_, pipe, _) = self.pipe(key);
        pipe.add_command(cmd).ignore();
        self
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Sends every pipeline; the replies of the commands added with
    /// [`Grouped::add`], in the order they were added.
    pub async fn query(self, conn: &RedisConnection) -> RedisResult<Vec<Value>> {
        let mut out = vec![Value::Nil; self.kept];
        let sends = self.groups.into_iter().map(|(_, pipe, slots)| {
            let mut c = conn.clone();
            async move {
                let replies: Vec<Value> = pipe.query_async(&mut c).await?;
                Ok::<_, redis::RedisError>((slots, replies))
            }
        });
        for (slots, replies) in futures_util::future::try_join_all(sends).await? {
            for (at, reply) in slots.into_iter().zip(replies) {
                out[at] = reply;
            }
        }
        Ok(out)
    }
}
