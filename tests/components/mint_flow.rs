//! The mint driver against a real anvil with the vault stack: a dead
//! transaction is replaced, a deposit the vault would refuse is held (not
//! failed), and a deterministic on-chain revert fails the mint. Alpaca is
//! unreachable here, so every mint stops at `minted` with the callback
//! error recorded for operators.

use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::{SignableTransaction as _, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718 as _;
use alloy::network::TxSignerSync as _;
use alloy::primitives::{Bytes, TxKind, U256};
use alloy::providers::{Provider, RootProvider};
use chrono::Utc;
use receipt_vault::testing::{Certification, LocalChain};
use secrecy::SecretString;
use sqlx::SqlitePool;
use tempfile::TempDir;
use uuid::Uuid;

use issuance_bot::account::ClientId;
use issuance_bot::alpaca::ApRef;
use issuance_bot::alpaca::{AlpacaClient, AlpacaConfig};
use issuance_bot::chain::SignedTx;
use issuance_bot::chain::{
    BotSigner, ChainClient, ReceiptInformation, ReceiptOp, TxPipeline,
    TxPolicy, VaultService, WeiPerGas,
};
use issuance_bot::clock::Clock;
use issuance_bot::clock::{SequentialIds, SystemClock};
use issuance_bot::migrate;
use issuance_bot::mint::*;
use issuance_bot::quantity::AlpacaQuantity;
use issuance_bot::vocabulary::{
    Network, TokenSymbol, UnderlyingSymbol, Wallet,
};

struct Setup {
    chain: LocalChain,
    pool: SqlitePool,
    state: MintState,
    vault: VaultService,
    driver: MintDriver,
    _dir: TempDir,
}

const TOK: &str = "driver-test-1";

async fn setup(certification: Certification) -> Setup {
    let chain = LocalChain::start_with(certification).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bot.db").display());
    let pool = sqlite_es::open_pool(&url, 4).await.unwrap();
    migrate(&pool).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = MintState::new(
        pool.clone(),
        clock.clone(),
        Arc::new(SequentialIds::new()),
        vec![Network::Base],
    );
    let client = ChainClient::from_parts(
        RootProvider::new_http(chain.rpc_url.clone()),
        BotSigner::from_signer(chain.bot.clone()),
        31337,
        TxPolicy {
            max_fee_per_gas: WeiPerGas::from_gwei("100").unwrap(),
            max_priority_fee_per_gas: WeiPerGas::from_gwei("1").unwrap(),
            gas_limit_margin_percent: 20,
            receipt_poll_interval: Duration::from_millis(50),
            confirmations: 0,
            log_chunk_blocks: 2000,
            start_block: 0,
        },
        pool.clone(),
        clock,
    );
    let vault = VaultService::new(client);
    // Nothing listens on port 9: every callback fails at once.
    let mut alpaca = AlpacaConfig::new(
        "http://127.0.0.1:9".parse().unwrap(),
        Uuid::from_u128(1),
        "key".into(),
        SecretString::from("secret"),
    );
    alpaca.max_retries = 0;
    let driver = engine(
        &state,
        Network::Base,
        TxPipeline::new(
            vault.clone(),
            Duration::from_secs(5),
            Duration::from_mins(10),
        ),
        AlpacaClient::new(&alpaca).unwrap(),
        DriverSettings::default(),
        Arc::clone(state.waker()),
    );
    let request = MintRequest {
        order: MintOrder {
            tokenization_request_id: id(),
            qty: AlpacaQuantity::parse("2.5").unwrap(),
            underlying: UnderlyingSymbol::new("AAPL").unwrap(),
            token: TokenSymbol::new("tAAPL").unwrap(),
            network: Network::Base,
            ap: ApRef::Legacy("ap".into()),
            wallet: Wallet::new(chain.ap.address()).unwrap(),
        },
        issuer_request_id: MintId::new(Uuid::from_u128(42)),
        client_id: ClientId::new(Uuid::from_u128(7)),
        vault: Vault::new(chain.stack.vault).unwrap(),
    };
    let cqrs = state.cqrs().clone();
    cqrs.execute(TOK, MintCommand::Initiate { request })
        .await
        .unwrap();
    cqrs.execute(
        TOK,
        MintCommand::ConfirmJournal {
            issuer_request_id: MintId::new(Uuid::from_u128(42)),
        },
    )
    .await
    .unwrap();
    Setup {
        chain,
        pool,
        state,
        vault,
        driver,
        _dir: dir,
    }
}

fn id() -> TokenizationRequestId {
    TokenizationRequestId::new(TOK).unwrap()
}

fn shares() -> U256 {
    AlpacaQuantity::parse("2.5").unwrap().to_shares()
}

impl Setup {
    async fn view(&self) -> MintView {
        find_by_tokenization_request_id(&self.pool, &id())
            .await
            .unwrap()
            .unwrap()
    }

    /// Drives the mint until it reaches `status`, as the driver's ticks
    /// would (anvil may answer before its block is mined under load).
    async fn drive_until(&self, status: MintStatus) -> MintView {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.driver.drive(&id()).await;
            let view = self.view().await;
            if view.status == status {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never reached {status}: {view:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn last_error(&self) -> Option<String> {
        issuance_bot::driver::status(
            &self.pool,
            issuance_bot::driver::FlowName::Mint,
            id().as_str(),
        )
        .await
        .unwrap()
        .map(|status| status.last_error)
    }

    /// (nonce, resolved) of every recorded intent.
    async fn intents(&self) -> Vec<(u64, i64)> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT nonce, resolved FROM tx_intents ORDER BY nonce",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(nonce, resolved)| (u64::try_from(nonce).unwrap(), resolved))
            .collect()
    }

    async fn ap_shares(&self) -> U256 {
        self.chain
            .share_balance(self.chain.ap.address())
            .await
            .unwrap()
    }

    /// Signs the mint batch and records it as the intent, without
    /// sending it (as if the process died right after the commit).
    async fn intend_without_sending(&self) -> SignedTx {
        let info = ReceiptInformation::new(
            ReceiptOp::Mint,
            TOK.into(),
            MintId::new(Uuid::from_u128(42)).to_string(),
            "AAPL".into(),
            AlpacaQuantity::parse("2.5").unwrap().quantity(),
            Utc::now(),
        )
        .unwrap();
        let tx = self
            .vault
            .sign_mint(
                self.chain.stack.vault,
                shares(),
                self.chain.ap.address(),
                &info,
            )
            .await
            .unwrap();
        self.state
            .cqrs()
            .execute(TOK, MintCommand::RecordTxIntent { tx: tx.clone() })
            .await
            .unwrap();
        tx
    }
}

/// A zero-value self-transfer from the bot that takes `nonce`.
fn self_transfer(chain: &LocalChain, nonce: u64) -> Bytes {
    let mut tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 100_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(chain.bot.address()),
        value: U256::ZERO,
        access_list: alloy::eips::eip2930::AccessList::default(),
        input: Bytes::new(),
    };
    let signature = chain.bot.sign_transaction_sync(&mut tx).unwrap();
    TxEnvelope::from(tx.into_signed(signature))
        .encoded_2718()
        .into()
}

#[tokio::test]
async fn a_confirmed_mint_is_signed_recorded_sent_and_minted() {
    let s = setup(Certification::Forever).await;
    s.driver.drive(&id()).await;
    // First run: intent recorded and sent, then followed in the same run
    // (anvil mines at once, unless it answers before mining under load).
    let view = s.view().await;
    assert!(
        matches!(view.status, MintStatus::MintIntended | MintStatus::Minted),
        "{view:?}"
    );
    assert_eq!(view.tx_attempt, Some(1));
    let nonce = view.tx_nonce.unwrap();
    let view = s.drive_until(MintStatus::Minted).await;
    assert_eq!(view.receipt_id.as_deref(), Some("1"));
    assert_eq!(s.ap_shares().await, shares());
    assert_eq!(s.intents().await, vec![(nonce, 1)]);
    let error = s.last_error().await.unwrap();
    assert!(error.contains("mint callback failed"), "{error}");
    // The receipt is in the inventory, tagged with the mint.
    let row: (String, Option<String>) = sqlx::query_as(
        "SELECT balance, source_issuer_request_id FROM receipt_inventory \
         WHERE receipt_id = '1'",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(row.0, shares().to_string());
    assert_eq!(
        row.1.as_deref(),
        Some("00000000-0000-0000-0000-00000000002a")
    );
    // More runs change nothing on chain.
    s.driver.drive(&id()).await;
    assert_eq!(s.ap_shares().await, shares());
    assert_eq!(s.view().await.status, MintStatus::Minted);
}

#[tokio::test]
async fn a_dead_transaction_is_replaced_once_and_the_replacement_mints() {
    let s = setup(Certification::Forever).await;
    let original = s.intend_without_sending().await;
    // Another transaction takes the nonce: the intent can never be mined.
    s.chain
        .provider()
        .send_raw_transaction(&self_transfer(&s.chain, original.nonce))
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    s.driver.drive(&id()).await;
    // Replaced, and the replacement followed in the same run.
    let view = s.view().await;
    assert!(
        matches!(view.status, MintStatus::MintIntended | MintStatus::Minted),
        "{view:?}"
    );
    assert_eq!(view.tx_attempt, Some(2));
    assert_eq!(view.superseded_tx_hashes, vec![original.hash]);
    assert_ne!(view.tx_hash, Some(original.hash));
    // The dead intent is resolved, the replacement recorded.
    let nonce = original.nonce;
    assert_eq!(view.tx_nonce, Some(nonce + 1));
    assert_eq!(s.intents().await.first(), Some(&(nonce, 1)));

    s.drive_until(MintStatus::Minted).await;
    assert_eq!(s.ap_shares().await, shares());
    assert_eq!(s.intents().await, vec![(nonce, 1), (nonce + 1, 1)]);
    let highwater = s
        .chain
        .vault_as(&s.chain.bot)
        .highwaterId()
        .call()
        .await
        .unwrap();
    assert_eq!(highwater, U256::from(1));
}

#[tokio::test]
async fn a_deposit_the_vault_would_refuse_is_held_until_fixed() {
    let s = setup(Certification::Expired).await;
    s.driver.drive(&id()).await;
    // Nothing signed, nothing recorded: the mint waits, with the reason.
    assert_eq!(s.view().await.status, MintStatus::JournalConfirmed);
    assert!(s.intents().await.is_empty());
    let error = s.last_error().await.unwrap();
    assert!(error.contains("would revert"), "{error}");

    // An operator certifies the vault; the mint proceeds.
    receipt_vault::deploy::certify(
        s.chain.provider(),
        s.chain.stack.vault,
        U256::MAX,
    )
    .await
    .unwrap();
    s.drive_until(MintStatus::Minted).await;
    assert_eq!(s.ap_shares().await, shares());
}

#[tokio::test]
async fn a_deterministic_revert_on_chain_fails_the_mint() {
    let s = setup(Certification::Forever).await;
    // The bot's key is also the deployer's: certify from another key so
    // that the bot's nonces stay ours.
    let certifier = s.chain.signer(2).unwrap();
    receipt_vault::deploy::grant_role(
        s.chain.provider(),
        s.chain.stack.authorizer,
        receipt_vault::roles::CERTIFY,
        certifier.address(),
    )
    .await
    .unwrap();
    let tx = s.intend_without_sending().await;
    // The certification lapses between signing and sending.
    s.chain
        .vault_as(&certifier)
        .certify(U256::from(1), true, Bytes::new())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    // Sent (identical bytes), mined with status 0, then classified.
    let view = s.drive_until(MintStatus::Failed).await;
    let failure = view.failure.unwrap();
    assert_eq!(failure.classification, FailureClass::DeterministicRevert);
    assert_eq!(failure.tx_hash, Some(tx.hash));
    assert!(
        failure.reason.contains("CertificationExpired"),
        "{}",
        failure.reason
    );
    assert_eq!(s.intents().await, vec![(tx.nonce, 1)]);
    assert_eq!(s.ap_shares().await, U256::ZERO);
    // A failed mint is left alone.
    s.driver.drive(&id()).await;
    assert_eq!(s.view().await.status, MintStatus::Failed);
}
