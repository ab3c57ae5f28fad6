//! The signed JSON envelope (SNOOP §3.3), carried in kind-1 frames between nodes.
//!
//! Outer: `{"message": "<inner JSON as a string>", "signature": "<base64url>"}`.
//! Inner: `{"meta": {"method", "args", "id", "to", "session", "message_id", "timestamp", "nonce",
//! "payload_type", "extra"}, "payload": ...}`.
//!
//! The RSA-PSS-SHA256 signature covers the exact UTF-8 bytes of the inner string, so no JSON
//! canonicalisation is needed: the receiver verifies the string it got, then parses it.
//!
//! * Sending: build a [`Meta`] with [`Meta::new`], then [`seal`] it with the payload and send
//!   [`Envelope::to_bytes`] in a [`FrameKind::Envelope`](super::frame::FrameKind::Envelope) frame.
//! * Receiving: keep one [`Opener`] per session (it owns the [`ReplayCache`]) and call
//!   [`Opener::open`] with the TLS peer's [`PartyId`] and key. It checks, in this order: size,
//!   parse, `meta.id` equals the TLS peer, signature, session, recipient, timestamp within the skew
//!   window, and `(sender, nonce)` unseen in the window; only a message that passes every check is
//!   recorded in the replay cache.

use serde::{Deserialize, Serialize};

use super::frame::DEFAULT_MAX_FRAME;
use super::replay::{DEFAULT_MAX_ENTRIES, NONCE_LEN, ReplayCache, ReplayError};
use crate::encoding::{b64u, b64u_decode};
use crate::pki::{PartyId, PrivateKey, PublicKey};

/// Default allowed clock skew either side of `now`: 5 minutes.
pub const DEFAULT_SKEW_MS: i64 = 5 * 60 * 1000;

/// Longest accepted `method`, `session` or `payload_type` string.
pub const MAX_SHORT_FIELD: usize = 64;

/// Longest accepted `message_id`.
pub const MAX_MESSAGE_ID: usize = 256;

/// Longest accepted signature (an RSA-8192 signature).
pub const MAX_SIGNATURE_BYTES: usize = 1024;

/// Envelope errors. Messages are short and never echo attacker content at length.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The envelope exceeds the size limit.
    #[error("envelope of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// size received
        len: usize,
        /// limit in force
        max: usize,
    },
    /// Not a well-formed envelope (outer or inner JSON, field bounds, encodings).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// `meta.id` is not the authenticated TLS peer.
    #[error("sender {claimed:?} is not the tls peer {peer:?}")]
    SenderMismatch {
        /// `meta.id` as claimed
        claimed: PartyId,
        /// the TLS peer
        peer: PartyId,
    },
    /// The signature does not verify under the peer's key.
    #[error("bad envelope signature")]
    BadSignature,
    /// The message belongs to another session.
    #[error("message for another session")]
    WrongSession,
    /// The message is addressed to another party.
    #[error("message addressed to another party")]
    WrongRecipient,
    /// The timestamp is outside the allowed skew window.
    #[error("stale message: timestamp {timestamp} is outside the window around {now}")]
    Stale {
        /// `meta.timestamp`
        timestamp: i64,
        /// the receiver's clock
        now: i64,
    },
    /// `(sender, nonce)` was already seen inside the window.
    #[error("replayed message")]
    Replay,
    /// The replay cache is full of in-window entries (the message is refused, not forgotten).
    #[error("replay cache full")]
    ReplayCacheFull,
    /// Local misuse: the key does not belong to the party named as sender / peer.
    #[error("key does not match the party id")]
    KeyMismatch,
    /// Local failure: signing or serialising failed.
    #[error("sealing failed")]
    Seal,
}

/// Truncates an error text that may contain attacker input.
pub(crate) fn short(e: impl std::fmt::Display) -> EnvelopeError {
    let mut s = e.to_string();
    if s.len() > 120 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    EnvelopeError::Malformed(s)
}

/// Message metadata: who, to whom, what, when, and a nonce for replay detection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// The method, for example `smc/msg` or `post/blob`.
    pub method: String,
    /// Method arguments (JSON; `null` when none).
    #[serde(default)]
    pub args: serde_json::Value,
    /// The sender's [`PartyId`]; must equal the TLS peer.
    pub id: PartyId,
    /// The recipient, or `null` for a broadcast.
    pub to: Option<PartyId>,
    /// The session id.
    pub session: String,
    /// Application message id (for example a round or an SMC message id).
    pub message_id: String,
    /// Sender's clock, unix milliseconds.
    pub timestamp: i64,
    /// 16 random bytes, base64url.
    #[serde(with = "crate::encoding::array_b64u")]
    pub nonce: [u8; NONCE_LEN],
    /// How to read `payload` (for example `json` or `blob-header`).
    pub payload_type: String,
    /// Free-form extension data (JSON; `null` when none).
    #[serde(default)]
    pub extra: serde_json::Value,
}

impl Meta {
    /// Metadata for a JSON payload with no args or extra and a fresh random nonce.
    pub fn new(
        method: &str,
        session: &str,
        message_id: &str,
        sender: PartyId,
        to: Option<PartyId>,
        now_ms: i64,
        rng: &mut impl rand::CryptoRng,
    ) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        Self {
            method: method.to_string(),
            args: serde_json::Value::Null,
            id: sender,
            to,
            session: session.to_string(),
            message_id: message_id.to_string(),
            timestamp: now_ms,
            nonce,
            payload_type: "json".to_string(),
            extra: serde_json::Value::Null,
        }
    }

    /// Sets `args`.
    pub fn with_args(mut self, args: serde_json::Value) -> Self {
        self.args = args;
        self
    }

    /// Sets `payload_type`.
    pub fn with_payload_type(mut self, payload_type: &str) -> Self {
        self.payload_type = payload_type.to_string();
        self
    }

    /// Sets `extra`.
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.extra = extra;
        self
    }

    fn check_bounds(&self) -> Result<(), EnvelopeError> {
        let too_long = |what: &str| EnvelopeError::Malformed(format!("{what} too long"));
        if self.method.len() > MAX_SHORT_FIELD {
            return Err(too_long("method"));
        }
        if self.session.len() > MAX_SHORT_FIELD {
            return Err(too_long("session"));
        }
        if self.payload_type.len() > MAX_SHORT_FIELD {
            return Err(too_long("payload_type"));
        }
        if self.message_id.len() > MAX_MESSAGE_ID {
            return Err(too_long("message_id"));
        }
        Ok(())
    }
}

/// The signed content: metadata and payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inner {
    /// Metadata.
    pub meta: Meta,
    /// The payload (any JSON).
    pub payload: serde_json::Value,
}

impl Inner {
    /// The payload deserialised as `T`.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        T::deserialize(&self.payload).map_err(short)
    }
}

/// The outer envelope as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The inner JSON, as a string (the signed bytes).
    pub message: String,
    /// Base64url RSA-PSS-SHA256 signature over the UTF-8 bytes of `message`.
    pub signature: String,
}

impl Envelope {
    /// The JSON bytes to put in a frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising two strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Signs `payload` with `meta` under `key`. `meta.id` must be `key`'s party id.
pub fn seal(
    key: &PrivateKey,
    meta: Meta,
    payload: serde_json::Value,
) -> Result<Envelope, EnvelopeError> {
    if meta.id != key.public_key().party_id() {
        return Err(EnvelopeError::KeyMismatch);
    }
    let message = encode_inner(meta, payload)?;
    let sig = key
        .sign_pss(message.as_bytes())
        .map_err(|_| EnvelopeError::Seal)?;
    Ok(Envelope {
        message,
        signature: b64u(&sig),
    })
}

/// The inner JSON string of `meta` and `payload` (the bytes a signature covers), after checking
/// the field bounds.
pub(crate) fn encode_inner(
    meta: Meta,
    payload: serde_json::Value,
) -> Result<String, EnvelopeError> {
    meta.check_bounds()?;
    serde_json::to_string(&Inner { meta, payload }).map_err(|_| EnvelopeError::Seal)
}

/// Parses an inner JSON string and checks its field bounds.
pub(crate) fn parse_inner(message: &str) -> Result<Inner, EnvelopeError> {
    let inner: Inner = serde_json::from_str(message).map_err(short)?;
    inner.meta.check_bounds()?;
    Ok(inner)
}

/// Parses an envelope without verifying it: returns the inner message and the raw signature.
///
/// Exposed for tooling and fuzzing; receivers use [`Opener::open`].
pub fn parse(bytes: &[u8]) -> Result<(Envelope, Inner, Vec<u8>), EnvelopeError> {
    let env: Envelope = serde_json::from_slice(bytes).map_err(short)?;
    let inner = parse_inner(&env.message)?;
    let sig = b64u_decode(&env.signature, MAX_SIGNATURE_BYTES).map_err(short)?;
    Ok((env, inner, sig))
}

/// The check before the signature: every message claims the TLS peer as sender, and `peer_key`
/// is that peer's key.
pub(crate) fn check_sender(
    inners: &[Inner],
    peer: &PartyId,
    peer_key: &PublicKey,
) -> Result<(), EnvelopeError> {
    if let Some(i) = inners.iter().find(|i| i.meta.id != *peer) {
        return Err(EnvelopeError::SenderMismatch {
            claimed: i.meta.id,
            peer: *peer,
        });
    }
    if peer_key.party_id() != *peer {
        return Err(EnvelopeError::KeyMismatch);
    }
    Ok(())
}

/// Verifies and accepts envelopes for one session; owns the replay cache.
#[derive(Debug)]
pub struct Opener {
    /// The session this receiver serves.
    pub session: String,
    /// This receiver's party id: a message with `to` set to anyone else is refused. `None` skips
    /// the check.
    pub me: Option<PartyId>,
    /// Allowed clock skew either side of `now`, in milliseconds.
    pub skew_ms: i64,
    /// Remembered `(sender, nonce)` pairs.
    pub replay: ReplayCache,
    /// Maximum envelope size in bytes.
    pub max_len: usize,
}

impl Opener {
    /// An opener for `session` (receiver `me`) with the default skew (±5 min), replay cache size
    /// and maximum size (the frame maximum).
    pub fn new(session: &str, me: Option<PartyId>) -> Self {
        Self::with_limits(
            session,
            me,
            DEFAULT_SKEW_MS,
            DEFAULT_MAX_ENTRIES,
            DEFAULT_MAX_FRAME,
        )
    }

    /// An opener with explicit limits.
    pub fn with_limits(
        session: &str,
        me: Option<PartyId>,
        skew_ms: i64,
        max_entries: usize,
        max_len: usize,
    ) -> Self {
        Self {
            session: session.to_string(),
            me,
            skew_ms,
            replay: ReplayCache::new(skew_ms, max_entries),
            max_len,
        }
    }

    /// Checks an envelope from the TLS peer `peer` (whose certificate key is `peer_key`), in order:
    /// size, parse, sender = peer, signature, session, recipient, timestamp, replay. Records the
    /// nonce only when every check passed.
    pub fn open(
        &mut self,
        bytes: &[u8],
        peer: &PartyId,
        peer_key: &PublicKey,
        now_ms: i64,
    ) -> Result<Inner, EnvelopeError> {
        self.check_size(bytes)?;
        let (env, inner, sig) = parse(bytes)?;
        check_sender(std::slice::from_ref(&inner), peer, peer_key)?;
        peer_key
            .verify_pss(env.message.as_bytes(), &sig)
            .map_err(|_| EnvelopeError::BadSignature)?;
        self.accept(inner, now_ms)
    }

    /// The first check: the size limit.
    pub(crate) fn check_size(&self, bytes: &[u8]) -> Result<(), EnvelopeError> {
        if bytes.len() > self.max_len {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: self.max_len,
            });
        }
        Ok(())
    }

    /// The checks after the signature, for one signed inner message: session, recipient,
    /// timestamp, then replay (recording the nonce only when everything passed).
    pub(crate) fn accept(&mut self, inner: Inner, now_ms: i64) -> Result<Inner, EnvelopeError> {
        if inner.meta.session != self.session {
            return Err(EnvelopeError::WrongSession);
        }
        if let (Some(to), Some(me)) = (inner.meta.to, self.me)
            && to != me
        {
            return Err(EnvelopeError::WrongRecipient);
        }
        let ts = inner.meta.timestamp;
        if ts.abs_diff(now_ms) > self.skew_ms.unsigned_abs() {
            return Err(EnvelopeError::Stale {
                timestamp: ts,
                now: now_ms,
            });
        }
        self.replay
            .record(&inner.meta.id, &inner.meta.nonce, ts, now_ms)
            .map_err(|e| match e {
                ReplayError::Replay => EnvelopeError::Replay,
                ReplayError::Full => EnvelopeError::ReplayCacheFull,
                _ => EnvelopeError::Stale {
                    timestamp: ts,
                    now: now_ms,
                },
            })?;
        Ok(inner)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    use crate::msg::test_keys as keys;

    fn sealed(rng: &mut ChaCha20Rng, now: i64, session: &str) -> Vec<u8> {
        let (a, b) = keys();
        let meta = Meta::new(
            "smc/msg",
            session,
            "m1",
            a.public_key().party_id(),
            Some(b.public_key().party_id()),
            now,
            rng,
        );
        seal(a, meta, json!({"x": 1})).expect("seal").to_bytes()
    }

    fn opener() -> Opener {
        Opener::new("s1", Some(keys().1.public_key().party_id()))
    }

    fn open(o: &mut Opener, bytes: &[u8], now: i64) -> Result<Inner, EnvelopeError> {
        let a = keys().0.public_key();
        o.open(bytes, &a.party_id(), a, now)
    }

    #[test]
    fn round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let bytes = sealed(&mut rng, NOW, "s1");
        let inner = open(&mut opener(), &bytes, NOW + 1000).expect("open");
        assert_eq!(inner.payload, json!({"x": 1}));
        assert_eq!(inner.meta.method, "smc/msg");
        assert_eq!(inner.payload_as::<serde_json::Value>(), Ok(json!({"x": 1})));
    }

    #[test]
    fn too_large() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let bytes = sealed(&mut rng, NOW, "s1");
        let mut o = opener();
        o.max_len = bytes.len() - 1;
        assert!(matches!(
            open(&mut o, &bytes, NOW),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[test]
    fn malformed_cases_and_no_long_echo() {
        let mut o = opener();
        let long = "A".repeat(5000);
        let cases: Vec<Vec<u8>> = vec![
            b"not json".to_vec(),
            b"{}".to_vec(),
            br#"{"message":"{}","signature":""}"#.to_vec(),
            br#"{"message":"x","signature":"AA","more":1}"#.to_vec(),
            format!(r#"{{"message":"x","signature":"AA","{long}":1}}"#).into_bytes(),
        ];
        for c in cases {
            match open(&mut o, &c, NOW) {
                Err(EnvelopeError::Malformed(m)) => assert!(m.len() < 200, "{m}"),
                other => panic!("expected malformed, got {other:?}"),
            }
        }
        // An unknown inner field and a short nonce are malformed too.
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let bytes = sealed(&mut rng, NOW, "s1");
        let env: Envelope = serde_json::from_slice(&bytes).expect("env");
        for (from, to) in [
            (r#""payload":"#, r#""bogus":1,"payload":"#),
            ("\"nonce\":\"", "\"nonce\":\"AA"),
        ] {
            let tampered = Envelope {
                message: env.message.replacen(from, to, 1),
                signature: env.signature.clone(),
            };
            assert!(matches!(
                open(&mut o, &tampered.to_bytes(), NOW),
                Err(EnvelopeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn sender_mismatch_before_signature() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let bytes = sealed(&mut rng, NOW, "s1");
        let b = keys().1.public_key();
        // Claimed sender a, TLS peer b: refused as a mismatch even though the signature is a's.
        let r = opener().open(&bytes, &b.party_id(), b, NOW);
        assert!(matches!(r, Err(EnvelopeError::SenderMismatch { .. })));
    }

    #[test]
    fn bad_signature_and_tampered_message() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let bytes = sealed(&mut rng, NOW, "s1");
        let env: Envelope = serde_json::from_slice(&bytes).expect("env");
        let tampered = Envelope {
            message: env.message.replace(r#""x":1"#, r#""x":2"#),
            signature: env.signature.clone(),
        };
        assert_eq!(
            open(&mut opener(), &tampered.to_bytes(), NOW).err(),
            Some(EnvelopeError::BadSignature)
        );
        let mut sig = b64u_decode(&env.signature, 1024).expect("sig");
        sig[0] ^= 1;
        let badsig = Envelope {
            message: env.message,
            signature: b64u(&sig),
        };
        assert_eq!(
            open(&mut opener(), &badsig.to_bytes(), NOW).err(),
            Some(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn wrong_session_and_recipient() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let bytes = sealed(&mut rng, NOW, "s2");
        assert_eq!(
            open(&mut opener(), &bytes, NOW).err(),
            Some(EnvelopeError::WrongSession)
        );
        let bytes = sealed(&mut rng, NOW, "s1");
        let mut o = Opener::new("s1", Some(PartyId([9; 32])));
        assert_eq!(
            open(&mut o, &bytes, NOW).err(),
            Some(EnvelopeError::WrongRecipient)
        );
        // A broadcast (to = null) is for everyone.
        let (a, _) = keys();
        let meta = Meta::new(
            "smc/msg",
            "s1",
            "b",
            a.public_key().party_id(),
            None,
            NOW,
            &mut rng,
        );
        let bytes = seal(a, meta, json!(null)).expect("seal").to_bytes();
        open(&mut o, &bytes, NOW).expect("broadcast accepted");
    }

    #[test]
    fn stale_both_directions_edges_accepted() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for (ts, ok) in [
            (NOW - DEFAULT_SKEW_MS, true),
            (NOW + DEFAULT_SKEW_MS, true),
            (NOW - DEFAULT_SKEW_MS - 1, false),
            (NOW + DEFAULT_SKEW_MS + 1, false),
        ] {
            let bytes = sealed(&mut rng, ts, "s1");
            let r = open(&mut opener(), &bytes, NOW);
            if ok {
                r.expect("inside window");
            } else {
                assert!(matches!(r, Err(EnvelopeError::Stale { .. })), "{ts}");
            }
        }
    }

    #[test]
    fn replay_and_order() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let bytes = sealed(&mut rng, NOW, "s1");
        let mut o = opener();
        // A bad-signature copy first: refused, and it must not poison the nonce cache.
        let env: Envelope = serde_json::from_slice(&bytes).expect("env");
        let mut sig = b64u_decode(&env.signature, 1024).expect("sig");
        sig[5] ^= 0x40;
        let forged = Envelope {
            message: env.message.clone(),
            signature: b64u(&sig),
        }
        .to_bytes();
        assert_eq!(
            open(&mut o, &forged, NOW).err(),
            Some(EnvelopeError::BadSignature)
        );
        assert!(o.replay.is_empty());
        open(&mut o, &bytes, NOW).expect("genuine accepted");
        assert_eq!(
            open(&mut o, &bytes, NOW + 5).err(),
            Some(EnvelopeError::Replay)
        );
        // A replayed message with a bad signature is BadSignature, not Replay.
        assert_eq!(
            open(&mut o, &forged, NOW).err(),
            Some(EnvelopeError::BadSignature)
        );
        // A replay that is also stale is Stale (timestamp is checked before the cache).
        assert!(matches!(
            open(&mut o, &bytes, NOW + DEFAULT_SKEW_MS + 1),
            Err(EnvelopeError::Stale { .. })
        ));
        // A stale or wrong-session message does not enter the cache either.
        let before = o.replay.len();
        let other = sealed(&mut rng, NOW, "s2");
        assert!(open(&mut o, &other, NOW).is_err());
        assert_eq!(o.replay.len(), before);
    }

    #[test]
    fn cache_full_refuses() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let me = Some(keys().1.public_key().party_id());
        let mut o = Opener::with_limits("s1", me, DEFAULT_SKEW_MS, 1, 1 << 20);
        open(&mut o, &sealed(&mut rng, NOW, "s1"), NOW).expect("first");
        assert_eq!(
            open(&mut o, &sealed(&mut rng, NOW, "s1"), NOW).err(),
            Some(EnvelopeError::ReplayCacheFull)
        );
    }

    #[test]
    fn seal_refuses_foreign_key_and_key_mismatch_on_open() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let (a, b) = keys();
        let meta = Meta::new(
            "m",
            "s1",
            "i",
            b.public_key().party_id(),
            None,
            NOW,
            &mut rng,
        );
        assert_eq!(
            seal(a, meta, json!(1)).err(),
            Some(EnvelopeError::KeyMismatch)
        );
        let bytes = sealed(&mut rng, NOW, "s1");
        let r = opener().open(&bytes, &a.public_key().party_id(), b.public_key(), NOW);
        assert_eq!(r.err(), Some(EnvelopeError::KeyMismatch));
    }
}
