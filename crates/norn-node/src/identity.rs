//! The node's persistent identity, in the storage's meta column family.
//!
//! - `node-id`: from the node's certificate; a data directory is bound to
//!   the node that created it.
//! - `incarnation`: bumped on every start, so that peers tell a restarted
//!   node's heartbeats from its old ones.
//! - `actor-id`: the node's DVV actor, random when the data directory is
//!   created. A node whose data was wiped comes back as a new actor, so its
//!   new dots never collide with its old ones (riak's kv679).

use norn_ring::NodeId;
use norn_storage::Storage;

use crate::error::NodeError;

const NODE_ID: &str = "node-id";
const INCARNATION: &str = "incarnation";
const ACTOR_ID: &str = "actor-id";

/// Who this node is, for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub node: NodeId,
    pub incarnation: u64,
    pub actor: norn_clock::ActorId,
}

fn read_u64(storage: &dyn Storage, name: &'static str) -> Result<Option<u64>, NodeError> {
    match storage.get_meta(name)? {
        None => Ok(None),
        Some(bytes) => {
            let bytes: [u8; 8] = bytes.try_into().map_err(|_| NodeError::Meta {
                what: name,
                reason: "not 8 bytes".into(),
            })?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

/// Loads the identity of the data directory, creating it on first start,
/// and bumps the incarnation. Refuses a directory of another node.
pub fn load_or_create(
    storage: &dyn Storage,
    node: NodeId,
    data_dir: &str,
) -> Result<Identity, NodeError> {
    match read_u64(storage, NODE_ID)? {
        Some(stored) if stored != node.0 => {
            return Err(NodeError::WrongDataDirectory {
                dir: data_dir.to_string(),
                stored: NodeId(stored).to_string(),
                certificate: node.to_string(),
            })
        }
        Some(_) => {}
        None => storage.put_meta(NODE_ID, &node.0.to_be_bytes())?,
    }
    let actor = match read_u64(storage, ACTOR_ID)? {
        Some(actor) => actor,
        None => {
            let actor: u64 = rand::random();
            storage.put_meta(ACTOR_ID, &actor.to_be_bytes())?;
            actor
        }
    };
    let incarnation = read_u64(storage, INCARNATION)?.unwrap_or(0) + 1;
    storage.put_meta(INCARNATION, &incarnation.to_be_bytes())?;
    Ok(Identity {
        node,
        incarnation,
        actor: norn_clock::ActorId(actor),
    })
}
