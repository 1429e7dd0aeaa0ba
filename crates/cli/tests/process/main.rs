//! End-to-end tests on real server processes: `tactful serve` as an operator runs it, killed with
//! SIGKILL during sustained ingestion, and the catalog check and admin commands as a user runs them.

mod admin;
mod backup;
mod destinations;
mod operator;
mod requests;
mod startup;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tactful::client::Client;
use tactful_domain::catalog::Catalog;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_tactful");

/// A running `tactful serve` and the address it listens on.
pub(crate) struct Server {
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

pub(crate) fn write_catalog(dir: &Path) {
    std::fs::write(dir.join("tactful.toml"), Catalog::example_text()).unwrap();
}

/// The identity secret of the example shop's web source, which its backend signs tokens with.
pub(crate) fn web_secret() -> &'static str {
    tactful::demo::shop::Channel::Web.identity_secret().expect("the web source is public")
}

pub(crate) fn batch(client: usize, sequence: usize) -> Bytes {
    let mut events: Vec<Value> = (0..50)
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
    tactful::client::signed_in(&mut events, web_secret());
    Bytes::from(json!({"batch": events}).to_string())
}

/// `kill -9` during sustained ingestion loses no acknowledged event and leaves a consistent store.
/// Runs `tactful` with the database and master key of `dir`; returns exit success and stdout.
pub(crate) fn tactful(dir: &Path, database: &Path, args: &[&str]) -> (bool, String) {
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

/// A destination on loopback for process tests: records every request; until `hold_first` is
/// released it never answers its first request (so a server can be killed mid-call).
#[derive(Clone, Default)]
pub(crate) struct Receiver {
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

pub(crate) const DESTINATION_SECRET: &str = "whsec_process_0123456789";

/// The example catalog with one destination that hears about erasures.
pub(crate) fn write_catalog_with_destination(dir: &Path, receiver: &str) {
    let catalog = format!(
        "{}\n[destinations.crm]\nurl = \"{receiver}/hook\"\nsecret = \"{DESTINATION_SECRET}\"\nreceives = [\"erase\"]\nidentifiers = [\"email\", \"user_id\"]\n",
        Catalog::example_text()
    );
    std::fs::write(dir.join("tactful.toml"), catalog).unwrap();
}

/// GETs a brand API path until `done` holds for its answer (the server's workers run every second).
pub(crate) async fn until(client: &Client, path: &str, key: &str, done: impl Fn(&Value) -> bool) -> Value {
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

/// Sends events as the shop's pages do: from the web source, signed in (with the identity token of
/// their userId); from the order service as they are.
pub(crate) async fn send(client: &Client, write_key: &str, mut events: Vec<Value>) {
    if write_key == "wk_web_fernhill_demo" {
        tactful::client::signed_in(&mut events, web_secret());
    }
    let (status, answer) =
        client.post("/v1/batch", write_key, Bytes::from(json!({"batch": events}).to_string())).await.unwrap();
    assert!(status.is_success(), "{}", String::from_utf8_lossy(&answer));
}
