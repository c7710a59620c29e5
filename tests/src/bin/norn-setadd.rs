//! `norn-setadd`: the set-add workload through norn-client, for the
//! network-namespace fault tests (it runs inside the client's namespace).
//!
//! - `norn-setadd run CONFIG SECONDS OUT`: workers read a set key (R=2),
//!   merge the siblings by union, add a unique element and write back with
//!   the context (W=2); every element is written to OUT as acknowledged or
//!   unknown (the write failed or timed out: it may or may not be there).
//! - `norn-setadd final CONFIG OUT`: for each key, the union read at R=3 and
//!   whether its three replicas (every node asked directly) hold the same
//!   bytes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use norn_client::{Client, ClientOptions};
use norn_clock::Sibling;
use norn_net::tls::TlsMaterial;
use norn_net::{Endpoint, EndpointLimits};
use norn_proto::{KeyRef, QuorumOptions, Request, Response};
use serde_json::json;

/// The keys the workload writes.
const KEYS: [&str; 3] = ["set-0", "set-1", "set-2"];
const BUCKET: &str = "faults";
const WORKERS: u32 = 4;

fn decode(bytes: &[u8]) -> BTreeSet<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn union(siblings: &[Sibling]) -> BTreeSet<u32> {
    siblings
        .iter()
        .filter_map(|s| match s {
            Sibling::Value(v) => Some(decode(v)),
            Sibling::Tombstone => None,
        })
        .flatten()
        .collect()
}

fn quorum(r: u8, w: u8) -> QuorumOptions {
    QuorumOptions {
        n: Some(3),
        r: Some(r),
        w: Some(w),
        ..QuorumOptions::default()
    }
}

#[derive(Default)]
struct Observed {
    /// (element, key, acknowledged)
    elements: Vec<(u32, &'static str, bool)>,
    most_siblings: usize,
    failed_reads: u64,
}

async fn worker(client: Arc<Client>, worker: u32, until: Instant, observed: Arc<Mutex<Observed>>) {
    let mut sequence = 0;
    while Instant::now() < until {
        sequence += 1;
        let key = KEYS[(sequence as usize + worker as usize) % KEYS.len()];
        let read = match client.get(BUCKET, key, quorum(2, 2)).await {
            Ok(read) => read,
            Err(_) => {
                observed.lock().expect("lock").failed_reads += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let element = worker * 1_000_000 + sequence;
        let mut set = union(&read.siblings);
        set.insert(element);
        let value: Vec<u8> = set.iter().flat_map(|e| e.to_be_bytes()).collect();
        let written = client
            .put(BUCKET, key, value, Some(read.context), quorum(2, 2))
            .await
            .is_ok();
        let mut observed = observed.lock().expect("lock");
        observed.most_siblings = observed.most_siblings.max(read.siblings.len());
        observed.elements.push((element, key, written));
    }
}

async fn run(config: &str, seconds: u64, out: &str) -> anyhow::Result<()> {
    let mut options = ClientOptions::from_config_file(config)?;
    options.timeout = Duration::from_millis(1_000);
    let client = Arc::new(Client::connect(options).await?);
    let until = Instant::now() + Duration::from_secs(seconds);
    let observed = Arc::new(Mutex::new(Observed::default()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(client.clone(), w, until, observed.clone())))
        .collect();
    for w in workers {
        w.await?;
    }
    let observed = observed.lock().expect("lock");
    let report = json!({
        "elements": observed.elements.iter().map(|(e, k, ack)| json!([e, k, ack])).collect::<Vec<_>>(),
        "most_siblings": observed.most_siblings,
        "failed_reads": observed.failed_reads,
    });
    std::fs::write(out, serde_json::to_string(&report)?)?;
    Ok(())
}

async fn final_state(config: &str, out: &str) -> anyhow::Result<()> {
    let options = ClientOptions::from_config_file(config)?;
    let endpoint = Endpoint::client(&TlsMaterial::load(&options.tls)?, EndpointLimits::default())?;
    let client = Client::connect(options.clone()).await?;
    let seed = Endpoint::resolve(&options.seeds[0]).await?;
    let timeout = Duration::from_secs(2);
    let Response::Members(members) = endpoint.call(seed, &Request::AdminMembers, timeout).await?
    else {
        anyhow::bail!("no members");
    };
    let mut keys = serde_json::Map::new();
    for key in KEYS {
        let read = client.get(BUCKET, key, quorum(3, 2)).await;
        let request = Request::KeyDigests {
            keys: vec![KeyRef {
                bucket: BUCKET.as_bytes().to_vec(),
                key: key.as_bytes().to_vec(),
            }],
            admission: None,
        };
        let mut digests = BTreeSet::new();
        let (mut answered, mut holders) = (0, 0);
        for member in &members {
            let Ok(address) = member.member.address.parse() else {
                continue;
            };
            if let Ok(Response::KeyDigests(found)) = endpoint.call(address, &request, timeout).await
            {
                answered += 1;
                if let Some(Some(digest)) = found.first() {
                    holders += 1;
                    digests.insert(*digest);
                }
            }
        }
        keys.insert(
            key.to_string(),
            match read {
                Ok(read) => json!({
                    "elements": union(&read.siblings).into_iter().collect::<Vec<_>>(),
                    "siblings": read.siblings.len(),
                    "replicas_equal": digests.len() == 1 && holders == 3 && answered == members.len(),
                }),
                Err(e) => json!({ "error": e.to_string(), "replicas_equal": false }),
            },
        );
    }
    std::fs::write(out, serde_json::to_string(&keys)?)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    match args.get(1).map(String::as_str) {
        Some("run") if args.len() == 5 => {
            runtime.block_on(run(&args[2], args[3].parse()?, &args[4]))
        }
        Some("final") if args.len() == 4 => runtime.block_on(final_state(&args[2], &args[3])),
        _ => anyhow::bail!("usage: norn-setadd run CONFIG SECONDS OUT | final CONFIG OUT"),
    }
}
