//! The in-process harness the HTTP test modules share: a server on a temporary database, requests
//! sent through `tower::ServiceExt::oneshot`, and what was stored read back decrypted.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::Value;
use tactful_app::{App, Config};
use tactful_domain::catalog::Catalog;
use tactful_server::AppState;
use tower::ServiceExt;

pub struct Harness {
    pub state: AppState,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// A server with `catalog` on SQLite in a temporary directory, or on PostgreSQL at `database`.
    pub async fn open(catalog: Catalog, max_inflight: usize, database: Option<String>) -> Harness {
        Harness::configured(catalog, max_inflight, database, |_| {}).await
    }

    /// Like [`Harness::open`], with settings changed by `configure`.
    pub async fn configured(
        catalog: Catalog,
        max_inflight: usize,
        database: Option<String>,
        configure: impl FnOnce(&mut Config),
    ) -> Harness {
        Harness::built(catalog, max_inflight, database, configure, None).await
    }

    /// Like [`Harness::open`], reading the time from a clock the test moves.
    pub async fn clocked(catalog: Catalog, clock: Arc<tactful_app::ManualClock>) -> Harness {
        Harness::built(catalog, 64, None, |_| {}, Some(clock)).await
    }

    async fn built(
        catalog: Catalog,
        max_inflight: usize,
        database: Option<String>,
        configure: impl FnOnce(&mut Config),
        clock: Option<Arc<tactful_app::ManualClock>>,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            database: database
                .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("tactful.db").display())),
            master_key_file: dir.path().join("master.key"),
            max_inflight,
            notifier: format!("file:{}", dir.path().join("notifications").display()),
            delivery_retry_base_ms: 1_000,
            ..Config::default()
        };
        configure(&mut config);
        let mut app = App::open(&config, catalog).await.unwrap();
        if let Some(clock) = clock {
            app = app.with_clock(clock);
        }
        let state = AppState::new(Arc::new(app), &config);
        Harness { state, dir }
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = tactful_server::router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, headers, body)
    }

    pub async fn subject_of(&self, kind: &str, value: &str) -> Option<String> {
        self.state.store.subject_by_identifier(self.state.vault.blind(kind, value)).await.unwrap()
    }

    /// Every stored record of a subject's family, decrypted: kind, name, timestamp, record.
    pub async fn records(&self, subject: &str) -> Vec<(String, Option<String>, i64, Value)> {
        let data = self.state.store.subject_data(subject).await.unwrap().expect("subject exists");
        data.open_events(&self.state.vault)
            .unwrap()
            .into_iter()
            .map(|event| (event.kind, event.name, event.timestamp, event.record))
            .collect()
    }

    /// A subject family's profile, decrypted, by path.
    pub async fn profile(&self, subject: &str) -> serde_json::Map<String, Value> {
        let data = self.state.store.subject_data(subject).await.unwrap().expect("subject exists");
        data.open_profile(&self.state.vault)
            .unwrap()
            .into_iter()
            .map(|value| (value.path, value.value))
            .collect()
    }

    pub async fn event_count(&self) -> u64 {
        self.state.store.stats().await.unwrap().events
    }

    /// The messages the file notifier wrote (verification codes), oldest first.
    pub fn notifications(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("notifications")) else { return Vec::new() };
        let mut files: Vec<_> = entries.filter_map(Result::ok).map(|entry| entry.path()).collect();
        files.sort();
        files.iter().map(|path| std::fs::read_to_string(path).unwrap()).collect()
    }

    /// Runs the worker's pass that sends sign-in codes waiting in the outbox; returns how many
    /// messages it took (sent or discarded).
    pub async fn send_codes(&self) -> usize {
        tactful_app::preferences::send_sign_in_codes(&self.state, self.state.now()).await.unwrap()
    }

    /// The SQLite database file and its WAL, as bytes.
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for name in ["tactful.db", "tactful.db-wal"] {
            if let Ok(content) = std::fs::read(self.dir.path().join(name)) {
                bytes.extend(content);
            }
        }
        bytes
    }
}

/// The identity token the example shop's backend gives a signed-in person's browser (its web
/// source's identity secret), proving events from that browser are `user`'s.
pub fn web_token(user: &str) -> String {
    tactful_domain::identity::token("idsec_fernhill_web_demo_replace_me", user)
}

/// HTTP Basic with a write key as user name, as SDKs send it.
pub fn basic(key: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
}

/// The scripts of `tests/js/`, run by Node.js with the third-party libraries its lock file installs
/// (`scripts/test` runs `npm ci` there).
pub struct NodeScripts {
    dir: std::path::PathBuf,
}

impl NodeScripts {
    /// `None`, saying the check was skipped, when Node.js or the packages are missing; under CI,
    /// which must run every check, that fails the test instead.
    pub fn ready() -> Option<NodeScripts> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
        let node = std::process::Command::new("node").arg("--version").output();
        if node.is_ok_and(|out| out.status.success())
            && dir.join("node_modules/jose").is_dir()
            && dir.join("node_modules/@segment/analytics-next").is_dir()
        {
            return Some(NodeScripts { dir });
        }
        assert!(std::env::var_os("CI").is_none(), "CI must run tests/js: run scripts/test");
        eprintln!("skipped the checks by third-party JavaScript: run scripts/test (npm ci in tests/js)");
        None
    }

    /// Runs `script` with `args`: whether it succeeded, and what it printed (stdout, then stderr).
    pub fn run(&self, script: &str, args: &[&std::path::Path]) -> (bool, String) {
        let out = std::process::Command::new("node")
            .arg(self.dir.join(script))
            .args(args)
            .output()
            .expect("node runs");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}
