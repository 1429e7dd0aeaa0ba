//! The storage conformance suite: every backend must pass every test here. Each test runs on a
//! temporary SQLite file, and on a fresh PostgreSQL database when `TACTFUL_TEST_POSTGRES_URL` names
//! a server where the test role may create databases. Without that variable the PostgreSQL half says
//! it was skipped; with `CI` set, it fails instead.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tactful_domain::identity::IdentifierKind;
use tactful_domain::minimize::{DropReason, Dropped};
use tactful_domain::segment::MessageType;
use tactful_store::{IdentityClaim, IngestEvent, IngestOutcome, Options, Store, StoreError, seal_context};
use tactful_vault::{MasterKey, MasterKeys, Vault};

/// One backend under test: an opened store, and how to open the same database again.
struct Backend {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
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
    Backend { store: opened.store, vault: opened.vault, url, master_hex, _dir: dir }
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
);

// ------------------------------------------------------------------------------------------------
// Building events as the ingestion pipeline does.

const T0: i64 = 1_700_000_000_000;

struct Event {
    kind: MessageType,
    message_id: String,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    email: Option<String>,
    previous_id: Option<String>,
    timestamp: i64,
    record: Value,
    profile: Vec<(&'static str, Value)>,
    dropped: Vec<&'static str>,
}

fn event(message_id: &str) -> Event {
    Event {
        kind: MessageType::Track,
        message_id: message_id.to_owned(),
        user_id: None,
        anonymous_id: None,
        email: None,
        previous_id: None,
        timestamp: T0,
        record: json!({"properties": {"product_id": "p1"}}),
        profile: Vec::new(),
        dropped: Vec::new(),
    }
}

impl Event {
    fn user(mut self, id: &str) -> Event {
        self.user_id = Some(id.to_owned());
        self
    }
    fn anonymous(mut self, id: &str) -> Event {
        self.anonymous_id = Some(id.to_owned());
        self
    }
    fn email(mut self, email: &str) -> Event {
        self.email = Some(email.to_owned());
        self
    }
    fn identify(mut self, traits: Value) -> Event {
        self.kind = MessageType::Identify;
        for (key, value) in traits.as_object().unwrap() {
            let path: &'static str = Box::leak(format!("traits.{key}").into_boxed_str());
            self.profile.push((path, value.clone()));
        }
        self.record = json!({"traits": traits});
        self
    }
    fn alias(mut self, previous: &str, user: &str) -> Event {
        self.kind = MessageType::Alias;
        self.previous_id = Some(previous.to_owned());
        self.user_id = Some(user.to_owned());
        self
    }
    fn at(mut self, timestamp: i64) -> Event {
        self.timestamp = timestamp;
        self
    }
    fn dropping(mut self, paths: &[&'static str]) -> Event {
        self.dropped.extend_from_slice(paths);
        self
    }

    fn build(self, vault: &Vault) -> IngestEvent {
        let claim = |kind: IdentifierKind, value: &str| {
            let value = kind.normalize(value).unwrap();
            IdentityClaim { blind: vault.blind(kind.as_str(), &value), kind, value }
        };
        let mut identities = Vec::new();
        if let Some(user) = &self.user_id {
            identities.push(claim(IdentifierKind::UserId, user));
        }
        let alias_previous = self.previous_id.as_deref().map(|previous| {
            [claim(IdentifierKind::UserId, previous), claim(IdentifierKind::AnonymousId, previous)]
        });
        if alias_previous.is_none() {
            if let Some(anonymous) = &self.anonymous_id {
                identities.push(claim(IdentifierKind::AnonymousId, anonymous));
            }
            if let Some(email) = &self.email {
                identities.push(claim(IdentifierKind::Email, email));
            }
        }
        IngestEvent {
            source: "web".into(),
            dedupe: vault.dedupe_key("web", &self.message_id),
            kind: self.kind,
            name: (self.kind == MessageType::Track).then(|| "Product Viewed".to_owned()),
            timestamp: self.timestamp,
            received_at: self.timestamp,
            identities,
            alias_previous,
            record: serde_json::to_vec(&self.record).unwrap(),
            profile: self
                .profile
                .into_iter()
                .map(|(path, value)| (path.to_owned(), serde_json::to_vec(&value).unwrap()))
                .collect(),
            dropped: self
                .dropped
                .into_iter()
                .map(|path| Dropped { path: path.to_owned(), reason: DropReason::Undeclared })
                .collect(),
        }
    }
}

async fn ingest(backend: &Backend, events: Vec<Event>) -> Vec<IngestOutcome> {
    let built = events.into_iter().map(|event| event.build(&backend.vault)).collect();
    backend.store.ingest(built).await.expect("ingest")
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
    let key = |member: &str| {
        let wrapped = &data.keys.iter().find(|(id, _)| id == member).expect("member key").1;
        backend.vault.subject_key(member, wrapped).unwrap()
    };
    let events = data
        .events
        .iter()
        .map(|event| {
            let plain = key(&event.subject)
                .open(
                    seal_context::EVENT,
                    &seal_context::event(&event.subject, &event.source, &event.dedupe),
                    &event.sealed,
                )
                .unwrap();
            serde_json::from_slice(&plain).unwrap()
        })
        .collect();
    let profile = data
        .profile
        .iter()
        .map(|value| {
            let plain = key(&value.subject)
                .open(
                    seal_context::PROFILE,
                    &seal_context::profile(&value.subject, &value.path),
                    &value.sealed,
                )
                .unwrap();
            (value.path.clone(), serde_json::from_slice(&plain).unwrap())
        })
        .collect();
    let identifiers = data
        .identities
        .iter()
        .map(|identity| {
            let plain = key(&identity.subject)
                .open(
                    seal_context::IDENTITY,
                    &seal_context::identity(&identity.subject, &identity.blind.0),
                    &identity.sealed,
                )
                .unwrap();
            (identity.kind.clone(), String::from_utf8(plain.to_vec()).unwrap())
        })
        .collect();
    Opened { events, profile, identifiers }
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
        let vault = backend.vault.clone();
        tasks.push(tokio::spawn(async move {
            let events = vec![
                event(&format!("w{writer}-1")).anonymous(&format!("device-{writer}")).build(&vault),
                event(&format!("w{writer}-2"))
                    .user("zoe")
                    .anonymous(&format!("device-{writer}"))
                    .build(&vault),
                event(&format!("shared-{}", writer % 4)).user("zoe").build(&vault),
            ];
            store.ingest(events).await
        }));
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
        url: backend.url.clone(),
        master_hex: new_hex.clone(),
        _dir: None,
    };
    ingest(&during, vec![event("2").user("bea").identify(json!({"first_name": "Bea"}))]).await;
    let ada = subject_of(&during, "user_id", "ada").await.unwrap();
    assert_eq!(
        open_subject(&during, &ada).await.profile[0].1,
        json!("Ada"),
        "old keys still open during the rotation"
    );

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
        url: backend.url.clone(),
        master_hex: new_hex,
        _dir: None,
    };
    let ada = subject_of(&after, "user_id", "ada").await.expect("blind indexes survive the rotation");
    assert_eq!(open_subject(&after, &ada).await.profile[0].1, json!("Ada"));
    let bea = subject_of(&after, "user_id", "bea").await.unwrap();
    assert_eq!(open_subject(&after, &bea).await.profile[0].1, json!("Bea"));
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
