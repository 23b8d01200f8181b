//! `devnet`: the whole system on one machine. Starts anvil with the vault
//! stack, the ITN simulator playing Alpaca and the service (as `serve`
//! starts it, on a temporary SQLite database), sets up an asset and an
//! AP, runs one mint and one redemption end to end printing each step,
//! then serves until Ctrl-C (or exits with `--once`). Whatever it
//! started is stopped on the way out, anvil included.

mod credentials;
mod demo;
mod operator;
mod report;
mod serving;
mod stack;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use issuance_bot::quantity::AlpacaQuantity;
use itn_sim::WireVersion;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::demo::{Demo, DemoError};
use crate::report::{StepLog, Tag};
use crate::stack::{Devnet, Settings, StartError};

/// Exit status after an interrupted demo (128 + SIGINT, as shells do).
const INTERRUPTED: u8 = 130;

#[derive(Debug, Parser)]
#[command(
    about = "Local devnet: anvil + vault, the ITN simulator and the service, \
             with one mint and one redemption end to end"
)]
struct Args {
    /// Exit after the demo instead of serving.
    #[arg(long)]
    once: bool,
    /// Port of the service (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port of the ITN simulator (0 picks a free one).
    #[arg(long, default_value_t = 9100)]
    sim_port: u16,
    /// Keep the database and config after exit (their path is printed).
    #[arg(long)]
    keep_db: bool,
    /// Wire version the simulator speaks to the service: oldest, middle
    /// or current.
    #[arg(long, default_value = "current")]
    wire: WireVersion,
    /// Quantity minted and then redeemed (at most 9 decimals).
    #[arg(long, default_value = "10.5")]
    qty: AlpacaQuantity,
    /// How long any one step of the demo may take, in seconds.
    #[arg(long, default_value_t = 120)]
    step_timeout_secs: u64,
}

#[derive(Debug, thiserror::Error)]
enum DevnetError {
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("starting the devnet failed: {0}")]
    Start(#[from] StartError),
    #[error("the demo failed: {0}")]
    Demo(#[from] DemoError),
}

/// How a run ended.
enum Ending {
    /// The demo finished (`--once`).
    Done,
    /// Stopped by a signal while serving: the normal way out.
    StoppedWhileServing(&'static str),
    /// Stopped by a signal before the demo finished.
    Interrupted(&'static str),
    Failed(DevnetError),
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("devnet: {}", DevnetError::Runtime(error));
            return ExitCode::FAILURE;
        }
    };
    let ending = runtime.block_on(run(&args));
    // Tasks still running (none should be) are cancelled here.
    drop(runtime);
    match ending {
        Ending::Done | Ending::StoppedWhileServing(_) => ExitCode::SUCCESS,
        Ending::Interrupted(_) => ExitCode::from(INTERRUPTED),
        Ending::Failed(error) => {
            eprintln!("devnet: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The service's and the simulator's own logs go to stderr, warnings and
/// up unless `RUST_LOG` says otherwise; stdout is the step log. Rocket's
/// launch banners are warnings too, and only noise here.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,rocket=error")
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(args: &Args) -> Ending {
    let log = StepLog::new();
    // Installed before anything starts, so a signal at any point stops
    // what was started rather than killing the process outright.
    let mut signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => return Ending::Failed(DevnetError::Signals(error)),
    };
    let mut devnet: Option<Devnet> = None;
    let mut demo_done = false;
    let ending = tokio::select! {
        result = drive(args, &log, &mut devnet, &mut demo_done) => {
            match result {
                Ok(()) => Ending::Done,
                Err(error) => Ending::Failed(error),
            }
        }
        name = signals.next() => {
            log.step(Tag::Devnet, format!("{name} received, stopping"));
            if demo_done {
                Ending::StoppedWhileServing(name)
            } else {
                Ending::Interrupted(name)
            }
        }
    };
    if let Ending::Failed(error) = &ending {
        log.step(Tag::Devnet, format!("failed: {error}; stopping"));
    }
    if let Some(devnet) = devnet.take() {
        devnet.stop(&log).await;
    }
    match &ending {
        Ending::Done => {
            log.step(Tag::Devnet, "demo complete, everything stopped");
        }
        Ending::StoppedWhileServing(name) | Ending::Interrupted(name) => {
            log.step(Tag::Devnet, format!("stopped by {name}"));
        }
        Ending::Failed(_) => {}
    }
    ending
}

/// Starts everything, runs the demo, then serves forever (or returns,
/// with `--once`). Whatever it started is left in `slot` for the caller
/// to stop, however this future ends.
async fn drive(
    args: &Args,
    log: &StepLog,
    slot: &mut Option<Devnet>,
    demo_done: &mut bool,
) -> Result<(), DevnetError> {
    let settings = Settings {
        service_port: args.port,
        sim_port: args.sim_port,
        wire: args.wire,
        keep_db: args.keep_db,
        journal_delay: Duration::from_millis(300),
    };
    let devnet = slot.insert(Devnet::start(&settings, log).await?);
    let patience = Duration::from_secs(args.step_timeout_secs);
    let summary = Demo::new(devnet, log, patience).run(args.qty).await?;
    *demo_done = true;
    if args.once {
        return Ok(());
    }
    serving::print_banner(devnet, &summary, args.qty);
    std::future::pending::<()>().await;
    Ok(())
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP, whichever comes first.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}
