//! The storage conformance suite: every backend must pass every test here (one module per part of
//! the store). Each test runs on a temporary SQLite file, and on a fresh PostgreSQL database when
//! `TACTFUL_TEST_POSTGRES_URL` names a server where the test role may create databases. Without
//! that variable the PostgreSQL half says it was skipped; with `CI` set, it fails instead.

/// Runs each listed test on SQLite and on PostgreSQL, in `sqlite` and `postgres` modules of the
/// module that lists them.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(backend) = crate::postgres().await {
                        super::$test(backend).await;
                    }
                }
            )*
        }
    };
}

mod access;
mod analytics;
mod audit;
mod backups;
mod claims;
mod consent;
mod forwarding;
mod ingest;
mod limits;
mod linking;
mod model;
mod operations;
mod requests;
mod sessions;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;
use tactful_domain::consent::{gpc_signals, signals_from_context};
use tactful_domain::minimize::{self, Verdict};
use tactful_domain::policy::Policy;
use tactful_store::{IngestEvent, IngestOutcome, Options, Store, StoreError};
use tactful_vault::{MasterKey, Vault};

/// One backend under test: an opened store, and how to open the same database again.
struct Backend {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    policy: Arc<Policy>,
    url: String,
    master_hex: String,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    async fn reopen(&self) -> Result<tactful_store::Opened, StoreError> {
        tactful_store::open_with(&self.url, MasterKey::from_text(&self.master_hex).unwrap(), &options()).await
    }
}

fn options() -> Options {
    Options { pool_size: 8, connect_for: std::time::Duration::from_secs(5) }
}

async fn open_backend(url: String, dir: Option<tempfile::TempDir>) -> Backend {
    let master = MasterKey::generate();
    let master_hex = master.to_hex().to_string();
    let opened = tactful_store::open_with(&url, master, &options()).await.expect("open the store");
    let policy = Arc::new(Policy::new(Arc::new(conformance_catalog())));
    Backend { store: opened.store, vault: opened.vault, policy, url, master_hex, _dir: dir }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("conformance.db").display());
    open_backend(url, Some(dir)).await
}

/// A fresh database on the PostgreSQL server named by `TACTFUL_TEST_POSTGRES_URL`, or `None`
/// (saying so on the terminal) when there is none.
async fn postgres() -> Option<Backend> {
    let url = tactful_store::testing::fresh_postgres_database().await?;
    Some(open_backend(url, None).await)
}

// ------------------------------------------------------------------------------------------------
// Building events as the ingestion pipeline does.

const T0: i64 = 1_700_000_000_000;

/// The example catalog, with its sources in an opt-out jurisdiction so storage tests are not about
/// consent, plus an EU source for the tests that are.
fn conformance_catalog() -> Catalog {
    catalog_with("")
}

/// The conformance catalog with `more` appended (a section of the test's own). The example's merge
/// rules are left out: the suite checks the domain's linking as such, and the rules' own test
/// states its rules.
fn catalog_with(more: &str) -> Catalog {
    let text = Catalog::example_text()
        .replace("default_jurisdiction = \"eu\"", "default_jurisdiction = \"us-ca\"")
        .replace("[identity]\nmax_per_person = { user_id = 1, email = 5, phone = 3 }\n", "");
    let extra = "\n[sources.eu-web]\nkind = \"server\"\nwrite_key = \"wk_eu_web_12345\"\ndefault_jurisdiction = \"eu\"\n";
    Catalog::parse(&format!("{text}{extra}{more}"))
        .unwrap_or_else(|errors| panic!("{}", errors.render("test")))
}

/// A message as an SDK would send it, built up by the test, then taken through the real
/// validation, minimization and consent reading before it reaches the store.
struct Event {
    message: Value,
    source: &'static str,
    gpc: bool,
    /// A claim from a public write key without an identity token.
    unproven: bool,
}

fn iso(millis: i64) -> String {
    tactful_domain::segment::format_time(millis)
}

fn event(message_id: &str) -> Event {
    Event {
        message: json!({"type": "track", "event": "Product Viewed", "messageId": message_id, "timestamp": iso(T0),
                        "properties": {"product_id": "p1"}}),
        source: "web",
        gpc: false,
        unproven: false,
    }
}

impl Event {
    fn user(mut self, id: &str) -> Event {
        self.message["userId"] = json!(id);
        self
    }
    fn anonymous(mut self, id: &str) -> Event {
        self.message["anonymousId"] = json!(id);
        self
    }
    fn email(mut self, email: &str) -> Event {
        self.message["traits"]["email"] = json!(email);
        self
    }
    fn identify(mut self, traits: Value) -> Event {
        let object = self.message.as_object_mut().unwrap();
        object.insert("type".into(), json!("identify"));
        object.remove("event");
        object.remove("properties");
        for (key, value) in traits.as_object().unwrap() {
            self.message["traits"][key] = value.clone();
        }
        self
    }
    fn alias(mut self, previous: &str, user: &str) -> Event {
        let object = self.message.as_object_mut().unwrap();
        object.insert("type".into(), json!("alias"));
        object.remove("event");
        object.remove("properties");
        object.insert("previousId".into(), json!(previous));
        object.insert("userId".into(), json!(user));
        self
    }
    fn at(mut self, timestamp: i64) -> Event {
        self.message["timestamp"] = json!(iso(timestamp));
        self
    }
    /// Adds undeclared properties, which minimization drops and counts.
    fn dropping(mut self, paths: &[&str]) -> Event {
        for path in paths {
            let (root, field) = path.split_once('.').unwrap();
            self.message[root][field] = json!("undeclared");
        }
        self
    }
    fn from(mut self, source: &'static str) -> Event {
        self.source = source;
        self
    }
    fn consent(mut self, preferences: Value) -> Event {
        self.message["context"]["consent"]["categoryPreferences"] = preferences;
        self
    }
    fn gpc(mut self) -> Event {
        self.gpc = true;
        self
    }
    /// Sent with the public write key and no identity token: who it names is only claimed.
    fn unproven(mut self) -> Event {
        self.unproven = true;
        self
    }

    fn build(self, backend: &Backend) -> IngestEvent {
        let catalog = backend.policy.catalog();
        let source = catalog.source_by_key(self.source).expect("declared source");
        let raw = tactful_domain::segment::RawEvent {
            object: self.message.as_object().unwrap().clone(),
            write_key: None,
            implied_type: None,
        };
        // Received when it happened (an event's time is never after it arrived), or at T0.
        let received = self
            .message
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(tactful_domain::segment::parse_time)
            .map_or(T0, |time| time.max(T0));
        let message = tactful_domain::segment::validate(raw, received).expect("a valid message");
        let Verdict::Keep(minimized) = minimize::minimize(catalog, source, &message) else { panic!("kept") };
        let mut consent =
            signals_from_context(catalog, message.object.get("context")).expect("readable consent");
        if self.gpc {
            consent.extend(gpc_signals(catalog));
        }
        IngestEvent::from_message(
            catalog,
            &backend.vault,
            source,
            &message,
            minimized,
            consent,
            tactful_store::Arrival { at: T0, verified: !self.unproven },
        )
    }
}

async fn ingest(backend: &Backend, events: Vec<Event>) -> Vec<IngestOutcome> {
    let built = events.into_iter().map(|event| event.build(backend)).collect();
    backend.store.ingest(built, backend.policy.clone()).await.expect("ingest")
}

async fn subject_of(backend: &Backend, kind: &str, value: &str) -> Option<String> {
    backend.store.subject_by_identifier(backend.vault.blind(kind, value)).await.unwrap()
}

/// What is stored for a subject's family, decrypted: event records in order, profile by path, and
/// identifier values.
struct Opened {
    events: Vec<Value>,
    profile: Vec<(String, Value)>,
    identifiers: HashSet<(String, String)>,
}

async fn open_subject(backend: &Backend, subject: &str) -> Opened {
    let data = backend.store.subject_data(subject).await.unwrap().expect("subject exists");
    let vault = &backend.vault;
    Opened {
        events: data.open_events(vault).unwrap().into_iter().map(|event| event.record).collect(),
        profile: data
            .open_profile(vault)
            .unwrap()
            .into_iter()
            .map(|value| (value.path, value.value))
            .collect(),
        identifiers: data
            .open_identities(vault)
            .unwrap()
            .into_iter()
            .map(|identity| (identity.kind, identity.value.to_string()))
            .collect(),
    }
}

async fn first_name(backend: &Backend, subject: &str) -> Value {
    let opened = open_subject(backend, subject).await;
    opened
        .profile
        .into_iter()
        .find(|(path, _)| path == "traits.first_name")
        .map(|(_, value)| value)
        .unwrap_or_default()
}

/// One subject per user id, created by an event each.
async fn people(backend: &Backend, users: &[&str]) -> Vec<String> {
    let events = users.iter().map(|user| event(&format!("hello-{user}")).user(user)).collect();
    ingest(backend, events).await;
    let mut subjects = Vec::new();
    for user in users {
        subjects.push(subject_of(backend, "user_id", user).await.expect("a subject per user"));
    }
    subjects
}

fn stored_count(outcomes: &[IngestOutcome]) -> usize {
    outcomes.iter().filter(|outcome| matches!(outcome, IngestOutcome::Stored { .. })).count()
}
