//! A small HTTP/1.1 client for the demo and the benchmarks: plain HTTP on loopback, keep-alive, no
//! TLS (it only ever talks to a Tactful it started or was pointed at).

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Client {
    /// A client for `base`, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: impl Into<String>) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let inner = HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build(connector);
        Client { inner, base: base.into() }
    }

    /// POSTs `body` to `path` with HTTP Basic for `write_key`; returns the status and the body.
    pub async fn post(
        &self,
        path: &str,
        write_key: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"));
        self.post_as(path, format!("Basic {auth}"), body).await
    }

    /// POSTs JSON to the brand API with an API key (`Authorization: Bearer`).
    pub async fn post_with_key(
        &self,
        path: &str,
        api_key: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.post_as(path, format!("Bearer {api_key}"), body).await
    }

    async fn post_as(
        &self,
        path: &str,
        authorization: String,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("authorization", authorization)
            .body(Full::new(body))
            .context("building a request")?;
        self.send_post(path, request).await
    }

    /// POSTs an HTML form (`application/x-www-form-urlencoded`), as a browser does.
    pub async fn post_form(&self, path: &str, form: String) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .context("building a request")?;
        self.send_post(path, request).await
    }

    async fn send_post(
        &self,
        path: &str,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let response =
            self.inner.request(request).await.with_context(|| format!("POST {}{path}", self.base))?;
        let status = response.status();
        let body = response.into_body().collect().await.context("reading a response")?.to_bytes();
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        self.get_with(path, None).await
    }

    /// GETs `path` with an API key (`Authorization: Bearer`), as the brand API wants.
    pub async fn get_with_key(&self, path: &str, api_key: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        self.get_with(path, Some(api_key)).await
    }

    async fn get_with(&self, path: &str, api_key: Option<&str>) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::get(format!("{}{path}", self.base));
        if let Some(key) = api_key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request.body(Full::new(Bytes::new())).context("building a request")?;
        let response =
            self.inner.request(request).await.with_context(|| format!("GET {}{path}", self.base))?;
        let status = response.status();
        let body = response.into_body().collect().await.context("reading a response")?.to_bytes();
        Ok((status, body))
    }
}

/// Adds, to every event that names a userId, the identity token the brand's backend gives that
/// person's signed-in page or app (`hex(HMAC-SHA256(identity_secret, userId))` as
/// `context.identityToken`): what a public source's events need to prove whose they are.
pub fn signed_in(events: &mut [serde_json::Value], identity_secret: &str) {
    for event in events {
        if let Some(user) = event["userId"].as_str().map(str::to_owned) {
            event["context"]["identityToken"] =
                serde_json::Value::String(tactful_domain::identity::token(identity_secret, &user));
        }
    }
}
