//! The node's persistent identity, in the storage's meta column family.
//!
//! - `node-id`: from the node's certificate; a data directory is bound to
//!   the node that created it.
//! - `incarnation`: bumped on every start, so that peers tell a restarted
//!   node's heartbeats from its old ones.
//!
//! The node's DVV actors are not stored: every start is a new
//! [`norn_clock::Lifetime`] with a random id, so nothing a data directory
//! lost or rolled back (a wipe, a restore from a backup, a power cut) can
//! make the node issue a dot twice.

use norn_ring::NodeId;
use norn_storage::Storage;

use crate::error::NodeError;

const NODE_ID: &str = "node-id";
const INCARNATION: &str = "incarnation";

/// Who this node is, for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub node: NodeId,
    pub incarnation: u64,
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
    let incarnation = read_u64(storage, INCARNATION)?.unwrap_or(0) + 1;
    storage.put_meta(INCARNATION, &incarnation.to_be_bytes())?;
    Ok(Identity { node, incarnation })
}
