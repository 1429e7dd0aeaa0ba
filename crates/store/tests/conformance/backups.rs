//! Backups that honour erasure: a backup taken before an erasure, restored after it, leaves the
//! person erased (and suppressed) once the database is opened, with the re-erasure in the audit log;
//! everyone else is as they were. SQLite is copied with the product's own backup; PostgreSQL with
//! `pg_dump` and `pg_restore` as the deployment guide says.

use std::path::Path;

use serde_json::{Value, json};
use tactful_store::{IngestOutcome, ShredOutcome, ShredPlan};

use crate::{Backend, T0, event, first_name, ingest, subject_of};

conformance!(a_backup_restored_after_an_erasure_leaves_the_person_erased);

fn run(command: &mut std::process::Command) {
    let output = command.output().expect("the PostgreSQL client tools are installed");
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn back_up(url: &str, to: &Path) {
    if url.starts_with("postgres") {
        run(std::process::Command::new("pg_dump")
            .args(["--format=custom", "--exclude-table=erasure_journal", "--file"])
            .arg(to)
            .arg(url));
    } else {
        assert!(tactful_store::backup::backup_sqlite(url, to).unwrap() > 0);
    }
}

fn restore(url: &str, from: &Path, master_hex: &str) -> Option<usize> {
    if url.starts_with("postgres") {
        run(std::process::Command::new("pg_restore")
            .args(["--clean", "--if-exists", "--no-owner", "--dbname", url])
            .arg(from));
        None
    } else {
        let master = tactful_vault::MasterKey::from_text(master_hex).unwrap();
        let wrong = tactful_vault::MasterKey::generate();
        let refused = tactful_store::backup::restore_sqlite(url, from, wrong.into()).unwrap_err();
        assert!(refused.to_string().contains("does not open with this master key"), "{refused}");
        let restored = tactful_store::backup::restore_sqlite(url, from, master.into()).unwrap();
        assert!(restored.previous.is_some(), "the replaced database is kept");
        Some(restored.erase_again)
    }
}

async fn restored_erasures(backend: &Backend) -> usize {
    backend
        .store
        .audit_entries(0, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.text).unwrap())
        .filter(|entry| entry["kind"] == "erased" && entry["request"] == "restored-backup")
        .count()
}

async fn a_backup_restored_after_an_erasure_leaves_the_person_erased(backend: Backend) {
    ingest(
        &backend,
        vec![
            event("1").identify(json!({"email": "ann@example.com", "first_name": "Ann"})).user("ann").at(T0),
            event("2").identify(json!({"email": "bea@example.com", "first_name": "Bea"})).user("bea").at(T0),
        ],
    )
    .await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("before-the-erasure.backup");
    back_up(&backend.url, &dump);

    let plan = ShredPlan {
        request: "req_e".into(),
        held_through: i64::MAX,
        suppress: true,
        deliveries: Vec::new(),
        audit: Vec::new(),
    };
    let outcome = backend.store.shred(&ann, plan, T0 + 10).await.unwrap();
    assert!(matches!(outcome, ShredOutcome::Shredded { .. }), "{outcome:?}");

    // The backup still holds Ann: her key, wrapped under the master key, and her identifiers.
    let Backend { store, vault, policy, url, master_hex, _dir } = backend;
    drop((store, vault));
    let erase_again = restore(&url, &dump, &master_hex);
    if let Some(erase_again) = erase_again {
        assert_eq!(erase_again, 1, "the restore says one erasure will be applied again");
    }
    let opened = tactful_store::open_with(
        &url,
        tactful_vault::MasterKey::from_text(&master_hex).unwrap(),
        &crate::options(),
    )
    .await
    .unwrap();
    let backend = Backend { store: opened.store, vault: opened.vault, policy, url, master_hex, _dir };

    assert_eq!(subject_of(&backend, "user_id", "ann").await, None, "erased again");
    assert_eq!(subject_of(&backend, "email", "ann@example.com").await, None);
    assert!(backend.store.subject_data(&ann).await.unwrap().is_none(), "her key is gone again");
    let bea = subject_of(&backend, "user_id", "bea").await.expect("everyone else is as they were");
    assert_eq!(first_name(&backend, &bea).await, "Bea");
    assert_eq!(restored_erasures(&backend).await, 1, "the re-erasure is audited");
    // Suppressed again: her events are dropped at the door.
    assert_eq!(ingest(&backend, vec![event("3").user("ann")]).await, [IngestOutcome::Suppressed]);
    // Opening again erases nothing more.
    let again = backend.reopen().await.unwrap();
    drop(again);
    assert_eq!(restored_erasures(&backend).await, 1);
}
