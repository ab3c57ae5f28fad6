//! Paillier encryption on `num-bigint`: public key (N, g = N + 1), ciphertexts with TNO's freshness
//! flag, homomorphic operations, signed and fixed-point plaintext encodings, a pool of precomputed
//! `r^N` values, a single-key reference keypair, and versioned serde formats.
//!
//! Encryption is `E(m; r) = (1 + m·N)·ρ mod N²` with the randomness factor ρ either the textbook
//! `r^N` or, by explicit choice ([`EncryptionMode::Djn`]), the Damgård–Jurik–Nielsen `h_s^α` from a
//! fixed-base table (see [`djn`] for the extra assumption).

pub mod djn;
pub mod encoding;
pub mod keys;
pub mod ops;

pub use djn::{EncryptionMode, Encryptor};
pub use encoding::{FixedPoint, decode_signed, encode_signed};
pub use keys::{Keypair, PublicKey};
pub use ops::{Ciphertext, RandomnessPool};

/// Errors of Paillier operations and formats.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PaillierError {
    /// A plaintext does not fit the plaintext space (|m| must be below N/2 for signed values).
    #[error("plaintext out of range")]
    PlaintextOutOfRange,
    /// A ciphertext is not in Z*_{N²}.
    #[error("ciphertext out of range")]
    CiphertextOutOfRange,
    /// The modulus is malformed (even, too small or too large).
    #[error("invalid modulus")]
    InvalidModulus,
    /// Unsupported format version.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u16),
    /// A fixed-point value is not finite or too large for the precision.
    #[error("fixed-point value not representable")]
    NotRepresentable,
    /// A ciphertext of another key.
    #[error("ciphertext of another key")]
    KeyMismatch,
}
