//! The link request of `POST /tokenization/accounts/connect` as each wire
//! version sends it. Schemas for the OpenAPI document only: the handler
//! parses one struct with both names optional and refuses both or
//! neither.

#![expect(
    dead_code,
    reason = "schemas for the OpenAPI document: described, never built"
)]

use utoipa::ToSchema;

use super::{AlpacaAccountNumber, Email};

/// Either wire's link request; exactly one of them.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ConnectBody {
    Middle(ConnectMiddle),
    Current(ConnectCurrent),
}

/// Middle wire: answered with `{client_id}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectMiddle {
    pub email: Email,
    /// Alpaca's account number of the AP.
    pub account: AlpacaAccountNumber,
}

/// Current wire: answered with `{client_external_account_id}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectCurrent {
    pub email: Email,
    /// Alpaca's account number of the AP.
    pub client_account_number: AlpacaAccountNumber,
}
