//! `Content-Digest` (RFC 9530): a dictionary of algorithm → byte
//! sequence. Alpaca sends `sha-256` (itn-wire.md §4.1); `sha-512` is
//! checked too when present. Other algorithms are ignored, as the RFC
//! allows, but at least one digest we can check must be there.

use sfv::{Dictionary, ListEntry, Parser};
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq as _;

/// The header carrying the body digest.
pub const CONTENT_DIGEST: &str = "Content-Digest";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("missing Content-Digest header")]
    Missing,
    #[error("malformed Content-Digest header: {reason}")]
    Malformed { reason: String },
    #[error("Content-Digest has no sha-256 or sha-512 digest")]
    NoSupportedAlgorithm,
    #[error("Content-Digest {algorithm} does not match the request body")]
    Mismatch { algorithm: &'static str },
}

type Hash = fn(&[u8]) -> Vec<u8>;

/// Checks every sha-256 / sha-512 digest in `header` against `body`.
pub fn verify(header: &str, body: &[u8]) -> Result<(), DigestError> {
    let digests =
        Parser::new(header).parse::<Dictionary>().map_err(|error| {
            DigestError::Malformed {
                reason: error.to_string(),
            }
        })?;
    let mut checked = false;
    let algorithms: [(&str, Hash); 2] = [
        ("sha-256", |body| Sha256::digest(body).to_vec()),
        ("sha-512", |body| Sha512::digest(body).to_vec()),
    ];
    for (algorithm, digest) in algorithms {
        let Some(entry) = digests.get(algorithm) else {
            continue;
        };
        let sent = match entry {
            ListEntry::Item(item) => item.bare_item.as_byte_sequence(),
            ListEntry::InnerList(_) => None,
        }
        .ok_or_else(|| DigestError::Malformed {
            reason: format!("{algorithm} is not a byte sequence"),
        })?;
        if !bool::from(sent.ct_eq(&digest(body))) {
            return Err(DigestError::Mismatch { algorithm });
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(DigestError::NoSupportedAlgorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9530 §2 / RFC 9421 Appendix B.2: `{"hello": "world"}`.
    const BODY: &[u8] = br#"{"hello": "world"}"#;
    const SHA_256: &str =
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
    const SHA_512: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+\
                           TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

    #[test]
    fn rfc_digests_match_their_body() {
        assert_eq!(verify(SHA_256, BODY), Ok(()));
        assert_eq!(verify(SHA_512, BODY), Ok(()));
        assert_eq!(verify(&format!("{SHA_256}, {SHA_512}"), BODY), Ok(()));
        // Unknown algorithms are skipped.
        assert_eq!(verify(&format!("md5=:AAAA:, {SHA_256}"), BODY), Ok(()));
    }

    #[test]
    fn a_changed_body_or_digest_is_a_mismatch() {
        assert_eq!(
            verify(SHA_256, br#"{"hello": "world!"}"#),
            Err(DigestError::Mismatch {
                algorithm: "sha-256"
            })
        );
        // One good and one bad digest: refused.
        assert_eq!(
            verify(&format!("{SHA_256}, sha-512=:AAAA:"), BODY),
            Err(DigestError::Mismatch {
                algorithm: "sha-512"
            })
        );
    }

    #[test]
    fn unusable_headers_are_named() {
        assert_eq!(
            verify("md5=:AAAA:", BODY),
            Err(DigestError::NoSupportedAlgorithm)
        );
        assert!(matches!(
            verify("sha-256=X48E9q", BODY),
            Err(DigestError::Malformed { .. })
        ));
        assert!(matches!(
            verify("sha-256=:not base64 at all", BODY),
            Err(DigestError::Malformed { .. })
        ));
    }
}
