//! The Gaussian release checked against its own accounting: the noise it draws is the noise the
//! (ε, δ) it records allows for one person's capped contribution, and nothing outside the public
//! domain is ever named.

use super::*;
use crate::model::Contribution;
use crate::{DAY_MS, Touch};

fn gaussian(epsilon: f64, delta: f64, cap: usize) -> Config {
    Config { epsilon: Some(epsilon), mechanism: Mechanism::Gaussian { delta }, cap, ..Config::default() }
}

fn person(items: &[(ItemIx, u8)], at: i64) -> Contribution {
    Contribution::from_touches(items.iter().map(|&(item, weight)| Touch { item, weight, at }))
}

#[test]
fn the_noise_scale_is_what_the_recorded_epsilon_and_delta_allow_for_the_cap() {
    for (epsilon, delta, cap) in [(1.0, 1e-7, 20), (4.0, 1e-6, 5), (0.5, 1e-9, 2), (1.0, 1e-7, 1)] {
        let plan = Plan::new(epsilon, delta, &gaussian(epsilon, delta, cap)).unwrap();
        let c = cap as f64;
        // One person moves C(cap, 2) pair counts by one each (at least one, for the formula).
        assert_eq!(plan.pairs.sensitivity, (c * (c - 1.0) / 2.0).max(1.0).sqrt(), "cap {cap}");
        assert_eq!(plan.supports.sensitivity, c.sqrt(), "cap {cap}");
        for part in [plan.pairs, plan.supports, plan.popular, plan.recent, plan.before, plan.people] {
            let rho = part.sensitivity.powi(2) / (2.0 * part.sigma.powi(2));
            assert!((part.rho / rho - 1.0).abs() < 1e-9, "ρ = Δ₂²/(2σ²): {part:?}");
        }
        assert!((plan.pairs.rho / plan.rho - SHARE_PAIRS).abs() < 1e-6, "{plan:?}");
        // The recorded ε is the one asked for, by OpenDP's conversion of the total ρ at δ...
        assert!(plan.epsilon <= epsilon && plan.epsilon >= epsilon * (1.0 - 1e-5), "{plan:?}");
        assert_eq!(plan.delta, delta);
        // ...which is never looser than the closed form ε = ρ + 2√(ρ ln(1/δ)), and never spends less
        // than the closed form allows.
        let log = (1.0 / delta).ln();
        let closed = ((log + epsilon).sqrt() - log.sqrt()).powi(2);
        assert!((epsilon_bound(closed, delta) - epsilon).abs() < 1e-9);
        assert!(plan.rho >= closed * (1.0 - 1e-6), "{} against {closed}", plan.rho);
        assert!(
            epsilon_bound(plan.rho, delta) >= plan.epsilon && epsilon_bound(plan.rho, delta) < 1.3 * epsilon
        );
    }
    // The figures the documentation quotes: ε = 1, δ = 1e-7, cap 20.
    let plan = Plan::new(1.0, 1e-7, &gaussian(1.0, 1e-7, 20)).unwrap();
    assert!((plan.pairs.sigma - 76.7).abs() < 0.5, "σ on pairs {}", plan.pairs.sigma);
}

#[test]
fn the_noise_drawn_has_the_planned_deviation() {
    let plan = Plan::new(1.0, 1e-7, &gaussian(1.0, 1e-7, 3)).unwrap();
    let draws = plan.pairs.noise(vec![0; 4_000]).unwrap();
    let mean = draws.iter().sum::<i64>() as f64 / draws.len() as f64;
    let deviation =
        (draws.iter().map(|d| (*d as f64 - mean).powi(2)).sum::<f64>() / draws.len() as f64).sqrt();
    assert!((deviation / plan.pairs.sigma - 1.0).abs() < 0.06, "{deviation} against σ {}", plan.pairs.sigma);
    assert!(mean.abs() < 0.1 * plan.pairs.sigma, "{mean}");
}

#[test]
fn bad_epsilon_or_delta_is_refused() {
    let config = gaussian(1.0, 1e-7, 5);
    assert_eq!(Plan::new(0.0, 1e-7, &config), Err(ReleaseError::Epsilon(0.0)));
    assert_eq!(Plan::new(1.0, 0.0, &config), Err(ReleaseError::Delta(0.0)));
    assert_eq!(Plan::new(1.0, 0.01, &config), Err(ReleaseError::Delta(0.01)));
    assert!(matches!(Plan::new(1e-12, 1e-7, &config), Err(ReleaseError::Scale(_))));
}

#[test]
fn strong_pairs_survive_and_the_release_records_its_guarantee() {
    let config = gaussian(1.0, 1e-7, 5);
    let now = 10 * DAY_MS;
    let mut people: Vec<Contribution> = (0..2_000).map(|_| person(&[(0, 1), (1, 1)], now)).collect();
    // Fifty pairs bought together by three people each: three people's count passes the 3σ floor about
    // once in 450 draws, so at most a few of them may show, never most.
    for pair in 0..50 {
        people.extend((0..3).map(|_| person(&[(2 + 2 * pair, 1), (3 + 2 * pair, 1)], now)));
    }
    let aggregates = Aggregates::train(&config, &people);
    let domain: Vec<ItemIx> = (0..110).collect();
    let release = Release::full_over(&aggregates, &config, &domain, now).unwrap();
    assert_eq!(release.neighbours(0).first().map(|n| n.0), Some(1), "2,000 people survive the noise");
    let shown =
        (0..50).filter(|pair| release.neighbours(2 + 2 * pair).iter().any(|n| n.0 == 3 + 2 * pair)).count();
    assert!(shown <= 3, "three people do not: {shown} of 50 weak pairs shown");
    let spent = release.spent.unwrap();
    assert!((spent.epsilon - 1.0).abs() < 1e-5 && spent.delta == 1e-7, "{spent:?}");
    assert!(spent.rho.is_some_and(|rho| rho > 0.0 && rho < 1.0), "{spent:?}");
    let guarantee = spent.guarantee();
    assert!(
        guarantee.contains("(1.000, 1e-7)-differential privacy for one person and all their events"),
        "{guarantee}"
    );
    // The count of people is noisy too (σ ≈ 58 here, its 1% share of the budget): within five σ of
    // the 2,150 people, which fails about once in two million runs.
    let sigma = Plan::new(1.0, 1e-7, &config).unwrap().people.sigma;
    assert!((f64::from(release.people) - 2_150.0).abs() < 5.0 * sigma, "{} (σ {sigma})", release.people);
}

#[test]
fn nothing_outside_the_public_domain_is_ever_released() {
    let config = gaussian(4.0, 1e-7, 5);
    let now = 10 * DAY_MS;
    // Items 30 to 34 are not in the catalogue (seen in events only), and are the strongest pairs.
    let mut people: Vec<Contribution> =
        (0..1_000).map(|_| person(&[(30, 3), (31, 3), (2, 1), (32, 1)], now)).collect();
    people.extend((0..500).map(|_| person(&[(1, 1), (2, 1)], now)));
    let aggregates = Aggregates::train(&config, &people);
    let domain: Vec<ItemIx> = (0..25).collect();
    let release = Release::full_over(&aggregates, &config, &domain, now).unwrap();
    for item in 0..40 {
        let named: Vec<ItemIx> = release.neighbours(item).iter().map(|n| n.0).collect();
        assert!(item < 25 || named.is_empty(), "{item} is outside the catalogue: {named:?}");
        assert!(named.iter().all(|n| *n < 25), "{item}: {named:?}");
    }
    assert!(release.popular().iter().chain(release.trending()).all(|(item, _)| *item < 25));
    assert_eq!(release.neighbours(1).first().map(|n| n.0), Some(2));
}

#[test]
fn a_person_beyond_the_cap_lends_only_their_strongest_items() {
    let config = gaussian(10.0, 1e-5, 3);
    let now = 10 * DAY_MS;
    // Everyone bought 0, 1 and 2 and viewed 3 to 12: with a cap of 3, only the purchases count.
    let items: Vec<(ItemIx, u8)> = (0..13).map(|i| (i, if i < 3 { 3 } else { 1 })).collect();
    let people: Vec<Contribution> = (0..300).map(|_| person(&items, now)).collect();
    let aggregates = Aggregates::train(&config, &people);
    let domain: Vec<ItemIx> = (0..13).collect();
    let release = Release::full_over(&aggregates, &config, &domain, now).unwrap();
    let mut of_0: Vec<ItemIx> = release.neighbours(0).iter().map(|n| n.0).collect();
    of_0.sort_unstable();
    assert_eq!(of_0, vec![1, 2]);
    for viewed in 3..13 {
        assert!(release.neighbours(viewed).is_empty(), "{viewed}: {:?}", release.neighbours(viewed));
    }
}
