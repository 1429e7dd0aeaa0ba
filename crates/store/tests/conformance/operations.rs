//! Running the store: outbox claims and periodic jobs shared by instances, master-key rotation, and
//! schema versions (a newer tactful migrates an older database; an older one refuses a newer).

use std::collections::HashSet;

use serde_json::json;
use tactful_store::{StoreError, StoreTesting};
use tactful_vault::{MasterKey, MasterKeys};

use crate::{Backend, T0, event, first_name, ingest, options, subject_of};

conformance!(
    outbox_claims_never_overlap_and_leases_expire,
    periodic_jobs_run_once_per_period_across_instances,
    rotating_the_master_key_keeps_everything_readable,
);

async fn outbox_claims_never_overlap_and_leases_expire(backend: Backend) {
    let store = &backend.store;
    for index in 0..40 {
        store.outbox_enqueue("erase", format!("message {index}").into_bytes(), T0 + index).await.unwrap();
    }
    store.outbox_enqueue("consent", b"other topic".to_vec(), T0).await.unwrap();
    // How far each topic lags: the oldest message waiting in it.
    assert_eq!(store.outbox_oldest().await.unwrap(), [("consent".to_owned(), T0), ("erase".to_owned(), T0)]);
    // Two instances claim at once, repeatedly: every message is claimed exactly once.
    let second = backend.reopen().await.unwrap().store;
    let claimers = [store.clone(), second].map(|claimer| {
        tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let batch = claimer.outbox_claim("erase", 3, T0 + 1_000, 60_000).await.unwrap();
                if batch.is_empty() {
                    break claimed;
                }
                claimed.extend(batch.into_iter().map(|message| message.id));
            }
        })
    });
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (40, 40), "each message claimed once");
    // Leased messages are not claimed again until the lease ends; then they are, counted.
    assert!(store.outbox_claim("erase", 100, T0 + 30_000, 60_000).await.unwrap().is_empty());
    let again = store.outbox_claim("erase", 100, T0 + 61_000, 60_000).await.unwrap();
    assert_eq!(again.len(), 40);
    assert!(again.iter().all(|message| message.attempts == 2));
    // Completed messages are gone; retried ones come back when due.
    store.outbox_complete(&again[0].id).await.unwrap();
    store.outbox_retry(&again[1].id, T0 + 500_000, "HTTP 503").await.unwrap();
    let later = store.outbox_claim("erase", 100, T0 + 200_000, 60_000).await.unwrap();
    assert_eq!(later.len(), 38, "not the completed one, not the one retried later");
    for message in &later {
        store.outbox_complete(&message.id).await.unwrap();
    }
    let retried = store.outbox_claim("erase", 100, T0 + 500_000, 60_000).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].id, again[1].id);
    assert_eq!(retried[0].payload, again[1].payload);
    store.outbox_complete(&retried[0].id).await.unwrap();
    assert_eq!(
        store.outbox_oldest().await.unwrap(),
        [("consent".to_owned(), T0)],
        "nothing waits to be erased"
    );
    // Topics are separate queues.
    assert_eq!(store.outbox_claim("consent", 10, T0, 1_000).await.unwrap().len(), 1);
}

async fn periodic_jobs_run_once_per_period_across_instances(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let (first, second) = (backend.store.clone(), second);
    let hour = 3_600_000;
    // Both instances find the job due at once: exactly one runs it.
    let (a, b) = tokio::join!(
        first.job_claim("retention", "a", T0, hour, 60_000),
        second.job_claim("retention", "b", T0, hour, 60_000)
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one instance runs the job");
    // Not again within the period, even after the run released its lease.
    first.job_release("retention", "a").await.unwrap();
    second.job_release("retention", "b").await.unwrap();
    assert!(!first.job_claim("retention", "a", T0 + hour / 2, hour, 60_000).await.unwrap());
    assert!(!second.job_claim("retention", "b", T0 + hour / 2, hour, 60_000).await.unwrap());
    // Due again after the period.
    assert!(second.job_claim("retention", "b", T0 + hour, hour, 60_000).await.unwrap());
    // A run that outlasts its period is not overlapped: its lease holds the job until it ends (or
    // until the lease runs out, if the instance died).
    let minute = 60_000;
    assert!(first.job_claim("slow", "a", T0, minute, 10 * minute).await.unwrap());
    assert!(!second.job_claim("slow", "b", T0 + 2 * minute, minute, 10 * minute).await.unwrap());
    assert!(second.job_claim("slow", "b", T0 + 10 * minute, minute, 10 * minute).await.unwrap());
    // Jobs are independent.
    assert!(first.job_claim("wal-truncate", "a", T0, hour, 60_000).await.unwrap());
}

/// A rotation as operators run it: instances get the new key with the old one as previous, the
/// rewrap runs in pages while they keep writing, then the old key goes.
async fn rotating_the_master_key_keeps_everything_readable(backend: Backend) {
    ingest(
        &backend,
        vec![event("1").user("ada").email("ada@example.com").identify(json!({"first_name": "Ada"}))],
    )
    .await;
    let new_hex = MasterKey::generate().to_hex().to_string();
    let keys = |current: &str, previous: Option<&str>| MasterKeys {
        current: MasterKey::from_text(current).unwrap(),
        previous: previous.into_iter().map(|text| MasterKey::from_text(text).unwrap()).collect(),
    };
    let during =
        tactful_store::open_with(&backend.url, keys(&new_hex, Some(&backend.master_hex)), &options())
            .await
            .unwrap();
    let during = Backend {
        store: during.store,
        vault: during.vault,
        policy: backend.policy.clone(),
        url: backend.url.clone(),
        master_hex: new_hex.clone(),
        _dir: None,
    };
    ingest(&during, vec![event("2").user("bea").identify(json!({"first_name": "Bea"}))]).await;
    let ada = subject_of(&during, "user_id", "ada").await.unwrap();
    assert_eq!(first_name(&during, &ada).await, json!("Ada"), "old keys still open during the rotation");

    let (mut cursor, mut rewrapped, mut pages) = (None, 0, 0);
    loop {
        let batch = during.store.rewrap_keys(cursor, 1).await.unwrap();
        rewrapped += batch.rewrapped;
        pages += 1;
        cursor = batch.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(rewrapped, 1, "only ada's key was under the old master key");
    assert!(pages >= 2, "the rotation pages through subjects");

    let after = tactful_store::open_with(&backend.url, keys(&new_hex, None), &options()).await.unwrap();
    let after = Backend {
        store: after.store,
        vault: after.vault,
        policy: backend.policy.clone(),
        url: backend.url.clone(),
        master_hex: new_hex,
        _dir: None,
    };
    let ada = subject_of(&after, "user_id", "ada").await.expect("blind indexes survive the rotation");
    assert_eq!(first_name(&after, &ada).await, json!("Ada"));
    let bea = subject_of(&after, "user_id", "bea").await.unwrap();
    assert_eq!(first_name(&after, &bea).await, json!("Bea"));
    match tactful_store::open_with(
        &backend.url,
        MasterKey::from_text(&backend.master_hex).unwrap(),
        &options(),
    )
    .await
    {
        Err(StoreError::Vault(tactful_vault::VaultError::WrongMasterKey { .. })) => {}
        Err(other) => panic!("expected WrongMasterKey, got {other}"),
        Ok(_) => panic!("the retired key must no longer open the database"),
    }
}

// ------------------------------------------------------------------------------------------------
// Schema versions: a newer tactful migrates an older database; an older tactful refuses a newer one.

#[tokio::test]
async fn sqlite_an_older_schema_is_migrated_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../src/sqlite/migrations/0001_foundation.sql")).unwrap();
        conn.execute_batch("PRAGMA user_version = 1; INSERT INTO subjects (id, wrapped_key, known, created_at) VALUES ('sub_old', x'00', 0, 0);").unwrap();
    }
    let url = format!("sqlite:{}", path.display());
    check_migrates_then_refuses(&url, async {
        rusqlite::Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    })
    .await;
}

#[tokio::test]
async fn postgres_an_older_schema_is_migrated_and_a_newer_one_refused() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE tactful_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
         INSERT INTO tactful_migrations VALUES (1, 0);",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(include_str!("../../src/postgres/migrations/0001_foundation.sql"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO subjects (id, wrapped_key, known, created_at) VALUES ('sub_old', '\\x00', FALSE, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    check_migrates_then_refuses(&url, async {
        sqlx::raw_sql("INSERT INTO tactful_migrations VALUES (99, 0)").execute(&pool).await.unwrap();
    })
    .await;
}

/// Opens `url` (at schema version 1, holding one subject), then runs `make_newer` and opens again.
async fn check_migrates_then_refuses(url: &str, make_newer: impl std::future::Future<Output = ()>) {
    let opened = tactful_store::open_with(url, MasterKey::generate(), &options())
        .await
        .expect("an older schema migrates");
    assert_eq!(opened.store.stats().await.unwrap().subjects, 1, "existing data survives the migration");
    opened.store.outbox_enqueue("t", Vec::new(), T0).await.expect("the newer tables exist");
    drop(opened);
    make_newer.await;
    match tactful_store::open_with(url, MasterKey::generate(), &options()).await {
        Err(error @ StoreError::SchemaTooNew { found: 99, .. }) => {
            assert!(error.to_string().contains("run a newer tactful"), "{error}");
        }
        Err(other) => panic!("expected SchemaTooNew, got {other}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}
