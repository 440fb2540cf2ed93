use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A personalized message ready for one channel: templates are already rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub job_id: String,
    /// 1 for the first try; retries and redeliveries count up.
    pub attempt: u32,
    /// Stable across retries of the same job on the same channel; adapters whose
    /// provider supports idempotency keys send it so a retry never delivers twice.
    pub idempotency_key: String,
    /// The job's campaign, for providers that aggregate statistics by it.
    pub campaign: Option<String>,
    /// The CRM's customer id, for channels that print it (direct mail).
    pub customer_id: Option<String>,
    pub to: Recipient,
    pub content: Content,
}

/// Who receives the message on this channel.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recipient {
    /// Display name (`山田 太郎`), if known.
    pub name: Option<String>,
    /// The channel's address: an email address, a LINE user id, a phone number;
    /// for direct mail the postal code.
    pub address: String,
    /// The postal address, for direct mail.
    pub postal: Option<PostalAddress>,
}

/// A Japanese postal address as a label printer needs it (the job's `to.postal`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PostalAddress {
    /// `NNN-NNNN`.
    pub postal_code: String,
    pub address1: String,
    #[serde(default)]
    pub address2: String,
    /// A third address line (building, room), when the CRM splits it out.
    #[serde(default)]
    pub address3: String,
    /// Company or organisation, for business addresses.
    #[serde(default)]
    pub company: String,
    pub name: String,
    #[serde(default)]
    pub honorific: String,
}

/// The rendered content, one shape per channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Email {
        subject: String,
        html: Option<String>,
        text: Option<String>,
        /// What the daemon adds per message (unsubscribe link, bounce address).
        extras: EmailExtras,
    },
    /// LINE message objects, as the Messaging API's `messages` array.
    Line {
        messages: Vec<serde_json::Value>,
    },
    /// A LINE notification message (PNP): LINE message objects for the user
    /// LINE finds by a phone number, for a transactional job without a user id.
    LineNotification {
        messages: Vec<serde_json::Value>,
        /// The job's `to.phone` as given: the encoder normalizes it to E.164 and
        /// sends only its SHA-256.
        phone: String,
    },
    Sms {
        text: String,
    },
    /// Named fields for the print file (coupon code, message lines…).
    Dm {
        fields: BTreeMap<String, String>,
    },
    /// A JSON document a channel posts as its request body (signed webhooks).
    Json {
        body: serde_json::Value,
    },
}

/// Per-message parts of an email that come from the daemon, not the template:
/// they carry signed tokens only the daemon can make.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmailExtras {
    /// The https one-click unsubscribe URL: sent as `List-Unsubscribe` with
    /// `List-Unsubscribe-Post` (RFC 8058). `None` for transactional mail.
    pub unsubscribe_url: Option<String>,
    /// The envelope sender (Return-Path) for this message, e.g. a VERP address that
    /// maps a later bounce to the job. `None`: the transport's default.
    pub return_path: Option<String>,
}
