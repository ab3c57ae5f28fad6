//! # caucus-node — the caucus node runtime
//!
//! # Layout
//! - [`config`]: the node directory (`node.key` 0600, `node.pem`, `ca.pem`, `node.json`, ...).
//! - [`ca_client`]: TLS client for the CA, pinned by root fingerprint; enrol, roster, CRL, certs.
//! - [`commands`]: the code of each CLI command (`init`, `enroll`, `peers`).
//! - [`bench`]: `caucus bench` load benchmarks (`enroll`).
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used)]

pub mod bench;
pub mod ca_client;
pub mod commands;
pub mod config;

/// The current time in unix seconds (the runtime reads the clock; protocol code takes `now`).
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
