//! Read side of accounts: the `account_view` table and the claim tables
//! (`account_emails`, `account_wallets`, `account_alpaca_ids`) that make
//! emails, wallets and Alpaca account ids unique across accounts. All of
//! them are written inside the commit
//! that appends the events, so a losing concurrent request fails as a
//! whole instead of leaving a duplicate behind.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use alloy::primitives::Address;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::{CqrsFramework, EventEnvelope, View};
use serde::{Deserialize, Serialize};
use sqlite_es::{
    ProjectionError, SqliteEsError, SqliteStore, TxProjection, ViewProjection,
    sqlite_cqrs,
};
use sqlx::{SqliteConnection, SqlitePool};

use crate::vocabulary::address_key;

use super::{
    Account, AccountEvent, AccountServices, AlpacaAccountId,
    AlpacaAccountNumber, ClientId, Email, Wallet,
};

pub type AccountCqrs = CqrsFramework<Account, SqliteStore<Account>>;

pub(super) const EMAIL_CLAIMS: &str = "account_emails";
pub(super) const WALLET_CLAIMS: &str = "account_wallets";
pub(super) const ALPACA_ID_CLAIMS: &str = "account_alpaca_ids";

/// The projection's version: bump it whenever `update` or the table
/// changes (a migration included), and startup rebuilds the table.
const VIEW_VERSION: u32 = 1;

static VIEW: LazyLock<ViewProjection<StoredAccountView, Account>> =
    LazyLock::new(|| ViewProjection::new("account_view", VIEW_VERSION));

/// The account command framework with its view and claim projections.
pub fn cqrs(pool: SqlitePool, services: AccountServices) -> AccountCqrs {
    let store = SqliteStore::new(pool)
        .with_projection(Arc::new(
            ViewProjection::<StoredAccountView, Account>::new(
                VIEW.table(),
                VIEW_VERSION,
            ),
        ))
        .with_projection(Arc::new(EmailClaims))
        .with_projection(Arc::new(WalletClaims))
        .with_projection(Arc::new(AlpacaIdClaims));
    sqlite_cqrs(store, services)
}

/// Rewrites `account_view` from the event log (an operator's rebuild).
pub async fn rebuild_views(pool: &SqlitePool) -> Result<u64, SqliteEsError> {
    VIEW.rebuild(pool).await
}

/// Rebuilds `account_view` only if its projection's version changed; the
/// events replayed, if it did.
pub async fn rebuild_stale_views(
    pool: &SqlitePool,
) -> Result<Option<u64>, SqliteEsError> {
    VIEW.rebuild_if_stale(pool).await
}

/// An account as operators and the mint/redemption flows see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub client_id: ClientId,
    pub email: Email,
    pub registered_at: DateTime<Utc>,
    /// Present once Alpaca has completed the handshake.
    pub link: Option<AccountLink>,
    pub wallets: BTreeSet<Wallet>,
    /// The AP's Alpaca account UUID, when an operator recorded one: the
    /// account may then be named by `client_account_id` (affiliated flow).
    #[serde(default)]
    pub alpaca_account_id: Option<AlpacaAccountId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLink {
    pub alpaca_account: AlpacaAccountNumber,
    pub linked_at: DateTime<Utc>,
}

impl AccountView {
    pub const fn is_linked(&self) -> bool {
        self.link.is_some()
    }

    pub fn owns_wallet(&self, wallet: &Address) -> bool {
        self.wallets.iter().any(|owned| owned.address() == *wallet)
    }

    /// The Alpaca account id when the affiliated flow is the only way
    /// Alpaca knows this AP (no handshake link). Calls we make for such an
    /// account name it by `client_account_id`; a linked account is named
    /// by our client id even if it also has an Alpaca account id.
    pub fn affiliated_only(&self) -> Option<AlpacaAccountId> {
        self.alpaca_account_id.filter(|_| self.link.is_none())
    }
}

/// The stored payload: `null` until the account is registered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct StoredAccountView(Option<AccountView>);

impl View<Account> for StoredAccountView {
    fn update(&mut self, event: &EventEnvelope<Account>) {
        match &event.payload {
            AccountEvent::Registered {
                client_id,
                email,
                registered_at,
            } => {
                self.0 = Some(AccountView {
                    client_id: *client_id,
                    email: email.clone(),
                    registered_at: *registered_at,
                    link: None,
                    wallets: BTreeSet::new(),
                    alpaca_account_id: None,
                });
            }
            AccountEvent::Linked {
                alpaca_account,
                linked_at,
            } => {
                if let Some(view) = &mut self.0 {
                    view.link = Some(AccountLink {
                        alpaca_account: alpaca_account.clone(),
                        linked_at: *linked_at,
                    });
                }
            }
            AccountEvent::WalletWhitelisted { wallet, .. } => {
                if let Some(view) = &mut self.0 {
                    view.wallets.insert(*wallet);
                }
            }
            AccountEvent::WalletUnwhitelisted { wallet, .. } => {
                if let Some(view) = &mut self.0 {
                    view.wallets.remove(wallet);
                }
            }
            AccountEvent::AlpacaAccountIdRecorded {
                alpaca_account_id, ..
            } => {
                if let Some(view) = &mut self.0 {
                    view.alpaca_account_id = Some(*alpaca_account_id);
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountQueryError {
    #[error(transparent)]
    Store(#[from] SqliteEsError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("stored client id {value:?} in {table} is not a UUID")]
    CorruptClientId { table: &'static str, value: String },
}

pub async fn find_by_client_id(
    pool: &SqlitePool,
    client_id: &ClientId,
) -> Result<Option<AccountView>, AccountQueryError> {
    Ok(VIEW
        .load(pool, &client_id.to_string())
        .await?
        .and_then(|stored| stored.0))
}

pub async fn find_by_email(
    pool: &SqlitePool,
    email: &Email,
) -> Result<Option<AccountView>, AccountQueryError> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT client_id FROM account_emails WHERE email = ?",
    )
    .bind(email.as_str())
    .fetch_optional(pool)
    .await?;
    let Some(owner) = owner else {
        return Ok(None);
    };
    let client_id = parse_stored_client_id(EMAIL_CLAIMS, owner)?;
    find_by_client_id(pool, &client_id).await
}

/// The account an operator gave this Alpaca account id (affiliated flow).
pub async fn find_by_alpaca_account_id(
    pool: &SqlitePool,
    alpaca_account_id: &AlpacaAccountId,
) -> Result<Option<AccountView>, AccountQueryError> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT client_id FROM account_alpaca_ids \
         WHERE alpaca_account_id = ?",
    )
    .bind(alpaca_id_key(alpaca_account_id))
    .fetch_optional(pool)
    .await?;
    let Some(owner) = owner else {
        return Ok(None);
    };
    let client_id = parse_stored_client_id(ALPACA_ID_CLAIMS, owner)?;
    find_by_client_id(pool, &client_id).await
}

/// The account that has allow-listed `wallet`, if any. A wallet belongs
/// to at most one account.
pub async fn find_owner_of_wallet(
    pool: &SqlitePool,
    wallet: &Address,
) -> Result<Option<ClientId>, AccountQueryError> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT client_id FROM account_wallets WHERE wallet = ?",
    )
    .bind(address_key(*wallet))
    .fetch_optional(pool)
    .await?;
    owner
        .map(|owner| parse_stored_client_id(WALLET_CLAIMS, owner))
        .transpose()
}

fn parse_stored_client_id(
    table: &'static str,
    value: String,
) -> Result<ClientId, AccountQueryError> {
    value
        .parse()
        .map_err(|_| AccountQueryError::CorruptClientId { table, value })
}

/// Claim-table key: lowercase hex, so lookups ignore checksum casing.
/// Claim-table key: lowercase hyphenated, as `Uuid` displays it.
fn alpaca_id_key(id: &AlpacaAccountId) -> String {
    id.as_uuid().hyphenated().to_string()
}

/// Claims the email on `Registered`.
struct EmailClaims;

#[async_trait]
impl TxProjection<Account> for EmailClaims {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<Account>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            if let AccountEvent::Registered {
                client_id, email, ..
            } = &event.payload
            {
                sqlx::query(
                    "INSERT INTO account_emails (email, client_id) \
                     VALUES (?, ?)",
                )
                .bind(email.as_str())
                .bind(client_id.to_string())
                .execute(&mut *conn)
                .await
                .map_err(|err| {
                    ProjectionError::from_sqlx(
                        err,
                        EMAIL_CLAIMS,
                        email.as_str(),
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// Claims a wallet on `WalletWhitelisted`, releases it on
/// `WalletUnwhitelisted`.
struct WalletClaims;

#[async_trait]
impl TxProjection<Account> for WalletClaims {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<Account>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            match &event.payload {
                AccountEvent::WalletWhitelisted { wallet, .. } => {
                    let key = address_key(wallet.address());
                    sqlx::query(
                        "INSERT INTO account_wallets (wallet, client_id) \
                         VALUES (?, ?)",
                    )
                    .bind(&key)
                    .bind(&event.aggregate_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(|err| {
                        ProjectionError::from_sqlx(err, WALLET_CLAIMS, key)
                    })?;
                }
                AccountEvent::WalletUnwhitelisted { wallet, .. } => {
                    sqlx::query(
                        "DELETE FROM account_wallets \
                         WHERE wallet = ? AND client_id = ?",
                    )
                    .bind(address_key(wallet.address()))
                    .bind(&event.aggregate_id)
                    .execute(&mut *conn)
                    .await?;
                }
                AccountEvent::Registered { .. }
                | AccountEvent::Linked { .. }
                | AccountEvent::AlpacaAccountIdRecorded { .. } => {}
            }
        }
        Ok(())
    }
}

/// Claims the Alpaca account id on `AlpacaAccountIdRecorded`, releasing
/// the account's previous one in the same commit.
struct AlpacaIdClaims;

#[async_trait]
impl TxProjection<Account> for AlpacaIdClaims {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<Account>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            if let AccountEvent::AlpacaAccountIdRecorded {
                alpaca_account_id,
                ..
            } = &event.payload
            {
                sqlx::query(
                    "DELETE FROM account_alpaca_ids WHERE client_id = ?",
                )
                .bind(&event.aggregate_id)
                .execute(&mut *conn)
                .await?;
                let key = alpaca_id_key(alpaca_account_id);
                sqlx::query(
                    "INSERT INTO account_alpaca_ids \
                     (alpaca_account_id, client_id) VALUES (?, ?)",
                )
                .bind(&key)
                .bind(&event.aggregate_id)
                .execute(&mut *conn)
                .await
                .map_err(|err| {
                    ProjectionError::from_sqlx(err, ALPACA_ID_CLAIMS, key)
                })?;
            }
        }
        Ok(())
    }
}
