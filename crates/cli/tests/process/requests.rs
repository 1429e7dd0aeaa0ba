//! Requests on a real server: a person exported then erased everywhere, and a server killed in the
//! middle of a delivery delivering again.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_exported_then_erased_everywhere_on_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, base) = Receiver::start(false).await;
    write_catalog_with_destination(dir.path(), &base);
    let database = dir.path().join("tactful.db");
    let server = Server::start(dir.path());
    let (_, key) =
        tactful(dir.path(), &database, &["api-keys", "create", "--role", "requests", "--name", "dpo"]);
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

    // The operator asks at the command line, which no role limits; the server carries it out.
    let (ok, said) = tactful(
        dir.path(),
        &database,
        &["requests", "create", "--type", "export", "--subject", "email:lucy.westenra@example.com"],
    );
    assert!(ok, "{said}");
    let export_id = said.trim().to_owned();
    assert!(export_id.starts_with("req_"), "{said}");
    let export =
        until(&client, &format!("/v1/requests/{export_id}"), &key, |view| view["status"] == "completed")
            .await;
    assert_eq!(export["source"], "cli");
    assert_eq!(export["type"], "export");

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
        json!({"email": ["lucy.westenra@example.com"], "user_id": ["lucy-1"]})
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
        tactful(dir.path(), &database, &["api-keys", "create", "--role", "requests", "--name", "dpo"]);
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
