//! HTTP plumbing shared by every feature: the JSON error envelope, the
//! JSON body guard of Alpaca's POSTs, JSON catchers, liveness/readiness
//! endpoints and per-request telemetry.

pub mod body;
pub mod catchers;
mod config;
pub mod front;
pub mod health;
pub mod request_log;

use std::fmt;
use std::io::ErrorKind;
use std::net::SocketAddr;

use rocket::Request;
use rocket::config::{Ident, LogLevel};
use rocket::http::{Header, Status};
use rocket::response::{self, Responder, Response};
use rocket::serde::json::{self, Json};
use serde::{Deserialize, Serialize};

use crate::auth::AuthError;

pub use config::{BodyLimit, InvalidBodyLimit, ServerConfig};

/// Rocket settings shared by every listener: bound to `bind`, Rocket's
/// own logging off (we log through `tracing`), no `Server` header.
pub fn rocket_config(bind: SocketAddr) -> rocket::Config {
    rocket::Config {
        address: bind.ip(),
        port: bind.port(),
        log_level: LogLevel::Off,
        cli_colors: false,
        ident: Ident::none(),
        ip_header: None,
        ..rocket::Config::release_default()
    }
}

/// The body of every error response: `{"error": "<message>"}`.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct ErrorBody {
    pub error: String,
}

/// An error answer: a status and a message safe to show the caller.
/// Feature error enums convert into this at the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: Status,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Status::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Status::Conflict, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(Status::UnprocessableEntity, message)
    }

    /// A transient condition: the caller should retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Status::ServiceUnavailable, message)
    }

    /// An unexpected failure. The cause is logged once here, at ERROR,
    /// with its source chain; the caller only sees a generic message.
    pub fn internal<E: std::error::Error>(error: E) -> Self {
        tracing::error!(
            target: "http",
            error = %ErrorChain(&error),
            "internal error while handling request"
        );
        Self::new(Status::InternalServerError, "internal server error")
    }

    /// Maps the error of a `Result<Json<T>, json::Error>` parameter: an
    /// oversized body is 413, an unreadable one 400, a body that does not
    /// fit the schema 422 with serde's explanation.
    pub fn from_json_error(error: &json::Error<'_>) -> Self {
        match error {
            json::Error::Io(io) if io.kind() == ErrorKind::UnexpectedEof => {
                Self::new(
                    Status::PayloadTooLarge,
                    "request body exceeds the size limit",
                )
            }
            json::Error::Io(_) => {
                Self::bad_request("request body could not be read")
            }
            json::Error::Parse(_, parse) => {
                Self::unprocessable(format!("invalid request body: {parse}"))
            }
        }
    }

    /// Adds a `Retry-After` header (seconds).
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl From<&AuthError> for ApiError {
    fn from(error: &AuthError) -> Self {
        let api = Self::new(error.status(), error.to_string());
        match error {
            AuthError::TooManyFailures { retry_after_secs }
            | AuthError::Throttled { retry_after_secs } => {
                api.with_retry_after(*retry_after_secs)
            }
            AuthError::NotConfigured => {
                Self::new(Status::InternalServerError, "internal server error")
            }
            _ => api,
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let body = Json(ErrorBody {
            error: self.message,
        });
        let mut response = Response::build_from(body.respond_to(request)?);
        response.status(self.status);
        if let Some(seconds) = self.retry_after_secs {
            response.header(Header::new("Retry-After", seconds.to_string()));
        }
        Ok(response.finalize())
    }
}

/// Displays an error followed by its sources: `a: b: c`.
pub struct ErrorChain<'a, E: ?Sized>(pub &'a E);

impl<E: std::error::Error + ?Sized> fmt::Display for ErrorChain<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
