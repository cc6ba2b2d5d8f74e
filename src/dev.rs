//! `dvsigner dev` (filled in after the TLS module lands).

use crate::cli::DevArgs;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Runs the local development setup.
///
/// # Errors
/// Start-up failures.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not yet")
}
