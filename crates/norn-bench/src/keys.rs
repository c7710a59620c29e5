//! Key choice: uniform, or zipfian as YCSB draws it.

use rand::Rng;

/// How keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Distribution {
    Uniform,
    /// YCSB's zipfian (theta 0.99): a few keys are hot.
    Zipfian,
}

/// YCSB's zipfian constant.
const THETA: f64 = 0.99;

/// Draws key indexes in `0..count`.
#[derive(Debug, Clone)]
pub struct KeyChooser {
    count: u64,
    zipf: Option<Zipf>,
}

#[derive(Debug, Clone, Copy)]
struct Zipf {
    alpha: f64,
    zetan: f64,
    eta: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl KeyChooser {
    pub fn new(distribution: Distribution, count: u64) -> KeyChooser {
        let count = count.max(1);
        let zipf = (distribution == Distribution::Zipfian).then(|| {
            let zetan = zeta(count, THETA);
            let zeta2 = zeta(2, THETA);
            let eta = (1.0 - (2.0 / count as f64).powf(1.0 - THETA)) / (1.0 - zeta2 / zetan);
            Zipf {
                alpha: 1.0 / (1.0 - THETA),
                zetan,
                eta,
            }
        });
        KeyChooser { count, zipf }
    }

    /// The next key index. Zipfian ranks are scattered over the key space
    /// (as YCSB's scrambled zipfian), so hot keys land on different nodes.
    pub fn next(&self, rng: &mut impl Rng) -> u64 {
        let Some(z) = self.zipf else {
            return rng.gen_range(0..self.count);
        };
        let u: f64 = rng.gen();
        let uz = u * z.zetan;
        let rank = if uz < 1.0 {
            0
        } else if uz < 1.0 + 0.5f64.powf(THETA) {
            1
        } else {
            ((self.count as f64) * (z.eta * u - z.eta + 1.0).powf(z.alpha)) as u64
        };
        rank.min(self.count - 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) % self.count
    }
}

/// The name of key `index`.
pub fn key_name(index: u64) -> String {
    format!("user{index:012}")
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn zipfian_is_skewed_and_uniform_is_not() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut hottest_share = |distribution| {
            let chooser = KeyChooser::new(distribution, 10_000);
            let mut counts = vec![0u32; 10_000];
            for _ in 0..100_000 {
                let k = chooser.next(&mut rng);
                assert!(k < 10_000);
                counts[k as usize] += 1;
            }
            *counts.iter().max().unwrap_or(&0) as f64 / 100_000.0
        };
        assert!(
            hottest_share(Distribution::Zipfian) > 0.05,
            "the hottest key takes a large share"
        );
        assert!(hottest_share(Distribution::Uniform) < 0.001);
    }
}
