//! A channel's wire id: `email`, `line`, `sms`, `dm`, `webhook`.
//!
//! The id is what Redis keys (`jobs:email`), events (`"channel": "line"`),
//! tracking tokens, metrics labels and the CRM's jobs carry, so it never changes
//! once a channel ships. It is a short inline string, `Copy` and cheap to compare,
//! and knows nothing of the channels themselves: which ids exist is the registry's
//! business (`crate::channel::registry`), so the layers below it (keys, tokens,
//! policy, profiles) can hold and store ids without depending on every channel.

use std::fmt;

/// The longest id: room for every name a channel plausibly takes, small enough
/// to keep the id `Copy` in 16 bytes.
pub const MAX_LEN: usize = 15;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelId {
    len: u8,
    bytes: [u8; MAX_LEN],
}

/// A text that cannot be a channel id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a channel name (1 to 15 of a-z, 0-9 and _)")]
pub struct BadChannelId(pub String);

impl ChannelId {
    /// An id from a literal; a channel's folder defines its own with this.
    /// Panics at compile time (in a `const`) for a name that cannot be an id.
    pub const fn new(name: &'static str) -> ChannelId {
        match Self::from_bytes(name.as_bytes()) {
            Some(id) => id,
            None => panic!("not a channel id"),
        }
    }

    const fn from_bytes(name: &[u8]) -> Option<ChannelId> {
        if name.is_empty() || name.len() > MAX_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_LEN];
        let mut i = 0;
        while i < name.len() {
            let b = name[i];
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                return None;
            }
            bytes[i] = b;
            i += 1;
        }
        Some(ChannelId {
            len: name.len() as u8,
            bytes,
        })
    }

    /// Only the shape is checked here; whether such a channel exists is the registry's to say.
    pub fn parse(name: &str) -> Result<ChannelId, BadChannelId> {
        Self::from_bytes(name.as_bytes())
            .ok_or_else(|| BadChannelId(name.chars().take(40).collect()))
    }

    pub fn as_str(&self) -> &str {
        // Built only from ASCII bytes, so this never fails.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The id as a `'static` string, for metric labels (which must be static or
    /// allocated per call). Interned on first use in a fixed table of
    /// [`LABELS`] slots; past that the label is `other`, so label values and the
    /// memory behind them stay bounded whatever ids come by.
    pub fn label(&self) -> &'static str {
        for slot in &LABEL_SLOTS {
            match slot.get() {
                Some((id, label)) if id == self => return label,
                Some(_) => continue,
                None => {
                    let label: &'static str = Box::leak(self.as_str().to_owned().into_boxed_str());
                    // Another thread may have taken the slot meanwhile: look again.
                    let _ = slot.set((*self, label));
                    if let Some((id, label)) = slot.get() {
                        if id == self {
                            return label;
                        }
                    }
                }
            }
        }
        "other"
    }
}

/// How many distinct ids get their own metric label.
pub const LABELS: usize = 32;

static LABEL_SLOTS: [std::sync::OnceLock<(ChannelId, &'static str)>; LABELS] =
    [const { std::sync::OnceLock::new() }; LABELS];

/// By name, so maps keyed by channel list them alphabetically.
impl Ord for ChannelId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for ChannelId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::str::FromStr for ChannelId {
    type Err = BadChannelId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelId::parse(s)
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq<str> for ChannelId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ChannelId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ChannelId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_lowercase_words() {
        assert_eq!(ChannelId::parse("email").unwrap().as_str(), "email");
        assert_eq!(ChannelId::new("sms"), ChannelId::parse("sms").unwrap());
        for bad in ["", "Email", "e-mail", "a_very_long_channel", "fax!"] {
            assert!(ChannelId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(std::mem::size_of::<ChannelId>(), 16);
        assert_eq!(ChannelId::new("sms").label(), "sms");
        assert!(std::ptr::eq(
            ChannelId::new("sms").label(),
            ChannelId::new("sms").label()
        ));
    }
}
