//! The history checker: after healing, hint delivery and anti-entropy,
//! every acknowledged element must be present; nothing may appear that no
//! client wrote; the replicas of each key must be byte-equal; and no key
//! may hold more siblings than there were concurrent writers of it: the
//! clients, plus each write that may stand beside another of the same
//! client ([`History::extra_writers`](crate::workload::History)). Blind
//! keys, whose every write adds a sibling, have their own rules: every
//! acknowledged value is present unless some delete read it; a value an
//! acknowledged delete covered never returns (no other write carries it);
//! a value whose write was refused ("nothing was written") never appears.
//! The last two hold for writes the network did not deliver twice: a write
//! delivered twice is coordinated twice, and a delete or refusal may meet
//! one of its two dots only.

use std::collections::BTreeSet;

use norn_clock::{Object, Sibling};
use norn_proto::codec;
use norn_storage::{DataKey, Storage};

use crate::node::SimNode;
use crate::workload::N;
use crate::workload::{
    blind_id, union_of, AddOutcome, BLIND_KEYS, BUCKET, REGISTER_KEYS, SET_KEYS,
};
use crate::world::Run;

/// The verdict on one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub acknowledged: usize,
    pub present: usize,
    pub lost: Vec<u32>,
    /// Acknowledged elements gone because every node that acknowledged
    /// them lost its data directory afterwards (not a failure).
    pub gone_with_their_replicas: usize,
    /// Acknowledged elements of keys that could not be read at the end.
    pub never_read: usize,
    /// Elements found that no client tried to add, or register values no
    /// client wrote.
    pub phantoms: Vec<String>,
    /// Keys whose primaries hold different bytes.
    pub diverged: Vec<String>,
    /// The most siblings seen on any key, read or stored.
    pub most_siblings: usize,
    /// A key held more siblings than its concurrent writers.
    pub too_many_siblings: bool,
    /// Acknowledged blind values, and those lost (absent, no delete read them).
    pub blind_acknowledged: usize,
    pub blind_lost: Vec<String>,
    /// Values an acknowledged delete covered that came back.
    pub resurrected: Vec<String>,
    /// Values of refused writes found stored.
    pub refused_but_stored: Vec<String>,
    pub converged_after_ms: Option<u64>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.blind_lost.is_empty()
            && self.resurrected.is_empty()
            && self.refused_but_stored.is_empty()
            && self.phantoms.is_empty()
            && self.diverged.is_empty()
            && !self.too_many_siblings
            && self.converged_after_ms.is_some()
    }
}

/// The ring the nodes hold (the newest among them).
fn ring_of(nodes: &[SimNode]) -> std::sync::Arc<norn_ring::Ring> {
    nodes
        .iter()
        .filter_map(SimNode::ring)
        .max_by_key(|ring| ring.version())
        .expect("the nodes hold a ring")
}

fn data_key(ring: &norn_ring::Ring, key: &str) -> DataKey {
    DataKey::new(
        ring.partition_of_key(BUCKET, key.as_bytes()),
        BUCKET,
        key.as_bytes(),
    )
    .expect("a valid key")
}

/// The workload keys whose N primaries do not hold byte-equal records.
pub fn replica_differences(nodes: &[SimNode]) -> Vec<String> {
    let mut diverged = Vec::new();
    for key in SET_KEYS
        .iter()
        .chain(REGISTER_KEYS.iter())
        .chain(BLIND_KEYS.iter())
    {
        let ring = ring_of(nodes);
        let data_key = data_key(&ring, key);
        let list = ring.preference_list(data_key.partition, usize::from(N));
        let copies: BTreeSet<Option<Vec<u8>>> = list
            .primaries()
            .iter()
            .map(|id| {
                let node = &nodes[id.0 as usize - 1];
                node.store.get(&data_key).ok().flatten().map(|d| d.value)
            })
            .collect();
        if copies.len() > 1 {
            diverged.push((*key).to_string());
        }
    }
    diverged
}

/// The final object of `key`, as its first primary holds it.
fn final_object(nodes: &[SimNode], key: &str) -> Result<Option<Object>, String> {
    let ring = ring_of(nodes);
    let data_key = data_key(&ring, key);
    let list = ring.preference_list(data_key.partition, usize::from(N));
    let first = &nodes[list.primaries()[0].0 as usize - 1];
    match first.store.get(&data_key) {
        Ok(Some(datum)) => codec::decode::<Object>(&datum.value)
            .map(Some)
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks a finished run.
pub fn check(run: &Run, clients: usize) -> Verdict {
    let history = &run.history;
    let mut verdict = Verdict {
        converged_after_ms: run.converged_after_ms,
        diverged: replica_differences(&run.nodes),
        ..Verdict::default()
    };
    check_blind(run, &mut verdict);
    let mut note_siblings = |key: &str, count: usize| {
        let writers = clients + history.extra_writers.get(key).copied().unwrap_or(0);
        verdict.most_siblings = verdict.most_siblings.max(count);
        verdict.too_many_siblings |= count > writers;
    };
    for (key, count) in &history.most_siblings {
        if !BLIND_KEYS.contains(&key.as_str()) {
            note_siblings(key, *count);
        }
    }
    for key in SET_KEYS {
        let acknowledged: Vec<u32> = history
            .elements
            .iter()
            .filter(|(_, (k, outcome))| k == key && *outcome == AddOutcome::Acknowledged)
            .map(|(e, _)| *e)
            .collect();
        verdict.acknowledged += acknowledged.len();
        let object = match final_object(&run.nodes, key) {
            Ok(object) => object,
            Err(_) => {
                verdict.never_read += acknowledged.len();
                continue;
            }
        };
        let siblings: Vec<Sibling> = object
            .as_ref()
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default();
        note_siblings(key, siblings.len());
        let found = union_of(&siblings);
        for element in acknowledged {
            if found.contains(&element) {
                verdict.present += 1;
            } else if history.lost_with_its_replicas(&format!("e{element}")) {
                verdict.gone_with_their_replicas += 1;
            } else {
                verdict.lost.push(element);
            }
        }
        for element in &found {
            if !history.elements.contains_key(element) {
                verdict.phantoms.push(format!("{key}: element {element}"));
            }
        }
    }
    for key in REGISTER_KEYS {
        if let Ok(Some(object)) = final_object(&run.nodes, key) {
            note_siblings(key, object.value_count());
            for value in object.live_values() {
                if !history.register_values.contains(value) {
                    verdict
                        .phantoms
                        .push(format!("{key}: value {}", value.escape_ascii()));
                }
            }
        }
    }
    verdict
}

/// The rules of the blind keys (see the module's doc).
fn check_blind(run: &Run, verdict: &mut Verdict) {
    let history = &run.history;
    for key in BLIND_KEYS {
        let Ok(object) = final_object(&run.nodes, key) else {
            continue;
        };
        let present: BTreeSet<String> = object
            .iter()
            .flat_map(|o| o.live_values())
            .map(blind_id)
            .collect();
        for (id, (k, outcome)) in &history.blind_values {
            if k != key {
                continue;
            }
            if *outcome == AddOutcome::Acknowledged {
                verdict.blind_acknowledged += 1;
                let excused = history.delete_attempted_over.contains(id)
                    || history.lost_with_its_replicas(id);
                if !present.contains(id) && !excused {
                    verdict.blind_lost.push(id.clone());
                }
            }
        }
        for id in &present {
            // A write delivered twice got two dots; a delete may have seen
            // only one of them.
            let deleted = history
                .deleted
                .get(id)
                .is_some_and(|deletes| !history.may_return(deletes));
            if deleted && !history.duplicated_values.contains(id) {
                verdict.resurrected.push(format!("{key}: {id}"));
            }
            if history.refused_values.contains(id) && !history.duplicated_values.contains(id) {
                verdict.refused_but_stored.push(format!("{key}: {id}"));
            }
            if !history.blind_values.contains_key(id) {
                verdict.phantoms.push(format!("{key}: value {id}"));
            }
        }
    }
}
