//! Alpaca's second auth scheme for its calls to the issuer (itn-wire.md
//! §4.1): HTTP Message Signatures (RFC 9421) with Ed25519 and a body
//! digest (RFC 9530). POSTs carry `Content-Digest` and sign `"@method"`,
//! `"@target-uri"`, `"content-type"`, `"content-digest"`; bodyless GETs
//! sign `"@method"` and `"@target-uri"` only. One signature, labelled
//! `sig`, with `created`, `keyid`, `alg="ed25519"` and a fresh 128-bit
//! hex `nonce` on every request.
//!
//! Written independently of the issuer's verifier (plain string
//! building, no structured-field library), so the two check each other.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use ed25519_dalek::{Signer as _, SigningKey};
use reqwest::Url;
use sha2::{Digest as _, Sha256};

use crate::SimError;

/// Alpaca's Ed25519 key pair and the `keyid` it hands the issuer.
#[derive(Clone)]
pub struct IssuerSigning {
    keyid: String,
    key: SigningKey,
}

/// What one signed request needs besides its method and URL.
#[derive(Debug, Clone, Copy)]
pub struct SignedBody<'a> {
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

/// The signature's variable parameters, normally "now" and random.
#[derive(Debug, Clone)]
pub struct SignatureParams {
    pub created: i64,
    pub nonce: String,
}

impl SignatureParams {
    /// `created` = now, a fresh random 128-bit nonce in hex.
    pub fn fresh() -> Self {
        Self {
            created: chrono::Utc::now().timestamp(),
            nonce: format!("{:032x}", rand::random::<u128>()),
        }
    }
}

/// An RFC 8941 sf-string.
fn sf_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

impl IssuerSigning {
    /// A key from its 32 secret bytes.
    pub fn new(keyid: impl Into<String>, secret: [u8; 32]) -> Self {
        Self {
            keyid: keyid.into(),
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// A fresh random key pair.
    pub fn generate(keyid: impl Into<String>) -> Self {
        Self::new(keyid, rand::random())
    }

    /// A key from a PKCS#8 PEM file's text (`-----BEGIN PRIVATE KEY-----`,
    /// as `openssl genpkey -algorithm ed25519` writes it).
    pub fn from_pkcs8_pem(
        keyid: impl Into<String>,
        pem: &str,
    ) -> Result<Self, SimError> {
        let key = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|error| {
            SimError::SigningKey {
                reason: error.to_string(),
            }
        })?;
        Ok(Self {
            keyid: keyid.into(),
            key,
        })
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The public key as Alpaca hands it to the issuer: one PEM
    /// `BEGIN PUBLIC KEY` block.
    pub fn public_key_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// The headers Alpaca adds to one request: `Content-Digest` (with a
    /// body), `Signature-Input` and `Signature`, with `created` now and
    /// a fresh nonce. The caller sends `Content-Type` itself.
    pub fn sign(
        &self,
        method: &str,
        url: &Url,
        body: Option<SignedBody<'_>>,
    ) -> Vec<(String, String)> {
        self.sign_with(method, url, body, &SignatureParams::fresh())
    }

    /// As [`IssuerSigning::sign`], with chosen `created` and `nonce`.
    pub fn sign_with(
        &self,
        method: &str,
        url: &Url,
        body: Option<SignedBody<'_>>,
        params: &SignatureParams,
    ) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        let mut lines = vec![
            format!("\"@method\": {}", method.to_ascii_uppercase()),
            format!("\"@target-uri\": {}", url.as_str()),
        ];
        let covered = if let Some(body) = body {
            let digest = format!(
                "sha-256=:{}:",
                STANDARD.encode(Sha256::digest(body.bytes))
            );
            lines.push(format!("\"content-type\": {}", body.content_type));
            lines.push(format!("\"content-digest\": {digest}"));
            headers.push(("Content-Digest".to_owned(), digest));
            r#"("@method" "@target-uri" "content-type" "content-digest")"#
        } else {
            r#"("@method" "@target-uri")"#
        };
        let signature_params = format!(
            "{covered};created={};keyid={};alg=\"ed25519\";nonce={}",
            params.created,
            sf_string(&self.keyid),
            sf_string(&params.nonce),
        );
        lines.push(format!("\"@signature-params\": {signature_params}"));
        let signature = self.key.sign(lines.join("\n").as_bytes());
        headers.push((
            "Signature-Input".to_owned(),
            format!("sig={signature_params}"),
        ));
        headers.push((
            "Signature".to_owned(),
            format!("sig=:{}:", STANDARD.encode(signature.to_bytes())),
        ));
        headers
    }
}

impl fmt::Debug for IssuerSigning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerSigning")
            .field("keyid", &self.keyid)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test")]
mod tests {
    use ed25519_dalek::pkcs8::DecodePublicKey as _;
    use ed25519_dalek::{Signature, VerifyingKey};

    use super::*;

    /// RFC 9421 Appendix B.1.4, `test-key-ed25519`.
    const RFC_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----";
    const RFC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
";

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap()
    }

    #[test]
    fn rfc_key_round_trips_through_pem() {
        let signing =
            IssuerSigning::from_pkcs8_pem("test-key-ed25519", RFC_PRIVATE_KEY)
                .unwrap();
        assert_eq!(signing.public_key_pem(), RFC_PUBLIC_KEY);
        assert!(format!("{signing:?}").contains("REDACTED"));
    }

    #[test]
    fn a_post_is_signed_over_the_four_components() {
        let signing = IssuerSigning::from_pkcs8_pem(
            "alpaca-issuer-2026-01",
            RFC_PRIVATE_KEY,
        )
        .unwrap();
        let url =
            Url::parse("https://issuer.example.com/tokenization/mint").unwrap();
        let body = br#"{"hello": "world"}"#;
        let headers = signing.sign_with(
            "POST",
            &url,
            Some(SignedBody {
                content_type: "application/json",
                bytes: body,
            }),
            &SignatureParams {
                created: 1_767_225_600,
                nonce: "0123456789abcdef0123456789abcdef".into(),
            },
        );
        // RFC 9530's example digest of this body.
        assert_eq!(
            header(&headers, "Content-Digest"),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
        let params = "(\"@method\" \"@target-uri\" \"content-type\" \
                      \"content-digest\");created=1767225600\
                      ;keyid=\"alpaca-issuer-2026-01\";alg=\"ed25519\"\
                      ;nonce=\"0123456789abcdef0123456789abcdef\"";
        assert_eq!(
            header(&headers, "Signature-Input"),
            format!("sig={params}")
        );
        let base = format!(
            "\"@method\": POST\n\
             \"@target-uri\": https://issuer.example.com/tokenization/mint\n\
             \"content-type\": application/json\n\
             \"content-digest\": sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\n\
             \"@signature-params\": {params}"
        );
        let signature = header(&headers, "Signature");
        let bytes = STANDARD
            .decode(signature.trim_start_matches("sig=:").trim_end_matches(':'))
            .unwrap();
        let key = VerifyingKey::from_public_key_pem(RFC_PUBLIC_KEY).unwrap();
        key.verify_strict(
            base.as_bytes(),
            &Signature::from_slice(&bytes).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn a_get_signs_two_components_and_has_no_digest() {
        let signing = IssuerSigning::generate("k");
        let url =
            Url::parse("http://127.0.0.1:8080/tokenization/tokens").unwrap();
        let headers = signing.sign("GET", &url, None);
        assert!(headers.iter().all(|(name, _)| name != "Content-Digest"));
        let input = header(&headers, "Signature-Input");
        assert!(
            input.starts_with(r#"sig=("@method" "@target-uri");created="#),
            "{input}"
        );
        // A fresh 32-hex-digit nonce each time.
        let other = signing.sign("GET", &url, None);
        assert_ne!(input, header(&other, "Signature-Input"));
        let nonce = input
            .rsplit("nonce=\"")
            .next()
            .unwrap()
            .trim_end_matches('"');
        assert_eq!(nonce.len(), 32);
        assert!(nonce.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
