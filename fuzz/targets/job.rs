//! The `job` fuzz target: the CRM's JSON, as the worker reads it from the stream
//! (lossy UTF-8).

use super::*;

pub fn job(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let job = match registry::parse_job(&raw, MAX_JOB_BYTES) {
        Ok(job) => job,
        Err(e) => {
            assert!(!e.field.is_empty(), "an error names a field: {e:?}");
            return;
        }
    };
    assert!(
        !job.id.trim().is_empty() && job.id.len() <= 256 && !job.id.chars().any(char::is_control),
        "validation let through the id {:?}",
        job.id
    );
    for v in [&job.campaign, &job.customer_id] {
        assert!(
            v.as_ref()
                .is_none_or(|v| v.len() <= tayori::job::MAX_REF_BYTES),
            "validation let through a {}-byte campaign or customer id",
            v.as_ref().map_or(0, String::len)
        );
    }
    let _ = job.stream_channel();
    for hop in 0..job.fallback.len() + 2 {
        let _ = job.channel_at(hop);
    }
    let _ = (job.send_at(), job.expires_at(), job.is_best());
    if let Some(best) = job.best_time() {
        let _ = best.window(jiff::Timestamp::now());
    }
    for plugin in registry::PLUGINS {
        if let Some(address) = plugin.address(&job.to) {
            let masked = plugin.mask(address);
            assert!(masked.contains("***"), "{masked:?} is not masked");
        }
        let _ = plugin.recipient(&job.to);
    }
    // The file transport names files after the id: never outside its directory.
    let stem = tayori_channels::file::file_stem(&job.id);
    assert!(
        !stem.is_empty()
            && !stem.starts_with('.')
            && !stem.contains(['/', '\\', '\0'])
            && stem.len() <= 128 + 17,
        "file name {stem:?} for id {:?}",
        job.id
    );
    // What Tayori writes back (a `best` job with its choice) reads again.
    let again = serde_json::to_string(&job).expect("a parsed job serializes");
    if let Err(e) = registry::parse_job(&again, usize::MAX) {
        panic!("a re-serialized job does not parse again: {e}: {again}");
    }
}

pub fn job_seeds() -> Vec<Vec<u8>> {
    let full = json!({
        "id": "spring26-C1001", "campaign": "spring26", "customer_id": "C1001",
        "channel": "line", "fallback": ["email", "sms", "dm"],
        "to": {"name": "山田 太郎", "email": "taro@example.com",
               "line_user_id": "U4af4980629a1b2c3d4e5f60718293a4b", "phone": "090-1234-5678",
               "postal": {"postal_code": "100-0001", "address1": "東京都千代田区千代田1-1",
                          "address2": "", "name": "山田 太郎", "honorific": "様"},
               "timezone": "Asia/Tokyo"},
        "template": "fz", "vars": {"v": "{{ 7*7 }} https://shop.example.com/p/1", "points": 1200},
        "send_at": "2026-11-23T09:00:00+09:00", "expires_at": "2026-11-24T00:00:00+09:00",
        "tags": ["vip"], "kind": "marketing", "cap": "defer"
    });
    let inline = json!({
        "id": "inline-1", "channel": "email",
        "to": {"email": "a@example.com", "name": "Eve\r\nBcc: x@example.net"},
        "content": {
            "email": {"subject": "Hi {{ to.name }}", "html": "<a href=\"https://x.example/\">{{ v }}</a>"},
            "line": {"messages": [{"type": "text", "text": "{{ v }}"}]},
            "sms": {"text": "{{ v }} https://x.example/s"},
            "dm": {"fields": {"message1": "{{ v }}"}}
        },
        "vars": {"v": "{% for i in range(3) %}x{% endfor %}"}
    });
    let best = json!({
        "id": "best-1", "channel": "best", "channels": ["line", "email"],
        "to": {"email": "a@example.com"}, "template": "text", "vars": {"v": "x"},
        "send_at": {"best_within": "24h"}
    });
    let between = json!({
        "id": "best-2", "channel": "sms", "to": {"phone": "+819012345678"},
        "template": "fz", "vars": {"v": "hello"},
        "send_at": {"best_between": ["2026-11-23T09:00:00+09:00", "2026-11-24T09:00:00+09:00"]}
    });
    let runaway = json!({
        "id": "loop-1", "channel": "sms", "to": {"phone": "+819012345678"},
        "content": {"sms": {"text": "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"}}
    });
    vec![
        full.to_string().into_bytes(),
        inline.to_string().into_bytes(),
        best.to_string().into_bytes(),
        between.to_string().into_bytes(),
        runaway.to_string().into_bytes(),
        br#"{"id":"../../etc/passwd","channel":"dm","template":"fz","to":{"postal":{"postal_code":"1000001","address1":"a","name":"b"}},"vars":{"v":1}}"#.to_vec(),
        br#"{"id":"x","channel":"email","template":"t","vars":{"a":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}}"#.to_vec(),
        b"{not json".to_vec(),
    ]
}
