//! Laws of dotted version vector sets (Almeida et al., DAIS 2014, §4-§5),
//! over histories made by random writes and syncs between replicas.

use norn_clock::{ActorId, Context, DvvSet};
use proptest::prelude::*;

const REPLICAS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    /// Replica `at` coordinates a write whose context a client read from
    /// replica `read_from` (possibly long ago: contexts go stale).
    Write { at: usize, read_from: usize },
    /// Replica `into` merges replica `from`.
    Sync { from: usize, into: usize },
    /// A client reads replica `at` now; later writes use this context.
    Read { at: usize },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        (0..REPLICAS, 0..REPLICAS).prop_map(|(at, read_from)| Step::Write { at, read_from }),
        (0..REPLICAS, 0..REPLICAS).prop_map(|(from, into)| Step::Sync { from, into }),
        (0..REPLICAS).prop_map(|at| Step::Read { at }),
    ];
    prop::collection::vec(step, 0..40)
}

/// Replays `steps`, each write a fresh value; returns the replicas.
fn replay(steps: &[Step]) -> Vec<DvvSet<u32>> {
    let mut replicas = vec![DvvSet::new(); REPLICAS];
    let mut last_read = vec![Context::default(); REPLICAS];
    for (value, step) in (0u32..).zip(steps) {
        match *step {
            Step::Write { at, read_from } => {
                replicas[at] =
                    replicas[at].update(&last_read[read_from], ActorId::new(at as u64, 1), value);
            }
            Step::Sync { from, into } => replicas[into] = replicas[into].sync(&replicas[from]),
            Step::Read { at } => last_read[at] = replicas[at].context(),
        }
    }
    replicas
}

fn covered(context: &Context, actor: ActorId, counter: u64) -> bool {
    context.counter(actor) >= counter
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn sync_is_idempotent(steps in steps()) {
        for replica in replay(&steps) {
            prop_assert_eq!(replica.sync(&replica), replica);
        }
    }

    #[test]
    fn sync_is_commutative(steps in steps()) {
        let r = replay(&steps);
        prop_assert_eq!(r[0].sync(&r[1]), r[1].sync(&r[0]));
    }

    #[test]
    fn sync_is_associative(steps in steps()) {
        let r = replay(&steps);
        prop_assert_eq!(r[0].sync(&r[1]).sync(&r[2]), r[0].sync(&r[1].sync(&r[2])));
    }

    /// Sync loses nothing: every value of either side that the other side's
    /// history does not cover survives.
    #[test]
    fn sync_keeps_what_the_other_side_has_not_seen(steps in steps()) {
        let r = replay(&steps);
        let merged = r[0].sync(&r[1]);
        for (side, other) in [(&r[0], &r[1]), (&r[1], &r[0])] {
            let other_context = other.context();
            for (actor, counter, value) in side.dotted_values() {
                if !covered(&other_context, actor, counter) {
                    prop_assert!(merged.dotted_values().any(|(a, c, v)| (a, c, v) == (actor, counter, value)),
                        "dot ({:?}, {}) lost", actor, counter);
                }
            }
        }
    }

    /// A write whose context covers every value leaves exactly one value.
    #[test]
    fn write_with_full_context_leaves_one_value(steps in steps(), at in 0..REPLICAS) {
        let replica = &replay(&steps)[at];
        let written = replica.update(&replica.context(), ActorId::new(99, 1), u32::MAX);
        prop_assert_eq!(written.values().collect::<Vec<_>>(), vec![&u32::MAX]);
    }

    /// No lost update: a write with a stale context supersedes exactly the
    /// values that context covers, and keeps the concurrent ones.
    #[test]
    fn write_with_stale_context_keeps_concurrent_values(
        before in steps(), after in steps(), at in 0..REPLICAS,
    ) {
        let stale = replay(&before)[at].context();
        let replica = &replay(&[before, after].concat())[at];
        let written = replica.update(&stale, ActorId::new(99, 1), u32::MAX);
        let mut expected: Vec<u32> = replica
            .dotted_values()
            .filter(|(actor, counter, _)| !covered(&stale, *actor, *counter))
            .map(|(_, _, v)| *v)
            .collect();
        expected.push(u32::MAX);
        let mut got: Vec<u32> = written.values().copied().collect();
        expected.sort_unstable();
        got.sort_unstable();
        prop_assert_eq!(got, expected);
    }

    /// k clients, each cycling read-then-write with the context of its own
    /// last read, never leave more than k siblings (DVV's bound; version
    /// vectors with per-server ids and no dots do not have it). The schedule
    /// interleaves the clients' steps arbitrarily.
    #[test]
    fn k_interleaved_writers_leave_at_most_k_siblings(
        k in 1usize..=10,
        schedule in prop::collection::vec(any::<prop::sample::Index>(), 1..300),
    ) {
        let server = ActorId::new(1, 1);
        let mut object = DvvSet::new();
        let mut last_read: Vec<Option<Context>> = vec![None; k];
        for (value, client) in (0u32..).zip(schedule) {
            let client = client.index(k);
            match last_read[client].take() {
                Some(context) => {
                    object = object.update(&context, server, value);
                    prop_assert!(object.value_count() <= k,
                        "{} siblings for {} writers", object.value_count(), k);
                }
                None => last_read[client] = Some(object.context()),
            }
        }
    }

    /// Decoding checks the invariants; a set survives encoding.
    #[test]
    fn sets_round_trip_through_serde(steps in steps()) {
        for replica in replay(&steps) {
            let json = serde_json::to_string(&replica).expect("encode");
            prop_assert_eq!(serde_json::from_str::<DvvSet<u32>>(&json).expect("decode"), replica);
        }
    }
}

#[test]
fn decode_refuses_more_values_than_events() {
    let bad = r#"{"entries":[{"actor":1,"counter":1,"values":[1,2]}],"anonymous":[]}"#;
    assert!(serde_json::from_str::<DvvSet<u32>>(bad).is_err());
    let unsorted = r#"{"entries":[{"actor":2,"counter":1,"values":[]},{"actor":1,"counter":1,"values":[]}],"anonymous":[]}"#;
    assert!(serde_json::from_str::<DvvSet<u32>>(unsorted).is_err());
}

#[test]
fn concurrent_writes_become_siblings_and_a_merged_write_resolves_them() {
    let a = ActorId::new(1, 1);
    let empty = Context::default();
    let first = DvvSet::new().update(&empty, a, "first");
    let read = first.context();
    let left = first.update(&read, a, "left");
    let both = left.update(&read, a, "right");
    let mut siblings: Vec<_> = both.values().copied().collect();
    siblings.sort_unstable();
    assert_eq!(siblings, ["left", "right"]);
    let resolved = both.update(&both.context(), a, "merged");
    assert_eq!(resolved.values().copied().collect::<Vec<_>>(), ["merged"]);
}
