//! # caucus-node — the caucus node runtime
//!
//! # Layout
//! - [`blob`]: encrypted chunked blob transfer and store.
#![forbid(unsafe_code)]
#![deny(missing_docs, clippy::unwrap_used)]

pub mod blob;
