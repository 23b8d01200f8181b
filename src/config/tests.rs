use std::ffi::OsString;
use std::io::Write;

use super::*;

const ALPACA_KEY: &str = "alpaca-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const INTERNAL_KEY: &str = "internal-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn toml_file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)))
        .collect()
}

fn minimal_toml() -> String {
    format!(
        r#"
[auth.alpaca]
api_key = "{ALPACA_KEY}"

[auth.internal]
api_key = "{INTERNAL_KEY}"
"#
    )
}

fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = toml_file(toml);
    Config::from_sources(Some(file.path()), env(vars))
}

#[test]
fn full_toml_is_loaded() {
    let toml = format!(
        r#"
[server]
bind = "0.0.0.0:9000"
body_limit = 1024
client_ip_header = "X-Real-IP"

[database]
url = "sqlite://data/issuance.db"
max_connections = 4

[auth]
failures_per_minute = 5

[auth.alpaca]
api_key = "{ALPACA_KEY}"
allowed_cidrs = ["203.0.113.0/24"]

[auth.internal]
api_key = "{INTERNAL_KEY}"
allowed_cidrs = ["10.0.0.0/8"]

[telemetry]
log_format = "json"
otlp_endpoint = "http://collector:4318/v1/traces"
service_name = "issuer-test"

[metrics]
bind = "127.0.0.1:9100"
"#
    );
    let config = load(&toml, &[]).unwrap();
    assert_eq!(config.server.bind, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(config.server.body_limit.bytes(), 1024);
    assert_eq!(
        config
            .server
            .client_ip_header
            .as_ref()
            .map(ClientIpHeader::as_str),
        Some("X-Real-IP")
    );
    assert_eq!(config.database.url.as_str(), "sqlite://data/issuance.db");
    assert_eq!(config.database.max_connections.get(), 4);
    assert_eq!(config.auth.failures_per_minute().get(), 5);
    assert!(config.auth.alpaca().api_key().unwrap().matches(ALPACA_KEY));
    assert!(config.auth.internal().api_key.matches(INTERNAL_KEY));
    assert!(
        config
            .auth
            .alpaca()
            .allowed_cidrs
            .allows("203.0.113.5".parse().unwrap())
    );
    assert!(
        !config
            .auth
            .alpaca()
            .allowed_cidrs
            .allows("198.51.100.5".parse().unwrap())
    );
    assert_eq!(config.telemetry.log_format, LogFormat::Json);
    assert_eq!(
        config
            .telemetry
            .otlp_endpoint
            .as_ref()
            .map(OtlpEndpoint::as_str),
        Some("http://collector:4318/v1/traces")
    );
    assert_eq!(config.telemetry.service_name, "issuer-test");
    assert_eq!(config.metrics.bind, Some("127.0.0.1:9100".parse().unwrap()));
}

#[test]
fn defaults_fill_missing_sections() {
    let config = load(&minimal_toml(), &[]).unwrap();
    assert_eq!(config.server.bind, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.server.body_limit.bytes(), 65_536);
    assert!(config.server.client_ip_header.is_none());
    assert_eq!(config.database.url.as_str(), "sqlite://issuance.db");
    assert_eq!(config.database.max_connections.get(), 8);
    assert_eq!(config.auth.failures_per_minute().get(), 10);
    assert!(config.auth.alpaca().allowed_cidrs.admits_any());
    let internal = &config.auth.internal().allowed_cidrs;
    assert!(internal.allows("127.0.0.1".parse().unwrap()));
    assert!(internal.allows("::1".parse().unwrap()));
    assert!(!internal.allows("10.0.0.1".parse().unwrap()));
    assert_eq!(config.telemetry.log_format, LogFormat::Text);
    assert!(config.metrics.bind.is_none());
}

#[test]
fn environment_alone_is_enough() {
    let config = Config::from_sources(
        None,
        env(&[
            ("ISSUANCE_AUTH__ALPACA__API_KEY", ALPACA_KEY),
            ("ISSUANCE_AUTH__INTERNAL__API_KEY", INTERNAL_KEY),
            ("UNRELATED_VARIABLE", "ignored"),
        ]),
    )
    .unwrap();
    assert!(config.auth.alpaca().api_key().unwrap().matches(ALPACA_KEY));
}

#[test]
fn environment_overrides_toml() {
    let config = load(
        &minimal_toml(),
        &[
            ("ISSUANCE_SERVER__BIND", "127.0.0.1:9999"),
            ("ISSUANCE_DATABASE__MAX_CONNECTIONS", "2"),
            ("ISSUANCE_AUTH__ALPACA__ALLOWED_CIDRS", "[\"10.0.0.0/8\"]"),
            ("ISSUANCE_CONFIG", "/ignored/because/it/names/the/file"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.bind, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(config.database.max_connections.get(), 2);
    assert!(
        config
            .auth
            .alpaca()
            .allowed_cidrs
            .allows("10.1.1.1".parse().unwrap())
    );
}

#[test]
fn unknown_toml_key_is_rejected() {
    let toml = format!("{}\n[server]\nbnid = \"1.2.3.4:5\"\n", minimal_toml());
    let error = load(&toml, &[]).unwrap_err().to_string();
    assert!(error.contains("bnid"), "{error}");
}

#[test]
fn unknown_section_is_rejected() {
    let toml = format!("{}\n[sever]\nbind = \"1.2.3.4:5\"\n", minimal_toml());
    let error = load(&toml, &[]).unwrap_err().to_string();
    assert!(error.contains("sever"), "{error}");
}

#[test]
fn unknown_prefixed_env_key_is_rejected() {
    let error = load(&minimal_toml(), &[("ISSUANCE_SERVER__BINDD", "x")])
        .unwrap_err()
        .to_string();
    assert!(error.contains("bindd"), "{error}");
    assert!(error.contains("ISSUANCE_SERVER__BINDD"), "{error}");
}

#[test]
fn short_key_is_rejected() {
    let toml = format!(
        "[auth.alpaca]\napi_key = \"short\"\n[auth.internal]\n\
         api_key = \"{INTERNAL_KEY}\"\n"
    );
    let error = load(&toml, &[]).unwrap_err().to_string();
    assert!(error.contains("at least 32"), "{error}");
    assert!(!error.contains("short\""), "key leaked: {error}");
}

#[test]
fn equal_keys_are_rejected() {
    let toml = format!(
        "[auth.alpaca]\napi_key = \"{ALPACA_KEY}\"\n[auth.internal]\n\
         api_key = \"{ALPACA_KEY}\"\n"
    );
    let error = load(&toml, &[]).unwrap_err().to_string();
    assert!(error.contains("must differ"), "{error}");
}

#[test]
fn open_internal_allow_lists_are_rejected() {
    for (cidrs, expected) in [
        ("[]", "must not be empty"),
        ("[\"10.0.0.0/8\", \"0.0.0.0/0\"]", "/0"),
        ("[\"::/0\"]", "/0"),
    ] {
        let toml =
            format!("{}\nallowed_cidrs = {cidrs}\n", minimal_toml().trim_end());
        let error = load(&toml, &[]).unwrap_err().to_string();
        assert!(error.contains(expected), "{cidrs}: {error}");
    }
}

#[test]
fn invalid_values_are_rejected() {
    for (var, value, expected) in [
        ("ISSUANCE_SERVER__BODY_LIMIT", "0", "body_limit"),
        ("ISSUANCE_DATABASE__URL", "postgres://x", "sqlite:"),
        ("ISSUANCE_DATABASE__MAX_CONNECTIONS", "0", "max_connections"),
        ("ISSUANCE_SERVER__CLIENT_IP_HEADER", "X Real", "header name"),
        ("ISSUANCE_TELEMETRY__LOG_FORMAT", "xml", "xml"),
        (
            "ISSUANCE_TELEMETRY__OTLP_ENDPOINT",
            "ftp://x",
            "otlp_endpoint",
        ),
        ("ISSUANCE_AUTH__ALPACA__ALLOWED_CIDRS", "[\"nope\"]", "nope"),
        ("ISSUANCE_SERVER__", "x", "empty section"),
    ] {
        let error = load(&minimal_toml(), &[(var, value)])
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{var}={value}: {error}");
    }
}

#[test]
fn metrics_must_not_share_the_server_listener() {
    let error = load(
        &minimal_toml(),
        &[("ISSUANCE_METRICS__BIND", "127.0.0.1:8080")],
    )
    .unwrap_err();
    assert!(matches!(error, ConfigError::MetricsBindClash { .. }));
    // Two port-0 listeners get distinct ports from the OS.
    let config = load(
        &minimal_toml(),
        &[
            ("ISSUANCE_SERVER__BIND", "127.0.0.1:0"),
            ("ISSUANCE_METRICS__BIND", "127.0.0.1:0"),
        ],
    )
    .unwrap();
    assert_eq!(config.metrics.bind, Some("127.0.0.1:0".parse().unwrap()));
}

#[test]
fn stuck_flow_threshold_defaults_to_two_hours() {
    let config = load(&minimal_toml(), &[]).unwrap();
    assert_eq!(config.metrics.stuck_after_secs.get(), 7200);
    let config = load(
        &minimal_toml(),
        &[("ISSUANCE_METRICS__STUCK_AFTER_SECS", "60")],
    )
    .unwrap();
    assert_eq!(config.metrics.stuck_after_secs.get(), 60);
    assert!(
        load(
            &minimal_toml(),
            &[("ISSUANCE_METRICS__STUCK_AFTER_SECS", "0")]
        )
        .is_err()
    );
}

#[test]
fn missing_file_is_an_error() {
    let error = Config::from_sources(
        Some(Path::new("/definitely/not/here.toml")),
        env(&[]),
    )
    .unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }), "{error}");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let config = load(&minimal_toml(), &[]).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains(ALPACA_KEY), "{debug}");
    assert!(!debug.contains(INTERNAL_KEY), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
}

#[test]
fn test_config_is_valid_and_uses_the_test_keys() {
    let config = Config::for_tests("sqlite::memory:");
    assert!(
        config
            .auth
            .alpaca()
            .api_key()
            .unwrap()
            .matches(TEST_ALPACA_KEY)
    );
    assert!(config.auth.internal().api_key.matches(TEST_INTERNAL_KEY));
    assert!(
        !config
            .auth
            .alpaca()
            .api_key()
            .unwrap()
            .matches(TEST_INTERNAL_KEY)
    );
}

#[test]
fn documented_example_is_valid() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.example.toml");
    let config = Config::from_sources(Some(&example), env(&[])).unwrap();
    assert_eq!(config.server.bind, "127.0.0.1:8080".parse().unwrap());
    assert!(config.auth.alpaca().allowed_cidrs.admits_any());
}

#[test]
fn audience_request_caps_are_optional() {
    let config = load(
        &minimal_toml(),
        &[("ISSUANCE_AUTH__ALPACA__REQUESTS_PER_MINUTE", "600")],
    )
    .unwrap();
    assert_eq!(
        config.auth.alpaca().requests_per_minute,
        NonZeroU32::new(600)
    );
    assert_eq!(config.auth.internal().requests_per_minute, None);
}

#[test]
fn zero_redemption_intervals_are_rejected() {
    for key in [
        "poll_timeout_secs",
        "monitor_interval_ms",
        "reconcile_interval_secs",
    ] {
        let toml = format!("{}\n[redemption]\n{key} = 0\n", minimal_toml());
        let err = load(&toml, &[]).unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
    let toml = format!(
        "{}\n[redemption]\nmonitor_interval_ms = 250\n",
        minimal_toml()
    );
    let config = load(&toml, &[]).unwrap();
    assert_eq!(config.redemption.monitor_interval_ms.get(), 250);
    assert_eq!(config.redemption.poll_timeout_secs.get(), 3600);
}

// `auth.alpaca.scheme = "signature"` (RFC 9421, itn-wire.md §4.1).

/// RFC 9421 Appendix B.1.4, `test-key-ed25519`.
const RFC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----";

fn signature_toml(alpaca: &str) -> String {
    format!(
        "[auth.alpaca]\nscheme = \"signature\"\n{alpaca}\n\
         [auth.internal]\napi_key = \"{INTERNAL_KEY}\"\n"
    )
}

fn inline_key(keyid: &str) -> String {
    format!(
        "[[auth.alpaca.signature_keys]]\nkeyid = \"{keyid}\"\n\
         public_key_pem = \"\"\"\n{RFC_PUBLIC_KEY}\n\"\"\"\n"
    )
}

#[test]
fn api_key_is_the_default_scheme() {
    let config = load(&minimal_toml(), &[]).unwrap();
    assert!(config.auth.alpaca().signature().is_none());
    assert!(config.auth.alpaca().api_key().is_some());
}

#[test]
fn signature_scheme_loads_keys_inline_and_from_files() {
    let key_file = toml_file(RFC_PUBLIC_KEY);
    let toml = signature_toml(&format!(
        "max_skew_secs = 120\nnonce_cache_capacity = 5000\n\
         public_base_url = \"https://issuer.example.com/itn\"\n{}\
         [[auth.alpaca.signature_keys]]\nkeyid = \"alpaca-issuer-2026-07\"\n\
         public_key_file = \"{}\"\nnot_after = \"2026-08-01T00:00:00Z\"\n",
        inline_key("alpaca-issuer-2026-01"),
        key_file.path().display()
    ));
    let config = load(&toml, &[]).unwrap();
    assert!(config.auth.alpaca().api_key().is_none());
    let signature = config.auth.alpaca().signature().unwrap();
    assert_eq!(signature.max_skew_secs().get(), 120);
    assert_eq!(signature.nonce_cache_capacity().get(), 5000);
    assert_eq!(
        signature.public_base_url(),
        Some(
            &crate::auth::PublicBaseUrl::new("https://issuer.example.com/itn")
                .unwrap()
        )
    );
    let keys: Vec<_> = signature
        .keys()
        .iter()
        .map(|key| (key.keyid(), key.not_after().map(|at| at.to_rfc3339())))
        .collect();
    assert_eq!(
        keys,
        [
            ("alpaca-issuer-2026-01", None),
            (
                "alpaca-issuer-2026-07",
                Some("2026-08-01T00:00:00+00:00".to_owned())
            ),
        ]
    );
}

#[test]
fn signature_scheme_defaults() {
    let config =
        load(&signature_toml(&inline_key("alpaca-issuer-2026-01")), &[])
            .unwrap();
    let signature = config.auth.alpaca().signature().unwrap();
    assert_eq!(signature.max_skew_secs().get(), 300);
    assert_eq!(signature.nonce_cache_capacity().get(), 100_000);
    assert!(signature.public_base_url().is_none());
}

#[test]
fn signature_scheme_mistakes_are_named() {
    let key = inline_key("alpaca-issuer-2026-01");
    let both = "[[auth.alpaca.signature_keys]]\nkeyid = \"k\"\n\
                public_key_pem = \"x\"\npublic_key_file = \"/x\"\n";
    let cases = [
        (
            signature_toml(&format!("api_key = \"{ALPACA_KEY}\"\n{key}")),
            "auth.alpaca.api_key does not apply to scheme = \"signature\"; remove it",
        ),
        (
            format!("{}\n{key}", minimal_toml()),
            "auth.alpaca.signature_keys does not apply to scheme = \"api_key\"",
        ),
        (
            format!(
                "[auth.alpaca]\napi_key = \"{ALPACA_KEY}\"\nmax_skew_secs = 5\n\
                 [auth.internal]\napi_key = \"{INTERNAL_KEY}\"\n"
            ),
            "auth.alpaca.max_skew_secs does not apply to scheme = \"api_key\"",
        ),
        (
            format!(
                "[auth.alpaca]\n[auth.internal]\napi_key = \"{INTERNAL_KEY}\"\n"
            ),
            "auth.alpaca.api_key is required with scheme = \"api_key\"",
        ),
        (signature_toml(""), "must name at least one key"),
        (
            signature_toml(&format!("{key}{key}")),
            "keyid \"alpaca-issuer-2026-01\" is listed twice",
        ),
        (
            signature_toml(both),
            "keyid \"k\" needs exactly one of public_key_pem or public_key_file",
        ),
        (
            signature_toml(
                "[[auth.alpaca.signature_keys]]\nkeyid = \"k\"\n\
                 public_key_pem = \"not a key\"\n",
            ),
            "keyid \"k\" is not an Ed25519 public key in PEM",
        ),
        (
            signature_toml(
                "[[auth.alpaca.signature_keys]]\nkeyid = \"k\"\n\
                 public_key_file = \"/definitely/not/here.pem\"\n",
            ),
            "cannot read public_key_file /definitely/not/here.pem of keyid \"k\"",
        ),
        (
            signature_toml(&format!(
                "public_base_url = \"ftp://issuer.example.com\"\n{key}"
            )),
            "public_base_url \"ftp://issuer.example.com\" must be an http://",
        ),
        (
            signature_toml(&format!("max_skew_secs = 0\n{key}")),
            "max_skew_secs",
        ),
        ("[auth.alpaca]\nscheme = \"hmac\"\n".to_owned(), "hmac"),
    ];
    for (toml, expected) in cases {
        let error = load(&toml, &[]).unwrap_err().to_string();
        assert!(error.contains(expected), "{expected}: {error}");
    }
}

#[test]
fn signature_scheme_from_the_environment() {
    let key_file = toml_file(RFC_PUBLIC_KEY);
    let keys = format!(
        "[{{keyid = \"alpaca-issuer-2026-01\", public_key_file = \"{}\"}}]",
        key_file.path().display()
    );
    let config = Config::from_sources(
        None,
        env(&[
            ("ISSUANCE_AUTH__ALPACA__SCHEME", "signature"),
            ("ISSUANCE_AUTH__ALPACA__SIGNATURE_KEYS", &keys),
            ("ISSUANCE_AUTH__INTERNAL__API_KEY", INTERNAL_KEY),
        ]),
    )
    .unwrap();
    let signature = config.auth.alpaca().signature().unwrap();
    assert_eq!(signature.keys()[0].keyid(), "alpaca-issuer-2026-01");
}
