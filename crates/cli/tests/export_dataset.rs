//! `tactful export-dataset` as an operator runs it: the real binary against a database that received
//! events over HTTP, writing a CSV file (only once complete) or to standard output, and refusing an
//! undeclared purpose with a message that says what is declared.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use tactful::client::Client;
use tactful_app::{App, Config, now_millis};
use tactful_domain::catalog::Catalog;
use tactful_domain::segment::format_time;

const BINARY: &str = env!("CARGO_BIN_EXE_tactful");

/// Serves the example shop on `dir` in-process on port 0, sends a few people's events through
/// `POST /v1/batch`, and stops.
async fn shop_with_events(dir: &Path) {
    std::fs::write(dir.join("tactful.toml"), Catalog::example_text()).unwrap();
    let config = Config {
        database: format!("sqlite:{}", dir.join("tactful.db").display()),
        master_key_file: dir.join("master.key"),
        catalog: dir.join("tactful.toml"),
        notifier: format!("file:{}", dir.join("notifications").display()),
        ..Config::default()
    };
    let catalog = tactful_app::load_catalog(&config.catalog).unwrap();
    let app = std::sync::Arc::new(App::open(&config, catalog).await.unwrap());
    let state = tactful_server::AppState::new(app, &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tactful_server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    // Californians (opt-out) and a Briton who agreed count for analytics; someone in the EU, where
    // the shop keeps personal data out of analytics altogether, does not.
    let people = [
        ("ca-1", "US", Some("CA"), true),
        ("ca-2", "US", Some("CA"), true),
        ("gb-1", "GB", None, true),
        ("de-1", "DE", None, true),
    ];
    let mut events = Vec::new();
    for (user, country, state, analytics) in people {
        let context = json!({"consent": {"categoryPreferences": {"Analytics": analytics}}});
        events.push(json!({"type": "identify", "userId": user, "messageId": format!("{user}-i"),
            "traits": {"email": format!("{user}@example.com"), "address": {"country": country, "state": state}},
            "context": context}));
        events.push(json!({"type": "track", "event": "Product Viewed", "userId": user, "messageId": format!("{user}-v"),
            "properties": {"product_id": "sku-1", "category": "shoes", "price": 47.5}, "context": context}));
    }
    // From the shop's signed-in pages: each event proves its person with the backend's token.
    let secret = tactful::demo::shop::Channel::Web.identity_secret().unwrap();
    tactful::client::signed_in(&mut events, secret);
    let body = bytes::Bytes::from(json!({ "batch": events }).to_string());
    let (status, answer) = Client::new(base).post("/v1/batch", "wk_web_fernhill_demo", body).await.unwrap();
    assert!(status.is_success(), "{}", String::from_utf8_lossy(&answer));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

fn export_dataset(dir: &Path, args: &[&str]) -> Output {
    let now = now_millis();
    let output = Command::new(BINARY)
        .arg("export-dataset")
        .args(["--from", &format_time(now - 86_400_000), "--to", &format_time(now + 1_000)])
        .args(args)
        .arg("--catalog")
        .arg(dir.join("tactful.toml"))
        .arg("--database")
        .arg(format!("sqlite:{}", dir.join("tactful.db").display()))
        .arg("--master-key-file")
        .arg(dir.join("master.key"))
        .env_remove("TACTFUL_MASTER_KEY")
        .output()
        .expect("run tactful export-dataset");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
    output
}

#[tokio::test]
async fn export_dataset_writes_a_pseudonymized_csv_and_refuses_an_undeclared_purpose() {
    let dir = tempfile::tempdir().unwrap();
    shop_with_events(dir.path()).await;

    let file = dir.path().join("shop.csv");
    let output = export_dataset(
        dir.path(),
        &["--purpose", "analytics.reporting", "--dataset", "shop", "--out", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("Exported 6 rows of 3 people for analytics.reporting (dataset shop)"),
        "{stderr}"
    );
    let csv = std::fs::read_to_string(&file).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "token,event,source,day,properties.category,context.timezone,properties.revenue,properties.price"
        )
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 6, "{csv}");
    // Each person's view, the price rounded as the dataset declares; their identify, with nothing.
    let views =
        rows.iter().filter(|row| row.contains(",Product Viewed,web,") && row.ends_with(",shoes,,,50"));
    assert_eq!(views.count(), 3, "{csv}");
    assert_eq!(rows.iter().filter(|row| row.contains(",identify,web,") && row.ends_with(",,,,")).count(), 3);
    for secret in ["ca-1", "gb-1", "de-1", "@example.com", "47.5"] {
        assert!(!csv.contains(secret), "{secret} in\n{csv}");
    }

    // Without a dataset, to standard output: every property that serves the purpose, uncoarsened.
    let output = export_dataset(dir.path(), &["--purpose", "analytics.reporting", "--out", "-"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let csv = String::from_utf8(output.stdout).unwrap();
    assert!(csv.starts_with("token,event,source,day,properties.product_id,"), "{csv}");
    assert!(csv.contains(",sku-1,") && csv.contains(",47.5,"), "{csv}");

    // A typo in the purpose fails, says what is declared, and leaves no file behind.
    let typo = dir.path().join("typo.csv");
    let output =
        export_dataset(dir.path(), &["--purpose", "analytics.reprting", "--out", typo.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("declares no purpose \"analytics.reprting\"")
            && stderr.contains("analytics.reporting"),
        "{stderr}"
    );
    assert!(!typo.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
