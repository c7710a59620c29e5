//! `norn get | put | delete`, and `norn admin replica-get | replicas |
//! hints`.
//!
//! Contexts travel as hex of their encoding: opaque to users, pasted back
//! with `--context`.

use anyhow::{bail, Context as _};
use norn_clock::{Context, Sibling};
use norn_proto::view::SiblingView;
use norn_proto::{codec, GetReply, PutReply, QuorumOptions, Request, Response, WriteReceipt};
use serde::Serialize;

use norn_client::NodeSession as Session;

/// Encodes a causal context for the command line.
pub fn context_to_hex(context: &Context) -> anyhow::Result<String> {
    Ok(codec::context_to_hex(context)?)
}

/// Decodes a context given with `--context`.
pub fn context_from_hex(hex: &str) -> anyhow::Result<Context> {
    codec::context_from_hex(hex).context("pass the context `norn get` printed")
}

#[derive(Debug, Serialize)]
struct JsonGet {
    found: bool,
    siblings: Vec<SiblingView>,
    context: String,
    warning: Option<String>,
}

fn print_siblings(
    siblings: &[Sibling],
    context: &Context,
    warning: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let found = !siblings.iter().all(|s| matches!(s, Sibling::Tombstone));
    if json {
        let reply = JsonGet {
            found,
            siblings: siblings.iter().map(SiblingView::of).collect(),
            context: context_to_hex(context)?,
            warning: warning.map(str::to_string),
        };
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    if !found {
        println!("not found");
    } else {
        let live: Vec<&Vec<u8>> = siblings
            .iter()
            .filter_map(|s| {
                if let Sibling::Value(v) = s {
                    Some(v)
                } else {
                    None
                }
            })
            .collect();
        if live.len() > 1 {
            println!("{} siblings:", live.len());
        }
        for value in live {
            println!("{}", String::from_utf8_lossy(value));
        }
    }
    println!("context: {}", context_to_hex(context)?);
    Ok(())
}

/// `norn get BUCKET KEY`.
pub async fn get(
    session: &Session,
    bucket: &str,
    key: &str,
    options: QuorumOptions,
    timeout_ms: Option<u64>,
    json: bool,
) -> anyhow::Result<bool> {
    let request = Request::Get {
        bucket: bucket.as_bytes().to_vec(),
        key: key.as_bytes().to_vec(),
        options,
        timeout_ms,
    };
    let Response::Value(GetReply {
        siblings,
        context,
        warning,
        ..
    }) = session.call(request).await?
    else {
        bail!("unexpected response");
    };
    print_siblings(&siblings, &context, warning.as_deref(), json)?;
    Ok(!siblings.iter().all(|s| matches!(s, Sibling::Tombstone)))
}

#[derive(Debug, Serialize)]
struct JsonReceipt<'a> {
    ok: bool,
    receipt: &'a WriteReceipt,
    acked: u8,
    siblings: Option<u32>,
    warning: Option<&'a str>,
    error: Option<&'a str>,
}

fn print_receipt(
    receipt: &WriteReceipt,
    siblings: Option<u32>,
    warning: Option<&str>,
    error: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let reply = JsonReceipt {
            ok: error.is_none(),
            receipt,
            acked: receipt.acked(),
            siblings,
            warning,
            error,
        };
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    let fallbacks: Vec<String> = receipt
        .fallbacks
        .iter()
        .map(|(f, p)| format!("{f} for {p}"))
        .collect();
    println!(
        "{} of {} replicas acknowledged ({} primaries, {} fallbacks{}), {} synced to disk",
        receipt.acked(),
        receipt.sent,
        receipt.primaries.len(),
        receipt.fallbacks.len(),
        if fallbacks.is_empty() {
            String::new()
        } else {
            format!(": {}", fallbacks.join(", "))
        },
        receipt.synced
    );
    Ok(())
}

/// A write for `norn put` and `norn delete` (`value: None`).
pub fn write_request(
    bucket: &str,
    key: &str,
    value: Option<Vec<u8>>,
    context: Option<Context>,
    options: QuorumOptions,
    timeout_ms: Option<u64>,
) -> Request {
    Request::Put {
        bucket: bucket.as_bytes().to_vec(),
        key: key.as_bytes().to_vec(),
        value,
        context,
        options,
        timeout_ms,
        forwarded: false,
    }
}

/// `norn put` and `norn delete`: sends `request` (from [`write_request`])
/// and prints the write receipt, also when the quorum was not met.
pub async fn put(session: &Session, request: Request, json: bool) -> anyhow::Result<()> {
    let reply = match session.call(request).await {
        Err(norn_client::ClientError::Server { code, message }) => bail!("{message} ({code:?})"),
        reply => reply?,
    };
    match reply {
        Response::Written(PutReply {
            receipt,
            siblings,
            warning,
            ..
        }) => print_receipt(&receipt, Some(siblings), warning.as_deref(), None, json),
        Response::WriteFailed { receipt, message } => {
            print_receipt(&receipt, None, None, Some(&message), json)?;
            bail!("{message}")
        }
        Response::Error(e) => bail!("{} ({:?})", e.message, e.code),
        other => bail!("unexpected response: {other:?}"),
    }
}

/// `norn admin replica-get NODE BUCKET KEY`: one node's local copy.
pub async fn replica_get(
    session: &Session,
    node: &str,
    bucket: &str,
    key: &str,
    json: bool,
) -> anyhow::Result<()> {
    let Response::Members(members) = session.call(Request::AdminMembers).await? else {
        bail!("unexpected response")
    };
    let member = members
        .iter()
        .map(|m| &m.member)
        .find(|m| m.name == node || m.id.to_string() == node || m.address == node)
        .with_context(|| format!("no member is named {node:?}; see `norn admin members`"))?;
    let request = Request::ReplicaGet {
        bucket: bucket.as_bytes().to_vec(),
        key: key.as_bytes().to_vec(),
    };
    match session.call_address(&member.address, request).await? {
        Response::Replica {
            object: Some(object),
        } => {
            let siblings: Vec<Sibling> = object.values().cloned().collect();
            print_siblings(&siblings, &object.context(), None, json)
        }
        Response::Replica { object: None } => print_siblings(&[], &Context::default(), None, json),
        Response::Error(e) => bail!("{} ({:?})", e.message, e.code),
        other => bail!("unexpected response: {other:?}"),
    }
}

/// One key's copies on its primaries, as `norn admin replicas` reports
/// them.
#[derive(Debug, Serialize)]
struct KeyReplicas {
    key: String,
    partition: u16,
    /// Per primary of the current ring: its name and how many siblings
    /// its copy holds (`None`: it holds none, or it did not answer).
    primaries: Vec<(String, Option<usize>)>,
    /// Every primary holds the key, with the same siblings (their clocks
    /// may differ until anti-entropy merges them).
    complete: bool,
}

/// Every copy node `address` holds of `keys` (bucket `bucket`), asked
/// again for the rest when one reply holds only the first ones.
async fn copies_on(
    session: &Session,
    address: &str,
    bucket: &str,
    keys: &[String],
) -> anyhow::Result<Vec<Option<norn_clock::Object>>> {
    let mut copies = Vec::with_capacity(keys.len());
    while copies.len() < keys.len() {
        let request = Request::ReplicaGetMany {
            keys: keys[copies.len()..]
                .iter()
                .take(1000)
                .map(|key| norn_proto::KeyRef {
                    bucket: bucket.as_bytes().to_vec(),
                    key: key.as_bytes().to_vec(),
                })
                .collect(),
        };
        match session.call_address(address, request).await? {
            Response::Objects(some) if !some.is_empty() => copies.extend(some),
            other => bail!("unexpected reply: {other:?}"),
        }
    }
    copies.truncate(keys.len());
    Ok(copies)
}

/// `norn admin replicas BUCKET KEY...`: where each key's N primaries are
/// in the current ring and whether each holds it with the same siblings.
/// Fails when a key is not on all of them alike.
pub async fn replicas(
    session: &Session,
    bucket: &str,
    keys: &[String],
    n: u8,
    json: bool,
) -> anyhow::Result<()> {
    use std::collections::{BTreeMap, BTreeSet};
    let Response::Ring(Some(ring)) = session.call(Request::AdminRing).await? else {
        bail!("the node holds no ring yet");
    };
    let Response::Members(members) = session.call(Request::AdminMembers).await? else {
        bail!("unexpected response")
    };
    let member = |id: norn_ring::NodeId| members.iter().find(|m| m.member.id == id);
    let lists: Vec<(norn_ring::Partition, Vec<norn_ring::NodeId>)> = keys
        .iter()
        .map(|key| {
            let partition = ring.partition_of_key(bucket.as_bytes(), key.as_bytes());
            let list = ring.preference_list(partition, usize::from(n));
            (partition, list.primaries().to_vec())
        })
        .collect();
    let holders: BTreeSet<norn_ring::NodeId> =
        lists.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let mut copies: BTreeMap<norn_ring::NodeId, Vec<Option<norn_clock::Object>>> = BTreeMap::new();
    for node in holders {
        let Some(info) = member(node) else { continue };
        match copies_on(session, &info.member.address, bucket, keys).await {
            Ok(found) => {
                copies.insert(node, found);
            }
            Err(e) => eprintln!("{} did not answer: {e:#}", info.member.name),
        }
    }
    let reports: Vec<KeyReplicas> = keys
        .iter()
        .zip(&lists)
        .enumerate()
        .map(|(i, (key, (partition, primaries)))| {
            let siblings: Vec<Option<BTreeSet<&Sibling>>> = primaries
                .iter()
                .map(|p| {
                    let copy = copies.get(p).and_then(|c| c[i].as_ref());
                    copy.map(|object| object.values().collect())
                })
                .collect();
            let complete = siblings.len() == usize::from(n)
                && siblings.iter().all(|s| s.is_some() && *s == siblings[0]);
            KeyReplicas {
                key: key.clone(),
                partition: partition.0,
                primaries: primaries
                    .iter()
                    .zip(&siblings)
                    .map(|(p, s)| {
                        let name =
                            member(*p).map_or_else(|| p.to_string(), |m| m.member.name.clone());
                        (name, s.as_ref().map(BTreeSet::len))
                    })
                    .collect(),
                complete,
            }
        })
        .collect();
    let incomplete = reports.iter().filter(|r| !r.complete).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            let copies: Vec<String> = r
                .primaries
                .iter()
                .map(|(name, s)| match s {
                    Some(count) => format!("{name}={count} siblings"),
                    None => format!("{name}=none"),
                })
                .collect();
            let verdict = if r.complete {
                "ok"
            } else {
                "NOT on all primaries alike"
            };
            println!(
                "{}  partition {}  {}  {verdict}",
                r.key,
                r.partition,
                copies.join(" ")
            );
        }
    }
    if incomplete > 0 {
        bail!(
            "{incomplete} of {} keys are not on all {n} primaries with the same siblings",
            reports.len()
        );
    }
    Ok(())
}

/// `norn admin hints`: pending hints per target on the node.
pub async fn hints(session: &Session, json: bool) -> anyhow::Result<()> {
    let Response::Hints(queues) = session.call(Request::AdminHints).await? else {
        bail!("unexpected response")
    };
    if json {
        let rows: Vec<serde_json::Value> = queues
            .iter()
            .map(|(target, hints, bytes)| serde_json::json!({ "target": target.to_string(), "hints": hints, "bytes": bytes }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if queues.is_empty() {
        println!("no pending hints on {}", session.node());
    }
    for (target, hints, bytes) in queues {
        println!("{target}  {hints} hints  {bytes} bytes");
    }
    Ok(())
}
