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
    /// Bucketed short-link records (see [`Sealer::seal_link`]): the MAC that is
    /// both the record's field in its bucket and its synthetic IV, and the
    /// stream key that hides the record.
    link_mac: hmac::Key,
    link_stream: LessSafeKey,
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
        let link_mac = hmac::Key::new(
            hmac::HMAC_SHA256,
            derive(b"tayori short link record v2\0").as_ref(),
        );
        let link_stream = UnboundKey::new(
            &aead::CHACHA20_POLY1305,
            derive(b"tayori short link stream v2\0").as_ref(),
        )
        .map(LessSafeKey::new)
        .unwrap_or_else(|_| unreachable!("a SHA-256 digest is a valid ChaCha20 key"));
        Keys {
            aead,
            verp,
            short,
            link_mac,
            link_stream,
        }
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

    /// The code of a short link of the form before buckets (`/s/{code}`, kept
    /// under `{prefix}:link:{code}`): 11 URL-safe characters (64 bits) keyed by
    /// the job and the link. No longer made by the daemon (see
    /// [`seal_link`](Self::seal_link)); kept for tests and tools that write a link
    /// of the old form.
    pub fn short_code(&self, job_id: &str, url: &str) -> String {
        let mac: [u8; 8] = truncated_mac(
            &self.current.short,
            &[job_id.as_bytes(), &[0], url.as_bytes()],
        );
        B64.encode(mac)
    }

    /// The reference of a link's content (channel, campaign, URL): the key of the
    /// one record of a campaign's link that all its short links share.
    pub fn content_ref(&self, t: &Tracked) -> [u8; CONTENT_REF_LEN] {
        content_ref(&self.current, t)
    }

    /// Whether `r` is the reference of `t`'s content under any key: a content
    /// record found under another reference (moved or swapped in Redis) is refused.
    pub fn content_matches(&self, r: &[u8], t: &Tracked) -> bool {
        self.all_keys()
            .any(|keys| constant_time_eq(r, &content_ref(keys, t)))
    }

    /// A short link's record in bucket `bucket`: its field (6 bytes, also the
    /// secret half of the code) and its value. The value is the send time in the
    /// clear (what the key's TTL showed before buckets) and, hidden under a
    /// ChaCha20 stream, the content reference, job id, address and customer id.
    /// The field is a MAC over all of it and seeds the stream (a synthetic IV, as
    /// in SIV): the same field means the same record, so no stream is ever reused
    /// for other bytes, and a changed byte anywhere fails the MAC. 64 bits of
    /// authentication were 16 bytes of Poly1305 tag plus 12 of nonce per link; a
    /// listpack keeps a hash compact only while each value is ≤ 64 bytes.
    pub fn seal_link(
        &self,
        bucket: [u8; LINK_BUCKET_LEN],
        t: &Tracked,
        content: [u8; CONTENT_REF_LEN],
    ) -> ([u8; LINK_FIELD_LEN], Vec<u8>) {
        let sent_at = u32::try_from(t.sent_at).unwrap_or(0).to_be_bytes();
        let mut plain = Vec::with_capacity(CONTENT_REF_LEN + 3 + t.job_id.len() + t.address.len());
        plain.extend_from_slice(&content);
        pack_id(&mut plain, Some(&t.job_id));
        pack_id(&mut plain, Some(&t.address));
        pack_id(&mut plain, t.customer_id.as_deref());
        let field = link_mac(&self.current, bucket, sent_at, &plain);
        link_stream(&self.current, bucket, field, &mut plain);
        let mut value = Vec::with_capacity(4 + plain.len());
        value.extend_from_slice(&sent_at);
        value.extend_from_slice(&plain);
        (field, value)
    }

    /// What a short link's record holds, if `value` was sealed by us for this
    /// bucket and field (under the current or a previous secret).
    pub fn open_link(
        &self,
        bucket: [u8; LINK_BUCKET_LEN],
        field: [u8; LINK_FIELD_LEN],
        value: &[u8],
    ) -> Option<LinkRecord> {
        if value.len() < 4 + CONTENT_REF_LEN || value.len() > 64 * 1024 {
            return None;
        }
        let (at, sealed) = value.split_at(4);
        let sent_at: [u8; 4] = at.try_into().ok()?;
        self.all_keys().find_map(|keys| {
            let mut plain = sealed.to_vec();
            link_stream(keys, bucket, field, &mut plain);
            if !constant_time_eq(&link_mac(keys, bucket, sent_at, &plain), &field) {
                return None;
            }
            let (content, mut rest) = plain.split_at(CONTENT_REF_LEN);
            let content_ref: [u8; CONTENT_REF_LEN] = content.try_into().ok()?;
            let job_id = unpack_id(&mut rest)??;
            let address = unpack_id(&mut rest)??;
            let customer_id = unpack_id(&mut rest)?;
            rest.is_empty().then(|| LinkRecord {
                content_ref,
                job_id,
                address,
                customer_id,
                sent_at: i64::from(u32::from_be_bytes(sent_at)),
            })
        })
    }

    /// The VERP token for a message: `{hex job id}-{hex tag}`, self-contained.
    /// A local part may have at most 64 bytes, so this fits job ids up to about
    /// 19 bytes; longer ones use [`bucketed_verp_token`](Self::bucketed_verp_token).
    /// A canonical lowercase UUID job id (the commonest long one) is carried as
    /// `u{its 16 bytes in hex}-{hex tag}` (50 characters): no record at all,
    /// where a stored one cost 34 bytes of Redis.
    pub fn verp_token(&self, job_id: &str, address: &str) -> String {
        let mut s = match uuid_bytes(job_id) {
            Some(raw) => format!("u{}", hex(&raw)),
            None => hex(job_id.as_bytes()),
        };
        s.push('-');
        s.push_str(&hex(&verp_tag(&self.current, job_id, address)));
        s
    }

    /// The VERP token of the form before buckets for a message whose job id is
    /// too long to carry: `s{hex tag}` (17 characters), the job id stored under it
    /// (`{prefix}:verp:{token}`). No longer made by the daemon (see
    /// [`bucketed_verp_token`](Self::bucketed_verp_token)), still opened; the
    /// tag still binds job and recipient, so a stored token opens only for the
    /// address it was made for.
    pub fn stored_verp_token(&self, job_id: &str, address: &str) -> String {
        format!("s{}", hex(&verp_tag(&self.current, job_id, address)))
    }

    /// The VERP token of a message whose job id is stored in bucket `bucket`:
    /// `b{hex bucket}{hex tag}` (25 characters). The job id is kept as the field
    /// `tag` of the bucket's hash (`{prefix}:verps:{hex bucket}`), a few dozen
    /// 34 bytes a record where a key of its own (`s{tag}`, before) cost 177
    /// (benches/footprint_links.rs, UUID job ids).
    pub fn bucketed_verp_token(
        &self,
        bucket: [u8; VERP_BUCKET_LEN],
        job_id: &str,
        address: &str,
    ) -> String {
        format!(
            "b{}{}",
            hex(&bucket),
            hex(&verp_tag(&self.current, job_id, address))
        )
    }

    /// The lookup key of a stored VERP token (lowercase, as MTAs may fold case):
    /// `s{tag}` (a key of its own) or `b{bucket}{tag}` (a field in a bucket), or
    /// `None` for a self-contained one.
    pub fn stored_verp_key(token: &str) -> Option<String> {
        let token = token.to_ascii_lowercase();
        let hex_of =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(tag) = token.strip_prefix('s') {
            return hex_of(tag, 16).then_some(token);
        }
        let rest = token.strip_prefix('b')?;
        hex_of(rest, 2 * VERP_BUCKET_LEN + 16).then_some(token)
    }

    /// The bucket and tag (the hash and its field) of a bucketed VERP key from
    /// [`stored_verp_key`](Self::stored_verp_key); `None` for any other.
    pub fn verp_bucket(key: &str) -> Option<([u8; VERP_BUCKET_LEN], [u8; 8])> {
        let rest = key.strip_prefix('b')?;
        let raw = unhex(rest)?;
        let (bucket, tag) = raw.split_at_checked(VERP_BUCKET_LEN)?;
        Some((bucket.try_into().ok()?, tag.try_into().ok()?))
    }

    /// The job id in a self-contained VERP token, if the token was made for this
    /// job and `address`.
    pub fn open_verp(&self, token: &str, address: &str) -> Option<String> {
        let token = token.to_ascii_lowercase();
        let (id_hex, tag_hex) = token.rsplit_once('-')?;
        let job_id = match id_hex.strip_prefix('u') {
            Some(uuid) => uuid_text(&unhex(uuid)?.try_into().ok()?),
            None => String::from_utf8(unhex(id_hex)?).ok()?,
        };
        self.verp_tag_matches(tag_hex, &job_id, address)
            .then_some(job_id)
    }

    /// Whether a stored VERP token was made for `job_id` (found under it) and `address`.
    pub fn opens_stored_verp(&self, token: &str, job_id: &str, address: &str) -> bool {
        Self::stored_verp_key(token).is_some_and(|t| {
            // The tag is the last 16 hex digits in both forms.
            let tag = &t[t.len() - 16..];
            self.verp_tag_matches(tag, job_id, address)
        })
    }

    /// Whether the tag was made for this job and address under the current or a
    /// previous secret.
    fn verp_tag_matches(&self, tag_hex: &str, job_id: &str, address: &str) -> bool {
        let Some(tag) = unhex(tag_hex) else {
            return false;
        };
        self.all_keys()
            .any(|keys| constant_time_eq(&tag, &verp_tag(keys, job_id, address)))
    }
}

/// Bytes of a short link's bucket id, then of its field: a code is the two in
/// URL-safe base64, 12 characters (11 before buckets). A bucket holds at most
/// [`crate::tracking::LINKS_PER_BUCKET`] links, so 48 bits of field make a guess
/// at someone else's link in a bucket one knows (from a link of one's own) a
/// 1 in 4·10^12 shot; an 11-character code of before was checked against every
/// live link, 1 in 6·10^11 with 30 million kept.
pub const LINK_BUCKET_LEN: usize = 3;
pub const LINK_FIELD_LEN: usize = 6;
/// Bytes of a content reference (channel, campaign, URL).
pub const CONTENT_REF_LEN: usize = 8;
/// Bytes of a VERP bucket's id: hex in the token, so case folding cannot hurt it.
pub const VERP_BUCKET_LEN: usize = 4;

/// What a short link's bucketed record holds (see [`Sealer::seal_link`]); with
/// its content record (channel, campaign, URL) it is the whole click token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    pub content_ref: [u8; CONTENT_REF_LEN],
    pub job_id: String,
    pub address: String,
    pub customer_id: Option<String>,
    pub sent_at: i64,
}

/// The bucket and field of a short link's code, if it is one of the bucketed
/// form (12 characters); an 11-character code is of the form before buckets.
pub fn link_code_parts(code: &str) -> Option<([u8; LINK_BUCKET_LEN], [u8; LINK_FIELD_LEN])> {
    if code.len() != 4 * (LINK_BUCKET_LEN + LINK_FIELD_LEN) / 3 {
        return None;
    }
    let raw = B64.decode(code).ok()?;
    let (bucket, field) = raw.split_at_checked(LINK_BUCKET_LEN)?;
    Some((bucket.try_into().ok()?, field.try_into().ok()?))
}

/// The code of a bucketed short link.
pub fn link_code(bucket: [u8; LINK_BUCKET_LEN], field: [u8; LINK_FIELD_LEN]) -> String {
    let mut raw = [0u8; LINK_BUCKET_LEN + LINK_FIELD_LEN];
    raw[..LINK_BUCKET_LEN].copy_from_slice(&bucket);
    raw[LINK_BUCKET_LEN..].copy_from_slice(&field);
    B64.encode(raw)
}

/// A bucket id as it appears in a key: URL-safe base64 (links) or hex (VERP).
pub fn link_bucket_name(bucket: [u8; LINK_BUCKET_LEN]) -> String {
    B64.encode(bucket)
}

pub fn verp_bucket_name(bucket: [u8; VERP_BUCKET_LEN]) -> String {
    hex(&bucket)
}

/// A content reference as it appears in a key.
pub fn content_ref_name(r: &[u8]) -> String {
    B64.encode(r)
}

/// The first `N` bytes of HMAC-SHA256 under `key` over `parts`, in order.
fn truncated_mac<const N: usize>(key: &hmac::Key, parts: &[&[u8]]) -> [u8; N] {
    let mut ctx = hmac::Context::with_key(key);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&ctx.sign().as_ref()[..N]);
    out
}

fn content_ref(keys: &Keys, t: &Tracked) -> [u8; CONTENT_REF_LEN] {
    let mut buf = Vec::new();
    put(&mut buf, Some(t.channel.as_str()));
    put(&mut buf, t.campaign.as_deref());
    put(&mut buf, t.url.as_deref());
    // 0xFF never starts a job id (UTF-8), so these never equal a short code's input.
    truncated_mac(&keys.short, &[b"\xffcontent\0", &buf])
}

fn link_mac(
    keys: &Keys,
    bucket: [u8; LINK_BUCKET_LEN],
    sent_at: [u8; 4],
    plain: &[u8],
) -> [u8; LINK_FIELD_LEN] {
    truncated_mac(&keys.link_mac, &[&bucket, &sent_at, plain])
}

/// XORs `buf` with the ChaCha20 stream of (bucket, field): ChaCha20-Poly1305's
/// encryption is that stream (from block 1), so sealing ciphertext gives the
/// plaintext back; its tag is not kept (the field authenticates instead).
fn link_stream(
    keys: &Keys,
    bucket: [u8; LINK_BUCKET_LEN],
    field: [u8; LINK_FIELD_LEN],
    buf: &mut [u8],
) {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..LINK_BUCKET_LEN].copy_from_slice(&bucket);
    nonce[LINK_BUCKET_LEN..LINK_BUCKET_LEN + LINK_FIELD_LEN].copy_from_slice(&field);
    // Fails only past 256 GiB; such a record would not open (its MAC fails).
    let _ = keys.link_stream.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        aead::Aad::empty(),
        buf,
    );
}

/// `subtle`'s compare: no early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

/// An id (job id, address, customer id) in a record, compactly: a canonical
/// lowercase UUID as 0xFE and its 16 bytes (a UUID job id is 17 bytes, not 37),
/// a LINE user id (`U` and 32 lowercase hex digits) as 0xFC and its 16 bytes (a
/// LINE record then stays within the 64 bytes that keep its bucket a listpack:
/// 118 bytes a link measured with the id as text, the bucket a hash table),
/// none as 0xFF, up to 251 bytes as a length byte and the bytes, longer as 0xFD,
/// a big-endian u16 length and the bytes.
pub fn pack_id(out: &mut Vec<u8>, id: Option<&str>) {
    let Some(id) = id else {
        out.push(0xFF);
        return;
    };
    if let Some(raw) = uuid_bytes(id) {
        out.push(0xFE);
        out.extend_from_slice(&raw);
    } else if let Some(raw) = line_user_bytes(id) {
        out.push(0xFC);
        out.extend_from_slice(&raw);
    } else if let Some(len) = u8::try_from(id.len()).ok().filter(|l| *l < 0xFC) {
        out.push(len);
        out.extend_from_slice(id.as_bytes());
    } else {
        let bytes = &id.as_bytes()[..id.len().min(u16::MAX as usize)];
        out.push(0xFD);
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }
}

/// The next id packed by [`pack_id`]: `None` if malformed, `Some(None)` for none.
pub fn unpack_id(rest: &mut &[u8]) -> Option<Option<String>> {
    let (&head, tail) = rest.split_first()?;
    *rest = tail;
    let len = match head {
        0xFF => return Some(None),
        0xFE => {
            let (raw, tail) = rest.split_at_checked(16)?;
            *rest = tail;
            return Some(Some(uuid_text(raw.try_into().ok()?)));
        }
        0xFC => {
            let (raw, tail) = rest.split_at_checked(16)?;
            *rest = tail;
            return Some(Some(format!("U{}", hex(raw))));
        }
        0xFD => {
            let (len, tail) = rest.split_at_checked(2)?;
            *rest = tail;
            usize::from(u16::from_be_bytes([len[0], len[1]]))
        }
        n => usize::from(n),
    };
    let (bytes, tail) = rest.split_at_checked(len)?;
    *rest = tail;
    Some(Some(std::str::from_utf8(bytes).ok()?.to_owned()))
}

/// The 16 bytes of a LINE user id (`U` and 32 lowercase hex digits), which
/// unpack to the same text.
fn line_user_bytes(id: &str) -> Option<[u8; 16]> {
    let digits = id.strip_prefix('U')?;
    if digits.len() != 32
        || !digits
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    unhex(digits)?.try_into().ok()
}

/// The 16 bytes of a canonical lowercase UUID (`8-4-4-4-12` hex digits), which
/// unpack to the same text.
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let digits: String = id.chars().filter(|&c| c != '-').collect();
    if digits.len() != 32
        || !digits
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    unhex(&digits)?.try_into().ok()
}

/// A UUID's 16 bytes as its canonical lowercase text (what [`uuid_bytes`] read).
fn uuid_text(raw: &[u8; 16]) -> String {
    let h = hex(raw);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The 64-bit VERP tag binding a job and its recipient under `keys`.
fn verp_tag(keys: &Keys, job_id: &str, address: &str) -> [u8; 8] {
    // Compared as sent (an internationalized domain in IDNA form): the bounce
    // report names the address the relay was given, the job may have it in Unicode.
    let address = tayori_channels::email::address::with_ascii_domain(address.trim());
    let address = address.to_lowercase();
    truncated_mac(&keys.verp, &[job_id.as_bytes(), &[0], address.as_bytes()])
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
    fn a_uuid_job_id_rides_in_its_verp_token() {
        let sealer = Sealer::new("a-secret-of-sixteen-bytes");
        let id = "3f2c9a1e-7b4d-4e8a-9c61-0a5b2d7e4f19";
        let token = sealer.verp_token(id, "taro@example.com");
        assert_eq!(token.len(), 50, "{token}");
        assert!("bounces+".len() + token.len() <= 64, "fits a local part");
        assert_eq!(Sealer::stored_verp_key(&token), None, "nothing to look up");
        assert_eq!(
            sealer
                .open_verp(&token.to_uppercase(), "Taro@Example.com")
                .as_deref(),
            Some(id)
        );
        assert_eq!(sealer.open_verp(&token, "hanako@example.com"), None);
        // Not a canonical UUID (upper case): carried as text, as before.
        let upper = id.to_uppercase();
        assert!(!sealer
            .verp_token(&upper, "taro@example.com")
            .starts_with('u'));
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

    #[test]
    fn a_link_record_opens_to_what_was_sealed_and_hides_the_recipient() {
        let s = Sealer::new("secret");
        let t = Tracked {
            job_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            address: "+819012345678".into(),
            customer_id: Some("C0001234".into()),
            ..tracked()
        };
        let content = s.content_ref(&t);
        let bucket = [1, 2, 3];
        let (field, value) = s.seal_link(bucket, &t, content);
        // A UUID job id packs to 16 bytes: the value stays within a listpack's 64.
        assert!(value.len() <= 64, "{} bytes", value.len());
        assert!(!value.windows(4).any(|w| w == b"9012"), "address in clear");
        let opened = s.open_link(bucket, field, &value).expect("opens");
        assert_eq!(
            opened,
            LinkRecord {
                content_ref: content,
                job_id: t.job_id.clone(),
                address: t.address.clone(),
                customer_id: t.customer_id.clone(),
                sent_at: t.sent_at,
            }
        );
        let code = link_code(bucket, field);
        assert_eq!(code.len(), 12, "{code}");
        assert_eq!(link_code_parts(&code), Some((bucket, field)));
        // Codes of the form before buckets are not taken for bucketed ones.
        assert_eq!(link_code_parts(&s.short_code("j1", "https://x")), None);
        // The content reference binds channel, campaign and URL.
        assert!(s.content_matches(&content, &t));
        for other in [
            Tracked {
                url: Some("https://evil.example/".into()),
                ..t.clone()
            },
            Tracked {
                campaign: None,
                ..t.clone()
            },
            Tracked {
                channel: ChannelId::new("sms"),
                ..t.clone()
            },
        ] {
            assert!(!s.content_matches(&content, &other), "{other:?}");
        }
    }

    #[test]
    fn a_changed_or_moved_link_record_does_not_open() {
        let s = Sealer::new("secret");
        let t = tracked();
        let bucket = [9, 9, 9];
        let (field, value) = s.seal_link(bucket, &t, s.content_ref(&t));
        for i in 0..value.len() {
            let mut v = value.clone();
            v[i] ^= 1;
            assert_eq!(s.open_link(bucket, field, &v), None, "flip at {i}");
        }
        let mut f = field;
        f[0] ^= 1;
        assert_eq!(s.open_link(bucket, f, &value), None, "another field");
        assert_eq!(
            s.open_link([9, 9, 8], field, &value),
            None,
            "another bucket"
        );
        assert_eq!(s.open_link(bucket, field, &value[..value.len() - 1]), None);
        assert_eq!(s.open_link(bucket, field, b""), None);
        assert_eq!(Sealer::new("other").open_link(bucket, field, &value), None);
        // Made before a rotation: still opens.
        let rotated = Sealer::rotated("new-secret", &["secret".into()]);
        assert!(rotated.open_link(bucket, field, &value).is_some());
        assert!(rotated.content_matches(&s.content_ref(&t), &t));
    }

    #[test]
    fn ids_pack_compactly_and_unpack_to_the_same_text() {
        for id in [
            Some("0f8fad5b-d9cb-469f-a165-70867728950e"),
            Some("0F8FAD5B-D9CB-469F-A165-70867728950E"),
            Some("spring26-C1001"),
            Some("U4af4980629a0c3e2f6b5d3e8a6c2b1f0"),
            Some("U4AF4980629A0C3E2F6B5D3E8A6C2B1F0"),
            Some(&"y".repeat(251)),
            Some(&"y".repeat(252)),
            Some(""),
            None,
        ] {
            let mut buf = Vec::new();
            pack_id(&mut buf, id);
            let mut rest = buf.as_slice();
            assert_eq!(unpack_id(&mut rest), Some(id.map(str::to_owned)), "{id:?}");
            assert!(rest.is_empty());
        }
        let long = "x".repeat(300);
        let mut buf = Vec::new();
        pack_id(&mut buf, Some(&long));
        assert_eq!(unpack_id(&mut buf.as_slice()), Some(Some(long)));
        let mut uuid = Vec::new();
        pack_id(&mut uuid, Some("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert_eq!(uuid.len(), 17);
        let mut line = Vec::new();
        pack_id(&mut line, Some("U4af4980629a0c3e2f6b5d3e8a6c2b1f0"));
        assert_eq!(line.len(), 17);
        assert_eq!(unpack_id(&mut &uuid[..10]), None, "cut short");
    }

    #[test]
    fn bucketed_verp_tokens_bind_job_and_address_and_name_their_bucket() {
        let s = Sealer::new("secret");
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let t = s.bucketed_verp_token([0xde, 0xad, 0xbe, 0xef], id, "Taro@Example.com");
        assert_eq!(t.len(), 25, "{t}");
        assert!(t.starts_with("bdeadbeef"), "{t}");
        let key = Sealer::stored_verp_key(&t.to_uppercase()).expect("a stored token");
        assert_eq!(key, t);
        let (bucket, tag) = Sealer::verp_bucket(&key).expect("bucketed");
        assert_eq!(bucket, [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(hex(&tag), t[9..]);
        assert!(s.opens_stored_verp(&key, id, "taro@example.com"));
        assert!(!s.opens_stored_verp(&key, id, "someone-else@example.com"));
        assert!(!s.opens_stored_verp(&key, "another-job", "taro@example.com"));
        // The form before buckets has no bucket.
        let old = s.stored_verp_token(id, "taro@example.com");
        assert_eq!(Sealer::verp_bucket(&old), None);
        assert_eq!(Sealer::stored_verp_key("bdeadbeef0123"), None);
    }
}
