//! JSON catchers: every error Rocket produces itself (no route, guard
//! failures, oversized or malformed bodies) is answered with the same
//! `{"error": ...}` envelope as handler errors.

use rocket::http::Status;
use rocket::{Catcher, Request};

use super::ApiError;
use crate::auth::AuthFailure;

/// One default catcher covers every status, so no status can slip
/// through as Rocket's HTML page.
pub fn catchers() -> Vec<Catcher> {
    rocket::catchers![json_catcher]
}

#[rocket::catch(default)]
fn json_catcher(status: Status, request: &Request<'_>) -> ApiError {
    if let Some(auth) = AuthFailure::of(request)
        && auth.status() == status
    {
        return ApiError::from(&auth);
    }
    ApiError::new(status, message(status, request))
}

fn message(status: Status, request: &Request<'_>) -> String {
    match status.code {
        400 => "bad request".to_owned(),
        401 => "missing or invalid API key".to_owned(),
        403 => "forbidden".to_owned(),
        404 => format!("no such endpoint: {} {}", request.method(), {
            request.uri().path()
        }),
        405 => "method not allowed".to_owned(),
        409 => "conflict".to_owned(),
        413 => match request.limits().get("json") {
            Some(limit) => format!(
                "request body exceeds the limit of {} bytes",
                limit.as_u64()
            ),
            None => "request body too large".to_owned(),
        },
        415 => "unsupported media type: send application/json".to_owned(),
        422 => "request body does not match the expected schema".to_owned(),
        429 => "too many requests".to_owned(),
        500 => "internal server error".to_owned(),
        503 => "service unavailable".to_owned(),
        _ => status
            .reason()
            .map_or_else(|| format!("status {}", status.code), str::to_owned),
    }
}
