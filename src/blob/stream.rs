//! The AES-256-GCM STREAM construction for blob content (after age's `primitives/stream.rs`).
//!
//! * payload key = HKDF-SHA256(ikm = file key K, salt = header nonce, info = `"caucus blob v1"`);
//! * chunk `i` (from 0) is sealed with AES-256-GCM under the nonce
//!   `i as 11-byte big-endian ‖ last` where `last` is `0x01` on the final chunk only and `0x00`
//!   otherwise, and with the header's [`aad`](super::BlobHeader::aad) as associated data;
//! * every chunk but the last carries exactly `chunk_size` plaintext bytes; the last carries
//!   `1..=chunk_size`, or 0 for an empty blob (one empty final chunk). So the chunk count and each
//!   chunk's length follow from the header's `size` and `chunk_size` ([`ChunkLayout`]).
//!
//! A [`StreamWriter`] emits the final chunk only from [`StreamWriter::finish`], so a writer that is
//! never finished leaves a blob that fails as [`BlobError::Truncated`]. A [`StreamReader`] takes
//! chunks in order; [`StreamKey::open_chunk`] decrypts any one chunk by index (for resumed
//! transfers). [`EncryptingWriter`] / [`DecryptingReader`] adapt them to `std::io` over the
//! concatenated ciphertext chunks (no framing needed: lengths follow from the header).

use std::io::{self, Read, Write};

use aes_gcm::aead::{Aead, AeadInOut, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use aws_lc_rs::digest;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{BlobError, BlobHeader};

/// File key length (AES-256).
pub const KEY_LEN: usize = 32;

/// Header nonce (HKDF salt) length.
pub const NONCE_LEN: usize = 16;

/// AES-GCM tag length appended to each chunk.
pub const TAG_LEN: usize = 16;

/// Default plaintext bytes per chunk: 64 KiB.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 << 10;

/// Smallest allowed chunk size: 1 KiB.
pub const MIN_CHUNK_SIZE: u32 = 1 << 10;

/// Largest allowed chunk size: 1 MiB.
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;

/// HKDF info string for the payload key.
pub const HKDF_INFO: &[u8] = b"caucus blob v1";

/// A blob's random file key K. Zeroized on drop; `Debug` prints `<redacted>`.
///
/// # Security: MUST NOT be sent except wrapped for a recipient.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct FileKey([u8; KEY_LEN]);

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

impl FileKey {
    /// A fresh random key.
    pub fn generate(rng: &mut impl rand::CryptoRng) -> Self {
        let mut k = [0u8; KEY_LEN];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    /// A key from exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Self(<[u8; KEY_LEN]>::try_from(b).ok()?))
    }

    /// The raw key (to wrap it for a recipient).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// How a blob of `size` bytes is cut into chunks of `chunk_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLayout {
    /// Plaintext size.
    pub size: u64,
    /// Plaintext bytes per full chunk (non-zero).
    pub chunk_size: u32,
}

impl ChunkLayout {
    /// Number of chunks: `ceil(size / chunk_size)`, and 1 for an empty blob.
    pub fn count(&self) -> u64 {
        self.size.div_ceil(u64::from(self.chunk_size.max(1))).max(1)
    }

    /// Whether chunk `index` is the final one.
    pub fn is_last(&self, index: u64) -> bool {
        index + 1 == self.count()
    }

    /// Plaintext length of chunk `index`, or `None` past the end.
    pub fn plain_len(&self, index: u64) -> Option<usize> {
        let count = self.count();
        if index >= count {
            return None;
        }
        let cs = u64::from(self.chunk_size.max(1));
        let len = if index + 1 < count {
            cs
        } else {
            self.size - index * cs
        };
        usize::try_from(len).ok()
    }

    /// Ciphertext length of chunk `index` (plaintext plus tag), or `None` past the end.
    pub fn cipher_len(&self, index: u64) -> Option<usize> {
        self.plain_len(index).map(|n| n + TAG_LEN)
    }

    /// Total ciphertext bytes.
    pub fn ciphertext_len(&self) -> u64 {
        self.size
            .saturating_add(self.count().saturating_mul(TAG_LEN as u64))
    }
}

/// The payload key (as an AES-256-GCM instance) and the header binding for one blob.
pub struct StreamKey {
    cipher: Aes256Gcm,
    aad: [u8; 32],
    layout: ChunkLayout,
}

impl std::fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamKey")
            .field("key", &"<redacted>")
            .field("layout", &self.layout)
            .finish()
    }
}

impl StreamKey {
    /// Derives the payload key from the file key and the header (nonce, AAD and layout).
    pub fn new(file_key: &FileKey, header: &BlobHeader) -> Result<Self, BlobError> {
        Self::from_parts(file_key, &header.nonce, header.aad(), header.layout())
    }

    /// Derives the payload key from its parts.
    pub fn from_parts(
        file_key: &FileKey,
        nonce: &[u8; NONCE_LEN],
        aad: [u8; 32],
        layout: ChunkLayout,
    ) -> Result<Self, BlobError> {
        struct Len32;
        impl aws_lc_rs::hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                KEY_LEN
            }
        }
        let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, nonce)
            .extract(file_key.as_bytes());
        let mut payload_key = Zeroizing::new([0u8; KEY_LEN]);
        prk.expand(&[HKDF_INFO], Len32)
            .and_then(|okm| okm.fill(&mut payload_key[..]))
            .map_err(|_| BlobError::Crypto)?;
        let cipher = Aes256Gcm::new_from_slice(&payload_key[..]).map_err(|_| BlobError::Crypto)?;
        Ok(Self {
            cipher,
            aad,
            layout,
        })
    }

    /// The chunk layout this key was made for.
    pub fn layout(&self) -> ChunkLayout {
        self.layout
    }

    fn nonce(index: u64, last: bool) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        n.into()
    }

    /// Seals one chunk (pure STREAM primitive: no layout checks).
    pub fn encrypt_chunk(
        &self,
        index: u64,
        last: bool,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, BlobError> {
        self.cipher
            .encrypt(
                &Self::nonce(index, last),
                Payload {
                    msg: plaintext,
                    aad: &self.aad,
                },
            )
            .map_err(|_| BlobError::Crypto)
    }

    /// Opens one chunk (pure STREAM primitive: no layout checks). Any failure is
    /// [`BlobError::DecryptionFailed`].
    pub fn decrypt_chunk(
        &self,
        index: u64,
        last: bool,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, BlobError> {
        self.cipher
            .decrypt(
                &Self::nonce(index, last),
                Payload {
                    msg: ciphertext,
                    aad: &self.aad,
                },
            )
            .map_err(|_| BlobError::DecryptionFailed)
    }

    /// Seals one chunk into `out` (cleared first; its allocation is reused), so a sender can
    /// encrypt a whole blob with one buffer. Same result as [`encrypt_chunk`](Self::encrypt_chunk).
    pub fn encrypt_chunk_into(
        &self,
        index: u64,
        last: bool,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), BlobError> {
        out.clear();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &Self::nonce(index, last),
                &self.aad,
                out.as_mut_slice().into(),
            )
            .map_err(|_| BlobError::Crypto)?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Seals one chunk in place: `buf` holds the plaintext followed by [`TAG_LEN`] bytes of room,
    /// and ends up holding the chunk's ciphertext (the same bytes as
    /// [`encrypt_chunk`](Self::encrypt_chunk)), so a sender can lay a batch of chunks out as
    /// they go to disk and seal them where they lie. Errors if `buf` is shorter than a tag.
    pub fn encrypt_chunk_in_place(
        &self,
        index: u64,
        last: bool,
        buf: &mut [u8],
    ) -> Result<(), BlobError> {
        let Some(body_len) = buf.len().checked_sub(TAG_LEN) else {
            return Err(BlobError::Crypto);
        };
        let (body, tag_room) = buf.split_at_mut(body_len);
        let tag = self
            .cipher
            .encrypt_inout_detached(&Self::nonce(index, last), &self.aad, body.into())
            .map_err(|_| BlobError::Crypto)?;
        tag_room.copy_from_slice(&tag);
        Ok(())
    }

    /// Opens one chunk into `out` (its allocation is reused, and what it held is overwritten
    /// rather than zero-filled first) without copying the ciphertext first: AES-GCM runs from
    /// `ciphertext` straight into `out`. Any failure is [`BlobError::DecryptionFailed`] and
    /// leaves `out` empty (no unauthenticated plaintext).
    pub fn decrypt_chunk_into(
        &self,
        index: u64,
        last: bool,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), BlobError> {
        let opened = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .is_some_and(|body_len| {
                let (body, tag) = ciphertext.split_at(body_len);
                out.resize(body_len, 0);
                match (
                    aes_gcm::Tag::try_from(tag),
                    aes_gcm::aead::inout::InOutBuf::new(body, out.as_mut_slice()),
                ) {
                    (Ok(tag), Ok(inout)) => self
                        .cipher
                        .decrypt_inout_detached(&Self::nonce(index, last), &self.aad, inout, &tag)
                        .is_ok(),
                    _ => false,
                }
            });
        if !opened {
            out.zeroize();
            out.clear();
            return Err(BlobError::DecryptionFailed);
        }
        Ok(())
    }

    /// [`open_chunk`](Self::open_chunk) into a reusable buffer (see
    /// [`decrypt_chunk_into`](Self::decrypt_chunk_into)).
    pub fn open_chunk_into(
        &self,
        index: u64,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), BlobError> {
        let expected = self
            .layout
            .cipher_len(index)
            .ok_or(BlobError::TrailingData)?;
        if ciphertext.len() != expected {
            return Err(BlobError::BadChunkSize {
                index,
                len: ciphertext.len(),
                expected,
            });
        }
        self.decrypt_chunk_into(index, self.layout.is_last(index), ciphertext, out)
    }

    /// Opens chunk `index` of this blob, checking it exists ([`BlobError::TrailingData`]
    /// otherwise) and has the length the layout implies ([`BlobError::BadChunkSize`]); the
    /// last-chunk flag follows from the index.
    pub fn open_chunk(&self, index: u64, ciphertext: &[u8]) -> Result<Vec<u8>, BlobError> {
        let expected = self
            .layout
            .cipher_len(index)
            .ok_or(BlobError::TrailingData)?;
        if ciphertext.len() != expected {
            return Err(BlobError::BadChunkSize {
                index,
                len: ciphertext.len(),
                expected,
            });
        }
        self.decrypt_chunk(index, self.layout.is_last(index), ciphertext)
    }
}

fn sha256_of(ctx: digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Encrypts content in order, sans-IO: push plaintext, get ciphertext chunks.
///
/// Checks that exactly `size` bytes hashing to the header's `sha256` are written. The final chunk
/// is only produced by [`finish`](Self::finish).
pub struct StreamWriter {
    key: StreamKey,
    buf: Zeroizing<Vec<u8>>,
    index: u64,
    written: u64,
    hasher: digest::Context,
    sha256: [u8; 32],
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("index", &self.index)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl StreamWriter {
    /// A writer for the blob described by `header`, under `file_key`.
    pub fn new(file_key: &FileKey, header: &BlobHeader) -> Result<Self, BlobError> {
        let key = StreamKey::new(file_key, header)?;
        let cs = header.chunk_size as usize;
        Ok(Self {
            key,
            buf: Zeroizing::new(Vec::with_capacity(cs)),
            index: 0,
            written: 0,
            hasher: digest::Context::new(&digest::SHA256),
            sha256: header.sha256,
        })
    }

    /// Index of the next chunk to be emitted.
    pub fn next_index(&self) -> u64 {
        self.index
    }

    /// Adds plaintext; returns the chunks (never the final one) completed by it, in order.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<Vec<u8>>, BlobError> {
        let layout = self.key.layout;
        let total = self.written.saturating_add(data.len() as u64);
        if total > layout.size {
            return Err(BlobError::SizeMismatch {
                expected: layout.size,
                got: total,
            });
        }
        self.hasher.update(data);
        self.written = total;
        let cs = layout.chunk_size as usize;
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() >= cs && !layout.is_last(self.index) {
                // Fast path: a whole non-final chunk straight from the input, no buffering.
                out.push(self.key.encrypt_chunk(self.index, false, &data[..cs])?);
                data = &data[cs..];
                self.index += 1;
                continue;
            }
            let take = (cs - self.buf.len()).min(data.len());
            if take == 0 {
                // Unreachable given the size check above; refuse rather than spin.
                return Err(BlobError::SizeMismatch {
                    expected: layout.size,
                    got: total,
                });
            }
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == cs && !layout.is_last(self.index) {
                out.push(self.key.encrypt_chunk(self.index, false, &self.buf)?);
                self.buf.clear();
                self.index += 1;
            }
        }
        Ok(out)
    }

    /// Checks size and SHA-256 and returns the final chunk.
    pub fn finish(self) -> Result<Vec<u8>, BlobError> {
        let layout = self.key.layout;
        if self.written != layout.size {
            return Err(BlobError::SizeMismatch {
                expected: layout.size,
                got: self.written,
            });
        }
        if sha256_of(self.hasher) != self.sha256 {
            return Err(BlobError::DigestMismatch);
        }
        self.key.encrypt_chunk(self.index, true, &self.buf)
    }
}

/// Decrypts chunks in order, sans-IO: push ciphertext chunks, get plaintext.
pub struct StreamReader {
    key: StreamKey,
    next: u64,
    done: bool,
    hasher: digest::Context,
    sha256: [u8; 32],
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("next", &self.next)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl StreamReader {
    /// A reader for the blob described by `header`, under `file_key`.
    pub fn new(file_key: &FileKey, header: &BlobHeader) -> Result<Self, BlobError> {
        Ok(Self {
            key: StreamKey::new(file_key, header)?,
            next: 0,
            done: false,
            hasher: digest::Context::new(&digest::SHA256),
            sha256: header.sha256,
        })
    }

    /// Index of the next expected chunk.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Whether the final chunk has been read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Decrypts the next chunk.
    pub fn push_chunk(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, BlobError> {
        if self.done {
            return Err(BlobError::TrailingData);
        }
        let pt = self.key.open_chunk(self.next, ciphertext)?;
        self.hasher.update(&pt);
        self.done = self.key.layout.is_last(self.next);
        self.next += 1;
        Ok(pt)
    }

    /// Checks the final chunk was read and the content hashes to the header's SHA-256.
    pub fn finish(self) -> Result<(), BlobError> {
        if !self.done {
            return Err(BlobError::Truncated);
        }
        if sha256_of(self.hasher) != self.sha256 {
            return Err(BlobError::DigestMismatch);
        }
        Ok(())
    }
}

fn io_err(e: BlobError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// `std::io::Write` adapter: plaintext in, concatenated ciphertext chunks out to `W`.
/// Call [`finish`](Self::finish); dropping it unfinished leaves a truncated blob.
#[derive(Debug)]
pub struct EncryptingWriter<W: Write> {
    inner: W,
    stream: StreamWriter,
}

impl<W: Write> EncryptingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W, file_key: &FileKey, header: &BlobHeader) -> Result<Self, BlobError> {
        Ok(Self {
            inner,
            stream: StreamWriter::new(file_key, header)?,
        })
    }

    /// Writes the final chunk, flushes, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let last = self.stream.finish().map_err(io_err)?;
        self.inner.write_all(&last)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for chunk in self.stream.push(buf).map_err(io_err)? {
            self.inner.write_all(&chunk)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `std::io::Read` adapter: concatenated ciphertext chunks in from `R`, plaintext out.
///
/// Holds one chunk at a time. Errors are `io::ErrorKind::InvalidData` carrying a [`BlobError`]
/// (see [`BlobError::from_io`]): early end of input is `Truncated`, bytes after the final chunk
/// `TrailingData`, a bad tag `DecryptionFailed`, a content hash mismatch `DigestMismatch`. The
/// final `Ok(0)` is returned only after all of these checks passed.
#[derive(Debug)]
pub struct DecryptingReader<R: Read> {
    inner: R,
    stream: Option<StreamReader>,
    ct: Vec<u8>,
    pt: Zeroizing<Vec<u8>>,
    pos: usize,
}

impl<R: Read> DecryptingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, file_key: &FileKey, header: &BlobHeader) -> Result<Self, BlobError> {
        Ok(Self {
            inner,
            stream: Some(StreamReader::new(file_key, header)?),
            ct: Vec::new(),
            pt: Zeroizing::new(Vec::new()),
            pos: 0,
        })
    }

    /// Fills `self.ct` with exactly `n` bytes; `Ok(false)` on a clean or partial end of input.
    fn read_exactly(&mut self, n: usize) -> io::Result<bool> {
        self.ct.resize(n, 0);
        let mut got = 0;
        while got < n {
            match self.inner.read(&mut self.ct[got..]) {
                Ok(0) => return Ok(false),
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn refill(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        if stream.is_done() {
            // Expect end of input, then run the final checks.
            let mut probe = [0u8; 1];
            loop {
                match self.inner.read(&mut probe) {
                    Ok(0) => break,
                    Ok(_) => return Err(io_err(BlobError::TrailingData)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(s) = self.stream.take() {
                s.finish().map_err(io_err)?;
            }
            return Ok(());
        }
        let idx = stream.next_index();
        let n = stream.key.layout.cipher_len(idx).unwrap_or(0);
        if !self.read_exactly(n)? {
            return Err(io_err(BlobError::Truncated));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let pt = stream.push_chunk(&self.ct).map_err(io_err)?;
        self.pt = Zeroizing::new(pt);
        self.pos = 0;
        Ok(())
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.pt.len() {
            if self.stream.is_none() {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = (self.pt.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.pt[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::pki::PrivateKey;

    fn setup(len: usize, cs: u32) -> (BlobHeader, FileKey, Vec<u8>, PrivateKey) {
        let me = PrivateKey::from_pkcs8_pem(include_str!("../../tests/vectors/test_key_b.pem"))
            .expect("key");
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let sha = digest::digest(&digest::SHA256, &data);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(sha.as_ref());
        let mut rng = ChaCha20Rng::seed_from_u64(len as u64);
        let (h, k) = BlobHeader::build(
            "d",
            len as u64,
            sha256,
            me.public_key().party_id(),
            &[me.public_key().clone()],
            cs,
            0,
            &mut rng,
        )
        .expect("build");
        (h, k, data, me)
    }

    #[test]
    fn layout_lengths() {
        let l = |size| ChunkLayout {
            size,
            chunk_size: 1024,
        };
        assert_eq!((l(0).count(), l(0).plain_len(0)), (1, Some(0)));
        assert_eq!((l(1024).count(), l(1024).plain_len(0)), (1, Some(1024)));
        assert_eq!((l(2048).count(), l(2048).plain_len(1)), (2, Some(1024)));
        assert_eq!((l(2049).count(), l(2049).plain_len(2)), (3, Some(1)));
        assert_eq!(l(2049).plain_len(3), None);
        assert!(l(2049).is_last(2) && !l(2049).is_last(1));
        assert_eq!(l(2049).ciphertext_len(), 2049 + 48);
    }

    #[test]
    fn chunk_primitive_flags_and_indices() {
        let (h, k, _, _) = setup(10, 1024);
        let key = StreamKey::new(&k, &h).expect("key");
        let ct = key.encrypt_chunk(3, false, b"hello").expect("enc");
        assert_eq!(key.decrypt_chunk(3, false, &ct).expect("dec"), b"hello");
        assert_eq!(
            key.decrypt_chunk(3, true, &ct),
            Err(BlobError::DecryptionFailed)
        );
        assert_eq!(
            key.decrypt_chunk(4, false, &ct),
            Err(BlobError::DecryptionFailed)
        );
        // Another header (same key) => other AAD and nonce => fails.
        let (h2, _, _, _) = setup(11, 1024);
        let other = StreamKey::new(&k, &h2).expect("key2");
        assert_eq!(
            other.decrypt_chunk(3, false, &ct),
            Err(BlobError::DecryptionFailed)
        );
        let same_nonce = StreamKey::from_parts(&k, &h.nonce, h2.aad(), h.layout()).expect("k");
        assert_eq!(
            same_nonce.decrypt_chunk(3, false, &ct),
            Err(BlobError::DecryptionFailed)
        );
        assert_eq!(
            key.decrypt_chunk(0, false, &[1; 5]),
            Err(BlobError::DecryptionFailed)
        );
        assert!(format!("{key:?}").contains("<redacted>"));
    }

    #[test]
    fn writer_reader_odd_pushes_and_unfinished_is_truncated() {
        for len in [0usize, 1, 1024, 2048, 2049, 7000] {
            let (h, k, data, _) = setup(len, 1024);
            let mut w = StreamWriter::new(&k, &h).expect("w");
            let mut chunks = Vec::new();
            for piece in data.chunks(333) {
                chunks.extend(w.push(piece).expect("push"));
            }
            // Without finish: the final chunk is missing.
            assert_eq!(chunks.len() as u64, h.layout().count() - 1, "{len}");
            let mut r = StreamReader::new(&k, &h).expect("r");
            let mut out = Vec::new();
            for c in &chunks {
                out.extend(r.push_chunk(c).expect("chunk"));
            }
            assert_eq!(r.finish(), Err(BlobError::Truncated));
            chunks.push(w.finish().expect("finish"));
            let mut r = StreamReader::new(&k, &h).expect("r");
            let mut out = Vec::new();
            for c in &chunks {
                out.extend(r.push_chunk(c).expect("chunk"));
            }
            assert_eq!(r.push_chunk(&chunks[0]), Err(BlobError::TrailingData));
            r.finish().expect("finish");
            assert_eq!(out, data);
        }
    }

    #[test]
    fn writer_refuses_wrong_size_or_content() {
        let (h, k, data, _) = setup(100, 1024);
        let mut w = StreamWriter::new(&k, &h).expect("w");
        assert!(matches!(
            w.push(&[0; 101]),
            Err(BlobError::SizeMismatch { .. })
        ));
        let mut w = StreamWriter::new(&k, &h).expect("w");
        w.push(&data[..99]).expect("push");
        assert!(matches!(w.finish(), Err(BlobError::SizeMismatch { .. })));
        let mut w = StreamWriter::new(&k, &h).expect("w");
        let mut other = data.clone();
        other[0] ^= 1;
        w.push(&other).expect("push");
        assert_eq!(w.finish(), Err(BlobError::DigestMismatch));
    }

    #[test]
    fn io_adapters_round_trip_and_errors() {
        let (h, k, data, _) = setup(5000, 1024);
        let mut w = EncryptingWriter::new(Vec::new(), &k, &h).expect("w");
        for piece in data.chunks(700) {
            w.write_all(piece).expect("write");
        }
        let ct = w.finish().expect("finish");
        assert_eq!(ct.len() as u64, h.ciphertext_len());

        let read_all = |bytes: &[u8]| {
            let mut r = DecryptingReader::new(bytes, &k, &h).expect("r");
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        };
        assert_eq!(read_all(&ct).expect("read"), data);
        let code = |r: io::Result<Vec<u8>>| {
            let e = r.expect_err("must fail");
            BlobError::from_io(&e).cloned()
        };
        assert_eq!(
            code(read_all(&ct[..ct.len() - 1])),
            Some(BlobError::Truncated)
        );
        assert_eq!(code(read_all(&ct[..1040])), Some(BlobError::Truncated));
        let mut longer = ct.clone();
        longer.push(0);
        assert_eq!(code(read_all(&longer)), Some(BlobError::TrailingData));
        let mut bad = ct.clone();
        bad[2000] ^= 1;
        assert_eq!(code(read_all(&bad)), Some(BlobError::DecryptionFailed));

        // An unfinished writer leaves a truncated blob.
        let mut w = EncryptingWriter::new(Vec::new(), &k, &h).expect("w");
        w.write_all(&data).expect("write");
        let partial = w.inner.clone();
        assert_eq!(code(read_all(&partial)), Some(BlobError::Truncated));
    }

    #[test]
    fn into_variants_match_and_reuse_buffers() {
        let (h, k, data, _) = setup(2500, 1024);
        let key = StreamKey::new(&k, &h).expect("key");
        let mut ct = Vec::new();
        let mut pt = Vec::new();
        for (i, piece) in data.chunks(1024).enumerate() {
            let last = i == 2;
            key.encrypt_chunk_into(i as u64, last, piece, &mut ct)
                .expect("enc");
            assert_eq!(ct, key.encrypt_chunk(i as u64, last, piece).expect("enc"));
            let mut in_place = piece.to_vec();
            in_place.extend_from_slice(&[0xee; TAG_LEN]);
            key.encrypt_chunk_in_place(i as u64, last, &mut in_place)
                .expect("in place");
            assert_eq!(in_place, ct);
            key.open_chunk_into(i as u64, &ct, &mut pt).expect("open");
            assert_eq!(pt, piece);
        }
        ct[0] ^= 1;
        assert_eq!(
            key.decrypt_chunk_into(2, true, &ct, &mut pt),
            Err(BlobError::DecryptionFailed)
        );
        assert!(pt.is_empty(), "no unauthenticated plaintext is left");
        assert_eq!(
            key.encrypt_chunk_in_place(0, false, &mut [0; TAG_LEN - 1]),
            Err(BlobError::Crypto)
        );
        // A buffer holding an earlier chunk's plaintext is emptied by a failure too.
        let good = key.encrypt_chunk(0, false, &data[..1024]).expect("enc");
        key.decrypt_chunk_into(0, false, &good, &mut pt)
            .expect("open");
        assert_eq!(pt, &data[..1024]);
        assert_eq!(
            key.decrypt_chunk_into(0, false, &[0; 15], &mut pt),
            Err(BlobError::DecryptionFailed)
        );
        assert!(pt.is_empty(), "nothing is left after a short ciphertext");
        assert!(matches!(
            key.open_chunk_into(0, &ct, &mut pt),
            Err(BlobError::BadChunkSize { index: 0, .. })
        ));
        assert_eq!(
            key.open_chunk_into(3, &ct, &mut pt),
            Err(BlobError::TrailingData)
        );
    }

    #[test]
    fn file_key_zeroize_and_debug() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let mut k = FileKey::generate(&mut rng);
        assert_ne!(k.as_bytes(), &[0; 32]);
        assert_eq!(format!("{k:?}"), "FileKey(<redacted>)");
        k.zeroize();
        assert_eq!(k.as_bytes(), &[0; 32]);
        assert!(FileKey::from_slice(&[1; 31]).is_none());
    }
}
