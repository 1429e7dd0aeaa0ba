//! Sessions and links that can be ended, on every instance: a signed-out cookie (preference center
//! or console) is refused by another instance over the same database; a link opens once, also when
//! two instances open it at once; a brand key allowed to end sessions signs a person out everywhere
//! (their access log says so), and no other key may.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tactful_app::{App, Config};
use tactful_domain::catalog::Catalog;
use tactful_server::AppState;

use crate::common::Harness;

fn catalog() -> Catalog {
    Catalog::parse(Catalog::example_text()).unwrap_or_else(|errors| panic!("{}", errors.render("test")))
}

/// Two instances over one database: SQLite in a temporary directory, or PostgreSQL at `database`.
struct Instances {
    a: Harness,
    b: Harness,
}

async fn instances(database: Option<String>) -> Instances {
    let a = Harness::open(catalog(), 64, database.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database: database.unwrap_or_else(|| format!("sqlite:{}", a.dir.path().join("tactful.db").display())),
        master_key_file: a.dir.path().join("master.key"),
        notifier: format!("file:{}", dir.path().join("notifications").display()),
        ..Config::default()
    };
    let app = App::open(&config, catalog()).await.unwrap();
    let b = Harness { state: AppState::new(Arc::new(app), &config), dir };
    Instances { a, b }
}

async fn on_postgres() -> Option<Instances> {
    let url = tactful_store::testing::fresh_postgres_database().await?;
    Some(instances(Some(url)).await)
}

/// A browser's answer: status, the cookie it was given (name=value), the body as text.
struct Answer {
    status: StatusCode,
    cookie: Option<String>,
    body: String,
}

impl Answer {
    /// The error code of a refusal: the JSON error's `code`, or the one an error page shows.
    fn code(&self) -> String {
        if let Some(code) = serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
        {
            return code;
        }
        let shown = self.body.split_once("<code>").and_then(|(_, rest)| rest.split_once("</code>"));
        shown.map(|(code, _)| code.to_owned()).unwrap_or_default()
    }

    fn csrf(&self) -> String {
        let (_, rest) = self.body.split_once(r#"name="csrf" value=""#).expect("a form with a CSRF token");
        rest.split('"').next().unwrap().to_owned()
    }
}

impl Harness {
    async fn call(&self, request: axum::http::request::Builder, body: Body) -> Answer {
        let (status, headers, body) = self.send(request.body(body).unwrap()).await;
        let cookie = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap().to_owned())
            .find(|pair| !pair.ends_with('='));
        let body = match body {
            Value::String(text) => text,
            other => other.to_string(),
        };
        Answer { status, cookie, body }
    }

    /// A page, as a browser asks for it.
    async fn visit(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = Request::get(path).header(header::ACCEPT, "text/html");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.call(request, Body::empty()).await
    }

    /// A form post, as the page's own form sends it.
    async fn submit(&self, path: &str, cookie: Option<&str>, form: &str) -> Answer {
        let mut request = Request::post(path)
            .header(header::ACCEPT, "text/html")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.call(request, Body::from(form.to_owned())).await
    }

    /// `/v1/me` with a session cookie or a link's token as Bearer token.
    async fn me_api(&self, path: &str, cookie: Option<&str>, bearer: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.call(request, Body::empty()).await
    }

    /// A customer the shop's backend told us about.
    async fn person(&self, user: &str) -> String {
        let event = json!({"type": "identify", "userId": user, "messageId": format!("{user}-1"),
                           "traits": {"email": format!("{user}@example.com")}});
        let (status, body) = self.track("wk_backend_fernhill_demo", event, false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.subject_of("user_id", user).await.expect("stored")
    }

    /// A link to `subject`'s preference center, as the shop's backend asks for it: its path.
    async fn link_to(&self, subject: &str) -> String {
        let key = self.key("requests").await;
        let (status, body) = self.post_json(&format!("/v1/subjects/{subject}/link"), &key, "").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let url = body["url"].as_str().unwrap();
        url[url.find("/me?t=").unwrap()..].to_owned()
    }
}

fn token(link: &str) -> &str {
    link.trim_start_matches("/me?t=")
}

/// Opens a link on `instance` and answers the session cookie.
async fn open(instance: &Harness, link: &str) -> String {
    let answer = instance.visit(link, None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    answer.cookie.expect("a session cookie")
}

#[tokio::test]
async fn a_signed_out_cookie_is_refused_on_every_instance() {
    signed_out_cookie(instances(None).await).await;
}

#[tokio::test]
async fn a_signed_out_cookie_is_refused_on_every_instance_on_postgres() {
    let Some(instances) = on_postgres().await else { return };
    signed_out_cookie(instances).await;
}

async fn signed_out_cookie(Instances { a, b }: Instances) {
    let ada = a.person("ada").await;
    let cookie = open(&a, &a.link_to(&ada).await).await;
    let page = b.visit("/me", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "the other instance knows the session");
    assert_eq!(b.me_api("/v1/me", Some(&cookie), None).await.status, StatusCode::OK);

    let signed_out = a.submit("/me/sign-out", Some(&cookie), &format!("csrf={}", page.csrf())).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER, "{}", signed_out.body);
    // A copy of the cookie kept elsewhere opens nothing, on either instance.
    for instance in [&a, &b] {
        let page = instance.visit("/me", Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
        let api = instance.me_api("/v1/me", Some(&cookie), None).await;
        assert_eq!(
            (api.status, api.code().as_str()),
            (StatusCode::UNAUTHORIZED, "session_expired"),
            "{}",
            api.body
        );
    }
}

#[tokio::test]
async fn a_link_opens_once_even_from_two_instances_at_once() {
    link_once(instances(None).await).await;
}

#[tokio::test]
async fn a_link_opens_once_even_from_two_instances_at_once_on_postgres() {
    let Some(instances) = on_postgres().await else { return };
    link_once(instances).await;
}

async fn link_once(Instances { a, b }: Instances) {
    let ada = a.person("ada").await;
    let forged = a.visit("/me?t=eyJzIjoic3ViX2FkYSJ9.AAAA", None).await;
    assert_eq!(
        (forged.status, forged.code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_link"),
        "{}",
        forged.body
    );
    for round in 0..5 {
        let link = a.link_to(&ada).await;
        // Until it is opened, the brand's app may use it as a Bearer token.
        let api = b.me_api("/v1/me", None, Some(token(&link))).await;
        assert_eq!(api.status, StatusCode::OK, "{}", api.body);
        let (first, second) = tokio::join!(a.visit(&link, None), b.visit(&link, None));
        let opened = [&first, &second].iter().filter(|answer| answer.status == StatusCode::SEE_OTHER).count();
        assert_eq!(opened, 1, "round {round}: one instance opens it ({}, {})", first.status, second.status);
        let refused = if first.status == StatusCode::SEE_OTHER { &second } else { &first };
        assert_eq!((refused.status, &refused.body), (forged.status, &forged.body), "as a forged link is");
        for instance in [&a, &b] {
            let again = instance.visit(&link, None).await;
            assert_eq!((again.status, &again.body), (forged.status, &forged.body), "opened: refused");
            let api = instance.me_api("/v1/me", None, Some(token(&link))).await;
            assert_eq!((api.status, api.code().as_str()), (StatusCode::UNAUTHORIZED, "invalid_link"));
        }
    }
}

#[tokio::test]
async fn a_console_cookie_is_refused_after_sign_out_on_every_instance() {
    let Instances { a, b } = instances(None).await;
    let key = a.key("privacy").await;
    let signed_in = a.submit("/console/sign-in", None, &format!("key={key}")).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", signed_in.body);
    let cookie = signed_in.cookie.expect("a console cookie");
    let dashboard = b.visit("/console", Some(&cookie)).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("Sign out"), "the dashboard, on the other instance");

    let signed_out =
        b.submit("/console/sign-out", Some(&cookie), &format!("csrf={}", dashboard.csrf())).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER, "{}", signed_out.body);
    for instance in [&a, &b] {
        let page = instance.visit("/console", Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
        assert!(page.body.contains("your console session has ended"), "{}", page.body);
    }
    // The key itself still signs in.
    assert_eq!(a.submit("/console/sign-in", None, &format!("key={key}")).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn ending_a_persons_sessions_signs_them_out_everywhere_and_tells_them() {
    let Instances { a, b } = instances(None).await;
    let ada = a.person("ada").await;
    let bob = a.person("bob").await;
    let phone = open(&a, &a.link_to(&ada).await).await;
    let laptop = open(&b, &b.link_to("email:ada@example.com").await).await;
    let unopened = a.link_to(&ada).await;
    let bobs = open(&a, &a.link_to(&bob).await).await;

    let key = a.key("requests").await;
    let (status, body) = b.post_json("/v1/subjects/email:ada@example.com/sessions/end", &key, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"subject": ada, "ended": 3}));
    for instance in [&a, &b] {
        for cookie in [&phone, &laptop] {
            let api = instance.me_api("/v1/me", Some(cookie), None).await;
            assert_eq!(api.code(), "session_expired", "{}", api.body);
        }
        let api = instance.me_api("/v1/me", None, Some(token(&unopened))).await;
        assert_eq!(api.code(), "invalid_link", "{}", api.body);
    }
    let forged = a.visit("/me?t=eyJzIjoic3ViX2FkYSJ9.AAAA", None).await;
    assert_eq!(a.visit(&unopened, None).await.body, forged.body, "the link opens nothing");
    assert_eq!(a.me_api("/v1/me", Some(&bobs), None).await.status, StatusCode::OK, "only ada's");

    // Signing in again works, and the access log says what happened, in plain words.
    let again = open(&b, &a.link_to(&ada).await).await;
    let log = a.me_api("/v1/me/access-log", Some(&again), None).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let log: Value = serde_json::from_str(&log.body).unwrap();
    assert!(log.to_string().contains("Signed you out everywhere"), "{log}");
    let page = a.visit("/me", Some(&again)).await;
    assert!(page.body.contains("Signed you out everywhere"), "shown on their page");
}

#[tokio::test]
async fn ending_sessions_is_denied_by_default() {
    let Instances { a, b: _ } = instances(None).await;
    let ada = a.person("ada").await;
    let cookie = open(&a, &a.link_to(&ada).await).await;
    for role in a.state.catalog.roles().iter().filter(|role| role.name != "requests") {
        let key = a.key(&role.name).await;
        let (status, body) = a.post_json(&format!("/v1/subjects/{ada}/sessions/end"), &key, "").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{}: {body}",
            role.name
        );
        assert!(body["error"]["message"].as_str().unwrap().contains("end_sessions"), "{body}");
    }
    assert_eq!(a.me_api("/v1/me", Some(&cookie), None).await.status, StatusCode::OK, "nothing ended");
}
