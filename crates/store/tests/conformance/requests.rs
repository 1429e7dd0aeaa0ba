//! Data-subject requests, erasure, deliveries to destinations and retention.

use serde_json::{Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_store::{
    DeliveryOutcome, DeliveryPayload, DeliveryStatus, IngestOutcome, LegalHold, NewRequest, RequestRecord,
    RequestUpdate, ShredOutcome, ShredPlan, Suppression,
};

use crate::{Backend, T0, event, first_name, ingest, open_subject, subject_of};

conformance!(
    requests_are_one_per_person_and_kind_and_only_move_forward,
    a_request_settles_once_every_destination_answered,
    shredding_makes_a_family_unreadable_unfindable_and_optionally_suppressed,
    retention_trims_then_deletes_what_outlived_its_declared_retention,
    rectification_restriction_and_paged_events,
);

fn new_request(id: &str, subject: &str, kind: RequestKind) -> RequestRecord {
    RequestRecord {
        id: id.into(),
        subject: Some(subject.into()),
        kind,
        status: RequestStatus::Received,
        source: "api".into(),
        received_at: T0,
        due_at: T0 + 30 * 86_400_000,
        extension_reason: None,
        completed_at: None,
        details: json!({}),
        sealed: None,
        steps: Vec::new(),
        verification: None,
        verification_attempts: 0,
        verification_expires: None,
        lease_until: None,
        updated_at: T0,
    }
}

fn moving(from: RequestStatus, to: RequestStatus) -> RequestUpdate {
    RequestUpdate { expect: Some(from), status: Some(to), ..RequestUpdate::default() }
}

async fn requests_are_one_per_person_and_kind_and_only_move_forward(backend: Backend) {
    ingest(&backend, vec![event("1").user("ann"), event("2").user("bob")]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    let audit = |id: &str| vec![AuditEvent::KeyRevoked { key: id.into() }];
    assert_eq!(
        store.create_request(new_request("req_a", &ann, RequestKind::Access), audit("a")).await.unwrap(),
        NewRequest::Created
    );
    assert_eq!(
        store.create_request(new_request("req_a2", &ann, RequestKind::Access), audit("a2")).await.unwrap(),
        NewRequest::Duplicate("req_a".into()),
        "one open access request per person"
    );
    let mut erase = new_request("req_e", &ann, RequestKind::Erase);
    erase.received_at = T0 + 1;
    // A shorter deadline (California's and the EU's differ): the queue puts it first.
    erase.due_at = T0 + 20 * 86_400_000;
    assert_eq!(store.create_request(erase, Vec::new()).await.unwrap(), NewRequest::Created);
    let queue = |records: Vec<RequestRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(queue(store.open_requests(10).await.unwrap()), ["req_e", "req_a"], "soonest deadline first");
    assert_eq!(queue(store.open_requests(1).await.unwrap()), ["req_e"]);

    // Two workers: a claimed request is not claimed again until its lease ends.
    let claimed = store.claim_requests(T0 + 10, 1_000, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["req_a", "req_e"]);
    assert!(store.claim_requests(T0 + 500, 1_000, 10).await.unwrap().is_empty());
    assert_eq!(store.claim_requests(T0 + 1_010, 1_000, 10).await.unwrap().len(), 2, "leases end");

    assert!(
        store.update_request("req_a", moving(RequestStatus::Received, RequestStatus::Running)).await.unwrap()
    );
    assert!(
        !store
            .update_request("req_a", moving(RequestStatus::Received, RequestStatus::Running))
            .await
            .unwrap(),
        "a request that moved meanwhile is not moved again"
    );
    assert!(
        store.update_request("req_a", moving(RequestStatus::Running, RequestStatus::Received)).await.is_err(),
        "never backwards"
    );
    let step = RequestUpdate {
        expect: Some(RequestStatus::Running),
        step: Some("packaged".into()),
        extend_to: Some((T0 + 90 * 86_400_000, "many systems to search".into())),
        note: Some("extended".into()),
        ..RequestUpdate::default()
    };
    assert!(store.update_request("req_a", step).await.unwrap());
    assert!(
        store
            .update_request("req_a", moving(RequestStatus::Running, RequestStatus::Completed))
            .await
            .unwrap()
    );
    let view = store.request("req_a").await.unwrap().unwrap();
    assert_eq!(view.record.status, RequestStatus::Completed);
    assert!(view.record.completed_at.is_some());
    assert!(view.record.done("packaged"));
    assert_eq!(view.record.due_at, T0 + 90 * 86_400_000);
    assert_eq!(view.record.extension_reason.as_deref(), Some("many systems to search"));
    let statuses: Vec<(RequestStatus, &str)> =
        view.history.iter().map(|h| (h.status, h.note.as_str())).collect();
    assert_eq!(
        statuses,
        [
            (RequestStatus::Received, "received"),
            (RequestStatus::Running, "running"),
            (RequestStatus::Running, "extended"),
            (RequestStatus::Completed, "completed"),
        ]
    );
    // Finished, so a new access request may be made.
    assert_eq!(
        store.create_request(new_request("req_a3", &ann, RequestKind::Access), Vec::new()).await.unwrap(),
        NewRequest::Created
    );
    let listed: Vec<String> =
        store.requests(Some(&ann), 10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(
        queue(store.open_requests(10).await.unwrap()),
        ["req_e", "req_a3"],
        "a completed request leaves the queue"
    );
    assert!(store.requests(Some("sub_nobody"), 10).await.unwrap().is_empty());
    assert!(store.request("req_nope").await.unwrap().is_none());
    assert_eq!(store.audit_entries(0, 100).await.unwrap().len(), 1, "a refused duplicate writes nothing");
}

async fn a_request_settles_once_every_destination_answered(backend: Backend) {
    ingest(&backend, vec![event("1").user("ann")]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    let payload = |request: &str, destination: &str| DeliveryPayload {
        request: request.into(),
        destination: destination.into(),
        message: "restrict".into(),
        subject: ann.clone(),
        issued_at: T0,
        identifiers: Some([("user_id".to_owned(), vec!["ann".to_owned()])].into()),
        details: json!({}),
    };
    store.create_request(new_request("req_r", &ann, RequestKind::Restrict), Vec::new()).await.unwrap();
    store.update_request("req_r", moving(RequestStatus::Received, RequestStatus::Running)).await.unwrap();
    let deliveries = vec![
        payload("req_r", "crm").into_delivery(&backend.vault),
        payload("req_r", "ads").into_delivery(&backend.vault),
    ];
    store.enqueue_deliveries(deliveries.clone(), T0).await.unwrap();
    store.enqueue_deliveries(deliveries, T0).await.unwrap();
    store
        .update_request("req_r", moving(RequestStatus::Running, RequestStatus::WaitingOnDestinations))
        .await
        .unwrap();
    assert_eq!(
        store.request("req_r").await.unwrap().unwrap().record.status,
        RequestStatus::WaitingOnDestinations
    );

    // Rights (here a restriction) go in their own lane, ahead of consent changes.
    let claimed = store.outbox_claim(tactful_store::RIGHTS_TOPIC, 10, T0, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 2, "enqueued twice, written once");
    let opened: Vec<DeliveryPayload> =
        claimed.iter().map(|m| DeliveryPayload::open(&backend.vault, &m.payload).unwrap()).collect();
    let by = |destination: &str| {
        claimed.iter().zip(&opened).find(|(_, p)| p.destination == destination).unwrap().0.id.clone()
    };
    assert_eq!(
        opened[0].identifiers.as_ref().unwrap()["user_id"],
        ["ann"],
        "the payload opens with the outbox key"
    );

    let ack = DeliveryOutcome::Acknowledged { status_code: 204 };
    assert_eq!(store.record_delivery(&by("crm"), "req_r", "crm", ack.clone(), T0 + 1).await.unwrap(), None);
    let failed =
        DeliveryOutcome::Failed { status_code: Some(503), error: "busy".into(), retry_at: Some(T0 + 5_000) };
    assert_eq!(store.record_delivery(&by("ads"), "req_r", "ads", failed, T0 + 2).await.unwrap(), None);
    assert!(
        store.outbox_claim(tactful_store::RIGHTS_TOPIC, 10, T0 + 4_999, 60_000).await.unwrap().is_empty(),
        "not before its retry time"
    );
    let again = store.outbox_claim(tactful_store::RIGHTS_TOPIC, 10, T0 + 5_000, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    let gave_up =
        DeliveryOutcome::Failed { status_code: None, error: "connection refused".into(), retry_at: None };
    assert_eq!(
        store.record_delivery(&again[0].id, "req_r", "ads", gave_up, T0 + 5_001).await.unwrap(),
        Some(RequestStatus::PartiallyCompleted)
    );
    // A late duplicate (a worker whose lease ran out) changes nothing.
    assert_eq!(store.record_delivery(&again[0].id, "req_r", "ads", ack, T0 + 6_000).await.unwrap(), None);
    let view = store.request("req_r").await.unwrap().unwrap();
    assert_eq!(view.record.status, RequestStatus::PartiallyCompleted);
    let states: Vec<(&str, DeliveryStatus, u32)> =
        view.deliveries.iter().map(|d| (d.destination.as_str(), d.status, d.attempts)).collect();
    assert_eq!(states, [("ads", DeliveryStatus::GaveUp, 2), ("crm", DeliveryStatus::Acknowledged, 1)]);
    let attempts = store.delivery_attempts("req_r", "ads").await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), [Some(503), None]);
    assert!(
        store.outbox_claim(tactful_store::RIGHTS_TOPIC, 10, T0 + 100_000, 60_000).await.unwrap().is_empty(),
        "nothing left to send"
    );

    // A request with nothing to deliver settles the moment it would wait.
    store.create_request(new_request("req_u", &ann, RequestKind::Unrestrict), Vec::new()).await.unwrap();
    store.update_request("req_u", moving(RequestStatus::Received, RequestStatus::Running)).await.unwrap();
    store
        .update_request("req_u", moving(RequestStatus::Running, RequestStatus::WaitingOnDestinations))
        .await
        .unwrap();
    assert_eq!(store.request("req_u").await.unwrap().unwrap().record.status, RequestStatus::Completed);
}

async fn shredding_makes_a_family_unreadable_unfindable_and_optionally_suppressed(backend: Backend) {
    ingest(
        &backend,
        vec![
            event("1").anonymous("dev-1").at(T0),
            event("2")
                .identify(json!({"email": "ann@example.com", "first_name": "Ann"}))
                .user("ann")
                .anonymous("dev-1")
                .at(T0 + 1),
            event("3").user("ann").at(T0 + 2),
        ],
    )
    .await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    let members = store.subject_data(&ann).await.unwrap().unwrap().keys.len();
    let held = LegalHold {
        id: "lh_1".into(),
        subject: ann.clone(),
        source: "web".into(),
        timestamp: T0,
        categories: vec!["user.behavior.purchase_history".into()],
        retain_until: T0 + 1_000,
        sealed: backend.vault.legal_hold_key().seal("legal_hold", &[b"lh_1"], b"{\"order_id\":\"FH-1\"}"),
    };
    store.hold(vec![held.clone(), held.clone()]).await.unwrap();

    // Events received after the holds were made must be looked at first.
    let plan = |held_through: i64, suppress: bool| ShredPlan {
        request: "req_e".into(),
        held_through,
        suppress,
        deliveries: Vec::new(),
        audit: Vec::new(),
    };
    assert!(matches!(store.shred(&ann, plan(0, true), T0).await.unwrap(), ShredOutcome::NewEvents { .. }));
    // An export being downloaded holds the erasure back.
    let mut export = new_request("req_x", &ann, RequestKind::Export);
    export.lease_until = Some(T0 + 60_000);
    store.create_request(export, Vec::new()).await.unwrap();
    assert_eq!(store.shred(&ann, plan(i64::MAX, true), T0).await.unwrap(), ShredOutcome::ExportInFlight);
    let release = RequestUpdate { lease_until: Some(None), ..RequestUpdate::default() };
    store.update_request("req_x", release).await.unwrap();

    let outcome = store.shred(&ann, plan(i64::MAX, true), T0).await.unwrap();
    let ShredOutcome::Shredded { members: shredded, identifiers, suppressed } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(shredded.len(), members);
    assert_eq!((identifiers, suppressed), (3, 3), "user_id, anonymous_id and email");
    assert_eq!(store.shred(&ann, plan(i64::MAX, true), T0).await.unwrap(), ShredOutcome::AlreadyErased);
    // The erasure's audit entry is in a log that stays whole and keeps growing.
    store.audit_append(vec![AuditEvent::KeyRevoked { key: "after".into() }], T0).await.unwrap();
    let report = tactful_store::audit::verify(store.as_ref(), &[backend.vault.public_key()], Vec::new())
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    let kinds: Vec<String> = store
        .audit_entries(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.text).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds.iter().filter(|kind| *kind == "erased").count(), 1, "{kinds:?}");

    // Unfindable and unreadable; what the law requires stays, readable only with the legal-hold key.
    assert_eq!(subject_of(&backend, "email", "ann@example.com").await, None);
    assert_eq!(subject_of(&backend, "user_id", "ann").await, None);
    assert!(store.subject_data(&ann).await.unwrap().is_none());
    assert!(store.subject_state(&ann).await.unwrap().is_none());
    assert!(store.receipts(&ann).await.unwrap().is_empty());
    let holds = store.legal_holds(&ann).await.unwrap();
    assert_eq!(holds, [held]);
    assert!(backend.vault.legal_hold_key().open("legal_hold", &[b"lh_1"], &holds[0].sealed).is_ok());
    assert_eq!(store.requests(Some(&ann), 10).await.unwrap().len(), 1, "requests outlive the erasure");

    // Suppressed: the same person's events are dropped at the door.
    assert_eq!(ingest(&backend, vec![event("4").user("ann")]).await, [IngestOutcome::Suppressed]);
    assert_eq!(subject_of(&backend, "user_id", "ann").await, None);
    // Lifted: they come back as someone new, with no link to the erased record.
    let blind = |kind: &str, value: &str| backend.vault.blind(kind, value);
    assert_eq!(
        store
            .unsuppress(
                vec![blind("user_id", "ann"), blind("email", "ann@example.com"), blind("user_id", "nobody")],
                Vec::new()
            )
            .await
            .unwrap(),
        2
    );
    ingest(&backend, vec![event("5").user("ann")]).await;
    let again = subject_of(&backend, "user_id", "ann").await.unwrap();
    assert_ne!(again, ann);
    assert_eq!(store.subject_data(&again).await.unwrap().unwrap().events.len(), 1);
    let added = store
        .suppress(
            vec![Suppression { blind: blind("email", "zed@example.com"), kind: "email".into() }],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(added, 1);

    // The rows go in the background.
    let before = store.stats().await.unwrap().events;
    let purged = store.purge_erased(2).await.unwrap();
    assert_eq!(purged.events, 2, "bounded batches");
    let rest = store.purge_erased(100).await.unwrap();
    assert_eq!(rest.events, 1);
    assert_eq!(rest.subjects as usize, members);
    assert_eq!(store.stats().await.unwrap().events, before - 3);
}

async fn retention_trims_then_deletes_what_outlived_its_declared_retention(backend: Backend) {
    let catalog = backend.policy.catalog().clone();
    let retention = |path: &str| catalog.property_by_path(path).unwrap().retention.as_millis();
    let (ip, product) = (retention("context.ip"), retention("properties.product_id"));
    let mut viewed = event("1").user("ann").at(T0);
    viewed.message["context"] = json!({"ip": "192.0.2.7"});
    ingest(&backend, vec![viewed, event("2").identify(json!({"first_name": "Ann"})).user("ann").at(T0)])
        .await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    store
        .hold(vec![LegalHold {
            id: "lh_1".into(),
            subject: ann.clone(),
            source: "web".into(),
            timestamp: T0,
            categories: Vec::new(),
            retain_until: T0 + ip,
            sealed: vec![1],
        }])
        .await
        .unwrap();

    assert!(
        store.apply_retention(&catalog, T0 + ip - 1, 100).await.unwrap().is_empty(),
        "nothing is due yet"
    );
    let report = store.apply_retention(&catalog, T0 + ip, 100).await.unwrap();
    assert_eq!((report.events_trimmed, report.legal_holds_deleted), (1, 1), "{report:?}");
    let opened = open_subject(&backend, &ann).await;
    let view = opened.events.iter().find(|record| record.get("properties").is_some()).unwrap();
    assert_eq!(view["properties"]["product_id"], "p1");
    assert!(view.get("context").is_none(), "the IP went at its retention: {view}");

    let first_name = retention("traits.first_name");
    let report = store.apply_retention(&catalog, T0 + product.max(first_name), 100).await.unwrap();
    assert_eq!(report.events_deleted, 2, "{report:?}");
    assert_eq!(report.profile_values_deleted, 1);
    assert!(store.subject_data(&ann).await.unwrap().unwrap().events.is_empty());
    let kinds: Vec<String> = store
        .audit_entries(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.text).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["retention", "retention"], "each pass that deleted something is audited");
}

async fn rectification_restriction_and_paged_events(backend: Backend) {
    ingest(&backend, (0..5).map(|index| event(&format!("e{index}")).user("ann").at(T0 + index)).collect())
        .await;
    ingest(&backend, vec![event("i").identify(json!({"first_name": "Anne"})).user("ann").at(T0)]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    store
        .set_profile_value(&ann, "traits.first_name", b"\"Ann\"".to_vec(), T0 + 10, Vec::new())
        .await
        .unwrap();
    assert_eq!(first_name(&backend, &ann).await, "Ann");
    store
        .set_restricted(&ann, true, vec![AuditEvent::KeyRevoked { key: "restricted".into() }])
        .await
        .unwrap();
    store.audit_append(vec![AuditEvent::KeyRevoked { key: "after".into() }], T0).await.unwrap();
    assert_eq!(store.audit_entries(0, 10).await.unwrap().len(), 2, "positions stay gapless");
    assert!(store.subject_state(&ann).await.unwrap().unwrap().restricted);
    store.set_restricted(&ann, false, Vec::new()).await.unwrap();
    assert!(!store.subject_state(&ann).await.unwrap().unwrap().restricted);

    ingest(&backend, vec![event("other").user("bob")]).await;
    let first = store.subject_ids(None, 1).await.unwrap();
    let rest = store.subject_ids(first.last().cloned(), 10).await.unwrap();
    assert_eq!(first.len() + rest.len(), 2, "paged, each subject once");
    assert!(first.iter().chain(&rest).any(|id| *id == ann));

    let summary = store.subject_summary(&ann).await.unwrap().unwrap();
    assert!(summary.events.is_empty() && !summary.profile.is_empty() && !summary.keys.is_empty());
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.events_page(&ann, after.clone(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.timestamp, last.source.clone(), last.dedupe));
        seen.extend(page.iter().map(|event| event.timestamp));
    }
    assert_eq!(seen.len(), 6);
    assert!(seen.windows(2).all(|pair| pair[0] <= pair[1]), "in time order: {seen:?}");
}
