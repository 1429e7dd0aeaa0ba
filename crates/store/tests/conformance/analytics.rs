//! Private analytics: privacy budgets, windows of events, and many people's states at once.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod};
use tactful_store::{
    Budget, FamilyActivity, FamilyKeys, Scan, ShredOutcome, ShredPlan, SpendOutcome, Store, StoreTesting,
};

use crate::{Backend, Event, T0, event, ingest, iso, people, subject_of};

conformance!(
    privacy_budgets_accumulate_refuse_whole_and_start_fresh_each_period,
    concurrent_spends_from_two_instances_never_exceed_the_limit,
    a_window_of_events_is_paged_once_each_by_family_without_the_erased,
    family_roots_activity_and_keys_answer_for_many_subjects_at_once,
    subject_states_answer_for_many_families_at_once_like_subject_state,
);

/// One ε in millionths.
const EPSILON: i64 = 1_000_000;
const DAY: i64 = 86_400_000;

/// The audit event a test spend carries, named so the log shows which spends were recorded.
fn spend_entry(name: &str) -> Vec<AuditEvent> {
    vec![AuditEvent::KeyRevoked { key: name.into() }]
}

/// The names of the test spends in the audit log, in order.
async fn audited_spends(store: &dyn Store) -> Vec<String> {
    store
        .audit_entries(0, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.text).unwrap()["key"].as_str().unwrap().to_owned())
        .collect()
}

async fn privacy_budgets_accumulate_refuse_whole_and_start_fresh_each_period(backend: Backend) {
    let store = &backend.store;
    let limit = 10 * EPSILON;
    let spend = |period: i64, epsilon: i64, limit: i64, name: &'static str| {
        let store = store.clone();
        async move { store.spend_budget("orders", period, epsilon, limit, spend_entry(name)).await.unwrap() }
    };
    let budget = |limit_micro, spent_micro| Budget { limit_micro, spent_micro };
    assert_eq!(store.budget("orders", T0, limit).await.unwrap(), budget(limit, 0), "nothing spent yet");

    assert_eq!(spend(T0, 3 * EPSILON, limit, "s1").await, SpendOutcome::Spent(budget(limit, 3 * EPSILON)));
    assert_eq!(spend(T0, 4_500_000, limit, "s2").await, SpendOutcome::Spent(budget(limit, 7_500_000)));
    // 7.5 + 3 > 10: refused whole, with what remains.
    let SpendOutcome::Refused(refused) = spend(T0, 3 * EPSILON, limit, "refused").await else {
        panic!("spending past the limit is refused")
    };
    assert_eq!((refused, refused.remaining_micro()), (budget(limit, 7_500_000), 2_500_000));
    assert_eq!(store.budget("orders", T0, limit).await.unwrap(), budget(limit, 7_500_000));
    assert_eq!(audited_spends(store.as_ref()).await, ["s1", "s2"], "a refused spend is not audited");

    // A new period, and another dataset, start fresh; a refusal in a fresh period records no row.
    let next = T0 + DAY;
    assert_eq!(spend(next, 3 * EPSILON, limit, "s3").await, SpendOutcome::Spent(budget(limit, 3 * EPSILON)));
    assert_eq!(store.budget("visits", T0, limit).await.unwrap(), budget(limit, 0));
    assert_eq!(
        spend(T0 + 2 * DAY, 11 * EPSILON, limit, "too-much").await,
        SpendOutcome::Refused(budget(limit, 0))
    );

    // A lowered limit applies at once: up to it exactly, then nothing; a raised one gives room again.
    let lowered = 8 * EPSILON;
    assert!(matches!(spend(T0, EPSILON, lowered, "over-lowered").await, SpendOutcome::Refused(_)));
    assert_eq!(spend(T0, 500_000, lowered, "s4").await, SpendOutcome::Spent(budget(lowered, lowered)));
    let SpendOutcome::Refused(now) = spend(T0, 1, 5 * EPSILON, "below-spent").await else {
        panic!("a limit below what was spent refuses everything")
    };
    assert_eq!((now.spent_micro, now.remaining_micro()), (lowered, 0));
    assert_eq!(spend(T0, EPSILON, limit, "s5").await, SpendOutcome::Spent(budget(limit, 9 * EPSILON)));

    assert!(store.spend_budget("orders", T0, -EPSILON, limit, Vec::new()).await.is_err(), "no refunds");
    assert_eq!(store.budget("orders", T0, limit).await.unwrap().spent_micro, 9 * EPSILON);
    let expected = vec![("orders".to_owned(), T0, 9 * EPSILON), ("orders".to_owned(), next, 3 * EPSILON)];
    assert_eq!(store.budgets().await.unwrap(), expected);
    assert_eq!(audited_spends(store.as_ref()).await, ["s1", "s2", "s3", "s4", "s5"]);

    // The budget is in the database, not in the instance.
    let reopened = backend.reopen().await.unwrap().store;
    assert_eq!(reopened.budgets().await.unwrap(), expected);
    assert_eq!(
        reopened.spend_budget("orders", T0, 2 * EPSILON, limit, spend_entry("after-reopen")).await.unwrap(),
        SpendOutcome::Refused(budget(limit, 9 * EPSILON))
    );
    assert_eq!(
        reopened.spend_budget("orders", T0, EPSILON, limit, spend_entry("s6")).await.unwrap(),
        SpendOutcome::Spent(budget(limit, limit))
    );
}

/// Sixteen spends of 1 ε against a limit of 10 ε at once, from two instances: exactly ten are
/// recorded (each with its audit entry), each seeing the budget one step further.
async fn concurrent_spends_from_two_instances_never_exceed_the_limit(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let stores = [backend.store.clone(), second];
    let limit = 10 * EPSILON;
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for index in 0..16 {
        let (store, start) = (stores[index % 2].clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store.spend_budget("orders", T0, EPSILON, limit, spend_entry(&format!("spend-{index}"))).await
        }));
    }
    let mut spent = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap().expect("every spend is answered") {
            SpendOutcome::Spent(budget) => spent.push(budget.spent_micro),
            SpendOutcome::Refused(budget) => {
                assert_eq!(budget.remaining_micro(), 0, "refused only once nothing remains");
                refused += 1;
            }
        }
    }
    spent.sort_unstable();
    assert_eq!(spent, (1..=10).map(|count| count * EPSILON).collect::<Vec<_>>());
    assert_eq!(refused, 6);
    assert_eq!(backend.store.budget("orders", T0, limit).await.unwrap().spent_micro, limit);
    assert_eq!(audited_spends(backend.store.as_ref()).await.len(), 10, "one entry per recorded spend");
}

/// Erases a family (no suppression, no destination to tell).
pub(crate) async fn erase(store: &dyn Store, subject: &str) {
    let plan = ShredPlan {
        request: "req_e".into(),
        held_through: i64::MAX,
        suppress: false,
        deliveries: Vec::new(),
        audit: Vec::new(),
    };
    assert!(matches!(store.shred(subject, plan, T0).await.unwrap(), ShredOutcome::Shredded { .. }));
}

/// Every event of a window, paged: `(timestamp, subject, source, name, sealed)`, in the order read.
async fn read_window(
    store: &dyn Store,
    (from, to): (i64, i64),
    page: u32,
    scan: Scan,
) -> Vec<(i64, String, String, String, Option<([u8; 16], Vec<u8>)>)> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let read = store.events_in_window(from, to, after.clone(), page, scan).await.unwrap();
        assert!(read.events.len() <= page as usize);
        for event in &read.events {
            let (subject, source, name) = (read.subject(event), read.source(event), read.name(event));
            assert!(!subject.is_empty() && !source.is_empty() && !name.is_empty(), "{event:?}");
            seen.push((
                event.timestamp,
                subject.to_owned(),
                source.to_owned(),
                name.to_owned(),
                event.sealed.clone(),
            ));
        }
        // Each string once per page.
        let mut subjects = read.subjects.clone();
        subjects.sort();
        subjects.dedup();
        assert_eq!(subjects.len(), read.subjects.len());
        match read.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    seen
}

async fn a_window_of_events_is_paged_once_each_by_family_without_the_erased(backend: Backend) {
    // Bob, and a device of his browsing anonymously until he logs in on it: one family, two subjects.
    ingest(&backend, vec![event("b1").user("bob").at(T0)]).await;
    ingest(
        &backend,
        vec![event("b2").anonymous("device").at(T0 + 1), event("b3").anonymous("device").at(T0 + 2)],
    )
    .await;
    let device = subject_of(&backend, "anonymous_id", "device").await.unwrap();
    ingest(&backend, vec![event("b4").user("bob").anonymous("device").at(T0 + 3)]).await;
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    assert_ne!(device, bob);
    // Zed has events before, in and at the end of the window; Ann will be erased. An identify has
    // no event name: its type stands for it.
    ingest(
        &backend,
        vec![
            event("z0").user("zed").at(T0 - 1),
            event("z1").user("zed").at(T0 + 1),
            event("z2").user("zed").at(T0 + 9),
            event("z3").user("zed").at(T0 + 10),
            event("a1").user("ann").at(T0 + 2),
            event("a2").user("ann").at(T0 + 4),
        ],
    )
    .await;
    let identify = json!({"type": "identify", "userId": "zed", "messageId": "z4", "timestamp": iso(T0 + 5)});
    ingest(&backend, vec![Event { message: identify, source: "web", gpc: false, unproven: false }]).await;
    let zed = subject_of(&backend, "user_id", "zed").await.unwrap();
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = backend.store.as_ref();
    let window = (T0, T0 + 10);

    let all = read_window(store, window, 2, Scan::Records).await;
    assert_eq!(all.len(), 9, "from inclusive, to exclusive");
    assert!(all.windows(2).all(|pair| pair[0].0 <= pair[1].0), "in time order");
    let dedupes: HashSet<[u8; 16]> = all.iter().map(|row| row.4.as_ref().expect("records").0).collect();
    assert_eq!(dedupes.len(), 9, "each event once across pages");
    for page in [1, 3, 100] {
        assert_eq!(read_window(store, window, page, Scan::Records).await, all, "pages of {page}");
    }
    // Envelopes are the same rows in the same order, without their records.
    let envelopes = read_window(store, window, 4, Scan::Envelopes).await;
    let stripped: Vec<_> =
        all.iter().map(|(t, s, o, n, _)| (*t, s.clone(), o.clone(), n.clone(), None)).collect();
    assert_eq!(envelopes, stripped);
    assert!(all.iter().any(|row| row.3 == "identify" && row.1 == zed), "a type stands for a missing name");
    assert!(all.iter().filter(|row| row.3 != "identify").all(|row| row.3 == "Product Viewed"));

    // What the window returns opens with the family's keys, as the family holds it.
    let family = store.subject_data(&bob).await.unwrap().unwrap();
    let keys = FamilyKeys::unwrap(&backend.vault, &family.keys).unwrap();
    for (_, subject, source, _, sealed) in all.iter().filter(|row| row.1 == bob || row.1 == device) {
        let (dedupe, sealed) = sealed.as_ref().unwrap();
        let stored = family.events.iter().find(|stored| stored.dedupe == *dedupe).expect("in the family");
        assert_eq!((&stored.subject, &stored.sealed), (subject, sealed));
        let record = keys.open_record(subject, source, dedupe, sealed).unwrap();
        assert_eq!(record["properties"]["product_id"], "p1");
    }

    erase(store, &ann).await;
    // The erased family's rows may stay in the window until they are purged, but it has no root:
    // whoever counts people through family_roots counts them no more.
    let subjects: Vec<String> =
        read_window(store, window, 100, Scan::Envelopes).await.into_iter().map(|row| row.1).collect();
    let roots: std::collections::HashMap<String, String> =
        store.family_roots(subjects).await.unwrap().into_iter().collect();
    let mut families: Vec<&str> = roots.values().map(String::as_str).collect();
    families.sort_unstable();
    families.dedup();
    let mut expected = vec![bob.as_str(), zed.as_str()];
    expected.sort_unstable();
    assert_eq!(families, expected, "bob's device counts as bob; ann is gone");
    assert_eq!(roots.get(&device), Some(&bob));
    store.purge_erased(1_000).await.unwrap();
    assert_eq!(read_window(store, window, 100, Scan::Envelopes).await.len(), 7, "purged rows are gone");
    assert!(
        store.events_in_window(T0 + 10, T0 + 10, None, 10, Scan::Envelopes).await.unwrap().events.is_empty(),
        "an empty window"
    );
}

async fn family_roots_activity_and_keys_answer_for_many_subjects_at_once(backend: Backend) {
    // Bob's device had browsed before he first logged in on it: its first event is his family's.
    ingest(&backend, vec![event("b1").user("bob").at(T0 - 3_000)]).await;
    ingest(&backend, vec![event("d1").anonymous("device").at(T0 - 9_000)]).await;
    let device = subject_of(&backend, "anonymous_id", "device").await.unwrap();
    ingest(&backend, vec![event("b2").user("bob").anonymous("device").at(T0 - 1_000)]).await;
    ingest(&backend, vec![event("z1").user("zed").at(T0 - 2_000), event("a1").user("ann").at(T0 - 100)])
        .await;
    let [bob, zed, ann] = <[String; 3]>::try_from(people(&backend, &["bob", "zed", "ann"]).await).unwrap();
    assert_ne!(device, bob);
    // `people` sent each of them a `hello` at T0: their last event.
    let store = &backend.store;
    erase(store.as_ref(), &ann).await;

    // More ids than one query takes, unknown ones among them, the erased one, one twice.
    let mut ids: Vec<String> = (0..1_200).map(|index| format!("sub_unknown_{index:04}")).collect();
    ids.extend([device.clone(), ann.clone(), zed.clone(), bob.clone(), bob.clone()]);
    ids.reverse();
    let mut roots = store.family_roots(ids.clone()).await.unwrap();
    roots.sort();
    let mut expected =
        vec![(bob.clone(), bob.clone()), (device.clone(), bob.clone()), (zed.clone(), zed.clone())];
    expected.sort();
    assert_eq!(roots, expected);
    assert!(store.family_roots(Vec::new()).await.unwrap().is_empty());

    // Activity spans every event of the family, members' included; only roots are answered.
    let activity = store.family_activity(ids.clone()).await.unwrap();
    let mut expected = vec![
        FamilyActivity { root: bob.clone(), first: T0 - 9_000, last: T0 },
        FamilyActivity { root: zed.clone(), first: T0 - 2_000, last: T0 },
    ];
    expected.sort_by(|a, b| a.root.cmp(&b.root));
    assert_eq!(activity, expected, "the device is not a root, ann is erased");
    assert!(store.family_activity(Vec::new()).await.unwrap().is_empty());

    // Keys, many families at once, are what each family's summary holds.
    let keys = store.family_keys(ids).await.unwrap();
    let roots: Vec<&str> = keys.iter().map(|(root, _)| root.as_str()).collect();
    let mut expected = vec![bob.as_str(), zed.as_str()];
    expected.sort_unstable();
    assert_eq!(roots, expected, "the device is not a root, ann is erased");
    for (root, members) in &keys {
        let mut members = members.clone();
        members.sort();
        let mut summary = store.subject_summary(root).await.unwrap().unwrap().keys;
        summary.sort();
        assert_eq!(members, summary, "{root}");
    }
    assert_eq!(keys[roots.iter().position(|r| *r == bob).unwrap()].1.len(), 2, "bob and his device");
}

async fn subject_states_answer_for_many_families_at_once_like_subject_state(backend: Backend) {
    ingest(&backend, vec![event("d1").anonymous("device")]).await;
    let device = subject_of(&backend, "anonymous_id", "device").await.unwrap();
    let consent = |id: &str, at| ConsentEvent {
        id: id.into(),
        purpose: "marketing.communications.email".into(),
        kind: ConsentKind::Given,
        method: ConsentMethod::Api,
        at,
        expires_at: None,
        version: 1,
        source: Some("api".into()),
        jurisdiction: None,
        verified: true,
        provenance: None,
    };
    let store = &backend.store;
    // Given on the device before it joined Bob: part of Bob's family ledger afterwards.
    store
        .record_consents(&device, vec![(consent("cr_device", T0), "{}".into())], Vec::new(), Vec::new())
        .await
        .unwrap();
    ingest(&backend, vec![event("b1").user("bob"), event("b2").user("bob").anonymous("device")]).await;
    ingest(&backend, vec![event("e1").user("eve").from("eu-web")]).await;
    let [bob, eve, ann, cal] =
        <[String; 4]>::try_from(people(&backend, &["bob", "eve", "ann", "cal"]).await).unwrap();
    assert_ne!(device, bob);
    store
        .record_consents(&bob, vec![(consent("cr_bob", T0 + 1), "{}".into())], Vec::new(), Vec::new())
        .await
        .unwrap();
    store
        .record_consents(&eve, vec![(consent("cr_eve", T0), "{}".into())], Vec::new(), Vec::new())
        .await
        .unwrap();
    store.set_restricted(&cal, true, Vec::new()).await.unwrap();
    erase(store.as_ref(), &ann).await;

    // More ids than one query takes, unknown ones among them, the merged device (not a root), the
    // erased one, and one root twice.
    let mut ids: Vec<String> = (0..1_200).map(|index| format!("sub_unknown_{index:04}")).collect();
    ids.extend([cal.clone(), bob.clone(), device.clone(), ann.clone(), eve.clone(), bob.clone()]);
    ids.reverse();
    let states = store.subject_states(ids).await.unwrap();
    let mut roots = vec![bob.clone(), eve.clone(), cal.clone()];
    roots.sort();
    let mut expected = Vec::new();
    for root in &roots {
        expected.push(store.subject_state(root).await.unwrap().expect("a live root"));
    }
    assert_eq!(states, expected);
    let of = |subject: &str| states.iter().find(|state| state.subject == subject).unwrap();
    let ledger = |subject: &str| of(subject).ledger.iter().map(|event| event.id.clone()).collect::<Vec<_>>();
    assert_eq!(ledger(&bob), ["cr_device", "cr_bob"], "the family's ledger, oldest first");
    assert_eq!(ledger(&eve), ["cr_eve"]);
    assert_eq!(of(&eve).jurisdiction.as_deref(), Some("eu"));
    assert!(of(&cal).restricted && !of(&bob).restricted);
    assert!(store.subject_states(Vec::new()).await.unwrap().is_empty());
}
