//! The issuer wallet's local signing key.
//!
//! The bot's address is always derived from the key, never configured
//! separately, so the two cannot disagree.

use std::fmt;
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::{LocalSignerError, PrivateKeySigner};
use secrecy::{ExposeSecret, SecretString};

use super::config::{PasswordSource, SignerSource};

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("private key is not a valid secp256k1 key")]
    InvalidPrivateKey,
    #[error("cannot read keystore password file {path}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("keystore password environment variable {var} is not set")]
    PasswordEnv { var: String },
    #[error("keystore {path} could not be decrypted (wrong password?)")]
    WrongPassword { path: PathBuf },
    #[error("cannot load keystore {path}")]
    Keystore {
        path: PathBuf,
        #[source]
        source: LocalSignerError,
    },
}

/// The issuer wallet. `Debug` shows only the address.
#[derive(Clone)]
pub struct BotSigner {
    signer: PrivateKeySigner,
}

impl BotSigner {
    pub fn from_source(source: &SignerSource) -> Result<Self, SignerError> {
        match source {
            SignerSource::PrivateKey(key) => Self::from_private_key(key),
            SignerSource::Keystore { path, password } => {
                let password = read_password(password)?;
                Self::from_keystore(path, &password)
            }
        }
    }

    pub fn from_private_key(key: &SecretString) -> Result<Self, SignerError> {
        key.expose_secret()
            .trim()
            .parse::<PrivateKeySigner>()
            .map(Self::from_signer)
            .map_err(|_| SignerError::InvalidPrivateKey)
    }

    pub fn from_keystore(
        path: &Path,
        password: &SecretString,
    ) -> Result<Self, SignerError> {
        PrivateKeySigner::decrypt_keystore(path, password.expose_secret())
            .map(Self::from_signer)
            .map_err(|source| match source {
                // eth-keystore is not re-exported, so its MacMismatch
                // variant can only be recognised by its message.
                LocalSignerError::EthKeystoreError(ref inner)
                    if inner.to_string() == "Mac Mismatch" =>
                {
                    SignerError::WrongPassword {
                        path: path.to_owned(),
                    }
                }
                source => SignerError::Keystore {
                    path: path.to_owned(),
                    source,
                },
            })
    }

    pub fn from_signer(signer: PrivateKeySigner) -> Self {
        Self { signer }
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    pub(crate) fn inner(&self) -> &PrivateKeySigner {
        &self.signer
    }
}

impl fmt::Debug for BotSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotSigner")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

fn read_password(source: &PasswordSource) -> Result<SecretString, SignerError> {
    match source {
        PasswordSource::File(path) => std::fs::read_to_string(path)
            // A trailing newline from `echo pw > file` is not part of it.
            .map(|text| SecretString::from(text.trim_end_matches(['\r', '\n'])))
            .map_err(|source| SignerError::PasswordFile {
                path: path.clone(),
                source,
            }),
        PasswordSource::Env(var) => std::env::var(var)
            .map(SecretString::from)
            .map_err(|_| SignerError::PasswordEnv { var: var.clone() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::k256::elliptic_curve::rand_core::OsRng;

    #[test]
    fn keystore_round_trip_and_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKeySigner::random();
        let (_, _) = PrivateKeySigner::encrypt_keystore(
            dir.path(),
            &mut OsRng,
            key.to_bytes(),
            "correct horse",
            Some("bot.json"),
        )
        .unwrap();
        let path = dir.path().join("bot.json");

        let loaded = BotSigner::from_keystore(
            &path,
            &SecretString::from("correct horse"),
        )
        .unwrap();
        assert_eq!(loaded.address(), key.address());

        let wrong =
            BotSigner::from_keystore(&path, &SecretString::from("wrong"))
                .unwrap_err();
        assert!(
            matches!(&wrong, SignerError::WrongPassword { path: p } if *p == path),
            "{wrong:?}"
        );

        let missing = BotSigner::from_keystore(
            &dir.path().join("absent.json"),
            &SecretString::from("x"),
        )
        .unwrap_err();
        assert!(
            matches!(missing, SignerError::Keystore { .. }),
            "{missing:?}"
        );
    }

    #[test]
    fn loads_keystore_with_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKeySigner::random();
        PrivateKeySigner::encrypt_keystore(
            dir.path(),
            &mut OsRng,
            key.to_bytes(),
            "pw",
            Some("k.json"),
        )
        .unwrap();
        let password_file = dir.path().join("pw.txt");
        std::fs::write(&password_file, "pw\n").unwrap();
        let source = SignerSource::Keystore {
            path: dir.path().join("k.json"),
            password: PasswordSource::File(password_file),
        };
        let signer = BotSigner::from_source(&source).unwrap();
        assert_eq!(signer.address(), key.address());
    }

    #[test]
    fn private_key_derives_address_and_debug_hides_key() {
        // Anvil's well-known key 0.
        let key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let signer =
            BotSigner::from_private_key(&SecretString::from(key)).unwrap();
        let expected: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            .parse()
            .unwrap();
        assert_eq!(signer.address(), expected);
        let debug = format!("{signer:?}");
        assert!(
            debug.contains("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"),
            "{debug}"
        );
        assert!(!debug.contains("ac0974bec"), "{debug}");

        assert!(matches!(
            BotSigner::from_private_key(&SecretString::from("0x12")),
            Err(SignerError::InvalidPrivateKey)
        ));
    }

    #[test]
    fn missing_password_env_is_reported() {
        let source = SignerSource::Keystore {
            path: PathBuf::from("unused.json"),
            password: PasswordSource::Env(
                "ISSUANCE_BOT_TEST_SURELY_UNSET_VAR".into(),
            ),
        };
        assert!(matches!(
            BotSigner::from_source(&source),
            Err(SignerError::PasswordEnv { .. })
        ));
    }
}
