//! caucus node: mTLS transport, peer directory, blob store, SMC session API, keygen/decrypt drivers
//! and the CLI.
//!
//! # Layout
//! - [`transport`]: mutual TLS between roster members (custom rustls verifiers), frames, signed
//!   envelopes, method routing, the accept loop and outgoing connections.
//! - [`session`]: the SMC session API (`send` / `recv` / `broadcast` / `recv_all` by roster name
//!   and message id, serde values), built on the transport.
//! - [`bench`]: `caucus bench keygen|paillier|messages|blob` drivers.
//! - [`blob`]: encrypted chunked blob transfer: the store (inbox, outbox, redb index) and the
//!   `post/blob` exchange over the transport.
//! - [`pool`]: the background filler thread of the Paillier r^N pool.
//! - `testing` (feature `test-util`): an in-process test PKI and raw TLS clients for tests.
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used)]

pub mod bench;
pub mod blob;
pub mod pool;
pub mod session;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod transport;
