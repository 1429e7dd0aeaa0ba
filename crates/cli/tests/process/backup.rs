//! Backups as an operator takes them: `tactful backup` while the server runs, an erasure after it,
//! then `tactful restore` of the older copy; the person stays erased and everyone else is back.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_after_an_erasure_leaves_the_person_erased() {
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    let database = dir.path().join("tactful.db");
    let server = Server::start(dir.path());
    let (_, key) =
        tactful(dir.path(), &database, &["api-keys", "create", "--role", "requests", "--name", "dpo"]);
    let key = key.trim().to_owned();
    let client = Client::new(server.base.clone());
    let consent = json!({"consent": {"categoryPreferences": {"Email": true}}});
    send(
        &client,
        "wk_web_fernhill_demo",
        vec![
            json!({"type": "identify", "userId": "mina-1", "messageId": "b-1", "context": consent,
                   "traits": {"email": "mina.murray@example.com", "first_name": "Mina"}}),
            json!({"type": "identify", "userId": "jonathan-1", "messageId": "b-2", "context": consent,
                   "traits": {"email": "jonathan.harker@example.com", "first_name": "Jonathan"}}),
        ],
    )
    .await;

    // A backup while the server runs; it never overwrites.
    let backup = dir.path().join("nightly.db");
    let backup_arg = backup.to_str().unwrap();
    let (ok, said) = tactful(dir.path(), &database, &["backup", "--out", backup_arg]);
    assert!(ok && said.contains("wrote"), "{said}");
    let (ok, _) = tactful(dir.path(), &database, &["backup", "--out", backup_arg]);
    assert!(!ok, "an existing file is not overwritten");
    let bytes = std::fs::read(&backup).unwrap();
    for secret in ["mina.murray@example.com", "Mina", "mina-1"] {
        assert!(!bytes.windows(secret.len()).any(|window| window == secret.as_bytes()), "{secret} in clear");
    }

    // Mina is erased after the backup was taken.
    let created = client
        .post_with_key(
            "/v1/requests",
            &key,
            Bytes::from(json!({"type": "erase", "subject": "email:mina.murray@example.com"}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(created.0.as_u16(), 202, "{}", String::from_utf8_lossy(&created.1));
    let erase: Value = serde_json::from_slice(&created.1).unwrap();
    let erase_id = erase["id"].as_str().unwrap().to_owned();
    until(&client, &format!("/v1/requests/{erase_id}"), &key, |view| view["status"] == "completed").await;
    drop(server);
    let journal = std::fs::read(dir.path().join("tactful.db.erasures")).expect("the erasure is journaled");
    for secret in ["mina.murray@example.com", "Mina", "mina-1"] {
        assert!(
            !journal.windows(secret.len()).any(|window| window == secret.as_bytes()),
            "{secret} in clear"
        );
    }

    // Without the master key it was taken under, nothing is touched: with no key, or a new one.
    let stranger = tempfile::tempdir().unwrap();
    write_catalog(stranger.path());
    let (ok, _) = tactful(stranger.path(), &database, &["restore", backup_arg]);
    assert!(!ok, "no master key, no restore");
    assert!(!stranger.path().join("master.key").exists(), "no key is made up for it");
    let generated = std::process::Command::new(BINARY)
        .args(["keys", "generate", "--out"])
        .arg(stranger.path().join("master.key"))
        .status()
        .unwrap();
    assert!(generated.success());
    let (ok, _) = tactful(stranger.path(), &database, &["restore", backup_arg]);
    assert!(!ok, "another key, no restore");
    let moved_aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().contains("before-restore"))
        .count();
    assert_eq!(moved_aside, 0, "the live database was left in place");

    // The older copy goes back in place; the database it replaced is kept.
    let (ok, said) = tactful(dir.path(), &database, &["restore", backup_arg]);
    assert!(ok, "{said}");
    assert!(said.contains("erased again 1 erasure"), "{said}");
    assert!(said.contains("kept the database it replaced"), "{said}");

    let server = Server::start(dir.path());
    let client = Client::new(server.base.clone());
    let (status, _) =
        client.get_with_key("/v1/subjects/email:mina.murray@example.com/consents", &key).await.unwrap();
    assert_eq!(status.as_u16(), 404, "Mina stays erased");
    let (status, _) = client.get_with_key("/v1/subjects/user_id:mina-1/consents", &key).await.unwrap();
    assert_eq!(status.as_u16(), 404);
    let (status, consents) =
        client.get_with_key("/v1/subjects/email:jonathan.harker@example.com/consents", &key).await.unwrap();
    assert_eq!(status.as_u16(), 200, "{}", String::from_utf8_lossy(&consents));
    drop(server);

    // The audit log is whole and says she was erased again.
    let (ok, said) = tactful(dir.path(), &database, &["audit", "verify"]);
    assert!(ok, "{said}");
    let conn = rusqlite::Connection::open(&database).unwrap();
    let held: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM subjects WHERE erased_at IS NULL AND length(wrapped_key) > 0",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(held, 1, "only Jonathan's key is left");
}
