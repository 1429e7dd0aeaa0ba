//! What a role may do beyond reading, as an attacker holding the wrong key and an auditor checking
//! the log meet it: the example catalog's roles, default deny, a refusal that names what is missing
//! and changes nothing stored.

use axum::http::StatusCode;
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;

use crate::common::Harness;

const CUSTOMER: &str = "lucy.westenra@example.com";

/// The example catalog, plus a role that may download packages but sees only contact details and
/// consent records.
async fn harness() -> Harness {
    let text = format!(
        "{}\n[roles.partial]\npurposes = [\"essential.legal_obligation\"]\n\
         categories = [\"user.contact\", \"user.privacy_preferences\"]\nmay = [\"download_packages\"]\n",
        Catalog::example_text()
    );
    let catalog = Catalog::parse(&text).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let harness = Harness::open(catalog, 64, None).await;
    let events = [
        json!({"type": "identify", "userId": "lucy-1", "messageId": "r-1",
               "traits": {"email": CUSTOMER, "first_name": "Lucy"}}),
        json!({"type": "track", "event": "Product Viewed", "userId": "lucy-1", "messageId": "r-2",
               "properties": {"product_id": "sku-0042"}}),
    ];
    // From the shop's signed-in page: each event proves its person with the backend's token.
    for mut event in events {
        event["context"]["identityToken"] = json!(crate::common::web_token("lucy-1"));
        let (status, body) = harness.track("wk_web_fernhill_demo", event, false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    harness
}

impl Harness {
    /// A key of `role` and its public id (the id the audit log names).
    async fn key_and_id(&self, role: &str) -> (String, String) {
        let (record, key) = tactful_app::keys::create_api_key(&self.state, "test", role, None).await.unwrap();
        (key.to_string(), record.id)
    }

    /// Every audit entry, and every request with its history: what a refusal must leave as it was.
    async fn everything_stored(&self) -> (usize, Vec<tactful_store::RequestView>) {
        let audit = self.state.store.audit_entries(0, 100_000).await.unwrap().len();
        let mut requests = Vec::new();
        for record in self.state.store.requests(None, 1_000).await.unwrap() {
            requests.push(self.state.store.request(&record.id).await.unwrap().unwrap());
        }
        (audit, requests)
    }

    /// Makes an access request with `key` and runs it to completion. Returns its id.
    async fn completed_access(&self, key: &str) -> String {
        let body = json!({"type": "access", "subject": format!("email:{CUSTOMER}")}).to_string();
        let (status, created) = self.post_json("/v1/requests", key, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        for _ in 0..10 {
            tactful_app::requests::run_due(&self.state, tactful_app::now_millis()).await.unwrap();
        }
        let view = self.state.store.request(&id).await.unwrap().unwrap();
        assert_eq!(view.record.status.as_str(), "completed");
        id
    }
}

fn refusal(status: StatusCode, body: &Value) -> (StatusCode, &str, &str) {
    (status, body["error"]["code"].as_str().unwrap_or(""), body["error"]["message"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn only_a_role_that_may_download_and_sees_everything_a_package_holds_takes_it() {
    let h = harness().await;
    let (requests, requests_id) = h.key_and_id("requests").await;
    let (privacy, partial) = (h.key("privacy").await, h.key("partial").await);
    let id = h.completed_access(&requests).await;
    let path = format!("/v1/requests/{id}/package");

    // The privacy team sees consent records only: it may not take everything about someone.
    let before = h.everything_stored().await;
    let (status, body) = h.get(&path, &privacy).await;
    assert_eq!(
        refusal(status, &body),
        (
            StatusCode::FORBIDDEN,
            "forbidden",
            "role \"privacy\" may not download packages: add \"download_packages\" to its \"may\" list"
        )
    );
    // Allowed to download, but blind to most of what this package holds.
    let (status, body) = h.get(&format!("{path}?format=html"), &partial).await;
    let (status, code, message) = refusal(status, &body);
    assert_eq!((status, code), (StatusCode::FORBIDDEN, "forbidden"));
    assert!(
        message.starts_with("role \"partial\" may not download this package: it holds ")
            && message.contains("user.behavior.browsing_history")
            && !message.contains("user.contact.email"),
        "{message}"
    );
    assert_eq!(h.everything_stored().await, before, "a refusal is no download: nothing changed");

    // The requests team may: the download is in her access log with the key that took it.
    let (status, package) = h.get(&path, &requests).await;
    assert_eq!(status, StatusCode::OK, "{package}");
    assert!(package["identifiers"].to_string().contains(CUSTOMER));
    let (_, log) = h.get(&format!("/v1/subjects/email:{CUSTOMER}/access-log"), &privacy).await;
    let downloads: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["kind"] == "read" && entry["purpose"] == "essential.legal_obligation")
        .filter(|entry| entry["returned"].as_array().unwrap().contains(&json!("user.contact.email")))
        .collect();
    assert_eq!(downloads.len(), 1, "the refusals read nothing: {log}");
    assert_eq!(downloads[0]["actor"], requests_id.as_str());
    assert_eq!(downloads[0]["role"], "requests");
}

#[tokio::test]
async fn a_role_makes_only_the_requests_it_lists_and_a_refused_one_is_not_stored() {
    let h = harness().await;
    let (privacy, marketing) = (h.key("privacy").await, h.key("marketing").await);
    let before = h.everything_stored().await;
    let erase = json!({"type": "erase", "subject": format!("email:{CUSTOMER}")}).to_string();
    let (status, body) = h.post_json("/v1/requests", &privacy, &erase).await;
    assert_eq!(
        refusal(status, &body),
        (
            StatusCode::FORBIDDEN,
            "forbidden",
            "role \"privacy\" may not handle erase requests: add \"erase\" to its \"requests\" list"
        )
    );
    // Self-service needs the type listed too; no code is sent for a refused request.
    let self_service = json!({"type": "erase", "verify_by": format!("email:{CUSTOMER}")}).to_string();
    let (status, _) = h.post_json("/v1/requests", &privacy, &self_service).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A key that may not read request records is refused before anyone is looked up.
    let (status, _) = h.post_json("/v1/requests", &marketing, &erase).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.everything_stored().await, before, "no request, no audit entry");
    assert!(h.notifications().is_empty(), "no code sent");
    assert!(h.subject_of("email", CUSTOMER).await.is_some(), "she is still here");

    // What it lists, it may make.
    let restrict = json!({"type": "restrict", "subject": format!("email:{CUSTOMER}")}).to_string();
    let (status, body) = h.post_json("/v1/requests", &privacy, &restrict).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Extending a deadline is handling the request: only for a role that lists its type.
    let requests = h.key("requests").await;
    let (status, body) = h.post_json("/v1/requests", &requests, &erase).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let extend = format!("/v1/requests/{}/extend", body["id"].as_str().unwrap());
    let reason = json!({"days": 30, "reason": "three archives to search"}).to_string();
    let (status, body) = h.post_json(&extend, &privacy, &reason).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = h.post_json(&extend, &requests, &reason).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn links_and_codes_are_for_the_roles_that_may_and_the_audit_log_for_auditors() {
    let h = harness().await;
    let (privacy, requests, auditor) =
        (h.key("privacy").await, h.key("requests").await, h.key("auditor").await);

    // A preference-center link shows the person everything: not for the privacy team's key.
    let link = format!("/v1/subjects/email:{CUSTOMER}/link");
    let before = h.everything_stored().await;
    let (status, body) = h.post_json(&link, &privacy, "").await;
    assert_eq!(
        refusal(status, &body),
        (
            StatusCode::FORBIDDEN,
            "forbidden",
            "role \"privacy\" may not issue preference-center links: add \"issue_links\" to its \"may\" list"
        )
    );
    assert_eq!(h.everything_stored().await, before, "no link_issued entry");
    let (status, body) = h.post_json(&link, &requests, "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A self-service request's code, given on the person's behalf.
    let self_service = json!({"type": "access", "verify_by": format!("email:{CUSTOMER}")}).to_string();
    let (status, created) = h.post_json("/v1/requests", &requests, &self_service).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let verify = format!("/v1/requests/{}/verify", created["id"].as_str().unwrap());
    let wrong = json!({"code": "00000000"}).to_string();
    let before = h.everything_stored().await;
    let (status, body) = h.post_json(&verify, &privacy, &wrong).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("\"verify_requests\""), "{body}");
    assert_eq!(h.everything_stored().await, before, "no attempt counted");
    let (status, body) = h.post_json(&verify, &requests, &wrong).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_code")));

    // The auditor checks the log and reads consent records, and does nothing else.
    let (status, report) = h.get("/v1/audit/verify", &auditor).await;
    assert_eq!((status, report["intact"].as_bool()), (StatusCode::OK, Some(true)), "{report}");
    let (status, _) = h.post_json("/v1/audit/checkpoints", &auditor, "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.get(&format!("/v1/subjects/email:{CUSTOMER}/consents"), &auditor).await;
    assert_eq!(status, StatusCode::OK);
    let access = json!({"type": "access", "subject": format!("email:{CUSTOMER}")}).to_string();
    assert_eq!(h.post_json("/v1/requests", &auditor, &access).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.post_json(&link, &auditor, "").await.0, StatusCode::FORBIDDEN);
    // A role that may not read the audit log is told what to add.
    let (status, body) = h.get("/v1/audit/verify", &requests).await;
    assert_eq!(
        refusal(status, &body),
        (
            StatusCode::FORBIDDEN,
            "forbidden",
            "role \"requests\" may not read the audit log: add \"read_audit_log\" to its \"may\" list"
        )
    );
}
