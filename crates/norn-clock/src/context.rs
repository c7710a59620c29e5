//! Actors and causal contexts.

use serde::{Deserialize, Serialize};

/// Who made a dot: one incarnation of one node. A node whose data was lost
/// comes back as a new actor, so its new dots never collide with its old
/// ones. Clients are never actors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId(pub u64);

/// A causal context: for each actor, how many of its events are known.
///
/// Sorted by actor, without zero counters; the empty context knows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Context(Vec<(ActorId, u64)>);

impl Context {
    /// A context from `(actor, counter)` pairs in any order; duplicates keep
    /// their largest counter and zero counters are dropped.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (ActorId, u64)>) -> Context {
        let mut pairs: Vec<(ActorId, u64)> = pairs.into_iter().filter(|(_, n)| *n > 0).collect();
        pairs.sort_unstable();
        let mut merged: Vec<(ActorId, u64)> = Vec::with_capacity(pairs.len());
        for (actor, counter) in pairs {
            match merged.last_mut() {
                Some(last) if last.0 == actor => last.1 = last.1.max(counter),
                _ => merged.push((actor, counter)),
            }
        }
        Context(merged)
    }

    pub fn pairs(&self) -> &[(ActorId, u64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many events of `actor` this context knows.
    pub fn counter(&self, actor: ActorId) -> u64 {
        self.0
            .binary_search_by_key(&actor, |(a, _)| *a)
            .map_or(0, |i| self.0[i].1)
    }

    /// Whether every event known to `other` is known here.
    pub fn descends(&self, other: &Context) -> bool {
        other.0.iter().all(|&(actor, n)| self.counter(actor) >= n)
    }

    /// The pointwise maximum: every event known to either.
    pub fn merge(&self, other: &Context) -> Context {
        Context::from_pairs(self.0.iter().chain(&other.0).copied())
    }
}
