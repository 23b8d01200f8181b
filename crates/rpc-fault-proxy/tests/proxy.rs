//! The proxy between an alloy provider and a real anvil node.

use std::path::PathBuf;
use std::time::Duration;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, TxHash, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::transports::{RpcError, TransportErrorKind};
use anyhow::{Context, bail};
use rpc_fault_proxy::{Fault, Match, RpcFaultProxy, Rule};
use serde_json::{Value, json};
use tokio::time::timeout;

const RECEIPT: &str = "eth_getTransactionReceipt";

/// Long enough to show a call hangs, short enough for a fast suite.
const HUNG: Duration = Duration::from_millis(300);
/// Generous bound for a call that must answer.
const ANSWERS: Duration = Duration::from_secs(3);

fn anvil_path() -> PathBuf {
    std::env::var_os("ANVIL_BIN").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
        },
        PathBuf::from,
    )
}

struct Chain {
    anvil: AnvilInstance,
    /// Straight to anvil.
    upstream: RootProvider,
    proxy: RpcFaultProxy,
    /// Through the proxy.
    provider: RootProvider,
}

impl Chain {
    async fn start() -> anyhow::Result<Self> {
        let anvil = Anvil::new()
            .path(anvil_path())
            .try_spawn()
            .context("spawning anvil (npm ci --ignore-scripts?)")?;
        let upstream = RootProvider::new_http(anvil.endpoint_url());
        let proxy = RpcFaultProxy::start(&anvil.endpoint()).await?;
        let provider = RootProvider::new_http(proxy.url().parse()?);
        Ok(Self {
            anvil,
            upstream,
            proxy,
            provider,
        })
    }

    fn account(&self, index: usize) -> anyhow::Result<Address> {
        self.anvil
            .addresses()
            .get(index)
            .copied()
            .context("anvil dev account")
    }

    /// A mined 1-wei transfer from dev account `from`, sent straight to
    /// anvil (unlocked account, eth_sendTransaction).
    async fn transfer(&self, from: usize) -> anyhow::Result<TxHash> {
        let tx = TransactionRequest::default()
            .from(self.account(from)?)
            .to(self.account(9)?)
            .value(U256::from(1));
        let hash = *self.upstream.send_transaction(tx).await?.tx_hash();
        for _ in 0..100 {
            if self.upstream.get_transaction_receipt(hash).await?.is_some() {
                return Ok(hash);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("transfer {hash} never mined")
    }
}

#[tokio::test]
async fn passes_calls_through_unchanged() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    chain.transfer(0).await?;

    assert_eq!(
        chain.provider.get_chain_id().await?,
        chain.upstream.get_chain_id().await?
    );
    assert_eq!(
        chain.provider.get_block_number().await?,
        chain.upstream.get_block_number().await?
    );
    let account = chain.account(0)?;
    assert_eq!(
        chain.provider.get_transaction_count(account).await?,
        chain.upstream.get_transaction_count(account).await?
    );
    chain.proxy.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn null_receipt_twice_then_the_real_one() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let hash = chain.transfer(0).await?;
    let faults = chain.proxy.faults();
    let rule = faults.add(Rule::new(RECEIPT, Fault::NullResult).times(2));

    assert!(
        chain
            .provider
            .get_transaction_receipt(hash)
            .await?
            .is_none()
    );
    assert!(
        chain
            .provider
            .get_transaction_receipt(hash)
            .await?
            .is_none()
    );
    let receipt = chain
        .provider
        .get_transaction_receipt(hash)
        .await?
        .context("the real receipt after two lies")?;
    assert_eq!(receipt.transaction_hash, hash);
    assert_eq!(faults.hits(rule), 2);
    assert_eq!(faults.calls(RECEIPT), 3);
    Ok(())
}

#[tokio::test]
async fn first_param_matches_only_that_hash() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let lied_about = chain.transfer(0).await?;
    let other = chain.transfer(1).await?;
    let faults = chain.proxy.faults();
    // Upper case: the match ignores ASCII case.
    let hex = format!("{lied_about:#x}")
        .to_uppercase()
        .replacen("0X", "0x", 1);
    let rule = faults.add(
        Rule::new(RECEIPT, Fault::NullResult).matching(Match::FirstParam(hex)),
    );

    assert!(
        chain
            .provider
            .get_transaction_receipt(lied_about)
            .await?
            .is_none()
    );
    assert!(
        chain
            .provider
            .get_transaction_receipt(other)
            .await?
            .is_some()
    );
    assert_eq!(faults.hits(rule), 1);

    // And the reverse: every receipt but `other` is hidden.
    faults.clear();
    let except = faults.add(
        Rule::new(RECEIPT, Fault::NullResult)
            .matching(Match::FirstParamNot(format!("{other:#x}"))),
    );
    assert!(
        chain
            .provider
            .get_transaction_receipt(lied_about)
            .await?
            .is_none()
    );
    assert!(
        chain
            .provider
            .get_transaction_receipt(other)
            .await?
            .is_some()
    );
    assert_eq!(faults.hits(except), 1);
    Ok(())
}

#[tokio::test]
async fn hang_holds_the_call_until_the_rule_is_removed() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let hash = chain.transfer(0).await?;
    let faults = chain.proxy.faults();
    let rule = faults.add(Rule::new(RECEIPT, Fault::Hang));

    assert!(
        timeout(HUNG, chain.provider.get_transaction_receipt(hash))
            .await
            .is_err(),
        "the receipt call should hang"
    );

    let provider = chain.provider.clone();
    let hung =
        tokio::spawn(
            async move { provider.get_transaction_receipt(hash).await },
        );
    // Other calls (other connections) are not blocked by the hung one.
    assert_eq!(
        timeout(ANSWERS, chain.provider.get_block_number()).await??,
        chain.upstream.get_block_number().await?
    );
    tokio::time::sleep(HUNG).await;
    assert!(!hung.is_finished(), "still hung while the rule is in place");

    faults.remove(rule);
    let receipt = timeout(ANSWERS, hung)
        .await???
        .context("forwarded normally once released")?;
    assert_eq!(receipt.transaction_hash, hash);
    assert_eq!(faults.hits(rule), 2);
    Ok(())
}

#[tokio::test]
async fn clear_and_shutdown_release_hung_calls() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let faults = chain.proxy.faults();
    faults.add(Rule::new("eth_chainId", Fault::Hang));
    let expected = chain.upstream.get_chain_id().await?;

    let provider = chain.provider.clone();
    let hung = tokio::spawn(async move { provider.get_chain_id().await });
    tokio::time::sleep(HUNG).await;
    assert!(!hung.is_finished());
    faults.clear();
    assert_eq!(timeout(ANSWERS, hung).await???, expected);

    faults.add(Rule::new("eth_chainId", Fault::Hang));
    let provider = chain.provider.clone();
    let hung = tokio::spawn(async move { provider.get_chain_id().await });
    tokio::time::sleep(HUNG).await;
    assert!(!hung.is_finished());
    timeout(ANSWERS, chain.proxy.shutdown()).await?;
    assert_eq!(timeout(ANSWERS, hung).await???, expected);
    Ok(())
}

#[tokio::test]
async fn lag_blocks_rewinds_the_head_and_latest_state() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let sender = chain.account(0)?;
    for _ in 0..3 {
        chain.transfer(0).await?;
    }
    let head = chain.upstream.get_block_number().await?;
    assert_eq!(chain.upstream.get_transaction_count(sender).await?, 3);
    let faults = chain.proxy.faults();

    let lag = faults.add(Rule::new("eth_blockNumber", Fault::LagBlocks(2)));
    assert_eq!(chain.provider.get_block_number().await?, head - 2);
    faults.remove(lag);
    let lag = faults.add(Rule::new("eth_blockNumber", Fault::LagBlocks(100)));
    assert_eq!(chain.provider.get_block_number().await?, 0, "saturating");
    faults.remove(lag);

    // One transfer per block: two blocks back, the sender had sent one.
    let lag = faults.add(
        Rule::new("eth_getTransactionCount", Fault::LagBlocks(2))
            .matching(Match::FirstParam(format!("{sender:#x}"))),
    );
    assert_eq!(chain.provider.get_transaction_count(sender).await?, 1);
    assert_eq!(faults.hits(lag), 1);
    // An explicit block number is not "latest": not rewritten.
    assert_eq!(
        chain
            .provider
            .get_transaction_count(sender)
            .number(head)
            .await?,
        3
    );
    assert_eq!(faults.hits(lag), 1);
    Ok(())
}

#[tokio::test]
async fn error_and_http_503_reach_alloy_as_errors() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let faults = chain.proxy.faults();
    faults.add(
        Rule::new(
            "eth_blockNumber",
            Fault::Error {
                code: -32000,
                message: "header not found".into(),
            },
        )
        .times(1),
    );
    faults.add(Rule::new("eth_blockNumber", Fault::Http503).times(1));

    let error = chain
        .provider
        .get_block_number()
        .await
        .err()
        .context("the JSON-RPC error")?;
    let payload = error.as_error_resp().context("an error response")?;
    assert_eq!(payload.code, -32000);
    assert_eq!(payload.message, "header not found");

    let error = chain
        .provider
        .get_block_number()
        .await
        .err()
        .context("the HTTP 503")?;
    match error {
        RpcError::Transport(TransportErrorKind::HttpError(http)) => {
            assert_eq!(http.status, 503);
            assert_eq!(http.body, "");
        }
        other => bail!("expected an HTTP error, got {other:?}"),
    }

    // Both rules used up: the call goes through again.
    assert_eq!(
        chain.provider.get_block_number().await?,
        chain.upstream.get_block_number().await?
    );
    Ok(())
}

#[tokio::test]
async fn unreachable_drops_connections_until_recovered() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let faults = chain.proxy.faults();
    let expected = chain.provider.get_chain_id().await?;

    faults.set_unreachable(true);
    for _ in 0..2 {
        let error = timeout(ANSWERS, chain.provider.get_chain_id())
            .await?
            .err()
            .context("no answer while unreachable")?;
        assert!(
            matches!(error, RpcError::Transport(_)),
            "a transport error, not {error:?}"
        );
    }

    faults.set_unreachable(false);
    assert_eq!(chain.provider.get_chain_id().await?, expected);

    // A call already hung is cut off too when the node "dies".
    faults.add(Rule::new("eth_chainId", Fault::Hang));
    let provider = chain.provider.clone();
    let hung = tokio::spawn(async move { provider.get_chain_id().await });
    tokio::time::sleep(HUNG).await;
    assert!(!hung.is_finished());
    faults.set_unreachable(true);
    assert!(timeout(ANSWERS, hung).await??.is_err());

    faults.set_unreachable(false);
    faults.clear();
    assert_eq!(chain.provider.get_chain_id().await?, expected);
    Ok(())
}

#[tokio::test]
async fn batch_faults_one_element_and_keeps_order() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let hash = chain.transfer(0).await?;
    let head = chain.upstream.get_block_number().await?;
    let chain_id = chain.upstream.get_chain_id().await?;
    let faults = chain.proxy.faults();
    let rule = faults.add(Rule::new(RECEIPT, Fault::NullResult));

    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": "two", "method": RECEIPT,
         "params": [format!("{hash:#x}")]},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_blockNumber", "params": []},
    ]);
    let response = reqwest::Client::new()
        .post(chain.proxy.url())
        .json(&batch)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json")),
        "upstream content type kept"
    );
    let answers: Value = response.json().await?;
    assert_eq!(
        answers,
        json!([
            {"jsonrpc": "2.0", "id": 1, "result": format!("{chain_id:#x}")},
            {"jsonrpc": "2.0", "id": "two", "result": null},
            {"jsonrpc": "2.0", "id": 3, "result": format!("{head:#x}")},
        ])
    );
    assert_eq!(faults.hits(rule), 1);

    // A lagging head inside a batch, and a Hang holding the whole batch.
    faults.clear();
    faults.add(Rule::new("eth_blockNumber", Fault::LagBlocks(1)));
    let hang = faults.add(Rule::new("eth_chainId", Fault::Hang));
    let client = reqwest::Client::new();
    let request = client.post(chain.proxy.url()).json(&batch).send();
    let pending =
        tokio::spawn(async move { request.await?.json::<Value>().await });
    tokio::time::sleep(HUNG).await;
    assert!(!pending.is_finished(), "one hung element hangs the batch");
    faults.remove(hang);
    let answers = timeout(ANSWERS, pending).await???;
    assert_eq!(answers[0]["result"], format!("{chain_id:#x}"));
    assert_eq!(
        answers[1]["result"]["transactionHash"],
        format!("{hash:#x}")
    );
    assert_eq!(answers[2]["result"], format!("{:#x}", head - 1));
    Ok(())
}

#[tokio::test]
async fn counts_calls_per_method_faulted_or_not() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let faults = chain.proxy.faults();
    assert_eq!(faults.calls("eth_chainId"), 0);

    chain.provider.get_chain_id().await?;
    faults.add(Rule::new("eth_chainId", Fault::NullResult).times(1));
    let _ = chain.provider.get_chain_id().await;
    chain.provider.get_block_number().await?;
    chain.upstream.get_block_number().await?; // not through the proxy

    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId"},
    ]);
    reqwest::Client::new()
        .post(chain.proxy.url())
        .json(&batch)
        .send()
        .await?
        .error_for_status()?;

    assert_eq!(faults.calls("eth_chainId"), 4);
    assert_eq!(faults.calls("eth_blockNumber"), 1);
    assert_eq!(faults.calls("eth_getBalance"), 0);
    Ok(())
}

#[tokio::test]
async fn non_json_bodies_are_forwarded_as_is() -> anyhow::Result<()> {
    let chain = Chain::start().await?;
    let direct = reqwest::Client::new()
        .post(chain.anvil.endpoint())
        .header("content-type", "application/json")
        .body("this is not json")
        .send()
        .await?;
    let proxied = reqwest::Client::new()
        .post(chain.proxy.url())
        .header("content-type", "application/json")
        .body("this is not json")
        .send()
        .await?;
    assert_eq!(proxied.status(), direct.status());
    assert_eq!(
        proxied.headers().get("content-type"),
        direct.headers().get("content-type")
    );
    assert_eq!(proxied.text().await?, direct.text().await?);
    Ok(())
}
