//! Starting the simulator and the handle tests and the binary drive it by.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Url;
use rocket::config::{LogLevel, Shutdown as ShutdownConfig};
use rocket::fairing::AdHoc;
use rocket::{Ignite, Rocket};
use rust_decimal::Decimal;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::SimError;
use crate::ap::{ApId, ApSpec};
use crate::config::SimConfig;
use crate::drive::{self, ListedToken, MintOutcome, MintSpec};
use crate::fault::{Endpoint, Fault, FaultBoard};
use crate::recording::RecordedRequest;
use crate::tokenization::TokenizationRequest;
use crate::world::ConfirmDelivery;
use crate::world::Shared;
use crate::{admin, broker};

type Server = JoinHandle<Result<Rocket<Ignite>, rocket::Error>>;

pub struct Simulator;

impl Simulator {
    /// Binds the Broker API (and `/sim` control endpoints) and returns
    /// once the server is accepting connections.
    pub async fn spawn(cfg: SimConfig) -> Result<SimHandle, SimError> {
        let bind = cfg.bind;
        // No grace: idle keep-alive connections of test clients would
        // otherwise hold every shutdown for the full grace period.
        let mut shutdown = ShutdownConfig {
            ctrlc: cfg.handle_signals,
            grace: 0,
            mercy: 0,
            ..ShutdownConfig::default()
        };
        if !cfg.handle_signals {
            shutdown.signals.clear();
        }
        let rocket_cfg = rocket::Config {
            address: bind.ip(),
            port: bind.port(),
            log_level: LogLevel::Off,
            // The TCP peer only: `/sim` admits loopback callers, which a
            // spoofed X-Real-IP must not fake.
            ip_header: None,
            cli_colors: false,
            shutdown,
            ..rocket::Config::default()
        };
        let shared = Arc::new(Shared::new(cfg)?);
        let (port_tx, port_rx) = oneshot::channel::<u16>();
        let port_tx = Mutex::new(Some(port_tx));
        let rocket = rocket::custom(rocket_cfg)
            .manage(Arc::clone(&shared))
            .mount("/", broker::routes())
            .mount("/sim", admin::routes())
            .register("/", broker::catchers())
            .attach(AdHoc::on_liftoff("report port", move |rocket| {
                let port = rocket.config().port;
                let sender = port_tx
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                Box::pin(async move {
                    if let Some(sender) = sender {
                        let _ = sender.send(port);
                    }
                })
            }));
        let ignited =
            rocket.ignite().await.map_err(|err| SimError::Launch {
                reason: err.to_string(),
            })?;
        let shutdown = ignited.shutdown();
        let server: Server = tokio::spawn(ignited.launch());
        let Ok(port) = port_rx.await else {
            // Liftoff never happened: the launch failed (e.g. bind).
            let reason = match server.await {
                Ok(Err(err)) => err.to_string(),
                Ok(Ok(_)) => "server stopped before liftoff".into(),
                Err(err) => err.to_string(),
            };
            return Err(SimError::Launch { reason });
        };
        let host = match bind.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            }
            ip => ip,
        };
        let authority = std::net::SocketAddr::new(host, port);
        let base_url =
            Url::parse(&format!("http://{authority}")).map_err(|err| {
                SimError::Launch {
                    reason: err.to_string(),
                }
            })?;
        Ok(SimHandle {
            shared,
            base_url,
            shutdown,
            server: Arc::new(Mutex::new(Some(server))),
        })
    }
}

/// A cheap, cloneable handle on a running simulator.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    base_url: Url,
    shutdown: rocket::Shutdown,
    server: Arc<Mutex<Option<Server>>>,
}

impl SimHandle {
    /// Broker API base, e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> Url {
        self.base_url.clone()
    }

    /// The issuer's Alpaca account id (`{account_id}` in broker paths).
    pub fn issuer_account_id(&self) -> Uuid {
        self.shared.cfg.issuer_account_id
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }

    pub fn set_issuer_base_url(&self, url: Url) {
        self.shared.set_issuer_url(url);
    }

    /// Stops the server and waits for it; open connections are cut.
    pub async fn shutdown(self) {
        self.shutdown.notify();
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            match server.await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "simulator stopped with error");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "simulator task failed");
                }
            }
        }
    }

    pub fn add_ap(&self, ap: ApSpec) -> ApId {
        self.shared.world().add_ap(ap)
    }

    /// Calls the issuer's account-linking endpoint for this AP and
    /// stores the issuer-side id it answers with.
    pub async fn link_ap(&self, ap: ApId) -> Result<String, SimError> {
        drive::link_ap(&self.shared, ap).await
    }

    /// The issuer-side id stored at linking, if linked.
    pub fn linked_client_id(&self, ap: ApId) -> Option<String> {
        self.shared
            .world()
            .aps
            .get(&ap)
            .and_then(|entry| entry.linked_id().map(str::to_owned))
    }

    pub fn position(&self, ap: ApId, symbol: &str) -> Decimal {
        self.shared
            .world()
            .aps
            .get(&ap)
            .map(|entry| entry.position(symbol))
            .unwrap_or_default()
    }

    pub fn set_position(&self, ap: ApId, symbol: &str, qty: Decimal) {
        if let Some(entry) = self.shared.world().aps.get_mut(&ap) {
            entry.positions.insert(symbol.to_owned(), qty);
        }
    }

    pub fn issuer_position(&self, symbol: &str) -> Decimal {
        self.shared.world().issuer_position(symbol)
    }

    pub fn set_issuer_position(&self, symbol: &str, qty: Decimal) {
        self.shared
            .world()
            .issuer_positions
            .insert(symbol.to_owned(), qty);
    }

    /// Drives a mint like Alpaca: checks the AP, sends the mint request
    /// and, on 200, journals and confirms in the background.
    pub async fn request_mint(
        &self,
        ap: ApId,
        req: MintSpec,
    ) -> Result<MintOutcome, SimError> {
        drive::request_mint(Arc::clone(&self.shared), ap, req).await
    }

    /// GETs the issuer's token list (with `X-API-KEY`) like Alpaca.
    pub async fn fetch_tokens(&self) -> Result<Vec<ListedToken>, SimError> {
        drive::fetch_tokens(&self.shared).await
    }

    /// Adds a raw record, e.g. one with an unknown network or issuer, or
    /// another AP's request, to test the issuer's tolerance of the list.
    pub fn insert_request(&self, request: TokenizationRequest) {
        self.shared.world().requests.push(request);
    }

    pub fn request(&self, id: Uuid) -> Option<TokenizationRequest> {
        self.shared.world().request(id).cloned()
    }

    pub fn requests(&self) -> Vec<TokenizationRequest> {
        self.shared.world().requests.clone()
    }

    /// The record as the Broker API would render it now.
    pub fn request_wire(&self, id: Uuid) -> Option<Value> {
        let world = self.shared.world();
        world
            .request(id)
            .map(|req| req.to_wire(&world.faults.quirks))
    }

    pub fn inject(&self, fault: Fault) {
        tracing::info!(?fault, "fault injected");
        self.shared.world().faults.inject(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.world().faults = FaultBoard::default();
    }

    /// Requests received (Broker API) or sent (issuer) per endpoint,
    /// counting every one, including those answered 401 or by a fault.
    pub fn hits(&self, endpoint: Endpoint) -> usize {
        self.shared.world().hits(endpoint)
    }

    pub fn all_hits(&self) -> BTreeMap<Endpoint, usize> {
        let world = self.shared.world();
        Endpoint::ALL
            .into_iter()
            .map(|endpoint| (endpoint, world.hits(endpoint)))
            .collect()
    }

    pub fn last_request(&self, endpoint: Endpoint) -> Option<RecordedRequest> {
        self.shared
            .world()
            .recordings
            .get(&endpoint)
            .and_then(|all| all.last().cloned())
    }

    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<RecordedRequest> {
        self.shared
            .world()
            .recordings
            .get(&endpoint)
            .cloned()
            .unwrap_or_default()
    }

    /// Accepted (200) mint callbacks for this request, in order.
    pub fn mint_callbacks(&self, tokenization_request_id: Uuid) -> Vec<Value> {
        self.shared
            .world()
            .mint_callbacks
            .get(&tokenization_request_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every redeem call received, whatever its answer.
    pub fn redeem_calls(&self) -> Vec<RecordedRequest> {
        self.requests_to(Endpoint::Redeem)
    }

    /// Every delivery of this mint's confirmation, in order.
    pub fn confirm_deliveries(
        &self,
        tokenization_request_id: Uuid,
    ) -> Vec<ConfirmDelivery> {
        self.shared
            .world()
            .confirm_deliveries
            .get(&tokenization_request_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `pred` every 10 ms until it holds or `timeout` passes.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&SimHandle) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        loop {
            if pred(self) {
                return true;
            }
            let now = tokio::time::Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
