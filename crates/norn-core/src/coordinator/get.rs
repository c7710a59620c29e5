//! A quorum read: replies once R (and PR) replicas answered, then waits for
//! the rest (until its deadline) and sends the merged object to every
//! replica that answered with less (read repair).

use norn_clock::{Context, Object};
use norn_proto::{ErrorCode, GetReply, QuorumOptions, Request, Response};
use norn_ring::NodeId;
use norn_storage::{DataKey, Durability};
use rand::Rng;

use super::{finish, handoff_holders, route, targets, timeout_ms, Coordinator, Waiting};
use crate::coordinator::{Quorum, ReadOutcome, ReadTally};
use crate::io::{CallFailure, CallId, Timer};
use crate::node::{error, NodeState};
use crate::outbox::Route;
use crate::replica;

/// One read in progress.
#[derive(Debug)]
pub(super) struct GetOp {
    call: CallId,
    started: u64,
    /// When the read gives up on replicas still silent.
    deadline_at: u64,
    key: DataKey,
    quorum: Quorum,
    tally: ReadTally,
    /// Replicas not asked yet (see [`split_asked`]).
    spares: Vec<(NodeId, bool)>,
    replied: bool,
}

impl Coordinator {
    /// Starts a quorum read of `bucket`/`key`.
    pub(crate) fn get(
        &mut self,
        node: &mut NodeState,
        call: CallId,
        bucket: &[u8],
        key: &[u8],
        options: QuorumOptions,
        requested_timeout_ms: Option<u64>,
    ) {
        let started = node.now;
        let (quorum, data_key, list) = match route(node, bucket, key, None, options) {
            Ok(route) => route,
            Err(response) => return finish(node, call, "get", started, response),
        };
        let replicas: Vec<(NodeId, bool)> = targets(node, &list)
            .into_iter()
            .map(|t| (t.node, t.hint_for.is_none()))
            .collect();
        let chosen: Vec<NodeId> = replicas.iter().map(|(n, _)| *n).collect();
        let holders = handoff_holders(node, data_key.partition, &chosen);
        if replicas.is_empty() && holders.is_empty() {
            let response = error(
                ErrorCode::QuorumNotMet,
                "no replica of this key is reachable",
            );
            return finish(node, call, "get", started, response);
        }
        let ask_everyone = self.rng.gen_range(0..100u8) < node.config.data.read_repair_percent;
        let (mut first, spares) = split_asked(node.id, replicas, quorum, ask_everyone);
        // Nodes still handing the partition off may hold its newest writes.
        first.extend(holders.into_iter().map(|holder| (holder, false)));
        let op = self.next_op();
        let deadline_ms = timeout_ms(node, requested_timeout_ms);
        self.gets.insert(
            op,
            GetOp {
                call,
                started,
                deadline_at: started + deadline_ms,
                key: data_key,
                quorum,
                tally: ReadTally::new(quorum, Vec::new()),
                spares,
                replied: false,
            },
        );
        self.ask_replicas(node, op, first);
        node.timer_in(deadline_ms, Timer::Deadline(op));
        let speculate_ms = node.config.data.speculative_read_ms;
        if speculate_ms < deadline_ms && self.gets.get(&op).is_some_and(|g| !g.spares.is_empty()) {
            node.timer_in(speculate_ms, Timer::Speculate(op));
        }
        self.advance_get(node, op);
    }

    /// Asks `replicas` for read `op`'s key: this node's own copy at once,
    /// the others over the network.
    fn ask_replicas(&mut self, node: &mut NodeState, op: u64, replicas: Vec<(NodeId, bool)>) {
        let Some(get) = self.gets.get_mut(&op) else {
            return;
        };
        let remaining_ms = get.deadline_at.saturating_sub(node.now).max(1);
        for (target, primary) in replicas {
            get.tally.ask(target, primary);
            if target == node.id {
                match node.replica().read(&get.key) {
                    Ok(object) => get.tally.on_reply(target, object),
                    Err(_) => get.tally.on_failure(target),
                };
                continue;
            }
            let request = Request::ReplicaGet {
                bucket: get.key.bucket.clone(),
                key: get.key.key.clone(),
            };
            match node.send_within(Route::Coordinator, target, request, remaining_ms) {
                Some(token) => {
                    self.waiting
                        .insert(token, Waiting::Read { op, node: target });
                }
                None => {
                    get.tally.on_failure(target);
                }
            }
        }
    }

    /// Asks the replicas read `op` left out, if any.
    fn ask_spares(&mut self, node: &mut NodeState, op: u64) -> bool {
        let spares = match self.gets.get_mut(&op) {
            Some(get) if !get.spares.is_empty() => std::mem::take(&mut get.spares),
            _ => return false,
        };
        self.ask_replicas(node, op, spares);
        true
    }

    /// Read `op` still lacks R replies after the speculation delay: the
    /// replicas it left out are asked too.
    pub(crate) fn on_speculate(&mut self, node: &mut NodeState, op: u64) {
        if self.gets.get(&op).is_some_and(|g| !g.replied) && self.ask_spares(node, op) {
            node.metrics
                .count(crate::metrics::Counter::SpeculativeReads, 1);
            self.advance_get(node, op);
        }
    }

    pub(super) fn on_read_reply(
        &mut self,
        node: &mut NodeState,
        op: u64,
        from: NodeId,
        reply: Result<Response, CallFailure>,
    ) {
        let Some(get) = self.gets.get_mut(&op) else {
            return;
        };
        match reply {
            Ok(Response::Replica { object }) => get.tally.on_reply(from, object),
            _ => get.tally.on_failure(from),
        };
        self.advance_get(node, op);
    }

    pub(super) fn get_deadline(&mut self, node: &mut NodeState, op: u64) {
        if let Some(get) = self.gets.get_mut(&op) {
            get.spares.clear();
            get.tally.on_timeout();
        }
        self.advance_get(node, op);
    }

    /// Answers the client at the first decision; read-repairs and ends the
    /// read once every replica answered or failed.
    fn advance_get(&mut self, node: &mut NodeState, op: u64) {
        let Some(get) = self.gets.get_mut(&op) else {
            return;
        };
        // A replica that failed is replaced by those left out, before R is
        // judged out of reach; replies that disagree bring them in too, so
        // that read repair reaches every replica.
        let short = matches!(get.tally.outcome(), ReadOutcome::Failed { .. });
        let diverged = get.tally.all_in() && get.tally.replies_disagree();
        if (short || diverged) && self.ask_spares(node, op) {
            return self.advance_get(node, op);
        }
        let Some(get) = self.gets.get_mut(&op) else {
            return;
        };
        if !get.replied {
            let response = match get.tally.outcome() {
                ReadOutcome::Pending => None,
                ReadOutcome::Done { merged } => {
                    Some(Response::Value(get_reply(node, merged, get.quorum)))
                }
                ReadOutcome::Failed { replies, required } => Some(error(
                    ErrorCode::QuorumNotMet,
                    format!("read quorum not met: {replies} of R={required} replicas answered"),
                )),
            };
            if let Some(response) = response {
                get.replied = true;
                let (call, started) = (get.call, get.started);
                finish(node, call, "get", started, response);
            }
        }
        if get.tally.all_in() {
            if let Some(get) = self.gets.remove(&op) {
                read_repair(node, &get);
            }
        }
    }
}

/// Replicas of a read, each with whether it is a primary.
type Replicas = Vec<(NodeId, bool)>;

/// Splits a read's replicas into those asked first and the spares: every
/// one when `ask_everyone`; otherwise this node first when it holds a copy
/// (no round trip), then the others in preference order, until R replies
/// and PR primary replies could come.
fn split_asked(
    me: NodeId,
    mut replicas: Vec<(NodeId, bool)>,
    quorum: Quorum,
    ask_everyone: bool,
) -> (Replicas, Replicas) {
    if ask_everyone {
        return (replicas, Vec::new());
    }
    if let Some(mine) = replicas.iter().position(|(n, _)| *n == me) {
        let entry = replicas.remove(mine);
        replicas.insert(0, entry);
    }
    let (r, pr) = (usize::from(quorum.r), usize::from(quorum.pr));
    let mut first = Vec::new();
    let mut spares = Vec::new();
    let mut primaries = 0;
    for (replica, primary) in replicas {
        let needed = first.len() < r || (primary && primaries < pr);
        if needed {
            primaries += usize::from(primary);
            first.push((replica, primary));
        } else {
            spares.push((replica, primary));
        }
    }
    (first, spares)
}

fn get_reply(node: &NodeState, merged: Option<Object>, quorum: Quorum) -> GetReply {
    let (siblings, context) = match merged {
        Some(object) => (
            object.values().cloned().collect::<Vec<_>>(),
            object.context(),
        ),
        None => (Vec::new(), Context::default()),
    };
    let warn = node.config.data.siblings_warn as usize;
    let warning = (siblings.len() > warn).then(|| {
        format!(
            "{} siblings (warning past {warn}); write with the merged context to resolve them",
            siblings.len()
        )
    });
    GetReply {
        siblings,
        context,
        replies: quorum.r,
        warning,
    }
}

/// Sends the merged object to every replica that answered with less.
fn read_repair(node: &mut NodeState, get: &GetOp) {
    let Some(merged) = get.tally.merged() else {
        return;
    };
    for stale in get.tally.stale_replicas(&merged) {
        if stale == node.id {
            let merged_here =
                node.replica()
                    .merge(&get.key, get.quorum.n, &merged, Durability::Buffered, None);
            if let Err(e) = merged_here {
                tracing::warn!(key = %get.key, error = %e, "local read repair failed");
            }
        } else {
            let request = replica::put_request(&get.key, get.quorum.n, &merged, None, false);
            let _ = node.send_to(Route::Nobody, stale, request);
        }
        node.metrics.count(crate::metrics::Counter::ReadRepairs, 1);
        tracing::debug!(replica = %stale, key = %get.key, "read repair");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quorum(r: u8, pr: u8) -> Quorum {
        Quorum {
            n: 3,
            r,
            w: 2,
            pr,
            pw: 0,
            dw: 0,
        }
    }

    fn ids(replicas: &[(NodeId, bool)]) -> Vec<u64> {
        replicas.iter().map(|(n, _)| n.0).collect()
    }

    #[test]
    fn a_read_asks_itself_first_then_r_in_preference_order() {
        let replicas = vec![(NodeId(1), true), (NodeId(2), true), (NodeId(3), true)];
        let (first, spares) = split_asked(NodeId(3), replicas.clone(), quorum(2, 0), false);
        assert_eq!((ids(&first), ids(&spares)), (vec![3, 1], vec![2]));
        let (first, spares) = split_asked(NodeId(9), replicas.clone(), quorum(1, 0), false);
        assert_eq!((ids(&first), ids(&spares)), (vec![1], vec![2, 3]));
        let (first, spares) = split_asked(NodeId(1), replicas, quorum(3, 0), false);
        assert_eq!((ids(&first), ids(&spares)), (vec![1, 2, 3], vec![]));
    }

    #[test]
    fn a_read_asks_enough_primaries_for_pr() {
        // This node is a fallback: R=1 alone would ask only it.
        let replicas = vec![(NodeId(1), true), (NodeId(2), true), (NodeId(4), false)];
        let (first, spares) = split_asked(NodeId(4), replicas, quorum(1, 2), false);
        assert_eq!((ids(&first), ids(&spares)), (vec![4, 1, 2], vec![]));
    }

    #[test]
    fn a_sampled_read_asks_everyone() {
        let replicas = vec![(NodeId(1), true), (NodeId(2), true), (NodeId(3), true)];
        let (first, spares) = split_asked(NodeId(1), replicas, quorum(1, 0), true);
        assert_eq!((ids(&first), ids(&spares)), (vec![1, 2, 3], vec![]));
    }
}
