//! The `tactful` command as a library, so its integration tests (and the benchmarks) can drive the
//! same client, demo generator and server start-up that the binary uses.

pub mod admin;
pub mod bench;
pub mod breach;
pub mod client;
pub mod demo;
pub mod export_dataset;
pub mod insights;
pub mod items;
pub mod personalize;

/// Completes on Ctrl-C or SIGTERM, so the server finishes requests in flight before stopping.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
