//! What a node decides with: one typed configuration, shared by nornd
//! (which reads it from the sections of its TOML file) and the simulator
//! ([`CoreConfig::for_test`]). Every field states its bounds;
//! [`CoreConfig::validate`] checks them all.

use norn_membership::MembershipConfig;
use serde::Deserialize;

/// How a ring this node creates is shaped, and the replication bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingSection {
    /// log2 of the partition count of a new ring, 4..=16.
    pub partition_bits: u8,
    /// Replicas per key unless a request says otherwise, 1..=n_max.
    pub default_n: u8,
    /// Largest N a request may ask for, 1..=16.
    pub n_max: u8,
}

impl Default for RingSection {
    fn default() -> Self {
        RingSection {
            partition_bits: 8,
            default_n: 3,
            n_max: 5,
        }
    }
}

/// The data path: sizes, siblings, timeouts, hand-off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Longest bucket name, 1..=255 bytes.
    pub max_bucket_bytes: usize,
    /// Longest key, 1..=65536 bytes.
    pub max_key_bytes: usize,
    /// Largest value, 1..=32 MiB, at most max_object_bytes.
    pub max_value_bytes: usize,
    /// Largest stored object: every sibling of a key and its causal
    /// history together, max_value_bytes..=max_frame_bytes - 64 KiB, so
    /// that any object a write leaves fits one frame. A write that would
    /// pass it is refused on the coordinator before any replica stores it.
    pub max_object_bytes: usize,
    /// Siblings past which replies carry a warning, 1..=siblings_max.
    pub siblings_warn: u32,
    /// Siblings past which writes are refused, 1..=10000.
    pub siblings_max: u32,
    /// Timeout of a client request unless it sets one, 10..=600,000 ms.
    pub request_timeout_ms: u64,
    /// How often hints are offered to targets seen up, 100..=600,000 ms.
    pub hint_delivery_interval_ms: u64,
    /// Let fallbacks stand in (with a hint) for primaries that are down; off,
    /// writes go to reachable primaries only.
    pub hinted_handoff: bool,
    /// Percent of reads, 0..=100 (default 10), that ask every replica
    /// rather than only R of them, so that read repair reaches the rest as
    /// well. Reads whose replies disagree ask the rest regardless.
    pub read_repair_percent: u8,
    /// After this long without R replies, 1..=600,000 ms, a read asks the
    /// replicas it left out (a speculative read); one that fails is
    /// replaced at once.
    pub speculative_read_ms: u64,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            max_bucket_bytes: 255,
            max_key_bytes: 4096,
            max_value_bytes: 8 << 20,
            max_object_bytes: 16 << 20,
            siblings_warn: 25,
            siblings_max: 100,
            request_timeout_ms: 5_000,
            hint_delivery_interval_ms: 1_000,
            hinted_handoff: true,
            read_repair_percent: 10,
            speculative_read_ms: 50,
        }
    }
}

/// Merkle-tree anti-entropy between the replicas of each partition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AntiEntropySection {
    /// Run exchanges in the background (repairs on request run regardless).
    pub enabled: bool,
    /// Pause between background exchanges of one partition with its
    /// replicas, 10..=3,600,000 ms; partitions take turns.
    pub interval_ms: u64,
    /// Most differing keys one exchange repairs, 1..=1,000,000; the rest
    /// wait for the next exchange.
    pub max_keys_per_exchange: u32,
    /// Exchange traffic (both directions) per second, 64 KiB..=10 GiB.
    pub max_bytes_per_sec: u64,
    /// Remove tombstones that every replica holds, with no hint pending.
    pub reap_tombstones: bool,
    /// How long a tombstone must have been seen held by every replica (and
    /// by no other node) before it is removed, 0..=86,400,000 ms: longer
    /// than any message takes to arrive, so that no read repair, exchange
    /// or transfer still on its way can bring back what it shadowed.
    pub reap_grace_ms: u64,
}

impl Default for AntiEntropySection {
    fn default() -> Self {
        AntiEntropySection {
            enabled: true,
            interval_ms: 1_000,
            max_keys_per_exchange: 10_000,
            max_bytes_per_sec: 16 << 20,
            reap_tombstones: true,
            reap_grace_ms: 10_000,
        }
    }
}

/// Ownership transfers after ring changes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransfersSection {
    /// How often the node looks for data it holds for other owners,
    /// 100..=3,600,000 ms.
    pub interval_ms: u64,
    /// Keys per batch, 1..=65536; a batch is checkpointed once every target
    /// stored it.
    pub batch_keys: u32,
    /// Transfer traffic per second, 64 KiB..=10 GiB.
    pub max_bytes_per_sec: u64,
}

impl Default for TransfersSection {
    fn default() -> Self {
        TransfersSection {
            interval_ms: 1_000,
            batch_keys: 256,
            max_bytes_per_sec: 32 << 20,
        }
    }
}

/// How a node takes part in ring changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// A node that is not in the ring and never left it stages its own
    /// join; an admin (or `norn admin autopilot`) still commits it.
    pub auto_join: bool,
}

/// Everything a node's decisions depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    pub ring: RingSection,
    pub membership: MembershipConfig,
    pub data: DataSection,
    pub anti_entropy: AntiEntropySection,
    pub transfers: TransfersSection,
    pub cluster: ClusterSection,
    /// Timeout of a request to a peer, 10..=600,000 ms.
    pub peer_request_timeout_ms: u64,
    /// Largest frame a peer accepts, 64 KiB..=64 MiB: an object larger
    /// than it less 64 KiB is not sent.
    pub max_frame_bytes: usize,
    /// The store fsyncs every write itself: every acknowledgement is a
    /// synced one.
    pub sync_every_write: bool,
}

/// The default largest frame: twice the default object limit, plus room
/// for the rest of a request.
pub const DEFAULT_MAX_FRAME_BYTES: usize = (32 << 20) + (64 << 10);

/// Bytes of a frame besides its object: headers, bucket, key.
pub const FRAME_OVERHEAD_BYTES: usize = 64 << 10;

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            ring: RingSection::default(),
            membership: MembershipConfig::default(),
            data: DataSection::default(),
            anti_entropy: AntiEntropySection::default(),
            transfers: TransfersSection::default(),
            cluster: ClusterSection::default(),
            peer_request_timeout_ms: 2_000,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            sync_every_write: false,
        }
    }
}

impl CoreConfig {
    /// The defaults, with the ring at 6 bits (64 partitions) so that tests
    /// and simulations stay small.
    pub fn for_test() -> CoreConfig {
        CoreConfig {
            ring: RingSection {
                partition_bits: 6,
                ..RingSection::default()
            },
            ..CoreConfig::default()
        }
    }

    /// Checks every bound; the message names the field.
    pub fn validate(&self) -> Result<(), crate::CoreError> {
        self.check()
            .map_err(|reason| crate::CoreError::Config { reason })
    }

    fn check(&self) -> Result<(), String> {
        self.validate_ring()?;
        self.membership.validate().map_err(|e| e.to_string())?;
        self.validate_data()?;
        self.validate_convergence()?;
        if !((64 << 10)..=(64 << 20)).contains(&self.max_frame_bytes) {
            return Err(format!(
                "limits.max_frame_bytes {} must be 64 KiB..=64 MiB",
                self.max_frame_bytes
            ));
        }
        if !(10..=600_000).contains(&self.peer_request_timeout_ms) {
            return Err(format!(
                "limits.peer_request_timeout_ms {} must be 10..=600000",
                self.peer_request_timeout_ms
            ));
        }
        Ok(())
    }

    fn validate_ring(&self) -> Result<(), String> {
        let ring = &self.ring;
        if !(4..=16).contains(&ring.partition_bits) {
            return Err(format!(
                "ring.partition_bits {} must be 4..=16",
                ring.partition_bits
            ));
        }
        if !(1..=16).contains(&ring.n_max) || !(1..=ring.n_max).contains(&ring.default_n) {
            return Err(format!(
                "ring.n_max {} must be 1..=16 and ring.default_n {} 1..=n_max",
                ring.n_max, ring.default_n
            ));
        }
        Ok(())
    }

    fn validate_data(&self) -> Result<(), String> {
        let data = &self.data;
        if !(1..=255).contains(&data.max_bucket_bytes)
            || !(1..=65_536).contains(&data.max_key_bytes)
        {
            return Err(
                "data.max_bucket_bytes must be 1..=255 and data.max_key_bytes 1..=65536".into(),
            );
        }
        if !(1..=(32 << 20)).contains(&data.max_value_bytes)
            || data.max_value_bytes > data.max_object_bytes
            || data.max_object_bytes + FRAME_OVERHEAD_BYTES > self.max_frame_bytes
        {
            return Err(format!("data.max_value_bytes {} must be 1..=32 MiB and at most data.max_object_bytes {}, which must be 64 KiB below limits.max_frame_bytes {}", data.max_value_bytes, data.max_object_bytes, self.max_frame_bytes));
        }
        if !(1..=10_000).contains(&data.siblings_max)
            || !(1..=data.siblings_max).contains(&data.siblings_warn)
        {
            return Err(
                "data.siblings_max must be 1..=10000 and data.siblings_warn 1..=siblings_max"
                    .into(),
            );
        }
        if !(10..=600_000).contains(&data.request_timeout_ms)
            || !(100..=600_000).contains(&data.hint_delivery_interval_ms)
        {
            return Err("data.request_timeout_ms must be 10..=600000 and data.hint_delivery_interval_ms 100..=600000".into());
        }
        if data.read_repair_percent > 100 || !(1..=600_000).contains(&data.speculative_read_ms) {
            return Err(
                "data.read_repair_percent must be 0..=100 and data.speculative_read_ms 1..=600000"
                    .into(),
            );
        }
        Ok(())
    }

    fn validate_convergence(&self) -> Result<(), String> {
        let (ae, transfers) = (&self.anti_entropy, &self.transfers);
        let rate = (64 << 10)..=(10 << 30);
        if !(10..=3_600_000).contains(&ae.interval_ms)
            || !(1..=1_000_000).contains(&ae.max_keys_per_exchange)
            || !rate.contains(&ae.max_bytes_per_sec)
            || ae.reap_grace_ms > 86_400_000
        {
            return Err("anti_entropy.interval_ms must be 10..=3600000, max_keys_per_exchange 1..=1000000, max_bytes_per_sec 64 KiB..=10 GiB and reap_grace_ms 0..=86400000".into());
        }
        if !(100..=3_600_000).contains(&transfers.interval_ms)
            || !(1..=65_536).contains(&transfers.batch_keys)
            || !rate.contains(&transfers.max_bytes_per_sec)
        {
            return Err("transfers.interval_ms must be 100..=3600000, batch_keys 1..=65536 and max_bytes_per_sec 64 KiB..=10 GiB".into());
        }
        Ok(())
    }

    /// The bounds the replica keeps.
    pub fn object_limits(&self) -> crate::replica::ObjectLimits {
        crate::replica::ObjectLimits {
            siblings_max: self.data.siblings_max as usize,
            object_bytes_max: self.data.max_object_bytes,
            wire_object_bytes_max: self.max_frame_bytes - FRAME_OVERHEAD_BYTES,
            batch_bytes_max: crate::replica::BATCH_BYTES_MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_and_the_test_preset_are_valid() {
        CoreConfig::default().validate().expect("defaults");
        CoreConfig::for_test().validate().expect("for_test");
    }

    #[test]
    fn an_object_limit_past_the_frame_is_refused() {
        let mut config = CoreConfig::default();
        config.data.max_object_bytes = config.max_frame_bytes;
        let err = config.validate().expect_err("refused");
        assert!(err.to_string().contains("max_object_bytes"), "{err}");
    }
}
