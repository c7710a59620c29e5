//! Which actor a node's next dot of a key belongs to, so that no actor
//! ever issues the same dot twice (riak_kv#679, "kv679").
//!
//! A dot `(actor, n)` may be issued only by a replica that holds every
//! earlier event of `actor` for that key; one that forgot some (it dropped
//! its copy after a handoff or a transfer, reaped a tombstone, was restored
//! from an older copy of its data, lost unsynced writes in a power cut)
//! would issue `n` again, and the replicas that know the old `(actor, n)`
//! would take the new value as already seen: an acknowledged write lost.
//!
//! The rule here, after Riak's per-key actor epochs (riak_kv#1070, #1643):
//!
//! - Each run of a node is a [`Lifetime`] with a fresh random id. Nothing
//!   from an earlier run is ever continued, so whatever the data directory
//!   lost or rolled back (a wipe, a restore, a power cut) cannot be
//!   reissued.
//! - Within a run, a key's writes continue the newest actor of this run
//!   that the node's own copy of the key holds. A key the node does not
//!   hold (new, dropped, unreadable) opens a fresh actor: the next epoch
//!   of the run, `(lifetime, epoch)`.
//! - The copy can still lag the node's own history within a run: a copy
//!   dropped and then received again from a replica that missed some of
//!   the node's writes. Every merge checks for that (the incoming object
//!   knows more of one of this run's actors than the local copy did) and
//!   records a fresh actor with [`crate::DvvSet::with_events`], so the
//!   next write opens it. A client's context that knows more of this run's
//!   actor than the copy does is the same sign.
//!
//! Cost: a key's clock gains one entry per run of a node that coordinates
//! writes to it, and one per amnesia the node detects; a key that stays
//! on its replicas and is written through the same nodes gains nothing
//! within a run. Epoch ids grow with the keys a run opens (an 8-byte
//! varint at most).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::context::{ActorId, Context, MAX_COUNTER};
use crate::dvvset::DvvSet;

/// One run of one node: the actors it may issue dots under.
#[derive(Debug)]
pub struct Lifetime {
    id: u64,
    /// The last epoch opened in this run.
    epochs: AtomicU64,
}

impl Lifetime {
    /// A run with id `id`: random for every start, so that no two runs of
    /// any nodes share one (2^-64 per pair).
    pub fn new(id: u64) -> Lifetime {
        Lifetime {
            id,
            epochs: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether `actor` was opened in this run.
    pub fn owns(&self, actor: ActorId) -> bool {
        actor.lifetime == self.id
    }

    /// Epochs opened so far in this run.
    pub fn epochs_opened(&self) -> u64 {
        self.epochs.load(Ordering::Relaxed)
    }

    fn open_epoch(&self) -> ActorId {
        ActorId::new(self.id, self.epochs.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The actor of a write coordinated here over `context`, given this
    /// node's copy of the key (`None`: absent or unreadable). Continues the
    /// newest actor of this run in `local` when `local` holds all of its
    /// history known to `context` and it has room for another event;
    /// otherwise opens a fresh one.
    pub fn actor_for<V>(&self, local: Option<&DvvSet<V>>, context: &Context) -> ActorId {
        let newest = local.and_then(|local| {
            local
                .counters()
                .filter(|(actor, _)| self.owns(*actor))
                .max_by_key(|(actor, _)| actor.epoch)
        });
        match newest {
            Some((actor, counter))
                if context.counter(actor) <= counter && counter < MAX_COUNTER =>
            {
                actor
            }
            _ => self.open_epoch(),
        }
    }

    /// The object to store when `incoming` is merged into this node's copy
    /// `local` (`None`: absent or unreadable) with the result `merged`: if
    /// `incoming` knows events of this run's actors that `local` lacked,
    /// the node has lost part of its own history of the key, and `merged`
    /// also records a fresh actor, which the next write here opens.
    pub fn after_merge<V: Clone + Ord>(
        &self,
        local: Option<&DvvSet<V>>,
        incoming: &DvvSet<V>,
        merged: DvvSet<V>,
    ) -> DvvSet<V> {
        let known_here = |actor: ActorId| local.map_or(0, |l| l.counter(actor));
        let forgot = incoming
            .counters()
            .any(|(actor, counter)| self.owns(actor) && counter > known_here(actor));
        if forgot {
            merged.with_events(self.open_epoch(), 1)
        } else {
            merged
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: u64) -> Lifetime {
        Lifetime::new(id)
    }

    #[test]
    fn a_key_this_node_does_not_hold_opens_a_fresh_actor_each_time() {
        let node = run(7);
        let empty = Context::default();
        let first = node.actor_for::<u8>(None, &empty);
        let second = node.actor_for::<u8>(None, &empty);
        assert_ne!(first, second);
        assert!(node.owns(first) && node.owns(second));
    }

    #[test]
    fn a_held_key_continues_its_newest_actor_of_this_run() {
        let node = run(7);
        let actor = node.actor_for::<u8>(None, &Context::default());
        let object = DvvSet::new().update(&Context::default(), actor, 1u8);
        let object = object.update(
            &object.context(),
            node.actor_for(Some(&object), &object.context()),
            2,
        );
        assert_eq!(
            object.counter(actor),
            2,
            "the second write continued the first's actor"
        );
        assert_eq!(node.actor_for(Some(&object), &object.context()), actor);
    }

    #[test]
    fn actors_of_an_earlier_run_are_never_continued() {
        let before = run(1);
        let actor = before.actor_for::<u8>(None, &Context::default());
        let object = DvvSet::new().update(&Context::default(), actor, 1u8);
        let after = run(2);
        assert_ne!(after.actor_for(Some(&object), &object.context()), actor);
    }

    #[test]
    fn a_context_that_knows_more_of_this_runs_actor_than_the_copy_opens_a_fresh_one() {
        let node = run(3);
        let actor = node.actor_for::<u8>(None, &Context::default());
        let old = DvvSet::new().update(&Context::default(), actor, 1u8);
        let newer = old.update(&old.context(), actor, 2u8);
        // The copy here rolled back to `old`; a client read `newer`.
        assert_ne!(node.actor_for(Some(&old), &newer.context()), actor);
    }

    #[test]
    fn a_merge_that_shows_lost_history_records_a_fresh_actor_for_the_next_write() {
        let node = run(4);
        let actor = node.actor_for::<u8>(None, &Context::default());
        let v1 = DvvSet::new().update(&Context::default(), actor, 1u8);
        let v2 = v1.update(&Context::default(), actor, 2u8);
        // The copy was dropped; a replica that only saw v1 sends it back.
        let merged = node.after_merge(None, &v1, v1.clone());
        let next = node.actor_for(Some(&merged), &Context::default());
        assert_ne!(
            next, actor,
            "continuing the old actor would reissue v2's dot"
        );
        let v3 = merged.update(&Context::default(), next, 3u8);
        let everywhere = v3.sync(&v2);
        let mut values: Vec<u8> = everywhere.values().copied().collect();
        values.sort_unstable();
        assert_eq!(values, vec![1, 2, 3]);
        // A merge that shows nothing new changes nothing.
        assert_eq!(node.after_merge(Some(&v3), &v1, v3.clone()), v3);
    }

    #[test]
    fn an_exhausted_actor_is_replaced() {
        let node = run(5);
        let actor = node.actor_for::<u8>(None, &Context::default());
        let full = DvvSet::<u8>::new().with_events(actor, MAX_COUNTER);
        assert_ne!(node.actor_for(Some(&full), &full.context()), actor);
    }
}
