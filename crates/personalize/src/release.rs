//! What is served is released from the aggregates, never the aggregates themselves: item pairs
//! only with support from at least k distinct people, popular and trending items only with that
//! support too, and, when the brand asks for it, differential-privacy noise from OpenDP on every
//! released count (discrete Laplace; pairs through OpenDP's noisy-threshold mechanism so the set of
//! pairs released is itself private), with the ε and δ spent recorded on the release. Or, with
//! [`Mechanism::Gaussian`], Gaussian noise on every pair of the public catalogue (`gaussian`).

use std::collections::HashMap as StdHashMap;

use opendp::domains::{AtomDomain, MapDomain, VectorDomain};
use opendp::measurements::{make_laplace, make_laplace_threshold};
use opendp::measures::{Approximate, MaxDivergence};
use opendp::metrics::{AbsoluteDistance, L1Distance, L01InfDistance};

use crate::model::Aggregates;
use crate::{Config, ItemIx, Mechanism, day_of, parallel};

mod gaussian;

pub use gaussian::{PAIR_FLOOR_SIGMAS, Part, Plan, epsilon_bound, epsilon_of};

/// Why a release could not be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReleaseError {
    #[error("ε must be a positive number, not {0}")]
    Epsilon(f64),
    #[error("differential privacy: {0}")]
    Noise(String),
    #[error("the noise scale would be {0:e}, above the {MAX_SCALE:e} a release can carry: ε is too small")]
    Scale(f64),
    #[error("δ must be above 0 and at most {DELTA_MAX:e}, not {0:e}")]
    Delta(f64),
}

/// The largest δ a Gaussian release may be asked for (the catalog's range is checked in
/// `tactful_domain::bounds`; this is the library's own backstop).
pub const DELTA_MAX: f64 = 1e-5;

/// The largest noise scale a pair threshold is searched for: beyond it the release is noise only,
/// and the search would run for minutes (forever as ε approaches 0).
pub const MAX_SCALE: f64 = 1e9;

impl From<opendp::error::Error> for ReleaseError {
    fn from(error: opendp::error::Error) -> Self {
        ReleaseError::Noise(error.to_string())
    }
}

/// The privacy a release spent: (ε, δ)-differential privacy for one person's whole contribution
/// (the unit of privacy is a person and all their events, whatever they did).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spent {
    pub epsilon: f64,
    pub delta: f64,
    /// The mechanism, and for the Gaussian one its zCDP ρ (of which ε and δ are the conversion).
    pub mechanism: Mechanism,
    pub rho: Option<f64>,
}

impl Spent {
    fn threshold() -> Spent {
        Spent { epsilon: 0.0, delta: 0.0, mechanism: Mechanism::Threshold, rho: None }
    }

    /// The guarantee in words, as the release records it.
    pub fn guarantee(&self) -> String {
        let how = match (self.mechanism, self.rho) {
            (Mechanism::Gaussian { .. }, Some(rho)) => {
                format!("Gaussian noise on every pair of catalogue items, {rho:.4}-zCDP")
            }
            _ => "Laplace noise, pairs above a noisy threshold".to_owned(),
        };
        format!(
            "({:.3}, {:e})-differential privacy for one person and all their events ({how})",
            self.epsilon, self.delta
        )
    }
}

/// A released model: neighbours per item, popular and trending lists, each best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    neighbours: Vec<Vec<(ItemIx, f32)>>,
    popular: Vec<(ItemIx, f32)>,
    /// Each item's place in `popular` (`u32::MAX`: not popular).
    popular_rank: Vec<u32>,
    trending: Vec<(ItemIx, f32)>,
    /// People whose contributions it was released from.
    pub people: u32,
    /// When (Unix ms) the popular and trending windows end.
    pub at: i64,
    /// The privacy spent, when released with noise.
    pub spent: Option<Spent>,
}

/// How much faster than before (smoothed) an item must be wanted to be trending.
const MIN_TREND: f64 = 2.0;

/// δ aimed at by the noisy threshold on pairs.
const PAIR_DELTA: f64 = 1e-7;

impl Release {
    /// An empty release (nothing learned yet).
    pub fn empty(at: i64) -> Release {
        Release {
            neighbours: Vec::new(),
            popular: Vec::new(),
            popular_rank: Vec::new(),
            trending: Vec::new(),
            people: 0,
            at,
            spent: None,
        }
    }

    /// Releases everything from the aggregates as of `now`, over the items they hold a slot for.
    /// A Gaussian release needs a public domain of items: the server releases with
    /// [`Release::full_over`] and its catalogue, never with this.
    pub fn full(aggregates: &Aggregates, config: &Config, now: i64) -> Result<Release, ReleaseError> {
        let slots: Vec<ItemIx> = (0..aggregates.len() as ItemIx).collect();
        Self::full_over(aggregates, config, &slots, now)
    }

    /// Releases everything from the aggregates as of `now`. `items` is the public domain (the
    /// catalogue's items that may be recommended): a Gaussian release puts noise on every pair of
    /// them and never names an item outside it; the other releases do not need it.
    pub fn full_over(
        aggregates: &Aggregates,
        config: &Config,
        items: &[ItemIx],
        now: i64,
    ) -> Result<Release, ReleaseError> {
        match (config.epsilon, config.mechanism) {
            (None, _) => Ok(Self::exact(aggregates, config, now)),
            (Some(epsilon), Mechanism::Threshold) => Self::noisy(aggregates, config, epsilon, now),
            (Some(epsilon), Mechanism::Gaussian { delta }) => {
                gaussian::release(aggregates, config, &Plan::new(epsilon, delta, config)?, items, now)
            }
        }
    }

    fn exact(aggregates: &Aggregates, config: &Config, now: i64) -> Release {
        let mut release = Release::empty(now);
        release.people = aggregates.people();
        release.neighbours =
            parallel::map(aggregates.len(), |a| exact_neighbours(aggregates, config, a as ItemIx));
        release.rank_items(aggregates, config, now);
        release
    }

    /// Brings an exact release up to date after the sums of `touched` items changed: their
    /// neighbour lists are recomputed (every pair whose sums changed has both ends touched, so a
    /// pair that fell below k is gone at once), and popular and trending are ranked again. Scores of
    /// untouched items' neighbours drift until the next full release. Noisy releases are only ever
    /// made whole, on a schedule: each costs ε.
    pub fn refresh(&mut self, aggregates: &Aggregates, config: &Config, touched: &[ItemIx], now: i64) {
        debug_assert!(config.epsilon.is_none(), "noisy releases are made whole");
        if self.neighbours.len() < aggregates.len() {
            self.neighbours.resize_with(aggregates.len(), Vec::new);
        }
        for &a in touched {
            if let Some(slot) = self.neighbours.get_mut(a as usize) {
                *slot = exact_neighbours(aggregates, config, a);
            }
        }
        self.people = aggregates.people();
        self.rank_items(aggregates, config, now);
    }

    fn rank_items(&mut self, aggregates: &Aggregates, config: &Config, now: i64) {
        let windows = Windows::new(config, now);
        let mut popular = Vec::new();
        let mut trending = Vec::new();
        for a in 0..aggregates.len() as ItemIx {
            let Some(item) = aggregates.item(a) else { continue };
            if item.support < config.min_support {
                continue;
            }
            let sums = windows.sums(item.days.iter().map(|(d, w)| (*d, *w)));
            if sums.decayed > 0.0 {
                popular.push((a, sums.decayed as f32));
            }
            let rising = (sums.recent >= f64::from(config.min_support))
                .then(|| windows.trend(sums.recent, sums.before));
            if let Some(Some(score)) = rising {
                trending.push((a, score));
            }
        }
        self.set_popular(best_first(popular, usize::MAX));
        self.trending = best_first(trending, usize::MAX);
        self.at = now;
    }

    fn set_popular(&mut self, popular: Vec<(ItemIx, f32)>) {
        let slots = popular.iter().map(|(item, _)| *item as usize + 1).max().unwrap_or(0);
        self.popular_rank = vec![u32::MAX; slots];
        for (rank, (item, _)) in popular.iter().enumerate() {
            self.popular_rank[*item as usize] = rank as u32;
        }
        self.popular = popular;
    }

    /// An item's place among popular items (0 is the most popular).
    pub fn popular_rank(&self, item: ItemIx) -> Option<usize> {
        self.popular_rank.get(item as usize).filter(|r| **r != u32::MAX).map(|r| *r as usize)
    }

    fn noisy(
        aggregates: &Aggregates,
        config: &Config,
        epsilon: f64,
        now: i64,
    ) -> Result<Release, ReleaseError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(ReleaseError::Epsilon(epsilon));
        }
        let cap = aggregates.cap().max(1) as i64;
        let max_weight = i64::from(
            config.weights.view.max(config.weights.add_to_cart).max(config.weights.purchase).max(1),
        );
        let slots = aggregates.len();
        // The budget: most of it on pairs (what item-to-item needs), some on popularity (what
        // everyone without a history sees), the rest on supports and trends.
        let (eps_pairs, eps_support, eps_popular, eps_recent, eps_before) =
            (0.7 * epsilon, 0.05 * epsilon, 0.15 * epsilon, 0.05 * epsilon, 0.05 * epsilon);
        let mut spent = Spent::threshold();

        // Item supports over every slot (the catalogue is public, so no key is revealed).
        let supports: Vec<i64> =
            (0..slots as ItemIx).map(|a| aggregates.item(a).map_or(0, |i| i64::from(i.support))).collect();
        let supports = noisy_vector(supports, cap, eps_support, &mut spent)?;

        // Window sums in thousandths (decay makes them fractional); one person moves each by at
        // most its cap times the strongest weight.
        let windows = Windows::new(config, now);
        let mut popular = Vec::with_capacity(slots);
        let mut recent = Vec::with_capacity(slots);
        let mut before = Vec::with_capacity(slots);
        for a in 0..slots as ItemIx {
            let sums = aggregates
                .item(a)
                .map(|i| windows.sums(i.days.iter().map(|(d, w)| (*d, *w))))
                .unwrap_or_default();
            popular.push((sums.decayed * 1000.0).round() as i64);
            recent.push(sums.recent as i64);
            before.push(sums.before as i64);
        }
        let popular = noisy_vector(popular, cap * max_weight * 1000, eps_popular, &mut spent)?;
        let recent = noisy_vector(recent, cap * max_weight, eps_recent, &mut spent)?;
        let before = noisy_vector(before, cap * max_weight, eps_before, &mut spent)?;

        // Pairs: one person changes at most C(cap, 2) pair supports, each by one.
        let pairs_per_person = (cap * (cap - 1) / 2).max(1);
        let counts: StdHashMap<u64, i64> = aggregates
            .pairs()
            .map(|(a, b, p)| ((u64::from(a) << 32) | u64::from(b), i64::from(p.support)))
            .collect();
        let released =
            noisy_threshold(counts, pairs_per_person, eps_pairs, i64::from(config.min_support), &mut spent)?;

        let mut release = Release::empty(now);
        release.people = aggregates.people();
        let mut neighbours: Vec<Vec<(ItemIx, f32)>> = vec![Vec::new(); slots];
        for (key, support) in released {
            let (a, b) = ((key >> 32) as ItemIx, (key & 0xffff_ffff) as ItemIx);
            let norm = (supports[a as usize].max(1) as f64 * supports[b as usize].max(1) as f64).sqrt();
            let score = (support as f64 / norm) as f32;
            neighbours[a as usize].push((b, score));
            neighbours[b as usize].push((a, score));
        }
        release.neighbours = neighbours.into_iter().map(|n| best_first(n, config.neighbors)).collect();
        // Items are public (the catalogue), so every one is ranked by its noisy count: no gate on a
        // noisy support, which would drop items at random. A trend must stand out of the noise
        // (three noise scales above k) before it may lead a page.
        let k = i64::from(config.min_support);
        let noise_recent = (cap * max_weight) as f64 / eps_recent;
        let trend_floor = k + (3.0 * noise_recent).ceil() as i64;
        let mut popular_items = Vec::new();
        let mut trending_items = Vec::new();
        for a in 0..slots {
            if popular[a] > 0 {
                popular_items.push((a as ItemIx, popular[a] as f32 / 1000.0));
            }
            let rising = (recent[a] >= trend_floor)
                .then(|| windows.trend(recent[a].max(0) as f64, before[a].max(0) as f64));
            if let Some(Some(score)) = rising {
                trending_items.push((a as ItemIx, score));
            }
        }
        release.set_popular(best_first(popular_items, usize::MAX));
        release.trending = best_first(trending_items, usize::MAX);
        release.spent = Some(spent);
        Ok(release)
    }

    /// An item's released neighbours, most similar first.
    pub fn neighbours(&self, item: ItemIx) -> &[(ItemIx, f32)] {
        self.neighbours.get(item as usize).map_or(&[], Vec::as_slice)
    }

    /// Popular items, most popular first (time-decayed weight over the popular window).
    pub fn popular(&self) -> &[(ItemIx, f32)] {
        &self.popular
    }

    /// Trending items, fastest rising first.
    pub fn trending(&self) -> &[(ItemIx, f32)] {
        &self.trending
    }

    /// Items with at least one released neighbour (coverage of item-to-item).
    pub fn items_with_neighbours(&self) -> usize {
        self.neighbours.iter().filter(|n| !n.is_empty()).count()
    }

    /// Released pairs (each once).
    pub fn pair_count(&self) -> usize {
        self.neighbours.iter().map(Vec::len).sum::<usize>() / 2
    }
}

fn exact_neighbours(aggregates: &Aggregates, config: &Config, a: ItemIx) -> Vec<(ItemIx, f32)> {
    let Some(item_a) = aggregates.item(a) else { return Vec::new() };
    let candidates =
        aggregates.pairs_of(a).filter(|(_, p)| p.support >= config.min_support).filter_map(|(b, p)| {
            let item_b = aggregates.item(b)?;
            let norm = (f64::from(item_a.weight) * f64::from(item_b.weight)).sqrt();
            Some((b, (f64::from(p.weight) / norm) as f32))
        });
    best_first(candidates.collect(), config.neighbors)
}

/// Highest score first, ties by item (so releases are deterministic), at most `keep`.
fn best_first(mut scored: Vec<(ItemIx, f32)>, keep: usize) -> Vec<(ItemIx, f32)> {
    scored.sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    scored.truncate(keep);
    scored
}

#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    decayed: f64,
    recent: f64,
    before: f64,
}

/// The popular window (with its half-life) and the trending window inside it, ending today.
struct Windows {
    today: u32,
    popular_days: u32,
    trending_days: u32,
    half_life: f64,
}

impl Windows {
    fn new(config: &Config, now: i64) -> Windows {
        Windows {
            today: day_of(now),
            popular_days: config.popular_days.max(1),
            trending_days: config.trending_days.clamp(1, config.popular_days.max(2) - 1),
            half_life: f64::from(config.half_life_days.max(1)),
        }
    }

    fn sums(&self, days: impl Iterator<Item = (u32, u32)>) -> Sums {
        let mut sums = Sums::default();
        for (day, weight) in days {
            let Some(age) = self.today.checked_sub(day) else { continue };
            if age >= self.popular_days {
                continue;
            }
            let weight = f64::from(weight);
            sums.decayed += weight * 0.5f64.powf(f64::from(age) / self.half_life);
            if age < self.trending_days {
                sums.recent += weight;
            } else {
                sums.before += weight;
            }
        }
        sums
    }

    /// How much faster an item is wanted now than before (per day, the earlier rate smoothed by one
    /// a day so a few views of a quiet item are no trend), if it at least doubled.
    fn trend(&self, recent: f64, before: f64) -> Option<f32> {
        let now_rate = recent / f64::from(self.trending_days);
        let before_rate = before / f64::from(self.popular_days - self.trending_days);
        let score = now_rate / (before_rate + 1.0);
        (score >= MIN_TREND).then_some(score as f32)
    }
}

/// Adds discrete Laplace noise to every value, for an L1 sensitivity per person, spending `epsilon`.
fn noisy_vector(
    values: Vec<i64>,
    sensitivity: i64,
    epsilon: f64,
    spent: &mut Spent,
) -> Result<Vec<i64>, ReleaseError> {
    if values.is_empty() {
        return Ok(values);
    }
    let scale = sensitivity as f64 / epsilon;
    if !(scale.is_finite() && scale > 0.0 && scale <= MAX_SCALE) {
        return Err(ReleaseError::Scale(scale));
    }
    let measurement = make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        scale,
        None,
    )?;
    spent.epsilon += measurement.map(&sensitivity)?;
    Ok(measurement.invoke(&values)?)
}

/// Releases the counts whose noisy value reaches a threshold of at least `min`, chosen so the
/// mechanism's δ stays under [`PAIR_DELTA`]: a key supported by few people is almost never released.
fn noisy_threshold(
    counts: StdHashMap<u64, i64>,
    keys_per_person: i64,
    epsilon: f64,
    min: i64,
    spent: &mut Spent,
) -> Result<StdHashMap<u64, i64>, ReleaseError> {
    let scale = keys_per_person as f64 / epsilon;
    if !(scale.is_finite() && scale > 0.0 && scale <= MAX_SCALE) {
        return Err(ReleaseError::Scale(scale));
    }
    let distance = (u32::try_from(keys_per_person).unwrap_or(u32::MAX), keys_per_person, 1i64);
    let make = |threshold: i64| {
        make_laplace_threshold::<_, _, Approximate<MaxDivergence>>(
            MapDomain::new(AtomDomain::<u64>::default(), AtomDomain::<i64>::default()),
            L01InfDistance::<AbsoluteDistance<i64>>::default(),
            scale,
            threshold,
            None,
        )
    };
    // The smallest threshold (at least `min`) whose δ is small enough: δ falls as it grows.
    let delta_at = |threshold: i64| -> Result<f64, ReleaseError> { Ok(make(threshold)?.map(&distance)?.1) };
    let mut high = min.max(1);
    // An i64 holds at most 64 doublings: past them the search would never end.
    let mut doublings = 0;
    while delta_at(high)? > PAIR_DELTA {
        if doublings == 64 || high == i64::MAX {
            return Err(ReleaseError::Scale(scale));
        }
        high = high.saturating_mul(2);
        doublings += 1;
    }
    let mut low = min.max(1);
    while low < high {
        let middle = low + (high - low) / 2;
        if delta_at(middle)? > PAIR_DELTA {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    let measurement = make(high)?;
    let (eps, delta) = measurement.map(&distance)?;
    spent.epsilon += eps;
    spent.delta += delta;
    Ok(measurement.invoke(&counts)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Contribution;
    use crate::{DAY_MS, Touch};

    fn person(items: &[ItemIx], at: i64) -> Contribution {
        Contribution::from_touches(items.iter().map(|&item| Touch { item, weight: 1, at }))
    }

    proptest::proptest! {
        /// What is served after someone is forgotten is what would be served had they never been
        /// learned: exact unlearning reaches the release, not only the aggregates.
        #[test]
        fn a_release_after_forgetting_someone_is_the_release_that_never_knew_them(
            people in proptest::collection::vec(
                proptest::collection::vec((0u32..12, 1u8..=3, 0i64..(40 * DAY_MS)), 0..10),
                1..12,
            ),
            who in 0usize..12,
            cap in 1usize..6,
        ) {
            let config = Config { cap, ..Config::default() };
            let people: Vec<Contribution> = people
                .into_iter()
                .map(|touches| Contribution::from_touches(touches.into_iter().map(|(item, weight, at)| Touch { item, weight, at })))
                .collect();
            let who = who % people.len();
            let mut learned = Aggregates::train(&config, &people);
            learned.remove(&people[who]);
            let never = Aggregates::train(&config, people.iter().enumerate().filter(|(i, _)| *i != who).map(|(_, c)| c));
            let released = Release::full(&learned, &config, 40 * DAY_MS).unwrap();
            let never_released = Release::full(&never, &config, 40 * DAY_MS).unwrap();
            proptest::prop_assert_eq!(released, never_released);
        }
    }

    #[test]
    fn a_pair_supported_by_fewer_than_k_people_never_appears() {
        let config = Config { min_support: 3, ..Config::default() };
        let now = 10 * DAY_MS;
        let mut people: Vec<Contribution> = (0..3).map(|_| person(&[0, 1], now)).collect();
        people.extend((0..2).map(|_| person(&[0, 2], now)));
        people.extend((0..3).map(|_| person(&[2, 3], now)));
        let aggregates = Aggregates::train(&config, &people);
        let release = Release::full(&aggregates, &config, now).unwrap();
        let of_0: Vec<ItemIx> = release.neighbours(0).iter().map(|n| n.0).collect();
        assert_eq!(of_0, vec![1], "0–2 has two people, one short of k");
        assert!(release.neighbours(2).iter().all(|n| n.0 != 0));

        // One more person makes it three: released; they leave again: gone at once.
        let third = person(&[0, 2], now);
        let mut aggregates = aggregates;
        aggregates.add(&third);
        let mut release = release;
        release.refresh(&aggregates, &config, &[0, 2], now);
        assert!(release.neighbours(0).iter().any(|n| n.0 == 2));
        aggregates.remove(&third);
        release.refresh(&aggregates, &config, &[0, 2], now);
        assert!(release.neighbours(0).iter().all(|n| n.0 != 2));
        assert!(release.neighbours(2).iter().all(|n| n.0 != 0));
    }

    #[test]
    fn popular_needs_k_people_and_trending_needs_a_rise() {
        let config = Config { min_support: 2, ..Config::default() };
        let now = 100 * DAY_MS;
        let mut people = vec![person(&[0], now), person(&[0], now - DAY_MS), person(&[1], now)];
        // Item 2: steady three weeks ago, a rush this week.
        people.extend((0..4).map(|_| person(&[2], now - 20 * DAY_MS)));
        people.extend((0..30).map(|_| person(&[2], now - DAY_MS)));
        let release = Release::full(&Aggregates::train(&config, &people), &config, now).unwrap();
        let popular: Vec<ItemIx> = release.popular().iter().map(|p| p.0).collect();
        assert_eq!(popular, vec![2, 0], "item 1 has one person");
        assert_eq!(release.trending().first().map(|t| t.0), Some(2));
    }

    #[test]
    fn a_noisy_release_records_what_it_spent_and_keeps_strong_pairs() {
        let config = Config { min_support: 5, cap: 3, epsilon: Some(4.0), ..Config::default() };
        let now = 10 * DAY_MS;
        let mut people: Vec<Contribution> = (0..400).map(|_| person(&[0, 1], now)).collect();
        people.extend((0..2).map(|_| person(&[2, 3], now)));
        let release = Release::full(&Aggregates::train(&config, &people), &config, now).unwrap();
        let spent = release.spent.expect("spent");
        assert!((spent.epsilon - 4.0).abs() < 1e-6, "spent {spent:?}");
        assert!(spent.delta > 0.0 && spent.delta <= PAIR_DELTA);
        assert_eq!(release.neighbours(0).first().map(|n| n.0), Some(1), "400 people survive the noise");
        assert!(release.neighbours(2).is_empty(), "two people never do");
        assert_eq!(
            Release::full(&Aggregates::new(&config), &Config { epsilon: Some(0.0), ..config }, now),
            Err(ReleaseError::Epsilon(0.0))
        );
    }

    #[test]
    fn the_pair_threshold_search_ends_fast_for_any_epsilon() {
        let counts: StdHashMap<u64, i64> = (0..50).map(|key| (key, 40)).collect();
        for epsilon in [1e-300, 1e-12, 1e-9, 1.99e-5, 2e-5, 0.007, 1.0, f64::MAX] {
            let started = std::time::Instant::now();
            let mut spent = Spent::threshold();
            let result = noisy_threshold(counts.clone(), 20_000, epsilon, 5, &mut spent);
            let took = started.elapsed();
            assert!(took < std::time::Duration::from_millis(500), "ε = {epsilon:e}: {took:?}");
            match result {
                Ok(_) => assert!(20_000.0 / epsilon <= MAX_SCALE, "ε = {epsilon:e}"),
                Err(ReleaseError::Scale(scale)) => assert!(scale > MAX_SCALE, "ε = {epsilon:e}"),
                Err(other) => panic!("ε = {epsilon:e}: {other}"),
            }
        }
        let config = Config { min_support: 5, cap: 3, epsilon: Some(1e-12), ..Config::default() };
        let people: Vec<Contribution> = (0..40).map(|_| person(&[0, 1], 10 * DAY_MS)).collect();
        let refused = Release::full(&Aggregates::train(&config, &people), &config, 10 * DAY_MS);
        assert!(matches!(refused, Err(ReleaseError::Scale(_))), "{refused:?}");
    }
}
