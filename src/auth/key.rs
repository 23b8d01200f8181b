//! API keys: validated at load time, kept only as a SHA-256 digest and
//! compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Minimum number of characters an API key must have.
pub const MIN_API_KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("API key is {actual} characters long; at least {min} are required")]
    TooShort { actual: usize, min: usize },
    #[error(
        "API key contains a character outside printable ASCII at position \
         {position} (it could never match an HTTP header)"
    )]
    InvalidCharacter { position: usize },
}

/// An API key for one audience. Only the digest is kept, so the key
/// itself cannot leak through `Debug`, logs or a memory dump of the
/// config.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl ApiKey {
    pub fn new(key: &str) -> Result<Self, ApiKeyError> {
        if let Some(position) =
            key.bytes().position(|byte| !byte.is_ascii_graphic())
        {
            return Err(ApiKeyError::InvalidCharacter { position });
        }
        // Printable ASCII only, so bytes == characters.
        if key.len() < MIN_API_KEY_LEN {
            return Err(ApiKeyError::TooShort {
                actual: key.len(),
                min: MIN_API_KEY_LEN,
            });
        }
        Ok(Self {
            digest: Sha256::digest(key.as_bytes()).into(),
        })
    }

    /// Constant-time check of a presented key. Both sides are hashed to
    /// fixed-length digests first, so the comparison time does not depend
    /// on the presented key's length or content.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest.ct_eq(&presented).into()
    }

    /// Whether two configured keys are the same key.
    pub fn same_key_as(&self, other: &Self) -> bool {
        self.digest.ct_eq(&other.digest).into()
    }
}

impl TryFrom<String> for ApiKey {
    type Error = ApiKeyError;

    fn try_from(key: String) -> Result<Self, Self::Error> {
        Self::new(&key)
    }
}

impl<'de> serde::Deserialize<'de> for ApiKey {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        let key = secrecy::SecretString::deserialize(deserializer)?;
        Self::new(secrecy::ExposeSecret::expose_secret(&key))
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_a_long_enough_key_and_matches_it() {
        let key = ApiKey::new(KEY).unwrap();
        assert!(key.matches(KEY));
        assert!(!key.matches("0123456789abcdef0123456789abcdeX"));
        assert!(!key.matches(""));
        assert!(!key.matches(&format!("{KEY}0")));
    }

    #[test]
    fn rejects_short_keys() {
        assert_eq!(
            ApiKey::new("short").unwrap_err(),
            ApiKeyError::TooShort {
                actual: 5,
                min: MIN_API_KEY_LEN
            }
        );
    }

    #[test]
    fn rejects_non_printable_keys() {
        let key = format!("{KEY} with space");
        assert_eq!(
            ApiKey::new(&key).unwrap_err(),
            ApiKeyError::InvalidCharacter { position: 32 }
        );
    }

    #[test]
    fn debug_is_redacted() {
        let key = ApiKey::new(KEY).unwrap();
        let debug = format!("{key:?}");
        assert_eq!(debug, "ApiKey([REDACTED])");
        assert!(!debug.contains("0123"));
    }

    #[test]
    fn same_key_as_compares_keys() {
        let a = ApiKey::new(KEY).unwrap();
        let b = ApiKey::new(KEY).unwrap();
        let c = ApiKey::new("ffffffffffffffffffffffffffffffff").unwrap();
        assert!(a.same_key_as(&b));
        assert!(!a.same_key_as(&c));
    }
}
