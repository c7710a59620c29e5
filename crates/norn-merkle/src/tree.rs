//! The tree and its diff.

use serde::{Deserialize, Serialize};

use crate::hash::{key_segment, leaf_hash, Hash128};

/// Fewest and most levels below the root.
const DEPTH_RANGE: std::ops::RangeInclusive<u8> = 1..=4;
/// Allowed fanouts (children per inner node).
const FANOUT_RANGE: std::ops::RangeInclusive<u32> = 2..=64;

/// The shape of a tree: `fanout^depth` leaves. Replicas can only compare
/// trees of one shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TreeShape {
    /// Children per inner node: a power of two, 2..=64.
    pub fanout: u32,
    /// Levels below the root, 1..=4.
    pub depth: u8,
}

/// A shape outside the bounds above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tree shape must have a power-of-two fanout in {FANOUT_RANGE:?} and depth in {DEPTH_RANGE:?}, got fanout {fanout} depth {depth}")]
pub struct ShapeError {
    pub fanout: u32,
    pub depth: u8,
}

impl Default for TreeShape {
    /// 16 x 16 = 256 segments: a partition of 100,000 keys puts about 400
    /// keys in a segment, and an exchange of equal trees sends one hash.
    fn default() -> Self {
        TreeShape {
            fanout: 16,
            depth: 2,
        }
    }
}

impl TreeShape {
    pub fn new(fanout: u32, depth: u8) -> Result<TreeShape, ShapeError> {
        let valid = fanout.is_power_of_two()
            && FANOUT_RANGE.contains(&fanout)
            && DEPTH_RANGE.contains(&depth);
        if valid {
            Ok(TreeShape { fanout, depth })
        } else {
            Err(ShapeError { fanout, depth })
        }
    }

    /// Number of leaves (segments).
    pub fn segments(&self) -> u32 {
        self.fanout.pow(u32::from(self.depth))
    }

    fn level_width(&self, level: u8) -> u32 {
        self.fanout.pow(u32::from(level))
    }
}

/// A node of a tree: `level` 0 is the root, `level == depth` the leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeIndex {
    pub level: u8,
    pub index: u32,
}

/// A hash tree over the keys of one (partition, N).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    shape: TreeShape,
    /// `levels[l]` holds the `fanout^l` node hashes of level `l`.
    levels: Vec<Vec<Hash128>>,
}

impl MerkleTree {
    /// The tree of no keys: every hash zero.
    pub fn new(shape: TreeShape) -> MerkleTree {
        let levels = (0..=shape.depth)
            .map(|l| vec![Hash128::ZERO; shape.level_width(l) as usize])
            .collect();
        MerkleTree { shape, levels }
    }

    /// A tree from its leaf hashes, as persisted.
    pub fn from_leaves(
        shape: TreeShape,
        leaves: impl IntoIterator<Item = (u32, Hash128)>,
    ) -> MerkleTree {
        let mut tree = MerkleTree::new(shape);
        for (segment, hash) in leaves {
            tree.set_leaf(segment, hash);
        }
        tree
    }

    pub fn shape(&self) -> TreeShape {
        self.shape
    }

    pub fn root(&self) -> Hash128 {
        self.levels[0][0]
    }

    /// The hash of one node.
    pub fn node(&self, node: NodeIndex) -> Hash128 {
        self.levels[usize::from(node.level)][node.index as usize]
    }

    /// The hashes of the children of `node`, in order.
    pub fn children(&self, node: NodeIndex) -> &[Hash128] {
        let fanout = self.shape.fanout as usize;
        let start = node.index as usize * fanout;
        &self.levels[usize::from(node.level) + 1][start..start + fanout]
    }

    /// Every leaf hash, indexed by segment.
    pub fn leaves(&self) -> &[Hash128] {
        &self.levels[usize::from(self.shape.depth)]
    }

    /// Records that `key` went from version `old` to version `new` (`None`:
    /// absent), and returns the segment whose leaf changed with its new hash.
    pub fn apply(&mut self, key: &[u8], old: Option<u64>, new: Option<u64>) -> (u32, Hash128) {
        let segment = key_segment(key, self.shape.segments());
        let delta = [old, new]
            .into_iter()
            .flatten()
            .fold(Hash128::ZERO, |acc, digest| acc.xor(leaf_hash(key, digest)));
        self.xor_segment(segment, delta);
        (segment, self.leaves()[segment as usize])
    }

    /// Sets one leaf to `hash` (as persisted), updating its path.
    pub fn set_leaf(&mut self, segment: u32, hash: Hash128) {
        let delta = self.leaves()[segment as usize].xor(hash);
        self.xor_segment(segment, delta);
    }

    /// XORs `delta` into a leaf and its path to the root.
    fn xor_segment(&mut self, segment: u32, delta: Hash128) {
        let mut index = segment;
        for level in (0..=self.shape.depth).rev() {
            let node = &mut self.levels[usize::from(level)][index as usize];
            *node = node.xor(delta);
            index /= self.shape.fanout;
        }
        debug_assert_eq!(
            self.root(),
            self.leaves().iter().fold(Hash128::ZERO, |a, h| a.xor(*h)),
            "the root is the XOR of the leaves"
        );
    }
}

/// The segments whose leaves differ between two trees of one shape,
/// descending from the root only into differing branches.
pub fn diff(local: &MerkleTree, remote: &MerkleTree) -> Vec<u32> {
    assert_eq!(
        local.shape, remote.shape,
        "trees of different shapes cannot be compared"
    );
    let mut frontier = vec![NodeIndex { level: 0, index: 0 }];
    if local.root() == remote.root() {
        return Vec::new();
    }
    for level in 0..local.shape.depth {
        let mut next = Vec::new();
        for node in frontier {
            let fanout = local.shape.fanout;
            let pairs = local.children(node).iter().zip(remote.children(node));
            for (child, (l, r)) in (0u32..).zip(pairs) {
                if l != r {
                    next.push(NodeIndex {
                        level: level + 1,
                        index: node.index * fanout + child,
                    });
                }
            }
        }
        frontier = next;
    }
    frontier.into_iter().map(|n| n.index).collect()
}
