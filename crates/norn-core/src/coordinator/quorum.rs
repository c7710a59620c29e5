//! Per-request replication parameters.

pub use norn_proto::QuorumOptions;
use serde::{Deserialize, Serialize};

/// The node's defaults and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumDefaults {
    pub n: u8,
    pub n_max: u8,
}

/// Resolved parameters of one request: 1 <= R, W <= N <= n_max, and
/// PR <= R, PW <= W, DW <= W.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    /// Replicas the object lives on.
    pub n: u8,
    /// Replies a read waits for.
    pub r: u8,
    /// Acknowledgements a write waits for.
    pub w: u8,
    /// Of the R replies, how many must come from primaries.
    pub pr: u8,
    /// Of the W acknowledgements, how many must come from primaries.
    pub pw: u8,
    /// Of the W acknowledgements, how many must come after an fsync.
    pub dw: u8,
}

/// Why a request's parameters were refused. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error("n = {n} is out of bounds 1..={n_max}")]
    NOutOfBounds { n: u8, n_max: u8 },
    #[error("n = {n} exceeds the {nodes} nodes of the ring")]
    NAboveNodes { n: u8, nodes: usize },
    #[error("{name} = {value} must be 1..=n ({n})")]
    OutOfRange {
        name: &'static str,
        value: u8,
        n: u8,
    },
    #[error("{name} = {value} exceeds {bound_name} = {bound}")]
    AboveBound {
        name: &'static str,
        value: u8,
        bound_name: &'static str,
        bound: u8,
    },
}

impl Quorum {
    /// The parameters of a request: its options over the defaults (R and W
    /// default to a majority of N), checked against the ring's size.
    pub fn resolve(
        options: QuorumOptions,
        defaults: QuorumDefaults,
        ring_nodes: usize,
    ) -> Result<Quorum, QuorumError> {
        let n = options.n.unwrap_or(defaults.n);
        if n == 0 || n > defaults.n_max {
            return Err(QuorumError::NOutOfBounds {
                n,
                n_max: defaults.n_max,
            });
        }
        if usize::from(n) > ring_nodes {
            return Err(QuorumError::NAboveNodes {
                n,
                nodes: ring_nodes,
            });
        }
        let majority = n / 2 + 1;
        let quorum = Quorum {
            n,
            r: options.r.unwrap_or(majority),
            w: options.w.unwrap_or(majority),
            pr: options.pr.unwrap_or(0),
            pw: options.pw.unwrap_or(0),
            dw: options.dw.unwrap_or(0),
        };
        for (name, value) in [("r", quorum.r), ("w", quorum.w)] {
            if value == 0 || value > n {
                return Err(QuorumError::OutOfRange { name, value, n });
            }
        }
        let bounds = [
            ("pr", quorum.pr, "r", quorum.r),
            ("pw", quorum.pw, "w", quorum.w),
            ("dw", quorum.dw, "w", quorum.w),
        ];
        for (name, value, bound_name, bound) in bounds {
            if value > bound {
                return Err(QuorumError::AboveBound {
                    name,
                    value,
                    bound_name,
                    bound,
                });
            }
        }
        Ok(quorum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: QuorumDefaults = QuorumDefaults { n: 3, n_max: 5 };

    fn options(n: Option<u8>, r: Option<u8>, w: Option<u8>) -> QuorumOptions {
        QuorumOptions {
            n,
            r,
            w,
            ..QuorumOptions::default()
        }
    }

    #[test]
    fn defaults_are_a_majority_of_n() {
        let q = Quorum::resolve(QuorumOptions::default(), DEFAULTS, 3).expect("valid");
        assert_eq!((q.n, q.r, q.w, q.pr, q.pw, q.dw), (3, 2, 2, 0, 0, 0));
        let q = Quorum::resolve(options(Some(5), None, None), DEFAULTS, 5).expect("valid");
        assert_eq!((q.r, q.w), (3, 3));
    }

    #[test]
    fn invalid_combinations_are_refused() {
        assert!(matches!(
            Quorum::resolve(options(None, Some(4), None), DEFAULTS, 3),
            Err(QuorumError::OutOfRange { name: "r", .. })
        ));
        assert!(matches!(
            Quorum::resolve(options(None, None, Some(0)), DEFAULTS, 3),
            Err(QuorumError::OutOfRange { name: "w", .. })
        ));
        assert!(matches!(
            Quorum::resolve(options(Some(6), None, None), DEFAULTS, 9),
            Err(QuorumError::NOutOfBounds { .. })
        ));
        assert!(matches!(
            Quorum::resolve(options(Some(4), None, None), DEFAULTS, 3),
            Err(QuorumError::NAboveNodes { .. })
        ));
        let pw = QuorumOptions {
            w: Some(2),
            pw: Some(3),
            ..QuorumOptions::default()
        };
        assert!(matches!(
            Quorum::resolve(pw, DEFAULTS, 3),
            Err(QuorumError::AboveBound { name: "pw", .. })
        ));
        let dw = QuorumOptions {
            w: Some(1),
            dw: Some(2),
            ..QuorumOptions::default()
        };
        assert!(matches!(
            Quorum::resolve(dw, DEFAULTS, 3),
            Err(QuorumError::AboveBound { name: "dw", .. })
        ));
    }
}
