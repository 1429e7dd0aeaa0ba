//! The audit log under load: concurrent appends share commits yet each lands once, in a valid chain,
//! durable when its call returns; one failing append in a batch costs the others nothing; and
//! verification, which checks pages in parallel, finds a tampered entry on any page.

use std::collections::HashMap;

use tactful_domain::audit::{AuditEvent, Problem};
use tactful_store::StoreError;

use crate::{Backend, T0};

conformance!(
    concurrent_appends_each_land_once_in_a_valid_chain_durable_when_answered,
    one_failing_append_loses_and_duplicates_none_of_the_others,
    verification_finds_a_tampered_entry_on_any_page,
);

fn revoked(name: String) -> AuditEvent {
    AuditEvent::KeyRevoked { key: name }
}

/// Runs SQL on the backend's database through a connection of its own.
async fn sql(backend: &Backend, statements: &str) {
    match backend.url.strip_prefix("sqlite:") {
        Some(path) => rusqlite::Connection::open(path).unwrap().execute_batch(statements).unwrap(),
        None => {
            let pool = sqlx::PgPool::connect(&backend.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_owned())).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// Every entry's key name, by position, read through `store`.
async fn key_names(store: &dyn tactful_store::Store) -> HashMap<String, Vec<u64>> {
    let mut names: HashMap<String, Vec<u64>> = HashMap::new();
    for entry in store.audit_entries(0, 100_000).await.unwrap() {
        let value: serde_json::Value = serde_json::from_str(&entry.text).unwrap();
        names.entry(value["key"].as_str().unwrap().to_owned()).or_default().push(entry.seq);
    }
    names
}

/// 64 callers append one entry per call, as reads do. Right after each call returns, another
/// handle on the same database (as after a crash and restart) finds the entry at the position
/// returned; at the end every entry is there exactly once and the log verifies.
async fn concurrent_appends_each_land_once_in_a_valid_chain_durable_when_answered(backend: Backend) {
    const CALLERS: usize = 64;
    const ROUNDS: usize = 8;
    let other = backend.reopen().await.unwrap().store;
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let (store, other) = (backend.store.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for round in 0..ROUNDS {
                let name = format!("key_{caller}_{round}");
                let position = store.audit_append(vec![revoked(name.clone())], T0).await.unwrap();
                assert_eq!(position.len(), 1);
                let found = other.audit_entries(position[0] - 1, 1).await.unwrap();
                assert!(
                    found.len() == 1
                        && found[0].seq == position[0]
                        && found[0].text.contains(&format!("\"{name}\"")),
                    "{name} is not at {position:?} when its append returned: {found:?}"
                );
                positions.extend(position);
            }
            positions
        }));
    }
    let mut positions = Vec::new();
    for task in tasks {
        positions.extend(task.await.unwrap());
    }
    positions.sort_unstable();
    let total = (CALLERS * ROUNDS) as u64;
    assert_eq!(positions, (1..=total).collect::<Vec<_>>(), "positions are gapless and unique");
    let names = key_names(other.as_ref()).await;
    assert_eq!(names.len(), CALLERS * ROUNDS);
    assert!(names.values().all(|at| at.len() == 1), "an entry was written twice");
    backend.store.audit_checkpoint(T0).await.unwrap();
    let report = tactful_store::audit::verify(other.as_ref(), &[backend.vault.public_key()], Vec::new())
        .await
        .unwrap();
    assert!(report.ok() && report.entries == total && report.checkpoints == 1, "{report:?}");
}

/// The database refuses some entries (a trigger stands in for any failure of one entry). Callers
/// appending at the same time as those are answered as if they had appended alone: their entries
/// land once each, the refused ones not at all, and the log verifies.
async fn one_failing_append_loses_and_duplicates_none_of_the_others(backend: Backend) {
    if backend.url.starts_with("sqlite:") {
        sql(
            &backend,
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_log WHEN NEW.entry LIKE '%poison%'
             BEGIN SELECT RAISE(ABORT, 'poisoned entry'); END;",
        )
        .await;
    } else {
        sql(
            &backend,
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.entry LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned entry'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
        )
        .await;
    }
    let mut expected = Vec::new();
    for round in 0..10 {
        let mut calls = Vec::new();
        for caller in 0..24 {
            let poisoned = caller % 8 == 3;
            let name =
                if poisoned { format!("poison_{round}_{caller}") } else { format!("key_{round}_{caller}") };
            if !poisoned {
                expected.push(name.clone());
            }
            let store = backend.store.clone();
            calls.push((
                poisoned,
                tokio::spawn(async move { store.audit_append(vec![revoked(name)], T0).await }),
            ));
        }
        for (poisoned, call) in calls {
            let result: Result<Vec<u64>, StoreError> = call.await.unwrap();
            assert_eq!(result.is_err(), poisoned, "{result:?}");
        }
    }
    let names = key_names(backend.store.as_ref()).await;
    let mut found: Vec<String> = names.keys().cloned().collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "each accepted entry is there, no refused one");
    assert!(names.values().all(|at| at.len() == 1), "an entry was written twice");
    let report =
        tactful_store::audit::verify(backend.store.as_ref(), &[backend.vault.public_key()], Vec::new())
            .await
            .unwrap();
    assert!(report.ok() && report.entries == expected.len() as u64, "{report:?}");
}

/// A log of several pages; an entry altered on the first, a middle or the last page is named.
async fn verification_finds_a_tampered_entry_on_any_page(backend: Backend) {
    const ENTRIES: u64 = 50_000;
    for start in (0..ENTRIES).step_by(5_000) {
        let batch = (start..start + 5_000).map(|index| revoked(format!("key_{index}"))).collect();
        backend.store.audit_append(batch, T0).await.unwrap();
    }
    backend.store.audit_checkpoint(T0).await.unwrap();
    let trusted = [backend.vault.public_key()];
    let verify = || tactful_store::audit::verify(backend.store.as_ref(), &trusted, Vec::new());
    let report = verify().await.unwrap();
    assert!(report.ok() && report.entries == ENTRIES, "{report:?}");
    let root = report.root;
    for seq in [1, 20_000, 20_001, 33_333, ENTRIES] {
        let (from, to) = (format!("\"key_{}\"", seq - 1), "\"key_altered\"");
        sql(
            &backend,
            &format!("UPDATE audit_log SET entry = replace(entry, '{from}', '{to}') WHERE seq = {seq}"),
        )
        .await;
        let report = verify().await.unwrap();
        assert_eq!(report.first_bad_entry(), Some(seq), "entry {seq}: {:?}", report.problems);
        assert!(report.problems.contains(&Problem::Altered { seq }), "entry {seq}: {:?}", report.problems);
        sql(
            &backend,
            &format!("UPDATE audit_log SET entry = replace(entry, '{to}', '{from}') WHERE seq = {seq}"),
        )
        .await;
    }
    let report = verify().await.unwrap();
    assert!(report.ok() && report.root == root, "{report:?}");
}
