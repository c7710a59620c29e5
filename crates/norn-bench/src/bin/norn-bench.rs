//! `norn-bench`: YCSB-style load against a norn cluster through norn-client.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use hdrhistogram::Histogram;
use norn_bench::keys::{key_name, Distribution, KeyChooser};
use norn_bench::report::Report;
use norn_bench::workload::{Operation, Workload};
use norn_client::{Client, ClientError, ClientOptions, Context, Policy, QuorumOptions};
use rand::SeedableRng;

const BUCKET: &str = "ycsb";

/// YCSB-style load generator for norn.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Client configuration (default: $NORN_CONFIG, then cluster/client.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "a")]
    workload: Workload,
    #[arg(long, value_enum, default_value = "uniform")]
    distribution: Distribution,
    /// Keys in the key space.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    /// Write every key once before the run, over what it holds (read
    /// first), so that preloading again adds no siblings.
    #[arg(long)]
    preload: bool,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Seconds to run (unless --ops is given).
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Operations to run, instead of a duration.
    #[arg(long)]
    ops: Option<u64>,
    #[arg(short = 'n', long)]
    n: Option<u8>,
    #[arg(short = 'r', long)]
    r: Option<u8>,
    #[arg(short = 'w', long)]
    w: Option<u8>,
    /// Replicas that must have the write on disk (fsynced) before it is
    /// acknowledged.
    #[arg(long)]
    dw: Option<u8>,
    /// Load an etcd cluster instead, through its gRPC API at these
    /// comma-separated endpoints (http://host:port), for comparison; needs
    /// the `etcd` feature. N, R, W and DW do not apply.
    #[arg(long, value_delimiter = ',')]
    etcd: Option<Vec<String>>,
    /// With --etcd: serializable reads (any member answers from its own
    /// copy) instead of linearizable ones (through the leader's quorum).
    #[arg(long)]
    serializable: bool,
    /// How the client picks among a key's replicas.
    #[arg(long, value_enum, default_value = "round-robin")]
    policy: PolicyArg,
    /// Print one JSON object with the results.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PolicyArg {
    RoundRobin,
    LeastOutstanding,
    LowestLatency,
}

/// What one worker measured.
struct WorkerResult {
    latencies: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

fn error_kind(error: &ClientError) -> String {
    match error {
        ClientError::QuorumNotMet { .. } => "quorum_not_met".into(),
        ClientError::Server { code, .. } => format!("{code:?}").to_lowercase(),
        ClientError::NoNode { .. } => "no_node".into(),
        ClientError::Net(_) => "network".into(),
        _ => "other".into(),
    }
}

/// What the workers load.
enum Store {
    Norn {
        client: Box<Client>,
        options: QuorumOptions,
    },
    #[cfg(feature = "etcd")]
    Etcd(norn_bench::etcd::Etcd),
}

struct Shared {
    store: Store,
    args: Args,
    chooser: KeyChooser,
    issued: AtomicU64,
    completed: AtomicU64,
}

impl Shared {
    /// Reads `key`; its context, for a store that has one, or the kind of
    /// error.
    async fn read(&self, key: &str) -> Result<Option<Context>, String> {
        match &self.store {
            Store::Norn { client, options } => client
                .get(BUCKET, key, *options)
                .await
                .map(|r| Some(r.context))
                .map_err(|e| error_kind(&e)),
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => etcd.read(key).await.map(|()| None),
        }
    }

    /// Writes `value` to `key` over `context`; the new context, for a store
    /// that has one, or the kind of error.
    async fn write(
        &self,
        key: &str,
        value: Vec<u8>,
        context: Option<Context>,
    ) -> Result<Option<Context>, String> {
        match &self.store {
            Store::Norn { client, options } => client
                .put(BUCKET, key, value, context, *options)
                .await
                .map(|r| Some(r.context))
                .map_err(|e| error_kind(&e)),
            #[cfg(feature = "etcd")]
            Store::Etcd(etcd) => etcd.write(key, value).await.map(|()| None),
        }
    }

    /// Claims the next operation, or `None` when the run is over.
    fn claim(&self, deadline: Instant) -> bool {
        match self.args.ops {
            Some(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            None => Instant::now() < deadline,
        }
    }
}

async fn run_worker(
    shared: Arc<Shared>,
    seed: u64,
    deadline: Instant,
) -> anyhow::Result<WorkerResult> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = BTreeMap::new();
    // The context this worker last saw per key, so that its writes supersede
    // what it read or wrote before instead of piling up siblings.
    let mut contexts: HashMap<u64, Context> = HashMap::new();
    let value = vec![b'x'; shared.args.value_bytes];
    while shared.claim(deadline) {
        let index = shared.chooser.next(&mut rng);
        let key = key_name(index);
        let started = Instant::now();
        let outcome = match shared.args.workload.next(&mut rng) {
            Operation::Read => shared.read(&key).await,
            Operation::Update => {
                let context = contexts.get(&index).cloned();
                shared.write(&key, value.clone(), context).await
            }
            Operation::ReadModifyWrite => match shared.read(&key).await {
                Ok(context) => shared.write(&key, value.clone(), context).await,
                Err(e) => Err(e),
            },
        };
        let outcome = outcome.map(|context| {
            if let Some(context) = context {
                contexts.insert(index, context);
            }
        });
        match outcome {
            Ok(()) => latencies.record((started.elapsed().as_micros() as u64).max(1))?,
            Err(kind) => *errors.entry(kind).or_insert(0) += 1,
        }
        shared.completed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(WorkerResult { latencies, errors })
}

/// Prints a progress line every second until `total` (if known) is reached.
fn spawn_progress(
    shared: Arc<Shared>,
    label: &'static str,
    total: Option<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let done = shared.completed.load(Ordering::Relaxed);
            let rate = done as f64 / started.elapsed().as_secs_f64();
            let of = total.map_or(String::new(), |t| format!(" of {t}"));
            eprint!(
                "\r{label}: {:>4} s, {done}{of} ops, {rate:.0} ops/s   ",
                started.elapsed().as_secs()
            );
        }
    })
}

async fn preload(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    shared.completed.store(0, Ordering::Relaxed);
    let progress = spawn_progress(shared.clone(), "preload", Some(shared.args.keys));
    let workers: Vec<_> = (0..shared.args.in_flight)
        .map(|_| {
            let (shared, next) = (shared.clone(), next.clone());
            tokio::spawn(async move {
                let value = vec![b'x'; shared.args.value_bytes];
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= shared.args.keys {
                        return Ok::<(), anyhow::Error>(());
                    }
                    // Over whatever the key holds, so that a second
                    // preload does not add a sibling to every key.
                    let key = key_name(index);
                    let context = shared
                        .read(&key)
                        .await
                        .map_err(|kind| anyhow::anyhow!("{kind}"))?;
                    shared
                        .write(&key, value.clone(), context)
                        .await
                        .map_err(|kind| anyhow::anyhow!("{kind}"))?;
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?.context("preload write")?;
    }
    progress.abort();
    eprintln!();
    Ok(())
}

#[cfg(feature = "etcd")]
async fn etcd_store(endpoints: &[String], serializable: bool) -> anyhow::Result<Store> {
    let etcd = norn_bench::etcd::Etcd::connect(endpoints, serializable).await?;
    Ok(Store::Etcd(etcd))
}

#[cfg(not(feature = "etcd"))]
async fn etcd_store(_endpoints: &[String], _serializable: bool) -> anyhow::Result<Store> {
    anyhow::bail!("--etcd needs norn-bench built with --features etcd (make bench-etcd does)")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args
        .config
        .clone()
        .or_else(|| std::env::var_os("NORN_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("cluster/client.toml"));
    let store = match &args.etcd {
        Some(endpoints) => etcd_store(endpoints, args.serializable).await?,
        None => {
            let mut options = ClientOptions::from_config_file(&config)?;
            options.policy = match args.policy {
                PolicyArg::RoundRobin => Policy::RoundRobin,
                PolicyArg::LeastOutstanding => Policy::LeastOutstanding,
                PolicyArg::LowestLatency => Policy::LowestLatency,
            };
            let client = Client::connect(options)
                .await
                .with_context(|| format!("connecting with {}", config.display()))?;
            let options = QuorumOptions {
                n: args.n,
                r: args.r,
                w: args.w,
                dw: args.dw,
                ..QuorumOptions::default()
            };
            Store::Norn {
                client: Box::new(client),
                options,
            }
        }
    };
    let chooser = KeyChooser::new(args.distribution, args.keys);
    let shared = Arc::new(Shared {
        store,
        chooser,
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        args,
    });
    if shared.args.preload {
        preload(&shared).await?;
    }
    shared.completed.store(0, Ordering::Relaxed);
    let label = "run";
    let progress = spawn_progress(shared.clone(), label, shared.args.ops);
    let started = Instant::now();
    let cpu_before = norn_bench::report::process_cpu_seconds();
    let deadline = started + Duration::from_secs(shared.args.duration_s);
    let workers: Vec<_> = (0..shared.args.in_flight)
        .map(|i| tokio::spawn(run_worker(shared.clone(), i as u64 + 1, deadline)))
        .collect();
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = BTreeMap::new();
    for worker in workers {
        let result = worker.await??;
        latencies.add(&result.latencies)?;
        for (kind, count) in result.errors {
            *errors.entry(kind).or_insert(0) += count;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();
    eprintln!();
    let name = format!("{:?}", shared.args.workload);
    let cpu = norn_bench::report::process_cpu_seconds() - cpu_before;
    let report = Report::new(name, &latencies, seconds, errors, cpu);
    if shared.args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.line());
    }
    Ok(())
}
