//! Opens that no person made: image proxies that fetch a message's images when
//! it arrives (Apple Mail Privacy Protection), told apart from those that fetch
//! when the recipient opens it (Gmail's, Yahoo's).
//!
//! Apple's proxy loads every remote image of a message as it lands in an Apple
//! Mail inbox with Privacy Protection on (the default), so its opens say when
//! the mail was delivered, not when it was read. It is recognised by:
//! - its user agent: exactly `Mozilla/5.0`, nothing after it (every browser and
//!   mail client sends more), and
//! - where the client address is known: Apple's network, `17.0.0.0/8`. The
//!   address is the TCP peer's, or, when that peer is one of
//!   `http.trusted_proxies` (your reverse proxies), the last `X-Forwarded-For`
//!   hop they did not add. An address from an untrusted peer's header is never
//!   believed: anyone can write one.
//!
//! Gmail (`GoogleImageProxy`) and Yahoo (`YahooMailProxy`) fetch through their
//! proxies when the recipient opens the message: those opens are a person's,
//! marked with `proxy` but not `machine_open`.

use std::net::IpAddr;

use axum::http::{header, HeaderMap};
use ipnet::IpNet;

/// Apple's network (its whole /8), from which its image proxy fetches.
const APPLE: IpNet = IpNet::V4(
    match ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(17, 0, 0, 0), 8) {
        Ok(n) => n,
        Err(_) => panic!("a valid prefix"),
    },
);

/// Who fetched an open pixel, when it was an image proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxy {
    /// `apple`, `google`, `yahoo`.
    pub name: &'static str,
    /// Fetched without a person: on delivery, not on reading.
    pub machine: bool,
}

/// The image proxy behind an open, if the request shows one.
pub fn image_proxy(headers: &HeaderMap, client: Option<IpAddr>) -> Option<Proxy> {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let apple = Proxy {
        name: "apple",
        machine: true,
    };
    if agent == "Mozilla/5.0" || client.is_some_and(|ip| APPLE.contains(&ip)) {
        return Some(apple);
    }
    if agent.contains("GoogleImageProxy") {
        return Some(Proxy {
            name: "google",
            machine: false,
        });
    }
    if agent.contains("YahooMailProxy") {
        return Some(Proxy {
            name: "yahoo",
            machine: false,
        });
    }
    None
}

/// The client's address: the TCP peer's, or when the peer is one of `trusted`
/// (reverse proxies), the right-most `X-Forwarded-For` address not in `trusted`.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    // Each proxy appends the address it saw: walk back past our own.
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(Some(peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(agent: &str, forwarded: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, HeaderValue::from_str(agent).unwrap());
        if let Some(f) = forwarded {
            h.insert("x-forwarded-for", HeaderValue::from_str(f).unwrap());
        }
        h
    }

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";

    #[test]
    fn apples_proxy_is_a_machine_and_a_phone_is_a_person() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let machine = Some(Proxy {
            name: "apple",
            machine: true,
        });
        assert_eq!(image_proxy(&headers("Mozilla/5.0", None), None), machine);
        assert_eq!(
            image_proxy(&headers(" Mozilla/5.0 ", None), ip("203.0.113.9")),
            machine
        );
        assert_eq!(
            image_proxy(&headers(IPHONE, None), ip("17.58.1.2")),
            machine
        );
        // An ordinary phone, on its own network or unknown: a person.
        assert_eq!(image_proxy(&headers(IPHONE, None), ip("203.0.113.9")), None);
        assert_eq!(image_proxy(&headers(IPHONE, None), None), None);
        assert_eq!(
            image_proxy(&headers("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", None), None),
            Some(Proxy { name: "google", machine: false })
        );
        assert_eq!(
            image_proxy(
                &headers(
                    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
                    None
                ),
                None
            ),
            Some(Proxy {
                name: "yahoo",
                machine: false
            })
        );
    }

    #[test]
    fn a_forwarded_address_is_believed_only_from_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let h = headers(IPHONE, Some("17.1.2.3, 10.0.0.7"));
        // Through our two proxies: the hop before them.
        assert_eq!(
            client_address(Some(ip("10.0.0.5")), &h, &trusted),
            Some(ip("17.1.2.3"))
        );
        // From elsewhere the header is anyone's: the peer it is.
        assert_eq!(
            client_address(Some(ip("198.51.100.4")), &h, &trusted),
            Some(ip("198.51.100.4"))
        );
        // A client that prepends a fake address: the right-most untrusted one wins.
        let h = headers(IPHONE, Some("17.1.2.3, 203.0.113.9"));
        assert_eq!(
            client_address(Some(ip("10.0.0.5")), &h, &trusted),
            Some(ip("203.0.113.9"))
        );
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(
            client_address(Some(ip("10.0.0.5")), &headers(IPHONE, None), &trusted),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(client_address(None, &h, &trusted), None);
    }
}
