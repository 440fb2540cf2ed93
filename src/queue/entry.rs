//! A job-stream entry as read from Redis.

use redis::Value;

use crate::keys::Partition;

/// Routing state Tayori carries beside the job when it writes an entry back
/// (retry, fallback, re-driven dead letter). A CRM's own entries have none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    /// Send attempts already made on this channel.
    pub attempt: u32,
    /// The entry id the job first arrived as: its identity for deduplication.
    pub origin: Option<String>,
    /// When the job first arrived (ms since the epoch), for `retry.max_age`.
    pub first_at_ms: Option<i64>,
    /// Position in `[channel] + fallback`: 0 is the job's own channel.
    pub hop: usize,
    /// A rate-limit slot reserved for the job (ms since the epoch): coming back at
    /// that time, it sends without taking another permit of that limit.
    pub slot_ms: Option<i64>,
    /// A best-time job already scheduled, by this rule: it sends when it comes back.
    pub scheduled: Option<String>,
    /// How many times `dead retry` has put the job back: its events may then
    /// repeat ids already written, and are written only if their ids are new.
    pub redrive: u32,
}

impl Routing {
    /// Stream fields for writing a job back, with its routing.
    pub fn fields(&self, job: &str) -> Vec<(String, String)> {
        let mut f = vec![
            ("job".to_owned(), job.to_owned()),
            ("attempt".to_owned(), self.attempt.to_string()),
        ];
        if let Some(o) = &self.origin {
            f.push(("origin".to_owned(), o.clone()));
        }
        if let Some(t) = self.first_at_ms {
            f.push(("first_at".to_owned(), t.to_string()));
        }
        f.push(("hop".to_owned(), self.hop.to_string()));
        if let Some(t) = self.slot_ms {
            f.push(("slot".to_owned(), t.to_string()));
        }
        if let Some(rule) = &self.scheduled {
            f.push(("sched".to_owned(), rule.clone()));
        }
        if self.redrive > 0 {
            f.push(("redrive".to_owned(), self.redrive.to_string()));
        }
        f
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The partition of the stream the entry is in.
    pub partition: Partition,
    /// The stream entry id (unique within its stream only).
    pub id: String,
    /// The raw job JSON (`None` if the entry has no `job` field).
    pub job: Option<String>,
    pub routing: Routing,
    /// How many times the group has delivered this entry (1 for a fresh read).
    pub deliveries: u32,
}

impl Entry {
    /// The job's identity for deduplication: its first entry id.
    pub fn origin(&self) -> &str {
        self.routing.origin.as_deref().unwrap_or(&self.id)
    }

    /// How long ago the job first arrived.
    pub fn age(&self) -> std::time::Duration {
        let now = jiff::Timestamp::now().as_millisecond();
        std::time::Duration::from_millis((now - self.first_at_ms()).max(0) as u64)
    }

    /// When the job first arrived, in ms since the epoch (from the entry id if not
    /// carried), never in the future: the field may have been written by anyone.
    pub fn first_at_ms(&self) -> i64 {
        let now = jiff::Timestamp::now().as_millisecond();
        self.routing
            .first_at_ms
            .or_else(|| self.origin().split('-').next()?.parse().ok())
            .unwrap_or(now)
            .clamp(0, now)
    }
}

/// Appends the entries of an XREADGROUP/XAUTOCLAIM entry list.
pub(super) fn parse_entries(
    list: Value,
    partition: Partition,
    deliveries: u32,
    out: &mut Vec<Entry>,
) {
    let Value::Array(items) = list else { return };
    for item in items {
        let Value::Array(mut pair) = item else {
            continue;
        };
        if pair.len() != 2 {
            continue;
        }
        let fields = pair.pop();
        let Some(Value::BulkString(id)) = pair.pop() else {
            continue;
        };
        let mut entry = Entry {
            partition,
            id: String::from_utf8_lossy(&id).into_owned(),
            job: None,
            routing: Routing::default(),
            deliveries,
        };
        // A deleted entry still pending in the group comes back with nil fields.
        let flat = match fields {
            Some(Value::Array(f)) => f,
            Some(Value::Map(m)) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => Vec::new(),
        };
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let (Value::BulkString(k), Value::BulkString(v)) = (k, v) else {
                continue;
            };
            let v = String::from_utf8_lossy(&v).into_owned();
            match k.as_slice() {
                b"job" => entry.job = Some(v),
                b"attempt" => entry.routing.attempt = v.parse().unwrap_or(0),
                b"origin" => entry.routing.origin = Some(v),
                b"first_at" => entry.routing.first_at_ms = v.parse().ok(),
                b"hop" => entry.routing.hop = v.parse().unwrap_or(0),
                b"slot" => entry.routing.slot_ms = v.parse().ok(),
                b"sched" => entry.routing.scheduled = Some(v),
                b"redrive" => entry.routing.redrive = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        out.push(entry);
    }
}
