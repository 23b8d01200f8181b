//! Alpaca's second scheme (itn-wire.md §4.1): every call carries an
//! RFC 9421 signature made with Alpaca's Ed25519 key, over `@method` and
//! `@target-uri`, plus `content-type` and `content-digest` when there is
//! a body; `Content-Digest` (RFC 9530) binds the body bytes.
//!
//! Our choices where Alpaca is silent: `created` must lie within
//! `max_skew_secs` of our clock, `expires` is honoured when sent, each
//! `nonce` is accepted once (kept in a bounded cache for the skew
//! window), and several keys may be configured at once so that a
//! rotation can overlap; a key may carry a `not_after` after which it is
//! refused. X-API-KEY is not accepted in this mode.
//!
//! The request guard checks everything but the body; the body's digest
//! is checked by the [`super::AlpacaJson`] data guard, which reads it
//! exactly once.

use std::fmt;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use rocket::Request;
use rocket::http::Method;
use serde::Deserialize;

use super::digest::{self, CONTENT_DIGEST, DigestError};
use super::httpsig::{HttpSigError, Message, SignatureInput};
use super::replay::{MAX_NONCE_LEN, NonceCache, Refused};
use super::{API_KEY_HEADER, AuthError};
use crate::clock::Clock;

pub const SIGNATURE_INPUT: &str = "Signature-Input";
pub const SIGNATURE: &str = "Signature";
/// The only algorithm Alpaca uses (and the only one we accept).
pub const ALGORITHM: &str = "ed25519";

/// Why a signed request is refused (all 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {header} header")]
    MissingHeader { header: &'static str },
    #[error(
        "this issuer authenticates Alpaca by HTTP message signature \
         (Signature-Input, Signature); X-API-KEY is not accepted"
    )]
    ApiKeyNotAccepted,
    #[error(transparent)]
    Input(#[from] HttpSigError),
    #[error("the signature must cover \"{component}\"")]
    MissingComponent { component: &'static str },
    #[error("signature algorithm {alg:?} is not supported; use {ALGORITHM:?}")]
    UnsupportedAlgorithm { alg: String },
    #[error("unknown keyid {keyid:?}")]
    UnknownKeyId { keyid: String },
    #[error("keyid {keyid:?} is no longer accepted (not_after {not_after})")]
    KeyExpired {
        keyid: String,
        not_after: DateTime<Utc>,
    },
    #[error(
        "signature `created` {created} is stale: more than {max_skew_secs} s \
         before our clock ({now})"
    )]
    Stale {
        created: i64,
        now: i64,
        max_skew_secs: u64,
    },
    #[error(
        "signature `created` {created} is in the future: more than \
         {max_skew_secs} s after our clock ({now})"
    )]
    Future {
        created: i64,
        now: i64,
        max_skew_secs: u64,
    },
    #[error("signature expired at {expires} (our clock: {now})")]
    Expired { expires: i64, now: i64 },
    #[error("signature `nonce` is longer than {MAX_NONCE_LEN} characters")]
    NonceTooLong,
    #[error("nonce {nonce:?} was already used")]
    ReplayedNonce { nonce: String },
    #[error(
        "bad signature: it does not verify with keyid {keyid:?} over the \
         signature base (with @target-uri {target_uri})"
    )]
    BadSignature { keyid: String, target_uri: String },
    #[error(transparent)]
    Digest(#[from] DigestError),
}

#[derive(Debug, thiserror::Error)]
pub enum SignatureConfigError {
    #[error("auth.alpaca.signature_keys must name at least one key")]
    NoKeys,
    #[error("auth.alpaca.signature_keys: a keyid is empty")]
    EmptyKeyId,
    #[error("auth.alpaca.signature_keys: keyid {keyid:?} is listed twice")]
    DuplicateKeyId { keyid: String },
    #[error(
        "auth.alpaca.signature_keys: keyid {keyid:?} needs exactly one of \
         public_key_pem or public_key_file"
    )]
    KeySource { keyid: String },
    #[error(
        "auth.alpaca.signature_keys: cannot read public_key_file {} of keyid \
         {keyid:?}: {source}", path.display()
    )]
    ReadKeyFile {
        keyid: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "auth.alpaca.signature_keys: keyid {keyid:?} is not an Ed25519 public \
         key in PEM (-----BEGIN PUBLIC KEY-----): {reason}"
    )]
    InvalidKey { keyid: String, reason: String },
    #[error(
        "auth.alpaca.public_base_url {url:?} must be an http:// or https:// \
         URL without query or fragment"
    )]
    InvalidBaseUrl { url: String },
}

/// One of Alpaca's public keys, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureKeySpec {
    keyid: String,
    #[serde(default)]
    public_key_pem: Option<String>,
    #[serde(default)]
    public_key_file: Option<PathBuf>,
    #[serde(default)]
    not_after: Option<DateTime<Utc>>,
}

/// One of Alpaca's public keys with its `keyid`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SignatureKeySpec")]
pub struct SignatureKey {
    keyid: String,
    key: VerifyingKey,
    not_after: Option<DateTime<Utc>>,
}

impl SignatureKey {
    /// A key from its PEM text (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(
        keyid: &str,
        pem: &str,
        not_after: Option<DateTime<Utc>>,
    ) -> Result<Self, SignatureConfigError> {
        if keyid.is_empty() {
            return Err(SignatureConfigError::EmptyKeyId);
        }
        let key =
            VerifyingKey::from_public_key_pem(pem.trim()).map_err(|error| {
                SignatureConfigError::InvalidKey {
                    keyid: keyid.to_owned(),
                    reason: error.to_string(),
                }
            })?;
        Ok(Self {
            keyid: keyid.to_owned(),
            key,
            not_after,
        })
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    pub fn not_after(&self) -> Option<DateTime<Utc>> {
        self.not_after
    }
}

impl TryFrom<SignatureKeySpec> for SignatureKey {
    type Error = SignatureConfigError;

    fn try_from(spec: SignatureKeySpec) -> Result<Self, Self::Error> {
        let pem = match (spec.public_key_pem, spec.public_key_file) {
            (Some(pem), None) => pem,
            (None, Some(path)) => {
                std::fs::read_to_string(&path).map_err(|source| {
                    SignatureConfigError::ReadKeyFile {
                        keyid: spec.keyid.clone(),
                        path,
                        source,
                    }
                })?
            }
            _ => {
                return Err(SignatureConfigError::KeySource {
                    keyid: spec.keyid,
                });
            }
        };
        Self::from_pem(&spec.keyid, &pem, spec.not_after)
    }
}

impl fmt::Debug for SignatureKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureKey")
            .field("keyid", &self.keyid)
            .field("key", &hex::encode(self.key.as_bytes()))
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Where Alpaca sends its calls (`public_base_url`): the scheme and
/// authority of `@target-uri`, plus any path prefix a reverse proxy
/// strips before the request reaches us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBaseUrl {
    scheme: String,
    authority: String,
    path_prefix: String,
}

impl PublicBaseUrl {
    pub fn new(url: &str) -> Result<Self, SignatureConfigError> {
        let invalid = || SignatureConfigError::InvalidBaseUrl {
            url: url.to_owned(),
        };
        let parsed = reqwest::Url::parse(url).map_err(|_| invalid())?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(invalid());
        }
        let host = parsed.host_str().ok_or_else(invalid)?;
        let authority = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            scheme: parsed.scheme().to_owned(),
            authority,
            path_prefix: parsed.path().trim_end_matches('/').to_owned(),
        })
    }
}

impl std::fmt::Display for PublicBaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme, self.authority, self.path_prefix
        )
    }
}

impl<'de> Deserialize<'de> for PublicBaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        Self::new(&String::deserialize(deserializer)?)
            .map_err(serde::de::Error::custom)
    }
}

/// `auth.alpaca` with `scheme = "signature"`.
#[derive(Debug, Clone)]
pub struct SignatureConfig {
    keys: Vec<SignatureKey>,
    max_skew_secs: NonZeroU64,
    nonce_cache_capacity: NonZeroUsize,
    public_base_url: Option<PublicBaseUrl>,
}

impl SignatureConfig {
    pub const DEFAULT_MAX_SKEW_SECS: NonZeroU64 = NonZeroU64::new(300).unwrap();
    pub const DEFAULT_NONCE_CACHE_CAPACITY: NonZeroUsize =
        NonZeroUsize::new(100_000).unwrap();

    pub fn new(
        keys: Vec<SignatureKey>,
        max_skew_secs: NonZeroU64,
        nonce_cache_capacity: NonZeroUsize,
        public_base_url: Option<PublicBaseUrl>,
    ) -> Result<Self, SignatureConfigError> {
        if keys.is_empty() {
            return Err(SignatureConfigError::NoKeys);
        }
        for (index, key) in keys.iter().enumerate() {
            if keys[..index].iter().any(|other| other.keyid == key.keyid) {
                return Err(SignatureConfigError::DuplicateKeyId {
                    keyid: key.keyid.clone(),
                });
            }
        }
        Ok(Self {
            keys,
            max_skew_secs,
            nonce_cache_capacity,
            public_base_url,
        })
    }

    pub fn keys(&self) -> &[SignatureKey] {
        &self.keys
    }

    pub fn max_skew_secs(&self) -> NonZeroU64 {
        self.max_skew_secs
    }

    pub fn nonce_cache_capacity(&self) -> NonZeroUsize {
        self.nonce_cache_capacity
    }

    pub fn public_base_url(&self) -> Option<&PublicBaseUrl> {
        self.public_base_url.as_ref()
    }
}

/// A signature that verified, whose nonce is still to be recorded.
#[derive(Debug)]
pub struct Verified {
    nonce: String,
    keep_until: i64,
}

/// Checks Alpaca's signatures; managed inside the `Authenticator`.
pub struct SignatureVerifier {
    config: SignatureConfig,
    /// Skew as a signed number of seconds (clamped), for time arithmetic.
    skew: i64,
    nonces: NonceCache,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureVerifier")
            .field("config", &self.config)
            .field("nonces", &self.nonces.len())
            .finish_non_exhaustive()
    }
}

/// Methods whose requests carry a body, so must sign its digest.
fn has_body(method: Method) -> bool {
    matches!(method, Method::Post | Method::Put | Method::Patch)
}

/// Every value of a header, in order.
fn field_values(request: &Request<'_>, name: &str) -> Vec<String> {
    request.headers().get(name).map(str::to_owned).collect()
}

/// A dictionary header, its lines combined (RFC 8941 §3.2 allows one to
/// be split across several).
fn dictionary(request: &Request<'_>, name: &str) -> Option<String> {
    let values = field_values(request, name);
    (!values.is_empty()).then(|| values.join(", "))
}

impl SignatureVerifier {
    pub fn new(config: SignatureConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            skew: i64::try_from(config.max_skew_secs.get()).unwrap_or(i64::MAX),
            nonces: NonceCache::new(config.nonce_cache_capacity),
            config,
            clock,
        }
    }

    /// Everything about a request but its body: headers present, the
    /// components and parameters Alpaca must sign, the key, the time
    /// window, the signature itself.
    pub fn verify(
        &self,
        request: &Request<'_>,
    ) -> Result<Verified, SignatureError> {
        let Some(signature_input) = dictionary(request, SIGNATURE_INPUT) else {
            if request.headers().contains(API_KEY_HEADER) {
                return Err(SignatureError::ApiKeyNotAccepted);
            }
            return Err(SignatureError::MissingHeader {
                header: SIGNATURE_INPUT,
            });
        };
        let signature = dictionary(request, SIGNATURE)
            .ok_or(SignatureError::MissingHeader { header: SIGNATURE })?;
        let input = SignatureInput::from_headers(&signature_input, &signature)?;
        Self::check_coverage(&input, request.method())?;
        let keyid =
            required(input.string_param("keyid")?, "keyid", "a string")?;
        let created =
            required(input.integer_param("created")?, "created", "an integer")?;
        let nonce =
            required(input.string_param("nonce")?, "nonce", "a string")?;
        if nonce.len() > MAX_NONCE_LEN {
            return Err(SignatureError::NonceTooLong);
        }
        if let Some(alg) = input.string_param("alg")?
            && alg != ALGORITHM
        {
            return Err(SignatureError::UnsupportedAlgorithm {
                alg: alg.to_owned(),
            });
        }
        let now = self.clock.now();
        let key = self.key(keyid, now)?;
        self.check_time(&input, created, now.timestamp())?;

        let fields = |name: &str| field_values(request, name);
        let (scheme, authority, path) = self.public_parts(request);
        let message = Message {
            method: request.method().as_str(),
            scheme,
            authority: &authority,
            path: &path,
            query: request.uri().query().map(|query| query.as_str()),
            field: &fields,
        };
        let base = input.signature_base(&message)?;
        if !input.verifies(&key.key, &base) {
            // Which of the request's signatures was checked: Alpaca's is
            // labelled `sig`; another label points at the sender.
            tracing::debug!(target: "auth", label = %input.label, keyid, "signature does not verify");
            return Err(SignatureError::BadSignature {
                keyid: keyid.to_owned(),
                target_uri: message.target_uri(),
            });
        }
        Ok(Verified {
            nonce: nonce.to_owned(),
            keep_until: created.saturating_add(self.skew),
        })
    }

    /// Records the nonce of a verified signature: the last step, taken
    /// only for requests that are otherwise accepted.
    pub fn remember(&self, verified: Verified) -> Result<(), AuthError> {
        let now = self.clock.now().timestamp();
        self.nonces
            .remember(&verified.nonce, verified.keep_until, now)
            .map_err(|refused| match refused {
                Refused::Replayed => {
                    AuthError::Signature(SignatureError::ReplayedNonce {
                        nonce: verified.nonce,
                    })
                }
                // Only validly signed requests get here, so this is
                // Alpaca's own volume: answer as a throttle, not a 401.
                Refused::Full { retry_after_secs } => {
                    AuthError::Throttled { retry_after_secs }
                }
            })
    }

    /// The body against the signed `Content-Digest`.
    pub fn check_body(
        request: &Request<'_>,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let header =
            dictionary(request, CONTENT_DIGEST).ok_or(DigestError::Missing)?;
        Ok(digest::verify(&header, body)?)
    }

    fn check_coverage(
        input: &SignatureInput,
        method: Method,
    ) -> Result<(), SignatureError> {
        let required: &[&'static str] = if has_body(method) {
            &["@method", "@target-uri", "content-type", "content-digest"]
        } else {
            &["@method", "@target-uri"]
        };
        match required.iter().find(|name| !input.covers(name)) {
            Some(component) => {
                Err(SignatureError::MissingComponent { component })
            }
            None => Ok(()),
        }
    }

    fn key(
        &self,
        keyid: &str,
        now: DateTime<Utc>,
    ) -> Result<&SignatureKey, SignatureError> {
        let key = self
            .config
            .keys
            .iter()
            .find(|key| key.keyid == keyid)
            .ok_or_else(|| SignatureError::UnknownKeyId {
                keyid: keyid.to_owned(),
            })?;
        match key.not_after {
            Some(not_after) if now > not_after => {
                Err(SignatureError::KeyExpired {
                    keyid: keyid.to_owned(),
                    not_after,
                })
            }
            _ => Ok(key),
        }
    }

    fn check_time(
        &self,
        input: &SignatureInput,
        created: i64,
        now: i64,
    ) -> Result<(), SignatureError> {
        let max_skew_secs = self.config.max_skew_secs.get();
        if created < now.saturating_sub(self.skew) {
            return Err(SignatureError::Stale {
                created,
                now,
                max_skew_secs,
            });
        }
        if created > now.saturating_add(self.skew) {
            return Err(SignatureError::Future {
                created,
                now,
                max_skew_secs,
            });
        }
        if let Some(expires) = input.integer_param("expires")?
            && now > expires
        {
            return Err(SignatureError::Expired { expires, now });
        }
        Ok(())
    }

    /// Scheme, authority and path as Alpaca addressed the request.
    fn public_parts<'a>(
        &'a self,
        request: &Request<'_>,
    ) -> (&'a str, String, String) {
        let path = request.uri().path().as_str();
        match &self.config.public_base_url {
            Some(base) => (
                &base.scheme,
                base.authority.clone(),
                format!("{}{path}", base.path_prefix),
            ),
            // Without a proxy in front, we are what Alpaca called (`Host`,
            // or HTTP/2's `:authority`).
            None => (
                "http",
                request
                    .headers()
                    .get_one("Host")
                    .map(str::to_owned)
                    .or_else(|| request.host().map(ToString::to_string))
                    .unwrap_or_default(),
                path.to_owned(),
            ),
        }
    }
}

fn required<T>(
    value: Option<T>,
    name: &'static str,
    expected: &'static str,
) -> Result<T, SignatureError> {
    value.ok_or(SignatureError::Input(HttpSigError::MissingParameter {
        name,
        expected,
    }))
}
