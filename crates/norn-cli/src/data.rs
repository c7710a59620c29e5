//! `norn get | put | delete`, and `norn admin replica-get | hints`.
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
    let address = member
        .address
        .parse()
        .with_context(|| format!("address {}", member.address))?;
    let request = Request::ReplicaGet {
        bucket: bucket.as_bytes().to_vec(),
        key: key.as_bytes().to_vec(),
    };
    match session.call_at(address, request).await? {
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
