//! Links and sessions recorded so they can be ended on every instance: a link opens once (also when
//! two instances open it at once), ending a person's sessions covers their whole family, erasure
//! removes them, and what one instance ends another refuses.

use tactful_domain::audit::AuditEvent;
use tactful_store::{WebSession, WebSessionKind};

use crate::{Backend, T0, event, ingest, subject_of};

conformance!(
    a_link_opens_once_even_from_two_instances_at_once,
    ending_a_persons_sessions_covers_their_whole_family,
    erasure_removes_a_persons_sessions,
    what_one_instance_ends_another_refuses,
);

const HOUR: i64 = 3_600_000;

fn session(id: &str, kind: WebSessionKind, holder: &str) -> WebSession {
    WebSession { id: id.into(), kind, holder: holder.into(), created_at: T0, expires_at: T0 + HOUR }
}

fn signed_in(subject: &str) -> Vec<AuditEvent> {
    vec![AuditEvent::PreferenceCenter { subject: subject.into(), action: "signed_in".into(), actor: None }]
}

async fn a_link_opens_once_even_from_two_instances_at_once(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let store = &backend.store;
    for round in 0..10 {
        let link = format!("link{round}");
        store.create_web_session(session(&link, WebSessionKind::Link, "sub_ada")).await.unwrap();
        assert_eq!(
            second.web_session_holder(&link, WebSessionKind::Link, T0).await.unwrap().as_deref(),
            Some("sub_ada"),
            "unopened, it stands for its person"
        );
        assert_eq!(
            store.web_session_holder(&link, WebSessionKind::Me, T0).await.unwrap(),
            None,
            "a link is no session"
        );
        let (first, other) = tokio::join!(
            store.open_web_link(
                &link,
                session(&format!("a{round}"), WebSessionKind::Me, "sub_ada"),
                signed_in("p"),
                T0 + 1
            ),
            second.open_web_link(
                &link,
                session(&format!("b{round}"), WebSessionKind::Me, "sub_ada"),
                signed_in("p"),
                T0 + 1
            ),
        );
        let (first, other) = (first.unwrap(), other.unwrap());
        assert!(first ^ other, "round {round}: exactly one instance opens the link ({first}, {other})");
        let (won, lost) = if first {
            (format!("a{round}"), format!("b{round}"))
        } else {
            (format!("b{round}"), format!("a{round}"))
        };
        assert_eq!(
            store.web_session_holder(&won, WebSessionKind::Me, T0 + 2).await.unwrap().as_deref(),
            Some("sub_ada")
        );
        assert_eq!(
            store.web_session_holder(&lost, WebSessionKind::Me, T0 + 2).await.unwrap(),
            None,
            "the loser made no session"
        );
        assert_eq!(
            store.web_session_holder(&link, WebSessionKind::Link, T0 + 2).await.unwrap(),
            None,
            "opened: spent"
        );
        let again = session(&format!("c{round}"), WebSessionKind::Me, "sub_ada");
        assert!(
            !store.open_web_link(&link, again, signed_in("p"), T0 + 3).await.unwrap(),
            "a link opens once"
        );
    }
    // An expired link never opens.
    store.create_web_session(session("old", WebSessionKind::Link, "sub_ada")).await.unwrap();
    assert!(
        !store
            .open_web_link("old", session("d", WebSessionKind::Me, "sub_ada"), signed_in("p"), T0 + HOUR)
            .await
            .unwrap()
    );
    assert!(
        !store
            .open_web_link("unknown", session("e", WebSessionKind::Me, "sub_ada"), signed_in("p"), T0)
            .await
            .unwrap()
    );
    // Expired rows are forgotten; live ones stay.
    store
        .create_web_session(WebSession {
            expires_at: T0 + 10 * HOUR,
            ..session("live", WebSessionKind::Me, "sub_ada")
        })
        .await
        .unwrap();
    assert!(store.purge_web_sessions(T0 + 2 * HOUR, 1_000).await.unwrap() > 0);
    assert_eq!(store.purge_web_sessions(T0 + 2 * HOUR, 1_000).await.unwrap(), 0);
    assert!(store.web_session_holder("live", WebSessionKind::Me, T0 + 2 * HOUR).await.unwrap().is_some());
}

async fn ending_a_persons_sessions_covers_their_whole_family(backend: Backend) {
    // Bob and a device known before he signed in: two subjects, then one family.
    ingest(&backend, vec![event("b1").user("bob"), event("d1").anonymous("device")]).await;
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    let device = subject_of(&backend, "anonymous_id", "device").await.unwrap();
    assert_ne!(bob, device);
    let store = &backend.store;
    store.create_web_session(session("device-session", WebSessionKind::Me, &device)).await.unwrap();
    ingest(&backend, vec![event("b2").user("bob").anonymous("device")]).await;
    let root = store.subject_state(&bob).await.unwrap().unwrap().subject;
    assert_eq!(store.subject_state(&device).await.unwrap().unwrap().subject, root, "one family now");
    store.create_web_session(session("bob-session", WebSessionKind::Me, &bob)).await.unwrap();
    store.create_web_session(session("bob-link", WebSessionKind::Link, &bob)).await.unwrap();
    store.create_web_session(session("ann-session", WebSessionKind::Me, "sub_ann")).await.unwrap();
    store.create_web_session(session("console", WebSessionKind::Console, "key_x")).await.unwrap();
    let audit = vec![AuditEvent::PreferenceCenter {
        subject: "pseudonym".into(),
        action: "signed_out_everywhere".into(),
        actor: Some("key_x".into()),
    }];
    assert_eq!(store.end_web_sessions(&device, audit, T0 + 1).await.unwrap(), 3);
    assert_eq!(store.audit_for_subject("pseudonym", 10).await.unwrap().len(), 1, "audited");
    for (id, kind) in [
        ("device-session", WebSessionKind::Me),
        ("bob-session", WebSessionKind::Me),
        ("bob-link", WebSessionKind::Link),
    ] {
        assert_eq!(store.web_session_holder(id, kind, T0 + 2).await.unwrap(), None, "{id} ended");
    }
    assert!(
        store.web_session_holder("ann-session", WebSessionKind::Me, T0 + 2).await.unwrap().is_some(),
        "others stay"
    );
    assert!(store.web_session_holder("console", WebSessionKind::Console, T0 + 2).await.unwrap().is_some());
}

async fn erasure_removes_a_persons_sessions(backend: Backend) {
    ingest(&backend, vec![event("e1").user("eve"), event("e2").user("ann")]).await;
    let eve = subject_of(&backend, "user_id", "eve").await.unwrap();
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    store.create_web_session(session("eve-session", WebSessionKind::Me, &eve)).await.unwrap();
    store.create_web_session(session("eve-link", WebSessionKind::Link, &eve)).await.unwrap();
    store.create_web_session(session("ann-session", WebSessionKind::Me, &ann)).await.unwrap();
    crate::analytics::erase(store.as_ref(), &eve).await;
    assert_eq!(store.web_session_holder("eve-session", WebSessionKind::Me, T0).await.unwrap(), None);
    assert_eq!(store.web_session_holder("eve-link", WebSessionKind::Link, T0).await.unwrap(), None);
    // Gone, not only ended: nothing is left to purge, and nothing of theirs to end.
    assert_eq!(store.end_web_sessions(&eve, Vec::new(), T0).await.unwrap(), 0);
    assert!(store.web_session_holder("ann-session", WebSessionKind::Me, T0).await.unwrap().is_some());
    assert_eq!(store.purge_web_sessions(T0 + 2 * HOUR, 1_000).await.unwrap(), 1, "only ann's is left");
}

async fn what_one_instance_ends_another_refuses(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let store = &backend.store;
    store.create_web_session(session("me", WebSessionKind::Me, "sub_ada")).await.unwrap();
    store.create_web_session(session("console", WebSessionKind::Console, "key_x")).await.unwrap();
    assert!(second.web_session_holder("me", WebSessionKind::Me, T0).await.unwrap().is_some());
    assert!(second.end_web_session("me", T0 + 1).await.unwrap());
    assert!(!second.end_web_session("me", T0 + 2).await.unwrap(), "ended once");
    assert_eq!(store.web_session_holder("me", WebSessionKind::Me, T0 + 2).await.unwrap(), None);
    assert!(store.end_web_session("console", T0 + 1).await.unwrap());
    assert_eq!(second.web_session_holder("console", WebSessionKind::Console, T0 + 2).await.unwrap(), None);
    assert_eq!(
        store.web_session_holder("console", WebSessionKind::Me, T0).await.unwrap(),
        None,
        "kinds apart"
    );
}
