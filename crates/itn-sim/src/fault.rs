//! Fault injection: runtime-switchable misbehaviour on both directions of
//! the wire, and the quirks Alpaca has shown in production.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Every endpoint the simulator serves (Broker API) or calls (issuer).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST .../tokenization/callback/mint` (served).
    MintCallback,
    /// `POST .../tokenization/redeem` and `.../callback/redeem` (served).
    Redeem,
    /// `GET .../tokenization/requests` (served).
    ListRequests,
    /// `GET .../tokenization/requests/{id}` (served).
    GetRequest,
    /// `GET .../tokenization/requests:by_issuer_request_id` (served).
    GetByIssuerRequestId,
    /// Account linking on the issuer (called).
    IssuerConnect,
    /// Mint request on the issuer (called).
    IssuerMint,
    /// Mint confirmation on the issuer (called).
    IssuerConfirm,
    /// Tokenized-asset list on the issuer (called).
    IssuerTokens,
}

impl Endpoint {
    pub const ALL: [Self; 9] = [
        Self::MintCallback,
        Self::Redeem,
        Self::ListRequests,
        Self::GetRequest,
        Self::GetByIssuerRequestId,
        Self::IssuerConnect,
        Self::IssuerMint,
        Self::IssuerConfirm,
        Self::IssuerTokens,
    ];
}

/// How `fees` appears on request records.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FeeQuirk {
    /// `"fees": "0.5"` (the documented form).
    #[default]
    String,
    /// `"fees": 0.5`.
    Number,
    /// `"fees": null`.
    Null,
    /// No `fees` key at all (the current redeem schema).
    Absent,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize,
)]
pub struct Quirks {
    /// `tx_hash: ""` on pending requests.
    pub empty_tx_hash_when_pending: bool,
    pub fees: FeeQuirk,
    /// Also send `client_id`, `issuer_account`, `account`.
    pub deprecated_aliases: bool,
}

/// The status a redeem has in the 200 answer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum InitialRedeemStatus {
    /// IG-cur: `pending`, settles after `redeem_settle_delay`.
    #[default]
    Pending,
    /// IG-mid: `completed` at once, shares moved immediately.
    Completed,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        d: &Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        d: &Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// One injected fault. `times` counts how many requests it affects.
/// JSON form (for `POST /sim/faults`):
/// `{"kind":"broker_status","args":{"endpoint":"mint_callback",
/// "status":500,"times":2}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "args", rename_all = "snake_case")]
pub enum Fault {
    /// Answer `status` (envelope body) without processing.
    BrokerStatus {
        endpoint: Endpoint,
        status: u16,
        times: u32,
    },
    /// Sleep before handling (served) or before sending (called).
    BrokerLatency {
        endpoint: Endpoint,
        #[serde(rename = "delay_ms", with = "millis")]
        delay: Duration,
        times: u32,
    },
    /// Served endpoints: process, then answer 504 instead of the result.
    /// Called endpoints: send, then discard the answer as if it timed
    /// out (the confirmation is retried, the mint request re-sent).
    DropResponse { endpoint: Endpoint, times: u32 },
    /// Deliver each confirmation this many extra times (identical body).
    DuplicateConfirm { times: u32 },
    /// Send each mint request this many extra times (identical body).
    DuplicateMintRequest { times: u32 },
    /// The next mint requested is confirmed `rejected` (no shares move).
    RejectNextMint,
    /// The next redeem ends `rejected` (no shares move).
    RejectNextRedeem,
    /// Persistent wire quirks on request records.
    Quirks(Quirks),
    /// Persistent: status of a redeem in its 200 answer.
    RedeemStatusOn200(InitialRedeemStatus),
    /// The next `times` Broker API calls get 429.
    RateLimit {
        times: u32,
        #[serde(rename = "retry_after_secs", with = "secs")]
        retry_after: Duration,
    },
}

/// The live fault switches.
#[derive(Debug, Default)]
pub(crate) struct FaultBoard {
    status: HashMap<Endpoint, (u16, u32)>,
    latency: HashMap<Endpoint, (Duration, u32)>,
    drop: HashMap<Endpoint, u32>,
    duplicate_confirm: u32,
    duplicate_mint: u32,
    reject_mints: u32,
    reject_redeems: u32,
    pub(crate) quirks: Quirks,
    pub(crate) redeem_status: InitialRedeemStatus,
    rate_limit: Option<(u32, Duration)>,
}

/// Takes one use of a counted switch.
fn take(count: &mut u32) -> bool {
    match count.checked_sub(1) {
        Some(left) => {
            *count = left;
            true
        }
        None => false,
    }
}

impl FaultBoard {
    pub(crate) fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::BrokerStatus {
                endpoint,
                status,
                times,
            } => {
                self.status.insert(endpoint, (status, times));
            }
            Fault::BrokerLatency {
                endpoint,
                delay,
                times,
            } => {
                self.latency.insert(endpoint, (delay, times));
            }
            Fault::DropResponse { endpoint, times } => {
                self.drop.insert(endpoint, times);
            }
            Fault::DuplicateConfirm { times } => self.duplicate_confirm = times,
            Fault::DuplicateMintRequest { times } => {
                self.duplicate_mint = times;
            }
            Fault::RejectNextMint => {
                self.reject_mints = self.reject_mints.saturating_add(1);
            }
            Fault::RejectNextRedeem => {
                self.reject_redeems = self.reject_redeems.saturating_add(1);
            }
            Fault::Quirks(quirks) => self.quirks = quirks,
            Fault::RedeemStatusOn200(status) => self.redeem_status = status,
            Fault::RateLimit { times, retry_after } => {
                self.rate_limit = Some((times, retry_after));
            }
        }
    }

    pub(crate) fn take_status(&mut self, endpoint: Endpoint) -> Option<u16> {
        let (status, times) = self.status.get_mut(&endpoint)?;
        take(times).then_some(*status)
    }

    pub(crate) fn take_latency(
        &mut self,
        endpoint: Endpoint,
    ) -> Option<Duration> {
        let (delay, times) = self.latency.get_mut(&endpoint)?;
        take(times).then_some(*delay)
    }

    pub(crate) fn take_drop(&mut self, endpoint: Endpoint) -> bool {
        self.drop.get_mut(&endpoint).is_some_and(take)
    }

    /// Extra deliveries for one confirmation (consumes the switch).
    pub(crate) fn take_duplicate_confirms(&mut self) -> u32 {
        std::mem::take(&mut self.duplicate_confirm)
    }

    pub(crate) fn take_duplicate_mints(&mut self) -> u32 {
        std::mem::take(&mut self.duplicate_mint)
    }

    pub(crate) fn take_reject_mint(&mut self) -> bool {
        take(&mut self.reject_mints)
    }

    pub(crate) fn take_reject_redeem(&mut self) -> bool {
        take(&mut self.reject_redeems)
    }

    pub(crate) fn take_rate_limit(&mut self) -> Option<Duration> {
        let (times, retry_after) = self.rate_limit.as_mut()?;
        take(times).then_some(*retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_wear_off() {
        let mut board = FaultBoard::default();
        board.inject(Fault::BrokerStatus {
            endpoint: Endpoint::MintCallback,
            status: 500,
            times: 2,
        });
        assert_eq!(board.take_status(Endpoint::Redeem), None);
        assert_eq!(board.take_status(Endpoint::MintCallback), Some(500));
        assert_eq!(board.take_status(Endpoint::MintCallback), Some(500));
        assert_eq!(board.take_status(Endpoint::MintCallback), None);

        board.inject(Fault::RejectNextMint);
        assert!(board.take_reject_mint());
        assert!(!board.take_reject_mint());
    }

    #[test]
    fn faults_round_trip_as_json() {
        let fault: Fault = serde_json::from_str(
            r#"{"kind":"broker_latency","args":{"endpoint":"redeem",
               "delay_ms":250,"times":1}}"#,
        )
        .unwrap();
        assert_eq!(
            fault,
            Fault::BrokerLatency {
                endpoint: Endpoint::Redeem,
                delay: Duration::from_millis(250),
                times: 1
            }
        );
        let unit: Fault =
            serde_json::from_str(r#"{"kind":"reject_next_mint"}"#).unwrap();
        assert_eq!(unit, Fault::RejectNextMint);
        let status: Fault = serde_json::from_str(
            r#"{"kind":"redeem_status_on200","args":"completed"}"#,
        )
        .unwrap();
        assert_eq!(
            status,
            Fault::RedeemStatusOn200(InitialRedeemStatus::Completed)
        );
    }
}
