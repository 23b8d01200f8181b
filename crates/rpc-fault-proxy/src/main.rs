//! `rpc-fault-proxy --upstream URL [--port P]`: the fault proxy as a
//! process, with its control API under `/_proxy/` on the same port (see
//! the library's `RuleSpec` for the rule JSON).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use rpc_fault_proxy::RpcFaultProxy;

/// Fault-injecting JSON-RPC proxy: forwards POST / to the upstream node and
/// applies the rules set with POST /_proxy/rules.
#[derive(Debug, Parser)]
#[command(name = "rpc-fault-proxy", version)]
struct Args {
    /// Upstream JSON-RPC URL, e.g. http://127.0.0.1:8545.
    #[arg(long)]
    upstream: String,
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "rpc_fault_proxy=debug".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let proxy = match RpcFaultProxy::start_with_control(
        &args.upstream,
        args.port,
    )
    .await
    {
        Ok(proxy) => proxy,
        Err(error) => {
            eprintln!("rpc-fault-proxy: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "listening on {}", proxy.url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Nobody reads stdout any more; keep serving anyway.
    }
    drop(stdout);
    if let Err(error) = stop_signal().await {
        eprintln!("rpc-fault-proxy: waiting for a stop signal: {error}");
    }
    proxy.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
