//! The `tactful` command as a library, so its integration tests (and the benchmarks) can drive the
//! same client, demo generator and server start-up that the binary uses.

pub mod admin;
pub mod bench;
pub mod breach;
pub mod client;
pub mod demo;
pub mod destinations;
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_command_says_what_went_wrong_and_why() {
        // The binary prints errors as `{error:#}`: the application's words, then the cause.
        let failed = tactful_app::AppError::from(tactful_store::StoreError::Internal(
            "database disk image is malformed".into(),
        ));
        let said = format!("{:#}", anyhow::Error::from(failed));
        assert_eq!(
            said,
            "something went wrong on our side; nothing was stored (internal): internal storage error: database disk image is malformed"
        );
    }
}
