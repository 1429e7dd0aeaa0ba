//! The one HTTP client Tactful uses to reach out: signed requests to destinations and notification
//! webhooks. HTTPS with rustls and the Mozilla root certificates; plain HTTP only where the catalog
//! allows it (loopback). Every call has a timeout, and answers are read only as far as needed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long a destination or webhook may take to answer, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most of an answer's body kept (for the attempt log).
const ANSWER_BYTES: usize = 4096;

/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 3_600_000;

/// When to try again after `attempts` failures: exponential from `base_ms`, capped at an hour,
/// with ±20% jitter so many deliveries failing together do not retry together.
pub fn retry_delay_ms(base_ms: i64, attempts: u32, jitter: f64) -> i64 {
    let exponential = base_ms.saturating_mul(1_i64 << attempts.saturating_sub(1).min(30));
    let capped = exponential.min(MAX_BACKOFF_MS) as f64;
    (capped * (1.0 + 0.2 * jitter.clamp(-1.0, 1.0))).round() as i64
}

/// A random number in [-1, 1], to spread retries.
pub fn jitter() -> f64 {
    let bytes = tactful_vault::new_subject_id();
    let sample = bytes
        .bytes()
        .skip(4)
        .take(8)
        .fold(0u64, |acc, byte| acc.wrapping_mul(31).wrapping_add(u64::from(byte)));
    (sample % 2001) as f64 / 1000.0 - 1.0
}

/// A reply from the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The start of the body, for the attempt log.
    pub body: String,
}

#[derive(Clone)]
pub struct Outbound {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbound")
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound::new(DEFAULT_TIMEOUT)
    }
}

impl Outbound {
    /// A client whose calls give up after `timeout`.
    pub fn new(timeout: Duration) -> Outbound {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Outbound {
            client: Client::builder(TokioExecutor::new()).pool_max_idle_per_host(4).build(https),
            timeout,
        }
    }

    /// How long a call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs a JSON body with extra headers. An error is a failure to get any answer (connection,
    /// TLS, timeout), said in words for the attempt log.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut request = Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("tactful/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request =
            request.body(Full::new(Bytes::from(body))).map_err(|error| format!("bad request: {error}"))?;
        let call = async {
            let response = self.client.request(request).await.map_err(|error| describe(&error))?;
            let status = response.status().as_u16();
            let collected = Limited::new(response.into_body(), 64 * 1024).collect().await;
            let body = match collected {
                Ok(body) => {
                    let bytes = body.to_bytes();
                    String::from_utf8_lossy(&bytes[..bytes.len().min(ANSWER_BYTES)]).into_owned()
                }
                Err(_) => String::new(),
            };
            Ok(Reply { status, body })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
}

/// A client error in words, with its cause (connection refused, certificate invalid, …).
fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
