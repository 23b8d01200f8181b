//! A faithful simulator of Alpaca's Instant Tokenization Network (ITN)
//! for the issuer's tests and for a local devnet.
//!
//! The simulator plays Alpaca: it drives the issuer's endpoints (account
//! linking, mint request, mint confirmation) per wire version, and serves
//! the Broker API endpoints the issuer calls (mint callback, redeem,
//! request lookups) with Alpaca's auth, error envelope, idempotency rules
//! and quirks. Its calls to the issuer carry `X-API-KEY`, or, with
//! `SimConfig::issuer_signing`, Alpaca's RFC 9421 Ed25519 signature. See README.md for the fault knobs.

mod admin;
mod ap;
mod broker;
mod config;
mod drive;
mod fault;
mod recording;
mod server;
mod signing;
mod tokenization;
mod world;

pub use ap::{ApId, ApSpec, ClientIdMode};
pub use config::{IssuerPaths, SimConfig, WireVersion};
pub use drive::{ListedToken, MintOutcome, MintSpec};
pub use fault::{Endpoint, Fault, FeeQuirk, InitialRedeemStatus, Quirks};
pub use recording::RecordedRequest;
pub use server::{SimHandle, Simulator};
pub use signing::{IssuerSigning, SignatureParams, SignedBody};
pub use tokenization::{
    ClientRef, NETWORKS, Qty, QtyError, RequestStatus, RequestType,
    TokenizationRequest,
};
pub use world::{ConfirmDelivery, DeliveryOutcome};

/// Re-exported so callers need no direct `url` dependency.
pub use reqwest::Url;

use rust_decimal::Decimal;

/// Everything the simulator's library API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("simulator failed to start: {reason}")]
    Launch { reason: String },
    #[error("no issuer base URL configured")]
    NoIssuerUrl,
    #[error("invalid issuer URL {base} + {path}: {reason}")]
    BadIssuerUrl {
        base: String,
        path: String,
        reason: String,
    },
    #[error("unknown AP {0}")]
    UnknownAp(ApId),
    #[error("AP {0} is not linked with the issuer")]
    NotLinked(ApId),
    #[error("invalid qty: {0}")]
    InvalidQty(#[from] QtyError),
    #[error("network {0} is not an Alpaca tokenization network")]
    UnknownNetwork(String),
    #[error(
        "insufficient position: AP {ap} holds {held} {symbol}, \
         {requested} requested"
    )]
    InsufficientPosition {
        ap: ApId,
        symbol: String,
        held: Decimal,
        requested: Decimal,
    },
    #[error("issuer {endpoint:?} unreachable: {reason}")]
    IssuerUnreachable { endpoint: Endpoint, reason: String },
    #[error("issuer {endpoint:?} answered {status}: {body}")]
    IssuerRejected {
        endpoint: Endpoint,
        status: u16,
        body: String,
    },
    #[error("issuer {endpoint:?} answered 200 without {field}: {body}")]
    IssuerBadResponse {
        endpoint: Endpoint,
        field: &'static str,
        body: String,
    },
    #[error("issuer does not list {token} ({underlying}) on {network}")]
    TokenNotListed {
        underlying: String,
        token: String,
        network: String,
    },
    #[error("HTTP client setup failed: {reason}")]
    HttpClient { reason: String },
    #[error("invalid Ed25519 signing key (PKCS#8 PEM expected): {reason}")]
    SigningKey { reason: String },
}
