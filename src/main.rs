//! The issuance-bot binary: parse the command line, load the config, set
//! up telemetry, then hand over to the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use issuance_bot::admin::{AdminAction, AdminClient};
use issuance_bot::config::{CONFIG_PATH_ENV, Config};

#[derive(Debug, Parser)]
#[command(version, about = "Issuer for Alpaca's Instant Tokenization Network")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(ConfigArgs),
    /// Load and validate the configuration, print it with secrets
    /// redacted, and exit.
    ValidateConfig(ConfigArgs),
    /// Operator actions on the running service (its admin API, with the
    /// internal key from the configuration).
    Admin(AdminArgs),
}

#[derive(Debug, Args)]
struct AdminArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The service's URL (default: `server.bind` from the configuration,
    /// on loopback when it is 0.0.0.0).
    #[arg(long, env = "ISSUANCE_ADMIN_URL")]
    url: Option<String>,
    #[command(subcommand)]
    action: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Unfinished flows older than a threshold, and every failed one.
    Stuck {
        #[arg(long)]
        older_than_secs: Option<u64>,
    },
    /// Every event of one aggregate (account, tokenized-asset, mint,
    /// redemption).
    History { aggregate: String, id: String },
    /// Rebuild every view from the event log.
    RebuildViews,
    /// Add receipts the chain shows in the wallet that no mint recorded
    /// (from the chain's start block, or --from-block).
    DiscoverReceipts {
        #[arg(long)]
        from_block: Option<u64>,
    },
    /// Actions on one mint (by issuer_request_id).
    #[command(subcommand)]
    Mint(FlowAction),
    /// Actions on one redemption (by issuer_request_id).
    #[command(subcommand)]
    Redemption(RedemptionAction),
    /// Attribute an unattributed transfer to an account (it is then
    /// redeemed as usual).
    Attribute {
        tx_hash: String,
        log_index: u64,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Send an unattributed transfer back to its sender (once, through
    /// the transaction pipeline).
    Return {
        tx_hash: String,
        log_index: u64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum FlowAction {
    /// Run a failed flow again (the chain is searched for its effect
    /// first).
    Retry {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Stop it for good; echo its transaction with --tx-hash if it has one.
    Close {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        tx_hash: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RedemptionAction {
    #[command(flatten)]
    Flow(FlowAction),
    /// Record a burn done by hand (checked on chain first).
    ForceComplete {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        burn_tx: String,
    },
}

impl AdminCommand {
    fn into_action(self) -> AdminAction {
        match self {
            Self::Stuck { older_than_secs } => {
                AdminAction::Stuck { older_than_secs }
            }
            Self::History { aggregate, id } => {
                AdminAction::History { aggregate, id }
            }
            Self::RebuildViews => AdminAction::RebuildViews,
            Self::DiscoverReceipts { from_block } => {
                AdminAction::DiscoverReceipts { from_block }
            }
            Self::Mint(FlowAction::Retry { id, reason }) => {
                AdminAction::MintRetry { id, reason }
            }
            Self::Mint(FlowAction::Close {
                id,
                reason,
                tx_hash,
            }) => AdminAction::MintClose {
                id,
                reason,
                tx_hash,
            },
            Self::Redemption(RedemptionAction::Flow(FlowAction::Retry {
                id,
                reason,
            })) => AdminAction::RedemptionRetry { id, reason },
            Self::Redemption(RedemptionAction::Flow(FlowAction::Close {
                id,
                reason,
                tx_hash,
            })) => AdminAction::RedemptionClose {
                id,
                reason,
                tx_hash,
            },
            Self::Attribute {
                tx_hash,
                log_index,
                client_id,
                reason,
            } => AdminAction::Attribute {
                tx_hash,
                log_index,
                client_id,
                reason,
            },
            Self::Return {
                tx_hash,
                log_index,
                reason,
            } => AdminAction::Return {
                tx_hash,
                log_index,
                reason,
            },
            Self::Redemption(RedemptionAction::ForceComplete {
                id,
                reason,
                burn_tx,
            }) => AdminAction::RedemptionForceComplete {
                id,
                reason,
                burn_tx,
            },
        }
    }
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// TOML configuration file; `ISSUANCE_*` environment variables
    /// override it.
    #[arg(long, env = CONFIG_PATH_ENV)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::ValidateConfig(args) => {
            match Config::load(args.config.as_deref()) {
                Ok(config) => {
                    // writeln!, not println!: a closed pipe (`| head`) must
                    // not turn a valid config into a panic.
                    let mut out = std::io::stdout().lock();
                    match write!(
                        out,
                        "# configuration is valid (secrets redacted)\n{}",
                        config.redacted_toml()
                    ) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(error)
                            if error.kind()
                                == std::io::ErrorKind::BrokenPipe =>
                        {
                            ExitCode::SUCCESS
                        }
                        Err(error) => {
                            eprintln!(
                                "cannot print the configuration: {error}"
                            );
                            ExitCode::FAILURE
                        }
                    }
                }
                Err(error) => {
                    eprintln!("issuance-bot: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Admin(args) => match admin(args) {
            Ok(answer) => {
                let mut out = std::io::stdout().lock();
                // A closed pipe is no failure of the action, which is done.
                let _ = writeln!(out, "{answer}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("issuance-bot: {}", report(&error));
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => match serve(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                // Once, on stderr (the journal under systemd): whoever
                // started the process reads why it refused there, e.g.
                // which pid holds the single-writer lock. Not also as a
                // log line, which would print it a second time.
                eprintln!("issuance-bot: {}", report(&error));
                ExitCode::FAILURE
            }
        },
    }
}

/// The error and its causes on one line, each cause once: most of our
/// errors already include their source's text, which `{:#}` would repeat.
fn report(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Runs one operator action; the service's answer, pretty-printed.
fn admin(args: AdminArgs) -> anyhow::Result<String> {
    let access = Config::operator_access(args.config.config.as_deref())
        .context("cannot load the configuration")?;
    let client = AdminClient::new(access, args.url.as_deref())?;
    let action = args.action.into_action();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answer = runtime.block_on(client.run(&action))?;
    Ok(serde_json::to_string_pretty(&answer)?)
}

fn serve(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())
        .context("cannot load the configuration")?;
    // Before the runtime exists: the OTLP exporter's blocking HTTP client
    // must not be created or dropped inside an async context.
    let telemetry = issuance_bot::telemetry::init(&config.telemetry)
        .context("cannot set up telemetry")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(issuance_bot::serve(config));
    drop(runtime);
    drop(telemetry);
    result.context("service stopped with an error")
}
