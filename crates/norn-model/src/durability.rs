//! How likely a key is lost, and how often a quorum can be formed.
//!
//! **Replica loss** is a continuous-time Markov chain over the number of
//! live replicas of a key. Each live replica is lost (its node's data gone
//! for good: a disk, a node replaced) at rate λ, independently; each lost
//! replica is re-created at rate μ = 1 / repair time, independently of the
//! others (norn's transfers and anti-entropy copy from any live replica, to
//! several targets at once). The key is lost when no replica is left. The
//! mean time to data loss (MTTDL) is the chain's expected time to
//! absorption from N live replicas, solved exactly; the probability of
//! loss within a year is taken as `1 - exp(-1 / MTTDL)`, which holds when
//! repair is much faster than failure (the chain then forgets its start).
//!
//! **Any key of the cluster**: the same chain over the cluster's M nodes,
//! counting failed nodes, is absorbed when N nodes that replicate a common
//! partition are down together. With P distinct replica sets among the
//! C(M, N) sets of N nodes, the last failure hits a shared set with
//! probability `P / C(M, N)`; otherwise the chain is taken as staying put
//! (a slight overestimate of the time to loss for small M).
//!
//! **Quorum availability**: each node is up with probability a,
//! independently. A strict quorum needs k of the key's N primaries; a
//! sloppy write (hinted handoff) needs W of all M nodes, PW of them
//! primaries, as norn takes fallbacks from the whole preference list.

use serde::{Deserialize, Serialize};

use crate::pbs::binomial;

/// Hours in a year, for rates per year and repair times in hours.
pub const HOURS_PER_YEAR: f64 = 24.0 * 365.25;

/// What the replica-loss model is asked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossQuery {
    pub n: u8,
    pub nodes: u32,
    /// Failures per node and year that lose its data for good.
    pub failures_per_year: f64,
    /// Hours to re-create one lost replica.
    pub repair_hours: f64,
    /// Distinct sets of N nodes that replicate some partition.
    pub replica_sets: u64,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossReport {
    pub query: LossQuery,
    pub key_mttdl_years: f64,
    pub key_loss_per_year: f64,
    pub cluster_mttdl_years: f64,
    pub any_key_loss_per_year: f64,
}

/// Expected time to absorption from the top state of a birth-death chain
/// whose transient states are `0..len`: from state `i`, `up[i]` is the rate
/// to `i + 1` (0 for the top) and `down[i]` to `i - 1` (from state 0, to
/// the absorbing state). Solves the tridiagonal system exactly.
fn time_to_absorption(up: &[f64], down: &[f64]) -> f64 {
    // T[i] = (1 + up[i] T[i+1] + down[i] T[i-1]) / (up[i] + down[i]), with
    // T[-1] = 0. Write T[i] = x[i] + y[i] T[i+1] (forward), then back.
    let len = up.len();
    let (mut x, mut y) = (vec![0.0; len], vec![0.0; len]);
    for i in 0..len {
        let (prev_x, prev_y) = if i == 0 {
            (0.0, 0.0)
        } else {
            (x[i - 1], y[i - 1])
        };
        let denominator = up[i] + down[i] - down[i] * prev_y;
        x[i] = (1.0 + down[i] * prev_x) / denominator;
        y[i] = up[i] / denominator;
    }
    // The top state has up = 0, so T[top] = x[top].
    x[len - 1]
}

fn check(query: &LossQuery) -> Result<(), String> {
    let ok = |v: f64| v.is_finite() && v > 0.0;
    if query.n == 0 || u32::from(query.n) > query.nodes {
        return Err(format!(
            "need 1 <= N <= nodes; got N={} with {} nodes",
            query.n, query.nodes
        ));
    }
    if !ok(query.failures_per_year) || !ok(query.repair_hours) {
        return Err("the failure rate and the repair time must be positive".into());
    }
    if query.replica_sets == 0 {
        return Err("the ring must hold at least one replica set".into());
    }
    Ok(())
}

/// The replica-loss model (see the module docs).
pub fn loss(query: LossQuery) -> Result<LossReport, String> {
    check(&query)?;
    let lambda = query.failures_per_year;
    let mu = HOURS_PER_YEAR / query.repair_hours;
    let n = usize::from(query.n);
    // One key: state i holds i + 1 live replicas.
    let up: Vec<f64> = (1..=n).map(|live| (n - live) as f64 * mu).collect();
    let down: Vec<f64> = (1..=n).map(|live| live as f64 * lambda).collect();
    let key_mttdl = time_to_absorption(&up, &down);
    // The cluster: state i has N - 1 - i failed nodes, so the top state
    // has none and state 0 has N - 1; the next failure loses data with the
    // chance that the N failed nodes share a partition.
    let m = f64::from(query.nodes);
    let shared = (query.replica_sets as f64 / binomial(query.nodes, u32::from(query.n))).min(1.0);
    let up: Vec<f64> = (0..n).map(|i| (n - 1 - i) as f64 * mu).collect();
    let down: Vec<f64> = (0..n)
        .map(|i| {
            let failed = (n - 1 - i) as f64;
            let rate = (m - failed) * lambda;
            if i == 0 {
                rate * shared
            } else {
                rate
            }
        })
        .collect();
    let cluster_mttdl = time_to_absorption(&up, &down);
    Ok(LossReport {
        query,
        key_mttdl_years: key_mttdl,
        key_loss_per_year: -(-1.0 / key_mttdl).exp_m1(),
        cluster_mttdl_years: cluster_mttdl,
        any_key_loss_per_year: -(-1.0 / cluster_mttdl).exp_m1(),
    })
}

/// The probability that at least `k` of `n` nodes are up, each with
/// probability `up`.
pub fn at_least(k: u32, n: u32, up: f64) -> f64 {
    (k..=n)
        .map(|i| binomial(n, i) * up.powi(i as i32) * (1.0 - up).powi((n - i) as i32))
        .sum()
}

/// The availability of every quorum size for N replicas on M nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuorumAvailability {
    /// The quorum size (R or W).
    pub k: u8,
    /// At least k of the N primaries up.
    pub strict: f64,
    /// At least k of all M nodes up, `primaries` of them primaries (sloppy
    /// writes with hinted handoff; PW = `primaries`).
    pub sloppy: f64,
    pub primaries: u8,
}

/// Strict and sloppy availability of quorums of 1..=N, for node
/// availability `up`, with sloppy writes needing `pw` primaries.
pub fn quorum_availability(
    n: u8,
    nodes: u32,
    up: f64,
    pw: u8,
) -> Result<Vec<QuorumAvailability>, String> {
    if !(0.0..=1.0).contains(&up) {
        return Err(format!("node availability {up} is not a probability"));
    }
    if n == 0 || u32::from(n) > nodes || pw > n {
        return Err(format!(
            "need 1 <= N <= nodes and PW <= N; got N={n}, PW={pw}, {nodes} nodes"
        ));
    }
    let (n32, others) = (u32::from(n), nodes - u32::from(n));
    let exactly =
        |k: u32, of: u32| binomial(of, k) * up.powi(k as i32) * (1.0 - up).powi((of - k) as i32);
    Ok((1..=n)
        .map(|k| {
            let sloppy = (u32::from(pw)..=n32)
                .map(|p| exactly(p, n32) * at_least(u32::from(k).saturating_sub(p), others, up))
                .sum();
            QuorumAvailability {
                k,
                strict: at_least(u32::from(k), n32, up),
                sloppy,
                primaries: pw,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(n: u8, nodes: u32, failures_per_year: f64, repair_hours: f64) -> LossQuery {
        LossQuery {
            n,
            nodes,
            failures_per_year,
            repair_hours,
            replica_sets: u64::MAX,
        }
    }

    fn close(a: f64, b: f64, relative: f64) -> bool {
        (a - b).abs() <= relative * b.abs()
    }

    #[test]
    fn one_replica_lives_one_over_lambda() {
        let report = loss(query(1, 1, 0.5, 24.0)).expect("a report");
        assert!(close(report.key_mttdl_years, 2.0, 1e-12));
        assert!(close(
            report.key_loss_per_year,
            1.0 - (-0.5f64).exp(),
            1e-12
        ));
    }

    /// Two replicas with repair: MTTDL = (3λ + μ) / (2λ²), the mirrored
    /// pair's closed form; three: (11λ² + 7λμ + 2μ²) / (6λ³).
    #[test]
    fn two_and_three_replicas_match_their_closed_forms() {
        let (lambda, hours) = (0.2, 48.0);
        let mu = HOURS_PER_YEAR / hours;
        let two = loss(query(2, 2, lambda, hours)).expect("a report");
        let closed = (3.0 * lambda + mu) / (2.0 * lambda * lambda);
        assert!(
            close(two.key_mttdl_years, closed, 1e-9),
            "{}",
            two.key_mttdl_years
        );
        let three = loss(query(3, 3, lambda, hours)).expect("a report");
        let closed =
            (11.0 * lambda * lambda + 7.0 * lambda * mu + 2.0 * mu * mu) / (6.0 * lambda.powi(3));
        assert!(
            close(three.key_mttdl_years, closed, 1e-9),
            "{}",
            three.key_mttdl_years
        );
        // On exactly N nodes, every failure hits the key's replicas.
        assert!(close(
            three.cluster_mttdl_years,
            three.key_mttdl_years,
            1e-9
        ));
    }

    #[test]
    fn more_nodes_lose_some_key_sooner_and_fewer_shared_sets_later() {
        let small = query(3, 3, 0.1, 24.0);
        let mut large = query(3, 30, 0.1, 24.0);
        let (a, b) = (
            loss(small).expect("a report"),
            loss(large).expect("a report"),
        );
        assert!(b.any_key_loss_per_year > a.any_key_loss_per_year);
        assert!(close(a.key_mttdl_years, b.key_mttdl_years, 1e-12));
        large.replica_sets = 64;
        let c = loss(large).expect("a report");
        assert!(c.any_key_loss_per_year < b.any_key_loss_per_year);
        assert!(loss(query(4, 3, 0.1, 24.0)).is_err());
        assert!(loss(query(3, 3, 0.0, 24.0)).is_err());
    }

    #[test]
    fn quorum_availability_matches_the_binomial() {
        let rows = quorum_availability(3, 3, 0.9, 0).expect("rows");
        assert!(close(rows[0].strict, 1.0 - 0.1f64.powi(3), 1e-12));
        assert!(close(rows[1].strict, 0.972, 1e-12));
        assert!(close(rows[2].strict, 0.729, 1e-12));
        // On N nodes, sloppy is strict.
        for row in &rows {
            assert!(close(row.sloppy, row.strict, 1e-12));
        }
        // With spare nodes, a sloppy write of W is as available as any W of
        // the M nodes when PW = 0, and needs its primaries when PW = W.
        let rows = quorum_availability(3, 6, 0.9, 0).expect("rows");
        assert!(close(rows[1].sloppy, at_least(2, 6, 0.9), 1e-12));
        assert!(rows[1].sloppy > rows[1].strict);
        let rows = quorum_availability(3, 6, 0.9, 2).expect("rows");
        assert!(close(rows[1].sloppy, rows[1].strict, 1e-12));
        assert!(quorum_availability(3, 6, 1.5, 0).is_err());
    }
}
