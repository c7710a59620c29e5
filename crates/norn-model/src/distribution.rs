//! Delay distributions, in milliseconds: set ones for what-if questions and
//! measured ones (histogram buckets) from a live cluster.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A delay distribution, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Always `ms`.
    Constant { ms: f64 },
    /// Exponential with mean `mean_ms`.
    Exponential { mean_ms: f64 },
    /// Measured: each `(value_ms, count)` is a histogram bucket.
    Measured { buckets: Vec<(f64, u64)> },
}

impl Distribution {
    /// A checked form to draw from; an error names what is wrong (a
    /// negative or non-finite delay, an empty histogram).
    pub fn sampler(&self) -> Result<Sampler, String> {
        let valid = |ms: f64| ms.is_finite() && ms >= 0.0;
        match self {
            Distribution::Constant { ms } if valid(*ms) => Ok(Sampler::Constant(*ms)),
            Distribution::Exponential { mean_ms } if valid(*mean_ms) => {
                Ok(Sampler::Exponential(*mean_ms))
            }
            Distribution::Measured { buckets } => {
                let mut values = Vec::with_capacity(buckets.len());
                let mut cumulative = Vec::with_capacity(buckets.len());
                let mut total = 0u64;
                for &(ms, count) in buckets {
                    if !valid(ms) {
                        return Err(format!("a measured delay of {ms} ms"));
                    }
                    if count > 0 {
                        total = total.saturating_add(count);
                        values.push(ms);
                        cumulative.push(total);
                    }
                }
                if total == 0 {
                    return Err("a measured distribution with no samples".into());
                }
                if total == values.len() as u64 {
                    // One sample per bucket: draw an index.
                    return Ok(Sampler::Samples(values));
                }
                Ok(Sampler::Measured { values, cumulative })
            }
            other => Err(format!("an invalid distribution: {other:?}")),
        }
    }

    /// The number of samples behind a measured distribution (`None` for a
    /// set one).
    pub fn samples(&self) -> Option<u64> {
        match self {
            Distribution::Measured { buckets } => Some(buckets.iter().map(|b| b.1).sum()),
            _ => None,
        }
    }
}

/// A validated [`Distribution`], ready to draw from.
#[derive(Debug, Clone)]
pub enum Sampler {
    Constant(f64),
    Exponential(f64),
    /// Equally likely values.
    Samples(Vec<f64>),
    Measured {
        values: Vec<f64>,
        cumulative: Vec<u64>,
    },
}

impl Sampler {
    /// One delay, in milliseconds.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match self {
            Sampler::Constant(ms) => *ms,
            Sampler::Exponential(mean) => {
                let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                -mean * u.ln()
            }
            Sampler::Samples(values) => values[rng.gen_range(0..values.len())],
            Sampler::Measured { values, cumulative } => {
                let total = *cumulative.last().expect("a sampler holds samples");
                let pick = rng.gen_range(0..total);
                values[cumulative.partition_point(|&c| c <= pick)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn measured_draws_follow_the_bucket_counts() {
        let measured = Distribution::Measured {
            buckets: vec![(1.0, 3), (2.0, 0), (5.0, 1)],
        };
        let sampler = measured.sampler().expect("valid");
        let mut rng = SmallRng::seed_from_u64(1);
        let draws: Vec<f64> = (0..40_000).map(|_| sampler.sample(&mut rng)).collect();
        let ones = draws.iter().filter(|&&d| d == 1.0).count() as f64 / draws.len() as f64;
        assert!((ones - 0.75).abs() < 0.01, "{ones}");
        assert!(draws.iter().all(|&d| d == 1.0 || d == 5.0));
    }

    #[test]
    fn exponential_draws_have_the_mean() {
        let sampler = Distribution::Exponential { mean_ms: 4.0 }
            .sampler()
            .expect("valid");
        let mut rng = SmallRng::seed_from_u64(2);
        let mean = (0..100_000).map(|_| sampler.sample(&mut rng)).sum::<f64>() / 100_000.0;
        assert!((mean - 4.0).abs() < 0.1, "{mean}");
    }

    #[test]
    fn invalid_distributions_are_refused() {
        for bad in [
            Distribution::Constant { ms: -1.0 },
            Distribution::Exponential { mean_ms: f64::NAN },
            Distribution::Measured { buckets: vec![] },
            Distribution::Measured {
                buckets: vec![(1.0, 0)],
            },
            Distribution::Measured {
                buckets: vec![(f64::INFINITY, 1)],
            },
        ] {
            assert!(bad.sampler().is_err(), "{bad:?}");
        }
    }
}
