//! What went over the wire, kept for test assertions.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// One HTTP request, received (Broker API) or sent (to the issuer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path plus query string, as sent.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: DateTime<Utc>,
}

impl RecordedRequest {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}
