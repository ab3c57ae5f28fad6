//! # caucus-node — the caucus node runtime
//!
//! mTLS transport, peer directory, blob store, SMC session API, keygen/decrypt drivers and the CLI.
//!
//! # Layout
//! - [`config`]: the node directory (`node.key` 0600, `node.pem`, `ca.pem`, `node.json`, ...).
//! - [`ca_client`]: TLS client for the CA, pinned by root fingerprint; enrol, roster, CRL, certs.
//! - [`transport`]: mutual TLS between roster members (custom rustls verifiers), frames, signed
//!   envelopes, method routing, the accept loop and outgoing connections.
//! - [`session`]: the SMC session API (`send` / `recv` / `broadcast` / `recv_all` by roster name
//!   and message id, serde values), built on the transport.
//! - [`keygen`]: the network keygen driver (sans-IO keygen over the session API) and the
//!   common driver errors; [`keyshare`]: `keyshare.json` (0600, atomic).
//! - [`threshold`]: encryption, threshold decryption by any t+1 parties, the secure sum.
//! - [`demo`]: `caucus demo`, a CA and three nodes in one process, every step narrated.
//! - [`commands`]: the code of each CLI command (`init`, `enroll`, `peers`, `serve`).
//! - [`blob`]: encrypted chunked blob transfer: the store (inbox, outbox, redb index) and the
//!   `post/blob` exchange over the transport.
//! - [`bench`](mod@bench): `caucus bench keygen|paillier|enroll|messages|blob|all` drivers.
//! - [`pool`]: the background filler thread of the Paillier r^N pool.
//! - `testing` (feature `test-util`): an in-process test PKI and raw TLS clients for tests.
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used)]

pub mod bench;
pub mod blob;
pub mod ca_client;
pub mod commands;
pub mod config;
pub mod demo;
pub mod keygen;
pub mod keyshare;
pub mod pool;
pub mod session;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod threshold;
pub mod transport;

/// The current time in unix seconds (the runtime reads the clock; protocol code takes `now`).
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
