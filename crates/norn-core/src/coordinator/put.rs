//! A quorum write (or delete). A node outside the key's write targets
//! passes it to the first of them, which gives the write its own dot; the
//! coordinator writes its own copy, sends the object to the other targets
//! (and to nodes still handing the partition off), and answers once W (PW,
//! DW) acknowledged. A failed write waits for every target (until its
//! deadline), so that its receipt says how many did write.

use norn_clock::{Object, Sibling};
use norn_proto::{ErrorCode, PutReply, Request, Response};
use norn_ring::NodeId;
use norn_storage::{DataKey, Durability};

use super::{
    finish, handoff_holders, route, targets, timeout_ms, Coordinator, Forward, PutArgs, Waiting,
};
use crate::coordinator::{Quorum, WriteOutcome, WriteTally, WriteTarget};
use crate::io::{CallId, Timer};
use crate::node::{error, NodeState};
use crate::outbox::{AfterSync, Route};
use crate::replica::{self, CoordinatedWrite, LocalWriteError};

/// What a coordinated write sends its replicas.
#[derive(Debug, Clone, Copy)]
struct Outgoing<'a> {
    key: &'a DataKey,
    quorum: Quorum,
    object: &'a Object,
    deadline_ms: u64,
}

/// One write in progress.
#[derive(Debug)]
pub(super) struct PutOp {
    call: CallId,
    op_name: &'static str,
    started: u64,
    quorum: Quorum,
    tally: WriteTally,
    object: Object,
    replied: bool,
}

impl Coordinator {
    /// Starts a quorum write: forwards it, or coordinates it here.
    pub(crate) fn put(&mut self, node: &mut NodeState, call: CallId, args: PutArgs) {
        let op_name = if args.value.is_some() {
            "put"
        } else {
            "delete"
        };
        let started = node.now;
        let (quorum, data_key, list) = match route(
            node,
            &args.bucket,
            &args.key,
            args.value.as_deref(),
            args.options,
        ) {
            Ok(route) => route,
            Err(response) => return finish(node, call, op_name, started, response),
        };
        let targets = targets(node, &list);
        let deadline_ms = timeout_ms(node, args.timeout_ms);
        if !targets.iter().any(|t| t.node == node.id) {
            return self.forward(node, call, op_name, args, &targets, deadline_ms);
        }
        let sibling = args.value.map_or(Sibling::Tombstone, Sibling::Value);
        let context = args.context.unwrap_or_default();
        let write = CoordinatedWrite {
            key: &data_key,
            n: quorum.n,
            context: &context,
            sibling,
            hint_for: targets
                .iter()
                .find(|t| t.node == node.id)
                .and_then(|t| t.hint_for),
            durability: Durability::Buffered,
        };
        let object = match node.replica().coordinate_write(write) {
            Ok(object) => object,
            Err(refused) => {
                let response = refusal(node, refused);
                return finish(node, call, op_name, started, response);
            }
        };
        let op = self.next_op();
        let outgoing = Outgoing {
            key: &data_key,
            quorum,
            object: &object,
            deadline_ms,
        };
        let tally = self.replicate(node, op, &outgoing, targets);
        node.timer_in(deadline_ms, Timer::Deadline(op));
        self.puts.insert(
            op,
            PutOp {
                call,
                op_name,
                started,
                quorum,
                tally,
                object,
                replied: false,
            },
        );
        self.advance_put(node, op);
    }

    /// Sends write `op`'s object to the other targets and to nodes still
    /// handing the partition off, and counts the coordinator's own copy
    /// (once it is on disk, if DW asks for it). Returns the tally.
    fn replicate(
        &mut self,
        node: &mut NodeState,
        op: u64,
        outgoing: &Outgoing<'_>,
        targets: Vec<WriteTarget>,
    ) -> WriteTally {
        let Outgoing {
            key,
            quorum,
            object,
            deadline_ms,
        } = *outgoing;
        let chosen: Vec<NodeId> = targets.iter().map(|t| t.node).collect();
        for holder in handoff_holders(node, key.partition, &chosen) {
            let request = replica::put_request(key, quorum.n, object, None, false);
            let _ = node.send_to(Route::Nobody, holder, request);
        }
        let mut tally = WriteTally::new(quorum, targets.clone());
        let sync = quorum.dw > 0;
        if sync && !node.config.sync_every_write {
            node.out.sync(AfterSync::CoordinatorAck { op });
        } else {
            tally.on_ack(node.id, node.config.sync_every_write);
        }
        let me = node.id;
        for target in targets.into_iter().filter(|t| t.node != me) {
            let request = replica::put_request(key, quorum.n, object, target.hint_for, sync);
            self.send_for_ack(node, op, &mut tally, target.node, request, deadline_ms);
        }
        tally
    }

    /// Sends one replica's copy of write `op`; a target that cannot be
    /// reached at all fails at once.
    fn send_for_ack(
        &mut self,
        node: &mut NodeState,
        op: u64,
        tally: &mut WriteTally,
        target: NodeId,
        request: Request,
        deadline_ms: u64,
    ) {
        match node.send_within(Route::Coordinator, target, request, deadline_ms) {
            Some(token) => {
                self.waiting
                    .insert(token, Waiting::Ack { op, node: target });
            }
            None => {
                tally.on_failure(target);
            }
        }
    }

    /// Passes a write to the first target, which coordinates it.
    fn forward(
        &mut self,
        node: &mut NodeState,
        call: CallId,
        op_name: &'static str,
        args: PutArgs,
        targets: &[WriteTarget],
        deadline_ms: u64,
    ) {
        let started = node.now;
        if args.forwarded {
            let response = error(
                ErrorCode::Unavailable,
                "forwarded write reached a node that is not among its replicas",
            );
            return finish(node, call, op_name, started, response);
        }
        let Some(to) = targets.first().map(|t| t.node) else {
            let response = error(
                ErrorCode::QuorumNotMet,
                "no replica of this key is reachable; nothing was written",
            );
            return finish(node, call, op_name, started, response);
        };
        let request = Request::Put {
            bucket: args.bucket,
            key: args.key,
            value: args.value,
            context: args.context,
            options: args.options,
            timeout_ms: args.timeout_ms,
            forwarded: true,
        };
        let op = self.next_op();
        // The coordinator answers within the request's own timeout (its
        // failed writes wait that long for their replicas): wait a little
        // longer than that for it.
        let wait_ms = deadline_ms + node.config.peer_request_timeout_ms;
        match node.send_within(Route::Coordinator, to, request, wait_ms) {
            Some(token) => {
                self.waiting.insert(token, Waiting::Forwarded { op });
                self.forwards.insert(
                    op,
                    Forward {
                        call,
                        op_name,
                        started,
                        to,
                    },
                );
            }
            None => {
                let response = error(
                    ErrorCode::QuorumNotMet,
                    format!("the coordinator {to} is unknown here; nothing was written"),
                );
                finish(node, call, op_name, started, response);
            }
        }
    }

    pub(super) fn on_ack(
        &mut self,
        node: &mut NodeState,
        op: u64,
        from: NodeId,
        synced: Option<bool>,
    ) {
        let Some(put) = self.puts.get_mut(&op) else {
            return;
        };
        match synced {
            Some(synced) => put.tally.on_ack(from, synced),
            None => put.tally.on_failure(from),
        };
        self.advance_put(node, op);
    }

    /// The coordinator's own copy of write `op` reached the disk.
    pub(crate) fn on_local_sync(&mut self, node: &mut NodeState, op: u64) {
        let id = node.id;
        self.on_ack(node, op, id, Some(true));
    }

    pub(super) fn put_deadline(&mut self, node: &mut NodeState, op: u64) {
        if let Some(put) = self.puts.get_mut(&op) {
            put.tally.on_timeout();
        }
        self.advance_put(node, op);
    }

    /// Answers on success at once, on failure once every target is in.
    fn advance_put(&mut self, node: &mut NodeState, op: u64) {
        let Some(put) = self.puts.get_mut(&op) else {
            return;
        };
        let outcome = put.tally.outcome();
        let answer = match &outcome {
            WriteOutcome::Succeeded(_) => true,
            WriteOutcome::Failed(_) => put.tally.all_in(),
            WriteOutcome::Pending => false,
        };
        if answer && !put.replied {
            put.replied = true;
            let response = write_reply(node, outcome, put);
            let (call, op_name, started) = (put.call, put.op_name, put.started);
            finish(node, call, op_name, started, response);
        }
        if put.replied && put.tally.all_in() {
            self.puts.remove(&op);
        }
    }
}

/// The client's answer to a write its coordinator refused: nothing was
/// written anywhere.
fn refusal(node: &NodeState, refused: LocalWriteError) -> Response {
    match refused {
        LocalWriteError::TooManySiblings(count) => error(
            ErrorCode::TooManySiblings,
            format!("the write would leave {count} siblings (limit {}); read and write with the merged context; nothing was written", node.config.data.siblings_max),
        ),
        LocalWriteError::TooLarge { bytes, max } => error(
            ErrorCode::TooLarge,
            format!("the write would leave an object of {bytes} bytes with its siblings (limit {max}); read and write with the merged context to resolve them; nothing was written"),
        ),
        LocalWriteError::Failed(reason) => error(ErrorCode::Storage, reason),
    }
}

/// The client's answer to a decided write.
fn write_reply(node: &NodeState, outcome: WriteOutcome, put: &PutOp) -> Response {
    let siblings = put.object.value_count() as u32;
    let warn = node.config.data.siblings_warn;
    let warning = (siblings > warn).then(|| format!("{siblings} siblings (warning past {warn})"));
    let receipt = match outcome {
        WriteOutcome::Succeeded(receipt) => {
            return Response::Written(PutReply {
                receipt,
                context: put.object.context(),
                siblings,
                warning,
            });
        }
        WriteOutcome::Failed(receipt) => receipt,
        WriteOutcome::Pending => put.tally.receipt(),
    };
    let quorum = put.quorum;
    let message = format!(
        "write quorum not met: {} of {} replicas acknowledged (W={}, PW={}, DW={}), {} primaries, {} fallbacks, {} synced",
        receipt.acked(), receipt.sent, quorum.w, quorum.pw, quorum.dw, receipt.primaries.len(), receipt.fallbacks.len(), receipt.synced
    );
    Response::WriteFailed { receipt, message }
}
