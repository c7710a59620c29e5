//! `norn`: the command-line tool of norn.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use norn_cli::client_config::{ClientConfig, Session};
use norn_cli::{admin, certs};
use norn_membership::ChangeKind;

/// Talk to a norn cluster: certificates, admin views and ring changes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Client configuration (default: $NORN_CONFIG, then cluster/client.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Talk to this node (`host:port`) instead of the first that answers.
    #[arg(long, global = true)]
    node: Option<String>,
    /// Timeout of each request, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make the cluster CA and the certificates it signs.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Inspect and change the cluster.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Make a new cluster CA in DIR (ca.pem, ca.key).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// A name for the cluster, shown in the CA's subject.
        #[arg(long, default_value = "norn")]
        cluster: String,
    },
    /// Issue a node certificate (NAME.pem, NAME.key) with a new node id.
    Node {
        name: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Issue a client certificate (NAME.pem, NAME.key).
    Client {
        name: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Every member: id, name, address, zone, state, up or down, phi.
    Members {
        #[arg(long)]
        json: bool,
    },
    /// Partitions and share per node, balance, zone diversity.
    Ring {
        /// Replication factor to report zone diversity for.
        #[arg(short, long, default_value_t = 3)]
        n: usize,
        #[arg(long)]
        json: bool,
    },
    /// Run against a new node (--node): contact SEED and stage this node's join.
    Join { seed: String },
    /// Show what committing the staged changes would do; or stage one first.
    Plan {
        #[command(subcommand)]
        change: Option<PlanChange>,
        #[arg(long, global = true)]
        json: bool,
    },
    /// Commit the staged changes as the next ring version.
    Commit,
}

#[derive(Debug, Subcommand)]
enum PlanChange {
    /// Stage NODE (a name or id) leaving the ring; its partitions move away.
    Leave { node: String },
    /// Stage NODE (a name or id), gone for good, out of the ring.
    Remove { node: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let timeout = Duration::from_millis(args.timeout_ms);
    match args.command {
        Command::Certs { command } => match command {
            CertsCommand::Init { dir, cluster } => certs::init(&dir, &cluster),
            CertsCommand::Node { name, dir } => certs::node(&dir, &name).map(|_| ()),
            CertsCommand::Client { name, dir } => certs::client(&dir, &name),
        },
        Command::Admin { command } => {
            let config = ClientConfig::locate(args.config.as_deref())?;
            let session = Session::open(&config, args.node.as_deref(), timeout).await?;
            match command {
                AdminCommand::Members { json } => admin::members(&session, json).await,
                AdminCommand::Ring { n, json } => admin::ring(&session, n, json).await,
                AdminCommand::Join { seed } => admin::join(&session, &seed).await,
                AdminCommand::Plan { change, json } => {
                    let stage = change.map(|c| match c {
                        PlanChange::Leave { node } => (ChangeKind::Leave, node),
                        PlanChange::Remove { node } => (ChangeKind::Remove, node),
                    });
                    admin::plan(&session, stage, json).await
                }
                AdminCommand::Commit => admin::commit(&session).await,
            }
        }
    }
}
