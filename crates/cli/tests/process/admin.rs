//! The admin commands as an operator runs them: audit verification, keys, receipts and the consent
//! export, a breach report, item imports and the insights budget.

use super::*;

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
        let mut event = [
            json!({"type": "identify", "userId": format!("reader-{reader}"), "messageId": format!("m-{reader}"),
                           "traits": {"email": format!("reader-{reader}@example.com")},
                           "context": {"consent": {"categoryPreferences": {"Email": true}}}}),
        ];
        tactful::client::signed_in(&mut event, web_secret());
        let body = Bytes::from(json!({"batch": event}).to_string());
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
    let mut event = [json!({"type": "identify", "userId": "reader-1", "messageId": "k-1",
                       "context": {"consent": {"categoryPreferences": {"Email": true, "Advertising": false}}}})];
    tactful::client::signed_in(&mut event, web_secret());
    let (status, _) = client
        .post("/v1/batch", "wk_web_fernhill_demo", Bytes::from(json!({"batch": event}).to_string()))
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
    assert!(said.contains("(signature and JWS)"), "{said}");
    // Another genuine JWS of the same key does not vouch for this receipt.
    let mut swapped = receipts["receipts"][0].clone();
    swapped["jws"] = receipts["receipts"][1]["jws"].clone();
    std::fs::write(&file, swapped.to_string()).unwrap();
    let (valid, said) = verify(&[file_arg]);
    assert!(!valid && said.contains("INVALID: the jws"), "{said}");
    std::fs::write(&file, receipts["receipts"][0].to_string()).unwrap();
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

    // Drafting opened Arthur's email: that is in his access log, by the operator.
    let server = Server::start(dir.path());
    let client = Client::new(server.base.clone());
    let (_, privacy) =
        tactful(dir.path(), &database, &["api-keys", "create", "--role", "privacy", "--name", "dpo"]);
    let (_, log) =
        client.get_with_key("/v1/subjects/user_id:arthur/access-log", privacy.trim()).await.unwrap();
    let log: Value = serde_json::from_slice(&log).unwrap();
    assert!(
        log["entries"].as_array().unwrap().iter().any(|entry| entry["actor"] == "cli"
            && entry["role"] == "operator"
            && entry["returned"] == json!(["user.contact.email"])),
        "{log}"
    );
    // A key that issued a link to Quincey's settings could have read everything of hers.
    let (_, linker) =
        tactful(dir.path(), &database, &["api-keys", "create", "--role", "requests", "--name", "linker"]);
    let (status, _) =
        client.post_with_key("/v1/subjects/user_id:quincey/link", linker.trim(), Bytes::new()).await.unwrap();
    assert!(status.is_success());
    drop(server);
    let (_, listed) = tactful(dir.path(), &database, &["api-keys", "list"]);
    let linker_id = listed
        .lines()
        .find(|line| line.contains("linker"))
        .and_then(|line| line.split_whitespace().next())
        .unwrap()
        .to_owned();
    let out = dir.path().join("breach-links");
    let (ok, said) =
        tactful(dir.path(), &database, &["breach", "--key", &linker_id, "--out", out.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(said.starts_with("1 people affected"), "{said}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert!(report["people"][0]["categories"].as_array().unwrap().len() > 5, "everything held: {report}");
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
    // The store a server would have made: a query reads one and never makes one up.
    let (made, _) = crate::tactful(
        dir.path(),
        &database,
        &["api-keys", "create", "--role", "analyst", "--name", "setup"],
    );
    assert!(made);
    let (ok, out, err) = query("4");
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["privacy"]["budget"]["remaining"], 6.0, "{answer}");
    // A new process, the same store: 6 left of the example's 10 per 30 days.
    let (ok, _, err) = query("7");
    assert!(!ok);
    assert!(err.contains("budget_exhausted") && err.contains("6 left"), "{err}");
    let (ok, _, err) = query("0");
    assert!(!ok && err.contains("epsilon 0 is out of range (allowed: 0.01 to 10)"), "{err}");
}
