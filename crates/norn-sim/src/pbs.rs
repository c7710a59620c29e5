//! Staleness measured in the simulator, beside norn-model's prediction
//! (`make pbs-check`). A quiet 3-node cluster ([`World::quiet`]: no
//! faults, message delays of a set distribution) takes probes, each a
//! write of a fresh key at W through a random node and, `t` ms after the
//! write's answer, a read at R through a random node; the share of reads
//! that return the write is set beside the PBS Monte Carlo for the same
//! delays: the remote WARS delays are the network's, the coordinator's own
//! copy has every delay zero (the simulated core serves at once), and
//! `data.read_repair_percent` of reads ask every replica.

use norn_clock::Sibling;
use norn_model::pbs::{self, Latencies, Query, Wars};
use norn_model::Distribution;
use norn_proto::{QuorumOptions, Request, Response};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::world::World;

/// Nodes and replicas of the check.
pub const N: u8 = 3;

/// The (R, W) the check covers.
pub const QUORUMS: [(u8, u8); 4] = [(1, 1), (1, 2), (2, 1), (2, 2)];

/// One cell of the check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub r: u8,
    pub w: u8,
    pub t_ms: f64,
    pub measured: f64,
    pub predicted: f64,
}

/// The delays [`World::quiet`] gives messages between nodes, `1 +
/// floor(x)` ms with x exponential of mean `mean_ms`, as a histogram (its
/// buckets past a probability of 1e-12 left out).
pub fn network_delays(mean_ms: f64) -> Distribution {
    let stay = (-1.0 / mean_ms).exp();
    let mut buckets = Vec::new();
    let mut p = 1.0 - stay;
    let mut ms = 1.0;
    while p > 1e-12 {
        buckets.push((ms, (p * 1e12).round() as u64));
        p *= stay;
        ms += 1.0;
    }
    Distribution::Measured { buckets }
}

/// The prediction for the simulated cluster's delays.
pub fn predicted_latencies(mean_delay_ms: f64) -> Latencies {
    let network = network_delays(mean_delay_ms);
    let instant = Distribution::Constant { ms: 0.0 };
    Latencies {
        replicas: vec![Wars {
            w: network.clone(),
            a: network.clone(),
            r: network.clone(),
            s: network,
        }],
        local: Some(Wars {
            w: instant.clone(),
            a: instant.clone(),
            r: instant.clone(),
            s: instant,
        }),
    }
}

fn options(r: u8, w: u8) -> QuorumOptions {
    QuorumOptions {
        n: Some(N),
        r: Some(r),
        w: Some(w),
        ..QuorumOptions::default()
    }
}

/// The share of `probes` reads at R, each `t_ms` after a write at W of a
/// fresh key was answered, that return that write.
pub fn measure(
    r: u8,
    w: u8,
    t_ms: u64,
    probes: u32,
    mean_delay_ms: f64,
    seed: u64,
) -> Result<f64, String> {
    let mut world = World::quiet(seed, usize::from(N), mean_delay_ms);
    // Gossip sees every node up.
    world.advance(3_000);
    let mut rng = SmallRng::seed_from_u64(seed.rotate_left(17));
    let mut fresh = 0u32;
    for probe in 0..probes {
        let key = format!("probe-{probe}").into_bytes();
        let value = format!("value-{probe}").into_bytes();
        let put = Request::Put {
            bucket: b"pbs".to_vec(),
            key: key.clone(),
            value: Some(value.clone()),
            context: None,
            options: options(r, w),
            timeout_ms: Some(1_000),
            forwarded: false,
        };
        match world.ask(rng.gen_range(0..usize::from(N)), put, 2_000) {
            Some(Response::Written(_)) => {}
            other => return Err(format!("probe {probe}: the write was answered {other:?}")),
        }
        world.advance(t_ms);
        let get = Request::Get {
            bucket: b"pbs".to_vec(),
            key,
            options: options(r, w),
            timeout_ms: Some(1_000),
        };
        match world.ask(rng.gen_range(0..usize::from(N)), get, 2_000) {
            Some(Response::Value(reply)) => {
                if reply.siblings.contains(&Sibling::Value(value)) {
                    fresh += 1;
                }
            }
            other => return Err(format!("probe {probe}: the read was answered {other:?}")),
        }
    }
    Ok(f64::from(fresh) / f64::from(probes))
}

/// Every cell of the check: each (R, W) of [`QUORUMS`] at each t of
/// [`pbs::T_MS`], measured with `probes` probes and predicted with
/// 200,000 trials.
pub fn check(probes: u32, mean_delay_ms: f64, seed: u64) -> Result<Vec<Cell>, String> {
    let latencies = predicted_latencies(mean_delay_ms);
    let all_percent = crate::node::sim_config().data.read_repair_percent;
    let mut cells = Vec::new();
    for (r, w) in QUORUMS {
        let query = Query {
            n: N,
            r,
            w,
            all_percent,
            trials: 200_000,
            seed,
        };
        let predicted = pbs::predict(&latencies, query)?;
        for fresh in &predicted.fresh {
            let measured = measure(r, w, fresh.t_ms as u64, probes, mean_delay_ms, seed)?;
            cells.push(Cell {
                r,
                w,
                t_ms: fresh.t_ms,
                measured,
                predicted: fresh.probability,
            });
        }
    }
    Ok(cells)
}
