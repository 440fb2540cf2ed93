//! Sealed tokens for tracking, unsubscribe and bounce addresses.
//!
//! A tracking token carries who the message went to (job, address, campaign) and,
//! for a click, the link. It is sealed with ChaCha20-Poly1305 under a key derived
//! from `http.tracking_secret`: the tag authenticates it like an HMAC (a changed
//! byte makes it unreadable, so a tampered click token can never redirect), and the
//! encryption keeps the recipient's address out of the URL that proxies and
//! browser histories log. The token's purpose is bound as associated data, so an
//! open token cannot be replayed as an unsubscribe.
//!
//! The bounce (VERP) token has to fit an address's local part and survive an MTA
//! that lowercases it, so it is lowercase hex: the job id and a 64-bit HMAC-SHA256
//! over the job id and the recipient's address.

use crate::channel_id::ChannelId;
use base64::Engine as _;
use ring::aead::{self, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac};
use std::sync::atomic::{AtomicU64, Ordering};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// Version 2 carries the channel's id; version 1 (before channel plugins) its
/// position in [`V1_CHANNELS`]. Both open: links in mail already sent keep working.
const VERSION: u8 = 2;

/// The channel order version-1 tokens were sealed with. Frozen: never grows.
const V1_CHANNELS: [&str; 4] = ["email", "line", "sms", "dm"];

/// What a token is for; bound into the seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Open = 1,
    Click = 2,
    Unsubscribe = 3,
}

/// The message a token points back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// The channel the message went out on (email, or LINE for its links).
    pub channel: ChannelId,
    pub job_id: String,
    pub address: String,
    pub campaign: Option<String>,
    pub customer_id: Option<String>,
    /// When the message was handed to the transport (Unix seconds).
    pub sent_at: i64,
    /// The original link (click tokens only).
    pub url: Option<String>,
}

impl Default for Tracked {
    fn default() -> Self {
        Tracked {
            channel: ChannelId::new("email"),
            job_id: String::new(),
            address: String::new(),
            campaign: None,
            customer_id: None,
            sent_at: 0,
            url: None,
        }
    }
}

/// Seals tokens under the current secret and opens them under it or any
/// previous one (`http.previous_tracking_secrets`), so rotating the secret
/// breaks no link already sent.
pub struct Sealer {
    current: Keys,
    /// Open only: tokens and VERP tags made before a rotation.
    previous: Vec<Keys>,
    nonces: Nonces,
}

/// The keys derived from one secret.
struct Keys {
    aead: LessSafeKey,
    verp: hmac::Key,
    short: hmac::Key,
}

impl Keys {
    fn derive(secret: &str) -> Keys {
        let derive = |label: &[u8]| {
            let mut ctx = digest::Context::new(&digest::SHA256);
            ctx.update(label);
            ctx.update(secret.as_bytes());
            ctx.finish()
        };
        let aead_key = derive(b"tayori tracking token v1\0");
        let aead = UnboundKey::new(&aead::CHACHA20_POLY1305, aead_key.as_ref())
            .map(LessSafeKey::new)
            .unwrap_or_else(|_| unreachable!("a SHA-256 digest is a valid ChaCha20 key"));
        let verp = hmac::Key::new(hmac::HMAC_SHA256, derive(b"tayori verp v1\0").as_ref());
        let short = hmac::Key::new(
            hmac::HMAC_SHA256,
            derive(b"tayori short link v1\0").as_ref(),
        );
        Keys { aead, verp, short }
    }
}

/// Unique ChaCha20-Poly1305 nonces without a system call per token: a random
/// 32-bit prefix drawn at start, then a 64-bit counter that starts at a random
/// value. A nonce repeats only if two sealers (daemons sharing the secret) draw
/// the same prefix (1 in 2^32) and their counters meet within the 2^64 range.
/// A `getrandom` per token (three per tracked email) was 2-3 % of the daemon's
/// CPU per email (perf, issue 19).
struct Nonces {
    prefix: [u8; 4],
    next: AtomicU64,
}

impl Nonces {
    fn new() -> Nonces {
        let rng = SystemRandom::new();
        let mut seed = [0u8; 12];
        // The system RNG does not fail on Linux once booted; a fixed start would
        // only weaken secrecy across restarts, never the tag.
        let _ = rng.fill(&mut seed);
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&seed[..4]);
        let mut start = [0u8; 8];
        start.copy_from_slice(&seed[4..]);
        Nonces {
            prefix,
            next: AtomicU64::new(u64::from_be_bytes(start)),
        }
    }

    fn next(&self) -> [u8; NONCE_LEN] {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.prefix);
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        nonce
    }
}

impl Sealer {
    pub fn new(secret: &str) -> Sealer {
        Sealer::rotated(secret, &[])
    }

    /// Seals under `secret`; opens under it and each of `previous` (tried in
    /// order after it).
    pub fn rotated(secret: &str, previous: &[String]) -> Sealer {
        Sealer {
            current: Keys::derive(secret),
            previous: previous.iter().map(|s| Keys::derive(s)).collect(),
            nonces: Nonces::new(),
        }
    }

    /// The current keys, then the previous ones.
    fn all_keys(&self) -> impl Iterator<Item = &Keys> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// The URL-safe token for `t`.
    pub fn seal(&self, purpose: Purpose, t: &Tracked) -> String {
        self.seal_version(purpose, t, VERSION)
    }

    fn seal_version(&self, purpose: Purpose, t: &Tracked, version: u8) -> String {
        let mut buf = Vec::with_capacity(
            NONCE_LEN
                + 32
                + t.job_id.len()
                + t.address.len()
                + t.url.as_ref().map_or(0, String::len),
        );
        let nonce = self.nonces.next();
        buf.extend_from_slice(&nonce);
        let start = buf.len();
        buf.push(version);
        if version == 1 {
            let index = V1_CHANNELS.iter().position(|c| t.channel == *c);
            buf.push(index.and_then(|i| u8::try_from(i).ok()).unwrap_or(0));
        }
        buf.extend_from_slice(&t.sent_at.to_be_bytes());
        if version != 1 {
            put(&mut buf, Some(t.channel.as_str()));
        }
        for field in [
            Some(t.job_id.as_str()),
            Some(t.address.as_str()),
            t.campaign.as_deref(),
            t.customer_id.as_deref(),
            t.url.as_deref(),
        ] {
            put(&mut buf, field);
        }
        let mut body = buf.split_off(start);
        let aad = aead::Aad::from([purpose as u8]);
        if self
            .current
            .aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad, &mut body)
            .is_err()
        {
            return String::new(); // only on absurd lengths; an empty token opens to nothing
        }
        buf.extend_from_slice(&body);
        B64.encode(buf)
    }

    /// The message behind a token, or `None` if it is not one of ours for `purpose`.
    pub fn open(&self, purpose: Purpose, token: &str) -> Option<Tracked> {
        // Bounded so a hostile path cannot make us decode megabytes; generous
        // enough for the longest links a template has (a 20 KB URL still opens).
        if token.len() > 32 * 1024 {
            return None;
        }
        let mut raw = B64.decode(token).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let sealed = raw.split_off(NONCE_LEN);
        // Each key opens its own copy: a failed open leaves the buffer unspecified.
        let mut body = Vec::new();
        let plain = self.all_keys().find_map(|keys| {
            let nonce = Nonce::try_assume_unique_for_key(&raw).ok()?;
            body.clone_from(&sealed);
            keys.aead
                .open_in_place(nonce, aead::Aad::from([purpose as u8]), &mut body)
                .ok()
                .map(|plain| plain.len())
        })?;
        let plain = &body[..plain];
        let (&version, rest) = plain.split_first()?;
        let (v1_channel, rest) = match version {
            1 => {
                let (&index, rest) = rest.split_first()?;
                (Some(*V1_CHANNELS.get(usize::from(index))?), rest)
            }
            VERSION => (None, rest),
            _ => return None,
        };
        if rest.len() < 8 {
            return None;
        }
        let (at, mut rest) = rest.split_at(8);
        let sent_at = i64::from_be_bytes(at.try_into().ok()?);
        let mut next = || take(&mut rest);
        let channel = match v1_channel {
            Some(name) => ChannelId::parse(name).ok()?,
            None => ChannelId::parse(&next()??).ok()?,
        };
        let job_id = next()??;
        let address = next()??;
        let campaign = next()?;
        let customer_id = next()?;
        let url = next()?;
        Some(Tracked {
            channel,
            job_id,
            address,
            campaign,
            customer_id,
            sent_at,
            url,
        })
    }

    /// The code of a short link (`/s/{code}`, SMS): 11 URL-safe characters (64
    /// bits) keyed by the job and the link. Unguessable without the secret, and
    /// the same on every retry of the job, so a retry reuses its link.
    pub fn short_code(&self, job_id: &str, url: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.current.short);
        ctx.update(job_id.as_bytes());
        ctx.update(&[0]);
        ctx.update(url.as_bytes());
        B64.encode(&ctx.sign().as_ref()[..8])
    }

    /// The VERP token for a message: `{hex job id}-{hex tag}`, self-contained.
    /// A local part may have at most 64 bytes, so this fits job ids up to about
    /// 19 bytes; longer ones use [`stored_verp_token`](Self::stored_verp_token).
    pub fn verp_token(&self, job_id: &str, address: &str) -> String {
        let mut s = hex(job_id.as_bytes());
        s.push('-');
        s.push_str(&hex(&verp_tag(&self.current, job_id, address)));
        s
    }

    /// The VERP token for a message whose job id is too long to carry:
    /// `s{hex tag}` (17 characters). The sender stores the job id under it
    /// (`{prefix}:verp:{token}`) before sending; the tag still binds job and
    /// recipient, so a stored token opens only for the address it was made for.
    pub fn stored_verp_token(&self, job_id: &str, address: &str) -> String {
        format!("s{}", hex(&verp_tag(&self.current, job_id, address)))
    }

    /// The lookup key of a stored VERP token (lowercase, as MTAs may fold case),
    /// or `None` for a self-contained one.
    pub fn stored_verp_key(token: &str) -> Option<String> {
        let token = token.to_ascii_lowercase();
        let tag = token.strip_prefix('s')?;
        (tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(token)
    }

    /// The job id in a self-contained VERP token, if the token was made for this
    /// job and `address`.
    pub fn open_verp(&self, token: &str, address: &str) -> Option<String> {
        let token = token.to_ascii_lowercase();
        let (id_hex, tag_hex) = token.rsplit_once('-')?;
        let job_id = String::from_utf8(unhex(id_hex)?).ok()?;
        self.verp_tag_matches(tag_hex, &job_id, address)
            .then_some(job_id)
    }

    /// Whether a stored VERP token was made for `job_id` (found under it) and `address`.
    pub fn opens_stored_verp(&self, token: &str, job_id: &str, address: &str) -> bool {
        Self::stored_verp_key(token)
            .is_some_and(|t| self.verp_tag_matches(&t[1..], job_id, address))
    }

    /// Whether the tag was made for this job and address under the current or a
    /// previous secret.
    fn verp_tag_matches(&self, tag_hex: &str, job_id: &str, address: &str) -> bool {
        let Some(tag) = unhex(tag_hex) else {
            return false;
        };
        self.all_keys().any(|keys| {
            let expected = verp_tag(keys, job_id, address);
            // Compared without an early exit, so timing does not reveal a matching prefix.
            let diff = tag
                .iter()
                .zip(expected)
                .fold(u8::from(tag.len() != expected.len()), |d, (a, b)| {
                    d | (a ^ b)
                });
            diff == 0
        })
    }
}

/// The 64-bit VERP tag binding a job and its recipient under `keys`.
fn verp_tag(keys: &Keys, job_id: &str, address: &str) -> [u8; 8] {
    let mut ctx = hmac::Context::with_key(&keys.verp);
    ctx.update(job_id.as_bytes());
    ctx.update(&[0]);
    // Compared as sent (an internationalized domain in IDNA form): the bounce
    // report names the address the relay was given, the job may have it in Unicode.
    let address = tayori_channels::email::address::with_ascii_domain(address.trim());
    ctx.update(address.to_lowercase().as_bytes());
    let tag = ctx.sign();
    let mut out = [0u8; 8];
    out.copy_from_slice(&tag.as_ref()[..8]);
    out
}

/// A field: 0xFFFF for none, else a big-endian u16 length and the bytes.
fn put(buf: &mut Vec<u8>, field: Option<&str>) {
    match field {
        None => buf.extend_from_slice(&u16::MAX.to_be_bytes()),
        Some(s) => {
            let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize - 1)];
            buf.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            buf.extend_from_slice(bytes);
        }
    }
}

/// The next field: `None` if malformed, `Some(None)` for an absent one.
fn take(rest: &mut &[u8]) -> Option<Option<String>> {
    if rest.len() < 2 {
        return None;
    }
    let len = u16::from_be_bytes([rest[0], rest[1]]);
    *rest = &rest[2..];
    if len == u16::MAX {
        return Some(None);
    }
    let len = usize::from(len);
    if rest.len() < len {
        return None;
    }
    let s = std::str::from_utf8(&rest[..len]).ok()?.to_owned();
    *rest = &rest[len..];
    Some(Some(s))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_gets_its_own_nonce_and_still_opens() {
        let sealer = Sealer::new("a-secret-of-sixteen-bytes");
        let t = Tracked {
            job_id: "j1".into(),
            address: "a@example.com".into(),
            ..Tracked::default()
        };
        let tokens: Vec<String> = (0..1000).map(|_| sealer.seal(Purpose::Open, &t)).collect();
        let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len(), "a nonce repeated");
        for token in [&tokens[0], &tokens[999]] {
            assert_eq!(sealer.open(Purpose::Open, token).as_ref(), Some(&t));
        }
        // Another sealer with the same secret (another daemon) draws its own prefix.
        let other = Sealer::new("a-secret-of-sixteen-bytes");
        assert_ne!(other.nonces.prefix, sealer.nonces.prefix);
        assert_eq!(other.open(Purpose::Open, &tokens[5]).as_ref(), Some(&t));
    }

    #[test]
    fn after_a_rotation_old_tokens_and_verp_tags_open_and_new_ones_use_the_new_secret() {
        let old = Sealer::new("the-old-secret-of-16");
        let rotated = Sealer::rotated("the-new-secret-of-16", &["the-old-secret-of-16".into()]);
        let t = tracked();
        let before = old.seal(Purpose::Click, &t);
        assert_eq!(rotated.open(Purpose::Click, &before).as_ref(), Some(&t));
        // Made now: under the new secret only.
        let after = rotated.seal(Purpose::Click, &t);
        assert_eq!(old.open(Purpose::Click, &after), None);
        assert_eq!(rotated.open(Purpose::Click, &after).as_ref(), Some(&t));
        // The old secret removed: its tokens no longer open.
        let dropped = Sealer::new("the-new-secret-of-16");
        assert_eq!(dropped.open(Purpose::Click, &before), None);
        // VERP tags likewise, self-contained and stored.
        let verp = old.verp_token("j1", "taro@example.com");
        assert_eq!(
            rotated.open_verp(&verp, "taro@example.com").as_deref(),
            Some("j1")
        );
        assert_eq!(dropped.open_verp(&verp, "taro@example.com"), None);
        assert_eq!(rotated.open_verp(&verp, "jiro@example.com"), None);
        let stored = old.stored_verp_token("a-long-job-id", "taro@example.com");
        assert!(rotated.opens_stored_verp(&stored, "a-long-job-id", "taro@example.com"));
        assert!(!dropped.opens_stored_verp(&stored, "a-long-job-id", "taro@example.com"));
        // Short codes (a retry must reuse its link) come from the current secret.
        assert_eq!(
            rotated.short_code("j1", "https://x"),
            dropped.short_code("j1", "https://x")
        );
    }

    #[test]
    fn version_1_tokens_still_open() {
        let sealer = Sealer::new("a-secret-of-sixteen-bytes");
        for channel in ["email", "line", "sms", "dm"] {
            let t = Tracked {
                channel: ChannelId::new("email"),
                job_id: "j-1".into(),
                address: "a@example.com".into(),
                url: Some("https://shop.example/x".into()),
                ..Tracked::default()
            };
            let t = Tracked {
                channel: ChannelId::parse(channel).unwrap(),
                ..t
            };
            let old = sealer.seal_version(Purpose::Click, &t, 1);
            assert_eq!(sealer.open(Purpose::Click, &old), Some(t.clone()));
            let new = sealer.seal(Purpose::Click, &t);
            assert_eq!(sealer.open(Purpose::Click, &new), Some(t));
        }
    }

    fn tracked() -> Tracked {
        Tracked {
            channel: ChannelId::new("line"),
            job_id: "spring26-C1001".into(),
            address: "taro@example.com".into(),
            campaign: Some("spring26".into()),
            customer_id: None,
            sent_at: 1_790_000_000,
            url: Some("https://shop.example.com/sale?c=1&x=y".into()),
        }
    }

    #[test]
    fn a_token_opens_to_what_was_sealed_and_hides_the_address() {
        let s = Sealer::new("secret");
        let token = s.seal(Purpose::Click, &tracked());
        assert_eq!(s.open(Purpose::Click, &token), Some(tracked()));
        let raw = B64.decode(&token).unwrap();
        assert!(!raw.windows(4).any(|w| w == b"taro"), "address in clear");
        assert!(token.len() < 200, "{} chars", token.len());
    }

    #[test]
    fn tampered_foreign_or_repurposed_tokens_do_not_open() {
        let s = Sealer::new("secret");
        let token = s.seal(Purpose::Click, &tracked());
        let mut bytes = B64.decode(&token).unwrap();
        for i in [0, NONCE_LEN, bytes.len() / 2, bytes.len() - 1] {
            bytes[i] ^= 1;
            assert_eq!(
                s.open(Purpose::Click, &B64.encode(&bytes)),
                None,
                "flip at {i}"
            );
            bytes[i] ^= 1;
        }
        assert_eq!(s.open(Purpose::Unsubscribe, &token), None);
        assert_eq!(Sealer::new("other").open(Purpose::Click, &token), None);
        assert_eq!(s.open(Purpose::Click, &token[..token.len() - 3]), None);
        assert_eq!(s.open(Purpose::Click, "not a token!"), None);
    }

    #[test]
    fn verp_tokens_bind_job_and_address_and_survive_case_changes() {
        let s = Sealer::new("secret");
        let t = s.verp_token("spring26-C1001", "Taro@Example.com");
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{t}");
        assert_eq!(
            s.open_verp(&t.to_uppercase(), "taro@example.com")
                .as_deref(),
            Some("spring26-C1001")
        );
        assert_eq!(s.open_verp(&t, "someone-else@example.com"), None);
        assert_eq!(Sealer::new("other").open_verp(&t, "taro@example.com"), None);
        // A job for an internationalized domain; the bounce names it as it was sent.
        let t = s.verp_token("j2", "Taro@例え.JP");
        assert_eq!(
            s.open_verp(&t, "taro@xn--r8jz45g.jp").as_deref(),
            Some("j2")
        );
        assert_eq!(s.open_verp(&t, "taro@例え.jp").as_deref(), Some("j2"));
    }

    #[test]
    fn stored_verp_tokens_are_short_and_bind_job_and_address() {
        let s = Sealer::new("secret");
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let t = s.stored_verp_token(id, "Taro@Example.com");
        assert_eq!(t.len(), 17, "{t}");
        assert_eq!(
            s.open_verp(&t, "taro@example.com"),
            None,
            "not self-contained"
        );
        let upper = t.to_uppercase();
        assert_eq!(Sealer::stored_verp_key(&upper).as_deref(), Some(t.as_str()));
        assert!(s.opens_stored_verp(&upper, id, "taro@example.com"));
        assert!(!s.opens_stored_verp(&t, id, "someone-else@example.com"));
        assert!(!s.opens_stored_verp(&t, "another-job", "taro@example.com"));
        assert!(!Sealer::new("other").opens_stored_verp(&t, id, "taro@example.com"));
        assert_eq!(Sealer::stored_verp_key("abc-0123456789abcdef"), None);
        assert_eq!(Sealer::stored_verp_key("s0123"), None);
    }
}
