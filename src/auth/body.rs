//! The JSON body of an Alpaca call. Read once, as raw bytes
//! (`http::body::read_bytes`: media type, size limit); with the signature
//! scheme those bytes are checked against the signed `Content-Digest`
//! before anything parses them; then they are parsed from the same buffer
//! (`http::body::parse`).
//!
//! Every Alpaca route with a body takes `AlpacaJson<T>` after its
//! `AlpacaAuth` guard (Rocket runs request guards before the data
//! guard), in place of `Result<JsonBody<T>, BodyError>`.

use rocket::Request;
use rocket::data::{self, Data, FromData};
use serde::de::DeserializeOwned;

use super::{Audience, AuthError, Authenticator, SignatureVerifier, refuse};
use crate::http::body::{self as http_body, BodyError, JsonBody};

/// The parsed body, or why it could not be read or parsed (for the
/// handler to answer in its own words). Authentication failures never
/// reach the handler: they end in the 401 catcher.
#[derive(Debug)]
pub struct AlpacaJson<T>(Result<JsonBody<T>, BodyError>);

impl<T> AlpacaJson<T> {
    pub fn into_result(self) -> Result<JsonBody<T>, BodyError> {
        self.0
    }
}

#[rocket::async_trait]
impl<'r, T: DeserializeOwned> FromData<'r> for AlpacaJson<T> {
    type Error = AuthError;

    async fn from_data(
        request: &'r Request<'_>,
        data: Data<'r>,
    ) -> data::Outcome<'r, Self> {
        let Some(authenticator) = request.rocket().state::<Authenticator>()
        else {
            return refuse(request, AuthError::NotConfigured);
        };
        let bytes = match http_body::read_bytes(request, data).await {
            Ok(bytes) => bytes,
            // Refused before any byte is used: nothing to authenticate.
            Err(error) => return data::Outcome::Success(Self(Err(error))),
        };
        // Only a configured signature scheme signs the body's digest.
        if authenticator.signature_verifier().is_some()
            && let Err(error) = SignatureVerifier::check_body(request, &bytes)
        {
            let error =
                authenticator.fail(request, Audience::Alpaca, error.into());
            return refuse(request, error);
        }
        data::Outcome::Success(Self(http_body::parse(bytes).map(JsonBody)))
    }
}
