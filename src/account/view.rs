//! Read side of accounts: the `account_view` table and the two claim
//! tables (`account_emails`, `account_wallets`) that make emails and
//! wallets unique across accounts. All three are written inside the commit
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

use super::{
    Account, AccountEvent, AccountServices, AlpacaAccountNumber, ClientId,
    Email, Wallet,
};

pub type AccountCqrs = CqrsFramework<Account, SqliteStore<Account>>;

pub(super) const EMAIL_CLAIMS: &str = "account_emails";
pub(super) const WALLET_CLAIMS: &str = "account_wallets";

static VIEW: LazyLock<ViewProjection<StoredAccountView, Account>> =
    LazyLock::new(|| ViewProjection::new("account_view"));

/// The account command framework with its view and claim projections.
pub fn cqrs(pool: SqlitePool, services: AccountServices) -> AccountCqrs {
    let store = SqliteStore::new(pool)
        .with_projection(Arc::new(
            ViewProjection::<StoredAccountView, Account>::new(VIEW.table()),
        ))
        .with_projection(Arc::new(EmailClaims))
        .with_projection(Arc::new(WalletClaims));
    sqlite_cqrs(store, services)
}

/// Rewrites `account_view` from the event log (startup keeps it derivable).
pub async fn rebuild_views(pool: &SqlitePool) -> Result<u64, SqliteEsError> {
    VIEW.rebuild(pool).await
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

/// The account that has allow-listed `wallet`, if any. A wallet belongs
/// to at most one account.
pub async fn find_owner_of_wallet(
    pool: &SqlitePool,
    wallet: &Address,
) -> Result<Option<ClientId>, AccountQueryError> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT client_id FROM account_wallets WHERE wallet = ?",
    )
    .bind(wallet_key(wallet))
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
fn wallet_key(wallet: &Address) -> String {
    format!("{wallet:#x}")
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
                    let key = wallet_key(&wallet.address());
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
                    .bind(wallet_key(&wallet.address()))
                    .bind(&event.aggregate_id)
                    .execute(&mut *conn)
                    .await?;
                }
                AccountEvent::Registered { .. }
                | AccountEvent::Linked { .. } => {}
            }
        }
        Ok(())
    }
}
