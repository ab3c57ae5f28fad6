//! The result of key generation: one party's [`KeyShare`] (what `caucus keygen` writes to
//! `keyshare.json`, mode 0600).
//!
//! Scale factors (Δ = n!): the shares s_i form a degree-t integer sharing with
//! `Σ_{i∈Q} Δ·λ_i^Q·s_i = Δ·s(0) = Δ⁵·φ·β` for any quorum Q of t+1 parties, and
//! `θ = Δ³·φ·β mod N`. Decryption ([`crate::decrypt`]) uses `c_i = c^(2Δ·s_i)` and
//! `m = L(∏ c_i^(2Δλ_i)) · (4·Δ³·θ)^(−1) mod N`.

use num_bigint::{BigInt, BigUint};
use num_integer::Integer;
use num_traits::One;
use serde::{Deserialize, Serialize};

use crate::arith;
use crate::encoding::biguint_b64u;
use crate::paillier::PublicKey;
use crate::paillier::encoding::bigint_b64u;
use crate::sharing;

/// Current key-share format version.
pub const KEY_SHARE_VERSION: u16 = 1;

/// One party's share of the distributed Paillier key.
///
/// # Security
/// `share` is secret: zeroized on drop, redacted in `Debug`; store the serialised form with mode
/// 0600 and never send it.
#[derive(Clone)]
pub struct KeyShare {
    public: PublicKey,
    threshold: u32,
    parties: u32,
    index: u32,
    share: BigInt,
    theta: BigUint,
    /// Party name or `PartyId`, filled in by the runtime.
    pub party: Option<String>,
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare")
            .field("key_id", &self.key_id())
            .field("threshold", &self.threshold)
            .field("parties", &self.parties)
            .field("index", &self.index)
            .field("share", &"<redacted>")
            .finish()
    }
}

impl Drop for KeyShare {
    fn drop(&mut self) {
        arith::zeroize_bigint(&mut self.share);
    }
}

/// Errors loading a key share.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyShareError {
    /// Unsupported version.
    #[error("unsupported key share version {0}")]
    UnsupportedVersion(u16),
    /// Fields are inconsistent (index, threshold, key id or θ).
    #[error("inconsistent key share: {0}")]
    Inconsistent(&'static str),
}

impl KeyShare {
    /// Assembles a share (used by the key generation).
    pub(crate) fn new(
        public: PublicKey,
        threshold: u32,
        parties: u32,
        index: u32,
        share: BigInt,
        theta: BigUint,
    ) -> Result<Self, KeyShareError> {
        let ks = Self {
            public,
            threshold,
            parties,
            index,
            share,
            theta,
            party: None,
        };
        ks.check()?;
        Ok(ks)
    }

    fn check(&self) -> Result<(), KeyShareError> {
        if self.parties < 2 * self.threshold + 1 || self.parties > 64 {
            return Err(KeyShareError::Inconsistent("parties"));
        }
        if self.index == 0 || self.index > self.parties {
            return Err(KeyShareError::Inconsistent("index"));
        }
        if &self.theta >= self.public.n() || !self.theta.gcd(self.public.n()).is_one() {
            return Err(KeyShareError::Inconsistent("theta"));
        }
        // |s_i| is bounded by the protocol; refuse absurd sizes before any exponentiation.
        if self.share.bits() > 4 * self.public.bits() + 4096 {
            return Err(KeyShareError::Inconsistent("share size"));
        }
        Ok(())
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Key fingerprint (hex SHA-256 of N's bytes).
    pub fn key_id(&self) -> String {
        self.public.key_id()
    }

    /// Threshold t: any t+1 shares decrypt.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Number of parties n.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// This party's index (1..=n).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// θ = Δ³·φ·β mod N.
    pub fn theta(&self) -> &BigUint {
        &self.theta
    }

    /// Δ = n!.
    pub fn delta(&self) -> BigUint {
        sharing::delta(self.parties)
    }

    /// The secret share s_i (Δ⁴·φ·β sharing). Secret: do not log or send.
    pub(crate) fn secret(&self) -> &BigInt {
        &self.share
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyShareWire {
    version: u16,
    key_id: String,
    public_key: PublicKey,
    threshold: u32,
    parties: u32,
    index: u32,
    #[serde(with = "bigint_b64u")]
    share: BigInt,
    #[serde(with = "biguint_b64u")]
    theta: BigUint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    party: Option<String>,
}

impl Drop for KeyShareWire {
    fn drop(&mut self) {
        arith::zeroize_bigint(&mut self.share);
    }
}

impl Serialize for KeyShare {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        KeyShareWire {
            version: KEY_SHARE_VERSION,
            key_id: self.key_id(),
            public_key: self.public.clone(),
            threshold: self.threshold,
            parties: self.parties,
            index: self.index,
            share: self.share.clone(),
            theta: self.theta.clone(),
            party: self.party.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for KeyShare {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut w = KeyShareWire::deserialize(d)?;
        if w.version != KEY_SHARE_VERSION {
            return Err(serde::de::Error::custom(KeyShareError::UnsupportedVersion(
                w.version,
            )));
        }
        if w.key_id != w.public_key.key_id() {
            return Err(serde::de::Error::custom(KeyShareError::Inconsistent(
                "key_id",
            )));
        }
        let share = std::mem::take(&mut w.share);
        let mut ks = KeyShare::new(
            w.public_key.clone(),
            w.threshold,
            w.parties,
            w.index,
            share,
            w.theta.clone(),
        )
        .map_err(serde::de::Error::custom)?;
        ks.party = w.party.take();
        Ok(ks)
    }
}
