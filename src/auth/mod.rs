//! Request guards for the two audiences: Alpaca (the ITN endpoints) and
//! internal operators (admin endpoints). Internal operators present an
//! API key (header `X-API-KEY`); Alpaca presents either its API key or,
//! with `auth.alpaca.scheme = "signature"`, an RFC 9421 signature made
//! with its Ed25519 key ([`signature`]). Each audience has its own CIDR
//! allow-list; failed attempts are limited per client address.
//!
//! Usage: add `_auth: AlpacaAuth` or `_auth: InternalAuth` to a handler;
//! Alpaca routes with a body take it as [`AlpacaJson`] (the digest
//! check). Failures end in the JSON catchers with 401, 403 or 429, and
//! are logged once, here.

pub mod body;
pub(crate) mod config;
pub mod digest;
pub mod httpsig;
pub mod ip;
pub mod key;
pub mod rate_limit;
pub mod replay;
pub mod signature;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use rocket::Request;
use rocket::http::Status;
use rocket::outcome::Outcome as RocketOutcome;
use rocket::request::{FromRequest, Outcome};

pub use body::AlpacaJson;
pub use config::{
    AlpacaAuthConfig, AlpacaCredentials, AlpacaScheme, AudienceConfig,
    AuthConfig, AuthConfigError,
};
pub use ip::{AllowList, ClientIpHeader, ClientIpSource};
pub use key::ApiKey;
use rate_limit::FailureLimiter;
pub use signature::{
    PublicBaseUrl, SignatureConfig, SignatureConfigError, SignatureError,
    SignatureKey, SignatureVerifier,
};

use crate::clock::Clock;

/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "X-API-KEY";

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Alpaca,
    Internal,
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Alpaca => "alpaca",
            Self::Internal => "internal",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing X-API-KEY header")]
    MissingKey,
    #[error("invalid API key")]
    InvalidKey,
    #[error("client address {ip} is not allowed")]
    AddressNotAllowed { ip: IpAddr },
    #[error("client address could not be determined")]
    UnknownAddress,
    #[error(
        "too many failed authentication attempts; retry in \
         {retry_after_secs} s"
    )]
    TooManyFailures { retry_after_secs: u64 },
    #[error(
        "request rate limit for this audience exceeded; retry in \
         {retry_after_secs} s"
    )]
    Throttled { retry_after_secs: u64 },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("authentication is not configured")]
    NotConfigured,
}

impl AuthError {
    pub fn status(&self) -> Status {
        match self {
            Self::MissingKey | Self::InvalidKey | Self::Signature(_) => {
                Status::Unauthorized
            }
            Self::AddressNotAllowed { .. } | Self::UnknownAddress => {
                Status::Forbidden
            }
            Self::TooManyFailures { .. } | Self::Throttled { .. } => {
                Status::TooManyRequests
            }
            Self::NotConfigured => Status::InternalServerError,
        }
    }
}

/// The last authentication failure of a request, kept in the request's
/// local cache so the catcher can explain it.
#[derive(Debug, Clone, Default)]
pub struct AuthFailure(pub Option<AuthError>);

impl AuthFailure {
    pub fn of(request: &Request<'_>) -> Option<AuthError> {
        request.local_cache(AuthFailure::default).0.clone()
    }
}

/// What an audience must present.
#[derive(Debug)]
enum Credentials {
    ApiKey(ApiKey),
    Signature(SignatureVerifier),
}

#[derive(Debug)]
struct AudiencePolicy {
    credentials: Credentials,
    allowed: AllowList,
    /// Shared by every caller of the audience: it protects the service
    /// (and the chain and Alpaca calls behind it), not one client.
    throttle: Option<DefaultDirectRateLimiter>,
}

fn throttle(
    rate: Option<std::num::NonZeroU32>,
) -> Option<DefaultDirectRateLimiter> {
    rate.map(|rate| RateLimiter::direct(Quota::per_minute(rate)))
}

impl From<&AudienceConfig> for AudiencePolicy {
    fn from(config: &AudienceConfig) -> Self {
        Self {
            credentials: Credentials::ApiKey(config.api_key.clone()),
            allowed: config.allowed_cidrs.clone(),
            throttle: throttle(config.requests_per_minute),
        }
    }
}

impl AudiencePolicy {
    fn alpaca(config: &AlpacaAuthConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            credentials: match &config.credentials {
                AlpacaCredentials::ApiKey(key) => {
                    Credentials::ApiKey(key.clone())
                }
                AlpacaCredentials::Signature(signature) => {
                    Credentials::Signature(SignatureVerifier::new(
                        signature.clone(),
                        clock,
                    ))
                }
            },
            allowed: config.allowed_cidrs.clone(),
            throttle: throttle(config.requests_per_minute),
        }
    }

    fn check_address(&self, client: Option<IpAddr>) -> Result<(), AuthError> {
        match client {
            Some(ip) if self.allowed.allows(ip) => Ok(()),
            Some(ip) => Err(AuthError::AddressNotAllowed { ip }),
            None if self.allowed.admits_any() => Ok(()),
            None => Err(AuthError::UnknownAddress),
        }
    }

    /// Credentials, then address; a signature's nonce is recorded last,
    /// only for a request that is otherwise accepted.
    fn check(
        &self,
        request: &Request<'_>,
        client: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        match &self.credentials {
            Credentials::ApiKey(key) => {
                match request.headers().get_one(API_KEY_HEADER) {
                    None => return Err(AuthError::MissingKey),
                    Some(presented) if !key.matches(presented) => {
                        return Err(AuthError::InvalidKey);
                    }
                    Some(_) => {}
                }
                self.check_address(client)
            }
            Credentials::Signature(verifier) => {
                let signature = verifier.verify(request)?;
                self.check_address(client)?;
                verifier.remember(signature)
            }
        }
    }

    fn admit(&self) -> Result<(), AuthError> {
        let Some(throttle) = &self.throttle else {
            return Ok(());
        };
        throttle.check().map_err(|not_until| AuthError::Throttled {
            retry_after_secs: whole_seconds(
                not_until.wait_time_from(DefaultClock::default().now()),
            ),
        })
    }
}

/// Rounds up, so a client never retries too early.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
}

/// Managed state behind the guards.
#[derive(Debug)]
pub struct Authenticator {
    alpaca: AudiencePolicy,
    internal: AudiencePolicy,
    failures: FailureLimiter,
    client_ip: ClientIpSource,
}

impl Authenticator {
    pub fn new(
        auth: &AuthConfig,
        client_ip: ClientIpSource,
        clock: Arc<dyn Clock>,
    ) -> Self {
        if auth.alpaca().allowed_cidrs.admits_any() {
            tracing::warn!(
                target: "auth",
                "auth.alpaca.allowed_cidrs is empty: Alpaca endpoints \
                 accept calls from any address"
            );
        }
        Self {
            alpaca: AudiencePolicy::alpaca(auth.alpaca(), clock),
            internal: auth.internal().into(),
            failures: FailureLimiter::per_minute(auth.failures_per_minute()),
            client_ip,
        }
    }

    fn policy(&self, audience: Audience) -> &AudiencePolicy {
        match audience {
            Audience::Alpaca => &self.alpaca,
            Audience::Internal => &self.internal,
        }
    }

    /// Alpaca's signature checks, when that is Alpaca's scheme.
    fn signature_verifier(&self) -> Option<&SignatureVerifier> {
        match &self.alpaca.credentials {
            Credentials::Signature(verifier) => Some(verifier),
            Credentials::ApiKey(_) => None,
        }
    }

    /// Checks credentials then address. A failure consumes one unit of
    /// the client's failure budget; once spent, failures become
    /// `TooManyFailures`. Successes are never limited.
    pub fn authorize(
        &self,
        request: &Request<'_>,
        audience: Audience,
    ) -> Result<(), AuthError> {
        let policy = self.policy(audience);
        match policy.check(request, self.client_ip.resolve(request)) {
            Ok(()) => policy.admit().inspect_err(|error| {
                tracing::warn!(
                    target: "auth",
                    %audience,
                    client = ?self.client_ip.resolve(request),
                    %error,
                    "request throttled"
                );
            }),
            Err(error) => Err(self.fail(request, audience, error)),
        }
    }

    /// Counts a failed attempt against the client's budget and logs it:
    /// the one log line of an authentication failure.
    fn fail(
        &self,
        request: &Request<'_>,
        audience: Audience,
        error: AuthError,
    ) -> AuthError {
        // Requests without a known address share one budget.
        let client = self
            .client_ip
            .resolve(request)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let error = match self.failures.record_failure(client) {
            Ok(()) => error,
            Err(over) => AuthError::TooManyFailures {
                retry_after_secs: whole_seconds(over.retry_after),
            },
        };
        tracing::warn!(
            target: "auth",
            %audience,
            %client,
            route = request.route().map(|route| route.uri.as_str()),
            %error,
            "authentication failed"
        );
        error
    }
}

/// Ends a guard with `error`, kept in the request for the catcher. The
/// error was logged by [`Authenticator::fail`]; Rocket's own echo of a
/// failing guard is filtered out by `telemetry`.
fn refuse<S, F>(
    request: &Request<'_>,
    error: AuthError,
) -> RocketOutcome<S, (Status, AuthError), F> {
    request.local_cache(|| AuthFailure(Some(error.clone())));
    RocketOutcome::Error((error.status(), error))
}

fn guard(request: &Request<'_>, audience: Audience) -> Outcome<(), AuthError> {
    let result = if let Some(authenticator) =
        request.rocket().state::<Authenticator>()
    {
        authenticator.authorize(request, audience)
    } else {
        tracing::error!(
            target: "auth",
            "Authenticator is not managed; refusing request"
        );
        Err(AuthError::NotConfigured)
    };
    match result {
        Ok(()) => Outcome::Success(()),
        Err(error) => refuse(request, error),
    }
}

/// Proof that the request came from Alpaca: its key, or its signature
/// over everything but the body (which [`AlpacaJson`] checks).
#[derive(Debug, Clone, Copy)]
pub struct AlpacaAuth;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for AlpacaAuth {
    type Error = AuthError;

    async fn from_request(
        request: &'r Request<'_>,
    ) -> Outcome<Self, Self::Error> {
        guard(request, Audience::Alpaca).map(|()| Self)
    }
}

/// Proof that the request came from an operator with the internal key.
#[derive(Debug, Clone, Copy)]
pub struct InternalAuth;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for InternalAuth {
    type Error = AuthError;

    async fn from_request(
        request: &'r Request<'_>,
    ) -> Outcome<Self, Self::Error> {
        guard(request, Audience::Internal).map(|()| Self)
    }
}

#[cfg(test)]
mod signature_tests;
#[cfg(test)]
mod tests;
