//! RFC 6962 (Certificate Transparency) Merkle tree hashing, proofs and verification, so Tactful's audit
//! log can prove that an entry is in it and that it only ever grew, in a form any CT tool can check.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The domain-separation prefix for leaves, so no leaf can be passed off as an interior node.
const LEAF_PREFIX: u8 = 0x00;

/// The domain-separation prefix for interior nodes.
const NODE_PREFIX: u8 = 0x01;

/// SHA-256(0x00 || entry), RFC 6962 §2.1.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(entry);
    hasher.finalize().into()
}

/// SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly smaller than `n`, where the RFC splits a tree of `n` leaves.
///
/// Callers only ask for `n >= 2`, so `n - 1` is at least one and the shift stays in range; the result is
/// then always at least one and smaller than `n`, which is what makes the slice splits below safe.
fn split_point(n: usize) -> usize {
    let below = n.saturating_sub(1).max(1);
    1 << (usize::BITS - 1 - below.leading_zeros())
}

/// MTH over `leaves` (already leaf-hashed), computed directly from the RFC's recursive definition
/// (split at the largest power of two smaller than n). Used by verification; O(n) time, O(log n) stack.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [only] => *only,
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&root_of(left), &root_of(right))
        }
    }
}

/// The right edge of an append-only tree: the roots of its perfect subtrees, largest first. Enough to
/// append a leaf and to compute the root in O(log n), so a log can keep it in one database row.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "FrontierParts")]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

/// What a stored frontier deserializes into before its node count is checked, so a damaged or
/// hand-edited row is refused instead of producing wrong roots later.
#[derive(serde::Deserialize)]
struct FrontierParts {
    size: u64,
    nodes: Vec<Hash>,
}

/// A stored frontier whose node count does not match its size.
#[derive(Debug, thiserror::Error)]
#[error("a Merkle frontier of {size} leaves must hold {expected} subtree roots, not {found}")]
struct InvalidFrontier {
    size: u64,
    expected: u32,
    found: usize,
}

impl TryFrom<FrontierParts> for Frontier {
    type Error = InvalidFrontier;

    fn try_from(parts: FrontierParts) -> Result<Self, Self::Error> {
        Frontier::checked(parts.size, parts.nodes)
    }
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Builds a frontier only if it has one node per set bit of `size`, the one shape `push` and `root`
    /// rely on.
    fn checked(size: u64, nodes: Vec<Hash>) -> Result<Frontier, InvalidFrontier> {
        let expected = size.count_ones();
        if usize::try_from(expected).ok() == Some(nodes.len()) {
            Ok(Frontier { size, nodes })
        } else {
            Err(InvalidFrontier { size, expected, found: nodes.len() })
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash, merging the equal-sized perfect subtrees it completes.
    ///
    /// A frontier that already holds `u64::MAX` leaves cannot count one more; only crafted bytes can
    /// produce one, and it is left unchanged rather than wrapping its size or panicking.
    pub fn push(&mut self, leaf: Hash) {
        let Some(new_size) = self.size.checked_add(1) else {
            return;
        };
        // Each trailing one bit of the old size is a perfect subtree of the same height as the one being
        // carried, so the two merge, exactly like carrying in binary addition.
        let mut carried = leaf;
        let mut remaining = self.size;
        while remaining & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                break;
            };
            carried = node_hash(&left, &carried);
            remaining >>= 1;
        }
        self.nodes.push(carried);
        self.size = new_size;
    }

    /// The RFC 6962 root of the tree so far (equal to root_of over all pushed leaves).
    pub fn root(&self) -> Hash {
        // The RFC splits off the largest perfect subtree first, so the root is the right-to-left fold of
        // the subtree roots: the smallest two join first and each larger one becomes a left child.
        let mut smallest_first = self.nodes.iter().rev();
        match smallest_first.next() {
            None => empty_root(),
            Some(last) => smallest_first.fold(*last, |right, left| node_hash(left, &right)),
        }
    }

    /// Compact binary form for storage: 8-byte big-endian size then the node hashes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(8 + 32 * self.nodes.len());
        bytes.extend_from_slice(&self.size.to_be_bytes());
        for node in &self.nodes {
            bytes.extend_from_slice(node);
        }
        bytes
    }

    /// Rejects bytes whose node count does not match the popcount of the size.
    pub fn from_bytes(bytes: &[u8]) -> Option<Frontier> {
        let (size, rest) = bytes.split_first_chunk::<8>()?;
        let (nodes, trailing) = rest.as_chunks::<32>();
        if !trailing.is_empty() {
            return None;
        }
        Frontier::checked(u64::from_be_bytes(*size), nodes.to_vec()).ok()
    }
}

/// Audit path for leaf `index` in the tree of `leaves` (RFC 6962 §2.1.1). None if index out of range.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Option<Vec<Hash>> {
    let index = usize::try_from(index).ok()?;
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    audit_path(leaves, index, &mut proof);
    Some(proof)
}

/// PATH(m, D[n]) from RFC 6962 §2.1.1, appending to `proof` from the leaf's sibling up to the root's
/// child, the order verifiers consume it in. Requires `index < leaves.len()`.
fn audit_path(leaves: &[Hash], index: usize, proof: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let split = split_point(leaves.len());
    let (left, right) = leaves.split_at(split);
    if index < split {
        audit_path(left, index, proof);
        proof.push(root_of(right));
    } else {
        audit_path(right, index - split, proof);
        proof.push(root_of(left));
    }
}

/// Whether `proof` shows `leaf` at `index` in a tree of `size` with root `root` (RFC 9162 §2.1.3.2
/// algorithm).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    // `node` is the leaf's position and `last` the tree's last position at the current level; both are
    // shifted up one level per proof element, so the proof is exactly as long as the path.
    let mut node = index;
    let mut last = size - 1;
    let mut hash = *leaf;
    for sibling in proof {
        if last == 0 {
            return false;
        }
        if node & 1 == 1 || node == last {
            hash = node_hash(sibling, &hash);
            // A right-edge node with no right sibling is promoted unchanged, so skip the levels where it
            // is a left child with nothing beside it.
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    last == 0 && hash == *root
}

/// Consistency proof between the first `old_size` leaves and all of `leaves` (RFC 6962 §2.1.2). None if
/// old_size > len.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Option<Vec<Hash>> {
    let old_size = usize::try_from(old_size).ok()?;
    if old_size > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    // The RFC defines proofs for 0 < m < n; the empty tree and the tree itself need no evidence.
    if old_size != 0 {
        subproof(leaves, old_size, true, &mut proof);
    }
    Some(proof)
}

/// SUBPROOF(m, D[n], b) from RFC 6962 §2.1.2. `known` says whether the verifier already holds the root
/// of the first `old_size` leaves of this subtree, in which case it is left out. Requires
/// `0 < old_size <= leaves.len()`.
fn subproof(leaves: &[Hash], old_size: usize, known: bool, proof: &mut Vec<Hash>) {
    if old_size == leaves.len() {
        if !known {
            proof.push(root_of(leaves));
        }
        return;
    }
    let split = split_point(leaves.len());
    let (left, right) = leaves.split_at(split);
    if old_size <= split {
        subproof(left, old_size, known, proof);
        proof.push(root_of(right));
    } else {
        subproof(right, old_size - split, false, proof);
        proof.push(root_of(left));
    }
}

/// Whether `proof` shows the tree of `new_size`/`new_root` extends the one of `old_size`/`old_root`
/// (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == 0 {
        // Every tree extends the empty one, whose root is fixed; for two empty trees the new root must
        // be that same fixed root.
        return proof.is_empty() && *old_root == empty_root() && (new_size != 0 || new_root == old_root);
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    // Between two different non-empty sizes there is always at least one new subtree to show.
    if proof.is_empty() {
        return false;
    }
    // When the old tree is a perfect subtree of the new one, the proof leaves out its root because the
    // verifier already has it; the walk then starts from the old root itself.
    let (start, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some(split) => split,
            None => return false,
        }
    };
    let mut node = old_size - 1;
    let mut last = new_size - 1;
    // Climb past the levels where the old tree's last node is a right child already covered by `start`.
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }
    // `old` rebuilds the old root and `new` the new root from the same path, so the proof only verifies
    // if the old tree is literally the left part of the new one.
    let mut old = *start;
    let mut new = *start;
    for sibling in rest {
        if last == 0 {
            return false;
        }
        if node & 1 == 1 || node == last {
            old = node_hash(sibling, &old);
            new = node_hash(sibling, &new);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            new = node_hash(&new, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    last == 0 && old == *old_root && new == *new_root
}

#[cfg(test)]
mod tests;
