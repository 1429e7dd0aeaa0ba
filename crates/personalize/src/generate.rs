//! Synthetic shop activity with structure planted in it — taste clusters, popularity skew, sessions,
//! a sensitive category — at any size and the same for a seed, so the evaluation and the benchmarks
//! can show what the models find on data anyone can regenerate.
//!
//! The plan: items fall into categories, two per taste cluster, plus one small sensitive category
//! ("health"). Clusters differ in size and items in popularity (both Zipf-like). Each person belongs
//! to one cluster and spends most of their sessions in it; a session is a burst of views a few
//! minutes apart, mostly within one category, where some views lead to an add-to-cart and some of
//! those to a purchase at the end. Nothing here knows about the models.
//!
//! Two things can be planted differently: how skewed item popularity is (`item_skew`, the Zipf
//! exponent), and how much each person does. By default activity is heavy-tailed and sums to
//! `interactions`; with `items_per_person`, each person instead comes to about that many distinct
//! items (between 0.6 and 1.4 times it, evenly), which is how a shop with many light customers looks
//! to a model that caps what each person lends.

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::recommend::ItemInfo;
use crate::{DAY_MS, Interaction, ItemIx, PersonIx, Touch, Weights};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub people: u32,
    pub items: u32,
    /// Interactions in total (exactly this many are made when there are people and items).
    pub interactions: u64,
    /// Taste clusters (each owns two categories).
    pub clusters: u32,
    /// Zipf exponent of item popularity within a category (0 is uniform).
    pub item_skew: f64,
    /// Distinct items per person, about (then `interactions` is not used), or heavy-tailed
    /// activity summing to `interactions`.
    pub items_per_person: Option<u32>,
    /// Share of the items in the sensitive category, and of the sessions spent in it.
    pub sensitive_share: f64,
    /// Days of activity, ending at `end`.
    pub days: u32,
    pub seed: u64,
    /// When the activity ends (Unix ms, exclusive): every interaction is in `[end - days, end)`.
    pub end: i64,
}

/// 2026-04-01T00:00:00Z: a fixed end, so that a seed gives the same data on any day.
pub const DEFAULT_END: i64 = 1_775_001_600_000;

impl Default for Spec {
    fn default() -> Self {
        Spec {
            people: 100_000,
            items: 2_000,
            interactions: 2_000_000,
            clusters: 20,
            item_skew: ITEM_SKEW,
            items_per_person: None,
            sensitive_share: 0.02,
            days: 90,
            seed: 1,
            end: DEFAULT_END,
        }
    }
}

/// Generated activity: the catalogue (item `i` is `items[i]`) and every interaction, grouped by
/// person and in time order within each person.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub items: Vec<ItemInfo>,
    pub interactions: Vec<Interaction>,
    pub people: u32,
}

impl Dataset {
    /// Interactions with sensitive items.
    pub fn sensitive_interactions(&self) -> usize {
        self.interactions
            .iter()
            .filter(|i| self.items.get(i.touch.item as usize).is_some_and(|info| info.sensitive))
            .count()
    }
}

/// The e-commerce events of the Segment spec that the generated touches stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Viewed,
    Added,
    Ordered,
}

impl Event {
    pub const ALL: [Event; 3] = [Event::Viewed, Event::Added, Event::Ordered];

    /// The event's name in the Segment e-commerce spec.
    pub fn name(self) -> &'static str {
        match self {
            Event::Viewed => "Product Viewed",
            Event::Added => "Product Added",
            Event::Ordered => "Order Completed",
        }
    }

    pub fn from_name(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The feedback weight the catalog gives this event.
    pub fn weight(self, weights: &Weights) -> u8 {
        match self {
            Event::Viewed => weights.view,
            Event::Added => weights.add_to_cart,
            Event::Ordered => weights.purchase,
        }
    }

    /// The strongest event with at most this weight (a generated touch's weight names its event).
    pub fn from_weight(weight: u8, weights: &Weights) -> Event {
        if weight >= weights.purchase {
            Event::Ordered
        } else if weight >= weights.add_to_cart {
            Event::Added
        } else {
            Event::Viewed
        }
    }
}

/// The name of the sensitive category.
pub const SENSITIVE_CATEGORY: &str = "health";

// The planted structure. These shape the data only; the models never see them.
/// Share of a person's sessions spent in their own cluster (the rest follow overall popularity).
const HOME_SHARE: f64 = 0.8;
/// Zipf exponent of item popularity within a category, unless the spec says otherwise.
pub const ITEM_SKEW: f64 = 1.0;
/// Zipf exponent of cluster sizes.
const CLUSTER_SKEW: f64 = 0.7;
/// Share of a cluster's sessions that start in its first category.
const FIRST_CATEGORY: f64 = 0.65;
/// Chance that the next view of a session stays in the category of the previous one.
const STAY_IN_CATEGORY: f64 = 0.8;
/// Items viewed per session, at most.
const SESSION_ITEMS: u32 = 6;
/// Chance a view leads to an add-to-cart, and an added item to a purchase at the session's end.
const ADD_TO_CART: f64 = 0.3;
const PURCHASE: f64 = 0.5;
/// Pareto exponent of activity per person, and the most active person's weight against the least.
const ACTIVITY_SHAPE: f64 = 1.5;
const ACTIVITY_MAX: f64 = 100.0;

/// Draws ranks `0..n` with probability proportional to `1 / (rank + 1)^skew`.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, skew: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(skew);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        self.cumulative.partition_point(|c| *c <= u).min(self.cumulative.len().saturating_sub(1))
    }
}

/// Categories with their members in popularity order, and a sampler for each.
struct Category {
    members: Vec<ItemIx>,
    popularity: Zipf,
}

impl Category {
    fn draw(&self, rng: &mut Xoshiro256PlusPlus) -> ItemIx {
        self.members[self.popularity.sample(rng)]
    }
}

/// Generates a dataset: the same one for the same spec.
pub fn generate(spec: &Spec) -> Dataset {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.seed);
    let weights = Weights::default();
    let sensitive = ((f64::from(spec.items) * spec.sensitive_share.clamp(0.0, 1.0)).round() as u32)
        .min(spec.items.saturating_sub(1));
    let regular = spec.items - sensitive;
    let clusters = spec.clusters.clamp(1, (regular / 2).max(1));
    let category_count = if regular >= 2 { 2 * clusters } else { 1 };

    // Items in a random order, dealt into categories in blocks: the order within a block is the
    // popularity order, so neither an item's index nor its neighbours' say anything.
    let mut order: Vec<ItemIx> = (0..spec.items).collect();
    order.shuffle(&mut rng);
    let (sensitive_items, regular_items) = order.split_at(sensitive as usize);
    let mut categories: Vec<Category> = (0..category_count as usize)
        .map(|c| {
            let (from, to) = block(regular_items.len(), category_count as usize, c);
            Category {
                members: regular_items[from..to].to_vec(),
                popularity: Zipf::new(to - from, spec.item_skew.max(0.0)),
            }
        })
        .collect();
    let health = Category {
        members: sensitive_items.to_vec(),
        popularity: Zipf::new(sensitive_items.len(), ITEM_SKEW),
    };

    let mut items: Vec<ItemInfo> = Vec::with_capacity(spec.items as usize);
    let mut category_of = vec![String::new(); spec.items as usize];
    let mut is_sensitive = vec![false; spec.items as usize];
    for (c, category) in categories.iter().enumerate() {
        for &item in &category.members {
            category_of[item as usize] = format!("cat-{c:02}");
        }
    }
    for &item in &health.members {
        category_of[item as usize] = SENSITIVE_CATEGORY.to_owned();
        is_sensitive[item as usize] = true;
    }
    let width = spec.items.saturating_sub(1).to_string().len().max(5);
    for (item, category) in category_of.into_iter().enumerate() {
        // Prices from about 3 to 200 in major units, spread evenly on a log scale.
        let price = (300.0 * (20_000.0f64 / 300.0).powf(rng.random::<f64>())).round() as i64;
        items.push(ItemInfo {
            id: format!("item-{item:0width$}"),
            categories: vec![category],
            sensitive: is_sensitive[item],
            available: rng.random_bool(0.95),
            price: Some(price),
            known: true,
        });
    }
    categories.retain(|c| !c.members.is_empty());
    let mut dataset = Dataset { items, interactions: Vec::new(), people: spec.people };
    if spec.people == 0 || categories.is_empty() {
        return dataset;
    }
    let clusters = (categories.len() as u32).div_ceil(2);
    let cluster_sizes = Zipf::new(clusters as usize, CLUSTER_SKEW);
    let category_pair = |cluster: usize| -> (usize, usize) {
        let first = (2 * cluster).min(categories.len() - 1);
        (first, (first + 1).min(categories.len() - 1))
    };

    // With distinct items per person, a budget counts new items, and a person who cannot find
    // enough (a tiny catalogue) stops after a bounded number of sessions.
    let budgets = match spec.items_per_person {
        Some(per) => {
            let per = f64::from(per.clamp(1, regular.max(1)));
            let (low, high) = ((0.6 * per).round().max(1.0) as u64, (1.4 * per).round().max(1.0) as u64);
            (0..spec.people).map(|_| rng.random_range(low..=high)).collect()
        }
        None => {
            dataset.interactions.reserve(spec.interactions as usize);
            budgets(spec.people, spec.interactions, &mut rng)
        }
    };
    let distinct = spec.items_per_person.is_some();
    let mut had: Vec<bool> = vec![false; if distinct { spec.items as usize } else { 0 }];
    let mut had_items: Vec<ItemIx> = Vec::new();
    let window_start = spec.end - i64::from(spec.days.max(1)) * DAY_MS;
    let latest_start = (spec.end - 2 * 3_600_000).max(window_start + 1);
    let mut events: Vec<Touch> = Vec::new();
    let mut sessions: Vec<(usize, i64)> = Vec::new();
    let mut basket: Vec<ItemIx> = Vec::new();
    for (person, budget) in budgets.into_iter().enumerate() {
        let home = cluster_sizes.sample(&mut rng);
        events.clear();
        sessions.clear();
        let mut left = budget;
        for item in had_items.drain(..) {
            had[item as usize] = false;
        }
        let mut sessions_left = if distinct { 20 * budget + 100 } else { u64::MAX };
        // Sessions with times relative to their start, until the person's budget is spent.
        while left > 0 && sessions_left > 0 {
            sessions_left -= 1;
            let mut at = 0i64;
            let mut push = |events: &mut Vec<Touch>, item: ItemIx, event: Event, at: i64| {
                if left > 0 {
                    events.push(Touch { item, weight: event.weight(&weights), at });
                    if !distinct {
                        left -= 1;
                    } else if !had[item as usize] {
                        had[item as usize] = true;
                        had_items.push(item);
                        left -= 1;
                    }
                }
            };
            basket.clear();
            if !health.members.is_empty() && rng.random_bool(spec.sensitive_share.clamp(0.0, 1.0)) {
                for _ in 0..rng.random_range(1..=3) {
                    push(&mut events, health.draw(&mut rng), Event::Viewed, at);
                    at += rng.random_range(15_000..240_000);
                }
            } else {
                let cluster = if rng.random_bool(HOME_SHARE) { home } else { cluster_sizes.sample(&mut rng) };
                let (first, second) = category_pair(cluster);
                let mut category = if rng.random_bool(FIRST_CATEGORY) { first } else { second };
                for _ in 0..rng.random_range(1..=SESSION_ITEMS) {
                    let item = categories[category].draw(&mut rng);
                    push(&mut events, item, Event::Viewed, at);
                    at += rng.random_range(15_000..240_000);
                    if rng.random_bool(ADD_TO_CART) {
                        push(&mut events, item, Event::Added, at);
                        at += rng.random_range(10_000..60_000);
                        basket.push(item);
                    }
                    if !rng.random_bool(STAY_IN_CATEGORY) {
                        category = if category == first { second } else { first };
                    }
                }
                for &item in &basket {
                    if rng.random_bool(PURCHASE) {
                        at += rng.random_range(30_000..300_000);
                        push(&mut events, item, Event::Ordered, at);
                    }
                }
            }
            sessions.push((events.len(), at));
        }
        // Session starts spread over the window, in order, never overlapping.
        let mut starts: Vec<i64> =
            (0..sessions.len()).map(|_| rng.random_range(window_start..latest_start)).collect();
        starts.sort_unstable();
        let (mut from, mut free_at) = (0usize, window_start);
        for (&(to, length), &start) in sessions.iter().zip(&starts) {
            let start = start.max(free_at);
            for touch in &events[from..to] {
                let at = (start + touch.at).min(spec.end - 1);
                dataset
                    .interactions
                    .push(Interaction { person: person as PersonIx, touch: Touch { at, ..*touch } });
            }
            free_at = start + length + 60_000;
            from = to;
        }
    }
    dataset
}

/// A time (Unix ms) in RFC 3339, UTC, to the millisecond: `2026-03-31T09:05:00.250Z`.
pub fn rfc3339(at: i64) -> String {
    let mut text = String::with_capacity(24);
    push_rfc3339(&mut text, at);
    text
}

/// Appends [`rfc3339`] of a time to `out` (for writing millions of lines without allocating).
pub fn push_rfc3339(out: &mut String, at: i64) {
    use std::fmt::Write as _;
    let (days, millis) = (at.div_euclid(DAY_MS), at.rem_euclid(DAY_MS));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (hour, minute, second, milli) =
        (millis / 3_600_000, millis / 60_000 % 60, millis / 1000 % 60, millis % 1000);
    let _ = write!(out, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z");
}

/// The `index`-th of `parts` nearly equal blocks of `0..len`.
fn block(len: usize, parts: usize, index: usize) -> (usize, usize) {
    (len * index / parts, len * (index + 1) / parts)
}

/// Interactions per person: heavy-tailed (a few people do a lot), summing to `total` exactly.
fn budgets(people: u32, total: u64, rng: &mut Xoshiro256PlusPlus) -> Vec<u64> {
    let activity: Vec<f64> = (0..people)
        .map(|_| (1.0 - rng.random::<f64>()).powf(-1.0 / ACTIVITY_SHAPE).min(ACTIVITY_MAX))
        .collect();
    let sum: f64 = activity.iter().sum();
    let mut budgets: Vec<u64> = activity.iter().map(|a| (total as f64 * a / sum).floor() as u64).collect();
    let mut given: u64 = budgets.iter().sum();
    // Rounding: take any excess from the busiest, give what is missing one each in turn.
    while given > total {
        if let Some(busiest) = budgets.iter_mut().max() {
            let take = (given - total).min(*busiest);
            *busiest -= take;
            given -= take;
        }
    }
    let mut person = 0;
    while given < total {
        budgets[person % people as usize] += 1;
        given += 1;
        person += 1;
    }
    budgets
}

#[cfg(test)]
mod tests {
    use hashbrown::HashMap;

    use super::*;

    fn small() -> Spec {
        Spec { people: 500, items: 300, interactions: 10_000, clusters: 5, ..Spec::default() }
    }

    #[test]
    fn the_same_seed_gives_the_same_data_and_another_does_not() {
        let a = generate(&small());
        let b = generate(&small());
        assert_eq!(a.items, b.items);
        assert_eq!(a.interactions, b.interactions);
        let c = generate(&Spec { seed: 2, ..small() });
        assert_ne!(a.interactions, c.interactions);
    }

    #[test]
    fn sizes_times_and_order_are_as_asked() {
        let spec = small();
        let data = generate(&spec);
        assert_eq!(data.items.len(), 300);
        assert_eq!(data.interactions.len(), 10_000);
        assert_eq!(data.people, 500);
        assert_eq!(data.items[42].id, "item-00042");
        let start = spec.end - i64::from(spec.days) * DAY_MS;
        assert!(data.interactions.iter().all(|i| (start..spec.end).contains(&i.touch.at)));
        assert!(data.interactions.iter().all(|i| i.person < 500 && (i.touch.item as usize) < 300));
        assert!(
            data.interactions
                .windows(2)
                .all(|w| (w[0].person, w[0].touch.at) <= (w[1].person, w[1].touch.at)),
            "grouped by person, in time order"
        );
        let sensitive = data.items.iter().filter(|i| i.sensitive).count();
        assert_eq!(sensitive, 6, "2% of 300");
        assert!(data.items.iter().filter(|i| i.sensitive).all(|i| i.categories == [SENSITIVE_CATEGORY]));
        let share = data.sensitive_interactions() as f64 / 10_000.0;
        assert!(share > 0.002 && share < 0.05, "{share}");
        assert!(data.items.iter().filter(|i| i.available).count() > 250);
    }

    #[test]
    fn popularity_is_skewed_and_purchases_follow_views() {
        let data = generate(&small());
        let mut counts: HashMap<ItemIx, usize> = HashMap::new();
        for i in &data.interactions {
            *counts.entry(i.touch.item).or_default() += 1;
        }
        let mut counts: Vec<usize> = counts.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = counts[..30].iter().sum();
        assert!(top as f64 > 0.3 * 10_000.0, "the top tenth of items has {top} of 10,000 interactions");
        // Every purchase is of an item the person viewed earlier.
        let mut seen: Vec<(PersonIx, ItemIx)> = Vec::new();
        let mut purchases = 0;
        for i in &data.interactions {
            match Event::from_weight(i.touch.weight, &Weights::default()) {
                Event::Viewed => seen.push((i.person, i.touch.item)),
                _ => {
                    purchases += usize::from(i.touch.weight == 3);
                    assert!(seen.contains(&(i.person, i.touch.item)), "{i:?}");
                }
            }
        }
        assert!(purchases > 200, "{purchases}");
    }

    #[test]
    fn people_keep_to_their_taste_cluster() {
        let data = generate(&small());
        // Most of a person's regular interactions fall in the two categories of one cluster.
        let mut in_top_cluster = 0;
        let mut regular = 0;
        let mut by_person: HashMap<PersonIx, HashMap<usize, usize>> = HashMap::new();
        for i in &data.interactions {
            let category = &data.items[i.touch.item as usize].categories[0];
            let Some(number) = category.strip_prefix("cat-") else { continue };
            let cluster = number.parse::<usize>().unwrap() / 2;
            *by_person.entry(i.person).or_default().entry(cluster).or_default() += 1;
            regular += 1;
        }
        for clusters in by_person.values() {
            in_top_cluster += clusters.values().max().unwrap();
        }
        assert!(in_top_cluster as f64 > 0.75 * regular as f64, "{in_top_cluster} of {regular}");
    }

    #[test]
    fn planted_people_come_to_about_the_items_asked_in_the_clusters_asked() {
        let spec = Spec { people: 1_000, items: 2_000, clusters: 40, items_per_person: Some(25), ..small() };
        let data = generate(&spec);
        let mut items_of: HashMap<PersonIx, hashbrown::HashSet<ItemIx>> = HashMap::new();
        let mut clusters_of: HashMap<PersonIx, HashMap<usize, usize>> = HashMap::new();
        for i in &data.interactions {
            items_of.entry(i.person).or_default().insert(i.touch.item);
            let category = &data.items[i.touch.item as usize].categories[0];
            if let Some(number) = category.strip_prefix("cat-") {
                let cluster = number.parse::<usize>().unwrap() / 2;
                *clusters_of.entry(i.person).or_default().entry(cluster).or_default() += 1;
            }
        }
        assert_eq!(items_of.len(), 1_000, "everyone did something");
        let mean = items_of.values().map(|s| s.len()).sum::<usize>() as f64 / 1_000.0;
        assert!((23.0..=27.0).contains(&mean), "about 25 distinct items each: {mean}");
        assert!(items_of.values().all(|s| (15..=35).contains(&s.len())), "0.6 to 1.4 times 25");
        let categories: hashbrown::HashSet<&String> =
            data.items.iter().filter(|i| !i.sensitive).map(|i| &i.categories[0]).collect();
        assert_eq!(categories.len(), 80, "two categories per cluster");
        let homes: hashbrown::HashSet<usize> = clusters_of
            .values()
            .map(|c| c.iter().max_by_key(|(_, n)| **n).map(|(cluster, _)| *cluster).unwrap())
            .collect();
        assert!(homes.len() >= 35, "people live in most of the 40 clusters: {}", homes.len());
        let home_share = clusters_of.values().map(|c| *c.values().max().unwrap()).sum::<usize>() as f64
            / clusters_of.values().flat_map(|c| c.values()).sum::<usize>() as f64;
        assert!(home_share > 0.6, "{home_share}");
        // A steeper Zipf exponent puts more of the activity on each category's first items.
        let top_share = |skew: f64| {
            let data = generate(&Spec { item_skew: skew, ..spec.clone() });
            let mut counts: HashMap<ItemIx, usize> = HashMap::new();
            for i in &data.interactions {
                *counts.entry(i.touch.item).or_default() += 1;
            }
            let mut counts: Vec<usize> = counts.into_values().collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            counts[..200].iter().sum::<usize>() as f64 / data.interactions.len() as f64
        };
        assert!(top_share(1.5) > top_share(0.0) + 0.2, "{} against {}", top_share(1.5), top_share(0.0));
    }

    #[test]
    fn tiny_and_empty_specs_do_not_panic() {
        for (people, items, interactions) in [(0, 10, 100), (10, 0, 100), (10, 1, 100), (1, 2, 0), (3, 3, 7)]
        {
            let data = generate(&Spec { people, items, interactions, ..small() });
            assert_eq!(data.items.len(), items as usize);
            let planted = generate(&Spec { people, items, items_per_person: Some(50), ..small() });
            assert_eq!(planted.items.len(), items as usize);
            if people > 0 && items > 0 {
                assert_eq!(data.interactions.len(), interactions as usize);
            }
        }
    }

    #[test]
    fn events_have_their_segment_names_and_weights() {
        let weights = Weights::default();
        for event in Event::ALL {
            assert_eq!(Event::from_name(event.name()), Some(event));
            assert_eq!(Event::from_weight(event.weight(&weights), &weights), event);
        }
        assert_eq!(Event::from_name("Product Clicked"), None);
    }
}
