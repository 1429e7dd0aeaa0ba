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

/// The noise OpenDP adds has the scale the answer states, and the stated 95% interval holds it 95%
/// of the time. OpenDP draws from `rand::thread_rng` (seeded by the operating system, with no way
/// to seed it from outside), so this test cannot be made deterministic without replacing the
/// production sampler; instead its tolerances make a false failure negligible, and that
/// probability is computed, not guessed.
///
/// 20,000 draws of discrete Laplace noise at scale b = 20 (`t = e^(-1/20)`): `E|X| = 2t / (1 - t²)
/// = 19.992`, `P(|X| <= 60) = 1 - 2t^61 / (1 + t) = 0.95146` (60 is the stated half-width). With
/// exact Chernoff bounds (the noise's moment generating function, `n` = 20,000), the chance that
/// correct noise fails a check is at most: mean |X| more than 1 away from 19.992, 3.8e-11; mean of
/// X beyond ±1.5, 1.3e-12; share inside the interval under 0.94, 3.1e-12, or over 0.965, 1e-19.
/// Together (union bound) under 5e-11 per run. A scale 5% off moves mean |X| by 1 and fails.
#[test]
fn the_noise_has_the_scale_the_answer_states() {
    let (noisy, spent, scale) = laplace(vec![0; 20_000], 10, 0.5).unwrap();
    assert!((spent - 0.5).abs() < 1e-9);
    assert!((scale - 20.0).abs() < 1e-9);
    let n = noisy.len() as f64;
    let t = (-1.0 / scale).exp();
    let mean_abs = noisy.iter().map(|v| v.unsigned_abs() as f64).sum::<f64>() / n;
    let expected_abs = 2.0 * t / (1.0 - t * t);
    assert!((mean_abs - expected_abs).abs() < 1.0, "mean |noise| {mean_abs}, expected {expected_abs}");
    let mean = noisy.iter().sum::<i64>() as f64 / n;
    assert!(mean.abs() < 1.5, "noise is centred: {mean}");
    let width = half_width_95(scale);
    assert_eq!(width, 60.0);
    let inside = noisy.iter().filter(|v| (v.abs() as f64) <= width).count() as f64 / n;
    assert!((0.94..0.965).contains(&inside), "the stated 95% interval holds {inside}");
}

#[test]
fn stated_intervals_hold_at_least_what_they_say_for_integer_noise() {
    // P(|X| > m) for discrete Laplace noise of this scale.
    let beyond = |scale: f64, m: f64| {
        let t = (-1.0f64 / scale).exp();
        2.0 * t.powf(m + 1.0) / (1.0 + t)
    };
    for scale in [0.5, 1.0, 2.0, 3.7, 20.0, 250.0, 10_000.0] {
        for alpha in [0.05, 0.025] {
            let m = half_width(scale, alpha);
            assert_eq!(m.fract(), 0.0, "integer noise, integer half-width");
            assert!(beyond(scale, m) <= alpha, "scale {scale}: {m} holds {}", 1.0 - beyond(scale, m));
            assert!(m == 0.0 || beyond(scale, m - 1.0) > alpha, "scale {scale}: {m} is the smallest");
        }
    }
    // At scale 1 the continuous quantile (ln 20 = 3.0) would hold only 92.7%.
    assert_eq!(half_width_95(1.0), 3.0);
    assert!(1.0 - beyond(1.0, 2.0) < 0.93);
}

#[test]
fn noisy_answers_at_large_epsilon_agree_with_exact_ones_within_the_stated_interval() {
    // A 95% interval misses the truth one time in twenty, so one draw proves nothing: over 400
    // draws per metric and group it must hold at least 90% of the time. The count of hits is
    // binomial(400, ≥ 0.95), whose mean is 380 and standard deviation 4.4; fewer than 360 hits is
    // 4.6 standard deviations out, about 2e-6 per check (under 2e-5 for the 8 checks here).
    const DRAWS: usize = 400;
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
        let mut hits = vec![0usize; exact.groups.len()];
        for _ in 0..DRAWS {
            let noisy = answer(rows.clone(), metric, 5, noise).unwrap();
            assert!(noisy.scale.is_some());
            for (index, group) in exact.groups.iter().enumerate() {
                let truth = group.value.unwrap();
                let released =
                    noisy.groups.iter().find(|g| g.key == group.key).expect("large groups are released");
                let (low, high) = released.interval.unwrap();
                assert!(
                    released.value.is_some_and(|v| low <= v && v <= high),
                    "the value is in its interval"
                );
                if low <= truth && truth <= high {
                    hits[index] += 1;
                }
            }
        }
        for (group, hits) in exact.groups.iter().zip(hits) {
            assert!(
                hits >= DRAWS * 9 / 10,
                "{metric:?} {:?}: the truth was inside {hits} of {DRAWS} times",
                group.key
            );
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

#[test]
fn people_are_counted_once_however_their_rows_interleave() {
    // 5,000 people, each with three rows spread over the whole input (as a time-ordered window
    // gives them), so a group's people are gathered well past its first compaction.
    let rows: Vec<Row> = (0..3)
        .flat_map(|_| (0..5_000u64).map(|person| Row { person, key: vec!["all".into()], value: None }))
        .collect();
    let people = answer(rows.clone(), Metric::People, 5, None).unwrap();
    assert_eq!(value_of(&people, "all"), Some(Some(5_000.0)));
    let events = answer(rows, Metric::Events, 5, None).unwrap();
    assert_eq!(value_of(&events, "all"), Some(Some(15_000.0)));
}

#[test]
fn the_threshold_search_ends_fast_for_any_epsilon() {
    // Tiny ε is refused at once; every ε whose noise is at most the largest scale is answered, and
    // quickly (the search once ran 45 s at 1e-12 and forever at 1e-300).
    let rows = group("shoes", 0, 50, 2, 1.0);
    for epsilon in [1e-300, 1e-100, 1e-12, 1e-10, 2e-9, 1e-9, 1e-6, 1e-3, 0.01, 1.0, 1e3, f64::MAX] {
        for metric in [Metric::Events, Metric::People, Metric::Mean { min: 0.0, max: 10.0 }] {
            let started = std::time::Instant::now();
            let noise = Some(Noise { epsilon, rows_per_person: 1 });
            let result = answer(rows.clone(), metric, 5, noise);
            let took = started.elapsed();
            assert!(took < std::time::Duration::from_millis(500), "ε = {epsilon:e}, {metric:?}: {took:?}");
            // The largest scale: people counts; event counts (half of ε); a mean's sum in hundredths
            // (a quarter of ε, 1,000 hundredths at most per row).
            let scale = match metric {
                Metric::People => 1.0 / epsilon,
                Metric::Events => 2.0 / epsilon,
                _ => 4_000.0 / epsilon,
            };
            match result {
                Ok(found) => assert!(scale <= MAX_SCALE, "ε = {epsilon:e} answered: {found:?}"),
                Err(InsightsError::Scale(refused)) => {
                    assert!(scale > MAX_SCALE && refused == scale, "ε = {epsilon:e} refused at {refused:e}")
                }
                Err(other) => panic!("ε = {epsilon:e}: {other}"),
            }
        }
    }
    let refused = Tally::new(Metric::Events, Some(Noise { epsilon: 1e-12, rows_per_person: 20 }));
    assert!(matches!(refused, Err(InsightsError::Scale(_))), "refused before any row is read");
}
