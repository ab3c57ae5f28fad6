//! Encrypted, chunked blobs: the header ([`format`](mod@format)) and the AES-256-GCM STREAM ([`stream`]).
//!
//! A blob is encrypted once for many recipients: a random 32-byte [`FileKey`] is wrapped with
//! RSA-OAEP-SHA256 for each recipient in the [`BlobHeader`], which travels in a signed envelope
//! (`post/blob`). The content is split into chunks (64 KiB by default) and each chunk is sealed
//! with AES-256-GCM under a payload key derived by HKDF from the file key and the header nonce,
//! using the STREAM construction (nonce = chunk counter ‖ last-chunk flag), so reordering,
//! dropping, truncating or extending the chunk sequence all fail. Every chunk's associated data is
//! the SHA-256 of the header without its recipients ([`BlobHeader::aad`]), so a chunk cannot move
//! to another blob even one that reuses the same key.
//!
//! * In memory: [`seal_blob`] / [`open_blob`].
//! * Streaming, sans-IO: [`BlobHeader::build`] + [`StreamWriter`]; [`StreamReader`] or
//!   [`StreamKey::open_chunk`] for random access (resumed transfers).
//! * The transfer protocol's messages (`post/blob`, accept, chunk frames, `blob/end`,
//!   receipt): [`transfer`].
//! * Over `std::io`: [`EncryptingWriter`] / [`DecryptingReader`] (no files here: any `Read` /
//!   `Write`).

pub mod format;
pub mod stream;
pub mod transfer;

pub use format::{BlobHeader, BlobId, BlobLimits, Recipient};
pub use stream::{
    ChunkLayout, DecryptingReader, EncryptingWriter, FileKey, StreamKey, StreamReader, StreamWriter,
};

use crate::pki::{PartyId, PrivateKey, PublicKey};

/// Blob errors. AEAD failures are deliberately opaque ([`BlobError::DecryptionFailed`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum BlobError {
    /// The header has a version this code does not know.
    #[error("unknown blob header version {0}")]
    UnknownVersion(u64),
    /// The header is not well-formed JSON of the expected shape.
    #[error("malformed blob header: {0}")]
    Malformed(String),
    /// A header field is out of bounds (name, recipients, chunk size, ...).
    #[error("invalid blob header: {0}")]
    InvalidHeader(&'static str),
    /// The blob is larger than the configured maximum.
    #[error("blob of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// declared size
        size: u64,
        /// limit in force
        max: u64,
    },
    /// The header's sender is not the party that sent it.
    #[error("blob header sender is not the message sender")]
    SenderMismatch,
    /// The header has no wrapped key for this party.
    #[error("not a recipient of this blob")]
    NotARecipient,
    /// A chunk (or the wrapped key) failed authentication: tampered, reordered, from another blob,
    /// or the wrong key.
    #[error("blob decryption failed")]
    DecryptionFailed,
    /// The chunk sequence ended before the final chunk.
    #[error("blob truncated: final chunk missing")]
    Truncated,
    /// Data after the final chunk.
    #[error("data after the final blob chunk")]
    TrailingData,
    /// A ciphertext chunk has the wrong length for its position.
    #[error("chunk {index} has {len} bytes, expected {expected}")]
    BadChunkSize {
        /// chunk index
        index: u64,
        /// length received
        len: usize,
        /// length the header implies
        expected: usize,
    },
    /// The plaintext written does not have the size the header declares.
    #[error("plaintext size {got} differs from the declared {expected}")]
    SizeMismatch {
        /// declared size
        expected: u64,
        /// bytes written
        got: u64,
    },
    /// The decrypted content does not hash to the header's SHA-256.
    #[error("blob content does not match its sha-256")]
    DigestMismatch,
    /// Local failure wrapping the file key for a recipient.
    #[error("wrapping the file key failed")]
    WrapFailed,
    /// Local failure in the crypto library.
    #[error("blob crypto failure")]
    Crypto,
}

impl BlobError {
    /// A stable snake_case code for the error (for replies, logs and test vectors).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownVersion(_) => "unknown_version",
            Self::Malformed(_) => "malformed",
            Self::InvalidHeader(_) => "invalid_header",
            Self::TooLarge { .. } => "too_large",
            Self::SenderMismatch => "sender_mismatch",
            Self::NotARecipient => "not_a_recipient",
            Self::DecryptionFailed => "decryption_failed",
            Self::Truncated => "truncated",
            Self::TrailingData => "trailing_data",
            Self::BadChunkSize { .. } => "bad_chunk_size",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::DigestMismatch => "digest_mismatch",
            Self::WrapFailed => "wrap_failed",
            Self::Crypto => "crypto",
        }
    }

    /// The blob error inside an `io::Error` produced by the [`EncryptingWriter`] /
    /// [`DecryptingReader`] adapters, if any.
    pub fn from_io(e: &std::io::Error) -> Option<&BlobError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<BlobError>())
    }
}

/// Encrypts `bytes` in memory for `recipients`: returns the header and the ciphertext chunks.
///
/// `chunk_size` must be within [`stream::MIN_CHUNK_SIZE`]..=[`stream::MAX_CHUNK_SIZE`];
/// `now_ms` becomes `created_ms`.
pub fn seal_blob(
    bytes: &[u8],
    name: &str,
    sender: PartyId,
    recipients: &[PublicKey],
    chunk_size: u32,
    now_ms: i64,
    rng: &mut impl rand::CryptoRng,
) -> Result<(BlobHeader, Vec<Vec<u8>>), BlobError> {
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(sha.as_ref());
    let (header, key) = BlobHeader::build(
        name,
        bytes.len() as u64,
        sha256,
        sender,
        recipients,
        chunk_size,
        now_ms,
        rng,
    )?;
    let mut writer = StreamWriter::new(&key, &header)?;
    let mut chunks = writer.push(bytes)?;
    chunks.push(writer.finish()?);
    Ok((header, chunks))
}

/// Decrypts a whole blob in memory as recipient `me`, checking every chunk, the chunk count and,
/// at the end, the plaintext SHA-256.
pub fn open_blob<C: AsRef<[u8]>>(
    header: &BlobHeader,
    chunks: &[C],
    me: &PrivateKey,
) -> Result<Vec<u8>, BlobError> {
    header.validate(&BlobLimits::unbounded())?;
    let key = header.unwrap_key(me)?;
    let mut reader = StreamReader::new(&key, header)?;
    // Capacity from what was actually received, never from the (peer-chosen) declared size.
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.as_ref().len()).sum());
    for c in chunks {
        out.extend_from_slice(&reader.push_chunk(c.as_ref())?);
    }
    reader.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn keys() -> &'static [PrivateKey; 3] {
        static K: OnceLock<[PrivateKey; 3]> = OnceLock::new();
        K.get_or_init(|| {
            [
                include_str!("../../tests/vectors/test_key_a.pem"),
                include_str!("../../tests/vectors/test_key_b.pem"),
                include_str!("../../tests/vectors/test_key_c.pem"),
            ]
            .map(|p| PrivateKey::from_pkcs8_pem(p).expect("key"))
        })
    }

    #[test]
    fn many_recipients_round_trip_lengths() {
        let [a, b, c] = keys();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let recips = [b.public_key().clone(), c.public_key().clone()];
        for len in [0usize, 1, 1023, 1024, 1025, 4096, 5000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (h, chunks) = seal_blob(
                &data,
                "f.bin",
                a.public_key().party_id(),
                &recips,
                1024,
                NOW,
                &mut rng,
            )
            .expect("seal");
            assert_eq!(chunks.len() as u64, h.layout().count());
            assert_eq!(chunks.len(), len.div_ceil(1024).max(1), "{len}");
            for me in [b, c] {
                assert_eq!(open_blob(&h, &chunks, me).expect("open"), data);
            }
            assert_eq!(
                open_blob(&h, &chunks, a).err(),
                Some(BlobError::NotARecipient)
            );
        }
    }

    #[test]
    fn dropped_extended_and_swapped_chunks_fail() {
        let [a, b, _] = keys();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let data = vec![5u8; 3000];
        let (h, chunks) = seal_blob(
            &data,
            "x",
            a.public_key().party_id(),
            &[b.public_key().clone()],
            1024,
            NOW,
            &mut rng,
        )
        .expect("seal");
        assert_eq!(
            open_blob(&h, &chunks[..2], b).err(),
            Some(BlobError::Truncated)
        );
        let mut more = chunks.clone();
        more.push(chunks[2].clone());
        assert_eq!(open_blob(&h, &more, b).err(), Some(BlobError::TrailingData));
        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        assert_eq!(
            open_blob(&h, &swapped, b).err(),
            Some(BlobError::DecryptionFailed)
        );
        let mut short = chunks.clone();
        short[1].pop();
        assert!(matches!(
            open_blob(&h, &short, b),
            Err(BlobError::BadChunkSize { index: 1, .. })
        ));
        // A header field changed after sealing (here the name) changes the AAD: every chunk fails.
        let mut renamed = h.clone();
        renamed.name = "y".into();
        assert_eq!(
            open_blob(&renamed, &chunks, b).err(),
            Some(BlobError::DecryptionFailed)
        );
    }

    #[test]
    fn error_codes_are_distinct() {
        let all = [
            BlobError::UnknownVersion(2),
            BlobError::Malformed(String::new()),
            BlobError::InvalidHeader(""),
            BlobError::TooLarge { size: 0, max: 0 },
            BlobError::SenderMismatch,
            BlobError::NotARecipient,
            BlobError::DecryptionFailed,
            BlobError::Truncated,
            BlobError::TrailingData,
            BlobError::BadChunkSize {
                index: 0,
                len: 0,
                expected: 0,
            },
            BlobError::SizeMismatch {
                expected: 0,
                got: 0,
            },
            BlobError::DigestMismatch,
            BlobError::WrapFailed,
            BlobError::Crypto,
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(BlobError::code).collect();
        assert_eq!(codes.len(), all.len());
    }
}
