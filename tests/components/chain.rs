//! The transaction pipeline and vault service against a real anvil with
//! the vault stack deployed (`receipt_vault::testing::LocalChain`).

use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::{SignableTransaction as _, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718 as _;
use alloy::network::TxSignerSync as _;
use alloy::primitives::{Bytes, TxKind, U256};
use alloy::providers::{Provider, RootProvider};
use chrono::{TimeZone, Utc};
use receipt_vault::errors::VaultRevert;
use receipt_vault::roles;
use receipt_vault::testing::{Certification, LocalChain};
use sqlx::SqlitePool;

use issuance_bot::chain::*;
use issuance_bot::clock::{Clock, FixedClock};
use issuance_bot::quantity::{Quantity, split_for_alpaca};

const TIMEOUT: Duration = Duration::from_secs(30);

fn policy(max_fee_gwei: &str) -> TxPolicy {
    TxPolicy {
        max_fee_per_gas: WeiPerGas::from_gwei(max_fee_gwei).unwrap(),
        max_priority_fee_per_gas: WeiPerGas::from_gwei("1").unwrap(),
        gas_limit_margin_percent: 20,
        receipt_poll_interval: Duration::from_millis(50),
        confirmations: 0,
        log_chunk_blocks: 2000,
        start_block: 0,
    }
}

fn signing_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 30, 0).unwrap()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(FixedClock::new(signing_time()))
}

fn client_with(
    chain: &LocalChain,
    pool: SqlitePool,
    policy: TxPolicy,
) -> ChainClient {
    ChainClient::from_parts(
        RootProvider::new_http(chain.rpc_url.clone()),
        BotSigner::from_signer(chain.bot.clone()),
        31337,
        policy,
        pool,
        clock(),
    )
}

fn client(chain: &LocalChain, pool: SqlitePool) -> ChainClient {
    client_with(chain, pool, policy("100"))
}

fn info(issuer_request_id: &str, quantity: &str) -> ReceiptInformation {
    ReceiptInformation::new(
        ReceiptOp::Mint,
        format!("tok-{issuer_request_id}"),
        issuer_request_id.into(),
        "AAPL".into(),
        Quantity::parse(quantity).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap(),
    )
    .unwrap()
}

fn shares(quantity: &str) -> U256 {
    Quantity::parse(quantity).unwrap().to_shares()
}

async fn record(pool: &SqlitePool, owner_id: &str, tx: &SignedTx) {
    let mut conn = pool.acquire().await.unwrap();
    record_intent(&mut conn, "mint", owner_id, tx)
        .await
        .unwrap();
}

async fn resolve(pool: &SqlitePool, tx: &SignedTx) {
    let mut conn = pool.acquire().await.unwrap();
    assert!(mark_intent_resolved(&mut conn, tx.hash).await.unwrap());
}

/// Sign, persist, broadcast, wait: the mint path as the driver runs it.
async fn mint(
    service: &VaultService,
    pool: &SqlitePool,
    chain: &LocalChain,
    id: &str,
    quantity: &str,
) -> MintOnChain {
    let info = info(id, quantity);
    let tx = service
        .sign_mint(
            chain.stack.vault,
            shares(quantity),
            chain.ap.address(),
            &info,
        )
        .await
        .unwrap();
    record(pool, id, &tx).await;
    service.client().broadcast(&tx).await.unwrap();
    let status = service.client().wait_for_outcome(&tx, TIMEOUT).await;
    let TxStatus::Mined { receipt } = status.unwrap() else {
        panic!("mint {id} not mined");
    };
    resolve(pool, &tx).await;
    VaultService::parse_mint(&receipt, chain.stack.vault).unwrap()
}

/// An anvil control call (`evm_mine`, `anvil_dropTransaction`, ...).
async fn rpc(
    chain: &LocalChain,
    method: &'static str,
    params: serde_json::Value,
) {
    let _: serde_json::Value = chain
        .provider()
        .raw_request(method.into(), params)
        .await
        .unwrap();
}

/// A private in-memory database with the service's schema.
async fn pool() -> SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    issuance_bot::migrate(&pool).await.unwrap();
    pool
}

#[tokio::test]
async fn full_mint_keeps_receipt_and_forwards_shares() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    let service = VaultService::new(client(&chain, pool.clone()));
    let vault = chain.stack.vault;
    let bot = chain.bot.address();
    let ap = chain.ap.address();

    assert!(!service.is_certification_expired(vault).await.unwrap());
    assert!(service.has_role(vault, roles::DEPOSIT, bot).await.unwrap());
    assert!(service.has_role(vault, roles::WITHDRAW, bot).await.unwrap());
    assert!(!service.has_role(vault, roles::DEPOSIT, ap).await.unwrap());

    let minted = mint(&service, &pool, &chain, "m-1", "12.5").await;
    assert_eq!(minted.receipt_id, U256::from(1));
    assert_eq!(minted.shares, shares("12.5"));
    assert!(minted.gas_used.is_some_and(|gas| gas > 0));
    assert_eq!(
        ReceiptInformation::decode(&minted.receipt_information).unwrap(),
        info("m-1", "12.5")
    );

    assert_eq!(
        service.share_balance(vault, ap).await.unwrap(),
        shares("12.5")
    );
    assert_eq!(service.share_balance(vault, bot).await.unwrap(), U256::ZERO);
    assert_eq!(
        service
            .receipt_balance(vault, bot, U256::from(1))
            .await
            .unwrap(),
        shares("12.5")
    );
    assert_eq!(
        service
            .receipt_balance(vault, ap, U256::from(1))
            .await
            .unwrap(),
        U256::ZERO
    );
    assert!(
        unresolved_intents(&pool, 31337, bot)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn burn_across_two_receipts_returns_dust() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    let service = VaultService::new(client(&chain, pool.clone()));
    let vault = chain.stack.vault;
    let bot = chain.bot.address();
    let ap = chain.ap.address();
    let first = mint(&service, &pool, &chain, "m-1", "1.5").await;
    let second = mint(&service, &pool, &chain, "m-2", "2").await;
    assert_eq!(second.receipt_id, U256::from(2));

    // The AP redeems by sending shares to the issuer wallet.
    let redeemed = shares("2.500000000123456789");
    chain
        .vault_as(&chain.ap)
        .transfer(bot, redeemed)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let split = split_for_alpaca(redeemed).unwrap();
    assert_eq!(split.alpaca.unwrap().to_string(), "2.5");
    assert_eq!(split.dust, U256::from(123_456_789));

    let burns = [
        Burn {
            receipt_id: first.receipt_id,
            shares: shares("1.5"),
            receipt_information: first.receipt_information.clone(),
        },
        Burn {
            receipt_id: second.receipt_id,
            shares: shares("1"),
            receipt_information: second.receipt_information.clone(),
        },
    ];
    let tx = service
        .sign_burn(vault, &burns, ap, Some(split.dust))
        .await
        .unwrap();
    record(&pool, "r-1", &tx).await;
    service.client().broadcast(&tx).await.unwrap();
    let TxStatus::Mined { receipt } = service
        .client()
        .wait_for_outcome(&tx, TIMEOUT)
        .await
        .unwrap()
    else {
        panic!("burn not mined");
    };
    assert_eq!(
        VaultService::parse_burn(&receipt.logs, vault),
        vec![
            BurnOnChain {
                receipt_id: U256::from(1),
                shares: shares("1.5"),
            },
            BurnOnChain {
                receipt_id: U256::from(2),
                shares: shares("1"),
            },
        ]
    );
    // Logs of another contract are ignored.
    assert!(VaultService::parse_burn(&receipt.logs, ap).is_empty());

    assert_eq!(service.share_balance(vault, bot).await.unwrap(), U256::ZERO);
    // 3.5 minted − 2.500000000123456789 sent + dust back = 1.0.
    assert_eq!(service.share_balance(vault, ap).await.unwrap(), shares("1"));
    assert_eq!(
        service
            .receipt_balance(vault, bot, U256::from(1))
            .await
            .unwrap(),
        U256::ZERO
    );
    assert_eq!(
        service
            .receipt_balance(vault, bot, U256::from(2))
            .await
            .unwrap(),
        shares("1")
    );
}

#[tokio::test]
async fn two_mints_pipelined_with_consecutive_nonces() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    let service = VaultService::new(client(&chain, pool.clone()));
    let vault = chain.stack.vault;
    let ap = chain.ap.address();

    let a = service
        .sign_mint(vault, shares("1"), ap, &info("m-a", "1"))
        .await
        .unwrap();
    let b = service
        .sign_mint(vault, shares("2"), ap, &info("m-b", "2"))
        .await
        .unwrap();
    assert_eq!(b.nonce, a.nonce + 1);
    assert_eq!((a.signed_at, b.signed_at), (signing_time(), signing_time()));
    assert_eq!((a.from, a.chain_id), (chain.bot.address(), 31337));
    record(&pool, "m-a", &a).await;
    record(&pool, "m-b", &b).await;
    // Broadcast in reverse: the node queues b until a arrives.
    service.client().broadcast(&b).await.unwrap();
    service.client().broadcast(&a).await.unwrap();

    let client = service.client();
    let (ra, rb) = tokio::join!(
        client.wait_for_outcome(&a, TIMEOUT),
        client.wait_for_outcome(&b, TIMEOUT)
    );
    let (TxStatus::Mined { receipt: ra }, TxStatus::Mined { receipt: rb }) =
        (ra.unwrap(), rb.unwrap())
    else {
        panic!("both mints should be mined");
    };
    let ma = VaultService::parse_mint(&ra, vault).unwrap();
    let mb = VaultService::parse_mint(&rb, vault).unwrap();
    assert_eq!(
        (ma.receipt_id, mb.receipt_id),
        (U256::from(1), U256::from(2))
    );
    assert_eq!(service.share_balance(vault, ap).await.unwrap(), shares("3"));
}

#[tokio::test]
async fn crash_between_persist_and_broadcast_rebroadcasts_same_bytes() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    let vault = chain.stack.vault;
    let ap = chain.ap.address();

    let persisted = {
        let service = VaultService::new(client(&chain, pool.clone()));
        let tx = service
            .sign_mint(vault, shares("5"), ap, &info("m-1", "5"))
            .await
            .unwrap();
        record(&pool, "m-1", &tx).await;
        tx
        // Crash: the client is dropped before broadcasting.
    };

    let restarted = client(&chain, pool.clone());
    let status = restarted.classify(&persisted).await.unwrap();
    assert_eq!(status, TxStatus::Pending);
    assert_eq!(
        TxLifecycle::new(0).decide(AttemptRole::Current, &status),
        TxAction::Rebroadcast
    );

    // A new transaction must not take the persisted nonce.
    let fresh = VaultService::new(restarted.clone())
        .sign_mint(vault, shares("1"), ap, &info("m-2", "1"))
        .await
        .unwrap();
    assert_eq!(fresh.nonce, persisted.nonce + 1);
    restarted.release(&fresh).await;

    restarted.broadcast(&persisted).await.unwrap();
    // Broadcasting the same bytes again is harmless.
    restarted.broadcast(&persisted).await.unwrap();
    let TxStatus::Mined { receipt } = restarted
        .wait_for_outcome(&persisted, TIMEOUT)
        .await
        .unwrap()
    else {
        panic!("persisted mint not mined");
    };
    let minted = VaultService::parse_mint(&receipt, vault).unwrap();
    assert_eq!(minted.receipt_id, U256::from(1));
    // Once mined, a rebroadcast ("nonce too low") still counts as sent.
    restarted.broadcast(&persisted).await.unwrap();
    assert_eq!(service_balance(&chain, &restarted).await, shares("5"));
}

async fn service_balance(chain: &LocalChain, client: &ChainClient) -> U256 {
    VaultService::new(client.clone())
        .share_balance(chain.stack.vault, chain.ap.address())
        .await
        .unwrap()
}

/// A zero-value self-transfer from the bot with an explicit nonce.
fn raw_self_transfer(chain: &LocalChain, nonce: u64) -> Bytes {
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
async fn dropped_transaction_is_replaced_exactly_once() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    let service = VaultService::new(client(&chain, pool.clone()));
    let client = service.client().clone();
    let vault = chain.stack.vault;
    let ap = chain.ap.address();

    rpc(&chain, "evm_setAutomine", serde_json::json!([false])).await;
    let original = service
        .sign_mint(vault, shares("7"), ap, &info("m-1", "7"))
        .await
        .unwrap();
    record(&pool, "m-1", &original).await;
    client.broadcast(&original).await.unwrap();
    assert_eq!(client.classify(&original).await.unwrap(), TxStatus::Pending);

    // The node forgets it, and another transaction takes its nonce.
    rpc(
        &chain,
        "anvil_dropTransaction",
        serde_json::json!([original.hash]),
    )
    .await;
    let competitor = chain
        .provider()
        .send_raw_transaction(&raw_self_transfer(&chain, original.nonce))
        .await
        .unwrap();
    let competitor = *competitor.tx_hash();
    rpc(&chain, "evm_mine", serde_json::json!([])).await;

    // The node shows neither receipt nor transaction, but the nonce is
    // used: that alone never proves ours dead (it may be a lagging node).
    let status = client.classify(&original).await.unwrap();
    assert_eq!(status, TxStatus::NonceConsumed);
    assert_eq!(
        TxLifecycle::new(0).decide(AttemptRole::Current, &status),
        TxAction::FindLanding
    );
    // The search finds no deposit for m-1 and the competitor in the
    // block that took the nonce: a transaction that is not ours.
    let effect = Effect::Mint {
        tokenization_request_id: "m-1",
    };
    let head = original.head_at_signing.unwrap();
    assert_eq!(
        service.find_effect(vault, effect, head).await.unwrap(),
        None
    );
    let landing = service
        .find_landing(vault, effect, &original, head)
        .await
        .unwrap();
    let Landing::NonceTakenBy { tx_hash, .. } = landing else {
        panic!("expected the competitor, got {landing:?}");
    };
    assert_eq!(tx_hash, competitor);
    let status = TxStatus::Dead {
        consumed_by: competitor,
    };
    // Its bytes can no longer be sent: the node refuses and does not
    // know the hash, so this is not reported as sent.
    let refused = client.broadcast(&original).await.unwrap_err();
    assert!(
        matches!(&refused, ChainError::BroadcastRejected { hash, .. } if *hash == original.hash),
        "{refused:?}"
    );
    let lifecycle = TxLifecycle::new(0);
    assert_eq!(
        lifecycle.decide(AttemptRole::Current, &status),
        TxAction::Replace
    );

    // Replace: same calldata, fresh nonce; the original is resolved.
    let replacement = client.replacement_for(&original).await.unwrap();
    assert_eq!(replacement.nonce, original.nonce + 1);
    assert_eq!(replacement.to, original.to);
    assert_eq!(replacement.calldata(), original.calldata());
    assert_ne!(replacement.hash, original.hash);
    {
        let mut conn = pool.acquire().await.unwrap();
        record_intent(&mut conn, "mint", "m-1", &replacement)
            .await
            .unwrap();
        mark_intent_resolved(&mut conn, original.hash)
            .await
            .unwrap();
    }
    client.broadcast(&replacement).await.unwrap();
    rpc(&chain, "evm_mine", serde_json::json!([])).await;
    rpc(&chain, "evm_setAutomine", serde_json::json!([true])).await;

    let replaced = TxLifecycle::new(1);
    let status = client.classify(&replacement).await.unwrap();
    let TxStatus::Mined { receipt } = &status else {
        panic!("replacement not mined: {status:?}");
    };
    assert_eq!(
        replaced.decide(AttemptRole::Current, &status),
        TxAction::RecordSuccess
    );
    let minted = VaultService::parse_mint(receipt, vault).unwrap();
    assert_eq!(minted.receipt_id, U256::from(1));

    // The original stays unseen and nothing more is done about it.
    let status = client.classify(&original).await.unwrap();
    assert_eq!(status, TxStatus::NonceConsumed);
    assert_eq!(
        replaced.decide(AttemptRole::Superseded, &status),
        TxAction::NothingToDo
    );
    // Exactly one deposit happened.
    assert_eq!(service.share_balance(vault, ap).await.unwrap(), shares("7"));
    assert_eq!(
        service
            .receipt_balance(vault, chain.bot.address(), U256::from(2))
            .await
            .unwrap(),
        U256::ZERO
    );
}

#[tokio::test]
async fn fee_above_ceiling_signs_and_sends_nothing() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    let bot = chain.bot.address();
    let cheap = client_with(&chain, pool.clone(), policy("0.000000001"));
    let before = chain
        .provider()
        .get_transaction_count(bot)
        .pending()
        .await
        .unwrap();
    let error = VaultService::new(cheap.clone())
        .sign_mint(
            chain.stack.vault,
            shares("1"),
            chain.ap.address(),
            &info("m-1", "1"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ChainError::FeeAboveCeiling { estimated, ceiling: 1 } if estimated > 1
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let after = chain
        .provider()
        .get_transaction_count(bot)
        .pending()
        .await
        .unwrap();
    assert_eq!(before, after);
    // No nonce was consumed either: a normal client starts at the chain's.
    let normal = VaultService::new(client(&chain, pool));
    let tx = normal
        .sign_mint(
            chain.stack.vault,
            shares("1"),
            chain.ap.address(),
            &info("m-1", "1"),
        )
        .await
        .unwrap();
    assert_eq!(tx.nonce, before);
}

#[tokio::test]
async fn expired_certification_is_a_deterministic_revert() {
    let chain = LocalChain::start_with(Certification::Expired)
        .await
        .unwrap();
    let pool = pool().await;
    let service = VaultService::new(client(&chain, pool));
    let vault = chain.stack.vault;
    assert!(service.is_certification_expired(vault).await.unwrap());

    let error = service
        .sign_mint(vault, shares("1"), chain.ap.address(), &info("m-1", "1"))
        .await
        .unwrap_err();
    let ChainError::WouldRevert { revert } = &error else {
        panic!("expected WouldRevert, got {error:?}");
    };
    assert_eq!(
        **revert,
        VaultRevert::CertificationExpired {
            from: chain.bot.address(),
            to: chain.ap.address(),
        }
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn mined_revert_is_classified_with_its_reason() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    let service = VaultService::new(client(&chain, pool.clone()));
    let vault = chain.stack.vault;

    // A separate certifier, so lapsing the certification does not use
    // the bot's nonces.
    let certifier = chain.signer(2).unwrap();
    receipt_vault::deploy::grant_role(
        chain.provider(),
        chain.stack.authorizer,
        roles::CERTIFY,
        certifier.address(),
    )
    .await
    .unwrap();
    // Signed while certified (gas estimate passes) ...
    let tx = service
        .sign_mint(vault, shares("1"), chain.ap.address(), &info("m-1", "1"))
        .await
        .unwrap();
    record(&pool, "m-1", &tx).await;
    // ... then certification lapses before it is mined.
    chain
        .vault_as(&certifier)
        .certify(U256::from(1), true, Bytes::new())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    service.client().broadcast(&tx).await.unwrap();
    let status = service
        .client()
        .wait_for_outcome(&tx, TIMEOUT)
        .await
        .unwrap();
    let TxStatus::Reverted { revert, .. } = &status else {
        panic!("expected a revert, got {status:?}");
    };
    let expected = VaultRevert::CertificationExpired {
        from: chain.bot.address(),
        to: chain.ap.address(),
    };
    assert_eq!(revert.as_ref(), Some(&expected));
    assert_eq!(
        TxLifecycle::new(0).decide(AttemptRole::Current, &status),
        TxAction::Fail {
            reason: TxFailure::DeterministicRevert(expected)
        }
    );
}

#[tokio::test]
async fn connect_checks_the_chain_id() {
    let chain = LocalChain::start().await.unwrap();
    let config: ChainConfig = toml::from_str(&format!(
        r#"
        rpc_url = "{}"
        chain_id = 8453
        network = "base"
        private_key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
        max_fee_per_gas_gwei = 100
        max_priority_fee_per_gas_gwei = 1
        "#,
        chain.rpc_url
    ))
    .unwrap();
    let signer = BotSigner::from_source(&config.signer).unwrap();
    assert_eq!(signer.address(), chain.bot.address());
    let error =
        ChainClient::connect(&config, signer.clone(), pool().await, clock())
            .await
            .unwrap_err();
    assert!(matches!(
        error,
        ChainError::WrongChain {
            expected: 8453,
            actual: 31337
        }
    ));
    let config = ChainConfig {
        chain_id: 31337,
        ..config
    };
    let client = ChainClient::connect(&config, signer, pool().await, clock())
        .await
        .unwrap();
    assert_eq!(client.address(), chain.bot.address());
    assert_eq!(client.chain_id(), 31337);
}

#[tokio::test]
async fn readiness_probe_checks_the_chain_id() {
    use issuance_bot::http::health::ReadinessProbe as _;
    use issuance_bot::vocabulary::Network;

    let chain = LocalChain::start().await.unwrap();
    let good = ChainProbe::new(client(&chain, pool().await), Network::Base);
    assert_eq!(good.name(), "chain:base");
    good.check().await.unwrap();

    let wrong = ChainClient::from_parts(
        RootProvider::new_http(chain.rpc_url.clone()),
        BotSigner::from_signer(chain.bot.clone()),
        8453,
        policy("100"),
        pool().await,
        clock(),
    );
    let error = ChainProbe::new(wrong, Network::Base)
        .check()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("8453"), "{error}");
}

#[tokio::test]
async fn receipts_wait_for_the_configured_confirmations() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    let deep = TxPolicy {
        confirmations: 2,
        ..policy("100")
    };
    let service = VaultService::new(client_with(&chain, pool.clone(), deep));
    let tx = service
        .sign_mint(
            chain.stack.vault,
            shares("1"),
            chain.ap.address(),
            &info("m-1", "1"),
        )
        .await
        .unwrap();
    record(&pool, "m-1", &tx).await;
    service.client().broadcast(&tx).await.unwrap();
    // Automine may answer the broadcast before the block is visible.
    let mut status = service.client().classify(&tx).await.unwrap();
    for _ in 0..100 {
        if status != TxStatus::Pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = service.client().classify(&tx).await.unwrap();
    }
    let TxStatus::Unconfirmed { block_number } = status else {
        panic!("expected Unconfirmed, got {status:?}");
    };
    assert_eq!(
        TxLifecycle::new(0).decide(AttemptRole::Current, &status),
        TxAction::Wait
    );
    rpc(&chain, "evm_mine", serde_json::json!([])).await;
    assert!(matches!(
        service.client().classify(&tx).await.unwrap(),
        TxStatus::Unconfirmed { .. }
    ));
    rpc(&chain, "evm_mine", serde_json::json!([])).await;
    let TxStatus::Mined { receipt } =
        service.client().classify(&tx).await.unwrap()
    else {
        panic!("expected Mined after two more blocks");
    };
    assert_eq!(receipt.block_number, block_number);
}

#[tokio::test]
async fn unreachable_rpc_is_uncertain_never_failed() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    let service = VaultService::new(client(&chain, pool.clone()));
    let tx = service
        .sign_mint(
            chain.stack.vault,
            shares("1"),
            chain.ap.address(),
            &info("m-1", "1"),
        )
        .await
        .unwrap();
    // The same wallet, but its node is down.
    let offline = ChainClient::from_parts(
        RootProvider::new_http("http://127.0.0.1:9".parse().unwrap()),
        BotSigner::from_signer(chain.bot.clone()),
        31337,
        policy("100"),
        pool,
        clock(),
    );
    let status = offline.classify(&tx).await.unwrap();
    assert!(
        matches!(
            status,
            TxStatus::Uncertain {
                reason: Uncertainty::Rpc { .. }
            }
        ),
        "{status:?}"
    );
    assert_eq!(
        TxLifecycle::new(0).decide(AttemptRole::Current, &status),
        TxAction::Wait
    );
    let waited = offline
        .wait_for_outcome(&tx, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(matches!(waited, TxStatus::Uncertain { .. }), "{waited:?}");
    let error = offline.broadcast(&tx).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    // A transaction of another chain is refused outright.
    let foreign = SignedTx { chain_id: 1, ..tx };
    assert!(matches!(
        offline.classify(&foreign).await,
        Err(ChainError::ForeignTx { chain_id: 1, .. })
    ));
}

#[tokio::test]
async fn landed_deposits_and_burns_are_found_in_the_logs_by_their_ids() {
    let chain = LocalChain::start().await.unwrap();
    let pool = pool().await;
    // Tiny chunks: the search must walk several ranges.
    let chunked = TxPolicy {
        log_chunk_blocks: 2,
        ..policy("100")
    };
    let service = VaultService::new(client_with(&chain, pool.clone(), chunked));
    let vault = chain.stack.vault;
    for _ in 0..5 {
        rpc(&chain, "evm_mine", serde_json::json!([])).await;
    }
    let minted = mint(&service, &pool, &chain, "m-1", "3").await;
    let _other = mint(&service, &pool, &chain, "m-2", "4").await;
    for _ in 0..5 {
        rpc(&chain, "evm_mine", serde_json::json!([])).await;
    }

    let found = service
        .find_effect(
            vault,
            Effect::Mint {
                tokenization_request_id: "tok-m-1",
            },
            0,
        )
        .await
        .unwrap()
        .expect("the deposit of m-1");
    assert_eq!(found.receipt.block_number, minted.block);
    // The node answers receipts, so the full receipt is used.
    assert!(found.receipt.gas_used.is_some());
    let parsed = VaultService::parse_mint(&found.receipt, vault).unwrap();
    assert_eq!(parsed.receipt_id, minted.receipt_id);
    assert_eq!(parsed.shares, shares("3"));
    // The search starts where it is told: after the deposit, nothing.
    assert_eq!(
        service
            .find_effect(
                vault,
                Effect::Mint {
                    tokenization_request_id: "tok-m-1",
                },
                minted.block + 1,
            )
            .await
            .unwrap(),
        None
    );
    // Unknown ids and the other operation do not match.
    for effect in [
        Effect::Mint {
            tokenization_request_id: "tok-m-9",
        },
        Effect::Burn {
            issuer_request_id: "m-1",
        },
    ] {
        assert_eq!(service.find_effect(vault, effect, 0).await.unwrap(), None);
    }
}
