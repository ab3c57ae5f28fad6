//! Encrypted chunked blob sharing, node side.
//!
//! - [`store`]: the receiver's inbox (partials with durable progress, received blobs, the redb
//!   index, limits, cleanup, decrypting `get`) and the sender's outbox (encrypt once, stream
//!   from disk).
//! - [`wire`]: the `post/blob` handler (receiver) and the sending driver over a transport
//!   connection.
//! - [`rawtls`]: the raw tokio-rustls loopback baseline and the peak-RSS probe of `caucus bench blob`.

pub mod rawtls;
pub mod store;
pub mod wire;

pub use store::{Begin, BlobStore, Incoming, Outgoing, ReceivedEntry, StoreConfig, StoreError};
