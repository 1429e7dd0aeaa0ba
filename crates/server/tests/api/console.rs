//! The brand console as a privacy team uses it: signing in with an API key (and every way that is
//! refused), what the dashboard shows once things happen (a new request and its deadline, an
//! overdue one, a property dropped at the door, a consent rate that moves, a destination still to
//! confirm), forms without their CSRF token, a revoked key's session, and the pages' headers.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};
use tactful_domain::audit::AuditEvent;
use tactful_domain::catalog::Catalog;
use tactful_domain::request::{RequestKind, RequestStatus};
use tactful_server::web::CONTENT_SECURITY_POLICY;
use tactful_store::RequestRecord;

use crate::access::{CATALOG, EMAIL, MARKETING};
use crate::common::Harness;

/// The bookshop, with a CRM that must be told about erasures (at an address nobody answers: the
/// delivery stays pending, as one does until a destination confirms).
fn catalog() -> Catalog {
    let extra = r#"
[destinations.crm]
name = "Bookshop CRM"
url = "http://127.0.0.1:9/crm"
secret = "whsec_lantern_0123456789"
receives = ["erase"]
identifiers = ["email"]
"#;
    Catalog::parse(&format!("{CATALOG}{extra}")).unwrap_or_else(|errors| panic!("{}", errors.render("test")))
}

async fn harness() -> Harness {
    Harness::open(catalog(), 64, None).await
}

/// A page's answer: status, headers and the HTML (or the JSON error, as text).
pub(crate) struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    fn cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with("tactful_console="))
            .map(str::to_owned)
    }

    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let (_, rest) = self.body.split_once(r#"name="csrf" value=""#).expect("a form with a CSRF token");
        rest.split('"').next().unwrap().to_owned()
    }

    /// The table row (or element) marked `data-request="{id}"`, up to its end.
    fn row(&self, id: &str) -> &str {
        let start =
            self.body.find(&format!(r#"data-request="{id}""#)).unwrap_or_else(|| panic!("{id} not shown"));
        let rest = &self.body[start..];
        &rest[..rest.find("</tr>").unwrap_or(rest.len())]
    }
}

impl Harness {
    pub(crate) async fn console_page(&self, request: axum::http::request::Builder, body: Body) -> Answer {
        let request = request.header(header::ACCEPT, "text/html").body(body).unwrap();
        let (status, headers, body) = self.send(request).await;
        let body = match body {
            Value::String(text) => text,
            other => other.to_string(),
        };
        // Every page, and every refusal shown as a page, carries the pages' policy.
        assert_eq!(
            headers.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()),
            Some(CONTENT_SECURITY_POLICY),
            "{status}: {body}"
        );
        Answer { status, headers, body }
    }

    pub(crate) async fn console_get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie_pair(cookie));
        }
        self.console_page(request, Body::empty()).await
    }

    pub(crate) async fn console_post(&self, path: &str, cookie: Option<&str>, form: &str) -> Answer {
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie_pair(cookie));
        }
        self.console_page(request, Body::from(form.to_owned())).await
    }

    pub(crate) async fn console_sign_in(&self, key: &str) -> Answer {
        self.console_post("/console/sign-in", None, &format!("key={key}")).await
    }

    /// Signs in with `key` and returns the session cookie.
    pub(crate) async fn console_session(&self, key: &str) -> String {
        let answer = self.console_sign_in(key).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        answer.cookie().expect("a session cookie")
    }

    async fn revoke_key(&self, key: &str) {
        let record = self
            .state
            .store
            .api_key(tactful_vault::api_key_hash(key))
            .await
            .unwrap()
            .expect("the key exists");
        let audit = AuditEvent::KeyRevoked { key: record.id.clone() };
        assert!(self.state.store.revoke_api_key(&record.id, tactful_app::now_millis(), audit).await.unwrap());
    }

    async fn audit_kinds(&self) -> Vec<String> {
        let entries = self.state.store.audit_entries(0, 10_000).await.unwrap();
        entries
            .iter()
            .map(|entry| {
                serde_json::from_str::<Value>(&entry.text).unwrap()["kind"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

/// `tactful_console=…` out of a `Set-Cookie` value.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn sign_in_is_refused_without_saying_whether_a_key_exists_unless_it_is_valid() {
    let harness = harness().await;
    let door = harness.console_get("/console", None).await;
    assert_eq!(door.status, StatusCode::OK);
    assert!(door.body.contains("Sign in to the console"), "{}", door.body);
    assert!(door.body.contains("never stored in this browser"));

    let revoked = harness.key("privacy").await;
    harness.revoke_key(&revoked).await;
    let expired = tactful_app::keys::create_api_key(
        &harness.state,
        "last year",
        "privacy",
        Some(tactful_app::now_millis() - 1),
    )
    .await
    .unwrap()
    .1
    .to_string();
    let unknown = "tk_aaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let mut messages = Vec::new();
    for key in [unknown, revoked.as_str(), expired.as_str()] {
        let answer = harness.console_sign_in(key).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
        assert!(answer.body.contains(r#"data-error="invalid_api_key""#), "{}", answer.body);
        assert!(answer.body.contains("this key was not accepted"), "{}", answer.body);
        assert!(answer.cookie().is_none(), "no session for {key}");
        assert!(answer.body.contains(r#"name="key""#), "the form again");
        let (_, message) = answer.body.split_once("sign-in-problem").unwrap();
        messages.push(message.split("</div>").next().unwrap().to_owned());
    }
    assert!(messages.iter().all(|m| *m == messages[0]), "one answer whatever the reason: {messages:?}");

    // A valid key may learn that its role is not enough, and nothing more.
    let marketing = harness.key("marketing").await;
    let answer = harness.console_sign_in(&marketing).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(answer.body.contains(r#"data-error="forbidden""#));
    assert!(
        answer.body.contains("this key&#39;s role (marketing) may not open the console"),
        "{}",
        answer.body
    );
    assert!(answer.cookie().is_none());

    let answer = harness.console_sign_in("").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body.contains(r#"data-error="missing_api_key""#), "{}", answer.body);

    // A sign-in form posted from another site (login CSRF) is refused, even with a good key.
    let privacy = harness.key("privacy").await;
    let request = Request::post("/console/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site");
    let answer = harness.console_page(request, Body::from(format!("key={privacy}"))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body.contains(r#"data-error="csrf_failed""#), "{}", answer.body);
    assert!(answer.cookie().is_none());

    assert!(!harness.audit_kinds().await.contains(&"console_sign_in".to_owned()), "nobody signed in");
}

#[tokio::test]
async fn the_dashboard_shows_requests_drops_consent_and_the_audit_log_as_they_change() {
    dashboard(harness().await).await;
}

#[tokio::test]
async fn the_dashboard_shows_requests_drops_consent_and_the_audit_log_as_they_change_on_postgres() {
    let Some(url) = tactful_store::testing::fresh_postgres_database().await else { return };
    dashboard(Harness::open(catalog(), 64, Some(url)).await).await;
}

async fn dashboard(harness: Harness) {
    let privacy = harness.key("privacy").await;
    let answer = harness.console_sign_in(&privacy).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers[header::LOCATION], "/console");
    let set = answer.cookie().unwrap();
    for part in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains(&privacy), "the browser holds a session, not the key");
    assert_eq!(harness.audit_kinds().await.iter().filter(|kind| *kind == "console_sign_in").count(), 1);

    let empty = harness.console_get("/console", Some(&set)).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(empty.body.contains("Privacy console"));
    assert!(empty.body.contains("No open requests."));
    assert!(empty.body.contains("Nothing has been dropped."));
    assert!(empty.body.contains("No consent signal recorded yet."));
    assert!(empty.body.contains(r#"data-audit="intact""#));
    // The data map, by category with the taxonomy's names.
    assert!(empty.body.contains(r#"data-category="user.contact.email""#));
    assert!(empty.body.contains("<code>traits.email</code>"));
    assert!(empty.body.contains("California (CCPA/CPRA)"));

    // A sign-up carries a trait the catalog does not declare: it is dropped and counted.
    let event = json!({"type": "identify", "userId": "reader-1", "messageId": "m-1",
                       "traits": {"email": EMAIL, "city": "Berlin", "shoe_size": 38}});
    let (status, body) = harness.track("wk_web_lantern", event, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The reader says yes to the newsletter.
    harness.consent(&privacy, "given").await;
    let page = harness.console_get("/console", Some(&set)).await;
    assert!(
        page.body.contains(r#"data-path="traits.shoe_size" data-reason="undeclared" data-count="1""#),
        "{}",
        page.body
    );
    let everyone = format!(r#"data-purpose="{MARKETING}" data-series="All people""#);
    assert!(page.body.contains(&format!(r#"{everyone} data-yes="1" data-people="1""#)), "{}", page.body);
    assert!(page.body.contains("100% (1 of 1)"));
    assert!(page.body.contains("<svg class=\"chart\""), "charts are drawn");
    assert!(page.body.contains("<details>"), "with their numbers");

    // They change their mind: the rate moves.
    harness.consent(&privacy, "withdrawn").await;
    let page = harness.console_get("/console", Some(&set)).await;
    assert!(page.body.contains(&format!(r#"{everyone} data-yes="0" data-people="1""#)), "{}", page.body);
    assert!(page.body.contains("0% (0 of 1)"));

    // They ask for erasure: the queue shows it with its deadline (30 days in the EU).
    let (status, created) = harness
        .post_json(
            "/v1/requests",
            &privacy,
            &json!({"type": "erase", "subject": "user_id:reader-1"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap();
    let due = created["due_at"].as_str().unwrap();
    // One long overdue, made before this console existed.
    let now = tactful_app::now_millis();
    let overdue = RequestRecord {
        id: "req_forgotten".into(),
        subject: None,
        kind: RequestKind::Access,
        status: RequestStatus::Received,
        source: "api".into(),
        received_at: now - 40 * 86_400_000,
        due_at: now - 10 * 86_400_000 - 1,
        extension_reason: None,
        completed_at: None,
        details: json!({}),
        sealed: None,
        steps: Vec::new(),
        verification: None,
        verification_attempts: 0,
        verification_expires: None,
        lease_until: Some(now + 3_600_000),
        updated_at: now,
    };
    harness.state.store.create_request(overdue, Vec::new()).await.unwrap();
    let page = harness.console_get("/console", Some(&set)).await;
    let row = page.row(id);
    assert!(row.contains(r#"data-status="received""#), "{row}");
    assert!(row.contains("Erasure"), "{row}");
    assert!(row.contains(&tactful_server::web::when(due)), "the deadline: {row}");
    assert!(row.contains("in 30 days"), "{row}");
    let subject = harness.subject_of("user_id", "reader-1").await.unwrap();
    assert!(row.contains(&subject), "the person by id only: {row}");
    assert!(!page.body.contains(EMAIL) && !page.body.contains("Berlin"), "nothing personal is shown");
    let late = page.row("req_forgotten");
    assert!(
        late.contains(r#"class="overdue""#)
            && late.contains(r#"<strong class="bad">11 days overdue</strong>"#),
        "{late}"
    );
    assert!(page.body.contains(r#"<span class="stat" id="open-requests">2</span>"#));
    assert!(page.body.find("req_forgotten").unwrap() < page.body.find(id).unwrap(), "soonest deadline first");

    // Carried out here, the erasure waits for the CRM to confirm.
    for _ in 0..5 {
        tactful_app::requests::run_due(&harness.state, tactful_app::now_millis()).await.unwrap();
    }
    let page = harness.console_get("/console", Some(&set)).await;
    let row = page.row(id);
    assert!(row.contains(r#"data-status="waiting_on_destinations""#), "{row}");
    assert!(row.contains(r#"data-destination="Bookshop CRM" data-delivery="pending""#), "{row}");
    let detail = harness.console_get(&format!("/console/requests/{id}"), Some(&set)).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert!(detail.body.contains("Waiting on destinations"));
    assert!(detail.body.contains("Bookshop CRM: pending"), "{}", detail.body);
    assert!(detail.body.contains(&tactful_server::web::when(due)));
    let missing = harness.console_get("/console/requests/req_nothing", Some(&set)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("unknown_request"), "{}", missing.body);

    // The log stays intact through all of it.
    assert!(page.body.contains(r#"data-audit="intact""#));
}

#[tokio::test]
async fn forms_need_their_csrf_token_and_signing_out_ends_the_session() {
    let harness = harness().await;
    let privacy = harness.key("privacy").await;
    let cookie = harness.console_session(&privacy).await;
    let page = harness.console_get("/console", Some(&cookie)).await;
    let csrf = page.csrf();

    for form in [String::new(), "csrf=forged".to_owned()] {
        let request = Request::post("/console/sign-out")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::COOKIE, cookie_pair(&cookie))
            .body(Body::from(form))
            .unwrap();
        let (status, headers, body) = harness.send(request).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf_failed")));
        assert!(headers.get(header::SET_COOKIE).is_none(), "still signed in");
    }
    // Another session's token does not do either.
    let other = harness.console_session(&privacy).await;
    let other_csrf = harness.console_get("/console", Some(&other)).await.csrf();
    assert_ne!(other_csrf, csrf);
    let refused =
        harness.console_post("/console/sign-out", Some(&cookie), &format!("csrf={other_csrf}")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("csrf_failed"), "shown as a page: {}", refused.body);
    assert!(harness.console_get("/console", Some(&cookie)).await.body.contains("Privacy console"));

    let out = harness.console_post("/console/sign-out", Some(&cookie), &format!("csrf={csrf}")).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.cookie().unwrap().contains("Max-Age=0"), "the cookie is cleared");
}

#[tokio::test]
async fn a_revoked_keys_session_stops_working_at_once() {
    let harness = harness().await;
    let privacy = harness.key("privacy").await;
    let cookie = harness.console_session(&privacy).await;
    assert_eq!(harness.console_get("/console", Some(&cookie)).await.status, StatusCode::OK);

    harness.revoke_key(&privacy).await;
    let page = harness.console_get("/console", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("Sign in to the console"), "{}", page.body);
    assert!(page.body.contains("your console session has ended"));
    assert!(!page.body.contains("Privacy console"));
    assert!(page.cookie().unwrap().contains("Max-Age=0"), "the dead session is cleared");
    let detail = harness.console_get("/console/requests/req_anything", Some(&cookie)).await;
    assert_eq!(detail.status, StatusCode::UNAUTHORIZED);
    assert!(detail.body.contains("session_expired"), "{}", detail.body);

    // Nor does a session cookie someone made up.
    let forged = format!("{}x", cookie_pair(&cookie));
    let page = harness.console_get("/console", Some(&forged)).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("Sign in to the console"));
}

#[tokio::test]
async fn recommendation_quality_is_measured_on_demand_beside_the_popular_list() {
    let catalog = Catalog::parse(crate::personalize::CATALOG).unwrap();
    let h = Harness::open(catalog, 64, None).await;
    // Ten tastes of three items each; nine people per taste come to them, three in each order
    // (a b c, b c a, c a b), so whichever item is held out, three others had it with each of the rest.
    let items: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("item-{i}"), "name": format!("Item {i}"), "categories": [format!("taste-{}", i / 3)]}))
        .collect();
    let key = h.key("personalization").await;
    let (status, body) = h.post_json("/v1/items", &key, &json!({ "items": items }).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let consent = json!({"consent": {"categoryPreferences": {"Personalization": true}}});
    for person in 0..90 {
        let (taste, rotation) = (person % 10, person / 30);
        for step in 0..3 {
            let item = taste * 3 + (rotation + step) % 3;
            let event = json!({"type": "track", "event": "Product Viewed", "userId": format!("p-{person}"),
                "messageId": format!("p-{person}-{step}"), "properties": {"product_id": format!("item-{item}")},
                "timestamp": format!("2026-11-0{}T10:00:00Z", step + 1), "context": consent});
            let (status, body) = h.track("wk_web_fernhill", event, false).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let engine = h.state.personalization.clone().unwrap();
    while tactful_app::personalize::update_dirty(&h.state, &engine).await.unwrap() > 0 {}
    engine.sync(h.state.store.as_ref(), &h.state.vault).await.unwrap();

    let cookie = h.console_session(&h.key("privacy").await).await;
    let dashboard = h.console_get("/console", Some(&cookie)).await;
    assert!(dashboard.body.contains("Measure quality now"));
    let refused = h.console_post("/console/quality", Some(&cookie), "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "the CSRF token is needed");
    let page = h.console_post("/console/quality", Some(&cookie), &format!("csrf={}", dashboard.csrf())).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let hit_rate = |model: &str| -> f64 {
        let start = page.body.find(&format!(r#"data-model="{model}""#)).unwrap_or_else(|| panic!("{model}"));
        let row = &page.body[start..start + page.body[start..].find("</tr>").unwrap()];
        row.split(r#"<td class="num">"#).nth(1).unwrap().split('<').next().unwrap().parse().unwrap()
    };
    // The hidden third item always follows the first two of its taste: the served model (k = 3)
    // finds it every time; the popular list, where every item is as popular, rarely.
    assert_eq!(hit_rate("item-to-item"), 1.0, "{}", page.body);
    assert!(hit_rate("most popular") < 0.6, "{}", page.body);
    assert!(page.body.contains("× as often as the popular list"));
    assert!(page.body.contains("for each of 90 people"), "{}", page.body);
}
