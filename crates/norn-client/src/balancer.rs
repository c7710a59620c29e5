//! Choosing among a key's replicas.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use norn_ring::NodeId;

/// How a client orders the candidate replicas of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// Each request starts one candidate further along.
    #[default]
    RoundRobin,
    /// Fewest requests in flight first.
    LeastOutstanding,
    /// Lowest exponentially weighted moving average of latency first;
    /// replicas never measured go first, so every replica gets measured.
    LowestLatency,
}

/// Weight of the newest latency sample in the moving average.
const EWMA_ALPHA: f64 = 0.2;

#[derive(Debug, Clone, Copy, Default)]
struct NodeStats {
    outstanding: u32,
    ewma_us: Option<f64>,
}

/// Per-node statistics and the policy that orders candidates by them.
#[derive(Debug, Default)]
pub struct Balancer {
    policy: Policy,
    next: AtomicUsize,
    stats: Mutex<HashMap<NodeId, NodeStats>>,
}

impl Balancer {
    pub fn new(policy: Policy) -> Balancer {
        Balancer {
            policy,
            ..Balancer::default()
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, NodeStats>> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `candidates` in the order to try them.
    pub fn order(&self, candidates: &[NodeId]) -> Vec<NodeId> {
        let mut ordered = candidates.to_vec();
        if ordered.is_empty() {
            return ordered;
        }
        match self.policy {
            Policy::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % ordered.len();
                ordered.rotate_left(start);
            }
            Policy::LeastOutstanding => {
                let stats = self.stats();
                ordered.sort_by_key(|n| stats.get(n).map_or(0, |s| s.outstanding));
            }
            Policy::LowestLatency => {
                let stats = self.stats();
                let latency = |n: &NodeId| stats.get(n).and_then(|s| s.ewma_us).unwrap_or(0.0);
                ordered.sort_by(|a, b| latency(a).total_cmp(&latency(b)));
            }
        }
        ordered
    }

    /// A request to `node` starts.
    pub fn started(&self, node: NodeId) {
        self.stats().entry(node).or_default().outstanding += 1;
    }

    /// A request to `node` ended after `latency` (`None`: it failed, which
    /// counts as a slow answer of twice the current average, or 1 s).
    pub fn finished(&self, node: NodeId, latency: Option<Duration>) {
        let mut stats = self.stats();
        let entry = stats.entry(node).or_default();
        entry.outstanding = entry.outstanding.saturating_sub(1);
        let sample = match latency {
            Some(latency) => latency.as_micros() as f64,
            None => entry.ewma_us.map_or(1e6, |e| 2.0 * e),
        };
        entry.ewma_us = Some(match entry.ewma_us {
            Some(average) => EWMA_ALPHA * sample + (1.0 - EWMA_ALPHA) * average,
            None => sample,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

    #[test]
    fn round_robin_rotates_the_first_choice() {
        let balancer = Balancer::new(Policy::RoundRobin);
        let firsts: Vec<NodeId> = (0..6).map(|_| balancer.order(&NODES)[0]).collect();
        assert_eq!(
            firsts,
            [
                NodeId(1),
                NodeId(2),
                NodeId(3),
                NodeId(1),
                NodeId(2),
                NodeId(3)
            ]
        );
        assert_eq!(
            balancer.order(&NODES).len(),
            3,
            "every candidate stays, for retries"
        );
    }

    #[test]
    fn least_outstanding_prefers_the_idlest_node() {
        let balancer = Balancer::new(Policy::LeastOutstanding);
        balancer.started(NodeId(1));
        balancer.started(NodeId(1));
        balancer.started(NodeId(2));
        assert_eq!(balancer.order(&NODES), [NodeId(3), NodeId(2), NodeId(1)]);
        balancer.finished(NodeId(1), Some(Duration::from_millis(1)));
        balancer.finished(NodeId(1), Some(Duration::from_millis(1)));
        assert_eq!(balancer.order(&NODES)[0], NodeId(1));
    }

    #[test]
    fn lowest_latency_prefers_the_fastest_and_tries_unmeasured_nodes_first() {
        let balancer = Balancer::new(Policy::LowestLatency);
        for _ in 0..5 {
            balancer.started(NodeId(1));
            balancer.finished(NodeId(1), Some(Duration::from_millis(10)));
            balancer.started(NodeId(2));
            balancer.finished(NodeId(2), Some(Duration::from_millis(1)));
        }
        assert_eq!(balancer.order(&NODES), [NodeId(3), NodeId(2), NodeId(1)]);
        balancer.started(NodeId(3));
        balancer.finished(NodeId(3), Some(Duration::from_millis(5)));
        assert_eq!(balancer.order(&NODES), [NodeId(2), NodeId(3), NodeId(1)]);
        // Node 2 slows down; the average follows.
        for _ in 0..20 {
            balancer.started(NodeId(2));
            balancer.finished(NodeId(2), Some(Duration::from_millis(50)));
        }
        assert_eq!(balancer.order(&NODES)[0], NodeId(3));
    }

    #[test]
    fn failures_count_as_slow_answers() {
        let balancer = Balancer::new(Policy::LowestLatency);
        balancer.started(NodeId(1));
        balancer.finished(NodeId(1), Some(Duration::from_millis(1)));
        balancer.started(NodeId(2));
        balancer.finished(NodeId(2), Some(Duration::from_millis(2)));
        for _ in 0..5 {
            balancer.started(NodeId(1));
            balancer.finished(NodeId(1), None);
        }
        assert_eq!(balancer.order(&[NodeId(1), NodeId(2)])[0], NodeId(2));
    }
}
