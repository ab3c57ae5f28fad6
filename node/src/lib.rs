//! caucus node: mTLS transport, peer directory, blob store, SMC session API, keygen/decrypt drivers
//! and the CLI.
//!
//! # Layout
//! - [`bench`]: `caucus bench keygen|paillier` drivers.
//! - [`pool`]: the background filler thread of the Paillier r^N pool.

pub mod bench;
pub mod pool;
