//! A node that lies, lags or hangs (a fault-injecting JSON-RPC proxy
//! between the service and anvil). The rules under test: missing evidence
//! is never evidence of absence (no second mint or burn), and no hung call
//! stalls other flows or shutdown.

use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::Provider as _;
use rpc_fault_proxy::{Fault, Match, Rule};
use serde_json::{Value, json};

use crate::harness::{Env, Options, TIMEOUT, wait_until};
use crate::redemption::{bot, mint, receipts, redeem, shares, wait_for_state};

/// The service behind the proxy, with the given extra `[chain]` lines.
async fn env_behind_proxy(chain_toml: &'static str) -> Env {
    Env::start_opts(Options {
        rpc_proxy: true,
        chain_toml,
        ..Options::default()
    })
    .await
}

/// The node denies every transaction: `null` receipts and `null` for the
/// transaction itself, however mined it is.
fn deny_every_transaction(env: &Env) -> Vec<rpc_fault_proxy::RuleId> {
    let faults = env.faults();
    vec![
        faults.add(Rule::new("eth_getTransactionReceipt", Fault::NullResult)),
        faults.add(Rule::new("eth_getTransactionByHash", Fault::NullResult)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mined_mint_the_node_denies_is_recorded_once_and_never_resent() {
    let env = env_behind_proxy("").await;
    let nonce = env.bot_nonce().await;
    let denials = deny_every_transaction(&env);

    let outcome = env.request_mint("6.88").await;
    let issuer_request_id = outcome.issuer_request_id.clone().unwrap();
    let mint = env.wait_for_status(&issuer_request_id, "completed").await;

    // The node really did deny it.
    let faults = env.faults();
    assert!(faults.hits(denials[0]) > 0 && faults.hits(denials[1]) > 0);
    // Exactly one deposit, from the first and only attempt.
    let deposits = env.deposit_tx_hashes().await;
    assert_eq!(deposits.len(), 1, "{deposits:?}");
    assert_eq!(mint["tx_attempt"], 1);
    assert_eq!(mint["tx_hash"], format!("{:#x}", deposits[0]));
    assert_eq!(
        env.bot_nonce().await,
        nonce + 1,
        "a second transaction was sent"
    );
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("6.88"));
    // Alpaca was told the landed transaction.
    let callbacks = env.sim.mint_callbacks(outcome.tokenization_request_id);
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert_eq!(callbacks[0]["tx_hash"], mint["tx_hash"]);
    // The receipt is in the inventory.
    let held = receipts(&env).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["receipt_id"], "1");
    assert_eq!(held[0]["balance"], shares("6.88").to_string());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mined_burn_the_node_denies_is_recorded_once_and_never_resent() {
    let env = env_behind_proxy("").await;
    let _receipt = mint(&env, "5").await;
    let mint_nonce = env.bot_nonce().await;
    let denials = deny_every_transaction(&env);

    let id = redeem(&env, shares("2")).await;
    let redemption = wait_for_state(&env, &id, "completed").await;

    let faults = env.faults();
    assert!(faults.hits(denials[0]) > 0 && faults.hits(denials[1]) > 0);
    // One burn transaction, one Withdraw, and it is the recorded one.
    let withdrawals = env.withdraw_tx_hashes().await;
    assert_eq!(withdrawals.len(), 1, "{withdrawals:?}");
    assert_eq!(redemption["burn_tx_hash"], format!("{:#x}", withdrawals[0]));
    assert_eq!(
        redemption["superseded_burn_tx_hashes"],
        Value::Array(Vec::new())
    );
    assert_eq!(env.bot_nonce().await, mint_nonce + 1);
    // Exactly 2 burned: the bot holds nothing, the AP kept 3.
    assert_eq!(env.share_balance(bot(&env)).await, U256::ZERO);
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("3"));
    assert_eq!(env.sim.redeem_calls().len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_delays_a_mint_but_never_doubles_it() {
    let env = env_behind_proxy("").await;
    let nonce = env.bot_nonce().await;
    let faults = env.faults();
    // This backend is 3 blocks behind: the deposit is not yet in its
    // view, so it must be waited for, not resent.
    let lag = faults.add(Rule::new("eth_blockNumber", Fault::LagBlocks(3)));
    let outcome = env.request_mint("2").await;
    let issuer_request_id = outcome.issuer_request_id.clone().unwrap();
    assert!(
        wait_until(TIMEOUT, || async {
            env.deposit_tx_hashes().await.len() == 1
        })
        .await,
        "the deposit never landed"
    );
    // Let the driver look at it several times through the lagging node.
    let seen = faults.hits(lag);
    assert!(
        wait_until(TIMEOUT, || async { faults.hits(lag) >= seen + 20 }).await
    );
    let (_, mint) = env.get_mint(&issuer_request_id).await;
    assert_eq!(mint["status"], "mint_intended", "{mint}");
    assert_eq!(
        env.bot_nonce().await,
        nonce + 1,
        "a second transaction was sent"
    );

    // The backend catches up: the mint completes with its one deposit.
    faults.remove(lag);
    let mint = env.wait_for_status(&issuer_request_id, "completed").await;
    let deposits = env.deposit_tx_hashes().await;
    assert_eq!(deposits.len(), 1, "{deposits:?}");
    assert_eq!(mint["tx_hash"], format!("{:#x}", deposits[0]));
    assert_eq!(mint["tx_attempt"], 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_receipt_call_is_reported_and_other_mints_still_complete() {
    // RPC calls time out after 300 ms; steps are cut after 2 s.
    let env =
        env_behind_proxy("rpc_timeout_ms = 300\nstep_timeout_ms = 2000").await;
    let nonce = env.bot_nonce().await;
    let faults = env.faults();
    let all_hang =
        faults.add(Rule::new("eth_getTransactionReceipt", Fault::Hang));
    let stuck = env.request_mint("1").await;
    let stuck_id = stuck.issuer_request_id.clone().unwrap();
    // The hung call is reported on the mint, not silently waited on.
    assert!(
        wait_until(TIMEOUT, || async {
            let (_, mint) = env.get_mint(&stuck_id).await;
            mint["last_error"]["last_error"]
                .as_str()
                .is_some_and(|error| {
                    error.contains("eth_getTransactionReceipt")
                })
        })
        .await,
        "the hung receipt call was never reported"
    );
    let (_, mint) = env.get_mint(&stuck_id).await;
    let hash = mint["tx_hash"].as_str().unwrap().to_owned();
    // Only this mint's receipt stays hung; others go through.
    faults.add(
        Rule::new("eth_getTransactionReceipt", Fault::Hang)
            .matching(Match::FirstParam(hash.clone())),
    );
    faults.remove(all_hang);
    let mut others = Vec::new();
    for qty in ["2", "3", "4"] {
        others.push(env.request_mint(qty).await);
    }
    for other in &others {
        let id = other.issuer_request_id.clone().unwrap();
        env.wait_for_status(&id, "completed").await;
    }
    let (_, mint) = env.get_mint(&stuck_id).await;
    assert_eq!(mint["status"], "mint_intended", "{mint}");
    assert!(
        mint["last_error"]["failures"].as_u64().unwrap() >= 1,
        "{mint}"
    );

    // The node answers again: the stuck mint completes, once.
    faults.clear();
    let mint = env.wait_for_status(&stuck_id, "completed").await;
    assert_eq!(mint["last_error"], Value::Null);
    assert_eq!(mint["tx_hash"].as_str(), Some(hash.as_str()));
    assert_eq!(env.deposit_tx_hashes().await.len(), 4);
    assert_eq!(env.bot_nonce().await, nonce + 4);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_deadline_is_cancelled_and_reported() {
    // The RPC timeout is long; the step deadline cuts the hung call.
    let env =
        env_behind_proxy("rpc_timeout_ms = 60000\nstep_timeout_ms = 500").await;
    let faults = env.faults();
    faults.add(Rule::new("eth_getTransactionReceipt", Fault::Hang));
    let outcome = env.request_mint("1").await;
    let id = outcome.issuer_request_id.clone().unwrap();
    assert!(
        wait_until(TIMEOUT, || async {
            let (_, mint) = env.get_mint(&id).await;
            mint["last_error"]["last_error"]
                .as_str()
                .is_some_and(|error| {
                    error.contains("step cancelled after 500 ms")
                })
        })
        .await,
        "the cancelled step was never reported"
    );
    faults.clear();
    env.wait_for_status(&id, "completed").await;
    assert_eq!(env.deposit_tx_hashes().await.len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_log_scan_holds_neither_mints_nor_shutdown_nor_the_lease() {
    // Nothing times out on its own here: only shutdown can cut the scan.
    let mut env =
        env_behind_proxy("rpc_timeout_ms = 600000\nstep_timeout_ms = 600000")
            .await;
    let faults = env.faults();
    let hang = faults.add(Rule::new("eth_getLogs", Fault::Hang));
    // A new block gives the monitor a range to scan.
    env.chain
        .provider()
        .raw_request::<_, serde_json::Value>("evm_mine".into(), json!([]))
        .await
        .unwrap();
    assert!(
        wait_until(TIMEOUT, || async { faults.hits(hang) >= 1 }).await,
        "the monitor never scanned"
    );
    // Mints do not need the log scan: they still complete.
    let outcome = env.request_mint("1").await;
    env.wait_for_status(&outcome.issuer_request_id.unwrap(), "completed")
        .await;
    let started = tokio::time::Instant::now();
    env.pause().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    // The lock was released: a successor starts at once and serves.
    faults.clear();
    env.resume().await;
    let (status, body) = env.get("/health").await;
    assert_eq!(status, 200, "{body}");
    env.stop().await;
}
