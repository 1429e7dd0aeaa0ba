//! Known answers from the Certificate Transparency reference tests, so the log stays checkable by
//! standard CT tooling, and properties over random trees that catch proofs accepting too much or too little.

use super::*;
use proptest::prelude::*;
use proptest::sample::Index;

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex digit"))
        .collect()
}

fn hash(text: &str) -> Hash {
    unhex(text).try_into().expect("a 32-byte hash")
}

fn hashes(texts: &[&str]) -> Vec<Hash> {
    texts.iter().map(|text| hash(text)).collect()
}

fn flipped(value: &Hash, bit: usize) -> Hash {
    let mut value = *value;
    value[bit / 8 % 32] ^= 1 << (bit % 8);
    value
}

// The reference tree and its expected values are copied from two independent sources that agree on every
// value they share:
//   google/certificate-transparency, cpp/merkletree/merkle_tree_test.cc
//     (kSHA256EmptyTreeHash, kInputs, kSHA256Roots, kSHA256Paths, kSHA256Proofs)
//   transparency-dev/merkle, proof/verify_test.go
//     (sha256EmptyTreeHash, leaves, roots, inclusionProofs, consistencyProofs; it adds the 6 -> 7 proof)
// Both number leaves from 1 in their path tables; the tables below keep that numbering so they can be
// compared with the sources line by line, and subtract one where the API takes a 0-based index.

const EMPTY_TREE: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const INPUTS: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

/// The root after each of the first 1..=8 inputs is appended.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf numbered from 1, tree size, audit path).
const PATHS: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, consistency proof).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn reference_leaves() -> Vec<Hash> {
    INPUTS.iter().map(|input| leaf_hash(&unhex(input))).collect()
}

fn reference_root(size: u64) -> Hash {
    if size == 0 { hash(EMPTY_TREE) } else { hash(ROOTS[usize::try_from(size).expect("small") - 1]) }
}

/// Distinct leaves for a random tree; distinct because a tree with two equal leaves legitimately accepts
/// one leaf's proof at the other's index, which would hide real index mistakes.
fn random_leaves(seed: u64, count: usize) -> Vec<Hash> {
    (0..count as u64).map(|at| leaf_hash(&[seed.to_be_bytes(), at.to_be_bytes()].concat())).collect()
}

#[test]
fn hashes_match_the_rfc_6962_hasher() {
    assert_eq!(empty_root(), hash(EMPTY_TREE));
    // From transparency-dev/merkle, rfc6962/rfc6962_test.go: the empty leaf differs from the empty tree.
    assert_eq!(leaf_hash(b""), hash("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"));
    assert_eq!(
        leaf_hash(b"L123456"),
        hash("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    );
    // A node is not the leaf hash of its children's concatenation, which is what the prefixes are for.
    let (left, right) = (leaf_hash(b"Hello"), leaf_hash(b"World"));
    assert_ne!(node_hash(&left, &right), leaf_hash(&[left, right].concat()));
    assert_ne!(node_hash(&left, &right), node_hash(&right, &left));
}

#[test]
fn roots_of_the_reference_tree_match_at_every_size() {
    let leaves = reference_leaves();
    assert_eq!(root_of(&[]), hash(EMPTY_TREE));
    assert_eq!(Frontier::new().root(), hash(EMPTY_TREE));
    let mut frontier = Frontier::new();
    for (size, expected) in (1..).zip(ROOTS) {
        frontier.push(leaves[size - 1]);
        assert_eq!(root_of(&leaves[..size]), hash(expected), "root_of at size {size}");
        assert_eq!(frontier.root(), hash(expected), "frontier at size {size}");
        assert_eq!(frontier.size(), size as u64);
    }
}

#[test]
fn audit_paths_of_the_reference_tree_match() {
    let leaves = reference_leaves();
    for (leaf, size, path) in PATHS {
        let tree = &leaves[..size as usize];
        let expected = hashes(path);
        assert_eq!(inclusion_proof(tree, leaf - 1), Some(expected.clone()), "leaf {leaf} of {size}");
        assert!(verify_inclusion(&tree[leaf as usize - 1], leaf - 1, size, &expected, &reference_root(size)));
    }
    assert_eq!(inclusion_proof(&leaves, 8), None);
    assert_eq!(inclusion_proof(&[], 0), None);
}

/// The corruptions transparency-dev/merkle's proof/verify_test.go (corruptInclusionProof) tries, each of
/// which must be refused.
fn assert_inclusion_corruptions_fail(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) {
    let some_hash = hash("abacaba000000000000000000000000000000000000000000060061e00123456");
    let with = |front: &[Hash], back: &[Hash]| [front, proof, back].concat();
    let mut probes: Vec<(String, Hash, u64, u64, Vec<Hash>, Hash)> = vec![
        ("index - 1".into(), *leaf, index.wrapping_sub(1), size, proof.to_vec(), *root),
        ("index + 1".into(), *leaf, index + 1, size, proof.to_vec(), *root),
        ("index ^ 2".into(), *leaf, index ^ 2, size, proof.to_vec(), *root),
        ("size * 2".into(), *leaf, index, size * 2, proof.to_vec(), *root),
        ("size / 2".into(), *leaf, index, size / 2, proof.to_vec(), *root),
        ("wrong leaf".into(), leaf_hash(b"WrongLeaf"), index, size, proof.to_vec(), *root),
        ("empty root".into(), *leaf, index, size, proof.to_vec(), empty_root()),
        ("random root".into(), *leaf, index, size, proof.to_vec(), some_hash),
        ("trailing zeros".into(), *leaf, index, size, with(&[], &[[0; 32]]), *root),
        ("trailing root".into(), *leaf, index, size, with(&[], &[*root]), *root),
        ("preceding zeros".into(), *leaf, index, size, with(&[[0; 32]], &[]), *root),
        ("preceding root".into(), *leaf, index, size, with(&[*root], &[]), *root),
    ];
    for at in 0..proof.len() {
        let mut wrong = proof.to_vec();
        wrong[at] = flipped(&wrong[at], 3);
        probes.push((format!("proof[{at}] bit 3"), *leaf, index, size, wrong, *root));
    }
    if let Some((_, shorter)) = proof.split_last() {
        probes.push(("removed component".into(), *leaf, index, size, shorter.to_vec(), *root));
    }
    if let [first, rest @ ..] = proof {
        let inserted = [&[*first, some_hash][..], rest].concat();
        probes.push(("inserted component".into(), *leaf, index, size, inserted, *root));
    }
    for (what, leaf, index, size, proof, root) in probes {
        assert!(!verify_inclusion(&leaf, index, size, &proof, &root), "accepted with {what}");
    }
}

#[test]
fn corrupted_reference_audit_paths_are_refused() {
    let leaves = reference_leaves();
    for (leaf, size, path) in PATHS {
        let index = leaf - 1;
        assert_inclusion_corruptions_fail(
            &leaves[index as usize],
            index,
            size,
            &hashes(path),
            &reference_root(size),
        );
    }
}

#[test]
fn inclusion_in_degenerate_trees_is_refused() {
    let some_leaf = leaf_hash(b"data");
    for (index, size) in [(0, 0), (1, 0), (1, 1), (2, 1), (u64::MAX, u64::MAX)] {
        assert!(!verify_inclusion(&some_leaf, index, size, &[], &some_leaf), "{index} of {size}");
        assert!(!verify_inclusion(&some_leaf, index, size, &[], &empty_root()), "{index} of {size}");
    }
    // In a one-leaf tree the root is the leaf hash itself and the path is empty.
    assert!(verify_inclusion(&some_leaf, 0, 1, &[], &some_leaf));
    assert!(!verify_inclusion(&some_leaf, 0, 1, &[], &empty_root()));
    assert!(!verify_inclusion(&some_leaf, 0, 1, &[some_leaf], &some_leaf));
}

#[test]
fn consistency_proofs_of_the_reference_tree_match() {
    let leaves = reference_leaves();
    for (old_size, new_size, expected) in CONSISTENCY {
        let expected = hashes(expected);
        let made = consistency_proof(&leaves[..new_size as usize], old_size);
        assert_eq!(made, Some(expected.clone()), "{old_size} -> {new_size}");
        assert!(verify_consistency(
            old_size,
            &reference_root(old_size),
            new_size,
            &reference_root(new_size),
            &expected,
        ));
    }
    assert_eq!(consistency_proof(&leaves[..5], 6), None);
    assert_eq!(consistency_proof(&leaves, 0), Some(Vec::new()));
    assert_eq!(consistency_proof(&leaves, 8), Some(Vec::new()));
    assert_eq!(consistency_proof(&[], 0), Some(Vec::new()));
}

#[test]
fn corrupted_reference_consistency_proofs_are_refused() {
    // The corruptions transparency-dev/merkle's proof/verify_test.go (corruptConsistencyProof) tries.
    let wrong_root = leaf_hash(b"WrongRoot");
    for (old_size, new_size, proof) in CONSISTENCY {
        let proof = hashes(proof);
        let Some((last, shorter)) = proof.split_last() else {
            continue;
        };
        let (old_root, new_root) = (reference_root(old_size), reference_root(new_size));
        let with = |front: &[Hash], back: &[Hash]| [front, &proof, back].concat();
        let mut probes: Vec<(String, u64, Hash, u64, Hash, Vec<Hash>)> = vec![
            ("old size - 1".into(), old_size - 1, old_root, new_size, new_root, proof.clone()),
            ("old size + 1".into(), old_size + 1, old_root, new_size, new_root, proof.clone()),
            ("old size ^ 2".into(), old_size ^ 2, old_root, new_size, new_root, proof.clone()),
            ("new size * 2".into(), old_size, old_root, new_size * 2, new_root, proof.clone()),
            ("new size / 2".into(), old_size, old_root, new_size / 2, new_root, proof.clone()),
            ("wrong old root".into(), old_size, wrong_root, new_size, new_root, proof.clone()),
            ("wrong new root".into(), old_size, old_root, new_size, wrong_root, proof.clone()),
            ("swapped roots".into(), old_size, new_root, new_size, old_root, proof.clone()),
            ("empty proof".into(), old_size, old_root, new_size, new_root, Vec::new()),
            ("trailing zeros".into(), old_size, old_root, new_size, new_root, with(&[], &[[0; 32]])),
            ("trailing old root".into(), old_size, old_root, new_size, new_root, with(&[], &[old_root])),
            ("trailing new root".into(), old_size, old_root, new_size, new_root, with(&[], &[new_root])),
            ("preceding zeros".into(), old_size, old_root, new_size, new_root, with(&[[0; 32]], &[])),
            ("preceding old root".into(), old_size, old_root, new_size, new_root, with(&[old_root], &[])),
            ("preceding new root".into(), old_size, old_root, new_size, new_root, with(&[new_root], &[])),
            ("preceding proof[0]".into(), old_size, old_root, new_size, new_root, with(&[proof[0]], &[])),
            ("repeated last".into(), old_size, old_root, new_size, new_root, with(&[], &[*last])),
            ("truncated".into(), old_size, old_root, new_size, new_root, shorter.to_vec()),
        ];
        for at in 0..proof.len() {
            let mut wrong = proof.clone();
            wrong[at] = flipped(&wrong[at], 4);
            probes.push((format!("proof[{at}] bit 4"), old_size, old_root, new_size, new_root, wrong));
        }
        for (what, old_size, old_root, new_size, new_root, proof) in probes {
            assert!(
                !verify_consistency(old_size, &old_root, new_size, &new_root, &proof),
                "{old_size} -> {new_size} accepted with {what}"
            );
        }
    }
}

#[test]
fn consistency_edge_cases_follow_the_rfc() {
    let empty = empty_root();
    let (one, two) = (leaf_hash(b"one"), leaf_hash(b"two"));
    // Equal sizes need no proof, and are consistent only when the roots are the same.
    assert!(verify_consistency(0, &empty, 0, &empty, &[]));
    assert!(verify_consistency(1, &one, 1, &one, &[]));
    assert!(!verify_consistency(1, &one, 1, &two, &[]));
    assert!(!verify_consistency(1, &one, 1, &one, &[empty]));
    assert!(!verify_consistency(0, &empty, 0, &one, &[]));
    // Every tree extends the empty tree, but only the empty tree's real root stands for size 0.
    assert!(verify_consistency(0, &empty, 1, &one, &[]));
    assert!(verify_consistency(0, &empty, 1_000, &two, &[]));
    assert!(!verify_consistency(0, &one, 1, &one, &[]));
    assert!(!verify_consistency(0, &one, 0, &one, &[]));
    assert!(!verify_consistency(0, &empty, 1, &one, &[empty]));
    assert!(!verify_consistency(0, &empty, 0, &empty, &[empty]));
    // Trees do not shrink.
    assert!(!verify_consistency(1, &one, 0, &empty, &[]));
    assert!(!verify_consistency(2, &one, 1, &one, &[]));
    // Between different non-empty sizes an empty proof proves nothing, even for a perfect old tree.
    assert!(!verify_consistency(1, &one, 2, &two, &[]));
    assert!(!verify_consistency(4, &one, 5, &two, &[]));
    // Sizes near the top of the range do not overflow.
    assert!(!verify_consistency(u64::MAX - 1, &one, u64::MAX, &two, &[one, two]));
    assert!(!verify_consistency(1, &one, u64::MAX, &two, &[one; 70]));
}

#[test]
fn frontier_bytes_refuse_a_node_count_that_does_not_match_the_size() {
    assert_eq!(Frontier::from_bytes(&[]), None);
    assert_eq!(Frontier::from_bytes(&[0; 7]), None);
    assert_eq!(Frontier::from_bytes(&[0; 8]), Some(Frontier::new()));
    assert_eq!(Frontier::from_bytes(&[[0; 7].as_slice(), &[1]].concat()), None);
    let node = [7u8; 32];
    let three = [&3u64.to_be_bytes()[..], &node, &node].concat();
    assert_eq!(Frontier::from_bytes(&three).map(|frontier| frontier.size()), Some(3));
    assert_eq!(Frontier::from_bytes(&[&3u64.to_be_bytes()[..], &node].concat()), None);
    assert_eq!(Frontier::from_bytes(&[&4u64.to_be_bytes()[..], &node, &node].concat()), None);
}

#[test]
fn a_full_frontier_neither_panics_nor_wraps() {
    let full = [&u64::MAX.to_be_bytes()[..], &[9u8; 32 * 64]].concat();
    let mut frontier = Frontier::from_bytes(&full).expect("64 nodes for 64 set bits");
    let root = frontier.root();
    frontier.push(leaf_hash(b"one too many"));
    assert_eq!(frontier.size(), u64::MAX);
    assert_eq!(frontier.root(), root);
}

#[test]
fn frontier_json_is_checked_like_its_bytes() {
    let mut frontier = Frontier::new();
    for leaf in reference_leaves().into_iter().take(5) {
        frontier.push(leaf);
    }
    let json = serde_json::to_string(&frontier).expect("serializes");
    assert_eq!(serde_json::from_str::<Frontier>(&json).expect("deserializes"), frontier);
    // Sizes 4 and 7 need one and three subtree roots, so the two stored here must be refused.
    for size in [4, 7] {
        let mut value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        value["size"] = size.into();
        assert!(serde_json::from_value::<Frontier>(value).is_err(), "size {size} with two nodes");
    }
}

proptest! {
    #[test]
    fn frontier_root_matches_the_recursive_definition(
        seed in any::<u64>(),
        count in 0usize..300,
        stored_at in any::<Index>(),
    ) {
        let leaves = random_leaves(seed, count);
        let stop = stored_at.index(count + 1);
        let mut frontier = Frontier::new();
        for leaf in &leaves[..stop] {
            frontier.push(*leaf);
        }
        // The log keeps the frontier in a row between appends, so resume from its stored form.
        let mut frontier = Frontier::from_bytes(&frontier.to_bytes()).expect("own bytes load");
        prop_assert_eq!(frontier.root(), root_of(&leaves[..stop]));
        for leaf in &leaves[stop..] {
            frontier.push(*leaf);
        }
        prop_assert_eq!(frontier.size(), count as u64);
        prop_assert_eq!(frontier.root(), root_of(&leaves));
    }

    #[test]
    fn frontier_bytes_round_trip_and_refuse_truncation_or_extension(
        seed in any::<u64>(),
        count in 0usize..300,
        cut in any::<Index>(),
        extra in proptest::collection::vec(any::<u8>(), 1..80),
    ) {
        let mut frontier = Frontier::new();
        for leaf in random_leaves(seed, count) {
            frontier.push(leaf);
        }
        let bytes = frontier.to_bytes();
        prop_assert_eq!(bytes.len(), 8 + 32 * count.count_ones() as usize);
        prop_assert_eq!(Frontier::from_bytes(&bytes), Some(frontier.clone()));
        prop_assert_eq!(Frontier::from_bytes(&bytes[..cut.index(bytes.len())]), None);
        prop_assert_eq!(Frontier::from_bytes(&[bytes.as_slice(), &extra].concat()), None);
        let json = serde_json::to_string(&frontier).expect("serializes");
        prop_assert_eq!(serde_json::from_str::<Frontier>(&json).ok(), Some(frontier));
    }
}

#[test]
fn every_proof_verifies_in_every_tree_up_to_64_leaves() {
    // The edge cases (sizes 0 and 1, perfect trees, the last leaf, old size equal to new) live in small
    // trees, so those are covered exhaustively rather than left to sampling.
    for count in 0..=64 {
        let leaves = random_leaves(count, count as usize);
        let root = root_of(&leaves);
        let mut old = Frontier::new();
        for (at, leaf) in (0..=count).zip(leaves.iter().map(Some).chain([None])) {
            let proof = consistency_proof(&leaves, at).expect("old size in range");
            assert!(verify_consistency(at, &old.root(), count, &root, &proof), "{at} -> {count}");
            if let Some(leaf) = leaf {
                let proof = inclusion_proof(&leaves, at).expect("index in range");
                assert!(verify_inclusion(leaf, at, count, &proof, &root), "leaf {at} of {count}");
                old.push(*leaf);
            }
        }
        assert_eq!(old.root(), root);
    }
}

proptest! {
    // Each case makes a proof for every leaf, quadratic in the tree size, so fewer cases keep the
    // unoptimized test build quick; every size up to 64 is covered exhaustively above.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn every_inclusion_proof_verifies(seed in any::<u64>(), count in 1usize..300) {
        let leaves = random_leaves(seed, count);
        let root = root_of(&leaves);
        for (index, leaf) in (0u64..).zip(&leaves) {
            let proof = inclusion_proof(&leaves, index).expect("index in range");
            prop_assert!(
                verify_inclusion(leaf, index, count as u64, &proof, &root),
                "leaf {} of {}", index, count
            );
        }
        prop_assert_eq!(inclusion_proof(&leaves, count as u64), None);
    }

    #[test]
    fn every_consistency_proof_verifies(seed in any::<u64>(), count in 0usize..300) {
        let leaves = random_leaves(seed, count);
        let new_root = root_of(&leaves);
        let new_size = count as u64;
        // The old roots come from a frontier, which also cross-checks it against the proofs.
        let mut old = Frontier::new();
        for old_size in 0..=new_size {
            let proof = consistency_proof(&leaves, old_size).expect("old size in range");
            prop_assert!(
                verify_consistency(old_size, &old.root(), new_size, &new_root, &proof),
                "{} -> {}", old_size, new_size
            );
            if let Some(next) = leaves.get(old_size as usize) {
                old.push(*next);
            }
        }
        prop_assert_eq!(consistency_proof(&leaves, new_size + 1), None);
    }
}

proptest! {
    #[test]
    fn a_tampered_inclusion_claim_fails(
        seed in any::<u64>(),
        count in 1usize..300,
        picked in any::<Index>(),
        other in any::<Index>(),
        leaf_bit in 0usize..256,
        root_bit in 0usize..256,
        proof_at in any::<Index>(),
        proof_bit in 0usize..256,
    ) {
        let leaves = random_leaves(seed, count);
        let size = count as u64;
        let index = picked.index(count);
        let leaf = leaves[index];
        let index = index as u64;
        let root = root_of(&leaves);
        let proof = inclusion_proof(&leaves, index).expect("index in range");
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root));

        prop_assert!(!verify_inclusion(&flipped(&leaf, leaf_bit), index, size, &proof, &root));
        prop_assert!(!verify_inclusion(&leaf, index, size, &proof, &flipped(&root, root_bit)));
        if !proof.is_empty() {
            let mut wrong = proof.clone();
            let at = proof_at.index(proof.len());
            wrong[at] = flipped(&wrong[at], proof_bit);
            prop_assert!(!verify_inclusion(&leaf, index, size, &wrong, &root));
            prop_assert!(!verify_inclusion(&leaf, index, size, &proof[1..], &root));
            prop_assert!(!verify_inclusion(&leaf, index, size, &proof[..proof.len() - 1], &root));
        }
        prop_assert!(!verify_inclusion(&leaf, index, size, &[proof.as_slice(), &[root]].concat(), &root));

        // Every other position holds a different leaf, so the same proof must not place this leaf there.
        let wrong_index = other.index(count) as u64;
        if wrong_index != index {
            prop_assert!(!verify_inclusion(&leaf, wrong_index, size, &proof, &root));
        }
        prop_assert!(!verify_inclusion(&leaf, index + size, size, &proof, &root));
        // Doubling or halving the size always changes the path's length. Some nearby sizes share this
        // leaf's path shape (index 0 of 6 and of 7, say) and accept the same proof against the same root:
        // the size is only meaningful together with the root it was published with.
        prop_assert!(!verify_inclusion(&leaf, index, size * 2, &proof, &root));
        prop_assert!(!verify_inclusion(&leaf, index, size / 2, &proof, &root));
    }

    #[test]
    fn a_consistency_proof_fails_for_a_rewritten_past_or_a_flipped_bit(
        seed in any::<u64>(),
        count in 1usize..300,
        old_pick in any::<Index>(),
        changed in any::<Index>(),
        leaf_bit in 0usize..256,
        root_bit in 0usize..256,
        proof_at in any::<Index>(),
        proof_bit in 0usize..256,
    ) {
        let leaves = random_leaves(seed, count);
        let old_size = 1 + old_pick.index(count);
        let (old, new) = (old_size as u64, count as u64);
        let old_root = root_of(&leaves[..old_size]);
        let new_root = root_of(&leaves);
        let proof = consistency_proof(&leaves, old).expect("old size in range");
        prop_assert!(verify_consistency(old, &old_root, new, &new_root, &proof));

        // Rewrite one of the old leaves: the old tree head now describes a different history, and neither
        // the honest proof nor one made from the rewritten history may link it to the real new root.
        let mut rewritten = leaves.clone();
        let at = changed.index(old_size);
        rewritten[at] = flipped(&rewritten[at], leaf_bit);
        let forged_root = root_of(&rewritten[..old_size]);
        let forged_proof = consistency_proof(&rewritten, old).expect("old size in range");
        prop_assert!(!verify_consistency(old, &forged_root, new, &new_root, &proof));
        prop_assert!(!verify_consistency(old, &forged_root, new, &new_root, &forged_proof));

        prop_assert!(!verify_consistency(old, &flipped(&old_root, root_bit), new, &new_root, &proof));
        prop_assert!(!verify_consistency(old, &old_root, new, &flipped(&new_root, root_bit), &proof));
        if !proof.is_empty() {
            let mut wrong = proof.clone();
            let at = proof_at.index(proof.len());
            wrong[at] = flipped(&wrong[at], proof_bit);
            prop_assert!(!verify_consistency(old, &old_root, new, &new_root, &wrong));
            prop_assert!(!verify_consistency(old, &old_root, new, &new_root, &proof[..proof.len() - 1]));
            prop_assert!(!verify_consistency(old, &old_root, new, &new_root, &proof[1..]));
        }
        let extended = [proof.as_slice(), &[new_root]].concat();
        prop_assert!(!verify_consistency(old, &old_root, new, &new_root, &extended));
    }
}
