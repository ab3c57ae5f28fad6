//! Encrypted chunked blob sharing, node side.
//!
//! - [`store`]: the receiver's inbox (partials with durable progress, received blobs, the redb
//!   index, limits, cleanup, decrypting `get`) and the sender's outbox (encrypt once, stream
//!   from disk).

pub mod store;

pub use store::{Begin, BlobStore, Incoming, Outgoing, ReceivedEntry, StoreConfig, StoreError};
