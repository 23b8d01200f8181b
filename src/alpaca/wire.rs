//! Broker API bodies (`itn-wire.md` §5.3–§5.6).
//!
//! Requests are strict (typed addresses, hashes and 9-decimal quantities);
//! responses are tolerant, because Alpaca adds enum values and fields
//! without notice and has sent `""` where `null` was expected.

use std::fmt;

use alloy::primitives::{Address, TxHash};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::quantity::AlpacaQuantity;

/// How the AP is named on a request; serialised (flattened) into exactly
/// one wire field, fixed per AP–issuer pair by agreement.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub enum ApRef {
    /// Deprecated alias of `client_external_account_id` (older wire).
    #[serde(rename = "client_id")]
    Legacy(String),
    /// The issuer's own id for the AP (handshake flow).
    #[serde(rename = "client_external_account_id")]
    External(String),
    /// The AP's Alpaca account (affiliated flow).
    #[serde(rename = "client_account_id")]
    Affiliated(Uuid),
}

impl ApRef {
    /// Whether two references name the same AP. `client_id` is the
    /// deprecated alias of `client_external_account_id`, so `Legacy(x)`
    /// and `External(x)` are the same AP; an affiliated id (an Alpaca
    /// account UUID) is never the same as a handshake id, even when the
    /// texts coincide. Derived `==` compares the field names too: use this
    /// wherever a repeat or a confirmation is matched against a record.
    #[must_use]
    pub fn names_same_ap(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Self::Legacy(a) | Self::External(a),
                Self::Legacy(b) | Self::External(b),
            ) => a == b,
            (Self::Affiliated(a), Self::Affiliated(b)) => a == b,
            (Self::Legacy(_) | Self::External(_), Self::Affiliated(_))
            | (Self::Affiliated(_), Self::Legacy(_) | Self::External(_)) => {
                false
            }
        }
    }

    /// The reference as it goes out on a call we make: a handshake-flow id
    /// is named by `field` whichever alias Alpaca used with us; the
    /// affiliated id is sent unchanged.
    #[must_use]
    pub fn outgoing(&self, field: HandshakeIdField) -> Self {
        match (self, field) {
            (
                Self::Legacy(id) | Self::External(id),
                HandshakeIdField::External,
            ) => Self::External(id.clone()),
            (
                Self::Legacy(id) | Self::External(id),
                HandshakeIdField::Legacy,
            ) => Self::Legacy(id.clone()),
            (Self::Affiliated(id), _) => Self::Affiliated(*id),
        }
    }
}

/// Which name the handshake-flow AP id goes out under on the mint
/// callback and the redeem call (`[alpaca] send_legacy_client_id`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HandshakeIdField {
    /// `client_external_account_id`, the current name.
    #[default]
    External,
    /// `client_id`: deprecated 2026-07-15 and announced for removal on
    /// 2026-10-15; only for an Alpaca environment that still wants it.
    Legacy,
}

/// Body of `POST .../tokenization/callback/mint`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MintCallback {
    pub tokenization_request_id: String,
    #[serde(flatten)]
    pub ap: ApRef,
    /// Where the tokens went.
    pub wallet_address: Address,
    /// The mint transaction.
    pub tx_hash: TxHash,
    pub network: String,
}

/// Body of the redeem call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedeemRequest {
    /// Unique per redemption; also the seed of the `Idempotency-Key`.
    pub issuer_request_id: String,
    pub underlying_symbol: String,
    pub token_symbol: String,
    #[serde(flatten)]
    pub ap: ApRef,
    /// Already truncated to Alpaca's 9 decimals by the caller.
    pub qty: AlpacaQuantity,
    pub network: String,
    /// The wallet the tokens came from.
    pub wallet_address: Address,
    /// The transfer into the issuer's redemption wallet.
    pub tx_hash: TxHash,
}

impl RedeemRequest {
    /// The first field where Alpaca's record contradicts this request.
    /// Only fields the record actually carries are compared: an empty
    /// `tx_hash` or `token_symbol` is normal while pending.
    pub fn mismatch(
        &self,
        record: &TokenizationRequest,
    ) -> Option<FieldMismatch> {
        let differs = |field, expected: String, found: &str| {
            (!found.trim().is_empty() && !expected.eq_ignore_ascii_case(found))
                .then(|| FieldMismatch {
                    field,
                    expected,
                    found: found.to_owned(),
                })
        };
        let qty = self.qty.quantity().as_decimal();
        let qty_differs = (record.qty != qty).then(|| FieldMismatch {
            field: "qty",
            expected: qty.to_string(),
            found: record.qty.to_string(),
        });
        let type_differs =
            (record.r#type == RequestType::Mint).then(|| FieldMismatch {
                field: "type",
                expected: RequestType::Redeem.to_string(),
                found: record.r#type.to_string(),
            });
        record
            .issuer_request_id
            .as_deref()
            .and_then(|found| {
                (found != self.issuer_request_id).then(|| FieldMismatch {
                    field: "issuer_request_id",
                    expected: self.issuer_request_id.clone(),
                    found: found.to_owned(),
                })
            })
            .or(type_differs)
            .or_else(|| {
                differs(
                    "underlying_symbol",
                    self.underlying_symbol.clone(),
                    &record.underlying_symbol,
                )
            })
            .or_else(|| {
                differs(
                    "token_symbol",
                    self.token_symbol.clone(),
                    &record.token_symbol,
                )
            })
            .or(qty_differs)
            .or_else(|| {
                differs("network", self.network.clone(), &record.network)
            })
            .or_else(|| {
                differs(
                    "wallet_address",
                    self.wallet_address.to_string(),
                    &record.wallet_address,
                )
            })
            .or_else(|| {
                differs(
                    "tx_hash",
                    self.tx_hash.to_string(),
                    record.tx_hash.as_deref().unwrap_or_default(),
                )
            })
    }
}

/// One field where Alpaca's record and ours disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMismatch {
    pub field: &'static str,
    pub expected: String,
    pub found: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestType {
    Mint,
    Redeem,
    /// A value this build does not know; kept so the record still parses.
    Other(String),
}

impl RequestType {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Mint => "mint",
            Self::Redeem => "redeem",
            Self::Other(raw) => raw,
        }
    }
}

impl From<String> for RequestType {
    fn from(raw: String) -> Self {
        match raw.as_str() {
            "mint" => Self::Mint,
            "redeem" => Self::Redeem,
            _ => Self::Other(raw),
        }
    }
}

impl<'de> Deserialize<'de> for RequestType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from)
    }
}

impl fmt::Display for RequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    Completed,
    Rejected,
    /// A value this build does not know: neither done nor failed, so a
    /// poller should keep polling and alert if it persists.
    Other(String),
}

impl RequestStatus {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
            Self::Other(raw) => raw,
        }
    }
}

impl From<String> for RequestStatus {
    fn from(raw: String) -> Self {
        match raw.as_str() {
            "pending" => Self::Pending,
            "completed" => Self::Completed,
            "rejected" => Self::Rejected,
            _ => Self::Other(raw),
        }
    }
}

impl<'de> Deserialize<'de> for RequestStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from)
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Alpaca's record of a mint or redeem (`TokenizationRequest`).
///
/// `wallet_address` and `tx_hash` stay strings: other networks (Solana,
/// TON) use other formats and this record also lists them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "TokenizationRequestWire")]
pub struct TokenizationRequest {
    pub tokenization_request_id: String,
    pub issuer_request_id: Option<String>,
    pub r#type: RequestType,
    pub status: RequestStatus,
    pub underlying_symbol: String,
    /// May be `""` before Alpaca assigns it.
    pub token_symbol: String,
    pub qty: Decimal,
    pub issuer: Option<String>,
    /// Open set: `hypercore`, `newchain`, ... all parse.
    pub network: String,
    pub wallet_address: String,
    /// `None` for absent, `null` and `""` (seen on pending redeems).
    pub tx_hash: Option<String>,
    /// `None` for absent, `null` and `""`; strings and numbers parse.
    pub fees: Option<Decimal>,
    /// From the current fields, else the deprecated aliases.
    pub ap: Option<ApRef>,
    pub client_request_id: Option<String>,
    /// Required by the schema but not needed by the issuer, so tolerated
    /// when missing.
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Query parameters of `GET .../tokenization/requests` (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub r#type: Option<RequestType>,
    pub status: Option<RequestStatus>,
    pub underlying_symbol: Option<String>,
    pub issuer: Option<String>,
    pub network: Option<String>,
    /// Exclusive, compared with creation time.
    pub after: Option<DateTime<Utc>>,
    /// Exclusive, compared with creation time.
    pub before: Option<DateTime<Utc>>,
    /// Undocumented but accepted by Alpaca.
    pub limit: Option<u32>,
}

impl ListFilter {
    pub(super) fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let stamp = |at: &DateTime<Utc>| {
            at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        };
        [
            ("type", self.r#type.as_ref().map(|t| t.as_str().to_owned())),
            (
                "status",
                self.status.as_ref().map(|s| s.as_str().to_owned()),
            ),
            ("underlying_symbol", self.underlying_symbol.clone()),
            ("issuer", self.issuer.clone()),
            ("network", self.network.clone()),
            ("after", self.after.as_ref().map(stamp)),
            ("before", self.before.as_ref().map(stamp)),
            ("limit", self.limit.map(|limit| limit.to_string())),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .collect()
    }
}

/// Alpaca's error envelope `{code, message}`.
#[derive(Debug, Deserialize)]
pub(super) struct ErrorEnvelope {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct TokenizationRequestWire {
    tokenization_request_id: String,
    #[serde(default)]
    issuer_request_id: Option<String>,
    #[serde(rename = "type")]
    request_type: RequestType,
    status: RequestStatus,
    underlying_symbol: String,
    #[serde(default)]
    token_symbol: Option<String>,
    #[serde(deserialize_with = "decimal_string_or_number")]
    qty: Decimal,
    #[serde(default)]
    issuer: Option<String>,
    network: String,
    wallet_address: String,
    #[serde(default, deserialize_with = "non_empty_string")]
    tx_hash: Option<String>,
    #[serde(default, deserialize_with = "optional_decimal")]
    fees: Option<Decimal>,
    #[serde(default, deserialize_with = "non_empty_string")]
    client_account_id: Option<String>,
    #[serde(default, deserialize_with = "non_empty_string")]
    client_external_account_id: Option<String>,
    #[serde(default, deserialize_with = "non_empty_string")]
    client_id: Option<String>,
    /// Deprecated alias of `client_account_id`.
    #[serde(default, deserialize_with = "non_empty_string")]
    account: Option<String>,
    /// Deprecated alias of `client_external_account_id`.
    #[serde(default, deserialize_with = "non_empty_string")]
    issuer_account: Option<String>,
    #[serde(default)]
    client_request_id: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
}

impl From<TokenizationRequestWire> for TokenizationRequest {
    fn from(wire: TokenizationRequestWire) -> Self {
        // Current fields win over aliases; a non-UUID account id is not an
        // affiliated reference, so it is ignored rather than failing the
        // whole record.
        let affiliated = wire
            .client_account_id
            .or(wire.account)
            .and_then(|raw| Uuid::parse_str(&raw).ok())
            .map(ApRef::Affiliated);
        let external = wire
            .client_external_account_id
            .or(wire.issuer_account)
            .map(ApRef::External);
        let ap = affiliated
            .or(external)
            .or_else(|| wire.client_id.map(ApRef::Legacy));
        Self {
            tokenization_request_id: wire.tokenization_request_id,
            issuer_request_id: wire.issuer_request_id,
            r#type: wire.request_type,
            status: wire.status,
            underlying_symbol: wire.underlying_symbol,
            token_symbol: wire.token_symbol.unwrap_or_default(),
            qty: wire.qty,
            issuer: wire.issuer,
            network: wire.network,
            wallet_address: wire.wallet_address,
            tx_hash: wire.tx_hash,
            fees: wire.fees,
            ap,
            client_request_id: wire.client_request_id,
            created_at: wire.created_at,
            updated_at: wire.updated_at,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(serde_json::Number),
}

impl StringOrNumber {
    fn into_text(self) -> String {
        match self {
            Self::String(text) => text,
            Self::Number(number) => number.to_string(),
        }
    }
}

/// Parses exactly (never rounds); scientific notation comes from JSON
/// numbers such as `1e-7`.
fn parse_decimal(raw: &str) -> Result<Decimal, rust_decimal::Error> {
    let trimmed = raw.trim();
    Decimal::from_str_exact(trimmed)
        .or_else(|_| Decimal::from_scientific(trimmed))
}

fn decimal_string_or_number<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Decimal, D::Error> {
    let raw = StringOrNumber::deserialize(d)?.into_text();
    parse_decimal(&raw).map_err(|error| {
        serde::de::Error::custom(format!("invalid decimal {raw:?}: {error}"))
    })
}

fn optional_decimal<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Decimal>, D::Error> {
    let Some(raw) = Option::<StringOrNumber>::deserialize(d)? else {
        return Ok(None);
    };
    let raw = raw.into_text();
    if raw.trim().is_empty() {
        return Ok(None);
    }
    parse_decimal(&raw).map(Some).map_err(|error| {
        serde::de::Error::custom(format!("invalid decimal {raw:?}: {error}"))
    })
}

fn non_empty_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|raw| !raw.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(overrides: &serde_json::Value) -> serde_json::Value {
        let mut base = json!({
            "tokenization_request_id": "9b2f6a1e-4c1d-4f8e-9a77-0d2c5b1e7f10",
            "issuer_request_id": "red-1",
            "created_at": "2026-09-22T10:00:00-04:00",
            "type": "redeem",
            "status": "pending",
            "underlying_symbol": "AAPL",
            "token_symbol": "tAAPL",
            "qty": "1.5",
            "issuer": "st0x",
            "network": "base",
            "wallet_address": "0x00000000000000000000000000000000000000aa",
            "tx_hash": "0xabc",
            "client_external_account_id": "ap-1"
        });
        if let (Some(base), Some(extra)) =
            (base.as_object_mut(), overrides.as_object())
        {
            for (key, value) in extra {
                if value.is_null() && key.starts_with('-') {
                    base.remove(&key[1..]);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        base
    }

    fn parse(overrides: &serde_json::Value) -> TokenizationRequest {
        serde_json::from_value(record(overrides)).unwrap()
    }

    #[test]
    fn parses_full_record_with_offset_timestamp() {
        let parsed = parse(&json!({}));
        assert_eq!(parsed.r#type, RequestType::Redeem);
        assert_eq!(parsed.status, RequestStatus::Pending);
        assert_eq!(parsed.qty, Decimal::new(15, 1));
        assert_eq!(parsed.tx_hash.as_deref(), Some("0xabc"));
        assert_eq!(parsed.ap, Some(ApRef::External("ap-1".into())));
        assert_eq!(
            parsed.created_at.unwrap().to_rfc3339(),
            "2026-09-22T14:00:00+00:00"
        );
    }

    #[test]
    fn empty_null_and_absent_tx_hash_are_none() {
        assert_eq!(parse(&json!({"tx_hash": ""})).tx_hash, None);
        assert_eq!(parse(&json!({"tx_hash": null})).tx_hash, None);
        assert_eq!(parse(&json!({"-tx_hash": null})).tx_hash, None);
    }

    #[test]
    fn fees_accept_string_number_null_and_absent() {
        let half = Some(Decimal::new(5, 1));
        assert_eq!(parse(&json!({"fees": "0.5"})).fees, half);
        assert_eq!(parse(&json!({"fees": 0.5})).fees, half);
        assert_eq!(
            parse(&json!({"fees": 0.01})).fees,
            Some(Decimal::new(1, 2))
        );
        assert_eq!(parse(&json!({"fees": "0"})).fees, Some(Decimal::ZERO));
        assert_eq!(parse(&json!({"fees": null})).fees, None);
        assert_eq!(parse(&json!({"fees": ""})).fees, None);
        assert_eq!(parse(&json!({"-fees": null})).fees, None);
    }

    #[test]
    fn bad_fees_fail_instead_of_defaulting() {
        let body = record(&json!({"fees": "half a dollar"}));
        assert!(serde_json::from_value::<TokenizationRequest>(body).is_err());
    }

    #[test]
    fn unknown_networks_statuses_and_fields_parse() {
        let parsed = parse(&json!({
            "network": "hypercore",
            "status": "settling",
            "type": "swap",
            "brand_new_field": {"nested": true}
        }));
        assert_eq!(parsed.network, "hypercore");
        assert_eq!(parsed.status, RequestStatus::Other("settling".into()));
        assert_eq!(parsed.r#type, RequestType::Other("swap".into()));
        assert_eq!(parse(&json!({"network": "newchain"})).network, "newchain");
    }

    #[test]
    fn qty_as_number_and_empty_token_symbol() {
        let parsed = parse(&json!({"qty": 2.25, "token_symbol": ""}));
        assert_eq!(parsed.qty, Decimal::new(225, 2));
        assert_eq!(parsed.token_symbol, "");
    }

    #[test]
    fn deprecated_aliases_fill_the_ap_reference() {
        let uuid = Uuid::from_u128(7);
        let by_account = parse(&json!({
            "-client_external_account_id": null,
            "account": uuid.to_string()
        }));
        assert_eq!(by_account.ap, Some(ApRef::Affiliated(uuid)));

        let by_issuer_account = parse(&json!({
            "-client_external_account_id": null,
            "issuer_account": "ext-9"
        }));
        assert_eq!(by_issuer_account.ap, Some(ApRef::External("ext-9".into())));

        let by_client_id = parse(&json!({
            "-client_external_account_id": null,
            "client_id": "legacy-3"
        }));
        assert_eq!(by_client_id.ap, Some(ApRef::Legacy("legacy-3".into())));
    }

    #[test]
    fn current_field_and_its_alias_together_do_not_clash() {
        let uuid = Uuid::from_u128(9);
        let parsed = parse(&json!({
            "-client_external_account_id": null,
            "client_account_id": uuid.to_string(),
            "account": "not-a-uuid-anymore",
            "issuer_account": "ext-old",
            "client_id": "legacy-old"
        }));
        assert_eq!(parsed.ap, Some(ApRef::Affiliated(uuid)));
    }

    #[test]
    fn missing_required_field_is_an_error() {
        let body = record(&json!({"-status": null}));
        assert!(serde_json::from_value::<TokenizationRequest>(body).is_err());
    }

    fn callback(ap: ApRef) -> serde_json::Value {
        serde_json::to_value(MintCallback {
            tokenization_request_id: "t-1".into(),
            ap,
            wallet_address: Address::repeat_byte(0x11),
            tx_hash: TxHash::repeat_byte(0x22),
            network: "base".into(),
        })
        .unwrap()
    }

    #[test]
    fn client_id_and_client_external_account_id_name_the_same_ap() {
        let uuid = Uuid::from_u128(7);
        let text = uuid.to_string();
        let legacy = ApRef::Legacy(text.clone());
        let external = ApRef::External(text.clone());
        let affiliated = ApRef::Affiliated(uuid);
        for (a, b) in [(&legacy, &external), (&external, &legacy)] {
            assert!(a.names_same_ap(b));
            assert_ne!(a, b, "derived == still tells the field names apart");
        }
        for same in [&legacy, &external, &affiliated] {
            assert!(same.names_same_ap(same));
        }
        // An Alpaca account UUID is never one of our handshake ids.
        for handshake in [&legacy, &external] {
            assert!(!handshake.names_same_ap(&affiliated));
            assert!(!affiliated.names_same_ap(handshake));
        }
        assert!(!legacy.names_same_ap(&ApRef::External("other".into())));
        assert!(
            !affiliated.names_same_ap(&ApRef::Affiliated(Uuid::from_u128(8)))
        );
    }

    #[test]
    fn each_ap_variant_serialises_into_exactly_one_field() {
        let ap_fields = [
            "client_id",
            "client_external_account_id",
            "client_account_id",
        ];
        let uuid = Uuid::from_u128(1);
        for (ap, field, value) in [
            (ApRef::Legacy("c".into()), "client_id", json!("c")),
            (
                ApRef::External("e".into()),
                "client_external_account_id",
                json!("e"),
            ),
            (
                ApRef::Affiliated(uuid),
                "client_account_id",
                json!(uuid.to_string()),
            ),
        ] {
            let body = callback(ap);
            let present: Vec<_> = ap_fields
                .iter()
                .filter(|name| body.get(**name).is_some())
                .collect();
            assert_eq!(present, vec![&field]);
            assert_eq!(body[field], value);
        }
    }

    #[test]
    fn redeem_request_uses_wire_field_names() {
        let body = serde_json::to_value(RedeemRequest {
            issuer_request_id: "red-1".into(),
            underlying_symbol: "AAPL".into(),
            token_symbol: "tAAPL".into(),
            ap: ApRef::External("ap-1".into()),
            qty: AlpacaQuantity::parse("1.123456789").unwrap(),
            network: "base".into(),
            wallet_address: Address::repeat_byte(0x11),
            tx_hash: TxHash::repeat_byte(0x22),
        })
        .unwrap();
        let mut keys: Vec<_> =
            body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "client_external_account_id",
                "issuer_request_id",
                "network",
                "qty",
                "token_symbol",
                "tx_hash",
                "underlying_symbol",
                "wallet_address"
            ]
        );
        assert_eq!(body["qty"], json!("1.123456789"));
        assert_eq!(body["tx_hash"], json!(format!("0x{}", "22".repeat(32))));
    }

    #[test]
    fn list_filter_renders_only_set_parameters() {
        let filter = ListFilter {
            r#type: Some(RequestType::Redeem),
            status: Some(RequestStatus::Pending),
            after: DateTime::parse_from_rfc3339("2026-09-22T10:00:00-04:00")
                .ok()
                .map(|at| at.with_timezone(&Utc)),
            limit: Some(50),
            ..ListFilter::default()
        };
        assert_eq!(
            filter.query_pairs(),
            vec![
                ("type", "redeem".to_owned()),
                ("status", "pending".to_owned()),
                ("after", "2026-09-22T14:00:00Z".to_owned()),
                ("limit", "50".to_owned()),
            ]
        );
    }
}
