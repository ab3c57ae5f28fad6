//! The blob transfer over an authenticated connection: the receiver's `post/blob` handler and the
//! sender's driver (see [`caucus::blob::transfer`] for the exchange).
//!
//! Both sides keep memory bounded, per transfer: on the sender 1–2 MiB of chunks in flight, on
//! the receiver five 4 MiB file buffers. The receiver's network loop reads each chunk's
//! ciphertext out of TLS straight into a file buffer ([`ChunkBatch`], the partial file's own
//! layout), and hands each full buffer to a blocking worker that decrypt-checks and hashes its
//! chunks and then passes the buffer itself, uncopied, to the file writer
//! ([`super::direct::AppendFile::append_filled`]), which writes it to disk from a third
//! thread and returns a written buffer for the next batch. So TLS decryption and chunk
//! checking run on two cores, and a chunk is copied once after TLS, into its place. The sender
//! reads each chunk of the outbox file with one `pread` straight into its frame, on a blocking
//! thread, several frames back to back per buffer ([`BATCH_BYTES`]), and writes each buffer in
//! one go. While streaming,
//! the sender also watches for an early error reply, so a receiver that stops at a bad chunk
//! stops the sender too.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use caucus::blob::stream::TAG_LEN;
use caucus::blob::transfer::{
    self, Accept, End, METHOD_END, METHOD_POST, PostReply, Receipt, refusal_code, refusal_text,
};
use caucus::blob::{BlobError, BlobHeader, BlobLimits};
use caucus::msg::Inner;
use caucus::msg::frame::{FrameKind, HEADER_LEN};
use caucus::pki::{PartyId, PrivateKey};
use serde_json::Value;

use super::direct::{AlignedBuf, BUF_LEN};
use super::store::{Begin, BlobStore, ChunkBatch, ChunkRef, Outgoing, StoreError, now_ms};
use crate::transport::conn::{BufPool, reply_to};
use crate::transport::{
    Conn, Handler, HandlerFuture, Incoming, METHOD_ERROR, Node, TransportError,
};

/// Longest a single frame write may block (a receiver that stops reading fails the send, which
/// can then be resumed).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for the receipt after `blob/end` (the receiver fsyncs and commits first).
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of a blob send.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The receiver refused the blob or a chunk; `code` is its [`StoreError::code`].
    #[error("{peer} refused the blob: {message}")]
    Refused {
        /// the receiver's roster name
        peer: String,
        /// the refusal code (`too_large`, `inbox_full`, `decryption_failed`, ...)
        code: String,
        /// the receiver's text
        message: String,
    },
    /// The connection failed (the transfer can be resumed by sending again).
    #[error("transfer to {peer} interrupted: {error}")]
    Transport {
        /// the receiver's roster name
        peer: String,
        /// what failed
        error: TransportError,
    },
    /// The receiver answered something that is not a valid reply or receipt for this blob.
    #[error("{peer} answered with an invalid reply: {message}")]
    BadReply {
        /// the receiver's roster name
        peer: String,
        /// what was wrong
        message: String,
    },
    /// The blob's chunk frames are larger than this connection's frame limit (a node
    /// configured with a `max_frame` below the blob's chunk size); nothing was posted.
    #[error("chunk frames of {frame} bytes exceed the connection's frame limit of {max} bytes")]
    FrameLimit {
        /// the largest chunk frame body of the blob
        frame: usize,
        /// the connection's frame limit
        max: usize,
    },
    /// Reading the outbox failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The test hook stopped the transfer.
    #[error("transfer stopped after {0} chunks (test hook)")]
    Stopped(u64),
}

impl SendError {
    /// Whether sending again may resume and succeed (the connection failed or the receiver was
    /// busy with a previous, dying connection for the same blob).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Stopped(_) => true,
            Self::Refused { code, .. } => code == "busy",
            _ => false,
        }
    }
}

/// What a finished send did.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// The receiver's roster name.
    pub peer: String,
    /// The first chunk sent (the receiver already held the ones before).
    pub resumed_from: u64,
    /// Chunks sent on this connection.
    pub chunks_sent: u64,
    /// Ciphertext bytes sent on this connection.
    pub bytes_sent: u64,
    /// The receipt, from an envelope signed by the receiver and verified by the transport.
    pub receipt: Receipt,
}

/// Progress callback: `(ciphertext bytes acknowledged as sent so far, total ciphertext bytes)`.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Options of a send.
#[derive(Clone, Default)]
pub struct SendOptions {
    /// Called for each chunk written (for a batch of them at once: see [`BATCH_BYTES`]).
    pub progress: Option<Progress>,
    /// Test hook: drop the connection after this many chunks of this attempt.
    pub stop_after_chunks: Option<u64>,
}

impl std::fmt::Debug for SendOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendOptions")
            .field("stop_after_chunks", &self.stop_after_chunks)
            .finish_non_exhaustive()
    }
}

fn refused(peer: &str, text: &str) -> SendError {
    SendError::Refused {
        peer: peer.to_string(),
        code: refusal_code(text).unwrap_or("unspecified").to_string(),
        message: text.to_string(),
    }
}

fn bad_reply(peer: &str, message: impl Into<String>) -> SendError {
    SendError::BadReply {
        peer: peer.to_string(),
        message: message.into(),
    }
}

/// Sends `out` on `conn` (a dedicated connection to one of its recipients): `post/blob`, chunks
/// from the receiver's `resume_from`, `blob/end`, and waits for the receipt. A broken
/// connection is [`SendError::Transport`]: send again on a new connection to resume.
pub async fn send_on(
    conn: &mut Conn,
    out: &Outgoing,
    opts: &SendOptions,
) -> Result<SendReport, SendError> {
    let peer = conn.peer().name.clone();
    let h = &out.header;
    if !h.is_recipient(&conn.peer().party_id) {
        return Err(bad_reply(&peer, "the peer is not a recipient of this blob"));
    }
    // Checked before posting, so a missing or damaged outbox never leaves the receiver an empty
    // partial to clean up (an open and an fstat: no need for a blocking thread).
    let file = open_outbox(&out.path, h)?;
    // The first chunk is the largest (only the last may be shorter).
    let frame = transfer::CHUNK_PREFIX_LEN + h.layout().cipher_len(0).unwrap_or(0);
    let max_body = conn.writer.max_body();
    if frame > max_body {
        return Err(SendError::FrameLimit {
            frame,
            max: max_body,
        });
    }
    let id_hex = h.blob_id.to_hex();
    let tr = |error: TransportError| SendError::Transport {
        peer: peer.clone(),
        error,
    };
    let reply = match conn.request(METHOD_POST, &id_hex, h.to_value()).await {
        Ok(r) => r,
        Err(TransportError::Remote(text)) => return Err(refused(&peer, &text)),
        Err(e) => return Err(tr(e)),
    };
    let post_nonce = reply_to(&reply).unwrap_or_default();
    let accept =
        match PostReply::from_value(&reply.payload).map_err(|e| bad_reply(&peer, e.to_string()))? {
            PostReply::Receipt(r) => {
                if !r.matches(h) {
                    return Err(bad_reply(&peer, "receipt for another blob"));
                }
                return Ok(SendReport {
                    peer,
                    resumed_from: h.layout().count(),
                    chunks_sent: 0,
                    bytes_sent: 0,
                    receipt: r,
                });
            }
            PostReply::Accept(a) => a,
        };
    let count = h.layout().count();
    if accept.blob_id != h.blob_id || accept.resume_from > count {
        return Err(bad_reply(
            &peer,
            "accept for another blob or beyond its end",
        ));
    }
    let from = accept.resume_from;

    // Reader thread: outbox chunks from `from`, as batches of whole chunk frames.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<FrameBatch, StoreError>>(SEND_QUEUE);
    let path = out.path.clone();
    let header = h.clone();
    let pool = Arc::new(BufPool::default());
    let reader_pool = pool.clone();
    let reader = tokio::task::spawn_blocking(move || {
        read_chunks(&file, &path, &header, from, max_body, &reader_pool, &tx)
    });

    let Conn {
        reader: frames,
        writer,
        core,
        peer: peer_info,
        ..
    } = conn;
    let total = h.ciphertext_len();
    let mut acked = super::store::chunk_offset(h, from);
    let mut chunks_sent = 0u64;
    let mut bytes_sent = 0u64;
    let early = frames.read_frame(None);
    tokio::pin!(early);
    let early_reply = |f: Result<Option<caucus::msg::frame::Frame>, TransportError>| match f {
        Ok(Some(f)) if f.kind == FrameKind::Envelope => match core.open(peer_info, &f.body) {
            Ok(inner) if inner.meta.method == METHOD_ERROR => {
                refused(&peer, &crate::transport::conn::error_text(&inner))
            }
            Ok(inner) => bad_reply(&peer, format!("unexpected {}", inner.meta.method)),
            Err(e) => tr(e),
        },
        Ok(Some(_)) => bad_reply(&peer, "unexpected frame"),
        Ok(None) => tr(TransportError::Closed),
        Err(e) => tr(e),
    };
    loop {
        let next = tokio::select! {
            biased;
            f = &mut early => { reader.abort(); return Err(early_reply(f)); }
            b = rx.recv() => b,
        };
        let batch = match next {
            None => break,
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(e.into()),
        };
        // The test hook stops after exactly its count of chunks, mid-batch if need be.
        let frames_now = match opts.stop_after_chunks {
            Some(stop) if stop > chunks_sent => batch.ends.len().min((stop - chunks_sent) as usize),
            _ => batch.ends.len(),
        };
        let upto = batch.ends[frames_now - 1];
        tokio::select! {
            biased;
            f = &mut early => { reader.abort(); return Err(early_reply(f)); }
            r = tokio::time::timeout(WRITE_TIMEOUT, writer.write_raw(&batch.bytes[..upto])) => {
                r.map_err(|_| tr(TransportError::Timeout("sending chunks")))?.map_err(tr)?
            }
        }
        let mut start = 0;
        for &end in &batch.ends[..frames_now] {
            let n = (end - start - HEADER_LEN - transfer::CHUNK_PREFIX_LEN) as u64;
            start = end;
            chunks_sent += 1;
            bytes_sent += n;
            acked += n;
            if let Some(p) = &opts.progress {
                p(acked, total);
            }
        }
        pool.put(batch.bytes);
        if opts.stop_after_chunks == Some(chunks_sent) {
            reader.abort();
            return Err(SendError::Stopped(chunks_sent));
        }
    }
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(tr(TransportError::Io(e.to_string()))),
    }
    // blob/end, then the receipt (or an error reply to post/blob or to blob/end).
    let meta = core.meta(METHOD_END, &id_hex, Some(peer_info.party_id));
    let end_nonce = meta.nonce;
    let end = serde_json::to_value(End { blob_id: h.blob_id }).unwrap_or(Value::Null);
    let bytes = core.seal(meta, end).map_err(tr)?;
    tokio::select! {
        biased;
        f = &mut early => return Err(early_reply(f)),
        r = tokio::time::timeout(WRITE_TIMEOUT, writer.write_frame(FrameKind::Envelope, &bytes)) => {
            r.map_err(|_| tr(TransportError::Timeout("sending blob/end")))?.map_err(tr)?
        }
    }
    let f = tokio::time::timeout(RECEIPT_TIMEOUT, &mut early)
        .await
        .map_err(|_| tr(TransportError::Timeout("waiting for the receipt")))?;
    let f = f.map_err(tr)?.ok_or_else(|| tr(TransportError::Closed))?;
    if f.kind != FrameKind::Envelope {
        return Err(bad_reply(&peer, "unexpected frame"));
    }
    let inner = core.open(peer_info, &f.body).map_err(tr)?;
    let re = reply_to(&inner);
    if re != Some(end_nonce) && re != Some(post_nonce) {
        return Err(bad_reply(&peer, "reply to another request"));
    }
    if inner.meta.method == METHOD_ERROR {
        return Err(refused(&peer, &crate::transport::conn::error_text(&inner)));
    }
    let receipt = match PostReply::from_value(&inner.payload) {
        Ok(PostReply::Receipt(r)) if r.matches(h) => r,
        _ => return Err(bad_reply(&peer, "not a receipt for this blob")),
    };
    Ok(SendReport {
        peer,
        resumed_from: from,
        chunks_sent,
        bytes_sent,
        receipt,
    })
}

/// Opens the outbox file of `h`, checking it has the ciphertext's length.
fn open_outbox(path: &std::path::Path, h: &BlobHeader) -> Result<std::fs::File, StoreError> {
    let io = |message: String| StoreError::Io {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| io(e.to_string()))?;
    let len = file.metadata().map_err(|e| io(e.to_string()))?.len();
    if len != h.ciphertext_len() {
        return Err(io("outbox file has the wrong length".into()));
    }
    Ok(file)
}

/// Bytes of chunk frames the sender reads and writes as one batch (or one frame, if larger):
/// its reader thread and its connection task each wake once per batch rather than once per
/// chunk (sender CPU per GB 0.76 → 0.65–0.70 s in `caucus bench blob`, medians of 4–5 runs).
pub const BATCH_BYTES: usize = 512 << 10;

/// Batches queued between the sender's reader thread and its connection task. With the one
/// being read and the one being written, four batches (2 MiB at 64 KiB chunks) are live, which
/// the send's own [`BufPool`] keeps for reuse.
const SEND_QUEUE: usize = 2;

/// Consecutive whole chunk frames (header, blob id and index, ciphertext) back to back.
struct FrameBatch {
    bytes: Vec<u8>,
    /// End offset in `bytes` of each frame.
    ends: Vec<usize>,
}

/// Reads the outbox ciphertext (`file`, at `path`) from chunk `from` on into batches of whole
/// chunk frames (at most [`BATCH_BYTES`] each, unless one frame is larger), in buffers from
/// `pool`: one pread per chunk, straight into its place in the batch (the outbox was just
/// written through the page cache, and the kernel's read-ahead covers one that is no longer
/// cached). `max_body` is the connection's frame limit ([`send_on`] checked the blob fits it).
fn read_chunks(
    file: &std::fs::File,
    path: &std::path::Path,
    h: &BlobHeader,
    from: u64,
    max_body: usize,
    pool: &BufPool,
    tx: &tokio::sync::mpsc::Sender<Result<FrameBatch, StoreError>>,
) -> Result<(), StoreError> {
    let io = |message: String| StoreError::Io {
        path: path.to_path_buf(),
        message,
    };
    const OVERHEAD: usize = HEADER_LEN + transfer::CHUNK_PREFIX_LEN;
    let layout = h.layout();
    let count = layout.count();
    let mut at = super::store::chunk_offset(h, from);
    let mut next = from;
    while next < count {
        let mut ends = Vec::new();
        let mut len = 0usize;
        for i in next..count {
            let frame = OVERHEAD + layout.cipher_len(i).unwrap_or(0);
            if !ends.is_empty() && len + frame > BATCH_BYTES {
                break;
            }
            len += frame;
            ends.push(len);
        }
        let mut bytes = pool.take(len);
        let mut start = 0;
        for (k, &end) in ends.iter().enumerate() {
            let header = caucus::msg::frame::encode_header(
                FrameKind::BlobChunk,
                end - start - HEADER_LEN,
                max_body,
            )
            .map_err(|e| io(e.to_string()))?;
            bytes[start..start + HEADER_LEN].copy_from_slice(&header);
            bytes[start + HEADER_LEN..start + OVERHEAD]
                .copy_from_slice(&transfer::encode_chunk_header(&h.blob_id, next + k as u64));
            file.read_exact_at(&mut bytes[start + OVERHEAD..end], at)
                .map_err(|e| io(e.to_string()))?;
            at += (end - start - OVERHEAD) as u64;
            start = end;
        }
        next += ends.len() as u64;
        if tx.blocking_send(Ok(FrameBatch { bytes, ends })).is_err() {
            break; // the sender stopped
        }
    }
    Ok(())
}

/// How long a sender keeps retrying a receiver that answers `busy` (it is still finishing an
/// interrupted connection for the same blob: draining the chunks that arrived, checkpointing),
/// on top of the `attempts` of [`send_to`].
pub const BUSY_PATIENCE: Duration = Duration::from_secs(30);

/// Connects to `party` and sends `out`, retrying (and so resuming) after interruptions up to
/// `attempts` times with a short backoff. A `busy` refusal is retried every 200 ms for up to
/// [`BUSY_PATIENCE`] without using up an attempt.
pub async fn send_to(
    node: &Node,
    party: &PartyId,
    out: &Outgoing,
    opts: &SendOptions,
    attempts: u32,
) -> Result<SendReport, SendError> {
    let mut last = None;
    let mut attempt = 0u32;
    let mut busy_until: Option<tokio::time::Instant> = None;
    while attempt < attempts.max(1) {
        let mut conn = match node.connect(party).await {
            Ok(c) => c,
            Err(error) => {
                last = Some(SendError::Transport {
                    peer: party.to_string(),
                    error,
                });
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
                continue;
            }
        };
        match send_on(&mut conn, out, opts).await {
            Ok(r) => {
                conn.close().await;
                return Ok(r);
            }
            Err(e @ SendError::Refused { .. }) if e.is_retryable() => {
                let until =
                    *busy_until.get_or_insert_with(|| tokio::time::Instant::now() + BUSY_PATIENCE);
                if tokio::time::Instant::now() >= until {
                    return Err(e);
                }
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) if e.is_retryable() && !matches!(e, SendError::Stopped(_)) => {
                last = Some(e);
                attempt += 1;
                if attempt < attempts.max(1) {
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(SendError::Stopped(0)))
}

/// The receiver's `post/blob` handler.
#[derive(Debug, Clone)]
pub struct BlobHandler {
    store: Arc<BlobStore>,
    key: Arc<PrivateKey>,
}

impl BlobHandler {
    /// A handler storing into `store`, unwrapping file keys with `key` (the node's own key).
    pub fn new(store: Arc<BlobStore>, key: Arc<PrivateKey>) -> Self {
        Self { store, key }
    }

    /// Registers the handler for `post/blob` on `node`.
    pub fn register(self, node: &Node) {
        node.register(METHOD_POST, self);
    }

    async fn refuse(conn: &mut Conn, req: &Inner, e: &StoreError) -> Result<(), TransportError> {
        tracing::info!(peer = %conn.peer().name, code = e.code(), error = %e, "blob refused");
        conn.reply_error(req, &public_refusal(e)).await
    }

    async fn receive(&self, conn: &mut Conn, req: Inner) -> Result<(), TransportError> {
        let limits = BlobLimits {
            max_size: self.store.config().max_blob_bytes,
        };
        let header = match BlobHeader::from_inner(&req, &limits) {
            Ok(h) => h,
            Err(e) => return Self::refuse(conn, &req, &StoreError::Blob(e)).await,
        };
        let store = self.store.clone();
        let key = self.key.clone();
        let name = conn.peer().name.clone();
        let begun = tokio::task::spawn_blocking(move || store.begin(header, &key, &name, now_ms()))
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let mut inc = match begun {
            Err(e) => return Self::refuse(conn, &req, &e).await,
            Ok(Begin::AlreadyReceived(r)) => {
                let v = serde_json::to_value(r).unwrap_or(Value::Null);
                return conn.reply(&req, v).await;
            }
            Ok(Begin::Receive(inc)) => inc,
        };
        let accept = Accept::new(inc.header().blob_id, inc.resume_from());
        if let Err(e) = conn
            .reply(&req, serde_json::to_value(accept).unwrap_or(Value::Null))
            .await
        {
            let _ = tokio::task::spawn_blocking(move || inc.suspend(now_ms())).await;
            return Err(e);
        }
        tracing::debug!(peer = %conn.peer().name, blob = %inc.header().blob_id, from = inc.resume_from(), "blob accepted");
        // The network loop reads each chunk's ciphertext straight into a file buffer, a batch
        // of them at a time; the worker checks the batch and hands the buffer to the file
        // writer, which sends one back for the next batch.
        let max_ct = inc.header().chunk_size as usize + TAG_LEN;
        let offset = inc.append_offset();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Work>(1);
        let (free_tx, mut free_rx) = tokio::sync::mpsc::unbounded_channel::<AlignedBuf>();
        // The network loop's second buffer: it fills one while the worker checks the other.
        let _ = free_tx.send(AlignedBuf::new(BUF_LEN));
        let worker = tokio::task::spawn_blocking(move || {
            while let Some(work) = rx.blocking_recv() {
                let r = match work {
                    Work::Batch(b) => inc.push_batch(b).map(|back| {
                        let _ = free_tx.send(back);
                    }),
                    Work::Whole(body) => inc.push_frame(&body),
                };
                if let Err(e) = r {
                    return (inc, Err(e));
                }
            }
            (inc, Ok(()))
        });
        let mut batch = ChunkBatch::start(AlignedBuf::new(BUF_LEN), offset);
        let mut end: Option<Inner> = None;
        let mut net_err: Option<TransportError> = None;
        let mut protocol_err: Option<StoreError> = None;
        loop {
            let (kind, len) = match conn.recv_head().await {
                Ok(h) => h,
                Err(e) => {
                    net_err = Some(e);
                    break;
                }
            };
            if kind == FrameKind::BlobChunk {
                match read_chunk(conn, &mut batch, len, max_ct, &tx, &mut free_rx).await {
                    Ok(true) => continue,
                    Ok(false) => break, // the worker stopped at a bad chunk
                    Err(e) => {
                        net_err = Some(e);
                        break;
                    }
                }
            }
            match conn.recv_rest(kind, len).await {
                Ok(Incoming::Envelope(inner)) if inner.meta.method == METHOD_END => {
                    end = Some(*inner);
                    break;
                }
                Ok(Incoming::Envelope(inner)) => {
                    protocol_err = Some(StoreError::Blob(BlobError::Malformed(format!(
                        "unexpected {} during a blob transfer",
                        inner.meta.method
                    ))));
                    break;
                }
                Ok(Incoming::Chunk(_)) => {
                    protocol_err = Some(StoreError::Blob(BlobError::Malformed(
                        "unexpected chunk frame".into(),
                    )));
                    break;
                }
                Err(e) => {
                    net_err = Some(e);
                    break;
                }
            }
        }
        // The chunks read so far are checked and appended whatever stopped the loop (a
        // connection lost mid-transfer keeps them for the resume).
        if !batch.is_empty() {
            let _ = tx.send(Work::Batch(batch)).await;
        }
        drop(tx);
        let (inc, worked) = worker
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?;
        let failure = match (worked, protocol_err) {
            (Err(e), _) | (Ok(()), Some(e)) => Some(e),
            _ => None,
        };
        if let Some(e) = failure {
            let code = e.code();
            let text = public_refusal(&e);
            let _ = tokio::task::spawn_blocking(move || inc.fail(&e)).await;
            tracing::info!(peer = %conn.peer().name, code, "blob transfer stopped");
            if net_err.is_none() {
                conn.reply_error(&req, &text).await?;
                drain(conn).await?;
            }
            return Ok(());
        }
        if let Some(e) = net_err {
            let _ = tokio::task::spawn_blocking(move || inc.suspend(now_ms())).await;
            return Err(e);
        }
        let Some(end) = end else {
            return Ok(());
        };
        let ok_end = end
            .payload_as::<End>()
            .ok()
            .is_some_and(|e| e.blob_id == inc.header().blob_id);
        if !ok_end {
            let e = StoreError::WrongBlob;
            let text = public_refusal(&e);
            let _ = tokio::task::spawn_blocking(move || inc.fail(&e)).await;
            return conn.reply_error(&end, &text).await;
        }
        let done = tokio::task::spawn_blocking(move || inc.finish(now_ms()))
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?;
        match done {
            Ok(receipt) => {
                tracing::info!(peer = %conn.peer().name, blob = %receipt.blob_id, size = receipt.size, "blob received");
                conn.reply(&end, serde_json::to_value(receipt).unwrap_or(Value::Null))
                    .await
            }
            Err(e) => conn.reply_error(&end, &public_refusal(&e)).await,
        }
    }
}

/// What the receiving network loop hands the worker.
enum Work {
    /// Chunks read straight into a file buffer.
    Batch(ChunkBatch),
    /// A chunk frame body that cannot be a chunk of this blob (too short or too long), read
    /// whole so the worker refuses it with the same error as any bad chunk.
    Whole(Vec<u8>),
}

/// Reads the chunk frame whose header announced `len` body bytes: its ciphertext straight into
/// `batch` (sent to the worker, and replaced by a fresh one, when full). `Ok(false)` when the
/// worker has stopped (at a bad chunk); the frame is then left unread.
async fn read_chunk(
    conn: &mut Conn,
    batch: &mut ChunkBatch,
    len: usize,
    max_ct: usize,
    tx: &tokio::sync::mpsc::Sender<Work>,
    free: &mut tokio::sync::mpsc::UnboundedReceiver<AlignedBuf>,
) -> Result<bool, TransportError> {
    let ct_len = len.saturating_sub(transfer::CHUNK_PREFIX_LEN);
    if len < transfer::CHUNK_PREFIX_LEN || ct_len > max_ct {
        let mut body = vec![0u8; len];
        conn.recv_body_into(&mut body).await?;
        if !batch.is_empty() && !ship(batch, tx, free).await {
            return Ok(false);
        }
        return Ok(tx.send(Work::Whole(body)).await.is_ok());
    }
    if batch.room(ct_len).is_none() && !ship(batch, tx, free).await {
        return Ok(false);
    }
    let mut prefix = [0u8; transfer::CHUNK_PREFIX_LEN];
    conn.recv_body_into(&mut prefix).await?;
    let (blob, index, _) = transfer::parse_chunk(&prefix)
        .map_err(|e| TransportError::Io(format!("chunk prefix: {e}")))?;
    // A fresh batch has room for any chunk of at most `max_ct` (≤ 1 MiB + tag) bytes.
    let room = batch
        .room(ct_len)
        .ok_or_else(|| TransportError::Io("chunk larger than a file buffer".into()))?;
    conn.recv_body_into(room).await?;
    batch.filled(ChunkRef {
        blob,
        index,
        len: ct_len,
    });
    Ok(true)
}

/// Sends the worker `batch` and continues in a fresh one in the next free buffer (waiting for
/// one); `false` when the worker has stopped.
async fn ship(
    batch: &mut ChunkBatch,
    tx: &tokio::sync::mpsc::Sender<Work>,
    free: &mut tokio::sync::mpsc::UnboundedReceiver<AlignedBuf>,
) -> bool {
    let Some(buf) = free.recv().await else {
        return false;
    };
    let full = std::mem::replace(batch, ChunkBatch::start(buf, batch.end_offset()));
    tx.send(Work::Batch(full)).await.is_ok()
}

/// The error reply text for `e`: its code and message, except that local failures (file or index
/// errors, which name paths on this node) are logged here and reported only as `internal`.
fn public_refusal(e: &StoreError) -> String {
    match e.code() {
        "internal" => {
            tracing::warn!(error = %e, "blob store failure");
            refusal_text("internal", "the receiver could not store the blob")
        }
        code => refusal_text(code, &e.to_string()),
    }
}

/// After refusing a transfer, reads and drops what the sender still had in flight (it stops
/// when it sees the error), for at most 5 s, so the refusal is not lost to a connection reset.
async fn drain(conn: &mut Conn) -> Result<(), TransportError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, conn.recv_frame()).await {
            Ok(Ok(Some(f))) if f.kind == FrameKind::BlobChunk => continue,
            Ok(Ok(Some(_))) => return Ok(()),
            Ok(Ok(None)) => return Err(TransportError::Closed),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(TransportError::Timeout("draining a refused transfer")),
        }
    }
}

impl Handler for BlobHandler {
    fn handle<'a>(&'a self, conn: &'a mut Conn, request: Inner) -> HandlerFuture<'a> {
        Box::pin(self.receive(conn, request))
    }
}
