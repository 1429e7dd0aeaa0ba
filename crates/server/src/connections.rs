//! Serving connections ourselves (HTTP/1 through hyper), because `axum::serve` has no timeouts: a
//! client that never finishes its request head is disconnected, request heads are capped, and a
//! shutdown lets each connection finish its request but waits no longer than its deadline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::limits::Limits;

/// The most a request head (request line and headers) may fill in the read buffer; beyond it hyper
/// answers 431 with an empty body and closes. The router's own, smaller limits answer in JSON.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The most header lines hyper parses; the router refuses more than 100 in JSON.
pub const MAX_HEAD_LINES: usize = 200;

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, asks every
/// connection to close once its current request is answered, and drops those still open after
/// `limits.shutdown_timeout`. Each request carries the peer's address (`ConnectInfo<SocketAddr>`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEAD_LINES)
        .keep_alive(true);
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let connection = connection(&builder, stream, peer, router.clone(), closing_seen.clone());
                    connections.spawn(connection);
                }
                Err(error) => accept_failed(error).await,
            },
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_timeout, finished).await.is_err() {
        tracing::warn!(open = connections.len(), "shutdown deadline passed; dropping open connections");
        connections.shutdown().await;
    }
    Ok(())
}

/// One connection, from its first byte until it closes (or is told to, once idle).
fn connection(
    builder: &http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    mut closing: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    // Answers are written as soon as they are ready, not held back to fill a packet.
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            Ok::<_, Infallible>(router.oneshot(request.map(Body::new)).await.unwrap_or_else(|e| match e {}))
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    async move {
        let mut connection = std::pin::pin!(connection);
        let told_to_close = async move {
            let _ = closing.wait_for(|closing| *closing).await;
        };
        tokio::select! {
            result = connection.as_mut() => finished(result),
            () = told_to_close => {
                connection.as_mut().graceful_shutdown();
                finished(connection.await);
            }
        }
    }
}

fn finished(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        // Clients that stall, lie about lengths or hang up are routine; they are not the server's failures.
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Connection-level failures concern one client; others (out of file descriptors) clear with time,
/// so accepting pauses briefly instead of spinning.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "cannot accept connections");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn handlers_learn_the_peer_address() {
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        let mut client = TcpStream::connect(address).await.unwrap();
        let local = client.local_addr().unwrap();
        client.write_all(b"GET /peer HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&format!("\r\n\r\n{local}")), "{answer}");
        stop.send(()).unwrap();
        serving.await.unwrap().unwrap();
    }
}
