//! The SMC session API: like tno.mpc.communication's `Pool`, but parties are roster members
//! identified by their certificates, and every message is a signed envelope over mutual TLS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), caucus_node::session::SessionError> {
//! use caucus_node::session::{Session, SessionOptions};
//! let s = Session::open(std::path::Path::new("certs/alice"), SessionOptions::default()).await?;
//! s.broadcast("round1", &42u64).await?;
//! let all: std::collections::BTreeMap<String, u64> = s.recv_all("round1").await?;
//! # Ok(()) }
//! ```
//!
//! * Parties are addressed by roster name; [`Party::index`] is the 1-based roster position.
//! * [`Session::send`] / [`Session::recv`] are point to point, [`Session::broadcast`] /
//!   [`Session::recv_all`] go to / come from every other member. Values are serde types sent as
//!   the envelope payload of an `smc/msg` with `message_id` = the message id.
//! * Messages that arrive before they are awaited are buffered per (party, message id), FIFO,
//!   within per-party bounds ([`NodeOptions::max_buffered_messages`] / `_bytes`).
//! * Every call has a timeout (the session default, or the `_timeout` variants) and its errors
//!   name the party: [`SessionError::Timeout`], [`SessionError::Disconnected`],
//!   [`SessionError::Unreachable`], [`SessionError::Malformed`], [`SessionError::NotInRoster`].
//! * [`Session::request`] and [`Session::register`] expose the raw request/response transport so
//!   other protocols (blobs, keygen) can add methods; [`Session::node`] gives the [`Node`].

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use caucus::msg::Inner;
use caucus::pki::{Crl, PartyId, PrivateKey, Roster};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::ca_client::{CaClient, fetch_crl, fetch_roster};
use crate::config::NodeDir;
use crate::transport::node::RecvFailure;
use crate::transport::{
    Clock, Handler, METHOD_SMC_MSG, Node, NodeOptions, SystemClock, TransportError, Trust,
};

/// Session errors. Each one that concerns a party names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No such party on the roster.
    #[error("party {0:?} is not on the session roster")]
    NotInRoster(String),
    /// Nothing arrived from the party in time.
    #[error("timed out waiting for {msg_id:?} from party {party:?}")]
    Timeout {
        /// the party
        party: String,
        /// the awaited message id
        msg_id: String,
    },
    /// The party's connection dropped and nothing arrived in time.
    #[error("party {party:?} disconnected before sending {msg_id:?}")]
    Disconnected {
        /// the party
        party: String,
        /// the awaited message id
        msg_id: String,
    },
    /// The party could not be reached (or refused us) before the deadline.
    #[error("party {party:?} is unreachable: {source}")]
    Unreachable {
        /// the party
        party: String,
        /// the last transport error
        source: TransportError,
    },
    /// The party sent a value that does not deserialize as the expected type.
    #[error("party {party:?} sent a malformed {msg_id:?}: {reason}")]
    Malformed {
        /// the party
        party: String,
        /// the message id
        msg_id: String,
        /// why it does not parse
        reason: String,
    },
    /// A request to the party failed (error reply, closed connection, timeout).
    #[error("request to party {party:?} failed: {source}")]
    Request {
        /// the party
        party: String,
        /// what went wrong
        source: TransportError,
    },
    /// A value could not be serialised.
    #[error("cannot serialise the value: {0}")]
    Serialize(String),
    /// Setting up the session failed (files, CA, roster, listener).
    #[error("session setup: {0}")]
    Setup(String),
    /// A transport error not tied to one party.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A roster member, as seen by the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// Roster name.
    pub name: String,
    /// 1-based roster index.
    pub index: u32,
    /// Certificate identity.
    pub party_id: PartyId,
    /// Advertised address.
    pub address: String,
}

/// The future a [`TrustSource`] returns: a verified roster and revocation list, or why not.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<(Roster, Crl), String>> + Send + 'a>>;

/// Where fresh rosters and revocation lists come from (the CA). Results must be verified.
pub trait TrustSource: Send + Sync + 'static {
    /// Fetches and verifies the roster of `session` and the revocation list at `now` (unix s).
    fn fetch<'a>(&'a self, session: &'a str, now: i64) -> FetchFuture<'a>;
}

/// Options of a session.
#[derive(Clone)]
pub struct SessionOptions {
    /// Where to listen (default: the advertised address from the roster).
    pub listen: Option<SocketAddr>,
    /// Default timeout of each call.
    pub timeout: Duration,
    /// How long [`Session::open`] waits for every party to enrol.
    pub roster_wait: Duration,
    /// How often the roster and revocation list are refreshed from the CA.
    pub refresh_every: Duration,
    /// Transport limits.
    pub node: NodeOptions,
    /// The clock (tests inject one).
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOptions")
            .field("listen", &self.listen)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            listen: None,
            timeout: Duration::from_secs(30),
            roster_wait: Duration::from_secs(60),
            refresh_every: Duration::from_secs(60),
            node: NodeOptions::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Everything a session needs, for building one without a node directory (tests, demos).
pub struct SessionParts {
    /// Our private key.
    pub key: PrivateKey,
    /// Our session certificate, DER.
    pub cert_der: Vec<u8>,
    /// The pinned root, DER.
    pub root_der: Vec<u8>,
    /// The verified roster.
    pub roster: Roster,
    /// The verified revocation list, if any.
    pub crl: Option<Crl>,
    /// The bound listener.
    pub listener: TcpListener,
    /// Where to refresh roster and CRL from (none: never refreshed).
    pub source: Option<Arc<dyn TrustSource>>,
}

/// An open SMC session: a served listener, connections to the peers, and the message API.
/// Dropping it stops serving.
pub struct Session {
    node: Node,
    timeout: Duration,
    local_addr: SocketAddr,
    source: Option<Arc<dyn TrustSource>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("me", &self.node.me().name)
            .field("addr", &self.local_addr)
            .finish()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        self.node.close_links();
    }
}

impl Session {
    /// Builds a session from its parts and starts serving `parts.listener`.
    pub fn from_parts(parts: SessionParts, opts: SessionOptions) -> Result<Self, SessionError> {
        let trust = Arc::new(
            Trust::new(parts.root_der, parts.roster, parts.crl, opts.clock.clone())
                .map_err(|e| SessionError::Setup(format!("root: {e}")))?,
        );
        let node = Node::new(parts.key, parts.cert_der, trust, opts.node.clone())?;
        let local_addr = parts
            .listener
            .local_addr()
            .map_err(|e| SessionError::Setup(e.to_string()))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = {
            let node = node.clone();
            let listener = parts.listener;
            tokio::spawn(async move {
                node.serve(listener, async {
                    let _ = stop_rx.await;
                })
                .await
            })
        };
        let refresher = parts.source.clone().map(|src| {
            let trust = node.trust().clone();
            let every = opts.refresh_every;
            tokio::spawn(refresh_loop(trust, src, every))
        });
        Ok(Self {
            node,
            timeout: opts.timeout,
            local_addr,
            source: parts.source,
            stop: Some(stop_tx),
            server: Some(server),
            refresher,
        })
    }

    /// Opens the session of the node directory `dir` (after `caucus init` and `caucus enroll`):
    /// loads key, certificate and pinned root, fetches and verifies the roster and revocation
    /// list from the CA (waiting up to `opts.roster_wait` for every party to enrol; zero: do not
    /// wait), binds the listener (`opts.listen`, or the advertised address) and starts serving.
    /// The roster and CRL are then refreshed every `opts.refresh_every` and on demand.
    pub async fn open(dir: &Path, opts: SessionOptions) -> Result<Self, SessionError> {
        let setup = |e: &dyn std::fmt::Display| SessionError::Setup(e.to_string());
        let nd = NodeDir::new(dir);
        let (cfg, enr) = nd.load_enrolled().map_err(|e| setup(&e))?;
        let key = nd.load_key().map_err(|e| setup(&e))?;
        let cert_der = nd.load_cert().map_err(|e| setup(&e))?;
        let root_der = nd.load_root().map_err(|e| setup(&e))?;
        let client = CaClient::with_root(&enr.ca_addr, &root_der).map_err(|e| setup(&e))?;
        let source: Arc<dyn TrustSource> = Arc::new(CaSource {
            client,
            root_der: root_der.clone(),
        });
        let deadline = Instant::now() + opts.roster_wait;
        let (roster, crl) = loop {
            let (r, c) = source
                .fetch(&enr.session, opts.clock.now_secs())
                .await
                .map_err(SessionError::Setup)?;
            if r.is_complete() || Instant::now() >= deadline {
                if !r.is_complete() && !opts.roster_wait.is_zero() {
                    let missing: Vec<&String> = r
                        .parties
                        .iter()
                        .filter(|p| r.by_name(p).is_none())
                        .collect();
                    return Err(SessionError::Setup(format!(
                        "roster incomplete after {:?}: not enrolled: {missing:?}",
                        opts.roster_wait
                    )));
                }
                break (r, c);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let listen = match opts.listen {
            Some(a) => a,
            None => {
                let adv = roster
                    .by_name(&cfg.name)
                    .map(|m| m.address.clone())
                    .unwrap_or(enr.advertise.clone());
                tokio::net::lookup_host(adv.as_str())
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        SessionError::Setup(format!("cannot resolve advertised address {adv:?}"))
                    })?
            }
        };
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            SessionError::Setup(format!("cannot listen on {listen}: {e} (use --listen)"))
        })?;
        Self::from_parts(
            SessionParts {
                key,
                cert_der,
                root_der,
                roster,
                crl: Some(crl),
                listener,
                source: Some(source),
            },
            opts,
        )
    }

    /// Closes our outgoing connections (TLS close_notify), stops serving and waits for the
    /// server to finish its connections.
    pub async fn close(mut self) {
        self.node.shutdown_links().await;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }

    /// The transport node (for handlers and raw requests).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The address we listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The session id.
    pub fn session_id(&self) -> String {
        self.node.trust().session().to_string()
    }

    /// The default per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The corruption threshold t from the roster.
    pub fn threshold(&self) -> u32 {
        self.node.trust().roster().threshold
    }

    /// Ourselves.
    pub fn me(&self) -> Party {
        let me = self.node.me();
        let address = self
            .node
            .trust()
            .member_by_name(&me.name)
            .map(|e| e.address)
            .unwrap_or_default();
        Party {
            name: me.name.clone(),
            index: me.index,
            party_id: me.party_id,
            address,
        }
    }

    /// Every roster member (ourselves included), by index.
    pub fn parties(&self) -> Vec<Party> {
        let mut v: Vec<Party> = self
            .node
            .trust()
            .roster()
            .members
            .iter()
            .map(|m| Party {
                name: m.name.clone(),
                index: m.index,
                party_id: m.party_id,
                address: m.address.clone(),
            })
            .collect();
        v.sort_by_key(|p| p.index);
        v
    }

    /// Every roster member except ourselves.
    pub fn others(&self) -> Vec<Party> {
        let me = self.node.me().party_id;
        self.parties()
            .into_iter()
            .filter(|p| p.party_id != me)
            .collect()
    }

    /// The member named `name`.
    pub fn party(&self, name: &str) -> Result<Party, SessionError> {
        self.parties()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| SessionError::NotInRoster(name.chars().take(64).collect()))
    }

    /// Fetches the roster and revocation list again now (no-op without a trust source).
    pub async fn refresh(&self) -> Result<(), SessionError> {
        let Some(src) = &self.source else {
            return Ok(());
        };
        let trust = self.node.trust();
        let (roster, crl) = src
            .fetch(trust.session(), trust.clock().now_secs())
            .await
            .map_err(SessionError::Setup)?;
        trust.set_roster(roster);
        trust.set_crl(crl);
        Ok(())
    }

    /// Registers a handler for a custom method (see [`Handler`]).
    pub fn register(&self, method: &str, handler: impl Handler) {
        self.node.register(method, handler);
    }

    fn deadline(&self, timeout: Duration) -> Instant {
        Instant::now() + timeout
    }

    /// Sends `value` to `party` as message `msg_id`.
    pub async fn send<T: Serialize + ?Sized>(
        &self,
        party: &str,
        msg_id: &str,
        value: &T,
    ) -> Result<(), SessionError> {
        self.send_timeout(party, msg_id, value, self.timeout).await
    }

    /// [`Session::send`] with an explicit timeout (waiting for the party to come up included).
    pub async fn send_timeout<T: Serialize + ?Sized>(
        &self,
        party: &str,
        msg_id: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SessionError> {
        let p = self.party(party)?;
        let v = serde_json::to_value(value).map_err(|e| SessionError::Serialize(e.to_string()))?;
        self.node
            .send(
                &p.party_id,
                METHOD_SMC_MSG,
                msg_id,
                v,
                self.deadline(timeout),
            )
            .await
            .map_err(|source| SessionError::Unreachable {
                party: p.name,
                source,
            })
    }

    /// Sends `value` to every other member as message `msg_id` (one signature, `meta.to` null).
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        msg_id: &str,
        value: &T,
    ) -> Result<(), SessionError> {
        self.broadcast_timeout(msg_id, value, self.timeout).await
    }

    /// [`Session::broadcast`] with an explicit timeout.
    pub async fn broadcast_timeout<T: Serialize + ?Sized>(
        &self,
        msg_id: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SessionError> {
        let v = serde_json::to_value(value).map_err(|e| SessionError::Serialize(e.to_string()))?;
        let sealed = Arc::new(self.node.seal(METHOD_SMC_MSG, msg_id, None, v)?);
        let deadline = self.deadline(timeout);
        let mut set = tokio::task::JoinSet::new();
        for p in self.others() {
            let node = self.node.clone();
            let sealed = sealed.clone();
            set.spawn(async move {
                let r = node.send_sealed(&p.party_id, &sealed, deadline).await;
                (p, r)
            });
        }
        let mut first_err = None;
        while let Some(j) = set.join_next().await {
            if let Ok((p, Err(source))) = j
                && first_err.is_none()
            {
                first_err = Some(SessionError::Unreachable {
                    party: p.name,
                    source,
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Receives message `msg_id` from `party` (waiting up to the session timeout).
    pub async fn recv<T: DeserializeOwned>(
        &self,
        party: &str,
        msg_id: &str,
    ) -> Result<T, SessionError> {
        self.recv_timeout(party, msg_id, self.timeout).await
    }

    /// [`Session::recv`] with an explicit timeout.
    pub async fn recv_timeout<T: DeserializeOwned>(
        &self,
        party: &str,
        msg_id: &str,
        timeout: Duration,
    ) -> Result<T, SessionError> {
        let p = self.party(party)?;
        recv_from(&self.node, &p, msg_id, self.deadline(timeout)).await
    }

    /// Receives message `msg_id` from every other member, keyed by name.
    pub async fn recv_all<T: DeserializeOwned + Send + 'static>(
        &self,
        msg_id: &str,
    ) -> Result<BTreeMap<String, T>, SessionError> {
        self.recv_all_timeout(msg_id, self.timeout).await
    }

    /// [`Session::recv_all`] with an explicit timeout. On failure the error names the first
    /// party (by roster index) that failed.
    pub async fn recv_all_timeout<T: DeserializeOwned + Send + 'static>(
        &self,
        msg_id: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<String, T>, SessionError> {
        let deadline = self.deadline(timeout);
        let mut set = tokio::task::JoinSet::new();
        for p in self.others() {
            let node = self.node.clone();
            let msg_id = msg_id.to_string();
            set.spawn(async move {
                let r = recv_from::<T>(&node, &p, &msg_id, deadline).await;
                (p, r)
            });
        }
        let mut out = BTreeMap::new();
        let mut errs = Vec::new();
        while let Some(j) = set.join_next().await {
            match j {
                Ok((p, Ok(v))) => {
                    out.insert(p.name, v);
                }
                Ok((p, Err(e))) => errs.push((p.index, e)),
                Err(e) => errs.push((0, SessionError::Setup(format!("receiver task: {e}")))),
            }
        }
        errs.sort_by_key(|(i, _)| *i);
        match errs.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(out),
        }
    }

    /// Sends a request `method` with `payload` to `party` and returns its (verified) reply.
    pub async fn request(
        &self,
        party: &str,
        method: &str,
        payload: Value,
    ) -> Result<Inner, SessionError> {
        self.request_timeout(party, method, payload, self.timeout)
            .await
    }

    /// [`Session::request`] with an explicit timeout.
    pub async fn request_timeout(
        &self,
        party: &str,
        method: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Inner, SessionError> {
        let p = self.party(party)?;
        self.node
            .request(&p.party_id, method, method, payload, self.deadline(timeout))
            .await
            .map_err(|source| SessionError::Request {
                party: p.name,
                source,
            })
    }
}

/// The CA as a [`TrustSource`].
struct CaSource {
    client: CaClient,
    root_der: Vec<u8>,
}

impl TrustSource for CaSource {
    fn fetch<'a>(&'a self, session: &'a str, now: i64) -> FetchFuture<'a> {
        Box::pin(async move {
            let roster = fetch_roster(&self.client, session, &self.root_der, now)
                .await
                .map_err(|e| format!("roster: {e}"))?;
            let crl = fetch_crl(&self.client, &self.root_der, now)
                .await
                .map_err(|e| format!("revocation list: {e}"))?;
            Ok((roster, crl))
        })
    }
}

async fn recv_from<T: DeserializeOwned>(
    node: &Node,
    p: &Party,
    msg_id: &str,
    deadline: Instant,
) -> Result<T, SessionError> {
    match node.recv_message(&p.party_id, msg_id, deadline).await {
        Ok(v) => serde_json::from_value(v).map_err(|e| SessionError::Malformed {
            party: p.name.clone(),
            msg_id: msg_id.to_string(),
            reason: e.to_string().chars().take(200).collect(),
        }),
        Err(RecvFailure::Timeout) => Err(SessionError::Timeout {
            party: p.name.clone(),
            msg_id: msg_id.to_string(),
        }),
        Err(RecvFailure::Disconnected) => Err(SessionError::Disconnected {
            party: p.name.clone(),
            msg_id: msg_id.to_string(),
        }),
    }
}

/// Refreshes roster and CRL every `every`, and soon after the trust asks for it (an unknown peer,
/// a stale CRL), at most once a second.
async fn refresh_loop(trust: Arc<Trust>, src: Arc<dyn TrustSource>, every: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = trust.refresh_requested() => {}
        }
        match src.fetch(trust.session(), trust.clock().now_secs()).await {
            Ok((roster, crl)) => {
                trust.set_roster(roster);
                trust.set_crl(crl);
            }
            Err(e) => tracing::warn!("refreshing roster and revocation list failed: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
