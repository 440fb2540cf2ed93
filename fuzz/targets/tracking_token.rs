//! The `tracking_token` fuzz target: sealed click/open/unsubscribe tokens and VERP
//! tokens.

use super::*;

thread_local! {
    pub static SEALER: Sealer = Sealer::new(SECRET);
}

pub fn tracking_token(data: &[u8]) {
    SEALER.with(|s| {
        let text = String::from_utf8_lossy(data);
        for purpose in [Purpose::Open, Purpose::Click, Purpose::Unsubscribe] {
            let _ = s.open(purpose, &text);
        }
        let p = parts(data, 6);
        let _ = s.open_verp(&p[0], &p[1]);

        // What is sealed opens to itself, for its purpose only; one changed
        // character opens to nothing.
        let t = Tracked {
            channel: registry::ids()
                .nth(pick(data, registry::PLUGINS.len()))
                .unwrap_or(tayori::channel::email::ID),
            job_id: p[0].clone(),
            address: p[1].clone(),
            campaign: non_empty(&p[2]),
            customer_id: non_empty(&p[3]),
            sent_at: data
                .iter()
                .fold(0i64, |a, &b| a.rotate_left(8) ^ i64::from(b)),
            url: non_empty(&p[4]),
        };
        let token = s.seal(Purpose::Click, &t);
        // `open` refuses tokens over 32 KiB (links of about 20 KB): no mail
        // client follows a longer one anyway.
        if token.len() > 32 * 1024 {
            return;
        }
        assert_eq!(s.open(Purpose::Click, &token).as_ref(), Some(&t));
        assert_eq!(s.open(Purpose::Unsubscribe, &token), None);
        let mut chars: Vec<char> = token.chars().collect();
        let i = pick(data, chars.len().saturating_sub(1).max(1));
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(s.open(Purpose::Click, &tampered), None, "tampered at {i}");

        let verp = s.verp_token(&t.job_id, &t.address);
        assert_eq!(
            s.open_verp(&verp, &t.address).as_deref(),
            Some(t.job_id.as_str())
        );
        assert_eq!(s.open_verp(&verp, &format!("{}x", t.address.trim())), None);
        let stored = s.stored_verp_token(&t.job_id, &t.address);
        assert!(s.opens_stored_verp(&stored, &t.job_id, &t.address));
        assert!(!s.opens_stored_verp(&stored, &t.job_id, &format!("{}x", t.address.trim())));
        if let Some(key) = Sealer::stored_verp_key(&p[5]) {
            let _ = Sealer::verp_bucket(&key);
        }
        let bucketed = s.bucketed_verp_token([1, 2, 3, 4], &t.job_id, &t.address);
        assert!(s.opens_stored_verp(&bucketed, &t.job_id, &t.address));

        // Short-link records: any bytes under any code open to nothing or to a
        // well-formed record, never a panic; a sealed one opens to itself, and one
        // changed byte to nothing.
        if let Some((bucket, field)) = tayori::tracking::token::link_code_parts(&p[5]) {
            let _ = s.open_link(bucket, field, data);
        }
        let bucket = [data.first().copied().unwrap_or(0), 1, 2];
        let content = s.content_ref(&t);
        let (field, value) = s.seal_link(bucket, &t, content);
        let opened = s
            .open_link(bucket, field, &value)
            .expect("a sealed link record opens");
        assert_eq!(
            (
                opened.job_id.as_str(),
                opened.address.as_str(),
                opened.customer_id.as_deref(),
                opened.content_ref
            ),
            (
                t.job_id.as_str(),
                t.address.as_str(),
                t.customer_id.as_deref(),
                content
            )
        );
        let mut changed = value.clone();
        let i = pick(data, changed.len());
        changed[i] ^= 1;
        assert_eq!(s.open_link(bucket, field, &changed), None, "changed at {i}");
    });
}

pub fn token_seeds() -> Vec<Vec<u8>> {
    let s = Sealer::new(SECRET);
    let t = Tracked {
        channel: tayori::channel::email::ID,
        job_id: "spring26-C1001".into(),
        address: "taro@example.com".into(),
        campaign: Some("spring26".into()),
        customer_id: Some("C1001".into()),
        sent_at: 1_790_000_000,
        url: Some("https://shop.example.com/p/1".into()),
    };
    vec![
        s.seal(Purpose::Click, &t).into_bytes(),
        s.seal(Purpose::Unsubscribe, &t).into_bytes(),
        join(&[
            &s.verp_token("spring26-C1001", "taro@example.com"),
            "taro@example.com",
        ]),
        join(&["job", "a@example.com", "", "", "javascript:alert(1)", ""]),
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
    ]
}
