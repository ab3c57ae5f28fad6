//! Montgomery arithmetic on fixed-length `u64` limbs without allocation per product: the building
//! block of the fixed-base tables of [`crate::paillier::djn`] (encryption randomness `h_s^α` as a
//! product of precomputed powers), and a sliding-window [`Monty::pow`].
//!
//! A product (or a dedicated squaring, about half the limb products) goes into a double-width
//! buffer, then a Montgomery reduction (REDC). Measured against num-bigint 0.5's `modpow` on this
//! machine, [`Monty::pow`] is on par (0.8–1.2× depending on size), so general exponentiations stay
//! on num-bigint; what this module adds is an allocation-free modular product for long chains of
//! multiplications by precomputed values.
//!
//! Not constant-time (neither is num-bigint): the crate's threat model is semi-honest parties on
//! authenticated channels.

use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::{One, Zero};

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

    /// `out = a²·R⁻¹ mod m` (about half the limb products of [`Self::mul`]).
    pub(crate) fn sqr(&self, a: &[u64], out: &mut [u64], z: &mut [u64]) {
        let n = self.m.len();
        let z = &mut z[..2 * n];
        z.fill(0);
        // Off-diagonal products a_i·a_j, i < j.
        for i in 0..n {
            let ai = a[i];
            let mut c = 0u64;
            for (zj, &aj) in z[2 * i + 1..i + n].iter_mut().zip(&a[i + 1..]) {
                let t = u128::from(*zj) + u128::from(ai) * u128::from(aj) + u128::from(c);
                *zj = t as u64;
                c = (t >> 64) as u64;
            }
            z[i + n] = c;
        }
        // Double, then add the squares a_i² on the diagonal.
        let mut top = 0u64;
        for w in z.iter_mut() {
            let nw = (*w << 1) | top;
            top = *w >> 63;
            *w = nw;
        }
        let mut c = 0u64;
        for (i, &ai) in a.iter().enumerate() {
            let sq = u128::from(ai) * u128::from(ai);
            let s = u128::from(z[2 * i]) + (sq as u64 as u128) + u128::from(c);
            z[2 * i] = s as u64;
            let s2 = u128::from(z[2 * i + 1]) + (sq >> 64) + (s >> 64);
            z[2 * i + 1] = s2 as u64;
            c = (s2 >> 64) as u64;
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

    /// `base^exp mod m`.
    pub fn pow(&self, base: &BigUint, exp: &BigUint) -> BigUint {
        if exp.is_zero() {
            return BigUint::one() % &self.modulus;
        }
        let b = self.to_mont(base);
        let r = self.pow_mont(&b, exp);
        self.to_plain(&r)
    }

    /// `base^exp` with `base` and the result in Montgomery form (sliding window).
    pub(crate) fn pow_mont(&self, base: &[u64], exp: &BigUint) -> Vec<u64> {
        let n = self.m.len();
        let bits = exp.bits();
        if bits == 0 {
            return self.one.clone();
        }
        let w: u64 = match bits {
            0..=24 => 1,
            25..=80 => 3,
            81..=240 => 4,
            241..=672 => 5,
            673..=1792 => 6,
            _ => 7,
        };
        let mut z = self.scratch();
        // table[k] = base^(2k+1)
        let mut table: Vec<Vec<u64>> = Vec::with_capacity(1 << (w - 1));
        table.push(base.to_vec());
        if w > 1 {
            let mut b2 = vec![0; n];
            self.sqr(base, &mut b2, &mut z);
            for k in 1..(1usize << (w - 1)) {
                let mut next = vec![0; n];
                self.mul(&table[k - 1], &b2, &mut next, &mut z);
                table.push(next);
            }
        }
        let mut acc = vec![0u64; n];
        let mut tmp = vec![0u64; n];
        let mut started = false;
        let mut i = bits as i64 - 1;
        while i >= 0 {
            if !exp.bit(i as u64) {
                if started {
                    self.sqr(&acc, &mut tmp, &mut z);
                    std::mem::swap(&mut acc, &mut tmp);
                }
                i -= 1;
                continue;
            }
            let mut l = (i - w as i64 + 1).max(0);
            while !exp.bit(l as u64) {
                l += 1;
            }
            let mut val = 0usize;
            for k in (l..=i).rev() {
                val = (val << 1) | usize::from(exp.bit(k as u64));
            }
            if started {
                for _ in l..=i {
                    self.sqr(&acc, &mut tmp, &mut z);
                    std::mem::swap(&mut acc, &mut tmp);
                }
                self.mul(&acc, &table[val >> 1], &mut tmp, &mut z);
                std::mem::swap(&mut acc, &mut tmp);
            } else {
                acc.copy_from_slice(&table[val >> 1]);
                started = true;
            }
            i = l - 1;
        }
        acc
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

    /// `out = a·g mod m` for `a < m` (any form: a Montgomery-form `a` gives the Montgomery form of
    /// the product) and a small `g < 2^62`: one limb-by-word product and a quotient estimated from
    /// the top 64 bits of m, a few times cheaper than a full product.
    pub(crate) fn mul_small(&self, a: &[u64], g: u64, out: &mut [u64], t: &mut [u64]) {
        let n = self.m.len();
        let t = &mut t[..n + 1];
        let mut c = 0u64;
        for (tj, &aj) in t.iter_mut().zip(a) {
            let v = u128::from(aj) * u128::from(g) + u128::from(c);
            *tj = v as u64;
            c = (v >> 64) as u64;
        }
        t[n] = c;
        // Top 64 bits of m (bit length B) and of t at the same alignment.
        let bits = 64 * n as u64 - u64::from(self.m[n - 1].leading_zeros());
        let off = bits - 64; // bit offset of m's top word (B ≥ 64 when n ≥ 2; see below)
        let window = |v: &[u64], at: u64, len: usize| -> u128 {
            // bits [at, at + 128) of v
            let mut r = 0u128;
            for k in 0..3u64 {
                let idx = (at / 64 + k) as usize;
                let word = if idx < len { v[idx] } else { 0 };
                let shift = 64 * k as i64 - (at % 64) as i64;
                if (0..128).contains(&shift) {
                    r |= u128::from(word) << shift;
                } else if shift < 0 && shift > -64 {
                    r |= u128::from(word >> (-shift));
                }
            }
            r
        };
        let m_top = window(&self.m, off, n) as u64;
        let t_top = window(t, off, n + 1);
        let q = (t_top / (u128::from(m_top) + 1)) as u64;
        // t −= q·m
        let mut borrow = 0u64;
        let mut carry = 0u64;
        for (tj, &mj) in t[..n].iter_mut().zip(&self.m) {
            let p = u128::from(mj) * u128::from(q) + u128::from(carry);
            carry = (p >> 64) as u64;
            let (d1, b1) = tj.overflowing_sub(p as u64);
            let (d2, b2) = d1.overflowing_sub(borrow);
            *tj = d2;
            borrow = u64::from(b1 || b2);
        }
        t[n] = t[n].wrapping_sub(carry).wrapping_sub(borrow);
        while t[n] != 0 || geq(&t[..n], &self.m) {
            let b = sub_in_place(&mut t[..n], &self.m);
            t[n] = t[n].wrapping_sub(u64::from(b));
        }
        out.copy_from_slice(&t[..n]);
    }

    /// `g^exp mod m` for a small base `g < 2^62`: left-to-right binary, a squaring per bit and a
    /// cheap [`Self::mul_small`] per set bit (the Boneh–Franklin first round uses small bases).
    pub fn pow_small(&self, g: u64, exp: &BigUint) -> BigUint {
        let n = self.m.len();
        if n < 2 || g >= 1 << 62 {
            return BigUint::from(g).modpow(exp, &self.modulus);
        }
        let bits = exp.bits();
        if bits == 0 {
            return BigUint::one() % &self.modulus;
        }
        let mut z = self.scratch();
        let mut acc = self.to_mont(&BigUint::from(g));
        let mut tmp = vec![0u64; n];
        for i in (0..bits - 1).rev() {
            self.sqr(&acc, &mut tmp, &mut z);
            if exp.bit(i) {
                self.mul_small(&tmp, g, &mut acc, &mut z);
            } else {
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        self.to_plain(&acc)
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

/// `base^exp mod m`: Montgomery for odd `m > 1`, num-bigint otherwise.
pub fn modpow(base: &BigUint, exp: &BigUint, m: &BigUint) -> BigUint {
    match Monty::new(m) {
        Some(mt) => mt.pow(base, exp),
        None => base.modpow(exp, m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigRng010;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn matches_num_bigint_modpow() {
        let mut rng = ChaCha20Rng::seed_from_u64(41);
        for bits in [3u64, 63, 64, 65, 127, 128, 200, 512, 1000, 1024, 2048, 4100] {
            for ebits in [0u64, 1, 2, 7, 30, 64, 100, 300, 1100, 2000] {
                let m = rng.random_biguint(bits) | BigUint::one() | (BigUint::one() << (bits - 1));
                let b = rng.random_biguint(bits + 5);
                let e = rng.random_biguint(ebits);
                assert_eq!(modpow(&b, &e, &m), b.modpow(&e, &m), "{bits} {ebits}");
            }
        }
        // Edge values: base 0, 1, m − 1, m, and a modulus with low top limb.
        let m = (BigUint::one() << 1030u32) + 12_345u32;
        let m = if m.is_even() { m + 1u8 } else { m };
        let e = BigUint::from(65_537u32);
        for b in [BigUint::zero(), BigUint::one(), &m - 1u8, m.clone()] {
            assert_eq!(modpow(&b, &e, &m), b.modpow(&e, &m));
        }
        assert_eq!(
            modpow(&BigUint::from(5u8), &e, &BigUint::from(8u8)),
            BigUint::from(5u8).modpow(&e, &BigUint::from(8u8))
        );
        assert!(Monty::new(&BigUint::one()).is_none());
        assert!(Monty::new(&BigUint::from(10u8)).is_none());
    }

    #[test]
    fn small_base_powers_match() {
        let mut rng = ChaCha20Rng::seed_from_u64(43);
        for bits in [128u64, 130, 191, 512, 1024, 1030, 2048] {
            let m = rng.random_biguint(bits) | BigUint::one() | (BigUint::one() << (bits - 1));
            let mt = Monty::new(&m).expect("odd");
            for g in [2u64, 3, 0x3fff_ffff_ffff_ffff, 12_345_678_901] {
                for ebits in [0u64, 1, 5, 64, 511, 1023] {
                    let e = rng.random_biguint(ebits);
                    let want = BigUint::from(g).modpow(&e, &m);
                    assert_eq!(mt.pow_small(g, &e), want, "{bits} {g} {ebits}");
                }
            }
        }
    }

    #[test]
    fn mul_and_sqr_agree() {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let m = rng.random_biguint(777) | BigUint::one();
        let mt = Monty::new(&m).expect("odd");
        let mut z = mt.scratch();
        for _ in 0..20 {
            let a = rng.random_biguint_below(&m);
            let b = rng.random_biguint_below(&m);
            let (am, bm) = (mt.to_mont(&a), mt.to_mont(&b));
            let mut out = vec![0; mt.limbs()];
            mt.mul(&am, &bm, &mut out, &mut z);
            assert_eq!(mt.to_plain(&out), (&a * &b) % &m);
            mt.sqr(&am, &mut out, &mut z);
            assert_eq!(mt.to_plain(&out), (&a * &a) % &m);
        }
        assert_eq!(mt.to_plain(mt.one()), BigUint::one());
    }
}
