//! Batch envelopes: several inner messages under one RSA-PSS signature, in kind-4 frames.
//!
//! A node that has several messages queued for the same peer signs them together, so the sender's
//! cost is one RSA signature per batch instead of one per message (group commit, as databases do
//! with fsync). A lone message still travels as an ordinary kind-1 [`Envelope`].
//!
//! Outer: `{"messages": ["<inner JSON>", ...], "signature": "<base64url>"}`; each inner string is
//! exactly what a kind-1 envelope carries. The signature covers
//! `BATCH_CONTEXT ‖ count (4 bytes BE) ‖ for each inner: length (4 bytes BE) ‖ its UTF-8 bytes`,
//! so every inner's exact bytes are signed, in order, with no JSON canonicalisation. The context
//! starts with a byte no JSON text starts with: a batch signature never verifies as a kind-1
//! envelope's, nor the reverse.
//!
//! A receiver checks, in order: size, parse (the outer object and every inner), each `meta.id`
//! equals the TLS peer, the signature; any failure refuses the whole batch. Then each inner on its
//! own: session, recipient, timestamp, replay, exactly as [`Opener::open`] does for one envelope;
//! a failure there refuses that inner only.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::envelope::{
    Envelope, EnvelopeError, Inner, MAX_SIGNATURE_BYTES, Meta, Opener, check_sender, encode_inner,
    parse_inner, short,
};
use crate::encoding::{b64u, b64u_decode};
use crate::pki::{PartyId, PrivateKey, PublicKey};

/// What a batch signature covers before the messages (domain separation).
pub const BATCH_CONTEXT: &[u8] = b"\0caucus/1 envelope batch\0";

/// Most inner messages in one batch.
pub const MAX_BATCH: usize = 256;

/// A batch as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The inner JSON strings, in sending order.
    pub messages: Vec<String>,
    /// Base64url RSA-PSS-SHA256 signature over [`signed_bytes`] of `messages`.
    pub signature: String,
}

#[derive(Serialize)]
struct BatchRef<'a> {
    messages: &'a [&'a str],
    signature: &'a str,
}

/// An inner message encoded (its field bounds checked) and waiting to be signed, alone or in a
/// batch. Cloning is cheap (the text is shared).
#[derive(Clone)]
pub struct Unsigned {
    sender: PartyId,
    nonce: [u8; 16],
    message: Arc<str>,
}

impl std::fmt::Debug for Unsigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsigned")
            .field("len", &self.message.len())
            .finish_non_exhaustive()
    }
}

impl Unsigned {
    /// Encodes `meta` and `payload` (the sender is `meta.id`).
    pub fn new(meta: Meta, payload: serde_json::Value) -> Result<Self, EnvelopeError> {
        let (sender, nonce) = (meta.id, meta.nonce);
        Ok(Self {
            sender,
            nonce,
            message: encode_inner(meta, payload)?.into(),
        })
    }

    /// The message's nonce (replies refer to it).
    pub fn nonce(&self) -> [u8; 16] {
        self.nonce
    }

    /// Length of the inner JSON in bytes.
    pub fn len(&self) -> usize {
        self.message.len()
    }

    /// Whether the inner JSON is empty (never, for an encoded message).
    pub fn is_empty(&self) -> bool {
        self.message.is_empty()
    }
}

/// The bytes a batch signature covers.
pub fn signed_bytes<S: AsRef<str>>(messages: &[S]) -> Vec<u8> {
    let total: usize = messages.iter().map(|m| 4 + m.as_ref().len()).sum();
    let mut out = Vec::with_capacity(BATCH_CONTEXT.len() + 4 + total);
    out.extend_from_slice(BATCH_CONTEXT);
    out.extend_from_slice(&(messages.len() as u32).to_be_bytes());
    for m in messages {
        out.extend_from_slice(&(m.as_ref().len() as u32).to_be_bytes());
        out.extend_from_slice(m.as_ref().as_bytes());
    }
    out
}

fn check_signer(key: &PrivateKey, items: &[Unsigned]) -> Result<(), EnvelopeError> {
    let me = key.public_key().party_id();
    if items.iter().any(|u| u.sender != me) {
        return Err(EnvelopeError::KeyMismatch);
    }
    Ok(())
}

/// Signs one message as an ordinary kind-1 envelope and returns its bytes.
pub fn seal_one(key: &PrivateKey, item: &Unsigned) -> Result<Vec<u8>, EnvelopeError> {
    check_signer(key, std::slice::from_ref(item))?;
    let sig = key
        .sign_pss(item.message.as_bytes())
        .map_err(|_| EnvelopeError::Seal)?;
    Ok(Envelope {
        message: item.message.to_string(),
        signature: b64u(&sig),
    }
    .to_bytes())
}

/// Signs 1 to [`MAX_BATCH`] messages with one signature and returns the kind-4 body.
pub fn seal_batch(key: &PrivateKey, items: &[Unsigned]) -> Result<Vec<u8>, EnvelopeError> {
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(EnvelopeError::Seal);
    }
    check_signer(key, items)?;
    let messages: Vec<&str> = items.iter().map(|u| &*u.message).collect();
    let sig = key
        .sign_pss(&signed_bytes(&messages))
        .map_err(|_| EnvelopeError::Seal)?;
    serde_json::to_vec(&BatchRef {
        messages: &messages,
        signature: &b64u(&sig),
    })
    .map_err(|_| EnvelopeError::Seal)
}

/// An inner message of a verified batch that failed its own checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why (session, recipient, stale, replay).
    pub error: EnvelopeError,
    /// The message (signed by the peer, so its meta can be answered).
    pub inner: Box<Inner>,
}

/// One inner message of a verified batch: its size and whether it passed its own checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    /// Length of its inner JSON in bytes (for per-peer buffering bounds).
    pub len: usize,
    /// The message, or why it was refused.
    pub result: Result<Inner, Refused>,
}

/// Parses a batch without verifying it: the inner messages (bounds checked) and the raw
/// signature. Exposed for tooling and for answering the requests of a refused batch; receivers
/// use [`Opener::open_batch`].
pub fn parse(bytes: &[u8]) -> Result<(Batch, Vec<Inner>, Vec<u8>), EnvelopeError> {
    let batch: Batch = serde_json::from_slice(bytes).map_err(short)?;
    if batch.messages.is_empty() || batch.messages.len() > MAX_BATCH {
        return Err(EnvelopeError::Malformed(format!(
            "a batch holds 1 to {MAX_BATCH} messages"
        )));
    }
    let inners = batch
        .messages
        .iter()
        .map(|m| parse_inner(m))
        .collect::<Result<Vec<_>, _>>()?;
    let sig = b64u_decode(&batch.signature, MAX_SIGNATURE_BYTES).map_err(short)?;
    Ok((batch, inners, sig))
}

impl Opener {
    /// Checks a batch from the TLS peer `peer` (key `peer_key`): size, parse, every sender = peer,
    /// signature (an `Err` refuses the whole batch); then each inner message as
    /// [`Opener::open`] would after its signature. Records only the nonces that passed.
    pub fn open_batch(
        &mut self,
        bytes: &[u8],
        peer: &PartyId,
        peer_key: &PublicKey,
        now_ms: i64,
    ) -> Result<Vec<BatchItem>, EnvelopeError> {
        self.check_size(bytes)?;
        let (batch, inners, sig) = parse(bytes)?;
        check_sender(&inners, peer, peer_key)?;
        peer_key
            .verify_pss(&signed_bytes(&batch.messages), &sig)
            .map_err(|_| EnvelopeError::BadSignature)?;
        Ok(inners
            .into_iter()
            .zip(&batch.messages)
            .map(|(inner, m)| BatchItem {
                len: m.len(),
                result: self.accept(inner.clone(), now_ms).map_err(|error| Refused {
                    error,
                    inner: Box::new(inner),
                }),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use serde_json::json;

    use super::*;
    use crate::msg::envelope::seal;

    const NOW: i64 = 1_700_000_000_000;

    use crate::msg::test_keys as keys;

    fn meta(rng: &mut ChaCha20Rng, session: &str, id: &str, ts: i64) -> Meta {
        let (a, b) = keys();
        Meta::new(
            "smc/msg",
            session,
            id,
            a.public_key().party_id(),
            Some(b.public_key().party_id()),
            ts,
            rng,
        )
    }

    fn items(rng: &mut ChaCha20Rng, n: usize) -> Vec<Unsigned> {
        (0..n)
            .map(|i| Unsigned::new(meta(rng, "s1", &format!("m{i}"), NOW), json!({"i": i})))
            .collect::<Result<_, _>>()
            .expect("encode")
    }

    fn opener() -> Opener {
        Opener::new("s1", Some(keys().1.public_key().party_id()))
    }

    fn open(o: &mut Opener, bytes: &[u8]) -> Result<Vec<Result<Inner, Refused>>, EnvelopeError> {
        let a = keys().0.public_key();
        let items = o.open_batch(bytes, &a.party_id(), a, NOW + 10)?;
        Ok(items.into_iter().map(|i| i.result).collect())
    }

    #[test]
    fn round_trip_keeps_order_and_a_replayed_batch_is_refused_item_by_item() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let body = seal_batch(&keys().0, &items(&mut rng, 5)).expect("seal");
        let mut o = opener();
        let got = open(&mut o, &body).expect("open");
        let ids: Vec<_> = got
            .iter()
            .map(|r| r.as_ref().expect("ok").meta.message_id.clone())
            .collect();
        assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"]);
        assert_eq!(got[3].as_ref().expect("ok").payload, json!({"i": 3}));
        for r in open(&mut o, &body).expect("verifies again") {
            assert_eq!(r.expect_err("replay").error, EnvelopeError::Replay);
        }
    }

    #[test]
    fn tampering_reordering_or_dropping_an_inner_breaks_the_signature() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let body = seal_batch(&keys().0, &items(&mut rng, 3)).expect("seal");
        let b: Batch = serde_json::from_slice(&body).expect("json");
        let mut tampered = b.clone();
        tampered.messages[1] = tampered.messages[1].replace(r#""i":1"#, r#""i":9"#);
        let mut swapped = b.clone();
        swapped.messages.swap(0, 2);
        let mut dropped = b.clone();
        dropped.messages.pop();
        let mut merged = b.clone();
        let second = merged.messages.remove(1);
        merged.messages[0].push_str(&second);
        for bad in [tampered, swapped, dropped] {
            let bytes = serde_json::to_vec(&bad).expect("json");
            assert_eq!(
                open(&mut opener(), &bytes),
                Err(EnvelopeError::BadSignature)
            );
        }
        // two inners glued into one string are no longer one JSON value
        let bytes = serde_json::to_vec(&merged).expect("json");
        assert!(matches!(
            open(&mut opener(), &bytes),
            Err(EnvelopeError::Malformed(_))
        ));
        // nothing was recorded: the genuine batch still opens
        let mut o = opener();
        assert!(open(&mut o, &body).expect("open").iter().all(Result::is_ok));
    }

    #[test]
    fn signatures_do_not_cross_between_kinds() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let one = items(&mut rng, 1);
        // a batch signature presented as a kind-1 envelope
        let b: Batch =
            serde_json::from_slice(&seal_batch(&keys().0, &one).expect("seal")).expect("json");
        let env = Envelope {
            message: b.messages[0].clone(),
            signature: b.signature.clone(),
        };
        let a = keys().0.public_key();
        assert_eq!(
            opener().open(&env.to_bytes(), &a.party_id(), a, NOW),
            Err(EnvelopeError::BadSignature)
        );
        // a kind-1 signature presented as a batch of one
        let env = seal(&keys().0, meta(&mut rng, "s1", "x", NOW), json!(1)).expect("seal");
        let forged = Batch {
            messages: vec![env.message],
            signature: env.signature,
        };
        let bytes = serde_json::to_vec(&forged).expect("json");
        assert_eq!(
            open(&mut opener(), &bytes),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn per_item_checks_refuse_only_that_item() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut v = items(&mut rng, 2);
        v.insert(
            1,
            Unsigned::new(meta(&mut rng, "other", "wrong", NOW), json!(0)).expect("enc"),
        );
        v.push(Unsigned::new(meta(&mut rng, "s1", "old", NOW - 3_600_000), json!(0)).expect("enc"));
        v.push(v[0].clone()); // the same nonce twice in one batch
        let got = open(&mut opener(), &seal_batch(&keys().0, &v).expect("seal")).expect("open");
        assert!(got[0].is_ok() && got[2].is_ok());
        assert_eq!(
            got[1].as_ref().expect_err("session").error,
            EnvelopeError::WrongSession
        );
        assert_eq!(
            got[1].as_ref().expect_err("s").inner.meta.message_id,
            "wrong"
        );
        assert!(matches!(
            got[3].as_ref().expect_err("stale").error,
            EnvelopeError::Stale { .. }
        ));
        assert_eq!(
            got[4].as_ref().expect_err("dup").error,
            EnvelopeError::Replay
        );
    }

    #[test]
    fn sender_mismatch_size_shape_and_sealing_limits() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let body = seal_batch(&keys().0, &items(&mut rng, 2)).expect("seal");
        // the TLS peer is b, the messages claim a
        let b = keys().1.public_key();
        assert!(matches!(
            opener().open_batch(&body, &b.party_id(), b, NOW),
            Err(EnvelopeError::SenderMismatch { .. })
        ));
        let mut small = Opener::with_limits("s1", None, 1000, 10, 100);
        assert!(matches!(
            open(&mut small, &body),
            Err(EnvelopeError::TooLarge { .. })
        ));
        for bad in [
            &b"not json"[..],
            br#"{"messages": [], "signature": ""}"#,
            br#"{"messages": ["{}"], "signature": ""}"#,
            br#"{"messages": ["x"], "signature": "", "extra": 1}"#,
        ] {
            assert!(
                matches!(open(&mut opener(), bad), Err(EnvelopeError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let too_many = vec![items(&mut rng, 1).remove(0); MAX_BATCH + 1];
        assert_eq!(seal_batch(&keys().0, &too_many), Err(EnvelopeError::Seal));
        assert_eq!(seal_batch(&keys().0, &[]), Err(EnvelopeError::Seal));
        // b cannot sign a's messages
        assert_eq!(
            seal_batch(&keys().1, &items(&mut rng, 1)),
            Err(EnvelopeError::KeyMismatch)
        );
        assert_eq!(
            seal_one(&keys().1, &items(&mut rng, 1)[0]),
            Err(EnvelopeError::KeyMismatch)
        );
        // seal_one makes an ordinary envelope
        let one = items(&mut rng, 1);
        let a = keys().0.public_key();
        let inner = opener()
            .open(
                &seal_one(&keys().0, &one[0]).expect("seal"),
                &a.party_id(),
                a,
                NOW,
            )
            .expect("open");
        assert_eq!(inner.meta.nonce, one[0].nonce());
    }
}
