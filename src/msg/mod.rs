//! Messages on the wire: the frame codec and the signed JSON envelope.

pub mod envelope;
pub mod frame;
pub mod replay;

pub use envelope::{Envelope, EnvelopeError, Inner, Meta, Opener, seal};
pub use replay::{ReplayCache, ReplayError};
