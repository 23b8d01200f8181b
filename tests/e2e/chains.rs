//! Two chains in one process (`[chains.base]`, `[chains.ethereum]`): mints
//! are routed by their request's network, each chain redeems what its own
//! monitor found, and one chain's RPC going down holds nothing on the
//! other; the stopped chain catches up when its RPC returns.

use alloy::primitives::{Address, U256};
use serde_json::{Value, json};

use crate::harness::{
    Env, NETWORK, Options, SECOND_NETWORK, SecondChain, TIMEOUT, UNDERLYING,
    wait_until,
};
use crate::redemption::{
    position, redeem, redemption_ids, shares, wait_for_state,
};

async fn two_chains() -> Env {
    Env::start_opts(Options {
        second_chain: true,
        ..Options::default()
    })
    .await
}

fn second(env: &Env) -> &SecondChain {
    env.second.as_ref().unwrap()
}

async fn shares_on_second(env: &Env, owner: Address) -> U256 {
    second(env).chain.share_balance(owner).await.unwrap()
}

/// A completed mint of `qty` on `network`; returns the mint.
async fn mint_on(env: &Env, network: &str, qty: &str) -> Value {
    let outcome = env.request_mint_on(network, qty).await;
    env.wait_for_status(&outcome.issuer_request_id.unwrap(), "completed")
        .await
}

/// The AP sends `amount` to the issuer wallet on the second chain;
/// returns the redemption id.
async fn redeem_on_second(env: &Env, amount: U256) -> String {
    let chain = &second(env).chain;
    let bot = chain.bot.address();
    let receipt = chain
        .vault_as(&chain.ap)
        .transfer(bot, amount)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "transfer reverted");
    let ids = redemption_ids(&receipt, bot);
    assert_eq!(ids.len(), 1);
    ids[0].clone()
}

async fn readiness(env: &Env) -> (u16, Value) {
    env.get("/ready").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mints_on_two_chains_each_land_on_their_own() {
    let env = two_chains().await;
    // Two mints per chain, all requested at once.
    let (base_a, base_b, eth_a, eth_b) = tokio::join!(
        env.request_mint_on(NETWORK, "1"),
        env.request_mint_on(NETWORK, "2"),
        env.request_mint_on(SECOND_NETWORK, "3"),
        env.request_mint_on(SECOND_NETWORK, "4"),
    );
    let mut by_network = Vec::new();
    for (outcome, network) in [
        (base_a, NETWORK),
        (base_b, NETWORK),
        (eth_a, SECOND_NETWORK),
        (eth_b, SECOND_NETWORK),
    ] {
        let mint = env
            .wait_for_status(&outcome.issuer_request_id.unwrap(), "completed")
            .await;
        assert_eq!(mint["network"], network, "{mint}");
        by_network.push((network, mint));
    }
    // Each mint went to its network's vault on its chain.
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("3"));
    assert_eq!(shares_on_second(&env, env.ap_wallet).await, shares("7"));
    for (network, mint) in &by_network {
        let vault = if *network == NETWORK {
            env.vault
        } else {
            second(&env).vault
        };
        assert_eq!(
            mint["vault"].as_str().unwrap().to_lowercase(),
            vault.to_string().to_lowercase(),
            "{mint}"
        );
    }
    // The same key signs on both chains (one nonce sequence each): two
    // deposits on base, none repeated.
    assert_eq!(env.deposit_logs().await, 2);
    // Both chains are readiness checks.
    let (status, ready) = readiness(&env).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["chain:base"], "ok", "{ready}");
    assert_eq!(ready["checks"]["chain:ethereum"], "ok", "{ready}");
    // The token list names both networks.
    let (status, list) = env.get_alpaca("/tokenized-assets").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tokens"][0]["networks"], json!(["base", "ethereum"]));
    // A redemption on the second chain burns there, not on base.
    let id = redeem_on_second(&env, shares("1.5")).await;
    let redemption = wait_for_state(&env, &id, "completed").await;
    assert_eq!(redemption["network"], SECOND_NETWORK, "{redemption}");
    assert_eq!(shares_on_second(&env, env.ap_wallet).await, shares("5.5"));
    assert_eq!(
        shares_on_second(&env, second(&env).chain.bot.address()).await,
        U256::ZERO
    );
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("3"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_without_a_chain_is_not_available() {
    let env = two_chains().await;
    // Listed on arbitrum, but no chain serves it.
    let (status, body) = env
        .post_internal(
            "/tokenized-assets",
            &json!({
                "underlying": UNDERLYING,
                "token": "tAAPL",
                "network": "arbitrum",
                "vault": "0x000000000000000000000000000000000000dEaD",
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let outcome = env
        .sim
        .request_mint(env.ap, {
            let mut spec = env.mint_spec("1");
            spec.network = "arbitrum".into();
            spec
        })
        .await
        .unwrap();
    assert_eq!(outcome.issuer_response_status, 400, "{outcome:?}");
    assert_eq!(
        outcome.issuer_body["error"],
        "Invalid Token: Token not available on the network"
    );
    env.stop().await;
}

/// The sum of `family`'s series whose labels include `label`.
async fn metric_sum(env: &Env, family: &str, label: &str) -> f64 {
    let url = env.metrics_url().unwrap();
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{family}{{")) && line.contains(label)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chain_down_holds_nothing_on_the_other_and_catches_up() {
    let env = Env::start_opts(Options {
        second_chain: true,
        metrics: true,
        ..Options::default()
    })
    .await;
    // Shares on ethereum to redeem later.
    mint_on(&env, SECOND_NETWORK, "5").await;

    let faults = second(&env).proxy.faults();
    faults.set_unreachable(true);
    // The ethereum readiness check fails; base's does not.
    assert!(
        wait_until(TIMEOUT, || async {
            let (_, ready) = readiness(&env).await;
            ready["checks"]["chain:ethereum"] == "failing"
        })
        .await
    );
    let (status, ready) = readiness(&env).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["chain:base"], "ok", "{ready}");

    // A mint on ethereum waits, with the RPC failure as its last error.
    let stuck = env.request_mint_on(SECOND_NETWORK, "2").await;
    let stuck_id = stuck.issuer_request_id.unwrap();
    assert!(
        wait_until(TIMEOUT, || async {
            let (_, mint) = env.get_mint(&stuck_id).await;
            mint["last_error"]["last_error"].is_string()
        })
        .await,
        "the ethereum mint never reported its RPC failure"
    );
    // The RPC errors are counted under ethereum.
    assert!(
        metric_sum(&env, "chain_rpc_errors_total", "network=\"ethereum\"")
            .await
            > 0.0
    );
    // A transfer on ethereum while its RPC is down (made directly on
    // the node): nothing can see it yet.
    let held = redeem_on_second(&env, shares("1")).await;

    // Meanwhile base mints and redeems as usual.
    mint_on(&env, NETWORK, "3").await;
    let id = redeem(&env, shares("1.25")).await;
    wait_for_state(&env, &id, "completed").await;
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("1.75"));
    // The ethereum mint is still waiting for its chain.
    let (_, mint) = env.get_mint(&stuck_id).await;
    assert_eq!(mint["status"], "journal_confirmed", "{mint}");

    // The RPC returns: the mint lands, the transfer is found and redeemed.
    faults.set_unreachable(false);
    env.wait_for_status(&stuck_id, "completed").await;
    wait_for_state(&env, &held, "completed").await;
    assert_eq!(shares_on_second(&env, env.ap_wallet).await, shares("6"));
    assert_eq!(
        env.sim.position(env.ap, UNDERLYING),
        position("990") + position("1.25") + position("1")
    );
    let (status, ready) = readiness(&env).await;
    assert_eq!(status, 200, "{ready}");
    env.stop().await;
}
