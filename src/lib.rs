//! # caucus — protocol core
//!
//! caucus is a PKI-backed secure messaging service with a secure multi-party computation (SMC) node
//! API. This crate holds everything protocol-level and IO-free: it never touches sockets, files,
//! clocks or tokio. Functions take bytes, a `now` and an rng, and return bytes and decisions; the
//! runtimes in `caucus-ca` and `caucus-node` drive them.
//!
//! # Layout
//! - [`encoding`]: base64url big integers and byte strings, with size bounds.
//! - [`pki`]: RSA keys, `PartyId`, the URI SAN identity, CSRs, chain verification, roster, CRL.
//! - [`msg`]: frames (length, kind, body), signed JSON envelopes and the replay cache.
//! - [`blob`]: encrypted chunked blobs: the header (file key wrapped per recipient) and the
//!   AES-256-GCM STREAM format.
//! - `testing` (feature `test-util`): the in-process n-party keygen harness.
//! - [`error`]: the top-level [`Error`] wrapping every module's error.
//! - [`arith`]: number theory (Jacobi, Miller–Rabin, small primes, Mersenne field primes).
//! - [`paillier`]: Paillier keys, ciphertexts with freshness, homomorphic ops, encodings, r^N pool.
//! - [`keygen`]: distributed Paillier key generation without a trusted dealer (state machine).
//! - [`decrypt`]: threshold decryption (partial decryptions, combination by any t+1).
//! - [`sharing`]: Shamir sharing over GF(P) and over the integers (Δ = n! scaling).
//! - [`monty`]: Montgomery products on fixed-length limbs (fixed-base tables).
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used)]

pub mod arith;
pub mod blob;
pub mod decrypt;
pub mod encoding;
pub mod error;
pub mod keygen;
pub mod monty;
pub mod msg;
pub mod paillier;
pub mod pki;
pub mod sharing;
#[cfg(feature = "test-util")]
pub mod testing;

pub use error::{Error, Result};
