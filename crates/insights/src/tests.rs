//! What a brand's analyst (and the people counted) would check: small groups never get a number,
//! the noise has the scale the answer states, and noisy answers agree with exact ones within the
//! intervals they give.

use super::*;

/// `people` people in group `key`, each with `each` rows of value `value`.
fn group(key: &str, first_person: u64, people: u64, each: usize, value: f64) -> Vec<Row> {
    (first_person..first_person + people)
        .flat_map(|person| {
            (0..each).map(move |_| Row { person, key: vec![key.to_owned()], value: Some(value) })
        })
        .collect()
}

fn value_of(answer: &Answer, key: &str) -> Option<Option<f64>> {
    answer.groups.iter().find(|g| g.key == [key]).map(|g| g.value)
}

#[test]
fn a_group_of_k_minus_one_people_is_suppressed_and_never_given_a_number() {
    let mut rows = group("shoes", 0, 5, 3, 10.0);
    rows.extend(group("hats", 100, 4, 30, 10.0));
    for metric in [
        Metric::Events,
        Metric::People,
        Metric::Sum { min: 0.0, max: 50.0 },
        Metric::Mean { min: 0.0, max: 50.0 },
    ] {
        let answer = answer(rows.clone(), metric, 5, None).unwrap();
        assert_eq!(value_of(&answer, "hats"), Some(None), "{metric:?}: named, suppressed");
        assert!(value_of(&answer, "shoes").is_some_and(|v| v.is_some()));
    }
    let exact = answer(rows.clone(), Metric::Events, 5, None).unwrap();
    assert_eq!(value_of(&exact, "shoes"), Some(Some(15.0)));
    let people = answer(rows.clone(), Metric::People, 5, None).unwrap();
    assert_eq!(value_of(&people, "shoes"), Some(Some(5.0)));
    let mean = answer(rows, Metric::Mean { min: 0.0, max: 8.0 }, 5, None).unwrap();
    assert_eq!(value_of(&mean, "shoes"), Some(Some(8.0)), "values are clamped to the declared bounds");
}

#[test]
fn with_noise_a_small_group_is_not_even_named() {
    let mut rows = group("shoes", 0, 3_000, 1, 1.0);
    rows.extend(group("rare", 10_000, 3, 1, 1.0));
    let noise = Some(Noise { epsilon: 1.0, rows_per_person: 1 });
    for _ in 0..20 {
        let answer = answer(rows.clone(), Metric::People, 5, noise).unwrap();
        assert!(value_of(&answer, "rare").is_none(), "three people never pass the noisy threshold");
        assert!(value_of(&answer, "shoes").is_some());
        assert!(answer.threshold >= 5.0);
        assert!(answer.delta > 0.0 && answer.delta <= DELTA);
        assert!((answer.epsilon - 1.0).abs() < 1e-9, "{}", answer.epsilon);
    }
}

/// OpenDP's samplers draw from the operating system and cannot be seeded; 20,000 draws make a
/// wrong scale fail and a right one pass with overwhelming probability (the tolerance is more than
/// ten standard errors).
#[test]
fn the_noise_has_the_scale_the_answer_states() {
    let (noisy, spent, scale) = laplace(vec![0; 20_000], 10, 0.5).unwrap();
    assert!((spent - 0.5).abs() < 1e-9);
    assert!((scale - 20.0).abs() < 1e-9);
    let mean_abs = noisy.iter().map(|v| v.unsigned_abs() as f64).sum::<f64>() / noisy.len() as f64;
    let mean = noisy.iter().sum::<i64>() as f64 / noisy.len() as f64;
    // For Laplace noise of scale b, E|X| = b (discrete: 19.98 at b = 20).
    assert!((mean_abs - 20.0).abs() < 2.0, "mean |noise| {mean_abs}");
    assert!(mean.abs() < 1.5, "noise is centred: {mean}");
    let inside =
        noisy.iter().filter(|v| (v.abs() as f64) <= half_width_95(scale)).count() as f64 / noisy.len() as f64;
    assert!((inside - 0.95).abs() < 0.01, "the stated 95% interval holds {inside}");
}

#[test]
fn noisy_answers_at_large_epsilon_agree_with_exact_ones_within_the_stated_interval() {
    let mut rows = group("shoes", 0, 400, 2, 30.0);
    rows.extend(group("hats", 1_000, 250, 1, 12.5));
    let noise = Some(Noise { epsilon: 50.0, rows_per_person: 2 });
    for metric in [
        Metric::Events,
        Metric::People,
        Metric::Sum { min: 0.0, max: 40.0 },
        Metric::Mean { min: 0.0, max: 40.0 },
    ] {
        let exact = answer(rows.clone(), metric, 5, None).unwrap();
        let noisy = answer(rows.clone(), metric, 5, noise).unwrap();
        assert!(noisy.scale.is_some());
        for group in &exact.groups {
            let truth = group.value.unwrap();
            let released =
                noisy.groups.iter().find(|g| g.key == group.key).expect("large groups are released");
            let (low, high) = released.interval.unwrap();
            assert!(
                low <= truth && truth <= high,
                "{metric:?} {:?}: {truth} outside [{low}, {high}]",
                group.key
            );
            assert!(released.value.is_some_and(|v| low <= v && v <= high));
        }
    }
}

#[test]
fn each_persons_rows_are_bounded_under_noise() {
    let rows = group("shoes", 0, 1_000, 5, 1.0);
    let noisy = answer(rows, Metric::Events, 5, Some(Noise { epsilon: 100.0, rows_per_person: 2 })).unwrap();
    assert_eq!(noisy.rows_dropped, 3_000);
    let value = value_of(&noisy, "shoes").flatten().unwrap();
    assert!((value - 2_000.0).abs() < 50.0, "{value}");
}

#[test]
fn bad_settings_are_refused() {
    let rows = group("shoes", 0, 10, 1, 1.0);
    for epsilon in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let noise = Some(Noise { epsilon, rows_per_person: 1 });
        assert!(matches!(answer(rows.clone(), Metric::Events, 5, noise), Err(InsightsError::Epsilon(_))));
    }
    assert_eq!(
        answer(rows.clone(), Metric::Sum { min: 5.0, max: 1.0 }, 5, None),
        Err(InsightsError::Bounds(5.0, 1.0))
    );
    assert_eq!(
        answer(rows, Metric::Events, 5, Some(Noise { epsilon: 1.0, rows_per_person: 0 })),
        Err(InsightsError::Rows)
    );
}
