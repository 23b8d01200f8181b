//! The configuration as TOML-like text for `validate-config`: every
//! section and key under its config name, the effective values
//! (defaults included), secrets shown only as `"[REDACTED]"`.
//!
//! Each section is destructured in full, so a new field does not compile
//! until it is printed (or deliberately left out here).

use std::fmt::{Display, Write as _};
use std::time::Duration;

use super::{
    AlpacaCredentials, AuthConfig, Config, DatabaseConfig, LogFormat,
    MetricsConfig, ServerConfig, TelemetryConfig,
};
use crate::alpaca::AlpacaConfig;
use crate::auth::AllowList;
use crate::chain::{ChainConfig, PasswordSource, SignerSource};
use crate::redemption::RedemptionConfig;

/// What a secret is printed as.
pub const REDACTED: &str = "\"[REDACTED]\"";

#[derive(Default)]
struct Printout(String);

impl Printout {
    fn section(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push('\n');
        }
        let _ = writeln!(self.0, "[{name}]");
    }

    fn raw(&mut self, key: &str, value: impl Display) {
        let _ = writeln!(self.0, "{key} = {value}");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.raw(key, quoted(value));
    }

    fn secret(&mut self, key: &str) {
        self.raw(key, REDACTED);
    }

    fn unset(&mut self, key: &str) {
        let _ = writeln!(self.0, "# {key} is not set");
    }

    fn optional(&mut self, key: &str, value: Option<impl Display>) {
        match value {
            Some(value) => self.raw(key, value),
            None => self.unset(key),
        }
    }

    fn millis(&mut self, key: &str, value: Duration) {
        self.raw(key, value.as_millis());
    }

    fn secs(&mut self, key: &str, value: Duration) {
        self.raw(key, value.as_secs());
    }

    fn allow_list(&mut self, key: &str, list: &AllowList) {
        let entries: Vec<String> = list
            .networks()
            .iter()
            .map(|net| quoted(&net.to_string()))
            .collect();
        self.raw(key, format_args!("[{}]", entries.join(", ")));
    }
}

/// A TOML basic string (Rust's escapes cover what TOML needs here).
fn quoted(value: &str) -> String {
    format!("{value:?}")
}

impl Config {
    /// The configuration as TOML-like text with every secret redacted.
    pub fn redacted_toml(&self) -> String {
        let Self {
            server,
            database,
            auth,
            telemetry,
            metrics,
            alpaca,
            chains,
            legacy_chain: _,
            redemption,
        } = self;
        let mut out = Printout::default();
        print_server(&mut out, server);
        print_database(&mut out, database);
        print_auth(&mut out, auth);
        print_telemetry(&mut out, telemetry);
        print_metrics(&mut out, metrics);
        if chains.is_empty() {
            out.section("chains");
            out.0.push_str("# not set: no chain, no drivers\n");
        }
        // A `[chain]` section is shown as the table it was read into.
        for chain in chains.iter() {
            print_chain(&mut out, chain);
        }
        if let Some(alpaca) = alpaca {
            print_alpaca(&mut out, alpaca);
        } else {
            out.section("alpaca");
            out.0.push_str("# not set: no Alpaca calls, no drivers\n");
        }
        print_redemption(&mut out, redemption);
        out.0
    }
}

fn print_server(out: &mut Printout, server: &ServerConfig) {
    let ServerConfig {
        bind,
        body_limit,
        client_ip_header,
        connections,
    } = server;
    out.section("server");
    out.string("bind", &bind.to_string());
    out.raw("body_limit", body_limit.bytes());
    out.optional(
        "client_ip_header",
        client_ip_header
            .as_ref()
            .map(|header| quoted(header.as_str())),
    );
    let crate::http::front::ConnectionLimits {
        header_read_timeout,
        body_read_timeout,
        idle_timeout,
        max_connections,
        max_connections_per_client,
    } = connections;
    out.section("server.connections");
    out.millis("header_read_timeout_ms", *header_read_timeout);
    out.millis("body_read_timeout_ms", *body_read_timeout);
    out.millis("idle_timeout_ms", *idle_timeout);
    out.raw("max_connections", max_connections);
    out.raw("max_connections_per_client", max_connections_per_client);
}

fn print_database(out: &mut Printout, database: &DatabaseConfig) {
    let DatabaseConfig {
        url,
        max_connections,
    } = database;
    out.section("database");
    out.string("url", url.as_str());
    out.raw("max_connections", max_connections);
}

fn print_auth(out: &mut Printout, auth: &AuthConfig) {
    let AuthConfig {
        alpaca,
        internal,
        failures_per_minute,
    } = auth;
    out.section("auth");
    out.raw("failures_per_minute", failures_per_minute);

    out.section("auth.alpaca");
    match &alpaca.credentials {
        AlpacaCredentials::ApiKey(_) => {
            out.string("scheme", "api_key");
            out.secret("api_key");
        }
        AlpacaCredentials::Signature(signature) => {
            out.string("scheme", "signature");
            out.raw("max_skew_secs", signature.max_skew_secs());
            out.raw("nonce_cache_capacity", signature.nonce_cache_capacity());
            out.optional(
                "public_base_url",
                signature
                    .public_base_url()
                    .map(|url| quoted(&url.to_string())),
            );
        }
    }
    out.allow_list("allowed_cidrs", &alpaca.allowed_cidrs);
    out.optional("requests_per_minute", alpaca.requests_per_minute);
    if let Some(signature) = alpaca.signature() {
        for key in signature.keys() {
            out.section("[auth.alpaca.signature_keys]");
            out.string("keyid", key.keyid());
            out.optional(
                "not_after",
                key.not_after().map(|at| quoted(&at.to_rfc3339())),
            );
        }
    }

    out.section("auth.internal");
    out.secret("api_key");
    out.allow_list("allowed_cidrs", &internal.allowed_cidrs);
    out.optional("requests_per_minute", internal.requests_per_minute);
}

fn print_telemetry(out: &mut Printout, telemetry: &TelemetryConfig) {
    let TelemetryConfig {
        log_format,
        otlp_endpoint,
        otlp_headers,
        service_name,
    } = telemetry;
    out.section("telemetry");
    out.string(
        "log_format",
        match log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        },
    );
    out.string("service_name", service_name);
    out.optional(
        "otlp_endpoint",
        otlp_endpoint.as_ref().map(|url| quoted(url.as_str())),
    );
    if !otlp_headers.is_empty() {
        out.section("telemetry.otlp_headers");
        for name in otlp_headers.names() {
            out.secret(name);
        }
    }
}

fn print_metrics(out: &mut Printout, metrics: &MetricsConfig) {
    let MetricsConfig {
        bind,
        stuck_after_secs,
    } = metrics;
    out.section("metrics");
    out.optional("bind", bind.map(|bind| quoted(&bind.to_string())));
    out.raw("stuck_after_secs", stuck_after_secs);
}

fn print_chain(out: &mut Printout, chain: &ChainConfig) {
    let ChainConfig {
        rpc_url: _,
        chain_id,
        network,
        signer,
        max_fee_per_gas,
        max_priority_fee_per_gas,
        receipt_poll_interval,
        rpc_timeout,
        step_timeout,
        unseen_landing_alert,
        confirmations,
        log_chunk_blocks,
        start_block,
        gas_limit_margin_percent,
    } = chain;
    out.section(&format!("chains.{network}"));
    // Providers put their API key in the path or query.
    out.string("rpc_url", &chain.redacted_rpc_url());
    out.raw("chain_id", chain_id);
    match signer {
        SignerSource::PrivateKey(_) => out.secret("private_key"),
        SignerSource::Keystore { path, password } => {
            let password = match password {
                PasswordSource::File(file) => {
                    format!(
                        "password_file = {}",
                        quoted(&file.display().to_string())
                    )
                }
                PasswordSource::Env(var) => {
                    format!("password_env = {}", quoted(var))
                }
            };
            out.raw(
                "keystore",
                format_args!(
                    "{{ path = {}, {password} }}",
                    quoted(&path.display().to_string())
                ),
            );
        }
    }
    out.string("max_fee_per_gas_gwei", &max_fee_per_gas.gwei());
    out.string(
        "max_priority_fee_per_gas_gwei",
        &max_priority_fee_per_gas.gwei(),
    );
    out.raw("confirmations", confirmations);
    out.raw("log_chunk_blocks", log_chunk_blocks);
    out.raw("start_block", start_block);
    out.millis("receipt_poll_interval_ms", *receipt_poll_interval);
    out.millis("rpc_timeout_ms", *rpc_timeout);
    out.millis("step_timeout_ms", *step_timeout);
    out.secs("unseen_landing_alert_secs", *unseen_landing_alert);
    out.raw("gas_limit_margin_percent", gas_limit_margin_percent);
}

fn print_alpaca(out: &mut Printout, alpaca: &AlpacaConfig) {
    let AlpacaConfig {
        base_url,
        account_id,
        api_key_id: _,
        api_secret: _,
        redeem_path,
        connect_timeout_secs,
        request_timeout_secs,
        max_retries,
        retry_min_delay_ms,
        retry_max_delay_ms,
        idempotency_namespace,
        send_legacy_client_id,
        custody_accounts,
    } = alpaca;
    out.section("alpaca");
    out.string("base_url", base_url.as_str());
    out.string("account_id", &account_id.to_string());
    out.secret("api_key_id");
    out.secret("api_secret");
    out.string("redeem_path", redeem_path.as_str());
    out.raw("connect_timeout_secs", connect_timeout_secs);
    out.raw("request_timeout_secs", request_timeout_secs);
    out.raw("max_retries", max_retries);
    out.raw("retry_min_delay_ms", retry_min_delay_ms);
    out.raw("retry_max_delay_ms", retry_max_delay_ms);
    out.optional(
        "idempotency_namespace",
        idempotency_namespace.map(|id| quoted(&id.to_string())),
    );
    out.raw("send_legacy_client_id", send_legacy_client_id);
    out.section("alpaca.custody_accounts");
    if custody_accounts.iter().next().is_none() {
        out.0
            .push_str("# none: every symbol answers alpaca.account_id\n");
    }
    for (symbol, account) in custody_accounts.iter() {
        out.string(symbol.as_str(), &account.to_string());
    }
}

fn print_redemption(out: &mut Printout, redemption: &RedemptionConfig) {
    let RedemptionConfig {
        poll_timeout_secs,
        monitor_interval_ms,
        monitor_head_poll_ms,
        reconcile_interval_secs,
    } = redemption;
    out.section("redemption");
    out.raw("poll_timeout_secs", poll_timeout_secs);
    out.raw("monitor_interval_ms", monitor_interval_ms);
    out.raw("monitor_head_poll_ms", monitor_head_poll_ms);
    out.raw("reconcile_interval_secs", reconcile_interval_secs);
}
