//! Tactful's private analytics, pure (no IO): rows of what consenting people did become grouped
//! counts, distinct-people counts, sums and means. Without noise, a group with fewer than k distinct
//! people is suppressed (named, never given a number). With noise, each person's rows are bounded,
//! every released value gets discrete Laplace noise from OpenDP, and the groups themselves are
//! released through OpenDP's noisy-threshold mechanism (so which groups exist is private too); the
//! answer states the ε and δ spent, the noise scale and a 95% interval for each value.

use std::collections::HashMap;

use opendp::domains::{AtomDomain, MapDomain, VectorDomain};
use opendp::measurements::{make_laplace, make_laplace_threshold};
use opendp::measures::{Approximate, MaxDivergence};
use opendp::metrics::{AbsoluteDistance, L1Distance, L01InfDistance};

/// Why a query cannot be answered.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InsightsError {
    #[error("ε must be a positive number, not {0}")]
    Epsilon(f64),
    #[error("a sum needs bounds with min < max, not [{0}, {1}]")]
    Bounds(f64, f64),
    #[error("rows per person must be at least 1")]
    Rows,
    #[error("the noise scale would be {0:e}, above the {MAX_SCALE:e} an answer can carry: ε is too small")]
    Scale(f64),
    #[error("differential privacy: {0}")]
    Noise(String),
}

impl From<opendp::error::Error> for InsightsError {
    fn from(error: opendp::error::Error) -> Self {
        InsightsError::Noise(error.to_string())
    }
}

/// What is computed per group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// How many events.
    Events,
    /// How many distinct people.
    People,
    /// The sum of a numeric value, each clamped to `[min, max]`.
    Sum { min: f64, max: f64 },
    /// The mean of a numeric value, each clamped to `[min, max]`.
    Mean { min: f64, max: f64 },
}

/// Noise settings of a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// The ε the whole answer spends.
    pub epsilon: f64,
    /// Rows one person may contribute at most (more are left out): bounds what one person changes.
    pub rows_per_person: u32,
}

/// One event of one person, with its group key and (for sums and means) its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Any id that is the same for all rows of one person (and differs between people).
    pub person: u64,
    pub key: Vec<String>,
    pub value: Option<f64>,
}

/// One group of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub key: Vec<String>,
    /// `None` when suppressed (fewer than k people; only without noise, where naming it is safe).
    pub value: Option<f64>,
    /// A 95% interval around a noisy value (the exact value lies in it with 95% probability).
    pub interval: Option<(f64, f64)>,
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Released groups, in key order; suppressed ones carry no value.
    pub groups: Vec<Group>,
    /// ε and δ spent (0 without noise).
    pub epsilon: f64,
    pub delta: f64,
    /// The Laplace scale of the noise on each value (for a mean, on its sum and its count).
    pub scale: Option<f64>,
    /// The noisy people count a group needed to be released (with noise), or k (without).
    pub threshold: f64,
    /// Rows left out by the per-person bound.
    pub rows_dropped: u64,
}

/// A released value and its 95% interval.
type Valued = (f64, (f64, f64));

/// δ aimed at by the noisy threshold on groups.
pub const DELTA: f64 = 1e-7;
/// The largest noise scale an answer is computed at: beyond it an answer is noise only, drawing
/// the noise takes seconds, and the search for the groups' release threshold runs for minutes
/// (forever as ε approaches 0).
pub const MAX_SCALE: f64 = 1e9;
/// Doublings of the threshold tried at most (an `i64` holds no more).
const MAX_DOUBLINGS: u32 = 64;
/// Sums and means are computed in hundredths (integers, so the noise is discrete).
const FIXED: f64 = 100.0;

/// The half-width of the smallest symmetric interval that holds discrete Laplace noise of `scale`
/// (integer noise `k` with probability proportional to `exp(-|k| / scale)`, what OpenDP draws) with
/// probability at least `1 - alpha`. With `t = exp(-1 / scale)`, `P(|k| > m) = 2 t^(m+1) / (1 + t)`:
/// the half-width is the smallest integer `m` that brings this to `alpha` or below. (The
/// continuous Laplace quantile `scale · ln(1 / alpha)` is slightly too narrow for integer noise:
/// at scale 1 it would hold 92.7%, not 95%.)
pub fn half_width(scale: f64, alpha: f64) -> f64 {
    if !(scale.is_finite() && scale > 0.0 && alpha > 0.0 && alpha < 1.0) {
        return if alpha >= 1.0 { 0.0 } else { f64::INFINITY };
    }
    let t = (-1.0 / scale).exp();
    let beyond = |m: f64| 2.0 * t.powf(m + 1.0) / (1.0 + t);
    let mut m = ((scale * (2.0 / (alpha * (1.0 + t))).ln()).ceil() - 1.0).max(0.0);
    // The closed form may be one off either way in floating point; settle it on the tail itself.
    while m > 0.0 && beyond(m - 1.0) <= alpha {
        m -= 1.0;
    }
    while beyond(m) > alpha {
        m += 1.0;
    }
    m
}

/// The two-sided 95% half-width of the noise of `scale` (see [`half_width`]).
pub fn half_width_95(scale: f64) -> f64 {
    half_width(scale, 0.05)
}

/// What one group gathered so far.
#[derive(Default)]
struct Sums {
    events: i64,
    /// The group's people, with repeats until the next compaction (sorted, deduplicated).
    people: Vec<u64>,
    /// The length of `people` after its last compaction; it is compacted again once it doubles,
    /// so it never holds much more than twice the distinct people.
    compacted: usize,
    sum: f64,
}

impl Sums {
    fn add_person(&mut self, person: u64) {
        // Rows of one person often come together: skip the obvious repeat.
        if self.people.last() == Some(&person) {
            return;
        }
        self.people.push(person);
        if self.people.len() >= 2 * self.compacted.max(1_024) {
            self.compact();
        }
    }

    fn compact(&mut self) {
        self.people.sort_unstable();
        self.people.dedup();
        self.compacted = self.people.len();
    }
}

/// Rows tallied per group as they come, for windows too large to hold as rows: the caller numbers
/// its groups and names them when it asks for the [`Tally::answer`].
pub struct Tally {
    metric: Metric,
    noise: Option<Noise>,
    /// Rows kept so far per person, counted only under noise (where each person's rows are bounded).
    seen: hashbrown::HashMap<u64, u32>,
    groups: Vec<Sums>,
    rows_dropped: u64,
}

impl Tally {
    /// An empty tally; refuses bounds and noise settings that cannot give an answer.
    pub fn new(metric: Metric, noise: Option<Noise>) -> Result<Tally, InsightsError> {
        if let Metric::Sum { min, max } | Metric::Mean { min, max } = metric
            && !(min.is_finite() && max.is_finite() && min < max)
        {
            return Err(InsightsError::Bounds(min, max));
        }
        if let Some(noise) = noise {
            if !(noise.epsilon.is_finite() && noise.epsilon > 0.0) {
                return Err(InsightsError::Epsilon(noise.epsilon));
            }
            if noise.rows_per_person == 0 {
                return Err(InsightsError::Rows);
            }
            let scale = largest_scale(metric, noise);
            if !(scale.is_finite() && scale <= MAX_SCALE) {
                return Err(InsightsError::Scale(scale));
            }
        }
        Ok(Tally { metric, noise, seen: hashbrown::HashMap::new(), groups: Vec::new(), rows_dropped: 0 })
    }

    /// One row of `person` in group number `group` (with its value, for sums and means). Under
    /// noise, a person's rows beyond the bound are left out: first come, first kept.
    pub fn add(&mut self, person: u64, group: usize, value: Option<f64>) {
        if let Some(noise) = self.noise {
            let count = self.seen.entry(person).or_default();
            if *count >= noise.rows_per_person {
                self.rows_dropped += 1;
                return;
            }
            *count += 1;
        }
        let value = match self.metric {
            Metric::Sum { min, max } | Metric::Mean { min, max } => match value.filter(|v| v.is_finite()) {
                Some(v) => v.clamp(min, max),
                None => return,
            },
            _ => 0.0,
        };
        if self.groups.len() <= group {
            self.groups.resize_with(group + 1, Sums::default);
        }
        let sums = &mut self.groups[group];
        sums.events += 1;
        sums.add_person(person);
        sums.sum += value;
    }

    /// The answer with at least `k` distinct people per shown group; group number `i` is named
    /// `keys[i]` (groups that kept no row are not groups).
    pub fn answer(self, keys: Vec<Vec<String>>, k: u32) -> Result<Answer, InsightsError> {
        let mut keys = keys.into_iter();
        let groups: Vec<(Vec<String>, Sums)> = self
            .groups
            .into_iter()
            .map(|mut sums| {
                sums.compact();
                (keys.next().unwrap_or_default(), sums)
            })
            .filter(|(_, sums)| sums.events > 0)
            .collect();
        match self.noise {
            None => Ok(exact(groups, self.metric, k, self.rows_dropped)),
            Some(noise) => noisy(groups, self.metric, k, noise, self.rows_dropped),
        }
    }
}

/// Answers a grouped query over `rows` with at least `k` distinct people per shown group.
pub fn answer(
    rows: impl IntoIterator<Item = Row>,
    metric: Metric,
    k: u32,
    noise: Option<Noise>,
) -> Result<Answer, InsightsError> {
    let mut tally = Tally::new(metric, noise)?;
    let mut numbers: HashMap<Vec<String>, usize> = HashMap::new();
    let mut keys: Vec<Vec<String>> = Vec::new();
    for row in rows {
        let group = match numbers.get(&row.key) {
            Some(group) => *group,
            None => {
                numbers.insert(row.key.clone(), keys.len());
                keys.push(row.key);
                keys.len() - 1
            }
        };
        tally.add(row.person, group, row.value);
    }
    tally.answer(keys, k)
}

fn exact(groups: Vec<(Vec<String>, Sums)>, metric: Metric, k: u32, rows_dropped: u64) -> Answer {
    let mut released: Vec<Group> = groups
        .into_iter()
        .map(|(key, sums)| {
            let value = (sums.people.len() >= k as usize).then(|| match metric {
                Metric::Events => sums.events as f64,
                Metric::People => sums.people.len() as f64,
                Metric::Sum { .. } => sums.sum,
                Metric::Mean { .. } => sums.sum / sums.events.max(1) as f64,
            });
            Group { key, value, interval: None }
        })
        .collect();
    released.sort_by(|a, b| a.key.cmp(&b.key));
    Answer { groups: released, epsilon: 0.0, delta: 0.0, scale: None, threshold: f64::from(k), rows_dropped }
}

fn noisy(
    groups: Vec<(Vec<String>, Sums)>,
    metric: Metric,
    k: u32,
    noise: Noise,
    rows_dropped: u64,
) -> Result<Answer, InsightsError> {
    let bound = i64::from(noise.rows_per_person);
    // Keys are released on a noisy count of people (a person is in at most `bound` groups, once
    // each); for a count of people that count is the answer, otherwise half the budget goes to it.
    let eps_keys = keys_epsilon(metric, noise);
    let mut ids: Vec<Vec<String>> = Vec::with_capacity(groups.len());
    let mut people: HashMap<u64, i64> = HashMap::new();
    let mut sums: Vec<Sums> = Vec::with_capacity(groups.len());
    for (index, (key, group)) in groups.into_iter().enumerate() {
        people.insert(index as u64, group.people.len() as i64);
        ids.push(key);
        sums.push(group);
    }
    let scale_keys = keys_scale(metric, noise);
    if !(scale_keys.is_finite() && scale_keys <= MAX_SCALE) {
        return Err(InsightsError::Scale(scale_keys));
    }
    let distance = (u32::try_from(bound).unwrap_or(u32::MAX), bound, 1i64);
    let make = |threshold: i64| {
        make_laplace_threshold::<_, _, Approximate<MaxDivergence>>(
            MapDomain::new(AtomDomain::<u64>::default(), AtomDomain::<i64>::default()),
            L01InfDistance::<AbsoluteDistance<i64>>::default(),
            scale_keys,
            threshold,
            None,
        )
    };
    let delta_at = |threshold: i64| -> Result<f64, InsightsError> { Ok(make(threshold)?.map(&distance)?.1) };
    let floor = i64::from(k.max(1));
    let mut high = floor;
    let mut doublings = 0;
    while delta_at(high)? > DELTA {
        if doublings == MAX_DOUBLINGS || high == i64::MAX {
            return Err(InsightsError::Scale(scale_keys));
        }
        high = high.saturating_mul(2);
        doublings += 1;
    }
    let mut low = floor;
    while low < high {
        let middle = low + (high - low) / 2;
        if delta_at(middle)? > DELTA {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    let threshold = high;
    let keys = make(threshold)?;
    let (mut epsilon, delta) = keys.map(&distance)?;
    let released = keys.invoke(&people)?;
    let mut order: Vec<u64> = released.keys().copied().collect();
    order.sort_unstable_by(|a, b| ids[*a as usize].cmp(&ids[*b as usize]));

    let eps_value = noise.epsilon - eps_keys;
    let (values, scale): (Vec<Valued>, f64) = match metric {
        Metric::People => {
            let width = half_width_95(scale_keys);
            (
                order
                    .iter()
                    .map(|id| {
                        let v = released[id] as f64;
                        (v, (v - width, v + width))
                    })
                    .collect(),
                scale_keys,
            )
        }
        Metric::Events => {
            let counts: Vec<i64> = order.iter().map(|id| sums[*id as usize].events).collect();
            let (noisy, spent, scale) = laplace(counts, bound, eps_value)?;
            epsilon += spent;
            let width = half_width_95(scale);
            (noisy.into_iter().map(|v| (v as f64, (v as f64 - width, v as f64 + width))).collect(), scale)
        }
        Metric::Sum { min, max } => {
            let reach = reach(min, max);
            let totals: Vec<i64> =
                order.iter().map(|id| (sums[*id as usize].sum * FIXED).round() as i64).collect();
            let (noisy, spent, scale) = laplace(totals, bound * reach.max(1), eps_value)?;
            epsilon += spent;
            let width = half_width_95(scale) / FIXED;
            (
                noisy
                    .into_iter()
                    .map(|v| {
                        let v = v as f64 / FIXED;
                        (v, (v - width, v + width))
                    })
                    .collect(),
                scale / FIXED,
            )
        }
        Metric::Mean { min, max } => {
            let reach = reach(min, max);
            let totals: Vec<i64> =
                order.iter().map(|id| (sums[*id as usize].sum * FIXED).round() as i64).collect();
            let counts: Vec<i64> = order.iter().map(|id| sums[*id as usize].events).collect();
            let (noisy_totals, spent_totals, scale_totals) =
                laplace(totals, bound * reach.max(1), eps_value / 2.0)?;
            let (noisy_counts, spent_counts, scale_counts) = laplace(counts, bound, eps_value / 2.0)?;
            epsilon += spent_totals + spent_counts;
            // Each half holds with 97.5%, so both hold together with at least 95%.
            let (w_total, w_count) =
                (half_width(scale_totals, 0.025) / FIXED, half_width(scale_counts, 0.025));
            let values = noisy_totals
                .into_iter()
                .zip(noisy_counts)
                .map(|(total, count)| {
                    let (total, count) = (total as f64 / FIXED, (count as f64).max(1.0));
                    let mean = (total / count).clamp(min, max);
                    // The ratio's extremes over both intervals.
                    let lows = [
                        (total - w_total) / (count + w_count),
                        (total - w_total) / (count - w_count).max(1.0),
                    ];
                    let highs = [
                        (total + w_total) / (count + w_count),
                        (total + w_total) / (count - w_count).max(1.0),
                    ];
                    let low = lows.iter().copied().fold(f64::INFINITY, f64::min).max(min);
                    let high = highs.iter().copied().fold(f64::NEG_INFINITY, f64::max).min(max);
                    (mean, (low, high))
                })
                .collect();
            (values, scale_totals / FIXED)
        }
    };
    let groups = order
        .iter()
        .zip(values)
        .map(|(id, (value, interval))| Group {
            key: ids[*id as usize].clone(),
            value: Some(value),
            interval: Some(interval),
        })
        .collect();
    Ok(Answer { groups, epsilon, delta, scale: Some(scale), threshold: threshold as f64, rows_dropped })
}

/// The ε spent on releasing groups: all of it for a count of people (that count is the answer),
/// otherwise half.
fn keys_epsilon(metric: Metric, noise: Noise) -> f64 {
    if metric == Metric::People { noise.epsilon } else { noise.epsilon / 2.0 }
}

/// The noise scale of the people count groups are released on.
fn keys_scale(metric: Metric, noise: Noise) -> f64 {
    f64::from(noise.rows_per_person) / keys_epsilon(metric, noise)
}

/// The largest noise scale the answer would use: on the groups' people counts, or on its values
/// (sums and means in hundredths, a mean's halves each with half the ε).
fn largest_scale(metric: Metric, noise: Noise) -> f64 {
    let rows = f64::from(noise.rows_per_person);
    let eps_value = noise.epsilon - keys_epsilon(metric, noise);
    let values = match metric {
        Metric::People => 0.0,
        Metric::Events => rows / eps_value,
        Metric::Sum { min, max } => rows * reach(min, max) as f64 / eps_value,
        Metric::Mean { min, max } => rows * reach(min, max) as f64 / (eps_value / 2.0),
    };
    keys_scale(metric, noise).max(values)
}

/// What one row may add to a sum, in hundredths.
fn reach(min: f64, max: f64) -> i64 {
    ((min.abs().max(max.abs()) * FIXED).ceil() as i64).max(1)
}

/// Discrete Laplace noise on every value for an L1 sensitivity per person: the noisy values, the ε
/// OpenDP says was spent, and the scale.
fn laplace(values: Vec<i64>, sensitivity: i64, epsilon: f64) -> Result<(Vec<i64>, f64, f64), InsightsError> {
    let scale = sensitivity as f64 / epsilon;
    // What the mechanism spends is fixed by its definition, released groups or not.
    let measurement = make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        scale,
        None,
    )?;
    let spent = measurement.map(&sensitivity)?;
    if values.is_empty() {
        return Ok((values, spent, scale));
    }
    Ok((measurement.invoke(&values)?, spent, scale))
}

#[cfg(test)]
mod tests;
