//! Personalization: the catalogue, the shared model's contributions, and dirty marks.

use std::sync::Arc;

use serde_json::json;
use tactful_store::{
    IngestOutcome, ItemRecord, ModelChange, ShredOutcome, ShredPlan, StoreTesting, seal_context,
};

use crate::{Backend, T0, event, ingest, people, subject_of};

conformance!(
    items_are_versioned_and_followed_by_version,
    contributions_are_followed_as_changes_in_version_order,
    ingestion_marks_subjects_dirty_until_a_clean_of_what_was_read,
    shredding_removes_contributions_and_dirty_marks,
    model_changes_are_seen_in_version_order_while_many_write,
);

/// Changes as `(subject, version, sealed contribution)`.
fn changes_of(changes: &[ModelChange]) -> Vec<(String, i64, Option<Vec<u8>>)> {
    changes
        .iter()
        .map(|change| {
            (
                change.subject.clone(),
                change.version,
                change.contribution.as_ref().map(|(_, sealed)| sealed.clone()),
            )
        })
        .collect()
}

fn item(id: &str, price: Option<i64>) -> ItemRecord {
    ItemRecord {
        id: id.into(),
        name: format!("Item {id}"),
        categories: vec!["shoes".into(), "sale".into()],
        sensitive: false,
        available: true,
        price,
        attributes: json!({"url": format!("https://shop.example/{id}"), "image": {"w": 640, "alt": "élan"}}),
        updated_at: T0,
        version: 0,
    }
}

async fn items_are_versioned_and_followed_by_version(backend: Backend) {
    let store = &backend.store;
    assert_eq!(store.model_version().await.unwrap(), 0);
    assert_eq!(store.put_items(Vec::new(), T0).await.unwrap(), 0);
    let sensitive =
        ItemRecord { sensitive: true, categories: Vec::new(), attributes: json!({}), ..item("i3", Some(0)) };
    let last =
        store.put_items(vec![item("i1", Some(1999)), item("i2", None), sensitive.clone()], T0).await.unwrap();
    assert_eq!(store.model_version().await.unwrap(), last);
    // Read back as written, JSON and a missing price included, with the version the store gave it.
    assert_eq!(store.item("i2").await.unwrap(), Some(ItemRecord { version: last - 1, ..item("i2", None) }));
    assert_eq!(store.item("i3").await.unwrap(), Some(ItemRecord { version: last, ..sensitive }));
    assert_eq!(store.item("nothing").await.unwrap(), None);

    // An update moves the item after the others; a version given on input is ignored.
    let changed = ItemRecord {
        available: false,
        price: Some(1499),
        version: 1,
        updated_at: T0 + 5,
        ..item("i1", None)
    };
    let updated = store.put_items(vec![changed.clone()], T0 + 5).await.unwrap();
    assert!(updated > last);
    assert_eq!(store.item("i1").await.unwrap(), Some(ItemRecord { version: updated, ..changed }));

    // Paging by version, as an instance catching up does.
    let ids = |items: Vec<ItemRecord>| items.into_iter().map(|item| item.id).collect::<Vec<_>>();
    assert_eq!(ids(store.items_since(0, 2).await.unwrap()), ["i2", "i3"]);
    assert_eq!(ids(store.items_since(last, 2).await.unwrap()), ["i1"]);
    assert!(store.items_since(updated, 2).await.unwrap().is_empty());

    // An id twice in one call keeps its last record, at the call's last version.
    let twice = store.put_items(vec![item("i4", Some(1)), item("i4", Some(2))], T0).await.unwrap();
    assert_eq!(
        store.items_since(updated, 10).await.unwrap(),
        [ItemRecord { version: twice, ..item("i4", Some(2)) }]
    );
    assert_eq!(store.model_version().await.unwrap(), twice);
}

async fn contributions_are_followed_as_changes_in_version_order(backend: Backend) {
    let people = people(&backend, &["ada", "bob"]).await;
    let (ada, bob) = (people[0].clone(), people[1].clone());
    let store = &backend.store;
    assert_eq!(store.put_contributions(Vec::new(), Vec::new(), T0).await.unwrap(), 0);
    // Sealed by the caller under the subject's key; the store keeps the bytes it is given.
    let key =
        backend.vault.subject_key(&ada, &store.subject_data(&ada).await.unwrap().unwrap().keys[0].1).unwrap();
    let sealed = key.seal(seal_context::CONTRIBUTION, &seal_context::contribution(&ada), b"ada-1");
    let first = store
        .put_contributions(
            vec![(ada.clone(), sealed.clone()), (bob.clone(), b"bob-1".to_vec())],
            Vec::new(),
            T0,
        )
        .await
        .unwrap();
    let changes = store.model_changes(0, 10).await.unwrap();
    assert_eq!(
        changes_of(&changes),
        [(ada.clone(), first - 1, Some(sealed.clone())), (bob.clone(), first, Some(b"bob-1".to_vec()))]
    );
    // Each comes with its subject's wrapped key, which opens it.
    let (wrapped, contribution) = changes[0].contribution.clone().unwrap();
    let opened = backend.vault.subject_key(&ada, &wrapped).unwrap();
    assert_eq!(
        opened
            .open(seal_context::CONTRIBUTION, &seal_context::contribution(&ada), &contribution)
            .unwrap()
            .as_slice(),
        b"ada-1"
    );

    // Rewritten: once, at its new version, with its new contribution.
    let second =
        store.put_contributions(vec![(ada.clone(), b"ada-2".to_vec())], Vec::new(), T0).await.unwrap();
    assert!(second > first);
    assert_eq!(
        changes_of(&store.model_changes(0, 10).await.unwrap()),
        [(bob.clone(), first, Some(b"bob-1".to_vec())), (ada.clone(), second, Some(b"ada-2".to_vec()))]
    );
    assert_eq!(
        changes_of(&store.model_changes(first, 10).await.unwrap()),
        [(ada.clone(), second, Some(b"ada-2".to_vec()))]
    );

    // Removed: a change with nothing; removing someone with no contribution is still a change.
    let third = store.put_contributions(Vec::new(), vec![bob.clone(), "sub_never".into()], T0).await.unwrap();
    assert_eq!(
        changes_of(&store.model_changes(second, 10).await.unwrap()),
        [(bob.clone(), third - 1, None), ("sub_never".to_owned(), third, None)]
    );
    // Written then removed in one call ends up removed; a write for nobody keeps nothing.
    let fourth = store
        .put_contributions(
            vec![(ada.clone(), b"ada-3".to_vec()), ("sub_unknown".into(), b"x".to_vec())],
            vec![ada.clone()],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        changes_of(&store.model_changes(third, 10).await.unwrap()),
        [("sub_unknown".to_owned(), fourth - 1, None), (ada.clone(), fourth, None)]
    );
    assert!(store.model_changes(fourth, 10).await.unwrap().is_empty());
    assert_eq!(store.model_version().await.unwrap(), fourth);
    // Pages of changes are in version order.
    let page = store.model_changes(0, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0].version < page[1].version);
    assert_eq!(store.model_changes(page[1].version, 10).await.unwrap().len(), 2);
}

async fn ingestion_marks_subjects_dirty_until_a_clean_of_what_was_read(backend: Backend) {
    let store = &backend.store;
    assert!(store.model_dirty(10).await.unwrap().is_empty());
    ingest(&backend, vec![event("1").user("ada"), event("2").user("ada"), event("3").user("bob")]).await;
    let (ada, bob) = (
        subject_of(&backend, "user_id", "ada").await.unwrap(),
        subject_of(&backend, "user_id", "bob").await.unwrap(),
    );
    let marked =
        |marks: &[(String, i64)]| marks.iter().map(|(subject, _)| subject.clone()).collect::<Vec<_>>();
    let read = store.model_dirty(10).await.unwrap();
    let mut subjects = marked(&read);
    subjects.sort();
    let mut expected = vec![ada.clone(), bob.clone()];
    expected.sort();
    assert_eq!(subjects, expected, "each subject once");
    // A batch of nothing but duplicates is fine.
    assert_eq!(ingest(&backend, vec![event("1").user("ada")]).await, [IngestOutcome::Duplicate]);

    // Ada has a new event after the marks were read: cleaning what was read keeps her renewed mark.
    ingest(&backend, vec![event("4").user("ada")]).await;
    store.model_clean(read.clone()).await.unwrap();
    let left = store.model_dirty(10).await.unwrap();
    assert_eq!(marked(&left), [ada.as_str()]);
    let read_at = read.iter().find(|(subject, _)| *subject == ada).unwrap().1;
    assert!(left[0].1 > read_at);
    // Marking again with a clock behind still moves the mark forward.
    store.mark_model_dirty(vec![ada.clone(), ada.clone()], left[0].1 - 60_000).await.unwrap();
    let renewed = store.model_dirty(10).await.unwrap();
    assert!(renewed[0].1 > left[0].1, "{renewed:?} after {left:?}");
    store.model_clean(left).await.unwrap();
    assert_eq!(marked(&store.model_dirty(10).await.unwrap()), [ada.as_str()], "a stale clean keeps the mark");
    store.model_clean(renewed).await.unwrap();
    assert!(store.model_dirty(10).await.unwrap().is_empty());

    // Oldest mark first, at most `limit`.
    store.mark_model_dirty(vec!["sub_late".into()], T0 + 5).await.unwrap();
    store.mark_model_dirty(vec!["sub_early".into()], T0 + 1).await.unwrap();
    assert_eq!(store.mark_all_model_dirty(T0 + 10).await.unwrap(), 2);
    let all = store.model_dirty(10).await.unwrap();
    assert_eq!(marked(&all[..2]), ["sub_early", "sub_late"]);
    assert_eq!(all.len(), 4);
    assert_eq!(marked(&store.model_dirty(1).await.unwrap()), ["sub_early"]);
}

async fn shredding_removes_contributions_and_dirty_marks(backend: Backend) {
    ingest(
        &backend,
        vec![
            event("1").anonymous("dev-1"),
            event("2").user("ann").anonymous("dev-1").email("ann@example.com"),
        ],
    )
    .await;
    ingest(&backend, vec![event("3").user("bob")]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    let store = &backend.store;
    let written = store
        .put_contributions(
            vec![(ann.clone(), b"ann".to_vec()), (bob.clone(), b"bob".to_vec())],
            Vec::new(),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(store.model_dirty(10).await.unwrap().len(), 2);

    let plan = ShredPlan {
        request: "req_e".into(),
        held_through: i64::MAX,
        suppress: false,
        deliveries: Vec::new(),
        audit: Vec::new(),
    };
    let ShredOutcome::Shredded { members, .. } = store.shred(&ann, plan, T0).await.unwrap() else {
        panic!("shredded")
    };
    assert!(members.contains(&ann));
    let changes = store.model_changes(written, 10).await.unwrap();
    let mut removed: Vec<String> = changes.iter().map(|change| change.subject.clone()).collect();
    removed.sort();
    assert_eq!(removed, members, "every member's removal, each at its own version");
    assert!(changes.iter().all(|change| change.contribution.is_none() && change.version > written));
    assert_eq!(
        store.model_dirty(10).await.unwrap().iter().map(|(subject, _)| subject).collect::<Vec<_>>(),
        [&bob]
    );
    assert_eq!(store.mark_all_model_dirty(T0).await.unwrap(), 1, "erased subjects are not marked");

    // A contribution computed before the erasure and written after it keeps nothing.
    let late = store.put_contributions(vec![(ann.clone(), b"late".to_vec())], Vec::new(), T0).await.unwrap();
    assert_eq!(changes_of(&store.model_changes(late - 1, 10).await.unwrap()), [(ann.clone(), late, None)]);
    store.purge_erased(100).await.unwrap();
    let all = store.model_changes(0, 10).await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|change| change.contribution.is_some())
            .map(|change| &change.subject)
            .collect::<Vec<_>>(),
        [&bob]
    );
    assert_eq!(store.model_version().await.unwrap(), late, "the purge changes nothing readers see");
}

/// Writers on two instances (on PostgreSQL, two pools) and a reader following the changes. A
/// change that became visible below what the reader has already passed would be lost to it; so
/// after each poll the reader reads everything again and checks that whatever is at or below the
/// version it reached is exactly what it already has. It ends with everyone's final state.
async fn model_changes_are_seen_in_version_order_while_many_write(backend: Backend) {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 20;
    let users: Vec<String> = (0..WRITERS).map(|writer| format!("writer-{writer}")).collect();
    let subjects = people(&backend, &users.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let second = backend.reopen().await.unwrap();
    let stores = [backend.store.clone(), second.store.clone()];
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (writer, subject) in subjects.iter().enumerate() {
        let (store, subject, done) = (stores[writer % 2].clone(), subject.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                // Everyone also removes one shared subject now and then: the same row from many writers.
                let remove = if round % 4 == writer % 4 { vec!["sub_shared".to_owned()] } else { Vec::new() };
                let write = vec![(subject.clone(), format!("{writer}-{round}").into_bytes())];
                store.put_contributions(write, remove, T0).await.expect("every write succeeds");
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    // Per subject: the version and contribution of the latest change seen.
    let mut seen: std::collections::HashMap<String, (i64, Option<Vec<u8>>)> =
        std::collections::HashMap::new();
    let mut last = 0;
    let mut polls = 0_usize;
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
        let store = &stores[polls % 2];
        polls += 1;
        let changes = store.model_changes(last, 4).await.unwrap();
        for (subject, version, sealed) in changes_of(&changes) {
            assert!(version > last, "version {version} after {last}");
            last = version;
            seen.insert(subject, (version, sealed));
        }
        for (subject, version, sealed) in changes_of(&store.model_changes(0, 100).await.unwrap()) {
            if version <= last {
                assert_eq!(
                    seen.get(&subject),
                    Some(&(version, sealed)),
                    "a change at {version} appeared after {last}"
                );
            }
        }
        if changes.is_empty() {
            if finished {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (writer, subject) in subjects.iter().enumerate() {
        assert_eq!(seen[subject].1, Some(format!("{writer}-{}", ROUNDS - 1).into_bytes()));
    }
    assert_eq!(seen["sub_shared"].1, None);
    assert_eq!(seen.len(), WRITERS + 1);
    assert_eq!(last, backend.store.model_version().await.unwrap());
}
