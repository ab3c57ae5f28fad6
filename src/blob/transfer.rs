//! The blob transfer protocol's messages (sans-IO): what travels between sender and receiver.
//!
//! Over one authenticated connection from sender to receiver:
//!
//! 1. `post/blob` (signed envelope, payload = [`BlobHeader`](super::BlobHeader)) → the receiver
//!    checks limits, that it is a recipient and the header, and replies with [`Accept`]
//!    (`resume_from` = the number of chunks it already holds durably), with a [`Receipt`] if it
//!    already has the whole blob, or with an error reply `"<code>: <text>"` ([`refusal_text`]).
//! 2. The sender streams chunk frames (kind 3, [`encode_chunk_header`]) from `resume_from` on.
//!    The receiver decrypts and checks each one as it arrives and stops at the first bad one
//!    (error reply to the `post/blob` request).
//! 3. `blob/end` (signed, payload [`End`]) → the receiver checks the chunk count and the
//!    plaintext SHA-256, makes the blob durable (file fsynced, index committed) and only then
//!    replies with a [`Receipt`], signed like every envelope.
//!
//! Replies carry a `kind` field so a reply cannot be taken for another.

use serde::{Deserialize, Serialize};

use super::{BlobError, BlobId};

/// Method of the request carrying the header.
pub const METHOD_POST: &str = "post/blob";
/// Method of the message that ends the chunk stream.
pub const METHOD_END: &str = "blob/end";
/// `kind` of an accept reply.
pub const KIND_ACCEPT: &str = "blob/accept";
/// `kind` of a receipt reply.
pub const KIND_RECEIPT: &str = "blob/receipt";

/// Length of a chunk frame's prefix: blob id (16) ‖ chunk index (u64 BE).
pub const CHUNK_PREFIX_LEN: usize = 24;

/// The receiver's answer to `post/blob`: send chunks from `resume_from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    /// Always [`KIND_ACCEPT`].
    pub kind: String,
    /// The blob.
    pub blob_id: BlobId,
    /// Index of the first chunk to send (chunks before it are durably stored).
    pub resume_from: u64,
}

impl Accept {
    /// An accept for `blob_id` from chunk `resume_from`.
    pub fn new(blob_id: BlobId, resume_from: u64) -> Self {
        Self {
            kind: KIND_ACCEPT.into(),
            blob_id,
            resume_from,
        }
    }
}

/// The end of the chunk stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct End {
    /// The blob.
    pub blob_id: BlobId,
}

/// The receiver's signed statement that the blob is durably stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Always [`KIND_RECEIPT`].
    pub kind: String,
    /// The blob.
    pub blob_id: BlobId,
    /// SHA-256 of the plaintext, as checked by the receiver.
    #[serde(with = "crate::encoding::array_hex")]
    pub sha256: [u8; 32],
    /// Plaintext size.
    pub size: u64,
    /// When the blob became durable (receiver's clock, unix ms).
    pub received_ms: i64,
}

impl Receipt {
    /// A receipt.
    pub fn new(blob_id: BlobId, sha256: [u8; 32], size: u64, received_ms: i64) -> Self {
        Self {
            kind: KIND_RECEIPT.into(),
            blob_id,
            sha256,
            size,
            received_ms,
        }
    }

    /// Checks the receipt is for the blob described by `header`.
    pub fn matches(&self, header: &super::BlobHeader) -> bool {
        self.kind == KIND_RECEIPT
            && self.blob_id == header.blob_id
            && self.sha256 == header.sha256
            && self.size == header.size
    }
}

/// What a reply to `post/blob` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostReply {
    /// Send chunks.
    Accept(Accept),
    /// The receiver already has the whole blob.
    Receipt(Receipt),
}

impl PostReply {
    /// Reads a reply payload; anything but a well-formed accept or receipt is
    /// [`BlobError::Malformed`].
    pub fn from_value(v: &serde_json::Value) -> Result<Self, BlobError> {
        match v.get("kind").and_then(serde_json::Value::as_str) {
            Some(KIND_ACCEPT) => Accept::deserialize(v)
                .map(Self::Accept)
                .map_err(|e| BlobError::Malformed(short(&e))),
            Some(KIND_RECEIPT) => Receipt::deserialize(v)
                .map(Self::Receipt)
                .map_err(|e| BlobError::Malformed(short(&e))),
            _ => Err(BlobError::Malformed("not a blob reply".into())),
        }
    }
}

fn short(e: &impl std::fmt::Display) -> String {
    e.to_string().chars().take(120).collect()
}

/// The 24-byte prefix of chunk frame `index` of blob `id` (the ciphertext follows).
pub fn encode_chunk_header(id: &BlobId, index: u64) -> [u8; CHUNK_PREFIX_LEN] {
    let mut out = [0u8; CHUNK_PREFIX_LEN];
    out[..16].copy_from_slice(&id.0);
    out[16..].copy_from_slice(&index.to_be_bytes());
    out
}

/// Splits a chunk frame body into blob id, chunk index and ciphertext.
pub fn parse_chunk(body: &[u8]) -> Result<(BlobId, u64, &[u8]), BlobError> {
    if body.len() < CHUNK_PREFIX_LEN {
        return Err(BlobError::Malformed(
            "chunk frame shorter than its prefix".into(),
        ));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&body[..16]);
    let mut idx = [0u8; 8];
    idx.copy_from_slice(&body[16..24]);
    Ok((
        BlobId(id),
        u64::from_be_bytes(idx),
        &body[CHUNK_PREFIX_LEN..],
    ))
}

/// The text of an error reply for a refusal: `"<code>: <message>"` (the code first, so the sender
/// can recover it with [`refusal_code`]).
pub fn refusal_text(code: &str, message: &str) -> String {
    format!("{code}: {message}")
}

/// The code at the start of an error reply text, if it has one.
pub fn refusal_code(text: &str) -> Option<&str> {
    let (code, _) = text.split_once(": ")?;
    (!code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    .then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_prefix_round_trip_and_short() {
        let id = BlobId([7; 16]);
        let mut body = encode_chunk_header(&id, 0x0102_0304_0506_0708).to_vec();
        body.extend_from_slice(b"ct");
        let (i, n, ct) = parse_chunk(&body).expect("parse");
        assert_eq!((i, n, ct), (id, 0x0102_0304_0506_0708, &b"ct"[..]));
        assert!(matches!(
            parse_chunk(&body[..23]),
            Err(BlobError::Malformed(_))
        ));
    }

    #[test]
    fn replies_parse_by_kind() {
        let id = BlobId([1; 16]);
        let a = Accept::new(id, 5);
        let v = serde_json::to_value(&a).expect("json");
        assert_eq!(PostReply::from_value(&v).expect("a"), PostReply::Accept(a));
        let r = Receipt::new(id, [2; 32], 10, 99);
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(PostReply::from_value(&v).expect("r"), PostReply::Receipt(r));
        let mut bad = v.clone();
        bad["kind"] = "other".into();
        assert!(PostReply::from_value(&bad).is_err());
        let mut extra = v;
        extra["x"] = 1.into();
        assert!(PostReply::from_value(&extra).is_err());
    }

    #[test]
    fn refusal_codes() {
        let t = refusal_text("too_large", "blob of 5 bytes exceeds the maximum of 4");
        assert_eq!(refusal_code(&t), Some("too_large"));
        assert_eq!(refusal_code("no code here"), None);
        assert_eq!(refusal_code("Bad Code: x"), None);
    }
}
