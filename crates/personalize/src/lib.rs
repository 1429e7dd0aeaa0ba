//! Tactful's recommendation models, pure (no IO): what people did becomes shared aggregates only
//! through capped, consented contributions that can be removed exactly; what is served is released
//! from those aggregates with a minimum support per pair (and optional differential-privacy noise);
//! every recommendation carries the reason it was made. The server keeps the aggregates in the store
//! and feeds this crate; the evaluation and the data generator use it directly.

pub mod eval;
pub mod generate;
pub mod lifecycle;
pub mod model;
mod parallel;
pub mod recommend;
pub mod release;

/// Dense index of an item in a model (the item's id is kept beside, in [`recommend::Items`]).
pub type ItemIx = u32;
/// Dense index of a person, for bulk training and evaluation (the server never needs one).
pub type PersonIx = u32;

/// One thing a person did with an item: how strong a signal (the catalog's feedback weight:
/// view < add to cart < purchase) and when (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Touch {
    pub item: ItemIx,
    pub weight: u8,
    pub at: i64,
}

/// A touch by a person, for bulk training and evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interaction {
    pub person: PersonIx,
    pub touch: Touch,
}

/// Feedback weights: how much each kind of event says about taste.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub view: u8,
    pub add_to_cart: u8,
    pub purchase: u8,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { view: 1, add_to_cart: 2, purchase: 3 }
    }
}

/// How the models learn and what they release.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Items a person contributes to shared aggregates at most (their strongest, then most recent):
    /// bounds what one person can add to, or reveal through, any aggregate.
    pub cap: usize,
    /// Distinct people a pair of items needs before it is released (k), and an item before it is
    /// shown as popular.
    pub min_support: u32,
    /// Neighbours kept per item.
    pub neighbors: usize,
    /// Differential privacy on released counts: the ε each release spends, or none.
    pub epsilon: Option<f64>,
    /// How the noise is added when there is an ε.
    pub mechanism: Mechanism,
    /// Days counted for "popular", and their half-life.
    pub popular_days: u32,
    pub half_life_days: u32,
    /// Days counted for "trending" (against the popular window before them).
    pub trending_days: u32,
    pub weights: Weights,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cap: 20,
            min_support: 5,
            neighbors: 50,
            epsilon: None,
            mechanism: Mechanism::Threshold,
            popular_days: 30,
            half_life_days: 7,
            trending_days: 7,
            weights: Weights::default(),
        }
    }
}

/// How a noisy release hides one person (see [`release`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mechanism {
    /// Laplace noise on the pairs that occur, released only above a noisy threshold that hides
    /// which pairs exist (pure ε on counts, a small fixed δ on the set of pairs).
    Threshold,
    /// Gaussian noise on every pair of a public domain of items (the catalogue), so no threshold
    /// is needed; zCDP accounting, converted to (ε, δ) at this δ.
    Gaussian { delta: f64 },
}

/// Milliseconds in a day, for day buckets.
pub const DAY_MS: i64 = 86_400_000;

/// The day (since the Unix epoch) of a time.
pub fn day_of(at: i64) -> u32 {
    u32::try_from(at.div_euclid(DAY_MS)).unwrap_or(0)
}
