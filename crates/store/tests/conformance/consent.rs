//! The consent ledger: consent carried by an event counts before its properties are judged, consent
//! recorded through the API comes with receipts and audit entries, lapsed consents are found, and
//! an entry read from a consent string keeps its provenance.

use serde_json::json;
use tactful_domain::audit::AuditEvent;
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod, StringProvenance};

use crate::{Backend, T0, event, ingest, open_subject, subject_of};

conformance!(
    consent_on_an_event_counts_before_its_properties_are_judged,
    consents_recorded_through_the_api_come_with_receipts_and_audit_entries,
    lapsed_consents_are_found_by_family_until_their_expiry_is_recorded,
    a_consent_strings_provenance_comes_back_on_every_read_of_the_ledger,
);

/// The event's own consent is applied first; what no permitted purpose covers is never stored, but
/// counted.
async fn consent_on_an_event_counts_before_its_properties_are_judged(backend: Backend) {
    // An EU person with no consent: the product they viewed serves only consent-based purposes.
    ingest(&backend, vec![event("1").user("eve").from("eu-web")]).await;
    let eve = subject_of(&backend, "user_id", "eve").await.unwrap();
    assert_eq!(
        open_subject(&backend, &eve).await.events,
        [json!({})],
        "the event is kept, its product is not"
    );
    let counts = backend.store.drop_counts().await.unwrap();
    assert!(
        counts
            .iter()
            .any(|count| count.path == "properties.product_id" && count.reason.as_str() == "not_permitted")
    );

    // The same person accepts personalization on the banner: that event's product is stored.
    ingest(&backend, vec![event("2").user("eve").from("eu-web").consent(json!({"Personalization": true}))])
        .await;
    let opened = open_subject(&backend, &eve).await;
    assert!(opened.events.contains(&json!({"properties": {"product_id": "p1"}})), "{:?}", opened.events);
    assert_eq!(opened.events.len(), 2);
    let state = backend.store.subject_state(&eve).await.unwrap().unwrap();
    assert_eq!(state.jurisdiction.as_deref(), Some("eu"));
    assert_eq!(state.ledger.len(), 1);
    assert_eq!(state.ledger[0].purpose, "personalize.content");
    assert_eq!(backend.store.receipts(&eve).await.unwrap().len(), 1, "the change has a receipt");

    // Banners repeat their choices on every event; only changes enter the ledger.
    ingest(&backend, vec![event("3").user("eve").from("eu-web").consent(json!({"Personalization": true}))])
        .await;
    assert_eq!(backend.store.subject_state(&eve).await.unwrap().unwrap().ledger.len(), 1);

    // GPC on a Californian: sale and sharing are withdrawn once, and recorded as GPC.
    ingest(&backend, vec![event("4").user("cal").gpc(), event("5").user("cal").gpc()]).await;
    let cal = subject_of(&backend, "user_id", "cal").await.unwrap();
    let state = backend.store.subject_state(&cal).await.unwrap().unwrap();
    assert_eq!(state.jurisdiction.as_deref(), Some("us-ca"));
    assert_eq!(state.ledger.len(), 1);
    assert_eq!(state.ledger[0].method, tactful_domain::consent::ConsentMethod::Gpc);
    // Its audit entries name the subject by pseudonym only.
    let entries = backend.store.audit_for_subject(&backend.vault.subject_pseudonym(&cal), 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert!(!entries[0].text.contains(&cal) && !entries[0].text.contains("cal\""));
}

async fn consents_recorded_through_the_api_come_with_receipts_and_audit_entries(backend: Backend) {
    ingest(&backend, vec![event("1").user("ann").email("ann@example.com")]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let consent = |id: &str, kind, at| ConsentEvent {
        id: id.into(),
        purpose: "marketing.communications.email".into(),
        kind,
        method: ConsentMethod::Api,
        at,
        expires_at: None,
        version: 1,
        source: Some("api".into()),
        jurisdiction: None,
        verified: true,
        provenance: None,
    };
    let audit = |id: &str| AuditEvent::Consent {
        subject: backend.vault.subject_pseudonym(&ann),
        purpose: "marketing.communications.email".into(),
        change: ConsentKind::Given,
        method: ConsentMethod::Api,
        version: 1,
        receipt: id.into(),
        source: None,
    };
    backend
        .store
        .record_consents(
            &ann,
            vec![(consent("cr_a", ConsentKind::Given, T0), "{\"receipt\":1}".into())],
            vec![audit("cr_a")],
            Vec::new(),
        )
        .await
        .unwrap();
    backend
        .store
        .record_consents(
            &ann,
            vec![(consent("cr_b", ConsentKind::Withdrawn, T0 + 5), "{\"receipt\":2}".into())],
            vec![audit("cr_b")],
            Vec::new(),
        )
        .await
        .unwrap();
    let state = backend.store.subject_state(&ann).await.unwrap().unwrap();
    assert_eq!(state.ledger.iter().map(|event| event.id.as_str()).collect::<Vec<_>>(), ["cr_a", "cr_b"]);
    assert_eq!(
        state.consents().status("marketing.communications.email", 1, T0 + 10),
        tactful_domain::consent::Status::Withdrawn
    );
    let receipt = backend.store.receipt("cr_b").await.unwrap().unwrap();
    assert_eq!((receipt.subject.as_str(), receipt.body.as_str()), (ann.as_str(), "{\"receipt\":2}"));
    assert!(backend.store.receipt("cr_nope").await.unwrap().is_none());
    let ledger = backend.store.consent_ledger(None, 10).await.unwrap();
    assert_eq!(ledger.len(), 2);
    let next = backend
        .store
        .consent_ledger(Some((ledger[0].event.at, ledger[0].event.id.clone())), 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1, "the export pages by (time, id)");
    assert_eq!(next[0].event.id, "cr_b");
    assert_eq!(backend.store.audit_entries(0, 100).await.unwrap().len(), 2);
}

async fn lapsed_consents_are_found_by_family_until_their_expiry_is_recorded(backend: Backend) {
    const EMAIL: &str = "marketing.communications.email";
    ingest(&backend, vec![event("1").user("bea").anonymous("dev-1"), event("2").anonymous("dev-2")]).await;
    ingest(&backend, vec![event("3").user("cal")]).await;
    let (bea, device, cal) = (
        subject_of(&backend, "user_id", "bea").await.unwrap(),
        subject_of(&backend, "anonymous_id", "dev-2").await.unwrap(),
        subject_of(&backend, "user_id", "cal").await.unwrap(),
    );
    let consent = |id: &str, kind, at, expires_at| ConsentEvent {
        id: id.into(),
        purpose: EMAIL.into(),
        kind,
        method: ConsentMethod::Explicit,
        at,
        expires_at,
        version: 1,
        source: Some("api".into()),
        jurisdiction: None,
        verified: true,
        provenance: None,
    };
    let record = |subject: String, event: ConsentEvent| {
        let store = backend.store.clone();
        async move {
            store.record_consents(&subject, vec![(event, "{}".into())], Vec::new(), Vec::new()).await.unwrap()
        }
    };
    // Given on a device with an expiry, then the device turns out to be Bea's, who gave it again
    // later without one: the family's latest word has no expiry.
    record(device.clone(), consent("cr_device", ConsentKind::Given, T0, Some(T0 + 100))).await;
    ingest(&backend, vec![event("4").user("bea").anonymous("dev-2")]).await;
    assert_eq!(subject_of(&backend, "anonymous_id", "dev-2").await.as_deref(), Some(bea.as_str()));
    record(bea.clone(), consent("cr_bea", ConsentKind::Given, T0 + 50, None)).await;
    // Cal's lapses.
    record(cal.clone(), consent("cr_cal", ConsentKind::Renewed, T0, Some(T0 + 100))).await;

    assert!(backend.store.lapsed_consents(T0 + 99, 10).await.unwrap().is_empty(), "not yet");
    let lapsed = backend.store.lapsed_consents(T0 + 100, 10).await.unwrap();
    assert_eq!(lapsed.len(), 1, "{lapsed:?}");
    assert_eq!((lapsed[0].subject.as_str(), lapsed[0].event.id.as_str()), (cal.as_str(), "cr_cal"));
    record(cal.clone(), consent("cr_cal_expired", ConsentKind::Expired, T0 + 100, None)).await;
    assert!(backend.store.lapsed_consents(T0 + 1_000, 10).await.unwrap().is_empty(), "recorded once");
}

async fn a_consent_strings_provenance_comes_back_on_every_read_of_the_ledger(backend: Backend) {
    ingest(&backend, vec![event("1").user("dee")]).await;
    let dee = subject_of(&backend, "user_id", "dee").await.unwrap();
    let provenance = StringProvenance {
        format: "tcf".into(),
        sha256: "a1c4bc83dc7a615a4e3a90bfce311791244a2f969d8af8ced66a2ef7fb411653".into(),
        cmp_id: Some(31),
        cmp_version: Some(640),
        created: Some(T0 - 86_400_000),
        updated: Some(T0),
    };
    let entry = |id: &str, provenance: Option<StringProvenance>| ConsentEvent {
        id: id.into(),
        purpose: "marketing.communications.email".into(),
        kind: ConsentKind::Given,
        method: ConsentMethod::Explicit,
        at: T0,
        expires_at: Some(T0 + 100),
        version: 1,
        source: Some("eu-web".into()),
        jurisdiction: None,
        verified: true,
        provenance,
    };
    let rows = vec![
        (entry("cr_string", Some(provenance.clone())), "{}".into()),
        (entry("cr_plain", None), "{}".into()),
    ];
    backend.store.record_consents(&dee, rows, Vec::new(), Vec::new()).await.unwrap();
    let of = |ledger: Vec<ConsentEvent>| {
        let mut found: Vec<_> = ledger.into_iter().map(|event| (event.id, event.provenance)).collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    };
    let expected = vec![("cr_plain".to_owned(), None), ("cr_string".to_owned(), Some(provenance))];
    let state = backend.store.subject_state(&dee).await.unwrap().unwrap();
    assert_eq!(of(state.ledger), expected, "the person's ledger");
    let states = backend.store.subject_states(vec![dee.clone()]).await.unwrap();
    assert_eq!(of(states.into_iter().next().unwrap().ledger), expected, "ledgers read in bulk");
    let exported = backend.store.consent_ledger(None, 10).await.unwrap();
    assert_eq!(of(exported.into_iter().map(|entry| entry.event).collect()), expected, "the export");
    let lapsed = backend.store.lapsed_consents(T0 + 100, 10).await.unwrap();
    // Only the latest word on a purpose lapses: of two at the same time, the greater id.
    assert_eq!(of(lapsed.into_iter().map(|entry| entry.event).collect()), expected[1..], "lapsed consents");
}
