//! Forwarding cursors: a destination reads committed events once, in order, from where it stands
//! (its start, or a replay's), moves only when told, is held by one instance at a time, counts what
//! it delivered, refused and failed, and never skips an event after the newest ones were purged.

use std::collections::BTreeMap;

use tactful_store::{ForwardProgress, Store};

use crate::analytics::erase;
use crate::{Backend, T0, event, ingest, subject_of};

conformance!(
    a_cursor_reads_committed_events_once_in_order_and_counts_what_it_did,
    one_instance_holds_a_destination_at_a_time,
    a_failure_is_retried_from_the_same_place_when_due,
    replay_moves_a_cursor_back_never_forward,
    purging_the_newest_events_never_makes_a_cursor_skip_the_next,
);

/// Late enough that every event of the test has surely committed.
const LATER: i64 = T0 + 60_000;
const LEASE: i64 = 30_000;

async fn names(store: &dyn Store, destination: &str, limit: u32) -> Vec<String> {
    let claim = store.forward_claim(destination, LATER, LEASE).await.unwrap().expect("free and due");
    let events = store.forward_events(&claim.position, LATER, limit).await.unwrap();
    store.forward_advance(&claim, &claim.position, ForwardProgress::default(), LATER).await.unwrap();
    events.into_iter().map(|item| item.event.subject).collect()
}

async fn a_cursor_reads_committed_events_once_in_order_and_counts_what_it_did(backend: Backend) {
    let store = backend.store.as_ref();
    store.forward_start(vec!["mail".into()], T0 - 10_000).await.unwrap();
    // One batch: they arrive together, in the order they happened.
    let (ann, bob, cy) = (event("f-1").user("ann"), event("f-2").user("bob"), event("f-3").user("cy"));
    ingest(&backend, vec![ann.at(T0 - 3), bob.at(T0 - 2), cy.at(T0 - 1)]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    let cy = subject_of(&backend, "user_id", "cy").await.unwrap();
    // A destination added after these events arrived starts after them.
    store.forward_start(vec!["late".into(), "mail".into()], LATER).await.unwrap();
    assert!(names(store, "late", 10).await.is_empty(), "a new destination starts at the end");

    let claim = store.forward_claim("mail", LATER, LEASE).await.unwrap().unwrap();
    let page = store.forward_events(&claim.position, LATER, 2).await.unwrap();
    let subjects: Vec<&str> = page.iter().map(|item| item.event.subject.as_str()).collect();
    assert_eq!(subjects, [ann.as_str(), bob.as_str()], "in the order they happened");
    let progress = ForwardProgress {
        delivered: 1,
        refused: BTreeMap::from([("no_consent".to_owned(), 1)]),
        failed: None,
    };
    assert!(store.forward_advance(&claim, &page[1].position, progress, LATER).await.unwrap());
    let status = store.forward_status().await.unwrap();
    let mail = status.iter().find(|status| status.destination == "mail").unwrap();
    assert_eq!((mail.delivered, mail.failures), (1, 0));
    assert_eq!(mail.refused, BTreeMap::from([("no_consent".to_owned(), 1)]));
    assert_eq!(mail.pending_since, Some(T0), "cy's event waits: lag counts from its arrival");

    assert_eq!(names(store, "mail", 10).await, [cy.as_str()], "only what is past the cursor");
    let claim = store.forward_claim("mail", LATER, LEASE).await.unwrap().unwrap();
    let rest = store.forward_events(&claim.position, LATER, 10).await.unwrap();
    assert_eq!(rest.len(), 1, "a pass that did not advance leaves the event where it was");
    assert!(
        store.forward_advance(&claim, &rest[0].position, ForwardProgress::default(), LATER).await.unwrap()
    );
    assert!(names(store, "mail", 10).await.is_empty());
    let status = store.forward_status().await.unwrap();
    assert_eq!(status.iter().find(|status| status.destination == "mail").unwrap().pending_since, None);
    // Starting again (another instance, a restart) keeps the cursor where it is.
    store.forward_start(vec!["mail".into()], LATER).await.unwrap();
    assert!(names(store, "mail", 10).await.is_empty());
}

async fn one_instance_holds_a_destination_at_a_time(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let store = backend.store.as_ref();
    store.forward_start(vec!["mail".into()], T0 - 10_000).await.unwrap();
    ingest(&backend, vec![event("h-1").user("ann")]).await;
    let (first, other) =
        tokio::join!(store.forward_claim("mail", LATER, LEASE), second.forward_claim("mail", LATER, LEASE));
    let (first, other) = (first.unwrap(), other.unwrap());
    assert!(first.is_some() ^ other.is_some(), "exactly one instance holds it");
    let held = first.or(other).unwrap();
    assert!(store.forward_claim("mail", LATER + LEASE - 1, LEASE).await.unwrap().is_none());
    // The holder died: once its lease ends, another takes over; the old holder can move nothing.
    let taken = second.forward_claim("mail", LATER + LEASE, LEASE).await.unwrap().expect("lease over");
    let page = store.forward_events(&held.position, LATER, 10).await.unwrap();
    let progress = ForwardProgress { delivered: 1, ..ForwardProgress::default() };
    assert!(!store.forward_advance(&held, &page[0].position, progress.clone(), LATER).await.unwrap());
    assert!(!store.forward_fail(&held, "late", LATER + 1, LATER).await.unwrap());
    assert!(second.forward_advance(&taken, &page[0].position, progress, LATER + LEASE).await.unwrap());
    let status = store.forward_status().await.unwrap();
    assert_eq!(status[0].delivered, 1, "counted once");
}

async fn a_failure_is_retried_from_the_same_place_when_due(backend: Backend) {
    let store = backend.store.as_ref();
    store.forward_start(vec!["mail".into()], T0 - 10_000).await.unwrap();
    ingest(&backend, vec![event("r-1").user("ann")]).await;
    let claim = store.forward_claim("mail", LATER, LEASE).await.unwrap().unwrap();
    assert_eq!((claim.attempts, claim.failing_since), (0, None));
    assert!(store.forward_fail(&claim, "answered 500: busy", LATER + 1_000, LATER).await.unwrap());
    assert!(store.forward_claim("mail", LATER + 999, LEASE).await.unwrap().is_none(), "not due yet");
    let again = store.forward_claim("mail", LATER + 1_000, LEASE).await.unwrap().expect("due");
    assert_eq!((again.attempts, again.failing_since), (1, Some(LATER)));
    assert_eq!(again.position, claim.position, "from the same place");
    assert_eq!(store.forward_events(&again.position, LATER, 10).await.unwrap().len(), 1);
    let status = store.forward_status().await.unwrap();
    assert_eq!(status[0].failures, 1);
    assert_eq!(status[0].last_error.as_deref(), Some("answered 500: busy"));
    // A batch skipped for good counts as a failure too, and the cursor moves past it.
    let page = store.forward_events(&again.position, LATER, 10).await.unwrap();
    let skipped = ForwardProgress {
        delivered: 0,
        refused: BTreeMap::from([("rejected".to_owned(), 1)]),
        failed: Some("answered 400: bad".into()),
    };
    assert!(store.forward_advance(&again, &page[0].position, skipped, LATER + 1_000).await.unwrap());
    let status = store.forward_status().await.unwrap();
    assert_eq!((status[0].failures, status[0].last_error.as_deref()), (2, Some("answered 400: bad")));
    let claim = store.forward_claim("mail", LATER + 1_000, LEASE).await.unwrap().unwrap();
    assert_eq!((claim.attempts, claim.failing_since), (0, None), "a move starts afresh");
}

async fn replay_moves_a_cursor_back_never_forward(backend: Backend) {
    let store = backend.store.as_ref();
    store.forward_start(vec!["mail".into()], T0 - 10_000).await.unwrap();
    ingest(&backend, vec![event("p-1").user("ann"), event("p-2").user("bob")]).await;
    let claim = store.forward_claim("mail", LATER, LEASE).await.unwrap().unwrap();
    let page = store.forward_events(&claim.position, LATER, 10).await.unwrap();
    assert!(
        store.forward_advance(&claim, &page[1].position, ForwardProgress::default(), LATER).await.unwrap()
    );
    assert!(names(store, "mail", 10).await.is_empty());
    assert!(store.forward_rewind("mail", LATER).await.unwrap());
    assert!(names(store, "mail", 10).await.is_empty(), "nothing arrived since then: the cursor stays");
    assert!(store.forward_rewind("mail", T0).await.unwrap());
    assert_eq!(names(store, "mail", 10).await.len(), 2, "everything since T0 again");
    assert!(!store.forward_rewind("nowhere", T0).await.unwrap(), "no cursor, nothing to rewind");
}

async fn purging_the_newest_events_never_makes_a_cursor_skip_the_next(backend: Backend) {
    let store = backend.store.as_ref();
    store.forward_start(vec!["mail".into()], T0 - 10_000).await.unwrap();
    ingest(&backend, vec![event("n-1").user("ann"), event("n-2").user("bob")]).await;
    let claim = store.forward_claim("mail", LATER, LEASE).await.unwrap().unwrap();
    let page = store.forward_events(&claim.position, LATER, 10).await.unwrap();
    assert!(
        store.forward_advance(&claim, &page[1].position, ForwardProgress::default(), LATER).await.unwrap()
    );
    // Bob, the newest, is erased and his rows purged; then someone new arrives.
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    erase(store, &bob).await;
    store.purge_erased(1_000).await.unwrap();
    let mut later = event("n-3").user("cy").build(&backend);
    later.received_at = T0 + 1_000;
    store.ingest(vec![later], backend.policy.clone()).await.unwrap();
    let cy = subject_of(&backend, "user_id", "cy").await.unwrap();
    assert_eq!(names(store, "mail", 10).await, [cy], "the next event is not skipped");
}
