//! Every door bounded, on a real socket: clients that stall or lie about their bodies are cut off
//! and hold no ingestion slot, heads over the limits and undecodable paths get the JSON error shape,
//! unreadable content types store nothing, every answer says `nosniff`, and shutdown keeps its
//! deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use serde_json::{Value, json};
use tactful_app::Config;
use tactful_domain::catalog::Catalog;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::common::{Harness, basic};

const WRITE_KEY: &str = "wk_backend_fernhill_demo";
/// Longer than any test here runs: what a test means to time out is configured shorter.
const LONG_MS: u64 = 60_000;
/// How long a test waits for something that should happen at once (a bound, never a pause).
const PATIENCE: Duration = Duration::from_secs(10);

fn catalog() -> Catalog {
    let text =
        Catalog::example_text().replace("default_jurisdiction = \"eu\"", "default_jurisdiction = \"us-ca\"");
    Catalog::parse(&text).expect("the example catalog")
}

/// A server on 127.0.0.1:0 with the given settings, served as `tactful serve` serves.
struct Server {
    harness: Harness,
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(max_inflight: usize, configure: impl FnOnce(&mut Config)) -> Server {
        let harness = Harness::configured(catalog(), max_inflight, None, |config| {
            config.header_timeout_ms = LONG_MS;
            config.body_timeout_ms = LONG_MS;
            config.request_timeout_ms = LONG_MS;
            config.shutdown_timeout_ms = LONG_MS;
            configure(config);
        })
        .await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let serving = tokio::spawn(tactful_server::serve(listener, harness.state.clone(), async {
            let _ = stopped.await;
        }));
        Server { harness, address, stop: Some(stop), serving }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.address).await.unwrap()
    }

    /// Sends `raw` on a new connection and reads the answer.
    async fn exchange(&self, raw: &[u8]) -> Answer {
        let mut stream = self.connect().await;
        stream.write_all(raw).await.unwrap();
        read_answer(&mut stream).await
    }

    /// A well-behaved client's batch of one event, as an SDK sends it.
    async fn batch(&self, user: &str) -> Answer {
        let body =
            json!({"batch": [{"type": "track", "event": "Product Viewed", "userId": user}]}).to_string();
        let head = format!(
            "POST /v1/batch HTTP/1.1\r\nHost: test\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            basic(WRITE_KEY),
            body.len()
        );
        self.exchange(format!("{head}{body}").as_bytes()).await
    }

    async fn get(&self, target: &str, extra: &str) -> Answer {
        self.exchange(
            format!("GET {target} HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
        )
        .await
    }
}

/// An HTTP answer as read from the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&self.body)))
    }

    /// The JSON error shape with `code`, as an API client reads it.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        assert_eq!(self.json()["error"]["code"], code, "{self:?}");
        assert!(self.json()["error"]["message"].as_str().is_some_and(|text| !text.is_empty()));
    }
}

/// Reads one answer (skipping `100 Continue`): head, then a body of its Content-Length, or to the
/// end of the connection.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let read = async {
        let mut buffer = Vec::new();
        loop {
            if let Some(answer) = parse_answer(&mut buffer) {
                return answer;
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = stream.read(&mut chunk).await.unwrap_or(0);
            assert!(
                read > 0,
                "the connection closed without an answer: {:?}",
                String::from_utf8_lossy(&buffer)
            );
            buffer.extend_from_slice(&chunk[..read]);
        }
    };
    tokio::time::timeout(PATIENCE, read).await.expect("an answer in time")
}

/// A whole answer at the start of `buffer`, if it is all there (a `100 Continue` is dropped).
fn parse_answer(buffer: &mut Vec<u8>) -> Option<Answer> {
    let end = buffer.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    if status == 100 {
        buffer.drain(..end);
        return parse_answer(buffer);
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())?;
    (buffer.len() >= end + length).then(|| Answer {
        status,
        headers,
        body: buffer[end..end + length].to_vec(),
    })
}

/// Whether the server closes `stream` (reading returns nothing, or the connection is reset)
/// within [`PATIENCE`], reading past whatever it sent first.
async fn closed(stream: &mut TcpStream) -> bool {
    let read_to_end = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_to_end).await.is_ok()
}

/// A head promising `length` bytes of body, asking to be told when the server starts reading it.
fn promising_head(length: usize) -> String {
    format!(
        "POST /v1/batch HTTP/1.1\r\nHost: test\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n",
        basic(WRITE_KEY)
    )
}

/// Sends a head promising 1000 bytes, waits until the handler reads the body (`100 Continue`),
/// then sends 10 bytes and stalls.
async fn stalled_body(server: &Server) -> TcpStream {
    let mut stream = server.connect().await;
    stream.write_all(promising_head(1000).as_bytes()).await.unwrap();
    let mut continued = Vec::new();
    let wait = async {
        while !continued.windows(4).any(|window| window == b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the server hung up");
            continued.push(byte[0]);
        }
    };
    tokio::time::timeout(PATIENCE, wait).await.expect("the server reads the body");
    assert!(
        continued.starts_with(b"HTTP/1.1 100"),
        "the server answered before reading the body: {}",
        String::from_utf8_lossy(&continued)
    );
    stream.write_all(br#"{"batch": "#).await.unwrap();
    stream
}

/// The soft and hard limits of open files of this process, from /proc (Linux).
fn open_file_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    let mut numbers = line.split_whitespace().skip(3).map(|number| number.parse().unwrap_or(u64::MAX));
    Some((numbers.next()?, numbers.next()?))
}

/// Makes sure this process may open `needed` files: a soft limit below it is raised towards the
/// hard limit (with util-linux `prlimit`, as the workspace forbids unsafe code), or the test says
/// what to run.
fn ensure_open_files(needed: u64) {
    let Some((soft, hard)) = open_file_limits() else { return };
    if soft >= needed {
        return;
    }
    let _ = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={}:", needed.min(hard)))
        .status();
    let soft = open_file_limits().map_or(0, |(soft, _)| soft);
    assert!(soft >= needed, "this test needs `ulimit -n {needed}` or more (it is {soft})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_stalled_connections_leave_ingestion_working() {
    // 600 connections are 1,200 sockets in this one process (client and server side), plus the
    // database, the runtime and the other tests running beside this one.
    ensure_open_files(4_096);
    let server = Server::start(20, |_| {}).await;
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut stream = server.connect().await;
        stream.write_all(b"POST /v1/batch HTTP/1.1\r\nHost: test\r\nContent-Ty").await.unwrap();
        stalled.push(stream);
    }
    for _ in 0..300 {
        stalled.push(stalled_body(&server).await);
    }
    for round in 0..3 {
        let answer = server.batch(&format!("patient-{round}")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.json()["stored"], 1, "{answer:?}");
    }
    assert_eq!(server.harness.event_count().await, 3);

    // With every slot really taken, ingestion sheds load and the rest of the server still answers.
    let slots = server.harness.state.inflight.clone().try_acquire_many_owned(20).unwrap();
    let answer = server.batch("shed").await;
    answer.assert_error(429, "overloaded");
    assert!(answer.header("retry-after").is_some(), "{answer:?}");
    assert_eq!(server.get("/healthz", "").await.status, 200);
    drop(slots);
    assert_eq!(server.batch("after").await.status, 200);
    assert_eq!(server.harness.event_count().await, 4);
    drop(stalled);
}

#[tokio::test]
async fn timeouts_close_slow_clients_and_ingestion_works_afterwards() {
    let server = Server::start(20, |config| {
        config.header_timeout_ms = 300;
        config.body_timeout_ms = 300;
    })
    .await;

    // A head that never ends: the connection is closed.
    let mut stalled_head = server.connect().await;
    stalled_head.write_all(b"POST /v1/batch HTTP/1.1\r\nHost: test\r\n").await.unwrap();
    assert!(closed(&mut stalled_head).await, "a stalled head keeps its connection");

    // A body shorter than it said: 408 in the JSON shape, and the connection is closed.
    let mut lying = server.connect().await;
    lying.write_all(format!("{}{{\"batch\": ", promising_head(1000)).as_bytes()).await.unwrap();
    read_answer(&mut lying).await.assert_error(408, "request_timeout");
    assert!(closed(&mut lying).await);

    // A body dripped a byte at a time is cut off long before it would have arrived (20 s).
    let mut dripping = server.connect().await;
    dripping.write_all(promising_head(1000).as_bytes()).await.unwrap();
    let (mut reading, mut writing) = dripping.into_split();
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        for _ in 0..1000 {
            if writing.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, reading.read_to_end(&mut answer)).await.expect("cut off").ok();
    let answer = parse_answer(&mut answer).expect("an answer before the cut");
    answer.assert_error(408, "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    drip.abort();

    // An idle keep-alive connection is closed too.
    let mut idle = server.connect().await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    assert_eq!(read_answer(&mut idle).await.status, 200);
    assert!(closed(&mut idle).await, "an idle keep-alive connection stays open");

    let answer = server.batch("after").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(server.harness.event_count().await, 1);
}

#[tokio::test]
async fn a_content_length_larger_than_the_body_is_answered_408_quickly() {
    let server = Server::start(20, |config| config.body_timeout_ms = 200).await;
    let started = Instant::now();
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: test\r\nAuthorization: {}\r\nContent-Length: 100\r\n\r\n",
        basic(WRITE_KEY)
    );
    let answer = server.exchange(format!("{head}{{\"type\":").as_bytes()).await;
    answer.assert_error(408, "request_timeout");
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(server.harness.event_count().await, 0);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_answered_503_and_its_work_still_finishes() {
    let server = Server::start(20, |config| config.request_timeout_ms = 300).await;
    // Another process holds the database's write lock, so the store waits (up to its busy timeout).
    let database = rusqlite::Connection::open(server.harness.dir.path().join("tactful.db")).unwrap();
    database.execute_batch("BEGIN IMMEDIATE").unwrap();
    let answer = server.batch("late").await;
    answer.assert_error(503, "deadline_exceeded");
    assert!(answer.header("retry-after").is_some(), "{answer:?}");
    // The request goes on: once the lock is released, the event is stored.
    database.execute_batch("ROLLBACK").unwrap();
    let stored = async {
        while server.harness.event_count().await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, stored).await.expect("the late event is stored");
}

/// Like [`stalled_body`], promising `length` bytes and sending none.
async fn stalled_body_of(server: &Server, length: usize) -> TcpStream {
    let mut stream = server.connect().await;
    stream.write_all(promising_head(length).as_bytes()).await.unwrap();
    let mut continued = [0u8; 25];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut continued)).await.unwrap().unwrap();
    assert_eq!(&continued, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream
}

#[tokio::test]
async fn shutdown_keeps_its_deadline_with_a_request_stuck_in_flight_and_stops_accepting() {
    let mut server = Server::start(20, |config| config.shutdown_timeout_ms = 300).await;
    let mut stuck = stalled_body_of(&server, 1000).await;
    let started = Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    let stopped = tokio::time::timeout(PATIENCE, &mut server.serving).await;
    assert!(stopped.is_ok(), "serve is still waiting for the stuck request");
    stopped.unwrap().unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert!(closed(&mut stuck).await, "the stuck connection was dropped");
    assert!(TcpStream::connect(server.address).await.is_err(), "still accepting after shutdown");
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let mut server = Server::start(20, |_| {}).await;
    let body = json!({"batch": [{"type": "track", "event": "Product Viewed", "userId": "last"}]}).to_string();
    let mut last = stalled_body_of(&server, body.len()).await;
    server.stop.take().unwrap().send(()).unwrap();
    last.write_all(body.as_bytes()).await.unwrap();
    let answer = read_answer(&mut last).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    tokio::time::timeout(PATIENCE, &mut server.serving).await.expect("serve returns").unwrap().unwrap();
    assert_eq!(server.harness.event_count().await, 1);
}

#[tokio::test]
async fn heads_over_the_limits_are_refused_in_json() {
    let server = Server::start(20, |_| {}).await;
    let long_query = format!("/healthz?pad={}", "a".repeat(9 * 1024));
    server.get(&long_query, "").await.assert_error(414, "uri_too_long");

    let many: String = (0..101).map(|i| format!("X-Pad-{i}: {i}\r\n")).collect();
    server.get("/healthz", &many).await.assert_error(431, "headers_too_large");
    let large = format!("X-Pad: {}\r\n", "b".repeat(40 * 1024));
    server.get("/healthz", &large).await.assert_error(431, "headers_too_large");
    // Past what the server buffers, its HTTP parser refuses the head itself (with no body).
    let huge = format!("X-Pad: {}\r\n", "b".repeat(70 * 1024));
    assert_eq!(server.get("/healthz", &huge).await.status, 431);

    // Within the limits, all is well, and a large answer still goes out whole.
    let fine: String = (0..90).map(|i| format!("X-Pad-{i}: {i}\r\n")).collect();
    assert_eq!(server.get("/healthz?pad=1", &fine).await.status, 200);
    let document = server.get("/openapi.json", "").await;
    assert_eq!(document.status, 200);
    // Whole: it parses, and every path of the written document is in it.
    let served: serde_json::Value = serde_json::from_slice(&document.body).expect("the whole document");
    let written: serde_json::Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    assert_eq!(served["paths"], written["paths"]);
}

fn track(content_types: &[&[u8]], user: &str) -> Request<Body> {
    let mut request = Request::builder()
        .method("POST")
        .uri("/v1/track")
        .header(header::AUTHORIZATION, basic(WRITE_KEY))
        .body(Body::from(json!({"event": "Product Viewed", "userId": user}).to_string()))
        .unwrap();
    for value in content_types {
        request.headers_mut().append(header::CONTENT_TYPE, HeaderValue::from_bytes(value).unwrap());
    }
    request
}

#[tokio::test]
async fn unreadable_content_types_are_refused_and_nothing_is_stored() {
    let harness = Harness::open(catalog(), 20, None).await;
    for content_types in [
        &[b"application/json\xff".as_slice()][..],
        &[b"appl\xc3\xa9cation/json".as_slice()],
        &[b"application/json".as_slice(), b"text/plain".as_slice()],
        &[b"application/json".as_slice(), b"application/json".as_slice()],
    ] {
        let (status, _, body) = harness.send(track(content_types, "refused")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_types:?}: {body}");
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
    }
    assert_eq!(harness.event_count().await, 0);
    let (status, _, body) = harness.send(track(&[b"application/json; charset=utf-8"], "stored")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(harness.event_count().await, 1);
}

#[tokio::test]
async fn every_answer_says_nosniff_and_undecodable_paths_are_refused() {
    let harness = Harness::open(catalog(), 20, None).await;
    let get = |uri: &str, accept: &str| {
        Request::builder().uri(uri).header(header::ACCEPT, accept).body(Body::empty()).unwrap()
    };
    for request in [
        get("/healthz", "*/*"),
        get("/v1/nothing-here", "*/*"),
        get("/v1/catalog", "*/*"),
        track(&[b"application/json"], "sniffed"),
        track(&[b"image/png"], "sniffed"),
    ] {
        let uri = request.uri().to_string();
        let (_, headers, _) = harness.send(request).await;
        assert_eq!(
            headers.get(header::X_CONTENT_TYPE_OPTIONS).map(HeaderValue::as_bytes),
            Some(&b"nosniff"[..]),
            "{uri}"
        );
    }

    for uri in ["/v1/subjects/%FF/profile", "/v1/subjects/sub%zz/consents", "/%C3%28", "/me/requests/%E9"] {
        let (status, headers, body) = harness.send(get(uri, "application/json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "invalid_path", "{uri}: {body}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    // A browser on a page route gets a page that says the same.
    let (status, headers, body) = harness.send(get("/me/requests/%E9", "text/html")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"), "{headers:?}");
    assert!(body.as_str().is_some_and(|page| page.contains("invalid_path")), "{body}");
}
