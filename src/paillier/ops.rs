//! Ciphertexts, encryption and homomorphic operations, and the pool of precomputed `r^N`.
//!
//! Freshness follows TNO's rule: a ciphertext is *fresh* when its randomness has never left this
//! process. Encryption and re-randomisation produce fresh ciphertexts; an operation's result is
//! fresh only when all its ciphertext inputs were; [`Ciphertext::prepare_send`] re-randomises a
//! non-fresh ciphertext before it leaves and marks it non-fresh afterwards (it has been seen).
//! Received ciphertexts are non-fresh.

use std::sync::Mutex;

use num_bigint::{BigInt, BigUint};
use num_integer::Integer;
use num_traits::{One, Zero};
use rand::Rng;

use super::{PaillierError, PublicKey};
use crate::arith;

/// A Paillier ciphertext in Z*_{N²} with its freshness flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ciphertext {
    value: BigUint,
    fresh: bool,
}

impl Ciphertext {
    /// A received ciphertext value, checked to be a unit of Z_{N²} for `pk`; it is not fresh.
    pub fn from_value(pk: &PublicKey, value: BigUint) -> Result<Self, PaillierError> {
        if value.is_zero() || &value >= pk.n_squared() || !value.gcd(pk.n()).is_one() {
            return Err(PaillierError::CiphertextOutOfRange);
        }
        Ok(Self {
            value,
            fresh: false,
        })
    }

    /// The value in Z_{N²}.
    pub fn value(&self) -> &BigUint {
        &self.value
    }

    /// Whether its randomness has never left this process.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Re-randomises `c ← c·r^N` (it becomes fresh).
    pub fn rerandomize<R: Rng + ?Sized>(&mut self, pk: &PublicKey, rng: &mut R) {
        let rn = pk.random_rn(rng);
        self.value = (&self.value * rn) % pk.n_squared();
        self.fresh = true;
    }

    /// Makes the ciphertext safe to send: re-randomises it unless it is fresh, then marks it
    /// non-fresh (its randomness is about to be seen). Returns the value to put on the wire.
    pub fn prepare_send<R: Rng + ?Sized>(&mut self, pk: &PublicKey, rng: &mut R) -> &BigUint {
        if !self.fresh {
            self.rerandomize(pk, rng);
        }
        self.fresh = false;
        &self.value
    }
}

impl PublicKey {
    /// `g^m = 1 + m·N mod N²` for `m < N`.
    fn g_pow(&self, m: &BigUint) -> BigUint {
        (BigUint::one() + m * self.n()) % self.n_squared()
    }

    fn check_plain(&self, m: &BigUint) -> Result<(), PaillierError> {
        if m >= self.n() {
            return Err(PaillierError::PlaintextOutOfRange);
        }
        Ok(())
    }

    /// Encrypts `m ∈ [0, N)`: `(1 + m·N)·r^N mod N²`.
    pub fn encrypt<R: Rng + ?Sized>(
        &self,
        m: &BigUint,
        rng: &mut R,
    ) -> Result<Ciphertext, PaillierError> {
        self.check_plain(m)?;
        let rn = self.random_rn(rng);
        Ok(self.encrypt_with_rn(m, &rn))
    }

    /// Encrypts a signed value with |m| < N/2 (see [`super::encode_signed`]).
    pub fn encrypt_signed<R: Rng + ?Sized>(
        &self,
        m: &BigInt,
        rng: &mut R,
    ) -> Result<Ciphertext, PaillierError> {
        let m = super::encode_signed(m, self)?;
        self.encrypt(&m, rng)
    }

    /// Encrypts with a precomputed `r^N mod N²` (one multiplication); `m < N` is the caller's duty
    /// (reduced otherwise).
    pub fn encrypt_with_rn(&self, m: &BigUint, rn: &BigUint) -> Ciphertext {
        let gm = self.g_pow(&(m % self.n()));
        Ciphertext {
            value: (gm * rn) % self.n_squared(),
            fresh: true,
        }
    }

    /// Encrypts with an `r^N` from `pool` when it has one, computing one otherwise.
    pub fn encrypt_pooled<R: Rng + ?Sized>(
        &self,
        m: &BigUint,
        pool: &RandomnessPool,
        rng: &mut R,
    ) -> Result<Ciphertext, PaillierError> {
        self.check_plain(m)?;
        if pool.n != *self.n() {
            return Err(PaillierError::KeyMismatch);
        }
        let rn = match pool.take() {
            Some(rn) => rn,
            None => self.random_rn(rng),
        };
        Ok(self.encrypt_with_rn(m, &rn))
    }

    /// E(a + b) = E(a)·E(b).
    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Ciphertext {
        Ciphertext {
            value: (&a.value * &b.value) % self.n_squared(),
            fresh: a.fresh && b.fresh,
        }
    }

    /// E(a + m) for a public plaintext `m` (reduced mod N).
    pub fn add_plain(&self, a: &Ciphertext, m: &BigUint) -> Ciphertext {
        Ciphertext {
            value: (&a.value * self.g_pow(&(m % self.n()))) % self.n_squared(),
            fresh: a.fresh,
        }
    }

    /// E(−a) = E(a)^(−1).
    pub fn neg(&self, a: &Ciphertext) -> Ciphertext {
        // a is a unit of Z_{N²} (checked at construction), so the inverse exists.
        let inv = a.value.modinv(self.n_squared()).unwrap_or_default();
        Ciphertext {
            value: inv,
            fresh: a.fresh,
        }
    }

    /// E(a − b).
    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Ciphertext {
        self.add(a, &self.neg(b))
    }

    /// E(k·a) = E(a)^k for a public signed scalar `k`.
    pub fn mul_scalar(&self, a: &Ciphertext, k: &BigInt) -> Ciphertext {
        let k = arith::mod_floor(k, self.n());
        Ciphertext {
            value: self.pow_n2(&a.value, &k),
            fresh: a.fresh,
        }
    }

    /// Re-randomised copy of `c`.
    pub fn rerandomized<R: Rng + ?Sized>(&self, c: &Ciphertext, rng: &mut R) -> Ciphertext {
        let mut out = c.clone();
        out.rerandomize(self, rng);
        out
    }
}

/// Signed scalar helper: `BigInt` from an `i64`.
pub fn scalar(k: i64) -> BigInt {
    BigInt::from(k)
}

/// A bounded pool of precomputed `r^N mod N²` values for one public key, so that encryption on the
/// hot path is one multiplication. It is `Sync`: a background thread (in `caucus-node`) calls
/// [`RandomnessPool::fill_one`] while encryptors call [`RandomnessPool::take`]. Each value is used
/// once.
pub struct RandomnessPool {
    pk: PublicKey,
    n: BigUint,
    capacity: usize,
    items: Mutex<Vec<BigUint>>,
}

impl std::fmt::Debug for RandomnessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RandomnessPool({}/{} <redacted>)",
            self.len(),
            self.capacity
        )
    }
}

impl RandomnessPool {
    /// An empty pool for `pk` holding at most `capacity` values.
    pub fn new(pk: &PublicKey, capacity: usize) -> Self {
        Self {
            pk: pk.clone(),
            n: pk.n().clone(),
            capacity,
            items: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<BigUint>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Values available.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Maximum number of values held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the pool is full.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Computes one `r^N` (outside the lock) and adds it; returns `false` if the pool was full.
    pub fn fill_one<R: Rng + ?Sized>(&self, rng: &mut R) -> bool {
        if self.is_full() {
            return false;
        }
        let rn = self.pk.random_rn(rng);
        let mut items = self.lock();
        if items.len() >= self.capacity {
            return false;
        }
        items.push(rn);
        true
    }

    /// Takes one value (never handed out twice).
    pub fn take(&self) -> Option<BigUint> {
        self.lock().pop()
    }
}

impl Drop for RandomnessPool {
    fn drop(&mut self) {
        let mut items = self.lock();
        for x in items.iter_mut() {
            arith::zeroize_biguint(x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paillier::{Keypair, decode_signed};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn setup() -> (Keypair, ChaCha20Rng) {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        (Keypair::generate(256, &mut rng).expect("kp"), rng)
    }

    #[test]
    fn homomorphic_properties_hold_on_random_values() {
        let (kp, mut rng) = setup();
        let pk = kp.public();
        use rand::RngExt;
        for _ in 0..40 {
            let a: i64 = rng.random_range(-1_000_000_000..1_000_000_000);
            let b: i64 = rng.random_range(-1_000_000_000..1_000_000_000);
            let k: i64 = rng.random_range(-100_000..100_000);
            let ca = pk.encrypt_signed(&BigInt::from(a), &mut rng).expect("enc");
            let cb = pk.encrypt_signed(&BigInt::from(b), &mut rng).expect("enc");
            let dec = |c: &Ciphertext| decode_signed(&kp.decrypt(c).expect("dec"), pk);
            assert_eq!(dec(&pk.add(&ca, &cb)), BigInt::from(a + b));
            assert_eq!(dec(&pk.sub(&ca, &cb)), BigInt::from(a - b));
            assert_eq!(dec(&pk.neg(&ca)), BigInt::from(-a));
            assert_eq!(dec(&pk.mul_scalar(&ca, &scalar(k))), BigInt::from(a) * k);
            let pa = crate::paillier::encode_signed(&BigInt::from(b), pk).expect("enc");
            assert_eq!(dec(&pk.add_plain(&ca, &pa)), BigInt::from(a + b));
            assert_eq!(dec(&pk.rerandomized(&ca, &mut rng)), BigInt::from(a));
        }
    }

    #[test]
    fn freshness_rule() {
        let (kp, mut rng) = setup();
        let pk = kp.public();
        let mut a = pk.encrypt(&BigUint::from(5u8), &mut rng).expect("enc");
        assert!(a.is_fresh());
        let sent = a.prepare_send(pk, &mut rng).clone();
        assert!(!a.is_fresh());
        let received = Ciphertext::from_value(pk, sent.clone()).expect("valid");
        assert!(!received.is_fresh());
        let b = pk.encrypt(&BigUint::from(6u8), &mut rng).expect("enc");
        assert!(!pk.add(&received, &b).is_fresh());
        assert!(pk.add(&b, &b).is_fresh());
        // Sending a non-fresh ciphertext re-randomises it: a new value, same plaintext.
        let mut again = received.clone();
        let resent = again.prepare_send(pk, &mut rng).clone();
        assert_ne!(resent, sent);
        assert_eq!(kp.decrypt(&again).expect("dec"), BigUint::from(5u8));
    }

    #[test]
    fn textbook_formula_and_range_checks() {
        let (kp, mut rng) = setup();
        let pk = kp.public();
        let m = BigUint::from(123_456u32);
        let r = pk.random_unit(&mut rng);
        let c =
            ((BigUint::one() + &m * pk.n()) * r.modpow(pk.n(), pk.n_squared())) % pk.n_squared();
        let c = Ciphertext::from_value(pk, c).expect("valid");
        assert_eq!(kp.decrypt(&c).expect("dec"), m);
        assert_eq!(
            pk.encrypt(pk.n(), &mut rng),
            Err(PaillierError::PlaintextOutOfRange)
        );
        assert_eq!(
            Ciphertext::from_value(pk, pk.n_squared().clone()),
            Err(PaillierError::CiphertextOutOfRange)
        );
        assert_eq!(
            Ciphertext::from_value(pk, pk.n().clone()),
            Err(PaillierError::CiphertextOutOfRange)
        );
        assert_eq!(
            Ciphertext::from_value(pk, BigUint::zero()),
            Err(PaillierError::CiphertextOutOfRange)
        );
    }

    #[test]
    fn pool_values_are_used_once_and_bounded() {
        let (kp, mut rng) = setup();
        let pk = kp.public();
        let pool = RandomnessPool::new(pk, 3);
        while pool.fill_one(&mut rng) {}
        assert_eq!(pool.len(), 3);
        assert!(!pool.fill_one(&mut rng));
        let m = BigUint::from(77u8);
        let c1 = pk.encrypt_pooled(&m, &pool, &mut rng).expect("enc");
        let c2 = pk.encrypt_pooled(&m, &pool, &mut rng).expect("enc");
        assert_ne!(c1, c2);
        assert_eq!(pool.len(), 1);
        for c in [&c1, &c2] {
            assert_eq!(kp.decrypt(c).expect("dec"), m);
        }
        // Empty pool falls back to computing r^N.
        let _ = pool.take();
        assert!(pool.is_empty());
        assert_eq!(
            kp.decrypt(&pk.encrypt_pooled(&m, &pool, &mut rng).expect("enc"))
                .expect("dec"),
            m
        );
        let other = Keypair::generate(256, &mut rng).expect("kp");
        assert_eq!(
            other.public().encrypt_pooled(&m, &pool, &mut rng),
            Err(PaillierError::KeyMismatch)
        );
        assert!(format!("{pool:?}").contains("<redacted>"));
    }
}
