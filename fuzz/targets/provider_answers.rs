//! The `provider_answers` fuzz target: what LINE, Twilio, Vonage and a generic
//! gateway answer.

use super::*;

pub fn provider_answers(data: &[u8]) {
    use tayori_channels::sms::http_gateway::{BodyFormat, GatewayMethod, HttpGatewaySettings};
    if data.len() < 3 {
        return;
    }
    let status = StatusCode::from_u16(100 + u16::from_be_bytes([data[1], data[2]]) % 500)
        .unwrap_or(StatusCode::OK);
    let p = parts(&data[3..], 3);
    let body = &p[0];
    let retry = Some(std::time::Duration::from_secs(1));
    let check = |r: Result<tayori_channels::Sent, tayori_channels::SendError>| {
        if let Err(e) = r {
            assert!(!e.code().is_empty());
            // Provider text is capped before it reaches events and logs.
            assert!(
                e.message().chars().count() <= 700,
                "{} chars",
                e.message().len()
            );
        }
    };
    match data[0] % 4 {
        0 => check(tayori_channels::sms::twilio::classify(status, body, retry)),
        1 => check(tayori_channels::sms::vonage::classify(status, body, retry)),
        2 => {
            let settings = HttpGatewaySettings {
                url: "https://sms.example.com/send".into(),
                method: GatewayMethod::Post,
                headers: Vec::new(),
                content_type: BodyFormat::Json,
                body: json!({}),
                success_status: Vec::new(),
                id_pointer: non_empty(&p[1]),
                error_pointer: non_empty(&p[2]),
                timeout: std::time::Duration::from_secs(1),
            };
            check(tayori_channels::sms::http_gateway::classify(
                &settings, status, body, retry,
            ));
        }
        _ => {
            let mut headers = HeaderMap::new();
            for line in p[1].lines() {
                if let Some((k, v)) = line.split_once(':') {
                    if let (Ok(k), Ok(v)) = (
                        HeaderName::from_bytes(k.trim().as_bytes()),
                        HeaderValue::from_str(v.trim()),
                    ) {
                        headers.append(k, v);
                    }
                }
            }
            let _ = tayori_channels::line::client::classify(status, &headers, body);
        }
    }
}

pub fn provider_seeds() -> Vec<Vec<u8>> {
    let with = |which: u8, status: u16, rest: Vec<u8>| {
        let code = (status - 100).to_be_bytes();
        let mut v = vec![which, code[0], code[1]];
        v.extend(rest);
        v
    };
    vec![
        with(0, 201, br#"{"sid":"SM123","status":"queued"}"#.to_vec()),
        with(
            0,
            400,
            br#"{"code":21211,"message":"The 'To' number is not valid.","status":400}"#.to_vec(),
        ),
        with(
            1,
            200,
            br#"{"message-count":"1","messages":[{"status":"0","message-id":"0A"}]}"#.to_vec(),
        ),
        with(
            1,
            200,
            br#"{"messages":[{"status":"6","error-text":"anti-spam"}]}"#.to_vec(),
        ),
        with(
            2,
            500,
            join(&[r#"{"error":{"message":"down"}}"#, "/id", "/error/message"]),
        ),
        with(
            3,
            429,
            join(&[
                r#"{"message":"The monthly limit was reached","details":[{"message":"x","property":"y"}]}"#,
                "retry-after: 3\nx-line-request-id: r",
            ]),
        ),
        with(3, 409, join(&["{}", "x-line-accepted-request-id: abc"])),
    ]
}
