//! A per-asset freeze end to end: new mints refused with the reference
//! issuer's string, a redemption transfer detected but held (no redeem
//! call to Alpaca, no burn) until the operator unfreezes.

use std::time::Duration;

use alloy::primitives::U256;
use serde_json::{Value, json};

use crate::harness::{Env, TIMEOUT, UNDERLYING};
use crate::redemption::{bot, mint, redeem, shares, wait_for_state};

const FROZEN: &str = "Asset Frozen: Minting is suspended for this asset";

/// Waits until the redemption is `detected` with the driver reporting
/// the freeze as its `last_error`.
async fn wait_until_held(env: &Env, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (status, body) = env.get(&format!("/redemptions/{id}")).await;
        let reported = body["last_error"]["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("asset frozen: 2-for-1 split"));
        if status == 200 && body["state"] == "detected" && reported {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redemption {id} never reported the freeze; last seen {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_refuses_mints_and_holds_redemptions_until_unfrozen() {
    let env = Env::start().await;
    mint(&env, "3").await;

    let (status, frozen) = env
        .post_internal(
            &format!("/tokenized-assets/{UNDERLYING}/freeze"),
            &json!({"reason": "2-for-1 split"}),
        )
        .await;
    assert_eq!(status, 200, "{frozen}");
    assert_eq!(frozen["assets"][0]["frozen"], true);
    let (_, tokens) = env.get_alpaca("/tokenization/tokens").await;
    assert_eq!(
        tokens["tokens"][0]["frozen_networks"],
        json!([frozen["assets"][0]["network"]])
    );

    // Alpaca's mint request is refused with the exact string.
    let refused = env
        .sim
        .request_mint(env.ap, env.mint_spec("1"))
        .await
        .unwrap();
    assert_eq!(refused.issuer_response_status, 400, "{refused:?}");
    assert_eq!(refused.issuer_body, json!({"error": FROZEN}));
    assert_eq!(refused.issuer_request_id, None);

    // A redemption transfer is recorded and held, and says why.
    let id = redeem(&env, shares("1")).await;
    let held = wait_until_held(&env, &id).await;
    assert_eq!(held["tokenization_request_id"], Value::Null);
    let (status, stuck) = env.get("/admin/stuck?older_than_secs=0").await;
    assert_eq!(status, 200, "{stuck}");
    let listed = stuck["redemptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|redemption| redemption["issuer_request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {stuck}"));
    assert!(
        listed["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("asset frozen")),
        "{listed}"
    );
    // The hold was reported by a step that stopped before the call.
    assert!(env.sim.redeem_calls().is_empty());
    assert_eq!(env.share_balance(bot(&env)).await, shares("1"));

    let (status, unfrozen) = env
        .post_internal(
            &format!("/tokenized-assets/{UNDERLYING}/unfreeze"),
            &json!({"reason": "split done"}),
        )
        .await;
    assert_eq!(status, 200, "{unfrozen}");
    assert_eq!(unfrozen["assets"][0]["frozen"], false);

    let completed = wait_for_state(&env, &id, "completed").await;
    assert_eq!(completed["last_error"], Value::Null);
    assert_eq!(env.sim.redeem_calls().len(), 1);
    assert_eq!(env.share_balance(bot(&env)).await, U256::ZERO);
    env.stop().await;
}
