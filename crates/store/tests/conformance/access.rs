//! Who did what and who may come in: the audit log (gapless, signed, verifiable across instances),
//! API keys stored hashed, and the preference center's one-time sign-in codes.

use serde_json::Value;
use tactful_domain::audit::{AuditEvent, CHECKPOINT_CONTEXT, Checkpoint, Verifier};
use tactful_store::{ApiKeyRecord, SignInCode};

use crate::{Backend, T0};

conformance!(
    the_audit_log_is_gapless_signed_and_verifiable_across_instances,
    api_keys_are_stored_hashed_and_revocable,
    sign_in_codes_work_once_within_their_time_and_tries,
);

/// Appends from two instances at once stay gapless, and the signed checkpoints verify.
async fn the_audit_log_is_gapless_signed_and_verifiable_across_instances(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let key = |index: usize| AuditEvent::KeyRevoked { key: format!("key_{index}") };
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = if writer % 2 == 0 { backend.store.clone() } else { second.clone() };
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for round in 0..5 {
                positions.extend(
                    store
                        .audit_append(vec![key(writer * 10 + round), key(writer * 10 + round + 100)], T0)
                        .await
                        .unwrap(),
                );
            }
            positions
        }));
    }
    let mut positions = Vec::new();
    for task in tasks {
        positions.extend(task.await.unwrap());
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=80).collect::<Vec<u64>>(), "positions are gapless and unique");
    let first = backend.store.audit_checkpoint(T0).await.unwrap().unwrap();
    assert_eq!(first.size, 80);
    assert_eq!(
        backend.store.audit_checkpoint(T0 + 1).await.unwrap().unwrap(),
        first,
        "an unchanged head is not signed again"
    );
    backend.store.audit_append(vec![key(999)], T0).await.unwrap();
    let second_checkpoint = second.audit_checkpoint(T0 + 2).await.unwrap().unwrap();
    assert_eq!(second_checkpoint.size, 81);
    let checkpoints = backend.store.audit_checkpoints().await.unwrap();
    assert_eq!(checkpoints.len(), 2);
    let public = tactful_vault::PublicKey(backend.vault.public_key().0);
    let mut verified = Vec::new();
    for checkpoint in &checkpoints {
        let root = checkpoint.root_hash().unwrap();
        use base64::Engine as _;
        let signature: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(&checkpoint.signature)
            .unwrap()
            .try_into()
            .unwrap();
        assert!(public.verify(
            CHECKPOINT_CONTEXT,
            &Checkpoint::message(checkpoint.size, &root, checkpoint.at),
            &signature
        ));
        verified.push((checkpoint.size, root, format!("stored {}", checkpoint.size)));
    }
    let mut verifier = Verifier::new(verified);
    for entry in backend.store.audit_entries(0, 1_000).await.unwrap() {
        verifier.entry(entry.seq, &entry.text, &entry.leaf);
    }
    let report = verifier.finish();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 81);
    assert_eq!(backend.store.audit_entries(80, 10).await.unwrap().len(), 1);
}

async fn api_keys_are_stored_hashed_and_revocable(backend: Backend) {
    let record = ApiKeyRecord {
        id: "key_test".into(),
        hash: [7u8; 32],
        name: "email tool".into(),
        role: "marketing".into(),
        created_at: T0,
        expires_at: Some(T0 + 1_000),
        revoked_at: None,
    };
    let created = AuditEvent::KeyCreated {
        key: "key_test".into(),
        name: "email tool".into(),
        role: "marketing".into(),
        expires_at: Some(T0 + 1_000),
    };
    backend.store.create_api_key(record.clone(), created).await.unwrap();
    assert_eq!(backend.store.api_key([7u8; 32]).await.unwrap(), Some(record.clone()));
    assert_eq!(backend.store.api_key([8u8; 32]).await.unwrap(), None);
    assert_eq!(backend.store.api_keys().await.unwrap(), [record]);
    let revoked = AuditEvent::KeyRevoked { key: "key_test".into() };
    assert!(backend.store.revoke_api_key("key_test", T0 + 5, revoked.clone()).await.unwrap());
    assert!(
        !backend.store.revoke_api_key("key_test", T0 + 6, revoked.clone()).await.unwrap(),
        "already revoked"
    );
    assert!(!backend.store.revoke_api_key("key_nope", T0 + 6, revoked).await.unwrap());
    assert_eq!(backend.store.api_key([7u8; 32]).await.unwrap().unwrap().revoked_at, Some(T0 + 5));
    let kinds: Vec<String> = backend
        .store
        .audit_entries(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.text).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["key_created", "key_revoked"]);
}

async fn sign_in_codes_work_once_within_their_time_and_tries(backend: Backend) {
    use tactful_store::CodeOutcome;
    let store = &backend.store;
    let code = |id: &str, subject: Option<&str>, hash: u8| SignInCode {
        id: id.into(),
        subject: subject.map(str::to_owned),
        hash: [hash; 32],
        created_at: T0,
        expires_at: T0 + 900_000,
        message: format!("sealed {id}").into_bytes(),
    };
    store.create_sign_in_code(code("si_right", Some("sub_ada"), 7)).await.unwrap();
    store.create_sign_in_code(code("si_tries", Some("sub_ada"), 7)).await.unwrap();
    store.create_sign_in_code(code("si_unknown", None, 7)).await.unwrap();
    store.create_sign_in_code(code("si_late", Some("sub_ada"), 7)).await.unwrap();

    // Wrong codes count down; the right one works once.
    assert_eq!(
        store.try_sign_in_code("si_right", [1; 32], T0, 5).await.unwrap(),
        CodeOutcome::Wrong { tries_left: 4 }
    );
    assert_eq!(
        store.try_sign_in_code("si_right", [7; 32], T0, 5).await.unwrap(),
        CodeOutcome::Accepted("sub_ada".into())
    );
    assert_eq!(
        store.try_sign_in_code("si_right", [7; 32], T0, 5).await.unwrap(),
        CodeOutcome::Refused,
        "used up"
    );
    // Out of tries, the right code no longer works.
    for left in (0..5).rev() {
        assert_eq!(
            store.try_sign_in_code("si_tries", [2; 32], T0, 5).await.unwrap(),
            CodeOutcome::Wrong { tries_left: left }
        );
    }
    assert_eq!(store.try_sign_in_code("si_tries", [7; 32], T0, 5).await.unwrap(), CodeOutcome::Refused);
    // A code for an unknown address never works, even "right", and answers like a wrong one.
    assert_eq!(
        store.try_sign_in_code("si_unknown", [7; 32], T0, 5).await.unwrap(),
        CodeOutcome::Wrong { tries_left: 4 }
    );
    // Past its time, or never made: refused.
    assert_eq!(
        store.try_sign_in_code("si_late", [7; 32], T0 + 900_000, 5).await.unwrap(),
        CodeOutcome::Refused
    );
    assert_eq!(store.try_sign_in_code("si_none", [7; 32], T0, 5).await.unwrap(), CodeOutcome::Refused);

    // Tries from many callers at once never exceed the limit, and only one right try wins.
    store.create_sign_in_code(code("si_race", Some("sub_ada"), 7)).await.unwrap();
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..12 {
        let store = store.clone();
        let hash = if i == 11 { [7; 32] } else { [3; 32] };
        tries.spawn(async move { store.try_sign_in_code("si_race", hash, T0, 5).await.unwrap() });
    }
    let outcomes = tries.join_all().await;
    let wrong = outcomes.iter().filter(|o| matches!(o, CodeOutcome::Wrong { .. })).count();
    let accepted = outcomes.iter().filter(|o| matches!(o, CodeOutcome::Accepted(_))).count();
    assert!(wrong + accepted <= 5, "{outcomes:?}");
    assert!(accepted <= 1);

    // Codes long expired are forgotten when a new one is made.
    store
        .create_sign_in_code(SignInCode {
            created_at: T0 + 3 * 86_400_000,
            expires_at: T0 + 3 * 86_400_000 + 900_000,
            ..code("si_new", None, 1)
        })
        .await
        .unwrap();
    assert_eq!(store.try_sign_in_code("si_late", [7; 32], T0, 5).await.unwrap(), CodeOutcome::Refused);

    // Each code's message went to the outbox with it, known address or not; sent, it is gone.
    let messages =
        store.outbox_claim(tactful_store::SIGN_IN_TOPIC, 100, T0 + 4 * 86_400_000, 60_000).await.unwrap();
    let mut payloads: Vec<String> =
        messages.iter().map(|message| String::from_utf8(message.payload.clone()).unwrap()).collect();
    payloads.sort();
    assert_eq!(
        payloads,
        [
            "sealed si_late",
            "sealed si_new",
            "sealed si_race",
            "sealed si_right",
            "sealed si_tries",
            "sealed si_unknown"
        ]
    );
    for message in &messages {
        store.outbox_complete(&message.id).await.unwrap();
    }
    assert!(
        store
            .outbox_claim(tactful_store::SIGN_IN_TOPIC, 100, T0 + 5 * 86_400_000, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
}
