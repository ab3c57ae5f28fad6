//! Montgomery arithmetic on fixed-length `u64` limbs without allocation per product: the building
//! block of the fixed-base tables of [`crate::paillier::djn`] (encryption randomness `h_s^α` as a
//! product of precomputed powers) and of the Boneh–Franklin twisted-group powers.
//!
//! A product goes into a double-width buffer, then a Montgomery reduction (REDC). Plain
//! exponentiations do not use this module: AWS-LC's assembly ([`caucus_modexp`]) is 2.3× faster
//! than a sliding window over these products at 2048 bits; what this module adds is an
//! allocation-free modular product for long chains of multiplications by precomputed values.
//!
//! Not constant-time (neither is num-bigint): the crate's threat model is semi-honest parties on
//! authenticated channels.

use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::One;

/// A Montgomery context for one odd modulus `m > 1` (R = 2^(64·limbs)).
#[derive(Clone, Debug)]
pub struct Monty {
    m: Vec<u64>,
    /// −m⁻¹ mod 2^64.
    m0inv: u64,
    /// R² mod m (to enter the Montgomery domain).
    rr: Vec<u64>,
    /// R mod m (Montgomery one).
    one: Vec<u64>,
    modulus: BigUint,
}

/// −b⁻¹ mod 2^64 for odd `b` (Newton iteration).
fn neg_inv64(b: u64) -> u64 {
    let mut x: u64 = 1;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(b.wrapping_mul(x)));
    }
    x.wrapping_neg()
}

fn to_limbs(x: &BigUint, n: usize) -> Vec<u64> {
    let mut v = x.to_u64_digits();
    v.resize(n, 0);
    v
}

/// `a >= b` for equal-length little-endian limbs.
fn geq(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// `a -= b` (equal lengths), returning the borrow.
fn sub_in_place(a: &mut [u64], b: &[u64]) -> bool {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
    borrow
}

impl Monty {
    /// A context for `m`; `None` unless `m` is odd and greater than 1.
    pub fn new(m: &BigUint) -> Option<Self> {
        if m.is_even() || m <= &BigUint::one() {
            return None;
        }
        let digits = m.to_u64_digits();
        let n = digits.len();
        let m0inv = neg_inv64(digits[0]);
        let r = BigUint::one() << (64 * n);
        let one = to_limbs(&(&r % m), n);
        let rr = to_limbs(&((&r * &r) % m), n);
        Some(Self {
            m: digits,
            m0inv,
            rr,
            one,
            modulus: m.clone(),
        })
    }

    /// The modulus.
    pub fn modulus(&self) -> &BigUint {
        &self.modulus
    }

    /// Limbs per element.
    pub fn limbs(&self) -> usize {
        self.m.len()
    }

    /// Scratch space for [`Self::mul`] and [`Self::sqr`] (2·limbs + 1 words).
    pub(crate) fn scratch(&self) -> Vec<u64> {
        vec![0; 2 * self.m.len() + 1]
    }

    /// REDC of the double-width `z` (z < m·R) into `out` (< m).
    fn redc(&self, z: &mut [u64], out: &mut [u64]) {
        let n = self.m.len();
        let mut extra = 0u64;
        for i in 0..n {
            let q = z[i].wrapping_mul(self.m0inv);
            let mut c = 0u64;
            for (zj, &mj) in z[i..i + n].iter_mut().zip(&self.m) {
                let t = u128::from(*zj) + u128::from(q) * u128::from(mj) + u128::from(c);
                *zj = t as u64;
                c = (t >> 64) as u64;
            }
            let s = u128::from(z[i + n]) + u128::from(c) + u128::from(extra);
            z[i + n] = s as u64;
            extra = (s >> 64) as u64;
        }
        out.copy_from_slice(&z[n..2 * n]);
        if extra != 0 || geq(out, &self.m) {
            sub_in_place(out, &self.m);
        }
    }

    /// `out = a·b·R⁻¹ mod m` for Montgomery-form `a, b < m`; `z` is scratch from [`Self::scratch`].
    pub(crate) fn mul(&self, a: &[u64], b: &[u64], out: &mut [u64], z: &mut [u64]) {
        let n = self.m.len();
        let z = &mut z[..2 * n];
        z.fill(0);
        for (i, &bi) in b.iter().enumerate() {
            let mut c = 0u64;
            for (zj, &aj) in z[i..i + n].iter_mut().zip(a) {
                let t = u128::from(*zj) + u128::from(aj) * u128::from(bi) + u128::from(c);
                *zj = t as u64;
                c = (t >> 64) as u64;
            }
            z[i + n] = c;
        }
        self.redc(z, out);
    }

    /// `x` (any size) into Montgomery form.
    pub(crate) fn to_mont(&self, x: &BigUint) -> Vec<u64> {
        let n = self.m.len();
        let xr = if x >= &self.modulus {
            x % &self.modulus
        } else {
            x.clone()
        };
        let xl = to_limbs(&xr, n);
        let mut out = vec![0; n];
        let mut z = self.scratch();
        self.mul(&xl, &self.rr, &mut out, &mut z);
        out
    }

    /// From Montgomery form back to an integer in `[0, m)`.
    pub(crate) fn to_plain(&self, x: &[u64]) -> BigUint {
        let n = self.m.len();
        let mut z = vec![0u64; 2 * n];
        z[..n].copy_from_slice(x);
        let mut out = vec![0; n];
        self.redc(&mut z, &mut out);
        BigUint::from_slice(&limbs_to_u32(&out))
    }

    /// Montgomery one (R mod m).
    pub(crate) fn one(&self) -> &[u64] {
        &self.one
    }
}

impl Monty {
    /// `out = a + b mod m` for `a, b < m` (same in Montgomery form).
    pub(crate) fn add_mod(&self, a: &[u64], b: &[u64], out: &mut [u64]) {
        let mut carry = false;
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            let (s1, c1) = x.overflowing_add(y);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *o = s2;
            carry = c1 || c2;
        }
        if carry || geq(out, &self.m) {
            sub_in_place(out, &self.m);
        }
    }

    /// `out = a − b mod m` for `a, b < m`.
    pub(crate) fn sub_mod(&self, a: &[u64], b: &[u64], out: &mut [u64]) {
        out.copy_from_slice(a);
        if sub_in_place(out, b) {
            // wrapped: add m back (the carry out cancels the borrow)
            let mut carry = false;
            for (o, &y) in out.iter_mut().zip(&self.m) {
                let (s1, c1) = o.overflowing_add(y);
                let (s2, c2) = s1.overflowing_add(u64::from(carry));
                *o = s2;
                carry = c1 || c2;
            }
        }
    }
}

fn limbs_to_u32(v: &[u64]) -> Vec<u32> {
    let mut out = Vec::with_capacity(2 * v.len());
    for &x in v {
        out.push(x as u32);
        out.push((x >> 32) as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigRng010;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn mul_and_sqr_agree() {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        for bits in [3u64, 63, 64, 65, 127, 128, 200, 777, 1024, 2048, 4100] {
            mul_and_sqr_agree_at(&mut rng, bits);
        }
        assert!(Monty::new(&BigUint::one()).is_none());
        assert!(Monty::new(&BigUint::from(10u8)).is_none());
    }

    fn mul_and_sqr_agree_at(rng: &mut ChaCha20Rng, bits: u64) {
        let m = rng.random_biguint(bits) | BigUint::one() | (BigUint::one() << (bits - 1));
        let mt = Monty::new(&m).expect("odd");
        let mut z = mt.scratch();
        for _ in 0..20 {
            let a = rng.random_biguint_below(&m);
            let b = rng.random_biguint_below(&m);
            let (am, bm) = (mt.to_mont(&a), mt.to_mont(&b));
            let mut out = vec![0; mt.limbs()];
            mt.mul(&am, &bm, &mut out, &mut z);
            assert_eq!(mt.to_plain(&out), (&a * &b) % &m);
            mt.mul(&am, &am, &mut out, &mut z);
            assert_eq!(mt.to_plain(&out), (&a * &a) % &m);
        }
        assert_eq!(mt.to_plain(mt.one()), BigUint::one());
    }
}
