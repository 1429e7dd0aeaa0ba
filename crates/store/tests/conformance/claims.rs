//! Claims: what an event from a public write key (a browser, an app) says about who it is, without
//! the identity token that proves it. Such an event is its device's only: its userId and identifying
//! traits never find, link or bind a person; on a known person's device what it did is kept as the
//! device's history, but what it says about the person (traits, country) changes nothing of theirs
//! and its consent may only narrow theirs.

use serde_json::json;
use tactful_domain::consent::{ConsentKind, ConsentMethod};
use tactful_store::IngestOutcome;

use crate::{Backend, event, ingest, open_subject, subject_of};

conformance!(
    a_claimed_user_id_or_email_never_reaches_the_person_it_names,
    a_claim_on_a_known_persons_device_changes_nothing_of_theirs_and_grants_nothing,
    consent_claimed_on_an_anonymous_device_stays_there_and_is_never_explicit,
);

async fn a_claimed_user_id_or_email_never_reaches_the_person_it_names(backend: Backend) {
    // Mina is a known customer: the brand's server said so.
    ingest(
        &backend,
        vec![event("m-1").user("mina").identify(json!({"email": "mina@example.com"})).from("backend")],
    )
    .await;
    let mina = subject_of(&backend, "user_id", "mina").await.unwrap();
    let before = open_subject(&backend, &mina).await;

    // An attacker's browser claims to be her, by userId and by email, with the public key.
    let outcomes = ingest(
        &backend,
        vec![
            event("a-1").anonymous("attacker-device").user("mina").unproven(),
            event("a-2").anonymous("attacker-device").email("mina@example.com").unproven(),
        ],
    )
    .await;
    assert!(outcomes.iter().all(|outcome| matches!(outcome, IngestOutcome::Stored { .. })), "{outcomes:?}");
    let device =
        subject_of(&backend, "anonymous_id", "attacker-device").await.expect("the device is someone");
    assert_ne!(device, mina, "the device stays its own");
    assert_eq!(subject_of(&backend, "user_id", "mina").await.as_deref(), Some(mina.as_str()));
    assert_eq!(subject_of(&backend, "email", "mina@example.com").await.as_deref(), Some(mina.as_str()));
    let after = open_subject(&backend, &mina).await;
    assert_eq!(after.events.len(), before.events.len(), "nothing was added to her history");
    assert_eq!(after.identifiers, before.identifiers);
    let opened = open_subject(&backend, &device).await;
    assert_eq!(opened.identifiers.len(), 1, "the device has its anonymousId only: {:?}", opened.identifiers);
    assert_eq!(opened.events.len(), 2, "what it sent is the device's");
}

async fn a_claim_on_a_known_persons_device_changes_nothing_of_theirs_and_grants_nothing(backend: Backend) {
    // Lucy signed in on her phone (proven), so its anonymousId is hers.
    ingest(&backend, vec![event("l-1").anonymous("lucy-phone").user("lucy").from("eu-web")]).await;
    let lucy = subject_of(&backend, "user_id", "lucy").await.unwrap();
    assert_eq!(subject_of(&backend, "anonymous_id", "lucy-phone").await.as_deref(), Some(lucy.as_str()));
    let before = open_subject(&backend, &lucy).await;

    // Someone with a copy of that anonymousId grants everything on the banner, and sends a country.
    let outcomes = ingest(
        &backend,
        vec![
            event("x-1")
                .anonymous("lucy-phone")
                .consent(json!({"Personalization": true, "Email": true, "Advertising": true}))
                .unproven(),
            event("x-2").anonymous("lucy-phone").identify(json!({"country": "US", "state": "CA"})).unproven(),
        ],
    )
    .await;
    assert!(matches!(outcomes[0], IngestOutcome::Stored { .. }), "the device's page view: {outcomes:?}");
    assert_eq!(outcomes[1], IngestOutcome::Unproven, "what it says about her is not hers");
    let state = backend.store.subject_state(&lucy).await.unwrap().unwrap();
    assert!(state.ledger.is_empty(), "no grant for a known person from a claim: {:?}", state.ledger);
    assert_eq!(state.jurisdiction.as_deref(), Some("eu"), "her jurisdiction is hers");
    let after = open_subject(&backend, &lucy).await;
    assert_eq!(after.events.len(), before.events.len() + 1);
    assert_eq!(after.events.last(), Some(&json!({})), "nothing her consent does not permit is kept");
    assert_eq!(after.profile, before.profile);

    // A "no" from that device is honoured: it only narrows.
    ingest(&backend, vec![event("x-3").anonymous("lucy-phone").consent(json!({"Email": false})).unproven()])
        .await;
    let state = backend.store.subject_state(&lucy).await.unwrap().unwrap();
    assert_eq!(state.ledger.len(), 1, "{:?}", state.ledger);
    assert_eq!(state.ledger[0].kind, ConsentKind::Withdrawn);
    assert!(!state.ledger[0].verified, "its provenance says it was claimed");
}

async fn consent_claimed_on_an_anonymous_device_stays_there_and_is_never_explicit(backend: Backend) {
    let outcomes = ingest(
        &backend,
        vec![event("d-1").anonymous("visitor").consent(json!({"Personalization": true})).unproven()],
    )
    .await;
    let IngestOutcome::Stored { subject } = &outcomes[0] else { panic!("stored: {outcomes:?}") };
    let state = backend.store.subject_state(subject).await.unwrap().unwrap();
    assert_eq!(state.ledger.len(), 1);
    let entry = &state.ledger[0];
    assert_eq!(
        (entry.kind, entry.method, entry.verified),
        (ConsentKind::Given, ConsentMethod::Explicit, false)
    );
    assert_eq!(entry.source.as_deref(), Some("web"));
    let consents = state.consents();
    assert!(
        matches!(
            consents.status("personalize.content", 1, crate::T0 + 1),
            tactful_domain::consent::Status::Given { explicit: false, .. }
        ),
        "a claimed yes is a yes for the device, never an explicit one"
    );
    let receipt = backend.store.receipts(subject).await.unwrap().remove(0);
    let body: serde_json::Value = serde_json::from_str(&receipt.body).unwrap();
    assert_eq!(body["receipt"]["iso27560"]["event"]["identity"], "claimed");
    assert_eq!(body["receipt"]["services"][0]["purposes"][0]["consentType"], "IMPLICIT");
}
