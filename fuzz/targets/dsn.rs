//! The `dsn` fuzz target: bounce reports, as the MTA pipe and /webhooks/bounce
//! receive them.

pub fn dsn(data: &[u8]) {
    if let Ok(report) = tayori_channels::email::dsn::parse(data) {
        assert!(!report.recipients.is_empty());
        for r in &report.recipients {
            let _ = (r.address(), r.is_hard(), r.is_soft());
        }
    }
}

pub fn dsn_seeds() -> Vec<Vec<u8>> {
    let report = "From: MAILER-DAEMON@mx.example.net\r\n\
To: bounces+74657374-0011223344556677@example.com\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain\r\n\
\r\n\
The mail could not be delivered.\r\n\
--b\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
\r\n\
Final-Recipient: rfc822; taro@example.com\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\
\r\n\
--b\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Message-ID: <test@example.com>\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: nested\r\n\
\r\n\
x\r\n\
--b--\r\n";
    vec![report.as_bytes().to_vec()]
}
