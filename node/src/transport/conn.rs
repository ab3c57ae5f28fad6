//! A framed, authenticated connection to one peer.
//!
//! [`FrameReader`] reads the 5-byte header, checks the announced size against the maximum *before*
//! allocating, then reads exactly the body; a clean end of stream between frames is `Ok(None)`.
//! Reads can be bounded by a timeout, so a peer that connects and sends nothing is dropped.
//! [`FrameWriter`] writes each frame with one `write_all` and flushes.
//!
//! [`Conn`] pairs the two halves of a TLS stream with the authenticated [`PeerInfo`] and the
//! node's signing context: [`Conn::send`] seals a signed envelope addressed to the peer,
//! [`Conn::recv`] opens the peer's envelopes (all DESIGN.md checks, replay cache included), and
//! [`Conn::request`] / [`Conn::reply`] implement request/response on one connection. Blob chunks
//! (kind 3) go through [`Conn::write_chunk`] and come back as [`Incoming::Chunk`].

use std::sync::Arc;
use std::time::Duration;

use caucus::msg::frame::{self, Frame, FrameKind, HEADER_LEN};
use caucus::msg::{Inner, Meta};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::node::Core;
use super::trust::PeerInfo;
use super::{METHOD_ERROR, METHOD_REPLY, TransportError};

/// The TLS stream of a node ↔ node connection (either side).
pub type TlsConn = tokio_rustls::TlsStream<Socket>;

/// The TCP stream under TLS, with a read buffer: rustls asks the socket for at most 4 KiB more
/// than it holds, so without one a bulk transfer costs a `recv` system call per 4 KiB.
pub type Socket = tokio::io::BufReader<TcpStream>;

/// Bytes the socket read buffer holds: a few TLS records per `recv`.
pub const SOCKET_READ_BUF: usize = 64 << 10;

/// Wraps a connected TCP stream for TLS (see [`Socket`]).
pub fn socket(tcp: TcpStream) -> Socket {
    tokio::io::BufReader::with_capacity(SOCKET_READ_BUF, tcp)
}

/// A few reusable frame buffers, so that a stream of equal-size frames (blob chunks) reuses its
/// allocations instead of allocating, zero-filling and page-faulting one per frame. Whoever
/// consumes a frame body may give it back with [`BufPool::put`]; at most [`BufPool::KEEP`]
/// buffers and [`BufPool::KEEP_BYTES`] bytes are kept. Bodies given back are only ever blob
/// chunk ciphertext; a taken buffer is overwritten in full before use.
#[derive(Debug, Default)]
pub struct BufPool {
    bufs: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    /// Most buffers kept.
    pub const KEEP: usize = 16;
    /// Most bytes kept (capacity): on a blob sender, the four live batches of chunk frames
    /// ([`crate::blob::wire::BATCH_BYTES`] each).
    pub const KEEP_BYTES: usize = 2 << 20;

    /// A buffer of exactly `len` bytes, reused when one is available (its old content is
    /// still there: the caller overwrites all of it).
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut b = self
            .bufs
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default();
        if b.len() >= len {
            b.truncate(len);
        } else {
            b.resize(len, 0);
        }
        b
    }

    /// Gives a buffer back.
    pub fn put(&self, b: Vec<u8>) {
        if let Ok(mut v) = self.bufs.lock() {
            let kept: usize = v.iter().map(Vec::capacity).sum();
            if v.len() < Self::KEEP && kept + b.capacity() <= Self::KEEP_BYTES {
                v.push(b);
            }
        }
    }
}

/// Reads frames with a maximum size, checked before allocating.
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    max: usize,
    pool: std::sync::Arc<BufPool>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader refusing bodies over `max` bytes.
    pub fn new(io: R, max: usize) -> Self {
        Self {
            io,
            max,
            pool: Default::default(),
        }
    }

    /// The pool frame bodies are taken from (give consumed bodies back to it).
    pub fn pool(&self) -> std::sync::Arc<BufPool> {
        self.pool.clone()
    }

    /// Reads one frame. `Ok(None)` on a clean end of stream before a frame starts. With `idle`,
    /// waiting for the frame to start and reading its body are each bounded by it.
    pub async fn read_frame(
        &mut self,
        idle: Option<Duration>,
    ) -> Result<Option<Frame>, TransportError> {
        let Some((kind, len)) = self.read_head(idle).await? else {
            return Ok(None);
        };
        let mut body = self.pool.take(len);
        self.read_body_into(idle, &mut body).await?;
        Ok(Some(Frame { kind, body }))
    }

    /// Reads one frame header: its kind and body length (checked against the maximum). The
    /// caller then reads exactly that many body bytes with [`FrameReader::read_body_into`].
    /// `Ok(None)` on a clean end of stream before a frame starts; with `idle`, waiting for the
    /// frame to start and reading the rest of its header are each bounded by it.
    pub async fn read_head(
        &mut self,
        idle: Option<Duration>,
    ) -> Result<Option<(FrameKind, usize)>, TransportError> {
        let mut header = [0u8; HEADER_LEN];
        let first = match idle {
            Some(d) => tokio::time::timeout(d, self.io.read(&mut header))
                .await
                .map_err(|_| TransportError::Timeout("waiting for a frame"))?,
            None => self.io.read(&mut header).await,
        };
        // A peer that closes between frames without a TLS close_notify is a clean end too.
        let first = match first {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            r => r?,
        };
        if first == 0 {
            return Ok(None);
        }
        let rest = self.io.read_exact(&mut header[first..]);
        match idle {
            Some(d) => tokio::time::timeout(d, rest)
                .await
                .map_err(|_| TransportError::Timeout("reading a frame"))??,
            None => rest.await?,
        };
        Ok(Some(frame::parse_header(&header, self.max)?))
    }

    /// Reads the next `dst.len()` body bytes of the frame whose header was just read (all of
    /// them, or a part when the caller splits the body), bounded by `idle`.
    pub async fn read_body_into(
        &mut self,
        idle: Option<Duration>,
        dst: &mut [u8],
    ) -> Result<(), TransportError> {
        let read = self.io.read_exact(dst);
        match idle {
            Some(d) => tokio::time::timeout(d, read)
                .await
                .map_err(|_| TransportError::Timeout("reading a frame"))??,
            None => read.await?,
        };
        Ok(())
    }
}

/// Writes frames.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    max: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer refusing bodies over `max` bytes.
    pub fn new(io: W, max: usize) -> Self {
        Self { io, max }
    }

    /// Writes one frame (header and body in one write) and flushes.
    pub async fn write_frame(
        &mut self,
        kind: FrameKind,
        body: &[u8],
    ) -> Result<(), TransportError> {
        let bytes = frame::encode(kind, body, self.max)?;
        self.write_raw(&bytes).await
    }

    /// The largest frame body this writer sends.
    pub fn max_body(&self) -> usize {
        self.max
    }

    /// Writes already-encoded bytes and flushes: whole frames encoded elsewhere (a batch of blob
    /// chunk frames), or, in tests, malformed ones.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Closes the write direction (TLS close_notify).
    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}

/// What [`Conn::recv`] got.
#[derive(Debug)]
pub enum Incoming {
    /// A signed envelope that passed every check.
    Envelope(Box<Inner>),
    /// A blob chunk frame body (kind 3), unauthenticated at this layer: blob chunks are AEAD
    /// sealed under a key announced in a signed envelope.
    Chunk(Vec<u8>),
}

/// An authenticated, framed connection to one peer. Exclusive: handlers get `&mut Conn` for the
/// duration of their exchange.
pub struct Conn {
    pub(crate) reader: FrameReader<ReadHalf<TlsConn>>,
    pub(crate) writer: FrameWriter<WriteHalf<TlsConn>>,
    pub(crate) peer: PeerInfo,
    pub(crate) core: Arc<Core>,
    pub(crate) idle: Option<Duration>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer.name)
            .finish()
    }
}

impl Conn {
    /// The pool this connection's frame bodies come from: a consumer of blob chunks gives the
    /// bodies back to it so the next chunks reuse them.
    pub fn buffers(&self) -> std::sync::Arc<BufPool> {
        self.reader.pool()
    }

    pub(crate) fn new(
        stream: TlsConn,
        peer: PeerInfo,
        core: Arc<Core>,
        idle: Option<Duration>,
    ) -> Self {
        let max = core.opts.max_frame;
        let (r, w) = tokio::io::split(stream);
        Self {
            reader: FrameReader::new(r, max),
            writer: FrameWriter::new(w, max),
            peer,
            core,
            idle,
        }
    }

    /// The authenticated peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Sets the read timeout (`None`: wait forever).
    pub fn set_idle_timeout(&mut self, idle: Option<Duration>) {
        self.idle = idle;
    }

    /// Reads the next frame, raw (no envelope check).
    pub async fn recv_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        self.reader.read_frame(self.idle).await
    }

    /// Reads the next envelope or chunk; envelopes are opened (every DESIGN.md check).
    /// Unsigned frames are refused. `Err(Closed)` at end of stream.
    pub async fn recv(&mut self) -> Result<Incoming, TransportError> {
        let f = self.recv_frame().await?.ok_or(TransportError::Closed)?;
        self.incoming(f)
    }

    /// Reads the next frame's header only: its kind and body length. The caller must then read
    /// the body, in parts with [`Conn::recv_body_into`] (a blob receiver reading chunk
    /// ciphertext straight into its file buffers) or whole with [`Conn::recv_rest`].
    /// `Err(Closed)` at end of stream.
    pub async fn recv_head(&mut self) -> Result<(FrameKind, usize), TransportError> {
        self.reader
            .read_head(self.idle)
            .await?
            .ok_or(TransportError::Closed)
    }

    /// Reads the next `dst.len()` bytes of the body of the frame [`Conn::recv_head`] announced.
    pub async fn recv_body_into(&mut self, dst: &mut [u8]) -> Result<(), TransportError> {
        self.reader.read_body_into(self.idle, dst).await
    }

    /// Reads the whole body of the frame [`Conn::recv_head`] announced (`kind`, `len`) and
    /// handles it as [`Conn::recv`] does.
    pub async fn recv_rest(
        &mut self,
        kind: FrameKind,
        len: usize,
    ) -> Result<Incoming, TransportError> {
        let mut body = self.reader.pool.take(len);
        self.reader.read_body_into(self.idle, &mut body).await?;
        self.incoming(Frame { kind, body })
    }

    fn incoming(&self, f: Frame) -> Result<Incoming, TransportError> {
        match f.kind {
            FrameKind::Envelope => Ok(Incoming::Envelope(Box::new(
                self.core.open(&self.peer, &f.body)?,
            ))),
            FrameKind::BlobChunk => Ok(Incoming::Chunk(f.body)),
            FrameKind::Plain => Err(TransportError::UnexpectedFrame("unsigned")),
            FrameKind::Batch => Err(TransportError::UnexpectedFrame("batch")),
        }
    }

    /// Reads the next frame and requires a signed envelope.
    pub async fn recv_envelope(&mut self) -> Result<Inner, TransportError> {
        match self.recv().await? {
            Incoming::Envelope(i) => Ok(*i),
            Incoming::Chunk(_) => Err(TransportError::UnexpectedFrame("blob chunk")),
        }
    }

    /// Seals and sends a signed envelope to the peer; returns its nonce.
    pub async fn send(
        &mut self,
        method: &str,
        message_id: &str,
        payload: Value,
    ) -> Result<[u8; 16], TransportError> {
        self.send_with(method, message_id, Value::Null, Value::Null, payload)
            .await
    }

    /// Like [`Conn::send`] with `meta.args` and `meta.extra`.
    pub async fn send_with(
        &mut self,
        method: &str,
        message_id: &str,
        args: Value,
        extra: Value,
        payload: Value,
    ) -> Result<[u8; 16], TransportError> {
        let meta = self
            .core
            .meta(method, message_id, Some(self.peer.party_id))
            .with_args(args)
            .with_extra(extra);
        let nonce = meta.nonce;
        let bytes = self.core.seal(meta, payload)?;
        self.writer.write_frame(FrameKind::Envelope, &bytes).await?;
        Ok(nonce)
    }

    /// Sends a request and waits for its reply on this connection (up to the idle timeout). An
    /// error reply becomes [`TransportError::Remote`].
    pub async fn request(
        &mut self,
        method: &str,
        message_id: &str,
        payload: Value,
    ) -> Result<Inner, TransportError> {
        let nonce = self.send(method, message_id, payload).await?;
        let inner = self.recv_envelope().await?;
        reply_result(inner, &nonce)
    }

    /// Answers `to` with a reply carrying `payload`.
    pub async fn reply(&mut self, to: &Inner, payload: Value) -> Result<(), TransportError> {
        let extra = reply_extra(&to.meta.nonce);
        self.send_with(
            METHOD_REPLY,
            &to.meta.message_id,
            Value::Null,
            extra,
            payload,
        )
        .await
        .map(|_| ())
    }

    /// Answers `to` with an error reply.
    pub async fn reply_error(&mut self, to: &Inner, error: &str) -> Result<(), TransportError> {
        let extra = reply_extra(&to.meta.nonce);
        let payload = serde_json::json!({ "error": error });
        self.send_with(
            METHOD_ERROR,
            &to.meta.message_id,
            Value::Null,
            extra,
            payload,
        )
        .await
        .map(|_| ())
    }

    /// Sends a blob chunk frame (kind 3).
    pub async fn write_chunk(&mut self, body: &[u8]) -> Result<(), TransportError> {
        self.writer.write_frame(FrameKind::BlobChunk, body).await
    }

    /// Writes raw bytes (no framing). For tests of malformed input only.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.writer.write_raw(bytes).await
    }

    /// Closes the connection (TLS close_notify).
    pub async fn close(mut self) {
        self.writer.shutdown().await;
    }
}

/// `meta.extra` of a reply to the request with `nonce`.
pub fn reply_extra(nonce: &[u8; 16]) -> Value {
    serde_json::json!({ "re": caucus::encoding::b64u(nonce) })
}

/// The request nonce a reply answers, if it is a reply.
pub fn reply_to(inner: &Inner) -> Option<[u8; 16]> {
    if inner.meta.method != METHOD_REPLY && inner.meta.method != METHOD_ERROR {
        return None;
    }
    let re = inner.meta.extra.get("re")?.as_str()?;
    let bytes = caucus::encoding::b64u_decode(re, 16).ok()?;
    bytes.try_into().ok()
}

/// Turns a reply to `nonce` into the result of the request.
pub fn reply_result(inner: Inner, nonce: &[u8; 16]) -> Result<Inner, TransportError> {
    if reply_to(&inner).as_ref() != Some(nonce) {
        return Err(TransportError::BadRequest(
            "expected the reply to our request".into(),
        ));
    }
    if inner.meta.method == METHOD_ERROR {
        return Err(TransportError::Remote(error_text(&inner)));
    }
    Ok(inner)
}

/// The text of an error reply (bounded).
pub fn error_text(inner: &Inner) -> String {
    let s = inner
        .payload
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unspecified error");
    s.chars().take(200).collect()
}

/// Builds metadata: exposed so tests can forge envelopes with odd fields.
pub fn meta_for(
    method: &str,
    session: &str,
    message_id: &str,
    sender: caucus::pki::PartyId,
    to: Option<caucus::pki::PartyId>,
    now_ms: i64,
) -> Meta {
    Meta::new(
        method,
        session,
        message_id,
        sender,
        to,
        now_ms,
        &mut rand::rng(),
    )
}

#[cfg(test)]
mod tests {
    use caucus::msg::frame::FrameError;
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_clean_eof() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = FrameWriter::new(a, 1024);
        let mut r = FrameReader::new(b, 1024);
        w.write_frame(FrameKind::Envelope, b"hello")
            .await
            .expect("write");
        w.write_frame(FrameKind::BlobChunk, b"")
            .await
            .expect("write");
        drop(w);
        let f = r.read_frame(None).await.expect("ok").expect("frame");
        assert_eq!(
            (f.kind, f.body.as_slice()),
            (FrameKind::Envelope, &b"hello"[..])
        );
        let f = r.read_frame(None).await.expect("ok").expect("frame");
        assert_eq!(f.kind, FrameKind::BlobChunk);
        assert!(r.read_frame(None).await.expect("eof").is_none());
    }

    #[tokio::test]
    async fn oversized_refused_from_the_header_and_writer_refuses_too() {
        let (mut a, b) = tokio::io::duplex(64);
        // Announce 4 GiB - 1: refused before any allocation or body read.
        a.write_all(&[0xff, 0xff, 0xff, 0xff, 1]).await.expect("w");
        let mut r = FrameReader::new(b, 1024);
        let e = r.read_frame(None).await.expect_err("too large");
        assert!(matches!(
            e,
            TransportError::Frame(FrameError::TooLarge { .. })
        ));
        let (a, _b) = tokio::io::duplex(64);
        let mut w = FrameWriter::new(a, 4);
        let e = w
            .write_frame(FrameKind::Envelope, b"12345")
            .await
            .expect_err("too large");
        assert!(matches!(e, TransportError::Frame(_)));
    }

    #[tokio::test]
    async fn truncated_unknown_kind_and_idle_timeout() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 10, 1, b'x']).await.expect("w");
        drop(a);
        let mut r = FrameReader::new(b, 1024);
        let e = r.read_frame(None).await.expect_err("truncated");
        assert!(matches!(e, TransportError::Truncated), "{e:?}");

        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 0, 7]).await.expect("w");
        let mut r = FrameReader::new(b, 1024);
        let e = r.read_frame(None).await.expect_err("kind");
        assert!(matches!(
            e,
            TransportError::Frame(FrameError::UnknownKind(7))
        ));

        // Nothing sent: the idle bound fires. Half a header: the body bound fires.
        let (mut a, b) = tokio::io::duplex(64);
        let mut r = FrameReader::new(b, 1024);
        let idle = Some(Duration::from_millis(50));
        let e = r.read_frame(idle).await.expect_err("idle");
        assert!(matches!(e, TransportError::Timeout(_)));
        a.write_all(&[0, 0]).await.expect("w");
        let e = r.read_frame(idle).await.expect_err("slow header");
        assert!(matches!(e, TransportError::Timeout(_)));
    }

    #[tokio::test]
    async fn pooled_buffers_are_reused_and_overwritten_and_batched_frames_read_back() {
        // A body given back is reused for the next frame, truncated or grown to its length,
        // and fully overwritten by it.
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = FrameWriter::new(a, 1024);
        let mut r = FrameReader::new(b, 1024);
        w.write_frame(FrameKind::BlobChunk, &[7u8; 100])
            .await
            .expect("w");
        let f = r.read_frame(None).await.expect("r").expect("frame");
        let ptr = f.body.as_ptr();
        r.pool().put(f.body);
        // Frames encoded elsewhere and written back to back in one go (a sender's batch of
        // chunk frames) read back one by one.
        let mut batch = Vec::new();
        for (byte, len) in [(9u8, 60usize), (8, 70)] {
            batch.extend_from_slice(
                &frame::encode_header(FrameKind::BlobChunk, len, w.max_body()).expect("h"),
            );
            batch.extend_from_slice(&vec![byte; len]);
        }
        w.write_raw(&batch).await.expect("w");
        let f = r.read_frame(None).await.expect("r").expect("frame");
        assert_eq!(
            (f.kind, f.body.as_slice()),
            (FrameKind::BlobChunk, &[9u8; 60][..])
        );
        assert_eq!(f.body.as_ptr(), ptr, "the pooled allocation was reused");
        let g = r.read_frame(None).await.expect("r").expect("frame");
        assert_eq!(g.body, vec![8u8; 70]);
        r.pool().put(f.body);
        w.write_frame(FrameKind::Envelope, &[3u8; 200])
            .await
            .expect("w");
        let f = r.read_frame(None).await.expect("r").expect("frame");
        assert_eq!(f.body, vec![3u8; 200]);
        // The pool keeps at most KEEP buffers and KEEP_BYTES bytes.
        let pool = BufPool::default();
        for _ in 0..BufPool::KEEP + 4 {
            pool.put(vec![0u8; 1024]);
        }
        assert_eq!(pool.bufs.lock().expect("lock").len(), BufPool::KEEP);
        let pool = BufPool::default();
        pool.put(vec![0u8; BufPool::KEEP_BYTES]);
        pool.put(vec![0u8; 1]);
        assert_eq!(pool.bufs.lock().expect("lock").len(), 1);
        assert_eq!(pool.take(10).len(), 10);
    }
}
