//! The `receiptInformation` bytes we attach to every deposit and redeem.
//!
//! Encoding, version 1: a compact UTF-8 JSON object, fields in this order:
//!
//! ```json
//! {"v":1,"op":"mint","tokenization_request_id":"…","issuer_request_id":"…",
//!  "underlying":"AAPL","quantity":"1.5","timestamp":"2026-11-28T05:31:00Z"}
//! ```
//!
//! * `v` — format version; decoders reject versions they do not know.
//! * `op` — `"mint"` for deposits, `"redeem"` for burns.
//! * `quantity` — decimal string, exact (see [`Quantity`]).
//! * `timestamp` — RFC 3339, UTC.
//!
//! The bytes are stored on-chain in the vault's `Deposit` event and the
//! receipt's `ReceiptInformation` event, which is how recovery recognises
//! deposits the service made (e.g. a mint whose outcome was never
//! recorded). Decoding is size-capped because the data comes from chain
//! logs anyone can write to.

use alloy::primitives::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::quantity::Quantity;

/// The only version this code writes.
pub const RECEIPT_INFO_VERSION: u32 = 1;

/// Inputs larger than this are not ours and are not parsed.
pub const MAX_RECEIPT_INFO_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptOp {
    Mint,
    Redeem,
}

/// Fields are private so that every value can be decoded again: the
/// constructor refuses anything whose encoding exceeds the decode cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptInformation {
    op: ReceiptOp,
    tokenization_request_id: String,
    issuer_request_id: String,
    underlying: String,
    quantity: Quantity,
    timestamp: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiptInfoError {
    #[error("receipt information is {size} bytes, at most {max} accepted")]
    TooLarge { size: usize, max: usize },
    #[error("receipt information is not our JSON encoding")]
    Malformed(#[from] serde_json::Error),
    #[error("receipt information version {version} is not supported")]
    UnknownVersion { version: u64 },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireV1<'a> {
    v: u32,
    op: ReceiptOp,
    #[serde(borrow)]
    tokenization_request_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    issuer_request_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    underlying: std::borrow::Cow<'a, str>,
    quantity: Quantity,
    #[serde(with = "rfc3339")]
    timestamp: DateTime<Utc>,
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u64,
}

impl ReceiptInformation {
    pub fn new(
        op: ReceiptOp,
        tokenization_request_id: String,
        issuer_request_id: String,
        underlying: String,
        quantity: Quantity,
        timestamp: DateTime<Utc>,
    ) -> Result<Self, ReceiptInfoError> {
        let info = Self {
            op,
            tokenization_request_id,
            issuer_request_id,
            underlying,
            quantity,
            timestamp,
        };
        let size = info.encode().len();
        if size > MAX_RECEIPT_INFO_BYTES {
            return Err(ReceiptInfoError::TooLarge {
                size,
                max: MAX_RECEIPT_INFO_BYTES,
            });
        }
        Ok(info)
    }

    pub fn op(&self) -> ReceiptOp {
        self.op
    }

    pub fn tokenization_request_id(&self) -> &str {
        &self.tokenization_request_id
    }

    pub fn issuer_request_id(&self) -> &str {
        &self.issuer_request_id
    }

    pub fn underlying(&self) -> &str {
        &self.underlying
    }

    pub fn quantity(&self) -> Quantity {
        self.quantity
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    pub fn encode(&self) -> Bytes {
        let wire = WireV1 {
            v: RECEIPT_INFO_VERSION,
            op: self.op,
            tokenization_request_id: self
                .tokenization_request_id
                .as_str()
                .into(),
            issuer_request_id: self.issuer_request_id.as_str().into(),
            underlying: self.underlying.as_str().into(),
            quantity: self.quantity,
            timestamp: self.timestamp,
        };
        // Serializing plain strings, a Quantity and a timestamp into a
        // Vec cannot fail; an empty payload would be rejected by decode.
        Bytes::from(serde_json::to_vec(&wire).unwrap_or_default())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ReceiptInfoError> {
        if bytes.len() > MAX_RECEIPT_INFO_BYTES {
            return Err(ReceiptInfoError::TooLarge {
                size: bytes.len(),
                max: MAX_RECEIPT_INFO_BYTES,
            });
        }
        let probe: VersionProbe = serde_json::from_slice(bytes)?;
        if probe.v != u64::from(RECEIPT_INFO_VERSION) {
            return Err(ReceiptInfoError::UnknownVersion { version: probe.v });
        }
        let wire: WireV1<'_> = serde_json::from_slice(bytes)?;
        Ok(Self {
            op: wire.op,
            tokenization_request_id: wire.tokenization_request_id.into_owned(),
            issuer_request_id: wire.issuer_request_id.into_owned(),
            underlying: wire.underlying.into_owned(),
            quantity: wire.quantity,
            timestamp: wire.timestamp,
        })
    }
}

/// RFC 3339 with a `Z` suffix and only as many sub-second digits as needed.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &DateTime<Utc>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|value| value.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn sample() -> ReceiptInformation {
        ReceiptInformation::new(
            ReceiptOp::Mint,
            "tok-123".into(),
            "0b7c5a4e-8f2e-4a52-9a55-2f5f3b1d9c11".into(),
            "AAPL".into(),
            Quantity::parse("1.5").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 28, 5, 31, 0).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn constructor_refuses_undecodable_sizes() {
        let result = ReceiptInformation::new(
            ReceiptOp::Redeem,
            "x".repeat(MAX_RECEIPT_INFO_BYTES),
            "id".into(),
            "AAPL".into(),
            Quantity::parse("1").unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        );
        assert!(matches!(result, Err(ReceiptInfoError::TooLarge { .. })));
    }

    #[test]
    fn encodes_the_documented_layout() {
        let bytes = sample().encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"v":1,"op":"mint","tokenization_request_id":"tok-123","issuer_request_id":"0b7c5a4e-8f2e-4a52-9a55-2f5f3b1d9c11","underlying":"AAPL","quantity":"1.5","timestamp":"2026-11-28T05:31:00Z"}"#
        );
        assert_eq!(ReceiptInformation::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn rejects_foreign_and_oversized_data() {
        assert!(matches!(
            ReceiptInformation::decode(b""),
            Err(ReceiptInfoError::Malformed(_))
        ));
        assert!(matches!(
            ReceiptInformation::decode(b"\xff\x0a\x89\xc6"),
            Err(ReceiptInfoError::Malformed(_))
        ));
        let v2 = String::from_utf8(sample().encode().to_vec())
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        assert!(matches!(
            ReceiptInformation::decode(v2.as_bytes()),
            Err(ReceiptInfoError::UnknownVersion { version: 2 })
        ));
        let extra = String::from_utf8(sample().encode().to_vec())
            .unwrap()
            .replace("{\"v\":1", "{\"v\":1,\"notes\":\"x\"");
        assert!(matches!(
            ReceiptInformation::decode(extra.as_bytes()),
            Err(ReceiptInfoError::Malformed(_))
        ));
        let huge = vec![b' '; MAX_RECEIPT_INFO_BYTES + 1];
        assert!(matches!(
            ReceiptInformation::decode(&huge),
            Err(ReceiptInfoError::TooLarge { size, .. }) if size == huge.len()
        ));
        let bad_quantity = String::from_utf8(sample().encode().to_vec())
            .unwrap()
            .replace("\"1.5\"", "\"-1.5\"");
        assert!(ReceiptInformation::decode(bad_quantity.as_bytes()).is_err());
    }

    #[test]
    fn accepts_offsets_and_normalises_to_utc() {
        let text = String::from_utf8(sample().encode().to_vec())
            .unwrap()
            .replace("2026-11-28T05:31:00Z", "2026-11-28T06:31:00+01:00");
        let decoded = ReceiptInformation::decode(text.as_bytes()).unwrap();
        assert_eq!(decoded.timestamp, sample().timestamp);
    }

    proptest! {
        #[test]
        fn round_trips(
            redeem in any::<bool>(),
            tok in "\\PC{0,40}",
            issuer in "[a-z0-9-]{1,40}",
            underlying in "[A-Z.]{1,8}",
            shares in 1u128..(1u128 << 96),
            secs in 0i64..4_102_444_800,
            nanos in 0u32..1_000_000_000,
        ) {
            let info = ReceiptInformation::new(
                if redeem { ReceiptOp::Redeem } else { ReceiptOp::Mint },
                tok,
                issuer,
                underlying,
                Quantity::from_shares(alloy::primitives::U256::from(shares))
                    .unwrap(),
                Utc.timestamp_opt(secs, nanos).unwrap(),
            )
            .unwrap();
            let bytes = info.encode();
            prop_assert!(bytes.len() <= MAX_RECEIPT_INFO_BYTES);
            prop_assert_eq!(ReceiptInformation::decode(&bytes).unwrap(), info);
        }
    }
}
