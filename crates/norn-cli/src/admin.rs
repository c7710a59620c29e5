//! `norn admin`: views of membership and the ring, and ring changes.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use norn_membership::{ChangeKind, MemberState};
use norn_proto::{MemberInfo, PlanView, Request, Response};
use norn_ring::{NodeId, Ring};
use serde::Serialize;

use crate::client_config::Session;

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn unexpected(response: Response) -> anyhow::Error {
    anyhow::anyhow!("unexpected response: {response:?}")
}

/// `norn admin members`: id, name, address, zone, state, up or down, phi.
pub async fn members(session: &Session, json: bool) -> anyhow::Result<()> {
    let Response::Members(members) = session.call(Request::AdminMembers).await? else {
        bail!("unexpected response");
    };
    if json {
        return print_json(&members);
    }
    println!(
        "{:<16}  {:<12} {:<22} {:<10} {:<7} {:<4} {:>8}",
        "id", "name", "address", "zone", "state", "up", "phi"
    );
    for MemberInfo { member, up, phi } in &members {
        let state = match member.state {
            MemberState::Active => "active",
            MemberState::Leaving => "leaving",
        };
        println!(
            "{:<16}  {:<12} {:<22} {:<10} {:<7} {:<4} {:>8.2}",
            member.id.to_string(),
            member.name,
            member.address,
            member.zone,
            state,
            if *up { "up" } else { "DOWN" },
            phi
        );
    }
    Ok(())
}

/// Per node of a ring: partitions owned and share, for `norn admin ring`.
#[derive(Debug, Serialize)]
pub struct RingReport {
    pub version: u64,
    pub partitions: usize,
    pub nodes: Vec<RingReportNode>,
    /// Largest owned count over the smallest, among members.
    pub balance: f64,
    pub zones: usize,
    /// The replication factor the zone diversity is reported for.
    pub n: usize,
    /// Partitions whose N primaries do not span min(N, zones) zones.
    pub zone_violations: usize,
}

#[derive(Debug, Serialize)]
pub struct RingReportNode {
    pub id: NodeId,
    pub name: String,
    pub zone: String,
    pub weight: u32,
    pub partitions: usize,
    pub share: f64,
}

/// Builds the report of `ring`, naming nodes from `names`.
pub fn ring_report(ring: &Ring, names: &BTreeMap<NodeId, String>, n: usize) -> RingReport {
    let mut owned: BTreeMap<NodeId, usize> = ring.members().keys().map(|id| (*id, 0)).collect();
    for owner in ring.owners() {
        *owned.entry(*owner).or_default() += 1;
    }
    let q = ring.partition_count();
    let nodes: Vec<RingReportNode> = ring
        .members()
        .iter()
        .map(|(id, member)| RingReportNode {
            id: *id,
            name: names.get(id).cloned().unwrap_or_else(|| id.to_string()),
            zone: member.zone.clone(),
            weight: member.weight,
            partitions: owned[id],
            share: owned[id] as f64 / q as f64,
        })
        .collect();
    let most = owned.values().copied().max().unwrap_or(0);
    let least = owned.values().copied().min().unwrap_or(0);
    let zones: BTreeSet<&String> = ring.members().values().map(|m| &m.zone).collect();
    RingReport {
        version: ring.version(),
        partitions: q,
        balance: if least == 0 {
            f64::INFINITY
        } else {
            most as f64 / least as f64
        },
        zones: zones.len(),
        n,
        zone_violations: ring.zone_violations(n),
        nodes,
    }
}

async fn member_names(session: &Session) -> anyhow::Result<BTreeMap<NodeId, String>> {
    match session.call(Request::AdminMembers).await? {
        Response::Members(members) => Ok(members
            .into_iter()
            .map(|m| (m.member.id, m.member.name))
            .collect()),
        other => Err(unexpected(other)),
    }
}

/// `norn admin ring`: partitions and share per node, balance, zone diversity.
pub async fn ring(session: &Session, n: usize, json: bool) -> anyhow::Result<()> {
    let Response::Ring(ring) = session.call(Request::AdminRing).await? else {
        bail!("unexpected response");
    };
    let Some(ring) = ring else {
        if json {
            return print_json(&serde_json::Value::Null);
        }
        println!("no ring yet: stage joins with `norn admin join SEED`, then `norn admin commit`");
        return Ok(());
    };
    let report = ring_report(&ring, &member_names(session).await?, n);
    if json {
        return print_json(&report);
    }
    println!(
        "ring version {}, {} partitions, {} zones",
        report.version, report.partitions, report.zones
    );
    println!(
        "{:<16}  {:<12} {:<10} {:>6} {:>10} {:>7}",
        "id", "name", "zone", "weight", "partitions", "share"
    );
    for node in &report.nodes {
        println!(
            "{:<16}  {:<12} {:<10} {:>6} {:>10} {:>6.1}%",
            node.id.to_string(),
            node.name,
            node.zone,
            node.weight,
            node.partitions,
            100.0 * node.share
        );
    }
    println!("balance (most/least partitions): {:.3}", report.balance);
    println!(
        "zone diversity at N={}: {} of {} partitions have primaries in fewer than min(N, zones) zones",
        report.n, report.zone_violations, report.partitions
    );
    Ok(())
}

/// `norn admin join SEED`, sent to the new node.
pub async fn join(session: &Session, seed: &str) -> anyhow::Result<()> {
    match session
        .call(Request::AdminJoin {
            seed: seed.to_string(),
        })
        .await?
    {
        Response::Staged(change) => {
            println!(
                "join of node {} staged; see `norn admin plan`, then `norn admin commit`",
                change.node
            );
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}

/// `norn admin plan [leave|remove NODE]`.
pub async fn plan(
    session: &Session,
    stage: Option<(ChangeKind, String)>,
    json: bool,
) -> anyhow::Result<()> {
    if let Some((kind, node)) = stage {
        match session
            .call(Request::AdminStage {
                node: node.clone(),
                kind,
            })
            .await?
        {
            Response::Staged(_) => {
                if !json {
                    println!("{kind:?} of {node} staged");
                }
            }
            other => return Err(unexpected(other)),
        }
    }
    let Response::Plan(plan) = session.call(Request::AdminPlan).await? else {
        bail!("unexpected response");
    };
    if json {
        return print_json(&plan);
    }
    print_plan(&plan);
    Ok(())
}

fn print_plan(plan: &PlanView) {
    println!(
        "current ring version {}; staged changes: {}",
        plan.current_version,
        plan.staged.len()
    );
    for change in &plan.staged {
        println!("  {:?} {}", change.kind, change.node);
    }
    if let Some(refusal) = &plan.refusal {
        println!("cannot commit: {refusal}");
        return;
    }
    println!(
        "{:<16}  {:<12} {:>5} {:>6} {:>7} {:>5}",
        "id", "name", "now", "after", "gained", "lost"
    );
    for node in &plan.nodes {
        println!(
            "{:<16}  {:<12} {:>5} {:>6} {:>7} {:>5}",
            node.id.to_string(),
            node.name,
            node.owned_now,
            node.owned_after,
            node.gained,
            node.lost
        );
    }
    println!(
        "zone-diversity violations at N={}: {} partitions",
        plan.n, plan.zone_violations
    );
    println!("run `norn admin commit` to apply");
}

/// `norn admin commit`.
pub async fn commit(session: &Session) -> anyhow::Result<()> {
    match session.call(Request::AdminCommit).await? {
        Response::Committed { version } => {
            println!("committed ring version {version}; it spreads to every node within a few gossip rounds");
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}
