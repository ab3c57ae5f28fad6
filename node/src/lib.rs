//! # caucus-node — the caucus node runtime
//!
//! mTLS transport, peer directory, blob store, SMC session API, keygen/decrypt drivers and the CLI.
//!
//! # Layout
//! - [`config`]: the node directory (`node.key` 0600, `node.pem`, `ca.pem`, `node.json`, ...).
//! - [`ca_client`]: TLS client for the CA, pinned by root fingerprint; enrol, roster, CRL, certs.
//! - [`commands`]: the code of each CLI command (`init`, `enroll`, `peers`).
//! - [`bench`]: `caucus bench keygen|paillier|enroll` drivers.
//! - [`pool`]: the background filler thread of the Paillier r^N pool.
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used)]

pub mod bench;
pub mod ca_client;
pub mod commands;
pub mod config;
pub mod pool;

/// The current time in unix seconds (the runtime reads the clock; protocol code takes `now`).
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
