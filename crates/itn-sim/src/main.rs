//! `itn-sim`: run the Alpaca ITN simulator until Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use itn_sim::{IssuerSigning, SimConfig, Simulator, Url, WireVersion};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Alpaca Instant Tokenization Network simulator")]
struct Args {
    #[arg(long, env = "ITN_SIM_BIND", default_value = "127.0.0.1:9100")]
    bind: SocketAddr,
    /// The issuer service Alpaca calls (connect, mint, confirm).
    #[arg(long, env = "ITN_SIM_ISSUER_URL")]
    issuer_url: Option<Url>,
    #[arg(long, env = "ITN_SIM_ISSUER_API_KEY")]
    issuer_api_key: String,
    /// Sign calls to the issuer (RFC 9421, Ed25519) with this PKCS#8 PEM
    /// private key instead of sending X-API-KEY; needs --issuer-keyid.
    #[arg(
        long,
        env = "ITN_SIM_ISSUER_SIGNING_KEY_FILE",
        requires = "issuer_keyid"
    )]
    issuer_signing_key_file: Option<std::path::PathBuf>,
    /// The `keyid` the issuer knows the signing key by.
    #[arg(
        long,
        env = "ITN_SIM_ISSUER_KEYID",
        requires = "issuer_signing_key_file"
    )]
    issuer_keyid: Option<String>,
    /// oldest | middle | current
    #[arg(long, env = "ITN_SIM_WIRE", default_value = "oldest")]
    wire: WireVersion,
    #[arg(long, env = "ITN_SIM_ISSUER_ACCOUNT_ID")]
    issuer_account_id: Uuid,
    #[arg(long, env = "ITN_SIM_BROKER_KEY_ID")]
    broker_key_id: String,
    #[arg(long, env = "ITN_SIM_BROKER_SECRET")]
    broker_secret: String,
    #[arg(long, env = "ITN_SIM_BEARER_TOKEN")]
    bearer_token: Option<String>,
    #[arg(long, default_value = "st0x")]
    issuer_name: String,
    /// Path overrides for the issuer endpoints.
    #[arg(long)]
    connect_path: Option<String>,
    #[arg(long)]
    mint_path: Option<String>,
    #[arg(long)]
    confirm_path: Option<String>,
    #[arg(long)]
    tokens_path: Option<String>,
    /// Refuse mints of tokens the issuer's token list does not offer.
    #[arg(long)]
    check_token_list: bool,
    #[arg(long, default_value_t = 500)]
    journal_delay_ms: u64,
    #[arg(long, default_value_t = 2000)]
    redeem_settle_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rocket=warn,hyper=warn".into()),
        )
        .init();
    let args = Args::parse();
    let issuer_signing =
        match (&args.issuer_signing_key_file, &args.issuer_keyid) {
            (Some(path), Some(keyid)) => Some(IssuerSigning::from_pkcs8_pem(
                keyid.clone(),
                &std::fs::read_to_string(path)?,
            )?),
            _ => None,
        };
    let cfg = SimConfig {
        bind: args.bind,
        issuer_base_url: args.issuer_url,
        issuer_api_key: args.issuer_api_key,
        issuer_signing,
        wire: args.wire,
        issuer_paths: itn_sim::IssuerPaths {
            connect: args.connect_path,
            mint: args.mint_path,
            confirm: args.confirm_path,
            tokens: args.tokens_path,
        },
        issuer_account_id: args.issuer_account_id,
        broker_key_id: args.broker_key_id,
        broker_secret: args.broker_secret,
        broker_bearer_token: args.bearer_token,
        issuer_name: args.issuer_name,
        journal_delay: Duration::from_millis(args.journal_delay_ms),
        redeem_settle_delay: Duration::from_millis(args.redeem_settle_delay_ms),
        check_token_list: args.check_token_list,
        handle_signals: false,
        ..SimConfig::default()
    };
    let sim = Simulator::spawn(cfg).await?;
    tracing::info!(
        base_url = %sim.base_url(),
        account_id = %sim.issuer_account_id(),
        "itn-sim listening; control endpoints under /sim"
    );
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}
