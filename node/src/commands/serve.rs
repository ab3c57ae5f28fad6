//! `caucus serve --dir DIR [--listen ADDR]`: the node daemon. Opens the node's session (key,
//! certificate, pinned root, roster and revocation list from the CA), serves peers over mutual TLS
//! until SIGINT or SIGTERM, then shuts down gracefully (stops accepting, lets connections finish).
//!
//! Once listening it prints one line (one JSON object with `--json`) so scripts can wait for it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::session::{Session, SessionError, SessionOptions};

/// What `serve` prints once it is listening.
#[derive(Debug, Clone, Serialize)]
pub struct Serving {
    /// Our roster name.
    pub name: String,
    /// Our roster index.
    pub index: u32,
    /// The session id.
    pub session: String,
    /// Where we listen.
    pub listen: SocketAddr,
    /// Roster members known at start.
    pub members: usize,
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
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
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the daemon for node directory `dir` until `shutdown` resolves. `on_ready` is called once
/// the listener is up.
pub async fn serve(
    dir: &Path,
    listen: Option<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(&Serving),
) -> Result<(), SessionError> {
    let opts = SessionOptions {
        listen,
        // The daemon starts even if not every party has enrolled; the roster is refreshed.
        roster_wait: Duration::ZERO,
        refresh_every: Duration::from_secs(30),
        ..SessionOptions::default()
    };
    let s = Session::open(dir, opts).await?;
    // Blobs: the `post/blob` handler on this node's store, limits from node.json.
    let blob_cfg =
        crate::blob::store_config(dir).map_err(|e| SessionError::Setup(e.to_string()))?;
    crate::blob::attach(&s, dir, blob_cfg).map_err(|e| SessionError::Setup(e.to_string()))?;
    let me = s.me();
    let info = Serving {
        name: me.name,
        index: me.index,
        session: s.session_id(),
        listen: s.local_addr(),
        members: s.parties().len(),
    };
    on_ready(&info);
    shutdown.await;
    tracing::info!("shutting down");
    s.close().await;
    Ok(())
}

/// The CLI entry: prints the ready line (human or JSON) and serves until a signal.
pub async fn run(dir: &Path, listen: Option<SocketAddr>, json: bool) -> Result<(), SessionError> {
    serve(dir, listen, shutdown_signal(), |s| {
        if json {
            println!("{}", serde_json::to_string(s).unwrap_or_default());
        } else {
            println!(
                "serving {} (party {}) of session {} on {} ({} members enrolled)",
                s.name, s.index, s.session, s.listen, s.members
            );
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })
    .await
}
