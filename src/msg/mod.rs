//! Messages on the wire: the frame codec and the signed JSON envelope.

pub mod frame;
