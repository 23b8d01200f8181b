//! Mints end to end: Alpaca (the simulator) asks, confirms and receives
//! the callback; the service mints on the real vault.

use alloy::primitives::U256;
use itn_sim::{Endpoint, Fault, RequestStatus};
use serde_json::{Value, json};

use crate::harness::{Env, TIMEOUT, wait_until};

fn shares(qty: &str) -> U256 {
    issuance_bot::quantity::Quantity::parse(qty)
        .unwrap()
        .to_shares()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_mint_delivers_shares_and_calls_back_once() {
    let env = Env::start().await;
    let outcome = env.request_mint("1.5").await;
    let issuer_request_id = outcome.issuer_request_id.clone().unwrap();
    let id = outcome.tokenization_request_id;

    let mint = env.wait_for_status(&issuer_request_id, "completed").await;
    // The AP wallet holds the shares, the bot holds receipt 1.
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("1.5"));
    assert_eq!(
        env.receipt_balance(env.chain.bot.address(), 1).await,
        shares("1.5")
    );
    assert_eq!(env.highwater().await, U256::from(1));
    assert_eq!(mint["receipt_id"], "1");
    assert_eq!(mint["shares"], shares("1.5").to_string());
    assert_eq!(mint["tx_attempt"], 1);
    assert_eq!(mint["last_error"], Value::Null);

    // Alpaca got exactly one callback, naming the real transaction.
    let callbacks = env.sim.mint_callbacks(id);
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    let callback = &callbacks[0];
    assert_eq!(callback["tx_hash"], mint["tx_hash"]);
    assert_eq!(callback["tokenization_request_id"], id.to_string());
    // The oldest wire sent us `client_id`; Alpaca removed that alias on
    // 2026-10-15, so the callback names the AP by its current field.
    assert_eq!(
        callback["client_external_account_id"],
        env.client_id.as_str()
    );
    assert!(callback.get("client_id").is_none(), "{callback}");
    assert!(callback.get("client_account_id").is_none(), "{callback}");
    assert_eq!(callback["network"], "base");
    assert_eq!(
        callback["wallet_address"].as_str().unwrap().to_lowercase(),
        env.ap_wallet.to_string().to_lowercase()
    );
    let request = env.sim.request(id).unwrap();
    assert_eq!(request.status, RequestStatus::Completed);
    assert_eq!(request.tx_hash.as_deref(), mint["tx_hash"].as_str());
    assert_eq!(env.sim.hits(Endpoint::MintCallback), 1);
    // Readiness includes the chain.
    let (status, ready) = env.get("/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready.to_string().contains("chain:base"), "{ready}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_journal_mints_nothing() {
    let env = Env::start().await;
    env.sim.inject(Fault::RejectNextMint);
    let outcome = env.request_mint("2").await;
    let issuer_request_id = outcome.issuer_request_id.unwrap();
    let mint = env
        .wait_for_status(&issuer_request_id, "journal_rejected")
        .await;
    assert_eq!(mint["tx_hash"], Value::Null);
    // Give a driver that wrongly picked it up time to act: the next
    // (confirmed) mint must get receipt 1.
    let second = env.request_mint("3").await;
    env.wait_for_status(&second.issuer_request_id.unwrap(), "completed")
        .await;
    assert_eq!(env.highwater().await, U256::from(1));
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("3"));
    assert!(
        env.sim
            .mint_callbacks(outcome.tokenization_request_id)
            .is_empty()
    );
    let (_, mint) = env.get_mint(&issuer_request_id).await;
    assert_eq!(mint["status"], "journal_rejected");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_mint_requests_get_the_same_id_or_409() {
    let env = Env::start().await;
    env.sim.inject(Fault::DuplicateMintRequest { times: 2 });
    let outcome = env.request_mint("4").await;
    let issuer_request_id = outcome.issuer_request_id.clone().unwrap();
    let sent = env.sim.requests_to(Endpoint::IssuerMint);
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|request| request.body == sent[0].body));
    // The same body again, as Alpaca retrying would send it.
    let (status, body) = env
        .post_alpaca_raw("/inkind/issuance", sent[0].body.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issuer_request_id"], issuer_request_id.as_str());
    assert_eq!(body["status"], "created");
    // Same id, different content.
    let mut changed: Value = serde_json::from_str(&sent[0].body).unwrap();
    changed["qty"] = json!("5");
    let (status, body) = env.post_alpaca("/inkind/issuance", &changed).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"],
        "tokenization_request_id already used with different content"
    );
    env.wait_for_status(&issuer_request_id, "completed").await;
    assert_eq!(env.highwater().await, U256::from(1));
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("4"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_concurrent_confirmations_mint_once() {
    let env = Env::start().await;
    env.sim.inject(Fault::DuplicateConfirm { times: 3 });
    let outcome = env.request_mint("2.25").await;
    let issuer_request_id = outcome.issuer_request_id.clone().unwrap();
    let id = outcome.tokenization_request_id;
    // Wait for Alpaca's first confirmation, then fire our own copies of
    // it concurrently while the driver works.
    assert!(
        wait_until(TIMEOUT, || async {
            !env.sim.requests_to(Endpoint::IssuerConfirm).is_empty()
        })
        .await
    );
    let body = env.sim.requests_to(Endpoint::IssuerConfirm)[0].body.clone();
    let copies = (0..6)
        .map(|_| env.post_alpaca_raw("/inkind/issuance/confirm", body.clone()));
    for (status, answer) in futures::future::join_all(copies).await {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "journal_confirmed");
        assert_eq!(answer["issuer_request_id"], issuer_request_id.as_str());
    }
    env.wait_for_status(&issuer_request_id, "completed").await;
    // Alpaca's own deliveries (1 + 3 duplicates) all got 200.
    assert!(
        wait_until(TIMEOUT, || async {
            env.sim.confirm_deliveries(id).len() == 4
        })
        .await
    );
    for delivery in env.sim.confirm_deliveries(id) {
        assert_eq!(
            delivery.outcome,
            itn_sim::DeliveryOutcome::Answered { status: 200 }
        );
    }
    assert_eq!(env.highwater().await, U256::from(1));
    assert_eq!(env.deposit_logs().await, 1);
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("2.25"));
    assert_eq!(env.sim.mint_callbacks(id).len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_answered_5xx_is_retried_until_200() {
    let env = Env::start().await;
    env.sim.inject(Fault::BrokerStatus {
        endpoint: Endpoint::MintCallback,
        status: 503,
        times: 2,
    });
    let outcome = env.request_mint("1").await;
    let issuer_request_id = outcome.issuer_request_id.unwrap();
    env.wait_for_status(&issuer_request_id, "completed").await;
    assert_eq!(env.sim.hits(Endpoint::MintCallback), 3);
    assert_eq!(
        env.sim
            .mint_callbacks(outcome.tokenization_request_id)
            .len(),
        1
    );
    assert_eq!(
        env.sim
            .request(outcome.tokenization_request_id)
            .unwrap()
            .status,
        RequestStatus::Completed
    );
    // Nothing more is sent once Alpaca has accepted it: by the time a
    // later mint has completed, the driver has passed over this one again.
    let later = env.request_mint("2").await;
    env.wait_for_status(&later.issuer_request_id.unwrap(), "completed")
        .await;
    assert_eq!(env.sim.hits(Endpoint::MintCallback), 4);
    assert_eq!(
        env.sim
            .mint_callbacks(outcome.tokenization_request_id)
            .len(),
        1
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_mint_requests_get_alpacas_400_strings() {
    let env = Env::start().await;
    let valid = json!({
        "tokenization_request_id": "5b4f0fba-0c6e-4a5a-9a51-2f1c34a3f2f1",
        "qty": "1",
        "underlying_symbol": "AAPL",
        "token_symbol": "tAAPL",
        "network": "base",
        "client_id": env.client_id,
        "wallet_address": env.ap_wallet.to_string(),
    });
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let payload = "Failed Validation: Invalid data payload";
    let token = "Invalid Token: Token not available on the network";
    let eligibility = "Insufficient Eligibility: Client not eligible";
    let wallet = "Invalid Wallet: Wallet does not belong to client";
    let cases = [
        (with("qty", json!("0")), payload),
        (with("qty", json!("1.0000000001")), payload),
        (with("network", json!("polygon")), payload),
        (with("wallet_address", json!("nope")), payload),
        (with("underlying_symbol", json!("MSFT")), token),
        (with("token_symbol", json!("xAAPL")), token),
        (with("network", json!("solana")), token),
        (
            with("client_id", json!("9b2d3c4e-0000-4000-8000-000000000000")),
            eligibility,
        ),
        (
            with(
                "wallet_address",
                json!(env.chain.signer(2).unwrap().address().to_string()),
            ),
            wallet,
        ),
    ];
    for (body, expected) in cases {
        for path in ["/inkind/issuance", "/tokenization/mint"] {
            let (status, answer) = env.post_alpaca(path, &body).await;
            assert_eq!(status, 400, "{path} {body}: {answer}");
            assert_eq!(answer["error"], expected, "{path} {body}");
        }
    }
    let (status, answer) = env
        .post_alpaca_raw("/inkind/issuance", "{not json".into())
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], payload);
    // Nothing was created: the valid request is still new.
    let (status, answer) = env.post_alpaca("/inkind/issuance", &valid).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["issuer_request_id"].as_str().map(str::len), Some(36));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_callback_survives_a_restart_and_is_sent_once() {
    let mut env = Env::start().await;
    // Alpaca refuses the callback for now (a final 4xx: possibly applied
    // inside Alpaca, so the mint stays pending and shows why).
    env.sim.inject(Fault::BrokerStatus {
        endpoint: Endpoint::MintCallback,
        status: 400,
        times: 1_000,
    });
    let outcome = env.request_mint("7").await;
    let issuer_request_id = outcome.issuer_request_id.unwrap();
    assert!(
        wait_until(TIMEOUT, || async {
            let (_, mint) = env.get_mint(&issuer_request_id).await;
            mint["status"] == "minted" && mint["last_error"].is_object()
        })
        .await
    );
    let (_, mint) = env.get_mint(&issuer_request_id).await;
    let error = mint["last_error"]["last_error"].as_str().unwrap();
    assert!(error.contains("400"), "{error}");
    assert!(
        env.sim
            .mint_callbacks(outcome.tokenization_request_id)
            .is_empty()
    );

    env.sim.clear_faults();
    env.restart().await;
    // The new process picks the unfinished mint up at startup.
    let mint = env.wait_for_status(&issuer_request_id, "completed").await;
    assert_eq!(mint["last_error"], Value::Null);
    let callbacks = env.sim.mint_callbacks(outcome.tokenization_request_id);
    assert_eq!(callbacks.len(), 1);
    assert_eq!(callbacks[0]["tx_hash"], mint["tx_hash"]);
    assert_eq!(env.highwater().await, U256::from(1));
    assert_eq!(env.deposit_logs().await, 1);
    env.stop().await;
}
