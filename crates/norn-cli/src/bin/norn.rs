//! `norn`: the command-line tool of norn.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use norn_cli::{admin, autopilot, certs, data, models};
use norn_client::{ClientOptions, NodeSession as Session};
use norn_membership::ChangeKind;
use norn_proto::ClientRole;
use norn_ring::NodeId;

/// Talk to a norn cluster: certificates, admin views and ring changes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Client configuration (default: $NORN_CONFIG, then cluster/client.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Talk to this node (`host:port`, or a member's name or id) instead of
    /// the first that answers.
    #[arg(long, global = true)]
    node: Option<String>,
    /// Timeout of each request, in milliseconds: the coordinating node's
    /// for data requests (norn itself waits a second longer).
    #[arg(long, global = true, default_value_t = 5000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

/// Per-request replication parameters and output.
#[derive(Debug, clap::Args)]
struct RequestFlags {
    /// Replicas (N); default from the node's config.
    #[arg(short = 'n', long)]
    n: Option<u8>,
    /// Replies a read waits for (R).
    #[arg(short = 'r', long)]
    r: Option<u8>,
    /// Acknowledgements a write waits for (W).
    #[arg(short = 'w', long)]
    w: Option<u8>,
    /// Of R, replies that must come from primaries (PR).
    #[arg(long)]
    pr: Option<u8>,
    /// Of W, acknowledgements that must come from primaries (PW).
    #[arg(long)]
    pw: Option<u8>,
    /// Of W, acknowledgements that must come after an fsync (DW).
    #[arg(long)]
    dw: Option<u8>,
    /// The causal context printed by `norn get` (hex).
    #[arg(long)]
    context: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl RequestFlags {
    fn options(&self) -> norn_proto::QuorumOptions {
        norn_proto::QuorumOptions {
            n: self.n,
            r: self.r,
            w: self.w,
            pr: self.pr,
            pw: self.pw,
            dw: self.dw,
        }
    }

    fn context(&self) -> anyhow::Result<Option<norn_clock::Context>> {
        self.context
            .as_deref()
            .map(data::context_from_hex)
            .transpose()
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a key: every sibling and the causal context.
    Get {
        bucket: String,
        key: String,
        #[command(flatten)]
        flags: RequestFlags,
    },
    /// Write a key. VALUE is the value; `-` reads it from stdin.
    Put {
        bucket: String,
        key: String,
        /// The value; `-` for stdin. Omit with --file.
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        #[command(flatten)]
        flags: RequestFlags,
    },
    /// Delete a key (writes a tombstone over what --context covers).
    Delete {
        bucket: String,
        key: String,
        #[command(flatten)]
        flags: RequestFlags,
    },
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
        /// Days the CA is valid.
        #[arg(long, default_value_t = norn_net::certs::CA_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        days: u32,
    },
    /// Issue a node certificate (NAME.pem, NAME.key) with a new node id.
    Node {
        name: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Renew the certificate of this existing node (its id, 16 hex
        /// digits, as `norn admin members` shows it) instead of making a
        /// new node id.
        #[arg(long, value_parser = parse_node_id)]
        id: Option<NodeId>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = norn_net::certs::LEAF_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        days: u32,
    },
    /// Issue a client certificate (NAME.pem, NAME.key): `data` may read and
    /// write, `admin` may also change the ring, repair and inspect.
    Client {
        name: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value = "data")]
        role: ClientRole,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = norn_net::certs::LEAF_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        days: u32,
    },
    /// The SHA-256 fingerprint of a certificate (PEM), as `norn admin
    /// revoke` takes it.
    Fingerprint { cert: PathBuf },
}

fn parse_node_id(hex: &str) -> Result<NodeId, String> {
    u64::from_str_radix(hex, 16)
        .map(NodeId)
        .map_err(|e| format!("a node id is 16 hex digits: {e}"))
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
    /// Commit the staged changes as the next ring version, signed with
    /// the admin certificate.
    Commit,
    /// Revoke certificates (PEM files or SHA-256 fingerprints): committed
    /// as the next ring version, refused by every node once it holds it.
    Revoke {
        #[arg(required = true)]
        certificates: Vec<String>,
    },
    /// One node's local copy of a key (REPLICA: a node's name, id or address).
    ReplicaGet {
        replica: String,
        bucket: String,
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Each key's primaries in the current ring and whether each holds it,
    /// in one version; fails when one does not.
    Replicas {
        bucket: String,
        #[arg(required = true)]
        keys: Vec<String>,
        /// Replicas (N) the keys were written with.
        #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=16))]
        n: u8,
        #[arg(long)]
        json: bool,
    },
    /// Every up member's readiness (as /health/ready), the ring it holds
    /// and what it still hands off; fails when one is not ready.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Take MEMBER (a name or id) out of the ring: stage its leave and
    /// commit it once that is safe (the autopilot's rule).
    Leave {
        member: String,
        /// Return only when MEMBER has handed off all its data and hints,
        /// so that it can be stopped.
        #[arg(long)]
        wait: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_s: u64,
    },
    /// Commit the joins and leaves nodes stage (`cluster.auto_join`) when
    /// they are safe: every member up, the last change done moving, N
    /// kept. Runs until stopped; needs the admin certificate.
    Autopilot {
        /// Joins the first ring waits for.
        #[arg(long, default_value_t = 3)]
        min_nodes: usize,
        /// Time between looks at the cluster, ms.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
        interval_ms: u64,
        /// Look once, print the decision, and exit.
        #[arg(long)]
        once: bool,
    },
    /// Pending hints per target on the node (--node).
    Hints {
        #[arg(long)]
        json: bool,
    },
    /// Run anti-entropy exchanges now and show progress until done: on
    /// every up node in turn, only on the node given with --node, or for one
    /// partition (--partition, run by its first up primary).
    Repair {
        /// Only this partition.
        #[arg(long)]
        partition: Option<u16>,
        /// Show, per node and partition, the time since it was last
        /// verified equal on all its replicas, instead of repairing.
        #[arg(long, conflicts_with = "partition")]
        status: bool,
        #[arg(long)]
        json: bool,
    },
    /// Every node's outgoing ownership transfers and their progress.
    Transfers {
        #[arg(long)]
        json: bool,
    },
    /// Predict staleness (PBS): for every R, W with R + W <= N, how likely
    /// a read t ms after a write's acknowledgement returns it, from every
    /// up member's measured latencies (or --latencies FILE).
    Pbs {
        /// Replicas (N).
        #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=16))]
        n: u8,
        /// WARS delay distributions (JSON; see the README); no cluster needed.
        #[arg(long)]
        latencies: Option<PathBuf>,
        /// Percent of reads that ask every replica (the nodes'
        /// data.read_repair_percent).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
        read_repair_percent: u8,
        /// Monte Carlo trials per row.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=i64::from(norn_model::pbs::TRIALS_MAX)))]
        trials: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Durability and availability: the probability of losing a key per
    /// year, and of reaching each quorum size, for the cluster's ring (or
    /// --nodes).
    Model {
        /// Replicas (N).
        #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=16))]
        n: u8,
        /// Nodes in the cluster; no cluster needed.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        nodes: Option<u32>,
        /// Failures per node and year that lose its data for good
        /// (default: the cluster's down events, else 0.05).
        #[arg(long)]
        failures_per_year: Option<f64>,
        /// Hours to re-create a lost replica (default: a node's data over
        /// the cluster's measured repair throughput, else 24).
        #[arg(long)]
        repair_hours: Option<f64>,
        /// The share of time each node is up, 0..=1 (default: as the
        /// cluster's failure detectors saw it, else 0.999).
        #[arg(long)]
        availability: Option<f64>,
        /// Primaries a sloppy write needs (PW).
        #[arg(long, default_value_t = 0)]
        pw: u8,
        #[arg(long)]
        json: bool,
    },
}

fn read_value(value: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    match (value, file) {
        (_, Some(path)) => {
            std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
        }
        (Some(value), None) if value == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes)?;
            Ok(bytes)
        }
        (Some(value), None) => Ok(value.into_bytes()),
        (None, None) => anyhow::bail!("give VALUE, `-` for stdin, or --file PATH"),
    }
}

#[derive(Debug, Subcommand)]
enum PlanChange {
    /// Stage MEMBER (a name or id) leaving the ring; its partitions move away.
    Leave { member: String },
    /// Stage MEMBER (a name or id), gone for good, out of the ring.
    Remove { member: String },
}

/// Which of the config's certificates a command presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum As {
    Data,
    Admin,
}

async fn open(
    config: &Option<PathBuf>,
    node: &Option<String>,
    timeout: Duration,
    role: As,
) -> anyhow::Result<Session> {
    let mut options = ClientOptions::locate(config.as_deref())?;
    if role == As::Admin {
        options = options.as_admin();
    }
    options.timeout = timeout;
    Ok(Session::open(&options, node.as_deref()).await?)
}

/// Ends the process quietly when stdout is a closed pipe (`norn ... | head`):
/// `println!` panics on EPIPE, and a reader that stopped reading is not an
/// error worth a backtrace.
fn exit_quietly_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
}

fn main() {
    exit_quietly_on_closed_stdout();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run(Args::parse())),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let request_timeout_ms = Some(args.timeout_ms);
    let timeout = Duration::from_millis(args.timeout_ms + 1000);
    match args.command {
        Command::Certs { command } => match command {
            CertsCommand::Init { dir, cluster, days } => certs::init(&dir, &cluster, days),
            CertsCommand::Node {
                name,
                dir,
                id,
                days,
            } => certs::node(&dir, &name, id, days).map(|_| ()),
            CertsCommand::Client {
                name,
                dir,
                role,
                days,
            } => certs::client(&dir, &name, role, days),
            CertsCommand::Fingerprint { cert } => certs::fingerprint(&cert),
        },
        Command::Get { bucket, key, flags } => {
            let session = open(&args.config, &args.node, timeout, As::Data).await?;
            let options = flags.options();
            let found = data::get(
                &session,
                &bucket,
                &key,
                options,
                request_timeout_ms,
                flags.json,
            )
            .await?;
            if !found {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Put {
            bucket,
            key,
            value,
            file,
            flags,
        } => {
            let value = read_value(value, file)?;
            let session = open(&args.config, &args.node, timeout, As::Data).await?;
            let request = data::write_request(
                &bucket,
                &key,
                Some(value),
                flags.context()?,
                flags.options(),
                request_timeout_ms,
            );
            data::put(&session, request, flags.json).await
        }
        Command::Delete { bucket, key, flags } => {
            let session = open(&args.config, &args.node, timeout, As::Data).await?;
            let request = data::write_request(
                &bucket,
                &key,
                None,
                flags.context()?,
                flags.options(),
                request_timeout_ms,
            );
            data::put(&session, request, flags.json).await
        }
        Command::Admin { command } if !needs_cluster(&command) => run_models(None, command).await,
        Command::Admin {
            command:
                AdminCommand::Autopilot {
                    min_nodes,
                    interval_ms,
                    once,
                },
        } => {
            let mut options = ClientOptions::locate(args.config.as_deref())?.as_admin();
            options.timeout = timeout;
            let autopilot = autopilot::AutopilotArgs {
                min_nodes,
                interval: Duration::from_millis(interval_ms),
                once,
            };
            autopilot::run(&options, args.node.as_deref(), autopilot).await
        }
        Command::Admin { command } => {
            let session = open(&args.config, &args.node, timeout, As::Admin).await?;
            run_admin(&session, command, args.node.is_some()).await
        }
    }
}

/// `norn admin ...` on `session`; `one_node` when `--node` named a node.
async fn run_admin(session: &Session, command: AdminCommand, one_node: bool) -> anyhow::Result<()> {
    match command {
        AdminCommand::Members { json } => admin::members(session, json).await,
        AdminCommand::Ring { n, json } => admin::ring(session, n, json).await,
        AdminCommand::Join { seed } => admin::join(session, &seed).await,
        AdminCommand::Plan { change, json } => {
            let stage = change.map(|c| match c {
                PlanChange::Leave { member } => (ChangeKind::Leave, member),
                PlanChange::Remove { member } => (ChangeKind::Remove, member),
            });
            admin::plan(session, stage, json).await
        }
        AdminCommand::Commit => admin::commit(session).await,
        AdminCommand::Revoke { certificates } => admin::revoke(session, &certificates).await,
        AdminCommand::ReplicaGet {
            replica,
            bucket,
            key,
            json,
        } => data::replica_get(session, &replica, &bucket, &key, json).await,
        AdminCommand::Hints { json } => data::hints(session, json).await,
        AdminCommand::Replicas {
            bucket,
            keys,
            n,
            json,
        } => data::replicas(session, &bucket, &keys, n, json).await,
        AdminCommand::Status { json } => admin::status(session, json).await,
        AdminCommand::Leave {
            member,
            wait,
            timeout_s,
        } => autopilot::leave(session, &member, wait, Duration::from_secs(timeout_s)).await,
        AdminCommand::Autopilot { .. } => anyhow::bail!("the autopilot opens its own sessions"),
        AdminCommand::Repair {
            status: true, json, ..
        } => admin::repair_status(session, one_node, json).await,
        AdminCommand::Repair {
            partition,
            status: false,
            json,
        } => {
            let scope = admin::RepairScope {
                this_node_only: one_node,
                partition,
            };
            admin::repair(session, scope, json).await
        }
        AdminCommand::Transfers { json } => admin::transfers(session, json).await,
        command @ (AdminCommand::Pbs { .. } | AdminCommand::Model { .. }) => {
            run_models(Some(session), command).await
        }
    }
}

/// Whether `command` must ask the cluster: `norn admin pbs --latencies`
/// and `norn admin model --nodes` need none.
fn needs_cluster(command: &AdminCommand) -> bool {
    !matches!(
        command,
        AdminCommand::Pbs {
            latencies: Some(_),
            ..
        } | AdminCommand::Model { nodes: Some(_), .. }
    )
}

/// `norn admin pbs | model`, on `session` when they need the cluster.
async fn run_models(session: Option<&Session>, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Pbs {
            latencies,
            n,
            read_repair_percent,
            trials,
            seed,
            json,
        } => {
            let pbs = models::PbsArgs {
                n,
                read_repair_percent,
                trials,
                seed,
                json,
            };
            models::pbs(session, latencies.as_deref(), pbs).await
        }
        AdminCommand::Model {
            n,
            nodes,
            failures_per_year,
            repair_hours,
            availability,
            pw,
            json,
        } => {
            let model = models::ModelArgs {
                n,
                nodes,
                failures_per_year,
                repair_hours,
                availability,
                pw,
                json,
            };
            models::model(session, model).await
        }
        other => anyhow::bail!("not a model command: {other:?}"),
    }
}
