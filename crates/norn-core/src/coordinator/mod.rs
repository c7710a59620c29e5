//! The data path of a node: coordinating quorum reads and writes.
//!
//! - [`quorum`]: [`Quorum`], the per-request N, R, W, PR, PW and DW, resolved
//!   from a request's options and the node's defaults, and checked before
//!   anything is sent.
//! - [`write`]: sloppy-quorum targets of a write and the [`WriteTally`] of
//!   its acknowledgements, ending in a [`WriteReceipt`].
//! - [`read`]: the [`ReadTally`] of a read's replies: the merged object and
//!   the replicas that need read repair.
//! - `get` and `put`: the coordinations themselves, from the client's
//!   request to its answer and the read repair after it.

mod get;
mod put;
pub mod quorum;
pub mod read;
pub mod write;

use std::collections::{BTreeMap, HashMap};

use norn_proto::{ErrorCode, QuorumOptions, Response};
use norn_ring::{NodeId, Partition, PreferenceList};
use norn_storage::DataKey;
pub use quorum::{Quorum, QuorumDefaults, QuorumError};
use rand::rngs::SmallRng;
use rand::SeedableRng;
pub use read::{ReadOutcome, ReadTally};
pub use write::{choose_write_targets, WriteOutcome, WriteReceipt, WriteTally, WriteTarget};

use crate::io::{CallFailure, CallId, Token};
use crate::node::{error, NodeState};

/// A client's write, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PutArgs {
    pub(crate) bucket: Vec<u8>,
    pub(crate) key: Vec<u8>,
    /// `None`: a delete.
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) context: Option<norn_clock::Context>,
    pub(crate) options: QuorumOptions,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) forwarded: bool,
}

/// What an outgoing request of the coordinator waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Read { op: u64, node: NodeId },
    Ack { op: u64, node: NodeId },
    Forwarded { op: u64 },
}

/// A write passed on to the node that coordinates it.
#[derive(Debug)]
struct Forward {
    call: CallId,
    op_name: &'static str,
    started: u64,
    to: NodeId,
}

/// The coordinations in progress on one node.
#[derive(Debug)]
pub(crate) struct Coordinator {
    /// Draws which reads ask every replica.
    rng: SmallRng,
    next_op: u64,
    gets: BTreeMap<u64, get::GetOp>,
    puts: BTreeMap<u64, put::PutOp>,
    forwards: BTreeMap<u64, Forward>,
    waiting: HashMap<Token, Waiting>,
}

impl Coordinator {
    /// No coordinations yet; `seed` drives its random choices.
    pub(crate) fn new(seed: u64) -> Coordinator {
        Coordinator {
            rng: SmallRng::seed_from_u64(seed),
            next_op: 0,
            gets: BTreeMap::new(),
            puts: BTreeMap::new(),
            forwards: BTreeMap::new(),
            waiting: HashMap::new(),
        }
    }

    fn next_op(&mut self) -> u64 {
        self.next_op += 1;
        self.next_op
    }

    /// The answer to one of the coordinator's requests.
    pub(crate) fn on_reply(
        &mut self,
        node: &mut NodeState,
        token: Token,
        reply: Result<Response, CallFailure>,
    ) {
        match self.waiting.remove(&token) {
            Some(Waiting::Read { op, node: from }) => self.on_read_reply(node, op, from, reply),
            Some(Waiting::Ack { op, node: from }) => {
                let synced = match reply {
                    Ok(Response::Stored { synced }) => Some(synced),
                    _ => None,
                };
                self.on_ack(node, op, from, synced);
            }
            Some(Waiting::Forwarded { op }) => self.on_forwarded_reply(node, op, reply),
            None => {}
        }
    }

    /// A coordinated request reached its deadline.
    pub(crate) fn on_deadline(&mut self, node: &mut NodeState, op: u64) {
        if self.gets.contains_key(&op) {
            self.get_deadline(node, op);
        } else if self.puts.contains_key(&op) {
            self.put_deadline(node, op);
        }
    }

    fn on_forwarded_reply(
        &mut self,
        node: &mut NodeState,
        op: u64,
        reply: Result<Response, CallFailure>,
    ) {
        let Some(forward) = self.forwards.remove(&op) else {
            return;
        };
        let response = reply.unwrap_or_else(|failure| {
            error(
                ErrorCode::Timeout,
                format!(
                    "forwarding to {} failed ({failure:?}); the write may have happened",
                    forward.to
                ),
            )
        });
        finish(
            node,
            forward.call,
            forward.op_name,
            forward.started,
            response,
        );
    }

    /// Coordinations in progress: reads, writes, forwarded writes.
    pub(crate) fn in_progress(&self) -> (usize, usize, usize) {
        (self.gets.len(), self.puts.len(), self.forwards.len())
    }
}

/// Answers a client's data request and records it in the metrics.
fn finish(
    node: &mut NodeState,
    call: CallId,
    op_name: &'static str,
    started: u64,
    response: Response,
) {
    let elapsed = std::time::Duration::from_millis(node.now.saturating_sub(started));
    node.metrics.observe(op_name, &response, elapsed);
    node.reply(call, response);
}

/// The request's timeout, bounded to 1 ms..=10 min.
fn timeout_ms(node: &NodeState, requested: Option<u64>) -> u64 {
    requested
        .unwrap_or(node.config.data.request_timeout_ms)
        .clamp(1, 600_000)
}

fn quorum(node: &NodeState, options: QuorumOptions, members: usize) -> Result<Quorum, Response> {
    let defaults = QuorumDefaults {
        n: node.config.ring.default_n,
        n_max: node.config.ring.n_max,
    };
    Quorum::resolve(options, defaults, members)
        .map_err(|e| error(ErrorCode::BadRequest, e.to_string()))
}

/// Refuses a bucket, key or value past its limit; nothing is written.
fn check_sizes(
    node: &NodeState,
    bucket: &[u8],
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), Response> {
    let data = &node.config.data;
    let too_long = |what: &str, len: usize, max: usize| {
        error(
            ErrorCode::BadRequest,
            format!("{what} of {len} bytes exceeds the limit of {max} bytes; nothing was written"),
        )
    };
    if bucket.len() > data.max_bucket_bytes {
        return Err(too_long("bucket", bucket.len(), data.max_bucket_bytes));
    }
    if key.len() > data.max_key_bytes {
        return Err(too_long("key", key.len(), data.max_key_bytes));
    }
    match value {
        Some(value) if value.len() > data.max_value_bytes => Err(error(
            ErrorCode::TooLarge,
            format!(
                "value of {} bytes exceeds the limit of {} bytes; nothing was written",
                value.len(),
                data.max_value_bytes
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks a request and finds where its key lives: its quorum, its
/// storage key and its preference list. Any refusal is the reply.
fn route(
    node: &NodeState,
    bucket: &[u8],
    key: &[u8],
    value: Option<&[u8]>,
    options: QuorumOptions,
) -> Result<(Quorum, DataKey, PreferenceList), Response> {
    check_sizes(node, bucket, key, value)?;
    let ring = node.ring_or_refusal()?;
    let quorum = quorum(node, options, ring.members().len())?;
    let data_key = DataKey::new(ring.partition_of_key(bucket, key), bucket, key)
        .map_err(|e| error(ErrorCode::BadRequest, e.to_string()))?;
    let list = ring.preference_list(data_key.partition, usize::from(quorum.n));
    Ok((quorum, data_key, list))
}

/// The first N reachable nodes of `list` (see [`choose_write_targets`]);
/// only reachable primaries when hinted handoff is off.
fn targets(node: &NodeState, list: &PreferenceList) -> Vec<WriteTarget> {
    let mut targets = choose_write_targets(list, |n| node.is_up(n));
    if !node.config.data.hinted_handoff {
        targets.retain(|t| t.hint_for.is_none());
    }
    targets
}

/// Up nodes still handing `partition` off to its owners (ownership
/// transfer) that are not among `targets`: they get reads and writes too
/// until their transfer is done, so requests keep their N.
fn handoff_holders(node: &NodeState, partition: Partition, targets: &[NodeId]) -> Vec<NodeId> {
    let mut holders = node.membership.handing_off(partition);
    holders.retain(|holder| !targets.contains(holder) && *holder != node.id);
    holders
}
