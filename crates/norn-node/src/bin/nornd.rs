//! `nornd`: the norn node daemon. `nornd --config FILE`; stops cleanly on
//! SIGTERM or Ctrl-C; reloads its certificates on SIGHUP.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use norn_node::{Node, NodeConfig};

/// Many small, short-lived allocations per request (frames, objects,
/// futures): mimalloc serves them with less CPU than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The norn node daemon.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The node's TOML configuration (see nornd.example.toml).
    #[arg(long, short, env = "NORND_CONFIG")]
    config: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn,rustls=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let config = NodeConfig::load(&args.config)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.node.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build().context("tokio runtime")?;
    runtime.block_on(serve(config))
}

/// Runs the node until SIGTERM or Ctrl-C.
async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    let node = Node::start(config).await.context("node did not start")?;
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let reloading = node.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match reloading.reload_certificates().await {
                Ok(()) => tracing::info!("certificates reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "certificates not reloaded; the old ones stay")
                }
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    node.run(shutdown).await?;
    Ok(())
}
