//! The current wire end to end: an affiliated AP (named by its Alpaca
//! account, never linked) mints and redeems; a handshake AP's callback
//! uses `client_external_account_id`; Alpaca's custody-account lookup.

use alloy::primitives::U256;
use itn_sim::{Endpoint, MintSpec, RequestStatus, WireVersion};
use serde_json::{Value, json};

use crate::harness::{Env, UNDERLYING};
use crate::redemption::{
    bot, position, redemption_ids, send, shares, wait_for_state,
};

/// The `client_*` fields of a body, which must name the AP exactly once.
fn ap_field(body: &Value) -> (String, Value) {
    let fields: Vec<(String, Value)> = body
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| {
            name.starts_with("client_") && *name != "client_request_id"
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    assert_eq!(fields.len(), 1, "exactly one AP field: {body}");
    fields[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_affiliated_ap_mints_and_redeems_by_its_alpaca_account() {
    let env = Env::start_with(WireVersion::Current).await;
    let corr = env.add_affiliated_ap(2).await;
    let wallet = corr.wallet.address();
    let account = json!(corr.ap.uuid().to_string());

    let outcome = env
        .sim
        .request_mint(
            corr.ap,
            MintSpec {
                wallet: wallet.to_string(),
                ..env.mint_spec("2")
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome.issuer_response_status, 200, "{outcome:?}");
    let request = env.sim.last_request(Endpoint::IssuerMint).unwrap();
    assert_eq!(
        ap_field(&request.json().unwrap()),
        ("client_account_id".to_owned(), account.clone())
    );
    let issuer_request_id = outcome.issuer_request_id.unwrap();
    let mint = env.wait_for_status(&issuer_request_id, "completed").await;
    assert_eq!(mint["client_id"], corr.client_id.as_str());
    assert_eq!(env.share_balance(wallet).await, shares("2"));
    assert_eq!(env.sim.position(corr.ap, UNDERLYING), position("998"));

    // Alpaca got one callback naming the AP the way it asked.
    let callbacks = env.sim.mint_callbacks(outcome.tokenization_request_id);
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert_eq!(
        ap_field(&callbacks[0]),
        ("client_account_id".to_owned(), account.clone())
    );
    assert_eq!(callbacks[0]["tx_hash"], mint["tx_hash"]);
    let record = env.sim.request(outcome.tokenization_request_id).unwrap();
    assert_eq!(record.status, RequestStatus::Completed);

    // The redemption names it by its Alpaca account too.
    let receipt = send(&env, &corr.wallet, &[(bot(&env), shares("0.5"))]).await;
    let ids = redemption_ids(&receipt, bot(&env));
    let redemption = wait_for_state(&env, &ids[0], "completed").await;
    assert_eq!(redemption["client_id"], corr.client_id.as_str());
    let calls = env.sim.redeem_calls();
    assert_eq!(calls.len(), 1);
    let sent: Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(ap_field(&sent), ("client_account_id".to_owned(), account));
    assert_eq!(env.sim.position(corr.ap, UNDERLYING), position("998.5"));
    assert_eq!(env.share_balance(wallet).await, shares("1.5"));
    assert_eq!(env.share_balance(bot(&env)).await, U256::ZERO);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_wire_handshake_callbacks_and_the_custody_lookup() {
    let env = Env::start_with(WireVersion::Current).await;
    let outcome = env.request_mint("1").await;
    let request = env.sim.last_request(Endpoint::IssuerMint).unwrap();
    let handshake = (
        "client_external_account_id".to_owned(),
        json!(env.client_id),
    );
    assert_eq!(ap_field(&request.json().unwrap()), handshake);
    env.wait_for_status(&outcome.issuer_request_id.unwrap(), "completed")
        .await;
    let callbacks = env.sim.mint_callbacks(outcome.tokenization_request_id);
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert_eq!(ap_field(&callbacks[0]), handshake);

    // Alpaca asks where AAPL's shares are kept: the designated account.
    let (status, body) = env
        .get_alpaca(&format!("/tokenization/custody-accounts/{UNDERLYING}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "account_id": env.sim.issuer_account_id().to_string(),
            "underlying_symbol": UNDERLYING,
        })
    );
    let (status, body) =
        env.get_alpaca("/tokenization/custody-accounts/MSFT").await;
    assert_eq!(status, 404, "{body}");
    env.stop().await;
}
