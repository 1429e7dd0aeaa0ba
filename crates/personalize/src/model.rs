//! What people's histories add to the shared aggregates, and how to take it back exactly: a
//! person's contribution is a pure function of their own touches, capped, and the aggregates are
//! plain sums of contributions, so removing one is subtracting it.

use hashbrown::HashMap;

use crate::{Config, Interaction, ItemIx, Touch, day_of, parallel};

mod neighbours;

use neighbours::Neighbours;

/// A person's distinct items (strongest signal and latest time per item), strongest first, then
/// most recent: the first `cap` of them are what they lend to shared aggregates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contribution {
    touches: Vec<Touch>,
}

impl Contribution {
    /// Folds touches (any order, repeats allowed) into one per item.
    pub fn from_touches(touches: impl IntoIterator<Item = Touch>) -> Contribution {
        let mut touches: Vec<Touch> = touches.into_iter().collect();
        fold(&mut touches);
        Contribution { touches }
    }

    /// Everyone's contribution from interactions in any order (indexed by person; at least `people`
    /// of them): grouped with a counting sort, then folded on every core, each person's in a
    /// reused buffer so that what is kept is allocated once, at its folded length.
    pub fn by_person(interactions: &[Interaction], people: usize) -> Vec<Contribution> {
        let people = interactions.iter().map(|i| i.person as usize + 1).max().unwrap_or(0).max(people);
        let mut offsets = vec![0usize; people + 1];
        for interaction in interactions {
            offsets[interaction.person as usize + 1] += 1;
        }
        for p in 0..people {
            offsets[p + 1] += offsets[p];
        }
        let mut next = offsets.clone();
        let mut touches = vec![Touch { item: 0, weight: 0, at: 0 }; interactions.len()];
        for interaction in interactions {
            let slot = &mut next[interaction.person as usize];
            touches[*slot] = interaction.touch;
            *slot += 1;
        }
        parallel::map_with(people, Vec::new, |folded: &mut Vec<Touch>, p| {
            folded.clear();
            folded.extend_from_slice(&touches[offsets[p]..offsets[p + 1]]);
            fold(folded);
            Contribution { touches: folded.as_slice().to_vec() }
        })
    }

    /// Every distinct item, strongest first.
    pub fn touches(&self) -> &[Touch] {
        &self.touches
    }

    /// What enters shared aggregates: at most `cap` items.
    pub fn shared(&self, cap: usize) -> &[Touch] {
        &self.touches[..self.touches.len().min(cap)]
    }

    pub fn is_empty(&self) -> bool {
        self.touches.is_empty()
    }

    /// The person's items, most recent first (for the personal step at request time).
    pub fn recent(&self) -> Vec<Touch> {
        let mut recent = self.touches.clone();
        recent
            .sort_unstable_by(|a, b| b.at.cmp(&a.at).then(b.weight.cmp(&a.weight)).then(a.item.cmp(&b.item)));
        recent
    }
}

/// Folds touches into one per item (the strongest signal, the latest time), strongest first, then
/// most recent.
fn fold(touches: &mut Vec<Touch>) {
    // Sorted by item, repeats are neighbours: folded in place, no hashing.
    touches.sort_unstable_by_key(|t| t.item);
    touches.dedup_by(|next, kept| {
        let same = next.item == kept.item;
        if same {
            kept.weight = kept.weight.max(next.weight);
            kept.at = kept.at.max(next.at);
        }
        same
    });
    touches.sort_unstable_by(|a, b| b.weight.cmp(&a.weight).then(b.at.cmp(&a.at)).then(a.item.cmp(&b.item)));
}

/// The sums over an item pair: how many people had both, and the weight they lent it (each
/// person lends the weaker of their two signals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairAgg {
    pub support: u32,
    pub weight: u32,
}

/// The sums over an item: how many people had it, the weight they lent it, and that weight by day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemAgg {
    pub support: u32,
    pub weight: u32,
    pub days: HashMap<u32, u32>,
}

/// Shared aggregates: sums of capped contributions, nothing else. Entries that fall to zero are
/// removed, so aggregates after removing someone are equal (`==`) to aggregates never given them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates {
    items: Vec<ItemAgg>,
    /// Both directions: `pairs[a][b] == pairs[b][a]`.
    pairs: Vec<Neighbours>,
    people: u32,
    cap: usize,
}

#[derive(Clone, Copy)]
enum Sign {
    Add,
    Remove,
}

impl Aggregates {
    /// Empty aggregates lending `config.cap` items per person.
    pub fn new(config: &Config) -> Aggregates {
        Aggregates { items: Vec::new(), pairs: Vec::new(), people: 0, cap: config.cap }
    }

    /// Builds aggregates from everyone's contributions at once: equal (`==`) to adding them one by
    /// one, computed as a sparse product over compact arrays on every core (each item's row of pair
    /// sums gathered in dense counters and stored packed, sorted by item, with no hashing).
    pub fn train<'a>(
        config: &Config,
        contributions: impl IntoIterator<Item = &'a Contribution>,
    ) -> Aggregates {
        let cap = config.cap;
        let shared: Vec<&[Touch]> =
            contributions.into_iter().map(|c| c.shared(cap)).filter(|s| !s.is_empty()).collect();
        let slots = shared.iter().flat_map(|s| s.iter()).map(|t| t.item as usize + 1).max().unwrap_or(0);
        let people = People::new(&shared);
        let holders = Holders::new(&shared, &people, slots);
        let rows = parallel::map_with(
            slots,
            || Row { sums: vec![PairAgg::default(); slots], seen: vec![0; slots.div_ceil(64)] },
            |row, a| row.gather(a as ItemIx, &people, &holders),
        );
        let (items, pairs) = rows.into_iter().unzip();
        let people = u32::try_from(shared.len()).unwrap_or(u32::MAX);
        Aggregates { items, pairs, people, cap }
    }

    /// Adds a person's contribution (empty ones count nobody).
    pub fn add(&mut self, contribution: &Contribution) {
        self.apply(contribution, Sign::Add);
    }

    /// Takes a person's contribution back: the exact inverse of [`Aggregates::add`] with the same
    /// contribution.
    pub fn remove(&mut self, contribution: &Contribution) {
        self.apply(contribution, Sign::Remove);
    }

    /// Replaces what a person lent (`old`, if anything) by `new`; returns the items whose sums changed.
    pub fn replace(&mut self, old: Option<&Contribution>, new: Option<&Contribution>) -> Vec<ItemIx> {
        let mut touched: Vec<ItemIx> = Vec::new();
        if let Some(old) = old {
            touched.extend(old.shared(self.cap).iter().map(|t| t.item));
            self.remove(old);
        }
        if let Some(new) = new {
            touched.extend(new.shared(self.cap).iter().map(|t| t.item));
            self.add(new);
        }
        touched.sort_unstable();
        touched.dedup();
        touched
    }

    fn apply(&mut self, contribution: &Contribution, sign: Sign) {
        let shared = contribution.shared(self.cap);
        if shared.is_empty() {
            return;
        }
        let top = shared.iter().map(|t| t.item).max().unwrap_or(0) as usize;
        if self.items.len() <= top {
            self.items.resize_with(top + 1, ItemAgg::default);
            self.pairs.resize_with(top + 1, Neighbours::default);
        }
        self.people = step(self.people, 1, sign);
        for (i, a) in shared.iter().enumerate() {
            let item = &mut self.items[a.item as usize];
            item.support = step(item.support, 1, sign);
            item.weight = step(item.weight, u32::from(a.weight), sign);
            let day = day_of(a.at);
            let by_day = item.days.entry(day).or_default();
            *by_day = step(*by_day, u32::from(a.weight), sign);
            if *by_day == 0 {
                item.days.remove(&day);
            }
            for b in &shared[i + 1..] {
                let weight = u32::from(a.weight.min(b.weight));
                for (x, y) in [(a.item, b.item), (b.item, a.item)] {
                    self.pairs[x as usize].update(y, |pair| {
                        pair.support = step(pair.support, 1, sign);
                        pair.weight = step(pair.weight, weight, sign);
                    });
                }
            }
        }
        self.trim();
    }

    /// Drops trailing empty items so that equal sums mean equal values.
    fn trim(&mut self) {
        while self.items.last().is_some_and(|i| i.support == 0)
            && self.pairs.last().is_some_and(|p| p.is_empty())
        {
            self.items.pop();
            self.pairs.pop();
        }
    }

    /// People counted.
    pub fn people(&self) -> u32 {
        self.people
    }

    /// The cap per person these aggregates were built with.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Items with a slot (the highest index seen, plus one).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn item(&self, item: ItemIx) -> Option<&ItemAgg> {
        self.items.get(item as usize).filter(|i| i.support > 0)
    }

    /// Everything paired with `item`.
    pub fn pairs_of(&self, item: ItemIx) -> impl Iterator<Item = (ItemIx, PairAgg)> + '_ {
        self.pairs.get(item as usize).into_iter().flat_map(Neighbours::iter)
    }

    /// Each pair once (`a < b`).
    pub fn pairs(&self) -> impl Iterator<Item = (ItemIx, ItemIx, PairAgg)> + '_ {
        self.pairs.iter().enumerate().flat_map(|(a, n)| {
            let a = a as ItemIx;
            n.iter().filter(move |(b, _)| *b > a).map(move |(b, p)| (a, b, p))
        })
    }

    /// Distinct pairs held.
    pub fn pair_count(&self) -> usize {
        self.pairs.iter().map(Neighbours::len).sum::<usize>() / 2
    }

    /// Approximate bytes held, for the benchmark.
    pub fn approx_bytes(&self) -> usize {
        let day_entry = std::mem::size_of::<(u32, u32)>() + 1;
        self.items.len() * (std::mem::size_of::<ItemAgg>() + std::mem::size_of::<Neighbours>())
            + self.pairs.iter().map(Neighbours::approx_bytes).sum::<usize>()
            + self.items.iter().map(|i| i.days.capacity() * day_entry).sum::<usize>()
    }
}

/// People's shared items with their weights, packed: person `p`'s are
/// `items[starts[p]..starts[p + 1]]`.
struct People {
    starts: Vec<usize>,
    items: Vec<(ItemIx, u8)>,
}

impl People {
    fn new(shared: &[&[Touch]]) -> People {
        let total = shared.iter().map(|s| s.len()).sum();
        let mut people =
            People { starts: Vec::with_capacity(shared.len() + 1), items: Vec::with_capacity(total) };
        people.starts.push(0);
        for touches in shared {
            people.items.extend(touches.iter().map(|t| (t.item, t.weight)));
            people.starts.push(people.items.len());
        }
        people
    }
}

/// Who lent each item (the transpose of [`People`]): item `a`'s holders are at
/// `starts[a]..starts[a + 1]`, each as where their list is in [`People`] (so reaching it costs no
/// second lookup), with the weight and the day they lent the item.
struct Holders {
    starts: Vec<usize>,
    list: Vec<(usize, usize)>,
    weight: Vec<u8>,
    day: Vec<u32>,
}

impl Holders {
    fn new(shared: &[&[Touch]], people: &People, slots: usize) -> Holders {
        let mut starts = vec![0usize; slots + 1];
        for touch in shared.iter().flat_map(|s| s.iter()) {
            starts[touch.item as usize + 1] += 1;
        }
        for a in 0..slots {
            starts[a + 1] += starts[a];
        }
        let total = starts[slots];
        let mut holders =
            Holders { starts, list: vec![(0, 0); total], weight: vec![0; total], day: vec![0; total] };
        let mut next = holders.starts.clone();
        for (p, touches) in shared.iter().enumerate() {
            for touch in *touches {
                let slot = &mut next[touch.item as usize];
                holders.list[*slot] = (people.starts[p], people.starts[p + 1]);
                holders.weight[*slot] = touch.weight;
                holders.day[*slot] = day_of(touch.at);
                *slot += 1;
            }
        }
        holders
    }
}

/// Holders whose lists are fetched together.
const GROUP: usize = 16;
/// Entries of a person's list in a 64-byte cache line.
const LINE: usize = 64 / std::mem::size_of::<(ItemIx, u8)>();

/// One thread's dense counters for an item's row of pair sums, and which of them are in use (a
/// bit per item, so the row comes out sorted by item without a sort).
struct Row {
    sums: Vec<PairAgg>,
    seen: Vec<u64>,
}

impl Row {
    /// Item `a`'s sums and its pairs with every item a holder of it also lent.
    fn gather(&mut self, a: ItemIx, people: &People, holders: &Holders) -> (ItemAgg, Neighbours) {
        let range = holders.starts[a as usize]..holders.starts[a as usize + 1];
        let mut item = ItemAgg::default();
        for k in range.clone() {
            let weight = u32::from(holders.weight[k]);
            item.support = item.support.saturating_add(1);
            item.weight = item.weight.saturating_add(weight);
            if weight > 0 {
                let by_day = item.days.entry(holders.day[k]).or_default();
                *by_day = by_day.saturating_add(weight);
            }
        }
        // Holders' lists are far apart in memory: each group's are touched line by line, all at
        // once, so their cache misses overlap instead of following one another.
        let Row { sums, seen } = self;
        let mut warm = 0u32;
        for (spans, lent) in
            holders.list[range.clone()].chunks(GROUP).zip(holders.weight[range].chunks(GROUP))
        {
            for &(start, end) in spans {
                for line in (start..end).step_by(LINE) {
                    warm ^= people.items[line].0;
                }
            }
            for (&(start, end), &lent) in spans.iter().zip(lent) {
                for &(b, weight) in &people.items[start..end] {
                    seen[b as usize / 64] |= 1 << (b % 64);
                    let sum = &mut sums[b as usize];
                    sum.support = sum.support.saturating_add(1);
                    sum.weight = sum.weight.saturating_add(u32::from(lent.min(weight)));
                }
            }
        }
        std::hint::black_box(warm);
        // The item itself was counted with every holder: not a pair.
        let held = seen.iter().map(|word| word.count_ones() as usize).sum::<usize>();
        let mut pairs = Vec::with_capacity(held.saturating_sub(1));
        for (w, word) in seen.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let b = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let sum = std::mem::take(&mut sums[b]);
                if b != a as usize {
                    pairs.push((b as ItemIx, sum));
                }
            }
        }
        (item, Neighbours::Packed(pairs))
    }
}

fn step(value: u32, by: u32, sign: Sign) -> u32 {
    match sign {
        Sign::Add => value.saturating_add(by),
        // Removing what was added never goes below zero; saturating keeps a bug from wrapping.
        Sign::Remove => value.saturating_sub(by),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn touch(item: ItemIx, weight: u8, at: i64) -> Touch {
        Touch { item, weight, at }
    }

    #[test]
    fn a_contribution_keeps_the_strongest_then_latest_signal_per_item() {
        let c =
            Contribution::from_touches([touch(1, 1, 10), touch(1, 3, 5), touch(2, 1, 20), touch(1, 1, 30)]);
        assert_eq!(c.touches(), &[touch(1, 3, 30), touch(2, 1, 20)]);
        assert_eq!(c.recent()[0].item, 1);
    }

    #[test]
    fn only_the_capped_part_reaches_the_aggregates() {
        let config = Config { cap: 2, ..Config::default() };
        let c = Contribution::from_touches([touch(1, 1, 1), touch(2, 3, 2), touch(3, 2, 3)]);
        let aggregates = Aggregates::train(&config, [&c]);
        assert!(aggregates.item(1).is_none(), "the weakest item is beyond the cap");
        assert_eq!(aggregates.pair_count(), 1);
        assert_eq!(
            aggregates.pairs().next().map(|(a, b, p)| (a, b, p.support, p.weight)),
            Some((2, 3, 1, 2))
        );
    }

    /// At a shop's scale (rows spread over every core, repeats folded, people over the cap), the
    /// bulk path still equals adding people one by one.
    #[test]
    fn training_a_shop_equals_adding_one_by_one() {
        // A fixed linear congruential sequence: 3,000 people, 400 items, 30 touches each.
        let mut state = 7u64;
        let mut next = |below: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % below
        };
        let interactions: Vec<Interaction> = (0..3_000u32)
            .flat_map(|person| (0..30).map(move |_| person))
            .map(|person| Interaction {
                person,
                touch: touch(next(400) as ItemIx, 1 + next(3) as u8, (next(40) as i64) * crate::DAY_MS),
            })
            .collect();
        let people = Contribution::by_person(&interactions, 3_000);
        let config = Config::default();
        let mut one_by_one = Aggregates::new(&config);
        for person in &people {
            one_by_one.add(person);
        }
        let trained = Aggregates::train(&config, &people);
        assert!(trained.pair_count() > 10_000, "{} pairs", trained.pair_count());
        assert_eq!(trained, one_by_one);
    }

    fn contributions() -> impl Strategy<Value = Vec<Contribution>> {
        let touch = (0u32..12, 1u8..=3, 0i64..(40 * crate::DAY_MS)).prop_map(|(i, w, at)| touch(i, w, at));
        prop::collection::vec(prop::collection::vec(touch, 0..10).prop_map(Contribution::from_touches), 1..12)
    }

    proptest! {
        /// Exact unlearning: a model that learned a person and then forgot them is the model that
        /// never learned them, whatever the others did.
        #[test]
        fn removing_a_person_equals_never_learning_them(people in contributions(), who in 0usize..12, cap in 1usize..6) {
            let config = Config { cap, ..Config::default() };
            let who = who % people.len();
            let mut learned = Aggregates::train(&config, &people);
            learned.remove(&people[who]);
            let never = Aggregates::train(&config, people.iter().enumerate().filter(|(i, _)| *i != who).map(|(_, c)| c));
            prop_assert_eq!(&learned, &never);
        }

        /// Training everyone at once gives the aggregates that adding them one by one gives.
        #[test]
        fn training_at_once_equals_adding_one_by_one(people in contributions(), cap in 1usize..6) {
            let config = Config { cap, ..Config::default() };
            let mut one_by_one = Aggregates::new(&config);
            for person in &people {
                one_by_one.add(person);
            }
            prop_assert_eq!(Aggregates::train(&config, &people), one_by_one);
        }

        /// Replacing a person's contribution equals training with the new one.
        #[test]
        fn replacing_equals_training_anew(people in contributions(), newer in contributions(), cap in 1usize..6) {
            let config = Config { cap, ..Config::default() };
            let mut updated = Aggregates::train(&config, &people);
            updated.replace(Some(&people[0]), Some(&newer[0]));
            let fresh = Aggregates::train(&config, std::iter::once(&newer[0]).chain(&people[1..]));
            prop_assert_eq!(updated, fresh);
        }
    }
}
