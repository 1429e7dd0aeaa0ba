//! Ingestion: events stored sealed and read back, retries deduplicated, identifiers linked as the
//! domain's identity rules say, also with many writers at once and after reopening.

use std::collections::HashSet;

use serde_json::json;
use tactful_store::{IngestOutcome, StoreError};
use tactful_vault::MasterKey;

use crate::{Backend, T0, event, ingest, open_subject, options, stored_count, subject_of};

conformance!(
    stores_sealed_data_and_reads_it_back,
    deduplicates_retries_in_and_across_batches,
    links_logins_aliases_and_emails_like_the_domain_says,
    a_shared_device_never_merges_two_known_people,
    keeps_the_newest_profile_value,
    counts_drops_across_batches,
    the_same_person_from_many_writers_is_one_subject,
    reopening_keeps_identifiers_findable_and_refuses_another_master_key,
);

async fn stores_sealed_data_and_reads_it_back(backend: Backend) {
    let outcomes = ingest(
        &backend,
        vec![
            event("m1")
                .user("ada")
                .anonymous("a-1")
                .email("Ada@Example.com")
                .identify(json!({"email": "Ada@Example.com", "first_name": "Ada"})),
        ],
    )
    .await;
    let IngestOutcome::Stored { subject } = &outcomes[0] else { panic!("stored") };
    assert_eq!(subject_of(&backend, "user_id", "ada").await.as_ref(), Some(subject));
    assert_eq!(subject_of(&backend, "email", "ada@example.com").await.as_ref(), Some(subject));
    let opened = open_subject(&backend, subject).await;
    assert_eq!(opened.events, [json!({"traits": {"email": "Ada@Example.com", "first_name": "Ada"}})]);
    assert_eq!(
        opened.profile,
        [
            ("traits.email".to_owned(), json!("Ada@Example.com")),
            ("traits.first_name".to_owned(), json!("Ada"))
        ]
    );
    let expected: HashSet<(String, String)> =
        [("user_id", "ada"), ("anonymous_id", "a-1"), ("email", "ada@example.com")]
            .iter()
            .map(|(kind, value)| ((*kind).to_owned(), (*value).to_owned()))
            .collect();
    assert_eq!(opened.identifiers, expected);
    let stats = backend.store.stats().await.unwrap();
    assert_eq!((stats.subjects, stats.identities, stats.events, stats.profile_values), (1, 3, 1, 2));
    assert!(backend.store.subject_data("sub_nobody").await.unwrap().is_none());
    backend.store.ping().await.unwrap();
}

async fn deduplicates_retries_in_and_across_batches(backend: Backend) {
    let outcomes =
        ingest(&backend, vec![event("m1").user("u"), event("m1").user("u"), event("m2").user("u")]).await;
    assert_eq!(stored_count(&outcomes), 2);
    assert_eq!(outcomes[1], IngestOutcome::Duplicate);
    let again = ingest(&backend, vec![event("m2").user("u"), event("m3").user("u")]).await;
    assert_eq!(again[0], IngestOutcome::Duplicate);
    assert_eq!(stored_count(&again), 1);
    assert_eq!(backend.store.stats().await.unwrap().events, 3);
}

async fn links_logins_aliases_and_emails_like_the_domain_says(backend: Backend) {
    // Anonymous browsing, then a login in a later batch: the history follows.
    ingest(&backend, vec![event("a1").anonymous("device-1"), event("a2").anonymous("device-1")]).await;
    ingest(&backend, vec![event("a3").user("alice").anonymous("device-1")]).await;
    let alice = subject_of(&backend, "user_id", "alice").await.unwrap();
    assert_eq!(subject_of(&backend, "anonymous_id", "device-1").await.as_ref(), Some(&alice));
    assert_eq!(open_subject(&backend, &alice).await.events.len(), 3);

    // A known account logging in on a device with its own anonymous history: the histories merge.
    ingest(&backend, vec![event("b1").user("bob")]).await;
    ingest(&backend, vec![event("b2").anonymous("device-2"), event("b3").anonymous("device-2")]).await;
    let anonymous = subject_of(&backend, "anonymous_id", "device-2").await.unwrap();
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    assert_ne!(anonymous, bob);
    ingest(&backend, vec![event("b4").user("bob").anonymous("device-2")]).await;
    assert_eq!(subject_of(&backend, "anonymous_id", "device-2").await.as_ref(), Some(&bob));
    let bob_data = open_subject(&backend, &bob).await;
    assert_eq!(bob_data.events.len(), 4, "bob's family holds his anonymous history");
    assert!(bob_data.identifiers.contains(&("anonymous_id".into(), "device-2".into())));
    // Asking for the merged subject answers for the whole family.
    assert_eq!(backend.store.subject_data(&anonymous).await.unwrap().unwrap().subject, bob);

    // The same within one batch.
    ingest(
        &backend,
        vec![
            event("c1").user("carol"),
            event("c2").anonymous("device-3"),
            event("c3").user("carol").anonymous("device-3"),
        ],
    )
    .await;
    let carol = subject_of(&backend, "user_id", "carol").await.unwrap();
    assert_eq!(subject_of(&backend, "anonymous_id", "device-3").await.as_ref(), Some(&carol));
    assert_eq!(open_subject(&backend, &carol).await.events.len(), 3);

    // An explicit alias merges even known people.
    ingest(&backend, vec![event("d1").user("dave-old"), event("d2").user("dave")]).await;
    ingest(&backend, vec![event("d3").alias("dave-old", "dave")]).await;
    let dave = subject_of(&backend, "user_id", "dave").await.unwrap();
    assert_eq!(subject_of(&backend, "user_id", "dave-old").await.as_ref(), Some(&dave));
    assert_eq!(open_subject(&backend, &dave).await.events.len(), 3);

    // An email given anonymously joins the account that later logs in with that device.
    ingest(&backend, vec![event("e1").anonymous("form-1").email("erin@example.com")]).await;
    let anonymous = subject_of(&backend, "email", "erin@example.com").await.unwrap();
    ingest(&backend, vec![event("e2").user("erin").anonymous("form-1")]).await;
    assert_eq!(subject_of(&backend, "user_id", "erin").await, Some(anonymous));

    let stats = backend.store.stats().await.unwrap();
    assert_eq!(stats.subjects, 5, "alice, bob, carol, dave, erin");
}

async fn a_shared_device_never_merges_two_known_people(backend: Backend) {
    ingest(&backend, vec![event("1").user("alice").anonymous("shared")]).await;
    ingest(&backend, vec![event("2").user("bob").anonymous("shared")]).await;
    let alice = subject_of(&backend, "user_id", "alice").await.unwrap();
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    assert_ne!(alice, bob);
    assert_eq!(subject_of(&backend, "anonymous_id", "shared").await.as_ref(), Some(&bob), "the device moved");
    assert_eq!(open_subject(&backend, &alice).await.events.len(), 1);
    assert_eq!(open_subject(&backend, &bob).await.events.len(), 1);
    assert!(
        !open_subject(&backend, &alice).await.identifiers.contains(&("anonymous_id".into(), "shared".into()))
    );
}

async fn keeps_the_newest_profile_value(backend: Backend) {
    ingest(&backend, vec![event("new").user("u").identify(json!({"first_name": "Newer"})).at(T0 + 10_000)])
        .await;
    ingest(&backend, vec![event("old").user("u").identify(json!({"first_name": "Older"})).at(T0)]).await;
    let subject = subject_of(&backend, "user_id", "u").await.unwrap();
    assert_eq!(
        open_subject(&backend, &subject).await.profile,
        [("traits.first_name".to_owned(), json!("Newer"))]
    );
    // Within one batch too.
    ingest(
        &backend,
        vec![
            event("b-new").user("v").identify(json!({"first_name": "Later"})).at(T0 + 5),
            event("b-old").user("v").identify(json!({"first_name": "Earlier"})).at(T0),
        ],
    )
    .await;
    let subject = subject_of(&backend, "user_id", "v").await.unwrap();
    assert_eq!(
        open_subject(&backend, &subject).await.profile,
        [("traits.first_name".to_owned(), json!("Later"))]
    );
}

async fn counts_drops_across_batches(backend: Backend) {
    ingest(
        &backend,
        vec![
            event("1").user("u").dropping(&["properties.coupon", "context.os"]),
            event("2").user("u").dropping(&["properties.coupon"]),
        ],
    )
    .await;
    ingest(&backend, vec![event("3").user("u").dropping(&["properties.coupon"])]).await;
    // A duplicate's drops were counted with the original.
    ingest(&backend, vec![event("3").user("u").dropping(&["properties.coupon"])]).await;
    let counts: Vec<(String, String, u64)> = backend
        .store
        .drop_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|count| (count.source, count.path, count.count))
        .collect();
    assert_eq!(
        counts,
        [("web".into(), "properties.coupon".into(), 3), ("web".into(), "context.os".into(), 1)]
    );
}

/// Many writers at once (tasks here; on PostgreSQL also a second pool, as a second instance would
/// have) send the same new person with different devices: one subject, every device linked, every
/// event stored once.
async fn the_same_person_from_many_writers_is_one_subject(backend: Backend) {
    let second = backend.reopen().await.unwrap();
    let stores = [backend.store.clone(), second.store.clone()];
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let store = stores[writer % 2].clone();
        let events = vec![
            event(&format!("w{writer}-1")).anonymous(&format!("device-{writer}")).build(&backend),
            event(&format!("w{writer}-2")).user("zoe").anonymous(&format!("device-{writer}")).build(&backend),
            event(&format!("shared-{}", writer % 4)).user("zoe").build(&backend),
        ];
        let policy = backend.policy.clone();
        tasks.push(tokio::spawn(async move { store.ingest(events, policy).await }));
    }
    let mut stored = 0;
    for task in tasks {
        stored += stored_count(&task.await.unwrap().expect("every writer succeeds"));
    }
    assert_eq!(stored, 16 * 2 + 4, "each event once; the four shared messageIds once each");
    let zoe = subject_of(&backend, "user_id", "zoe").await.unwrap();
    for writer in 0..16 {
        let device = subject_of(&backend, "anonymous_id", &format!("device-{writer}")).await.unwrap();
        let root = backend.store.subject_data(&device).await.unwrap().unwrap().subject;
        assert_eq!(root, zoe, "device-{writer} belongs to zoe's family");
    }
    assert_eq!(open_subject(&backend, &zoe).await.events.len(), 36);
    assert_eq!(backend.store.stats().await.unwrap().subjects, 1);
}

async fn reopening_keeps_identifiers_findable_and_refuses_another_master_key(backend: Backend) {
    ingest(&backend, vec![event("1").user("ada").email("ada@example.com")]).await;
    let reopened = backend.reopen().await.unwrap();
    let blind = reopened.vault.blind("email", "ada@example.com");
    assert!(reopened.store.subject_by_identifier(blind).await.unwrap().is_some());
    match tactful_store::open_with(&backend.url, MasterKey::generate(), &options()).await {
        Err(StoreError::Vault(error)) => assert!(error.to_string().contains("master key"), "{error}"),
        Err(other) => panic!("expected a master-key error, got {other}"),
        Ok(_) => panic!("another master key must be refused"),
    }
}
