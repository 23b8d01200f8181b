//! The monitor and the driver against a real anvil (vault stack deployed)
//! and the real Alpaca simulator; the issuer's own tables are fed through
//! the real aggregates. Mints are done the way the mint driver does them
//! (sign, broadcast, `record_deposit`), so these tests do not depend on
//! the mint flow.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, TxHash, U256};
use alloy::providers::RootProvider;
use alloy::sol_types::SolCall;
use chrono::Utc;
use httpmock::prelude::*;
use itn_sim::{
    ApId, ApSpec, ClientIdMode, Endpoint, Fault, FeeQuirk, InitialRedeemStatus,
    Quirks, SimConfig, SimHandle, Simulator,
};
use receipt_vault::OffchainAssetReceiptVault as Vault;
use receipt_vault::testing::LocalChain;
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::json;
use sqlx::SqlitePool;
use uuid::Uuid;

use issuance_bot::account::ClientId;
use issuance_bot::account::{
    self, AccountCommand, AccountServices, AlpacaAccountNumber, Email, Wallet,
};
use issuance_bot::alpaca::{AlpacaClient, AlpacaConfig};
use issuance_bot::chain::VaultService;
use issuance_bot::chain::{
    BotSigner, ChainClient, ReceiptInformation, ReceiptOp, TxPolicy, TxStatus,
    WeiPerGas,
};
use issuance_bot::clock::Clock;
use issuance_bot::clock::SystemClock;
use issuance_bot::quantity::Quantity;
use issuance_bot::receipt_inventory::ReceiptBurn;
use issuance_bot::receipt_inventory::{self, record_deposit};
use issuance_bot::redemption::flow::{DriverSettings, RedemptionDriver};
use issuance_bot::redemption::monitor::{
    MonitorSettings, TransferMonitor, list_unattributed, load_checkpoint,
};
use issuance_bot::redemption::*;
use issuance_bot::tokenized_asset::{
    self, AssetKey, TokenizedAssetCommand, TokenizedAssetServices,
    Vault as ListedVault,
};
use issuance_bot::vocabulary::{Network, TokenSymbol, UnderlyingSymbol};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(30);

fn shares(quantity: &str) -> U256 {
    Quantity::parse(quantity).unwrap().to_shares()
}

struct World {
    chain: LocalChain,
    sim: SimHandle,
    _issuer: MockServer,
    pool: SqlitePool,
    vaults: VaultService,
    monitor: TransferMonitor,
    driver: RedemptionDriver,
    ap: ApId,
    client_id: ClientId,
    mints: u32,
}

impl World {
    async fn start() -> Self {
        Self::start_with(Duration::from_millis(30), Duration::from_hours(1))
            .await
    }

    /// `settle`: how long Alpaca leaves a redeem pending; `poll_timeout`:
    /// when the driver gives up polling.
    async fn start_with(settle: Duration, poll_timeout: Duration) -> Self {
        let chain = LocalChain::start().await.unwrap();
        let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
        issuance_bot::migrate(&pool).await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
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
            clock.clone(),
        );
        let vaults = VaultService::new(client);

        // Our side: the AP's account with its wallet, and the listing.
        let client_id = ClientId::new(Uuid::new_v4());
        let accounts = account::cqrs(
            pool.clone(),
            AccountServices {
                clock: clock.clone(),
            },
        );
        for command in [
            AccountCommand::Register {
                client_id,
                email: Email::new("ap@example.com").unwrap(),
            },
            AccountCommand::Link {
                alpaca_account: AlpacaAccountNumber::new("AP0001").unwrap(),
            },
            AccountCommand::WhitelistWallet {
                wallet: Wallet::new(chain.ap.address()).unwrap(),
            },
        ] {
            accounts
                .execute(&client_id.to_string(), command)
                .await
                .unwrap();
        }
        let assets = tokenized_asset::cqrs(
            pool.clone(),
            TokenizedAssetServices {
                clock: clock.clone(),
            },
        );
        let underlying = UnderlyingSymbol::new("AAPL").unwrap();
        assets
            .execute(
                &AssetKey::new(underlying.clone(), Network::Base).to_string(),
                TokenizedAssetCommand::Add {
                    underlying,
                    token: TokenSymbol::new("tAAPL").unwrap(),
                    network: Network::Base,
                    vault: ListedVault::new(chain.stack.vault).unwrap(),
                },
            )
            .await
            .unwrap();

        // Alpaca's side: the AP linked to our client id, and the issuer
        // holding the shares it will hand back.
        let issuer = MockServer::start_async().await;
        for path in ["/accounts/connect", "/tokenization/accounts/connect"] {
            issuer
                .mock_async(|when, then| {
                    when.method(POST).path(path);
                    then.status(200).json_body(json!({
                        "client_id": client_id.to_string(),
                        "client_external_account_id": client_id.to_string(),
                    }));
                })
                .await;
        }
        let sim = Simulator::spawn(SimConfig {
            redeem_settle_delay: settle,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        sim.set_issuer_base_url(
            itn_sim::Url::parse(&issuer.base_url()).unwrap(),
        );
        let ap = sim.add_ap(ApSpec {
            email: "ap@example.com".into(),
            account_number: "AP0001".into(),
            positions: vec![("AAPL".into(), Decimal::ZERO)],
            id_mode: ClientIdMode::External,
        });
        sim.link_ap(ap).await.unwrap();
        sim.set_issuer_position("AAPL", Decimal::new(100, 0));
        let mut alpaca_config = AlpacaConfig::new(
            sim.base_url(),
            sim.issuer_account_id(),
            sim.config().broker_key_id.clone(),
            SecretString::from(sim.config().broker_secret.clone()),
        );
        alpaca_config.retry_min_delay_ms = 5;
        alpaca_config.retry_max_delay_ms = 40;
        alpaca_config.max_retries = 3;
        let alpaca = AlpacaClient::new(&alpaca_config).unwrap();

        let cqrs = Arc::new(cqrs(
            pool.clone(),
            RedemptionServices {
                clock: clock.clone(),
            },
        ));
        let wake = Arc::new(Notify::new());
        let monitor = TransferMonitor::new(
            pool.clone(),
            vaults.client().provider().clone(),
            Arc::clone(&cqrs),
            clock.clone(),
            Self::monitor_settings(&chain),
            Arc::clone(&wake),
        );
        let driver = issuance_bot::redemption::flow::engine(
            pool.clone(),
            cqrs,
            alpaca,
            issuance_bot::chain::TxPipeline::new(
                vaults.clone(),
                Duration::from_secs(5),
                Duration::from_mins(10),
            ),
            clock,
            DriverSettings {
                poll_first: Duration::from_millis(10),
                poll_timeout,
                poll_max: Duration::from_millis(50),
                retry_after: Duration::from_millis(50),
                network: Network::Base,
                ..DriverSettings::default()
            },
            wake,
        );
        Self {
            chain,
            sim,
            _issuer: issuer,
            pool,
            vaults,
            monitor,
            driver,
            ap,
            client_id,
            mints: 0,
        }
    }

    fn monitor_settings(chain: &LocalChain) -> MonitorSettings {
        MonitorSettings {
            network: Network::Base,
            bot: chain.bot.address(),
            confirmations: 0,
            chunk_blocks: 3,
            start_block: 0,
            poll_interval: Duration::from_millis(20),
            head_poll_interval: Duration::from_millis(20),
        }
    }

    fn bot(&self) -> Address {
        self.chain.bot.address()
    }

    fn vault(&self) -> Address {
        self.chain.stack.vault
    }

    /// A mint as the mint driver performs it: deposit + transfer to the
    /// AP in one batch, then the receipt recorded in the inventory.
    async fn mint(&mut self, quantity: &str) -> U256 {
        self.mints += 1;
        let id = format!("mint-{}", self.mints);
        let info = ReceiptInformation::new(
            ReceiptOp::Mint,
            format!("tok-{id}"),
            id.clone(),
            "AAPL".into(),
            Quantity::parse(quantity).unwrap(),
            Utc::now(),
        )
        .unwrap();
        let tx = self
            .vaults
            .sign_mint(
                self.vault(),
                shares(quantity),
                self.chain.ap.address(),
                &info,
            )
            .await
            .unwrap();
        self.vaults.client().broadcast(&tx).await.unwrap();
        let status = self
            .vaults
            .client()
            .wait_for_outcome(&tx, WAIT)
            .await
            .unwrap();
        let TxStatus::Mined { receipt } = status else {
            panic!("mint not mined: {status:?}");
        };
        let minted = VaultService::parse_mint(&receipt, self.vault()).unwrap();
        let mut conn = self.pool.acquire().await.unwrap();
        record_deposit(
            &mut conn,
            self.vault(),
            minted.receipt_id,
            minted.shares,
            &id,
        )
        .await
        .unwrap();
        minted.receipt_id
    }

    /// `from` sends `calls` to the vault as one multicall (one call is
    /// sent directly).
    async fn send_from(
        &self,
        from: &alloy::signers::local::PrivateKeySigner,
        transfers: &[(Address, U256)],
    ) -> TxHash {
        let vault = self.chain.vault_as(from);
        let receipt = if let [(to, amount)] = transfers {
            vault
                .transfer(*to, *amount)
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap()
        } else {
            let calls: Vec<Bytes> = transfers
                .iter()
                .map(|(to, value)| {
                    Vault::transferCall {
                        to: *to,
                        value: *value,
                    }
                    .abi_encode()
                    .into()
                })
                .collect();
            vault
                .multicall(calls)
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap()
        };
        assert!(receipt.status(), "transfer reverted");
        receipt.transaction_hash
    }

    async fn redeem(&self, amount: U256) -> RedemptionId {
        let hash = self
            .send_from(&self.chain.ap, &[(self.bot(), amount)])
            .await;
        RedemptionId::for_transfer(hash, self.transfer_log_index(hash).await)
    }

    /// The log index of the (single) Transfer to the bot in `hash`.
    async fn transfer_log_index(&self, hash: TxHash) -> u64 {
        use alloy::providers::Provider;
        let receipt = self
            .vaults
            .client()
            .provider()
            .get_transaction_receipt(hash)
            .await
            .unwrap()
            .unwrap();
        receipt
            .inner
            .logs()
            .iter()
            .find(|log| {
                matches!(
                    monitor::classify_log(log, self.bot()),
                    monitor::LogMeaning::Inbound(_)
                )
            })
            .and_then(|log| log.log_index)
            .unwrap()
    }

    /// Runs monitor and driver passes until `id` satisfies `done`.
    async fn run_until(
        &mut self,
        id: &RedemptionId,
        done: impl Fn(&Redemption) -> bool,
    ) -> Redemption {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.monitor.pass().await.unwrap();
            self.driver.pass().await;
            if let Some(state) = find(&self.pool, id).await.unwrap()
                && done(&state)
            {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redemption {id} did not get there: {:?}",
                find(&self.pool, id).await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn share_balance(&self, owner: Address) -> U256 {
        self.chain.share_balance(owner).await.unwrap()
    }

    async fn receipt_balance(&self, id: U256) -> U256 {
        self.chain.receipt_balance(self.bot(), id).await.unwrap()
    }
}

fn completed(state: &Redemption) -> bool {
    matches!(state, Redemption::Completed { .. })
}

fn terminal(state: &Redemption) -> bool {
    state.is_terminal()
}

#[tokio::test]
async fn mint_then_redeem_burns_returns_dust_and_restores_the_position() {
    let mut world = World::start().await;
    let receipt = world.mint("3").await;
    let ap = world.chain.ap.address();
    assert_eq!(world.share_balance(ap).await, shares("3"));

    // 1.5 tokens plus dust below Alpaca's 9 decimals.
    let dust = U256::from(123_456_789_u64);
    let sent = shares("1.5") + dust;
    let id = world.redeem(sent).await;
    let state = world.run_until(&id, completed).await;

    let Redemption::Completed {
        detection, burns, ..
    } = &state
    else {
        unreachable!()
    };
    assert_eq!(detection.transfer.client_id, world.client_id);
    assert_eq!(detection.alpaca_qty.unwrap().to_string(), "1.5");
    assert_eq!(detection.dust, dust);
    assert_eq!(burns.len(), 1);
    // On chain: the bot burned 1.5 and returned the dust; the receipt
    // shrank by what was burned.
    assert_eq!(world.share_balance(world.bot()).await, U256::ZERO);
    // 3 - (1.5 + dust) + dust: the dust came back.
    assert_eq!(world.share_balance(ap).await, shares("1.5"));
    assert_eq!(world.receipt_balance(receipt).await, shares("1.5"));
    // At Alpaca: the truncated quantity went back to the AP.
    assert_eq!(world.sim.position(world.ap, "AAPL"), Decimal::new(15, 1));
    assert_eq!(world.sim.issuer_position("AAPL"), Decimal::new(985, 1));
    let calls = world.sim.redeem_calls();
    assert_eq!(calls.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(body["qty"], "1.5");
    assert_eq!(body["issuer_request_id"], id.as_str());
    // Inventory follows the burn.
    let held = receipt_inventory::list(&world.pool).await.unwrap();
    assert_eq!(held[0].balance, shares("1.5"));
    assert_eq!(held[0].reserved, U256::ZERO);
    // Re-running everything changes nothing.
    world.monitor.pass().await.unwrap();
    world.driver.pass().await;
    assert_eq!(world.sim.redeem_calls().len(), 1);
    assert_eq!(find(&world.pool, &id).await.unwrap().unwrap(), state);
}

#[tokio::test]
async fn a_redemption_larger_than_any_receipt_burns_two() {
    let mut world = World::start().await;
    let first = world.mint("1").await;
    let second = world.mint("2").await;
    let id = world.redeem(shares("2.5")).await;
    let state = world.run_until(&id, completed).await;
    let Redemption::Completed { burns, .. } = &state else {
        unreachable!()
    };
    // Largest first, the last one partial.
    assert_eq!(
        *burns,
        vec![
            ReceiptBurn {
                receipt_id: second,
                shares: shares("2"),
            },
            ReceiptBurn {
                receipt_id: first,
                shares: shares("0.5"),
            },
        ]
    );
    assert_eq!(world.receipt_balance(second).await, U256::ZERO);
    assert_eq!(world.receipt_balance(first).await, shares("0.5"));
    assert_eq!(world.share_balance(world.bot()).await, U256::ZERO);
    assert_eq!(world.sim.position(world.ap, "AAPL"), Decimal::new(25, 1));
}

#[tokio::test]
async fn an_alpaca_rejection_burns_nothing() {
    let mut world = World::start().await;
    let receipt = world.mint("2").await;
    world.sim.inject(Fault::RejectNextRedeem);
    let id = world.redeem(shares("1")).await;
    let state = world.run_until(&id, terminal).await;
    let Redemption::Failed { reason, burn, .. } = &state else {
        panic!("expected failed, got {state:?}");
    };
    assert_eq!(*reason, FailureReason::AlpacaRejected { refusal: None });
    assert!(burn.is_none());
    // The tokens stay with the bot; nothing was burned or moved.
    assert_eq!(world.share_balance(world.bot()).await, shares("1"));
    assert_eq!(world.receipt_balance(receipt).await, shares("2"));
    assert_eq!(world.sim.position(world.ap, "AAPL"), Decimal::ZERO);
    let response = RedemptionResponse::from_state(&id, &state).unwrap();
    assert_eq!(
        response.failure_reason.as_deref(),
        Some("Alpaca rejected the redemption")
    );
}

#[tokio::test]
async fn two_transfers_in_one_transaction_are_two_redemptions() {
    let mut world = World::start().await;
    world.mint("3").await;
    let bot = world.bot();
    let hash = world
        .send_from(
            &world.chain.ap,
            &[(bot, shares("1")), (bot, shares("0.25"))],
        )
        .await;
    // Let the monitor find them, then read their ids from the view.
    let deadline = tokio::time::Instant::now() + WAIT;
    let ids = loop {
        world.monitor.pass().await.unwrap();
        let open: Vec<RedemptionId> = non_terminal(&world.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if open.len() == 2 {
            break open;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let prefix = format!("{hash:#x}-");
    assert!(ids.iter().all(|id| id.as_str().starts_with(&prefix)));
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        world.run_until(id, completed).await;
    }
    assert_eq!(world.share_balance(bot).await, U256::ZERO);
    assert_eq!(world.sim.position(world.ap, "AAPL"), Decimal::new(125, 2));
    assert_eq!(world.sim.redeem_calls().len(), 2);
}

#[tokio::test]
async fn unknown_senders_are_recorded_not_redeemed() {
    let mut world = World::start().await;
    world.mint("2").await;
    let stranger = world.chain.signer(2).unwrap();
    world
        .send_from(&world.chain.ap, &[(stranger.address(), shares("1"))])
        .await;
    let hash = world
        .send_from(&stranger, &[(world.bot(), shares("0.5"))])
        .await;
    let report = world.monitor.pass().await.unwrap();
    assert_eq!(report.detected, 0);
    assert_eq!(report.unattributed, 1);
    let listed = list_unattributed(&world.pool).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tx_hash, hash);
    assert_eq!(listed[0].from_wallet, stranger.address());
    assert_eq!(listed[0].amount, shares("0.5").to_string());
    assert!(non_terminal(&world.pool).await.unwrap().is_empty());
    // Scanning again records nothing twice.
    world.monitor.pass().await.unwrap();
    assert_eq!(list_unattributed(&world.pool).await.unwrap().len(), 1);
    assert_eq!(world.sim.redeem_calls().len(), 0);
}

#[tokio::test]
async fn transfers_made_while_stopped_are_found_after_restart() {
    let mut world = World::start().await;
    world.mint("2").await;
    // A first run catches up with the chain.
    world.monitor.pass().await.unwrap();
    let before = load_checkpoint(&world.pool, Network::Base, world.vault())
        .await
        .unwrap()
        .unwrap();
    // "Stopped": nobody watches while the AP sends.
    let id = world.redeem(shares("0.75")).await;
    // A new monitor (a restarted service) starts from the checkpoint.
    let restarted = TransferMonitor::new(
        world.pool.clone(),
        world.vaults.client().provider().clone(),
        Arc::new(cqrs(
            world.pool.clone(),
            RedemptionServices {
                clock: Arc::new(SystemClock),
            },
        )),
        Arc::new(SystemClock),
        World::monitor_settings(&world.chain),
        Arc::new(Notify::new()),
    );
    let report = restarted.pass().await.unwrap();
    assert_eq!(report.detected, 1);
    let after = load_checkpoint(&world.pool, Network::Base, world.vault())
        .await
        .unwrap()
        .unwrap();
    assert!(after > before);
    world.run_until(&id, completed).await;
}

#[tokio::test]
async fn a_5xx_redeem_answer_is_retried_without_a_duplicate() {
    let mut world = World::start().await;
    world.mint("1").await;
    // More failures than one call's retries: the driver tries again later.
    world.sim.inject(Fault::BrokerStatus {
        endpoint: Endpoint::Redeem,
        status: 503,
        times: 5,
    });
    let id = world.redeem(shares("1")).await;
    world.run_until(&id, completed).await;
    let created: Vec<_> = world
        .sim
        .requests()
        .into_iter()
        .filter(|req| req.issuer_request_id.as_deref() == Some(id.as_str()))
        .collect();
    assert_eq!(created.len(), 1);
    assert!(world.sim.hits(Endpoint::Redeem) > 5);
}

#[tokio::test]
async fn a_lost_redeem_answer_is_recovered_by_replay_or_lookup() {
    let mut world = World::start().await;
    world.mint("1").await;
    // Alpaca processes the redeem but the answer never arrives.
    world.sim.inject(Fault::DropResponse {
        endpoint: Endpoint::Redeem,
        times: 1,
    });
    let id = world.redeem(shares("1")).await;
    world.run_until(&id, completed).await;
    let created = world
        .sim
        .requests()
        .into_iter()
        .filter(|req| req.issuer_request_id.as_deref() == Some(id.as_str()))
        .count();
    assert_eq!(created, 1);
    assert_eq!(world.sim.position(world.ap, "AAPL"), Decimal::ONE);
}

#[tokio::test]
async fn a_dust_only_transfer_fails_and_is_kept() {
    let mut world = World::start().await;
    world.mint("1").await;
    let id = world.redeem(U256::from(500_u64)).await;
    let state = world.run_until(&id, terminal).await;
    assert!(matches!(
        state,
        Redemption::Failed {
            reason: FailureReason::BelowMinimumQuantity { .. },
            ..
        }
    ));
    assert_eq!(world.sim.redeem_calls().len(), 0);
    assert_eq!(world.share_balance(world.bot()).await, U256::from(500_u64));
}

#[tokio::test]
async fn a_redeem_completed_in_its_answer_burns_without_polling() {
    let mut world = World::start().await;
    world.mint("1").await;
    world
        .sim
        .inject(Fault::RedeemStatusOn200(InitialRedeemStatus::Completed));
    let id = world.redeem(shares("1")).await;
    world.run_until(&id, completed).await;
    assert_eq!(world.sim.hits(Endpoint::GetRequest), 0);
    assert_eq!(world.sim.position(world.ap, "AAPL"), Decimal::ONE);
}

#[tokio::test]
async fn an_empty_tx_hash_while_pending_is_not_a_mismatch() {
    let mut world =
        World::start_with(Duration::from_millis(300), Duration::from_hours(1))
            .await;
    world.mint("1").await;
    world.sim.inject(Fault::Quirks(Quirks {
        empty_tx_hash_when_pending: true,
        fees: FeeQuirk::Absent,
        deprecated_aliases: true,
    }));
    let id = world.redeem(shares("1")).await;
    world.run_until(&id, completed).await;
    // It was polled while pending (tx_hash "") and still completed.
    assert!(world.sim.hits(Endpoint::GetRequest) >= 2);
}

#[tokio::test]
async fn polling_gives_up_after_the_timeout_without_burning() {
    let mut world =
        World::start_with(Duration::from_hours(1), Duration::from_millis(300))
            .await;
    world.mint("1").await;
    let id = world.redeem(shares("1")).await;
    let state = world.run_until(&id, terminal).await;
    let Redemption::Failed { reason, alpaca, .. } = &state else {
        panic!("expected failed, got {state:?}");
    };
    assert!(matches!(reason, FailureReason::PollTimedOut { .. }));
    assert!(alpaca.is_some());
    assert_eq!(world.share_balance(world.bot()).await, shares("1"));
    assert!(world.sim.hits(Endpoint::GetRequest) >= 1);
}

#[tokio::test]
async fn transfers_on_a_repointed_listings_old_vault_are_still_redeemed() {
    let mut world = World::start().await;
    let receipt = world.mint("2").await;
    let newer = world.chain.add_vault("Second", "SEC").await.unwrap();
    let underlying = UnderlyingSymbol::new("AAPL").unwrap();
    tokenized_asset::cqrs(
        world.pool.clone(),
        TokenizedAssetServices {
            clock: Arc::new(SystemClock),
        },
    )
    .execute(
        &AssetKey::new(underlying.clone(), Network::Base).to_string(),
        TokenizedAssetCommand::Add {
            underlying,
            token: TokenSymbol::new("tAAPL").unwrap(),
            network: Network::Base,
            vault: ListedVault::new(newer.vault).unwrap(),
        },
    )
    .await
    .unwrap();
    // The AP still holds old-vault tokens and redeems them.
    let id = world.redeem(shares("1")).await;
    let state = world.run_until(&id, completed).await;
    assert_eq!(state.detection().unwrap().transfer.vault, world.vault());
    assert_eq!(world.receipt_balance(receipt).await, shares("1"));
    assert_eq!(world.share_balance(world.bot()).await, U256::ZERO);
}

#[tokio::test]
async fn reconciliation_corrects_the_inventory_from_the_chain() {
    let mut world = World::start().await;
    let receipt = world.mint("2").await;
    let vault = world.vault();
    let set_balance = |balance: U256| {
        sqlx::query("UPDATE receipt_inventory SET balance = ?")
            .bind(balance.to_string())
            .execute(&world.pool)
    };
    // The row overstates the receipt (e.g. a burn outside the service).
    set_balance(shares("5")).await.unwrap();
    let report =
        receipt_inventory::reconcile(&world.pool, &world.vaults, &[vault])
            .await
            .unwrap();
    assert_eq!((report.checked, report.corrected), (1, 1));
    let held = receipt_inventory::list(&world.pool).await.unwrap();
    assert_eq!(held[0].balance, shares("2"));
    // The correction is an event of the vault's receipt ledger.
    let ledger = sqlite_es::event_history(
        &world.pool,
        receipt_inventory::LEDGER_AGGREGATE,
        &format!("{vault:#x}"),
    )
    .await
    .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].event_type, "LedgerEvent::ReceiptReconciled");

    // A reserved burn that may have landed explains a lower chain value:
    // the row claims 3, 1 of it reserved, the chain says 2.
    set_balance(shares("3")).await.unwrap();
    {
        let mut conn = world.pool.acquire().await.unwrap();
        receipt_inventory::reserve(
            &mut conn,
            vault,
            "in-flight",
            &[ReceiptBurn {
                receipt_id: receipt,
                shares: shares("1"),
            }],
            Utc::now(),
        )
        .await
        .unwrap();
    }
    let report =
        receipt_inventory::reconcile(&world.pool, &world.vaults, &[vault])
            .await
            .unwrap();
    assert_eq!((report.checked, report.corrected), (1, 0));
    assert_eq!(
        receipt_inventory::list(&world.pool).await.unwrap()[0].balance,
        shares("3")
    );
}

#[tokio::test]
async fn an_expired_poll_window_still_reads_alpacas_answer_first() {
    // The poll window is already over when the driver first polls (as after
    // an outage longer than the timeout); Alpaca has completed meanwhile, so
    // the redemption must burn, not fail with PollTimedOut.
    let mut world =
        World::start_with(Duration::from_millis(10), Duration::from_nanos(1))
            .await;
    world.mint("1").await;
    let id = world.redeem(shares("1")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = world.run_until(&id, terminal).await;
    assert!(
        matches!(state, Redemption::Completed { .. }),
        "expected completed, got {state:?}"
    );
    assert!(world.sim.hits(Endpoint::GetRequest) >= 1);
    assert_eq!(world.sim.position(world.ap, "AAPL"), Decimal::ONE);
}
