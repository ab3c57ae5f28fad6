//! The node transport: mutual TLS between roster members, frames, signed envelopes, routing.
//!
//! # Layout
//! - [`trust`]: the pinned root, roster and revocation list; [`Trust::check_peer`] decides who is a
//!   peer; the injectable [`Clock`].
//! - [`tls`]: rustls configurations (TLS 1.3, ALPN `caucus/1`, aws-lc-rs) and the two custom
//!   certificate verifiers.
//! - [`conn`]: a framed, authenticated connection ([`Conn`]): read/write frames with a size bound
//!   checked before allocation and idle timeouts; seal/open envelopes; request/reply helpers.
//! - [`node`]: the runtime ([`Node`]): the accept loop (`serve`), method routing and handlers, the
//!   inbox of `smc/msg` messages, outgoing connections with reconnection and backoff.
//!
//! # Wire conventions (on top of DESIGN.md)
//! - Every node ↔ node frame is a kind-1 signed envelope, except blob chunks (kind 3) which only
//!   travel inside a handler's exchange. Unsigned (kind 2) frames are refused.
//! - The dialler sends requests; the acceptor answers on the same connection. A reply has
//!   `meta.method = "reply"` (or `"error"` with payload `{"error": "..."}`), the request's
//!   `message_id`, and `meta.extra = {"re": "<request nonce, base64url>"}`.
//! - Methods served by every node: `smc/msg` (one way, into the inbox), `smc/ping` (replies with
//!   the same payload), `get/crt` (replies `{"cert": "<DER, base64url>"}`), `post/crt` (payload
//!   `{"cert": ...}`; replies `{"accepted": true}` if it is the sender's valid roster certificate).
//!   Others are added with [`Node::register`].

pub mod conn;
pub mod node;
pub mod tls;
pub mod trust;

use caucus::msg::EnvelopeError;
use caucus::msg::frame::FrameError;

pub use conn::{Conn, Incoming};
pub use node::{Handler, HandlerFuture, Node, NodeOptions, Refusal};
pub use trust::{Clock, ManualClock, PeerError, PeerInfo, SystemClock, Trust};

/// Method of a successful reply.
pub const METHOD_REPLY: &str = "reply";
/// Method of an error reply.
pub const METHOD_ERROR: &str = "error";
/// One-way SMC message, delivered to the session inbox.
pub const METHOD_SMC_MSG: &str = "smc/msg";
/// Liveness / latency probe; answered with the same payload.
pub const METHOD_PING: &str = "smc/ping";
/// SNOOP certificate exchange: ask for the node's certificate.
pub const METHOD_GET_CRT: &str = "get/crt";
/// SNOOP certificate exchange: present a certificate.
pub const METHOD_POST_CRT: &str = "post/crt";

/// Transport errors. Cloneable so they can be reported to several waiters.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer's certificate or identity was refused.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The TLS handshake failed for another reason.
    #[error("tls handshake failed: {0}")]
    Handshake(String),
    /// A framing violation (oversized frame, unknown kind): the connection is closed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame kind that is not allowed here (for example an unsigned frame between nodes).
    #[error("unexpected {0} frame")]
    UnexpectedFrame(&'static str),
    /// A signed envelope was refused (tampered, replayed, stale, wrong sender…).
    #[error("message refused: {0}")]
    Envelope(#[from] EnvelopeError),
    /// Something did not happen in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The connection was closed.
    #[error("connection closed")]
    Closed,
    /// The connection ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// An I/O error.
    #[error("i/o error: {0}")]
    Io(String),
    /// No handler for this method.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// The peer answered with an error reply.
    #[error("peer replied with an error: {0}")]
    Remote(String),
    /// A request was well-formed and signed but unacceptable (handler-level refusal).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The buffer of early messages from this peer is full.
    #[error("buffer of early messages from {peer:?} is full")]
    BufferFull {
        /// the peer's roster name
        peer: String,
    },
    /// The party is not on the roster.
    #[error("party {0:?} is not on the roster")]
    UnknownParty(String),
    /// Local configuration problem (our own key, certificate or roster entry).
    #[error("local configuration: {0}")]
    Config(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    Shutdown,
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::UnexpectedEof => Self::Truncated,
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
                Self::Closed
            }
            _ => Self::Io(e.to_string()),
        }
    }
}
