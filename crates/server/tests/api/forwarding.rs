//! Forwarding as a brand meets it, against a real HTTP receiver on loopback that checks every
//! signature: events reach each tool only for what the person permits when they are sent, with only
//! the properties declared for it that serve those purposes, under a token of its own; a withdrawal
//! stops the flow; retries deliver once per messageId; replay sends what is permitted now; erasure
//! reaches every tool with every identifier, and the request completes only once each acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tactful_app::{Clock as _, ManualClock};
use tactful_domain::catalog::Catalog;

use crate::access::CATALOG;
use crate::common::Harness;

const SECRET: &str = "whsec_forwarding_0123456789";

/// What the receiver was sent at one path, and what it answered.
#[derive(Clone)]
struct Received {
    path: String,
    status: u16,
    body: Value,
}

/// The brand's tools on loopback: checks each signature (a bad one is answered 401 and noted),
/// answers 500 to as many requests of a path as it is told to, 204 to the rest.
#[derive(Clone, Default)]
struct Tools {
    received: Arc<Mutex<Vec<Received>>>,
    failing: Arc<Mutex<BTreeMap<String, usize>>>,
    bad_signatures: Arc<Mutex<usize>>,
}

impl Tools {
    async fn start() -> (Tools, String) {
        let tools = Tools::default();
        let state = tools.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let state = state.clone();
            async move {
                let path = request.uri().path().to_owned();
                let signature = request
                    .headers()
                    .get("tactful-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let bytes = request.into_body().collect().await.unwrap().to_bytes();
                let signed = signature.and_then(|signature| {
                    let (timestamp, mac) = signature.split_once(",v1=")?;
                    let timestamp: i64 = timestamp.strip_prefix("t=")?.parse().ok()?;
                    Some(tactful_vault::webhook_signature(SECRET, timestamp, &bytes) == mac)
                });
                if signed != Some(true) {
                    *state.bad_signatures.lock().unwrap() += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                let status = {
                    let mut failing = state.failing.lock().unwrap();
                    match failing.get_mut(&path) {
                        Some(left) if *left > 0 => {
                            *left -= 1;
                            StatusCode::INTERNAL_SERVER_ERROR
                        }
                        _ => StatusCode::NO_CONTENT,
                    }
                };
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                state.received.lock().unwrap().push(Received { path, status: status.as_u16(), body });
                status
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (tools, base)
    }

    fn fail_next(&self, path: &str, times: usize) {
        self.failing.lock().unwrap().insert(path.to_owned(), times);
    }

    fn requests(&self, path: &str) -> Vec<Received> {
        assert_eq!(*self.bad_signatures.lock().unwrap(), 0, "every request is signed with the secret");
        self.received.lock().unwrap().iter().filter(|seen| seen.path == path).cloned().collect()
    }

    /// The events a tool took (answered 2xx), in order, once per messageId as a receiver that
    /// dedupes keeps them.
    fn events(&self, path: &str) -> Vec<Value> {
        let mut seen = BTreeSet::new();
        self.requests(path)
            .into_iter()
            .filter(|request| request.status < 300 && request.body["type"] == "events")
            .flat_map(|request| request.body["batch"].as_array().unwrap().clone())
            .filter(|event| seen.insert(event["messageId"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// Every event a tool was sent, retries included.
    fn deliveries(&self, path: &str) -> usize {
        self.requests(path)
            .iter()
            .filter(|request| request.body["type"] == "events")
            .map(|request| request.body["batch"].as_array().unwrap().len())
            .sum()
    }
}

/// The bookshop with three tools: an email tool that knows raw identifiers, an ad partner, and a
/// recommendations partner declared for a sensitive category.
fn catalog(base: &str) -> Catalog {
    let extra = format!(
        r#"
[sources.health]
kind = "server"
write_key = "wk_health_lantern"
default_jurisdiction = "us-ca"
allow_sensitive = true

[properties."traits.condition"]
category = "user.health_and_medical"
purposes = ["personalize.content"]
retention = "1y"
sensitive = true

[destinations.mail]
name = "Email tool"
url = "{base}/mail"
secret = "{SECRET}"
purposes = ["marketing.communications.email", "personalize.content"]
events = ["identify", "Book Viewed"]
properties = ["traits.email", "traits.city", "properties.book_id"]
identifiers = ["email", "user_id", "anonymous_id"]

[destinations.ads]
url = "{base}/ads"
secret = "{SECRET}"
purposes = ["marketing.advertising.third_party.targeted"]
events = ["Book Viewed", "identify"]
properties = ["properties.book_id"]

[destinations.recs]
url = "{base}/recs"
secret = "{SECRET}"
purposes = ["personalize.content"]
events = ["identify"]
properties = ["traits.condition", "traits.city"]
sensitive = ["user.health_and_medical"]
batch_size = 2
"#
    );
    Catalog::parse(&format!("{CATALOG}{extra}")).unwrap_or_else(|errors| panic!("{}", errors.render("test")))
}

struct Shop {
    harness: Harness,
    clock: Arc<ManualClock>,
    tools: Tools,
    privacy: String,
}

impl Shop {
    async fn open() -> Shop {
        let (tools, base) = Tools::start().await;
        let clock = Arc::new(ManualClock::at(tactful_app::now_millis()));
        let harness = Harness::clocked(catalog(&base), clock.clone()).await;
        let privacy = harness.key("privacy").await;
        Shop { harness, clock, tools, privacy }
    }

    /// An event from the brand's Californian server (opt-out), as its SDK sends it.
    async fn send(&self, event: Value) {
        let (status, body) = self.harness.track("wk_ca_lantern", event, false).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn viewed(&self, user: &str, message: &str, book: &str) {
        self.send(json!({"type": "track", "event": "Book Viewed", "userId": user, "messageId": message,
                         "properties": {"book_id": book}}))
            .await;
    }

    /// Runs forwarding as the server's worker does, until every destination is caught up.
    async fn forward(&self) {
        for _ in 0..20 {
            if tactful_app::forward::forward_due(&self.harness.state).await.unwrap() == 0 {
                return;
            }
        }
        panic!("forwarding never caught up");
    }

    async fn consent(&self, user: &str, purpose: &str, status: &str) {
        // A later decision: the ledger orders by time.
        self.clock.advance(1_000);
        let body = json!({"changes": [{"purpose": purpose, "status": status, "method": "explicit"}]});
        let (code, answer) = self
            .harness
            .post_json(&format!("/v1/subjects/user_id:{user}/consents"), &self.privacy, &body.to_string())
            .await;
        assert_eq!(code, StatusCode::CREATED, "{answer}");
    }

    async fn report(&self, key: &str) -> tactful_app::forward::DestinationReport {
        let reports = tactful_app::forward::report(&self.harness.state).await.unwrap();
        reports.into_iter().find(|report| report.key == key).unwrap()
    }
}

const MARKETING: &str = "marketing.communications.email";
const ADS: &str = "marketing.advertising.third_party.targeted";
const PERSONALIZE: &str = "personalize.content";

/// Ada, in California, signs up with her email (saying yes to the newsletter) from her phone.
async fn ada_signs_up(shop: &Shop) {
    shop.send(json!({"type": "identify", "userId": "ada", "anonymousId": "ada-phone", "messageId": "a-1",
                     "traits": {"email": "ada@example.com", "city": "Fresno"},
                     "context": {"consent": {"categoryPreferences": {"Email": true}}}}))
        .await;
}

#[tokio::test]
async fn each_tool_gets_only_what_its_purposes_permit_now_under_its_own_token() {
    let shop = Shop::open().await;
    ada_signs_up(&shop).await;
    shop.viewed("ada", "a-2", "dracula").await;
    shop.forward().await;

    let mail = shop.tools.events("/mail");
    assert_eq!(mail.len(), 2, "{mail:#?}");
    assert_eq!(mail[0]["type"], "identify");
    assert_eq!(mail[0]["properties"], json!({"email": "ada@example.com", "city": "Fresno"}));
    assert_eq!(
        mail[0]["identifiers"],
        json!({"anonymous_id": ["ada-phone"], "email": ["ada@example.com"], "user_id": ["ada"]}),
        "the raw identifiers it is declared to know"
    );
    assert_eq!(mail[1]["event"], "Book Viewed");
    assert_eq!(mail[1]["properties"], json!({"book_id": "dracula"}));
    // The ad partner gets the view with the book, and the sign-up with nothing it is not declared
    // for: no email, no city, no raw identifier.
    let ads = shop.tools.events("/ads");
    assert_eq!(ads.len(), 2, "{ads:#?}");
    assert_eq!(ads[0]["properties"], json!({}), "undeclared properties never leave");
    assert_eq!(ads[0]["identifiers"], json!({}));
    assert_eq!(ads[1]["properties"], json!({"book_id": "dracula"}));
    assert_eq!(ads[1]["purposes"], json!([ADS]));
    for sent in [&ads, &mail] {
        let text = serde_json::to_string(sent).unwrap();
        assert!(!text.contains("a-1") && !text.contains("a-2"), "the brand's messageIds stay inside");
    }
    // Tokens: stable for one tool, different for each, so the tools cannot join what they hold.
    assert_eq!(mail[0]["token"], mail[1]["token"]);
    assert_eq!(ads[0]["token"], ads[1]["token"]);
    assert_ne!(mail[0]["token"], ads[0]["token"]);
    assert_ne!(mail[0]["messageId"], ads[0]["messageId"], "messageIds differ per tool too");
    assert!(!shop.tools.events("/recs").is_empty());
    assert_ne!(shop.tools.events("/recs")[0]["token"], mail[0]["token"]);

    // Ada withdraws personalization: the book no longer serves anything the email tool may use.
    shop.consent("ada", PERSONALIZE, "withdrawn").await;
    shop.viewed("ada", "a-3", "carmilla").await;
    shop.forward().await;
    let mail = shop.tools.events("/mail");
    assert_eq!(mail.len(), 3);
    assert_eq!(mail[2]["properties"], json!({}), "the book serves none of the purposes she permits now");
    assert_eq!(mail[2]["purposes"], json!([MARKETING]));
    let report = shop.report("mail").await;
    assert_eq!(report.delivered, 3);
    assert_eq!(report.refused.get("not_serving"), Some(&1), "{report:?}");
    let ads = shop.report("ads").await;
    assert_eq!(ads.refused.get("not_declared"), Some(&2), "email and city of the sign-up: {ads:?}");
    assert_eq!((ads.lag_seconds, ads.failures, ads.kind.as_str()), (0, 0, "webhook"));
}

#[tokio::test]
async fn a_withdrawal_stops_the_flow_at_the_next_event_and_nothing_sent_is_sent_again() {
    let shop = Shop::open().await;
    ada_signs_up(&shop).await;
    shop.viewed("ada", "w-1", "dracula").await;
    shop.forward().await;
    assert_eq!(shop.tools.events("/ads").len(), 2);

    shop.consent("ada", ADS, "withdrawn").await;
    shop.viewed("ada", "w-2", "carmilla").await;
    shop.forward().await;
    assert_eq!(shop.tools.deliveries("/ads"), 2, "nothing more, nothing again");
    assert_eq!(shop.tools.events("/mail").len(), 3, "the email tool still receives it");
    assert_eq!(shop.report("ads").await.refused.get("consent_withdrawn"), Some(&1));

    // Replay sends again what is permitted now: to the ad partner nothing, to the email tool all,
    // under the same messageIds (a receiver that dedupes keeps one of each).
    let start = shop.clock.now() - 3_600_000;
    tactful_app::forward::replay(&shop.harness.state, "ads", start).await.unwrap();
    tactful_app::forward::replay(&shop.harness.state, "mail", start).await.unwrap();
    shop.forward().await;
    assert_eq!(shop.tools.deliveries("/ads"), 2, "ads: nothing is permitted any more");
    assert_eq!(shop.tools.deliveries("/mail"), 6, "mail: all three again");
    assert_eq!(shop.tools.events("/mail").len(), 3, "the same three messageIds");
    assert_eq!(shop.report("ads").await.refused.get("consent_withdrawn"), Some(&4));
    let error = tactful_app::forward::replay(&shop.harness.state, "nowhere", start).await.unwrap_err();
    assert!(error.message.contains("mail"), "{}", error.message);
}

#[tokio::test]
async fn sensitive_data_goes_only_to_a_tool_declared_for_it_and_only_with_explicit_consent() {
    let shop = Shop::open().await;
    ada_signs_up(&shop).await;
    shop.consent("ada", PERSONALIZE, "given").await;
    let event = json!({"type": "identify", "userId": "ada", "messageId": "s-1",
                       "traits": {"condition": "migraine", "city": "Fresno"}});
    let (status, body) = shop.harness.track("wk_health_lantern", event, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    shop.forward().await;
    let recs = shop.tools.events("/recs");
    assert_eq!(recs.last().unwrap()["properties"], json!({"condition": "migraine", "city": "Fresno"}));
    for tool in ["/mail", "/ads"] {
        let text = serde_json::to_string(&shop.tools.events(tool)).unwrap();
        assert!(!text.contains("migraine"), "{tool} is not declared for health data");
    }
    assert!(shop.report("mail").await.refused.contains_key("not_declared"));

    // Her consent is now only implied (an import): the condition stays home; replayed too.
    shop.clock.advance(1_000);
    let body = json!({"changes": [{"purpose": PERSONALIZE, "status": "given", "method": "imported"}]});
    let (code, answer) =
        shop.harness.post_json("/v1/subjects/user_id:ada/consents", &shop.privacy, &body.to_string()).await;
    assert_eq!(code, StatusCode::CREATED, "{answer}");
    let before = shop.tools.deliveries("/recs");
    tactful_app::forward::replay(&shop.harness.state, "recs", shop.clock.now() - 3_600_000).await.unwrap();
    shop.forward().await;
    let requests = shop.tools.requests("/recs");
    let replayed: Vec<&Value> =
        requests.iter().flat_map(|request| request.body["batch"].as_array().unwrap()).skip(before).collect();
    assert_eq!(replayed.len(), 2, "both sign-ups again");
    assert!(replayed.iter().all(|event| event["properties"].get("condition").is_none()), "{replayed:#?}");
    assert_eq!(replayed[1]["properties"], json!({"city": "Fresno"}));
    assert_eq!(shop.report("recs").await.refused.get("needs_explicit_consent"), Some(&1));
}

#[tokio::test]
async fn a_refused_delivery_is_retried_with_backoff_and_taken_once_per_message_id() {
    let shop = Shop::open().await;
    ada_signs_up(&shop).await;
    shop.viewed("ada", "r-1", "dracula").await;
    shop.tools.fail_next("/mail", 1);
    shop.forward().await;
    assert!(shop.tools.events("/mail").is_empty());
    let report = shop.report("mail").await;
    assert_eq!((report.delivered, report.failures), (0, 1));
    assert!(report.last_error.as_deref().unwrap().contains("500"), "{report:?}");
    shop.clock.advance(60_000);
    assert!(report.lag_seconds < 5);
    assert!(shop.report("mail").await.lag_seconds >= 60, "the lag grows while it fails");
    shop.forward().await;
    let mail = shop.tools.events("/mail");
    assert_eq!(mail.len(), 2, "delivered once each at the receiver");
    assert_eq!(shop.tools.deliveries("/mail"), 4, "the batch went twice; its messageIds told them apart");
    let report = shop.report("mail").await;
    assert_eq!((report.delivered, report.failures, report.lag_seconds), (2, 1, 0));
    // Operators see the same figures in /metrics.
    let (_, _, metrics) = shop.harness.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = metrics.as_str().map(str::to_owned).unwrap_or_else(|| metrics.to_string());
    for line in [
        "tactful_forward_failures{destination=\"mail\"} 1",
        "tactful_forward_delivered_events{destination=\"mail\"} 2",
        "tactful_forward_lag_seconds{destination=\"mail\"} 0",
        "tactful_forward_refused{destination=\"ads\",reason=\"not_declared\"} 2",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    // And in the console.
    let session = shop.harness.console_session(&shop.privacy).await;
    let page = shop.harness.console_get("/console", Some(&session)).await.body;
    assert!(
        page.contains(r#"data-destination="mail" data-delivered="2" data-failures="1" data-lag="0""#),
        "{page}"
    );
    assert!(page.contains(r#"<span class="refusal" data-reason="not_declared">not_declared: 2</span>"#));
}

#[tokio::test]
async fn the_access_log_names_each_tool_that_was_sent_something() {
    let shop = Shop::open().await;
    ada_signs_up(&shop).await;
    shop.forward().await;
    let (status, log) = shop.harness.get("/v1/subjects/user_id:ada/access-log", &shop.privacy).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let sent: BTreeMap<&str, &Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["role"] == "destination")
        .map(|entry| (entry["actor"].as_str().unwrap(), entry))
        .collect();
    assert_eq!(sent.keys().copied().collect::<Vec<_>>(), ["ads", "mail", "recs"], "{log:#}");
    assert_eq!(sent["mail"]["kind"], "read");
    assert!(sent["mail"]["returned"].as_array().unwrap().contains(&json!("user.contact.email")));
    assert!(sent["ads"]["withheld"].as_array().unwrap().iter().any(|w| w["reason"] == "not_declared"));
    assert!(!log.to_string().contains("ada@example.com") && !log.to_string().contains("Fresno"));
}

#[tokio::test]
async fn an_erasure_reaches_each_tool_with_every_identifier_and_completes_once_each_acknowledged() {
    let shop = Shop::open().await;
    ada_signs_up(&shop).await;
    shop.send(json!({"type": "identify", "userId": "ada", "anonymousId": "ada-laptop", "messageId": "e-1",
                     "traits": {"email": "ada.l@example.com"}}))
        .await;
    shop.forward().await;
    let token = shop.tools.events("/mail")[0]["token"].clone();
    shop.tools.fail_next("/ads", 1);

    let (status, created) =
        shop.harness.request(&shop.privacy, json!({"type": "erase", "subject": "user_id:ada"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let now = shop.clock.now();
    tactful_app::requests::run_due(&shop.harness.state, now).await.unwrap();
    tactful_app::destinations::deliver_due(&shop.harness.state, now).await.unwrap();
    let (_, view) = shop.harness.get(&format!("/v1/requests/{id}"), &shop.privacy).await;
    assert_eq!(view["status"], "waiting_on_destinations", "the ad partner has not acknowledged: {view:#}");

    let erase = |tool: &str| -> Value {
        let requests = shop.tools.requests(tool);
        requests.iter().find(|request| request.body["type"] == "erase").expect("told").body.clone()
    };
    let mail = erase("/mail");
    assert_eq!(mail["id"], id.as_str());
    assert_eq!(
        mail["identifiers"],
        json!({"anonymous_id": ["ada-laptop", "ada-phone"], "email": ["ada.l@example.com", "ada@example.com"],
               "user_id": ["ada"]}),
        "every identifier it was given"
    );
    assert_eq!(mail["token"], token, "and the token it knows her by");
    assert_eq!(erase("/ads")["identifiers"], json!({}), "the ad partner knew her by its token only");
    assert_ne!(erase("/ads")["token"], token);

    tactful_app::destinations::deliver_due(&shop.harness.state, now + 3_600_000).await.unwrap();
    let (_, view) = shop.harness.get(&format!("/v1/requests/{id}"), &shop.privacy).await;
    assert_eq!(view["status"], "completed", "{view:#}");
    let told: BTreeSet<&str> =
        view["deliveries"].as_array().unwrap().iter().map(|d| d["destination"].as_str().unwrap()).collect();
    assert_eq!(told, BTreeSet::from(["ads", "mail", "recs"]));
}
