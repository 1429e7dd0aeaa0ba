//! Leave-last-out: which item is held out from each person, what they are trained on, and which of
//! them are scored.

use hashbrown::HashSet;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use crate::generate::Dataset;
use crate::model::Contribution;
use crate::{Interaction, ItemIx, PersonIx, Touch};

/// A person scored and the item held out from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub person: PersonIx,
    pub item: ItemIx,
}

/// Leave-last-out: everyone's training touches and the held-out item of everyone eligible.
#[derive(Debug, Clone)]
pub struct Split {
    /// Training touches, person by person (`offsets[p]..offsets[p + 1]`), in time order.
    touches: Vec<Touch>,
    offsets: Vec<usize>,
    /// Everyone eligible, by person.
    pub targets: Vec<Target>,
    /// Touches of sensitive items, dropped.
    pub sensitive_dropped: usize,
    /// Touches from each held-out item's first touch on, set aside.
    pub held_out: usize,
    /// The time of the last touch (Unix ms): releases are made as of then.
    pub now: i64,
}

impl Split {
    /// Splits a dataset (interactions in any order).
    pub fn leave_last_out(dataset: &Dataset) -> Split {
        let sensitive =
            |i: &Interaction| dataset.items.get(i.touch.item as usize).is_some_and(|info| info.sensitive);
        let mut kept: Vec<&Interaction> = dataset.interactions.iter().filter(|i| !sensitive(i)).collect();
        let sensitive_dropped = dataset.interactions.len() - kept.len();
        // Stable: touches at the same millisecond keep the order they were recorded in.
        kept.sort_by_key(|i| (i.person, i.touch.at));
        let people = kept.last().map_or(0, |i| i.person as usize + 1).max(dataset.people as usize);
        let mut split = Split {
            touches: Vec::with_capacity(kept.len()),
            offsets: Vec::with_capacity(people + 1),
            targets: Vec::new(),
            sensitive_dropped,
            held_out: 0,
            now: kept.iter().map(|i| i.touch.at).max().unwrap_or(0),
        };
        let mut seen: HashSet<ItemIx> = HashSet::new();
        let mut runs = kept.chunk_by(|a, b| a.person == b.person).peekable();
        for person in 0..people as PersonIx {
            split.offsets.push(split.touches.len());
            let Some(run) = runs.next_if(|run| run[0].person == person) else { continue };
            seen.clear();
            let mut last_new = 0;
            for (position, interaction) in run.iter().enumerate() {
                if seen.insert(interaction.touch.item) {
                    last_new = position;
                }
            }
            let train = if seen.len() >= 2 {
                split.targets.push(Target { person, item: run[last_new].touch.item });
                split.held_out += run.len() - last_new;
                &run[..last_new]
            } else {
                run
            };
            split.touches.extend(train.iter().map(|i| i.touch));
        }
        split.offsets.push(split.touches.len());
        split
    }

    /// People (with or without touches).
    pub fn people(&self) -> usize {
        self.offsets.len() - 1
    }

    /// A person's training touches, in time order.
    pub fn history(&self, person: PersonIx) -> &[Touch] {
        let p = person as usize;
        self.offsets.get(p + 1).map_or(&[], |&end| &self.touches[self.offsets[p]..end])
    }

    /// Training touches in all.
    pub fn training_touches(&self) -> usize {
        self.touches.len()
    }

    /// Everyone's contribution from their training touches, by person.
    pub fn contributions(&self) -> Vec<Contribution> {
        (0..self.people() as PersonIx)
            .map(|p| Contribution::from_touches(self.history(p).iter().copied()))
            .collect()
    }

    /// Up to `users` of the eligible, sampled with a seed, in person order.
    pub fn sample(&self, users: usize, seed: u64) -> Vec<Target> {
        if users >= self.targets.len() {
            return self.targets.clone();
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut chosen = rand::seq::index::sample(&mut rng, self.targets.len(), users).into_vec();
        chosen.sort_unstable();
        chosen.into_iter().map(|i| self.targets[i]).collect()
    }
}
