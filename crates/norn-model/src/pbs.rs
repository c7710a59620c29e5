//! Probabilistically Bounded Staleness (Bailis et al., "Probabilistically
//! Bounded Staleness for Practical Partial Quorums", VLDB 2012).
//!
//! The WARS model: a write goes to all N replicas; replica i applies it
//! `W_i` after the coordinator sent it and its acknowledgement takes `A_i`
//! back; the write is acknowledged once W of the `W_i + A_i` are in. A read
//! starts `t` after that; it reaches replica j after `R_j` and the answer
//! takes `S_j` back; the read returns once R answers are in, and sees the
//! write if one of those R replicas had applied it when the read reached
//! it: `W_j <= commit + t + R_j`. [`predict`] draws every delay from its
//! distribution per trial (a Monte Carlo, seeded) and reports the share of
//! trials that are fresh at each t, the t by which 99% and 99.9% are, and
//! the read and write latency.
//!
//! norn's read asks every replica on `data.read_repair_percent` of reads
//! (the paper's model) and R of them, the coordinator's own copy first,
//! otherwise; [`Query::all_percent`] sets that share, and the R asked are
//! taken as a uniform choice (a random coordinator's own copy is a random
//! replica). A read that waits past `data.speculative_read_ms` and asks the
//! rest is not modelled.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::distribution::{Distribution, Sampler};

/// The times after a write's acknowledgement at which a table gives the
/// probability that a read sees it, in ms.
pub const T_MS: [f64; 7] = [0.0, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0];

/// Trials past which a prediction is refused (about a second of work).
pub const TRIALS_MAX: u32 = 2_000_000;

/// The four WARS delays of one replica as its coordinator sees them, ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wars {
    /// Write request: sent until applied at the replica.
    pub w: Distribution,
    /// Write acknowledgement: applied until the coordinator has it.
    pub a: Distribution,
    /// Read request: sent until read at the replica.
    pub r: Distribution,
    /// Read response: read until the coordinator has it.
    pub s: Distribution,
}

/// The delays of every replica: one [`Wars`] for all N, or one per replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    pub replicas: Vec<Wars>,
    /// The delays of a coordinator's own copy, when coordinators hold one
    /// (norn's do whenever the cluster has N nodes): the write's
    /// coordinator is replica 0 and takes this W and A; the read's is a
    /// replica chosen uniformly, takes this R and S, and is asked first by
    /// a read that asks R replicas. `None`: every replica is remote.
    #[serde(default)]
    pub local: Option<Wars>,
}

/// What to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub n: u8,
    pub r: u8,
    pub w: u8,
    /// Percent of reads that ask all N replicas (norn's
    /// `data.read_repair_percent`; the paper's model is 100).
    pub all_percent: u8,
    pub trials: u32,
    pub seed: u64,
}

/// The probability that a read starting `t_ms` after the acknowledgement
/// returns the write.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FreshAt {
    pub t_ms: f64,
    pub probability: f64,
}

/// A prediction for one (N, R, W).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub n: u8,
    pub r: u8,
    pub w: u8,
    pub fresh: Vec<FreshAt>,
    /// The t by which 99% (99.9%) of reads see the write, ms.
    pub t_99_ms: f64,
    pub t_999_ms: f64,
    pub read_p99_ms: f64,
    pub write_p99_ms: f64,
    /// The closed form's probability that a read right after the write
    /// misses it, when only the W fastest replicas have it (k = 1).
    pub stale_closed_form: f64,
    pub trials: u32,
}

/// The probability that a read of R replicas, chosen uniformly, misses
/// all of the last k writes' W-replica quorums, with nothing propagated
/// beyond them: `(C(N-W, R) / C(N, R))^k` (PBS's k-staleness).
pub fn k_stale(n: u8, r: u8, w: u8, k: u32) -> f64 {
    let miss = binomial(u32::from(n.saturating_sub(w)), u32::from(r))
        / binomial(u32::from(n), u32::from(r));
    miss.powi(i32::try_from(k).unwrap_or(i32::MAX))
}

/// `C(n, k)` as a float (0 when k > n).
pub fn binomial(n: u32, k: u32) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * f64::from(n - i) / f64::from(i + 1))
}

struct ReplicaSamplers {
    w: Sampler,
    a: Sampler,
    r: Sampler,
    s: Sampler,
}

fn replica_samplers(wars: &Wars, whose: &str) -> Result<ReplicaSamplers, String> {
    let of = |name: &str, d: &Distribution| {
        d.sampler()
            .map_err(|e| format!("{whose}, delay {name}: {e}"))
    };
    Ok(ReplicaSamplers {
        w: of("W", &wars.w)?,
        a: of("A", &wars.a)?,
        r: of("R", &wars.r)?,
        s: of("S", &wars.s)?,
    })
}

fn samplers(latencies: &Latencies, n: u8) -> Result<Vec<ReplicaSamplers>, String> {
    let given = latencies.replicas.len();
    if given != 1 && given != usize::from(n) {
        return Err(format!(
            "latencies for {given} replicas: give one set for all, or one per replica (N = {n})"
        ));
    }
    (0..usize::from(n))
        .map(|i| {
            let wars = &latencies.replicas[if given == 1 { 0 } else { i }];
            replica_samplers(wars, &format!("replica {i}"))
        })
        .collect()
}

fn check(query: &Query) -> Result<(), String> {
    let Query { n, r, w, .. } = *query;
    if n == 0 || r == 0 || w == 0 || r > n || w > n {
        return Err(format!("need 1 <= R, W <= N; got N={n} R={r} W={w}"));
    }
    if query.all_percent > 100 {
        return Err("the share of reads asking every replica is 0..=100 percent".into());
    }
    if query.trials == 0 || query.trials > TRIALS_MAX {
        return Err(format!("trials must be 1..={TRIALS_MAX}"));
    }
    Ok(())
}

/// The value at quantile `q` of sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Predicts one (N, R, W) by Monte Carlo over `latencies`.
pub fn predict(latencies: &Latencies, query: Query) -> Result<Prediction, String> {
    check(&query)?;
    let replicas = samplers(latencies, query.n)?;
    let local = latencies
        .local
        .as_ref()
        .map(|wars| replica_samplers(wars, "the local copy"))
        .transpose()?;
    let (n, r, w) = (
        usize::from(query.n),
        usize::from(query.r),
        usize::from(query.w),
    );
    let mut rng = SmallRng::seed_from_u64(query.seed);
    let trials = query.trials as usize;
    let (mut staleness, mut reads, mut writes) = (
        Vec::with_capacity(trials),
        Vec::with_capacity(trials),
        Vec::with_capacity(trials),
    );
    let (mut applied, mut acked, mut read_at, mut answered) =
        (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut asked: Vec<usize> = (0..n).collect();
    for _ in 0..trials {
        for (i, replica) in replicas.iter().enumerate() {
            applied[i] = replica.w.sample(&mut rng);
            acked[i] = applied[i] + replica.a.sample(&mut rng);
            read_at[i] = replica.r.sample(&mut rng);
            answered[i] = read_at[i] + replica.s.sample(&mut rng);
        }
        // With coordinators' own copies, the reader's is asked first.
        let mut first_asked = 0;
        if let Some(local) = &local {
            applied[0] = local.w.sample(&mut rng);
            acked[0] = applied[0] + local.a.sample(&mut rng);
            let reader = rng.gen_range(0..n);
            read_at[reader] = local.r.sample(&mut rng);
            answered[reader] = read_at[reader] + local.s.sample(&mut rng);
            let at = asked.iter().position(|&i| i == reader).unwrap_or(0);
            asked.swap(0, at);
            first_asked = 1;
        }
        let mut acks = acked.clone();
        acks.sort_by(f64::total_cmp);
        let commit = acks[w - 1];
        let fanout = if rng.gen_range(0..100u8) < query.all_percent {
            n
        } else {
            r
        };
        for i in first_asked..fanout {
            let j = rng.gen_range(i..n);
            asked.swap(i, j);
        }
        let chosen = &mut asked[..fanout];
        chosen.sort_by(|&x, &y| answered[x].total_cmp(&answered[y]));
        let first = &chosen[..r];
        // The read is fresh from the first t at which one of the R replicas
        // it hears from had applied the write on the read's arrival.
        let needed = first
            .iter()
            .map(|&j| applied[j] - commit - read_at[j])
            .fold(f64::INFINITY, f64::min);
        staleness.push(needed.max(0.0));
        reads.push(answered[first[r - 1]]);
        writes.push(commit);
    }
    for values in [&mut staleness, &mut reads, &mut writes] {
        values.sort_by(f64::total_cmp);
    }
    let fresh = T_MS
        .iter()
        .map(|&t_ms| FreshAt {
            t_ms,
            probability: staleness.partition_point(|&s| s <= t_ms) as f64 / trials as f64,
        })
        .collect();
    Ok(Prediction {
        n: query.n,
        r: query.r,
        w: query.w,
        fresh,
        t_99_ms: quantile(&staleness, 0.99),
        t_999_ms: quantile(&staleness, 0.999),
        read_p99_ms: quantile(&reads, 0.99),
        write_p99_ms: quantile(&writes, 0.99),
        stale_closed_form: k_stale(query.n, query.r, query.w, 1),
        trials: query.trials,
    })
}

/// Predictions for every R, W with R + W <= N (larger quorums always
/// overlap, so every read sees the write), R first then W.
pub fn table(
    latencies: &Latencies,
    n: u8,
    all_percent: u8,
    trials: u32,
    seed: u64,
) -> Result<Vec<Prediction>, String> {
    let mut rows = Vec::new();
    for r in 1..n {
        for w in 1..=n - r {
            let query = Query {
                n,
                r,
                w,
                all_percent,
                trials,
                seed,
            };
            rows.push(predict(latencies, query)?);
        }
    }
    if rows.is_empty() {
        return Err(format!("N = {n} has no R, W with R + W <= N"));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_for_all(w: Distribution, other: Distribution) -> Latencies {
        Latencies {
            replicas: vec![Wars {
                w,
                a: other.clone(),
                r: other.clone(),
                s: other,
            }],
            local: None,
        }
    }

    fn query(n: u8, r: u8, w: u8, all_percent: u8) -> Query {
        Query {
            n,
            r,
            w,
            all_percent,
            trials: 100_000,
            seed: 7,
        }
    }

    #[test]
    fn the_closed_form_is_pbs_k_staleness() {
        assert_eq!(k_stale(3, 1, 1, 1), 2.0 / 3.0);
        assert_eq!(k_stale(3, 2, 1, 1), 1.0 / 3.0);
        assert_eq!(k_stale(3, 1, 2, 1), 1.0 / 3.0);
        assert_eq!(k_stale(3, 2, 2, 1), 0.0);
        assert!((k_stale(5, 1, 1, 2) - 0.64).abs() < 1e-12);
        assert_eq!(binomial(5, 2), 10.0);
        assert_eq!(binomial(2, 3), 0.0);
    }

    /// When only the W fastest replicas have the write at t = 0 and the
    /// read's choice of replicas does not depend on the write's, the Monte
    /// Carlo must give the closed form: write delays random, every other
    /// delay zero, reads asking R replicas chosen uniformly.
    #[test]
    fn the_monte_carlo_matches_the_closed_form_when_latencies_do_not_matter() {
        let latencies = same_for_all(
            Distribution::Exponential { mean_ms: 10.0 },
            Distribution::Constant { ms: 0.0 },
        );
        for (n, r, w) in [(3, 1, 1), (3, 1, 2), (3, 2, 1), (5, 2, 2), (5, 1, 3)] {
            let predicted = predict(&latencies, query(n, r, w, 0)).expect("a prediction");
            let stale = 1.0 - predicted.fresh[0].probability;
            let closed = k_stale(n, r, w, 1);
            assert!(
                (stale - closed).abs() < 0.005,
                "N={n} R={r} W={w}: {stale} against {closed}"
            );
        }
    }

    #[test]
    fn later_reads_see_the_write_more_often() {
        let latencies = same_for_all(
            Distribution::Exponential { mean_ms: 5.0 },
            Distribution::Exponential { mean_ms: 1.0 },
        );
        let quorum = predict(&latencies, query(3, 1, 1, 0)).expect("a prediction");
        let all = predict(&latencies, query(3, 1, 1, 100)).expect("a prediction");
        for prediction in [&quorum, &all] {
            let probabilities: Vec<f64> = prediction.fresh.iter().map(|f| f.probability).collect();
            assert!(
                probabilities.windows(2).all(|p| p[0] <= p[1]),
                "{probabilities:?}"
            );
            assert!(prediction.t_99_ms <= prediction.t_999_ms);
            assert!(probabilities.last().is_some_and(|&p| p > 0.999));
        }
    }

    /// With coordinators' own copies and instant local delays, a read of
    /// R=1 asks only the reader's copy: fresh at t=0 exactly when that
    /// copy is the write coordinator's (1/N) or among the other W-1
    /// fastest (it is one of N-1 equally likely remote replicas).
    #[test]
    fn a_reader_asks_its_own_copy_first() {
        let mut latencies = same_for_all(
            Distribution::Exponential { mean_ms: 10.0 },
            Distribution::Constant { ms: 0.0 },
        );
        latencies.local = Some(Wars {
            w: Distribution::Constant { ms: 0.0 },
            a: Distribution::Constant { ms: 0.0 },
            r: Distribution::Constant { ms: 0.0 },
            s: Distribution::Constant { ms: 0.0 },
        });
        for (n, w) in [(3u8, 1u8), (3, 2), (5, 2)] {
            let predicted = predict(&latencies, query(n, 1, w, 0)).expect("a prediction");
            let (n_f, w_f) = (f64::from(n), f64::from(w));
            let expected = 1.0 / n_f + (n_f - 1.0) / n_f * (w_f - 1.0) / (n_f - 1.0);
            let fresh = predicted.fresh[0].probability;
            assert!(
                (fresh - expected).abs() < 0.005,
                "N={n} W={w}: {fresh} against {expected}"
            );
        }
    }

    #[test]
    fn constant_delays_give_exact_answers() {
        // Every write lands 2 ms after it is sent and is acknowledged 1 ms
        // later, so by the acknowledgement (3 ms) every replica has it.
        let latencies = Latencies {
            replicas: vec![Wars {
                w: Distribution::Constant { ms: 2.0 },
                a: Distribution::Constant { ms: 1.0 },
                r: Distribution::Constant { ms: 1.0 },
                s: Distribution::Constant { ms: 1.0 },
            }],
            local: None,
        };
        let predicted = predict(&latencies, query(3, 1, 1, 0)).expect("a prediction");
        assert_eq!(predicted.fresh[0].probability, 1.0);
        assert_eq!(predicted.write_p99_ms, 3.0);
        assert_eq!(predicted.read_p99_ms, 2.0);
        assert_eq!(predicted.t_999_ms, 0.0);
    }

    #[test]
    fn a_seed_gives_the_same_prediction_and_bad_queries_are_refused() {
        let latencies = same_for_all(
            Distribution::Exponential { mean_ms: 5.0 },
            Distribution::Exponential { mean_ms: 1.0 },
        );
        assert_eq!(
            predict(&latencies, query(3, 1, 1, 10)),
            predict(&latencies, query(3, 1, 1, 10))
        );
        for bad in [query(3, 4, 1, 0), query(3, 1, 0, 0), query(3, 1, 1, 101)] {
            assert!(predict(&latencies, bad).is_err(), "{bad:?}");
        }
        let two = Latencies {
            replicas: vec![latencies.replicas[0].clone(); 2],
            local: None,
        };
        assert!(predict(&two, query(3, 1, 1, 0)).is_err());
        let rows = table(&latencies, 3, 10, 1_000, 1).expect("a table");
        let pairs: Vec<(u8, u8)> = rows.iter().map(|p| (p.r, p.w)).collect();
        assert_eq!(pairs, [(1, 1), (1, 2), (2, 1)]);
    }
}
