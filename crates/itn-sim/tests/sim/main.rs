//! Integration tests against a real spawned simulator and a small fake
//! issuer (a real Rocket server) that records what Alpaca sent it.
// Test helpers live outside `#[test]` fns, where clippy.toml's test
// allowances do not reach; a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod broker;
mod drive;
mod fake_issuer;

use std::time::Duration;

use itn_sim::{ApId, ApSpec, ClientIdMode, SimConfig, SimHandle, Simulator};
use reqwest::{Method, RequestBuilder};
use rust_decimal::Decimal;
use serde_json::Value;

pub(crate) const WAIT: Duration = Duration::from_secs(5);

pub(crate) fn dec(raw: &str) -> Decimal {
    raw.parse().unwrap()
}

pub(crate) async fn sim_with(cfg: SimConfig) -> SimHandle {
    Simulator::spawn(cfg).await.unwrap()
}

pub(crate) async fn sim() -> SimHandle {
    sim_with(SimConfig::default()).await
}

/// A request to the simulator's Broker API, authenticated like the
/// issuer (Basic plus the APCA headers).
pub(crate) fn broker(
    sim: &SimHandle,
    method: Method,
    tail: &str,
) -> RequestBuilder {
    unauthenticated(sim, method, tail)
        .basic_auth(
            &sim.config().broker_key_id,
            Some(&sim.config().broker_secret),
        )
        .header("APCA-API-KEY-ID", &sim.config().broker_key_id)
        .header("APCA-API-SECRET-KEY", &sim.config().broker_secret)
}

pub(crate) fn unauthenticated(
    sim: &SimHandle,
    method: Method,
    tail: &str,
) -> RequestBuilder {
    let url = format!(
        "{}v1/accounts/{}/tokenization/{tail}",
        sim.base_url(),
        sim.issuer_account_id()
    );
    reqwest::Client::new().request(method, url)
}

pub(crate) async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap();
    (status, body)
}

pub(crate) fn ap_spec(email: &str, positions: &[(&str, &str)]) -> ApSpec {
    ApSpec {
        email: email.into(),
        account_number: format!("ACC-{email}"),
        positions: positions
            .iter()
            .map(|(symbol, qty)| ((*symbol).to_owned(), dec(qty)))
            .collect(),
        id_mode: ClientIdMode::External,
    }
}

/// An AP linked through the fake issuer's connect endpoint.
pub(crate) async fn linked_ap(
    sim: &SimHandle,
    email: &str,
    positions: &[(&str, &str)],
) -> (ApId, String) {
    let ap = sim.add_ap(ap_spec(email, positions));
    let client_id = sim.link_ap(ap).await.unwrap();
    (ap, client_id)
}
