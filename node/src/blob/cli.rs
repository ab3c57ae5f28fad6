//! `caucus blob send | list | get`.
//!
//! `send` encrypts the file once into the outbox (so several recipients cost one encryption),
//! then transfers it to each recipient over a dedicated mTLS connection, resuming after
//! interruptions; re-running the same `send` (same file, size, mtime and recipients) after the
//! sender was killed reuses the pending outbox entry and resumes where each receiver stopped.
//! The outbox copy is deleted once every recipient returned a receipt.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use caucus::blob::BlobId;
use caucus::blob::stream::DEFAULT_CHUNK_SIZE;
use caucus::pki::PartyId;
use serde::{Deserialize, Serialize};

use super::store::{BlobStore, Outgoing, StoreConfig, StoreError, now_ms};
use super::wire::{SendError, SendOptions, send_to};
use crate::config::{ConfigError, NodeDir};
use crate::session::{Session, SessionOptions};
use crate::transport::Node;

/// Errors of the blob commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobCliError {
    /// The node directory.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The blob store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A transfer.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A recipient name that is not on the roster (or this node itself).
    #[error("{0}")]
    Recipient(String),
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// Starting the node's transport failed.
    #[error("transport: {0}")]
    Transport(String),
}

/// One received blob, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct ListItem {
    /// Blob id (hex).
    pub id: String,
    /// The sender's name for it.
    pub name: String,
    /// Plaintext size.
    pub size: u64,
    /// Sender's roster name.
    pub sender: String,
    /// Sender's party id.
    pub sender_party_id: String,
    /// When it was durably received (unix ms).
    pub received_ms: i64,
    /// Plaintext SHA-256 (hex).
    pub sha256: String,
}

/// `caucus blob list`: received blobs, oldest first (partials are never listed).
pub fn list(dir: &NodeDir) -> Result<Vec<ListItem>, BlobCliError> {
    let store = BlobStore::open(&dir.root, StoreConfig::default())?;
    Ok(store
        .list()?
        .into_iter()
        .map(|e| ListItem {
            id: e.header.blob_id.to_hex(),
            name: e.header.name.clone(),
            size: e.header.size,
            sender: e.sender_name.clone(),
            sender_party_id: e.header.sender.to_string(),
            received_ms: e.received_ms,
            sha256: hex::encode(e.header.sha256),
        })
        .collect())
}

/// Result of `caucus blob get`.
#[derive(Clone, Debug, Serialize)]
pub struct GetResult {
    /// Blob id.
    pub id: String,
    /// The sender's name for it.
    pub name: String,
    /// Bytes written.
    pub size: u64,
    /// Where.
    pub out: String,
    /// Verified SHA-256 (hex).
    pub sha256: String,
}

/// `caucus blob get ID --out FILE`: decrypts with the node's key, verifying every chunk and the
/// SHA-256; nothing is written at `out` unless all checks pass.
pub fn get(dir: &NodeDir, id: &str, out: &Path) -> Result<GetResult, BlobCliError> {
    let id: BlobId = id
        .parse()
        .map_err(|_| BlobCliError::Usage(format!("{id:?} is not a blob id (32 hex digits)")))?;
    let key = dir.load_key()?;
    let store = BlobStore::open(&dir.root, StoreConfig::default())?;
    let e = store.get(&id, &key, out)?;
    Ok(GetResult {
        id: id.to_hex(),
        name: e.header.name,
        size: e.header.size,
        out: out.display().to_string(),
        sha256: hex::encode(e.header.sha256),
    })
}

/// Per recipient result of `caucus blob send`.
#[derive(Clone, Debug, Serialize)]
pub struct SentTo {
    /// Recipient name.
    pub name: String,
    /// First chunk sent (0 unless resumed).
    pub resumed_from: u64,
    /// Chunks sent by this command.
    pub chunks_sent: u64,
    /// Ciphertext bytes sent by this command.
    pub bytes_sent: u64,
    /// Seconds from `post/blob` to the verified receipt.
    pub transfer_s: f64,
    /// Ciphertext MB/s over `transfer_s`.
    pub mb_per_s: f64,
    /// CPU seconds (user + system) this process used over `transfer_s`, when known.
    pub cpu_s: Option<f64>,
    /// The receipt's time (receiver's clock, unix ms).
    pub received_ms: i64,
}

/// Result of `caucus blob send`.
#[derive(Clone, Debug, Serialize)]
pub struct SendResult {
    /// Blob id.
    pub blob_id: String,
    /// Name sent.
    pub name: String,
    /// Plaintext size.
    pub size: u64,
    /// Chunk size.
    pub chunk_size: u32,
    /// Plaintext SHA-256 (hex).
    pub sha256: String,
    /// Seconds spent encrypting into the outbox (0 when a pending entry was reused).
    pub encrypt_s: f64,
    /// Whether a pending outbox entry of an earlier, interrupted send was reused.
    pub reused_outbox: bool,
    /// Every recipient.
    pub recipients: Vec<SentTo>,
    /// This process's peak resident set size (KiB).
    pub peak_rss_kib: Option<u64>,
}

/// Options of `caucus blob send`.
#[derive(Clone, Debug)]
pub struct SendArgs {
    /// Recipient names (roster names).
    pub to: Vec<String>,
    /// The file.
    pub file: PathBuf,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Show a progress line on stderr (default: when stderr is a terminal).
    pub progress: Option<bool>,
    /// Connection attempts per recipient (each retry resumes).
    pub attempts: u32,
}

impl SendArgs {
    /// Defaults: 64 KiB chunks, progress on a terminal, 5 attempts.
    pub fn new(to: Vec<String>, file: PathBuf) -> Self {
        Self {
            to,
            file,
            chunk_size: DEFAULT_CHUNK_SIZE,
            progress: None,
            attempts: 5,
        }
    }
}

/// What the outbox remembers about a pending send, to resume it after a restart.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Pending {
    path: String,
    size: u64,
    mtime_ns: i128,
    recipients: Vec<String>,
    chunk_size: u32,
}

fn pending_for(file: &Path, to: &[String], chunk_size: u32) -> Result<Pending, BlobCliError> {
    let canon = std::fs::canonicalize(file).map_err(|e| StoreError::Io {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let md = std::fs::metadata(&canon).map_err(|e| StoreError::Io {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let mtime_ns = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    let mut recipients = to.to_vec();
    recipients.sort();
    Ok(Pending {
        path: canon.display().to_string(),
        size: md.len(),
        mtime_ns,
        recipients,
        chunk_size,
    })
}

fn find_pending(store: &BlobStore, want: &Pending) -> Option<Outgoing> {
    let dir = store.root().join("outbox");
    for ent in std::fs::read_dir(&dir).ok()?.flatten() {
        let name = ent.file_name().to_string_lossy().to_string();
        let Some(id) = name.strip_suffix(".pending.json") else {
            continue;
        };
        let Ok(bytes) = std::fs::read(ent.path()) else {
            continue;
        };
        if serde_json::from_slice::<Pending>(&bytes).ok().as_ref() == Some(want)
            && let Ok(id) = id.parse::<BlobId>()
            && let Ok(out) = store.outgoing(&id)
        {
            return Some(out);
        }
    }
    None
}

/// A `\r` progress line on stderr.
fn progress_printer(name: String, total: u64) -> super::wire::Progress {
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    Arc::new(move |done: u64, _| {
        let ms = start.elapsed().as_millis() as u64;
        if done < total && ms.saturating_sub(last.load(Ordering::Relaxed)) < 200 {
            return;
        }
        last.store(ms, Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r{name}: {:>6.1}% {:>9.1} MB  {:>7.1} MB/s",
            100.0 * done as f64 / total.max(1) as f64,
            done as f64 / 1e6,
            done as f64 / 1e6 / secs
        );
        if done >= total {
            eprintln!();
        }
    })
}

/// `caucus blob send`: recipients from the verified roster; one encryption; one transfer each.
pub async fn send(dir: &NodeDir, args: &SendArgs) -> Result<SendResult, BlobCliError> {
    if args.to.is_empty() {
        return Err(BlobCliError::Usage("--to needs at least one name".into()));
    }
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| BlobCliError::Usage("FILE has no file name".into()))?;
    // A client session: the node's identity and the verified roster from the CA. It listens only
    // on an ephemeral loopback port (peers dial the advertised address, where `caucus serve` may
    // be running), so it can run next to the daemon.
    let session = Session::open(
        &dir.root,
        SessionOptions {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            roster_wait: std::time::Duration::ZERO,
            ..SessionOptions::default()
        },
    )
    .await
    .map_err(|e| BlobCliError::Transport(e.to_string()))?;
    let node: &Node = session.node();
    let mut parties: Vec<(String, PartyId, caucus::pki::PublicKey)> = Vec::new();
    for n in &args.to {
        if n == &node.me().name {
            return Err(BlobCliError::Recipient(format!("{n:?} is this node")));
        }
        let entry = node
            .trust()
            .member_by_name(n)
            .ok_or_else(|| BlobCliError::Recipient(format!("{n:?} is not on the roster")))?;
        let info = node
            .trust()
            .check_peer(&entry.cert_der, None)
            .map_err(|e| BlobCliError::Recipient(format!("{n:?}: {e}")))?;
        if parties.iter().any(|(_, p, _)| *p == info.party_id) {
            continue;
        }
        parties.push((n.clone(), info.party_id, info.public_key));
    }
    let store = BlobStore::open(&dir.root, StoreConfig::default())?;
    let want = pending_for(&args.file, &args.to, args.chunk_size)?;
    let t = Instant::now();
    let (out, reused) = match find_pending(&store, &want) {
        Some(o) => (o, true),
        None => {
            let keys: Vec<_> = parties.iter().map(|(_, _, k)| k.clone()).collect();
            let o = store.encrypt_to_outbox(
                &args.file,
                &name,
                node.me().party_id,
                &keys,
                args.chunk_size,
                now_ms(),
                &mut rand::rng(),
            )?;
            let p = store
                .root()
                .join("outbox")
                .join(format!("{}.pending.json", o.header.blob_id));
            crate::config::write_atomic(&p, &serde_json::to_vec(&want).unwrap_or_default(), 0o600)?;
            (o, false)
        }
    };
    let encrypt_s = if reused {
        0.0
    } else {
        t.elapsed().as_secs_f64()
    };
    let show = args
        .progress
        .unwrap_or_else(|| std::io::stderr().is_terminal())
        && out.header.size >= 8 << 20;
    let mut recipients = Vec::new();
    for (n, party, _) in &parties {
        let opts = SendOptions {
            progress: show.then(|| progress_printer(n.clone(), out.header.ciphertext_len())),
            stop_after_chunks: None,
        };
        let t = Instant::now();
        let cpu = super::rawtls::cpu_seconds(None);
        let r = send_to(node, party, &out, &opts, args.attempts).await?;
        let secs = t.elapsed().as_secs_f64();
        let cpu_s = super::rawtls::cpu_since(None, cpu);
        recipients.push(SentTo {
            name: n.clone(),
            resumed_from: r.resumed_from,
            chunks_sent: r.chunks_sent,
            bytes_sent: r.bytes_sent,
            transfer_s: secs,
            mb_per_s: r.bytes_sent as f64 / 1e6 / secs.max(1e-9),
            cpu_s,
            received_ms: r.receipt.received_ms,
        });
    }
    session.close().await;
    let id = out.header.blob_id;
    store.remove_outgoing(&id)?;
    let _ = std::fs::remove_file(
        store
            .root()
            .join("outbox")
            .join(format!("{id}.pending.json")),
    );
    Ok(SendResult {
        blob_id: id.to_hex(),
        name,
        size: out.header.size,
        chunk_size: out.header.chunk_size,
        sha256: hex::encode(out.header.sha256),
        encrypt_s,
        reused_outbox: reused,
        recipients,
        peak_rss_kib: super::rawtls::peak_rss_kib(None),
    })
}
