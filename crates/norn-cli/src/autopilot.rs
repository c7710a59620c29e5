//! Ring changes without a human in the loop: `norn admin autopilot`
//! commits staged joins and leaves when they are safe, `norn admin leave`
//! takes one node out and (with `--wait`) returns once its data has moved.
//!
//! Nodes with `cluster.auto_join` stage their own joins; rings are signed
//! by an admin, so the commit is made here, with the admin certificate.
//! [`assess`] is the one rule both follow. A change is committed only when
//! - no remove is staged (a remove drops a node's replicas before they are
//!   copied: only an admin commits it);
//! - the first ring waits for `min_nodes` joins;
//! - every member of the ring and every joiner is up, so that no partition
//!   moves to or away from a node that cannot take part;
//! - every up node holds the current ring and hands nothing off, so the
//!   previous change is done spreading and moving (one change in flight);
//! - the ring keeps at least N nodes, so no partition drops below N
//!   replicas, and zone diversity gets no worse.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use norn_client::{ClientOptions, NodeSession as Session};
use norn_membership::{ChangeKind, StagedChange};
use norn_proto::{MemberInfo, NodeStatus, PlanView, Request, Response};
use norn_ring::{NodeId, Ring};

/// What the autopilot reads off the cluster before it decides.
#[derive(Debug, Clone)]
pub struct ClusterState {
    pub ring: Option<Ring>,
    pub plan: PlanView,
    /// Every member, as the asked node sees it.
    pub members: Vec<MemberInfo>,
    /// The status of each up member, or why it could not be read.
    pub statuses: Vec<(NodeId, Result<NodeStatus, String>)>,
}

/// What to do with the staged changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is staged.
    Idle,
    /// Commit, as the successor of ring `judged` (0: none), a ring of
    /// exactly these members; the summary says why.
    Commit {
        judged: u64,
        members: BTreeSet<NodeId>,
        summary: String,
    },
    /// Not safe yet, for this reason.
    Wait(String),
}

impl ClusterState {
    fn name_of(&self, node: NodeId) -> String {
        self.members
            .iter()
            .find(|m| m.member.id == node)
            .map_or_else(|| node.to_string(), |m| m.member.name.clone())
    }

    fn is_up(&self, node: NodeId) -> bool {
        self.members.iter().any(|m| m.member.id == node && m.up)
    }
}

/// Whether committing the staged changes of `state` now is safe (see the
/// module's rules).
pub fn assess(state: &ClusterState, min_nodes: usize) -> Decision {
    let current = state.ring.as_ref();
    let pending: Vec<&StagedChange> = state
        .plan
        .staged
        .iter()
        .filter(|c| current.is_none_or(|r| !c.is_reflected_in(r)))
        .collect();
    if pending.is_empty() {
        return Decision::Idle;
    }
    if let Some(remove) = pending.iter().find(|c| c.kind == ChangeKind::Remove) {
        return Decision::Wait(format!(
            "the remove of {} is staged: it drops that node's replicas before they are copied, so only an admin commits it (`norn admin commit`)",
            state.name_of(remove.node)
        ));
    }
    if let Some(refusal) = &state.plan.refusal {
        return Decision::Wait(format!("the plan is refused: {refusal}"));
    }
    let joins: BTreeSet<NodeId> = pending
        .iter()
        .filter(|c| c.kind == ChangeKind::Join)
        .map(|c| c.node)
        .collect();
    let leaves: BTreeSet<NodeId> = pending
        .iter()
        .filter(|c| c.kind == ChangeKind::Leave)
        .map(|c| c.node)
        .collect();
    let before: BTreeSet<NodeId> = current
        .map(|r| r.members().keys().copied().collect())
        .unwrap_or_default();
    let after: BTreeSet<NodeId> = before
        .difference(&leaves)
        .chain(joins.iter())
        .copied()
        .collect();
    let names = |nodes: &BTreeSet<NodeId>| {
        nodes
            .iter()
            .map(|n| state.name_of(*n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(down) = before.union(&joins).find(|n| !state.is_up(**n)) {
        let role = if joins.contains(down) {
            "joining"
        } else {
            "in the ring"
        };
        return Decision::Wait(format!(
            "{} ({role}) is down: a change now would move partitions to or from a node that cannot take part",
            state.name_of(*down)
        ));
    }
    let Some(current) = current else {
        // The asked node may be new and not have pulled the ring yet.
        if let Some((node, _)) = state
            .statuses
            .iter()
            .find(|(_, s)| s.as_ref().is_ok_and(|s| s.ring_version > 0))
        {
            return Decision::Wait(format!(
                "the asked node holds no ring, but {} does: ask a member",
                state.name_of(*node)
            ));
        }
        if joins.len() < min_nodes {
            return Decision::Wait(format!(
                "{} of the {min_nodes} joins the first ring waits for are staged ({})",
                joins.len(),
                names(&joins)
            ));
        }
        let summary = format!("the first ring: {}", names(&joins));
        return Decision::Commit {
            judged: 0,
            members: after,
            summary,
        };
    };
    let n = usize::from(state.plan.n);
    if !leaves.is_empty() && after.len() < n {
        return Decision::Wait(format!(
            "the ring would keep {} nodes, fewer than N = {n}: partitions would lose replicas",
            after.len()
        ));
    }
    for (node, status) in &state.statuses {
        let name = state.name_of(*node);
        let status = match status {
            Ok(status) => status,
            Err(e) => return Decision::Wait(format!("{name} did not answer: {e}")),
        };
        if status.ring_version != current.version() {
            return Decision::Wait(format!(
                "{name} holds ring {}, not {}: the last change is still spreading",
                status.ring_version,
                current.version()
            ));
        }
        if status.handoffs_pending > 0 {
            return Decision::Wait(format!(
                "{name} still hands off {} partitions of the last change",
                status.handoffs_pending
            ));
        }
    }
    let violations_now = current.zone_violations(n) as u32;
    if state.plan.zone_violations > violations_now {
        return Decision::Wait(format!(
            "the plan leaves {} partitions without zone diversity at N = {n} (now {violations_now})",
            state.plan.zone_violations
        ));
    }
    let mut parts = Vec::new();
    if !joins.is_empty() {
        parts.push(format!("join {}", names(&joins)));
    }
    if !leaves.is_empty() {
        parts.push(format!("leave {}", names(&leaves)));
    }
    Decision::Commit {
        judged: current.version(),
        members: after,
        summary: parts.join(", "),
    }
}

/// Reads what [`assess`] needs through `session`: the ring, the plan and
/// the members its node knows, and the status of every up member.
pub async fn read_state(session: &Session) -> anyhow::Result<ClusterState> {
    let ring = match session.call(Request::AdminRing).await? {
        Response::Ring(ring) => ring.map(|r| *r),
        other => bail!("unexpected reply to a ring request: {other:?}"),
    };
    let plan = match session.call(Request::AdminPlan).await? {
        Response::Plan(plan) => plan,
        other => bail!("unexpected reply to a plan request: {other:?}"),
    };
    let members = crate::admin::known_members(session).await?;
    let statuses = crate::admin::up_statuses(session, &members)
        .await
        .into_iter()
        .map(|(member, status)| (member.member.id, status))
        .collect();
    Ok(ClusterState {
        ring,
        plan,
        members,
        statuses,
    })
}

/// `norn admin autopilot`'s settings.
#[derive(Debug, Clone)]
pub struct AutopilotArgs {
    /// Joins the first ring waits for.
    pub min_nodes: usize,
    /// Time between looks at the cluster.
    pub interval: Duration,
    /// Decide once and return: success whatever the decision, failure
    /// when the cluster could not be read or the commit was refused.
    pub once: bool,
}

/// `norn admin autopilot`: every interval, opens a session on `node` (or
/// the configured nodes), reads the cluster and commits what [`assess`]
/// allows. Prints each decision when it changes. Runs until stopped.
pub async fn run(
    options: &ClientOptions,
    node: Option<&str>,
    args: AutopilotArgs,
) -> anyhow::Result<()> {
    let mut last = String::new();
    loop {
        let line = match step(options, node, args.min_nodes).await {
            Ok(line) => line,
            Err(e) if args.once => return Err(e),
            Err(e) => format!("cannot read the cluster or commit: {e:#}"),
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(args.interval).await;
    }
}

/// One look at the cluster: the decision, and the commit if it allows one.
async fn step(
    options: &ClientOptions,
    node: Option<&str>,
    min_nodes: usize,
) -> anyhow::Result<String> {
    let session = Session::open(options, node).await?;
    let state = read_state(&session).await?;
    match assess(&state, min_nodes) {
        Decision::Idle => Ok("nothing staged".to_string()),
        Decision::Wait(reason) => Ok(format!("waiting: {reason}")),
        Decision::Commit {
            judged,
            members,
            summary,
        } => {
            let version = session.commit_members(judged, &members).await?;
            Ok(format!("committed ring {version}: {summary}"))
        }
    }
}

/// `norn admin leave MEMBER`: stages its leave and commits it as soon as
/// [`assess`] allows; with `wait`, returns only once the member holds the
/// new ring and has handed off every partition and hint it held. Gives up
/// after `timeout`.
pub async fn leave(
    session: &Session,
    member: &str,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let members = crate::admin::known_members(session).await?;
    let info = members
        .iter()
        .find(|m| m.member.name == member || m.member.id.to_string() == member)
        .with_context(|| format!("no member is named {member:?}; see `norn admin members`"))?
        .clone();
    let (id, name) = (info.member.id, info.member.name.clone());
    let mut said = String::new();
    let mut say = |line: String| {
        if line != said {
            println!("{line}");
            said = line;
        }
    };
    let version = loop {
        let state = read_state(session).await?;
        let ring = state
            .ring
            .as_ref()
            .context("the cluster holds no ring yet")?;
        let n = usize::from(state.plan.n);
        if ring.members().contains_key(&id) && ring.members().len() <= n {
            bail!(
                "the ring would keep {} nodes, fewer than N = {n}: partitions would lose replicas; nothing staged",
                ring.members().len() - 1
            );
        }
        if !ring.members().contains_key(&id) {
            if !ring.departed().contains(&id) {
                bail!("{name} is not in the ring");
            }
            say(format!("{name} is out of ring {}", ring.version()));
            break ring.version();
        }
        let staged = state
            .plan
            .staged
            .iter()
            .any(|c| c.node == id && c.kind == ChangeKind::Leave);
        if !staged {
            let request = Request::AdminStage {
                node: id.to_string(),
                kind: ChangeKind::Leave,
            };
            session.call(request).await?;
            say(format!("leave of {name} staged"));
            continue;
        }
        match assess(&state, 0) {
            Decision::Commit {
                judged,
                members,
                summary,
            } => match session.commit_members(judged, &members).await {
                Ok(version) => {
                    say(format!("committed ring {version}: {summary}"));
                    break version;
                }
                Err(e) => say(format!("commit refused, trying again: {e}")),
            },
            Decision::Wait(reason) => say(format!("waiting: {reason}")),
            Decision::Idle => {}
        }
        if Instant::now() > deadline {
            bail!(
                "gave up after {} s ({said}); the leave stays staged, for the autopilot or `norn admin commit`",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if !wait {
        println!(
            "{name} hands off its data in the background; `norn admin status` shows what is left"
        );
        return Ok(());
    }
    loop {
        let state = read_state(session).await?;
        let status = match state.statuses.iter().find(|(node, _)| *node == id) {
            Some((_, Ok(status))) => status,
            Some((_, Err(e))) => {
                bail!("{name} does not answer, so its hand-off cannot be followed: {e}")
            }
            None => bail!("{name} is down, so its hand-off cannot be followed"),
        };
        // A ring of the same version committed elsewhere may have won and
        // still hold the node: only its own word that it is out counts,
        // and every up node must have the ring, so that none still sends
        // it writes.
        let behind = state.statuses.iter().find_map(|(node, s)| match s {
            Ok(s) if s.ring_version < version => Some(state.name_of(*node)),
            _ => None,
        });
        let out = !status.in_ring && status.departed;
        let line = if status.ring_version < version {
            format!(
                "{name} holds ring {}, waiting for {version}",
                status.ring_version
            )
        } else if !out {
            bail!(
                "{name} is still in ring {}: a concurrent commit won; run the leave again",
                status.ring_version
            )
        } else if let Some(behind) = behind {
            format!("{behind} does not hold ring {version} yet")
        } else if status.handoffs_pending > 0 || status.hints_pending > 0 {
            format!(
                "{name}: {} partitions and {} hints left to hand off",
                status.handoffs_pending, status.hints_pending
            )
        } else {
            println!("{name} left the ring and handed off all its data: it can be stopped");
            return Ok(());
        };
        say(line);
        if Instant::now() > deadline {
            bail!("gave up after {} s: {said}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use norn_membership::{Member, MemberState};
    use norn_ring::RingMember;

    fn member(id: u64, up: bool) -> MemberInfo {
        MemberInfo {
            member: Member {
                id: NodeId(id),
                name: format!("n{id}"),
                address: format!("127.0.0.1:{}", 7000 + id),
                zone: "z".into(),
                weight: 1,
                state: MemberState::Active,
                incarnation: 1,
                heartbeat: 1,
                handoffs: Vec::new(),
                proof: None,
            },
            up,
            phi: 0.0,
        }
    }

    fn ring(ids: &[u64]) -> Ring {
        let members = ids.iter().map(|id| {
            (
                NodeId(*id),
                RingMember {
                    zone: "z".into(),
                    weight: 1,
                },
            )
        });
        Ring::new(4, members).expect("ring").with_version(3)
    }

    fn change(node: u64, kind: ChangeKind) -> StagedChange {
        StagedChange {
            node: NodeId(node),
            kind,
            base_version: 3,
            stamp: 1,
            staged_by: NodeId(node),
        }
    }

    fn status(
        id: u64,
        ring_version: u64,
        handoffs_pending: u32,
    ) -> (NodeId, Result<NodeStatus, String>) {
        let status = NodeStatus {
            node: NodeId(id),
            name: format!("n{id}"),
            ring_version,
            newest_ring_seen: ring_version,
            in_ring: true,
            departed: false,
            change_staged: false,
            ring_members: 3,
            ring_members_up: 3,
            handoffs_pending,
            hints_pending: 0,
            transfers_failed: 0,
            not_ready: Vec::new(),
        };
        (NodeId(id), Ok(status))
    }

    /// A cluster of `ring_ids` with `staged` changes; every member in
    /// `members` up unless in `down`, each holding ring 3 and handing off
    /// nothing.
    fn state(
        ring_ids: Option<&[u64]>,
        members: &[u64],
        down: &[u64],
        staged: Vec<StagedChange>,
    ) -> ClusterState {
        ClusterState {
            ring: ring_ids.map(ring),
            plan: PlanView {
                current_version: 3,
                staged,
                nodes: Vec::new(),
                n: 3,
                zone_violations: 0,
                refusal: None,
            },
            members: members
                .iter()
                .map(|id| member(*id, !down.contains(id)))
                .collect(),
            statuses: members
                .iter()
                .filter(|id| !down.contains(id))
                .map(|id| status(*id, if ring_ids.is_some() { 3 } else { 0 }, 0))
                .collect(),
        }
    }

    fn ids(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().map(|id| NodeId(*id)).collect()
    }

    fn waits(decision: &Decision, words: &str) -> bool {
        matches!(decision, Decision::Wait(reason) if reason.contains(words))
    }

    #[test]
    fn the_first_ring_waits_for_min_nodes_joins() {
        let joins = |k: u64| (1..=k).map(|id| change(id, ChangeKind::Join)).collect();
        let two = state(None, &[1, 2], &[], joins(2));
        assert!(waits(&assess(&two, 3), "2 of the 3 joins"));
        let three = state(None, &[1, 2, 3], &[], joins(3));
        assert_eq!(
            assess(&three, 3),
            Decision::Commit {
                judged: 0,
                members: ids(&[1, 2, 3]),
                summary: "the first ring: n1, n2, n3".into()
            }
        );
    }

    #[test]
    fn no_second_first_ring_is_made_through_a_node_that_has_not_pulled_the_ring() {
        let joins = (4..=6).map(|id| change(id, ChangeKind::Join)).collect();
        let mut fresh = state(None, &[1, 4, 5, 6], &[], joins);
        assert!(matches!(assess(&fresh, 3), Decision::Commit { .. }));
        fresh.statuses[0] = status(1, 3, 0);
        assert!(waits(&assess(&fresh, 3), "n1 does: ask a member"));
    }

    #[test]
    fn a_ring_smaller_than_n_grows_one_join_at_a_time() {
        let small = state(Some(&[1]), &[1, 2], &[], vec![change(2, ChangeKind::Join)]);
        assert!(
            matches!(assess(&small, 1), Decision::Commit { judged: 3, members, .. } if members == ids(&[1, 2]))
        );
    }

    #[test]
    fn a_join_commits_only_when_everyone_is_up_and_done_moving() {
        let join = || vec![change(4, ChangeKind::Join)];
        let quiet = state(Some(&[1, 2, 3]), &[1, 2, 3, 4], &[], join());
        assert!(
            matches!(assess(&quiet, 3), Decision::Commit { members, .. } if members == ids(&[1, 2, 3, 4]))
        );
        let member_down = state(Some(&[1, 2, 3]), &[1, 2, 3, 4], &[2], join());
        assert!(waits(&assess(&member_down, 3), "n2 (in the ring) is down"));
        let joiner_down = state(Some(&[1, 2, 3]), &[1, 2, 3, 4], &[4], join());
        assert!(waits(&assess(&joiner_down, 3), "n4 (joining) is down"));
        let mut moving = quiet.clone();
        moving.statuses[0] = status(1, 3, 5);
        assert!(waits(
            &assess(&moving, 3),
            "n1 still hands off 5 partitions"
        ));
        let mut spreading = quiet.clone();
        spreading.statuses[2] = status(3, 2, 0);
        assert!(waits(&assess(&spreading, 3), "n3 holds ring 2, not 3"));
        let mut silent = quiet;
        silent.statuses[1] = (NodeId(2), Err("timed out".into()));
        assert!(waits(&assess(&silent, 3), "n2 did not answer"));
    }

    #[test]
    fn a_leave_never_takes_the_ring_below_n_and_a_remove_needs_an_admin() {
        let leave = state(
            Some(&[1, 2, 3, 4]),
            &[1, 2, 3, 4],
            &[],
            vec![change(4, ChangeKind::Leave)],
        );
        assert!(
            matches!(assess(&leave, 3), Decision::Commit { members, .. } if members == ids(&[1, 2, 3]))
        );
        let below_n = state(
            Some(&[1, 2, 3]),
            &[1, 2, 3],
            &[],
            vec![change(3, ChangeKind::Leave)],
        );
        assert!(waits(&assess(&below_n, 3), "fewer than N = 3"));
        let remove = state(
            Some(&[1, 2, 3, 4]),
            &[1, 2, 3, 4],
            &[],
            vec![change(4, ChangeKind::Remove)],
        );
        assert!(waits(&assess(&remove, 3), "only an admin commits it"));
        let nothing = state(Some(&[1, 2, 3]), &[1, 2, 3], &[], Vec::new());
        assert_eq!(assess(&nothing, 3), Decision::Idle);
    }

    #[test]
    fn a_plan_that_breaks_zone_diversity_waits() {
        let mut worse = state(
            Some(&[1, 2, 3]),
            &[1, 2, 3, 4],
            &[],
            vec![change(4, ChangeKind::Join)],
        );
        worse.plan.zone_violations = 7;
        assert!(waits(&assess(&worse, 3), "without zone diversity"));
    }
}
