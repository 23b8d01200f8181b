//! HTTP Message Signatures (RFC 9421), verifier side, as far as Alpaca
//! uses them: the `Signature-Input` and `Signature` dictionaries, the
//! covered components (derived components and plain header fields) and
//! the signature base of §2.5, verified with Ed25519 (§3.3.6).
//!
//! Nothing here knows about Rocket or about Alpaca's policy (which
//! components must be covered, the clock, the keys): that is
//! [`super::signature`]. This module only turns a message and one
//! signature's parameters into the exact bytes that were signed.

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use sfv::{BareItem, Dictionary, FieldType as _, InnerList, ListEntry, Parser};

/// The label Alpaca gives its one signature (itn-wire.md §4.1).
pub const ALPACA_LABEL: &str = "sig";

/// Why a `Signature-Input`/`Signature` pair cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpSigError {
    #[error("malformed {header} header: {reason}")]
    Malformed {
        header: &'static str,
        reason: String,
    },
    #[error(
        "the Signature-Input header has no signature labelled `{ALPACA_LABEL}`"
    )]
    NoLabel,
    #[error("the Signature header has no signature labelled `{label}`")]
    NoSignatureForLabel { label: String },
    #[error("covered component {component} is not supported")]
    UnsupportedComponent { component: String },
    #[error("covered component {component} is listed twice")]
    DuplicateComponent { component: String },
    #[error("header {name} is covered by the signature but missing")]
    MissingField { name: String },
    #[error("signature parameter `{name}` is missing or not {expected}")]
    MissingParameter {
        name: &'static str,
        expected: &'static str,
    },
}

/// A derived component (RFC 9421 §2.2) this verifier can rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derived {
    Method,
    TargetUri,
    Authority,
    Scheme,
    RequestTarget,
    Path,
    Query,
}

impl Derived {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "@method" => Self::Method,
            "@target-uri" => Self::TargetUri,
            "@authority" => Self::Authority,
            "@scheme" => Self::Scheme,
            "@request-target" => Self::RequestTarget,
            "@path" => Self::Path,
            "@query" => Self::Query,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Method => "@method",
            Self::TargetUri => "@target-uri",
            Self::Authority => "@authority",
            Self::Scheme => "@scheme",
            Self::RequestTarget => "@request-target",
            Self::Path => "@path",
            Self::Query => "@query",
        }
    }
}

/// One covered component: a derived one or an HTTP field (by its
/// lowercased name, RFC 9421 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    Derived(Derived),
    Field(String),
}

impl Component {
    pub fn name(&self) -> &str {
        match self {
            Self::Derived(derived) => derived.name(),
            Self::Field(name) => name,
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.name())
    }
}

/// The request as the signer saw it. `scheme`, `authority` and `path`
/// are the public ones (what the signer put in `@target-uri`), which a
/// reverse proxy may have changed on the way to us.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub authority: &'a str,
    /// The absolute path, percent-encoded as sent.
    pub path: &'a str,
    /// The query without its `?`, as sent.
    pub query: Option<&'a str>,
    /// Every value of a header field, in order (case-insensitive name).
    pub field: &'a dyn Fn(&str) -> Vec<String>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("method", &self.method)
            .field("target_uri", &self.target_uri())
            .finish_non_exhaustive()
    }
}

impl Message<'_> {
    fn path_or_root(&self) -> &str {
        if self.path.is_empty() { "/" } else { self.path }
    }

    fn request_target(&self) -> String {
        match self.query {
            Some(query) => format!("{}?{query}", self.path_or_root()),
            None => self.path_or_root().to_owned(),
        }
    }

    /// The full target URI (RFC 9421 §2.2.2).
    pub fn target_uri(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.to_ascii_lowercase(),
            self.authority.to_ascii_lowercase(),
            self.request_target()
        )
    }

    fn derived(&self, derived: Derived) -> String {
        match derived {
            Derived::Method => self.method.to_owned(),
            Derived::TargetUri => self.target_uri(),
            Derived::Authority => self.authority.to_ascii_lowercase(),
            Derived::Scheme => self.scheme.to_ascii_lowercase(),
            Derived::RequestTarget => self.request_target(),
            Derived::Path => self.path_or_root().to_owned(),
            Derived::Query => format!("?{}", self.query.unwrap_or_default()),
        }
    }

    /// A field's component value (RFC 9421 §2.1): every value trimmed,
    /// joined with `", "`.
    fn field_value(&self, name: &str) -> Option<String> {
        let values = (self.field)(name);
        if values.is_empty() {
            return None;
        }
        Some(
            values
                .iter()
                .map(|value| value.trim())
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    fn value(&self, component: &Component) -> Result<String, HttpSigError> {
        match component {
            Component::Derived(derived) => Ok(self.derived(*derived)),
            Component::Field(name) => self.field_value(name).ok_or_else(|| {
                HttpSigError::MissingField { name: name.clone() }
            }),
        }
    }
}

/// One signature's `Signature-Input` entry: its covered components and
/// parameters, plus the signature bytes from `Signature`.
#[derive(Debug, Clone)]
pub struct SignatureInput {
    pub label: String,
    pub components: Vec<Component>,
    /// The inner list exactly as parsed, re-serialized for the base.
    params_line: String,
    list: InnerList,
    signature: Vec<u8>,
}

impl SignatureInput {
    /// Picks Alpaca's signature out of the two headers: the one labelled
    /// `sig`, or the only one if there is a single, differently labelled
    /// signature.
    pub fn from_headers(
        signature_input: &str,
        signature: &str,
    ) -> Result<Self, HttpSigError> {
        let inputs = parse_dictionary("Signature-Input", signature_input)?;
        let label = if inputs.contains_key(ALPACA_LABEL) {
            ALPACA_LABEL.to_owned()
        } else {
            match inputs.keys().collect::<Vec<_>>().as_slice() {
                [only] => only.as_str().to_owned(),
                _ => return Err(HttpSigError::NoLabel),
            }
        };
        let Some(ListEntry::InnerList(list)) = inputs.get(label.as_str())
        else {
            return Err(HttpSigError::Malformed {
                header: "Signature-Input",
                reason: format!("`{label}` is not an inner list"),
            });
        };
        let signatures = parse_dictionary("Signature", signature)?;
        let signature = match signatures.get(label.as_str()) {
            Some(ListEntry::Item(item)) => item
                .bare_item
                .as_byte_sequence()
                .ok_or_else(|| HttpSigError::Malformed {
                    header: "Signature",
                    reason: format!("`{label}` is not a byte sequence"),
                })?
                .to_vec(),
            Some(ListEntry::InnerList(_)) => {
                return Err(HttpSigError::Malformed {
                    header: "Signature",
                    reason: format!("`{label}` is not a byte sequence"),
                });
            }
            None => return Err(HttpSigError::NoSignatureForLabel { label }),
        };
        let components = covered_components(list)?;
        let params_line = vec![ListEntry::InnerList(list.clone())]
            .serialize()
            .ok_or_else(|| HttpSigError::Malformed {
                header: "Signature-Input",
                reason: "the inner list cannot be serialized".to_owned(),
            })?;
        Ok(Self {
            label,
            components,
            params_line,
            list: list.clone(),
            signature,
        })
    }

    /// Whether the component named `name` is covered.
    pub fn covers(&self, name: &str) -> bool {
        self.components
            .iter()
            .any(|component| component.name() == name)
    }

    fn param(&self, name: &str) -> Option<&BareItem> {
        self.list.params.get(name)
    }

    /// A string parameter (`keyid`, `nonce`, `alg`, `tag`), if present.
    pub fn string_param(
        &self,
        name: &'static str,
    ) -> Result<Option<&str>, HttpSigError> {
        self.param(name)
            .map(|item| {
                item.as_string().map(sfv::StringRef::as_str).ok_or(
                    HttpSigError::MissingParameter {
                        name,
                        expected: "a string",
                    },
                )
            })
            .transpose()
    }

    /// An integer parameter (`created`, `expires`), if present.
    pub fn integer_param(
        &self,
        name: &'static str,
    ) -> Result<Option<i64>, HttpSigError> {
        self.param(name)
            .map(|item| {
                item.as_integer().map(i64::from).ok_or(
                    HttpSigError::MissingParameter {
                        name,
                        expected: "an integer",
                    },
                )
            })
            .transpose()
    }

    /// The signature base (RFC 9421 §2.5): one line per covered
    /// component in the order of the list, then `@signature-params`.
    pub fn signature_base(
        &self,
        message: &Message<'_>,
    ) -> Result<String, HttpSigError> {
        let mut lines = Vec::with_capacity(self.components.len() + 1);
        for component in &self.components {
            let value = message.value(component)?;
            if value.contains(['\n', '\r']) {
                return Err(HttpSigError::Malformed {
                    header: "Signature-Input",
                    reason: format!("the value of {component} spans lines"),
                });
            }
            lines.push(format!("{component}: {value}"));
        }
        lines.push(format!("\"@signature-params\": {}", self.params_line));
        Ok(lines.join("\n"))
    }

    /// Ed25519 over the signature base; strict verification (no small
    /// order keys, canonical `S`).
    pub fn verifies(&self, key: &VerifyingKey, base: &str) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(self.signature.as_slice()) else {
            return false;
        };
        key.verify_strict(base.as_bytes(), &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

fn parse_dictionary(
    header: &'static str,
    value: &str,
) -> Result<Dictionary, HttpSigError> {
    Parser::new(value).parse::<Dictionary>().map_err(|error| {
        HttpSigError::Malformed {
            header,
            reason: error.to_string(),
        }
    })
}

fn covered_components(
    list: &InnerList,
) -> Result<Vec<Component>, HttpSigError> {
    let mut components = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let Some(name) = item.bare_item.as_string().map(sfv::StringRef::as_str)
        else {
            return Err(HttpSigError::Malformed {
                header: "Signature-Input",
                reason: "a covered component is not a string".to_owned(),
            });
        };
        // `;sf`, `;key`, `;bs`, `;req`, `;tr`, `;name`: Alpaca uses none.
        if let Some(param) = item.params.keys().next() {
            return Err(HttpSigError::UnsupportedComponent {
                component: format!("\"{name}\";{}", param.as_str()),
            });
        }
        let component = if name.starts_with('@') {
            Derived::parse(name)
                .map(Component::Derived)
                .ok_or_else(|| HttpSigError::UnsupportedComponent {
                    component: format!("\"{name}\""),
                })?
        } else {
            Component::Field(name.to_owned())
        };
        if components.contains(&component) {
            return Err(HttpSigError::DuplicateComponent {
                component: component.to_string(),
            });
        }
        components.push(component);
    }
    Ok(components)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::pkcs8::DecodePublicKey as _;

    use super::*;

    /// RFC 9421 Appendix B.1.4, `test-key-ed25519`.
    const RFC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
";

    /// The test request of RFC 9421 Appendix B.2.
    fn rfc_fields(name: &str) -> Vec<String> {
        let value = match name.to_ascii_lowercase().as_str() {
            "host" => "example.com",
            "date" => "Tue, 20 Apr 2021 02:07:55 GMT",
            "content-type" => "application/json",
            "content-digest" => {
                "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+\
                 AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
            }
            "content-length" => "18",
            _ => return Vec::new(),
        };
        vec![value.to_owned()]
    }

    fn rfc_message(fields: &dyn Fn(&str) -> Vec<String>) -> Message<'_> {
        Message {
            method: "POST",
            scheme: "https",
            authority: "example.com",
            path: "/foo",
            query: Some("param=Value&Pet=dog"),
            field: fields,
        }
    }

    fn rfc_key() -> VerifyingKey {
        VerifyingKey::from_public_key_pem(RFC_PUBLIC_KEY).unwrap()
    }

    /// RFC 9421 Appendix B.2.6: the signature base, byte for byte, and
    /// the published signature verifying against it.
    #[test]
    fn rfc9421_b_2_6_ed25519_vector() {
        let input = SignatureInput::from_headers(
            r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
            "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9\
             EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
        )
        .unwrap();
        assert_eq!(input.label, "sig-b26");
        assert_eq!(
            input.string_param("keyid").unwrap(),
            Some("test-key-ed25519")
        );
        assert_eq!(
            input.integer_param("created").unwrap(),
            Some(1_618_884_473)
        );
        let base = input.signature_base(&rfc_message(&rfc_fields)).unwrap();
        assert_eq!(
            base,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
             \"@method\": POST\n\
             \"@path\": /foo\n\
             \"@authority\": example.com\n\
             \"content-type\": application/json\n\
             \"content-length\": 18\n\
             \"@signature-params\": (\"date\" \"@method\" \"@path\" \
             \"@authority\" \"content-type\" \"content-length\")\
             ;created=1618884473;keyid=\"test-key-ed25519\""
        );
        assert!(input.verifies(&rfc_key(), &base));
        // One changed byte anywhere in the base breaks it.
        assert!(!input.verifies(&rfc_key(), &base.replace("POST", "PUT")));
    }

    /// RFC 9421 §2.2: the derived components of the B.2 test request.
    #[test]
    fn derived_components_of_the_rfc_test_request() {
        let message = rfc_message(&rfc_fields);
        let value = |derived| message.derived(derived);
        assert_eq!(value(Derived::Method), "POST");
        assert_eq!(
            value(Derived::TargetUri),
            "https://example.com/foo?param=Value&Pet=dog"
        );
        assert_eq!(value(Derived::Authority), "example.com");
        assert_eq!(value(Derived::Scheme), "https");
        assert_eq!(value(Derived::RequestTarget), "/foo?param=Value&Pet=dog");
        assert_eq!(value(Derived::Path), "/foo");
        assert_eq!(value(Derived::Query), "?param=Value&Pet=dog");
        let bare = Message {
            path: "",
            query: None,
            ..message
        };
        assert_eq!(bare.derived(Derived::Path), "/");
        assert_eq!(bare.derived(Derived::Query), "?");
        assert_eq!(bare.derived(Derived::TargetUri), "https://example.com/");
    }

    /// Alpaca's shape (itn-wire.md §4.1): four components in order, the
    /// parameters re-serialized in the order they were sent, whatever
    /// whitespace the sender used between list members.
    #[test]
    fn alpaca_shaped_base_keeps_list_and_parameter_order() {
        let fields = |name: &str| match name {
            "content-type" => vec!["application/json".to_owned()],
            "content-digest" => vec!["sha-256=:AAAA:".to_owned()],
            _ => Vec::new(),
        };
        let message = Message {
            method: "POST",
            scheme: "https",
            authority: "issuer.example.com",
            path: "/tokenization/mint",
            query: None,
            field: &fields,
        };
        let input = SignatureInput::from_headers(
            r#"sig=("@method"   "@target-uri" "content-type" "content-digest");created=1767225600;keyid="alpaca-issuer-2026-01";alg="ed25519";nonce="0123456789abcdef0123456789abcdef""#,
            "sig=:AAAA:",
        )
        .unwrap();
        assert_eq!(
            input.signature_base(&message).unwrap(),
            "\"@method\": POST\n\
             \"@target-uri\": https://issuer.example.com/tokenization/mint\n\
             \"content-type\": application/json\n\
             \"content-digest\": sha-256=:AAAA:\n\
             \"@signature-params\": (\"@method\" \"@target-uri\" \
             \"content-type\" \"content-digest\");created=1767225600\
             ;keyid=\"alpaca-issuer-2026-01\";alg=\"ed25519\"\
             ;nonce=\"0123456789abcdef0123456789abcdef\""
        );
        // A too-short signature never verifies (and does not panic).
        assert!(!input.verifies(&rfc_key(), "anything"));
    }

    #[test]
    fn multiple_field_values_are_trimmed_and_joined() {
        let fields = |name: &str| match name {
            "x-list" => vec!["  a ".to_owned(), "b".to_owned()],
            _ => Vec::new(),
        };
        let message = Message {
            field: &fields,
            ..rfc_message(&rfc_fields)
        };
        assert_eq!(message.field_value("x-list").as_deref(), Some("a, b"));
        assert_eq!(message.field_value("absent"), None);
    }

    #[test]
    fn label_choice() {
        let two = r#"sig=("@method");created=1, other=("@method");created=2"#;
        let input =
            SignatureInput::from_headers(two, "other=:AA==:, sig=:AA==:")
                .unwrap();
        assert_eq!(input.label, "sig");
        assert_eq!(
            SignatureInput::from_headers(
                r#"a=("@method"), b=("@method")"#,
                "a=:AA==:"
            )
            .unwrap_err(),
            HttpSigError::NoLabel
        );
        assert_eq!(
            SignatureInput::from_headers(r#"sig=("@method")"#, "other=:AA==:")
                .unwrap_err(),
            HttpSigError::NoSignatureForLabel {
                label: "sig".to_owned()
            }
        );
    }

    #[test]
    fn malformed_and_unsupported_inputs_are_named() {
        let error = |input: &str, signature: &str| {
            SignatureInput::from_headers(input, signature)
                .unwrap_err()
                .to_string()
        };
        assert!(
            error("sig=(", "sig=:AA==:")
                .starts_with("malformed Signature-Input header")
        );
        assert!(
            error(r#"sig=("@method")"#, "sig=AA")
                .starts_with("malformed Signature header")
        );
        assert_eq!(
            error(r#"sig="@method""#, "sig=:AA==:"),
            "malformed Signature-Input header: `sig` is not an inner list"
        );
        assert_eq!(
            error(r#"sig=("@method")"#, r#"sig=("x")"#),
            "malformed Signature header: `sig` is not a byte sequence"
        );
        assert_eq!(
            error(r#"sig=("@status")"#, "sig=:AA==:"),
            "covered component \"@status\" is not supported"
        );
        assert_eq!(
            error(r#"sig=("content-digest";sf)"#, "sig=:AA==:"),
            "covered component \"content-digest\";sf is not supported"
        );
        assert_eq!(
            error(r#"sig=("@method" "@method")"#, "sig=:AA==:"),
            "covered component \"@method\" is listed twice"
        );
        assert_eq!(
            error("sig=(method)", "sig=:AA==:"),
            "malformed Signature-Input header: a covered component is not \
             a string"
        );
    }

    #[test]
    fn parameters_of_the_wrong_type_are_refused() {
        let input = SignatureInput::from_headers(
            r#"sig=("@method");created="1";keyid=1"#,
            "sig=:AA==:",
        )
        .unwrap();
        assert_eq!(
            input.integer_param("created").unwrap_err().to_string(),
            "signature parameter `created` is missing or not an integer"
        );
        assert_eq!(
            input.string_param("keyid").unwrap_err().to_string(),
            "signature parameter `keyid` is missing or not a string"
        );
        assert_eq!(input.string_param("nonce").unwrap(), None);
    }

    #[test]
    fn a_covered_header_that_is_absent_is_named() {
        let input = SignatureInput::from_headers(
            r#"sig=("@method" "x-missing")"#,
            "sig=:AA==:",
        )
        .unwrap();
        assert_eq!(
            input.signature_base(&rfc_message(&rfc_fields)).unwrap_err(),
            HttpSigError::MissingField {
                name: "x-missing".to_owned()
            }
        );
    }
}
