//! Threshold decryption: any quorum Q of t+1 key holders decrypts, by one of two methods.
//!
//! **Root** (the default for keys of format 2): the Paillier randomness is recovered as an N-th
//! root, threshold-RSA style (Shoup's Δ trick with the public exponent N), so the quorum's work
//! is mod N, not N². With x = c mod N = r^N mod N and the root shares a_i
//! ([`crate::keygen::share`]: `Σ Δλ_i·a_i = Δ·K`, `x^K = r⁻¹`), party i ∈ Q publishes
//! `x_i = x^(Δ·a_i) mod N`; a receiver computes `y = ∏ x_i^(μ_i) = x^(Δ²·K) = r^(−Δ²) mod N`
//! with `μ_i = Δ·λ_i^Q`, then `z = c^(Δ²)·y^N mod N² = (1 + N)^(Δ²·m)` (because
//! `(y + kN)^N ≡ y^N mod N²`), and `m = L(z)·Δ⁻² mod N`. A partial costs a 2048-bit
//! exponentiation with a ≈ 4,200-bit exponent (≈ 5 ms at 2048 bits) instead of a 4096-bit one
//! with a ≈ 4,300-bit exponent (≈ 18 ms); the receiver pays one public `y^N mod N²` (≈ 9 ms).
//! `z ≡ 1 (mod N)` is checked, so a wrong partial is detected even from a quorum of exactly
//! t+1 (the classic method cannot tell). What it reveals beyond m: the receivers can compute r
//! (from y and x, as `gcd(Δ², N) = 1`), the randomness of the decrypted ciphertext, which is a
//! function of (c, m) anyway but lets a receiver *prove* to an outsider that c encrypts m.
//!
//! **Classic** (PROTOCOL.md; the only method for format-1 keys): party i ∈ Q publishes
//! `c_i = c^(2Δ·s_i) mod N²` to the receivers it chooses (only they learn the plaintext);
//! `c' = ∏_{i∈Q} c_i^(2·μ_i)`, so `c' = c^(4Δ·Δ⁵·φ·β)`, and
//! `m = L(c') · (4·Δ³·θ)^(−1) mod N` with `L(x) = (x − 1)/N` and `θ = Δ³·φ·β mod N`.
//!
//! A receiver checks every partial (version, method, key, ciphertext, index, duplicates, range)
//! and names the culprit of any fault. Semi-honest model: when more than t+1 partials are given,
//! the receiver cross-checks two quorums and refuses a disagreement.

use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{One, Zero};
use serde::{Deserialize, Serialize};

use crate::arith;
use crate::encoding::biguint_b64u;
use crate::keygen::KeyShare;
use crate::paillier::{Ciphertext, PublicKey};
use crate::sharing;

/// Current partial-decryption format version (2: the exponent's sign travels as
/// [`PartialDecryption::negative`] instead of an inversion mod N² by the sender; 3: adds
/// [`PartialDecryption::method`]). Version 2 partials are still combined (classic).
pub const PARTIAL_VERSION: u16 = 3;

/// How a quorum decrypts (module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// N-th-root partials mod N; needs key shares of format 2.
    #[default]
    Root,
    /// PROTOCOL.md's partials mod N².
    Classic,
}

impl Method {
    /// The method's name on the command line and the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Root => "root",
            Method::Classic => "classic",
        }
    }

    fn legacy() -> Self {
        Method::Classic
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "root" => Ok(Method::Root),
            "classic" => Ok(Method::Classic),
            _ => Err(format!("unknown decryption method {s:?} (root or classic)")),
        }
    }
}
/// Current threshold-key format version.
pub const THRESHOLD_KEY_VERSION: u16 = 1;

/// Errors of threshold decryption; faults of a partial name its sender index.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecryptError {
    /// Fewer than t+1 valid partials.
    #[error("need {need} partial decryptions, got {got}")]
    NotEnough {
        /// t+1
        need: usize,
        /// given
        got: usize,
    },
    /// Unsupported partial version.
    #[error("party {culprit} sent an unsupported version")]
    UnsupportedVersion {
        /// sender
        culprit: u32,
    },
    /// Index outside 1..=n.
    #[error("partial from unknown index {culprit}")]
    UnknownIndex {
        /// the claimed index
        culprit: u32,
    },
    /// Two partials with one index.
    #[error("two partials from party {culprit}")]
    Duplicate {
        /// sender
        culprit: u32,
    },
    /// A partial for another key.
    #[error("party {culprit} used another key")]
    WrongKey {
        /// sender
        culprit: u32,
    },
    /// A partial for another ciphertext.
    #[error("party {culprit} decrypted another ciphertext")]
    WrongCiphertext {
        /// sender
        culprit: u32,
    },
    /// A partial value outside Z*_{N²}.
    #[error("party {culprit} sent an out-of-range partial")]
    InvalidPartial {
        /// sender
        culprit: u32,
    },
    /// The partials do not combine to a valid plaintext, or two quorums disagree.
    #[error("partial decryptions are inconsistent")]
    Inconsistent,
    /// The ciphertext is not valid for this key.
    #[error("ciphertext out of range")]
    BadCiphertext,
    /// A partial of another method than the first one given.
    #[error("party {culprit} used another decryption method")]
    MixedMethods {
        /// sender
        culprit: u32,
    },
    /// The root method was asked of a key share without a root share (format 1).
    #[error("this key share has no N-th-root share (format 1): use the classic method")]
    MethodUnavailable,
}

impl DecryptError {
    /// The party to blame, when one is known.
    pub fn culprit(&self) -> Option<u32> {
        match self {
            DecryptError::UnsupportedVersion { culprit }
            | DecryptError::UnknownIndex { culprit }
            | DecryptError::Duplicate { culprit }
            | DecryptError::WrongKey { culprit }
            | DecryptError::WrongCiphertext { culprit }
            | DecryptError::InvalidPartial { culprit }
            | DecryptError::MixedMethods { culprit } => Some(*culprit),
            DecryptError::NotEnough { .. }
            | DecryptError::Inconsistent
            | DecryptError::BadCiphertext
            | DecryptError::MethodUnavailable => None,
        }
    }
}

/// The public part of a distributed key: what a receiver needs to combine partials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdKey {
    /// Format version.
    pub version: u16,
    /// Public key.
    pub public_key: PublicKey,
    /// Threshold t.
    pub threshold: u32,
    /// Parties n.
    pub parties: u32,
    /// θ = Δ³·φ·β mod N.
    #[serde(with = "biguint_b64u")]
    pub theta: BigUint,
}

impl KeyShare {
    /// The public part of this key.
    pub fn threshold_key(&self) -> ThresholdKey {
        ThresholdKey {
            version: THRESHOLD_KEY_VERSION,
            public_key: self.public().clone(),
            threshold: self.threshold(),
            parties: self.parties(),
            theta: self.theta().clone(),
        }
    }
}

/// One party's partial decryption of one ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialDecryption {
    /// Format version.
    pub version: u16,
    /// Key fingerprint.
    pub key_id: String,
    /// Hex SHA-256 of the ciphertext's big-endian bytes.
    pub ciphertext: String,
    /// Sender index (1..=n).
    pub index: u32,
    /// The method (absent in version 2: classic).
    #[serde(default = "Method::legacy")]
    pub method: Method,
    /// Root: (c mod N)^|Δ·a_i| mod N. Classic: c^|2Δ·s_i| mod N².
    #[serde(with = "biguint_b64u")]
    pub value: BigUint,
    /// The share is negative: the partial decryption c^(2Δ·s_i) (or x^(Δ·a_i)) is `value`⁻¹. The combiner
    /// folds it into the one inversion it does anyway, so no party inverts mod N² (which cost
    /// more than 10 % of a partial decryption). The sign of one integer share carries no
    /// information about the secret beyond the statistical masking of the sharing.
    pub negative: bool,
}

/// Hex SHA-256 of a ciphertext value (binds partials to their ciphertext).
pub fn ciphertext_digest(c: &Ciphertext) -> String {
    arith::sha256_hex(&c.value().to_bytes_be())
}

fn check_ciphertext(pk: &PublicKey, c: &Ciphertext) -> Result<(), DecryptError> {
    check_ciphertext_range(pk, c)?;
    if !c.value().gcd(pk.n()).is_one() {
        return Err(DecryptError::BadCiphertext);
    }
    Ok(())
}

fn check_ciphertext_range(pk: &PublicKey, c: &Ciphertext) -> Result<(), DecryptError> {
    let v = c.value();
    if v.is_zero() || v >= pk.n_squared() {
        return Err(DecryptError::BadCiphertext);
    }
    Ok(())
}

/// `base^e mod m` for the small public Lagrange exponents of the combine (a few bits): square
/// and multiply costs a handful of products, where a Montgomery exponentiation would first pay for
/// its set-up (≈ 0.5 ms at 4096 bits). Longer exponents go to `long`.
fn pow_small(
    base: &BigUint,
    e: &BigUint,
    m: &BigUint,
    long: impl FnOnce(&BigUint, &BigUint) -> BigUint,
) -> BigUint {
    if e.bits() > 16 {
        return long(base, e);
    }
    let mut acc = BigUint::one() % m;
    for i in (0..e.bits()).rev() {
        acc = (&acc * &acc) % m;
        if e.bit(i) {
            acc = (acc * base) % m;
        }
    }
    acc
}

fn pow_small_n2(pk: &PublicKey, base: &BigUint, e: &BigUint) -> BigUint {
    pow_small(base, e, pk.n_squared(), |b, e| pk.pow_n2_public(b, e))
}

/// This party's partial decryption by the key share's default method: root when the share has
/// a root share (format 2), classic otherwise.
pub fn partial_decrypt(
    share: &KeyShare,
    c: &Ciphertext,
) -> Result<PartialDecryption, DecryptError> {
    let method = if share.has_root_share() {
        Method::Root
    } else {
        Method::Classic
    };
    partial_decrypt_with(share, c, method)
}

/// This party's partial decryption by `method`: root `(c mod N)^(Δ·a_i) mod N`, classic
/// `c^(2Δ·s_i) mod N²`.
pub fn partial_decrypt_with(
    share: &KeyShare,
    c: &Ciphertext,
    method: Method,
) -> Result<PartialDecryption, DecryptError> {
    let pk = share.public();
    check_ciphertext(pk, c)?;
    let (mut e, value) = match method {
        Method::Root => {
            let a = share.root_secret().ok_or(DecryptError::MethodUnavailable)?;
            let e = BigInt::from_biguint(Sign::Plus, share.delta()) * a;
            let v = pk.pow_n(&(c.value() % pk.n()), e.magnitude());
            (e, v)
        }
        Method::Classic => {
            let d = BigInt::from_biguint(Sign::Plus, share.delta() * 2u8);
            let e = d * share.secret();
            let v = pk.pow_n2(c.value(), e.magnitude());
            (e, v)
        }
    };
    let negative = e.sign() == Sign::Minus;
    arith::zeroize_bigint(&mut e);
    Ok(PartialDecryption {
        version: PARTIAL_VERSION,
        key_id: share.key_id(),
        ciphertext: ciphertext_digest(c),
        index: share.index(),
        method,
        value,
        negative,
    })
}

/// Combines partial decryptions into the plaintext in `[0, N)`. The first t+1 partials (in the
/// order given: the receiver chooses the quorum) decrypt; any further ones are used to cross-check.
pub fn combine(
    key: &ThresholdKey,
    c: &Ciphertext,
    partials: &[PartialDecryption],
) -> Result<BigUint, DecryptError> {
    let pk = &key.public_key;
    check_ciphertext_range(pk, c)?;
    let key_id = pk.key_id();
    let digest = ciphertext_digest(c);
    let mut seen = std::collections::BTreeSet::new();
    let method = partials.first().map_or(Method::Classic, |p| p.method);
    for p in partials {
        let culprit = p.index;
        let version_ok = match p.version {
            PARTIAL_VERSION => true,
            2 => p.method == Method::Classic,
            _ => false,
        };
        if !version_ok {
            return Err(DecryptError::UnsupportedVersion { culprit });
        }
        if p.index == 0 || p.index > key.parties {
            return Err(DecryptError::UnknownIndex { culprit });
        }
        if !seen.insert(p.index) {
            return Err(DecryptError::Duplicate { culprit });
        }
        if p.key_id != key_id {
            return Err(DecryptError::WrongKey { culprit });
        }
        if p.ciphertext != digest {
            return Err(DecryptError::WrongCiphertext { culprit });
        }
        if p.method != method {
            return Err(DecryptError::MixedMethods { culprit });
        }
        let bound = match method {
            Method::Root => pk.n(),
            Method::Classic => pk.n_squared(),
        };
        if p.value.is_zero() || &p.value >= bound {
            return Err(DecryptError::InvalidPartial { culprit });
        }
    }
    // c and every partial must be units mod N: one gcd of their product, and only if that fails
    // one per value to name the culprit.
    let n = pk.n();
    let product = partials
        .iter()
        .fold(c.value() % n, |acc, p| (acc * (&p.value % n)) % n);
    if !product.gcd(n).is_one() {
        check_ciphertext(pk, c)?;
        for p in partials {
            if !p.value.gcd(n).is_one() {
                return Err(DecryptError::InvalidPartial { culprit: p.index });
            }
        }
        return Err(DecryptError::BadCiphertext);
    }
    let need = key.threshold as usize + 1;
    if partials.len() < need {
        return Err(DecryptError::NotEnough {
            need,
            got: partials.len(),
        });
    }
    let quorum = |q: &[PartialDecryption]| match method {
        Method::Root => combine_root(key, c, q),
        Method::Classic => combine_quorum(key, q),
    };
    let m = quorum(&partials[..need])?;
    if partials.len() > need {
        let other = quorum(&partials[partials.len() - need..])?;
        if other != m {
            return Err(DecryptError::Inconsistent);
        }
    }
    Ok(m)
}

/// `∏ value_i^(scale·μ_i) mod m` over the quorum (μ_i = Δ·λ_i^Q) as `(num, den)`: the terms
/// whose sign (weight × share) is negative go to `den`, so no party and no term needs an
/// inversion; `pow(base, e)` computes `base^e mod m` for the few-bit weights.
fn quorum_ratio(
    key: &ThresholdKey,
    quorum: &[PartialDecryption],
    scale: u8,
    m: &BigUint,
    pow: impl Fn(&BigUint, &BigUint) -> BigUint,
) -> Result<(BigUint, BigUint), DecryptError> {
    let xs: Vec<u32> = quorum.iter().map(|p| p.index).collect();
    let mu = sharing::lagrange_int(&xs, key.parties).map_err(|_| DecryptError::Inconsistent)?;
    let (mut num, mut den) = (BigUint::one(), BigUint::one());
    for (p, w) in quorum.iter().zip(mu) {
        let e: BigInt = w * scale;
        let term = pow(&p.value, e.magnitude());
        if (e.sign() == Sign::Minus) != p.negative {
            den = (den * term) % m;
        } else {
            num = (num * term) % m;
        }
    }
    Ok((num, den))
}

fn combine_quorum(
    key: &ThresholdKey,
    quorum: &[PartialDecryption],
) -> Result<BigUint, DecryptError> {
    let pk = &key.public_key;
    let (n, n2) = (pk.n(), pk.n_squared());
    // c' = ∏ c_i^(2μ_i) = num / den. The randomness cancels in the ratio only, so
    // num ≡ den·(1 + l·N) (mod N²) with l = L(c'): then (num − den) mod N² = N·(den·l mod N),
    // and one inversion mod N (not N²) recovers l.
    let (num, den) = quorum_ratio(key, quorum, 2, n2, |b, e| pow_small_n2(pk, b, e))?;
    let (den_l, r) = ((num + n2 - &den) % n2).div_rem(n);
    if !r.is_zero() {
        return Err(DecryptError::Inconsistent);
    }
    // m = l · (4Δ³θ)⁻¹ = (den·l) · (den · 4Δ³θ)⁻¹ mod N.
    let delta = sharing::delta(key.parties);
    let factor = (delta.pow(3) * 4u8 * &key.theta % n) * (den % n) % n;
    let inv = pk.inverse_n(&factor).ok_or(DecryptError::Inconsistent)?;
    Ok((den_l * inv) % n)
}

/// The root method's combine (module doc): `y = ∏ x_i^(μ_i) mod N`, `z = c^(Δ²)·y^N mod N²`,
/// which must be `1 + l·N`; then `m = l·Δ⁻² mod N`.
fn combine_root(
    key: &ThresholdKey,
    c: &Ciphertext,
    quorum: &[PartialDecryption],
) -> Result<BigUint, DecryptError> {
    let pk = &key.public_key;
    let (n, n2) = (pk.n(), pk.n_squared());
    // y = num / den mod N.
    let (num, den) = quorum_ratio(key, quorum, 1, n, |b, e| {
        pow_small(b, e, n, |b, e| pk.pow_n_public(b, e))
    })?;
    let y = pk
        .inverse_n(&den)
        .map(|inv| (num * inv) % n)
        .ok_or(DecryptError::Inconsistent)?;
    let delta2 = sharing::delta(key.parties).pow(2);
    let z = (pow_small_n2(pk, c.value(), &delta2) * pk.pow_n2_public(&y, n)) % n2;
    if z.is_zero() {
        return Err(DecryptError::Inconsistent);
    }
    let (l, r) = (z - 1u8).div_rem(n);
    if !r.is_zero() {
        return Err(DecryptError::Inconsistent);
    }
    // Δ⁻² mod N by Euclid on (Δ², N): Δ² is small, so this costs microseconds where a general
    // inversion mod N costs 0.3 ms.
    let d2 = BigInt::from_biguint(Sign::Plus, delta2);
    let n_int = BigInt::from_biguint(Sign::Plus, n.clone());
    let eg = d2.extended_gcd(&n_int);
    if !eg.gcd.is_one() {
        return Err(DecryptError::Inconsistent);
    }
    let inv = arith::mod_floor(&eg.x, n);
    Ok((l * inv) % n)
}
