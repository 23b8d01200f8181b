//! The service's internal API over real HTTP, as an operator calls it:
//! `X-API-KEY` with the internal key, JSON bodies. Responses are read
//! into small local structs with only the fields the devnet prints.

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    #[error("{method} {url} failed: {source}")]
    Transport {
        method: Method,
        url: String,
        source: reqwest::Error,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{method} {url} answered an unexpected body ({source}): {body}")]
    Body {
        method: Method,
        url: String,
        body: String,
        source: serde_json::Error,
    },
}

/// The service's internal (operator) endpoints.
#[derive(Debug, Clone)]
pub struct OperatorApi {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    base: String,
    key: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClientIdAnswer {
    pub client_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AssetAnswer {
    pub outcome: String,
    pub vault: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WalletAnswer {
    pub wallet: String,
    pub whitelisted: bool,
}

/// `GET /mints/<issuer_request_id>`, the fields the log shows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MintAnswer {
    pub status: String,
    pub tx_hash: Option<String>,
    pub tx_attempt: Option<u32>,
    pub tx_nonce: Option<u64>,
    pub receipt_id: Option<String>,
    pub shares: Option<String>,
    pub block: Option<u64>,
    pub rejection_reason: Option<String>,
    pub failure: Option<Value>,
    pub last_error: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BurnAnswer {
    pub receipt_id: String,
    pub shares: String,
}

/// `GET /redemptions/<issuer_request_id>`, the fields the log shows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RedemptionAnswer {
    pub state: String,
    pub shares: String,
    pub alpaca_qty: Option<String>,
    pub dust: String,
    pub tokenization_request_id: Option<String>,
    pub burn_tx_hash: Option<String>,
    pub burns: Vec<BurnAnswer>,
    pub burn_block: Option<u64>,
    pub failure_reason: Option<String>,
}

impl OperatorApi {
    pub fn new(base: &str, internal_key: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            key: internal_key,
        }
    }

    pub async fn add_asset(
        &self,
        underlying: &str,
        token: &str,
        network: &str,
        vault: &str,
    ) -> Result<AssetAnswer, ApiCallError> {
        let body = json!({
            "underlying": underlying,
            "token": token,
            "network": network,
            "vault": vault,
        });
        self.expect(Method::POST, "/tokenized-assets", Some(body))
            .await
    }

    pub async fn register_account(
        &self,
        email: &str,
    ) -> Result<ClientIdAnswer, ApiCallError> {
        let body = json!({ "email": email });
        self.expect(Method::POST, "/accounts", Some(body)).await
    }

    pub async fn whitelist_wallet(
        &self,
        client_id: &str,
        wallet: &str,
    ) -> Result<WalletAnswer, ApiCallError> {
        let body = json!({ "wallet": wallet });
        let path = format!("/accounts/{client_id}/wallets");
        self.expect(Method::POST, &path, Some(body)).await
    }

    /// `None` while the service does not know the mint.
    pub async fn mint(
        &self,
        issuer_request_id: &str,
    ) -> Result<Option<MintAnswer>, ApiCallError> {
        let path = format!("/mints/{issuer_request_id}");
        self.maybe(&path).await
    }

    /// `None` until the transfer monitor has detected the transfer.
    pub async fn redemption(
        &self,
        issuer_request_id: &str,
    ) -> Result<Option<RedemptionAnswer>, ApiCallError> {
        let path = format!("/redemptions/{issuer_request_id}");
        self.maybe(&path).await
    }

    async fn maybe<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ApiCallError> {
        match self.call(Method::GET, path, None).await? {
            (StatusCode::NOT_FOUND, _, _) => Ok(None),
            answer => parse(answer).map(Some),
        }
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ApiCallError> {
        parse(self.call(method, path, body).await?)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, ApiCallError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), url.as_str())
            .header("X-API-KEY", &self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let transport = |source| ApiCallError::Transport {
            method: method.clone(),
            url: url.clone(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        Ok((status, text, Request { method, url }))
    }
}

struct Request {
    method: Method,
    url: String,
}

type Answer = (StatusCode, String, Request);

fn parse<T: DeserializeOwned>(
    (status, body, request): Answer,
) -> Result<T, ApiCallError> {
    if !status.is_success() {
        return Err(ApiCallError::Status {
            method: request.method,
            url: request.url,
            status,
            body,
        });
    }
    serde_json::from_str(&body).map_err(|source| ApiCallError::Body {
        method: request.method,
        url: request.url,
        body,
        source,
    })
}
