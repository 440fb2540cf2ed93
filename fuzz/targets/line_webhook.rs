//! The `line_webhook` fuzz target: LINE's signature check and body parser.

use super::*;

pub fn line_webhook(data: &[u8]) {
    use tayori_channels::line::webhook;
    let p = parts(data, 2);
    let _ = webhook::verify(LINE_SECRET, data, &p[1]);
    let _ = webhook::parse(data);
    // Our own signature over the body verifies; over a changed body it does not.
    let signature = line_signature(data);
    assert!(webhook::verify(LINE_SECRET, data, &signature));
    let mut changed = data.to_vec();
    changed.push(b' ');
    assert!(!webhook::verify(LINE_SECRET, &changed, &signature));
}

/// `X-Line-Signature` of `body` under the targets' channel secret.
pub fn line_signature(body: &[u8]) -> String {
    sign::line_signature(LINE_SECRET, body)
}

pub fn line_seeds() -> Vec<Vec<u8>> {
    let body = json!({"destination": "U0", "events": [
        {"type": "unfollow", "mode": "active", "timestamp": 1_790_000_000_000_i64,
         "source": {"type": "user", "userId": "U1"}, "webhookEventId": "01JBLOCK",
         "deliveryContext": {"isRedelivery": false}},
        {"type": "message", "timestamp": 1, "source": {"type": "user", "userId": "U2"},
         "webhookEventId": "01JMSG", "message": {"type": "text", "text": "STOP"}},
        {"type": "postback", "timestamp": -1, "webhookEventId": "01JPB", "postback": {"data": "a=b"}},
        {"type": "follow", "webhookEventId": "01JF", "follow": {"isUnblocked": true}}
    ]});
    vec![
        body.to_string().into_bytes(),
        br#"{"destination":"U0","events":[]}"#.to_vec(),
    ]
}
