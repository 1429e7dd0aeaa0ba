//! The Gaussian release: the item catalogue is public, so which pairs *could* exist need not be
//! hidden. Every pair of the public domain of items gets Gaussian noise (OpenDP's discrete Gaussian),
//! whether anyone had it or not, and each item keeps its best noisy neighbours: choosing them is
//! post-processing and costs nothing, where a noisy threshold that hides an unknown domain costs most
//! of the signal below a million people.
//!
//! Accounting, for one person and all their events (they lend at most `cap` items, so at most
//! C(cap, 2) pair counts move, each by one): a count vector with L2 sensitivity Δ₂ under Gaussian
//! noise of standard deviation σ is ρ-zCDP with ρ = Δ₂² / (2σ²); the parts of a release add their ρ;
//! ρ-zCDP is (ε, δ)-DP with ε = ρ + 2√(ρ ln(1/δ)) (Bun and Steinke), and OpenDP's conversion (which
//! this uses, and which is never looser) gives a slightly smaller ε for the same ρ, so a release
//! spends the largest ρ whose ε at the catalog's δ is the catalog's ε.

use opendp::combinators::{make_fix_delta, make_zCDP_to_approxDP};
use opendp::core::Measurement;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::{AbsoluteDistance, L2Distance};

use super::{DELTA_MAX, MAX_SCALE, Release, ReleaseError, Spent, Windows, best_first};
use crate::model::Aggregates;
use crate::{Config, ItemIx, Mechanism};

/// How a release's ρ is shared: most on pairs (what item-to-item needs), some on popularity (what
/// everyone without a history sees), the rest on supports (for similarity), trends and the count of
/// people.
const SHARE_PAIRS: f64 = 0.8;
const SHARE_SUPPORTS: f64 = 0.05;
const SHARE_POPULAR: f64 = 0.1;
const SHARE_RECENT: f64 = 0.02;
const SHARE_BEFORE: f64 = 0.02;
const SHARE_PEOPLE: f64 = 0.01;

/// A pair is kept as a neighbour only when its noisy count is this many noise deviations above
/// zero (and at least k): below it, a pair nobody had would often pass for one. Post-processing.
pub const PAIR_FLOOR_SIGMAS: f64 = 3.0;

/// One noisy count vector of a release: its L2 sensitivity to one person, the standard deviation
/// of its noise, and the ρ it spends (OpenDP's map of the measurement).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    pub sensitivity: f64,
    pub sigma: f64,
    pub rho: f64,
}

type Noise =
    Measurement<VectorDomain<AtomDomain<i64>>, L2Distance<f64>, ZeroConcentratedDivergence, Vec<i64>>;

fn measurement(sigma: f64) -> Result<Noise, ReleaseError> {
    Ok(make_gaussian(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L2Distance::<f64>::default(),
        sigma,
        None,
    )?)
}

impl Part {
    /// The noise for a sensitivity and a share of ρ: σ = Δ₂ / √(2ρ).
    fn new(sensitivity: f64, rho: f64) -> Result<Part, ReleaseError> {
        let sigma = sensitivity / (2.0 * rho).sqrt();
        if !(sigma.is_finite() && sigma > 0.0 && sigma <= MAX_SCALE) {
            return Err(ReleaseError::Scale(sigma));
        }
        let rho = measurement(sigma)?.map(&sensitivity)?;
        Ok(Part { sensitivity, sigma, rho })
    }

    fn noise(&self, values: Vec<i64>) -> Result<Vec<i64>, ReleaseError> {
        if values.is_empty() {
            return Ok(values);
        }
        Ok(measurement(self.sigma)?.invoke(&values)?)
    }
}

/// What a Gaussian release spends and how: the ε and δ it guarantees, its total ρ, and each part.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub epsilon: f64,
    pub delta: f64,
    pub rho: f64,
    pub pairs: Part,
    pub supports: Part,
    pub popular: Part,
    pub recent: Part,
    pub before: Part,
    pub people: Part,
}

impl Plan {
    /// The noise of every part for the catalog's ε, δ and cap.
    pub fn new(epsilon: f64, delta: f64, config: &Config) -> Result<Plan, ReleaseError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(ReleaseError::Epsilon(epsilon));
        }
        if !(delta > 0.0 && delta <= DELTA_MAX) {
            return Err(ReleaseError::Delta(delta));
        }
        let budget = rho_for(epsilon, delta)?;
        let cap = config.cap.max(1) as f64;
        let weight = f64::from(
            config.weights.view.max(config.weights.add_to_cart).max(config.weights.purchase).max(1),
        );
        // One person moves at most C(cap, 2) pair counts and `cap` item counts, each by one; each of
        // their items' window sums by at most the strongest weight (popularity is counted in
        // thousandths, and rounding the sum may move it by one more).
        let pairs = Part::new((cap * (cap - 1.0) / 2.0).max(1.0).sqrt(), SHARE_PAIRS * budget)?;
        let supports = Part::new(cap.sqrt(), SHARE_SUPPORTS * budget)?;
        let popular = Part::new((1000.0 * weight + 1.0) * cap.sqrt(), SHARE_POPULAR * budget)?;
        let recent = Part::new(weight * cap.sqrt(), SHARE_RECENT * budget)?;
        let before = Part::new(weight * cap.sqrt(), SHARE_BEFORE * budget)?;
        let people = Part::new(1.0, SHARE_PEOPLE * budget)?;
        let rho = [pairs, supports, popular, recent, before, people].iter().map(|p| p.rho).sum::<f64>();
        Ok(Plan {
            epsilon: epsilon_of(rho, delta)?,
            delta,
            rho,
            pairs,
            supports,
            popular,
            recent,
            before,
            people,
        })
    }
}

/// A probe whose ρ at distance d is d²/2, for OpenDP's conversion of ρ-zCDP to (ε, δ).
fn probe() -> Result<
    Measurement<AtomDomain<f64>, AbsoluteDistance<f64>, opendp::measures::SmoothedMaxDivergence, f64>,
    ReleaseError,
> {
    let gaussian = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        AtomDomain::<f64>::new_non_nan(),
        AbsoluteDistance::<f64>::default(),
        1.0,
        None,
    )?;
    Ok(make_zCDP_to_approxDP(gaussian)?)
}

/// The ε of ρ-zCDP at δ, by OpenDP's conversion.
pub fn epsilon_of(rho: f64, delta: f64) -> Result<f64, ReleaseError> {
    Ok(make_fix_delta(&probe()?, delta)?.map(&(2.0 * rho).sqrt())?.0)
}

/// The ε of ρ-zCDP at δ by the closed form ε = ρ + 2√(ρ ln(1/δ)) (an upper bound on OpenDP's).
pub fn epsilon_bound(rho: f64, delta: f64) -> f64 {
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// The largest ρ (to a part in a million) whose ε at δ is at most `epsilon` (whose δ at that ε
/// is at most `delta`, which OpenDP computes directly): from the closed form's
/// ρ = (√(ln(1/δ) + ε) − √(ln(1/δ)))², which is always allowed, up by bisection.
fn rho_for(epsilon: f64, delta: f64) -> Result<f64, ReleaseError> {
    let probe = probe()?;
    let allowed = |rho: f64| -> Result<bool, ReleaseError> {
        Ok(probe.map(&(2.0 * rho).sqrt())?.delta(epsilon * (1.0 - 1e-6))? <= delta)
    };
    let log = (1.0 / delta).ln();
    let mut low = ((log + epsilon * (1.0 - 1e-6)).sqrt() - log.sqrt()).powi(2);
    let mut high = if allowed(2.0 * low)? { epsilon } else { 2.0 * low };
    while high - low > 1e-6 * high {
        let middle = 0.5 * (low + high);
        if allowed(middle)? {
            low = middle;
        } else {
            high = middle;
        }
    }
    Ok(low)
}

/// Releases over `items` (the public domain; any order, repeats ignored) with the plan's noise.
pub(super) fn release(
    aggregates: &Aggregates,
    config: &Config,
    plan: &Plan,
    items: &[ItemIx],
    now: i64,
) -> Result<Release, ReleaseError> {
    let mut domain = items.to_vec();
    domain.sort_unstable();
    domain.dedup();
    let windows = Windows::new(config, now);
    let (mut supports, mut popular, mut recent, mut before) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &a in &domain {
        let item = aggregates.item(a);
        supports.push(item.map_or(0, |i| i64::from(i.support)));
        let sums = item.map(|i| windows.sums(i.days.iter().map(|(d, w)| (*d, *w)))).unwrap_or_default();
        popular.push((sums.decayed * 1000.0).round() as i64);
        recent.push(sums.recent as i64);
        before.push(sums.before as i64);
    }
    let supports = plan.supports.noise(supports)?;
    let popular = plan.popular.noise(popular)?;
    let recent = plan.recent.noise(recent)?;
    let before = plan.before.noise(before)?;
    let people = plan.people.noise(vec![i64::from(aggregates.people())])?;

    // Similarity is the noisy pair count over the root of both noisy supports, each floored at
    // three deviations of its noise so a rare item's noise cannot blow its scores up.
    let support_floor = (3.0 * plan.supports.sigma).max(1.0);
    let norms: Vec<f64> = supports.iter().map(|s| (*s as f64).max(support_floor).sqrt()).collect();
    let floor = f64::from(config.min_support).max(PAIR_FLOOR_SIGMAS * plan.pairs.sigma);
    let best = noisy_pairs(aggregates, &domain, plan.pairs.sigma, floor, &norms, config.neighbors.max(1))?;

    let mut release = Release::empty(now);
    release.people = u32::try_from(people.first().copied().unwrap_or(0).max(0)).unwrap_or(u32::MAX);
    let mut neighbours: Vec<Vec<(ItemIx, f32)>> =
        vec![Vec::new(); domain.last().map_or(0, |m| *m as usize + 1)];
    for (position, list) in best.into_iter().enumerate() {
        let named = list.into_iter().map(|(other, score)| (domain[other as usize], score)).collect();
        neighbours[domain[position] as usize] = best_first(named, config.neighbors);
    }
    release.neighbours = neighbours;
    // Every item of the domain is ranked by its noisy count; a trend must stand out of the noise
    // (three deviations above k) before it may lead a page.
    let trend_floor = f64::from(config.min_support) + 3.0 * plan.recent.sigma;
    let mut popular_items = Vec::new();
    let mut trending_items = Vec::new();
    for (position, &item) in domain.iter().enumerate() {
        if popular[position] > 0 {
            popular_items.push((item, popular[position] as f32 / 1000.0));
        }
        if recent[position] as f64 >= trend_floor
            && let Some(score) = windows.trend(recent[position] as f64, before[position].max(0) as f64)
        {
            trending_items.push((item, score));
        }
    }
    release.set_popular(best_first(popular_items, usize::MAX));
    release.trending = best_first(trending_items, usize::MAX);
    release.spent = Some(Spent {
        epsilon: plan.epsilon,
        delta: plan.delta,
        mechanism: Mechanism::Gaussian { delta: plan.delta },
        rho: Some(plan.rho),
    });
    Ok(release)
}

/// Each domain position's candidate neighbours: (position, score).
type Candidates = Vec<Vec<(u32, f32)>>;

/// Each domain position's best neighbours (positions, scores) from noise on every pair: row by row,
/// so at most one row of counts and `keep` candidates per item are held, on a few threads.
fn noisy_pairs(
    aggregates: &Aggregates,
    domain: &[ItemIx],
    sigma: f64,
    floor: f64,
    norms: &[f64],
    keep: usize,
) -> Result<Candidates, ReleaseError> {
    let n = domain.len();
    let mut position = vec![u32::MAX; domain.last().map_or(0, |m| *m as usize + 1)];
    for (p, &item) in domain.iter().enumerate() {
        position[item as usize] = p as u32;
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).clamp(1, 4).min(n.max(1));
    let position = &position;
    let results: Vec<Result<Candidates, ReleaseError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|first| {
                scope.spawn(move || {
                    let noise = measurement(sigma)?;
                    let mut best: Candidates = vec![Vec::new(); n];
                    let mut counts: Vec<i64> = Vec::with_capacity(n);
                    for i in (first..n).step_by(threads) {
                        counts.clear();
                        counts.resize(n - i - 1, 0);
                        if counts.is_empty() {
                            continue;
                        }
                        for (b, pair) in aggregates.pairs_of(domain[i]) {
                            let p = position.get(b as usize).copied().unwrap_or(u32::MAX) as usize;
                            if p != u32::MAX as usize && p > i {
                                counts[p - i - 1] = i64::from(pair.support);
                            }
                        }
                        for (offset, value) in noise.invoke(&counts)?.into_iter().enumerate() {
                            let value = value as f64;
                            if value < floor {
                                continue;
                            }
                            let j = i + 1 + offset;
                            let score = (value / (norms[i] * norms[j])) as f32;
                            keep_best(&mut best[i], (j as u32, score), keep);
                            keep_best(&mut best[j], (i as u32, score), keep);
                        }
                    }
                    Ok(best)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(ReleaseError::Noise("a noise worker stopped".into()))))
            .collect()
    });
    let mut merged: Candidates = vec![Vec::new(); n];
    for result in results {
        for (slot, list) in merged.iter_mut().zip(result?) {
            slot.extend(list);
        }
    }
    Ok(merged.into_iter().map(|list| best_first(list, keep)).collect())
}

/// Adds a candidate, trimming to the best `keep` whenever twice as many are held.
fn keep_best(list: &mut Vec<(u32, f32)>, candidate: (u32, f32), keep: usize) {
    list.push(candidate);
    if list.len() >= 2 * keep {
        let trimmed = best_first(std::mem::take(list), keep);
        *list = trimmed;
    }
}

#[cfg(test)]
mod tests;
