//! The admin requests a node answers: its view of the members, ring
//! changes by plan and commit, hints, repairs and transfers.

use std::collections::BTreeMap;

use norn_membership::{ChangeKind, Member, Membership};
use norn_proto::{ErrorCode, MemberInfo, PartitionVerified, PlanView, Response};
use norn_ring::{CertificateFingerprint, NodeId, Partition, Ring, REVOKED_MAX};
use norn_trust::Authority;

use crate::node::{error, NodeState};
use crate::plan;
use crate::repair::RepairJob;
use crate::verify::{replicated_ns, replicated_partitions, Verifier};

/// Every member this node knows, by id.
fn known_members(membership: &Membership) -> BTreeMap<NodeId, Member> {
    membership
        .view(0)
        .into_iter()
        .map(|v| (v.member.id, v.member))
        .collect()
}

/// Every member as this node sees it.
pub(crate) fn member_infos(node: &NodeState) -> Vec<MemberInfo> {
    node.membership
        .view(node.now)
        .into_iter()
        .map(|view| MemberInfo {
            member: view.member,
            up: view.up,
            phi: view.phi,
        })
        .collect()
}

/// Pending hints per target: count and bytes.
pub(crate) fn hints(node: &NodeState) -> Response {
    Response::Hints(
        node.storage
            .hint_queues()
            .into_iter()
            .map(|(target, q)| (target, q.hints, q.bytes))
            .collect(),
    )
}

/// Contacts `seed` and stages this node's join.
pub(crate) fn join(node: &mut NodeState, seed: String) -> Response {
    node.membership.add_seeds([seed.clone()]);
    let change = node.membership.stage(node.id, ChangeKind::Join);
    tracing::info!(seed = %seed, "join staged");
    Response::Staged(change)
}

/// Stages a change of the member named (or numbered) `name`.
pub(crate) fn stage(node: &mut NodeState, name: &str, kind: ChangeKind) -> Response {
    let found = node
        .membership
        .view(0)
        .into_iter()
        .map(|v| v.member)
        .find(|m| m.name == name || m.id.to_string() == name || format!("{:x}", m.id.0) == name);
    let Some(member) = found else {
        return error(
            ErrorCode::BadRequest,
            format!("no member is named {name:?}; see `norn admin members`"),
        );
    };
    if kind != ChangeKind::Join
        && !node
            .membership
            .ring()
            .is_some_and(|r| r.members().contains_key(&member.id))
    {
        return error(
            ErrorCode::Conflict,
            format!("{} is not in the ring", member.name),
        );
    }
    let change = node.membership.stage(member.id, kind);
    tracing::info!(node = %member.id, ?kind, "change staged");
    Response::Staged(change)
}

/// What committing the staged changes would do.
pub(crate) fn plan(node: &NodeState) -> PlanView {
    let members = known_members(&node.membership);
    plan::view(
        node.membership.ring(),
        &node.membership.staged(),
        &members,
        node.config.ring.partition_bits,
        node.config.ring.default_n,
    )
}

/// The next ring for the admin to sign: the staged changes applied and
/// `revoke` added to the revoked certificates, under the next version.
pub(crate) fn propose(node: &NodeState, revoke: Vec<CertificateFingerprint>) -> Response {
    if revoke.len() > REVOKED_MAX {
        return error(
            ErrorCode::BadRequest,
            format!("a ring revokes at most {REVOKED_MAX} certificates"),
        );
    }
    let current = node.membership.ring();
    let staged = node.membership.staged();
    let pending = staged
        .iter()
        .any(|c| current.is_none_or(|ring| !c.is_reflected_in(ring)));
    let next = match current {
        Some(ring) if !pending && !revoke.is_empty() => match ring.version().checked_add(1) {
            Some(version) => ring.with_version(version),
            None => return error(ErrorCode::Conflict, "the ring's version is the last one"),
        },
        _ => {
            let members = known_members(&node.membership);
            let bits = node.config.ring.partition_bits;
            match plan::propose(current, &staged, &members, bits) {
                Ok(ring) => ring,
                Err(refused) => return error(ErrorCode::Conflict, refused.to_string()),
            }
        }
    };
    match next.with_revoked(revoke) {
        Ok(ring) => Response::Proposed(Box::new(ring)),
        Err(refused) => error(ErrorCode::BadRequest, refused.to_string()),
    }
}

/// Adopts `ring`, which an admin signed, as this node's next ring; returns
/// the membership's effects (the adopted ring among them) for the core to
/// carry out.
pub(crate) fn commit(
    node: &mut NodeState,
    authority: &Authority,
    ring: Ring,
) -> Result<Vec<norn_membership::Effect>, Response> {
    let admin = authority
        .check_commit(&ring, node.membership.ring())
        .map_err(|refused| error(ErrorCode::Forbidden, refused.to_string()))?;
    if let Some(current) = node.membership.ring() {
        if !ring.supersedes(current) {
            let refusal = format!(
                "ring {} does not supersede this node's ring {}: propose again",
                ring.version(),
                current.version()
            );
            return Err(error(ErrorCode::Conflict, refusal));
        }
    }
    tracing::info!(version = ring.version(), admin = %admin, "ring committed");
    Ok(node.membership.commit_ring(ring))
}

/// Starts a repair of `partition` (or of every partition this node
/// replicates) unless one is running; replies with the running repair's
/// progress.
pub(crate) fn repair(
    node: &mut NodeState,
    verifier: &mut Verifier,
    partition: Option<Partition>,
) -> Response {
    let ring = match node.ring_or_refusal() {
        Ok(ring) => ring,
        Err(refusal) => return refusal,
    };
    if let Some(running) = &verifier.repair {
        return Response::Repair(running.snapshot(node.now));
    }
    let partitions = match partition {
        None => replicated_partitions(node, &ring),
        Some(p) if usize::from(p.0) >= ring.partition_count() => {
            return error(
                ErrorCode::BadRequest,
                format!(
                    "partition {p} does not exist (the ring has {})",
                    ring.partition_count()
                ),
            )
        }
        Some(p) if replicated_ns(node, &ring, p, true).is_empty() => {
            return error(
                ErrorCode::BadRequest,
                format!("this node is not a primary of partition {p}; ask one of its primaries"),
            )
        }
        Some(p) => vec![p],
    };
    tracing::info!(partitions = partitions.len(), "repair started");
    let job = RepairJob::new(node, &ring, partitions);
    let progress = job.snapshot(node.now);
    verifier.start_repair(node, job);
    Response::Repair(progress)
}

/// The progress of the current or last repair.
pub(crate) fn repair_progress(node: &NodeState, verifier: &Verifier) -> Response {
    let progress = match (&verifier.repair, &verifier.last_repair) {
        (Some(running), _) => running.snapshot(node.now),
        (None, Some(last)) => last.clone(),
        (None, None) => norn_proto::RepairProgress::default(),
    };
    Response::Repair(progress)
}

/// Per partition this node replicates, the time since it was verified.
pub(crate) fn repair_status(node: &NodeState, verifier: &Verifier) -> Vec<PartitionVerified> {
    let Some(ring) = node.ring() else {
        return Vec::new();
    };
    replicated_partitions(node, &ring)
        .into_iter()
        .map(|partition| PartitionVerified {
            partition,
            ago_ms: verifier
                .verified
                .get(&partition)
                .map(|at| node.now.saturating_sub(*at)),
        })
        .collect()
}
