//! `norn admin`: views of membership and the ring, and ring changes.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context as _};
use norn_membership::{ChangeKind, MemberState};
use norn_proto::{MemberInfo, PlanView, Request, Response};
use norn_ring::{NodeId, Ring};
use serde::Serialize;

use norn_client::NodeSession as Session;

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn unexpected(response: Response) -> anyhow::Error {
    anyhow::anyhow!("unexpected response: {response:?}")
}

/// A member, with the days its certificate has left (asked of the member
/// itself; `None` when it did not answer).
#[derive(Debug, Serialize)]
struct MemberReport {
    #[serde(flatten)]
    info: MemberInfo,
    certificate_days_left: Option<i64>,
}

/// Whole days until `expires` (negative once it has passed).
fn days_left(expires: std::time::SystemTime) -> i64 {
    let seconds = match expires.duration_since(std::time::SystemTime::now()) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
    };
    seconds.div_euclid(86_400)
}

/// `norn admin members`: id, name, address, zone, state, up or down, phi,
/// and the days each member's certificate has left.
pub async fn members(session: &Session, json: bool) -> anyhow::Result<()> {
    let Response::Members(members) = session.call(Request::AdminMembers).await? else {
        bail!("unexpected response");
    };
    let mut reports = Vec::with_capacity(members.len());
    for info in members {
        let expiry = if info.up {
            session.certificate_expiry(&info.member.address).await.ok()
        } else {
            None
        };
        reports.push(MemberReport {
            info,
            certificate_days_left: expiry.map(days_left),
        });
    }
    if json {
        return print_json(&reports);
    }
    println!(
        "{:<16}  {:<12} {:<22} {:<10} {:<7} {:<4} {:>8} {:>9}",
        "id", "name", "address", "zone", "state", "up", "phi", "cert days"
    );
    for report in &reports {
        let MemberInfo { member, up, phi } = &report.info;
        let state = match member.state {
            MemberState::Active => "active",
            MemberState::Leaving => "leaving",
        };
        let days = report
            .certificate_days_left
            .map_or("-".to_string(), |days| days.to_string());
        println!(
            "{:<16}  {:<12} {:<22} {:<10} {:<7} {:<4} {:>8.2} {:>9}",
            member.id.to_string(),
            member.name,
            member.address,
            member.zone,
            state,
            if *up { "up" } else { "DOWN" },
            phi,
            days
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

/// `norn admin commit`: the staged changes, signed with the admin
/// certificate.
pub async fn commit(session: &Session) -> anyhow::Result<()> {
    let version = session.commit(Vec::new()).await?;
    println!(
        "committed ring version {version}; it spreads to every node within a few gossip rounds"
    );
    Ok(())
}

/// `norn admin revoke CERT...`: each a PEM file or a fingerprint.
pub async fn revoke(session: &Session, certificates: &[String]) -> anyhow::Result<()> {
    let mut fingerprints = Vec::new();
    for certificate in certificates {
        let fingerprint = match norn_trust::parse_fingerprint(certificate) {
            Some(fingerprint) => fingerprint,
            None => crate::certs::fingerprint_of(std::path::Path::new(certificate))?,
        };
        fingerprints.push(fingerprint);
    }
    let version = session.commit(fingerprints).await?;
    println!(
        "revoked {} certificate(s) in ring version {version}; every node refuses them once it holds that ring (a few gossip rounds)",
        certificates.len()
    );
    Ok(())
}

/// The members the session's node knows, with whether it sees them up.
pub(crate) async fn known_members(session: &Session) -> anyhow::Result<Vec<MemberInfo>> {
    match session.call(Request::AdminMembers).await? {
        Response::Members(members) => Ok(members),
        other => Err(unexpected(other)),
    }
}

/// A node a command runs on: its name and address (`host:port`).
#[derive(Debug, Clone)]
struct Target {
    name: String,
    address: String,
}

impl Target {
    fn of(member: &MemberInfo) -> Target {
        Target {
            name: member.member.name.clone(),
            address: member.member.address.clone(),
        }
    }

    /// The session's own node.
    async fn session_node(session: &Session) -> anyhow::Result<Target> {
        let members = known_members(session).await?;
        let name = members
            .first()
            .map_or_else(|| session.node().to_string(), |m| m.member.name.clone());
        Ok(Target {
            name,
            address: session.node().to_string(),
        })
    }
}

/// Sends `request` to one node; an error reply becomes an error.
async fn call_target(
    session: &Session,
    target: &Target,
    request: Request,
) -> anyhow::Result<Response> {
    session
        .call_address(&target.address, request)
        .await
        .with_context(|| target.name.clone())
}

/// What `norn admin repair` covers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairScope {
    /// Only the node the session talks to (`--node`).
    pub this_node_only: bool,
    /// Only this partition, repaired by its first up primary.
    pub partition: Option<u16>,
}

/// The nodes a repair runs on: the session's node, the first up primary of
/// the partition, or every up member in turn.
async fn repair_targets(session: &Session, scope: RepairScope) -> anyhow::Result<Vec<Target>> {
    if scope.this_node_only {
        return Ok(vec![Target::session_node(session).await?]);
    }
    let up: Vec<MemberInfo> = known_members(session)
        .await?
        .into_iter()
        .filter(|m| m.up)
        .collect();
    let Some(partition) = scope.partition else {
        return Ok(up.iter().map(Target::of).collect());
    };
    let Response::Ring(Some(ring)) = session.call(Request::AdminRing).await? else {
        bail!("the node holds no ring yet");
    };
    if usize::from(partition) >= ring.partition_count() {
        bail!(
            "partition {partition} does not exist (the ring has {})",
            ring.partition_count()
        );
    }
    let list = ring.preference_list(norn_ring::Partition(partition), ring.members().len());
    let primary = list
        .all()
        .iter()
        .find_map(|id| up.iter().find(|m| m.member.id == *id))
        .ok_or_else(|| anyhow::anyhow!("no replica of partition {partition} is up"))?;
    Ok(vec![Target::of(primary)])
}

fn progress_line(name: &str, p: &norn_proto::RepairProgress) -> String {
    format!(
        "{name}: partitions {}/{}, keys compared {}, different {}, repaired {}, {} bytes, {} failed exchanges, {:.1} s",
        p.partitions_done,
        p.partitions_total,
        p.keys_compared,
        p.keys_different,
        p.keys_repaired,
        p.bytes,
        p.exchanges_failed,
        p.elapsed_ms as f64 / 1000.0
    )
}

/// `norn admin repair`: runs anti-entropy exchanges now on each node of
/// the scope, printing progress until each is done. Fails if an exchange
/// failed (a replica unreachable).
pub async fn repair(session: &Session, scope: RepairScope, json: bool) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    let targets = repair_targets(session, scope).await?;
    let partition = scope.partition.map(norn_ring::Partition);
    let tty = std::io::stderr().is_terminal();
    let mut results = Vec::new();
    for target in &targets {
        let name = target.name.clone();
        let mut progress =
            match call_target(session, target, Request::AdminRepair { partition }).await? {
                Response::Repair(progress) => progress,
                other => return Err(unexpected(other)),
            };
        while progress.running {
            if !json {
                let line = progress_line(&name, &progress);
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else {
                    eprintln!("{line}");
                }
                let _ = std::io::stderr().flush();
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            progress = match call_target(session, target, Request::AdminRepairProgress).await? {
                Response::Repair(progress) => progress,
                other => return Err(unexpected(other)),
            };
        }
        if !json {
            if tty {
                eprint!("\r\x1b[K");
            }
            println!("{}", progress_line(&name, &progress));
        }
        results.push((name, progress));
    }
    if json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|(name, p)| serde_json::json!({ "node": name, "progress": p }))
            .collect();
        print_json(&rows)?;
    }
    let failed: u32 = results.iter().map(|(_, p)| p.exchanges_failed).sum();
    if failed > 0 {
        bail!("{failed} exchanges failed (a replica down or unreachable); run the repair again once it is back");
    }
    Ok(())
}

/// `norn admin repair --status`: per node and partition, the time since it
/// was last verified equal on all its replicas.
pub async fn repair_status(
    session: &Session,
    this_node_only: bool,
    json: bool,
) -> anyhow::Result<()> {
    let targets = if this_node_only {
        vec![Target::session_node(session).await?]
    } else {
        let members = known_members(session).await?;
        members.iter().filter(|m| m.up).map(Target::of).collect()
    };
    let mut rows = Vec::new();
    for target in &targets {
        match call_target(session, target, Request::AdminRepairStatus).await? {
            Response::RepairStatus(status) => rows.push((target.name.clone(), status)),
            other => return Err(unexpected(other)),
        }
    }
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, status)| serde_json::json!({ "node": name, "partitions": status }))
            .collect();
        return print_json(&rows);
    }
    for (name, status) in &rows {
        let never = status.iter().filter(|s| s.ago_ms.is_none()).count();
        let oldest = status.iter().filter_map(|s| s.ago_ms).max();
        println!(
            "{name}: {} partitions, {never} not verified since the node started, oldest verified {}",
            status.len(),
            oldest.map_or("-".to_string(), |ms| format!("{:.1} s ago", ms as f64 / 1000.0))
        );
        for s in status {
            let ago = s.ago_ms.map_or("never".to_string(), |ms| {
                format!("{:.1} s ago", ms as f64 / 1000.0)
            });
            println!("  partition {:>5}  verified {ago}", s.partition.0);
        }
    }
    Ok(())
}

/// `norn admin transfers`: every node's outgoing ownership transfers.
pub async fn transfers(session: &Session, json: bool) -> anyhow::Result<()> {
    let members = known_members(session).await?;
    let names: BTreeMap<NodeId, String> = members
        .iter()
        .map(|m| (m.member.id, m.member.name.clone()))
        .collect();
    let mut rows = Vec::new();
    for member in members.iter().filter(|m| m.up) {
        match call_target(session, &Target::of(member), Request::AdminTransfers).await? {
            Response::Transfers(views) => rows.push((member.member.name.clone(), views)),
            other => return Err(unexpected(other)),
        }
    }
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, views)| serde_json::json!({ "node": name, "transfers": views }))
            .collect();
        return print_json(&rows);
    }
    println!(
        "{:<12} {:>9} {:>2}  {:<28} {:>10} {:>12} {:>9}  {:<7} state",
        "from", "partition", "n", "to", "keys sent", "bytes sent", "keys left", "resumed"
    );
    let mut any = false;
    for (name, views) in &rows {
        for v in views {
            any = true;
            let to: Vec<String> = v
                .targets
                .iter()
                .map(|t| names.get(t).cloned().unwrap_or_else(|| t.to_string()))
                .collect();
            let state = match &v.state {
                norn_proto::TransferState::Running => "running".to_string(),
                norn_proto::TransferState::Waiting(why) => format!("waiting: {why}"),
                norn_proto::TransferState::Done => "done".to_string(),
            };
            println!(
                "{:<12} {:>9} {:>2}  {:<28} {:>10} {:>12} {:>9}  {:<7} {state}",
                name,
                v.partition.0,
                v.n,
                to.join(","),
                v.keys_sent,
                v.bytes_sent,
                v.keys_left,
                if v.resumed { "yes" } else { "no" },
            );
        }
    }
    if !any {
        println!("no transfers since the nodes started");
    }
    Ok(())
}

/// The status of each up member of `members`, or why it could not be read.
pub(crate) async fn up_statuses<'a>(
    session: &Session,
    members: &'a [MemberInfo],
) -> Vec<(&'a MemberInfo, Result<norn_proto::NodeStatus, String>)> {
    let mut statuses = Vec::new();
    for member in members.iter().filter(|m| m.up) {
        let status = match session
            .call_address(&member.member.address, Request::AdminStatus)
            .await
        {
            Ok(Response::Status(status)) => Ok(status),
            Ok(other) => Err(unexpected(other).to_string()),
            Err(e) => Err(e.to_string()),
        };
        statuses.push((member, status));
    }
    statuses
}

/// `norn admin status`: every up member's readiness and what it still
/// hands off. Fails when a member is not ready or does not answer.
pub async fn status(session: &Session, json: bool) -> anyhow::Result<()> {
    let members = known_members(session).await?;
    let rows: Vec<(String, Result<norn_proto::NodeStatus, String>)> =
        up_statuses(session, &members)
            .await
            .into_iter()
            .map(|(member, status)| (member.member.name.clone(), status))
            .collect();
    let all_ready = rows
        .iter()
        .all(|(_, s)| s.as_ref().is_ok_and(norn_proto::NodeStatus::is_ready));
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, status)| match status {
                Ok(status) => serde_json::json!({ "node": name, "ready": status.is_ready(), "status": status }),
                Err(e) => serde_json::json!({ "node": name, "ready": false, "error": e }),
            })
            .collect();
        print_json(&rows)?;
    } else {
        println!(
            "{:<12} {:<5} {:>4} {:<7} {:>10} {:>8} {:>6}  why not ready",
            "node", "ready", "ring", "in ring", "members up", "handoffs", "hints"
        );
        for (name, status) in &rows {
            match status {
                Ok(s) => println!(
                    "{:<12} {:<5} {:>4} {:<7} {:>10} {:>8} {:>6}  {}",
                    name,
                    if s.is_ready() { "yes" } else { "no" },
                    s.ring_version,
                    if s.in_ring {
                        "yes"
                    } else if s.departed {
                        "left"
                    } else if s.change_staged {
                        "staged"
                    } else {
                        "no"
                    },
                    format!("{}/{}", s.ring_members_up, s.ring_members),
                    s.handoffs_pending,
                    s.hints_pending,
                    s.not_ready.join("; ")
                ),
                Err(e) => println!("{name:<12} no    did not answer: {e}"),
            }
        }
    }
    if !all_ready {
        bail!("not every up member is ready");
    }
    Ok(())
}
