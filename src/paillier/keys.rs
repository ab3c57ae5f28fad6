//! Paillier keys: the public key (N, g = N + 1) and an ordinary single-key keypair used as a
//! reference (tests, benchmarks); the distributed key lives in [`crate::keygen::KeyShare`].

use std::sync::Arc;

use caucus_modexp::{self as modexp, Modulus};
use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::One;
use rand::Rng;

use super::PaillierError;
use crate::arith;

/// Smallest accepted modulus (tests use 256-bit keys; production keys are 2048 bits or more).
pub const MIN_MODULUS_BITS: u64 = 128;
/// Largest accepted modulus.
pub const MAX_MODULUS_BITS: u64 = 8192;

/// A Paillier public key: the modulus N (g is fixed to N + 1), with Montgomery contexts for N²
/// and N built once (every encryption and decryption exponentiates mod N², the N-th-root
/// decryption of [`crate::decrypt`] mod N).
#[derive(Clone)]
pub struct PublicKey {
    n: BigUint,
    n2: BigUint,
    n_ctx: Arc<Modulus>,
    n2_ctx: Arc<Modulus>,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

impl Eq for PublicKey {}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PublicKey({} bits, key_id {})",
            self.n.bits(),
            &self.key_id()[..16]
        )
    }
}

impl PublicKey {
    /// A public key from N; refuses even moduli and sizes outside
    /// [`MIN_MODULUS_BITS`]..=[`MAX_MODULUS_BITS`].
    pub fn new(n: BigUint) -> Result<Self, PaillierError> {
        if n.is_even() || n.bits() < MIN_MODULUS_BITS || n.bits() > MAX_MODULUS_BITS {
            return Err(PaillierError::InvalidModulus);
        }
        let n2 = &n * &n;
        let n2_ctx = Arc::new(Modulus::new(&n2).ok_or(PaillierError::InvalidModulus)?);
        let n_ctx = Arc::new(Modulus::new(&n).ok_or(PaillierError::InvalidModulus)?);
        Ok(Self {
            n,
            n2,
            n_ctx,
            n2_ctx,
        })
    }

    /// `base^exp mod N` (constant-time, for secret exponents).
    pub fn pow_n(&self, base: &BigUint, exp: &BigUint) -> BigUint {
        self.n_ctx.pow(base, exp)
    }

    /// `base^exp mod N` for a public exponent (variable window).
    pub fn pow_n_public(&self, base: &BigUint, exp: &BigUint) -> BigUint {
        self.n_ctx.pow_public(base, exp)
    }

    /// `a⁻¹ mod N` for a public `a`; `None` when `gcd(a, N) ≠ 1`.
    pub fn inverse_n(&self, a: &BigUint) -> Option<BigUint> {
        self.n_ctx.inverse(a)
    }

    /// `base^exp mod N²` (constant-time Montgomery exponentiation, see [`caucus_modexp`]).
    pub fn pow_n2(&self, base: &BigUint, exp: &BigUint) -> BigUint {
        self.n2_ctx.pow(base, exp)
    }

    /// `base^exp mod N²` for a public, typically short, exponent (variable window).
    pub fn pow_n2_public(&self, base: &BigUint, exp: &BigUint) -> BigUint {
        self.n2_ctx.pow_public(base, exp)
    }

    /// The modulus N.
    pub fn n(&self) -> &BigUint {
        &self.n
    }

    /// N².
    pub fn n_squared(&self) -> &BigUint {
        &self.n2
    }

    /// The generator g = N + 1.
    pub fn g(&self) -> BigUint {
        &self.n + 1u8
    }

    /// Bit length of N.
    pub fn bits(&self) -> u64 {
        self.n.bits()
    }

    /// Key fingerprint: lowercase hex SHA-256 of N's big-endian bytes.
    pub fn key_id(&self) -> String {
        arith::sha256_hex(&self.n.to_bytes_be())
    }

    /// A random r ∈ Z*_N (rejection-sampled; a non-unit would factor N).
    pub fn random_unit<R: Rng + ?Sized>(&self, rng: &mut R) -> BigUint {
        use num_bigint::BigRng010;
        loop {
            let r = rng.random_biguint_below(&self.n);
            if r.bits() > 1 && r.gcd(&self.n).is_one() {
                return r;
            }
        }
    }

    /// `r^N mod N²` for a fresh random r: the expensive half of an encryption.
    pub fn random_rn<R: Rng + ?Sized>(&self, rng: &mut R) -> BigUint {
        self.pow_n2(&self.random_unit(rng), &self.n)
    }
}

/// A single-key Paillier keypair (p, q known to one holder): the reference implementation.
#[derive(Clone)]
pub struct Keypair {
    public: PublicKey,
    p: BigUint,
    q: BigUint,
    p2: BigUint,
    q2: BigUint,
    hp: BigUint,
    hq: BigUint,
    q_inv_p: BigUint,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({:?}, secret <redacted>)", self.public)
    }
}

impl Drop for Keypair {
    fn drop(&mut self) {
        for x in [
            &mut self.p,
            &mut self.q,
            &mut self.hp,
            &mut self.hq,
            &mut self.q_inv_p,
        ] {
            arith::zeroize_biguint(x);
        }
    }
}

impl Keypair {
    /// Generates a keypair whose N has exactly `bits` bits (`bits` even, ≥ 128).
    pub fn generate<R: Rng + ?Sized>(bits: u64, rng: &mut R) -> Result<Self, PaillierError> {
        if bits % 2 == 1 || !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) {
            return Err(PaillierError::InvalidModulus);
        }
        loop {
            let p = arith::random_prime(bits / 2, rng);
            let q = arith::random_prime(bits / 2, rng);
            if p != q {
                return Self::from_primes(p, q);
            }
        }
    }

    /// A keypair from two distinct odd primes (not checked for primality).
    pub fn from_primes(p: BigUint, q: BigUint) -> Result<Self, PaillierError> {
        if p == q {
            return Err(PaillierError::InvalidModulus);
        }
        let public = PublicKey::new(&p * &q)?;
        let p2 = &p * &p;
        let q2 = &q * &q;
        let g = public.g();
        // h_p = L_p(g^(p−1) mod p²)^(−1) mod p (CRT decryption as in python-paillier).
        let h = |pr: &BigUint, pr2: &BigUint| -> Result<BigUint, PaillierError> {
            let x = modexp::modpow(&g, &(pr - 1u8), pr2);
            let l = (x - 1u8) / pr;
            l.modinv(pr).ok_or(PaillierError::InvalidModulus)
        };
        let hp = h(&p, &p2)?;
        let hq = h(&q, &q2)?;
        let q_inv_p = q.modinv(&p).ok_or(PaillierError::InvalidModulus)?;
        Ok(Self {
            public,
            p,
            q,
            p2,
            q2,
            hp,
            hq,
            q_inv_p,
        })
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Decrypts to the plaintext in `[0, N)` (CRT).
    pub fn decrypt(&self, c: &super::Ciphertext) -> Result<BigUint, PaillierError> {
        let c = c.value();
        if c >= self.public.n_squared() || c.gcd(self.public.n()) != BigUint::one() {
            return Err(PaillierError::CiphertextOutOfRange);
        }
        let part = |pr: &BigUint, pr2: &BigUint, h: &BigUint| {
            let x = modexp::modpow(c, &(pr - 1u8), pr2);
            (((x - 1u8) / pr) * h) % pr
        };
        let mp = part(&self.p, &self.p2, &self.hp);
        let mq = part(&self.q, &self.q2, &self.hq);
        // m = mq + q·((mp − mq)·q^(−1) mod p)
        let diff = (&mp + &self.p - (&mq % &self.p)) % &self.p;
        let u = (diff * &self.q_inv_p) % &self.p;
        Ok(mq + u * &self.q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn keypair_has_exact_bits_and_decrypts() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let kp = Keypair::generate(256, &mut rng).expect("keygen");
        assert_eq!(kp.public().bits(), 256);
        for m in [0u32, 1, 42, 1 << 30] {
            let c = kp
                .public()
                .encrypt(&BigUint::from(m), &mut rng)
                .expect("enc");
            assert_eq!(kp.decrypt(&c).expect("dec"), BigUint::from(m));
        }
        let m = kp.public().n() - 1u8;
        let c = kp.public().encrypt(&m, &mut rng).expect("enc");
        assert_eq!(kp.decrypt(&c).expect("dec"), m);
        assert!(format!("{kp:?}").contains("<redacted>"));
    }

    #[test]
    fn public_key_refuses_bad_moduli() {
        assert_eq!(
            PublicKey::new(BigUint::from(1u8) << 200u32),
            Err(PaillierError::InvalidModulus)
        );
        assert_eq!(
            PublicKey::new(BigUint::from(15u8)),
            Err(PaillierError::InvalidModulus)
        );
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        assert!(Keypair::generate(255, &mut rng).is_err());
    }
}
