//! Number theory used by Paillier and the distributed key generation: small-prime tables, the
//! Jacobi symbol, Miller–Rabin, prime generation, public field primes (Mersenne primes), hashing to
//! integers, and best-effort zeroisation of big integers.

use num_bigint::{BigInt, BigRng010, BigUint, Sign};
use num_integer::Integer;
use num_traits::{One, Zero};
use rand::Rng;

/// All primes `<= limit` (sieve of Eratosthenes).
pub fn primes_up_to(limit: u32) -> Vec<u32> {
    let limit = limit as usize;
    if limit < 2 {
        return Vec::new();
    }
    let mut composite = vec![false; limit + 1];
    let mut out = Vec::new();
    for i in 2..=limit {
        if !composite[i] {
            out.push(i as u32);
            let mut j = i * i;
            while j <= limit {
                composite[j] = true;
                j += i;
            }
        }
    }
    out
}

/// The Jacobi symbol (a / n) for odd `n > 0`: returns -1, 0 or 1.
///
/// Binary algorithm on `u64` limbs, in place (shifts and subtractions, no big divisions after the
/// first reduction): the Boneh–Franklin bases of the key generation each need one.
pub fn jacobi(a: &BigUint, n: &BigUint) -> i8 {
    debug_assert!(n.is_odd());
    let mut a = (a % n).to_u64_digits();
    let mut n = n.to_u64_digits();
    let mut result = 1i8;
    let trim = |v: &mut Vec<u64>| {
        while v.last() == Some(&0) {
            v.pop();
        }
    };
    loop {
        trim(&mut a);
        if a.is_empty() {
            return if n == [1] { result } else { 0 };
        }
        // Remove the factors of two: (2/n) = −1 iff n ≡ 3, 5 (mod 8).
        let tz = limbs_trailing_zeros(&a);
        if tz > 0 {
            limbs_shr(&mut a, tz);
            trim(&mut a);
            let n_mod8 = n[0] & 7;
            if tz % 2 == 1 && (n_mod8 == 3 || n_mod8 == 5) {
                result = -result;
            }
        }
        // Both odd: order them (reciprocity flips when both are 3 mod 4), then a ← a − n.
        if limbs_lt(&a, &n) {
            std::mem::swap(&mut a, &mut n);
            if a[0] & 3 == 3 && n[0] & 3 == 3 {
                result = -result;
            }
        }
        limbs_sub(&mut a, &n);
    }
}

fn limbs_trailing_zeros(v: &[u64]) -> u64 {
    let mut tz = 0u64;
    for &w in v {
        if w == 0 {
            tz += 64;
        } else {
            return tz + u64::from(w.trailing_zeros());
        }
    }
    tz
}

fn limbs_shr(v: &mut [u64], s: u64) {
    let words = (s / 64) as usize;
    let bits = (s % 64) as u32;
    let len = v.len();
    for i in 0..len {
        let lo = v.get(i + words).copied().unwrap_or(0);
        let hi = v.get(i + words + 1).copied().unwrap_or(0);
        v[i] = if bits == 0 {
            lo
        } else {
            (lo >> bits) | (hi << (64 - bits))
        };
    }
}

/// `a < b` for trimmed limbs.
fn limbs_lt(a: &[u64], b: &[u64]) -> bool {
    if a.len() != b.len() {
        return a.len() < b.len();
    }
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a −= b` for `a ≥ b`.
fn limbs_sub(a: &mut [u64], b: &[u64]) {
    let mut borrow = false;
    for (i, x) in a.iter_mut().enumerate() {
        let y = b.get(i).copied().unwrap_or(0);
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
}

/// Small odd primes used to pre-screen Miller–Rabin candidates.
const SCREEN_PRIMES: u32 = 2000;

/// Miller–Rabin probable-prime test with `rounds` random bases, after trial division.
pub fn is_probable_prime<R: Rng + ?Sized>(n: &BigUint, rounds: u32, rng: &mut R) -> bool {
    let two = BigUint::from(2u8);
    if n < &two {
        return false;
    }
    for p in primes_up_to(SCREEN_PRIMES) {
        let p_big = BigUint::from(p);
        if n == &p_big {
            return true;
        }
        if (n % p).is_zero() {
            return false;
        }
    }
    let n_minus_1 = n - 1u8;
    let s = n_minus_1.trailing_zeros().unwrap_or(0);
    let d = &n_minus_1 >> s;
    'witness: for _ in 0..rounds {
        let a = rng.random_biguint_range(&two, &n_minus_1);
        let mut x = caucus_modexp::modpow(&a, &d, n);
        if x.is_one() || x == n_minus_1 {
            continue;
        }
        for _ in 1..s {
            x = (&x * &x) % n;
            if x == n_minus_1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// A random prime of exactly `bits` bits with the top two bits set (so a product of two such
/// primes has exactly `2 * bits` bits).
pub fn random_prime<R: Rng + ?Sized>(bits: u64, rng: &mut R) -> BigUint {
    loop {
        let mut c = rng.random_biguint(bits);
        c |= BigUint::one() << (bits - 1);
        c |= BigUint::one() << (bits - 2);
        c |= BigUint::one();
        if is_probable_prime(&c, 40, rng) {
            return c;
        }
    }
}

/// Exponents of the Mersenne primes 2^e − 1 used as public Shamir fields.
const MERSENNE_EXPONENTS: [u32; 14] = [
    127, 521, 607, 1279, 2203, 2281, 3217, 4253, 4423, 9689, 9941, 11213, 19937, 21701,
];

/// The smallest Mersenne prime 2^e − 1 with `e > min_bits` (so it exceeds 2^min_bits), or `None`
/// beyond the table. Public, well-known primes: every party derives the same field with no work.
pub fn mersenne_prime_above(min_bits: u64) -> Option<BigUint> {
    MERSENNE_EXPONENTS
        .iter()
        .find(|&&e| u64::from(e) > min_bits)
        .map(|&e| (BigUint::one() << e) - 1u8)
}

/// SHA-256 in counter mode over `domain || parts`, giving `bits` bits as an integer.
pub fn hash_to_biguint(domain: &[u8], parts: &[&[u8]], bits: u64) -> BigUint {
    let nbytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(nbytes + 32);
    let mut counter = 0u32;
    while out.len() < nbytes {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&(domain.len() as u32).to_be_bytes());
        ctx.update(domain);
        for p in parts {
            ctx.update(&(p.len() as u32).to_be_bytes());
            ctx.update(p);
        }
        ctx.update(&counter.to_be_bytes());
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(nbytes);
    let v = BigUint::from_bytes_be(&out);
    let extra = (nbytes as u64) * 8 - bits;
    v >> extra
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// `a mod m` for a signed `a`, as a non-negative `BigUint`.
pub fn mod_floor(a: &BigInt, m: &BigUint) -> BigUint {
    let m_int = BigInt::from_biguint(Sign::Plus, m.clone());
    let r = a.mod_floor(&m_int);
    r.magnitude().clone()
}

/// Overwrites the limbs of `x` with zeros in place, then sets it to zero (best effort: copies made
/// earlier by arithmetic are not reached).
pub fn zeroize_biguint(x: &mut BigUint) {
    let len = x.iter_u32_digits().len();
    if len > 0 {
        x.assign_from_slice(&vec![0u32; len]);
    }
    x.set_zero();
}

/// Signed counterpart of [`zeroize_biguint`].
pub fn zeroize_bigint(x: &mut BigInt) {
    let len = x.iter_u32_digits().len();
    if len > 0 {
        x.assign_from_slice(Sign::Plus, &vec![0u32; len]);
    }
    x.set_zero();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn small_primes_and_jacobi() {
        assert_eq!(primes_up_to(30), vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        // Jacobi against Euler's criterion for a prime modulus.
        let p = BigUint::from(1_000_003u32);
        let e = (&p - 1u8) >> 1;
        for a in 1u32..200 {
            let a = BigUint::from(a);
            let euler = a.modpow(&e, &p);
            let want = if euler.is_one() { 1 } else { -1 };
            assert_eq!(jacobi(&a, &p), want);
        }
        // Multiplicativity in the modulus: (a/pq) = (a/p)(a/q).
        let q = BigUint::from(999_983u32);
        let n = &p * &q;
        for a in 1u32..200 {
            let a = BigUint::from(a);
            assert_eq!(jacobi(&a, &n), jacobi(&a, &p) * jacobi(&a, &q));
        }
        assert_eq!(jacobi(&BigUint::from(3u8), &BigUint::from(9u8)), 0);
        // Multi-limb values against the multiplicativity in the modulus, and a ≥ n, a = 0.
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let p = random_prime(200, &mut rng);
        let q = random_prime(190, &mut rng);
        let n = &p * &q;
        for _ in 0..30 {
            let a = rng.random_biguint(500);
            assert_eq!(jacobi(&a, &n), jacobi(&a, &p) * jacobi(&a, &q));
            let e = (&p - 1u8) >> 1;
            let want = match (&a % &p).modpow(&e, &p) {
                x if x.is_zero() => 0,
                x if x.is_one() => 1,
                _ => -1,
            };
            assert_eq!(jacobi(&a, &p), want);
        }
        assert_eq!(jacobi(&BigUint::zero(), &n), 0);
        assert_eq!(jacobi(&BigUint::zero(), &BigUint::one()), 1);
        assert_eq!(jacobi(&(&p * 3u8), &n), 0);
    }

    #[test]
    fn miller_rabin_and_prime_generation() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let m127 = mersenne_prime_above(100).expect("in table");
        assert!(is_probable_prime(&m127, 20, &mut rng));
        assert!(!is_probable_prime(&(&m127 + 2u8), 20, &mut rng));
        // Carmichael number 561 and a product of two large primes are composite.
        assert!(!is_probable_prime(&BigUint::from(561u32), 20, &mut rng));
        let p = random_prime(128, &mut rng);
        assert_eq!(p.bits(), 128);
        assert!(!is_probable_prime(&(&p * &p), 20, &mut rng));
    }

    #[test]
    fn mersenne_table_entries_are_prime() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for e in [127u64, 521, 607] {
            let m = mersenne_prime_above(e - 1).expect("in table");
            assert_eq!(m.bits(), e);
            assert!(is_probable_prime(&m, 4, &mut rng));
        }
        assert!(mersenne_prime_above(30_000).is_none());
    }

    #[test]
    fn hashing_and_zeroize() {
        let a = hash_to_biguint(b"d", &[b"x"], 100);
        assert!(a.bits() <= 100);
        assert_eq!(a, hash_to_biguint(b"d", &[b"x"], 100));
        assert_ne!(a, hash_to_biguint(b"d", &[b"y"], 100));
        let mut x = BigUint::from(u128::MAX);
        zeroize_biguint(&mut x);
        assert!(x.is_zero());
        let mut y = BigInt::from(-5);
        zeroize_bigint(&mut y);
        assert!(y.is_zero());
        assert_eq!(
            mod_floor(&BigInt::from(-1), &BigUint::from(7u8)),
            BigUint::from(6u8)
        );
    }
}
