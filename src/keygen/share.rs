//! The result of key generation: one party's [`KeyShare`] (what `caucus keygen` writes to
//! `keyshare.json`, mode 0600).
//!
//! Scale factors (Δ = n!): the shares s_i form a degree-t integer sharing with
//! `Σ_{i∈Q} Δ·λ_i^Q·s_i = Δ·s(0) = Δ⁵·φ·β` for any quorum Q of t+1 parties, and
//! `θ = Δ³·φ·β mod N`. The classic decryption ([`crate::decrypt`]) uses `c_i = c^(2Δ·s_i)` and
//! `m = L(∏ c_i^(2Δλ_i)) · (4·Δ³·θ)^(−1) mod N`.
//!
//! The N-th-root shares a_i (format version 2) form a degree-t sharing with
//! `Σ_{i∈Q} Δ·λ_i^Q·a_i = Δ·K`, `K = (u·Δ³·φ·β − 1)/N`, `u = θ⁻¹ mod N`
//! ([`crate::keygen::secret`] derives them); the root decryption uses `x_i = (c mod N)^(Δ·a_i)`.
//! A version-1 file has no root share and decrypts with the classic method only.

use num_bigint::{BigInt, BigUint};
use num_integer::Integer;
use num_traits::One;
use serde::{Deserialize, Serialize};

use crate::arith;
use crate::encoding::biguint_b64u;
use crate::paillier::PublicKey;
use crate::paillier::encoding::bigint_b64u;
use crate::sharing;

/// Current key-share format version (2: adds the N-th-root share; version 1 still loads).
pub const KEY_SHARE_VERSION: u16 = 2;

/// One party's share of the distributed Paillier key.
///
/// # Security
/// `share` and `root_share` are secret: zeroized on drop, redacted in `Debug`; store the serialised form with mode
/// 0600 and never send it.
#[derive(Clone)]
pub struct KeyShare {
    public: PublicKey,
    threshold: u32,
    parties: u32,
    index: u32,
    share: BigInt,
    theta: BigUint,
    root_share: Option<BigInt>,
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
            .field(
                "root_share",
                &self.root_share.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Drop for KeyShare {
    fn drop(&mut self) {
        arith::zeroize_bigint(&mut self.share);
        if let Some(a) = self.root_share.as_mut() {
            arith::zeroize_bigint(a);
        }
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
        root_share: Option<BigInt>,
    ) -> Result<Self, KeyShareError> {
        let ks = Self {
            public,
            threshold,
            parties,
            index,
            share,
            theta,
            root_share,
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
        let limit = 4 * self.public.bits() + 4096;
        if self.share.bits() > limit || self.root_share.as_ref().is_some_and(|a| a.bits() > limit) {
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

    /// The N-th-root share a_i, if this share has one (format 2). Secret: do not log or send.
    pub(crate) fn root_secret(&self) -> Option<&BigInt> {
        self.root_share.as_ref()
    }

    /// Whether this share can take part in the N-th-root decryption (format version 2).
    pub fn has_root_share(&self) -> bool {
        self.root_share.is_some()
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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::paillier::encoding::opt_bigint_b64u"
    )]
    root_share: Option<BigInt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    party: Option<String>,
}

impl Drop for KeyShareWire {
    fn drop(&mut self) {
        arith::zeroize_bigint(&mut self.share);
        if let Some(a) = self.root_share.as_mut() {
            arith::zeroize_bigint(a);
        }
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
            root_share: self.root_share.clone(),
            party: self.party.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for KeyShare {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut w = KeyShareWire::deserialize(d)?;
        // Version 1 has no root share; version 2 must have one.
        let root_ok = match w.version {
            1 => w.root_share.is_none(),
            KEY_SHARE_VERSION => w.root_share.is_some(),
            v => {
                return Err(serde::de::Error::custom(KeyShareError::UnsupportedVersion(
                    v,
                )));
            }
        };
        if !root_ok {
            return Err(serde::de::Error::custom(KeyShareError::Inconsistent(
                "root share",
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
            w.root_share.take(),
        )
        .map_err(serde::de::Error::custom)?;
        ks.party = w.party.take();
        Ok(ks)
    }
}
