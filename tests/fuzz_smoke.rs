//! The fuzz targets on stable Rust, for a few seconds in every test run: each
//! target's body (`fuzz/targets.rs`, the same code the cargo-fuzz binaries run) on
//! its seed corpus (`fuzz/corpus/{target}/` plus the seeds made in code), each
//! dictionary fragment, and deterministic mutations of them — bit flips,
//! truncation, splicing, repeated and oversized chunks, dictionary insertions and
//! random bytes from a seeded xorshift — asserting no panic and a bounded time per
//! input. The long runs are `scripts/fuzz.sh` (cargo-fuzz on nightly).
//!
//! A failing input is written to `target/fuzz-smoke/{target}-{n}.bin`; replay it
//! with `cargo +nightly fuzz run {target} target/fuzz-smoke/{target}-{n}.bin` (in
//! `fuzz/`) or keep it as a regression seed in `fuzz/corpus/{target}/` once fixed.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Mutated inputs per target, after the seeds: the run is the same every time.
const MUTATIONS: usize = 4000;
/// A target that takes longer than this on one input hangs (debug build).
const PER_INPUT: Duration = Duration::from_secs(3);
/// Stop mutating a target after this long (slow machines): the seeds always run.
const PER_TARGET: Duration = Duration::from_secs(4);
/// Largest input the mutators make.
const MAX_LEN: usize = 96 * 1024;

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: &str) -> Rng {
        Rng(seed.bytes().fold(0x9E37_79B9_7F4A_7C15, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A value to put where a JSON value was: other types, extremes, attacks.
fn json_replacement(rng: &mut Rng, old: &Value) -> Value {
    let token = targets::DICTIONARY[rng.below(targets::DICTIONARY.len())];
    match rng.below(10) {
        0 => Value::String(token.to_owned()),
        1 => match old {
            Value::String(s) => Value::String(format!("{s}{token}")),
            _ => Value::String(token.repeat(1 + rng.below(64))),
        },
        2 => json!(i64::MIN),
        3 => json!(u64::MAX),
        4 => json!(-0.0_f64),
        5 => Value::Null,
        6 => json!([old.clone()]),
        7 => json!({ "x": old.clone() }),
        8 => Value::Bool(true),
        _ => Value::String("x".repeat([0, 1, 1000, 70_000][rng.below(4)])),
    }
}

/// Replaces one node of `v` (walking down at random) with something else.
fn mutate_json(rng: &mut Rng, v: &mut Value) {
    let children = match v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    if children == 0 || rng.below(3) == 0 {
        *v = json_replacement(rng, v);
        return;
    }
    let i = rng.below(children);
    match v {
        Value::Array(a) => mutate_json(rng, &mut a[i]),
        Value::Object(o) => {
            if rng.below(6) == 0 {
                // An unknown field beside the others.
                o.insert(format!("unknown_{i}"), json!("x"));
            } else if let Some(child) = o.values_mut().nth(i) {
                mutate_json(rng, child);
            }
        }
        _ => {}
    }
}

/// One mutation of `input`, using `pool` for splices.
fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = input.len();
    let at = |rng: &mut Rng| rng.below(len + 1);
    // Structure-aware first: JSON inputs (jobs, webhook bodies) stay JSON half the time.
    if rng.below(2) == 0 {
        if let Ok(mut v) = serde_json::from_slice::<Value>(input) {
            mutate_json(rng, &mut v);
            *input = v.to_string().into_bytes();
            return;
        }
    }
    match rng.below(9) {
        // Bit flips.
        0 if len > 0 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
        }
        // Truncation.
        1 => input.truncate(at(rng)),
        // Splice: a prefix of this, a suffix of another.
        2 => {
            let other = &pool[rng.below(pool.len())];
            let (i, j) = (at(rng), rng.below(other.len() + 1));
            input.truncate(i);
            input.extend_from_slice(&other[j..]);
        }
        // A chunk repeated, up to oversized.
        3 if len > 0 => {
            let i = rng.below(len);
            let j = (i + 1 + rng.below(64)).min(len);
            let chunk = input[i..j].to_vec();
            let times = [2, 16, 256, 4096][rng.below(4)];
            let mut grown = input[..j].to_vec();
            for _ in 0..times {
                if grown.len() + chunk.len() > MAX_LEN {
                    break;
                }
                grown.extend_from_slice(&chunk);
            }
            grown.extend_from_slice(&input[j..]);
            *input = grown;
        }
        // A dictionary fragment inserted or overwriting.
        4 | 5 => {
            let token = targets::DICTIONARY[rng.below(targets::DICTIONARY.len())].as_bytes();
            let i = at(rng);
            if rng.below(2) == 0 {
                input.splice(i..i, token.iter().copied());
            } else {
                let end = (i + token.len()).min(len);
                input.splice(i..end, token.iter().copied());
            }
        }
        // Random bytes over a range.
        6 => {
            let i = at(rng);
            let n = 1 + rng.below(32);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let end = (i + n).min(len);
            input.splice(i..end, bytes);
        }
        // A range deleted.
        7 if len > 0 => {
            let i = rng.below(len);
            let j = (i + 1 + rng.below(16)).min(len);
            input.drain(i..j);
        }
        // An interesting byte.
        _ if len > 0 => {
            let i = rng.below(len);
            input[i] = [0x00, 0xFF, 0x7F, 0x80, b'"', b'{', b'\\', b'\n', b'%'][rng.below(9)];
        }
        _ => input.extend_from_slice(b"\xFF"),
    }
    input.truncate(MAX_LEN);
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The seed corpus: the committed files and the seeds made in code.
fn seeds(target: &targets::Target) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target.name))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut out: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    out.extend((target.seeds)());
    out.push(Vec::new());
    out
}

thread_local! {
    /// Set while a target runs: its panics are recorded here quietly (a panic the
    /// code under test catches itself is not a failure; one that escapes is
    /// reported with this message and location).
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
            } else {
                default(info);
            }
        }));
    });
}

fn save(target: &str, n: usize, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-smoke");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{target}-{n}.bin"));
    let _ = std::fs::write(&path, input);
    path
}

fn preview(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(&input[..input.len().min(300)]);
    format!("{} bytes: {text:?}", input.len())
}

/// Runs one input; on a panic or a slow run, saves it and fails.
fn run_one(target: &targets::Target, n: usize, input: &[u8]) -> Duration {
    let started = Instant::now();
    IN_TARGET.with(|f| f.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    IN_TARGET.with(|f| f.set(false));
    let took = started.elapsed();
    if result.is_err() {
        let why = LAST_PANIC.with(|p| p.borrow().clone());
        let path = save(target.name, n, input);
        panic!(
            "fuzz target {} panicked on input #{n} ({}), saved as {}:\n{why}",
            target.name,
            preview(input),
            path.display()
        );
    }
    if took > PER_INPUT {
        let path = save(target.name, n, input);
        panic!(
            "fuzz target {} took {took:?} on input #{n} ({}), saved as {}",
            target.name,
            preview(input),
            path.display()
        );
    }
    took
}

fn smoke(name: &str) {
    quiet_panics();
    let target = targets::TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let mut pool = seeds(target);
    let mut n = 0;
    for input in pool.clone() {
        run_one(target, n, &input);
        n += 1;
    }
    for token in targets::DICTIONARY {
        run_one(target, n, token.as_bytes());
        n += 1;
    }
    let mut rng = Rng::new(name);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..MUTATIONS {
        if started.elapsed() > PER_TARGET {
            eprintln!("{name}: stopped after {n} inputs ({PER_TARGET:?})");
            break;
        }
        let mut input = pool[rng.below(pool.len())].clone();
        for _ in 0..=rng.below(3) {
            mutate_once(&mut rng, &mut input, &pool);
        }
        slowest = slowest.max(run_one(target, n, &input));
        n += 1;
        // Mutations of mutations reach further; keep a few.
        if rng.below(8) == 0 && pool.len() < 256 {
            pool.push(input);
        }
    }
    eprintln!(
        "{name}: {n} inputs in {:?}, slowest {slowest:?}",
        started.elapsed()
    );
}

macro_rules! smoke_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                smoke(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_smoke_test_and_a_cargo_fuzz_binary() {
            let tested = [$(stringify!($name)),*];
            for t in targets::TARGETS {
                assert!(tested.contains(&t.name), "no smoke test for fuzz target {}", t.name);
                let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("fuzz/fuzz_targets")
                    .join(format!("{}.rs", t.name));
                assert!(bin.exists(), "no cargo-fuzz binary {}", bin.display());
                let manifest = std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"),
                )
                .unwrap();
                assert!(
                    manifest.contains(&format!("name = \"{}\"", t.name)),
                    "fuzz/Cargo.toml has no [[bin]] {}",
                    t.name
                );
            }
            assert_eq!(tested.len(), targets::TARGETS.len());
        }
    };
}

smoke_tests!(
    job,
    render,
    email,
    tracking_token,
    dsn,
    line_webhook,
    http,
    sms,
    dm,
    provider_answers,
);

/// Writes the seeds made in code into `fuzz/corpus/` (for cargo-fuzz, which reads
/// only files): `cargo test --test fuzz_smoke -- --ignored write_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus/; run by hand after changing the seeds"]
fn write_seed_corpus() {
    for t in targets::TARGETS {
        let dir = corpus_dir(t.name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in (t.seeds)().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
        }
    }
}

// Regression tests for what the fuzzers found. Ignored ones are open findings
// (docs/security.md lists them): they fail until the product code is fixed, then
// lose their `#[ignore]`.

/// Sealed tokens carry the link: one over 8 KiB is refused by `Sealer::open`, so
/// the recipient of a mail with a link of some 6 KB gets a 404 for it.
#[test]
fn a_long_link_still_opens() {
    use tayori::tracking::{Purpose, Sealer, Tracked};
    let s = Sealer::new(targets::SECRET);
    let t = Tracked {
        job_id: "long-link".into(),
        address: "taro@example.com".into(),
        url: Some(format!("https://shop.example.com/p?q={}", "a".repeat(7000))),
        ..Tracked::default()
    };
    let token = s.seal(Purpose::Click, &t);
    let opened = s.open(Purpose::Click, &token);
    assert!(
        opened.as_ref() == Some(&t),
        "a {}-character token does not open",
        token.len()
    );
}

fn mail_for(address: &str, subject: &str) -> Vec<u8> {
    use tayori_channels::{Content, EmailExtras, Encode, Message, Recipient};
    let encoder =
        tayori_channels::email::EmailEncoder::new("Shop <news@example.com>", None).unwrap();
    let message = Message {
        job_id: "j1".into(),
        attempt: 1,
        idempotency_key: "j1".into(),
        campaign: None,
        customer_id: None,
        to: Recipient {
            name: Some("山田".into()),
            address: address.into(),
            postal: None,
        },
        content: Content::Email {
            subject: subject.into(),
            html: None,
            text: Some("body".into()),
            extras: EmailExtras::default(),
        },
    };
    encoder.encode(&message).expect("the mail is composed")
}

fn header_block(eml: &[u8]) -> &[u8] {
    let end = eml.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    &eml[..end]
}

/// Tayori does not negotiate SMTPUTF8, so no address goes out as raw UTF-8 (a relay
/// without it refuses or mangles the mail): an internationalized domain is written
/// in its IDNA form (`xn--…`) in `To:` and the envelope alike, and an address with
/// a non-ASCII local part is refused as `invalid_address` naming `to.email`
/// (`tayori_channels::email::address`).
#[test]
fn a_unicode_address_makes_no_8bit_header() {
    let eml = mail_for("taro@例え.jp", "hello");
    let head = header_block(&eml);
    assert!(head.is_ascii(), "{}", String::from_utf8_lossy(head));
    assert!(
        String::from_utf8_lossy(head).contains("<taro@xn--r8jz45g.jp>"),
        "{}",
        String::from_utf8_lossy(head)
    );
}

/// RFC 5322 limits lines to 998 characters, and lettre folds only at blanks: a
/// subject with a word longer than a line is written as RFC 2047 encoded-words
/// (which split anywhere) instead, so no relay wraps the line and breaks the DKIM
/// signature over Subject. The same holds for a custom header from config (refused
/// at start if it cannot fold) and for a display name (left out if it cannot).
#[test]
fn a_long_subject_word_is_folded() {
    let eml = mail_for("taro@example.com", &"x".repeat(1200));
    for line in header_block(&eml).split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "a header line of {} bytes", line.len());
    }
    let subject = mail_parser::MessageParser::default()
        .parse(&eml)
        .and_then(|m| m.subject().map(str::to_owned));
    assert_eq!(
        subject,
        Some("x".repeat(1200)),
        "the subject reads back whole"
    );
}

/// `verify` in src/http/vonage_webhook.rs computes `(now - timestamp).abs()`: with a
/// validly signed `timestamp` near i64::MIN it overflows (a panic in debug builds;
/// in release `i64::MIN.abs()` wraps and a timestamp of `now + i64::MIN` passes as
/// fresh). Only a holder of the signature secret can sign one, so this is about
/// robustness, not forgery; `now.abs_diff(timestamp) > MAX_SKEW_SECS` fixes it.
#[test]
fn a_signed_vonage_webhook_with_an_extreme_timestamp_is_refused() {
    quiet_panics();
    let now = jiff::Timestamp::now().as_second();
    for timestamp in [
        i64::MIN.to_string(),
        (now.wrapping_add(i64::MIN)).to_string(),
    ] {
        let mut input = vec![4u8];
        input.extend(targets::join(&[&format!(
            "messageId=0A1\nmsisdn=819012345678\ntext=STOP\ntimestamp={timestamp}"
        )]));
        run_one(&targets::TARGETS[6], 0, &input);
    }
}

/// Parsing a job (`registry::parse_job`: src/job.rs, then each channel's part of
/// `content` in src/channel/) names the field of a JSON error by its whole path,
/// from serde_path_to_error (`content.email.bcc`, not `bcc`), with a key that is
/// not a plain name in quotes: an unknown field named "" (`{"content":{"":1}}`,
/// found by cargo-fuzz, target `job`) is `content.""`, never an empty field.
#[test]
fn an_unknown_field_with_an_empty_name_is_named() {
    let e = tayori::channel::registry::parse_job(
        r#"{"id":"x","channel":"email","content":{"":1}}"#,
        1 << 20,
    )
    .unwrap_err();
    assert_eq!(e.field, r#"content."""#, "{e:?}");
}

/// Fuel bounds memory as well as loops (minijinja charges allocations and output
/// against it): a job's inline content cannot make gigabytes by repetition,
/// doubling, or printing a big variable in a loop — while a large but ordinary
/// mail (1 MB of template and 1 MB of variable) still renders.
#[test]
fn fuel_bounds_memory_as_well_as_loops() {
    use tayori::channel::Compose;
    use tayori_channels::Content;
    let config = tayori::config::Config::parse(
        "[redis]\n[channels.sms]\ntransport = \"null\"\n",
        std::path::Path::new("t.toml"),
        |_| None,
    )
    .unwrap();
    let channels = tayori::channel::Channels::from_config(&config).unwrap();
    let sms = channels.get(tayori::channel::sms::ID).unwrap();
    let renderer = tayori::render::Renderer::empty(None);
    let render = |text: &str, v: &str| {
        let job = tayori::channel::registry::parse_job(
            &json!({"id": "bomb-1", "channel": "sms", "to": {"phone": "+819012345678"},
                    "content": {"sms": {"text": text}}, "vars": {"v": v}})
            .to_string(),
            8 << 20,
        )
        .unwrap();
        let started = Instant::now();
        let cx = Compose {
            renderer: &renderer,
            tracker: None,
        };
        let out = sms.settings.compose(&job, &cx).map(|(content, _)| content);
        assert!(
            started.elapsed() < PER_INPUT,
            "{text}: {:?}",
            started.elapsed()
        );
        out
    };
    let big = "y".repeat(200 * 1024);
    for bomb in [
        "{% for i in range(3) %}{{ 'x' * 99999999 }}{% endfor %}",
        "{% set ns = namespace(s=v) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "{% for i in range(100000) %}{{ v }}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    ] {
        match render(bomb, &big) {
            Err(e) => assert!(e.0.contains("fuel"), "{bomb}: {e}"),
            Ok(Content::Sms { text }) => panic!("{bomb}: rendered {} bytes", text.len()),
            Ok(other) => panic!("{bomb}: {other:?}"),
        }
    }
    let ordinary = format!("{}{{{{ v }}}}", "<p>static text</p>\n".repeat(50_000));
    match render(&ordinary, &"y".repeat(1 << 20)) {
        Ok(Content::Sms { text }) => assert_eq!(text.len(), 19 * 50_000 + (1 << 20)),
        other => panic!("an ordinary large mail does not render: {other:?}"),
    }
}
