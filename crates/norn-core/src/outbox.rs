//! The effects a core has decided on and not yet handed to its driver,
//! with the bookkeeping that routes each answer back to whoever asked:
//! which part of the core an outgoing request belongs to, and what waits
//! for each storage sync.

use std::collections::{BTreeSet, HashMap};

use norn_proto::{Request, Response};
use norn_ring::CertificateFingerprint;

use crate::io::{CallId, Destination, Effect, SyncToken, Timer, Token};

/// The part of the core an outgoing request's answer goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Coordinator,
    Handoff,
    Verification,
    Transfer,
    /// Nobody waits for it (gossip, read repair, copies to handoff holders).
    Nobody,
}

/// What runs once a storage sync is done.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AfterSync {
    /// Answer `call` with `response` (a replica's durable acknowledgement).
    Reply { call: CallId, response: Response },
    /// A coordinated write's own copy is on disk: count its synced ack.
    CoordinatorAck { op: u64 },
}

/// Decided effects, in order, and the routes of their answers.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    effects: Vec<Effect>,
    next_token: u64,
    next_sync: u64,
    routes: HashMap<Token, Route>,
    syncs: HashMap<SyncToken, AfterSync>,
}

impl Outbox {
    /// Sends `request` to `to`; its answer goes to `route`.
    pub(crate) fn send(
        &mut self,
        route: Route,
        to: Destination,
        request: Request,
        timeout_ms: u64,
    ) -> Token {
        self.next_token += 1;
        let token = Token(self.next_token);
        if route != Route::Nobody {
            self.routes.insert(token, route);
        }
        self.effects.push(Effect::Send {
            to,
            token,
            request,
            timeout_ms,
        });
        token
    }

    pub(crate) fn reply(&mut self, call: CallId, response: Response) {
        self.effects.push(Effect::Reply { call, response });
    }

    /// Asks for a sync; `after` runs once it is done.
    pub(crate) fn sync(&mut self, after: AfterSync) {
        self.next_sync += 1;
        let token = SyncToken(self.next_sync);
        self.syncs.insert(token, after);
        self.effects.push(Effect::Sync { token });
    }

    pub(crate) fn timer(&mut self, at_ms: u64, timer: Timer) {
        self.effects.push(Effect::SetTimer { at_ms, timer });
    }

    /// Asks the driver to refuse `certificates` from now on.
    pub(crate) fn refuse(&mut self, certificates: BTreeSet<CertificateFingerprint>) {
        self.effects.push(Effect::Refuse { certificates });
    }

    /// Where the answer of `token` goes (once).
    pub(crate) fn route_of(&mut self, token: Token) -> Option<Route> {
        self.routes.remove(&token)
    }

    /// What waited for sync `token` (once).
    pub(crate) fn after_sync(&mut self, token: SyncToken) -> Option<AfterSync> {
        self.syncs.remove(&token)
    }

    /// Hands the decided effects to the driver.
    pub(crate) fn drain(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Outgoing requests and syncs still awaited.
    pub(crate) fn awaited(&self) -> (usize, usize) {
        (self.routes.len(), self.syncs.len())
    }
}
