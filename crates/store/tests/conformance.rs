//! The storage conformance suite: every backend must pass every test here. Each test runs on a
//! temporary SQLite file, and on a fresh PostgreSQL database when `TACTFUL_TEST_POSTGRES_URL` names
//! a server where the test role may create databases. Without that variable the PostgreSQL half says
//! it was skipped; with `CI` set, it fails instead.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tactful_domain::audit::{AuditEvent, CHECKPOINT_CONTEXT, Checkpoint, Verifier};
use tactful_domain::catalog::Catalog;
use tactful_domain::consent::{ConsentEvent, ConsentKind, ConsentMethod};
use tactful_domain::consent::{gpc_signals, signals_from_context};
use tactful_domain::minimize::{self, Verdict};
use tactful_domain::policy::Policy;
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_store::{
    ApiKeyRecord, Budget, DeliveryOutcome, DeliveryPayload, DeliveryStatus, FamilyActivity, FamilyKeys,
    IngestEvent, IngestOutcome, ItemRecord, LegalHold, ModelChange, NewRequest, Options, RequestRecord,
    RequestUpdate, Scan, ShredOutcome, ShredPlan, SignInCode, SpendOutcome, Store, StoreError, StoreTesting,
    Suppression, seal_context,
};
use tactful_vault::{MasterKey, MasterKeys, Vault};

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

/// Runs each listed test on SQLite and on PostgreSQL.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(backend) = super::postgres().await {
                        super::$test(backend).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    stores_sealed_data_and_reads_it_back,
    deduplicates_retries_in_and_across_batches,
    links_logins_aliases_and_emails_like_the_domain_says,
    a_shared_device_never_merges_two_known_people,
    keeps_the_newest_profile_value,
    counts_drops_across_batches,
    the_same_person_from_many_writers_is_one_subject,
    reopening_keeps_identifiers_findable_and_refuses_another_master_key,
    outbox_claims_never_overlap_and_leases_expire,
    periodic_jobs_run_once_per_period_across_instances,
    rotating_the_master_key_keeps_everything_readable,
    consent_on_an_event_counts_before_its_properties_are_judged,
    consents_recorded_through_the_api_come_with_receipts_and_audit_entries,
    lapsed_consents_are_found_by_family_until_their_expiry_is_recorded,
    the_audit_log_is_gapless_signed_and_verifiable_across_instances,
    api_keys_are_stored_hashed_and_revocable,
    requests_are_one_per_person_and_kind_and_only_move_forward,
    a_request_settles_once_every_destination_answered,
    shredding_makes_a_family_unreadable_unfindable_and_optionally_suppressed,
    retention_trims_then_deletes_what_outlived_its_declared_retention,
    rectification_restriction_and_paged_events,
    items_are_versioned_and_followed_by_version,
    contributions_are_followed_as_changes_in_version_order,
    ingestion_marks_subjects_dirty_until_a_clean_of_what_was_read,
    shredding_removes_contributions_and_dirty_marks,
    model_changes_are_seen_in_version_order_while_many_write,
    privacy_budgets_accumulate_refuse_whole_and_start_fresh_each_period,
    concurrent_spends_from_two_instances_never_exceed_the_limit,
    a_window_of_events_is_paged_once_each_by_family_without_the_erased,
    family_roots_activity_and_keys_answer_for_many_subjects_at_once,
    subject_states_answer_for_many_families_at_once_like_subject_state,
    sign_in_codes_work_once_within_their_time_and_tries,
);

// ------------------------------------------------------------------------------------------------
// Building events as the ingestion pipeline does.

const T0: i64 = 1_700_000_000_000;

/// The example catalog, with its sources in an opt-out jurisdiction so storage tests are not about
/// consent, plus an EU source for the tests that are.
fn conformance_catalog() -> Catalog {
    let text =
        Catalog::example_text().replace("default_jurisdiction = \"eu\"", "default_jurisdiction = \"us-ca\"");
    let extra = "\n[sources.eu-web]\nwrite_key = \"wk_eu_web_12345\"\ndefault_jurisdiction = \"eu\"\n";
    Catalog::parse(&format!("{text}{extra}")).expect("conformance catalog")
}

/// A message as an SDK would send it, built up by the test, then taken through the real
/// validation, minimization and consent reading before it reaches the store.
struct Event {
    message: Value,
    source: &'static str,
    gpc: bool,
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

    fn build(self, backend: &Backend) -> IngestEvent {
        let catalog = backend.policy.catalog();
        let source = catalog.source_by_key(self.source).expect("declared source");
        let raw = tactful_domain::segment::RawEvent {
            object: self.message.as_object().unwrap().clone(),
            write_key: None,
            implied_type: None,
        };
        let message = tactful_domain::segment::validate(raw, T0).expect("a valid message");
        let Verdict::Keep(minimized) = minimize::minimize(catalog, source, &message) else { panic!("kept") };
        let mut consent =
            signals_from_context(catalog, message.object.get("context")).expect("readable consent");
        if self.gpc {
            consent.extend(gpc_signals(catalog));
        }
        IngestEvent::from_message(catalog, &backend.vault, source, &message, minimized, consent, T0)
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

fn stored_count(outcomes: &[IngestOutcome]) -> usize {
    outcomes.iter().filter(|outcome| matches!(outcome, IngestOutcome::Stored { .. })).count()
}

// ------------------------------------------------------------------------------------------------
// The suite.

async fn stores_sealed_data_and_reads_it_back(backend: Backend) {
    let outcomes = ingest(
        &backend,
        vec![
            event("m1")
                .user("ada")
                .anonymous("a-1")
                .email("Ada@Example.com")
                .identify(json!({"email": "Ada@Example.com", "first_name": "Ada"})),
        ],
    )
    .await;
    let IngestOutcome::Stored { subject } = &outcomes[0] else { panic!("stored") };
    assert_eq!(subject_of(&backend, "user_id", "ada").await.as_ref(), Some(subject));
    assert_eq!(subject_of(&backend, "email", "ada@example.com").await.as_ref(), Some(subject));
    let opened = open_subject(&backend, subject).await;
    assert_eq!(opened.events, [json!({"traits": {"email": "Ada@Example.com", "first_name": "Ada"}})]);
    assert_eq!(
        opened.profile,
        [
            ("traits.email".to_owned(), json!("Ada@Example.com")),
            ("traits.first_name".to_owned(), json!("Ada"))
        ]
    );
    let expected: HashSet<(String, String)> =
        [("user_id", "ada"), ("anonymous_id", "a-1"), ("email", "ada@example.com")]
            .iter()
            .map(|(kind, value)| ((*kind).to_owned(), (*value).to_owned()))
            .collect();
    assert_eq!(opened.identifiers, expected);
    let stats = backend.store.stats().await.unwrap();
    assert_eq!((stats.subjects, stats.identities, stats.events, stats.profile_values), (1, 3, 1, 2));
    assert!(backend.store.subject_data("sub_nobody").await.unwrap().is_none());
    backend.store.ping().await.unwrap();
}

async fn deduplicates_retries_in_and_across_batches(backend: Backend) {
    let outcomes =
        ingest(&backend, vec![event("m1").user("u"), event("m1").user("u"), event("m2").user("u")]).await;
    assert_eq!(stored_count(&outcomes), 2);
    assert_eq!(outcomes[1], IngestOutcome::Duplicate);
    let again = ingest(&backend, vec![event("m2").user("u"), event("m3").user("u")]).await;
    assert_eq!(again[0], IngestOutcome::Duplicate);
    assert_eq!(stored_count(&again), 1);
    assert_eq!(backend.store.stats().await.unwrap().events, 3);
}

async fn links_logins_aliases_and_emails_like_the_domain_says(backend: Backend) {
    // Anonymous browsing, then a login in a later batch: the history follows.
    ingest(&backend, vec![event("a1").anonymous("device-1"), event("a2").anonymous("device-1")]).await;
    ingest(&backend, vec![event("a3").user("alice").anonymous("device-1")]).await;
    let alice = subject_of(&backend, "user_id", "alice").await.unwrap();
    assert_eq!(subject_of(&backend, "anonymous_id", "device-1").await.as_ref(), Some(&alice));
    assert_eq!(open_subject(&backend, &alice).await.events.len(), 3);

    // A known account logging in on a device with its own anonymous history: the histories merge.
    ingest(&backend, vec![event("b1").user("bob")]).await;
    ingest(&backend, vec![event("b2").anonymous("device-2"), event("b3").anonymous("device-2")]).await;
    let anonymous = subject_of(&backend, "anonymous_id", "device-2").await.unwrap();
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    assert_ne!(anonymous, bob);
    ingest(&backend, vec![event("b4").user("bob").anonymous("device-2")]).await;
    assert_eq!(subject_of(&backend, "anonymous_id", "device-2").await.as_ref(), Some(&bob));
    let bob_data = open_subject(&backend, &bob).await;
    assert_eq!(bob_data.events.len(), 4, "bob's family holds his anonymous history");
    assert!(bob_data.identifiers.contains(&("anonymous_id".into(), "device-2".into())));
    // Asking for the merged subject answers for the whole family.
    assert_eq!(backend.store.subject_data(&anonymous).await.unwrap().unwrap().subject, bob);

    // The same within one batch.
    ingest(
        &backend,
        vec![
            event("c1").user("carol"),
            event("c2").anonymous("device-3"),
            event("c3").user("carol").anonymous("device-3"),
        ],
    )
    .await;
    let carol = subject_of(&backend, "user_id", "carol").await.unwrap();
    assert_eq!(subject_of(&backend, "anonymous_id", "device-3").await.as_ref(), Some(&carol));
    assert_eq!(open_subject(&backend, &carol).await.events.len(), 3);

    // An explicit alias merges even known people.
    ingest(&backend, vec![event("d1").user("dave-old"), event("d2").user("dave")]).await;
    ingest(&backend, vec![event("d3").alias("dave-old", "dave")]).await;
    let dave = subject_of(&backend, "user_id", "dave").await.unwrap();
    assert_eq!(subject_of(&backend, "user_id", "dave-old").await.as_ref(), Some(&dave));
    assert_eq!(open_subject(&backend, &dave).await.events.len(), 3);

    // An email given anonymously joins the account that later logs in with that device.
    ingest(&backend, vec![event("e1").anonymous("form-1").email("erin@example.com")]).await;
    let anonymous = subject_of(&backend, "email", "erin@example.com").await.unwrap();
    ingest(&backend, vec![event("e2").user("erin").anonymous("form-1")]).await;
    assert_eq!(subject_of(&backend, "user_id", "erin").await, Some(anonymous));

    let stats = backend.store.stats().await.unwrap();
    assert_eq!(stats.subjects, 5, "alice, bob, carol, dave, erin");
}

async fn a_shared_device_never_merges_two_known_people(backend: Backend) {
    ingest(&backend, vec![event("1").user("alice").anonymous("shared")]).await;
    ingest(&backend, vec![event("2").user("bob").anonymous("shared")]).await;
    let alice = subject_of(&backend, "user_id", "alice").await.unwrap();
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    assert_ne!(alice, bob);
    assert_eq!(subject_of(&backend, "anonymous_id", "shared").await.as_ref(), Some(&bob), "the device moved");
    assert_eq!(open_subject(&backend, &alice).await.events.len(), 1);
    assert_eq!(open_subject(&backend, &bob).await.events.len(), 1);
    assert!(
        !open_subject(&backend, &alice).await.identifiers.contains(&("anonymous_id".into(), "shared".into()))
    );
}

async fn keeps_the_newest_profile_value(backend: Backend) {
    ingest(&backend, vec![event("new").user("u").identify(json!({"first_name": "Newer"})).at(T0 + 10_000)])
        .await;
    ingest(&backend, vec![event("old").user("u").identify(json!({"first_name": "Older"})).at(T0)]).await;
    let subject = subject_of(&backend, "user_id", "u").await.unwrap();
    assert_eq!(
        open_subject(&backend, &subject).await.profile,
        [("traits.first_name".to_owned(), json!("Newer"))]
    );
    // Within one batch too.
    ingest(
        &backend,
        vec![
            event("b-new").user("v").identify(json!({"first_name": "Later"})).at(T0 + 5),
            event("b-old").user("v").identify(json!({"first_name": "Earlier"})).at(T0),
        ],
    )
    .await;
    let subject = subject_of(&backend, "user_id", "v").await.unwrap();
    assert_eq!(
        open_subject(&backend, &subject).await.profile,
        [("traits.first_name".to_owned(), json!("Later"))]
    );
}

async fn counts_drops_across_batches(backend: Backend) {
    ingest(
        &backend,
        vec![
            event("1").user("u").dropping(&["properties.coupon", "context.os"]),
            event("2").user("u").dropping(&["properties.coupon"]),
        ],
    )
    .await;
    ingest(&backend, vec![event("3").user("u").dropping(&["properties.coupon"])]).await;
    // A duplicate's drops were counted with the original.
    ingest(&backend, vec![event("3").user("u").dropping(&["properties.coupon"])]).await;
    let counts: Vec<(String, String, u64)> = backend
        .store
        .drop_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|count| (count.source, count.path, count.count))
        .collect();
    assert_eq!(
        counts,
        [("web".into(), "properties.coupon".into(), 3), ("web".into(), "context.os".into(), 1)]
    );
}

/// Many writers at once (tasks here; on PostgreSQL also a second pool, as a second instance would
/// have) send the same new person with different devices: one subject, every device linked, every
/// event stored once.
async fn the_same_person_from_many_writers_is_one_subject(backend: Backend) {
    let second = backend.reopen().await.unwrap();
    let stores = [backend.store.clone(), second.store.clone()];
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let store = stores[writer % 2].clone();
        let events = vec![
            event(&format!("w{writer}-1")).anonymous(&format!("device-{writer}")).build(&backend),
            event(&format!("w{writer}-2")).user("zoe").anonymous(&format!("device-{writer}")).build(&backend),
            event(&format!("shared-{}", writer % 4)).user("zoe").build(&backend),
        ];
        let policy = backend.policy.clone();
        tasks.push(tokio::spawn(async move { store.ingest(events, policy).await }));
    }
    let mut stored = 0;
    for task in tasks {
        stored += stored_count(&task.await.unwrap().expect("every writer succeeds"));
    }
    assert_eq!(stored, 16 * 2 + 4, "each event once; the four shared messageIds once each");
    let zoe = subject_of(&backend, "user_id", "zoe").await.unwrap();
    for writer in 0..16 {
        let device = subject_of(&backend, "anonymous_id", &format!("device-{writer}")).await.unwrap();
        let root = backend.store.subject_data(&device).await.unwrap().unwrap().subject;
        assert_eq!(root, zoe, "device-{writer} belongs to zoe's family");
    }
    assert_eq!(open_subject(&backend, &zoe).await.events.len(), 36);
    assert_eq!(backend.store.stats().await.unwrap().subjects, 1);
}

async fn reopening_keeps_identifiers_findable_and_refuses_another_master_key(backend: Backend) {
    ingest(&backend, vec![event("1").user("ada").email("ada@example.com")]).await;
    let reopened = backend.reopen().await.unwrap();
    let blind = reopened.vault.blind("email", "ada@example.com");
    assert!(reopened.store.subject_by_identifier(blind).await.unwrap().is_some());
    match tactful_store::open_with(&backend.url, MasterKey::generate(), &options()).await {
        Err(StoreError::Vault(error)) => assert!(error.to_string().contains("master key"), "{error}"),
        Err(other) => panic!("expected a master-key error, got {other}"),
        Ok(_) => panic!("another master key must be refused"),
    }
}

async fn outbox_claims_never_overlap_and_leases_expire(backend: Backend) {
    let store = &backend.store;
    for index in 0..40 {
        store.outbox_enqueue("erase", format!("message {index}").into_bytes(), T0 + index).await.unwrap();
    }
    store.outbox_enqueue("consent", b"other topic".to_vec(), T0).await.unwrap();
    // Two instances claim at once, repeatedly: every message is claimed exactly once.
    let second = backend.reopen().await.unwrap().store;
    let claimers = [store.clone(), second].map(|claimer| {
        tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let batch = claimer.outbox_claim("erase", 3, T0 + 1_000, 60_000).await.unwrap();
                if batch.is_empty() {
                    break claimed;
                }
                claimed.extend(batch.into_iter().map(|message| message.id));
            }
        })
    });
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (40, 40), "each message claimed once");
    // Leased messages are not claimed again until the lease ends; then they are, counted.
    assert!(store.outbox_claim("erase", 100, T0 + 30_000, 60_000).await.unwrap().is_empty());
    let again = store.outbox_claim("erase", 100, T0 + 61_000, 60_000).await.unwrap();
    assert_eq!(again.len(), 40);
    assert!(again.iter().all(|message| message.attempts == 2));
    // Completed messages are gone; retried ones come back when due.
    store.outbox_complete(&again[0].id).await.unwrap();
    store.outbox_retry(&again[1].id, T0 + 500_000, "HTTP 503").await.unwrap();
    let later = store.outbox_claim("erase", 100, T0 + 200_000, 60_000).await.unwrap();
    assert_eq!(later.len(), 38, "not the completed one, not the one retried later");
    for message in &later {
        store.outbox_complete(&message.id).await.unwrap();
    }
    let retried = store.outbox_claim("erase", 100, T0 + 500_000, 60_000).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].id, again[1].id);
    assert_eq!(retried[0].payload, again[1].payload);
    // Topics are separate queues.
    assert_eq!(store.outbox_claim("consent", 10, T0, 1_000).await.unwrap().len(), 1);
}

async fn periodic_jobs_run_once_per_period_across_instances(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let (first, second) = (backend.store.clone(), second);
    let hour = 3_600_000;
    // Both instances find the job due at once: exactly one runs it.
    let (a, b) = tokio::join!(
        first.job_claim("retention", "a", T0, hour, 60_000),
        second.job_claim("retention", "b", T0, hour, 60_000)
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one instance runs the job");
    // Not again within the period, even after the run released its lease.
    first.job_release("retention", "a").await.unwrap();
    second.job_release("retention", "b").await.unwrap();
    assert!(!first.job_claim("retention", "a", T0 + hour / 2, hour, 60_000).await.unwrap());
    assert!(!second.job_claim("retention", "b", T0 + hour / 2, hour, 60_000).await.unwrap());
    // Due again after the period.
    assert!(second.job_claim("retention", "b", T0 + hour, hour, 60_000).await.unwrap());
    // A run that outlasts its period is not overlapped: its lease holds the job until it ends (or
    // until the lease runs out, if the instance died).
    let minute = 60_000;
    assert!(first.job_claim("slow", "a", T0, minute, 10 * minute).await.unwrap());
    assert!(!second.job_claim("slow", "b", T0 + 2 * minute, minute, 10 * minute).await.unwrap());
    assert!(second.job_claim("slow", "b", T0 + 10 * minute, minute, 10 * minute).await.unwrap());
    // Jobs are independent.
    assert!(first.job_claim("wal-truncate", "a", T0, hour, 60_000).await.unwrap());
}

/// A rotation as operators run it: instances get the new key with the old one as previous, the
/// rewrap runs in pages while they keep writing, then the old key goes.
async fn rotating_the_master_key_keeps_everything_readable(backend: Backend) {
    ingest(
        &backend,
        vec![event("1").user("ada").email("ada@example.com").identify(json!({"first_name": "Ada"}))],
    )
    .await;
    let new_hex = MasterKey::generate().to_hex().to_string();
    let keys = |current: &str, previous: Option<&str>| MasterKeys {
        current: MasterKey::from_text(current).unwrap(),
        previous: previous.into_iter().map(|text| MasterKey::from_text(text).unwrap()).collect(),
    };
    let during =
        tactful_store::open_with(&backend.url, keys(&new_hex, Some(&backend.master_hex)), &options())
            .await
            .unwrap();
    let during = Backend {
        store: during.store,
        vault: during.vault,
        policy: backend.policy.clone(),
        url: backend.url.clone(),
        master_hex: new_hex.clone(),
        _dir: None,
    };
    ingest(&during, vec![event("2").user("bea").identify(json!({"first_name": "Bea"}))]).await;
    let ada = subject_of(&during, "user_id", "ada").await.unwrap();
    assert_eq!(first_name(&during, &ada).await, json!("Ada"), "old keys still open during the rotation");

    let (mut cursor, mut rewrapped, mut pages) = (None, 0, 0);
    loop {
        let batch = during.store.rewrap_keys(cursor, 1).await.unwrap();
        rewrapped += batch.rewrapped;
        pages += 1;
        cursor = batch.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(rewrapped, 1, "only ada's key was under the old master key");
    assert!(pages >= 2, "the rotation pages through subjects");

    let after = tactful_store::open_with(&backend.url, keys(&new_hex, None), &options()).await.unwrap();
    let after = Backend {
        store: after.store,
        vault: after.vault,
        policy: backend.policy.clone(),
        url: backend.url.clone(),
        master_hex: new_hex,
        _dir: None,
    };
    let ada = subject_of(&after, "user_id", "ada").await.expect("blind indexes survive the rotation");
    assert_eq!(first_name(&after, &ada).await, json!("Ada"));
    let bea = subject_of(&after, "user_id", "bea").await.unwrap();
    assert_eq!(first_name(&after, &bea).await, json!("Bea"));
    match tactful_store::open_with(
        &backend.url,
        MasterKey::from_text(&backend.master_hex).unwrap(),
        &options(),
    )
    .await
    {
        Err(StoreError::Vault(tactful_vault::VaultError::WrongMasterKey { .. })) => {}
        Err(other) => panic!("expected WrongMasterKey, got {other}"),
        Ok(_) => panic!("the retired key must no longer open the database"),
    }
}

/// The event's own consent is applied first; what no permitted purpose covers is never stored, but
/// counted.
async fn consent_on_an_event_counts_before_its_properties_are_judged(backend: Backend) {
    // An EU person with no consent: the product they viewed serves only consent-based purposes.
    ingest(&backend, vec![event("1").user("eve").from("eu-web")]).await;
    let eve = subject_of(&backend, "user_id", "eve").await.unwrap();
    assert_eq!(
        open_subject(&backend, &eve).await.events,
        [json!({})],
        "the event is kept, its product is not"
    );
    let counts = backend.store.drop_counts().await.unwrap();
    assert!(
        counts
            .iter()
            .any(|count| count.path == "properties.product_id" && count.reason.as_str() == "not_permitted")
    );

    // The same person accepts personalization on the banner: that event's product is stored.
    ingest(&backend, vec![event("2").user("eve").from("eu-web").consent(json!({"Personalization": true}))])
        .await;
    let opened = open_subject(&backend, &eve).await;
    assert!(opened.events.contains(&json!({"properties": {"product_id": "p1"}})), "{:?}", opened.events);
    assert_eq!(opened.events.len(), 2);
    let state = backend.store.subject_state(&eve).await.unwrap().unwrap();
    assert_eq!(state.jurisdiction.as_deref(), Some("eu"));
    assert_eq!(state.ledger.len(), 1);
    assert_eq!(state.ledger[0].purpose, "personalize.content");
    assert_eq!(backend.store.receipts(&eve).await.unwrap().len(), 1, "the change has a receipt");

    // Banners repeat their choices on every event; only changes enter the ledger.
    ingest(&backend, vec![event("3").user("eve").from("eu-web").consent(json!({"Personalization": true}))])
        .await;
    assert_eq!(backend.store.subject_state(&eve).await.unwrap().unwrap().ledger.len(), 1);

    // GPC on a Californian: sale and sharing are withdrawn once, and recorded as GPC.
    ingest(&backend, vec![event("4").user("cal").gpc(), event("5").user("cal").gpc()]).await;
    let cal = subject_of(&backend, "user_id", "cal").await.unwrap();
    let state = backend.store.subject_state(&cal).await.unwrap().unwrap();
    assert_eq!(state.jurisdiction.as_deref(), Some("us-ca"));
    assert_eq!(state.ledger.len(), 1);
    assert_eq!(state.ledger[0].method, tactful_domain::consent::ConsentMethod::Gpc);
    // Its audit entries name the subject by pseudonym only.
    let entries = backend.store.audit_for_subject(&backend.vault.subject_pseudonym(&cal), 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert!(!entries[0].text.contains(&cal) && !entries[0].text.contains("cal\""));
}

async fn consents_recorded_through_the_api_come_with_receipts_and_audit_entries(backend: Backend) {
    ingest(&backend, vec![event("1").user("ann").email("ann@example.com")]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let consent = |id: &str, kind, at| ConsentEvent {
        id: id.into(),
        purpose: "marketing.communications.email".into(),
        kind,
        method: ConsentMethod::Api,
        at,
        expires_at: None,
        version: 1,
        source: Some("api".into()),
        jurisdiction: None,
    };
    let audit = |id: &str| AuditEvent::Consent {
        subject: backend.vault.subject_pseudonym(&ann),
        purpose: "marketing.communications.email".into(),
        change: ConsentKind::Given,
        method: ConsentMethod::Api,
        version: 1,
        receipt: id.into(),
        source: None,
    };
    backend
        .store
        .record_consents(
            &ann,
            vec![(consent("cr_a", ConsentKind::Given, T0), "{\"receipt\":1}".into())],
            vec![audit("cr_a")],
            Vec::new(),
        )
        .await
        .unwrap();
    backend
        .store
        .record_consents(
            &ann,
            vec![(consent("cr_b", ConsentKind::Withdrawn, T0 + 5), "{\"receipt\":2}".into())],
            vec![audit("cr_b")],
            Vec::new(),
        )
        .await
        .unwrap();
    let state = backend.store.subject_state(&ann).await.unwrap().unwrap();
    assert_eq!(state.ledger.iter().map(|event| event.id.as_str()).collect::<Vec<_>>(), ["cr_a", "cr_b"]);
    assert_eq!(
        state.consents().status("marketing.communications.email", 1, T0 + 10),
        tactful_domain::consent::Status::Withdrawn
    );
    let receipt = backend.store.receipt("cr_b").await.unwrap().unwrap();
    assert_eq!((receipt.subject.as_str(), receipt.body.as_str()), (ann.as_str(), "{\"receipt\":2}"));
    assert!(backend.store.receipt("cr_nope").await.unwrap().is_none());
    let ledger = backend.store.consent_ledger(None, 10).await.unwrap();
    assert_eq!(ledger.len(), 2);
    let next = backend
        .store
        .consent_ledger(Some((ledger[0].event.at, ledger[0].event.id.clone())), 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1, "the export pages by (time, id)");
    assert_eq!(next[0].event.id, "cr_b");
    assert_eq!(backend.store.audit_entries(0, 100).await.unwrap().len(), 2);
}

async fn lapsed_consents_are_found_by_family_until_their_expiry_is_recorded(backend: Backend) {
    const EMAIL: &str = "marketing.communications.email";
    ingest(&backend, vec![event("1").user("bea").anonymous("dev-1"), event("2").anonymous("dev-2")]).await;
    ingest(&backend, vec![event("3").user("cal")]).await;
    let (bea, device, cal) = (
        subject_of(&backend, "user_id", "bea").await.unwrap(),
        subject_of(&backend, "anonymous_id", "dev-2").await.unwrap(),
        subject_of(&backend, "user_id", "cal").await.unwrap(),
    );
    let consent = |id: &str, kind, at, expires_at| ConsentEvent {
        id: id.into(),
        purpose: EMAIL.into(),
        kind,
        method: ConsentMethod::Explicit,
        at,
        expires_at,
        version: 1,
        source: Some("api".into()),
        jurisdiction: None,
    };
    let record = |subject: String, event: ConsentEvent| {
        let store = backend.store.clone();
        async move {
            store.record_consents(&subject, vec![(event, "{}".into())], Vec::new(), Vec::new()).await.unwrap()
        }
    };
    // Given on a device with an expiry, then the device turns out to be Bea's, who gave it again
    // later without one: the family's latest word has no expiry.
    record(device.clone(), consent("cr_device", ConsentKind::Given, T0, Some(T0 + 100))).await;
    ingest(&backend, vec![event("4").user("bea").anonymous("dev-2")]).await;
    assert_eq!(subject_of(&backend, "anonymous_id", "dev-2").await.as_deref(), Some(bea.as_str()));
    record(bea.clone(), consent("cr_bea", ConsentKind::Given, T0 + 50, None)).await;
    // Cal's lapses.
    record(cal.clone(), consent("cr_cal", ConsentKind::Renewed, T0, Some(T0 + 100))).await;

    assert!(backend.store.lapsed_consents(T0 + 99, 10).await.unwrap().is_empty(), "not yet");
    let lapsed = backend.store.lapsed_consents(T0 + 100, 10).await.unwrap();
    assert_eq!(lapsed.len(), 1, "{lapsed:?}");
    assert_eq!((lapsed[0].subject.as_str(), lapsed[0].event.id.as_str()), (cal.as_str(), "cr_cal"));
    record(cal.clone(), consent("cr_cal_expired", ConsentKind::Expired, T0 + 100, None)).await;
    assert!(backend.store.lapsed_consents(T0 + 1_000, 10).await.unwrap().is_empty(), "recorded once");
}

/// Appends from two instances at once stay gapless, and the signed checkpoints verify.
async fn the_audit_log_is_gapless_signed_and_verifiable_across_instances(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let key = |index: usize| AuditEvent::KeyRevoked { key: format!("key_{index}") };
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = if writer % 2 == 0 { backend.store.clone() } else { second.clone() };
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for round in 0..5 {
                positions.extend(
                    store
                        .audit_append(vec![key(writer * 10 + round), key(writer * 10 + round + 100)], T0)
                        .await
                        .unwrap(),
                );
            }
            positions
        }));
    }
    let mut positions = Vec::new();
    for task in tasks {
        positions.extend(task.await.unwrap());
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=80).collect::<Vec<u64>>(), "positions are gapless and unique");
    let first = backend.store.audit_checkpoint(T0).await.unwrap().unwrap();
    assert_eq!(first.size, 80);
    assert_eq!(
        backend.store.audit_checkpoint(T0 + 1).await.unwrap().unwrap(),
        first,
        "an unchanged head is not signed again"
    );
    backend.store.audit_append(vec![key(999)], T0).await.unwrap();
    let second_checkpoint = second.audit_checkpoint(T0 + 2).await.unwrap().unwrap();
    assert_eq!(second_checkpoint.size, 81);
    let checkpoints = backend.store.audit_checkpoints().await.unwrap();
    assert_eq!(checkpoints.len(), 2);
    let public = tactful_vault::PublicKey(backend.vault.public_key().0);
    let mut verified = Vec::new();
    for checkpoint in &checkpoints {
        let root = checkpoint.root_hash().unwrap();
        use base64::Engine as _;
        let signature: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(&checkpoint.signature)
            .unwrap()
            .try_into()
            .unwrap();
        assert!(public.verify(
            CHECKPOINT_CONTEXT,
            &Checkpoint::message(checkpoint.size, &root, checkpoint.at),
            &signature
        ));
        verified.push((checkpoint.size, root, format!("stored {}", checkpoint.size)));
    }
    let mut verifier = Verifier::new(verified);
    for entry in backend.store.audit_entries(0, 1_000).await.unwrap() {
        verifier.entry(entry.seq, &entry.text, &entry.leaf);
    }
    let report = verifier.finish();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 81);
    assert_eq!(backend.store.audit_entries(80, 10).await.unwrap().len(), 1);
}

async fn api_keys_are_stored_hashed_and_revocable(backend: Backend) {
    let record = ApiKeyRecord {
        id: "key_test".into(),
        hash: [7u8; 32],
        name: "email tool".into(),
        role: "marketing".into(),
        created_at: T0,
        expires_at: Some(T0 + 1_000),
        revoked_at: None,
    };
    let created = AuditEvent::KeyCreated {
        key: "key_test".into(),
        name: "email tool".into(),
        role: "marketing".into(),
        expires_at: Some(T0 + 1_000),
    };
    backend.store.create_api_key(record.clone(), created).await.unwrap();
    assert_eq!(backend.store.api_key([7u8; 32]).await.unwrap(), Some(record.clone()));
    assert_eq!(backend.store.api_key([8u8; 32]).await.unwrap(), None);
    assert_eq!(backend.store.api_keys().await.unwrap(), [record]);
    let revoked = AuditEvent::KeyRevoked { key: "key_test".into() };
    assert!(backend.store.revoke_api_key("key_test", T0 + 5, revoked.clone()).await.unwrap());
    assert!(
        !backend.store.revoke_api_key("key_test", T0 + 6, revoked.clone()).await.unwrap(),
        "already revoked"
    );
    assert!(!backend.store.revoke_api_key("key_nope", T0 + 6, revoked).await.unwrap());
    assert_eq!(backend.store.api_key([7u8; 32]).await.unwrap().unwrap().revoked_at, Some(T0 + 5));
    let kinds: Vec<String> = backend
        .store
        .audit_entries(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.text).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["key_created", "key_revoked"]);
}

// ------------------------------------------------------------------------------------------------
// Schema versions: a newer tactful migrates an older database; an older tactful refuses a newer one.

#[tokio::test]
async fn sqlite_an_older_schema_is_migrated_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../src/sqlite/migrations/0001_foundation.sql")).unwrap();
        conn.execute_batch("PRAGMA user_version = 1; INSERT INTO subjects (id, wrapped_key, known, created_at) VALUES ('sub_old', x'00', 0, 0);").unwrap();
    }
    let url = format!("sqlite:{}", path.display());
    check_migrates_then_refuses(&url, async {
        rusqlite::Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    })
    .await;
}

#[tokio::test]
async fn postgres_an_older_schema_is_migrated_and_a_newer_one_refused() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE tactful_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
         INSERT INTO tactful_migrations VALUES (1, 0);",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(include_str!("../src/postgres/migrations/0001_foundation.sql"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO subjects (id, wrapped_key, known, created_at) VALUES ('sub_old', '\\x00', FALSE, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    check_migrates_then_refuses(&url, async {
        sqlx::raw_sql("INSERT INTO tactful_migrations VALUES (99, 0)").execute(&pool).await.unwrap();
    })
    .await;
}

/// Opens `url` (at schema version 1, holding one subject), then runs `make_newer` and opens again.
async fn check_migrates_then_refuses(url: &str, make_newer: impl std::future::Future<Output = ()>) {
    let opened = tactful_store::open_with(url, MasterKey::generate(), &options())
        .await
        .expect("an older schema migrates");
    assert_eq!(opened.store.stats().await.unwrap().subjects, 1, "existing data survives the migration");
    opened.store.outbox_enqueue("t", Vec::new(), T0).await.expect("the newer tables exist");
    drop(opened);
    make_newer.await;
    match tactful_store::open_with(url, MasterKey::generate(), &options()).await {
        Err(error @ StoreError::SchemaTooNew { found: 99, .. }) => {
            assert!(error.to_string().contains("run a newer tactful"), "{error}");
        }
        Err(other) => panic!("expected SchemaTooNew, got {other}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

// ------------------------------------------------------------------------------------------------
// Data-subject requests, erasure, deliveries and retention.

fn new_request(id: &str, subject: &str, kind: RequestKind) -> RequestRecord {
    RequestRecord {
        id: id.into(),
        subject: Some(subject.into()),
        kind,
        status: RequestStatus::Received,
        source: "api".into(),
        received_at: T0,
        due_at: T0 + 30 * 86_400_000,
        extension_reason: None,
        completed_at: None,
        details: json!({}),
        sealed: None,
        steps: Vec::new(),
        verification: None,
        verification_attempts: 0,
        verification_expires: None,
        lease_until: None,
        updated_at: T0,
    }
}

fn moving(from: RequestStatus, to: RequestStatus) -> RequestUpdate {
    RequestUpdate { expect: Some(from), status: Some(to), ..RequestUpdate::default() }
}

async fn requests_are_one_per_person_and_kind_and_only_move_forward(backend: Backend) {
    ingest(&backend, vec![event("1").user("ann"), event("2").user("bob")]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    let audit = |id: &str| vec![AuditEvent::KeyRevoked { key: id.into() }];
    assert_eq!(
        store.create_request(new_request("req_a", &ann, RequestKind::Access), audit("a")).await.unwrap(),
        NewRequest::Created
    );
    assert_eq!(
        store.create_request(new_request("req_a2", &ann, RequestKind::Access), audit("a2")).await.unwrap(),
        NewRequest::Duplicate("req_a".into()),
        "one open access request per person"
    );
    let mut erase = new_request("req_e", &ann, RequestKind::Erase);
    erase.received_at = T0 + 1;
    // A shorter deadline (California's and the EU's differ): the queue puts it first.
    erase.due_at = T0 + 20 * 86_400_000;
    assert_eq!(store.create_request(erase, Vec::new()).await.unwrap(), NewRequest::Created);
    let queue = |records: Vec<RequestRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(queue(store.open_requests(10).await.unwrap()), ["req_e", "req_a"], "soonest deadline first");
    assert_eq!(queue(store.open_requests(1).await.unwrap()), ["req_e"]);

    // Two workers: a claimed request is not claimed again until its lease ends.
    let claimed = store.claim_requests(T0 + 10, 1_000, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["req_a", "req_e"]);
    assert!(store.claim_requests(T0 + 500, 1_000, 10).await.unwrap().is_empty());
    assert_eq!(store.claim_requests(T0 + 1_010, 1_000, 10).await.unwrap().len(), 2, "leases end");

    assert!(
        store.update_request("req_a", moving(RequestStatus::Received, RequestStatus::Running)).await.unwrap()
    );
    assert!(
        !store
            .update_request("req_a", moving(RequestStatus::Received, RequestStatus::Running))
            .await
            .unwrap(),
        "a request that moved meanwhile is not moved again"
    );
    assert!(
        store.update_request("req_a", moving(RequestStatus::Running, RequestStatus::Received)).await.is_err(),
        "never backwards"
    );
    let step = RequestUpdate {
        expect: Some(RequestStatus::Running),
        step: Some("packaged".into()),
        extend_to: Some((T0 + 90 * 86_400_000, "many systems to search".into())),
        note: Some("extended".into()),
        ..RequestUpdate::default()
    };
    assert!(store.update_request("req_a", step).await.unwrap());
    assert!(
        store
            .update_request("req_a", moving(RequestStatus::Running, RequestStatus::Completed))
            .await
            .unwrap()
    );
    let view = store.request("req_a").await.unwrap().unwrap();
    assert_eq!(view.record.status, RequestStatus::Completed);
    assert!(view.record.completed_at.is_some());
    assert!(view.record.done("packaged"));
    assert_eq!(view.record.due_at, T0 + 90 * 86_400_000);
    assert_eq!(view.record.extension_reason.as_deref(), Some("many systems to search"));
    let statuses: Vec<(RequestStatus, &str)> =
        view.history.iter().map(|h| (h.status, h.note.as_str())).collect();
    assert_eq!(
        statuses,
        [
            (RequestStatus::Received, "received"),
            (RequestStatus::Running, "running"),
            (RequestStatus::Running, "extended"),
            (RequestStatus::Completed, "completed"),
        ]
    );
    // Finished, so a new access request may be made.
    assert_eq!(
        store.create_request(new_request("req_a3", &ann, RequestKind::Access), Vec::new()).await.unwrap(),
        NewRequest::Created
    );
    let listed: Vec<String> =
        store.requests(Some(&ann), 10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(
        queue(store.open_requests(10).await.unwrap()),
        ["req_e", "req_a3"],
        "a completed request leaves the queue"
    );
    assert!(store.requests(Some("sub_nobody"), 10).await.unwrap().is_empty());
    assert!(store.request("req_nope").await.unwrap().is_none());
    assert_eq!(store.audit_entries(0, 100).await.unwrap().len(), 1, "a refused duplicate writes nothing");
}

async fn a_request_settles_once_every_destination_answered(backend: Backend) {
    ingest(&backend, vec![event("1").user("ann")]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    let payload = |request: &str, destination: &str| DeliveryPayload {
        request: request.into(),
        destination: destination.into(),
        message: "restrict".into(),
        subject: ann.clone(),
        issued_at: T0,
        identifiers: Some([("user_id".to_owned(), "ann".to_owned())].into()),
        details: json!({}),
    };
    store.create_request(new_request("req_r", &ann, RequestKind::Restrict), Vec::new()).await.unwrap();
    store.update_request("req_r", moving(RequestStatus::Received, RequestStatus::Running)).await.unwrap();
    let deliveries = vec![
        payload("req_r", "crm").into_delivery(&backend.vault),
        payload("req_r", "ads").into_delivery(&backend.vault),
    ];
    store.enqueue_deliveries(deliveries.clone(), T0).await.unwrap();
    store.enqueue_deliveries(deliveries, T0).await.unwrap();
    store
        .update_request("req_r", moving(RequestStatus::Running, RequestStatus::WaitingOnDestinations))
        .await
        .unwrap();
    assert_eq!(
        store.request("req_r").await.unwrap().unwrap().record.status,
        RequestStatus::WaitingOnDestinations
    );

    let claimed = store.outbox_claim("delivery", 10, T0, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 2, "enqueued twice, written once");
    let opened: Vec<DeliveryPayload> =
        claimed.iter().map(|m| DeliveryPayload::open(&backend.vault, &m.payload).unwrap()).collect();
    let by = |destination: &str| {
        claimed.iter().zip(&opened).find(|(_, p)| p.destination == destination).unwrap().0.id.clone()
    };
    assert_eq!(
        opened[0].identifiers.as_ref().unwrap()["user_id"],
        "ann",
        "the payload opens with the outbox key"
    );

    let ack = DeliveryOutcome::Acknowledged { status_code: 204 };
    assert_eq!(store.record_delivery(&by("crm"), "req_r", "crm", ack.clone(), T0 + 1).await.unwrap(), None);
    let failed =
        DeliveryOutcome::Failed { status_code: Some(503), error: "busy".into(), retry_at: Some(T0 + 5_000) };
    assert_eq!(store.record_delivery(&by("ads"), "req_r", "ads", failed, T0 + 2).await.unwrap(), None);
    assert!(
        store.outbox_claim("delivery", 10, T0 + 4_999, 60_000).await.unwrap().is_empty(),
        "not before its retry time"
    );
    let again = store.outbox_claim("delivery", 10, T0 + 5_000, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    let gave_up =
        DeliveryOutcome::Failed { status_code: None, error: "connection refused".into(), retry_at: None };
    assert_eq!(
        store.record_delivery(&again[0].id, "req_r", "ads", gave_up, T0 + 5_001).await.unwrap(),
        Some(RequestStatus::PartiallyCompleted)
    );
    // A late duplicate (a worker whose lease ran out) changes nothing.
    assert_eq!(store.record_delivery(&again[0].id, "req_r", "ads", ack, T0 + 6_000).await.unwrap(), None);
    let view = store.request("req_r").await.unwrap().unwrap();
    assert_eq!(view.record.status, RequestStatus::PartiallyCompleted);
    let states: Vec<(&str, DeliveryStatus, u32)> =
        view.deliveries.iter().map(|d| (d.destination.as_str(), d.status, d.attempts)).collect();
    assert_eq!(states, [("ads", DeliveryStatus::GaveUp, 2), ("crm", DeliveryStatus::Acknowledged, 1)]);
    let attempts = store.delivery_attempts("req_r", "ads").await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), [Some(503), None]);
    assert!(
        store.outbox_claim("delivery", 10, T0 + 100_000, 60_000).await.unwrap().is_empty(),
        "nothing left to send"
    );

    // A request with nothing to deliver settles the moment it would wait.
    store.create_request(new_request("req_u", &ann, RequestKind::Unrestrict), Vec::new()).await.unwrap();
    store.update_request("req_u", moving(RequestStatus::Received, RequestStatus::Running)).await.unwrap();
    store
        .update_request("req_u", moving(RequestStatus::Running, RequestStatus::WaitingOnDestinations))
        .await
        .unwrap();
    assert_eq!(store.request("req_u").await.unwrap().unwrap().record.status, RequestStatus::Completed);
}

async fn shredding_makes_a_family_unreadable_unfindable_and_optionally_suppressed(backend: Backend) {
    ingest(
        &backend,
        vec![
            event("1").anonymous("dev-1").at(T0),
            event("2")
                .identify(json!({"email": "ann@example.com", "first_name": "Ann"}))
                .user("ann")
                .anonymous("dev-1")
                .at(T0 + 1),
            event("3").user("ann").at(T0 + 2),
        ],
    )
    .await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    let members = store.subject_data(&ann).await.unwrap().unwrap().keys.len();
    let held = LegalHold {
        id: "lh_1".into(),
        subject: ann.clone(),
        source: "web".into(),
        timestamp: T0,
        categories: vec!["user.behavior.purchase_history".into()],
        retain_until: T0 + 1_000,
        sealed: backend.vault.legal_hold_key().seal("legal_hold", &[b"lh_1"], b"{\"order_id\":\"FH-1\"}"),
    };
    store.hold(vec![held.clone(), held.clone()]).await.unwrap();

    // Events received after the holds were made must be looked at first.
    let plan = |held_through: i64, suppress: bool| ShredPlan {
        request: "req_e".into(),
        held_through,
        suppress,
        deliveries: Vec::new(),
        audit: Vec::new(),
    };
    assert!(matches!(store.shred(&ann, plan(0, true), T0).await.unwrap(), ShredOutcome::NewEvents { .. }));
    // An export being downloaded holds the erasure back.
    let mut export = new_request("req_x", &ann, RequestKind::Export);
    export.lease_until = Some(T0 + 60_000);
    store.create_request(export, Vec::new()).await.unwrap();
    assert_eq!(store.shred(&ann, plan(i64::MAX, true), T0).await.unwrap(), ShredOutcome::ExportInFlight);
    let release = RequestUpdate { lease_until: Some(None), ..RequestUpdate::default() };
    store.update_request("req_x", release).await.unwrap();

    let outcome = store.shred(&ann, plan(i64::MAX, true), T0).await.unwrap();
    let ShredOutcome::Shredded { members: shredded, identifiers, suppressed } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(shredded.len(), members);
    assert_eq!((identifiers, suppressed), (3, 3), "user_id, anonymous_id and email");
    assert_eq!(store.shred(&ann, plan(i64::MAX, true), T0).await.unwrap(), ShredOutcome::AlreadyErased);
    // The erasure's audit entry is in a log that stays whole and keeps growing.
    store.audit_append(vec![AuditEvent::KeyRevoked { key: "after".into() }], T0).await.unwrap();
    let report = tactful_store::audit::verify(store.as_ref(), &[backend.vault.public_key()], Vec::new())
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    let kinds: Vec<String> = store
        .audit_entries(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.text).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds.iter().filter(|kind| *kind == "erased").count(), 1, "{kinds:?}");

    // Unfindable and unreadable; what the law requires stays, readable only with the legal-hold key.
    assert_eq!(subject_of(&backend, "email", "ann@example.com").await, None);
    assert_eq!(subject_of(&backend, "user_id", "ann").await, None);
    assert!(store.subject_data(&ann).await.unwrap().is_none());
    assert!(store.subject_state(&ann).await.unwrap().is_none());
    assert!(store.receipts(&ann).await.unwrap().is_empty());
    let holds = store.legal_holds(&ann).await.unwrap();
    assert_eq!(holds, [held]);
    assert!(backend.vault.legal_hold_key().open("legal_hold", &[b"lh_1"], &holds[0].sealed).is_ok());
    assert_eq!(store.requests(Some(&ann), 10).await.unwrap().len(), 1, "requests outlive the erasure");

    // Suppressed: the same person's events are dropped at the door.
    assert_eq!(ingest(&backend, vec![event("4").user("ann")]).await, [IngestOutcome::Suppressed]);
    assert_eq!(subject_of(&backend, "user_id", "ann").await, None);
    // Lifted: they come back as someone new, with no link to the erased record.
    let blind = |kind: &str, value: &str| backend.vault.blind(kind, value);
    assert_eq!(
        store
            .unsuppress(
                vec![blind("user_id", "ann"), blind("email", "ann@example.com"), blind("user_id", "nobody")],
                Vec::new()
            )
            .await
            .unwrap(),
        2
    );
    ingest(&backend, vec![event("5").user("ann")]).await;
    let again = subject_of(&backend, "user_id", "ann").await.unwrap();
    assert_ne!(again, ann);
    assert_eq!(store.subject_data(&again).await.unwrap().unwrap().events.len(), 1);
    let added = store
        .suppress(
            vec![Suppression { blind: blind("email", "zed@example.com"), kind: "email".into() }],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(added, 1);

    // The rows go in the background.
    let before = store.stats().await.unwrap().events;
    let purged = store.purge_erased(2).await.unwrap();
    assert_eq!(purged.events, 2, "bounded batches");
    let rest = store.purge_erased(100).await.unwrap();
    assert_eq!(rest.events, 1);
    assert_eq!(rest.subjects as usize, members);
    assert_eq!(store.stats().await.unwrap().events, before - 3);
}

async fn retention_trims_then_deletes_what_outlived_its_declared_retention(backend: Backend) {
    let catalog = backend.policy.catalog().clone();
    let retention = |path: &str| catalog.property_by_path(path).unwrap().retention.as_millis();
    let (ip, product) = (retention("context.ip"), retention("properties.product_id"));
    let mut viewed = event("1").user("ann").at(T0);
    viewed.message["context"] = json!({"ip": "192.0.2.7"});
    ingest(&backend, vec![viewed, event("2").identify(json!({"first_name": "Ann"})).user("ann").at(T0)])
        .await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    store
        .hold(vec![LegalHold {
            id: "lh_1".into(),
            subject: ann.clone(),
            source: "web".into(),
            timestamp: T0,
            categories: Vec::new(),
            retain_until: T0 + ip,
            sealed: vec![1],
        }])
        .await
        .unwrap();

    assert!(
        store.apply_retention(&catalog, T0 + ip - 1, 100).await.unwrap().is_empty(),
        "nothing is due yet"
    );
    let report = store.apply_retention(&catalog, T0 + ip, 100).await.unwrap();
    assert_eq!((report.events_trimmed, report.legal_holds_deleted), (1, 1), "{report:?}");
    let opened = open_subject(&backend, &ann).await;
    let view = opened.events.iter().find(|record| record.get("properties").is_some()).unwrap();
    assert_eq!(view["properties"]["product_id"], "p1");
    assert!(view.get("context").is_none(), "the IP went at its retention: {view}");

    let first_name = retention("traits.first_name");
    let report = store.apply_retention(&catalog, T0 + product.max(first_name), 100).await.unwrap();
    assert_eq!(report.events_deleted, 2, "{report:?}");
    assert_eq!(report.profile_values_deleted, 1);
    assert!(store.subject_data(&ann).await.unwrap().unwrap().events.is_empty());
    let kinds: Vec<String> = store
        .audit_entries(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.text).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["retention", "retention"], "each pass that deleted something is audited");
}

async fn rectification_restriction_and_paged_events(backend: Backend) {
    ingest(&backend, (0..5).map(|index| event(&format!("e{index}")).user("ann").at(T0 + index)).collect())
        .await;
    ingest(&backend, vec![event("i").identify(json!({"first_name": "Anne"})).user("ann").at(T0)]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = &backend.store;
    store
        .set_profile_value(&ann, "traits.first_name", b"\"Ann\"".to_vec(), T0 + 10, Vec::new())
        .await
        .unwrap();
    assert_eq!(first_name(&backend, &ann).await, "Ann");
    store
        .set_restricted(&ann, true, vec![AuditEvent::KeyRevoked { key: "restricted".into() }])
        .await
        .unwrap();
    store.audit_append(vec![AuditEvent::KeyRevoked { key: "after".into() }], T0).await.unwrap();
    assert_eq!(store.audit_entries(0, 10).await.unwrap().len(), 2, "positions stay gapless");
    assert!(store.subject_state(&ann).await.unwrap().unwrap().restricted);
    store.set_restricted(&ann, false, Vec::new()).await.unwrap();
    assert!(!store.subject_state(&ann).await.unwrap().unwrap().restricted);

    ingest(&backend, vec![event("other").user("bob")]).await;
    let first = store.subject_ids(None, 1).await.unwrap();
    let rest = store.subject_ids(first.last().cloned(), 10).await.unwrap();
    assert_eq!(first.len() + rest.len(), 2, "paged, each subject once");
    assert!(first.iter().chain(&rest).any(|id| *id == ann));

    let summary = store.subject_summary(&ann).await.unwrap().unwrap();
    assert!(summary.events.is_empty() && !summary.profile.is_empty() && !summary.keys.is_empty());
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.events_page(&ann, after.clone(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.timestamp, last.source.clone(), last.dedupe));
        seen.extend(page.iter().map(|event| event.timestamp));
    }
    assert_eq!(seen.len(), 6);
    assert!(seen.windows(2).all(|pair| pair[0] <= pair[1]), "in time order: {seen:?}");
}

// ------------------------------------------------------------------------------------------------
// Personalization: the catalogue, the shared model's contributions, and dirty marks.

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

/// Changes as `(subject, version, sealed contribution)`.
fn changes_of(changes: &[ModelChange]) -> Vec<(String, i64, Option<Vec<u8>>)> {
    changes
        .iter()
        .map(|change| {
            (
                change.subject.clone(),
                change.version,
                change.contribution.as_ref().map(|(_, sealed)| sealed.clone()),
            )
        })
        .collect()
}

fn item(id: &str, price: Option<i64>) -> ItemRecord {
    ItemRecord {
        id: id.into(),
        name: format!("Item {id}"),
        categories: vec!["shoes".into(), "sale".into()],
        sensitive: false,
        available: true,
        price,
        attributes: json!({"url": format!("https://shop.example/{id}"), "image": {"w": 640, "alt": "élan"}}),
        updated_at: T0,
        version: 0,
    }
}

async fn items_are_versioned_and_followed_by_version(backend: Backend) {
    let store = &backend.store;
    assert_eq!(store.model_version().await.unwrap(), 0);
    assert_eq!(store.put_items(Vec::new(), T0).await.unwrap(), 0);
    let sensitive =
        ItemRecord { sensitive: true, categories: Vec::new(), attributes: json!({}), ..item("i3", Some(0)) };
    let last =
        store.put_items(vec![item("i1", Some(1999)), item("i2", None), sensitive.clone()], T0).await.unwrap();
    assert_eq!(store.model_version().await.unwrap(), last);
    // Read back as written, JSON and a missing price included, with the version the store gave it.
    assert_eq!(store.item("i2").await.unwrap(), Some(ItemRecord { version: last - 1, ..item("i2", None) }));
    assert_eq!(store.item("i3").await.unwrap(), Some(ItemRecord { version: last, ..sensitive }));
    assert_eq!(store.item("nothing").await.unwrap(), None);

    // An update moves the item after the others; a version given on input is ignored.
    let changed = ItemRecord {
        available: false,
        price: Some(1499),
        version: 1,
        updated_at: T0 + 5,
        ..item("i1", None)
    };
    let updated = store.put_items(vec![changed.clone()], T0 + 5).await.unwrap();
    assert!(updated > last);
    assert_eq!(store.item("i1").await.unwrap(), Some(ItemRecord { version: updated, ..changed }));

    // Paging by version, as an instance catching up does.
    let ids = |items: Vec<ItemRecord>| items.into_iter().map(|item| item.id).collect::<Vec<_>>();
    assert_eq!(ids(store.items_since(0, 2).await.unwrap()), ["i2", "i3"]);
    assert_eq!(ids(store.items_since(last, 2).await.unwrap()), ["i1"]);
    assert!(store.items_since(updated, 2).await.unwrap().is_empty());

    // An id twice in one call keeps its last record, at the call's last version.
    let twice = store.put_items(vec![item("i4", Some(1)), item("i4", Some(2))], T0).await.unwrap();
    assert_eq!(
        store.items_since(updated, 10).await.unwrap(),
        [ItemRecord { version: twice, ..item("i4", Some(2)) }]
    );
    assert_eq!(store.model_version().await.unwrap(), twice);
}

async fn contributions_are_followed_as_changes_in_version_order(backend: Backend) {
    let people = people(&backend, &["ada", "bob"]).await;
    let (ada, bob) = (people[0].clone(), people[1].clone());
    let store = &backend.store;
    assert_eq!(store.put_contributions(Vec::new(), Vec::new(), T0).await.unwrap(), 0);
    // Sealed by the caller under the subject's key; the store keeps the bytes it is given.
    let key =
        backend.vault.subject_key(&ada, &store.subject_data(&ada).await.unwrap().unwrap().keys[0].1).unwrap();
    let sealed = key.seal(seal_context::CONTRIBUTION, &seal_context::contribution(&ada), b"ada-1");
    let first = store
        .put_contributions(
            vec![(ada.clone(), sealed.clone()), (bob.clone(), b"bob-1".to_vec())],
            Vec::new(),
            T0,
        )
        .await
        .unwrap();
    let changes = store.model_changes(0, 10).await.unwrap();
    assert_eq!(
        changes_of(&changes),
        [(ada.clone(), first - 1, Some(sealed.clone())), (bob.clone(), first, Some(b"bob-1".to_vec()))]
    );
    // Each comes with its subject's wrapped key, which opens it.
    let (wrapped, contribution) = changes[0].contribution.clone().unwrap();
    let opened = backend.vault.subject_key(&ada, &wrapped).unwrap();
    assert_eq!(
        opened
            .open(seal_context::CONTRIBUTION, &seal_context::contribution(&ada), &contribution)
            .unwrap()
            .as_slice(),
        b"ada-1"
    );

    // Rewritten: once, at its new version, with its new contribution.
    let second =
        store.put_contributions(vec![(ada.clone(), b"ada-2".to_vec())], Vec::new(), T0).await.unwrap();
    assert!(second > first);
    assert_eq!(
        changes_of(&store.model_changes(0, 10).await.unwrap()),
        [(bob.clone(), first, Some(b"bob-1".to_vec())), (ada.clone(), second, Some(b"ada-2".to_vec()))]
    );
    assert_eq!(
        changes_of(&store.model_changes(first, 10).await.unwrap()),
        [(ada.clone(), second, Some(b"ada-2".to_vec()))]
    );

    // Removed: a change with nothing; removing someone with no contribution is still a change.
    let third = store.put_contributions(Vec::new(), vec![bob.clone(), "sub_never".into()], T0).await.unwrap();
    assert_eq!(
        changes_of(&store.model_changes(second, 10).await.unwrap()),
        [(bob.clone(), third - 1, None), ("sub_never".to_owned(), third, None)]
    );
    // Written then removed in one call ends up removed; a write for nobody keeps nothing.
    let fourth = store
        .put_contributions(
            vec![(ada.clone(), b"ada-3".to_vec()), ("sub_unknown".into(), b"x".to_vec())],
            vec![ada.clone()],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        changes_of(&store.model_changes(third, 10).await.unwrap()),
        [("sub_unknown".to_owned(), fourth - 1, None), (ada.clone(), fourth, None)]
    );
    assert!(store.model_changes(fourth, 10).await.unwrap().is_empty());
    assert_eq!(store.model_version().await.unwrap(), fourth);
    // Pages of changes are in version order.
    let page = store.model_changes(0, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0].version < page[1].version);
    assert_eq!(store.model_changes(page[1].version, 10).await.unwrap().len(), 2);
}

async fn ingestion_marks_subjects_dirty_until_a_clean_of_what_was_read(backend: Backend) {
    let store = &backend.store;
    assert!(store.model_dirty(10).await.unwrap().is_empty());
    ingest(&backend, vec![event("1").user("ada"), event("2").user("ada"), event("3").user("bob")]).await;
    let (ada, bob) = (
        subject_of(&backend, "user_id", "ada").await.unwrap(),
        subject_of(&backend, "user_id", "bob").await.unwrap(),
    );
    let marked =
        |marks: &[(String, i64)]| marks.iter().map(|(subject, _)| subject.clone()).collect::<Vec<_>>();
    let read = store.model_dirty(10).await.unwrap();
    let mut subjects = marked(&read);
    subjects.sort();
    let mut expected = vec![ada.clone(), bob.clone()];
    expected.sort();
    assert_eq!(subjects, expected, "each subject once");
    // A batch of nothing but duplicates is fine.
    assert_eq!(ingest(&backend, vec![event("1").user("ada")]).await, [IngestOutcome::Duplicate]);

    // Ada has a new event after the marks were read: cleaning what was read keeps her renewed mark.
    ingest(&backend, vec![event("4").user("ada")]).await;
    store.model_clean(read.clone()).await.unwrap();
    let left = store.model_dirty(10).await.unwrap();
    assert_eq!(marked(&left), [ada.as_str()]);
    let read_at = read.iter().find(|(subject, _)| *subject == ada).unwrap().1;
    assert!(left[0].1 > read_at);
    // Marking again with a clock behind still moves the mark forward.
    store.mark_model_dirty(vec![ada.clone(), ada.clone()], left[0].1 - 60_000).await.unwrap();
    let renewed = store.model_dirty(10).await.unwrap();
    assert!(renewed[0].1 > left[0].1, "{renewed:?} after {left:?}");
    store.model_clean(left).await.unwrap();
    assert_eq!(marked(&store.model_dirty(10).await.unwrap()), [ada.as_str()], "a stale clean keeps the mark");
    store.model_clean(renewed).await.unwrap();
    assert!(store.model_dirty(10).await.unwrap().is_empty());

    // Oldest mark first, at most `limit`.
    store.mark_model_dirty(vec!["sub_late".into()], T0 + 5).await.unwrap();
    store.mark_model_dirty(vec!["sub_early".into()], T0 + 1).await.unwrap();
    assert_eq!(store.mark_all_model_dirty(T0 + 10).await.unwrap(), 2);
    let all = store.model_dirty(10).await.unwrap();
    assert_eq!(marked(&all[..2]), ["sub_early", "sub_late"]);
    assert_eq!(all.len(), 4);
    assert_eq!(marked(&store.model_dirty(1).await.unwrap()), ["sub_early"]);
}

async fn shredding_removes_contributions_and_dirty_marks(backend: Backend) {
    ingest(
        &backend,
        vec![
            event("1").anonymous("dev-1"),
            event("2").user("ann").anonymous("dev-1").email("ann@example.com"),
        ],
    )
    .await;
    ingest(&backend, vec![event("3").user("bob")]).await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    let store = &backend.store;
    let written = store
        .put_contributions(
            vec![(ann.clone(), b"ann".to_vec()), (bob.clone(), b"bob".to_vec())],
            Vec::new(),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(store.model_dirty(10).await.unwrap().len(), 2);

    let plan = ShredPlan {
        request: "req_e".into(),
        held_through: i64::MAX,
        suppress: false,
        deliveries: Vec::new(),
        audit: Vec::new(),
    };
    let ShredOutcome::Shredded { members, .. } = store.shred(&ann, plan, T0).await.unwrap() else {
        panic!("shredded")
    };
    assert!(members.contains(&ann));
    let changes = store.model_changes(written, 10).await.unwrap();
    let mut removed: Vec<String> = changes.iter().map(|change| change.subject.clone()).collect();
    removed.sort();
    assert_eq!(removed, members, "every member's removal, each at its own version");
    assert!(changes.iter().all(|change| change.contribution.is_none() && change.version > written));
    assert_eq!(
        store.model_dirty(10).await.unwrap().iter().map(|(subject, _)| subject).collect::<Vec<_>>(),
        [&bob]
    );
    assert_eq!(store.mark_all_model_dirty(T0).await.unwrap(), 1, "erased subjects are not marked");

    // A contribution computed before the erasure and written after it keeps nothing.
    let late = store.put_contributions(vec![(ann.clone(), b"late".to_vec())], Vec::new(), T0).await.unwrap();
    assert_eq!(changes_of(&store.model_changes(late - 1, 10).await.unwrap()), [(ann.clone(), late, None)]);
    store.purge_erased(100).await.unwrap();
    let all = store.model_changes(0, 10).await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|change| change.contribution.is_some())
            .map(|change| &change.subject)
            .collect::<Vec<_>>(),
        [&bob]
    );
    assert_eq!(store.model_version().await.unwrap(), late, "the purge changes nothing readers see");
}

/// Writers on two instances (on PostgreSQL, two pools) and a reader following the changes. A
/// change that became visible below what the reader has already passed would be lost to it; so
/// after each poll the reader reads everything again and checks that whatever is at or below the
/// version it reached is exactly what it already has. It ends with everyone's final state.
async fn model_changes_are_seen_in_version_order_while_many_write(backend: Backend) {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 20;
    let users: Vec<String> = (0..WRITERS).map(|writer| format!("writer-{writer}")).collect();
    let subjects = people(&backend, &users.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let second = backend.reopen().await.unwrap();
    let stores = [backend.store.clone(), second.store.clone()];
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (writer, subject) in subjects.iter().enumerate() {
        let (store, subject, done) = (stores[writer % 2].clone(), subject.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                // Everyone also removes one shared subject now and then: the same row from many writers.
                let remove = if round % 4 == writer % 4 { vec!["sub_shared".to_owned()] } else { Vec::new() };
                let write = vec![(subject.clone(), format!("{writer}-{round}").into_bytes())];
                store.put_contributions(write, remove, T0).await.expect("every write succeeds");
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    // Per subject: the version and contribution of the latest change seen.
    let mut seen: std::collections::HashMap<String, (i64, Option<Vec<u8>>)> =
        std::collections::HashMap::new();
    let mut last = 0;
    let mut polls = 0_usize;
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
        let store = &stores[polls % 2];
        polls += 1;
        let changes = store.model_changes(last, 4).await.unwrap();
        for (subject, version, sealed) in changes_of(&changes) {
            assert!(version > last, "version {version} after {last}");
            last = version;
            seen.insert(subject, (version, sealed));
        }
        for (subject, version, sealed) in changes_of(&store.model_changes(0, 100).await.unwrap()) {
            if version <= last {
                assert_eq!(
                    seen.get(&subject),
                    Some(&(version, sealed)),
                    "a change at {version} appeared after {last}"
                );
            }
        }
        if changes.is_empty() {
            if finished {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (writer, subject) in subjects.iter().enumerate() {
        assert_eq!(seen[subject].1, Some(format!("{writer}-{}", ROUNDS - 1).into_bytes()));
    }
    assert_eq!(seen["sub_shared"].1, None);
    assert_eq!(seen.len(), WRITERS + 1);
    assert_eq!(last, backend.store.model_version().await.unwrap());
}

// ------------------------------------------------------------------------------------------------
// Private analytics: privacy budgets, windows of events, and many people's states at once.

/// One ε in millionths.
const EPSILON: i64 = 1_000_000;
const DAY: i64 = 86_400_000;

/// The audit event a test spend carries, named so the log shows which spends were recorded.
fn spend_entry(name: &str) -> Vec<AuditEvent> {
    vec![AuditEvent::KeyRevoked { key: name.into() }]
}

/// The names of the test spends in the audit log, in order.
async fn audited_spends(store: &dyn Store) -> Vec<String> {
    store
        .audit_entries(0, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|entry| serde_json::from_str::<Value>(&entry.text).unwrap()["key"].as_str().unwrap().to_owned())
        .collect()
}

async fn privacy_budgets_accumulate_refuse_whole_and_start_fresh_each_period(backend: Backend) {
    let store = &backend.store;
    let limit = 10 * EPSILON;
    let spend = |period: i64, epsilon: i64, limit: i64, name: &'static str| {
        let store = store.clone();
        async move { store.spend_budget("orders", period, epsilon, limit, spend_entry(name)).await.unwrap() }
    };
    let budget = |limit_micro, spent_micro| Budget { limit_micro, spent_micro };
    assert_eq!(store.budget("orders", T0, limit).await.unwrap(), budget(limit, 0), "nothing spent yet");

    assert_eq!(spend(T0, 3 * EPSILON, limit, "s1").await, SpendOutcome::Spent(budget(limit, 3 * EPSILON)));
    assert_eq!(spend(T0, 4_500_000, limit, "s2").await, SpendOutcome::Spent(budget(limit, 7_500_000)));
    // 7.5 + 3 > 10: refused whole, with what remains.
    let SpendOutcome::Refused(refused) = spend(T0, 3 * EPSILON, limit, "refused").await else {
        panic!("spending past the limit is refused")
    };
    assert_eq!((refused, refused.remaining_micro()), (budget(limit, 7_500_000), 2_500_000));
    assert_eq!(store.budget("orders", T0, limit).await.unwrap(), budget(limit, 7_500_000));
    assert_eq!(audited_spends(store.as_ref()).await, ["s1", "s2"], "a refused spend is not audited");

    // A new period, and another dataset, start fresh; a refusal in a fresh period records no row.
    let next = T0 + DAY;
    assert_eq!(spend(next, 3 * EPSILON, limit, "s3").await, SpendOutcome::Spent(budget(limit, 3 * EPSILON)));
    assert_eq!(store.budget("visits", T0, limit).await.unwrap(), budget(limit, 0));
    assert_eq!(
        spend(T0 + 2 * DAY, 11 * EPSILON, limit, "too-much").await,
        SpendOutcome::Refused(budget(limit, 0))
    );

    // A lowered limit applies at once: up to it exactly, then nothing; a raised one gives room again.
    let lowered = 8 * EPSILON;
    assert!(matches!(spend(T0, EPSILON, lowered, "over-lowered").await, SpendOutcome::Refused(_)));
    assert_eq!(spend(T0, 500_000, lowered, "s4").await, SpendOutcome::Spent(budget(lowered, lowered)));
    let SpendOutcome::Refused(now) = spend(T0, 1, 5 * EPSILON, "below-spent").await else {
        panic!("a limit below what was spent refuses everything")
    };
    assert_eq!((now.spent_micro, now.remaining_micro()), (lowered, 0));
    assert_eq!(spend(T0, EPSILON, limit, "s5").await, SpendOutcome::Spent(budget(limit, 9 * EPSILON)));

    assert!(store.spend_budget("orders", T0, -EPSILON, limit, Vec::new()).await.is_err(), "no refunds");
    assert_eq!(store.budget("orders", T0, limit).await.unwrap().spent_micro, 9 * EPSILON);
    let expected = vec![("orders".to_owned(), T0, 9 * EPSILON), ("orders".to_owned(), next, 3 * EPSILON)];
    assert_eq!(store.budgets().await.unwrap(), expected);
    assert_eq!(audited_spends(store.as_ref()).await, ["s1", "s2", "s3", "s4", "s5"]);

    // The budget is in the database, not in the instance.
    let reopened = backend.reopen().await.unwrap().store;
    assert_eq!(reopened.budgets().await.unwrap(), expected);
    assert_eq!(
        reopened.spend_budget("orders", T0, 2 * EPSILON, limit, spend_entry("after-reopen")).await.unwrap(),
        SpendOutcome::Refused(budget(limit, 9 * EPSILON))
    );
    assert_eq!(
        reopened.spend_budget("orders", T0, EPSILON, limit, spend_entry("s6")).await.unwrap(),
        SpendOutcome::Spent(budget(limit, limit))
    );
}

/// Sixteen spends of 1 ε against a limit of 10 ε at once, from two instances: exactly ten are
/// recorded (each with its audit entry), each seeing the budget one step further.
async fn concurrent_spends_from_two_instances_never_exceed_the_limit(backend: Backend) {
    let second = backend.reopen().await.unwrap().store;
    let stores = [backend.store.clone(), second];
    let limit = 10 * EPSILON;
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for index in 0..16 {
        let (store, start) = (stores[index % 2].clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store.spend_budget("orders", T0, EPSILON, limit, spend_entry(&format!("spend-{index}"))).await
        }));
    }
    let mut spent = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap().expect("every spend is answered") {
            SpendOutcome::Spent(budget) => spent.push(budget.spent_micro),
            SpendOutcome::Refused(budget) => {
                assert_eq!(budget.remaining_micro(), 0, "refused only once nothing remains");
                refused += 1;
            }
        }
    }
    spent.sort_unstable();
    assert_eq!(spent, (1..=10).map(|count| count * EPSILON).collect::<Vec<_>>());
    assert_eq!(refused, 6);
    assert_eq!(backend.store.budget("orders", T0, limit).await.unwrap().spent_micro, limit);
    assert_eq!(audited_spends(backend.store.as_ref()).await.len(), 10, "one entry per recorded spend");
}

/// Erases a family (no suppression, no destination to tell).
async fn erase(store: &dyn Store, subject: &str) {
    let plan = ShredPlan {
        request: "req_e".into(),
        held_through: i64::MAX,
        suppress: false,
        deliveries: Vec::new(),
        audit: Vec::new(),
    };
    assert!(matches!(store.shred(subject, plan, T0).await.unwrap(), ShredOutcome::Shredded { .. }));
}

/// Every event of a window, paged: `(timestamp, subject, source, name, sealed)`, in the order read.
async fn read_window(
    store: &dyn Store,
    (from, to): (i64, i64),
    page: u32,
    scan: Scan,
) -> Vec<(i64, String, String, String, Option<([u8; 16], Vec<u8>)>)> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let read = store.events_in_window(from, to, after.clone(), page, scan).await.unwrap();
        assert!(read.events.len() <= page as usize);
        for event in &read.events {
            let (subject, source, name) = (read.subject(event), read.source(event), read.name(event));
            assert!(!subject.is_empty() && !source.is_empty() && !name.is_empty(), "{event:?}");
            seen.push((
                event.timestamp,
                subject.to_owned(),
                source.to_owned(),
                name.to_owned(),
                event.sealed.clone(),
            ));
        }
        // Each string once per page.
        let mut subjects = read.subjects.clone();
        subjects.sort();
        subjects.dedup();
        assert_eq!(subjects.len(), read.subjects.len());
        match read.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    seen
}

async fn a_window_of_events_is_paged_once_each_by_family_without_the_erased(backend: Backend) {
    // Bob, and a device of his browsing anonymously until he logs in on it: one family, two subjects.
    ingest(&backend, vec![event("b1").user("bob").at(T0)]).await;
    ingest(
        &backend,
        vec![event("b2").anonymous("device").at(T0 + 1), event("b3").anonymous("device").at(T0 + 2)],
    )
    .await;
    let device = subject_of(&backend, "anonymous_id", "device").await.unwrap();
    ingest(&backend, vec![event("b4").user("bob").anonymous("device").at(T0 + 3)]).await;
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    assert_ne!(device, bob);
    // Zed has events before, in and at the end of the window; Ann will be erased. An identify has
    // no event name: its type stands for it.
    ingest(
        &backend,
        vec![
            event("z0").user("zed").at(T0 - 1),
            event("z1").user("zed").at(T0 + 1),
            event("z2").user("zed").at(T0 + 9),
            event("z3").user("zed").at(T0 + 10),
            event("a1").user("ann").at(T0 + 2),
            event("a2").user("ann").at(T0 + 4),
        ],
    )
    .await;
    let identify = json!({"type": "identify", "userId": "zed", "messageId": "z4", "timestamp": iso(T0 + 5)});
    ingest(&backend, vec![Event { message: identify, source: "web", gpc: false }]).await;
    let zed = subject_of(&backend, "user_id", "zed").await.unwrap();
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    let store = backend.store.as_ref();
    let window = (T0, T0 + 10);

    let all = read_window(store, window, 2, Scan::Records).await;
    assert_eq!(all.len(), 9, "from inclusive, to exclusive");
    assert!(all.windows(2).all(|pair| pair[0].0 <= pair[1].0), "in time order");
    let dedupes: HashSet<[u8; 16]> = all.iter().map(|row| row.4.as_ref().expect("records").0).collect();
    assert_eq!(dedupes.len(), 9, "each event once across pages");
    for page in [1, 3, 100] {
        assert_eq!(read_window(store, window, page, Scan::Records).await, all, "pages of {page}");
    }
    // Envelopes are the same rows in the same order, without their records.
    let envelopes = read_window(store, window, 4, Scan::Envelopes).await;
    let stripped: Vec<_> =
        all.iter().map(|(t, s, o, n, _)| (*t, s.clone(), o.clone(), n.clone(), None)).collect();
    assert_eq!(envelopes, stripped);
    assert!(all.iter().any(|row| row.3 == "identify" && row.1 == zed), "a type stands for a missing name");
    assert!(all.iter().filter(|row| row.3 != "identify").all(|row| row.3 == "Product Viewed"));

    // What the window returns opens with the family's keys, as the family holds it.
    let family = store.subject_data(&bob).await.unwrap().unwrap();
    let keys = FamilyKeys::unwrap(&backend.vault, &family.keys).unwrap();
    for (_, subject, source, _, sealed) in all.iter().filter(|row| row.1 == bob || row.1 == device) {
        let (dedupe, sealed) = sealed.as_ref().unwrap();
        let stored = family.events.iter().find(|stored| stored.dedupe == *dedupe).expect("in the family");
        assert_eq!((&stored.subject, &stored.sealed), (subject, sealed));
        let record = keys.open_record(subject, source, dedupe, sealed).unwrap();
        assert_eq!(record["properties"]["product_id"], "p1");
    }

    erase(store, &ann).await;
    // The erased family's rows may stay in the window until they are purged, but it has no root:
    // whoever counts people through family_roots counts them no more.
    let subjects: Vec<String> =
        read_window(store, window, 100, Scan::Envelopes).await.into_iter().map(|row| row.1).collect();
    let roots: std::collections::HashMap<String, String> =
        store.family_roots(subjects).await.unwrap().into_iter().collect();
    let mut families: Vec<&str> = roots.values().map(String::as_str).collect();
    families.sort_unstable();
    families.dedup();
    let mut expected = vec![bob.as_str(), zed.as_str()];
    expected.sort_unstable();
    assert_eq!(families, expected, "bob's device counts as bob; ann is gone");
    assert_eq!(roots.get(&device), Some(&bob));
    store.purge_erased(1_000).await.unwrap();
    assert_eq!(read_window(store, window, 100, Scan::Envelopes).await.len(), 7, "purged rows are gone");
    assert!(
        store.events_in_window(T0 + 10, T0 + 10, None, 10, Scan::Envelopes).await.unwrap().events.is_empty(),
        "an empty window"
    );
}

async fn family_roots_activity_and_keys_answer_for_many_subjects_at_once(backend: Backend) {
    // Bob's device had browsed before he first logged in on it: its first event is his family's.
    ingest(&backend, vec![event("b1").user("bob").at(T0 - 3_000)]).await;
    ingest(&backend, vec![event("d1").anonymous("device").at(T0 - 9_000)]).await;
    let device = subject_of(&backend, "anonymous_id", "device").await.unwrap();
    ingest(&backend, vec![event("b2").user("bob").anonymous("device").at(T0 - 1_000)]).await;
    ingest(&backend, vec![event("z1").user("zed").at(T0 - 2_000), event("a1").user("ann").at(T0 - 100)])
        .await;
    let [bob, zed, ann] = <[String; 3]>::try_from(people(&backend, &["bob", "zed", "ann"]).await).unwrap();
    assert_ne!(device, bob);
    // `people` sent each of them a `hello` at T0: their last event.
    let store = &backend.store;
    erase(store.as_ref(), &ann).await;

    // More ids than one query takes, unknown ones among them, the erased one, one twice.
    let mut ids: Vec<String> = (0..1_200).map(|index| format!("sub_unknown_{index:04}")).collect();
    ids.extend([device.clone(), ann.clone(), zed.clone(), bob.clone(), bob.clone()]);
    ids.reverse();
    let mut roots = store.family_roots(ids.clone()).await.unwrap();
    roots.sort();
    let mut expected =
        vec![(bob.clone(), bob.clone()), (device.clone(), bob.clone()), (zed.clone(), zed.clone())];
    expected.sort();
    assert_eq!(roots, expected);
    assert!(store.family_roots(Vec::new()).await.unwrap().is_empty());

    // Activity spans every event of the family, members' included; only roots are answered.
    let activity = store.family_activity(ids.clone()).await.unwrap();
    let mut expected = vec![
        FamilyActivity { root: bob.clone(), first: T0 - 9_000, last: T0 },
        FamilyActivity { root: zed.clone(), first: T0 - 2_000, last: T0 },
    ];
    expected.sort_by(|a, b| a.root.cmp(&b.root));
    assert_eq!(activity, expected, "the device is not a root, ann is erased");
    assert!(store.family_activity(Vec::new()).await.unwrap().is_empty());

    // Keys, many families at once, are what each family's summary holds.
    let keys = store.family_keys(ids).await.unwrap();
    let roots: Vec<&str> = keys.iter().map(|(root, _)| root.as_str()).collect();
    let mut expected = vec![bob.as_str(), zed.as_str()];
    expected.sort_unstable();
    assert_eq!(roots, expected, "the device is not a root, ann is erased");
    for (root, members) in &keys {
        let mut members = members.clone();
        members.sort();
        let mut summary = store.subject_summary(root).await.unwrap().unwrap().keys;
        summary.sort();
        assert_eq!(members, summary, "{root}");
    }
    assert_eq!(keys[roots.iter().position(|r| *r == bob).unwrap()].1.len(), 2, "bob and his device");
}

async fn subject_states_answer_for_many_families_at_once_like_subject_state(backend: Backend) {
    ingest(&backend, vec![event("d1").anonymous("device")]).await;
    let device = subject_of(&backend, "anonymous_id", "device").await.unwrap();
    let consent = |id: &str, at| ConsentEvent {
        id: id.into(),
        purpose: "marketing.communications.email".into(),
        kind: ConsentKind::Given,
        method: ConsentMethod::Api,
        at,
        expires_at: None,
        version: 1,
        source: Some("api".into()),
        jurisdiction: None,
    };
    let store = &backend.store;
    // Given on the device before it joined Bob: part of Bob's family ledger afterwards.
    store
        .record_consents(&device, vec![(consent("cr_device", T0), "{}".into())], Vec::new(), Vec::new())
        .await
        .unwrap();
    ingest(&backend, vec![event("b1").user("bob"), event("b2").user("bob").anonymous("device")]).await;
    ingest(&backend, vec![event("e1").user("eve").from("eu-web")]).await;
    let [bob, eve, ann, cal] =
        <[String; 4]>::try_from(people(&backend, &["bob", "eve", "ann", "cal"]).await).unwrap();
    assert_ne!(device, bob);
    store
        .record_consents(&bob, vec![(consent("cr_bob", T0 + 1), "{}".into())], Vec::new(), Vec::new())
        .await
        .unwrap();
    store
        .record_consents(&eve, vec![(consent("cr_eve", T0), "{}".into())], Vec::new(), Vec::new())
        .await
        .unwrap();
    store.set_restricted(&cal, true, Vec::new()).await.unwrap();
    erase(store.as_ref(), &ann).await;

    // More ids than one query takes, unknown ones among them, the merged device (not a root), the
    // erased one, and one root twice.
    let mut ids: Vec<String> = (0..1_200).map(|index| format!("sub_unknown_{index:04}")).collect();
    ids.extend([cal.clone(), bob.clone(), device.clone(), ann.clone(), eve.clone(), bob.clone()]);
    ids.reverse();
    let states = store.subject_states(ids).await.unwrap();
    let mut roots = vec![bob.clone(), eve.clone(), cal.clone()];
    roots.sort();
    let mut expected = Vec::new();
    for root in &roots {
        expected.push(store.subject_state(root).await.unwrap().expect("a live root"));
    }
    assert_eq!(states, expected);
    let of = |subject: &str| states.iter().find(|state| state.subject == subject).unwrap();
    let ledger = |subject: &str| of(subject).ledger.iter().map(|event| event.id.clone()).collect::<Vec<_>>();
    assert_eq!(ledger(&bob), ["cr_device", "cr_bob"], "the family's ledger, oldest first");
    assert_eq!(ledger(&eve), ["cr_eve"]);
    assert_eq!(of(&eve).jurisdiction.as_deref(), Some("eu"));
    assert!(of(&cal).restricted && !of(&bob).restricted);
    assert!(store.subject_states(Vec::new()).await.unwrap().is_empty());
}

// ------------------------------------------------------------------------------------------------
// Sign-in codes of the preference center.

async fn sign_in_codes_work_once_within_their_time_and_tries(backend: Backend) {
    use tactful_store::CodeOutcome;
    let store = &backend.store;
    let code = |id: &str, subject: Option<&str>, hash: u8| SignInCode {
        id: id.into(),
        subject: subject.map(str::to_owned),
        hash: [hash; 32],
        created_at: T0,
        expires_at: T0 + 900_000,
    };
    store.create_sign_in_code(code("si_right", Some("sub_ada"), 7)).await.unwrap();
    store.create_sign_in_code(code("si_tries", Some("sub_ada"), 7)).await.unwrap();
    store.create_sign_in_code(code("si_unknown", None, 7)).await.unwrap();
    store.create_sign_in_code(code("si_late", Some("sub_ada"), 7)).await.unwrap();

    // Wrong codes count down; the right one works once.
    assert_eq!(
        store.try_sign_in_code("si_right", [1; 32], T0, 5).await.unwrap(),
        CodeOutcome::Wrong { tries_left: 4 }
    );
    assert_eq!(
        store.try_sign_in_code("si_right", [7; 32], T0, 5).await.unwrap(),
        CodeOutcome::Accepted("sub_ada".into())
    );
    assert_eq!(
        store.try_sign_in_code("si_right", [7; 32], T0, 5).await.unwrap(),
        CodeOutcome::Refused,
        "used up"
    );
    // Out of tries, the right code no longer works.
    for left in (0..5).rev() {
        assert_eq!(
            store.try_sign_in_code("si_tries", [2; 32], T0, 5).await.unwrap(),
            CodeOutcome::Wrong { tries_left: left }
        );
    }
    assert_eq!(store.try_sign_in_code("si_tries", [7; 32], T0, 5).await.unwrap(), CodeOutcome::Refused);
    // A code for an unknown address never works, even "right", and answers like a wrong one.
    assert_eq!(
        store.try_sign_in_code("si_unknown", [7; 32], T0, 5).await.unwrap(),
        CodeOutcome::Wrong { tries_left: 4 }
    );
    // Past its time, or never made: refused.
    assert_eq!(
        store.try_sign_in_code("si_late", [7; 32], T0 + 900_000, 5).await.unwrap(),
        CodeOutcome::Refused
    );
    assert_eq!(store.try_sign_in_code("si_none", [7; 32], T0, 5).await.unwrap(), CodeOutcome::Refused);

    // Tries from many callers at once never exceed the limit, and only one right try wins.
    store.create_sign_in_code(code("si_race", Some("sub_ada"), 7)).await.unwrap();
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..12 {
        let store = store.clone();
        let hash = if i == 11 { [7; 32] } else { [3; 32] };
        tries.spawn(async move { store.try_sign_in_code("si_race", hash, T0, 5).await.unwrap() });
    }
    let outcomes = tries.join_all().await;
    let wrong = outcomes.iter().filter(|o| matches!(o, CodeOutcome::Wrong { .. })).count();
    let accepted = outcomes.iter().filter(|o| matches!(o, CodeOutcome::Accepted(_))).count();
    assert!(wrong + accepted <= 5, "{outcomes:?}");
    assert!(accepted <= 1);

    // Codes long expired are forgotten when a new one is made.
    store
        .create_sign_in_code(SignInCode {
            created_at: T0 + 3 * 86_400_000,
            expires_at: T0 + 3 * 86_400_000 + 900_000,
            ..code("si_new", None, 1)
        })
        .await
        .unwrap();
    assert_eq!(store.try_sign_in_code("si_late", [7; 32], T0, 5).await.unwrap(), CodeOutcome::Refused);
}
