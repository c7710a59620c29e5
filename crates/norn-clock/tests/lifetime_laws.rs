//! The dot rule of `Lifetime` under every way a replica forgets: copies
//! dropped after a handoff and received again, restarts, and restores of
//! an older copy. Random histories over three replicas of one key; the
//! laws: no dot is ever issued twice, and after every replica is merged
//! every written value is present unless a later write's context covered
//! it (riak_kv#679; Almeida et al., DAIS 2014, §3: each actor's events of a
//! key form a total order).

use std::collections::BTreeSet;

use norn_clock::{ActorId, Context, DvvSet, Lifetime};
use proptest::prelude::*;

const REPLICAS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    /// Replica `at` coordinates a write over the context a client read
    /// from `read_from` (or blind), and replicates it to `to`.
    Write {
        at: usize,
        read_from: Option<usize>,
        to: usize,
    },
    /// Replica `into` merges replica `from` (exchange, read repair, hint).
    Sync { from: usize, into: usize },
    /// A client reads replica `at`.
    Read { at: usize },
    /// Replica `at` hands its copy to `to` and drops it (a fallback after
    /// handoff, a transfer away, a reap).
    Drop { at: usize, to: usize },
    /// Replica `at` restarts; with `restore`, from the copy it held when
    /// it last restarted (a backup, a power cut's lost writes).
    Restart { at: usize, restore: bool },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let replica = 0..REPLICAS;
    let step = prop_oneof![
        4 => (replica.clone(), prop::option::of(replica.clone()), replica.clone())
            .prop_map(|(at, read_from, to)| Step::Write { at, read_from, to }),
        3 => (replica.clone(), replica.clone()).prop_map(|(from, into)| Step::Sync { from, into }),
        2 => replica.clone().prop_map(|at| Step::Read { at }),
        2 => (replica.clone(), replica.clone()).prop_map(|(at, to)| Step::Drop { at, to }),
        1 => (replica, any::<bool>()).prop_map(|(at, restore)| Step::Restart { at, restore }),
    ];
    prop::collection::vec(step, 0..60)
}

struct Replica {
    run: Lifetime,
    copy: Option<DvvSet<u32>>,
    snapshot: Option<DvvSet<u32>>,
}

#[derive(Default)]
struct History {
    /// Every dot issued, with the value written at it.
    dots: Vec<(ActorId, u64, u32)>,
    /// Every context a write was made over.
    contexts: Vec<Context>,
    /// How many dots were issued when a replica was last restored from an
    /// older copy: writes before may be gone with the rolled-back copy.
    dots_at_last_restore: usize,
}

fn merge_into(replica: &mut Replica, incoming: &DvvSet<u32>) {
    let merged = match &replica.copy {
        Some(local) => local.sync(incoming),
        None => incoming.clone(),
    };
    replica.copy = Some(
        replica
            .run
            .after_merge(replica.copy.as_ref(), incoming, merged),
    );
}

fn replay(steps: &[Step]) -> (Vec<Replica>, History) {
    let mut next_run = 1;
    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|_| {
            next_run += 1;
            Replica {
                run: Lifetime::new(next_run),
                copy: None,
                snapshot: None,
            }
        })
        .collect();
    let mut reads = vec![Context::default(); REPLICAS];
    let mut history = History::default();
    for (value, step) in (0u32..).zip(steps) {
        match *step {
            Step::Write { at, read_from, to } => {
                let context = read_from.map(|r| reads[r].clone()).unwrap_or_default();
                let local = replicas[at].copy.clone();
                let actor = replicas[at].run.actor_for(local.as_ref(), &context);
                let written = local.unwrap_or_default().update(&context, actor, value);
                history.dots.push((actor, written.counter(actor), value));
                history.contexts.push(context);
                replicas[at].copy = Some(written.clone());
                if to != at {
                    merge_into(&mut replicas[to], &written);
                }
            }
            Step::Sync { from, into } => {
                if let Some(incoming) = replicas[from].copy.clone() {
                    if from != into {
                        merge_into(&mut replicas[into], &incoming);
                    }
                }
            }
            Step::Read { at } => {
                reads[at] = replicas[at]
                    .copy
                    .as_ref()
                    .map(DvvSet::context)
                    .unwrap_or_default();
            }
            Step::Drop { at, to } => {
                if at != to {
                    if let Some(copy) = replicas[at].copy.take() {
                        merge_into(&mut replicas[to], &copy);
                    }
                }
            }
            Step::Restart { at, restore } => {
                next_run += 1;
                let replica = &mut replicas[at];
                replica.run = Lifetime::new(next_run);
                if restore {
                    replica.copy = replica.snapshot.clone();
                    history.dots_at_last_restore = history.dots.len();
                }
                replica.snapshot = replica.copy.clone();
            }
        }
    }
    (replicas, history)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_dot_is_issued_twice(steps in steps()) {
        let (_, history) = replay(&steps);
        let mut seen = BTreeSet::new();
        for (actor, counter, value) in &history.dots {
            prop_assert!(seen.insert((*actor, *counter)), "dot {actor}:{counter} reissued for {value}");
        }
    }

    #[test]
    fn every_write_after_the_last_restore_survives_unless_a_later_context_covered_it(
        steps in steps()
    ) {
        let (replicas, history) = replay(&steps);
        let all = replicas
            .iter()
            .filter_map(|r| r.copy.as_ref())
            .fold(DvvSet::new(), |acc, copy| acc.sync(copy));
        let present: BTreeSet<u32> = all.values().copied().collect();
        for (i, &(actor, counter, value)) in history.dots.iter().enumerate() {
            if i < history.dots_at_last_restore {
                continue;
            }
            let covered = history.contexts[i + 1..]
                .iter()
                .any(|c| c.counter(actor) >= counter);
            prop_assert!(
                covered || present.contains(&value),
                "value {value} at {actor}:{counter} lost; final {all:?}"
            );
        }
    }
}
