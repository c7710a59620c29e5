//! The background work of a simulated node: hint delivery, as
//! `norn-node`'s `handoff.rs` does it, and anti-entropy exchanges.

use norn_node::exchange::{Exchange, Step};
use norn_node::replica::{self, HintPayload};
use norn_proto::{codec, Response};
use norn_ring::{NodeId, Partition};
use norn_storage::storage::HintId;
use norn_storage::{DataKey, Storage};
use rand::rngs::SmallRng;
use rand::Rng;

use super::{Out, Pending, SimNode, N};

impl SimNode {
    /// Offers the oldest hint of each queue whose target is up, as
    /// `handoff.rs` does (one in flight per target).
    pub(super) fn offer_hints(&mut self, out: &mut Out) {
        let targets: Vec<NodeId> = self.store.hint_queues().into_keys().collect();
        for target in targets {
            if !self.membership.is_up(target) || self.hints_in_flight.contains(&target) {
                continue;
            }
            let Ok(mut hints) = self.store.hints(target, None, 1) else {
                continue;
            };
            let Some((hint, payload)) = hints.pop() else {
                continue;
            };
            let Ok(payload) = codec::decode::<HintPayload>(&payload) else {
                let _ = self.store.remove_hint(target, hint);
                continue;
            };
            let Ok(key) = self.data_key(&payload.bucket, &payload.key) else {
                let _ = self.store.remove_hint(target, hint);
                continue;
            };
            let stored_n = match self.store.get(&key) {
                Ok(Some(datum)) => datum.n,
                _ => payload.n,
            };
            let object = match replica::read_object(&self.store, &key) {
                Ok(Some(object)) => object,
                Ok(None) => {
                    let _ = self.store.remove_hint(target, hint);
                    continue;
                }
                Err(_) => continue,
            };
            let Ok(sent) = codec::encode(&object) else {
                continue;
            };
            let request = replica::put_request(&key, stored_n, &object, None, true);
            self.hints_in_flight.insert(target);
            let to = self.node_addr(target);
            self.request(
                to,
                request,
                Pending::Hint {
                    target,
                    hint,
                    key,
                    n: stored_n,
                    sent,
                },
                out,
            );
        }
    }

    pub(super) fn hint_delivered(
        &mut self,
        target: NodeId,
        hint: HintId,
        key: &DataKey,
        n: u8,
        sent: &[u8],
    ) {
        if self.store.remove_hint(target, hint).is_err() {
            return;
        }
        let primary_here = self
            .ring
            .preference_list(key.partition, usize::from(n))
            .is_primary(self.id);
        let other_hints_here = self.store.hint_queues().keys().any(|t| *t != target);
        if !primary_here && !other_hints_here {
            let digest = norn_storage::trees::version_digest(sent);
            let _ = replica::remove_if_unchanged(&self.store, key, digest);
        }
    }

    /// Starts an exchange of the next partition this node is a primary of
    /// (among those it holds data of) with a random other primary that is up.
    pub(super) fn start_exchange(&mut self, rng: &mut SmallRng, out: &mut Out) {
        let partitions: Vec<Partition> = self
            .store
            .tree_partitions()
            .into_iter()
            .filter(|&p| {
                self.ring
                    .preference_list(p, usize::from(N))
                    .is_primary(self.id)
            })
            .collect();
        if partitions.is_empty() {
            return;
        }
        let partition = partitions[self.anti_entropy_turn % partitions.len()];
        self.anti_entropy_turn += 1;
        let peers: Vec<NodeId> = self
            .ring
            .preference_list(partition, usize::from(N))
            .primaries()
            .iter()
            .copied()
            .filter(|&p| p != self.id && self.membership.is_up(p))
            .collect();
        if peers.is_empty() {
            return;
        }
        let peer = peers[rng.gen_range(0..peers.len())];
        let (exchange, request) =
            Exchange::start(partition, N, self.store.tree(partition, N), 10_000);
        self.exchange = Some(exchange);
        self.exchange_peer = Some(peer);
        let to = self.node_addr(peer);
        self.request(to, request, Pending::Exchange, out);
    }

    pub(super) fn continue_exchange(
        &mut self,
        response: Option<Response>,
        _rng: &mut SmallRng,
        out: &mut Out,
    ) {
        let (Some(mut exchange), Some(peer)) = (self.exchange.take(), self.exchange_peer) else {
            return;
        };
        let Some(response) = response else {
            self.exchange_peer = None;
            return;
        };
        match exchange.on_reply(response, self.replica(), &self.ring) {
            Ok(Step::Send(request)) => {
                self.exchange = Some(exchange);
                let to = self.node_addr(peer);
                self.request(to, request, Pending::Exchange, out);
            }
            Ok(Step::Done(_)) | Err(_) => self.exchange_peer = None,
        }
    }
}
