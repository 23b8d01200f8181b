//! The control API (`/_proxy/...`) over real HTTP, in process and through
//! the `rpc-fault-proxy` binary, in front of a real anvil node.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::providers::{Provider, RootProvider};
use anyhow::{Context, bail};
use reqwest::StatusCode;
use rpc_fault_proxy::{RpcFaultProxy, Stats};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;

const ANSWERS: Duration = Duration::from_secs(3);

fn anvil() -> anyhow::Result<AnvilInstance> {
    let path = std::env::var_os("ANVIL_BIN").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
        },
        PathBuf::from,
    );
    Anvil::new()
        .path(path)
        .try_spawn()
        .context("spawning anvil (npm ci --ignore-scripts?)")
}

fn http(url: reqwest::Url) -> RootProvider {
    RootProvider::new_http(url)
}

async fn add_rule(
    client: &reqwest::Client,
    base: &str,
    rule: Value,
) -> anyhow::Result<u64> {
    let response = client
        .post(format!("{base}/_proxy/rules"))
        .json(&rule)
        .send()
        .await?;
    if response.status() != StatusCode::OK {
        bail!(
            "adding {rule}: {} {}",
            response.status(),
            response.text().await?
        );
    }
    let created: Value = response.json().await?;
    created["id"].as_u64().context("{\"id\":N}")
}

async fn stats(client: &reqwest::Client, base: &str) -> anyhow::Result<Stats> {
    Ok(client
        .get(format!("{base}/_proxy/stats"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn status_of(request: reqwest::RequestBuilder) -> anyhow::Result<u16> {
    Ok(request.send().await?.status().as_u16())
}

#[tokio::test]
async fn control_api_sets_rules_unreachable_and_stats() -> anyhow::Result<()> {
    let anvil = anvil()?;
    let upstream = http(anvil.endpoint_url());
    let proxy = RpcFaultProxy::start_with_control(&anvil.endpoint(), 0).await?;
    let base = proxy.url();
    let provider = http(base.parse()?);
    let client = reqwest::Client::new();
    let head = upstream.get_block_number().await?;

    // {"lag_blocks":n} on eth_blockNumber, at most 2 times.
    let lag = add_rule(
        &client,
        &base,
        json!({"method": "eth_blockNumber", "match": "any",
               "fault": {"lag_blocks": 5}, "times": 2}),
    )
    .await?;
    assert_eq!(provider.get_block_number().await?, head.saturating_sub(5));

    // {"error":{...}} for one first param only.
    let zero = format!("{:#x}", alloy::primitives::Address::ZERO);
    let error = add_rule(
        &client,
        &base,
        json!({"method": "eth_getBalance",
               "match": {"first_param": zero},
               "fault": {"error": {"code": -32005, "message": "limit"}},
               "times": null}),
    )
    .await?;
    assert_ne!(lag, error);
    let refused = provider
        .get_balance(alloy::primitives::Address::ZERO)
        .await
        .err()
        .context("the error fault")?;
    assert_eq!(refused.as_error_resp().map(|e| e.code), Some(-32005));

    let stats_now = stats(&client, &base).await?;
    assert_eq!(stats_now.calls.get("eth_blockNumber"), Some(&1));
    assert_eq!(stats_now.calls.get("eth_getBalance"), Some(&1));
    assert_eq!(stats_now.hits.get(&lag), Some(&1));
    assert_eq!(stats_now.hits.get(&error), Some(&1));
    assert_eq!(proxy.faults().calls("eth_getBalance"), 1);

    // Remove one rule by id; an unknown id is a 404.
    assert_eq!(
        status_of(client.delete(format!("{base}/_proxy/rules/{error}")))
            .await?,
        204
    );
    provider
        .get_balance(alloy::primitives::Address::ZERO)
        .await?;
    assert_eq!(
        status_of(client.delete(format!("{base}/_proxy/rules/{error}")))
            .await?,
        404
    );

    // "http503", then clear everything.
    add_rule(
        &client,
        &base,
        json!({"method": "eth_chainId", "fault": "http503"}),
    )
    .await?;
    assert!(provider.get_chain_id().await.is_err());
    assert_eq!(
        status_of(client.delete(format!("{base}/_proxy/rules"))).await?,
        204
    );
    assert_eq!(
        provider.get_chain_id().await?,
        upstream.get_chain_id().await?
    );
    assert_eq!(provider.get_block_number().await?, head, "lag cleared");

    // Unreachable: JSON-RPC dropped, the control API still answers.
    let unreachable = |down: bool| {
        client
            .post(format!("{base}/_proxy/unreachable"))
            .json(&down)
    };
    assert_eq!(status_of(unreachable(true)).await?, 204);
    assert!(
        timeout(ANSWERS, provider.get_chain_id()).await?.is_err(),
        "no JSON-RPC answer while unreachable"
    );
    let while_down = stats(&client, &base).await?;
    assert!(while_down.calls.contains_key("eth_chainId"));
    assert_eq!(status_of(unreachable(false)).await?, 204);
    assert_eq!(
        provider.get_chain_id().await?,
        upstream.get_chain_id().await?
    );

    // Bad input is a 400 with a reason; unknown routes are 404.
    let bad = client
        .post(format!("{base}/_proxy/rules"))
        .json(&json!({"method": "eth_chainId", "fault": "explode"}))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let reason: Value = bad.json().await?;
    assert!(
        reason["error"]
            .as_str()
            .is_some_and(|e| e.contains("explode"))
    );
    assert_eq!(
        status_of(
            client
                .post(format!("{base}/_proxy/unreachable"))
                .body("maybe")
        )
        .await?,
        400
    );
    assert_eq!(
        status_of(client.get(format!("{base}/_proxy/nope"))).await?,
        404
    );

    proxy.shutdown().await;
    Ok(())
}

/// The control paths are only special with the control API on.
#[tokio::test]
async fn plain_proxy_forwards_control_paths_upstream() -> anyhow::Result<()> {
    let anvil = anvil()?;
    let proxy = RpcFaultProxy::start(&anvil.endpoint()).await?;
    let response = reqwest::Client::new()
        .get(format!("{}/_proxy/stats", proxy.url()))
        .send()
        .await?;
    assert!(response.json::<Stats>().await.is_err(), "not our stats");
    Ok(())
}

/// Kills the child process when dropped (also on a failed assertion).
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test]
async fn binary_prints_its_url_and_serves_both_apis() -> anyhow::Result<()> {
    let anvil = anvil()?;
    let mut child = Child(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rpc-fault-proxy"))
            .args(["--upstream", &anvil.endpoint(), "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?,
    );
    let stdout = child.0.stdout.take().context("stdout")?;
    let mut line = String::new();
    timeout(ANSWERS, BufReader::new(stdout).read_line(&mut line)).await??;
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let client = reqwest::Client::new();
    add_rule(
        &client,
        &base,
        json!({"method": "eth_chainId",
               "match": {"first_param_not": "0x00"},
               "fault": {"error": {"code": -32099, "message": "once"}},
               "times": 1}),
    )
    .await?;
    let provider = http(base.parse()?);
    let refused = provider
        .get_chain_id()
        .await
        .err()
        .context("the error fault, once")?;
    assert_eq!(refused.as_error_resp().map(|e| e.code), Some(-32099));
    assert_eq!(
        provider.get_chain_id().await?,
        http(anvil.endpoint_url()).get_chain_id().await?
    );
    let stats_now = stats(&client, &base).await?;
    assert_eq!(stats_now.calls.get("eth_chainId"), Some(&2));
    assert_eq!(stats_now.hits.values().sum::<u64>(), 1);
    Ok(())
}
