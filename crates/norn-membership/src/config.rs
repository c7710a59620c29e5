//! Tunables of gossip and failure detection.

use serde::{Deserialize, Serialize};

/// How often nodes gossip and how readily they suspect each other.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MembershipConfig {
    /// Interval between gossip rounds, 50..=10,000 ms.
    pub gossip_interval_ms: u64,
    /// Peers gossiped to per round, 1..=16.
    pub gossip_fanout: usize,
    /// Phi above which a peer is considered down, 1.0..=32.0.
    pub phi_threshold: f64,
    /// Heartbeat intervals the detector remembers, 10..=10,000.
    pub phi_window: usize,
    /// Floor of the intervals' standard deviation, 10..=10,000 ms.
    pub phi_min_std_dev_ms: u64,
    /// Silence tolerated on top of the mean interval, 0..=60,000 ms.
    pub acceptable_pause_ms: u64,
}

impl Default for MembershipConfig {
    /// A silent peer is suspected after about 3 s; with 20% message loss a
    /// live one is not, because its heartbeats also arrive through others.
    fn default() -> Self {
        MembershipConfig {
            gossip_interval_ms: 500,
            gossip_fanout: 3,
            phi_threshold: 8.0,
            phi_window: 200,
            phi_min_std_dev_ms: 200,
            acceptable_pause_ms: 1500,
        }
    }
}

/// A configuration value out of its bounds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("membership.{field} = {value} is out of bounds {bounds}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: String,
    pub bounds: &'static str,
}

impl MembershipConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check<T: PartialOrd + std::fmt::Display>(
            field: &'static str,
            value: T,
            range: std::ops::RangeInclusive<T>,
            bounds: &'static str,
        ) -> Result<(), ConfigError> {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(ConfigError {
                    field,
                    value: value.to_string(),
                    bounds,
                })
            }
        }
        check(
            "gossip_interval_ms",
            self.gossip_interval_ms,
            50..=10_000,
            "50..=10000",
        )?;
        check("gossip_fanout", self.gossip_fanout, 1..=16, "1..=16")?;
        check(
            "phi_threshold",
            self.phi_threshold,
            1.0..=32.0,
            "1.0..=32.0",
        )?;
        check("phi_window", self.phi_window, 10..=10_000, "10..=10000")?;
        check(
            "phi_min_std_dev_ms",
            self.phi_min_std_dev_ms,
            10..=10_000,
            "10..=10000",
        )?;
        check(
            "acceptable_pause_ms",
            self.acceptable_pause_ms,
            0..=60_000,
            "0..=60000",
        )?;
        Ok(())
    }
}
