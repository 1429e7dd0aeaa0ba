//! A Segment-protocol destination whose catalog entry names its pipeline's deletion API: an erasure
//! request reaches that API on a real socket (path, Bearer token, the person's user id), and the
//! request completes only once the API answered 2xx.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;

use crate::common::Harness;

const TOKEN: &str = "sgp_regulations_token_4711";

/// One request the fake pipeline was sent.
#[derive(Clone)]
struct Seen {
    path: String,
    authorization: String,
    body: Value,
}

/// A pipeline on loopback taking batches at `/v1/batch` and regulations at `/regulations`; it
/// answers 500 to the first `failing` regulations, 200 to everything else.
#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    failing: Arc<Mutex<usize>>,
}

impl Fake {
    async fn start() -> (Fake, String) {
        let fake = Fake::default();
        let state = fake.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let state = state.clone();
            async move {
                let path = request.uri().path().to_owned();
                let authorization = request
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = request.into_body().collect().await.unwrap().to_bytes();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                state.seen.lock().unwrap().push(Seen { path: path.clone(), authorization, body });
                let mut failing = state.failing.lock().unwrap();
                if path == "/regulations" && *failing > 0 {
                    *failing -= 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (fake, base)
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|seen| seen.path == path).cloned().collect()
    }
}

#[tokio::test]
async fn an_erasure_reaches_the_pipelines_deletion_api_and_completes_once_it_answered() {
    let (fake, base) = Fake::start().await;
    *fake.failing.lock().unwrap() = 1;
    let destination = format!(
        "\n[destinations.pipeline]\nkind = \"segment\"\nurl = \"{base}\"\nwrite_key = \"wk_downstream_pipeline\"\n\
         purposes = [\"personalize.content\"]\nevents = [\"Book Viewed\"]\nproperties = [\"properties.book_id\"]\n\
         identifiers = [\"user_id\"]\nregulations_api = \"segment\"\nregulations_url = \"{base}\"\n\
         regulations_token = \"{TOKEN}\"\n"
    );
    let catalog = Catalog::parse(&format!("{}{destination}", crate::access::CATALOG))
        .unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let harness = Harness::open(catalog, 64, None).await;
    let privacy = harness.key("privacy").await;
    let event = json!({"type": "track", "event": "Book Viewed", "userId": "reader-1",
                       "properties": {"book_id": "dracula"}});
    let (status, body) = harness.track("wk_ca_lantern", event, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    while tactful_app::forward::forward_due(&harness.state).await.unwrap() > 0 {}
    assert_eq!(fake.seen("/v1/batch").len(), 1, "the event went on to the pipeline");

    let (status, created) =
        harness.request(&privacy, json!({"type": "erase", "subject": "user_id:reader-1"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let now = tactful_app::now_millis();
    tactful_app::requests::run_due(&harness.state, now).await.unwrap();
    tactful_app::destinations::deliver_due(&harness.state, now).await.unwrap();
    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["status"], "waiting_on_destinations", "the deletion API answered 500: {view:#}");

    let regulations = fake.seen("/regulations");
    assert_eq!(regulations.len(), 1, "one regulation so far");
    assert_eq!(regulations[0].authorization, format!("Bearer {TOKEN}"));
    assert_eq!(
        regulations[0].body,
        json!({"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": ["reader-1"]})
    );

    tactful_app::destinations::deliver_due(&harness.state, now + 3_600_000).await.unwrap();
    let (_, view) = harness.get(&format!("/v1/requests/{id}"), &privacy).await;
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(fake.seen("/regulations").len(), 2, "asked again, and it answered 200");
}
