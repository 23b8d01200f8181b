//! `issuance-bot admin …`: the operator's actions as commands that call
//! the running service's admin API (so every action goes through the same
//! checks, commands and events as over HTTP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::{Value, json};

use crate::config::OperatorAccess;

/// One operator action, as the CLI names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAction {
    Stuck {
        older_than_secs: Option<u64>,
    },
    History {
        aggregate: String,
        id: String,
    },
    RebuildViews,
    DiscoverReceipts {
        from_block: Option<u64>,
    },
    MintRetry {
        id: String,
        reason: String,
    },
    MintClose {
        id: String,
        reason: String,
        tx_hash: Option<String>,
    },
    RedemptionRetry {
        id: String,
        reason: String,
    },
    RedemptionForceComplete {
        id: String,
        reason: String,
        burn_tx: String,
    },
    RedemptionClose {
        id: String,
        reason: String,
        tx_hash: Option<String>,
    },
    Attribute {
        tx_hash: String,
        log_index: u64,
        client_id: String,
        reason: String,
    },
    Return {
        tx_hash: String,
        log_index: u64,
        reason: String,
    },
}

impl AdminAction {
    /// The request this action sends.
    fn request(&self) -> (Method, String, Option<Value>) {
        let with_tx = |reason: &str, tx_hash: &Option<String>| match tx_hash {
            Some(tx_hash) => json!({"reason": reason, "tx_hash": tx_hash}),
            None => json!({"reason": reason}),
        };
        match self {
            Self::Stuck { older_than_secs } => (
                Method::GET,
                older_than_secs.map_or_else(
                    || "/admin/stuck".to_owned(),
                    |secs| format!("/admin/stuck?older_than_secs={secs}"),
                ),
                None,
            ),
            Self::History { aggregate, id } => (
                Method::GET,
                format!(
                    "/admin/history/{}/{}",
                    segment(aggregate),
                    segment(id)
                ),
                None,
            ),
            Self::DiscoverReceipts { from_block } => (
                Method::POST,
                "/admin/receipts/discover".to_owned(),
                Some(from_block.map_or_else(
                    || json!({}),
                    |block| json!({"from_block": block}),
                )),
            ),
            Self::RebuildViews => {
                (Method::POST, "/admin/views/rebuild".to_owned(), None)
            }
            Self::MintRetry { id, reason } => (
                Method::POST,
                format!("/admin/mints/{}/retry", segment(id)),
                Some(json!({"reason": reason})),
            ),
            Self::MintClose {
                id,
                reason,
                tx_hash,
            } => (
                Method::POST,
                format!("/admin/mints/{}/close", segment(id)),
                Some(with_tx(reason, tx_hash)),
            ),
            Self::RedemptionRetry { id, reason } => (
                Method::POST,
                format!("/admin/redemptions/{}/retry", segment(id)),
                Some(json!({"reason": reason})),
            ),
            Self::RedemptionForceComplete {
                id,
                reason,
                burn_tx,
            } => (
                Method::POST,
                format!("/admin/redemptions/{}/force-complete", segment(id)),
                Some(json!({"reason": reason, "burn_tx": burn_tx})),
            ),
            Self::RedemptionClose {
                id,
                reason,
                tx_hash,
            } => (
                Method::POST,
                format!("/admin/redemptions/{}/close", segment(id)),
                Some(with_tx(reason, tx_hash)),
            ),
            Self::Attribute {
                tx_hash,
                log_index,
                client_id,
                reason,
            } => (
                Method::POST,
                format!(
                    "/admin/unattributed/{}/{log_index}/attribute",
                    segment(tx_hash)
                ),
                Some(json!({"client_id": client_id, "reason": reason})),
            ),
            Self::Return {
                tx_hash,
                log_index,
                reason,
            } => (
                Method::POST,
                format!(
                    "/admin/unattributed/{}/{log_index}/return",
                    segment(tx_hash)
                ),
                Some(json!({"reason": reason})),
            ),
        }
    }
}

/// A path segment with everything but unreserved characters escaped.
fn segment(raw: &str) -> String {
    raw.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("invalid service URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach the service at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the service answered {status}: {message}")]
    Refused { status: u16, message: String },
}

/// Calls the admin API of one running service.
pub struct AdminClient {
    base: Url,
    key: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// `url` overrides the address from the config (`server.bind`; an
    /// unspecified address such as 0.0.0.0 is reached on loopback).
    pub fn new(
        access: OperatorAccess,
        url: Option<&str>,
    ) -> Result<Self, AdminClientError> {
        let base = match url {
            Some(url) => url.to_owned(),
            None => format!("http://{}", reachable(access.bind)),
        };
        let parsed =
            Url::parse(&base).map_err(|error| AdminClientError::Url {
                url: base.clone(),
                reason: error.to_string(),
            })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_mins(5))
            .build()
            .map_err(|source| AdminClientError::Transport {
                url: base,
                source,
            })?;
        Ok(Self {
            base: parsed,
            key: access.internal_key,
            http,
        })
    }

    /// Sends the action; the service's JSON answer on 2xx.
    pub async fn run(
        &self,
        action: &AdminAction,
    ) -> Result<Value, AdminClientError> {
        let (method, path, body) = action.request();
        let url =
            self.base
                .join(&path)
                .map_err(|error| AdminClientError::Url {
                    url: path.clone(),
                    reason: error.to_string(),
                })?;
        let mut request = self
            .http
            .request(method, url.clone())
            .header(crate::auth::API_KEY_HEADER, &self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let transport = |source| AdminClientError::Transport {
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        let value: Value =
            serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_owned);
            Err(AdminClientError::Refused {
                status: status.as_u16(),
                message,
            })
        }
    }
}

/// Where a client on this host reaches a listener bound to `bind`.
fn reachable(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_become_admin_requests_with_escaped_ids() {
        let (method, path, body) = AdminAction::MintClose {
            id: "a/b".into(),
            reason: "r".into(),
            tx_hash: Some("0xab".into()),
        }
        .request();
        assert_eq!(method, Method::POST);
        assert_eq!(path, "/admin/mints/a%2Fb/close");
        assert_eq!(body, Some(json!({"reason": "r", "tx_hash": "0xab"})));
        let (method, path, body) = AdminAction::Stuck {
            older_than_secs: Some(60),
        }
        .request();
        assert_eq!(method, Method::GET);
        assert_eq!(path, "/admin/stuck?older_than_secs=60");
        assert_eq!(body, None);
    }

    #[test]
    fn an_unspecified_bind_is_reached_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            reachable("10.0.0.5:80".parse().unwrap()),
            "10.0.0.5:80".parse::<SocketAddr>().unwrap()
        );
    }
}
