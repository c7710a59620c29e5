//! Hash trees for anti-entropy: one tree per (partition, N), as Riak keeps
//! one per index and N. Pure: no I/O.
//!
//! A leaf (segment) holds the XOR of the 128-bit hashes of `(key, version
//! digest)` of the keys that fall in it; an inner node holds the XOR of its
//! children. XOR makes every change local: inserting, changing or removing a
//! key XORs one delta into one leaf and each node on its path to the root,
//! with no rebuild. Two trees are compared top-down, descending only into
//! branches whose hashes differ.
//!
//! - [`tree`]: [`MerkleTree`], its [`TreeShape`] and [`diff`].
//! - [`hash`]: [`leaf_hash`], a key's leaf contribution, and [`key_segment`].

pub mod hash;
pub mod tree;

pub use hash::{key_segment, leaf_hash, Hash128};
pub use tree::{diff, MerkleTree, NodeIndex, ShapeError, TreeShape};
