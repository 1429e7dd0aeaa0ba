//! The preference center as a customer meets it, and the privacy notice: a signed link opens the
//! person's own settings (and nothing else: expired, altered or foreign links, posts without the
//! CSRF token, and other people's ids are refused without telling whether anyone exists); switches
//! reach the ledger with receipts; interests reach recommendations; downloads and erasure run
//! through the request engine; the notice states what the policy enforces.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};
use tactful_app::tokens::{self as session, Kind};
use tactful_domain::catalog::{Capability, Catalog};

use crate::common::Harness;
use crate::personalize::CATALOG;

const PURPOSE: &str = "personalize.content";

async fn harness() -> Harness {
    let catalog = Catalog::parse(CATALOG).unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let harness = Harness::open(catalog, 64, None).await;
    let key = harness.key("personalization").await;
    let items = json!({"items": [
        {"id": "boot", "name": "Hiking Boot", "categories": ["shoes"], "price": 12000},
        {"id": "sock", "name": "Wool Sock", "categories": ["socks"], "price": 1500},
        {"id": "hat", "name": "Sun Hat", "categories": ["hats"], "price": 2500},
        {"id": "test-kit", "name": "Pregnancy Test", "categories": ["pregnancy"], "price": 900}
    ]});
    let (status, body) = harness.post_json("/v1/items", &key, &items.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    harness
}

/// A browser: the session cookie it holds, and the pages' CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Harness {
    /// Opens a user's settings from a browser that sends `Sec-GPC: 1`: their subject and the page.
    async fn open_with_gpc(&self, user: &str) -> (String, String) {
        let subject = self.subject_of("user_id", user).await.unwrap();
        let browser = self.open_link(&self.link(&subject).await).await;
        let request = Request::get("/me")
            .header(header::COOKIE, &browser.cookie)
            .header(header::ACCEPT, "text/html")
            .header("sec-gpc", "1")
            .body(Body::empty())
            .unwrap();
        let (status, _, html) = self.send(request).await;
        assert_eq!(status, StatusCode::OK);
        (subject, html.as_str().unwrap().to_owned())
    }

    /// A customer who signed up, viewed a boot, and said yes to personalization on the banner.
    async fn customer(&self, user: &str, email: &str) -> String {
        let event = json!({"type": "identify", "userId": user, "messageId": format!("{user}-id"),
            "traits": {"email": email},
            "context": {"consent": {"categoryPreferences": {"Personalization": true, "Email": true}}}});
        let (status, body) = self.track("wk_web_fernhill", event, false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let view = json!({"type": "track", "event": "Product Viewed", "userId": user,
            "messageId": format!("{user}-view"), "properties": {"product_id": "boot"}});
        self.track("wk_web_fernhill", view, false).await;
        self.subject_of("user_id", user).await.expect("stored")
    }

    /// The brand's backend asks for a link, as `POST /v1/subjects/{id}/link` does, with a key whose
    /// role may issue links.
    async fn link(&self, reference: &str) -> String {
        let roles = self.state.catalog.roles();
        let role = roles.iter().find(|role| role.may(Capability::IssueLinks)).expect("a role issues links");
        let backend = self.key(&role.name).await;
        let (status, body) = self.post_json(&format!("/v1/subjects/{reference}/link"), &backend, "").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["url"].as_str().unwrap().to_owned()
    }

    async fn page(&self, path: &str, cookie: Option<&str>) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::get(path).header(header::ACCEPT, "text/html");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let (status, headers, body) = self.send(request.body(Body::empty()).unwrap()).await;
        (status, headers, body.as_str().map(str::to_owned).unwrap_or_else(|| body.to_string()))
    }

    /// Opens a link as a browser does: the session cookie it sets, then the page's CSRF token.
    async fn open_link(&self, url: &str) -> Browser {
        let path = url.split_once("127.0.0.1:8080").map_or(url, |(_, path)| path);
        let (status, headers, _) = self.page(path, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[header::LOCATION], "/me", "the token leaves the address bar");
        let set = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        let cookie = set.split(';').next().unwrap().to_owned();
        let (status, _, html) = self.page("/me", Some(&cookie)).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        Browser { cookie, csrf }
    }

    /// Posts a form as the page's own form would, with the browser's cookie.
    async fn form(&self, browser: &Browser, path: &str, fields: &str) -> (StatusCode, HeaderMap, Value) {
        let request = Request::post(path)
            .header(header::COOKIE, &browser.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(fields.to_owned()))
            .unwrap();
        self.send(request).await
    }
}

fn choice<'a>(body: &'a Value, purpose: &str) -> &'a Value {
    body["choices"].as_array().unwrap().iter().find(|c| c["purpose"] == purpose).unwrap()
}

#[tokio::test]
async fn a_signed_link_opens_the_persons_own_settings_and_switches_reach_the_ledger_with_receipts() {
    let h = harness().await;
    let subject = h.customer("u-ada", "ada@example.com").await;
    let url = h.link("email:ada@example.com").await;
    assert!(url.starts_with("http://127.0.0.1:8080/me?t="), "{url}");
    let browser = h.open_link(&url).await;

    let (_, headers, html) = h.page("/me", Some(&browser.cookie)).await;
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(html.contains("ada@example.com"), "what we know shows their own email");
    assert!(html.contains("Product recommendations") && html.contains("Products that match your taste."));
    assert!(html.contains("data-purpose=\"personalize.content\" data-state=\"on\""));

    // Without the CSRF token (or with another session's) nothing changes.
    let (status, _, body) = h.form(&browser, "/me/consents", &format!("purpose={PURPOSE}&choice=off")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "csrf_failed");
    let other = h.open_link(&h.link(&subject).await).await;
    let (status, ..) =
        h.form(&browser, "/me/consents", &format!("csrf={}&purpose={PURPOSE}&choice=off", other.csrf)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a token of another session");

    let (status, headers, _) = h
        .form(&browser, "/me/consents", &format!("csrf={}&purpose={PURPOSE}&choice=off", browser.csrf))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.contains("receipts=") && location.ends_with("#choices"), "{location}");

    // The brand's API sees the withdrawal, recorded by the preference center, with its receipt.
    let privacy = h.key("privacy").await;
    let (_, consents) = h.get(&format!("/v1/subjects/{subject}/consents"), &privacy).await;
    let state = consents["purposes"].as_array().unwrap().iter().find(|p| p["purpose"] == PURPOSE).unwrap();
    assert_eq!(state["status"], "withdrawn");
    assert_eq!(state["method"], "preference_center");
    let receipt = state["receipt"].as_str().unwrap();
    let (status, _, html) = h.page(&location, Some(&browser.cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(receipt) && html.contains("You said no"), "the page shows the signed receipt");
    let (status, _, file) = h.page(&format!("/me/receipts/{receipt}"), Some(&browser.cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(file.contains("\"Ed25519\""), "{file}");

    // "No to all" is one click, like "yes to all", and a no that holds already records nothing.
    let (status, headers, _) =
        h.form(&browser, "/me/consents", &format!("csrf={}&all=off", browser.csrf)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[header::LOCATION].to_str().unwrap().contains("receipts="));
    let (_, headers, _) = h.form(&browser, "/me/consents", &format!("csrf={}&all=off", browser.csrf)).await;
    assert_eq!(headers[header::LOCATION], "/me?done=nothing#choices");
    let (_, consents) = h.get(&format!("/v1/subjects/{subject}/consents"), &privacy).await;
    assert!(
        consents["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["essential"] == true || p["status"] == "withdrawn")
    );

    // Essential purposes cannot be switched off here (erasure ends them).
    let (status, _, body) = h
        .form(
            &browser,
            "/me/consents",
            &format!("csrf={}&purpose=essential.service&choice=off", browser.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Signing out ends the session on this browser.
    let (status, headers, _) = h.form(&browser, "/me/sign-out", &format!("csrf={}", browser.csrf)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn expired_altered_and_foreign_links_are_refused_alike_without_telling_who_exists() {
    let h = harness().await;
    let subject = h.customer("u-ada", "ada@example.com").await;
    let url = h.link(&subject).await;
    let token = url.split("t=").nth(1).unwrap();
    let expired = session::issue(&h.state.vault, Kind::Link, &subject, tactful_app::now_millis() - 1);
    let stranger = session::issue(&h.state.vault, Kind::Link, "sub_nobodyhere", i64::MAX);
    let session_as_link = session::issue(&h.state.vault, Kind::Me, &subject, i64::MAX);
    let mut altered = token.to_owned();
    altered.replace_range(2..3, if &altered[2..3] == "A" { "B" } else { "A" });
    let mut answers = Vec::new();
    for bad in [expired.as_str(), altered.as_str(), stranger.as_str(), session_as_link.as_str(), "nonsense"] {
        let (status, headers, html) = h.page(&format!("/me?t={bad}"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(headers.get(header::SET_COOKIE).is_none());
        assert!(html.contains("This link is not valid") || html.contains("this link is not valid"), "{html}");
        answers.push(html);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "every refusal reads the same");
    // An API client gets the JSON shape.
    let request = Request::get(format!("/me?t={expired}")).body(Body::empty()).unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_link");
    // No session, or a forged one: sign in again.
    let (status, _, body) = h.send(Request::get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("session_expired")));
    let forged = format!("tactful_me={}", session_as_link.replace(".", ".x"));
    let (status, ..) = h.page("/me", Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A link for someone the brand API does not know is refused without a link being made.
    let privacy = h.key("privacy").await;
    let (status, body) = h.post_json("/v1/subjects/email:nobody@example.com/link", &privacy, "").await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_subject")));
    let marketing = h.key("marketing").await;
    let (status, _) = h.post_json(&format!("/v1/subjects/{subject}/link"), &marketing, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only a role that may issue links");
}

#[tokio::test]
async fn another_persons_ids_in_a_form_or_an_address_are_refused_as_if_they_did_not_exist() {
    let h = harness().await;
    let ada = h.customer("u-ada", "ada@example.com").await;
    let bob = h.customer("u-bob", "bob@example.com").await;
    let ada_browser = h.open_link(&h.link(&ada).await).await;
    let bob_browser = h.open_link(&h.link(&bob).await).await;

    // A subject slipped into a form: refused, and Bob's consent is untouched.
    let (status, _, body) = h
        .form(
            &ada_browser,
            "/me/consents",
            &format!("csrf={}&purpose={PURPOSE}&choice=off&subject={bob}", ada_browser.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let privacy = h.key("privacy").await;
    let (_, consents) = h.get(&format!("/v1/subjects/{bob}/consents"), &privacy).await;
    let state = consents["purposes"].as_array().unwrap().iter().find(|p| p["purpose"] == PURPOSE).unwrap();
    assert_eq!(state["status"], "given");

    // Bob's download request and receipt, seen from Ada's session: not found, like made-up ids.
    let (status, headers, _) =
        h.form(&bob_browser, "/me/export", &format!("csrf={}", bob_browser.csrf)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let bobs_request =
        headers[header::LOCATION].to_str().unwrap().trim_start_matches("/me/requests/").to_owned();
    let bobs_receipt = state["receipt"].as_str().unwrap().to_owned();
    for (theirs, made_up) in [
        (format!("/me/requests/{bobs_request}"), "/me/requests/req_madeup".to_owned()),
        (format!("/me/receipts/{bobs_receipt}"), "/me/receipts/rcpt_madeup".to_owned()),
        (format!("/v1/me/requests/{bobs_request}"), "/v1/me/requests/req_madeup".to_owned()),
    ] {
        let get = |path: String| {
            Request::get(path).header(header::COOKIE, &ada_browser.cookie).body(Body::empty()).unwrap()
        };
        let (status, _, body) = h.send(get(theirs.clone())).await;
        let (status_made_up, _, body_made_up) = h.send(get(made_up)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{theirs}: {body}");
        assert_eq!((status, &body), (status_made_up, &body_made_up), "{theirs}");
    }
}

#[tokio::test]
async fn interests_told_in_the_preference_center_lead_recommendations_with_their_reason() {
    let h = harness().await;
    let ada = h.customer("u-ada", "ada@example.com").await;
    let browser = h.open_link(&h.link(&ada).await).await;
    let (_, _, html) = h.page("/me", Some(&browser.cookie)).await;
    assert!(html.contains("value=\"hats\""), "topics come from the item catalogue");
    assert!(
        html.contains("value=\"pregnancy\"") && html.contains("sensitive"),
        "sensitive topics are marked"
    );

    let (status, headers, body) = h
        .form(
            &browser,
            "/me/interests",
            &format!("csrf={}&interest=hats&other=Pregnancy,HATS,trail running", browser.csrf),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers[header::LOCATION], "/me?done=interests#interests");
    assert_eq!(
        h.profile(&ada).await["traits.interests"],
        json!(["hats", "pregnancy", "trail running"]),
        "topics take the catalogue's spelling"
    );

    // Through the customer API with the link as a Bearer token.
    let link = h.link(&ada).await;
    let token = link.split("t=").nth(1).unwrap().to_owned();
    let (status, body) = h.get("/v1/me/recommendations", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reasons: Vec<(&str, &str)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["reason"]["type"].as_str().unwrap()))
        .collect();
    assert!(reasons.contains(&("hat", "you_told_us")), "{reasons:?}");
    assert!(reasons.contains(&("test-kit", "you_told_us")), "a sensitive item only because they said so");
    let told = body["items"].as_array().unwrap().iter().find(|i| i["id"] == "hat").unwrap();
    assert_eq!(told["why"], "You told us you like hats");
    let (_, _, html) = h.page("/me", Some(&browser.cookie)).await;
    assert!(html.contains("data-item=\"hat\" data-reason=\"you_told_us\""), "why am I seeing this");

    // With personalization off, interests are not kept: the form says why, the post is refused.
    let (status, _, _) = h
        .form(&browser, "/me/consents", &format!("csrf={}&purpose={PURPOSE}&choice=off", browser.csrf))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, body) =
        h.form(&browser, "/me/interests", &format!("csrf={}&interest=socks", browser.csrf)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_permitted")),
        "{body}"
    );
    let (_, body) = h.get("/v1/me/recommendations", &token).await;
    assert_eq!(body["personalized"], false);
    assert_eq!(body["not_personalized_because"], "you switched this off");

    // Changes through the customer API with the cookie need the CSRF header.
    let request = |csrf: Option<&str>| {
        let mut request = Request::put("/v1/me/interests")
            .header(header::COOKIE, &browser.cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.body(Body::from(json!({"interests": ["socks"]}).to_string())).unwrap()
    };
    let (status, _, body) = h.send(request(None)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("csrf_failed")));
    let (status, _, body) = h.send(request(Some(&browser.csrf))).await;
    assert_eq!(body["error"]["code"], "not_permitted", "{status}");

    // A brand's app, holding the link, switches it back on for them: a receipt, and it holds.
    let request = Request::post("/v1/me/consents")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"changes": [{"purpose": PURPOSE, "allow": true}]}).to_string()))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["receipts"].as_array().unwrap().len(), 1);
    assert_eq!(choice(&body, PURPOSE)["state"], "on");
    let (_, me) = h.get("/v1/me", &token).await;
    assert_eq!(choice(&me, PURPOSE)["on"], true);
    assert!(me["known"].as_array().unwrap().iter().any(|k| k["category"] == "user.contact.email"));
}

#[tokio::test]
async fn a_download_and_an_erasure_run_through_the_request_engine_to_the_end() {
    let h = harness().await;
    let ada = h.customer("u-ada", "ada@example.com").await;
    let browser = h.open_link(&h.link(&ada).await).await;

    let (status, headers, _) = h.form(&browser, "/me/export", &format!("csrf={}", browser.csrf)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let page = headers[header::LOCATION].to_str().unwrap().to_owned();
    let (status, headers, html) = h.page(&page, Some(&browser.cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("We are working on it."), "{html}");
    assert_eq!(headers[header::REFRESH], "2", "the page follows the request by itself");
    tactful_app::requests::run_due(&h.state, tactful_app::now_millis()).await.unwrap();
    let (_, headers, html) = h.page(&page, Some(&browser.cookie)).await;
    assert!(html.contains("Ready to download."), "{html}");
    assert!(headers.get(header::REFRESH).is_none());
    let (status, headers, package) =
        h.page(&format!("{page}/package?format=json"), Some(&browser.cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_DISPOSITION].to_str().unwrap().contains("attachment"));
    assert!(package.contains("ada@example.com") && package.contains("tactful-export/1"));
    // Her own download is in her access log as hers, and the page says so in words.
    let (_, log) = h.get(&format!("/v1/subjects/{ada}/access-log"), &h.key("privacy").await).await;
    let download = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "read" && e["returned"].to_string().contains("user.contact.email"))
        .unwrap_or_else(|| panic!("the download is logged: {log}"))
        .clone();
    assert_eq!((download["actor"].as_str(), download["role"].as_str()), (Some("subject"), Some("self")));
    let (_, _, html) = h.page("/me", Some(&browser.cookie)).await;
    assert!(html.contains("Shown to you"), "{html}");

    // Erasure needs the confirmation; then it ends the session and can be followed to the end.
    let (status, _, body) = h.form(&browser, "/me/erase", &format!("csrf={}", browser.csrf)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, headers, _) =
        h.form(&browser, "/me/erase", &format!("csrf={}&confirm=yes", browser.csrf)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let page = headers[header::LOCATION].to_str().unwrap().to_owned();
    let cookies: Vec<&str> =
        headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("tactful_me=;") && c.contains("Max-Age=0")));
    let erasure =
        cookies.iter().find(|c| c.starts_with("tactful_erasure=")).unwrap().split(';').next().unwrap();
    for _ in 0..5 {
        tactful_app::requests::run_due(&h.state, tactful_app::now_millis()).await.unwrap();
    }
    let (status, _, html) = h.page(&page, Some(erasure)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Done: your data is deleted everywhere."), "{html}");
    assert!(h.subject_of("email", "ada@example.com").await.is_none(), "nothing leads to them any more");
    // The old session, kept by someone, opens nothing.
    let (status, ..) = h.page("/me", Some(&browser.cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The audit log recorded the sign-in by pseudonym, never a value.
    let entries = h.state.store.audit_entries(0, 10_000).await.unwrap();
    let text: String = entries.iter().map(|e| e.text.clone()).collect();
    assert!(text.contains("\"kind\":\"preference_center\"") && text.contains("\"action\":\"signed_in\""));
    assert!(!text.contains("ada@example.com") && !text.contains(&ada));
}

#[tokio::test]
async fn the_privacy_notice_states_what_the_policy_enforces_for_people_and_machines() {
    let catalog = Catalog::parse(Catalog::example_text()).unwrap();
    let h = Harness::open(catalog, 64, None).await;
    let (status, headers, html) = h.page("/privacy", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'none'"));
    for text in [
        "Product recommendations",
        "You see products that match your taste instead of a random selection.",
        "We never use where you are to target advertising in the EU or the UK.",
        "California (CCPA/CPRA): 45 days",
        "Delete my data",
        "How we know it is you",
        "Linked to your account only while you are signed in",
    ] {
        assert!(html.contains(&text.replace('\'', "&#x27;")) || html.contains(text), "{text}");
    }
    assert!(!html.contains("<script>") && !html.contains("style=\""), "no inline code or styles");

    let request = Request::get("/privacy.json").body(Body::empty()).unwrap();
    let (status, _, notice) = h.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(notice["format"], "tactful-notice/1");
    assert_eq!(notice["catalog_sha256"], h.state.catalog.sha256());
    let purposes = notice["purposes"].as_array().unwrap();
    assert_eq!(purposes.len(), h.state.catalog.purposes().len());
    let ads = purposes.iter().find(|p| p["key"] == "marketing.advertising.third_party.targeted").unwrap();
    let eu = ads["basis"].as_array().unwrap().iter().find(|b| b["jurisdiction"] == "eu").unwrap();
    let never = eu["uses"].as_array().unwrap().iter().find(|u| u["basis"] == "never").unwrap();
    assert_eq!(never["rule"], "no-location-for-ads-in-europe");
    assert!(never["categories"].as_array().unwrap().contains(&json!("user.location.coarse")));
    let ca = ads["basis"].as_array().unwrap().iter().find(|b| b["jurisdiction"] == "us-ca").unwrap();
    assert_eq!(ca["uses"][0]["basis"], "unless_you_opt_out");
    // What counts as proof, per source: the shop's servers, or a signed-in page or app.
    let proofs: Vec<(&str, &str)> = notice["identity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["proof"].as_str().unwrap()))
        .collect();
    assert_eq!(proofs, [("browser", "signed_in"), ("server", "our_servers"), ("mobile", "signed_in")]);

    // The front door points to the notice, and assets come from the server itself.
    let (status, _, html) = h.page("/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("href=\"/privacy\"") && html.contains("href=\"/assets/tactful.css\""));
    let (status, headers, css) = h.page("/assets/tactful.css", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
    assert!(!css.contains("http://") && !css.contains("https://") && !css.contains("@import"));
}

#[tokio::test]
async fn a_one_time_code_opens_the_settings_once_and_answers_alike_for_strangers() {
    let h = harness().await;
    let ada = h.customer("u-ada", "ada@example.com").await;
    let post = |path: &str, cookie: Option<&str>, body: String| {
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.header(header::ACCEPT, "text/html").body(Body::from(body)).unwrap()
    };
    let start = |address: &str| post("/me/sign-in", None, format!("address={address}"));

    // Known or not, the answer is the same: a cookie for the pending sign-in, and the code page.
    let (status, known, _) = h.send(start("Ada%40Example.com")).await;
    let (status_stranger, stranger, _) = h.send(start("nobody%40example.com")).await;
    assert_eq!((status, status_stranger), (StatusCode::SEE_OTHER, StatusCode::SEE_OTHER));
    assert_eq!(known[header::LOCATION], stranger[header::LOCATION]);
    let cookie = |headers: &HeaderMap| {
        headers[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned()
    };
    let (ada_cookie, stranger_cookie) = (cookie(&known), cookie(&stranger));
    assert!(ada_cookie.starts_with("tactful_sign_in=") && stranger_cookie.starts_with("tactful_sign_in="));
    assert!(h.notifications().is_empty(), "nothing is sent during the answer");
    assert_eq!(h.send_codes().await, 2, "both messages wait in the outbox");
    let sent = h.notifications();
    assert_eq!(sent.len(), 1, "only the known address gets a message");
    let digits: String =
        sent[0].split(" is ").nth(1).unwrap().chars().take(9).filter(char::is_ascii_digit).collect();
    assert_eq!(digits.len(), 8, "{}", sent[0]);

    let (status, _, html) = h.page("/me/sign-in/code", Some(&ada_cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"code\""));
    let wrong = if digits == "00000000" { "11111111" } else { "00000000" };
    let (status, _, body) =
        h.send(post("/me/sign-in/code", Some(&ada_cookie), format!("code={wrong}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.as_str().unwrap().contains("That is not the code. 4 tries left."));
    let (status, _, body) =
        h.send(post("/me/sign-in/code", Some(&stranger_cookie), format!("code={digits}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a stranger's sign-in never works, and says the same");
    assert!(body.as_str().unwrap().contains("That is not the code. 4 tries left."));

    // The right code opens Ada's settings, once.
    let spaced = format!("{}+{}", &digits[..4], &digits[4..]);
    let (status, headers, _) =
        h.send(post("/me/sign-in/code", Some(&ada_cookie), format!("code={spaced}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/me");
    let session = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("tactful_me="))
        .unwrap();
    let (status, _, html) = h.page("/me", Some(&session)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("ada@example.com"));
    let (status, _, body) =
        h.send(post("/me/sign-in/code", Some(&ada_cookie), format!("code={digits}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "used up");
    assert!(body.as_str().unwrap().contains("no longer works"));

    // Without the pending sign-in, or a malformed address: clear answers.
    let (status, ..) = h.send(post("/me/sign-in/code", None, format!("code={digits}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = h.send(start("not-an-address")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, log) = h.get(&format!("/v1/subjects/{ada}/access-log"), &h.key("privacy").await).await;
    assert!(log.to_string().contains("signed_in_with_code"), "{log}");
}

#[tokio::test]
async fn a_browsers_global_privacy_control_switches_off_sale_and_sharing_but_not_a_yes_given_by_hand() {
    let h = Harness::open(Catalog::parse(Catalog::example_text()).unwrap(), 64, None).await;
    let ads = "marketing.advertising.third_party.targeted";
    let person = |user: &str, advertising: Option<bool>| {
        // The shop's signed-in page sends the identity token its backend made for this person.
        let mut event = json!({"type": "identify", "userId": user, "messageId": format!("{user}-1"),
            "traits": {"email": format!("{user}@example.com")},
            "context": {"identityToken": crate::common::web_token(user)}});
        if let Some(yes) = advertising {
            event["context"]["consent"] = json!({"categoryPreferences": {"Advertising": yes}});
        }
        event
    };
    for (user, advertising) in [("u-gpc", None), ("u-yes", Some(true))] {
        let (status, body) = h.track("wk_web_fernhill_demo", person(user, advertising), false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let privacy = h.key("privacy").await;
    let status_of = |consents: &Value| {
        consents["purposes"].as_array().unwrap().iter().find(|p| p["purpose"] == ads).unwrap().clone()
    };

    let (subject, html) = h.open_with_gpc("u-gpc").await;
    assert!(html.contains("We have switched off: Ads on other websites."), "{html}");
    let (_, consents) = h.get(&format!("/v1/subjects/{subject}/consents"), &privacy).await;
    let ad = status_of(&consents);
    assert_eq!((ad["status"].as_str(), ad["method"].as_str()), (Some("withdrawn"), Some("gpc")));

    let (subject, html) = h.open_with_gpc("u-yes").await;
    assert!(html.contains("You said yes yourself to Ads on other websites"), "{html}");
    let (_, consents) = h.get(&format!("/v1/subjects/{subject}/consents"), &privacy).await;
    assert_eq!(status_of(&consents)["status"], "given", "their own yes stands until they change it");
}
