//! Secrets generated fresh for every run: the two API keys the service
//! checks and the Broker API credentials the simulator checks. Nothing
//! is reused between runs, so a key printed by an old run never works.

use std::fmt;

use rand::Rng;
use rand::distr::Alphanumeric;

/// Random characters after the prefix; the service wants at least 32.
const KEY_RANDOM_CHARS: usize = 40;

/// An API key: `<prefix>-` followed by 40 random alphanumerics.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn generate(prefix: &str) -> Self {
        Self(format!(
            "{prefix}-{}",
            random_alphanumeric(KEY_RANDOM_CHARS)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Printed in full on purpose: a person copies them into curl. `Debug`
/// still redacts, so they never leak into error chains.
impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Everything secret in one run.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Alpaca presents it to the service (`[auth.alpaca]`).
    pub alpaca: ApiKey,
    /// Operators present it to the service (`[auth.internal]`).
    pub internal: ApiKey,
    /// The service presents these to the simulator's Broker API.
    pub broker_key_id: ApiKey,
    pub broker_secret: ApiKey,
}

impl Credentials {
    pub fn generate() -> Self {
        Self {
            alpaca: ApiKey::generate("devnet-alpaca"),
            internal: ApiKey::generate("devnet-internal"),
            broker_key_id: ApiKey::generate("DEVNETKEY"),
            broker_secret: ApiKey::generate("devnet-broker-secret"),
        }
    }
}

fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_printable_and_fresh_every_time() {
        let first = Credentials::generate();
        let second = Credentials::generate();
        for key in [&first.alpaca, &first.internal] {
            assert!(key.as_str().len() >= 32 + "devnet-".len());
            assert!(key.as_str().bytes().all(|b| b.is_ascii_graphic()));
        }
        assert_ne!(first.alpaca, first.internal);
        assert_ne!(first.alpaca, second.alpaca);
        assert_ne!(first.internal, second.internal);
    }

    #[test]
    fn debug_never_shows_a_key() {
        let credentials = Credentials::generate();
        let debug = format!("{credentials:?}");
        assert!(!debug.contains(credentials.alpaca.as_str()));
        assert!(!debug.contains(credentials.internal.as_str()));
        assert!(!debug.contains(credentials.broker_secret.as_str()));
    }
}
