//! Encryption randomness: the textbook `r^N` or the Damgård–Jurik–Nielsen (DJN) fixed-base variant,
//! an explicit choice made with [`EncryptionMode`].
//!
//! # The DJN variant
//! Damgård, Jurik and Nielsen ("A generalization of Paillier's public-key system with
//! applications to electronic voting", IJIS 2010) replace the random N-th residue `r^N` by
//! `h_s^α mod N²`, where `h_s = (−x²)^N mod N²` is fixed per public key and α is a short random
//! exponent. Here:
//! - x is derived from N alone (SHA-256 in counter mode over N, reduced mod N, see
//!   [`djn_base`]), so every holder of the public key derives the same `h_s` with no extra
//!   message and nobody chooses it;
//! - α is uniform in `[0, 2^(⌈k/2⌉ + σ))` with k = bits of N and σ = [`DJN_SLACK_BITS`] = 40:
//!   the DJN short exponent of about k/2 bits plus 40 bits of margin ([`djn_exponent_bits`]).
//!
//! **Assumption.** Beyond DCR (Paillier's own assumption), DJN encryption assumes that `h_s^α`
//! with such a short α is indistinguishable from a uniform element of the subgroup `⟨h_s⟩` of
//! N-th residues (a short-exponent assumption in a group of unknown order, the one DJN make). The
//! ciphertexts are ordinary Paillier ciphertexts (`h_s^α` is an N-th residue), so decryption,
//! threshold decryption and homomorphic operations are unchanged.
//!
//! # Cost
//! `h_s^α` comes from a fixed-base window table: for windows of w bits,
//! `T[i][d] = h_s^(d·2^(w·i))`, so `h_s^α = ∏_i T[i][α_i]` costs one Montgomery product per
//! non-zero window (≈ 178 products of 4096-bit numbers for a 2048-bit N with w = 6) instead of a
//! 2048-bit exponentiation mod N² (≈ 2,600 products). The table is built once per key (5.7 MiB
//! and about 0.1 s for a 2048-bit N).

use num_bigint::{BigInt, BigRng010, BigUint};
use num_integer::Integer;
use num_traits::One;
use rand::Rng;

use super::{Ciphertext, PaillierError, PublicKey};
use crate::arith;
use crate::monty::Monty;

/// σ: bits added to the DJN short exponent of ⌈k/2⌉ bits.
pub const DJN_SLACK_BITS: u64 = 40;

/// How an [`Encryptor`] draws the randomness factor of a ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EncryptionMode {
    /// Textbook Paillier: `r^N mod N²` for a uniform r ∈ Z*_N (DCR only).
    #[default]
    Standard,
    /// DJN: `h_s^α mod N²` from a fixed-base table (DCR plus the short-exponent assumption, see
    /// the module documentation).
    Djn,
}

/// Bits of the DJN exponent α for a `k`-bit N: ⌈k/2⌉ + [`DJN_SLACK_BITS`].
pub fn djn_exponent_bits(k: u64) -> u64 {
    k.div_ceil(2) + DJN_SLACK_BITS
}

/// The public DJN base `h_s = (−x²)^N mod N²` with x ∈ Z*_N derived from N by hashing.
pub fn djn_base(pk: &PublicKey) -> BigUint {
    let n = pk.n();
    let nb = n.to_bytes_be();
    let mut x = BigUint::from(2u8);
    for ctr in 0u32..1024 {
        let h = arith::hash_to_biguint(
            b"caucus paillier djn base",
            &[&nb, &ctr.to_be_bytes()],
            n.bits() + 64,
        ) % n;
        if h.bits() > 1 && h.gcd(n).is_one() {
            x = h;
            break;
        }
    }
    let h = n - (&x * &x) % n;
    pk.pow_n2(&h, n)
}

/// The fixed-base table of `h_s`, in Montgomery form mod N².
struct DjnTable {
    monty: Monty,
    window: u64,
    exp_bits: u64,
    /// Row i, digit d ≥ 1 at `((i·(2^w − 1)) + d − 1)·limbs`.
    table: Vec<u64>,
}

impl DjnTable {
    fn new(pk: &PublicKey) -> Option<Self> {
        let monty = Monty::new(pk.n_squared())?;
        let exp_bits = djn_exponent_bits(pk.bits());
        let window: u64 = if pk.bits() <= 2048 { 6 } else { 5 };
        let rows = exp_bits.div_ceil(window) as usize;
        let per_row = (1usize << window) - 1;
        let limbs = monty.limbs();
        let mut table = vec![0u64; rows * per_row * limbs];
        let mut z = monty.scratch();
        let mut base = monty.to_mont(&djn_base(pk));
        let mut next = vec![0u64; limbs];
        for row in 0..rows {
            let start = row * per_row * limbs;
            table[start..start + limbs].copy_from_slice(&base);
            for d in 1..per_row {
                let (done, rest) = table.split_at_mut(start + d * limbs);
                let prev = &done[start + (d - 1) * limbs..];
                monty.mul(prev, &base, &mut rest[..limbs], &mut z);
            }
            // base^(2^w) = base^(2^w − 1) · base
            let last = &table[start + (per_row - 1) * limbs..start + per_row * limbs];
            monty.mul(last, &base, &mut next, &mut z);
            std::mem::swap(&mut base, &mut next);
        }
        Some(Self {
            monty,
            window,
            exp_bits,
            table,
        })
    }

    /// `h_s^alpha mod N²` for `alpha < 2^exp_bits`.
    fn pow(&self, alpha: &BigUint) -> BigUint {
        let limbs = self.monty.limbs();
        let per_row = (1usize << self.window) - 1;
        let mut z = self.monty.scratch();
        let mut acc = self.monty.one().to_vec();
        let mut tmp = vec![0u64; limbs];
        let rows = self.exp_bits.div_ceil(self.window);
        for row in 0..rows {
            let mut d = 0usize;
            for b in (0..self.window).rev() {
                d = (d << 1) | usize::from(alpha.bit(row * self.window + b));
            }
            if d == 0 {
                continue;
            }
            let at = (row as usize * per_row + d - 1) * limbs;
            self.monty
                .mul(&acc, &self.table[at..at + limbs], &mut tmp, &mut z);
            std::mem::swap(&mut acc, &mut tmp);
        }
        self.monty.to_plain(&acc)
    }
}

/// Encrypts under one public key with the chosen [`EncryptionMode`] (the DJN table is built by
/// [`Encryptor::new`]; keep the encryptor for the key's lifetime).
pub struct Encryptor {
    public: PublicKey,
    djn: Option<DjnTable>,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("key_id", &self.public.key_id())
            .field("mode", &self.mode())
            .finish()
    }
}

impl Encryptor {
    /// An encryptor for `pk`; [`EncryptionMode::Djn`] precomputes the fixed-base table.
    pub fn new(pk: &PublicKey, mode: EncryptionMode) -> Self {
        let djn = match mode {
            EncryptionMode::Standard => None,
            EncryptionMode::Djn => DjnTable::new(pk),
        };
        Self {
            public: pk.clone(),
            djn,
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> EncryptionMode {
        if self.djn.is_some() {
            EncryptionMode::Djn
        } else {
            EncryptionMode::Standard
        }
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// A fresh randomness factor: `r^N` (standard) or `h_s^α` (DJN), mod N².
    pub fn random_rn<R: Rng + ?Sized>(&self, rng: &mut R) -> BigUint {
        match &self.djn {
            Some(t) => t.pow(&rng.random_biguint(t.exp_bits)),
            None => self.public.random_rn(rng),
        }
    }

    /// Encrypts `m ∈ [0, N)`.
    pub fn encrypt<R: Rng + ?Sized>(
        &self,
        m: &BigUint,
        rng: &mut R,
    ) -> Result<Ciphertext, PaillierError> {
        if m >= self.public.n() {
            return Err(PaillierError::PlaintextOutOfRange);
        }
        let rn = self.random_rn(rng);
        Ok(self.public.encrypt_with_rn(m, &rn))
    }

    /// Encrypts a signed value with |m| < N/2 (see [`super::encode_signed`]).
    pub fn encrypt_signed<R: Rng + ?Sized>(
        &self,
        m: &BigInt,
        rng: &mut R,
    ) -> Result<Ciphertext, PaillierError> {
        let m = super::encode_signed(m, &self.public)?;
        self.encrypt(&m, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paillier::Keypair;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn table_power_matches_modpow() {
        let mut rng = ChaCha20Rng::seed_from_u64(61);
        let kp = Keypair::generate(512, &mut rng).expect("keypair");
        let pk = kp.public();
        let t = DjnTable::new(pk).expect("odd N²");
        let hs = djn_base(pk);
        assert_eq!(t.exp_bits, 256 + 40);
        for alpha in [
            BigUint::ZERO,
            BigUint::one(),
            BigUint::from(63u8),
            BigUint::from(64u8),
            (BigUint::one() << t.exp_bits) - 1u8,
            rng.random_biguint(t.exp_bits),
            rng.random_biguint(t.exp_bits),
        ] {
            assert_eq!(t.pow(&alpha), hs.modpow(&alpha, pk.n_squared()));
        }
    }

    #[test]
    fn djn_ciphertexts_decrypt_and_add() {
        let mut rng = ChaCha20Rng::seed_from_u64(62);
        let kp = Keypair::generate(512, &mut rng).expect("keypair");
        let pk = kp.public();
        // h_s is a unit and an N-th residue: E(0) decrypts to 0.
        let hs = djn_base(pk);
        assert!(hs.gcd(pk.n()).is_one());
        assert_eq!(djn_base(pk), hs, "derived from N alone");
        let enc = Encryptor::new(pk, EncryptionMode::Djn);
        assert_eq!(enc.mode(), EncryptionMode::Djn);
        let std_enc = Encryptor::new(pk, EncryptionMode::Standard);
        assert_eq!(std_enc.mode(), EncryptionMode::Standard);
        let zero = enc.encrypt(&BigUint::ZERO, &mut rng).expect("enc");
        assert_eq!(kp.decrypt(&zero).expect("dec"), BigUint::ZERO);
        let a = BigUint::from(123_456_789u64);
        let b = pk.n() - 5u8;
        let ca = enc.encrypt(&a, &mut rng).expect("enc");
        let cb = std_enc.encrypt(&b, &mut rng).expect("enc");
        assert!(ca.is_fresh());
        assert_eq!(kp.decrypt(&ca).expect("dec"), a);
        assert_eq!(kp.decrypt(&cb).expect("dec"), b);
        let sum = pk.add(&ca, &cb);
        assert_eq!(kp.decrypt(&sum).expect("dec"), (&a + &b) % pk.n());
        // Two encryptions of one value differ (fresh randomness).
        let ca2 = enc.encrypt(&a, &mut rng).expect("enc");
        assert_ne!(ca.value(), ca2.value());
        let neg = enc
            .encrypt_signed(&BigInt::from(-7), &mut rng)
            .expect("enc");
        assert_eq!(kp.decrypt(&neg).expect("dec"), pk.n() - 7u8);
        assert_eq!(
            enc.encrypt(pk.n(), &mut rng),
            Err(PaillierError::PlaintextOutOfRange)
        );
    }
}
