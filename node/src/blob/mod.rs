//! Encrypted chunked blob sharing, node side.
//!
//! - [`store`]: the receiver's inbox (partials with durable progress, received blobs, the redb
//!   index, limits, cleanup, decrypting `get`) and the sender's outbox (encrypt once, stream
//!   from disk).
//! - [`wire`]: the `post/blob` handler (receiver) and the sending driver over a transport
//!   connection.
//! - [`cli`]: `caucus blob send | list | get`.
//! - [`direct`]: the append-only writer of inbox and outbox files (aligned `O_DIRECT` writes on an
//!   I/O thread, so gigabytes do not go through the page cache).
//! - [`rawtls`]: the raw tokio-rustls loopback baseline and the peak-RSS probe of `caucus bench blob`.

pub mod cli;
pub mod direct;
pub mod rawtls;
pub mod store;
pub mod wire;

pub use store::{Begin, BlobStore, Incoming, Outgoing, ReceivedEntry, StoreConfig, StoreError};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often a serving node deletes abandoned partials.
pub const CLEANUP_EVERY: Duration = Duration::from_secs(3600);

/// Serves blobs on `session` (used by `caucus serve`): opens the store of node directory `dir`
/// with `cfg`, deletes abandoned partials, registers the `post/blob` handler with the node's own
/// key, and starts an hourly cleanup task.
pub fn attach(
    session: &crate::session::Session,
    dir: &Path,
    cfg: StoreConfig,
) -> Result<Arc<BlobStore>, StoreError> {
    let store = BlobStore::open(dir, cfg)?;
    let removed = store.cleanup(store::now_ms())?;
    if removed > 0 {
        tracing::info!(removed, "deleted abandoned partial blobs");
    }
    let key = crate::config::NodeDir::new(dir)
        .load_key()
        .map_err(|e| StoreError::Io {
            path: dir.join("node.key"),
            message: e.to_string(),
        })?;
    wire::BlobHandler::new(store.clone(), Arc::new(key)).register(session.node());
    let weak = Arc::downgrade(&store);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CLEANUP_EVERY).await;
            let Some(store) = weak.upgrade() else { break };
            let r = tokio::task::spawn_blocking(move || store.cleanup(store::now_ms())).await;
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "blob cleanup failed");
            }
        }
    });
    Ok(store)
}

/// The receiver limits of node directory `dir`: the optional `"blobs"` object of `node.json`
/// ([`StoreConfig`] fields; missing fields take their defaults), or the defaults.
pub fn store_config(dir: &Path) -> Result<StoreConfig, StoreError> {
    let p = dir.join("node.json");
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreConfig::default()),
        Err(e) => {
            return Err(StoreError::Io {
                path: p,
                message: e.to_string(),
            });
        }
    };
    let bad = |m: String| StoreError::Io {
        path: p.clone(),
        message: m,
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    match v.get("blobs") {
        None | Some(serde_json::Value::Null) => Ok(StoreConfig::default()),
        Some(b) => serde_json::from_value(b.clone()).map_err(|e| bad(format!("blobs: {e}"))),
    }
}
