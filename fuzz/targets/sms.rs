//! The `sms` fuzz target: segment counting and phone numbers.

use super::*;

pub fn sms(data: &[u8]) {
    let p = parts(data, 2);
    let text = &p[0];
    let s = segments::count(text);
    assert!(s.count >= 1);
    let (single, multi) = match s.encoding {
        segments::Encoding::Gsm7 => {
            let septets: u32 = text
                .chars()
                .map(|c| segments::gsm7_septets(c).unwrap_or(0))
                .sum();
            assert_eq!(s.units, septets);
            (160_u32, 153_u32)
        }
        segments::Encoding::Ucs2 => {
            assert_eq!(s.units as usize, text.encode_utf16().count());
            assert!(text.chars().any(|c| segments::gsm7_septets(c).is_none()));
            (70_u32, 67_u32)
        }
    };
    if s.count == 1 {
        assert!(s.units <= single);
    } else {
        assert!(s.units > single);
        // Whole characters per segment: never fewer segments than units allow,
        // and at most one segment lost per character boundary pushed over.
        assert!(u64::from(s.count) * u64::from(multi) >= u64::from(s.units));
        assert!(u64::from(s.count - 1) * u64::from(multi - 1) < u64::from(s.units));
    }
    let _ = segments::check_limit(&s, 10);
    for region in ["JP", "US", "ZZ", &p[1]] {
        if let Ok(n) = phone::to_e164(text, region) {
            assert!(
                n.starts_with('+') && n.len() <= 16 && n[1..].bytes().all(|b| b.is_ascii_digit()),
                "{n:?} is not E.164"
            );
            assert_eq!(
                phone::to_e164(&n, "ZZ").as_deref(),
                Ok(n.as_str()),
                "not idempotent"
            );
        }
    }
    let message = Message {
        job_id: "j".into(),
        attempt: 1,
        idempotency_key: "j".into(),
        campaign: None,
        customer_id: None,
        to: Recipient {
            name: None,
            address: p[1].clone(),
            postal: None,
        },
        content: Content::Sms { text: text.clone() },
    };
    let limits = tayori_channels::sms::SmsLimits {
        default_region: "JP".into(),
        max_segments: 10,
    };
    let _ = tayori_channels::sms::prepare(&message, &limits);
}

pub fn sms_seeds() -> Vec<Vec<u8>> {
    vec![
        join(&[
            "山田様、春のセール開始 — 1200ポイントをお持ちです",
            "090-1234-5678",
        ]),
        join(&[&"^{}[]~|€\\".repeat(20), "+1 (415) 555-0100"]),
        join(&[&"a".repeat(161), "０９０－１２３４－５６７８"]),
        join(&[&"😀".repeat(40), "+81 90 ｰ 1234 ｰ 5678"]),
        join(&["0901234567", "010-1-415-555-0100"]),
    ]
}
