//! YCSB core workloads as operation mixes.

use rand::Rng;

/// A YCSB core workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Workload {
    /// 50% reads, 50% updates.
    A,
    /// 95% reads, 5% updates.
    B,
    /// Reads only.
    C,
    /// 50% reads, 50% read-modify-writes (read, then write with its context).
    F,
}

/// One operation of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Update,
    ReadModifyWrite,
}

impl Workload {
    /// The next operation, drawn with the workload's proportions.
    pub fn next(self, rng: &mut impl Rng) -> Operation {
        let read = rng.gen_bool(match self {
            Workload::A | Workload::F => 0.5,
            Workload::B => 0.95,
            Workload::C => 1.0,
        });
        match (read, self) {
            (true, _) => Operation::Read,
            (false, Workload::F) => Operation::ReadModifyWrite,
            (false, _) => Operation::Update,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn mixes_have_their_proportions() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let reads = |w: Workload, rng: &mut rand::rngs::SmallRng| {
            (0..10_000)
                .filter(|_| w.next(rng) == Operation::Read)
                .count()
        };
        assert!((4_800..5_200).contains(&reads(Workload::A, &mut rng)));
        assert!((9_400..9_600).contains(&reads(Workload::B, &mut rng)));
        assert_eq!(reads(Workload::C, &mut rng), 10_000);
        assert!((0..10_000).all(|_| Workload::F.next(&mut rng) != Operation::Update));
    }
}
