//! Messages on the wire: the frame codec, the signed JSON envelope and batches of envelopes.

pub mod batch;
pub mod envelope;
pub mod frame;
pub mod replay;

pub use batch::{Batch, BatchItem, MAX_BATCH, Refused, Unsigned, seal_batch, seal_one};
pub use envelope::{Envelope, EnvelopeError, Inner, Meta, Opener, seal};
pub use replay::{ReplayCache, ReplayError};
