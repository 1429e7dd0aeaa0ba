//! The catalog's merge rules: identifier kinds link only from the sources the catalog names, and a
//! person never holds more of a kind than it allows — a link that would break a rule is refused and
//! counted, never made silently.

use std::sync::Arc;

use serde_json::json;
use tactful_domain::policy::Policy;

use crate::{Backend, catalog_with, event, ingest, subject_of};

conformance!(merge_rules_refuse_and_count_what_they_forbid);

const RULES: &str = "
[identity]
link_from = { email = [\"backend\"] }
max_per_person = { email = 2, user_id = 1 }
";

async fn merge_rules_refuse_and_count_what_they_forbid(backend: Backend) {
    let backend = Backend { policy: Arc::new(Policy::new(Arc::new(catalog_with(RULES)))), ..backend };
    let email = |address: &str| json!({"email": address});
    ingest(
        &backend,
        vec![
            event("1").user("ann").identify(email("ann@example.com")).from("backend"),
            event("2").user("ann").identify(email("ann.work@example.com")).from("backend"),
            // A third address for one person passes the limit: refused, counted.
            event("3").user("ann").identify(email("ann.old@example.com")).from("backend"),
            // An email from the web source does not link at all here: it is data, not an identity.
            event("4").user("ann").identify(email("ann.web@example.com")).from("web"),
        ],
    )
    .await;
    let ann = subject_of(&backend, "user_id", "ann").await.unwrap();
    assert_eq!(subject_of(&backend, "email", "ann@example.com").await.as_deref(), Some(ann.as_str()));
    assert_eq!(subject_of(&backend, "email", "ann.work@example.com").await.as_deref(), Some(ann.as_str()));
    assert_eq!(
        subject_of(&backend, "email", "ann.old@example.com").await,
        None,
        "over the limit: not linked"
    );
    assert_eq!(subject_of(&backend, "email", "ann.web@example.com").await, None, "not from that source");

    // An alias would give one person two userIds: refused, and the two stay apart.
    ingest(&backend, vec![event("5").user("bob").from("backend")]).await;
    let bob = subject_of(&backend, "user_id", "bob").await.unwrap();
    ingest(&backend, vec![event("6").alias("bob", "ann").from("backend")]).await;
    assert_eq!(subject_of(&backend, "user_id", "bob").await.as_deref(), Some(bob.as_str()));
    assert_eq!(subject_of(&backend, "user_id", "ann").await.as_deref(), Some(ann.as_str()));
    assert_ne!(backend.store.subject_state(&bob).await.unwrap().unwrap().subject, ann, "not merged");

    let refused: Vec<(String, u64)> = backend
        .store
        .drop_counts()
        .await
        .unwrap()
        .into_iter()
        .filter(|count| count.reason.as_str() == "identity_refused")
        .map(|count| (count.path, count.count))
        .collect();
    assert!(refused.contains(&("identity.email".to_owned(), 1)), "{refused:?}");
    assert!(refused.contains(&("identity.user_id".to_owned(), 1)), "{refused:?}");
}
