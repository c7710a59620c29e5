//! Hinted handoff: a fallback that stored a write for an unreachable
//! primary delivers it once it sees that primary up again. Hints go a page
//! ([`HINT_PAGE`]) at a time, all of a page at once, each as a one-key
//! hand-over (`ReplicaPutMany`): the target fsyncs it before it
//! acknowledges (deliveries arriving together share an fsync), and only
//! that acknowledgement deletes the hint. A hand-over carries the
//! fallback's proof of admission when its ring no longer names it, so that
//! a fallback dropped by a ring that lost no record of it (a concurrent
//! commit) can still deliver. Then a fallback
//! that is not a primary of the key for the object's N (the largest it was
//! written with, which may pass the hint's) drops its own copy, unless a
//! newer write arrived meanwhile or it holds hints for other targets.
//!
//! Past `storage.hint_bytes_max_per_target`, a fallback refuses to stand in
//! for that primary (the storage refuses the hint and the write together).

use std::collections::{BTreeMap, HashMap};

use norn_clock::Object;
use norn_proto::{codec, KeyObject, KeyRef, Request, Response};
use norn_ring::NodeId;
use norn_storage::storage::HintId;
use norn_storage::{Change, DataKey, Durability};

use crate::io::{CallFailure, Timer, Token};
use crate::metrics::Counter;
use crate::node::NodeState;
use crate::outbox::Route;
use crate::replica::HintPayload;

/// Hints read from storage and delivered at a time.
pub const HINT_PAGE: usize = 64;

/// One hint on its way.
#[derive(Debug)]
struct InFlight {
    target: NodeId,
    hint: HintId,
    key: DataKey,
    n: u8,
    /// The stored bytes sent: the fallback drops its copy only if they are
    /// still what it holds.
    sent: Vec<u8>,
}

/// The page being delivered to one target.
#[derive(Debug, Default)]
struct Page {
    in_flight: usize,
    full: bool,
    failed: bool,
}

/// Hint delivery of a node.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    pages: BTreeMap<NodeId, Page>,
    waiting: HashMap<Token, InFlight>,
}

impl Handoff {
    /// The delivery timer: starts a page for every target seen up that
    /// has hints and no page on its way.
    pub(crate) fn on_tick(&mut self, node: &mut NodeState) {
        node.timer_in(
            node.config.data.hint_delivery_interval_ms,
            Timer::HintDelivery,
        );
        let targets: Vec<NodeId> = node.storage.hint_queues().into_keys().collect();
        for target in targets {
            if node.membership.is_up(target) && !self.pages.contains_key(&target) {
                self.start_page(node, target);
            }
        }
    }

    /// Sends `target`'s oldest hints; hints that cannot be delivered (their
    /// key is gone, or undecodable) are dropped on the way.
    fn start_page(&mut self, node: &mut NodeState, target: NodeId) {
        let hints = match node.storage.hints(target, None, HINT_PAGE) {
            Ok(hints) => hints,
            Err(e) => {
                tracing::error!(target = %target, error = %e, "cannot read hints");
                return;
            }
        };
        let mut page = Page {
            full: hints.len() == HINT_PAGE,
            ..Page::default()
        };
        for (hint, payload) in hints {
            match self.send_hint(node, target, hint, &payload) {
                Ok(true) => page.in_flight += 1,
                Ok(false) => {
                    if let Err(e) = node.storage.remove_hint(target, hint) {
                        tracing::error!(target = %target, error = %e, "hint not removed");
                    }
                }
                Err(()) => page.failed = true,
            }
        }
        if page.in_flight > 0 {
            self.pages.insert(target, page);
        }
    }

    /// Sends one hint's object: `Ok(true)` sent, `Ok(false)` nothing to
    /// deliver, `Err` not now.
    fn send_hint(
        &mut self,
        node: &mut NodeState,
        target: NodeId,
        hint: HintId,
        payload: &[u8],
    ) -> Result<bool, ()> {
        let Ok(payload) = codec::decode::<HintPayload>(payload) else {
            tracing::error!(target = %target, hint = hint.0, "undecodable hint dropped");
            return Ok(false);
        };
        let ring = node.ring().ok_or(())?;
        let Ok(key) = DataKey::new(
            ring.partition_of_key(&payload.bucket, &payload.key),
            &payload.bucket,
            &payload.key,
        ) else {
            return Ok(false);
        };
        let datum = match node.storage.get(&key) {
            Ok(Some(datum)) => datum,
            Ok(None) => return Ok(false),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "hinted object unreadable");
                return Err(());
            }
        };
        let object: Object = match node.replica().read(&key) {
            Ok(Some(object)) => object,
            Ok(None) => return Ok(false),
            Err(_) => return Err(()),
        };
        if !node.replica().sendable(&key, &object) {
            // Kept here, hint dropped: no frame can carry it until a write
            // over its context resolves its siblings.
            return Ok(false);
        }
        let request = Request::ReplicaPutMany {
            n: datum.n,
            ring_version: ring.version(),
            items: vec![KeyObject {
                key: KeyRef {
                    bucket: key.bucket.clone(),
                    key: key.key.clone(),
                },
                object,
            }],
            admission: node.handover_admission(),
        };
        let token = node.send_to(Route::Handoff, target, request).ok_or(())?;
        self.waiting.insert(
            token,
            InFlight {
                target,
                hint,
                key,
                n: datum.n,
                sent: datum.value,
            },
        );
        Ok(true)
    }

    pub(crate) fn on_reply(
        &mut self,
        node: &mut NodeState,
        token: Token,
        reply: Result<Response, CallFailure>,
    ) {
        let Some(delivered) = self.waiting.remove(&token) else {
            return;
        };
        let target = delivered.target;
        // A hand-over's reply comes after the target's fsync.
        let synced = matches!(reply, Ok(Response::StoredMany { count: 1 }));
        if synced {
            self.delivered(node, delivered);
        }
        let Some(page) = self.pages.get_mut(&target) else {
            return;
        };
        page.in_flight -= 1;
        page.failed |= !synced;
        if page.in_flight == 0 {
            let again = page.full && !page.failed;
            self.pages.remove(&target);
            if again && node.membership.is_up(target) {
                self.start_page(node, target);
            }
        }
    }

    /// The target has the hinted write on disk: the hint goes, and so does
    /// a fallback's own copy that nothing else keeps here.
    fn delivered(&mut self, node: &mut NodeState, delivered: InFlight) {
        if let Err(e) = node.storage.remove_hint(delivered.target, delivered.hint) {
            tracing::error!(target = %delivered.target, error = %e, "delivered hint not removed");
            return;
        }
        node.metrics.count(Counter::HintsDelivered, 1);
        tracing::debug!(target = %delivered.target, key = %delivered.key, "hint delivered");
        let Some(ring) = node.ring() else { return };
        let primary_here = ring
            .preference_list(delivered.key.partition, usize::from(delivered.n))
            .is_primary(node.id);
        let other_hints_here = node
            .storage
            .hint_queues()
            .keys()
            .any(|t| *t != delivered.target);
        if primary_here || other_hints_here {
            return;
        }
        let dropped =
            node.storage
                .update(
                    &delivered.key,
                    Durability::Buffered,
                    None,
                    &mut |current| match current {
                        Some(datum) if datum.value == delivered.sent => Change::Delete,
                        _ => Change::Keep,
                    },
                );
        if let Err(e) = dropped {
            tracing::warn!(key = %delivered.key, error = %e, "handed-off copy not dropped");
        }
    }
}
