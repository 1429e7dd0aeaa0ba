//! End-to-end tests on real server processes: `tactful serve` as an operator runs it, killed with
//! SIGKILL during sustained ingestion, and the catalog check and admin commands as a user runs them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tactful::client::Client;
use tactful_domain::catalog::Catalog;

const BINARY: &str = env!("CARGO_BIN_EXE_tactful");

/// A running `tactful serve` and the address it listens on.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts the server on `dir` (SQLite there) and waits for its "listening" log line.
    fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// Like [`Server::start`], with extra `TACTFUL_*` settings in the environment.
    fn start_with(dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::launch(dir, &format!("sqlite:{}", dir.join("tactful.db").display()), None, env)
    }

    /// Starts the server with the catalog in `dir` on `database`, with the master key in `dir` or
    /// given as hex, and waits for its "listening" log line (no polling, no sleeps).
    fn start_on(dir: &Path, database: &str, master_key: Option<&str>) -> Server {
        Server::launch(dir, database, master_key, &[])
    }

    fn launch(dir: &Path, database: &str, master_key: Option<&str>, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(BINARY);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--catalog"])
            .arg(dir.join("tactful.toml"))
            .arg("--database")
            .arg(database)
            .arg("--master-key-file")
            .arg(dir.join("master.key"))
            .env("RUST_LOG", "info")
            .env_remove("TACTFUL_MASTER_KEY");
        if let Some(key) = master_key {
            command.env("TACTFUL_MASTER_KEY", key);
        }
        command.env("TACTFUL_NOTIFIER", format!("file:{}", dir.join("notifications").display()));
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child =
            command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start tactful serve");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let line = lines.next().expect("the server exited before listening").expect("read stderr");
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().expect("an address").to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, base: format!("http://{address}") }
    }

    fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_catalog(dir: &Path) {
    std::fs::write(dir.join("tactful.toml"), Catalog::example_text()).unwrap();
}

fn batch(client: usize, sequence: usize) -> Bytes {
    let events: Vec<Value> = (0..50)
        .map(|index| {
            json!({
                "type": if index % 10 == 0 { "identify" } else { "track" },
                "event": "Product Viewed",
                "userId": format!("crash-{client}-{}", (sequence * 50 + index) % 97),
                "messageId": format!("crash-{client}-{sequence}-{index}"),
                "traits": {"email": format!("crash{client}.{index}@example.com")},
                "properties": {"product_id": format!("sku-{index:04}")},
                "context": {"ip": "192.0.2.10"}
            })
        })
        .collect();
    Bytes::from(json!({"batch": events}).to_string())
}

/// `kill -9` during sustained ingestion loses no acknowledged event and leaves a consistent store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingestion_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    let server = Server::start(dir.path());
    let client = Client::new(server.base.clone());

    // Four senders push batches as fast as they are acknowledged; each acknowledged batch is kept.
    // They stop only when a request fails, which happens once the server is killed.
    let acknowledged: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut senders = Vec::new();
    for sender in 0..4 {
        let (client, acknowledged, progress) = (client.clone(), acknowledged.clone(), progress.clone());
        senders.push(tokio::spawn(async move {
            for sequence in 0.. {
                let body = batch(sender, sequence);
                match client.post("/v1/batch", "wk_web_fernhill_demo", body.clone()).await {
                    Ok((status, _)) if status.is_success() => {
                        acknowledged.lock().unwrap().push(body);
                        progress.notify_one();
                    }
                    _ => break,
                }
            }
        }));
    }
    // Kill once a good amount of work has been acknowledged, while the senders are still sending.
    let waited = tokio::time::timeout(Duration::from_secs(120), async {
        while acknowledged.lock().unwrap().len() < 100 {
            progress.notified().await;
        }
    });
    waited.await.expect("the server acknowledged too little");
    server.kill_hard();
    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    // The store is consistent after the crash.
    {
        let conn = rusqlite::Connection::open(dir.path().join("tactful.db")).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        assert_eq!(check, "ok");
    }

    // After a restart, every acknowledged event is already there: resending it stores nothing new.
    let server = Server::start(dir.path());
    let client = Client::new(server.base.clone());
    for body in &acknowledged {
        let (status, answer) = client.post("/v1/batch", "wk_web_fernhill_demo", body.clone()).await.unwrap();
        assert!(status.is_success());
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["duplicates"], 50, "an acknowledged batch was lost: {answer}");
        assert_eq!(answer["stored"], 0);
    }
    drop(server);
}

#[test]
fn catalog_check_reports_every_problem_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    let broken = Catalog::example_text()
        .replacen("category = \"user.contact.email\"", "category = \"user.contact.emial\"", 1)
        .replacen("retention = \"30d\"", "retention = \"a month\"", 1);
    std::fs::write(&file, broken).unwrap();
    let output = Command::new(BINARY).args(["catalog", "check"]).arg(&file).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|line| line.contains("broken.toml:")).collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].contains("did you mean \"user.contact.email\""), "{stderr}");
    assert!(lines[1].contains("retention must look like"), "{stderr}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, Catalog::example_text()).unwrap();
    let output = Command::new(BINARY).args(["catalog", "check"]).arg(&good).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_server_refuses_to_start_on_an_invalid_catalog_with_the_same_messages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tactful.toml"),
        Catalog::example_text().replacen("\"1y\"", "\"forever\"", 1),
    )
    .unwrap();
    let check = Command::new(BINARY)
        .args(["catalog", "check"])
        .arg(dir.path().join("tactful.toml"))
        .output()
        .unwrap();
    let serve = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--catalog"])
        .arg(dir.path().join("tactful.toml"))
        .arg("--database")
        .arg(format!("sqlite:{}", dir.path().join("t.db").display()))
        .arg("--master-key-file")
        .arg(dir.path().join("k"))
        .output()
        .unwrap();
    assert!(!serve.status.success());
    let problem = String::from_utf8_lossy(&check.stderr).lines().next().unwrap().to_owned();
    assert!(problem.contains("retention must look like"));
    assert!(
        String::from_utf8_lossy(&serve.stderr).contains(&problem),
        "{}",
        String::from_utf8_lossy(&serve.stderr)
    );
    assert!(!dir.path().join("t.db").exists(), "nothing was created");
}

/// Admin commands run under the catalog they are given: one that cannot be read, or is invalid, is
/// an error that says what to do (never silently the example catalog), and the example is used only
/// when no catalog is named at all and there is no `tactful.toml` to read, as `serve` would.
#[test]
fn admin_commands_refuse_a_catalog_they_cannot_use_and_fall_back_only_when_none_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (dir, empty) = (dir.path(), dir.path().join("empty"));
    std::fs::create_dir(&empty).unwrap();
    let database = dir.join("t.db");
    let stats = |cwd: &Path, catalog: Option<&Path>, env: &[(&str, &Path)]| {
        let mut command = Command::new(BINARY);
        command.current_dir(cwd).arg("stats");
        if let Some(catalog) = catalog {
            command.arg("--catalog").arg(catalog);
        }
        command
            .arg("--database")
            .arg(format!("sqlite:{}", database.display()))
            .arg("--master-key-file")
            .arg(dir.join("master.key"));
        for name in ["TACTFUL_CATALOG", "TACTFUL_CONFIG", "TACTFUL_MASTER_KEY", "TACTFUL_DATABASE"] {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
    };

    let missing = dir.join("missing.toml");
    for (flag, env) in
        [(Some(missing.as_path()), Vec::new()), (None, vec![("TACTFUL_CATALOG", missing.as_path())])]
    {
        let (ok, _, stderr) = stats(&empty, flag, &env);
        assert!(!ok, "a catalog named but missing is an error");
        assert!(stderr.contains("cannot read the catalog") && stderr.contains("missing.toml"), "{stderr}");
        assert!(stderr.contains("--catalog FILE"), "says what to do: {stderr}");
        assert!(!stderr.contains("example catalog"), "{stderr}");
    }
    assert!(!database.exists(), "nothing was opened under a catalog that could not be read");

    let invalid = dir.join("invalid.toml");
    std::fs::write(&invalid, Catalog::example_text().replacen("\"1y\"", "\"forever\"", 1)).unwrap();
    let (ok, _, stderr) = stats(&empty, Some(&invalid), &[]);
    assert!(!ok);
    assert!(stderr.contains("invalid.toml:") && stderr.contains("retention must look like"), "{stderr}");
    assert!(stderr.contains("tactful catalog check"), "says what to do: {stderr}");

    // Nothing named and nothing to read: the example, said out loud.
    let (ok, stdout, stderr) = stats(&empty, None, &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("using the example catalog"), "{stderr}");
    assert!(stdout.contains("events:         0"), "{stdout}");

    // Nothing named, but a tactful.toml where it runs: read as `serve` reads it, problems and all.
    std::fs::copy(&invalid, dir.join("tactful.toml")).unwrap();
    let (ok, _, stderr) = stats(dir, None, &[]);
    assert!(!ok && stderr.contains("retention must look like"), "{stderr}");
    write_catalog(dir);
    let (ok, stdout, stderr) = stats(dir, None, &[]);
    assert!(ok && !stderr.contains("example catalog"), "{stderr}");
    assert!(stdout.contains("backend:        sqlite"), "{stdout}");
}

/// An unreachable database at start: the server says where it tried, retries with backoff, and
/// gives up with a clear message after the configured time.
#[test]
fn an_unreachable_database_at_start_is_retried_then_named() {
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    let output = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-connect-timeout", "2", "--catalog"])
        .arg(dir.path().join("tactful.toml"))
        .args(["--database", "postgres://tactful:secret-password@127.0.0.1:1/nowhere", "--master-key-file"])
        .arg(dir.path().join("master.key"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PostgreSQL is unreachable; retrying"), "{stderr}");
    assert!(stderr.contains("cannot reach PostgreSQL at 127.0.0.1:1/nowhere"), "{stderr}");
    assert!(!stderr.contains("secret-password"), "the password never reaches the log");
}

/// Two server processes over one PostgreSQL, ingesting the same and different people at once:
/// nothing lost, nothing stored twice, nobody linked to the wrong person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_one_postgres_lose_nothing_and_link_rightly() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    let master = tactful_vault::MasterKey::generate();
    let hex = master.to_hex().to_string();
    let servers =
        [Server::start_on(dir.path(), &url, Some(&hex)), Server::start_on(dir.path(), &url, Some(&hex))];
    let clients: Vec<Client> = servers.iter().map(|server| Client::new(server.base.clone())).collect();

    // Shared people 0..20 reach both instances from different devices at the same moment; people
    // 100.. reach only instance 0, people 200.. only instance 1; and some batches are retried on the
    // other instance (same messageIds).
    let person_events = |instance: usize, person: usize, round: usize| -> Vec<Value> {
        let user = format!("person-{person}");
        let device = format!("device-{person}-{instance}");
        vec![
            json!({"type": "page", "anonymousId": device, "messageId": format!("{device}-{round}-page")}),
            json!({"type": "identify", "userId": user, "anonymousId": device, "messageId": format!("{device}-{round}-login"),
                   "traits": {"email": format!("{user}@example.com")}}),
            json!({"type": "track", "userId": user, "event": "Product Viewed", "messageId": format!("{user}-{round}-view"),
                   "properties": {"product_id": "sku-0001"}}),
        ]
    };
    let mut tasks = Vec::new();
    for (instance, client) in clients.iter().cloned().enumerate() {
        let others: Vec<usize> =
            (0..20).map(|person| (if instance == 0 { 100 } else { 200 }) + person).collect();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for round in 0..3 {
                let mut batch = Vec::new();
                for person in (0..20).chain(others.iter().copied()) {
                    batch.extend(person_events(instance, person, round));
                }
                let body = Bytes::from(json!({"batch": batch}).to_string());
                let (status, answer) =
                    client.post("/v1/batch", "wk_web_fernhill_demo", body.clone()).await.unwrap();
                assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&answer));
                acknowledged.push(body);
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }

    // Nothing lost, nothing twice: every acknowledged batch, retried on the *other* instance, is all
    // duplicates; the store holds each messageId once.
    for (index, body) in acknowledged.iter().enumerate() {
        let (_, answer) =
            clients[(index + 1) % 2].post("/v1/batch", "wk_web_fernhill_demo", body.clone()).await.unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["stored"], 0, "{answer}");
    }
    let opened = tactful_store::open(&url, tactful_vault::MasterKey::from_text(&hex).unwrap()).await.unwrap();
    // Per round: shared people's page and login per device, their view once, the others' three events.
    let unique_messages = 3 * (2 * 20 * 2 + 20 + 3 * 20 * 2);
    assert_eq!(opened.store.stats().await.unwrap().events, unique_messages as u64);

    // Linked rightly: each person's devices and email lead to their family, and people never share one.
    let root = |kind: &'static str, value: String| {
        let (store, vault) = (opened.store.clone(), opened.vault.clone());
        async move {
            let subject =
                store.subject_by_identifier(vault.blind(kind, &value)).await.unwrap().expect("indexed");
            store.subject_data(&subject).await.unwrap().unwrap().subject
        }
    };
    let mut families = std::collections::HashSet::new();
    for person in (0..20).chain(100..120).chain(200..220) {
        let family = root("user_id", format!("person-{person}")).await;
        assert_eq!(root("email", format!("person-{person}@example.com")).await, family);
        for instance in 0..2 {
            let shared = person < 100;
            if shared || (person >= 200) == (instance == 1) {
                assert_eq!(
                    root("anonymous_id", format!("device-{person}-{instance}")).await,
                    family,
                    "person {person}"
                );
            }
        }
        assert!(families.insert(family), "person {person} shares a family with someone else");
    }
    assert_eq!(opened.store.stats().await.unwrap().subjects, 60);
}

/// Runs `tactful` with the database and master key of `dir`; returns exit success and stdout.
fn tactful(dir: &Path, database: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(BINARY)
        .args(args)
        .arg("--catalog")
        .arg(dir.join("tactful.toml"))
        .arg("--database")
        .arg(format!("sqlite:{}", database.display()))
        .arg("--master-key-file")
        .arg(dir.join("master.key"))
        .env_remove("TACTFUL_MASTER_KEY")
        .output()
        .expect("run tactful");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.success(), stdout)
}

#[tokio::test]
async fn audit_verify_names_the_first_entry_edited_removed_reordered_or_truncated() {
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    let database = dir.path().join("tactful.db");
    let server = Server::start(dir.path());
    // Keys are made by the CLI, as operators make them, while the server runs.
    let (created, key) = tactful(
        dir.path(),
        &database,
        &["api-keys", "create", "--role", "marketing", "--name", "email team"],
    );
    assert!(created, "{key}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("tk_"), "{key}");

    let client = Client::new(server.base.clone());
    for reader in 0..3 {
        let event = json!({"type": "identify", "userId": format!("reader-{reader}"), "messageId": format!("m-{reader}"),
                           "traits": {"email": format!("reader-{reader}@example.com")},
                           "context": {"consent": {"categoryPreferences": {"Email": true}}}});
        let body = Bytes::from(json!({"batch": [event]}).to_string());
        let (status, _) = client.post("/v1/batch", "wk_web_fernhill_demo", body).await.unwrap();
        assert!(status.is_success());
        let path =
            format!("/v1/subjects/user_id:reader-{reader}/profile?purpose=marketing.communications.email");
        let (status, answer) = client.get_with_key(&path, &key).await.unwrap();
        assert!(status.is_success(), "{}", String::from_utf8_lossy(&answer));
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["traits"]["email"], format!("reader-{reader}@example.com"));
        if reader == 0 {
            // A checkpoint signed mid-way, as the server's job signs them every minute.
            assert!(tactful(dir.path(), &database, &["audit", "checkpoint"]).0);
        }
    }
    drop(server);

    // An outside party keeps a checkpoint; the untouched log verifies against it.
    let kept = dir.path().join("kept-checkpoint.json");
    let (signed, _) =
        tactful(dir.path(), &database, &["audit", "checkpoint", "--out", kept.to_str().unwrap()]);
    assert!(signed);
    let checkpoint: Value = serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    let size = checkpoint["size"].as_u64().unwrap();
    assert!(size >= 8, "key, policy load, consents and reads: {checkpoint}");
    let verify =
        |copy: &Path| tactful(dir.path(), copy, &["audit", "verify", "--checkpoint", kept.to_str().unwrap()]);
    let (intact, report) = verify(&database);
    assert!(intact, "{report}");
    assert!(report.contains(&format!("intact: {size} entries")), "{report}");

    // Each tampering, on its own copy of the database, done with plain SQL as an insider could.
    let leaf = |text: &str| tactful_domain::audit::AuditEntry::leaf(text).to_vec();
    type Tampering = Box<dyn Fn(&rusqlite::Connection)>;
    let tamperings: Vec<(&str, Tampering, String)> = vec![
        (
            "edited",
            Box::new(|db| {
                // Move an access in time: every entry holds its time.
                db.execute(
                    "UPDATE audit_log SET entry = replace(entry, '\"at\":1', '\"at\":2') WHERE seq = 4",
                    [],
                )
                .unwrap();
            }),
            "First bad entry: 4".into(),
        ),
        (
            "edited with its hash rewritten",
            Box::new(move |db| {
                let text: String =
                    db.query_row("SELECT entry FROM audit_log WHERE seq = 5", [], |row| row.get(0)).unwrap();
                let forged = text.replace("\"at\":1", "\"at\":2");
                assert_ne!(text, forged);
                db.execute(
                    "UPDATE audit_log SET entry = ?1, leaf = ?2 WHERE seq = 5",
                    rusqlite::params![forged, leaf(&forged)],
                )
                .unwrap();
            }),
            "First bad entry: between 5 and".into(),
        ),
        (
            "removed",
            Box::new(|db| {
                db.execute("DELETE FROM audit_log WHERE seq = 6", []).unwrap();
            }),
            "First bad entry: 6".into(),
        ),
        (
            "reordered",
            Box::new(|db| {
                db.execute_batch(
                    "UPDATE audit_log SET seq = -1 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 7;
                     UPDATE audit_log SET seq = 7 WHERE seq = -1;",
                )
                .unwrap();
            }),
            "First bad entry: 3".into(),
        ),
        (
            "truncated, stored checkpoints and all",
            Box::new(move |db| {
                db.execute("DELETE FROM audit_log WHERE seq > ?1", [size as i64 - 2]).unwrap();
                db.execute("DELETE FROM audit_checkpoints", []).unwrap();
            }),
            format!("First bad entry: {}", size - 1),
        ),
    ];
    for (name, tamper, expected) in tamperings {
        let copy = dir.path().join(format!("tampered-{}.db", name.replace([' ', ','], "-")));
        rusqlite::Connection::open(&database)
            .unwrap()
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        let db = rusqlite::Connection::open(&copy).unwrap();
        tamper(&db);
        drop(db);
        let (intact, report) = verify(&copy);
        assert!(!intact, "{name}: not detected: {report}");
        assert!(report.contains("tampered with") && report.contains(&expected), "{name}: {report}");
    }
}

#[tokio::test]
async fn keys_receipts_and_the_consent_export_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    let database = dir.path().join("tactful.db");
    let server = Server::start(dir.path());
    let client = Client::new(server.base.clone());
    let (created, key) = tactful(
        dir.path(),
        &database,
        &["api-keys", "create", "--role", "privacy", "--name", "dpo", "--expires-in", "30d"],
    );
    assert!(created);
    let key = key.trim().to_owned();
    let event = json!({"type": "identify", "userId": "reader-1", "messageId": "k-1",
                       "context": {"consent": {"categoryPreferences": {"Email": true, "Advertising": false}}}});
    let (status, _) = client
        .post("/v1/batch", "wk_web_fernhill_demo", Bytes::from(json!({"batch": [event]}).to_string()))
        .await
        .unwrap();
    assert!(status.is_success());

    // A receipt, saved as the person would keep it, verifies; altered, it does not.
    let (_, receipts) =
        client.get_with_key("/v1/subjects/user_id:reader-1/consents/receipts", &key).await.unwrap();
    let receipts: Value = serde_json::from_slice(&receipts).unwrap();
    assert_eq!(receipts["receipts"].as_array().unwrap().len(), 2, "{receipts}");
    let (_, published) = client.get("/v1/signing-key").await.unwrap();
    let published: Value = serde_json::from_slice(&published).unwrap();
    let public_key = published["public_key"].as_str().unwrap();
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, receipts["receipts"][0].to_string()).unwrap();
    let file_arg = file.to_str().unwrap();
    let verify = |args: &[&str]| {
        let output = Command::new(BINARY).args(["receipt", "verify"]).args(args).output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (valid, said) = verify(&[file_arg, "--public-key", public_key]);
    assert!(valid, "{said}");
    assert!(said.starts_with("Valid receipt cr_"), "{said}");
    let other_key = tactful_vault::PublicKey([7; 32]).to_base64();
    assert!(!verify(&[file_arg, "--public-key", &other_key]).0, "another key's receipt");
    let mut altered = receipts["receipts"][0].clone();
    altered["receipt"]["collectionMethod"] = json!("imported");
    std::fs::write(&file, altered.to_string()).unwrap();
    let (valid, said) = verify(&[file_arg]);
    assert!(!valid && said.contains("INVALID"), "{said}");

    // The export lists both changes, by subject id only.
    let (exported, csv) = tactful(dir.path(), &database, &["consents", "export", "--format", "csv"]);
    assert!(exported);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1..].iter().all(|line| line.starts_with("sub_")), "{csv}");

    // Listed, then revoked: the running server refuses the key at once.
    let (_, listed) = tactful(dir.path(), &database, &["api-keys", "list"]);
    let id = listed.lines().nth(1).and_then(|line| line.split_whitespace().next()).unwrap().to_owned();
    assert!(listed.contains("dpo") && listed.contains("active until"), "{listed}");
    assert!(!listed.contains(&key), "a key is never shown again");
    assert!(tactful(dir.path(), &database, &["api-keys", "revoke", &id]).0);
    let (status, answer) = client.get_with_key("/v1/subjects/user_id:reader-1/consents", &key).await.unwrap();
    assert_eq!(status.as_u16(), 401);
    assert!(String::from_utf8_lossy(&answer).contains("revoked_api_key"));
    assert!(!tactful(dir.path(), &database, &["api-keys", "revoke", &id]).0, "revoking twice is an error");
}

/// A destination on loopback for process tests: records every request; until `hold_first` is
/// released it never answers its first request (so a server can be killed mid-call).
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Value>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Receiver {
    async fn start(hang_on_first: bool) -> (Receiver, String) {
        let receiver = Receiver::default();
        let recorded = receiver.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let recorded = recorded.clone();
            async move {
                use http_body_util::BodyExt as _;
                let headers = request.headers().clone();
                let bytes = request.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let signature = headers["tactful-signature"].to_str().unwrap().to_owned();
                let (timestamp, mac) = signature.split_once(",v1=").unwrap();
                let timestamp: i64 = timestamp.trim_start_matches("t=").parse().unwrap();
                let valid = tactful_vault::webhook_signature(DESTINATION_SECRET, timestamp, &bytes) == mac;
                let count = {
                    let mut received = recorded.received.lock().unwrap();
                    received.push(json!({"body": body, "valid": valid, "delivery": headers["tactful-delivery-id"].to_str().unwrap()}));
                    received.len()
                };
                recorded.arrived.notify_one();
                if hang_on_first && count == 1 {
                    std::future::pending::<()>().await;
                }
                axum::http::StatusCode::NO_CONTENT
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, base)
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

const DESTINATION_SECRET: &str = "whsec_process_0123456789";

/// The example catalog with one destination that hears about erasures.
fn write_catalog_with_destination(dir: &Path, receiver: &str) {
    let catalog = format!(
        "{}\n[destinations.crm]\nurl = \"{receiver}/hook\"\nsecret = \"{DESTINATION_SECRET}\"\nreceives = [\"erase\"]\nidentifiers = [\"email\", \"user_id\"]\n",
        Catalog::example_text()
    );
    std::fs::write(dir.join("tactful.toml"), catalog).unwrap();
}

/// GETs a brand API path until `done` holds for its answer (the server's workers run every second).
async fn until(client: &Client, path: &str, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = client.get_with_key(path, key).await.unwrap();
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if done(&answer) {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "{path} never got there: {answer:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(client: &Client, write_key: &str, events: Vec<Value>) {
    let (status, answer) =
        client.post("/v1/batch", write_key, Bytes::from(json!({"batch": events}).to_string())).await.unwrap();
    assert!(status.is_success(), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_exported_then_erased_everywhere_on_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, base) = Receiver::start(false).await;
    write_catalog_with_destination(dir.path(), &base);
    let database = dir.path().join("tactful.db");
    let server = Server::start(dir.path());
    let (_, key) =
        tactful(dir.path(), &database, &["api-keys", "create", "--role", "privacy", "--name", "dpo"]);
    let key = key.trim().to_owned();
    let client = Client::new(server.base.clone());

    let consent = json!({"consent": {"categoryPreferences": {"Email": true, "Personalization": true}}});
    send(
        &client,
        "wk_web_fernhill_demo",
        vec![
            json!({"type": "identify", "userId": "lucy-1", "messageId": "p-1", "context": consent,
                   "traits": {"email": "lucy.westenra@example.com", "first_name": "Lucy", "last_name": "Westenra"}}),
            json!({"type": "track", "event": "Product Viewed", "userId": "lucy-1", "messageId": "p-2", "context": consent,
                   "properties": {"product_id": "sku-0042"}}),
        ],
    )
    .await;
    send(
        &client,
        "wk_backend_fernhill_demo",
        vec![json!({"type": "track", "event": "Order Completed", "userId": "lucy-1", "messageId": "p-3",
                    "properties": {"order_id": "FH-7", "revenue": 12.5, "currency": "EUR"}})],
    )
    .await;

    // Access: the package in JSON and in HTML.
    let created = client
        .post_with_key(
            "/v1/requests",
            &key,
            Bytes::from(json!({"type": "access", "subject": "email:lucy.westenra@example.com"}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(created.0.as_u16(), 202, "{}", String::from_utf8_lossy(&created.1));
    let access: Value = serde_json::from_slice(&created.1).unwrap();
    let access_id = access["id"].as_str().unwrap().to_owned();
    until(&client, &format!("/v1/requests/{access_id}"), &key, |view| view["status"] == "completed").await;
    let (_, package) = client.get_with_key(&format!("/v1/requests/{access_id}/package"), &key).await.unwrap();
    let package: Value = serde_json::from_slice(&package).unwrap();
    assert_eq!(package["events"].as_array().unwrap().len(), 3);
    assert!(package["identifiers"].to_string().contains("lucy.westenra@example.com"));
    let (_, html) =
        client.get_with_key(&format!("/v1/requests/{access_id}/package?format=html"), &key).await.unwrap();
    let html = String::from_utf8(html.to_vec()).unwrap();
    assert!(html.contains("Westenra") && html.contains("FH-7"));
    let old = package["subject"].as_str().unwrap().to_owned();

    // Every download is a read in her access log, with who did it: the key over HTTP, the operator
    // at the command line. An auditor asking what the key saw finds her.
    let file = dir.path().join("package.json");
    let (ok, said) =
        tactful(dir.path(), &database, &["requests", "package", &access_id, "--out", file.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(std::fs::read_to_string(&file).unwrap().contains("lucy.westenra@example.com"));
    std::fs::remove_file(&file).unwrap();
    let (_, log) = client.get_with_key("/v1/subjects/user_id:lucy-1/access-log", &key).await.unwrap();
    let log: Value = serde_json::from_slice(&log).unwrap();
    let downloads: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["kind"] == "read" && entry["purpose"] == "essential.legal_obligation")
        .filter(|entry| entry["returned"].as_array().unwrap().contains(&json!("user.contact.email")))
        .collect();
    assert_eq!(downloads.len(), 3, "two downloads over HTTP and one at the command line: {log}");
    assert_eq!(downloads[0]["actor"], "cli");
    assert_eq!(downloads[0]["role"], "operator");
    assert!(downloads[1]["actor"].as_str().unwrap().starts_with("key_"));
    let key_id = downloads[1]["actor"].as_str().unwrap().to_owned();
    let out = dir.path().join("breach");
    let (ok, said) =
        tactful(dir.path(), &database, &["breach", "--key", &key_id, "--out", out.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(said.starts_with("1 people affected"), "the key's downloads exposed her: {said}");

    // Erase.
    let created = client
        .post_with_key(
            "/v1/requests",
            &key,
            Bytes::from(json!({"type": "erase", "subject": "user_id:lucy-1"}).to_string()),
        )
        .await
        .unwrap();
    let erase: Value = serde_json::from_slice(&created.1).unwrap();
    let erase_id = erase["id"].as_str().unwrap().to_owned();
    let view =
        until(&client, &format!("/v1/requests/{erase_id}"), &key, |view| view["status"] == "completed").await;
    assert_eq!(view["deliveries"][0]["status"], "acknowledged");
    assert_eq!(view["kept_under_legal_hold"][0]["categories"], json!(["user.behavior.purchase_history"]));
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["valid"], true, "signed with the destination's secret");
    assert_eq!(received[0]["body"]["type"], "erase");
    assert_eq!(received[0]["body"]["id"], erase_id.as_str());
    assert_eq!(
        received[0]["body"]["identifiers"],
        json!({"email": "lucy.westenra@example.com", "user_id": "lucy-1"})
    );

    // Nothing finds her; the same email later is someone new.
    let (status, _) =
        client.get_with_key("/v1/subjects/email:lucy.westenra@example.com/consents", &key).await.unwrap();
    assert_eq!(status.as_u16(), 404);
    let (status, _) = client.get_with_key(&format!("/v1/subjects/{old}/consents"), &key).await.unwrap();
    assert_eq!(status.as_u16(), 404);
    send(&client, "wk_web_fernhill_demo", vec![json!({"type": "identify", "userId": "lucy-2", "messageId": "p-4", "context": consent, "traits": {"email": "lucy.westenra@example.com"}})]).await;
    let (_, consents) =
        client.get_with_key("/v1/subjects/email:lucy.westenra@example.com/consents", &key).await.unwrap();
    let consents: Value = serde_json::from_slice(&consents).unwrap();
    assert_ne!(consents["subject"].as_str().unwrap(), old, "no link to the erased record");
    drop(server);

    // On disk: nothing of hers in clear, and nothing left that a key could open.
    let mut bytes = std::fs::read(&database).unwrap();
    bytes.extend(std::fs::read(dir.path().join("tactful.db-wal")).unwrap_or_default());
    for secret in ["Westenra", "lucy.westenra@example.com", "lucy-1", "sku-0042"] {
        assert!(!bytes.windows(secret.len()).any(|window| window == secret.as_bytes()), "{secret} in clear");
    }
    let conn = rusqlite::Connection::open(&database).unwrap();
    let wrapped: Vec<u8> =
        conn.query_row("SELECT wrapped_key FROM subjects WHERE id = ?1", [&old], |row| row.get(0)).unwrap();
    assert!(wrapped.is_empty(), "her key is gone");
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM events WHERE subject_id = ?1", [&old], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 0, "her events are purged");
    let identities: i64 = conn
        .query_row("SELECT COUNT(*) FROM identities WHERE subject_id = ?1", [&old], |row| row.get(0))
        .unwrap();
    assert_eq!(identities, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_delivery_delivers_again_and_is_acknowledged_once() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, base) = Receiver::start(true).await;
    write_catalog_with_destination(dir.path(), &base);
    let database = dir.path().join("tactful.db");
    let settings = [("TACTFUL_DELIVERY_TIMEOUT_MS", "1500")];
    let server = Server::start_with(dir.path(), &settings);
    let (_, key) =
        tactful(dir.path(), &database, &["api-keys", "create", "--role", "privacy", "--name", "dpo"]);
    let key = key.trim().to_owned();
    let client = Client::new(server.base.clone());
    send(
        &client,
        "wk_web_fernhill_demo",
        vec![json!({"type": "identify", "userId": "mina-1", "messageId": "k-1"})],
    )
    .await;
    let (_, created) = client
        .post_with_key(
            "/v1/requests",
            &key,
            Bytes::from(json!({"type": "erase", "subject": "user_id:mina-1"}).to_string()),
        )
        .await
        .unwrap();
    let erase_id = serde_json::from_slice::<Value>(&created).unwrap()["id"].as_str().unwrap().to_owned();

    // The destination has the request, and has not answered, when the server dies.
    tokio::time::timeout(Duration::from_secs(30), receiver.arrived.notified())
        .await
        .expect("the erasure was sent");
    server.kill_hard();

    // Restarted, the server sends it again once the dead call's lease is over; it is acknowledged.
    let server = Server::start_with(dir.path(), &settings);
    let client = Client::new(server.base.clone());
    let view =
        until(&client, &format!("/v1/requests/{erase_id}"), &key, |view| view["status"] == "completed").await;
    let deliveries = view["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["status"], "acknowledged");
    assert_eq!(
        deliveries[0]["attempts"].as_array().unwrap().len(),
        1,
        "one attempt answered; the dead one never was"
    );
    let received = receiver.received();
    assert_eq!(received.len(), 2, "sent twice, once per server life");
    assert!(
        received
            .iter()
            .all(|copy| copy["body"]["id"] == erase_id.as_str() && copy["delivery"] == erase_id.as_str()),
        "the same id, so the destination can dedupe"
    );
    assert!(received.iter().all(|copy| copy["valid"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_report_names_the_people_a_key_read_and_drafts_their_notifications() {
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    let database = dir.path().join("tactful.db");
    let server = Server::start(dir.path());
    let (_, leaked) =
        tactful(dir.path(), &database, &["api-keys", "create", "--role", "marketing", "--name", "leaked"]);
    let leaked = leaked.trim().to_owned();
    let client = Client::new(server.base.clone());
    let consent = json!({"consent": {"categoryPreferences": {"Email": true}}});
    for (user, email) in
        [("arthur", "arthur.holmwood@example.com"), ("quincey", "quincey.morris@example.com")]
    {
        send(
            &client,
            "wk_web_fernhill_demo",
            vec![json!({"type": "identify", "userId": user, "messageId": user,
            "context": consent, "traits": {"email": email, "first_name": "Friend"}})],
        )
        .await;
    }
    // The leaked key read Arthur, not Quincey.
    let (status, _) = client
        .get_with_key("/v1/subjects/user_id:arthur/profile?purpose=marketing.communications.email", &leaked)
        .await
        .unwrap();
    assert!(status.is_success());
    drop(server);

    let (_, listed) = tactful(dir.path(), &database, &["api-keys", "list"]);
    let key_id = listed.lines().nth(1).and_then(|line| line.split_whitespace().next()).unwrap().to_owned();
    let out = dir.path().join("breach");
    let (ok, said) =
        tactful(dir.path(), &database, &["breach", "--key", &key_id, "--out", out.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(said.starts_with("1 people affected"), "{said}");
    assert!(said.contains("user.contact.email"), "{said}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["people"].as_array().unwrap().len(), 1);
    assert!(report["people"][0]["categories"].as_array().unwrap().contains(&json!("user.contact.email")));
    assert!(!report.to_string().contains("arthur.holmwood"), "the report names people by id, not address");
    let drafts: Vec<_> =
        std::fs::read_dir(out.join("notifications")).unwrap().filter_map(Result::ok).collect();
    assert_eq!(drafts.len(), 1);
    let draft = std::fs::read_to_string(drafts[0].path()).unwrap();
    assert!(draft.starts_with("To: arthur.holmwood@example.com"), "{draft}");
    assert!(draft.contains("Which information: contact email, first name."), "{draft}");
    assert!(draft.contains("What happened: on "), "{draft}");
    let (ok, _) = tactful(dir.path(), &database, &["breach", "--out", out.to_str().unwrap()]);
    assert!(!ok, "a breach needs a key, a role or a window");
}

#[tokio::test]
async fn items_are_imported_all_or_nothing_and_a_running_server_learns_and_recommends() {
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    let database = dir.path().join("tactful.db");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": \"pan\", \"categories\": [\"kitchen\"]}\n{\"name\": \"no id\"}\n")
        .unwrap();
    let (ok, _) = tactful(dir.path(), &database, &["items", "import", bad.to_str().unwrap()]);
    assert!(!ok, "a file with a bad line is refused");
    let good = dir.path().join("items.jsonl");
    let lines: Vec<String> = (0..4)
        .map(|i| json!({"id": format!("pan-{i}"), "name": format!("Pan {i}"), "categories": ["kitchen"], "price": 2000 + i}).to_string())
        .collect();
    std::fs::write(&good, lines.join("\n")).unwrap();
    let (ok, out) = tactful(dir.path(), &database, &["items", "import", good.to_str().unwrap()]);
    assert!(ok && out.contains("imported 4 items"), "{out}");

    let server = Server::start(dir.path());
    let (_, key) = tactful(
        dir.path(),
        &database,
        &["api-keys", "create", "--role", "personalization", "--name", "recs"],
    );
    let key = key.trim().to_owned();
    let client = Client::new(server.base.clone());
    let (status, _) = client.get_with_key("/v1/items/pan-1", &key).await.unwrap();
    assert!(status.is_success());
    // Six people in the EU who permit personalization view pan-0 and pan-1.
    let events: Vec<Value> = (0..6)
        .flat_map(|person| {
            ["pan-0", "pan-1"].map(|item| {
                json!({"type": "track", "event": "Product Viewed", "userId": format!("cook-{person}"),
                       "messageId": format!("cook-{person}-{item}"), "properties": {"product_id": item},
                       "context": {"consent": {"categoryPreferences": {"Personalization": true}}}})
            })
        })
        .collect();
    send(&client, "wk_web_fernhill_demo", events).await;
    // The server's updater learns within seconds, without a restart.
    let answer = until(&client, "/v1/items/pan-0/similar?purpose=personalize.content&n=3", &key, |body| {
        body["items"][0]["reason"]["type"] == "similar_to"
    })
    .await;
    assert_eq!(answer["items"][0]["id"], "pan-1", "{answer}");
    drop(server);
    let (ok, out) = tactful(dir.path(), &database, &["model", "rebuild"]);
    assert!(ok && out.contains("6 people lend the model"), "{out}");
}

#[test]
fn insights_queries_spend_a_budget_that_outlives_the_process() {
    let dir = tempfile::tempdir().unwrap();
    write_catalog(dir.path());
    let database = dir.path().join("tactful.db");
    let now = tactful_app::now_millis();
    let (from, to) =
        (tactful_domain::segment::format_time(now - 86_400_000), tactful_domain::segment::format_time(now));
    let query = |epsilon: &str| {
        let args =
            ["insights", "query", "--dataset", "shop", "--metric", "events", "--group-by", "event,day"];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--from", from.as_str(), "--to", to.as_str(), "--epsilon", epsilon]);
        let output = Command::new(BINARY)
            .args(&args)
            .arg("--catalog")
            .arg(dir.path().join("tactful.toml"))
            .arg("--database")
            .arg(format!("sqlite:{}", database.display()))
            .arg("--master-key-file")
            .arg(dir.path().join("master.key"))
            .env_remove("TACTFUL_MASTER_KEY")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = query("4");
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["privacy"]["budget"]["remaining"], 6.0, "{answer}");
    // A new process, the same store: 6 left of the example's 10 per 30 days.
    let (ok, _, err) = query("7");
    assert!(!ok);
    assert!(err.contains("budget_exhausted") && err.contains("6 left"), "{err}");
    let (ok, _, err) = query("0");
    assert!(!ok && err.contains("epsilon must be a positive number"), "{err}");
}
