//! Rate limits shared by every instance: takes are all or nothing, the previous window weighs by its
//! overlap, buckets are separate, a check counts nothing, concurrent takes from two instances never
//! pass the limit together, and expired windows are forgotten.

use tactful_store::Rate;

use crate::{Backend, T0};

conformance!(
    a_take_is_all_or_nothing_within_a_sliding_window,
    two_instances_taking_at_once_never_pass_the_limit,
    expired_windows_are_forgotten,
);

const MINUTE: i64 = 60_000;

/// A time `offset` ms into a window of a minute.
fn at(window: i64, offset: i64) -> i64 {
    (T0 / MINUTE + window) * MINUTE + offset
}

async fn a_take_is_all_or_nothing_within_a_sliding_window(backend: Backend) {
    let store = &backend.store;
    let take = |bucket: &'static str, amount: u64, now: i64| store.rate_take(bucket, amount, 10, MINUTE, now);
    assert_eq!(take("a", 7, at(0, 0)).await.unwrap(), Rate::Allowed);
    let refused = take("a", 4, at(0, 1_000)).await.unwrap();
    assert!(matches!(refused, Rate::Refused { retry_after_ms } if retry_after_ms > 0), "{refused:?}");
    assert_eq!(take("a", 3, at(0, 2_000)).await.unwrap(), Rate::Allowed, "the refused take took nothing");
    assert!(!take("a", 1, at(0, 3_000)).await.unwrap().allowed());
    assert!(!store.rate_check("a", 10, MINUTE, at(0, 3_000)).await.unwrap().allowed());
    // Another bucket is untouched; a check takes nothing.
    for _ in 0..3 {
        assert!(store.rate_check("b", 10, MINUTE, at(0, 3_000)).await.unwrap().allowed());
    }
    assert_eq!(take("b", 10, at(0, 3_000)).await.unwrap(), Rate::Allowed);

    // The next window starts with the previous one weighing whole, then less and less.
    assert!(!take("a", 1, at(1, 0)).await.unwrap().allowed());
    assert!(!take("a", 6, at(1, MINUTE / 2)).await.unwrap().allowed(), "half of 10 weighs 5");
    assert_eq!(take("a", 5, at(1, MINUTE / 2)).await.unwrap(), Rate::Allowed);
    // Two windows on, only the window before (5 taken) weighs.
    assert!(!take("a", 10, at(2, 0)).await.unwrap().allowed());
    assert_eq!(take("a", 5, at(2, 0)).await.unwrap(), Rate::Allowed);
    assert!(take("a", 10, at(4, 0)).await.unwrap().allowed());
}

async fn two_instances_taking_at_once_never_pass_the_limit(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let mut takes = tokio::task::JoinSet::new();
    for index in 0..40 {
        let store = if index % 2 == 0 { backend.store.clone() } else { second.clone() };
        takes.spawn(async move { store.rate_take("shared", 1, 25, MINUTE, at(0, index)).await.unwrap() });
    }
    let taken = takes.join_all().await.into_iter().filter(|rate| rate.allowed()).count();
    assert_eq!(taken, 25);
}

async fn expired_windows_are_forgotten(backend: Backend) {
    let store = &backend.store;
    store.rate_take("old", 1, 10, MINUTE, at(0, 0)).await.unwrap();
    store.rate_take("new", 1, 10, MINUTE, at(3, 0)).await.unwrap();
    assert_eq!(store.forget_expired(at(3, 0)).await.unwrap(), 1, "the window two minutes old");
    assert_eq!(store.forget_expired(at(3, 0)).await.unwrap(), 0);
    assert!(!store.rate_take("new", 10, 10, MINUTE, at(3, 1)).await.unwrap().allowed(), "kept");
}
