//! Staleness measured on a quiet simulated cluster agrees with norn-model's
//! prediction for the same delays (`make pbs-check` runs every cell with
//! more probes and a 2-point bound), and R + W > N always reads the write.

use norn_model::pbs::{predict, Query};
use norn_sim::pbs::{measure, predicted_latencies, N};

const MEAN_DELAY_MS: f64 = 5.0;
const PROBES: u32 = 600;
/// About three standard errors of a share measured with `PROBES` probes.
const BOUND: f64 = 0.06;

#[test]
fn measured_staleness_agrees_with_the_prediction() {
    let latencies = predicted_latencies(MEAN_DELAY_MS);
    let all_percent = norn_sim::node::sim_config().data.read_repair_percent;
    for (r, w, t_ms) in [(1, 1, 0), (1, 2, 1), (2, 1, 5), (1, 1, 10)] {
        let query = Query {
            n: N,
            r,
            w,
            all_percent,
            trials: 100_000,
            seed: 3,
        };
        let predicted = predict(&latencies, query).expect("a prediction");
        let predicted = predicted
            .fresh
            .iter()
            .find(|f| f.t_ms == t_ms as f64)
            .expect("t is in the table")
            .probability;
        let measured = measure(r, w, t_ms, PROBES, MEAN_DELAY_MS, 3).expect("probes run");
        assert!(
            (measured - predicted).abs() <= BOUND,
            "R={r} W={w} t={t_ms}: measured {measured}, predicted {predicted}"
        );
    }
}

#[test]
fn overlapping_quorums_always_read_the_write() {
    for (r, w) in [(2, 2), (1, 3), (3, 1)] {
        let measured = measure(r, w, 0, PROBES, MEAN_DELAY_MS, 4).expect("probes run");
        assert_eq!(measured, 1.0, "R={r} W={w}");
    }
}
