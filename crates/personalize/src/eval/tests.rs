//! The evaluation measured on data with known answers: who is held out, who is sampled, and
//! that item-to-item finds planted structure that popularity cannot.

use super::*;
use crate::generate::{Spec, generate};
use crate::recommend::ItemInfo;
use crate::{Config, Interaction, ItemIx, PersonIx};

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
    // The Gaussian rows (noise on every pair of the catalogue) are measured in the next test.
    let threshold_only = settings().into_iter().filter(|s| !s.gaussian()).collect();
    let options = Options { users: 1_000, ..Options::default() };
    let report = evaluate_settings(&generate(&spec), &options, threshold_only, &stopped).unwrap();
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
fn over_the_catalogues_pairs_the_gaussian_release_keeps_more_than_the_noisy_threshold() {
    // Many light customers: 2,000 people, about 25 items each, three taste clusters.
    let spec = Spec { people: 2_000, items: 120, clusters: 3, items_per_person: Some(25), ..Spec::default() };
    let keep = |s: &Setting| {
        s.model == "item-to-item" && (s.config.epsilon == Some(1.0) || s.config.min_support == 1)
    };
    let chosen: Vec<Setting> = settings().into_iter().filter(keep).collect();
    assert_eq!(chosen.iter().filter(|s| s.gaussian()).count(), 1, "{chosen:?}");
    let options = Options { users: 500, ..Options::default() };
    let report = evaluate_settings(&generate(&spec), &options, chosen, &stopped).unwrap();
    let gaussian = report.noisy_row(true, 1.0, Config::default().cap).unwrap();
    let threshold = report.rows.iter().filter(|r| r.setting.private() && !r.setting.gaussian());
    let best_threshold = threshold.map(|r| report.kept(r)).fold(0.0, f64::max);
    assert!(
        report.kept(gaussian) > best_threshold + 0.1,
        "Gaussian keeps {:.2} of the open HR, the threshold {best_threshold:.2}",
        report.kept(gaussian)
    );
    assert!(report.kept(gaussian) >= 0.5, "{:?}", gaussian.metrics);
    let spent = gaussian.spent.unwrap();
    assert!((spent.epsilon - 1.0).abs() < 1e-5 && spent.delta == DELTA, "{spent:?}");
}
