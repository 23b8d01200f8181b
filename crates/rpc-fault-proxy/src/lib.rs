//! A fault-injecting JSON-RPC HTTP proxy for tests: it sits between a
//! service and an Ethereum node (anvil), forwards calls, and on demand
//! lies (`null` results), lags (old block numbers / state), hangs, answers
//! errors or HTTP 503, or plays dead (connections closed without answer).
//!
//! ```no_run
//! # async fn demo() -> Result<(), rpc_fault_proxy::ProxyError> {
//! use rpc_fault_proxy::{Fault, Match, RpcFaultProxy, Rule};
//!
//! let proxy = RpcFaultProxy::start("http://127.0.0.1:8545").await?;
//! let faults = proxy.faults();
//! let rule = faults.add(
//!     Rule::new("eth_getTransactionReceipt", Fault::NullResult)
//!         .matching(Match::FirstParam("0xabc…".into()))
//!         .times(2),
//! );
//! // … point the service at proxy.url() …
//! assert_eq!(faults.hits(rule), 0);
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Rules are checked in insertion order; the first one for the call's
//! method whose matcher matches and whose `times` are not used up applies.
//! Batches are faulted per element; the forwarded elements go upstream as
//! one batch and the answers are merged back in call order.

mod control;
mod faults;
mod response;
mod rpc;
mod server;

use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use control::{Created, FaultSpec, MatchSpec, RuleSpec, Stats};
pub use faults::{Fault, Faults, Match, Rule, RuleId};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid upstream URL {url:?}: {reason}")]
    InvalidUpstream { url: String, reason: String },
    #[error("binding 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("building the upstream HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The running proxy. Dropping it stops it too (without waiting).
pub struct RpcFaultProxy {
    port: u16,
    faults: Faults,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RpcFaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcFaultProxy")
            .field("port", &self.port)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl RpcFaultProxy {
    /// Binds 127.0.0.1 on a free port and forwards to `upstream` (e.g.
    /// "http://127.0.0.1:8545").
    pub async fn start(upstream: &str) -> Result<Self, ProxyError> {
        Self::start_on(upstream, 0).await
    }

    /// Like [`RpcFaultProxy::start`] on the given port (0: a free one).
    pub async fn start_on(
        upstream: &str,
        port: u16,
    ) -> Result<Self, ProxyError> {
        Self::launch(upstream, port, false).await
    }

    /// Like [`RpcFaultProxy::start_on`], also serving the control API (see
    /// [`RuleSpec`]) under `/_proxy/` on the same port; this is what the
    /// `rpc-fault-proxy` binary runs. While unreachable, the control API
    /// keeps answering and only the JSON-RPC calls are dropped.
    pub async fn start_with_control(
        upstream: &str,
        port: u16,
    ) -> Result<Self, ProxyError> {
        Self::launch(upstream, port, true).await
    }

    async fn launch(
        upstream: &str,
        port: u16,
        control: bool,
    ) -> Result<Self, ProxyError> {
        let invalid = |reason: String| ProxyError::InvalidUpstream {
            url: upstream.to_owned(),
            reason,
        };
        let url = reqwest::Url::parse(upstream)
            .map_err(|error| invalid(error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http(s)",
                url.scheme()
            )));
        }
        // No system proxy: the upstream is a local node.
        let client = reqwest::Client::builder().no_proxy().build()?;
        let bind = |source| ProxyError::Bind { port, source };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(bind)?;
        let port = listener.local_addr().map_err(bind)?.port();

        let faults = Faults::new();
        let shared = Arc::new(server::Shared {
            faults: faults.clone(),
            upstream: upstream.to_owned(),
            client,
            control,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server::accept_loop(listener, shared, stopped));
        tracing::debug!(
            target: "rpc_fault_proxy",
            port,
            upstream,
            control,
            "proxy started"
        );
        Ok(Self {
            port,
            faults,
            stop,
            task: Some(task),
        })
    }

    /// "http://127.0.0.1:<port>"
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A cheap handle on the rules and counters (usable after shutdown).
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// Stops accepting, releases every hung call (they are forwarded), lets
    /// open connections finish their current call (up to 2 s) and closes
    /// them.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(
                target: "rpc_fault_proxy",
                %error,
                "proxy task failed"
            );
        }
    }

    fn signal_stop(&self) {
        self.faults.shut_down();
        self.stop.send_replace(true);
    }
}

impl Drop for RpcFaultProxy {
    fn drop(&mut self) {
        self.signal_stop();
    }
}
