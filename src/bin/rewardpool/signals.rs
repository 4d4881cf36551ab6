//! The stop signals the long-running commands (`serve`, `follow`) end on.

/// SIGINT or SIGTERM (or, if SIGTERM cannot be watched, SIGINT alone).
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
