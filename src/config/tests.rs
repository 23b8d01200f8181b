use std::ffi::OsString;
use std::io::Write;
use std::num::NonZeroU32;

use super::*;
use crate::auth::ClientIpHeader;
use crate::vocabulary::Network;

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

/// The example's placeholders, replaced through the environment.
const EXAMPLE_OVERRIDES: &[(&str, &str)] = &[
    ("ISSUANCE_AUTH__ALPACA__API_KEY", ALPACA_KEY),
    ("ISSUANCE_AUTH__INTERNAL__API_KEY", INTERNAL_KEY),
    ("ISSUANCE_ALPACA__API_KEY_ID", "CKEXAMPLE"),
    ("ISSUANCE_ALPACA__API_SECRET", "broker-secret"),
];

fn example_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.example.toml")
}

#[test]
fn documented_example_is_valid_once_its_placeholders_are_replaced() {
    let config =
        Config::from_sources(Some(&example_path()), env(EXAMPLE_OVERRIDES))
            .unwrap();
    assert_eq!(config.server.bind, "127.0.0.1:8080".parse().unwrap());
    assert!(config.auth.alpaca().allowed_cidrs.admits_any());
}

#[test]
fn the_examples_placeholders_are_refused_by_name() {
    let error = Config::from_sources(Some(&example_path()), env(&[]))
        .unwrap_err()
        .to_string();
    for key in [
        "auth.alpaca.api_key",
        "auth.internal.api_key",
        "alpaca.api_key_id",
        "alpaca.api_secret",
    ] {
        assert!(
            error.contains(&format!(
                "{key} is still the example's placeholder (TOML file"
            )),
            "{key}: {error}"
        );
        assert!(error.contains(&env_var_name(key)), "{key}: {error}");
    }
    assert!(error.contains("or auth.alpaca.api_key_file"), "{error}");
    // One placeholder left is enough to refuse.
    let error = Config::from_sources(
        Some(&example_path()),
        env(&EXAMPLE_OVERRIDES[1..]),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("auth.alpaca.api_key is still"), "{error}");
    assert!(!error.contains("auth.internal.api_key"), "{error}");
}

#[test]
fn a_missing_key_is_named_with_its_variable_and_file() {
    let error = load(
        &format!(
            "[auth.alpaca]\napi_key = \"{ALPACA_KEY}\"\n[auth.internal]\n"
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(
            "missing auth.internal.api_key (or \
             ISSUANCE_AUTH__INTERNAL__API_KEY, or auth.internal.api_key_file)"
        ),
        "{error}"
    );
    assert!(!error.contains("default."), "{error}");
    // A whole section missing names the secrets it needs.
    let error = Config::from_sources(None, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "missing [auth]: set auth.alpaca.api_key (or \
             ISSUANCE_AUTH__ALPACA__API_KEY, or auth.alpaca.api_key_file) \
             and auth.internal.api_key"
        ),
        "{error}"
    );
    // A missing key that is not a secret: its variable only.
    let toml = format!(
        "{}\n[alpaca]\nbase_url = \"http://127.0.0.1:1\"\n\
         api_key_id = \"k\"\napi_secret = \"s\"\n",
        minimal_toml()
    );
    let error = load(&toml, &[]).unwrap_err().to_string();
    assert!(
        error.contains(
            "missing alpaca.account_id (or ISSUANCE_ALPACA__ACCOUNT_ID)"
        ),
        "{error}"
    );
}

#[test]
fn errors_name_the_key_and_its_source_without_figments_profile() {
    let error = load(&minimal_toml(), &[("ISSUANCE_SERVER__BODY_LIMIT", "0")])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "server.body_limit: body_limit must be between 1 and 16777216 \
             bytes, got 0 (environment variable ISSUANCE_SERVER__BODY_LIMIT)"
        ),
        "{error}"
    );
    let error = load(&minimal_toml(), &[("ISSUANCE_SERVER__BINDD", "x")])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "unknown key server.bindd (environment variable \
             ISSUANCE_SERVER__BINDD); expected one of"
        ),
        "{error}"
    );
    assert!(!error.contains("default."), "{error}");
}

/// A secret file as `echo KEY > file` or systemd-creds leave it.
fn secret_file(value: &str) -> tempfile::NamedTempFile {
    toml_file(&format!("{value}\n"))
}

const PRIVATE_KEY: &str =
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

const CHAIN_TOML: &str = r#"
[chain]
chain_id = 31337
network = "base"
max_fee_per_gas_gwei = "2.5"
max_priority_fee_per_gas_gwei = "0.001"
"#;

const ALPACA_TOML: &str = r#"
[alpaca]
base_url = "http://127.0.0.1:9"
account_id = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
"#;

fn chain_and_alpaca_toml() -> String {
    format!("{CHAIN_TOML}{ALPACA_TOML}")
}

#[test]
fn every_secret_can_come_from_a_file() {
    use secrecy::ExposeSecret as _;

    let alpaca_key = secret_file(ALPACA_KEY);
    let internal_key = secret_file(INTERNAL_KEY);
    let key_id = secret_file("CKFROMFILE");
    let api_secret = secret_file("broker-secret-from-file");
    let private_key = secret_file(PRIVATE_KEY);
    let rpc_url = secret_file("https://rpc.example/v2/provider-key");
    let path =
        |file: &tempfile::NamedTempFile| file.path().display().to_string();
    // Half in the file, half in the environment (systemd's form).
    let toml = format!(
        "[auth.alpaca]\napi_key_file = \"{}\"\n\
         [auth.internal]\napi_key_file = \"{}\"\n{}\
         api_key_id_file = \"{}\"\n",
        path(&alpaca_key),
        path(&internal_key),
        chain_and_alpaca_toml(),
        path(&key_id),
    );
    let config = load(
        &toml,
        &[
            ("ISSUANCE_ALPACA__API_SECRET_FILE", &path(&api_secret)),
            ("ISSUANCE_CHAIN__PRIVATE_KEY_FILE", &path(&private_key)),
            ("ISSUANCE_CHAIN__RPC_URL_FILE", &path(&rpc_url)),
        ],
    )
    .unwrap();
    assert!(config.auth.alpaca().api_key().unwrap().matches(ALPACA_KEY));
    assert!(config.auth.internal().api_key.matches(INTERNAL_KEY));
    let alpaca = config.alpaca.as_ref().unwrap();
    // Trailing newline trimmed.
    assert_eq!(alpaca.api_key_id, "CKFROMFILE");
    assert_eq!(alpaca.api_secret.expose_secret(), "broker-secret-from-file");
    let chain = config.chains.get(Network::Base).unwrap();
    assert_eq!(
        chain.rpc_url.as_str(),
        "https://rpc.example/v2/provider-key"
    );
    match &chain.signer {
        crate::chain::SignerSource::PrivateKey(key) => {
            assert_eq!(key.expose_secret(), PRIVATE_KEY);
        }
        crate::chain::SignerSource::Keystore { .. } => panic!("keystore"),
    }
    let printout = config.redacted_toml();
    for secret in [
        ALPACA_KEY,
        INTERNAL_KEY,
        "CKFROMFILE",
        "broker-secret",
        "59c6995e",
        "provider-key",
    ] {
        assert!(!printout.contains(secret), "{secret}: {printout}");
    }
}

#[test]
fn a_secret_and_its_file_together_are_refused() {
    let key = secret_file(ALPACA_KEY);
    let error = load(
        &minimal_toml(),
        &[(
            "ISSUANCE_AUTH__ALPACA__API_KEY_FILE",
            &key.path().display().to_string(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("both auth.alpaca.api_key (TOML file")
            && error.contains(
                ") and auth.alpaca.api_key_file (environment variable \
             ISSUANCE_AUTH__ALPACA__API_KEY_FILE) are set; keep only one"
            ),
        "{error}"
    );
}

#[test]
fn an_unreadable_secret_file_is_named_with_its_key() {
    let error = Config::from_sources(
        None,
        env(&[
            ("ISSUANCE_AUTH__ALPACA__API_KEY", ALPACA_KEY),
            (
                "ISSUANCE_AUTH__INTERNAL__API_KEY_FILE",
                "/run/credentials/issuance-bot/missing",
            ),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with(
            "cannot read auth.internal.api_key_file \
             /run/credentials/issuance-bot/missing: "
        ),
        "{error}"
    );
    // A secret from a file is still validated, and the error names the
    // file it came from (never the value).
    let short = secret_file("short");
    let error = load(
        &format!("[auth.alpaca]\napi_key_file = \"{}\"\n[auth.internal]\napi_key = \"{INTERNAL_KEY}\"\n", short.path().display()),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("at least 32"), "{error}");
    assert!(error.contains("(auth.alpaca.api_key_file)"), "{error}");
}

#[test]
fn the_printout_is_toml_with_every_secret_redacted() {
    let toml = format!(
        "{}{CHAIN_TOML}rpc_url = \"https://rpc.example/v2/provider-key\"\n\
         private_key = \"{PRIVATE_KEY}\"\n{ALPACA_TOML}\
         api_key_id = \"CKVISIBLE\"\napi_secret = \"broker-secret\"\n\
         [alpaca.custody_accounts]\n\
         aapl = \"00000000-0000-4000-8000-000000000002\"\n",
        minimal_toml(),
    );
    let config = load(&toml, &[]).unwrap();
    let printout = config.redacted_toml();
    for secret in [
        ALPACA_KEY,
        INTERNAL_KEY,
        "CKVISIBLE",
        "broker-secret",
        "59c6995e",
        "provider-key",
    ] {
        assert!(!printout.contains(secret), "{secret}: {printout}");
    }
    let parsed: toml::Table = toml::from_str(&printout)
        .unwrap_or_else(|error| panic!("{error}\n{printout}"));
    assert_eq!(
        parsed["auth"]["alpaca"]["api_key"].as_str(),
        Some("[REDACTED]")
    );
    assert_eq!(
        parsed["auth"]["internal"]["api_key"].as_str(),
        Some("[REDACTED]")
    );
    assert_eq!(parsed["alpaca"]["api_secret"].as_str(), Some("[REDACTED]"));
    assert_eq!(
        parsed["chains"]["base"]["private_key"].as_str(),
        Some("[REDACTED]")
    );
    assert_eq!(
        parsed["chains"]["base"]["rpc_url"].as_str(),
        Some("https://rpc.example/[REDACTED]")
    );
    assert_eq!(
        parsed["chains"]["base"]["chain_id"].as_integer(),
        Some(31337)
    );
    assert_eq!(
        parsed["chains"]["base"]["max_fee_per_gas_gwei"].as_str(),
        Some("2.5")
    );
    assert_eq!(
        parsed["chains"]["base"]["max_priority_fee_per_gas_gwei"].as_str(),
        Some("0.001")
    );
    assert_eq!(parsed["server"]["bind"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(
        parsed["server"]["connections"]["idle_timeout_ms"].as_integer(),
        Some(30_000)
    );
    assert_eq!(
        parsed["alpaca"]["custody_accounts"]["AAPL"].as_str(),
        Some("00000000-0000-4000-8000-000000000002")
    );
    assert_eq!(
        parsed["redemption"]["poll_timeout_secs"].as_integer(),
        Some(3600)
    );
    // Unset optional keys are comments, not values.
    assert!(
        printout.contains("# otlp_endpoint is not set"),
        "{printout}"
    );
    // Reloading the printout (secrets put back) gives the same printout.
    let reloaded = load(
        &printout,
        &[
            ("ISSUANCE_AUTH__ALPACA__API_KEY", ALPACA_KEY),
            ("ISSUANCE_AUTH__INTERNAL__API_KEY", INTERNAL_KEY),
            ("ISSUANCE_ALPACA__API_KEY_ID", "CKVISIBLE"),
            ("ISSUANCE_ALPACA__API_SECRET", "broker-secret"),
            // The printout names `[chain]` as the table it became.
            ("ISSUANCE_CHAINS__BASE__PRIVATE_KEY", PRIVATE_KEY),
            (
                "ISSUANCE_CHAINS__BASE__RPC_URL",
                "https://rpc.example/v2/provider-key",
            ),
        ],
    )
    .unwrap();
    assert_eq!(reloaded.redacted_toml(), printout);
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
        "monitor_head_poll_ms",
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
    assert_eq!(config.redemption.monitor_head_poll_ms.get(), 250);
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

#[test]
fn otlp_headers_from_the_file_the_environment_and_header_files() {
    let token = secret_file("hyperdx-ingestion-key");
    let config = load(
        &format!(
            "{}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n\
             [telemetry.otlp_headers]\nx-tenant = \"issuer\"\n",
            minimal_toml()
        ),
        &[
            (
                "ISSUANCE_TELEMETRY__OTLP_HEADERS_FILE__AUTHORIZATION",
                &token.path().display().to_string(),
            ),
            ("ISSUANCE_TELEMETRY__OTLP_HEADERS__X_SCOPE", "prod"),
        ],
    )
    .unwrap();
    let headers = config.telemetry.otlp_headers.expose();
    assert_eq!(headers["authorization"], "hyperdx-ingestion-key");
    assert_eq!(headers["x-tenant"], "issuer");
    // `__` separates sections, so the env form of a header keeps `_`.
    assert_eq!(headers["x_scope"], "prod");
    let debug = format!("{config:?}");
    let printout = config.redacted_toml();
    for text in [&debug, &printout] {
        assert!(!text.contains("hyperdx-ingestion-key"), "{text}");
        assert!(!text.contains("issuer\""), "{text}");
    }
    assert!(
        printout.contains(
            "[telemetry.otlp_headers]\nauthorization = \"[REDACTED]\"\n"
        ),
        "{printout}"
    );

    let error = load(
        &format!(
            "{}\n[telemetry.otlp_headers]\nauthorization = \"x\"\n",
            minimal_toml()
        ),
        &[(
            "ISSUANCE_TELEMETRY__OTLP_HEADERS_FILE__AUTHORIZATION",
            &token.path().display().to_string(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("both telemetry.otlp_headers.authorization (TOML file"),
        "{error}"
    );
    let error = load(
        &format!(
            "{}\n[telemetry.otlp_headers]\n\"bad header\" = \"x\"\n",
            minimal_toml()
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("otlp_headers.bad header is not a valid HTTP header"),
        "{error}"
    );
}

const TWO_CHAINS_TOML: &str = r#"
[chains.base]
rpc_url = "http://127.0.0.1:8545"
chain_id = 8453
private_key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
max_fee_per_gas_gwei = "2.5"
max_priority_fee_per_gas_gwei = "0.001"

[chains.ethereum]
rpc_url = "http://127.0.0.1:8546"
chain_id = 1
private_key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
max_fee_per_gas_gwei = 40
max_priority_fee_per_gas_gwei = 2
"#;

#[test]
fn each_chains_table_is_one_chain_named_by_its_network() {
    let config =
        load(&format!("{}{TWO_CHAINS_TOML}", minimal_toml()), &[]).unwrap();
    assert_eq!(config.chains.networks(), [Network::Base, Network::Ethereum]);
    let base = config.chains.get(Network::Base).unwrap();
    assert_eq!(base.network, Network::Base);
    assert_eq!(base.chain_id, 8453);
    let ethereum = config.chains.get(Network::Ethereum).unwrap();
    assert_eq!(ethereum.chain_id, 1);
    assert_eq!(ethereum.max_fee_per_gas.wei(), 40_000_000_000);
    let printout = config.redacted_toml();
    let parsed: toml::Table = toml::from_str(&printout).unwrap();
    assert_eq!(
        parsed["chains"]["ethereum"]["chain_id"].as_integer(),
        Some(1)
    );
}

#[test]
fn the_old_chain_section_is_one_chain_of_its_network() {
    let toml = format!(
        "{}{CHAIN_TOML}rpc_url = \"http://127.0.0.1:8545\"\n\
         private_key = \"{PRIVATE_KEY}\"\n",
        minimal_toml()
    );
    let config = load(&toml, &[]).unwrap();
    assert_eq!(config.chains.networks(), [Network::Base]);
    assert_eq!(config.chains.get(Network::Base).unwrap().chain_id, 31337);
    // validate-config shows it as the table it became.
    let parsed: toml::Table = toml::from_str(&config.redacted_toml()).unwrap();
    assert_eq!(
        parsed["chains"]["base"]["chain_id"].as_integer(),
        Some(31337)
    );
    assert!(parsed.get("chain").is_none());

    let both = format!("{toml}{TWO_CHAINS_TOML}");
    let error = load(&both, &[]).unwrap_err().to_string();
    assert!(
        error.contains("both [chain] and [chains.*] are set")
            && error.contains("[chains.base]"),
        "{error}"
    );
    let unnamed = toml.replace("network = \"base\"\n", "");
    let error = load(&unnamed, &[]).unwrap_err().to_string();
    assert!(error.contains("[chain] needs its network key"), "{error}");
}

#[test]
fn two_chains_with_one_chain_id_are_refused_naming_both() {
    let toml = format!(
        "{}{}",
        minimal_toml(),
        TWO_CHAINS_TOML.replace("chain_id = 1\n", "chain_id = 8453\n")
    );
    let error = load(&toml, &[]).unwrap_err().to_string();
    assert!(
        error.contains(
            "chains.base and chains.ethereum both have chain_id 8453"
        ),
        "{error}"
    );
}

#[test]
fn a_chains_table_refuses_another_network_and_every_table_is_checked() {
    let toml = format!(
        "{}{}",
        minimal_toml(),
        TWO_CHAINS_TOML.replace(
            "[chains.ethereum]\n",
            "[chains.ethereum]\nnetwork = \"base\"\n"
        )
    );
    let error = load(&toml, &[]).unwrap_err().to_string();
    assert!(error.contains("chains.ethereum.network is"), "{error}");
    let toml = format!(
        "{}{}",
        minimal_toml(),
        TWO_CHAINS_TOML
            .replace("max_fee_per_gas_gwei = 40", "max_fee_per_gas_gwei = 0")
    );
    let error = load(&toml, &[]).unwrap_err().to_string();
    assert!(error.contains("invalid gwei amount"), "{error}");
    assert!(error.contains("chains.ethereum"), "{error}");
}

#[test]
fn chains_tables_come_from_the_environment_and_secret_files() {
    use secrecy::ExposeSecret as _;

    let private_key = secret_file(PRIVATE_KEY);
    let rpc_url = secret_file("https://eth.example/v2/provider-key");
    let key_path = private_key.path().display().to_string();
    let url_path = rpc_url.path().display().to_string();
    let config = load(
        &minimal_toml(),
        &[
            ("ISSUANCE_CHAINS__BASE__RPC_URL", "http://127.0.0.1:8545"),
            ("ISSUANCE_CHAINS__BASE__CHAIN_ID", "8453"),
            ("ISSUANCE_CHAINS__BASE__PRIVATE_KEY", PRIVATE_KEY),
            ("ISSUANCE_CHAINS__BASE__MAX_FEE_PER_GAS_GWEI", "2"),
            ("ISSUANCE_CHAINS__BASE__MAX_PRIORITY_FEE_PER_GAS_GWEI", "1"),
            ("ISSUANCE_CHAINS__ETHEREUM__RPC_URL_FILE", &url_path),
            ("ISSUANCE_CHAINS__ETHEREUM__CHAIN_ID", "1"),
            ("ISSUANCE_CHAINS__ETHEREUM__PRIVATE_KEY_FILE", &key_path),
            ("ISSUANCE_CHAINS__ETHEREUM__MAX_FEE_PER_GAS_GWEI", "40"),
            (
                "ISSUANCE_CHAINS__ETHEREUM__MAX_PRIORITY_FEE_PER_GAS_GWEI",
                "2",
            ),
        ],
    )
    .unwrap();
    assert_eq!(config.chains.get(Network::Base).unwrap().chain_id, 8453);
    let ethereum = config.chains.get(Network::Ethereum).unwrap();
    assert_eq!(
        ethereum.rpc_url.as_str(),
        "https://eth.example/v2/provider-key"
    );
    match &ethereum.signer {
        crate::chain::SignerSource::PrivateKey(key) => {
            assert_eq!(key.expose_secret(), PRIVATE_KEY);
        }
        crate::chain::SignerSource::Keystore { .. } => panic!("keystore"),
    }
    assert!(!config.redacted_toml().contains("provider-key"));
}
