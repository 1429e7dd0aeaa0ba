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

use crate::generate::Dataset;
use crate::model::{Aggregates, Contribution};
use crate::recommend::Catalogue;
use crate::release::{Release, ReleaseError, Spent};
use crate::{ItemIx, Touch};

mod csv;
mod metrics;
mod settings;
mod split;

pub use csv::{CsvError, CsvReader, read_csv};
pub use metrics::{Metrics, score};
pub use settings::{DELTA, Ranker, Setting, served_settings, settings};
pub use split::{Split, Target};

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

    /// A row by model and exact setting (the first, when mechanisms share an ε).
    pub fn row(&self, model: &str, private: bool, epsilon: Option<f64>) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.setting.model == model && r.setting.private() == private && r.setting.config.epsilon == epsilon
        })
    }

    /// The noisy item-to-item row at an ε and cap, by mechanism.
    pub fn noisy_row(&self, gaussian: bool, epsilon: f64, cap: usize) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.setting.ranker == Ranker::Personal
                && r.setting.gaussian() == gaussian
                && r.setting.config.epsilon == Some(epsilon)
                && r.setting.config.cap == cap
        })
    }

    /// A row's HR@n as a share of the best row without a privacy protection.
    pub fn kept(&self, row: &Row) -> f64 {
        let best = self.best_open_hit_rate();
        if best > 0.0 { row.metrics.hit_rate / best } else { 0.0 }
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

/// Runs every setting of [`settings()`] on a dataset. `clock` reads a monotonic clock (this crate
/// does no IO; the caller times, tests pass a stopped clock).
pub fn evaluate(
    dataset: &Dataset,
    options: &Options,
    clock: &dyn Fn() -> Duration,
) -> Result<Report, EvalError> {
    evaluate_settings(dataset, options, settings(), clock)
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
    // The public domain a Gaussian release puts noise on: the catalogue's items that may be
    // recommended from behaviour.
    let domain: Vec<ItemIx> =
        (0..catalogue.len() as ItemIx).filter(|i| !catalogue.info(*i).sensitive).collect();
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
        let release = Release::full_over(&aggregates, config, &domain, split.now)?;
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

#[cfg(test)]
mod tests;
