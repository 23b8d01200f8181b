//! Redemptions end to end: the AP sends tokens to the issuer wallet on the
//! real vault; the service detects the transfer, asks Alpaca (the
//! simulator) to move the shares back, and burns. Observed through the
//! service's API, the chain and the simulator only.

use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use issuance_bot::alpaca::{AlpacaClient, AlpacaConfig, ApRef, RedeemRequest};
use issuance_bot::quantity::AlpacaQuantity;
use itn_sim::{Endpoint, Fault, RequestStatus};
use receipt_vault::OffchainAssetReceiptVault as Vault;
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde_json::Value;

use crate::harness::{Env, INTERNAL_KEY, TIMEOUT, UNDERLYING, wait_until};

pub(crate) fn shares(qty: &str) -> U256 {
    issuance_bot::quantity::Quantity::parse(qty)
        .unwrap()
        .to_shares()
}

pub(crate) fn position(qty: &str) -> Decimal {
    qty.parse().unwrap()
}

async fn get(env: &Env, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", env.base_url))
        .header("X-API-KEY", INTERNAL_KEY)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A completed mint of `qty` to the AP; returns the receipt id.
pub(crate) async fn mint(env: &Env, qty: &str) -> String {
    let outcome = env.request_mint(qty).await;
    let mint = env
        .wait_for_status(&outcome.issuer_request_id.unwrap(), "completed")
        .await;
    mint["receipt_id"].as_str().unwrap().to_owned()
}

pub(crate) fn bot(env: &Env) -> Address {
    env.chain.bot.address()
}

/// `from` sends each `(to, amount)`: one `transfer`, or several in one
/// vault `multicall` (which keeps `msg.sender`).
pub(crate) async fn send(
    env: &Env,
    from: &PrivateKeySigner,
    transfers: &[(Address, U256)],
) -> TransactionReceipt {
    let vault = env.chain.vault_as(from);
    let receipt = if let [(to, amount)] = transfers {
        vault.transfer(*to, *amount).send().await.unwrap()
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
        vault.multicall(calls).send().await.unwrap()
    }
    .get_receipt()
    .await
    .unwrap();
    assert!(receipt.status(), "transfer reverted");
    receipt
}

/// The redemption ids (`0x<tx hash>-<log index>`) of the transfers to
/// the bot in `receipt`.
pub(crate) fn redemption_ids(
    receipt: &TransactionReceipt,
    bot: Address,
) -> Vec<String> {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| {
            Vault::Transfer::decode_log_data(&log.inner.data)
                .is_ok_and(|transfer| transfer.to == bot)
        })
        .map(|log| {
            format!(
                "{:#x}-{}",
                receipt.transaction_hash,
                log.log_index.unwrap()
            )
        })
        .collect()
}

/// The AP sends `amount` to the bot; returns the redemption id.
pub(crate) async fn redeem(env: &Env, amount: U256) -> String {
    let receipt = send(env, &env.chain.ap, &[(bot(env), amount)]).await;
    let ids = redemption_ids(&receipt, bot(env));
    assert_eq!(ids.len(), 1);
    ids[0].clone()
}

/// Waits until `GET /redemptions/<id>` shows `state`.
pub(crate) async fn wait_for_state(env: &Env, id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (status, body) = get(env, &format!("/redemptions/{id}")).await;
        if status == 200 && body["state"] == state {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redemption {id} never reached {state}; last seen {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) async fn receipts(env: &Env) -> Vec<Value> {
    let (status, body) = get(env, "/receipts").await;
    assert_eq!(status, 200, "{body}");
    body["receipts"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_then_redeem_burns_and_restores_the_alpaca_position() {
    let env = Env::start().await;
    let receipt_id = mint(&env, "3").await;
    assert_eq!(env.sim.position(env.ap, UNDERLYING), position("997"));

    let id = redeem(&env, shares("1.25")).await;
    let redemption = wait_for_state(&env, &id, "completed").await;

    // On chain: the bot's shares and receipt were burned.
    assert_eq!(env.share_balance(bot(&env)).await, U256::ZERO);
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("1.75"));
    let receipt: u64 = receipt_id.parse().unwrap();
    assert_eq!(
        env.receipt_balance(bot(&env), receipt).await,
        shares("1.75")
    );
    // At Alpaca: the shares went back to the AP, exactly once.
    assert_eq!(env.sim.position(env.ap, UNDERLYING), position("998.25"));
    assert_eq!(env.sim.issuer_position(UNDERLYING), position("1.75"));
    let calls = env.sim.redeem_calls();
    assert_eq!(calls.len(), 1);
    let sent: Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(sent["issuer_request_id"], id.as_str());
    assert_eq!(sent["qty"], "1.25");
    assert_eq!(sent["client_external_account_id"], env.client_id.as_str());
    // The API tells the story.
    assert_eq!(redemption["issuer_request_id"], id.as_str());
    assert_eq!(redemption["client_id"], env.client_id.as_str());
    assert_eq!(redemption["alpaca_qty"], "1.25");
    assert_eq!(redemption["dust"], "0");
    assert_eq!(redemption["burns"][0]["receipt_id"], receipt_id.as_str());
    assert_eq!(redemption["burns"][0]["shares"], shares("1.25").to_string());
    let request_id = redemption["tokenization_request_id"].as_str().unwrap();
    let request = env.sim.request(request_id.parse().unwrap()).unwrap();
    assert_eq!(request.status, RequestStatus::Completed);
    assert!(redemption["burn_tx_hash"].is_string());
    // The inventory followed.
    let held = receipts(&env).await;
    assert_eq!(held[0]["balance"], shares("1.75").to_string());
    assert_eq!(held[0]["reserved"], "0");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dust_below_nine_decimals_is_returned_on_chain() {
    let env = Env::start().await;
    mint(&env, "2").await;
    let dust = U256::from(987_654_321_u64);
    let id = redeem(&env, shares("1.000000001") + dust).await;
    let redemption = wait_for_state(&env, &id, "completed").await;
    assert_eq!(redemption["alpaca_qty"], "1.000000001");
    assert_eq!(redemption["dust"], dust.to_string());
    let sent: Value =
        serde_json::from_str(&env.sim.redeem_calls()[0].body).unwrap();
    assert_eq!(sent["qty"], "1.000000001");
    // The AP got the dust back in the burn transaction.
    assert_eq!(
        env.share_balance(env.ap_wallet).await,
        shares("2") - shares("1.000000001")
    );
    assert_eq!(env.share_balance(bot(&env)).await, U256::ZERO);
    assert_eq!(
        env.sim.position(env.ap, UNDERLYING),
        position("999.000000001")
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_larger_than_any_receipt_burns_two() {
    let env = Env::start().await;
    let first = mint(&env, "1").await;
    let second = mint(&env, "2").await;
    let id = redeem(&env, shares("2.5")).await;
    let redemption = wait_for_state(&env, &id, "completed").await;
    let burns = redemption["burns"].as_array().unwrap();
    assert_eq!(burns.len(), 2, "{redemption}");
    assert_eq!(burns[0]["receipt_id"], second.as_str());
    assert_eq!(burns[0]["shares"], shares("2").to_string());
    assert_eq!(burns[1]["receipt_id"], first.as_str());
    assert_eq!(burns[1]["shares"], shares("0.5").to_string());
    assert_eq!(
        env.receipt_balance(bot(&env), second.parse().unwrap())
            .await,
        U256::ZERO
    );
    assert_eq!(
        env.receipt_balance(bot(&env), first.parse().unwrap()).await,
        shares("0.5")
    );
    assert_eq!(env.share_balance(bot(&env)).await, U256::ZERO);
    assert_eq!(env.sim.position(env.ap, UNDERLYING), position("999.5"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alpaca_rejection_burns_nothing() {
    let env = Env::start().await;
    let receipt_id = mint(&env, "2").await;
    env.sim.inject(Fault::RejectNextRedeem);
    let id = redeem(&env, shares("1")).await;
    let redemption = wait_for_state(&env, &id, "failed").await;
    assert_eq!(
        redemption["failure_reason"],
        "Alpaca rejected the redemption"
    );
    assert_eq!(redemption["burn_tx_hash"], Value::Null);
    // The tokens stay with the bot; the receipt is untouched.
    assert_eq!(env.share_balance(bot(&env)).await, shares("1"));
    assert_eq!(
        env.receipt_balance(bot(&env), receipt_id.parse().unwrap())
            .await,
        shares("2")
    );
    assert_eq!(env.sim.position(env.ap, UNDERLYING), position("998"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_made_while_stopped_is_found_after_restart() {
    let mut env = Env::start().await;
    mint(&env, "2").await;
    env.pause().await;
    let id = redeem(&env, shares("0.5")).await;
    env.resume().await;
    wait_for_state(&env, &id, "completed").await;
    assert_eq!(env.share_balance(bot(&env)).await, U256::ZERO);
    assert_eq!(env.sim.position(env.ap, UNDERLYING), position("998.5"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transfers_in_one_transaction_are_two_redemptions() {
    let env = Env::start().await;
    mint(&env, "3").await;
    let receipt = send(
        &env,
        &env.chain.ap,
        &[(bot(&env), shares("1")), (bot(&env), shares("0.5"))],
    )
    .await;
    let ids = redemption_ids(&receipt, bot(&env));
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        wait_for_state(&env, id, "completed").await;
    }
    assert_eq!(env.share_balance(bot(&env)).await, U256::ZERO);
    assert_eq!(env.sim.position(env.ap, UNDERLYING), position("998.5"));
    assert_eq!(env.sim.redeem_calls().len(), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_sender_is_listed_as_unattributed() {
    let env = Env::start().await;
    mint(&env, "2").await;
    let stranger = env.chain.signer(3).unwrap();
    send(&env, &env.chain.ap, &[(stranger.address(), shares("1"))]).await;
    let receipt = send(&env, &stranger, &[(bot(&env), shares("0.5"))]).await;
    let listed = wait_until(TIMEOUT, || async {
        let (_, body) = get(&env, "/redemptions/unattributed").await;
        !body["transfers"].as_array().unwrap().is_empty()
    })
    .await;
    assert!(listed);
    let (_, body) = get(&env, "/redemptions/unattributed").await;
    let transfer = &body["transfers"][0];
    assert_eq!(
        transfer["tx_hash"],
        format!("{:#x}", receipt.transaction_hash)
    );
    assert_eq!(transfer["amount"], shares("0.5").to_string());
    assert_eq!(
        transfer["from_wallet"].as_str().unwrap().to_lowercase(),
        stranger.address().to_string().to_lowercase()
    );
    // Not a redemption: Alpaca was never called, nothing was burned.
    let id = redemption_ids(&receipt, bot(&env))[0].clone();
    let (status, _) = get(&env, &format!("/redemptions/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(env.sim.redeem_calls().len(), 0);
    assert_eq!(env.share_balance(bot(&env)).await, shares("0.5"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeem_answered_5xx_is_retried_until_accepted() {
    let env = Env::start().await;
    mint(&env, "1").await;
    env.sim.inject(Fault::BrokerStatus {
        endpoint: Endpoint::Redeem,
        status: 503,
        times: 2,
    });
    let id = redeem(&env, shares("1")).await;
    wait_for_state(&env, &id, "completed").await;
    assert!(env.sim.hits(Endpoint::Redeem) >= 3);
    let created = env
        .sim
        .requests()
        .into_iter()
        .filter(|req| req.issuer_request_id.as_deref() == Some(id.as_str()))
        .count();
    assert_eq!(created, 1);
    assert_eq!(env.sim.position(env.ap, UNDERLYING), position("1000"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_duplicate_is_resolved_by_lookup() {
    let mut env = Env::start().await;
    mint(&env, "1").await;
    env.pause().await;
    let id = redeem(&env, shares("1")).await;
    // Someone (an earlier run whose answer was lost with its idempotency
    // record) already created the request under our id.
    let sim_config = env.sim.config();
    let mut other = AlpacaConfig::new(
        env.sim.base_url(),
        env.sim.issuer_account_id(),
        sim_config.broker_key_id.clone(),
        SecretString::from(sim_config.broker_secret.clone()),
    );
    other.idempotency_namespace = Some(uuid::Uuid::from_u128(42));
    let (hash, _) = id.split_once('-').unwrap();
    let existing = AlpacaClient::new(&other)
        .unwrap()
        .redeem(&RedeemRequest {
            issuer_request_id: id.clone(),
            underlying_symbol: UNDERLYING.into(),
            token_symbol: "tAAPL".into(),
            ap: ApRef::External(env.client_id.clone()),
            qty: AlpacaQuantity::parse("1").unwrap(),
            network: "base".into(),
            wallet_address: env.ap_wallet,
            tx_hash: hash.parse().unwrap(),
        })
        .await
        .unwrap();
    env.resume().await;
    let redemption = wait_for_state(&env, &id, "completed").await;
    assert_eq!(
        redemption["tokenization_request_id"],
        existing.tokenization_request_id.as_str()
    );
    let created = env
        .sim
        .requests()
        .into_iter()
        .filter(|req| req.issuer_request_id.as_deref() == Some(id.as_str()))
        .count();
    assert_eq!(created, 1);
    assert_eq!(env.sim.position(env.ap, UNDERLYING), position("1000"));
    env.stop().await;
}
