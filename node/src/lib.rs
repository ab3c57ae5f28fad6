//! caucus node: mTLS transport, peer directory, blob store, SMC session API, keygen/decrypt drivers
//! and the CLI.
//!
//! # Layout
//! - [`bench`]: `caucus bench keygen|paillier` drivers.
//! - [`blob`]: encrypted chunked blob transfer and store.
//! - [`pool`]: the background filler thread of the Paillier r^N pool.
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used)]

pub mod bench;
pub mod blob;
pub mod pool;
