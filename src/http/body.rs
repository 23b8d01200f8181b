//! The JSON body guard of the Alpaca-facing POSTs (account link, mint
//! request, mint confirmation).
//!
//! Rocket's `Json` guard reads the body with `read_to_string`, so an
//! invalid UTF-8 body surfaces as an I/O error ("could not be read") and a
//! body whose size limit cuts a multi-byte character looks invalid rather
//! than oversized; it also ignores `Content-Type`. [`JsonBody`] keeps the
//! cases apart, in this order:
//!
//! 1. an explicit `Content-Type` that is not JSON (`application/json`, or
//!    `application/<anything>+json`, parameters ignored) or cannot be
//!    parsed → [`BodyError::UnsupportedMediaType`] (415); a request without
//!    `Content-Type` is read as JSON (Alpaca sends `application/json`;
//!    a caller that omits the header is not refused for it);
//! 2. more bytes than the `json` limit → [`BodyError::TooLarge`] (413),
//!    decided on the raw bytes before any decoding;
//! 3. the transport failing mid-body → [`BodyError::Unreadable`] (400);
//! 4. bytes that are not UTF-8 → [`BodyError::NotUtf8`]: JSON text is
//!    UTF-8 (RFC 8259 §8.1), so this is a malformed body, like
//! 5. text that is not JSON or does not fit the type →
//!    [`BodyError::Json`].
//!
//! Alpaca's routes take `auth::AlpacaJson<T>` (the same steps, plus the
//! signed `Content-Digest` check between reading and parsing when Alpaca
//! signs its calls) and call `into_result()`; other routes would take
//! `Result<JsonBody<T>, BodyError>`. Either way the handler maps the
//! error with [`ApiError::from_body_error`] or its own wording (the mint
//! endpoints answer 4 and 5 with Alpaca's `Failed Validation: Invalid
//! data payload`). Request guards (authentication) run before this data
//! guard, so an unauthenticated request is 401 whatever its body.

use std::io;

use rocket::Request;
use rocket::data::{self, Data, FromData, Limits};
use rocket::http::{ContentType, Status};
use serde::de::DeserializeOwned;

use super::ApiError;

/// A request body parsed as JSON into `T` (see the module docs).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The `Content-Type` header as sent (at most 100 characters).
    #[error("unsupported media type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    #[error("request body exceeds the size limit")]
    TooLarge,
    #[error("request body could not be read: {0}")]
    Unreadable(io::Error),
    #[error("request body is not valid UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Json(serde_json::Error),
}

impl BodyError {
    /// The status the guard reports when a route takes `JsonBody<T>`
    /// without a `Result`.
    pub fn status(&self) -> Status {
        match self {
            Self::UnsupportedMediaType(_) => Status::UnsupportedMediaType,
            Self::TooLarge => Status::PayloadTooLarge,
            Self::Unreadable(_) => Status::BadRequest,
            Self::NotUtf8 | Self::Json(_) => Status::UnprocessableEntity,
        }
    }

    /// True when the bytes arrived but are not a valid body of the
    /// expected shape (cases 4 and 5).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::NotUtf8 | Self::Json(_))
    }
}

/// `application/json` or a structured `+json` subtype; parameters such
/// as `charset` are ignored (the bytes must be UTF-8 either way).
pub fn is_json(content_type: &ContentType) -> bool {
    content_type.top() == "application"
        && (content_type.sub() == "json"
            || content_type
                .sub()
                .as_str()
                .to_ascii_lowercase()
                .ends_with("+json"))
}

/// `None` when the request may carry JSON: no `Content-Type` at all, or a
/// JSON one.
pub fn content_type_error(request: &Request<'_>) -> Option<BodyError> {
    let raw = request.headers().get_one("Content-Type")?;
    match request.content_type() {
        Some(content_type) if is_json(content_type) => None,
        _ => Some(BodyError::UnsupportedMediaType(
            raw.chars().take(100).collect(),
        )),
    }
}

#[rocket::async_trait]
impl<'r, T: DeserializeOwned> FromData<'r> for JsonBody<T> {
    type Error = BodyError;

    async fn from_data(
        request: &'r Request<'_>,
        data: Data<'r>,
    ) -> data::Outcome<'r, Self> {
        match read(request, data).await {
            Ok(value) => data::Outcome::Success(Self(value)),
            Err(error) => data::Outcome::Error((error.status(), error)),
        }
    }
}

async fn read<T: DeserializeOwned>(
    request: &Request<'_>,
    data: Data<'_>,
) -> Result<T, BodyError> {
    parse(read_bytes(request, data).await?)
}

/// Cases 1–3: the raw body bytes, read once. Signed Alpaca calls check
/// them against their `Content-Digest` before [`parse`]
/// (`auth::AlpacaJson`).
pub async fn read_bytes(
    request: &Request<'_>,
    data: Data<'_>,
) -> Result<Vec<u8>, BodyError> {
    if let Some(error) = content_type_error(request) {
        return Err(error);
    }
    let limit = request.limits().get("json").unwrap_or(Limits::JSON);
    let bytes = data
        .open(limit)
        .into_bytes()
        .await
        .map_err(BodyError::Unreadable)?;
    if !bytes.is_complete() {
        return Err(BodyError::TooLarge);
    }
    Ok(bytes.into_inner())
}

/// Cases 4–5: the bytes as UTF-8 JSON of type `T`.
pub fn parse<T: DeserializeOwned>(bytes: Vec<u8>) -> Result<T, BodyError> {
    let text = String::from_utf8(bytes).map_err(|_| BodyError::NotUtf8)?;
    serde_json::from_str(&text).map_err(BodyError::Json)
}

impl ApiError {
    /// The generic answer to a [`BodyError`]: 415, 413, 400 `request body
    /// could not be read`, or 422 `invalid request body: …` for a body
    /// that is not UTF-8, not JSON or not of the expected shape.
    pub fn from_body_error(error: &BodyError) -> Self {
        match error {
            BodyError::UnsupportedMediaType(_) => Self::new(
                Status::UnsupportedMediaType,
                "unsupported media type: send application/json",
            ),
            BodyError::TooLarge => Self::new(
                Status::PayloadTooLarge,
                "request body exceeds the size limit",
            ),
            BodyError::Unreadable(_) => {
                Self::bad_request("request body could not be read")
            }
            BodyError::NotUtf8 | BodyError::Json(_) => {
                Self::unprocessable(format!("invalid request body: {error}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn json(raw: &str) -> bool {
        is_json(&ContentType::from_str(raw).unwrap())
    }

    #[test]
    fn json_media_types() {
        for raw in [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/Json",
            "application/problem+json",
            "application/vnd.alpaca.v2+JSON; q=1",
        ] {
            assert!(json(raw), "{raw}");
        }
        for raw in [
            "text/plain",
            "text/json",
            "application/jsonp",
            "application/json-seq",
            "application/x-json+xml",
            "application/octet-stream",
            "multipart/form-data; boundary=x",
            "*/*",
        ] {
            assert!(!json(raw), "{raw}");
        }
    }

    #[test]
    fn statuses_and_generic_answers() {
        let not_utf8 = BodyError::NotUtf8;
        assert!(not_utf8.is_malformed());
        assert_eq!(not_utf8.status(), Status::UnprocessableEntity);
        let answer = ApiError::from_body_error(&not_utf8);
        assert_eq!(answer.status(), Status::UnprocessableEntity);
        assert_eq!(
            answer.message(),
            "invalid request body: request body is not valid UTF-8"
        );
        let media = BodyError::UnsupportedMediaType("text/plain".into());
        assert!(!media.is_malformed());
        assert_eq!(
            ApiError::from_body_error(&media).status(),
            Status::UnsupportedMediaType
        );
        assert!(!BodyError::TooLarge.is_malformed());
        assert_eq!(
            ApiError::from_body_error(&BodyError::TooLarge).status(),
            Status::PayloadTooLarge
        );
        let unreadable =
            BodyError::Unreadable(io::Error::other("connection reset"));
        assert!(!unreadable.is_malformed());
        assert_eq!(
            ApiError::from_body_error(&unreadable).message(),
            "request body could not be read"
        );
    }
}
