//! Tests of what only PostgreSQL has to get right: many instances writing at once. Each runs on a
//! fresh database when `TACTFUL_TEST_POSTGRES_URL` is set (see `crate::testing`).

use std::sync::Arc;
use std::time::Duration;

use tactful_domain::request::{RequestKind, RequestStatus};

use super::requests::SETTLED_AT_ONCE;
use super::{PostgresStore, next_counter_value};
use crate::shared::RIGHTS_TOPIC;
use crate::{
    DeliveryOutcome, DeliveryStore, NewDelivery, NewRequest, Options, RequestRecord, RequestStore,
    RequestUpdate, ShredOutcome, ShredPlan,
};

async fn store() -> Option<Arc<PostgresStore>> {
    let url = crate::testing::fresh_postgres_database().await?;
    let (store, _) =
        PostgresStore::open(&url, tactful_vault::MasterKey::generate(), &Options::default()).await.unwrap();
    Some(Arc::new(store))
}

async fn subject(store: &PostgresStore, id: &str) {
    sqlx::query("INSERT INTO subjects (id, wrapped_key, created_at) VALUES ($1, '\\x00'::bytea, 0)")
        .bind(id)
        .execute(&store.pool)
        .await
        .unwrap();
}

fn record(id: &str, subject: &str) -> RequestRecord {
    RequestRecord {
        id: id.into(),
        subject: Some(subject.into()),
        kind: RequestKind::Restrict,
        status: RequestStatus::Received,
        source: "api".into(),
        received_at: 1,
        due_at: 2,
        extension_reason: None,
        completed_at: None,
        details: serde_json::json!({}),
        sealed: None,
        steps: Vec::new(),
        verification: None,
        verification_attempts: 0,
        verification_expires: None,
        lease_until: None,
        updated_at: 1,
    }
}

fn moving(from: RequestStatus, to: RequestStatus) -> RequestUpdate {
    RequestUpdate { expect: Some(from), status: Some(to), ..RequestUpdate::default() }
}

/// Instances creating the same person's request at once: one is created, the others are told
/// its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_made_at_once_make_one() {
    let Some(store) = store().await else { return };
    subject(&store, "sub_a").await;
    let tasks: Vec<_> = (0..12)
        .map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                store.create_request(record(&format!("req_{index}"), "sub_a"), Vec::new()).await.unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let created = outcomes.iter().filter(|outcome| **outcome == NewRequest::Created).count();
    assert_eq!(created, 1, "{outcomes:?}");
    let open = store.requests(Some("sub_a"), 100).await.unwrap();
    assert_eq!(open.len(), 1);
    for outcome in outcomes {
        assert!(
            matches!(outcome, NewRequest::Created) || outcome == NewRequest::Duplicate(open[0].id.clone())
        );
    }
}

/// The last deliveries of a request acknowledged at the same moment (and the move to waiting on
/// them): exactly one of them settles the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_recorded_at_once_settle_their_request_once() {
    let Some(store) = store().await else { return };
    subject(&store, "sub_a").await;
    for round in 0..10 {
        let id = format!("req_{round}");
        let destinations = ["crm", "ads", "mail"];
        store.create_request(record(&id, "sub_a"), Vec::new()).await.unwrap();
        store.update_request(&id, moving(RequestStatus::Received, RequestStatus::Running)).await.unwrap();
        let deliveries = destinations
            .iter()
            .map(|destination| NewDelivery {
                request: id.clone(),
                destination: (*destination).into(),
                message: "restrict".into(),
                payload: vec![1],
            })
            .collect();
        store.enqueue_deliveries(deliveries, 1).await.unwrap();
        let messages = store.outbox_claim(RIGHTS_TOPIC, 10, 1, 60_000).await.unwrap();
        assert_eq!(messages.len(), destinations.len());
        let mut tasks = Vec::new();
        for (message, destination) in messages.iter().zip(destinations) {
            let (store, id, message) = (store.clone(), id.clone(), message.id.clone());
            tasks.push(tokio::spawn(async move {
                let ack = DeliveryOutcome::Acknowledged { status_code: 200 };
                store.record_delivery(&message, &id, destination, ack, 2).await.unwrap()
            }));
        }
        let waiting = {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let update = moving(RequestStatus::Running, RequestStatus::WaitingOnDestinations);
                store.update_request(&id, update).await.unwrap()
            })
        };
        let mut settled = Vec::new();
        for task in tasks {
            settled.extend(task.await.unwrap());
        }
        assert!(waiting.await.unwrap());
        let view = store.request(&id).await.unwrap().unwrap();
        assert_eq!(view.record.status, RequestStatus::Completed, "round {round}: {:?}", view.history);
        assert!(settled.len() <= 1, "{settled:?}");
        let lines = view.history.iter().filter(|line| line.status == RequestStatus::Completed).count();
        assert!(lines <= 2, "settled once: {:?}", view.history);
        // Settled by the store or by a delivery, never both.
        assert_eq!(
            settled.len() + usize::from(view.history.iter().any(|line| line.note == SETTLED_AT_ONCE)),
            1,
            "{:?}",
            view.history
        );
    }
}

/// An erasure waits for an ingestion batch of the family still in flight, then sees its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erasure_waits_for_a_batch_in_flight() {
    let Some(store) = store().await else { return };
    subject(&store, "sub_a").await;
    // What ingestion does: share-lock the root, write an event, commit later.
    let mut batch = store.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM subjects WHERE id = 'sub_a' FOR SHARE").execute(&mut *batch).await.unwrap();
    sqlx::query(
        "INSERT INTO events (source, dedupe, subject_id, type, timestamp, received_at, sealed)
         VALUES ('web', '\\x00000000000000000000000000000000'::bytea, 'sub_a', 'track', 0, 500, '\\x00'::bytea)",
    )
    .execute(&mut *batch)
    .await
    .unwrap();
    let erasure = {
        let store = store.clone();
        tokio::spawn(async move {
            let plan = ShredPlan { request: "req_e".into(), held_through: 100, ..ShredPlan::default() };
            store.shred("sub_a", plan, 1_000).await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!erasure.is_finished(), "the erasure waits for the batch");
    batch.commit().await.unwrap();
    assert_eq!(erasure.await.unwrap(), ShredOutcome::NewEvents { received_through: 500 });
    let plan = ShredPlan { request: "req_e".into(), held_through: 500, ..ShredPlan::default() };
    assert!(matches!(store.shred("sub_a", plan, 1_000).await.unwrap(), ShredOutcome::Shredded { .. }));
}

/// Appenders on several connections, a third of which roll back: the committed values are
/// exactly 1..=n, with no gap where a rollback was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_stay_gapless_when_transactions_roll_back() {
    let Some(url) = crate::testing::fresh_postgres_database().await else { return };
    let (store, _) =
        PostgresStore::open(&url, tactful_vault::MasterKey::generate(), &Options::default()).await.unwrap();
    let mut tasks = Vec::new();
    for index in 0..24 {
        let pool = store.pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let value = next_counter_value(&mut tx, "audit").await.unwrap();
            if index % 3 == 0 {
                tx.rollback().await.unwrap();
                None
            } else {
                tx.commit().await.unwrap();
                Some(value)
            }
        }));
    }
    let mut committed = Vec::new();
    for task in tasks {
        committed.extend(task.await.unwrap());
    }
    committed.sort_unstable();
    assert_eq!(committed, (1..=16).collect::<Vec<i64>>());
}

/// Instances started together on an empty database all come up, and the schema is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_on_an_empty_database_all_come_up() {
    for _ in 0..3 {
        let Some(url) = crate::testing::fresh_postgres_database().await else { return };
        let master = tactful_vault::MasterKey::generate().to_hex().to_string();
        let starts = (0..4).map(|_| {
            let (url, master) = (url.clone(), master.clone());
            tokio::spawn(async move {
                let key = tactful_vault::MasterKey::from_text(&master).unwrap();
                PostgresStore::open(&url, key, &Options::default()).await.map(|_| ())
            })
        });
        for started in futures_join(starts).await {
            started.expect("no panic").expect("every instance starts");
        }
        let (store, _) = PostgresStore::open(
            &url,
            tactful_vault::MasterKey::from_text(&master).unwrap(),
            &Options::default(),
        )
        .await
        .unwrap();
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM tactful_migrations ORDER BY version")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(applied, (1..=i64::try_from(super::MIGRATIONS.len()).unwrap()).collect::<Vec<_>>());
    }
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut results = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        results.push(handle.await);
    }
    results
}

/// A database that refuses connections is unavailable (503, retry later), not an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_refusing_connections_is_unavailable() {
    let Some(url) = crate::testing::fresh_postgres_database().await else { return };
    let options = Options { pool_size: 1, connect_for: Duration::from_secs(1) };
    let (store, _) = PostgresStore::open(&url, tactful_vault::MasterKey::generate(), &options).await.unwrap();
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let admin = std::env::var("TACTFUL_TEST_POSTGRES_URL").unwrap();
    let admin = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();
    let answer = crate::OperationsStore::ping(&store).await;
    assert!(matches!(answer, Err(crate::StoreError::Unavailable(_))), "{answer:?}");
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")))
        .execute(&admin)
        .await
        .unwrap();
}
