//! Email limits per recipient domain. Japanese carrier domains (docomo.ne.jp,
//! ezweb.ne.jp, au.com, softbank.ne.jp, i.softbank.jp) and the big webmail
//! providers throttle senders hard; each domain gets its own shared bucket, so a
//! throttled domain holds back only its own mail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::redis_connection::RedisConnection;

use super::SharedLimiter;
use crate::keys::Keys;
use crate::units::Rate;

/// More distinct domains than this and the map starts over: limiters are cheap to
/// make again, and their state lives in Redis.
const MAX_LIMITERS: usize = 10_000;

pub struct DomainLimits {
    /// Lowercased domain → its rate.
    rates: HashMap<String, Rate>,
    /// Every other domain, each on its own bucket at this rate (`"*"` in config).
    default: Option<Rate>,
    keys: Keys,
    consumer: String,
    conn: RedisConnection,
    limiters: Mutex<HashMap<String, Arc<DomainLimiter>>>,
    /// The channel's metric label.
    channel: &'static str,
}

/// One domain's limits: the bucket all daemons share, and this process's own
/// smoothing at the same rate — a job that comes back late for its reserved slot
/// must not go out in a clump with the next one.
pub struct DomainLimiter {
    pub shared: SharedLimiter,
    pub local: governor::DefaultDirectRateLimiter,
}

impl DomainLimits {
    /// `rates` as in `[channels.email.domain_rates]`: domain → rate, `"*"` for the rest.
    /// `None` when no domain is limited.
    pub fn new(
        channel: &'static str,
        rates: &[(String, Rate)],
        keys: &Keys,
        consumer: &str,
        conn: RedisConnection,
    ) -> Option<DomainLimits> {
        if rates.is_empty() {
            return None;
        }
        let mut map = HashMap::new();
        let mut default = None;
        for (domain, rate) in rates {
            if domain == "*" {
                default = Some(*rate);
            } else {
                map.insert(domain.trim().to_ascii_lowercase(), *rate);
            }
        }
        Some(DomainLimits {
            rates: map,
            default,
            keys: keys.clone(),
            consumer: consumer.to_owned(),
            conn,
            limiters: Mutex::new(HashMap::new()),
            channel,
        })
    }

    /// The limiter for an email address's domain, if that domain is limited.
    pub fn for_address(&self, address: &str) -> Option<(String, Arc<DomainLimiter>)> {
        let domain = domain_of(address)?;
        let rate = self.rates.get(&domain).or(self.default.as_ref())?;
        let mut limiters = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = limiters.get(&domain) {
            return Some((domain, l.clone()));
        }
        if limiters.len() >= MAX_LIMITERS {
            limiters.clear();
        }
        let limiter = Arc::new(DomainLimiter {
            shared: SharedLimiter::new(
                Keys::domain_scope(&domain),
                self.keys.rate_keys(&Keys::domain_scope(&domain)),
                self.channel,
                *rate,
                None,
                &self.consumer,
                self.conn.clone(),
            ),
            local: governor::RateLimiter::direct(rate.quota(None)),
        });
        limiters.insert(domain.clone(), limiter.clone());
        Some((domain, limiter))
    }
}

/// Where a pause of one email domain is kept (value: the reason; TTL: the pause).
pub fn pause_key(keys: &Keys, domain: &str) -> String {
    let [_, _, pause] = keys.rate_keys(&Keys::domain_scope(domain));
    pause
}

/// The lowercased domain of an address (`Taro@Docomo.ne.jp` → `docomo.ne.jp`).
pub fn domain_of(address: &str) -> Option<String> {
    let (_, domain) = address.trim().rsplit_once('@')?;
    let domain = domain.trim_end_matches('>').trim().trim_end_matches('.');
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lowercased_and_trimmed() {
        assert_eq!(
            domain_of("Taro@Docomo.NE.jp").as_deref(),
            Some("docomo.ne.jp")
        );
        assert_eq!(domain_of(" a@b.example. ").as_deref(), Some("b.example"));
        assert_eq!(domain_of("no-at-sign"), None);
        assert_eq!(domain_of("x@"), None);
    }
}
