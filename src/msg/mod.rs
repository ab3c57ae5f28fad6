//! Messages on the wire: the frame codec, the signed JSON envelope and batches of envelopes.

pub mod batch;
pub mod envelope;
pub mod frame;
pub mod replay;

pub use batch::{Batch, BatchItem, MAX_BATCH, Refused, Unsigned, seal_batch, seal_one};
pub use envelope::{Envelope, EnvelopeError, Inner, Meta, Opener, seal};
pub use replay::{ReplayCache, ReplayError};

/// The two fixed test keys of `tests/vectors/` (parsed once), for the unit tests of this module.
#[cfg(test)]
pub(crate) fn test_keys() -> &'static (crate::pki::PrivateKey, crate::pki::PrivateKey) {
    use crate::pki::PrivateKey;
    static K: std::sync::OnceLock<(PrivateKey, PrivateKey)> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        let a = PrivateKey::from_pkcs8_pem(include_str!("../../tests/vectors/test_key_a.pem"))
            .expect("key a");
        let b = PrivateKey::from_pkcs8_pem(include_str!("../../tests/vectors/test_key_b.pem"))
            .expect("key b");
        (a, b)
    })
}
