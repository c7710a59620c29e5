//! The phi-accrual failure detector.
//!
//! Instead of a yes/no timeout, phi is the (negative log10) probability that
//! a heartbeat this late would still come, under a normal distribution of the
//! observed intervals: phi 1 means a 10% chance, phi 8 one in 10^8.

use std::collections::VecDeque;

/// Heartbeat history of one peer.
#[derive(Debug, Clone)]
pub struct PhiAccrual {
    intervals_ms: VecDeque<u64>,
    window: usize,
    last_heartbeat_ms: Option<u64>,
    min_std_dev_ms: f64,
    acceptable_pause_ms: f64,
    sum_ms: u64,
    sum_squares_ms: u128,
}

impl PhiAccrual {
    /// A detector remembering `window` intervals, seeded with one expected
    /// interval so that phi is meaningful from the first heartbeat.
    pub fn new(
        window: usize,
        first_interval_ms: u64,
        min_std_dev_ms: u64,
        acceptable_pause_ms: u64,
    ) -> Self {
        let mut detector = PhiAccrual {
            intervals_ms: VecDeque::with_capacity(window),
            window: window.max(1),
            last_heartbeat_ms: None,
            min_std_dev_ms: min_std_dev_ms as f64,
            acceptable_pause_ms: acceptable_pause_ms as f64,
            sum_ms: 0,
            sum_squares_ms: 0,
        };
        detector.record_interval(first_interval_ms);
        detector
    }

    /// A heartbeat arrived at `now_ms`.
    pub fn heartbeat(&mut self, now_ms: u64) {
        if let Some(last) = self.last_heartbeat_ms {
            self.record_interval(now_ms.saturating_sub(last));
        }
        self.last_heartbeat_ms = Some(now_ms);
    }

    fn record_interval(&mut self, interval_ms: u64) {
        if self.intervals_ms.len() == self.window {
            if let Some(old) = self.intervals_ms.pop_front() {
                self.sum_ms -= old;
                self.sum_squares_ms -= u128::from(old) * u128::from(old);
            }
        }
        self.intervals_ms.push_back(interval_ms);
        self.sum_ms += interval_ms;
        self.sum_squares_ms += u128::from(interval_ms) * u128::from(interval_ms);
    }

    /// Suspicion at `now_ms`; 0 before the first heartbeat.
    pub fn phi(&self, now_ms: u64) -> f64 {
        let Some(last) = self.last_heartbeat_ms else {
            return 0.0;
        };
        let count = self.intervals_ms.len() as f64;
        let mean = self.sum_ms as f64 / count;
        let variance = (self.sum_squares_ms as f64 / count - mean * mean).max(0.0);
        let std_dev = variance.sqrt().max(self.min_std_dev_ms);
        let elapsed = now_ms.saturating_sub(last) as f64;
        phi_normal(elapsed, mean + self.acceptable_pause_ms, std_dev)
    }
}

/// Phi under a normal distribution, with the logistic approximation of its
/// CDF that Akka uses (error below 0.0002).
fn phi_normal(elapsed: f64, mean: f64, std_dev: f64) -> f64 {
    let y = (elapsed - mean) / std_dev;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let phi = if elapsed > mean {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    };
    if phi.is_finite() {
        if phi > 0.0 {
            phi
        } else {
            0.0
        }
    } else {
        f64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(interval: u64, beats: u64) -> PhiAccrual {
        let mut detector = PhiAccrual::new(100, interval, 100, 0);
        for i in 0..beats {
            detector.heartbeat(i * interval);
        }
        detector
    }

    #[test]
    fn phi_is_low_on_time_and_rises_with_silence() {
        let detector = steady(500, 20);
        let last = 19 * 500;
        assert!(detector.phi(last + 500) < 1.0);
        assert!(detector.phi(last + 1000) > 1.0);
        assert!(detector.phi(last + 2000) > 8.0);
        let mut previous = 0.0;
        for t in (last..last + 3000).step_by(50) {
            let phi = detector.phi(t);
            assert!(phi >= previous, "phi never falls while silent");
            previous = phi;
        }
    }

    #[test]
    fn an_acceptable_pause_delays_suspicion() {
        let mut patient = PhiAccrual::new(100, 500, 100, 2000);
        for i in 0..20 {
            patient.heartbeat(i * 500);
        }
        assert!(patient.phi(19 * 500 + 2000) < 1.0);
    }
}
