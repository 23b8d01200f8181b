//! The on-chain side: configuration, the issuer wallet's signer, the
//! transaction pipeline (sign → persist intent → broadcast → classify) and
//! the receipt vault calls built on it.

mod client;
mod config;
mod landing;
mod nonce;
mod pipeline;
mod probe;
mod receipt_info;
mod signer;
mod slot;
mod tx;
mod vault;

pub use client::{
    ChainClient, ChainError, NonceConsumer, TxPolicy, http_provider,
};
pub use config::{
    ChainConfig, ChainConfigError, Chains, PasswordSource, SignerSource,
    WeiPerGas,
};
pub use landing::{Effect, Landed, Landing};
pub use nonce::{
    NonceManager, RecordedIntent, mark_intent_resolved, record_intent,
    unresolved_intents,
};
pub use pipeline::{
    Advance, Attempts, ReplaceCause, SubmitError, TxPipeline, Whose,
};
pub use probe::ChainProbe;
pub use receipt_info::{
    MAX_RECEIPT_INFO_BYTES, RECEIPT_INFO_VERSION, ReceiptInfoError,
    ReceiptInformation, ReceiptOp,
};
pub use signer::{BotSigner, SignerError};
pub use slot::ChainSlot;
pub use tx::{
    AttemptRole, ReceiptSummary, SignedTx, TxAction, TxFailure, TxLifecycle,
    TxStatus, Uncertainty, UndecodableTx,
};
pub use vault::{
    Burn, BurnOnChain, MintOnChain, SHARE_RATIO, VaultError, VaultService,
};
