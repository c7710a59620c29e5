//! The clients of a simulation and what they observed.
//!
//! - Set-add (Jepsen style): a client reads a set key (R=2), merges the
//!   siblings by union, adds a unique element and writes the set back with
//!   the context it read (W=2, DW=2). Every element is recorded as
//!   acknowledged, failed, or unknown (no answer).
//! - Register: a client reads a register key and writes a new unique value
//!   with the context it read.
//! - Blind: a client writes a unique value with no context (it adds a
//!   sibling), some of them large enough that a third sibling would pass
//!   the object limit; or reads the key and deletes it with the context it
//!   read. Blind writes through fallbacks that handed their copies off are
//!   how a node meets keys it does not hold (riak_kv#679).

use std::collections::{BTreeMap, BTreeSet};

use norn_clock::{Context, Sibling};
use norn_proto::{ErrorCode, QuorumOptions, Request, Response, WriteReceipt};
use norn_ring::NodeId;

/// Replication factor of every workload request.
pub const N: u8 = 3;

/// Keys the set-add workload uses.
pub const SET_KEYS: [&str; 3] = ["set-0", "set-1", "set-2"];
/// Keys the register workload uses.
pub const REGISTER_KEYS: [&str; 1] = ["register-0"];
/// Keys the blind workload uses.
pub const BLIND_KEYS: [&str; 2] = ["blind-0", "blind-1"];
/// The object limit of simulated nodes: a third large sibling passes it.
pub const OBJECT_BYTES_MAX: usize = 64 << 10;
/// The size of a large blind value.
pub const LARGE_VALUE_BYTES: usize = 24 << 10;
/// Bucket of every workload key.
pub const BUCKET: &[u8] = b"sim";

/// What became of an element a client added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Acknowledged,
    Failed,
    Unknown,
}

/// Everything the clients saw.
#[derive(Debug, Default)]
pub struct History {
    /// Element -> (key, outcome).
    pub elements: BTreeMap<u32, (String, AddOutcome)>,
    /// Every register value some client tried to write.
    pub register_values: BTreeSet<Vec<u8>>,
    /// The most siblings any read of each key returned.
    pub most_siblings: BTreeMap<String, usize>,
    /// Writes of each key that may stand as siblings beside another write
    /// of the same client: unacknowledged writes (they may linger on the
    /// replicas they reached), and writes made from a read that missed the
    /// client's own previous write (a sloppy quorum's read may).
    pub extra_writers: BTreeMap<String, usize>,
    pub reads: u64,
    pub failed_reads: u64,
    /// Blind value id -> (key, outcome of its write).
    pub blind_values: BTreeMap<String, (String, AddOutcome)>,
    /// Blind value ids a refused write carried ("nothing was written"):
    /// they must never appear, unless the write was delivered twice.
    pub refused_values: BTreeSet<String>,
    /// Blind value ids of writes the network delivered twice.
    pub duplicated_values: BTreeSet<String>,
    /// Blind value ids some delete read before deleting: they may be gone.
    pub delete_attempted_over: BTreeSet<String>,
    /// Blind value ids an acknowledged delete covered, with the deletes
    /// (`del{client}-{n}`) that covered each: they must be gone, since no
    /// other write carries them, unless every node that acknowledged each
    /// such delete lost its data since.
    pub deleted: BTreeMap<String, Vec<String>>,
    /// The virtual time, as the world last set it.
    pub now: u64,
    /// Each acknowledged write (`e{element}` or a blind id): the nodes its
    /// receipt names and when it was acknowledged.
    pub acked_by: BTreeMap<String, (Vec<NodeId>, u64)>,
    /// Nodes whose data directory was lost (wiped or restored from an older
    /// copy), and when.
    pub data_lost: Vec<(NodeId, u64)>,
    /// When each restored backup was taken.
    pub backups_restored: Vec<u64>,
}

impl History {
    pub fn lost_data(&mut self, node: NodeId, at: u64) {
        self.data_lost.push((node, at));
    }

    /// A node came back from a backup taken at `taken_at`.
    pub fn restored(&mut self, node: NodeId, taken_at: u64, at: u64) {
        self.lost_data(node, at);
        self.backups_restored.push(taken_at);
    }

    /// Whether a value `write` that deletes covered may lawfully be back:
    /// every covering delete is gone with its replicas, or a node came back
    /// from a backup taken before one of them (once the tombstone is
    /// reaped, such a backup brings back what it held, as restoring any
    /// backup older than the reap grace would).
    pub fn may_return(&self, deletes: &[String]) -> bool {
        deletes.iter().all(|d| {
            self.lost_with_its_replicas(d)
                || self.acked_by.get(d).is_some_and(|(_, acked_at)| {
                    self.backups_restored.iter().any(|taken| taken < acked_at)
                })
        })
    }

    /// Whether every primary that holds `write` lost its data since it was
    /// sent: the write may be gone with them. The primaries that hold it
    /// are those that acknowledged it and those a fallback acknowledged it
    /// for (a fallback's copy moves to its primary with the hint and is
    /// dropped). A replica may have stored it, and lost it, before its
    /// acknowledgement arrived: any time since the client sent it, at most
    /// the client's timeout before the acknowledgement.
    pub fn lost_with_its_replicas(&self, write: &str) -> bool {
        let Some((nodes, acked_at)) = self.acked_by.get(write) else {
            return false;
        };
        let sent_at = acked_at.saturating_sub(crate::world::CLIENT_TIMEOUT_MS);
        nodes.iter().all(|node| {
            self.data_lost
                .iter()
                .any(|(lost, when)| lost == node && *when >= sent_at)
        })
    }

    fn acknowledged(&mut self, write: String, receipt: &WriteReceipt) {
        let mut nodes = receipt.primaries.clone();
        nodes.extend(receipt.fallbacks.iter().map(|(_, primary)| *primary));
        self.acked_by.insert(write, (nodes, self.now));
    }
}

/// The id of a blind value: its bytes up to the first `:`.
pub fn blind_id(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// A blind write came back: acknowledged, refused with nothing written,
/// failed, or unknown.
fn blind_written(id: String, response: Option<Response>, history: &mut History) {
    let outcome = match &response {
        Some(Response::Written(reply)) => {
            history.acknowledged(id.clone(), &reply.receipt);
            AddOutcome::Acknowledged
        }
        Some(Response::Error(e))
            if matches!(e.code, ErrorCode::TooLarge | ErrorCode::TooManySiblings) =>
        {
            history.refused_values.insert(id.clone());
            AddOutcome::Failed
        }
        Some(_) => AddOutcome::Failed,
        None => AddOutcome::Unknown,
    };
    if let Some(entry) = history.blind_values.get_mut(&id) {
        entry.1 = outcome;
    }
}

/// The set encoded in a value: big-endian u32s.
pub fn decode_set(bytes: &[u8]) -> BTreeSet<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn encode_set(set: &BTreeSet<u32>) -> Vec<u8> {
    set.iter().flat_map(|e| e.to_be_bytes()).collect()
}

/// The union of every live sibling's set.
pub fn union_of(siblings: &[Sibling]) -> BTreeSet<u32> {
    siblings
        .iter()
        .filter_map(|s| match s {
            Sibling::Value(bytes) => Some(decode_set(bytes)),
            Sibling::Tombstone => None,
        })
        .flatten()
        .collect()
}

#[derive(Debug)]
enum State {
    Idle,
    Reading {
        key: String,
        register: bool,
    },
    /// Writing `key`; `element` is the set element added (`None`: a
    /// register).
    Writing {
        key: String,
        element: Option<u32>,
    },
    /// Reading a blind key to delete what the read shows.
    ReadingToDelete {
        key: String,
    },
    /// A blind write of the value with id `id`.
    WritingBlind {
        id: String,
    },
    /// Deleting a blind key over a read that showed `ids`.
    Deleting {
        ids: Vec<String>,
    },
}

/// One client.
#[derive(Debug)]
pub struct Client {
    pub index: usize,
    state: State,
    next_id: u64,
    /// The id of the request awaited.
    awaiting: Option<u64>,
    sequence: u32,
    /// The context each key had after this client's last acknowledged
    /// write of it.
    last_written: BTreeMap<String, Context>,
}

/// What a client sends next: a request to a node.
#[derive(Debug)]
pub struct Call {
    pub id: u64,
    pub request: Request,
}

fn options(r: u8, w: u8) -> QuorumOptions {
    QuorumOptions {
        n: Some(N),
        r: Some(r),
        w: Some(w),
        dw: Some(w),
        ..QuorumOptions::default()
    }
}

impl Client {
    pub fn new(index: usize) -> Client {
        Client {
            index,
            state: State::Idle,
            next_id: 1,
            awaiting: None,
            sequence: 0,
            last_written: BTreeMap::new(),
        }
    }

    fn call(&mut self, request: Request) -> Call {
        let id = self.next_id;
        self.next_id += 1;
        self.awaiting = Some(id);
        Call { id, request }
    }

    /// Starts the next operation (the client must be idle): a read of
    /// `key`, which is a register key when `register`.
    pub fn start(&mut self, key: &str, register: bool) -> Call {
        self.state = State::Reading {
            key: key.to_string(),
            register,
        };
        self.call(Request::Get {
            bucket: BUCKET.to_vec(),
            key: key.as_bytes().to_vec(),
            options: options(2, 2),
            timeout_ms: None,
        })
    }

    /// Starts a blind write of a new unique value to `key` (large when
    /// `large`), with no context.
    pub fn start_blind_write(&mut self, key: &str, large: bool, history: &mut History) -> Call {
        self.sequence += 1;
        let id = format!("b{}-{}", self.index, self.sequence);
        let mut value = format!("{id}:").into_bytes();
        if large {
            value.resize(LARGE_VALUE_BYTES, b'.');
        }
        history
            .blind_values
            .insert(id.clone(), (key.to_string(), AddOutcome::Unknown));
        self.state = State::WritingBlind { id };
        self.call(Request::Put {
            bucket: BUCKET.to_vec(),
            key: key.as_bytes().to_vec(),
            value: Some(value),
            context: None,
            options: options(2, 2),
            timeout_ms: None,
            forwarded: false,
        })
    }

    /// Starts a read of `key` that deletes what it shows.
    pub fn start_delete(&mut self, key: &str) -> Call {
        self.state = State::ReadingToDelete {
            key: key.to_string(),
        };
        self.call(Request::Get {
            bucket: BUCKET.to_vec(),
            key: key.as_bytes().to_vec(),
            options: options(2, 2),
            timeout_ms: None,
        })
    }

    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Whether `id` is the request this client waits for.
    pub fn awaits(&self, id: u64) -> bool {
        self.awaiting == Some(id)
    }

    /// Takes the answer to the awaited request (`None`: it timed out);
    /// returns the next request, if the operation goes on.
    pub fn on_response(
        &mut self,
        response: Option<Response>,
        history: &mut History,
    ) -> Option<Call> {
        self.awaiting = None;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => None,
            State::ReadingToDelete { key } => self.read_to_delete(key, response, history),
            State::WritingBlind { id } => {
                blind_written(id, response, history);
                None
            }
            State::Deleting { ids } => {
                self.deleted(ids, response, history);
                None
            }
            State::Reading { key, register } => self.read(key, register, response, history),
            State::Writing { key, element } => {
                self.written(key, element, response, history);
                None
            }
        }
    }

    /// A read of a blind key came back: delete what it shows.
    fn read_to_delete(
        &mut self,
        key: String,
        response: Option<Response>,
        history: &mut History,
    ) -> Option<Call> {
        history.reads += 1;
        let Some(Response::Value(reply)) = response else {
            history.failed_reads += 1;
            return None;
        };
        let ids: Vec<String> = reply
            .siblings
            .iter()
            .filter_map(|s| match s {
                Sibling::Value(v) => Some(blind_id(v)),
                Sibling::Tombstone => None,
            })
            .collect();
        history.delete_attempted_over.extend(ids.iter().cloned());
        self.state = State::Deleting { ids };
        Some(self.call(Request::Put {
            bucket: BUCKET.to_vec(),
            key: key.into_bytes(),
            value: None,
            context: Some(reply.context),
            options: options(2, 2),
            timeout_ms: None,
            forwarded: false,
        }))
    }

    fn deleted(&mut self, ids: Vec<String>, response: Option<Response>, history: &mut History) {
        if let Some(Response::Written(reply)) = &response {
            self.sequence += 1;
            let delete = format!("del{}-{}", self.index, self.sequence);
            history.acknowledged(delete.clone(), &reply.receipt);
            for id in ids {
                history.deleted.entry(id).or_default().push(delete.clone());
            }
        }
    }

    /// A read of a set or register came back: write the next value over
    /// its context.
    fn read(
        &mut self,
        key: String,
        register: bool,
        response: Option<Response>,
        history: &mut History,
    ) -> Option<Call> {
        history.reads += 1;
        let Some(Response::Value(reply)) = response else {
            history.failed_reads += 1;
            return None;
        };
        let missed_own_write = self
            .last_written
            .get(&key)
            .is_some_and(|mine| !reply.context.descends(mine));
        if missed_own_write {
            *history.extra_writers.entry(key.clone()).or_default() += 1;
        }
        let most = history.most_siblings.entry(key.clone()).or_default();
        *most = (*most).max(reply.siblings.len());
        self.sequence += 1;
        let (value, element) = if register {
            let value = format!("c{}-{}", self.index, self.sequence).into_bytes();
            history.register_values.insert(value.clone());
            (value, None)
        } else {
            let element = self.index as u32 * 1_000_000 + self.sequence;
            let mut set = union_of(&reply.siblings);
            set.insert(element);
            history
                .elements
                .insert(element, (key.clone(), AddOutcome::Unknown));
            (encode_set(&set), Some(element))
        };
        let call = self.write(&key, value, reply.context);
        self.state = State::Writing { key, element };
        Some(call)
    }

    fn written(
        &mut self,
        key: String,
        element: Option<u32>,
        response: Option<Response>,
        history: &mut History,
    ) {
        match &response {
            Some(Response::Written(reply)) => {
                self.last_written.insert(key, reply.context.clone());
            }
            _ => *history.extra_writers.entry(key).or_default() += 1,
        }
        let Some(element) = element else { return };
        let outcome = match response {
            Some(Response::Written(reply)) => {
                history.acknowledged(format!("e{element}"), &reply.receipt);
                AddOutcome::Acknowledged
            }
            Some(_) => AddOutcome::Failed,
            None => AddOutcome::Unknown,
        };
        if let Some(entry) = history.elements.get_mut(&element) {
            entry.1 = outcome;
        }
    }

    fn write(&mut self, key: &str, value: Vec<u8>, context: Context) -> Call {
        self.call(Request::Put {
            bucket: BUCKET.to_vec(),
            key: key.as_bytes().to_vec(),
            value: Some(value),
            context: Some(context),
            options: options(2, 2),
            timeout_ms: None,
            forwarded: false,
        })
    }
}
