//! Operator actions end to end: the service, anvil and the simulator.

use alloy::primitives::Bytes;
use chrono::Utc;
use issuance_bot::chain::{ReceiptInformation, ReceiptOp, SHARE_RATIO};
use issuance_bot::quantity::Quantity;
use rpc_fault_proxy::{Fault, Rule};
use serde_json::json;

use crate::harness::{Env, Options};
use crate::redemption::{
    bot, mint, redeem, redemption_ids, send, shares, wait_for_state,
};

/// A mint's deposit done by hand (an operator with the wallet's key)
/// while the node refused the service's own transaction: the chain has
/// the deposit, from a transaction that is none of the mint's attempts,
/// so the mint stops for an operator. Retrying must record that deposit
/// and never mint again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_records_a_deposit_made_by_hand_and_never_mints_again() {
    let env = Env::start_opts(Options {
        rpc_proxy: true,
        ..Options::default()
    })
    .await;
    let faults = env.faults();
    faults.add(Rule::new(
        "eth_sendRawTransaction",
        Fault::Error {
            code: -32000,
            message: "backend unavailable".into(),
        },
    ));
    let outcome = env.request_mint("3").await;
    let issuer_request_id = outcome.issuer_request_id.clone().unwrap();
    let intended = env
        .wait_for_status(&issuer_request_id, "mint_intended")
        .await;
    let nonce = env.bot_nonce().await;
    assert_eq!(intended["tx_nonce"], nonce, "{intended}");

    // The operator's hand mint takes that nonce.
    let info = ReceiptInformation::new(
        ReceiptOp::Mint,
        outcome.tokenization_request_id.to_string(),
        issuer_request_id.clone(),
        "AAPL".into(),
        Quantity::parse("3").unwrap(),
        Utc::now(),
    )
    .unwrap();
    let vault = env.chain.vault_as(&env.chain.bot);
    let deposit = vault
        .deposit(
            shares("3"),
            env.chain.bot.address(),
            SHARE_RATIO,
            info.encode(),
        )
        .calldata()
        .clone();
    let transfer = vault
        .transfer(env.ap_wallet, shares("3"))
        .calldata()
        .clone();
    let by_hand = vault
        .multicall(vec![deposit, transfer])
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(by_hand.status());

    let failed = env.wait_for_status(&issuer_request_id, "failed").await;
    assert_eq!(
        failed["failure"]["classification"], "landed_outside_attempts",
        "{failed}"
    );
    let (status, stuck) = env.get("/admin/stuck").await;
    assert_eq!(status, 200, "{stuck}");
    assert_eq!(stuck["mints"][0]["issuer_request_id"], issuer_request_id);
    assert_eq!(stuck["mints"][0]["state"], "failed");

    // Closing needs the transaction echoed.
    let (status, answer) = env
        .post_internal(
            &format!("/admin/mints/{issuer_request_id}/close"),
            &json!({"reason": "looking"}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("echo it"),
        "{answer}"
    );

    let nonce_before = env.bot_nonce().await;
    let retry = format!("/admin/mints/{issuer_request_id}/retry");
    let reason =
        json!({"reason": "deposit made by hand during an RPC incident"});
    let (status, answer) = env.post_internal(&retry, &reason).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["action"], "recovered");
    let by_hand_hash = format!("{:#x}", by_hand.transaction_hash);
    assert_eq!(answer["mint"]["tx_hash"], by_hand_hash);

    let completed = env.wait_for_status(&issuer_request_id, "completed").await;
    assert_eq!(completed["tx_hash"], by_hand_hash);
    let callbacks = env.sim.mint_callbacks(outcome.tokenization_request_id);
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert_eq!(callbacks[0]["tx_hash"], by_hand_hash);
    // A repeat answers the same and sends nothing.
    let (status, again) = env.post_internal(&retry, &reason).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["action"], "recovered");
    // Exactly one deposit, the hand one; the service sent nothing more.
    assert_eq!(
        env.deposit_tx_hashes().await,
        vec![by_hand.transaction_hash]
    );
    assert_eq!(env.bot_nonce().await, nonce_before);
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("3"));
    let (status, history) = env
        .get(&format!("/admin/history/mint/{issuer_request_id}"))
        .await;
    assert_eq!(status, 200);
    let types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "MintEvent::Initiated",
            "MintEvent::JournalConfirmed",
            "MintEvent::MintTxIntended",
            "MintEvent::MintFailed",
            "MintEvent::MintRecovered",
            "MintEvent::CallbackDelivered",
        ]
    );
    env.stop().await;
}

/// Tokens minted outside the service (no receipt in its inventory) are
/// redeemed: Alpaca journals, but the burn cannot be covered, so the
/// redemption waits. The operator burns by hand and force-completes with
/// that transaction, which is accepted only once the chain shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burn_done_by_hand_is_force_completed_only_with_chain_proof() {
    let env = Env::start().await;
    let vault = env.chain.vault_as(&env.chain.bot);
    let bot = env.chain.bot.address();
    let deposited = vault
        .deposit(shares("2"), bot, SHARE_RATIO, Bytes::new())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(deposited.status());
    let receipt_id = env.highwater().await;
    let sent = vault
        .transfer(env.ap_wallet, shares("2"))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(sent.status());

    // Alpaca holds the underlying those tokens stand for, so it journals;
    // the service knows no receipt to burn from and holds the burn.
    env.sim.set_issuer_position("AAPL", "2".parse().unwrap());
    let id = redeem(&env, shares("2")).await;
    wait_for_state(&env, &id, "journal_completed").await;
    let (status, stuck) = env.get("/admin/stuck?older_than_secs=0").await;
    assert_eq!(status, 200, "{stuck}");
    assert_eq!(stuck["redemptions"][0]["issuer_request_id"], id, "{stuck}");
    assert_eq!(stuck["redemptions"][0]["state"], "journal_completed");
    let (status, answer) = env
        .post_internal(
            &format!("/admin/redemptions/{id}/retry"),
            &json!({"reason": "burn it"}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("journal_completed"),
        "{answer}"
    );

    // The operator burns by hand from the receipt the service never saw.
    let burned = vault
        .redeem(shares("2"), env.ap_wallet, bot, receipt_id, Bytes::new())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(burned.status());
    let force = format!("/admin/redemptions/{id}/force-complete");
    // The AP's own transfer is no burn of ours.
    let (status, answer) = env
        .post_internal(
            &force,
            &json!({"reason": "burned by hand", "burn_tx": format!("{:#x}", sent.transaction_hash)}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    let body = json!({
        "reason": "burned by hand",
        "burn_tx": format!("{:#x}", burned.transaction_hash),
    });
    for _ in 0..2 {
        let (status, answer) = env.post_internal(&force, &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["action"], "burn_recorded");
        assert_eq!(answer["redemption"]["state"], "completed");
        assert_eq!(
            answer["redemption"]["burn_tx_hash"],
            format!("{:#x}", burned.transaction_hash)
        );
    }
    // Nothing else was burned, and Alpaca accepted one redeem call.
    assert_eq!(
        env.withdraw_tx_hashes().await,
        vec![burned.transaction_hash]
    );
    assert_eq!(env.sim.redeem_calls().len(), 1);
    let (status, answer) = env
        .post_internal(
            &format!("/admin/redemptions/{id}/close"),
            &json!({"reason": "done"}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    env.stop().await;
}

/// A transfer from a wallet no account owns is listed, not redeemed; the
/// operator attributes it to the account it belongs to, and the normal
/// redemption runs. A repeat answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attributed_transfer_is_redeemed_once() {
    let env = Env::start().await;
    mint(&env, "2").await;
    let stranger = env.chain.signer(3).unwrap();
    send(&env, &env.chain.ap, &[(stranger.address(), shares("1"))]).await;
    let receipt = send(&env, &stranger, &[(bot(&env), shares("1"))]).await;
    let id = redemption_ids(&receipt, bot(&env))[0].clone();
    let tx_hash = format!("{:#x}", receipt.transaction_hash);
    let log_index = id.rsplit('-').next().unwrap().to_owned();
    assert!(
        crate::harness::wait_until(crate::harness::TIMEOUT, || async {
            let (_, body) = env.get("/redemptions/unattributed").await;
            !body["transfers"].as_array().unwrap().is_empty()
        })
        .await
    );
    let path = format!("/admin/unattributed/{tx_hash}/{log_index}/attribute");
    let (status, answer) = env
        .post_internal(
            &path,
            &json!({"reason": "AP's second wallet", "client_id": "00000000-0000-0000-0000-000000000001"}),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    let body =
        json!({"reason": "AP's second wallet", "client_id": env.client_id});
    let (status, answer) = env.post_internal(&path, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["action"], "attributed");
    assert_eq!(answer["redemption"]["issuer_request_id"], id);
    let completed = wait_for_state(&env, &id, "completed").await;
    assert_eq!(completed["client_id"], env.client_id);
    let (_, listed) = env.get("/redemptions/unattributed").await;
    assert_eq!(listed["transfers"], json!([]), "{listed}");
    let (status, again) = env.post_internal(&path, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["action"], "attributed");
    assert_eq!(env.sim.redeem_calls().len(), 1);
    assert_eq!(env.withdraw_tx_hashes().await.len(), 1);
    let (_, history) =
        env.get(&format!("/admin/history/redemption/{id}")).await;
    assert_eq!(
        history["events"][0]["event_type"], "RedemptionEvent::Attributed",
        "{history}"
    );
    env.stop().await;
}

/// An unattributed transfer goes back to its sender exactly once. The
/// return's first broadcast fails (its intent is recorded, nothing reached
/// the chain), the service goes down between intent and confirmation, and
/// after the restart the recorded transaction is sent, not a new one.
/// Repeats answer the same; an attribute after it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unattributed_transfer_is_returned_once_across_a_restart() {
    let mut env = Env::start_opts(Options {
        rpc_proxy: true,
        ..Options::default()
    })
    .await;
    mint(&env, "2").await;
    let stranger = env.chain.signer(3).unwrap();
    send(&env, &env.chain.ap, &[(stranger.address(), shares("1"))]).await;
    let receipt = send(&env, &stranger, &[(bot(&env), shares("1"))]).await;
    let id = redemption_ids(&receipt, bot(&env))[0].clone();
    let tx_hash = format!("{:#x}", receipt.transaction_hash);
    let log_index = id.rsplit('-').next().unwrap().to_owned();
    assert!(
        crate::harness::wait_until(crate::harness::TIMEOUT, || async {
            let (_, body) = env.get("/redemptions/unattributed").await;
            !body["transfers"].as_array().unwrap().is_empty()
        })
        .await
    );
    assert!(env.share_balance(stranger.address()).await.is_zero());
    let path = format!("/admin/unattributed/{tx_hash}/{log_index}/return");
    let (status, answer) = env.post_internal(&path, &json!({})).await;
    assert_eq!(status, 422, "{answer}");
    let (status, answer) = env
        .post_internal(
            &format!("/admin/unattributed/{tx_hash}/99/return"),
            &json!({"reason": "no such log"}),
        )
        .await;
    assert_eq!(status, 404, "{answer}");

    let refused = env.faults().add(Rule::new(
        "eth_sendRawTransaction",
        Fault::Error {
            code: -32000,
            message: "backend unavailable".into(),
        },
    ));
    let body = json!({"reason": "sender unknown; asked for it back"});
    let (status, answer) = env.post_internal(&path, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["action"], "return_requested");
    assert_eq!(answer["redemption"]["client_id"], json!(null));
    let returning = wait_for_state(&env, &id, "returning").await;
    let signed = returning["return_tx_hash"].as_str().unwrap().to_owned();
    let (_, listed) = env.get("/redemptions/unattributed").await;
    assert_eq!(listed["transfers"], json!([]), "{listed}");

    // Down between the recorded intent and its confirmation.
    env.pause().await;
    env.faults().remove(refused);
    env.resume().await;
    let returned = wait_for_state(&env, &id, "returned").await;
    assert_eq!(returned["return_tx_hash"], signed, "{returned}");
    assert_eq!(
        returned["return_reason"],
        "sender unknown; asked for it back"
    );

    let (status, again) = env.post_internal(&path, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["action"], "return_requested");
    assert_eq!(again["redemption"]["state"], "returned");
    let (status, other) = env
        .post_internal(&path, &json!({"reason": "a different reason"}))
        .await;
    assert_eq!(status, 409, "{other}");
    assert!(
        other["error"].as_str().unwrap().contains("returned"),
        "{other}"
    );
    let (status, attributed) = env
        .post_internal(
            &format!("/admin/unattributed/{tx_hash}/{log_index}/attribute"),
            &json!({"reason": "too late", "client_id": env.client_id}),
        )
        .await;
    assert_eq!(status, 409, "{attributed}");
    assert!(
        attributed["error"].as_str().unwrap().contains("returned"),
        "{attributed}"
    );

    // One transfer back, the recorded one; nothing was redeemed.
    assert_eq!(
        env.transfers_from_bot_to(stranger.address()).await,
        vec![signed.parse::<alloy::primitives::TxHash>().unwrap()]
    );
    assert_eq!(env.share_balance(stranger.address()).await, shares("1"));
    assert!(env.sim.redeem_calls().is_empty());
    let (_, history) =
        env.get(&format!("/admin/history/redemption/{id}")).await;
    let types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "RedemptionEvent::ReturnRequested",
            "RedemptionEvent::ReturnIntended",
            "RedemptionEvent::Returned",
        ]
    );
    env.stop().await;
}

/// A receipt deposited by hand (no mint of the service recorded it) is
/// found by discovery, added once as an event, listed, and then burned
/// by a normal redemption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_deposited_by_hand_is_discovered_once_and_burned() {
    let env = Env::start().await;
    let minted = mint(&env, "1").await;
    let vault = env.chain.vault_as(&env.chain.bot);
    let deposited = vault
        .deposit(shares("2"), bot(&env), SHARE_RATIO, Bytes::new())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(deposited.status());
    let by_hand = env.highwater().await.to_string();
    let (_, listed) = env.get("/receipts").await;
    let ids = |listed: &serde_json::Value| -> Vec<String> {
        listed["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["receipt_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&listed), std::slice::from_ref(&minted), "{listed}");

    let (status, found) = env
        .post_internal("/admin/receipts/discover", &json!({}))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["seen"], 2, "{found}");
    assert_eq!(found["scanned"][0]["network"], "base", "{found}");
    assert_eq!(found["discovered"][0]["receipt_id"], by_hand, "{found}");
    assert_eq!(found["discovered"][0]["balance"], shares("2").to_string());
    assert_eq!(found["discovered"].as_array().unwrap().len(), 1);
    // Again: nothing is added twice.
    let (status, again) = env
        .post_internal("/admin/receipts/discover", &json!({"from_block": 0}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["discovered"], json!([]), "{again}");
    assert_eq!(again["corrected"], 0, "{again}");
    let (_, listed) = env.get("/receipts").await;
    assert_eq!(ids(&listed), [minted, by_hand.clone()], "{listed}");
    let (status, history) = env
        .get(&format!("/admin/history/receipts/{:#x}", env.vault))
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["events"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(
        history["events"][0]["event_type"],
        "LedgerEvent::ReceiptDiscovered"
    );

    // The hand-minted tokens reach the AP and are redeemed: the burn
    // takes the discovered receipt (the largest available).
    let sent = vault
        .transfer(env.ap_wallet, shares("2"))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(sent.status());
    env.sim.set_issuer_position("AAPL", "3".parse().unwrap());
    let id = redeem(&env, shares("2")).await;
    let completed = wait_for_state(&env, &id, "completed").await;
    assert_eq!(completed["burns"][0]["receipt_id"], by_hand, "{completed}");
    assert!(
        env.receipt_balance(bot(&env), by_hand.parse().unwrap())
            .await
            .is_zero()
    );
    env.stop().await;
}
