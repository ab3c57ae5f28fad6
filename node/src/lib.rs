//! # caucus-node — the caucus node runtime
//!
//! # Layout
//! - [`transport`]: mutual TLS between roster members (custom rustls verifiers), frames, signed
//!   envelopes, method routing, the accept loop and outgoing connections.
//! - [`session`]: the SMC session API (`send` / `recv` / `broadcast` / `recv_all` by roster name
//!   and message id, serde values), built on the transport.
//! - `testing` (feature `test-util`): an in-process test PKI and raw TLS clients for tests.
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used)]

pub mod session;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod transport;
