//! Starting and stopping real servers: a SIGKILL during ingestion loses nothing acknowledged, an
//! invalid catalog or an unreachable database is named, and two instances share one PostgreSQL.

use super::*;

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
    assert!(!String::from_utf8_lossy(&output.stderr).contains("note:"), "nothing to note");

    // A category spelled otherwise than items are stored is still valid, and the check says how it
    // is matched.
    let spelled = dir.path().join("spelled.toml");
    let text = Catalog::example_text().replacen(
        "sensitive_categories = [\"health\", \"pregnancy\"]",
        "sensitive_categories = [\"Health\", \"pregnancy\"]",
        1,
    );
    std::fs::write(&spelled, text).unwrap();
    let output = Command::new(BINARY).args(["catalog", "check"]).arg(&spelled).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.lines().any(|line| line.starts_with(&format!("{}:", spelled.display()))
            && line.ends_with(": note: sensitive category \"Health\" is matched as \"health\"")),
        "{stderr}"
    );
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

    // Nothing named and nothing to read: the example, said out loud (on a store made by a command
    // that may make one; `stats` only reads).
    let made = Command::new(BINARY)
        .current_dir(&empty)
        .args(["api-keys", "create", "--role", "support", "--name", "setup", "--database"])
        .arg(format!("sqlite:{}", database.display()))
        .arg("--master-key-file")
        .arg(dir.join("master.key"))
        .env_remove("TACTFUL_CATALOG")
        .env_remove("TACTFUL_CONFIG")
        .env_remove("TACTFUL_MASTER_KEY")
        .env_remove("TACTFUL_DATABASE")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
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
                // From signed-in pages: each event with a userId carries the backend's token.
                tactful::client::signed_in(&mut batch, web_secret());
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
