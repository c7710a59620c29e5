//! A quorum read: replies once R (and PR) replicas answered, then waits for
//! the rest (until its deadline) and sends the merged object to every
//! replica that answered with less (read repair).

use norn_clock::{Context, Object};
use norn_proto::{ErrorCode, GetReply, QuorumOptions, Request, Response};
use norn_ring::NodeId;
use norn_storage::{DataKey, Durability};

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
    key: DataKey,
    quorum: Quorum,
    tally: ReadTally,
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
        let mut asked: Vec<(NodeId, bool)> = targets(node, &list)
            .into_iter()
            .map(|t| (t.node, t.hint_for.is_none()))
            .collect();
        let chosen: Vec<NodeId> = asked.iter().map(|(n, _)| *n).collect();
        asked.extend(
            handoff_holders(node, data_key.partition, &chosen)
                .into_iter()
                .map(|holder| (holder, false)),
        );
        if asked.is_empty() {
            let response = error(
                ErrorCode::QuorumNotMet,
                "no replica of this key is reachable",
            );
            return finish(node, call, "get", started, response);
        }
        let op = self.next_op();
        let deadline_ms = timeout_ms(node, requested_timeout_ms);
        let mut tally = ReadTally::new(quorum, asked.clone());
        for (target, _) in asked {
            if target == node.id {
                match node.replica().read(&data_key) {
                    Ok(object) => tally.on_reply(target, object),
                    Err(_) => tally.on_failure(target),
                };
                continue;
            }
            let request = Request::ReplicaGet {
                bucket: data_key.bucket.clone(),
                key: data_key.key.clone(),
            };
            match node.send_within(Route::Coordinator, target, request, deadline_ms) {
                Some(token) => {
                    self.waiting
                        .insert(token, Waiting::Read { op, node: target });
                }
                None => {
                    tally.on_failure(target);
                }
            }
        }
        node.timer_in(deadline_ms, Timer::Deadline(op));
        self.gets.insert(
            op,
            GetOp {
                call,
                started,
                key: data_key,
                quorum,
                tally,
                replied: false,
            },
        );
        self.advance_get(node, op);
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
