//! The `dm` fuzz target: postal codes, the customer barcode and print rows (written
//! to a scratch batch directory, UTF-8 and Shift_JIS), and the dry-run encoder
//! refusing exactly what the batch writer refuses.

use super::*;

struct DmKit {
    runtime: tokio::runtime::Runtime,
    batches: Vec<tayori_channels::dm::PrintBatches>,
    /// The `file` transport's encoder of each batch writer's settings.
    encoders: Vec<tayori_channels::dm::DmEncoder>,
    _dirs: Vec<tempfile::TempDir>,
}

thread_local! {
    static DM: RefCell<Option<DmKit>> = const { RefCell::new(None) };
}

fn dm_kit() -> DmKit {
    use tayori_channels::dm::{
        default_columns, Column, DmEncoder, PrintBatches, PrintSettings, TextEncoding, Unmappable,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut batches = Vec::new();
    let mut encoders = Vec::new();
    let mut dirs = Vec::new();
    for (encoding, unmappable) in [
        (TextEncoding::Utf8, Unmappable::Fail),
        (TextEncoding::ShiftJis, Unmappable::Fail),
        (TextEncoding::ShiftJis, Unmappable::Replace),
    ] {
        let dir = tempfile::tempdir().expect("a scratch dir");
        let mut settings = PrintSettings::new(dir.path());
        settings.encoding = encoding;
        settings.unmappable = unmappable;
        settings.batch_max_rows = 200;
        settings.columns = default_columns();
        settings.columns.push(Column::Barcode);
        encoders.push(DmEncoder::of(&settings).expect("valid columns"));
        batches.push(PrintBatches::open(settings).expect("a print directory"));
        dirs.push(dir);
    }
    DmKit {
        runtime,
        batches,
        encoders,
        _dirs: dirs,
    }
}

pub fn dm(data: &[u8]) {
    use tayori_channels::dm::customer_barcode;
    let p = parts(data, 9);
    let address = format!("{}{}", p[1], p[2]);
    if let Ok(code) = customer_barcode(&p[0], &address) {
        assert_eq!(code.chars().count(), 21, "{code:?}");
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || (b'a'..=b'h').contains(&b)),
            "{code:?}"
        );
    }
    let number = tayori_channels::dm::barcode::address_number(&address);
    assert!(
        number
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b.is_ascii_uppercase()),
        "{number:?}"
    );
    let postal = PostalAddress {
        postal_code: p[0].clone(),
        address1: p[1].clone(),
        address2: p[2].clone(),
        address3: p[3].clone(),
        company: p[4].clone(),
        name: p[5].clone(),
        honorific: p[6].clone(),
    };
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("message1".to_owned(), p[7].clone());
    if !p[8].is_empty() {
        fields.insert(p[8].clone(), "x".to_owned());
    }
    let message = Message {
        job_id: format!("dm-{}", pick(data, 1 << 30)),
        attempt: 1,
        idempotency_key: "k".into(),
        campaign: Some(p[8].clone()),
        customer_id: Some(p[4].clone()),
        to: Recipient {
            name: non_empty(&p[5]),
            address: p[0].clone(),
            postal: Some(postal),
        },
        content: Content::Dm { fields },
    };
    DM.with(|kit| {
        let mut kit = kit.borrow_mut();
        let kit = kit.get_or_insert_with(dm_kit);
        let i = pick(data, kit.batches.len());
        let encoded = tayori_channels::Encode::encode(&kit.encoders[i], &message);
        let sent = kit
            .runtime
            .block_on(tayori_channels::Channel::send(&kit.batches[i], &message));
        // A dry run refuses what production refuses, with the same code.
        if let Err(e) = &encoded {
            let code = sent.as_ref().err().map(|s| s.code());
            assert_eq!(code, Some(e.code()), "{e}");
        }
    });
}

pub fn dm_seeds() -> Vec<Vec<u8>> {
    vec![
        join(&[
            "100-0001",
            "東京都千代田区千代田1-1",
            "",
            "",
            "",
            "山田 太郎",
            "様",
            "春のセールのご案内です",
            "spring26",
        ]),
        join(&[
            "〒１００－００１３",
            "東京都千代田区霞が関1丁目3番1号",
            "郵便・A&bコーポB604号",
            "=HYPERLINK(\"http://evil\")",
            "+cmd|' /C calc'!A0",
            "𠮷野 家",
            "@SUM(1+1)",
            "line1\r\nline2\u{0}",
            "../../x",
        ]),
        join(&[
            "1000013",
            "十一丁目二十番地の三",
            "",
            "",
            "",
            "x",
            "",
            "",
            "unknown_field",
        ]),
    ]
}
