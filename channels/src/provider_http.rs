//! What every HTTP provider adapter (LINE, Twilio, Vonage, a configured gateway)
//! does the same way: the client, a failed request, and `Retry-After`.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::SendError;

/// A client that never follows redirects (a redirect would re-post the message
/// elsewhere), with the send timeout and a shorter connect timeout.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("tayori/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A request that got no answer: transient, coded `{prefix}_timeout` or
/// `{prefix}_connection`. The URL is left out (some gateways put keys in it).
pub fn request_error(prefix: &str, e: reqwest::Error) -> SendError {
    let what = if e.is_timeout() {
        "timeout"
    } else {
        "connection"
    };
    SendError::transient(&format!("{prefix}_{what}"), e.without_url().to_string())
}

/// `Retry-After` in seconds, if the provider sent one.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
