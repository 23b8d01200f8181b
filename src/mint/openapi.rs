//! The mint request and the journal confirmation as each wire version
//! sends them. Schemas for the OpenAPI document only: one tolerant parser
//! serves every shape on either path (see `api.rs`), so a body is checked
//! field by field there, and a body that fits no shape is a 400.

#![expect(
    dead_code,
    reason = "schemas for the OpenAPI document: described, never built"
)]

use utoipa::ToSchema;
use uuid::Uuid;

use super::{JournalOutcome, TokenizationRequestId};
use crate::account::Wallet;
use crate::tokenized_asset::{Network, TokenSymbol, UnderlyingSymbol};

/// `qty`: a decimal string (plain digits, no sign or exponent) or a JSON
/// number, each read exactly from its text; positive, at most 9 decimals.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum WireQty {
    Text(QtyText),
    /// A JSON number, read exactly from its literal.
    Number(f64),
}

/// Digits, optionally a point and more digits (trailing zeros do not
/// count towards the 9 decimals).
#[derive(ToSchema)]
#[schema(pattern = "^[0-9]+(\\.[0-9]+)?$", example = "10.5")]
pub struct QtyText(String);

/// A mint request in any of the three wire versions (unknown fields are
/// ignored).
#[derive(ToSchema)]
#[serde(untagged)]
pub enum MintRequestBody {
    Oldest(MintRequestOldest),
    Middle(MintRequestMiddle),
    CurrentHandshake(MintRequestCurrentHandshake),
    CurrentAffiliated(MintRequestCurrentAffiliated),
}

/// Oldest wire (reference issuer): `tokenization_request_id` and
/// `client_id`.
#[derive(ToSchema)]
pub struct MintRequestOldest {
    pub tokenization_request_id: TokenizationRequestId,
    pub qty: WireQty,
    pub underlying_symbol: UnderlyingSymbol,
    pub token_symbol: TokenSymbol,
    pub network: Network,
    /// Our client id (from the link).
    #[schema(min_length = 1)]
    pub client_id: String,
    pub wallet_address: Wallet,
}

/// Middle wire: `id` and `client_id`.
#[derive(ToSchema)]
pub struct MintRequestMiddle {
    /// Alpaca's tokenization request id.
    pub id: TokenizationRequestId,
    pub qty: WireQty,
    pub underlying_symbol: UnderlyingSymbol,
    pub token_symbol: TokenSymbol,
    pub network: Network,
    /// Our client id (from the link).
    #[schema(min_length = 1)]
    pub client_id: String,
    pub wallet_address: Wallet,
}

/// Current wire, handshake flow: the AP named by our client id.
#[derive(ToSchema)]
pub struct MintRequestCurrentHandshake {
    pub tokenization_request_id: TokenizationRequestId,
    pub qty: WireQty,
    pub underlying_symbol: UnderlyingSymbol,
    pub token_symbol: TokenSymbol,
    pub network: Network,
    /// Our client id (from the link).
    #[schema(min_length = 1)]
    pub client_external_account_id: String,
    pub wallet_address: Wallet,
}

/// Current wire, affiliated flow: the AP named by its Alpaca account
/// (recorded by an operator, no link needed).
#[derive(ToSchema)]
pub struct MintRequestCurrentAffiliated {
    pub tokenization_request_id: TokenizationRequestId,
    pub qty: WireQty,
    pub underlying_symbol: UnderlyingSymbol,
    pub token_symbol: TokenSymbol,
    pub network: Network,
    /// The AP's Alpaca account id.
    pub client_account_id: Uuid,
    pub wallet_address: Wallet,
}

/// A journal confirmation in any wire version. The AP id fields are
/// optional (at most one); when sent they must name the mint's AP.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ConfirmBody {
    Middle(ConfirmMiddle),
    OldestOrCurrent(ConfirmOldestOrCurrent),
}

/// Middle wire: the request named `id`.
#[derive(ToSchema)]
pub struct ConfirmMiddle {
    /// Alpaca's tokenization request id.
    pub id: TokenizationRequestId,
    /// Our id from the mint request's answer.
    pub issuer_request_id: Uuid,
    pub status: JournalOutcome,
    pub reason: Option<String>,
    #[schema(min_length = 1)]
    pub client_id: Option<String>,
    #[schema(min_length = 1)]
    pub client_external_account_id: Option<String>,
    pub client_account_id: Option<Uuid>,
}

/// Oldest and current wires: the request named `tokenization_request_id`.
#[derive(ToSchema)]
pub struct ConfirmOldestOrCurrent {
    pub tokenization_request_id: TokenizationRequestId,
    /// Our id from the mint request's answer.
    pub issuer_request_id: Uuid,
    pub status: JournalOutcome,
    pub reason: Option<String>,
    #[schema(min_length = 1)]
    pub client_id: Option<String>,
    #[schema(min_length = 1)]
    pub client_external_account_id: Option<String>,
    pub client_account_id: Option<Uuid>,
}
