//! A small bank-account aggregate, a view and an email-claim projection
//! shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, View};
use serde::{Deserialize, Serialize};
use sqlite_es::{ProjectionError, TxProjection, open_pool, run_migrations};
use sqlx::{SqliteConnection, SqlitePool};
use tempfile::TempDir;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub email: Option<String>,
    pub balance: u64,
}

#[derive(Debug, Clone)]
pub enum AccountCommand {
    Open { email: String },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
    Nothing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    Opened { email: String },
    Deposited { amount: u64 },
    Withdrew { amount: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Opened { .. } => "AccountEvent::Opened",
            Self::Deposited { .. } => "AccountEvent::Deposited",
            Self::Withdrew { .. } => "AccountEvent::Withdrew",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountError {
    #[error("account already open")]
    AlreadyOpen,
    #[error("account not open")]
    NotOpen,
    #[error("insufficient funds")]
    InsufficientFunds,
}

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AccountCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AccountError> {
        match command {
            AccountCommand::Open { email } => {
                if self.email.is_some() {
                    return Err(AccountError::AlreadyOpen);
                }
                sink.write(AccountEvent::Opened { email }, self).await;
            }
            AccountCommand::Deposit { amount } => {
                if self.email.is_none() {
                    return Err(AccountError::NotOpen);
                }
                sink.write(AccountEvent::Deposited { amount }, self).await;
            }
            AccountCommand::Withdraw { amount } => {
                if self.balance < amount {
                    return Err(AccountError::InsufficientFunds);
                }
                sink.write(AccountEvent::Withdrew { amount }, self).await;
            }
            AccountCommand::Nothing => {}
        }
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::Opened { email } => self.email = Some(email),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrew { amount } => self.balance -= amount,
        }
    }
}

/// Balance plus bookkeeping that exposes how often the view was updated.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub email: Option<String>,
    pub balance: u64,
    pub events_seen: u64,
    pub last_sequence: usize,
}

impl View<Account> for AccountView {
    fn update(&mut self, event: &EventEnvelope<Account>) {
        self.events_seen += 1;
        self.last_sequence = event.sequence;
        match &event.payload {
            AccountEvent::Opened { email } => self.email = Some(email.clone()),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrew { amount } => self.balance -= amount,
        }
    }
}

/// Claims each account's email in a UNIQUE table inside the commit.
pub struct EmailClaims;

pub const EMAIL_TABLE: &str = "account_emails";

#[async_trait]
impl TxProjection<Account> for EmailClaims {
    async fn project(
        &self,
        conn: &mut SqliteConnection,
        events: &[EventEnvelope<Account>],
    ) -> Result<(), ProjectionError> {
        for event in events {
            if let AccountEvent::Opened { email } = &event.payload {
                sqlx::query(
                    "INSERT INTO account_emails (email, account_id) \
                     VALUES (?, ?)",
                )
                .bind(email)
                .bind(&event.aggregate_id)
                .execute(&mut *conn)
                .await
                .map_err(|err| {
                    ProjectionError::from_sqlx(err, EMAIL_TABLE, email.clone())
                })?;
            }
        }
        Ok(())
    }
}

pub async fn create_email_table(pool: &SqlitePool) {
    sqlx::query(
        "CREATE TABLE account_emails (email TEXT PRIMARY KEY, \
         account_id TEXT NOT NULL)",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// A migrated pool on a fresh temp-file database. Keep the `TempDir`.
pub async fn file_pool(max_connections: u32) -> (SqlitePool, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let url = format!("sqlite://{}", path.display());
    let pool = open_pool(&url, max_connections).await.unwrap();
    run_migrations(&pool).await.unwrap();
    (pool, dir)
}

pub async fn count(pool: &SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}
