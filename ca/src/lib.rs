//! # caucus-ca — the caucus certificate authority
//!
//! Issues short-lived session certificates from CSRs after checking single-use enrolment tokens,
//! keeps a durable registry (redb), and serves enrolment, certificates, signed rosters and the signed
//! revocation list over TLS 1.3.
//!
//! # Layout
//! - [`dir`]: the CA directory (`ca.pem`, `ca.key` 0600, `registry.redb`), `init`.
//! - [`store`]: the redb registry.
//! - [`authority`]: sessions, tokens, the linear issuance pipeline with group commit, rosters, CRL.
//! - [`api`]: wire requests/responses and the thin handlers mapping errors to status codes.
//! - [`tls`]: the front-end's TLS configuration (an ephemeral key certified by the root).
//! - [`server`]: `run(listener, authority, tls, options, shutdown)`, bounded and timed out.
//! - [`wire`]: async frame IO with bounds and timeouts.
//! - [`testing`]: an in-process CA and a raw wire client for tests.
//! - [`admin`]: admin operations, run directly on the registry or through `DIR/admin.sock`.
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used)]

pub mod admin;
pub mod api;
pub mod authority;
pub mod dir;
pub mod server;
pub mod store;
pub mod testing;
pub mod tls;
pub mod wire;

/// Top-level CA errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// CA directory.
    #[error(transparent)]
    Dir(#[from] dir::DirError),
    /// Registry.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Authority operation.
    #[error(transparent)]
    Authority(#[from] authority::AuthorityError),
    /// TLS setup.
    #[error("tls: {0}")]
    Tls(String),
    /// IO.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A remote (admin socket) call failed with the given code and message.
    #[error("{message}")]
    Remote {
        /// status code
        code: String,
        /// message
        message: String,
    },
}
