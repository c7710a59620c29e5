//! Hinted handoff: a fallback that stored a write for an unreachable
//! primary delivers it once it sees that primary up again, and deletes the
//! hint only after the primary acknowledged. Hints live in RocksDB, so they
//! survive a restart of the fallback.
//!
//! Past `storage.hint_bytes_max_per_target`, a fallback refuses to stand in
//! for that primary: the write fails on that replica (the coordinator counts
//! it as not acknowledged) rather than growing the queue without bound.

use std::sync::Arc;
use std::time::Duration;

use norn_proto::{codec, Response};
use norn_ring::NodeId;
use norn_storage::{Change, Durability, Storage};

use crate::node::Node;
use crate::replica::HintPayload;

/// Hints read from storage at a time.
const HINT_PAGE: usize = 64;

impl Node {
    /// Offers every queue's hints to its target, when the target is up.
    pub(crate) async fn handoff_loop(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.data.hint_delivery_interval_ms);
        loop {
            tokio::time::sleep(interval).await;
            let targets: Vec<NodeId> = self.storage.hint_queues().into_keys().collect();
            for target in targets {
                if self.membership().is_up(target) {
                    self.deliver_hints(target).await;
                }
            }
        }
    }

    /// Delivers `target`'s hints oldest first; stops at the first failure
    /// and tries again next round.
    async fn deliver_hints(&self, target: NodeId) {
        let timeout = Duration::from_millis(self.config.limits.peer_request_timeout_ms);
        loop {
            let hints = match self.storage.hints(target, None, HINT_PAGE) {
                Ok(hints) if !hints.is_empty() => hints,
                Ok(_) => return,
                Err(e) => {
                    tracing::error!(target = %target, error = %e, "cannot read hints");
                    return;
                }
            };
            for (id, payload) in hints {
                let delivered = match codec::decode::<HintPayload>(&payload) {
                    Ok(hint) => self.deliver_hint(target, &hint, timeout).await,
                    Err(e) => {
                        tracing::error!(target = %target, hint = id.0, error = %e, "undecodable hint dropped");
                        true
                    }
                };
                if !delivered {
                    return;
                }
                if let Err(e) = self.storage.remove_hint(target, id) {
                    tracing::error!(target = %target, error = %e, "delivered hint not removed");
                    return;
                }
                self.metrics
                    .hints_delivered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Sends this node's copy of the hinted key to `target`, which fsyncs
    /// it before acknowledging (concurrent deliveries share fsyncs): the
    /// hint is deleted only once the target has the write on disk. Then a
    /// fallback that is not a primary of the key for the object's N (the
    /// largest it was written with, which may pass the hint's) drops its
    /// own copy, unless a newer write arrived meanwhile.
    async fn deliver_hint(&self, target: NodeId, hint: &HintPayload, timeout: Duration) -> bool {
        let Some(ring) = self.ring() else {
            return false;
        };
        let Ok(key) = Self::data_key_in(&ring, &hint.bucket, &hint.key) else {
            return true;
        };
        let (object, stored_n) = match self.storage.get(&key) {
            Ok(Some(datum)) => match self.local_get(&key) {
                Ok(Some(object)) => (object, datum.n),
                Ok(None) => return true,
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "hinted object unreadable");
                    return false;
                }
            },
            Ok(None) => return true,
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "hinted object unreadable");
                return false;
            }
        };
        if !self.replica().sendable(&key, &object) {
            // Kept here, hint dropped: no frame can carry it until a write
            // over its context resolves its siblings (transfers move it then).
            return true;
        }
        let request = crate::replica::put_request(&key, stored_n, &object, None, true);
        if !matches!(
            self.call_node(target, &request, timeout).await,
            Some(Response::Stored { synced: true })
        ) {
            return false;
        }
        tracing::debug!(target = %target, key = %key, "hint delivered");
        let primary_here = ring
            .preference_list(key.partition, usize::from(stored_n))
            .is_primary(self.id());
        let other_hints_here = self.storage.hint_queues().keys().any(|t| *t != target);
        if !primary_here && !other_hints_here {
            let delivered = codec::encode(&object).ok();
            let dropped =
                self.storage.update(
                    &key,
                    Durability::Buffered,
                    None,
                    &mut |current| match current {
                        Some(datum) if Some(&datum.value) == delivered.as_ref() => Change::Delete,
                        _ => Change::Keep,
                    },
                );
            if let Err(e) = dropped {
                tracing::warn!(key = %key, error = %e, "handed-off copy not dropped");
            }
        }
        true
    }
}
