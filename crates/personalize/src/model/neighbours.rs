//! An item's pair sums with every item it was lent with, held packed (sorted by item, no hashing)
//! when bulk training builds them, and as a hash map once people are added or removed one by one:
//! packing is what makes training cheap, the map is what keeps each later update cheap.

use hashbrown::HashMap;

use super::PairAgg;
use crate::ItemIx;

/// One item's pairs. Equality is that of the pairs held, whichever way they are held.
#[derive(Debug, Clone)]
pub(super) enum Neighbours {
    /// Sorted by item, every support above zero: what bulk training builds.
    Packed(Vec<(ItemIx, PairAgg)>),
    /// What single updates build (a packed row becomes a map at its first new or dropped pair).
    Map(HashMap<ItemIx, PairAgg>),
}

impl Default for Neighbours {
    fn default() -> Self {
        Neighbours::Packed(Vec::new())
    }
}

impl PartialEq for Neighbours {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(b, pair)| other.get(b) == Some(pair))
    }
}

impl Eq for Neighbours {}

impl Neighbours {
    pub(super) fn len(&self) -> usize {
        match self {
            Neighbours::Packed(pairs) => pairs.len(),
            Neighbours::Map(pairs) => pairs.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn get(&self, b: ItemIx) -> Option<PairAgg> {
        match self {
            Neighbours::Packed(pairs) => {
                pairs.binary_search_by_key(&b, |(item, _)| *item).ok().map(|at| pairs[at].1)
            }
            Neighbours::Map(pairs) => pairs.get(&b).copied(),
        }
    }

    /// Changes the sums of the pair with `b` (starting from zero if there is none); a pair left
    /// with no support is dropped, so equal sums are equal rows.
    pub(super) fn update(&mut self, b: ItemIx, change: impl FnOnce(&mut PairAgg)) {
        if let Neighbours::Packed(pairs) = self {
            if let Ok(at) = pairs.binary_search_by_key(&b, |(item, _)| *item) {
                let mut pair = pairs[at].1;
                change(&mut pair);
                if pair.support > 0 {
                    pairs[at].1 = pair;
                    return;
                }
                // Dropping a pair: the row becomes a map, as below.
                *self = Neighbours::Map(std::mem::take(pairs).into_iter().collect());
                if let Neighbours::Map(map) = self {
                    map.remove(&b);
                }
                return;
            }
            *self = Neighbours::Map(std::mem::take(pairs).into_iter().collect());
        }
        if let Neighbours::Map(map) = self {
            let pair = map.entry(b).or_default();
            change(pair);
            if pair.support == 0 {
                map.remove(&b);
            }
        }
    }

    /// Every pair, in no particular order.
    pub(super) fn iter(&self) -> Iter<'_> {
        match self {
            Neighbours::Packed(pairs) => Iter::Packed(pairs.iter()),
            Neighbours::Map(pairs) => Iter::Map(pairs.iter()),
        }
    }

    /// Approximate bytes held.
    pub(super) fn approx_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(ItemIx, PairAgg)>();
        match self {
            Neighbours::Packed(pairs) => pairs.capacity() * entry,
            Neighbours::Map(pairs) => pairs.capacity() * (entry + 1),
        }
    }
}

pub(super) enum Iter<'a> {
    Packed(std::slice::Iter<'a, (ItemIx, PairAgg)>),
    Map(hashbrown::hash_map::Iter<'a, ItemIx, PairAgg>),
}

impl Iterator for Iter<'_> {
    type Item = (ItemIx, PairAgg);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Packed(pairs) => pairs.next().copied(),
            Iter::Map(pairs) => pairs.next().map(|(b, pair)| (*b, *pair)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Packed(pairs) => pairs.size_hint(),
            Iter::Map(pairs) => pairs.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(support: u32, weight: u32) -> PairAgg {
        PairAgg { support, weight }
    }

    /// A packed row and a map row with the same pairs are equal, and stay equal through the same
    /// updates, whether a pair is changed, added or dropped.
    #[test]
    fn packed_and_map_rows_hold_the_same_pairs_through_updates() {
        let entries = [(2, pair(1, 1)), (5, pair(2, 3)), (9, pair(1, 2))];
        let mut packed = Neighbours::Packed(entries.to_vec());
        let mut map = Neighbours::Map(entries.into_iter().collect());
        assert_eq!(packed, map);
        assert_eq!(packed.get(5), Some(pair(2, 3)));
        assert_eq!(packed.get(4), None);
        let steps: [(ItemIx, u32, i64); 4] = [(5, 1, 1), (9, 1, -1), (4, 2, 1), (5, 3, -1)];
        for (b, weight, sign) in steps {
            for row in [&mut packed, &mut map] {
                row.update(b, |p| {
                    if sign > 0 {
                        p.support += 1;
                        p.weight += weight;
                    } else {
                        p.support -= 1;
                        p.weight -= weight;
                    }
                });
            }
            assert_eq!(packed, map, "after the pair with {b}");
        }
        let mut held: Vec<(ItemIx, PairAgg)> = packed.iter().collect();
        held.sort_unstable_by_key(|(b, _)| *b);
        assert_eq!(held, [(2, pair(1, 1)), (4, pair(1, 2)), (5, pair(2, 1))]);
        assert_ne!(packed, Neighbours::Packed(vec![(2, pair(1, 1)), (4, pair(1, 2)), (5, pair(2, 4))]));
    }
}
