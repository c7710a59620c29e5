//! Quorum availability measured in the simulator, beside norn-model's
//! prediction (`make availability-check`).
//!
//! A quiet cluster of [`NODES`] nodes ([`World::quiet`]) goes through
//! trials. Each trial draws every node up with probability `up`,
//! independently, crashes and restarts nodes to match, and waits
//! [`SETTLE_MS`] for the failure detector to see the change. It then sends
//! one probe per [`CASES`] entry, a read or a write of a fresh key, to a
//! node picked at random among those up (a client that fails over to the
//! next address). A probe counts as available when it is answered with a
//! value or an acknowledgement; a trial with every node down counts every
//! probe unavailable. The shares are set beside
//! [`norn_model::durability::quorum_availability`] for the same `up`.

use norn_model::durability::quorum_availability;
use norn_proto::{QuorumOptions, Request, Response};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::world::World;

/// Nodes of the simulated cluster.
pub const NODES: usize = 5;
/// Replicas per key.
pub const N: u8 = 3;
/// Virtual time after a trial's crashes and restarts before its probes:
/// the failure detector suspects a silent peer after about 3 s.
pub const SETTLE_MS: u64 = 8_000;
/// Mean delay of a message between nodes.
const MEAN_DELAY_MS: f64 = 1.0;

/// What a probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

/// One kind of probe: a read at R = `k` (PR = `primaries`) or a write at
/// W = `k` (PW = `primaries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub op: Op,
    pub k: u8,
    pub primaries: u8,
}

/// The probes of every trial: sloppy and strict quorums of 1 to 3.
pub const CASES: [Case; 6] = [
    Case {
        op: Op::Write,
        k: 1,
        primaries: 0,
    },
    Case {
        op: Op::Write,
        k: 2,
        primaries: 0,
    },
    Case {
        op: Op::Write,
        k: 2,
        primaries: 2,
    },
    Case {
        op: Op::Write,
        k: 3,
        primaries: 0,
    },
    Case {
        op: Op::Read,
        k: 2,
        primaries: 0,
    },
    Case {
        op: Op::Read,
        k: 2,
        primaries: 2,
    },
];

/// One case's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub case: Case,
    pub measured: f64,
    pub predicted: f64,
}

fn request(case: Case, key: Vec<u8>) -> Request {
    let bucket = b"availability".to_vec();
    let mut options = QuorumOptions {
        n: Some(N),
        ..QuorumOptions::default()
    };
    match case.op {
        Op::Write => {
            options.w = Some(case.k);
            options.pw = Some(case.primaries);
            Request::Put {
                bucket,
                key,
                value: Some(b"probe".to_vec()),
                context: None,
                options,
                timeout_ms: Some(1_000),
                forwarded: false,
            }
        }
        Op::Read => {
            options.r = Some(case.k);
            options.pr = Some(case.primaries);
            Request::Get {
                bucket,
                key,
                options,
                timeout_ms: Some(1_000),
            }
        }
    }
}

fn available(answer: Option<Response>) -> bool {
    matches!(answer, Some(Response::Written(_) | Response::Value(_)))
}

/// The share of available probes of each case over `trials` trials with
/// every node up with probability `up`.
pub fn measure(trials: u32, up: f64, seed: u64) -> Vec<(Case, f64)> {
    let mut world = World::quiet(seed, NODES, MEAN_DELAY_MS);
    world.advance(3_000);
    let mut rng = SmallRng::seed_from_u64(seed.rotate_left(23));
    let mut successes = [0u32; CASES.len()];
    for trial in 0..trials {
        for node in 0..NODES {
            if rng.gen_bool(up) {
                world.restart(node);
            } else {
                world.crash(node);
            }
        }
        world.advance(SETTLE_MS);
        let up_nodes: Vec<usize> = (0..NODES).filter(|&n| world.is_up(n)).collect();
        if up_nodes.is_empty() {
            continue;
        }
        for (i, case) in CASES.iter().enumerate() {
            let key = format!("trial-{trial}-{i}").into_bytes();
            let coordinator = up_nodes[rng.gen_range(0..up_nodes.len())];
            if available(world.ask(coordinator, request(*case, key), 2_000)) {
                successes[i] += 1;
            }
        }
    }
    CASES
        .iter()
        .zip(successes)
        .map(|(case, s)| (*case, f64::from(s) / f64::from(trials.max(1))))
        .collect()
}

/// Every case measured over `trials` trials beside its prediction.
pub fn check(trials: u32, up: f64, seed: u64) -> Result<Vec<Row>, String> {
    let nodes = NODES as u32;
    measure(trials, up, seed)
        .into_iter()
        .map(|(case, measured)| {
            let rows = quorum_availability(N, nodes, up, case.primaries)?;
            let predicted = rows[usize::from(case.k) - 1].sloppy;
            Ok(Row {
                case,
                measured,
                predicted,
            })
        })
        .collect()
}
