//! The dotted version vector set.
//!
//! A set is a list of entries, one per actor, sorted by actor. An entry
//! `(actor, counter, values)` says that `counter` events of `actor` are
//! known, and that `values[i]` is the still-current value written at dot
//! `(actor, counter - i)`; older dots of that actor were superseded. Values
//! outside any entry are anonymous: a client's value not yet given a dot.
//!
//! Laws (tested in `tests/dvvset_laws.rs`): [`DvvSet::sync`] is idempotent,
//! commutative and associative; [`DvvSet::update`] with a context that covers
//! every value leaves one value; with a stale context it keeps the values the
//! context does not cover.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::context::{ActorId, Context, MalformedHistory, MAX_COUNTER};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Entry<V> {
    actor: ActorId,
    counter: u64,
    /// Newest first: `values[i]` was written at dot `(actor, counter - i)`.
    values: Vec<V>,
}

/// The stored form; [`DvvSet::try_from`] checks its invariants on decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DvvSetData<V> {
    entries: Vec<Entry<V>>,
    anonymous: Vec<V>,
}

/// Concurrent values of one key with the causal history that covers them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    try_from = "DvvSetData<V>",
    into = "DvvSetData<V>",
    bound(
        serialize = "V: Serialize + Clone",
        deserialize = "V: Deserialize<'de> + Ord"
    )
)]
pub struct DvvSet<V> {
    entries: Vec<Entry<V>>,
    anonymous: Vec<V>,
}

impl<V: Ord> TryFrom<DvvSetData<V>> for DvvSet<V> {
    type Error = MalformedHistory;

    /// Refuses a set that breaks an invariant [`DvvSet`]'s own operations
    /// keep: entries sorted by actor with each actor once, counters in
    /// `1..=MAX_COUNTER`, no more values than events, anonymous values
    /// sorted and distinct.
    fn try_from(data: DvvSetData<V>) -> Result<Self, Self::Error> {
        if !data.entries.windows(2).all(|w| w[0].actor < w[1].actor) {
            return Err(MalformedHistory("entries not sorted by actor"));
        }
        if data
            .entries
            .iter()
            .any(|e| e.counter == 0 || e.counter > MAX_COUNTER)
        {
            return Err(MalformedHistory("counter out of range"));
        }
        if data
            .entries
            .iter()
            .any(|e| e.values.len() as u64 > e.counter)
        {
            return Err(MalformedHistory("more values than events"));
        }
        if !data.anonymous.windows(2).all(|w| w[0] < w[1]) {
            return Err(MalformedHistory("anonymous values not sorted and distinct"));
        }
        Ok(DvvSet {
            entries: data.entries,
            anonymous: data.anonymous,
        })
    }
}

impl<V> From<DvvSet<V>> for DvvSetData<V> {
    fn from(set: DvvSet<V>) -> Self {
        DvvSetData {
            entries: set.entries,
            anonymous: set.anonymous,
        }
    }
}

impl<V> DvvSet<V> {
    /// How many events of each actor this set knows, by actor.
    pub fn counters(&self) -> impl Iterator<Item = (ActorId, u64)> + '_ {
        self.entries.iter().map(|e| (e.actor, e.counter))
    }

    /// How many events of `actor` this set knows.
    pub fn counter(&self, actor: ActorId) -> u64 {
        self.entries
            .binary_search_by_key(&actor, |e| e.actor)
            .map_or(0, |i| self.entries[i].counter)
    }
}

impl<V> Default for DvvSet<V> {
    fn default() -> Self {
        DvvSet {
            entries: Vec::new(),
            anonymous: Vec::new(),
        }
    }
}

impl<V: Clone + Ord> DvvSet<V> {
    /// The empty set: no values, no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client's write: `value`, not yet dotted, over the history `context`.
    pub fn from_context(context: &Context, value: V) -> Self {
        DvvSet {
            entries: context
                .pairs()
                .iter()
                .map(|&(actor, counter)| Entry {
                    actor,
                    counter,
                    values: Vec::new(),
                })
                .collect(),
            anonymous: vec![value],
        }
    }

    /// Every current value: anonymous ones, then each actor's newest first.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.anonymous
            .iter()
            .chain(self.entries.iter().flat_map(|e| e.values.iter()))
    }

    /// Each dotted value with its dot `(actor, counter)`; anonymous values
    /// have none and are left out.
    pub fn dotted_values(&self) -> impl Iterator<Item = (ActorId, u64, &V)> {
        self.entries.iter().flat_map(|e| {
            e.values
                .iter()
                .enumerate()
                .map(move |(i, v)| (e.actor, e.counter - i as u64, v))
        })
    }

    /// How many concurrent values (siblings) there are.
    pub fn value_count(&self) -> usize {
        self.anonymous.len() + self.entries.iter().map(|e| e.values.len()).sum::<usize>()
    }

    /// The causal context to hand a client with these values.
    pub fn context(&self) -> Context {
        Context::from_pairs(self.counters())
    }

    /// This set, also knowing `counter` events of `actor` that hold no
    /// current value. A node records a fresh actor of its own this way
    /// when it finds it has lost some of its own history of the key, so
    /// that its next write opens that actor rather than continuing one
    /// whose dots it may have issued before (see [`crate::lifetime`]).
    pub fn with_events(&self, actor: ActorId, counter: u64) -> Self {
        let known = DvvSet {
            entries: vec![Entry {
                actor,
                counter: counter.clamp(1, MAX_COUNTER),
                values: Vec::new(),
            }],
            anonymous: Vec::new(),
        };
        self.sync(&known)
    }

    /// The server side of a write: `value` supersedes exactly what `context`
    /// covers, gets the next dot of `actor`, and every value `context` does
    /// not cover stays as a sibling.
    ///
    /// The caller guarantees that `actor` never issued that dot before and
    /// that its counter here and in `context` is below [`MAX_COUNTER`];
    /// [`crate::Lifetime::actor_for`] chooses such an actor.
    pub fn update(&self, context: &Context, actor: ActorId, value: V) -> Self {
        let history = DvvSet::from_context(context, value.clone());
        let DvvSet { entries, anonymous } = DvvSet {
            entries: history.entries,
            anonymous: Vec::new(),
        }
        .sync(self);
        DvvSet {
            entries: event(entries, actor, value),
            anonymous,
        }
    }

    /// Merges two replicas of one key: the result knows both histories and
    /// keeps each value that neither side has superseded.
    pub fn sync(&self, other: &Self) -> Self {
        let anonymous = if self.less(other) {
            other.anonymous.clone()
        } else if other.less(self) {
            self.anonymous.clone()
        } else {
            let mut both: Vec<V> = self
                .anonymous
                .iter()
                .chain(&other.anonymous)
                .cloned()
                .collect();
            both.sort_unstable();
            both.dedup();
            both
        };
        DvvSet {
            entries: sync_entries(&self.entries, &other.entries),
            anonymous,
        }
    }

    /// Whether `other`'s history strictly contains this one's.
    pub fn less(&self, other: &Self) -> bool {
        strictly_greater(&other.entries, &self.entries)
    }
}

/// Merges two entry lists sorted by actor.
fn sync_entries<V: Clone>(left: &[Entry<V>], right: &[Entry<V>]) -> Vec<Entry<V>> {
    let mut merged = Vec::with_capacity(left.len().max(right.len()));
    let (mut l, mut r) = (0, 0);
    while l < left.len() && r < right.len() {
        match left[l].actor.cmp(&right[r].actor) {
            Ordering::Less => {
                merged.push(left[l].clone());
                l += 1;
            }
            Ordering::Greater => {
                merged.push(right[r].clone());
                r += 1;
            }
            Ordering::Equal => {
                merged.push(merge_entry(&left[l], &right[r]));
                l += 1;
                r += 1;
            }
        }
    }
    merged.extend_from_slice(&left[l..]);
    merged.extend_from_slice(&right[r..]);
    merged
}

/// One actor's entry from two replicas: the larger counter, and only the
/// values whose dots neither side has superseded.
fn merge_entry<V: Clone>(a: &Entry<V>, b: &Entry<V>) -> Entry<V> {
    let (newer, older) = if a.counter >= b.counter {
        (a, b)
    } else {
        (b, a)
    };
    // The oldest dot still current on each side is `counter - len + 1`.
    let newer_floor = newer.counter - newer.values.len() as u64;
    let older_floor = older.counter - older.values.len() as u64;
    let keep = if newer_floor >= older_floor {
        newer.values.len()
    } else {
        (newer.counter - older_floor) as usize
    };
    Entry {
        actor: newer.actor,
        counter: newer.counter,
        values: newer.values[..keep].to_vec(),
    }
}

/// Adds the next dot of `actor` with `value`. Counters are at most
/// [`MAX_COUNTER`] (`u64::MAX >> 1`), so the increment cannot overflow.
fn event<V>(mut entries: Vec<Entry<V>>, actor: ActorId, value: V) -> Vec<Entry<V>> {
    match entries.binary_search_by_key(&actor, |e| e.actor) {
        Ok(i) => {
            debug_assert!(entries[i].counter < MAX_COUNTER, "{actor} is exhausted");
            entries[i].counter += 1;
            entries[i].values.insert(0, value);
        }
        Err(i) => entries.insert(
            i,
            Entry {
                actor,
                counter: 1,
                values: vec![value],
            },
        ),
    }
    entries
}

/// Whether the history of `a` contains that of `b` and is larger.
fn strictly_greater<V>(a: &[Entry<V>], b: &[Entry<V>]) -> bool {
    let mut strict = false;
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return strict,
            (Some(_), None) => return true,
            (None, Some(_)) => return false,
            (Some(x), Some(y)) => match x.actor.cmp(&y.actor) {
                Ordering::Equal => {
                    match x.counter.cmp(&y.counter) {
                        Ordering::Less => return false,
                        Ordering::Greater => strict = true,
                        Ordering::Equal => {}
                    }
                    i += 1;
                    j += 1;
                }
                Ordering::Less => {
                    strict = true;
                    i += 1;
                }
                Ordering::Greater => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoded_set_keeps_the_invariants_or_is_refused() {
        let entry = |lifetime: u64, counter: u64, values: &str| {
            format!(
                r#"{{"actor":{{"lifetime":{lifetime},"epoch":1}},"counter":{counter},"values":{values}}}"#
            )
        };
        let set =
            |entries: &[String]| format!(r#"{{"entries":[{}],"anonymous":[]}}"#, entries.join(","));
        let decode = |json: &str| serde_json::from_str::<DvvSet<u8>>(json);
        assert!(decode(&set(&[entry(1, 2, "[5]"), entry(2, 1, "[]")])).is_ok());
        for bad in [
            set(&[entry(2, 1, "[]"), entry(1, 1, "[]")]),
            set(&[entry(1, 1, "[]"), entry(1, 1, "[]")]),
            set(&[entry(1, 0, "[]")]),
            set(&[entry(1, MAX_COUNTER + 1, "[]")]),
            set(&[entry(1, 1, "[1,2]")]),
        ] {
            assert!(decode(&bad).is_err(), "{bad} was accepted");
        }
    }
}
