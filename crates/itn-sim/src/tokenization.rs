//! Alpaca's tokenization request record (itn-wire.md §5.6) and the
//! quantity rule shared by mint and redeem.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::ap::ApId;
use crate::fault::{FeeQuirk, Quirks};

/// Alpaca's `TokenizationNetwork` enum as of 2026-09.
pub const NETWORKS: [&str; 12] = [
    "arbitrum",
    "base",
    "binance",
    "cronos",
    "ethereum",
    "hypercore",
    "hyperevm",
    "mantle",
    "robinhood",
    "solana",
    "ton",
    "tron",
];

pub(crate) fn is_known_network(network: &str) -> bool {
    NETWORKS.contains(&network)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QtyError {
    #[error("qty {0:?} is not a decimal number")]
    NotDecimal(String),
    #[error("qty {0} must be positive")]
    NotPositive(Decimal),
    #[error("qty {qty} has {scale} decimal places, at most 9 are allowed")]
    TooManyDecimals { qty: Decimal, scale: u32 },
}

/// A positive quantity with at most 9 decimal places, as written (the
/// scale is kept, so "1.50" stays "1.50" on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Qty(Decimal);

impl Qty {
    pub const MAX_DECIMALS: u32 = 9;

    /// The scale is checked as written: Alpaca counts the digits the
    /// issuer sent, so "1.0000000000" is refused like "1.0000000001".
    pub fn new(qty: Decimal) -> Result<Self, QtyError> {
        if qty <= Decimal::ZERO {
            return Err(QtyError::NotPositive(qty));
        }
        let scale = qty.scale();
        if scale > Self::MAX_DECIMALS {
            return Err(QtyError::TooManyDecimals { qty, scale });
        }
        Ok(Self(qty))
    }

    pub fn parse(raw: &str) -> Result<Self, QtyError> {
        let qty: Decimal = raw
            .trim()
            .parse()
            .map_err(|_| QtyError::NotDecimal(raw.to_owned()))?;
        Self::new(qty)
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Qty {
    type Error = QtyError;

    fn try_from(value: Decimal) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Qty> for Decimal {
    fn from(value: Qty) -> Self {
        value.0
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestType {
    Mint,
    Redeem,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mint => "mint",
            Self::Redeem => "redeem",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "mint" => Some(Self::Mint),
            "redeem" => Some(Self::Redeem),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Completed,
    Rejected,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "completed" => Some(Self::Completed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// How the AP is named on a request; exactly one of the two ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum ClientRef {
    /// `client_external_account_id` (alias `client_id`).
    External(String),
    /// `client_account_id`.
    Account(Uuid),
}

/// The simulator's record of one tokenization request, rendered on the
/// wire with the schema of itn-wire.md §5.6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizationRequest {
    pub tokenization_request_id: Uuid,
    pub issuer_request_id: Option<String>,
    pub request_type: RequestType,
    pub status: RequestStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub underlying_symbol: String,
    pub token_symbol: String,
    pub qty: Qty,
    pub issuer: String,
    pub network: String,
    pub wallet_address: String,
    pub tx_hash: Option<String>,
    pub fees: Decimal,
    pub client: ClientRef,
    pub ap: ApId,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl TokenizationRequest {
    /// The JSON Alpaca would return for this record, with quirks applied.
    pub fn to_wire(&self, quirks: &Quirks) -> Value {
        let tx_hash = match (&self.tx_hash, self.status) {
            (_, RequestStatus::Pending)
                if quirks.empty_tx_hash_when_pending =>
            {
                json!("")
            }
            (Some(hash), _) => json!(hash),
            (None, _) => Value::Null,
        };
        let mut out = Map::new();
        out.insert(
            "tokenization_request_id".into(),
            json!(self.tokenization_request_id),
        );
        out.insert("issuer_request_id".into(), json!(self.issuer_request_id));
        out.insert("created_at".into(), json!(rfc3339(self.created_at)));
        out.insert("updated_at".into(), json!(self.updated_at.map(rfc3339)));
        out.insert("type".into(), json!(self.request_type.as_str()));
        out.insert("status".into(), json!(self.status.as_str()));
        out.insert("underlying_symbol".into(), json!(self.underlying_symbol));
        out.insert("token_symbol".into(), json!(self.token_symbol));
        out.insert("qty".into(), json!(self.qty.to_string()));
        out.insert("issuer".into(), json!(self.issuer));
        out.insert("network".into(), json!(self.network));
        out.insert("wallet_address".into(), json!(self.wallet_address));
        out.insert("tx_hash".into(), tx_hash);
        match quirks.fees {
            FeeQuirk::Absent => {}
            FeeQuirk::Null => {
                out.insert("fees".into(), Value::Null);
            }
            FeeQuirk::String => {
                out.insert("fees".into(), json!(self.fees.to_string()));
            }
            FeeQuirk::Number => {
                // Parsing the decimal text keeps every digit serde_json
                // can represent; this quirk is about the JSON type.
                let number =
                    serde_json::from_str::<Value>(&self.fees.to_string())
                        .unwrap_or(Value::Null);
                out.insert("fees".into(), number);
            }
        }
        match &self.client {
            ClientRef::External(id) => {
                out.insert("client_external_account_id".into(), json!(id));
                if quirks.deprecated_aliases {
                    out.insert("client_id".into(), json!(id));
                    out.insert("issuer_account".into(), json!(id));
                }
            }
            ClientRef::Account(id) => {
                out.insert("client_account_id".into(), json!(id));
                if quirks.deprecated_aliases {
                    out.insert("account".into(), json!(id));
                }
            }
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qty_enforces_nine_decimals_as_written() {
        assert!(Qty::parse("1.123456789").is_ok());
        assert_eq!(
            Qty::parse("1.1234567891"),
            Err(QtyError::TooManyDecimals {
                qty: "1.1234567891".parse().unwrap(),
                scale: 10
            })
        );
        assert!(matches!(
            Qty::parse("1.0000000000"),
            Err(QtyError::TooManyDecimals { .. })
        ));
        assert!(matches!(Qty::parse("0"), Err(QtyError::NotPositive(_))));
        assert!(matches!(Qty::parse("-1"), Err(QtyError::NotPositive(_))));
        assert!(matches!(Qty::parse("abc"), Err(QtyError::NotDecimal(_))));
        assert_eq!(Qty::parse("1.50").unwrap().to_string(), "1.50");
    }

    fn sample() -> TokenizationRequest {
        TokenizationRequest {
            tokenization_request_id: Uuid::new_v4(),
            issuer_request_id: Some("iss-1".into()),
            request_type: RequestType::Redeem,
            status: RequestStatus::Pending,
            created_at: Utc::now(),
            updated_at: None,
            underlying_symbol: "AAPL".into(),
            token_symbol: "tAAPL".into(),
            qty: Qty::parse("2.5").unwrap(),
            issuer: "st0x".into(),
            network: "base".into(),
            wallet_address: "0xabc".into(),
            tx_hash: Some("0xfeed".into()),
            fees: "0.5".parse().unwrap(),
            client: ClientRef::External("ext-1".into()),
            ap: ApId::new(Uuid::new_v4()),
        }
    }

    #[test]
    fn wire_rendering_follows_schema_and_quirks() {
        let req = sample();
        let plain = req.to_wire(&Quirks::default());
        assert_eq!(plain["type"], "redeem");
        assert_eq!(plain["status"], "pending");
        assert_eq!(plain["qty"], "2.5");
        assert_eq!(plain["tx_hash"], "0xfeed");
        assert_eq!(plain["fees"], "0.5");
        assert_eq!(plain["client_external_account_id"], "ext-1");
        assert!(plain.get("client_id").is_none());

        let quirky = req.to_wire(&Quirks {
            empty_tx_hash_when_pending: true,
            fees: FeeQuirk::Number,
            deprecated_aliases: true,
        });
        assert_eq!(quirky["tx_hash"], "");
        assert_eq!(quirky["fees"], json!(0.5));
        assert_eq!(quirky["client_id"], "ext-1");
        assert_eq!(quirky["issuer_account"], "ext-1");

        let absent = req.to_wire(&Quirks {
            fees: FeeQuirk::Absent,
            ..Quirks::default()
        });
        assert!(absent.get("fees").is_none());
    }
}
