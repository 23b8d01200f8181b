//! Alpaca's second scheme end to end (itn-wire.md §4.1): the service runs
//! with `auth.alpaca.scheme = "signature"` and Alpaca's public key in a
//! file; the simulator signs every call (RFC 9421, Ed25519, Content-
//! Digest) and sends no X-API-KEY. Every wire version mints, a mint is
//! redeemed, and an API-key call or a replayed signed call is refused.

use alloy::primitives::U256;
use itn_sim::{Endpoint, RecordedRequest, WireVersion};
use serde_json::Value;

use crate::harness::{ALPACA_KEY, ALPACA_KEYID, Env, Options};
use crate::redemption::{bot, mint, position, redeem, shares, wait_for_state};

async fn signed_env(wire: WireVersion) -> Env {
    Env::start_opts(Options {
        wire,
        signatures: true,
        ..Options::default()
    })
    .await
}

/// A call Alpaca made to us, signed as itn-wire.md §4.1 says.
fn assert_signed(call: &RecordedRequest) {
    let input = call.header("Signature-Input").unwrap();
    let covered = if call.method == "POST" {
        r#"sig=("@method" "@target-uri" "content-type" "content-digest")"#
    } else {
        r#"sig=("@method" "@target-uri")"#
    };
    assert!(input.starts_with(covered), "{input}");
    assert!(
        input.contains(&format!(r#"keyid="{ALPACA_KEYID}";alg="ed25519""#)),
        "{input}"
    );
    assert!(call.header("Signature").unwrap().starts_with("sig=:"));
    assert_eq!(
        call.header("Content-Digest").is_some(),
        call.method == "POST",
        "{call:?}"
    );
    assert_eq!(call.header("X-API-KEY"), None, "{call:?}");
}

async fn mints_signed(wire: WireVersion) {
    let env = signed_env(wire).await;
    // Linking (in setup) went through signed.
    let links = env.sim.requests_to(Endpoint::IssuerConnect);
    assert_eq!(links.len(), 1);
    assert_signed(&links[0]);
    // The token list is a bodyless signed GET.
    let tokens = env.sim.fetch_tokens().await.unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_signed(&env.sim.last_request(Endpoint::IssuerTokens).unwrap());

    let outcome = env.request_mint("2.5").await;
    let issuer_request_id = outcome.issuer_request_id.clone().unwrap();
    let mint = env.wait_for_status(&issuer_request_id, "completed").await;
    assert_eq!(env.share_balance(env.ap_wallet).await, shares("2.5"));
    assert_eq!(mint["tx_attempt"], 1);
    let deliveries =
        env.sim.confirm_deliveries(outcome.tokenization_request_id);
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    for endpoint in [Endpoint::IssuerMint, Endpoint::IssuerConfirm] {
        let calls = env.sim.requests_to(endpoint);
        assert_eq!(calls.len(), 1, "{endpoint:?}");
        assert_signed(&calls[0]);
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mint_on_the_oldest_wire() {
    mints_signed(WireVersion::Oldest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mint_on_the_middle_wire() {
    mints_signed(WireVersion::Middle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mint_on_the_current_wire() {
    mints_signed(WireVersion::Current).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mint_then_redeem() {
    let env = signed_env(WireVersion::Current).await;
    mint(&env, "3").await;
    let id = redeem(&env, shares("1.25")).await;
    wait_for_state(&env, &id, "completed").await;
    assert_eq!(env.share_balance(bot(&env)).await, U256::ZERO);
    assert_eq!(env.sim.position(env.ap, "AAPL"), position("998.25"));
    assert_eq!(env.sim.redeem_calls().len(), 1);
    env.stop().await;
}

/// Sends a recorded call again, byte for byte, headers included.
async fn resend(env: &Env, call: &RecordedRequest) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{}", env.base_url, call.path))
        .body(call.body.clone());
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_replays_are_refused_in_signature_mode() {
    let env = signed_env(WireVersion::Middle).await;
    let outcome = env.request_mint("1").await;
    env.wait_for_status(&outcome.issuer_request_id.unwrap(), "completed")
        .await;

    // Alpaca's API key is no credential in this mode.
    let response = reqwest::Client::new()
        .get(format!("{}/tokenization/tokens", env.base_url))
        .header("X-API-KEY", ALPACA_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .ends_with("X-API-KEY is not accepted"),
        "{body}"
    );

    // A captured signed mint request, replayed as is: refused by its
    // nonce, and nothing new is minted.
    let sent = env.sim.requests_to(Endpoint::IssuerMint);
    let (status, body) = resend(&env, &sent[0]).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .ends_with("was already used"),
        "{body}"
    );
    // Nor can the captured headers carry another body.
    let mut tampered = sent[0].clone();
    tampered.body = tampered.body.replace("\"1\"", "\"1000\"");
    assert_ne!(tampered.body, sent[0].body);
    let (status, body) = resend(&env, &tampered).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(env.deposit_logs().await, 1);
    env.stop().await;
}
