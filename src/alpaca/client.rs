//! The HTTP side: auth, URLs, retries, error mapping.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
    RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument as _, debug, info, warn};
use uuid::Uuid;

use super::wire::ErrorEnvelope;
use super::{
    AlpacaConfig, AlpacaError, DEFAULT_IDEMPOTENCY_NAMESPACE, HandshakeIdField,
    ListFilter, MintCallback, Operation, RedeemPath, RedeemRequest,
    TokenizationRequest,
};

const APCA_KEY_ID: HeaderName = HeaderName::from_static("apca-api-key-id");
const APCA_SECRET: HeaderName = HeaderName::from_static("apca-api-secret-key");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const REPLAYED: &str = "idempotent-replayed";
const RATE_LIMIT_RESET: &str = "x-ratelimit-reset";
/// Longest error text kept from a non-JSON error body.
const MAX_ERROR_TEXT: usize = 512;

/// Broker API client; cheap to clone (shared connection pool).
#[derive(Clone)]
pub struct AlpacaClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    account_id: Uuid,
    redeem_path: RedeemPath,
    backoff: ExponentialBuilder,
    max_delay: Duration,
    namespace: Uuid,
    handshake_field: HandshakeIdField,
}

impl fmt::Debug for AlpacaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlpacaClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("account_id", &self.inner.account_id)
            .field("redeem_path", &self.inner.redeem_path)
            .field("handshake_field", &self.inner.handshake_field)
            .field("credentials", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl AlpacaClient {
    pub fn new(cfg: &AlpacaConfig) -> Result<Self, AlpacaError> {
        let base_url = checked_base_url(&cfg.base_url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .timeout(Duration::from_secs(cfg.request_timeout_secs))
            // A redirect would carry the APCA secret header to wherever
            // it points; Alpaca's API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(auth_headers(cfg)?)
            .build()
            .map_err(AlpacaError::ClientBuild)?;
        let max_delay = Duration::from_millis(cfg.retry_max_delay_ms);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(cfg.retry_min_delay_ms))
            .with_max_delay(max_delay)
            .with_factor(2.0)
            .with_max_times(cfg.max_retries)
            .with_jitter();
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                account_id: cfg.account_id,
                redeem_path: cfg.redeem_path,
                backoff,
                max_delay,
                namespace: cfg
                    .idempotency_namespace
                    .unwrap_or(DEFAULT_IDEMPOTENCY_NAMESPACE),
                handshake_field: cfg.handshake_id_field(),
            }),
        })
    }

    /// The issuer account every path is scoped to.
    pub fn account_id(&self) -> Uuid {
        self.inner.account_id
    }

    /// The `Idempotency-Key` sent with every redeem attempt for this id.
    pub fn idempotency_key(&self, issuer_request_id: &str) -> Uuid {
        Uuid::new_v5(&self.inner.namespace, issuer_request_id.as_bytes())
    }

    /// `POST .../tokenization/callback/mint`. The 200 body is ignored
    /// (Alpaca's shape is a full record, but mocks send nothing). A
    /// handshake-flow AP is named per `send_legacy_client_id`, whichever
    /// alias the mint request used.
    ///
    /// A final `Http { status: 400, .. }` may have been applied inside
    /// Alpaca (`itn-wire.md` §5.3): confirm via [`Self::get_request`].
    pub async fn send_mint_callback(
        &self,
        callback: &MintCallback,
    ) -> Result<(), AlpacaError> {
        let operation = Operation::MintCallback;
        let sent = MintCallback {
            ap: callback.ap.outgoing(self.inner.handshake_field),
            ..callback.clone()
        };
        let call = Call {
            operation,
            method: Method::POST,
            url: self.url(&["callback", "mint"])?,
            body: Some(encode(operation, &sent)?),
            idempotency_key: None,
        };
        let reply = self.execute(&call).await.inspect_err(|_| {
            // After the client's own retries: each count is a callback
            // the mint driver will have to retry later.
            metrics::counter!("alpaca_errors_total", "operation" => operation.as_str())
                .increment(1);
        })?;
        debug!(
            target: "alpaca",
            tokenization_request_id = %callback.tokenization_request_id,
            status = reply.status.as_u16(),
            "mint callback accepted"
        );
        Ok(())
    }

    /// Registers a redemption. Safe to repeat: the `Idempotency-Key` makes
    /// a repeat a replay, and a 422 for an already-used
    /// `issuer_request_id` is answered with the existing request. The AP
    /// is named like on the mint callback.
    pub async fn redeem(
        &self,
        request: &RedeemRequest,
    ) -> Result<TokenizationRequest, AlpacaError> {
        let operation = Operation::Redeem;
        let key = self.idempotency_key(&request.issuer_request_id);
        let sent = RedeemRequest {
            ap: request.ap.outgoing(self.inner.handshake_field),
            ..request.clone()
        };
        let call = Call {
            operation,
            method: Method::POST,
            url: self.url(self.inner.redeem_path.segments())?,
            body: Some(encode(operation, &sent)?),
            idempotency_key: Some(key.to_string()),
        };
        match self.execute(&call).await {
            Ok(reply) => {
                if reply.replayed {
                    info!(
                        target: "alpaca",
                        issuer_request_id = %request.issuer_request_id,
                        idempotency_key = %key,
                        "redeem answered by idempotent replay"
                    );
                }
                let record: TokenizationRequest = decode(operation, &reply)?;
                check_redeem_record(operation, request, &record)?;
                Ok(record)
            }
            Err(AlpacaError::Http {
                status: 422,
                code,
                message,
            }) => self.recover_duplicate_redeem(request, code, message).await,
            Err(error) => Err(error),
        }
    }

    /// Keyed GET; `Ok(None)` on 404. Still finds requests that have aged
    /// out of the list. A 404 right after a redeem may be transient
    /// (`itn-wire.md` §5.7): pollers should keep polling, not fail.
    pub async fn get_request(
        &self,
        tokenization_request_id: &str,
    ) -> Result<Option<TokenizationRequest>, AlpacaError> {
        let operation = Operation::GetRequest;
        let call = Call::get(
            operation,
            self.url(&["requests", tokenization_request_id])?,
        );
        let reply = match self.execute(&call).await {
            Ok(reply) => reply,
            Err(AlpacaError::Http { status: 404, .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let record: TokenizationRequest = decode(operation, &reply)?;
        if !record
            .tokenization_request_id
            .eq_ignore_ascii_case(tokenization_request_id)
        {
            return Err(AlpacaError::RecordMismatch {
                operation,
                id: tokenization_request_id.to_owned(),
                field: "tokenization_request_id",
                expected: tokenization_request_id.to_owned(),
                found: record.tokenization_request_id,
            });
        }
        Ok(Some(record))
    }

    /// `GET .../requests:by_issuer_request_id?issuer_request_id=...`;
    /// `Ok(None)` on 404.
    pub async fn find_by_issuer_request_id(
        &self,
        issuer_request_id: &str,
    ) -> Result<Option<TokenizationRequest>, AlpacaError> {
        let operation = Operation::FindByIssuerRequestId;
        // One path segment with a literal colon; `Url` keeps ':' as is.
        let mut url = self.url(&["requests:by_issuer_request_id"])?;
        url.query_pairs_mut()
            .append_pair("issuer_request_id", issuer_request_id);
        let reply = match self.execute(&Call::get(operation, url)).await {
            Ok(reply) => reply,
            Err(AlpacaError::Http { status: 404, .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let found: OneOrMany = decode(operation, &reply)?;
        let record = match found {
            OneOrMany::One(record) => Some(*record),
            // Not documented as an array; if it is one, the latest match
            // wins, as Alpaca documents for the client-request-id lookup.
            OneOrMany::Many(records) => records
                .into_iter()
                .filter(|record| {
                    record.issuer_request_id.as_deref()
                        == Some(issuer_request_id)
                })
                .max_by_key(|record| record.created_at),
        };
        let Some(record) = record else {
            return Ok(None);
        };
        if let Some(found) = &record.issuer_request_id
            && found != issuer_request_id
        {
            return Err(AlpacaError::RecordMismatch {
                operation,
                id: issuer_request_id.to_owned(),
                field: "issuer_request_id",
                expected: issuer_request_id.to_owned(),
                found: found.clone(),
            });
        }
        Ok(Some(record))
    }

    /// `GET .../tokenization/requests` (a bare JSON array). Completed rows
    /// drop out after about a day: poll single requests by id instead.
    pub async fn list_requests(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<TokenizationRequest>, AlpacaError> {
        let operation = Operation::ListRequests;
        let mut url = self.url(&["requests"])?;
        let pairs = filter.query_pairs();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        let reply = self.execute(&Call::get(operation, url)).await?;
        decode(operation, &reply)
    }

    async fn recover_duplicate_redeem(
        &self,
        request: &RedeemRequest,
        code: Option<i64>,
        message: String,
    ) -> Result<TokenizationRequest, AlpacaError> {
        info!(
            target: "alpaca",
            issuer_request_id = %request.issuer_request_id,
            ?code,
            %message,
            "redeem refused with 422; looking the request up by \
             issuer_request_id"
        );
        let Some(record) = self
            .find_by_issuer_request_id(&request.issuer_request_id)
            .await?
        else {
            return Err(AlpacaError::RedeemUnprocessable {
                issuer_request_id: request.issuer_request_id.clone(),
                code,
                message,
            });
        };
        check_redeem_record(Operation::Redeem, request, &record)?;
        info!(
            target: "alpaca",
            issuer_request_id = %request.issuer_request_id,
            tokenization_request_id = %record.tokenization_request_id,
            status = %record.status,
            "redeem already registered at Alpaca; using the existing request"
        );
        Ok(record)
    }

    fn url(&self, tail: &[&str]) -> Result<Url, AlpacaError> {
        let mut url = self.inner.base_url.clone();
        let account = self.inner.account_id.to_string();
        url.path_segments_mut()
            .map_err(|()| AlpacaError::InvalidBaseUrl {
                url: self.inner.base_url.clone(),
                reason: "cannot be a base URL",
            })?
            .pop_if_empty()
            .extend(["v1", "accounts", &account, "tokenization"])
            .extend(tail);
        Ok(url)
    }

    /// One call with retries on retryable errors; a 429's wait is honoured
    /// unless it exceeds the longest backoff delay, in which case the
    /// `RateLimited` error goes back to the caller's own schedule.
    async fn execute(&self, call: &Call) -> Result<Reply, AlpacaError> {
        let max_delay = self.inner.max_delay;
        let mut attempt: u32 = 0;
        (|| {
            attempt = attempt.saturating_add(1);
            self.attempt(call, attempt)
        })
        .retry(&self.inner.backoff)
        .when(AlpacaError::is_retryable)
        .adjust(move |error, next| honour_retry_after(error, next, max_delay))
        .notify(|error, delay| {
            warn!(
                target: "alpaca",
                operation = %call.operation,
                status = ?error.status(),
                ?delay,
                %error,
                "Alpaca call failed; retrying"
            );
        })
        .await
    }

    /// One attempt in a span of its own: operation, attempt number, the
    /// HTTP status (or the error).
    async fn attempt(
        &self,
        call: &Call,
        attempt: u32,
    ) -> Result<Reply, AlpacaError> {
        let span = crate::flow_span!(
            "alpaca.call",
            otel.name = format!("alpaca.{}", call.operation),
            otel.kind = "client",
            operation = call.operation.as_str(),
            attempt,
            http.request.method = call.method.as_str(),
            http.response.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let result = self.send(call, attempt).instrument(span.clone()).await;
        match &result {
            Ok(reply) => {
                span.record("http.response.status_code", reply.status.as_u16());
            }
            Err(error) => {
                if let Some(status) = error.status() {
                    span.record("http.response.status_code", status);
                }
                span.record("error", tracing::field::display(error));
            }
        }
        result
    }

    async fn send(
        &self,
        call: &Call,
        attempt: u32,
    ) -> Result<Reply, AlpacaError> {
        debug!(
            target: "alpaca",
            operation = %call.operation,
            method = %call.method,
            path = call.url.path(),
            attempt,
            "calling Alpaca"
        );
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone());
        if let Some(key) = &call.idempotency_key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status();
        let replayed = response
            .headers()
            .get(REPLAYED)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
        let retry_after = retry_after(response.headers(), Utc::now());
        let body = response.bytes().await?.to_vec();
        if status.is_success() {
            return Ok(Reply {
                status,
                replayed,
                body,
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(AlpacaError::RateLimited { retry_after });
        }
        Err(http_error(status, &body))
    }
}

struct Call {
    operation: Operation,
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    idempotency_key: Option<String>,
}

impl Call {
    fn get(operation: Operation, url: Url) -> Self {
        Self {
            operation,
            method: Method::GET,
            url,
            body: None,
            idempotency_key: None,
        }
    }
}

struct Reply {
    status: StatusCode,
    replayed: bool,
    body: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Box<TokenizationRequest>),
    Many(Vec<TokenizationRequest>),
}

fn checked_base_url(raw: &Url) -> Result<Url, AlpacaError> {
    let invalid = |reason| AlpacaError::InvalidBaseUrl {
        url: raw.clone(),
        reason,
    };
    if !matches!(raw.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    if raw.cannot_be_a_base() {
        return Err(invalid("cannot be a base URL"));
    }
    if raw.query().is_some() || raw.fragment().is_some() {
        return Err(invalid("must not carry a query or fragment"));
    }
    if !raw.username().is_empty() || raw.password().is_some() {
        return Err(invalid("credentials belong in api_key_id/api_secret"));
    }
    Ok(raw.clone())
}

/// Basic auth *and* the APCA headers: Alpaca needed the latter, the
/// OpenAPI scheme is the former (`itn-wire.md` §5.1).
fn auth_headers(cfg: &AlpacaConfig) -> Result<HeaderMap, AlpacaError> {
    let secret = cfg.api_secret.expose_secret();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{secret}", cfg.api_key_id));
    let sensitive = |raw: &str| {
        let mut value = HeaderValue::from_str(raw)
            .map_err(|_| AlpacaError::InvalidCredentials)?;
        value.set_sensitive(true);
        Ok::<_, AlpacaError>(value)
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, sensitive(&format!("Basic {basic}"))?);
    headers.insert(
        APCA_KEY_ID,
        HeaderValue::from_str(&cfg.api_key_id)
            .map_err(|_| AlpacaError::InvalidCredentials)?,
    );
    headers.insert(APCA_SECRET, sensitive(secret)?);
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    Ok(headers)
}

fn encode<T: serde::Serialize>(
    operation: Operation,
    body: &T,
) -> Result<Vec<u8>, AlpacaError> {
    serde_json::to_vec(body)
        .map_err(|source| AlpacaError::Encode { operation, source })
}

fn decode<T: DeserializeOwned>(
    operation: Operation,
    reply: &Reply,
) -> Result<T, AlpacaError> {
    serde_json::from_slice(&reply.body).map_err(|source| AlpacaError::Decode {
        operation,
        status: reply.status.as_u16(),
        source,
    })
}

/// `{code, message}` when Alpaca sent its envelope, else the body text.
fn http_error(status: StatusCode, body: &[u8]) -> AlpacaError {
    let envelope = serde_json::from_slice::<ErrorEnvelope>(body).ok();
    let code = envelope.as_ref().and_then(|envelope| envelope.code);
    let message = envelope
        .and_then(|envelope| envelope.message)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("").to_owned()
            } else if text.chars().count() > MAX_ERROR_TEXT {
                let kept: String = text.chars().take(MAX_ERROR_TEXT).collect();
                format!("{kept}… (truncated)")
            } else {
                text.to_owned()
            }
        });
    AlpacaError::Http {
        status: status.as_u16(),
        code,
        message,
    }
}

/// `Retry-After` (seconds or HTTP date), else `X-RateLimit-Reset` (epoch
/// seconds). A moment in the past means "now".
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let until =
        |at: DateTime<Utc>| (at - now).to_std().unwrap_or(Duration::ZERO);
    if let Some(raw) = header(RETRY_AFTER.as_str()) {
        if let Ok(seconds) = raw.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(at) = DateTime::parse_from_rfc2822(raw) {
            return Some(until(at.with_timezone(&Utc)));
        }
    }
    let reset = header(RATE_LIMIT_RESET)?.parse::<i64>().ok()?;
    DateTime::from_timestamp(reset, 0).map(until)
}

fn honour_retry_after(
    error: &AlpacaError,
    next: Option<Duration>,
    max_delay: Duration,
) -> Option<Duration> {
    let next = next?;
    match error {
        AlpacaError::RateLimited {
            retry_after: Some(wait),
        } => (*wait <= max_delay).then(|| next.max(*wait)),
        _ => Some(next),
    }
}

fn check_redeem_record(
    operation: Operation,
    request: &RedeemRequest,
    record: &TokenizationRequest,
) -> Result<(), AlpacaError> {
    match request.mismatch(record) {
        None => Ok(()),
        Some(mismatch) => Err(AlpacaError::RecordMismatch {
            operation,
            id: request.issuer_request_id.clone(),
            field: mismatch.field,
            expected: mismatch.expected,
            found: mismatch.found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_seconds_date_and_reset() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Thu, 01 Jan 2026 00:00:30 GMT")]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        let reset = (now.timestamp() + 12).to_string();
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-reset", &reset)]), now),
            Some(Duration::from_secs(12))
        );
        let past = (now.timestamp() - 12).to_string();
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-reset", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[]), now), None);
    }

    #[test]
    fn long_retry_after_stops_retrying() {
        let max = Duration::from_mins(1);
        let limited = |secs| AlpacaError::RateLimited {
            retry_after: Some(Duration::from_secs(secs)),
        };
        let next = Some(Duration::from_secs(1));
        assert_eq!(
            honour_retry_after(&limited(5), next, max),
            Some(Duration::from_secs(5))
        );
        assert_eq!(honour_retry_after(&limited(600), next, max), None);
        assert_eq!(honour_retry_after(&limited(5), None, max), None);
    }

    #[test]
    fn error_body_envelope_and_fallbacks() {
        let envelope =
            br#"{"code": 42210001, "message": "tx_hash is required"}"#;
        assert!(matches!(
            http_error(StatusCode::UNPROCESSABLE_ENTITY, envelope),
            AlpacaError::Http { status: 422, code: Some(42_210_001), message }
                if message == "tx_hash is required"
        ));
        assert!(matches!(
            http_error(StatusCode::BAD_GATEWAY, b"upstream down"),
            AlpacaError::Http { status: 502, code: None, message }
                if message == "upstream down"
        ));
        assert!(matches!(
            http_error(StatusCode::FORBIDDEN, b""),
            AlpacaError::Http { status: 403, code: None, message }
                if message == "Forbidden"
        ));
    }

    #[test]
    fn base_url_must_be_plain_http() {
        for bad in [
            "ftp://example.com",
            "https://example.com/?a=b",
            "https://user:pw@example.com",
            "mailto:ops@example.com",
        ] {
            let url = Url::parse(bad).unwrap();
            assert!(matches!(
                checked_base_url(&url),
                Err(AlpacaError::InvalidBaseUrl { .. })
            ));
        }
    }
}
