//! The Segment-protocol forwarder against a second Tactful on a real socket, which speaks the
//! protocol: what it is sent lands under the destination's token, a redelivery adds nothing, an
//! erasure notice is acknowledged, and refusals are told apart from failures worth retrying.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tactful_app::forward::segment::SegmentSink;
use tactful_app::forward::sink::{Forget, Forwarded, Recipient, Removal, Sink};
use tactful_app::outbound::Outbound;
use tactful_domain::catalog::Catalog;
use tactful_domain::secret::Secret;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::access::CATALOG;
use crate::common::Harness;

/// The receiver's server-side source for Californians (opt-out: stored unless they object).
const WRITE_KEY: &str = "wk_ca_lantern";
const TOKEN: &str = "tok_pipeline_5f2a9c";

/// A second Tactful served on 127.0.0.1:0: the analytics pipeline the events are forwarded to.
struct Pipeline {
    harness: Harness,
    url: String,
    _stop: oneshot::Sender<()>,
}

async fn pipeline() -> Pipeline {
    let catalog = Catalog::parse(CATALOG).unwrap();
    let harness = Harness::open(catalog, 4, None).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tactful_server::serve(listener, harness.state.clone(), async {
        let _ = stopped.await;
    }));
    Pipeline { harness, url, _stop: stop }
}

fn person() -> Recipient {
    Recipient { token: TOKEN.into(), identifiers: BTreeMap::new() }
}

fn forwarded(id: &str, kind: &str, event: Option<&str>, properties: Value) -> Forwarded {
    let Value::Object(properties): Value = properties else { unreachable!() };
    Forwarded {
        message_id: id.into(),
        kind: kind.into(),
        event: event.map(str::to_owned),
        timestamp: OffsetDateTime::now_utc() - time::Duration::minutes(5),
        person: person(),
        properties,
        purposes: vec!["personalize.content".into()],
    }
}

fn batch() -> Vec<Forwarded> {
    vec![
        forwarded("fwd-1", "identify", None, json!({"city": "Whitby"})),
        forwarded("fwd-2", "track", Some("Book Viewed"), json!({"book_id": "dracula-1897"})),
        forwarded("fwd-3", "track", Some("Book Viewed"), json!({"book_id": "carmilla-1872"})),
    ]
}

#[tokio::test]
async fn a_second_tactful_receives_the_batch_under_the_token_once() {
    let pipeline = pipeline().await;
    let sink = SegmentSink::new(&pipeline.url, &Secret::new(WRITE_KEY), Outbound::default());

    sink.deliver(&batch()).await.expect("the pipeline takes the batch");
    assert_eq!(pipeline.harness.event_count().await, 3);
    // Delivered again (a retry after a lost answer): the messageIds make it a no-op.
    sink.deliver(&batch()).await.expect("a redelivery is acknowledged");
    assert_eq!(pipeline.harness.event_count().await, 3, "no duplicate");

    // Read back through the receiver's own API: the person is the destination's token.
    let reader = pipeline.harness.key("personalization").await;
    let (status, read) = pipeline
        .harness
        .get(&format!("/v1/subjects/user_id:{TOKEN}/profile?purpose=personalize.content&events=10"), &reader)
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["traits"], json!({"city": "Whitby"}), "{read:#}");
    let viewed: Vec<&Value> = read["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["event"] == "Book Viewed")
        .map(|event| &event["data"]["properties"]["book_id"])
        .collect();
    assert_eq!(viewed.len(), 2, "{read:#}");
    assert!(
        viewed.contains(&&json!("dracula-1897")) && viewed.contains(&&json!("carmilla-1872")),
        "{read:#}"
    );

    // An erasure notice goes over the same protocol and is acknowledged by the endpoint.
    let forget = Forget { request: "req_1".into(), removal: Removal::Erase, person: person() };
    sink.forget(&forget).await.expect("the notice is acknowledged");
}

#[tokio::test]
async fn refusals_are_final_and_failures_are_retried() {
    let pipeline = pipeline().await;

    // A write key the pipeline does not know: a 4xx, not worth repeating.
    let wrong = SegmentSink::new(&pipeline.url, &Secret::new("wk_nobody"), Outbound::default());
    let error = wrong.deliver(&batch()).await.unwrap_err();
    assert!(!error.retryable, "{error:?}");
    assert!(error.message.starts_with("HTTP 401"), "{error:?}");

    // The pipeline shedding load (429): later.
    let sink = SegmentSink::new(&pipeline.url, &Secret::new(WRITE_KEY), Outbound::default());
    let slots = pipeline.harness.state.inflight.clone().try_acquire_many_owned(4).unwrap();
    let error = sink.deliver(&batch()).await.unwrap_err();
    assert!(error.retryable && error.message.starts_with("HTTP 429"), "{error:?}");
    drop(slots);
    sink.deliver(&batch()).await.expect("taken once it has room");

    // A server error: later.
    let failing = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let failing_url = format!("http://{}", failing.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut socket, _)) = failing.accept().await {
            let mut buffer = [0u8; 65536];
            let _ = socket.read(&mut buffer).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy",
                )
                .await;
        }
    });
    let error = SegmentSink::new(&failing_url, &Secret::new(WRITE_KEY), Outbound::default())
        .deliver(&batch())
        .await
        .unwrap_err();
    assert!(error.retryable && error.message.starts_with("HTTP 503"), "{error:?}");

    // Nobody listening: later.
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone_url = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let error = SegmentSink::new(&gone_url, &Secret::new(WRITE_KEY), Outbound::default())
        .deliver(&batch())
        .await
        .unwrap_err();
    assert!(error.retryable, "{error:?}");
}
