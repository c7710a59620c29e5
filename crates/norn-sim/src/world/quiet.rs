//! The quiet world of measurements: no drawn faults, no clients, delays of
//! a set distribution; the caller sends requests, crashes and restarts
//! nodes, and lets time pass.

use norn_proto::{Request, Response};

use std::cmp::Reverse;

use super::{Delays, Fault, SimOptions, World};

impl World {
    /// `nodes` nodes in one ring, started, with no fault and no client;
    /// messages between nodes take `1 + floor(x)` ms, x exponential of
    /// mean `mean_delay_ms`, and the caller's requests and answers take no
    /// time (so a read sent `t` after a write's answer starts `t` after
    /// its coordinator had it).
    pub fn quiet(seed: u64, nodes: usize, mean_delay_ms: f64) -> World {
        let options = SimOptions {
            nodes,
            spares: 0,
            clients: 0,
            fault_ms: 0,
            ..SimOptions::default()
        };
        let mut world = World::new(seed, options);
        world.delays = Delays::Exponential {
            mean_ms: mean_delay_ms,
        };
        world
    }

    /// Sends `request` to `node` as the operator and runs until it is
    /// answered; `None` after `timeout_ms` of virtual time.
    pub fn ask(&mut self, node: usize, request: Request, timeout_ms: u64) -> Option<Response> {
        self.awaiting = Some(self.send_as_operator(node, request));
        let deadline = self.now + timeout_ms;
        while self.answer.is_none() && self.now <= deadline && self.step() {}
        self.awaiting = None;
        self.answer.take()
    }

    /// Runs every event due in the next `ms` of virtual time, and stops
    /// the clock there.
    pub fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        while self
            .queue
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= until)
        {
            self.step();
        }
        self.now = until;
    }

    /// Whether node `node`'s core runs.
    pub fn is_up(&self, node: usize) -> bool {
        self.nodes[node].is_up()
    }

    /// Crashes node `node` (its synced and unsynced writes stay); a no-op
    /// on a node that is down.
    pub fn crash(&mut self, node: usize) {
        self.apply_fault(&Fault::Crash {
            node,
            power_cut: false,
        });
    }

    /// Restarts node `node` from its store; a no-op on a node that is up.
    pub fn restart(&mut self, node: usize) {
        self.apply_fault(&Fault::Restart { node });
    }
}
