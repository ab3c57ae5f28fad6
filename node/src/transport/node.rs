//! The node runtime: accepts peers, routes their signed messages, and keeps one outgoing
//! connection per peer.
//!
//! * [`Node::serve`] is the accept loop (`run(listener, shutdown)` as in mini-redis): a semaphore
//!   bounds concurrent connections, every connection runs in its own task with a handshake timeout
//!   and an idle timeout, and a refusal (bad certificate, bad frame, bad envelope) only affects the
//!   offending connection. It is reported on [`Node::refusals`] and in the log.
//! * Routing by `meta.method` happens in one place ([`Node::register`] adds methods): `smc/msg`
//!   goes to the inbox keyed by (sender, message id) within per-peer bounds on messages and bytes;
//!   `smc/ping`, `get/crt` and `post/crt` are answered on the same connection.
//! * Outgoing: one connection per peer, dialled on demand at its roster address, reused, and
//!   re-dialled with bounded exponential backoff when it drops; a send waits for the peer until
//!   its deadline. Idle outgoing connections send a signed `smc/ping` keepalive so that the
//!   acceptor's idle timeout only drops peers that really send nothing.
//! * Group signing: on an idle link, [`Node::send`] and [`Node::request`] sign their message
//!   themselves and write it as an ordinary kind-1 envelope (no added latency). On a busy link they
//!   hand it to the link's signer task, which signs everything queued since its last write with
//!   one RSA-PSS signature (a kind-4 batch, [`caucus::msg::batch`]), so the sender pays one
//!   signature per batch instead of one per message.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use caucus::encoding::{b64u, b64u_decode};
use caucus::msg::frame::{DEFAULT_MAX_FRAME, FrameKind};
use caucus::msg::{BatchItem, Inner, MAX_BATCH, Meta, Opener, Refused, Unsigned, seal};
use caucus::pki::{PartyId, PrivateKey};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::conn::{Conn, FrameReader, FrameWriter, Socket, TlsConn, reply_extra, reply_to, socket};
use super::tls::{client_config, peer_error_from_io, peer_server_name, server_config};
use super::trust::{PeerError, PeerInfo, Trust};
use super::{
    METHOD_ERROR, METHOD_GET_CRT, METHOD_PING, METHOD_POST_CRT, METHOD_REPLY, METHOD_SMC_MSG,
    TransportError,
};

/// Limits and timeouts of a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Largest frame body accepted or sent.
    pub max_frame: usize,
    /// Most concurrent inbound connections.
    pub max_connections: usize,
    /// Time allowed for an inbound TLS handshake.
    pub handshake_timeout: Duration,
    /// An inbound connection that sends no frame for this long is closed. Outgoing connections
    /// send a keepalive after a third of it.
    pub idle_timeout: Duration,
    /// Time allowed for one TCP connect + TLS handshake when dialling.
    pub connect_timeout: Duration,
    /// Longest wait between two dial attempts (the backoff starts at 50 ms and doubles).
    pub max_backoff: Duration,
    /// Most early messages buffered per peer.
    pub max_buffered_messages: usize,
    /// Most bytes of early messages buffered per peer.
    pub max_buffered_bytes: usize,
    /// Allowed clock skew for envelope timestamps, in milliseconds.
    pub skew_ms: i64,
    /// Size of the replay cache.
    pub replay_entries: usize,
    /// Time given to connections to finish after shutdown is signalled.
    pub shutdown_grace: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(2),
            max_buffered_messages: 100_000,
            max_buffered_bytes: 256 << 20,
            skew_ms: caucus::msg::envelope::DEFAULT_SKEW_MS,
            replay_entries: caucus::msg::replay::DEFAULT_MAX_ENTRIES,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// A refused connection or message, as reported on [`Node::refusals`].
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The remote address.
    pub remote: Option<SocketAddr>,
    /// The peer's roster name, if it authenticated.
    pub peer: Option<String>,
    /// Why.
    pub error: TransportError,
}

/// The future a [`Handler`] returns.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'a>>;

/// A method handler. It gets the connection exclusively until it returns, so it can reply with
/// [`Conn::reply`] and carry on a longer exchange (for example read blob chunks with
/// [`Conn::recv`]). An `Err` is reported and answered with an error reply; the connection then
/// continues unless the error was a transport failure.
pub trait Handler: Send + Sync + 'static {
    /// Handles `request` (already verified) from `conn.peer()`.
    fn handle<'a>(&'a self, conn: &'a mut Conn, request: Inner) -> HandlerFuture<'a>;
}

impl<F> Handler for F
where
    F: for<'a> Fn(&'a mut Conn, Inner) -> HandlerFuture<'a> + Send + Sync + 'static,
{
    fn handle<'a>(&'a self, conn: &'a mut Conn, request: Inner) -> HandlerFuture<'a> {
        self(conn, request)
    }
}

#[derive(Default)]
struct InboxState {
    queues: HashMap<(PartyId, String), VecDeque<(Value, usize)>>,
    /// per peer: (messages, bytes) buffered
    used: HashMap<PartyId, (usize, usize)>,
}

/// Presence of a peer's inbound connections.
#[derive(Default, Clone, Copy)]
struct Presence {
    inbound: usize,
    seen: bool,
}

type Pending = Mutex<HashMap<[u8; 16], oneshot::Sender<Result<Inner, TransportError>>>>;

/// Inner bytes of queued messages signed together at most (a larger message goes alone).
const BATCH_BYTES: usize = 256 << 10;

/// Inner bytes per batch for a node whose frames are at most `max_frame` bytes: escaping inside
/// the outer JSON string at most sextuples them (`\u00XX`), so a batch always fits in a frame.
fn batch_cap(max_frame: usize) -> usize {
    BATCH_BYTES.min(max_frame / 8)
}

type Queued = (Unsigned, oneshot::Sender<Result<(), TransportError>>);

/// Messages and signatures a node has sent through its group-signing queues.
#[derive(Debug, Default)]
struct SendCounters {
    messages: AtomicU64,
    signatures: AtomicU64,
}

/// What [`Node::send_stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendStats {
    /// Messages sent by [`Node::send`] and [`Node::request`].
    pub messages: u64,
    /// RSA-PSS signatures those messages needed (one per kind-1 envelope or kind-4 batch).
    pub signatures: u64,
}

/// One outgoing connection to a peer.
struct Link {
    writer: tokio::sync::Mutex<FrameWriter<tokio::io::WriteHalf<TlsConn>>>,
    /// Messages for the link's signer task, which signs what has queued up and writes it.
    queue: tokio::sync::mpsc::Sender<Queued>,
    /// A sender is signing its message itself (the idle-link fast path).
    inline: AtomicBool,
    /// The signer task is signing or writing a batch.
    signer_busy: AtomicBool,
    pending: Arc<Pending>,
    closed: Arc<AtomicBool>,
    last_write: Mutex<Instant>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Ok(t) = self.tasks.lock() {
            for h in t.iter() {
                h.abort();
            }
        }
    }
}

impl Link {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    async fn write(&self, body: &[u8]) -> Result<(), TransportError> {
        let mut w = self.writer.lock().await;
        self.write_locked(&mut w, FrameKind::Envelope, body).await
    }

    async fn write_locked(
        &self,
        w: &mut FrameWriter<tokio::io::WriteHalf<TlsConn>>,
        kind: FrameKind,
        body: &[u8],
    ) -> Result<(), TransportError> {
        // Checked here, after the signing that preceded this write (about 1 ms): a peer that
        // closed meanwhile is noticed by the link's reader, and the caller re-dials instead of
        // writing into a dead connection, where the write would still seem to succeed.
        if self.is_closed() {
            return Err(TransportError::Closed);
        }
        if let Ok(mut t) = self.last_write.lock() {
            *t = Instant::now();
        }
        let r = w.write_frame(kind, body).await;
        // A frame refused locally (too large) leaves the connection intact.
        if r.is_err() && !matches!(r, Err(TransportError::Frame(_))) {
            self.closed.store(true, Ordering::SeqCst);
        }
        r
    }

    /// Sends `item`: on an idle link the caller signs and writes it itself (no task hop on the
    /// latency path); otherwise it goes to the link's signer, which signs everything queued
    /// together (group signing). Returns once it was written, or with the error of the write that
    /// carried it.
    async fn send_queued(&self, core: &Core, item: Unsigned) -> Result<(), TransportError> {
        if self.queue.capacity() == self.queue.max_capacity()
            && !self.signer_busy.load(Ordering::Acquire)
            && !self.inline.swap(true, Ordering::AcqRel)
        {
            let _clear = ClearOnDrop(&self.inline);
            let (kind, body) = core.seal_queued(std::slice::from_ref(&item))?;
            let mut w = self.writer.lock().await;
            return self.write_locked(&mut w, kind, &body).await;
        }
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((item, tx))
            .await
            .map_err(|_| TransportError::Closed)?;
        rx.await.unwrap_or(Err(TransportError::Closed))
    }
}

/// Clears a flag when dropped (also when the future holding it is cancelled).
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

type LinkSlot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;

/// Shared state of a node.
pub struct Core {
    key: Arc<PrivateKey>,
    cert_der: Vec<u8>,
    me: PeerInfo,
    pub(crate) trust: Arc<Trust>,
    pub(crate) opts: NodeOptions,
    opener: Mutex<Opener>,
    server_cfg: Arc<rustls::ServerConfig>,
    client_cfgs: Mutex<HashMap<PartyId, Arc<rustls::ClientConfig>>>,
    handlers: std::sync::RwLock<HashMap<String, Arc<dyn Handler>>>,
    inbox: Mutex<InboxState>,
    inbox_notify: tokio::sync::Notify,
    presence: Mutex<HashMap<PartyId, Presence>>,
    links: Mutex<HashMap<PartyId, LinkSlot>>,
    events: broadcast::Sender<Refusal>,
    sent: SendCounters,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("me", &self.me.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Core {
    pub(crate) fn meta(&self, method: &str, message_id: &str, to: Option<PartyId>) -> Meta {
        Meta::new(
            method,
            self.trust.session(),
            message_id,
            self.me.party_id,
            to,
            self.trust.clock().now_ms(),
            &mut rand::rng(),
        )
    }

    pub(crate) fn seal(&self, meta: Meta, payload: Value) -> Result<Vec<u8>, TransportError> {
        Ok(seal(&self.key, meta, payload)?.to_bytes())
    }

    /// Signs queued messages: one as a kind-1 envelope, several as a kind-4 batch.
    fn seal_queued(&self, items: &[Unsigned]) -> Result<(FrameKind, Vec<u8>), TransportError> {
        let r = match items {
            [one] => (FrameKind::Envelope, caucus::msg::seal_one(&self.key, one)?),
            _ => (FrameKind::Batch, caucus::msg::seal_batch(&self.key, items)?),
        };
        self.sent
            .messages
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        self.sent.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(r)
    }

    pub(crate) fn open(&self, peer: &PeerInfo, body: &[u8]) -> Result<Inner, TransportError> {
        let now = self.trust.clock().now_ms();
        let mut o = self.opener.lock().unwrap_or_else(|p| p.into_inner());
        Ok(o.open(body, &peer.party_id, &peer.public_key, now)?)
    }

    fn open_batch(&self, peer: &PeerInfo, body: &[u8]) -> Result<Vec<BatchItem>, TransportError> {
        let now = self.trust.clock().now_ms();
        let mut o = self.opener.lock().unwrap_or_else(|p| p.into_inner());
        Ok(o.open_batch(body, &peer.party_id, &peer.public_key, now)?)
    }

    fn report(&self, remote: Option<SocketAddr>, peer: Option<&PeerInfo>, error: TransportError) {
        let name = peer.map(|p| p.name.clone());
        tracing::warn!(
            remote = ?remote,
            peer = name.as_deref().unwrap_or("-"),
            "refused: {error}"
        );
        let _ = self.events.send(Refusal {
            remote,
            peer: name,
            error,
        });
    }

    fn set_presence(&self, party: PartyId, delta: isize) {
        let mut p = self.presence.lock().unwrap_or_else(|p| p.into_inner());
        let e = p.entry(party).or_default();
        e.seen = true;
        e.inbound = e.inbound.saturating_add_signed(delta);
        drop(p);
        self.inbox_notify.notify_waiters();
    }

    fn push_inbox(
        &self,
        peer: &PeerInfo,
        message_id: String,
        value: Value,
        size: usize,
    ) -> Result<(), TransportError> {
        let mut st = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let used = st.used.entry(peer.party_id).or_default();
        if used.0 + 1 > self.opts.max_buffered_messages
            || used.1 + size > self.opts.max_buffered_bytes
        {
            return Err(TransportError::BufferFull {
                peer: peer.name.clone(),
            });
        }
        used.0 += 1;
        used.1 += size;
        st.queues
            .entry((peer.party_id, message_id))
            .or_default()
            .push_back((value, size));
        drop(st);
        self.inbox_notify.notify_waiters();
        Ok(())
    }

    fn take_inbox(&self, party: &PartyId, message_id: &str) -> Option<Value> {
        let mut st = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let key = (*party, message_id.to_string());
        let q = st.queues.get_mut(&key)?;
        let (v, size) = q.pop_front()?;
        if q.is_empty() {
            st.queues.remove(&key);
        }
        if let Some(u) = st.used.get_mut(party) {
            u.0 = u.0.saturating_sub(1);
            u.1 = u.1.saturating_sub(size);
        }
        Some(v)
    }
}

/// Errors of [`Node::recv_message`]: the party is absent or has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvFailure {
    /// Nothing arrived before the deadline.
    Timeout,
    /// The party's connections to us dropped and nothing arrived before the deadline.
    Disconnected,
}

/// A node: its identity, its trust, its inbound server and outgoing connections. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Node {
    core: Arc<Core>,
}

impl Node {
    /// A node with `key` and certificate `cert_der`, trusting `trust`. The certificate must be
    /// valid now, match the key and be on the roster.
    pub fn new(
        key: PrivateKey,
        cert_der: Vec<u8>,
        trust: Arc<Trust>,
        opts: NodeOptions,
    ) -> Result<Self, TransportError> {
        let me = trust
            .check_peer(&cert_der, Some(&key.public_key().party_id()))
            .map_err(|e| TransportError::Config(format!("own certificate: {e}")))?;
        let server_cfg = server_config(&key, &cert_der, trust.clone())
            .map_err(|e| TransportError::Config(e.to_string()))?;
        let opener = Opener::with_limits(
            trust.session(),
            Some(me.party_id),
            opts.skew_ms,
            opts.replay_entries,
            opts.max_frame,
        );
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            core: Arc::new(Core {
                key: Arc::new(key),
                cert_der,
                me,
                trust,
                opts,
                opener: Mutex::new(opener),
                server_cfg,
                client_cfgs: Mutex::default(),
                handlers: Default::default(),
                inbox: Mutex::default(),
                inbox_notify: tokio::sync::Notify::new(),
                presence: Mutex::default(),
                links: Mutex::default(),
                events,
                sent: SendCounters::default(),
            }),
        })
    }

    /// This node as a roster member.
    pub fn me(&self) -> &PeerInfo {
        &self.core.me
    }

    /// The trust state (roster, CRL, clock).
    pub fn trust(&self) -> &Arc<Trust> {
        &self.core.trust
    }

    /// The options in force.
    pub fn options(&self) -> &NodeOptions {
        &self.core.opts
    }

    /// Our certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.core.cert_der
    }

    /// Subscribes to refusals (refused connections and messages).
    pub fn refusals(&self) -> broadcast::Receiver<Refusal> {
        self.core.events.subscribe()
    }

    /// Registers (or replaces) the handler of `method`. The built-in methods (`smc/msg`,
    /// `smc/ping`, `get/crt`, `post/crt`, `reply`, `error`) cannot be replaced.
    pub fn register(&self, method: &str, handler: impl Handler) {
        let mut h = self
            .core
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        h.insert(method.to_string(), Arc::new(handler));
    }

    /// Serves inbound connections on `listener` until `shutdown` resolves, then stops accepting,
    /// tells every connection to finish, and waits for them (up to the shutdown grace period).
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let sem = Arc::new(Semaphore::new(self.core.opts.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.core.server_cfg.clone());
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = sem.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (tcp, remote) = tokio::select! {
                _ = &mut shutdown => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let core = self.core.clone();
            let acceptor = acceptor.clone();
            let stop = stop_rx.clone();
            tasks.spawn(async move {
                serve_conn(core, acceptor, tcp, remote, stop).await;
                drop(permit);
            });
        }
        let _ = stop_tx.send(true);
        let grace = self.core.opts.shutdown_grace;
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
    }

    /// Takes the next `smc/msg` from `party` with `message_id`, waiting until `deadline`.
    pub async fn recv_message(
        &self,
        party: &PartyId,
        message_id: &str,
        deadline: Instant,
    ) -> Result<Value, RecvFailure> {
        loop {
            let notified = self.core.inbox_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = self.core.take_inbox(party, message_id) {
                return Ok(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let p = self
                    .core
                    .presence
                    .lock()
                    .map(|p| p.get(party).copied().unwrap_or_default())
                    .unwrap_or_default();
                return Err(if p.seen && p.inbound == 0 {
                    RecvFailure::Disconnected
                } else {
                    RecvFailure::Timeout
                });
            }
        }
    }

    /// Seals a message (signs it). Do this off the IO path when throughput matters.
    pub fn seal(
        &self,
        method: &str,
        message_id: &str,
        to: Option<PartyId>,
        payload: Value,
    ) -> Result<Sealed, TransportError> {
        let meta = self.core.meta(method, message_id, to);
        let nonce = meta.nonce;
        Ok(Sealed {
            nonce,
            bytes: self.core.seal(meta, payload)?,
        })
    }

    /// Sends a one-way signed message to `party` over the shared outgoing connection, dialling or
    /// re-dialling (with backoff) until `deadline`.
    pub async fn send_sealed(
        &self,
        party: &PartyId,
        sealed: &Sealed,
        deadline: Instant,
    ) -> Result<(), TransportError> {
        loop {
            let link = self.link(party, deadline).await?;
            match link.write(&sealed.bytes).await {
                Ok(()) => return Ok(()),
                Err(e @ TransportError::Frame(_)) => return Err(e),
                Err(e) => {
                    tracing::debug!("write to {party:?} failed ({e}); re-dialling");
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Sends a one-way message (`meta.to` = `party`), signed alone or in a batch with the other
    /// messages queued for `party` at that moment.
    pub async fn send(
        &self,
        party: &PartyId,
        method: &str,
        message_id: &str,
        payload: Value,
        deadline: Instant,
    ) -> Result<(), TransportError> {
        let item = Unsigned::new(self.core.meta(method, message_id, Some(*party)), payload)?;
        loop {
            let link = self.link(party, deadline).await?;
            match link.send_queued(&self.core, item.clone()).await {
                Ok(()) => return Ok(()),
                Err(e @ (TransportError::Frame(_) | TransportError::Envelope(_))) => return Err(e),
                Err(e) => {
                    tracing::debug!("write to {party:?} failed ({e}); re-dialling");
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Messages sent and signatures made by [`Node::send`] and [`Node::request`] so far: their
    /// ratio is the mean batch size of group signing.
    pub fn send_stats(&self) -> SendStats {
        SendStats {
            messages: self.core.sent.messages.load(Ordering::Relaxed),
            signatures: self.core.sent.signatures.load(Ordering::Relaxed),
        }
    }

    /// Sends a request over the shared outgoing connection and waits for the reply until
    /// `deadline`. An error reply is [`TransportError::Remote`].
    pub async fn request(
        &self,
        party: &PartyId,
        method: &str,
        message_id: &str,
        payload: Value,
        deadline: Instant,
    ) -> Result<Inner, TransportError> {
        let item = Unsigned::new(self.core.meta(method, message_id, Some(*party)), payload)?;
        let nonce = item.nonce();
        loop {
            let link = self.link(party, deadline).await?;
            let (tx, rx) = oneshot::channel();
            if let Ok(mut p) = link.pending.lock() {
                p.insert(nonce, tx);
            }
            if let Err(e) = link.send_queued(&self.core, item.clone()).await {
                if let Ok(mut p) = link.pending.lock() {
                    p.remove(&nonce);
                }
                if Instant::now() >= deadline
                    || matches!(e, TransportError::Frame(_) | TransportError::Envelope(_))
                {
                    return Err(e);
                }
                continue;
            }
            return match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(TransportError::Closed),
                Err(_) => {
                    if let Ok(mut p) = link.pending.lock() {
                        p.remove(&nonce);
                    }
                    Err(TransportError::Timeout("waiting for the reply"))
                }
            };
        }
    }

    /// Opens a new, dedicated connection to `party` (not shared, no keepalive) for a long
    /// exchange such as a blob transfer. The caller owns it: [`Conn::request`], [`Conn::send`],
    /// [`Conn::write_chunk`], [`Conn::recv`].
    pub async fn connect(&self, party: &PartyId) -> Result<Conn, TransportError> {
        let (stream, peer) = dial(&self.core, party).await?;
        Ok(Conn::new(
            tokio_rustls::TlsStream::Client(stream),
            peer,
            self.core.clone(),
            Some(self.core.opts.idle_timeout),
        ))
    }

    /// Closes every outgoing connection gracefully (TLS close_notify), then forgets them.
    pub async fn shutdown_links(&self) {
        let slots: Vec<LinkSlot> = {
            let l = self.core.links.lock().unwrap_or_else(|p| p.into_inner());
            l.values().cloned().collect()
        };
        for slot in slots {
            if let Some(link) = slot.lock().await.take() {
                link.writer.lock().await.shutdown().await;
            }
        }
        self.close_links();
    }

    /// Whether this node has an open outgoing connection to `party`, as far as it has seen: a
    /// connection the peer has just dropped counts as open until the link's reader notices. A
    /// one-way message written in that instant is lost (the receiver's `recv` then times out,
    /// naming the sender); a send made once this is `false` re-dials and waits for the peer.
    /// While a connection to `party` is being dialled, this is `false`.
    pub fn is_connected(&self, party: &PartyId) -> bool {
        let slot = {
            let l = self.core.links.lock().unwrap_or_else(|p| p.into_inner());
            l.get(party).cloned()
        };
        slot.and_then(|s| {
            s.try_lock()
                .ok()
                .map(|g| g.as_ref().is_some_and(|l| !l.is_closed()))
        })
        .unwrap_or(false)
    }

    /// Closes every outgoing connection (abruptly).
    pub fn close_links(&self) {
        let mut l = self.core.links.lock().unwrap_or_else(|p| p.into_inner());
        l.clear();
    }

    /// In TLS 1.3 the client finishes its handshake before the server has judged the client
    /// certificate, so a fresh link is confirmed with a signed ping before it is used: a peer
    /// that refuses us is reported here, not discovered later as lost messages.
    async fn probe(
        &self,
        link: &Arc<Link>,
        party: &PartyId,
        deadline: Instant,
    ) -> Result<(), TransportError> {
        let sealed = self.seal(METHOD_PING, "connect", Some(*party), Value::Null)?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = link.pending.lock() {
            p.insert(sealed.nonce, tx);
        }
        link.write(&sealed.bytes).await?;
        let until = deadline.min(Instant::now() + self.core.opts.connect_timeout);
        match tokio::time::timeout_at(until, rx).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(TransportError::Handshake(format!(
                "peer did not accept the connection: {e}"
            ))),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::Timeout("connection confirmation")),
        }
    }

    async fn link(&self, party: &PartyId, deadline: Instant) -> Result<Arc<Link>, TransportError> {
        let slot = {
            let mut l = self.core.links.lock().unwrap_or_else(|p| p.into_inner());
            l.entry(*party).or_default().clone()
        };
        let mut g = match tokio::time::timeout_at(deadline, slot.lock()).await {
            Ok(g) => g,
            Err(_) => return Err(TransportError::Timeout("connecting")),
        };
        if let Some(l) = g.as_ref()
            && !l.is_closed()
        {
            return Ok(l.clone());
        }
        *g = None;
        let mut delay = Duration::from_millis(50);
        loop {
            let err = match tokio::time::timeout_at(deadline, dial(&self.core, party)).await {
                Ok(Ok((stream, peer))) => {
                    let link = start_link(&self.core, stream, peer);
                    match self.probe(&link, party, deadline).await {
                        Ok(()) => {
                            *g = Some(link.clone());
                            return Ok(link);
                        }
                        Err(e) => e,
                    }
                }
                Ok(Err(e)) => e,
                Err(_) => return Err(TransportError::Timeout("connecting")),
            };
            if matches!(err, TransportError::UnknownParty(_)) {
                return Err(err);
            }
            tracing::debug!("dial {party:?} failed: {err}; retrying in {delay:?}");
            if Instant::now() + delay >= deadline {
                return Err(err);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.core.opts.max_backoff);
        }
    }
}

/// A sealed (signed) envelope ready to send.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// Its nonce (replies refer to it).
    pub nonce: [u8; 16],
    /// The envelope bytes.
    pub bytes: Vec<u8>,
}

async fn dial(
    core: &Arc<Core>,
    party: &PartyId,
) -> Result<(tokio_rustls::client::TlsStream<Socket>, PeerInfo), TransportError> {
    let roster = core.trust.roster();
    let entry = roster
        .by_party_id(party)
        .ok_or_else(|| TransportError::UnknownParty(party.short()))?;
    let cfg = {
        let mut c = core.client_cfgs.lock().unwrap_or_else(|p| p.into_inner());
        match c.get(party) {
            Some(cfg) => cfg.clone(),
            None => {
                let cfg = client_config(&core.key, &core.cert_der, core.trust.clone(), *party)
                    .map_err(|e| TransportError::Config(e.to_string()))?;
                c.insert(*party, cfg.clone());
                cfg
            }
        }
    };
    let name = peer_server_name().map_err(|e| TransportError::Config(e.to_string()))?;
    let connect = async {
        let tcp = TcpStream::connect(entry.address.as_str()).await?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(cfg)
            .connect(name, socket(tcp))
            .await
            .map_err(|e| match peer_error_from_io(&e) {
                Some(pe) => TransportError::Peer(pe),
                None => TransportError::Handshake(e.to_string()),
            })
    };
    let stream = tokio::time::timeout(core.opts.connect_timeout, connect)
        .await
        .map_err(|_| TransportError::Timeout("connecting"))??;
    let (_, conn) = stream.get_ref();
    if conn.alpn_protocol() != Some(super::tls::ALPN) {
        return Err(PeerError::NoAlpn.into());
    }
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(PeerError::NoCertificate)?;
    let peer = core.trust.check_peer(cert.as_ref(), Some(party))?;
    Ok((stream, peer))
}

fn start_link(
    core: &Arc<Core>,
    stream: tokio_rustls::client::TlsStream<Socket>,
    peer: PeerInfo,
) -> Arc<Link> {
    let (r, w) = tokio::io::split(tokio_rustls::TlsStream::Client(stream));
    let (qtx, qrx) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
    let link = Arc::new(Link {
        writer: tokio::sync::Mutex::new(FrameWriter::new(w, core.opts.max_frame)),
        queue: qtx,
        inline: AtomicBool::new(false),
        signer_busy: AtomicBool::new(false),
        pending: Arc::default(),
        closed: Arc::default(),
        last_write: Mutex::new(Instant::now()),
        tasks: Mutex::default(),
    });
    let reader = tokio::spawn(link_reader(
        Arc::downgrade(core),
        FrameReader::new(r, core.opts.max_frame),
        peer.clone(),
        link.pending.clone(),
        link.closed.clone(),
    ));
    let keepalive = tokio::spawn(link_keepalive(
        Arc::downgrade(core),
        Arc::downgrade(&link),
        peer,
    ));
    let signer = tokio::spawn(link_signer(
        Arc::downgrade(core),
        Arc::downgrade(&link),
        qrx,
    ));
    if let Ok(mut t) = link.tasks.lock() {
        t.push(reader.abort_handle());
        t.push(keepalive.abort_handle());
        t.push(signer.abort_handle());
    }
    link
}

/// How many of the oldest `queued` messages go in the next batch: at least one, then as many as
/// fit [`MAX_BATCH`] and `cap` bytes of inner JSON.
fn batch_len(queued: &[Queued], cap: usize) -> usize {
    let (mut n, mut bytes) = (0, 0);
    while n < queued.len() && n < MAX_BATCH && (n == 0 || bytes + queued[n].0.len() <= cap) {
        bytes += queued[n].0.len();
        n += 1;
    }
    n
}

/// The link's signer: takes every message queued since its last write, signs them together
/// (one RSA-PSS signature; a lone message as a plain envelope), writes the frame and tells each
/// sender the outcome. While it signs, new messages queue up for the next batch.
async fn link_signer(
    core: Weak<Core>,
    link: Weak<Link>,
    mut rx: tokio::sync::mpsc::Receiver<Queued>,
) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.is_empty()
            && let Some(l) = link.upgrade()
        {
            // Truly idle: the next sender may sign its message itself.
            l.signer_busy.store(false, Ordering::Release);
        }
        if rx.recv_many(&mut queued, 4 * MAX_BATCH).await == 0 {
            return;
        }
        let (Some(core), Some(link)) = (core.upgrade(), link.upgrade()) else {
            for (_, tx) in queued.drain(..) {
                let _ = tx.send(Err(TransportError::Shutdown));
            }
            return;
        };
        link.signer_busy.store(true, Ordering::Release);
        while !queued.is_empty() {
            let n = batch_len(&queued, batch_cap(core.opts.max_frame));
            let (items, txs): (Vec<Unsigned>, Vec<_>) = queued.drain(..n).unzip();
            let r = match core.seal_queued(&items) {
                Ok((kind, body)) => {
                    let mut w = link.writer.lock().await;
                    link.write_locked(&mut w, kind, &body).await
                }
                Err(e) => Err(e),
            };
            for tx in txs {
                let _ = tx.send(r.clone());
            }
        }
        drop(link);
        // Still busy: the senders just told of the write queue their next message here.
        tokio::task::yield_now().await;
    }
}

/// Reads replies on an outgoing connection and hands them to the waiting requests.
async fn link_reader(
    core: Weak<Core>,
    mut reader: FrameReader<tokio::io::ReadHalf<TlsConn>>,
    peer: PeerInfo,
    pending: Arc<Pending>,
    closed: Arc<AtomicBool>,
) {
    let end = loop {
        let frame = match reader.read_frame(None).await {
            Ok(Some(f)) => f,
            Ok(None) => break TransportError::Closed,
            Err(e) => break e,
        };
        let Some(core) = core.upgrade() else {
            break TransportError::Shutdown;
        };
        if frame.kind != FrameKind::Envelope {
            core.report(
                None,
                Some(&peer),
                TransportError::UnexpectedFrame("non-envelope"),
            );
            break TransportError::UnexpectedFrame("non-envelope");
        }
        let inner = match core.open(&peer, &frame.body) {
            Ok(i) => i,
            Err(e) => {
                core.report(None, Some(&peer), e);
                continue;
            }
        };
        let Some(re) = reply_to(&inner) else {
            core.report(
                None,
                Some(&peer),
                TransportError::BadRequest(
                    "requests are not accepted on an outgoing connection".into(),
                ),
            );
            continue;
        };
        let waiter = pending.lock().ok().and_then(|mut p| p.remove(&re));
        let is_error = inner.meta.method == METHOD_ERROR;
        match waiter {
            Some(tx) => {
                let r = if is_error {
                    Err(TransportError::Remote(super::conn::error_text(&inner)))
                } else {
                    Ok(inner)
                };
                let _ = tx.send(r);
            }
            // An error answering a one-way message: the peer refused something we sent.
            None if is_error => core.report(
                None,
                Some(&peer),
                TransportError::Remote(super::conn::error_text(&inner)),
            ),
            None => {}
        }
    };
    closed.store(true, Ordering::SeqCst);
    tracing::debug!("outgoing connection to {} ended: {end}", peer.name);
    let waiters: Vec<_> = pending
        .lock()
        .map(|mut p| p.drain().map(|(_, tx)| tx).collect())
        .unwrap_or_default();
    for tx in waiters {
        let _ = tx.send(Err(end.clone()));
    }
}

/// Sends a signed ping when an outgoing connection has been idle for a third of the idle timeout.
async fn link_keepalive(core: Weak<Core>, link: Weak<Link>, peer: PeerInfo) {
    let every = {
        let Some(c) = core.upgrade() else { return };
        (c.opts.idle_timeout / 3).max(Duration::from_millis(100))
    };
    loop {
        tokio::time::sleep(every).await;
        let (Some(core), Some(link)) = (core.upgrade(), link.upgrade()) else {
            return;
        };
        if link.is_closed() {
            return;
        }
        let idle = link
            .last_write
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if idle < every {
            continue;
        }
        let meta = core.meta(METHOD_PING, "keepalive", Some(peer.party_id));
        if let Ok(bytes) = core.seal(meta, Value::Null)
            && link.write(&bytes).await.is_err()
        {
            return;
        }
    }
}

/// One inbound connection: handshake, authenticate, then read and route frames until the peer
/// closes, misbehaves at the framing level, idles out, or the node shuts down.
async fn serve_conn(
    core: Arc<Core>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(core.opts.handshake_timeout, acceptor.accept(socket(tcp)))
        .await
    {
        Err(_) => {
            core.report(Some(remote), None, TransportError::Timeout("tls handshake"));
            return;
        }
        Ok(Err(e)) => {
            let err = match peer_error_from_io(&e) {
                Some(pe) => TransportError::Peer(pe),
                None => TransportError::Handshake(e.to_string()),
            };
            core.report(Some(remote), None, err);
            return;
        }
        Ok(Ok(s)) => s,
    };
    let (_, sc) = tls.get_ref();
    if sc.alpn_protocol() != Some(super::tls::ALPN) {
        core.report(Some(remote), None, PeerError::NoAlpn.into());
        return;
    }
    let peer = match sc
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(PeerError::NoCertificate)
        .and_then(|c| core.trust.check_peer(c.as_ref(), None))
    {
        Ok(p) => p,
        Err(e) => {
            core.report(Some(remote), None, e.into());
            return;
        }
    };
    tracing::debug!("peer {} connected from {remote}", peer.name);
    core.set_presence(peer.party_id, 1);
    let mut conn = Conn::new(
        tokio_rustls::TlsStream::Server(tls),
        peer.clone(),
        core.clone(),
        Some(core.opts.idle_timeout),
    );
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => break,
            f = conn.recv_frame() => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                core.report(Some(remote), Some(&peer), e);
                break;
            }
        };
        match frame.kind {
            FrameKind::Envelope | FrameKind::Batch => {}
            FrameKind::Plain => {
                core.report(
                    Some(remote),
                    Some(&peer),
                    TransportError::UnexpectedFrame("unsigned"),
                );
                break;
            }
            FrameKind::BlobChunk => {
                core.report(
                    Some(remote),
                    Some(&peer),
                    TransportError::UnexpectedFrame("blob chunk"),
                );
                continue;
            }
        }
        if let Err(e) = core.trust.recheck(&peer) {
            core.report(Some(remote), Some(&peer), e.into());
            break;
        }
        let keep_going = if frame.kind == FrameKind::Batch {
            serve_batch(&core, &mut conn, remote, &frame.body).await
        } else {
            let size = frame.body.len();
            match core.open(&peer, &frame.body) {
                Ok(inner) => deliver(&core, &mut conn, remote, inner, size).await,
                Err(e) => {
                    core.report(Some(remote), Some(&peer), e.clone());
                    // Answer if we can tell which message it was (so a waiting request fails fast).
                    match caucus::msg::envelope::parse(&frame.body) {
                        Ok((_, inner, _)) => answer_refused(&mut conn, &inner, &e).await,
                        Err(_) => true,
                    }
                }
            }
        };
        if !keep_going {
            break;
        }
    }
    conn.close().await;
    core.set_presence(peer.party_id, -1);
    tracing::debug!("peer {} disconnected", peer.name);
}

/// Routes one verified message; `false` when the connection must end.
async fn deliver(
    core: &Arc<Core>,
    conn: &mut Conn,
    remote: SocketAddr,
    inner: Inner,
    size: usize,
) -> bool {
    match route(core, conn, inner, size).await {
        Ok(()) => true,
        Err(e) => {
            let fatal = matches!(
                e,
                TransportError::Io(_)
                    | TransportError::Closed
                    | TransportError::Truncated
                    | TransportError::Frame(_)
                    | TransportError::Timeout(_)
            );
            core.report(Some(remote), Some(&conn.peer), e);
            !fatal
        }
    }
}

/// Tells the sender of a refused request why (one-way `smc/msg` gets no answer); `false` when
/// the connection failed.
async fn answer_refused(conn: &mut Conn, inner: &Inner, e: &TransportError) -> bool {
    inner.meta.method == METHOD_SMC_MSG || send_error(conn, inner, e).await.is_ok()
}

/// A kind-4 batch: verified as a whole, then each inner message routed or refused on its own,
/// in order. `false` when the connection must end.
async fn serve_batch(core: &Arc<Core>, conn: &mut Conn, remote: SocketAddr, body: &[u8]) -> bool {
    let items = match core.open_batch(&conn.peer, body) {
        Ok(items) => items,
        Err(e) => {
            core.report(Some(remote), Some(&conn.peer), e.clone());
            if let Ok((_, inners, _)) = caucus::msg::batch::parse(body) {
                for inner in &inners {
                    if !answer_refused(conn, inner, &e).await {
                        return false;
                    }
                }
            }
            return true;
        }
    };
    for item in items {
        let ok = match item.result {
            Ok(inner) => deliver(core, conn, remote, inner, item.len).await,
            Err(Refused { error, inner }) => {
                let e = TransportError::from(error);
                core.report(Some(remote), Some(&conn.peer), e.clone());
                answer_refused(conn, &inner, &e).await
            }
        };
        if !ok {
            return false;
        }
    }
    true
}

async fn send_error(conn: &mut Conn, to: &Inner, e: &TransportError) -> Result<(), TransportError> {
    let extra = reply_extra(&to.meta.nonce);
    let payload = serde_json::json!({ "error": e.to_string() });
    conn.send_with(
        METHOD_ERROR,
        &to.meta.message_id,
        Value::Null,
        extra,
        payload,
    )
    .await
    .map(|_| ())
}

/// Routes one verified request. An `Err` is reported by the caller; non-transport errors are
/// also answered with an error reply here.
async fn route(
    core: &Arc<Core>,
    conn: &mut Conn,
    inner: Inner,
    size: usize,
) -> Result<(), TransportError> {
    let method = inner.meta.method.clone();
    let result = match method.as_str() {
        METHOD_SMC_MSG => {
            let r = core.push_inbox(
                &conn.peer,
                inner.meta.message_id.clone(),
                inner.payload.clone(),
                size,
            );
            if let Err(e) = &r {
                // Tell the sender (its reader reports it): it outran the bound.
                let _ = send_error(conn, &inner, e).await;
            }
            return r;
        }
        METHOD_PING => return conn.reply(&inner, inner.payload.clone()).await,
        METHOD_GET_CRT => {
            let payload = serde_json::json!({ "cert": b64u(&core.cert_der) });
            return conn.reply(&inner, payload).await;
        }
        METHOD_POST_CRT => post_crt(core, conn, &inner),
        METHOD_REPLY | METHOD_ERROR => Err(TransportError::BadRequest(
            "unsolicited reply on an inbound connection".into(),
        )),
        _ => {
            let handler = core
                .handlers
                .read()
                .ok()
                .and_then(|h| h.get(&method).cloned());
            match handler {
                Some(h) => match h.handle(conn, inner.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e) => Err(e),
                },
                None => Err(TransportError::UnknownMethod(
                    method.chars().take(64).collect(),
                )),
            }
        }
    };
    match result {
        Ok(payload) => conn.reply(&inner, payload).await,
        Err(e) => {
            if !matches!(
                e,
                TransportError::Io(_) | TransportError::Closed | TransportError::Truncated
            ) {
                send_error(conn, &inner, &e).await?;
            }
            Err(e)
        }
    }
}

/// SNOOP's `post/crt`: the peer presents a certificate; accept it if it is a valid roster
/// certificate of that same peer.
fn post_crt(core: &Arc<Core>, conn: &Conn, inner: &Inner) -> Result<Value, TransportError> {
    let cert = inner
        .payload
        .get("cert")
        .and_then(Value::as_str)
        .ok_or_else(|| TransportError::BadRequest("payload must be {\"cert\": ...}".into()))?;
    let der = b64u_decode(cert, 16 * 1024)
        .map_err(|_| TransportError::BadRequest("cert is not base64url der".into()))?;
    let info = core.trust.check_peer(&der, Some(&conn.peer.party_id))?;
    Ok(serde_json::json!({ "accepted": true, "party": info.name, "serial": info.serial_hex }))
}
