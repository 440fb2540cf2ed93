//! SMS: numbers, segments and the gateway-neutral request; providers in their own
//! modules (`twilio`).

pub mod http_gateway;
pub mod phone;
pub mod segments;
pub mod signatures;
pub mod twilio;
pub mod vonage;

use serde_json::json;

use crate::{Content, Encode, Message, SendError};

/// Encodes `{"to", "text"}`: what every gateway needs, before provider specifics.
#[derive(Default)]
pub struct SmsEncoder;

impl Encode for SmsEncoder {
    fn extension(&self) -> &'static str {
        "json"
    }
    fn encode(&self, message: &Message) -> Result<Vec<u8>, SendError> {
        let Content::Sms { text } = &message.content else {
            return Err(SendError::permanent("invalid_message", "no SMS content"));
        };
        if text.is_empty() {
            return Err(SendError::permanent("invalid_message", "sms.text is empty"));
        }
        serde_json::to_vec(&json!({ "to": message.to.address, "text": text }))
            .map_err(|e| SendError::permanent("invalid_message", e.to_string()))
    }
}

/// What every SMS provider checks before a message goes out.
#[derive(Debug, Clone)]
pub struct SmsLimits {
    /// For national numbers (`090-…` with `JP`).
    pub default_region: String,
    /// Longer messages fail before anything is sent (each segment is billed).
    pub max_segments: u32,
}

/// A message ready for a provider: the number in E.164, the text and its segments.
pub struct Prepared<'a> {
    pub to: String,
    pub text: &'a str,
    pub segments: segments::Segments,
}

impl Prepared<'_> {
    /// `segments` and `encoding`, for the `sent` event.
    pub fn details(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("segments", self.segments.count.into()),
            ("encoding", self.segments.encoding.as_str().into()),
        ]
    }
}

/// Normalizes the number and counts segments: `invalid_phone` (the job falls back)
/// or `too_many_segments` before any provider is called.
pub fn prepare<'a>(message: &'a Message, limits: &SmsLimits) -> Result<Prepared<'a>, SendError> {
    let Content::Sms { text } = &message.content else {
        return Err(SendError::permanent("invalid_message", "no SMS content"));
    };
    if text.trim().is_empty() {
        return Err(SendError::permanent("invalid_message", "sms.text is empty"));
    }
    let to = phone::to_e164(&message.to.address, &limits.default_region)
        .map_err(|e| SendError::unreachable("invalid_phone", e.to_string()))?;
    let segments = segments::count(text);
    segments::check_limit(&segments, limits.max_segments)
        .map_err(|m| SendError::permanent("too_many_segments", m))?;
    Ok(Prepared { to, text, segments })
}

/// A server for adapter tests that answers one request with a canned JSON body.
#[cfg(test)]
pub(crate) mod one_shot {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Listens on a free port; the handle yields the raw request once it was answered.
    pub async fn serve(
        body: &'static str,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, server)
    }
}
