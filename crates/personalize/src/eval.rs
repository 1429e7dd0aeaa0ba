//! Offline evaluation, so that claims about quality and about the cost of privacy are measured:
//! leave-last-out with full-catalogue ranking, the served models (the popular fallback, item-to-item
//! with and without the k-threshold and differential privacy) scored by HR@10 and NDCG@10, and a
//! reader for `user,item,timestamp` CSV so the same runs on public data.
//!
//! The split: a person's touches in time order; the held-out item is the last item they came to
//! (the item whose *first* touch is the latest), because a view, an add-to-cart and a purchase of one
//! item are one discovery, and predicting the purchase of something just viewed says nothing about
//! recommendations. What they did before that first touch is their training history; what came from
//! it on is set aside. People with fewer than two distinct items are not evaluated, but what they did
//! is trained on. Everyone's training histories train the model, whoever is sampled for scoring.
//! Touches of sensitive items are dropped first, as the server never lets them into shared
//! aggregates, so they are neither trained on nor held out.

use std::time::Duration;

use hashbrown::{HashMap, HashSet};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use crate::generate::{Dataset, Event};
use crate::model::{Aggregates, Contribution};
use crate::recommend::{self, Ask, Catalogue, Filter, ItemInfo};
use crate::release::{Release, ReleaseError, Spent};
use crate::{Config, Interaction, ItemIx, PersonIx, Touch, Weights};

/// Why an evaluation could not be run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EvalError {
    #[error("nobody to evaluate: no one has two distinct (non-sensitive) items")]
    NoOneToEvaluate,
    #[error(transparent)]
    Release(#[from] ReleaseError),
}

/// How to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// People scored at most (a seeded sample of those eligible; training always uses everyone).
    pub users: usize,
    pub seed: u64,
    /// Length of the ranked list scored (HR@n, NDCG@n).
    pub n: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { users: 5_000, seed: 1, n: 10 }
    }
}

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

/// How a row ranks the catalogue for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranker {
    /// The released popular list, best first, minus the person's own items: the classic baseline.
    MostPopular,
    /// What the service answers someone without a usable history (trending, then popular), minus
    /// the person's own items.
    Fallback,
    /// What the service answers the person from their history.
    Personal,
}

/// One evaluated model: what it is and exactly how it is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub model: &'static str,
    /// The setting in words, as printed.
    pub setting: String,
    pub config: Config,
    pub ranker: Ranker,
}

impl Setting {
    /// Whether a privacy protection is on (a k-threshold above one, or noise).
    pub fn private(&self) -> bool {
        self.config.min_support > 1 || self.config.epsilon.is_some()
    }
}

/// The rows of the evaluation, in order.
pub fn settings() -> Vec<Setting> {
    let defaults = Config::default();
    let k = defaults.min_support;
    let open = Config { min_support: 1, ..defaults.clone() };
    // With noise, the cap is the lever: one person moves C(cap, 2) pair counts, so the noise on
    // each grows with the square of the cap.
    let noisy = |epsilon: f64, cap: usize| Setting {
        model: "item-to-item",
        setting: format!("k={k}, DP ε={epsilon}, cap {cap}"),
        config: Config { epsilon: Some(epsilon), cap, ..defaults.clone() },
        ranker: Ranker::Personal,
    };
    vec![
        Setting {
            model: "most popular",
            setting: format!("popular list only ({}-day window, k=1)", defaults.popular_days),
            config: open.clone(),
            ranker: Ranker::MostPopular,
        },
        Setting {
            model: "popularity",
            setting: "no history: trending, then popular (k=1)".into(),
            config: open.clone(),
            ranker: Ranker::Fallback,
        },
        Setting {
            model: "item-to-item",
            setting: format!("k=1, no noise, cap {}", defaults.cap),
            config: open,
            ranker: Ranker::Personal,
        },
        Setting {
            model: "item-to-item",
            setting: format!("k={k}, no noise, cap {}", defaults.cap),
            config: defaults.clone(),
            ranker: Ranker::Personal,
        },
        noisy(4.0, defaults.cap),
        noisy(1.0, defaults.cap),
        noisy(4.0, 5),
        noisy(1.0, 5),
    ]
}

/// Hit rate and NDCG at n over the people scored.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    pub hit_rate: f64,
    pub ndcg: f64,
    pub evaluated: usize,
}

/// Scores a release: for each target, the whole catalogue ranked for the person (by the baselines,
/// for nobody in particular, minus what the person already had), and where the held-out item
/// lands. Availability is ignored so stock does not bias the comparison.
pub fn score(
    release: &Release,
    catalogue: &Catalogue,
    config: &Config,
    targets: &[Target],
    histories: &[Vec<Touch>],
    ranker: Ranker,
    n: usize,
) -> Metrics {
    let mut metrics = Metrics::default();
    for (target, history) in targets.iter().zip(histories) {
        let ranked: Vec<ItemIx> = match ranker {
            Ranker::MostPopular => release
                .popular()
                .iter()
                .map(|(item, _)| *item)
                .filter(|item| {
                    let showable = (*item as usize) < catalogue.len() && {
                        let info = catalogue.info(*item);
                        info.known && !info.sensitive
                    };
                    showable && history.iter().all(|t| t.item != *item)
                })
                .take(n)
                .collect(),
            Ranker::Fallback | Ranker::Personal => {
                let personal = ranker == Ranker::Personal;
                let exclude = if personal { Vec::new() } else { history.iter().map(|t| t.item).collect() };
                let ask = Ask {
                    history: if personal { history } else { &[] },
                    filter: Filter { include_unavailable: true, exclude, ..Filter::default() },
                    n,
                    ..Ask::default()
                };
                recommend::recommend(release, catalogue, config, &ask).into_iter().map(|r| r.item).collect()
            }
        };
        if let Some(rank) = ranked.iter().position(|item| *item == target.item) {
            metrics.hit_rate += 1.0;
            metrics.ndcg += 1.0 / (rank as f64 + 2.0).log2();
        }
        metrics.evaluated += 1;
    }
    if metrics.evaluated > 0 {
        metrics.hit_rate /= metrics.evaluated as f64;
        metrics.ndcg /= metrics.evaluated as f64;
    }
    metrics
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub setting: Setting,
    pub metrics: Metrics,
    /// The privacy the release spent, when noisy.
    pub spent: Option<Spent>,
    /// Pairs released, and items with at least one released neighbour.
    pub pairs: usize,
    pub items_with_neighbours: usize,
    /// Contributions and aggregates (shared by every row), plus this row's release.
    pub train: Duration,
}

/// The evaluation: its rows and what they were measured on.
#[derive(Debug, Clone)]
pub struct Report {
    pub rows: Vec<Row>,
    pub people: usize,
    pub items: usize,
    pub interactions: usize,
    pub sensitive_dropped: usize,
    pub training_touches: usize,
    pub held_out: usize,
    /// People eligible (two distinct items or more), and of those scored.
    pub eligible: usize,
    pub evaluated: usize,
    /// Building contributions and aggregates, once for every row.
    pub aggregation: Duration,
}

impl Report {
    /// The best HR among rows without a privacy protection.
    pub fn best_open_hit_rate(&self) -> f64 {
        self.rows.iter().filter(|r| !r.setting.private()).map(|r| r.metrics.hit_rate).fold(0.0, f64::max)
    }

    /// A row's HR relative to the best row without a privacy protection (-0.1 is 10% lower).
    pub fn change(&self, row: &Row) -> f64 {
        let best = self.best_open_hit_rate();
        if best > 0.0 { row.metrics.hit_rate / best - 1.0 } else { 0.0 }
    }

    /// A row by model and exact setting.
    pub fn row(&self, model: &str, private: bool, epsilon: Option<f64>) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.setting.model == model && r.setting.private() == private && r.setting.config.epsilon == epsilon
        })
    }

    /// The best HR of the non-personalized baselines.
    pub fn best_baseline_hit_rate(&self) -> f64 {
        self.rows
            .iter()
            .filter(|r| r.setting.ranker != Ranker::Personal)
            .map(|r| r.metrics.hit_rate)
            .fold(0.0, f64::max)
    }
}

/// Runs every setting of [`settings`] on a dataset. `clock` reads a monotonic clock (this crate
/// does no IO; the caller times, tests pass a stopped clock).
pub fn evaluate(
    dataset: &Dataset,
    options: &Options,
    clock: &dyn Fn() -> Duration,
) -> Result<Report, EvalError> {
    evaluate_settings(dataset, options, settings(), clock)
}

/// The settings a service runs with, beside the popularity baseline: what the brand's console
/// measures on its own people (most popular; the served model with its own k, cap and noise).
pub fn served_settings(config: &Config) -> Vec<Setting> {
    let open = Config { min_support: 1, epsilon: None, ..config.clone() };
    let noise = config.epsilon.map_or_else(|| "no noise".to_owned(), |e| format!("DP ε={e}"));
    vec![
        Setting {
            model: "most popular",
            setting: format!("popular list only ({}-day window)", config.popular_days),
            config: open,
            ranker: Ranker::MostPopular,
        },
        Setting {
            model: "item-to-item",
            setting: format!("as served: k={}, {noise}, cap {}", config.min_support, config.cap),
            config: config.clone(),
            ranker: Ranker::Personal,
        },
    ]
}

/// Runs the given settings on a dataset (see [`evaluate`]).
pub fn evaluate_settings(
    dataset: &Dataset,
    options: &Options,
    settings: Vec<Setting>,
    clock: &dyn Fn() -> Duration,
) -> Result<Report, EvalError> {
    let split = Split::leave_last_out(dataset);
    let targets = split.sample(options.users, options.seed);
    if targets.is_empty() {
        return Err(EvalError::NoOneToEvaluate);
    }
    let mut catalogue = Catalogue::default();
    for item in &dataset.items {
        catalogue.upsert(item.clone());
    }
    let mut trained: Option<(Aggregates, Duration)> = None;
    let mut contributions: Option<Vec<Contribution>> = None;
    let mut histories: Vec<Vec<Touch>> = Vec::new();
    let mut rows = Vec::new();
    for setting in settings {
        let config = &setting.config;
        let (aggregates, aggregation) = match trained.take() {
            Some((aggregates, took)) if aggregates.cap() == config.cap => (aggregates, took),
            _ => {
                let started = clock();
                let built = contributions.get_or_insert_with(|| split.contributions());
                let aggregates = Aggregates::train(config, built.iter());
                (aggregates, clock().saturating_sub(started))
            }
        };
        if histories.is_empty() {
            let built = contributions.get_or_insert_with(|| split.contributions());
            histories = targets.iter().map(|t| built[t.person as usize].recent()).collect();
        }
        let started = clock();
        let release = Release::full(&aggregates, config, split.now)?;
        let train = aggregation + clock().saturating_sub(started);
        let metrics = score(&release, &catalogue, config, &targets, &histories, setting.ranker, options.n);
        rows.push(Row {
            pairs: release.pair_count(),
            items_with_neighbours: release.items_with_neighbours(),
            spent: release.spent,
            metrics,
            train,
            setting,
        });
        trained = Some((aggregates, aggregation));
    }
    Ok(Report {
        rows,
        people: split.people(),
        items: dataset.items.len(),
        interactions: dataset.interactions.len(),
        sensitive_dropped: split.sensitive_dropped,
        training_touches: split.training_touches(),
        held_out: split.held_out,
        eligible: split.targets.len(),
        evaluated: targets.len(),
        aggregation: trained.map_or(Duration::ZERO, |(_, took)| took),
    })
}

/// A line of a CSV file that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

/// Reads `user,item,timestamp[,event]` lines into a dataset, one line at a time (so a large file
/// need not be held whole). The first line may be a header. Timestamps are Unix seconds or
/// milliseconds (told apart by size: below 10^11 is seconds, which covers dates up to the year 5138,
/// while 10^11 ms is in 1973) or RFC 3339. The optional event is a Segment e-commerce name
/// (`Product Viewed`, `Product Added`, `Order Completed`) and sets the weight; without it every row
/// weighs as a view. Items not in a given catalogue are added with no category.
#[derive(Debug, Default)]
pub struct CsvReader {
    people: HashMap<String, PersonIx>,
    items: HashMap<String, ItemIx>,
    dataset: Dataset,
    line: usize,
    weights: Weights,
}

impl CsvReader {
    pub fn new() -> CsvReader {
        CsvReader::default()
    }

    /// A reader whose item ids name these items (the index of each is its place in the list).
    pub fn with_items(items: Vec<ItemInfo>) -> CsvReader {
        let mut reader = CsvReader::new();
        reader.items = items.iter().enumerate().map(|(i, info)| (info.id.clone(), i as ItemIx)).collect();
        reader.dataset.items = items;
        reader
    }

    /// Reads the next line.
    pub fn line(&mut self, text: &str) -> Result<(), CsvError> {
        self.line += 1;
        let text = text.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            return Ok(());
        }
        let error = |message: String| CsvError { line: self.line, message };
        let fields: Vec<&str> = text.split(',').map(|f| f.trim().trim_matches('"')).collect();
        if !(3..=4).contains(&fields.len()) {
            return Err(error(format!(
                "expected user,item,timestamp[,event], found {} fields",
                fields.len()
            )));
        }
        let Some(at) = parse_time(fields[2]) else {
            if self.line == 1 {
                return Ok(()); // The header.
            }
            return Err(error(format!(
                "timestamp `{}` is neither Unix seconds or milliseconds nor RFC 3339",
                fields[2]
            )));
        };
        let weight = match fields.get(3) {
            None | Some(&"") => self.weights.view,
            Some(name) => match Event::from_name(name) {
                Some(event) => event.weight(&self.weights),
                None => {
                    return Err(error(format!(
                        "unknown event `{name}` (expected Product Viewed, Product Added or Order Completed)"
                    )));
                }
            },
        };
        if fields[0].is_empty() || fields[1].is_empty() {
            return Err(error("the user and the item must not be empty".into()));
        }
        let person = match self.people.get(fields[0]) {
            Some(person) => *person,
            None => {
                let person = self.people.len() as PersonIx;
                self.people.insert(fields[0].to_owned(), person);
                person
            }
        };
        let item = match self.items.get(fields[1]) {
            Some(item) => *item,
            None => {
                let item = self.dataset.items.len() as ItemIx;
                self.items.insert(fields[1].to_owned(), item);
                self.dataset.items.push(ItemInfo {
                    id: fields[1].to_owned(),
                    categories: Vec::new(),
                    sensitive: false,
                    available: true,
                    price: None,
                    known: true,
                });
                item
            }
        };
        self.dataset.interactions.push(Interaction { person, touch: Touch { item, weight, at } });
        Ok(())
    }

    /// The dataset read.
    pub fn finish(mut self) -> Dataset {
        self.dataset.people = self.people.len() as u32;
        self.dataset
    }
}

/// Reads a whole CSV text.
pub fn read_csv(text: &str) -> Result<Dataset, CsvError> {
    let mut reader = CsvReader::new();
    for line in text.lines() {
        reader.line(line)?;
    }
    Ok(reader.finish())
}

/// Unix seconds or milliseconds (by size), or RFC 3339, as Unix milliseconds.
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(number) = text.parse::<i64>() {
        return Some(if number.unsigned_abs() < 100_000_000_000 {
            number.checked_mul(1000)?
        } else {
            number
        });
    }
    parse_rfc3339(text)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as Unix milliseconds.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if bytes.get(4) != Some(&b'-')
        || bytes.get(7) != Some(&b'-')
        || !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
        || bytes.get(13) != Some(&b':')
        || bytes.get(16) != Some(&b':')
        || !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = number_of(&[*h1, *h2])?;
            let minutes = number_of(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = (hours * 60 + minutes) * 60_000;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second.min(59) * 1000 + millis - offset)
}

fn number_of(digits: &[u8]) -> Option<i64> {
    digits
        .iter()
        .all(u8::is_ascii_digit)
        .then(|| digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DAY_MS;
    use crate::generate::{Spec, generate, rfc3339};

    fn stopped() -> Duration {
        Duration::ZERO
    }

    fn touch(item: ItemIx, weight: u8, at: i64) -> Touch {
        Touch { item, weight, at }
    }

    fn dataset(items: usize, interactions: &[(PersonIx, Touch)]) -> Dataset {
        Dataset {
            items: (0..items)
                .map(|i| ItemInfo {
                    id: format!("item-{i}"),
                    categories: Vec::new(),
                    sensitive: i == items - 1,
                    available: true,
                    price: None,
                    known: true,
                })
                .collect(),
            interactions: interactions.iter().map(|&(person, touch)| Interaction { person, touch }).collect(),
            people: 0,
        }
    }

    #[test]
    fn the_last_new_item_is_held_out_with_everything_after_it() {
        // Person 0 (recorded out of order): views 1, views 2, adds 1 to the cart, buys 2 — the last
        // item they came to is 2, and from its first touch on nothing is trained on. Person 1 touched
        // one item only: trained on, not evaluated. Person 2 touched the sensitive item last.
        let data = dataset(
            5,
            &[
                (0, touch(2, 3, 40)),
                (0, touch(1, 1, 10)),
                (0, touch(1, 2, 30)),
                (0, touch(2, 1, 20)),
                (1, touch(3, 1, 5)),
                (1, touch(3, 3, 6)),
                (2, touch(0, 1, 1)),
                (2, touch(1, 1, 2)),
                (2, touch(4, 1, 3)),
            ],
        );
        let split = Split::leave_last_out(&data);
        assert_eq!(split.targets, vec![Target { person: 0, item: 2 }, Target { person: 2, item: 1 }]);
        assert_eq!(split.history(0), &[touch(1, 1, 10)]);
        assert_eq!(split.history(1).len(), 2);
        assert_eq!(split.history(2), &[touch(0, 1, 1)], "the sensitive touch is gone");
        assert_eq!((split.sensitive_dropped, split.held_out, split.now), (1, 4, 40));
        assert!(split.contributions()[0].touches().iter().all(|t| t.item != 2));
    }

    #[test]
    fn sampling_is_seeded_and_bounded() {
        let data =
            generate(&Spec { people: 300, items: 100, interactions: 6_000, clusters: 4, ..Spec::default() });
        let split = Split::leave_last_out(&data);
        let a = split.sample(50, 7);
        assert_eq!(a.len(), 50);
        assert_eq!(a, split.sample(50, 7));
        assert_ne!(a, split.sample(50, 8));
        assert!(a.windows(2).all(|w| w[0].person < w[1].person));
        assert_eq!(split.sample(10_000, 7), split.targets);
    }

    #[test]
    fn item_to_item_beats_popularity_on_planted_clusters() {
        let spec = Spec { people: 3_000, items: 400, interactions: 60_000, clusters: 8, ..Spec::default() };
        let report =
            evaluate(&generate(&spec), &Options { users: 1_000, ..Options::default() }, &stopped).unwrap();
        let popularity = report.row("popularity", false, None).unwrap().metrics;
        let most_popular = report.row("most popular", false, None).unwrap().metrics;
        let item_to_item = report.row("item-to-item", false, None).unwrap().metrics;
        let with_k = report.row("item-to-item", true, None).unwrap().metrics;
        assert_eq!(report.evaluated, 1_000);
        assert!(
            item_to_item.hit_rate >= 1.5 * popularity.hit_rate,
            "item-to-item {item_to_item:?} against popularity {popularity:?}"
        );
        assert!(
            item_to_item.hit_rate >= 1.5 * most_popular.hit_rate,
            "item-to-item {item_to_item:?} against the most popular items {most_popular:?}"
        );
        assert_eq!(report.best_baseline_hit_rate(), most_popular.hit_rate.max(popularity.hit_rate));
        assert!(with_k.hit_rate > popularity.hit_rate, "k=5 keeps most of the gain: {with_k:?}");
        for row in &report.rows {
            assert!(row.metrics.ndcg <= row.metrics.hit_rate, "{row:?}");
            assert!(row.metrics.hit_rate > 0.0 && row.metrics.hit_rate <= 1.0, "{row:?}");
            assert_eq!(row.spent.is_some(), row.setting.config.epsilon.is_some());
        }
        let noisy = report.row("item-to-item", true, Some(1.0)).unwrap();
        assert!((noisy.spent.unwrap().epsilon - 1.0).abs() < 1e-6);
        let open = report.row("item-to-item", false, None).unwrap();
        assert!(
            report.row("item-to-item", true, None).unwrap().pairs < open.pairs,
            "k=5 releases fewer pairs than k=1"
        );
        assert_eq!(report.change(open), 0.0, "the best open row is item-to-item at k=1");
        assert!(report.sensitive_dropped > 0);
    }

    #[test]
    fn nobody_to_evaluate_is_an_error() {
        let data = dataset(3, &[(0, touch(0, 1, 1)), (1, touch(1, 1, 1))]);
        assert_eq!(evaluate(&data, &Options::default(), &stopped).unwrap_err(), EvalError::NoOneToEvaluate);
    }

    #[test]
    fn csv_with_a_header_seconds_milliseconds_and_rfc3339() {
        let text = "user,item,timestamp\n\
                    u1,a,1700000000\n\
                    u1,b,1700000000500\r\n\
                    \n\
                    u2,a,2023-11-14T22:13:20.25Z,Order Completed\n\
                    u2,c,2023-11-14T23:13:20+01:00,\n";
        let data = read_csv(text).unwrap();
        assert_eq!(data.people, 2);
        assert_eq!(data.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        let got: Vec<(PersonIx, ItemIx, u8, i64)> =
            data.interactions.iter().map(|i| (i.person, i.touch.item, i.touch.weight, i.touch.at)).collect();
        assert_eq!(
            got,
            [
                (0, 0, 1, 1_700_000_000_000),
                (0, 1, 1, 1_700_000_000_500),
                (1, 0, 3, 1_700_000_000_250),
                (1, 2, 1, 1_700_000_000_000)
            ]
        );
        let no_header = read_csv("7,42,1\n").unwrap();
        assert_eq!(no_header.interactions[0].touch.at, 1000);
    }

    #[test]
    fn a_bad_csv_line_is_named() {
        let check = |text: &str, expected: &str| {
            assert_eq!(read_csv(text).unwrap_err().to_string(), expected, "{text:?}");
        };
        check(
            "user,item,timestamp\nu,a,1\nu,b,yesterday\n",
            "line 3: timestamp `yesterday` is neither Unix seconds or milliseconds nor RFC 3339",
        );
        check("u,a,1\nu,b\n", "line 2: expected user,item,timestamp[,event], found 2 fields");
        check(
            "u,a,1\nu,a,2,Product Clicked\n",
            "line 2: unknown event `Product Clicked` (expected Product Viewed, Product Added or Order Completed)",
        );
        check("u,a,1\n,a,2\n", "line 2: the user and the item must not be empty");
        check(
            "u,a,1\nu,a,2024-02-30T00:00:00Z\n",
            "line 2: timestamp `2024-02-30T00:00:00Z` is neither Unix seconds or milliseconds nor RFC 3339",
        );
        check("u,a,1,2,3,4\n", "line 1: expected user,item,timestamp[,event], found 6 fields");
    }

    #[test]
    fn rfc3339_reads_what_the_generator_writes() {
        for at in [0, 1, 999, DAY_MS - 1, 951_782_400_123, 1_775_001_599_999, -86_400_001, 4_102_444_800_000]
        {
            let text = rfc3339(at);
            assert_eq!(parse_time(&text), Some(at), "{text}");
        }
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00-02:30"), parse_rfc3339("2024-02-29T14:30:00Z"));
        for bad in [
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_catalogue_given_keeps_its_indices() {
        let items = dataset(3, &[]).items;
        let mut reader = CsvReader::with_items(items);
        reader.line("p,item-2,5").unwrap();
        reader.line("p,new,6").unwrap();
        let data = reader.finish();
        assert_eq!(data.interactions[0].touch.item, 2);
        assert_eq!(data.interactions[1].touch.item, 3);
        assert_eq!(data.items[3].categories, Vec::<String>::new());
    }
}
