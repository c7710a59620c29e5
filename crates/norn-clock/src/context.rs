//! Actors and causal contexts.

use serde::{Deserialize, Serialize};

/// The largest counter a context or an object may carry. Far past any real
/// history, and low enough that no increment can overflow; anything larger
/// that arrives from outside is refused at decoding.
pub const MAX_COUNTER: u64 = u64::MAX >> 1;

/// Who made a dot: one key epoch of one node lifetime (see
/// [`crate::lifetime`]). A node draws a fresh random `lifetime` at every
/// start and numbers the epochs it opens during that run, so no two
/// actors ever share an id: not across nodes, not across restarts, not
/// across the keys of one run. Clients are never actors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActorId {
    pub lifetime: u64,
    pub epoch: u64,
}

impl ActorId {
    pub fn new(lifetime: u64, epoch: u64) -> ActorId {
        ActorId { lifetime, epoch }
    }
}

impl std::fmt::Display for ActorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}.{}", self.lifetime, self.epoch)
    }
}

/// Why a decoded context or object was refused: it breaks an invariant
/// every context and object built here keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed causal history: {0}")]
pub struct MalformedHistory(pub &'static str);

/// A causal context: for each actor, how many of its events are known.
///
/// Sorted by actor, each actor once, counters in `1..=MAX_COUNTER`; the
/// empty context knows nothing. A decoded context is checked for all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<(ActorId, u64)>")]
pub struct Context(Vec<(ActorId, u64)>);

impl TryFrom<Vec<(ActorId, u64)>> for Context {
    type Error = MalformedHistory;

    fn try_from(pairs: Vec<(ActorId, u64)>) -> Result<Self, Self::Error> {
        if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(MalformedHistory("actors not sorted and distinct"));
        }
        if pairs.iter().any(|&(_, n)| n == 0 || n > MAX_COUNTER) {
            return Err(MalformedHistory("counter out of range"));
        }
        Ok(Context(pairs))
    }
}

impl Context {
    /// A context from `(actor, counter)` pairs in any order; duplicates keep
    /// their largest counter, zero counters are dropped and counters past
    /// [`MAX_COUNTER`] are clamped to it.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (ActorId, u64)>) -> Context {
        let mut pairs: Vec<(ActorId, u64)> = pairs
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(actor, n)| (actor, n.min(MAX_COUNTER)))
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<Context, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn a_decoded_context_keeps_the_invariants_or_is_refused() {
        let a = r#"{"lifetime":1,"epoch":1}"#;
        let b = r#"{"lifetime":1,"epoch":2}"#;
        assert!(decode(&format!("[[{a},1],[{b},7]]")).is_ok());
        for bad in [
            format!("[[{a},1],[{a},1]]"),
            format!("[[{b},1],[{a},1]]"),
            format!("[[{a},0]]"),
            format!("[[{a},{}]]", MAX_COUNTER + 1),
            format!("[[{a},{}]]", u64::MAX),
        ] {
            assert!(decode(&bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn from_pairs_clamps_what_it_cannot_represent() {
        let actor = ActorId::new(1, 1);
        let context = Context::from_pairs([(actor, u64::MAX), (actor, 3)]);
        assert_eq!(context.pairs(), &[(actor, MAX_COUNTER)]);
    }
}
