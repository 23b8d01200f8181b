//! The simulated Alpaca world: APs, the issuer's positions, tokenization
//! requests, idempotency records, wire recordings and live faults. All of
//! it sits behind one std mutex that is never held across an `.await`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::Utc;
use reqwest::Url;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::ap::{Ap, ApId, ApSpec};
use crate::config::SimConfig;
use crate::fault::{Endpoint, FaultBoard};
use crate::recording::RecordedRequest;
use crate::tokenization::{RequestStatus, RequestType, TokenizationRequest};

/// Where a mint stands on Alpaca's side of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MintProgress {
    /// Mint request sent, journal not done yet.
    Requested,
    /// The issuer refused the request, or it could not be delivered.
    Refused,
    /// Shares moved AP -> issuer; `completed` confirmation sent.
    Journaled,
    /// Confirmed `rejected`; nothing moved.
    Rejected,
}

/// How a pending redeem will end (decided when it is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedeemFate {
    Complete,
    Reject,
}

/// A stored answer for an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub(crate) struct IdempotentAnswer {
    pub(crate) body: Value,
    pub(crate) status: u16,
    pub(crate) response: Value,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum MoveError {
    #[error("unknown request or AP")]
    Unknown,
    #[error("insufficient {symbol}: {held} held, {needed} needed")]
    Insufficient {
        symbol: String,
        held: Decimal,
        needed: Decimal,
    },
    #[error("position overflow")]
    Overflow,
}

#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) aps: BTreeMap<ApId, Ap>,
    pub(crate) issuer_positions: BTreeMap<String, Decimal>,
    /// In creation order.
    pub(crate) requests: Vec<TokenizationRequest>,
    pub(crate) mint_progress: HashMap<Uuid, MintProgress>,
    pub(crate) mint_callbacks: HashMap<Uuid, Vec<Value>>,
    pub(crate) confirm_deliveries: HashMap<Uuid, Vec<ConfirmDelivery>>,
    pub(crate) redeem_fates: HashMap<Uuid, RedeemFate>,
    /// Mints armed by RejectNextMint when requested; confirmed rejected.
    pub(crate) doomed_mints: HashSet<Uuid>,
    pub(crate) idempotency: HashMap<String, IdempotentAnswer>,
    pub(crate) recordings: BTreeMap<Endpoint, Vec<RecordedRequest>>,
    pub(crate) faults: FaultBoard,
}

impl World {
    pub(crate) fn add_ap(&mut self, spec: ApSpec) -> ApId {
        let id = ApId::new(Uuid::new_v4());
        self.aps.insert(id, Ap::new(id, spec));
        id
    }

    pub(crate) fn record(
        &mut self,
        endpoint: Endpoint,
        request: RecordedRequest,
    ) {
        tracing::info!(
            ?endpoint,
            method = %request.method,
            path = %request.path,
            body = %request.body,
            "itn-sim request"
        );
        self.recordings.entry(endpoint).or_default().push(request);
    }

    pub(crate) fn hits(&self, endpoint: Endpoint) -> usize {
        self.recordings.get(&endpoint).map_or(0, Vec::len)
    }

    pub(crate) fn request(&self, id: Uuid) -> Option<&TokenizationRequest> {
        self.requests
            .iter()
            .find(|req| req.tokenization_request_id == id)
    }

    pub(crate) fn request_mut(
        &mut self,
        id: Uuid,
    ) -> Option<&mut TokenizationRequest> {
        self.requests
            .iter_mut()
            .find(|req| req.tokenization_request_id == id)
    }

    pub(crate) fn issuer_position(&self, symbol: &str) -> Decimal {
        self.issuer_positions
            .get(symbol)
            .copied()
            .unwrap_or_default()
    }

    /// Issuer position not yet promised to pending redeems.
    pub(crate) fn issuer_available(
        &self,
        symbol: &str,
    ) -> Result<Decimal, MoveError> {
        self.requests
            .iter()
            .filter(|req| {
                req.request_type == RequestType::Redeem
                    && req.status == RequestStatus::Pending
                    && req.underlying_symbol == symbol
            })
            .try_fold(self.issuer_position(symbol), |left, req| {
                left.checked_sub(req.qty.value()).ok_or(MoveError::Overflow)
            })
    }

    /// Moves `qty` of `symbol` between an AP and the issuer, both sides
    /// checked before either changes.
    fn transfer(
        &mut self,
        ap: ApId,
        symbol: &str,
        qty: Decimal,
        to_issuer: bool,
    ) -> Result<(), MoveError> {
        let issuer_held = self.issuer_position(symbol);
        let ap_entry = self.aps.get_mut(&ap).ok_or(MoveError::Unknown)?;
        let ap_held = ap_entry.position(symbol);
        let (from_held, to_held) = if to_issuer {
            (ap_held, issuer_held)
        } else {
            (issuer_held, ap_held)
        };
        if from_held < qty {
            return Err(MoveError::Insufficient {
                symbol: symbol.to_owned(),
                held: from_held,
                needed: qty,
            });
        }
        let from_new = from_held.checked_sub(qty).ok_or(MoveError::Overflow)?;
        let to_new = to_held.checked_add(qty).ok_or(MoveError::Overflow)?;
        let (ap_new, issuer_new) = if to_issuer {
            (from_new, to_new)
        } else {
            (to_new, from_new)
        };
        ap_entry.positions.insert(symbol.to_owned(), ap_new);
        self.issuer_positions.insert(symbol.to_owned(), issuer_new);
        Ok(())
    }

    /// Mint step 5: AP -> issuer.
    pub(crate) fn journal_mint(&mut self, id: Uuid) -> Result<(), MoveError> {
        let req = self.request(id).ok_or(MoveError::Unknown)?;
        let (ap, symbol, qty) =
            (req.ap, req.underlying_symbol.clone(), req.qty.value());
        self.transfer(ap, &symbol, qty, true)?;
        self.mint_progress.insert(id, MintProgress::Journaled);
        Ok(())
    }

    /// Marks a mint rejected on Alpaca's side (nothing moves).
    pub(crate) fn reject_mint(&mut self, id: Uuid, progress: MintProgress) {
        self.mint_progress.insert(id, progress);
        if let Some(req) = self.request_mut(id) {
            req.status = RequestStatus::Rejected;
            req.updated_at = Some(Utc::now());
        }
    }

    /// Ends a pending redeem per its fate; shares move issuer -> AP only
    /// on completion. A redeem that can no longer be covered is rejected.
    pub(crate) fn settle_redeem(&mut self, id: Uuid) {
        let Some(req) = self.request(id) else { return };
        if req.status != RequestStatus::Pending {
            return;
        }
        let (ap, symbol, qty) =
            (req.ap, req.underlying_symbol.clone(), req.qty.value());
        let fate = self
            .redeem_fates
            .get(&id)
            .copied()
            .unwrap_or(RedeemFate::Complete);
        let status = match fate {
            RedeemFate::Reject => RequestStatus::Rejected,
            RedeemFate::Complete => {
                match self.transfer(ap, &symbol, qty, false) {
                    Ok(()) => RequestStatus::Completed,
                    Err(error) => {
                        tracing::warn!(%id, %error, "redeem not settled");
                        RequestStatus::Rejected
                    }
                }
            }
        };
        if let Some(req) = self.request_mut(id) {
            req.status = status;
            req.updated_at = Some(Utc::now());
        }
    }
}

/// State shared by the server, the issuer driver and every handle.
pub(crate) struct Shared {
    world: Mutex<World>,
    issuer_url: Mutex<Option<Url>>,
    pub(crate) cfg: SimConfig,
    pub(crate) http: reqwest::Client,
}

impl Shared {
    pub(crate) fn new(cfg: SimConfig) -> Result<Self, crate::SimError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.issuer_timeout)
            .build()
            .map_err(|err| crate::SimError::HttpClient {
                reason: err.to_string(),
            })?;
        Ok(Self {
            world: Mutex::new(World::default()),
            issuer_url: Mutex::new(cfg.issuer_base_url.clone()),
            cfg,
            http,
        })
    }

    /// A panicking holder cannot leave the world half-updated in a way
    /// tests care about more than the panic itself, so poison is ignored.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn issuer_url(&self) -> Option<Url> {
        self.issuer_url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_issuer_url(&self, url: Url) {
        *self
            .issuer_url
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(url);
    }
}

/// How one delivery to the issuer ended (what the world records of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Answered {
        status: u16,
    },
    /// The issuer answered but a DropResponse fault discarded it.
    Dropped,
    /// Timeout, connection failure or no issuer URL.
    Failed {
        reason: String,
    },
}

/// One delivery of a mint confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfirmDelivery {
    /// 1-based; duplicates continue the count.
    pub attempt: u32,
    /// `completed` or `rejected`.
    pub status: RequestStatus,
    /// Sent by the DuplicateConfirm fault, not as a retry.
    pub duplicate: bool,
    pub outcome: DeliveryOutcome,
}
