//! The issuance-bot binary: parse the command line, load the config, set
//! up telemetry, then hand over to the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
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
