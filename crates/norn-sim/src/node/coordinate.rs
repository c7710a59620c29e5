//! The coordinator side of a simulated node: client writes and reads, as
//! `norn-node`'s `quorum_put` and `quorum_get` do them.

use norn_clock::{Context, Object, Sibling};
use norn_node::coordinator::{
    choose_write_targets, ReadOutcome, ReadTally, WriteOutcome, WriteTally, WriteTarget,
};
use norn_node::replica::{self, CoordinatedWrite, LocalWriteError};
use norn_proto::{ErrorCode, GetReply, PutReply, QuorumOptions, Request, Response};
use norn_ring::NodeId;
use norn_storage::{DataKey, Durability};

use super::{refusal, reply_from, Addr, Coordination, Out, Pending, SimNode, Timer};

/// A client's write as a node receives it.
#[derive(Debug)]
pub(super) struct ClientWrite {
    pub(super) bucket: Vec<u8>,
    pub(super) key: Vec<u8>,
    pub(super) value: Option<Vec<u8>>,
    pub(super) context: Option<Context>,
    pub(super) options: QuorumOptions,
}

impl SimNode {
    /// Coordinates a client's write as `norn-node`'s `quorum_put` does;
    /// `None` when the reply comes later.
    pub(super) fn coordinate_put(
        &mut self,
        client: Addr,
        client_id: u64,
        write: ClientWrite,
        forwarded: bool,
        out: &mut Out,
    ) -> Option<Response> {
        let quorum = match self.quorum(write.options) {
            Ok(quorum) => quorum,
            Err(response) => return Some(response),
        };
        let data_key = match self.data_key(&write.bucket, &write.key) {
            Ok(key) => key,
            Err(response) => return Some(response),
        };
        let list = self
            .ring
            .preference_list(data_key.partition, usize::from(quorum.n));
        let targets = choose_write_targets(&list, |n| self.membership.is_up(n));
        if !targets.iter().any(|t| t.node == self.id) {
            return self.forward_put(client, client_id, write, forwarded, &targets, out);
        }
        let sync = quorum.dw > 0;
        let sibling = write.value.map_or(Sibling::Tombstone, Sibling::Value);
        let context = write.context.unwrap_or_default();
        let hint_for = targets
            .iter()
            .find(|t| t.node == self.id)
            .and_then(|t| t.hint_for);
        let local = CoordinatedWrite {
            key: &data_key,
            n: quorum.n,
            context: &context,
            sibling,
            hint_for,
            durability: Durability::synced_if(sync),
        };
        let object = match self.local_write(local) {
            Ok(object) => object,
            Err(response) => return Some(response),
        };
        let mut tally = WriteTally::new(quorum, targets.clone());
        let first = tally.on_ack(self.id, sync);
        let coordination = self.next_id;
        self.next_id += 1;
        self.send_replica_writes(
            coordination,
            &data_key,
            quorum.n,
            sync,
            &object,
            targets,
            out,
        );
        self.coordinations.insert(
            coordination,
            Coordination::Write {
                client,
                client_id,
                tally,
                object,
                replied: false,
            },
        );
        out.timers.push((
            self.timing.coordination_timeout_ms,
            Timer::CoordinationTimeout(coordination),
        ));
        self.settle_write(coordination, first, out);
        None
    }

    /// The coordinator's own write (see `LocalReplica::coordinate_write`).
    fn local_write(&self, write: CoordinatedWrite<'_>) -> Result<Object, Response> {
        self.replica().coordinate_write(write).map_err(|e| match e {
            LocalWriteError::TooManySiblings(count) => {
                refusal(ErrorCode::TooManySiblings, format!("{count} siblings"))
            }
            LocalWriteError::TooLarge { bytes, max } => {
                refusal(ErrorCode::TooLarge, format!("{bytes} bytes, limit {max}"))
            }
            LocalWriteError::Failed(reason) => refusal(ErrorCode::Storage, reason),
        })
    }

    /// Passes a write to the first target, which coordinates it, as a node
    /// outside the key's replicas does; `None` when the reply comes later.
    fn forward_put(
        &mut self,
        client: Addr,
        client_id: u64,
        write: ClientWrite,
        forwarded: bool,
        targets: &[WriteTarget],
        out: &mut Out,
    ) -> Option<Response> {
        if forwarded {
            return Some(refusal(
                ErrorCode::Unavailable,
                "forwarded to a non-replica",
            ));
        }
        let Some(first) = targets.first() else {
            return Some(refusal(ErrorCode::QuorumNotMet, "no replica reachable"));
        };
        let request = Request::Put {
            bucket: write.bucket,
            key: write.key,
            value: write.value,
            context: write.context,
            options: write.options,
            timeout_ms: None,
            forwarded: true,
        };
        let to = self.node_addr(first.node);
        self.request(to, request, Pending::Forward { client, client_id }, out);
        None
    }

    /// Sends the coordinated object to every other target (fallbacks with
    /// their hint).
    #[allow(clippy::too_many_arguments)]
    fn send_replica_writes(
        &mut self,
        coordination: u64,
        key: &DataKey,
        n: u8,
        sync: bool,
        object: &Object,
        targets: Vec<WriteTarget>,
        out: &mut Out,
    ) {
        let me = self.id;
        for target in targets.into_iter().filter(|t| t.node != me) {
            let request = replica::put_request(key, n, object, target.hint_for, sync);
            let to = self.node_addr(target.node);
            let pending = Pending::WriteAck {
                coordination,
                node: target.node,
            };
            self.request(to, request, pending, out);
        }
    }

    /// Coordinates a client's read as `quorum_get` does.
    pub(super) fn coordinate_get(
        &mut self,
        client: Addr,
        client_id: u64,
        bucket: &[u8],
        key: &[u8],
        options: QuorumOptions,
        out: &mut Out,
    ) -> Option<Response> {
        let quorum = match self.quorum(options) {
            Ok(quorum) => quorum,
            Err(response) => return Some(response),
        };
        let data_key = match self.data_key(bucket, key) {
            Ok(key) => key,
            Err(response) => return Some(response),
        };
        let list = self
            .ring
            .preference_list(data_key.partition, usize::from(quorum.n));
        let targets: Vec<(NodeId, bool)> =
            choose_write_targets(&list, |n| self.membership.is_up(n))
                .into_iter()
                .map(|t| (t.node, t.hint_for.is_none()))
                .collect();
        if targets.is_empty() {
            return Some(refusal(ErrorCode::QuorumNotMet, "no replica reachable"));
        }
        let coordination = self.next_id;
        self.next_id += 1;
        let mut tally = ReadTally::new(quorum, targets.clone());
        let mut outcome = ReadOutcome::Pending;
        for (node, _) in targets {
            if node == self.id {
                outcome = match replica::read_object(&self.store, &data_key) {
                    Ok(object) => tally.on_reply(node, object),
                    Err(_) => tally.on_failure(node),
                };
            } else {
                let request = Request::ReplicaGet {
                    bucket: data_key.bucket.clone(),
                    key: data_key.key.clone(),
                };
                let to = self.node_addr(node);
                self.request(to, request, Pending::ReadReply { coordination, node }, out);
            }
        }
        self.coordinations.insert(
            coordination,
            Coordination::Read {
                client,
                client_id,
                tally,
                key: data_key,
                quorum,
                replied: false,
            },
        );
        out.timers.push((
            self.timing.coordination_timeout_ms,
            Timer::CoordinationTimeout(coordination),
        ));
        self.settle_read(coordination, outcome, out);
        None
    }

    pub(super) fn on_coordination_timeout(&mut self, coordination: u64, out: &mut Out) {
        match self.coordinations.get_mut(&coordination) {
            Some(Coordination::Write { tally, .. }) => {
                let outcome = tally.on_timeout();
                self.settle_write(coordination, outcome, out);
            }
            Some(Coordination::Read { tally, .. }) => {
                let outcome = tally.on_timeout();
                self.settle_read(coordination, outcome, out);
            }
            None => {}
        }
        // A coordination is over at its deadline, whatever it waited for.
        self.coordinations.remove(&coordination);
    }

    pub(super) fn settle_write(&mut self, coordination: u64, outcome: WriteOutcome, out: &mut Out) {
        let index = self.index;
        let Some(Coordination::Write {
            client,
            client_id,
            tally,
            object,
            replied,
        }) = self.coordinations.get_mut(&coordination)
        else {
            return;
        };
        if !*replied && outcome != WriteOutcome::Pending {
            *replied = true;
            let response = match outcome {
                WriteOutcome::Succeeded(receipt) => Response::Written(PutReply {
                    receipt,
                    context: object.context(),
                    siblings: object.value_count() as u32,
                    warning: None,
                }),
                WriteOutcome::Failed(receipt) => Response::WriteFailed {
                    receipt,
                    message: "write quorum not met".into(),
                },
                WriteOutcome::Pending => return,
            };
            reply_from(index, *client, *client_id, response, out);
        }
        if tally.all_in() {
            self.coordinations.remove(&coordination);
        }
    }

    pub(super) fn settle_read(&mut self, coordination: u64, outcome: ReadOutcome, out: &mut Out) {
        let index = self.index;
        let Some(Coordination::Read {
            client,
            client_id,
            tally,
            quorum,
            replied,
            ..
        }) = self.coordinations.get_mut(&coordination)
        else {
            return;
        };
        if !*replied && outcome != ReadOutcome::Pending {
            *replied = true;
            let response = match outcome {
                ReadOutcome::Done { merged } => {
                    let (siblings, context) = match merged {
                        Some(object) => (object.values().cloned().collect(), object.context()),
                        None => (Vec::new(), Context::default()),
                    };
                    Response::Value(GetReply {
                        siblings,
                        context,
                        replies: quorum.r,
                        warning: None,
                    })
                }
                _ => refusal(ErrorCode::QuorumNotMet, "read quorum not met"),
            };
            reply_from(index, *client, *client_id, response, out);
        }
        if !tally.all_in() {
            return;
        }
        let Some(Coordination::Read {
            tally, key, quorum, ..
        }) = self.coordinations.remove(&coordination)
        else {
            return;
        };
        let Some(merged) = tally.merged() else { return };
        for stale in tally.stale_replicas(&merged) {
            if stale == self.id {
                let _ = self
                    .replica()
                    .merge(&key, quorum.n, &merged, Durability::Buffered, None);
            } else {
                let request = replica::put_request(&key, quorum.n, &merged, None, false);
                let to = self.node_addr(stale);
                self.request(to, request, Pending::Ignore, out);
            }
        }
    }
}
