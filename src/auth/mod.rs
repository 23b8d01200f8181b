//! Request guards for the two audiences: Alpaca (the ITN endpoints) and
//! internal operators (admin endpoints). Each audience has its own API key
//! (header `X-API-KEY`) and CIDR allow-list; failed attempts are limited
//! per client address.
//!
//! Usage: add `_auth: AlpacaAuth` or `_auth: InternalAuth` to a handler.
//! Failures end in the JSON catchers with 401, 403 or 429.

pub mod ip;
pub mod key;
pub mod rate_limit;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use rocket::Request;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};

pub use ip::{AllowList, ClientIpHeader, ClientIpSource};
pub use key::{ApiKey, ApiKeyError};
use rate_limit::FailureLimiter;

use crate::config::{AudienceConfig, AuthConfig};

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
    #[error("authentication is not configured")]
    NotConfigured,
}

impl AuthError {
    pub fn status(&self) -> Status {
        match self {
            Self::MissingKey | Self::InvalidKey => Status::Unauthorized,
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

#[derive(Debug)]
struct AudiencePolicy {
    key: ApiKey,
    allowed: AllowList,
    /// Shared by every caller of the audience: it protects the service
    /// (and the chain and Alpaca calls behind it), not one client.
    throttle: Option<DefaultDirectRateLimiter>,
}

impl From<&AudienceConfig> for AudiencePolicy {
    fn from(config: &AudienceConfig) -> Self {
        Self {
            key: config.api_key.clone(),
            allowed: config.allowed_cidrs.clone(),
            throttle: config
                .requests_per_minute
                .map(|rate| RateLimiter::direct(Quota::per_minute(rate))),
        }
    }
}

impl AudiencePolicy {
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
    pub fn new(auth: &AuthConfig, client_ip: ClientIpSource) -> Self {
        if auth.alpaca().allowed_cidrs.admits_any() {
            tracing::warn!(
                target: "auth",
                "auth.alpaca.allowed_cidrs is empty: Alpaca endpoints \
                 accept calls from any address"
            );
        }
        Self {
            alpaca: auth.alpaca().into(),
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

    /// Checks key then address. A failure consumes one unit of the
    /// client's failure budget; once spent, failures become
    /// `TooManyFailures`. Successes are never limited.
    pub fn authorize(
        &self,
        request: &Request<'_>,
        audience: Audience,
    ) -> Result<(), AuthError> {
        let client = self.client_ip.resolve(request);
        let policy = self.policy(audience);
        let verdict = match request.headers().get_one(API_KEY_HEADER) {
            None => Err(AuthError::MissingKey),
            Some(presented) if !policy.key.matches(presented) => {
                Err(AuthError::InvalidKey)
            }
            Some(_) => match client {
                Some(ip) if policy.allowed.allows(ip) => Ok(()),
                Some(ip) => Err(AuthError::AddressNotAllowed { ip }),
                None if policy.allowed.admits_any() => Ok(()),
                None => Err(AuthError::UnknownAddress),
            },
        };
        let Err(error) = verdict else {
            return policy.admit().inspect_err(|error| {
                tracing::warn!(
                    target: "auth",
                    %audience,
                    client = ?client,
                    %error,
                    "request throttled"
                );
            });
        };
        // Requests without a known address share one budget.
        let budget_key = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let error = match self.failures.record_failure(budget_key) {
            Ok(()) => error,
            Err(over) => AuthError::TooManyFailures {
                retry_after_secs: whole_seconds(over.retry_after),
            },
        };
        tracing::warn!(
            target: "auth",
            %audience,
            client = %budget_key,
            route = request.route().map(|route| route.uri.as_str()),
            %error,
            "authentication failed"
        );
        Err(error)
    }
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
        Err(error) => {
            request.local_cache(|| AuthFailure(Some(error.clone())));
            Outcome::Error((error.status(), error))
        }
    }
}

/// Proof that the request came from Alpaca with Alpaca's key.
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
mod tests;
