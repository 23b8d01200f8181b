//! issuance-bot library: the Issuer in Alpaca's Instant Tokenization
//! Network. The composition root (open and migrate the database, build
//! every feature's state, mount its routes, serve) is in `startup.rs`.

pub mod account;
pub mod admin;
pub mod alpaca;
pub(crate) mod auth;
pub mod chain;
pub mod clock;
pub mod config;
pub mod driver;
pub mod feature;
pub mod http;
pub(crate) mod instance_lock;
pub(crate) mod lease;
pub mod mint;
pub(crate) mod observability;
pub(crate) mod openapi;
pub(crate) mod operator;
pub mod quantity;
pub mod receipt_inventory;
pub mod redemption;
pub(crate) mod shutdown;
pub mod telemetry;
pub mod tokenized_asset;
pub mod vocabulary;

mod startup;

pub use startup::{
    Deps, MIGRATOR, RunningService, StartupError, build_rocket,
    build_rocket_with, expected_migrations, migrate, open_database,
    rebuild_views, serve, start_service,
};
