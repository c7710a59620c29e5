//! WARS delays from what a live cluster measured (`AdminLatencies`).
//!
//! Nodes time round trips, not one-way delays: their clocks are not
//! synchronized. As the PBS paper does, a round trip is split with the
//! replica's own service time: a write reaches the replica and is applied
//! after `W = s + (rtt - s) / 2`, and its acknowledgement takes
//! `A = (rtt - s) / 2` back, where `s` is the replica's time from the
//! request's arrival to its answer; reads the same way (`R`, `S`). The
//! network is taken as symmetric, a round trip and the service time it
//! contains are drawn independently (from every node's round trips to its
//! peers, and every node's service times, pooled), and `s` is capped at
//! the round trip; where no service time was measured (a node that only
//! coordinated), each round trip is split in halves. Remote replicas are treated alike. When coordinators
//! hold a copy (a cluster of N nodes: every node is a replica of every
//! key), their own copy takes the write and answers reads after the
//! service time alone; otherwise every replica is taken as remote, which
//! errs towards staleness.

use norn_proto::{LatencyBuckets, NodeLatencies};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::distribution::{Distribution, Sampler};
use crate::pbs::{Latencies, Wars};

/// Draws per derived delay distribution.
pub const DRAWS: usize = 20_000;

/// How many samples the live delays rest on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Samples {
    pub write_round_trips: u64,
    pub write_services: u64,
    pub read_round_trips: u64,
    pub read_services: u64,
}

fn pooled<'a>(histograms: impl Iterator<Item = &'a LatencyBuckets>) -> Distribution {
    Distribution::Measured {
        buckets: histograms
            .flat_map(|h| h.buckets.iter())
            .map(|&(micros, count)| (micros as f64 / 1000.0, count))
            .collect(),
    }
}

/// The request and response delays of one kind (write or read), drawn
/// from `round_trip` and `service`.
fn split(round_trip: &Sampler, service: &Sampler, seed: u64) -> (Distribution, Distribution) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut there, mut back) = (Vec::with_capacity(DRAWS), Vec::with_capacity(DRAWS));
    for _ in 0..DRAWS {
        let rtt = round_trip.sample(&mut rng);
        let s = service.sample(&mut rng).min(rtt);
        there.push((s + (rtt - s) / 2.0, 1));
        back.push(((rtt - s) / 2.0, 1));
    }
    (
        Distribution::Measured { buckets: there },
        Distribution::Measured { buckets: back },
    )
}

/// The WARS delays of `nodes`' measurements, and what they rest on; an
/// error when a kind has no samples yet. `coordinators_hold_copies`: see
/// the module docs.
pub fn wars(
    nodes: &[NodeLatencies],
    coordinators_hold_copies: bool,
    seed: u64,
) -> Result<(Latencies, Samples), String> {
    let write_rtt = pooled(
        nodes
            .iter()
            .flat_map(|n| n.peers.iter().map(|p| &p.write_round_trip)),
    );
    let read_rtt = pooled(
        nodes
            .iter()
            .flat_map(|n| n.peers.iter().map(|p| &p.read_round_trip)),
    );
    let write_service = pooled(nodes.iter().map(|n| &n.write_service));
    let read_service = pooled(nodes.iter().map(|n| &n.read_service));
    let samples = Samples {
        write_round_trips: write_rtt.samples().unwrap_or(0),
        write_services: write_service.samples().unwrap_or(0),
        read_round_trips: read_rtt.samples().unwrap_or(0),
        read_services: read_service.samples().unwrap_or(0),
    };
    let sampler = |d: &Distribution, what: &str| {
        d.sampler()
            .map_err(|_| format!("no {what} measured yet: the cluster needs replica traffic first"))
    };
    // No service time measured (the nodes asked only coordinated): each
    // round trip is split in halves.
    let instant = Distribution::Constant { ms: 0.0 };
    let or_instant = |d: Distribution| {
        if d.samples() == Some(0) {
            instant.clone()
        } else {
            d
        }
    };
    let (write_service, read_service) = (or_instant(write_service), or_instant(read_service));
    let write_service_sampler = sampler(&write_service, "replica write service times")?;
    let read_service_sampler = sampler(&read_service, "replica read service times")?;
    let (w, a) = split(
        &sampler(&write_rtt, "replica write round trips")?,
        &write_service_sampler,
        seed,
    );
    let (r, s) = split(
        &sampler(&read_rtt, "replica read round trips")?,
        &read_service_sampler,
        seed.wrapping_add(1),
    );
    let local = coordinators_hold_copies.then(|| Wars {
        w: write_service,
        a: instant.clone(),
        r: read_service,
        s: instant,
    });
    Ok((
        Latencies {
            replicas: vec![Wars { w, a, r, s }],
            local,
        },
        samples,
    ))
}

#[cfg(test)]
mod tests {
    use norn_proto::PeerLatencies;
    use norn_ring::NodeId;

    use super::*;

    fn constant(micros: u64, count: u64) -> LatencyBuckets {
        LatencyBuckets {
            buckets: vec![(micros, count)],
        }
    }

    #[test]
    fn a_round_trip_splits_around_the_service_time() {
        let node = NodeLatencies {
            node: NodeId(1),
            write_service: constant(200, 5),
            read_service: constant(100, 5),
            peers: vec![PeerLatencies {
                peer: NodeId(2),
                write_round_trip: constant(1_000, 7),
                read_round_trip: constant(500, 7),
            }],
        };
        let (latencies, samples) = wars(&[node], false, 1).expect("delays");
        assert_eq!(samples.write_round_trips, 7);
        assert_eq!(samples.read_services, 5);
        let wars = &latencies.replicas[0];
        let only = |d: &Distribution| match d {
            Distribution::Measured { buckets } => buckets[0].0,
            other => panic!("{other:?}"),
        };
        // rtt 1 ms, service 0.2 ms: W = 0.2 + 0.4, A = 0.4.
        assert!((only(&wars.w) - 0.6).abs() < 1e-9);
        assert!((only(&wars.a) - 0.4).abs() < 1e-9);
        assert!((only(&wars.r) - 0.3).abs() < 1e-9);
        assert!((only(&wars.s) - 0.2).abs() < 1e-9);
    }

    #[test]
    fn without_service_times_a_round_trip_splits_in_halves() {
        let node = NodeLatencies {
            node: NodeId(1),
            write_service: LatencyBuckets::default(),
            read_service: LatencyBuckets::default(),
            peers: vec![PeerLatencies {
                peer: NodeId(2),
                write_round_trip: constant(1_000, 3),
                read_round_trip: constant(600, 3),
            }],
        };
        let (latencies, samples) = wars(&[node], false, 1).expect("delays");
        assert_eq!(samples.write_services, 0);
        let wars = &latencies.replicas[0];
        for (d, half) in [
            (&wars.w, 0.5),
            (&wars.a, 0.5),
            (&wars.r, 0.3),
            (&wars.s, 0.3),
        ] {
            let Distribution::Measured { buckets } = d else {
                panic!("{d:?}");
            };
            assert!(buckets.iter().all(|b| (b.0 - half).abs() < 1e-9), "{d:?}");
        }
    }

    #[test]
    fn no_samples_is_an_error_that_says_so() {
        let node = NodeLatencies {
            node: NodeId(1),
            write_service: LatencyBuckets::default(),
            read_service: LatencyBuckets::default(),
            peers: Vec::new(),
        };
        let error = wars(&[node], true, 1).expect_err("no samples");
        assert!(error.contains("measured yet"), "{error}");
    }
}
