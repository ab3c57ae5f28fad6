//! The blob header: what a blob is, who sent it, and the file key wrapped for each recipient.
//!
//! JSON, carried as the payload of a signed `post/blob` envelope (payload type
//! [`PAYLOAD_TYPE`]):
//!
//! ```json
//! {"version": 1, "blob_id": "<32 hex>", "name": "report.csv", "size": 2049, "chunk_size": 65536,
//!  "nonce": "<16 bytes b64u>", "sha256": "<64 hex>", "sender": "<party id>", "created_ms": 1700000000000,
//!  "recipients": [{"party_id": "<party id>", "wrapped_key": "<RSA-OAEP-SHA256(K), b64u>"}]}
//! ```
//!
//! Unknown fields are refused; an unknown `version` is [`BlobError::UnknownVersion`] (checked before
//! the rest of the shape, so a future format is reported as such, not as malformed).
//!
//! # Associated data
//! Every chunk is authenticated with the SHA-256 of the header's canonical bytes *without* the
//! recipients list ([`BlobHeader::aad`]): the recipients list may differ between copies of the
//! same blob (re-wrapped for a new party) but every other field is bound to every chunk. The
//! canonical bytes are binary, fixed-width or length-prefixed, so no JSON canonicalisation is
//! involved:
//!
//! ```text
//! "caucus blob header v1" 0x00 ‖ version u32 ‖ blob_id [16] ‖ name_len u64 ‖ name ‖ size u64 ‖
//! chunk_size u32 ‖ nonce [16] ‖ sha256 [32] ‖ sender [32] ‖ created_ms i64      (all big-endian)
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::BlobError;
use super::stream::{ChunkLayout, FileKey, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, NONCE_LEN};
use crate::pki::{PartyId, PrivateKey, PublicKey};

/// The only header version this code writes and reads.
pub const VERSION: u32 = 1;

/// `payload_type` of the envelope carrying a header.
pub const PAYLOAD_TYPE: &str = "blob-header";

/// Longest blob name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Most recipients per blob.
pub const MAX_RECIPIENTS: usize = 64;

/// Longest wrapped key (an RSA-8192 ciphertext).
pub const MAX_WRAPPED_KEY: usize = 1024;

/// Default maximum blob size: 64 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 30;

/// A blob's random 16-byte id, shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlobId(#[serde(with = "crate::encoding::array_hex")] pub [u8; 16]);

impl BlobId {
    /// A fresh random id.
    pub fn random(rng: &mut impl rand::CryptoRng) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// Lowercase hex (safe as a file name).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

impl FromStr for BlobId {
    type Err = BlobError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BlobError::Malformed("blob id is not 32 lowercase hex digits".into());
        if s.len() != 32
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

/// One recipient: its party id and the file key wrapped for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// The recipient's [`PartyId`].
    pub party_id: PartyId,
    /// RSA-OAEP-SHA256 of the file key under the recipient's public key.
    #[serde(with = "crate::encoding::bytes_b64u")]
    pub wrapped_key: Vec<u8>,
}

/// Receiver-side limits on headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLimits {
    /// Largest accepted `size`.
    pub max_size: u64,
}

impl Default for BlobLimits {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

impl BlobLimits {
    /// No size limit (for content already held in memory).
    pub fn unbounded() -> Self {
        Self { max_size: u64::MAX }
    }
}

/// The blob header (version 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobHeader {
    /// Format version, [`VERSION`].
    pub version: u32,
    /// Random blob id.
    pub blob_id: BlobId,
    /// The sender's name for the content (a file name: no path separators or control characters).
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Plaintext bytes per chunk (the last chunk may be shorter).
    pub chunk_size: u32,
    /// HKDF salt for the payload key (16 random bytes, base64url).
    #[serde(with = "crate::encoding::array_b64u")]
    pub nonce: [u8; NONCE_LEN],
    /// SHA-256 of the plaintext, lowercase hex.
    #[serde(with = "crate::encoding::array_hex")]
    pub sha256: [u8; 32],
    /// The sender's [`PartyId`].
    pub sender: PartyId,
    /// Creation time, unix milliseconds (sender's clock).
    pub created_ms: i64,
    /// The file key wrapped for each recipient.
    pub recipients: Vec<Recipient>,
}

/// Just the version, read before the full shape.
#[derive(Deserialize)]
struct Probe {
    version: u64,
}

impl BlobHeader {
    /// Makes a header for new content: fresh blob id, nonce and file key, the key wrapped for
    /// every recipient. Returns the header and the file key for the [`StreamWriter`](super::StreamWriter).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        name: &str,
        size: u64,
        sha256: [u8; 32],
        sender: PartyId,
        recipients: &[PublicKey],
        chunk_size: u32,
        now_ms: i64,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<(Self, FileKey), BlobError> {
        let key = FileKey::generate(rng);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let blob_id = BlobId::random(rng);
        if recipients.len() > MAX_RECIPIENTS {
            return Err(BlobError::InvalidHeader("too many recipients"));
        }
        let recipients = recipients
            .iter()
            .map(|pk| {
                Ok(Recipient {
                    party_id: pk.party_id(),
                    wrapped_key: pk
                        .oaep_encrypt(key.as_bytes())
                        .map_err(|_| BlobError::WrapFailed)?,
                })
            })
            .collect::<Result<Vec<_>, BlobError>>()?;
        let header = Self {
            version: VERSION,
            blob_id,
            name: name.to_string(),
            size,
            chunk_size,
            nonce,
            sha256,
            sender,
            created_ms: now_ms,
            recipients,
        };
        header.validate(&BlobLimits::unbounded())?;
        Ok((header, key))
    }

    /// Parses and validates a header from a JSON value (an envelope payload).
    pub fn from_value(v: &serde_json::Value, limits: &BlobLimits) -> Result<Self, BlobError> {
        let probe = Probe::deserialize(v).map_err(|e| malformed(&e))?;
        if probe.version != u64::from(VERSION) {
            return Err(BlobError::UnknownVersion(probe.version));
        }
        let h = Self::deserialize(v).map_err(|e| malformed(&e))?;
        h.validate(limits)?;
        Ok(h)
    }

    /// Parses and validates a header from JSON bytes.
    pub fn from_slice(bytes: &[u8], limits: &BlobLimits) -> Result<Self, BlobError> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
        Self::from_value(&v, limits)
    }

    /// Parses a header from a received envelope: its payload, validated, with `sender` equal to the
    /// envelope's (already authenticated) sender.
    pub fn from_inner(
        inner: &crate::msg::envelope::Inner,
        limits: &BlobLimits,
    ) -> Result<Self, BlobError> {
        let h = Self::from_value(&inner.payload, limits)?;
        if h.sender != inner.meta.id {
            return Err(BlobError::SenderMismatch);
        }
        Ok(h)
    }

    /// The header as a JSON value (an envelope payload).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The header as JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks every bound: version, name, size against `limits`, chunk size, recipients (1 to
    /// [`MAX_RECIPIENTS`], distinct, wrapped keys of sane length).
    pub fn validate(&self, limits: &BlobLimits) -> Result<(), BlobError> {
        if self.version != VERSION {
            return Err(BlobError::UnknownVersion(u64::from(self.version)));
        }
        check_blob_name(&self.name)?;
        if self.size > limits.max_size {
            return Err(BlobError::TooLarge {
                size: self.size,
                max: limits.max_size,
            });
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(BlobError::InvalidHeader("chunk size out of range"));
        }
        if self.recipients.is_empty() {
            return Err(BlobError::InvalidHeader("no recipients"));
        }
        if self.recipients.len() > MAX_RECIPIENTS {
            return Err(BlobError::InvalidHeader("too many recipients"));
        }
        let mut ids: Vec<&PartyId> = self.recipients.iter().map(|r| &r.party_id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() != self.recipients.len() {
            return Err(BlobError::InvalidHeader("duplicate recipient"));
        }
        if self
            .recipients
            .iter()
            .any(|r| r.wrapped_key.is_empty() || r.wrapped_key.len() > MAX_WRAPPED_KEY)
        {
            return Err(BlobError::InvalidHeader("wrapped key length"));
        }
        Ok(())
    }

    /// How the content is cut into chunks.
    pub fn layout(&self) -> ChunkLayout {
        ChunkLayout {
            size: self.size,
            chunk_size: self.chunk_size,
        }
    }

    /// Total ciphertext bytes (all chunks with their tags).
    pub fn ciphertext_len(&self) -> u64 {
        self.layout().ciphertext_len()
    }

    /// Whether `party` can decrypt.
    pub fn is_recipient(&self, party: &PartyId) -> bool {
        self.recipients.iter().any(|r| &r.party_id == party)
    }

    /// Unwraps the file key with this party's private key.
    pub fn unwrap_key(&self, me: &PrivateKey) -> Result<FileKey, BlobError> {
        let my_id = me.public_key().party_id();
        let entry = self
            .recipients
            .iter()
            .find(|r| r.party_id == my_id)
            .ok_or(BlobError::NotARecipient)?;
        let raw = me
            .oaep_decrypt(&entry.wrapped_key)
            .map_err(|_| BlobError::DecryptionFailed)?;
        FileKey::from_slice(&raw).ok_or(BlobError::DecryptionFailed)
    }

    /// The canonical header bytes without the recipients (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(200 + self.name.len());
        b.extend_from_slice(b"caucus blob header v1\0");
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&self.blob_id.0);
        b.extend_from_slice(&(self.name.len() as u64).to_be_bytes());
        b.extend_from_slice(self.name.as_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.chunk_size.to_be_bytes());
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&self.sha256);
        b.extend_from_slice(&self.sender.0);
        b.extend_from_slice(&self.created_ms.to_be_bytes());
        b
    }

    /// The associated data of every chunk: SHA-256 of [`canonical_bytes`](Self::canonical_bytes).
    pub fn aad(&self) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.canonical_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

/// Checks a blob name: 1 to 255 bytes, no control characters, no `/` or `\`, not `.` or `..`.
pub fn check_blob_name(name: &str) -> Result<(), BlobError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(BlobError::InvalidHeader("name must be 1-255 bytes"));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(BlobError::InvalidHeader("name is not a plain file name"));
    }
    Ok(())
}

fn malformed(e: &impl fmt::Display) -> BlobError {
    let s: String = e.to_string().chars().take(120).collect();
    BlobError::Malformed(s)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use serde_json::json;

    use super::*;

    fn key(i: usize) -> PrivateKey {
        let pems = [
            include_str!("../../tests/vectors/test_key_a.pem"),
            include_str!("../../tests/vectors/test_key_b.pem"),
        ];
        PrivateKey::from_pkcs8_pem(pems[i]).expect("key")
    }

    fn header() -> (BlobHeader, PrivateKey) {
        let b = key(1);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (h, _) = BlobHeader::build(
            "report.csv",
            2049,
            [3; 32],
            key(0).public_key().party_id(),
            &[b.public_key().clone()],
            1024,
            1_700_000_000_000,
            &mut rng,
        )
        .expect("build");
        (h, b)
    }

    #[test]
    fn json_round_trip_and_layout() {
        let (h, b) = header();
        let again = BlobHeader::from_slice(&h.to_vec(), &BlobLimits::default()).expect("parse");
        assert_eq!(again, h);
        assert_eq!(h.layout().count(), 3);
        assert_eq!(h.ciphertext_len(), 2049 + 3 * 16);
        assert!(h.is_recipient(&b.public_key().party_id()));
        let k = h.unwrap_key(&b).expect("unwrap");
        assert_eq!(format!("{k:?}"), "FileKey(<redacted>)");
        assert_eq!(h.blob_id.to_hex().parse::<BlobId>().expect("id"), h.blob_id);
        assert!("ABCD".parse::<BlobId>().is_err());
    }

    #[test]
    fn refusals() {
        let (h, b) = header();
        let lim = BlobLimits::default();
        let mut v = h.to_value();
        v["version"] = json!(2);
        v["future_field"] = json!(true);
        assert_eq!(
            BlobHeader::from_value(&v, &lim).err(),
            Some(BlobError::UnknownVersion(2))
        );
        let mut v = h.to_value();
        v["extra"] = json!(1);
        assert!(matches!(
            BlobHeader::from_value(&v, &lim),
            Err(BlobError::Malformed(_))
        ));
        let mut v = h.to_value();
        v["sha256"] = json!("AB");
        assert!(matches!(
            BlobHeader::from_value(&v, &lim),
            Err(BlobError::Malformed(_))
        ));
        assert!(matches!(
            BlobHeader::from_slice(b"[1,2", &lim),
            Err(BlobError::Malformed(_))
        ));

        let bad = |f: &dyn Fn(&mut BlobHeader)| {
            let mut x = h.clone();
            f(&mut x);
            BlobHeader::from_value(&x.to_value(), &lim).err()
        };
        for name in ["", "a/b", "..", "a\nb", "a\\b"] {
            assert!(matches!(
                bad(&|x| x.name = name.into()),
                Some(BlobError::InvalidHeader(_))
            ));
        }
        assert!(
            bad(&|x| x.name = "é".repeat(127)).is_none(),
            "254 bytes is fine"
        );
        assert!(
            bad(&|x| x.name = "é".repeat(128)).is_some(),
            "256 bytes is not"
        );
        assert!(matches!(
            bad(&|x| x.chunk_size = 512),
            Some(BlobError::InvalidHeader(_))
        ));
        assert!(matches!(
            bad(&|x| x.chunk_size = (1 << 20) + 1),
            Some(BlobError::InvalidHeader(_))
        ));
        assert!(bad(&|x| x.chunk_size = 1 << 20).is_none());
        assert!(matches!(
            bad(&|x| x.recipients.clear()),
            Some(BlobError::InvalidHeader(_))
        ));
        assert!(matches!(
            bad(&|x| x.recipients.push(x.recipients[0].clone())),
            Some(BlobError::InvalidHeader(_))
        ));
        assert!(matches!(
            bad(&|x| {
                let r = x.recipients[0].clone();
                x.recipients = (0..65u8)
                    .map(|i| Recipient {
                        party_id: PartyId([i; 32]),
                        wrapped_key: r.wrapped_key.clone(),
                    })
                    .collect();
            }),
            Some(BlobError::InvalidHeader(_))
        ));
        assert!(matches!(
            bad(&|x| x.recipients[0].wrapped_key = vec![1; 1025]),
            Some(BlobError::InvalidHeader(_))
        ));
        let small = BlobLimits { max_size: 2048 };
        assert_eq!(
            BlobHeader::from_value(&h.to_value(), &small).err(),
            Some(BlobError::TooLarge {
                size: 2049,
                max: 2048
            })
        );
        // A corrupted wrapped key fails opaquely.
        let mut x = h.clone();
        x.recipients[0].wrapped_key[7] ^= 1;
        assert_eq!(x.unwrap_key(&b).err(), Some(BlobError::DecryptionFailed));
    }

    #[test]
    fn from_inner_checks_sender() {
        let (h, _) = header();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let a = key(0);
        let meta = crate::msg::envelope::Meta::new(
            "post/blob",
            "s1",
            "blob",
            a.public_key().party_id(),
            None,
            0,
            &mut rng,
        )
        .with_payload_type(PAYLOAD_TYPE);
        let mut inner = crate::msg::envelope::Inner {
            meta,
            payload: h.to_value(),
        };
        assert_eq!(
            BlobHeader::from_inner(&inner, &BlobLimits::default()).expect("ok"),
            h
        );
        inner.meta.id = PartyId([1; 32]);
        assert_eq!(
            BlobHeader::from_inner(&inner, &BlobLimits::default()).err(),
            Some(BlobError::SenderMismatch)
        );
    }

    #[test]
    fn aad_binds_every_field_but_recipients() {
        let (h, _) = header();
        let base = h.aad();
        let mut x = h.clone();
        x.recipients.clear();
        assert_eq!(x.aad(), base);
        let muts: [fn(&mut BlobHeader); 8] = [
            |x| x.blob_id.0[0] ^= 1,
            |x| x.name.push('x'),
            |x| x.size += 1,
            |x| x.chunk_size += 1,
            |x| x.nonce[0] ^= 1,
            |x| x.sha256[0] ^= 1,
            |x| x.sender.0[0] ^= 1,
            |x| x.created_ms += 1,
        ];
        for m in muts {
            let mut x = h.clone();
            m(&mut x);
            assert_ne!(x.aad(), base);
        }
    }
}
