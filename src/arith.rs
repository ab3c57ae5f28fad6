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
pub fn jacobi(a: &BigUint, n: &BigUint) -> i8 {
    debug_assert!(n.is_odd());
    let mut a = a % n;
    let mut n = n.clone();
    let mut result = 1i8;
    while !a.is_zero() {
        let tz = a.trailing_zeros().unwrap_or(0);
        if tz > 0 {
            a >>= tz;
            // (2/n) = -1 iff n = 3, 5 (mod 8)
            let n_mod8 = (n.iter_u32_digits().next().unwrap_or(0) & 7) as u8;
            if tz % 2 == 1 && (n_mod8 == 3 || n_mod8 == 5) {
                result = -result;
            }
        }
        // Quadratic reciprocity: flip when both are 3 mod 4.
        let a_mod4 = a.iter_u32_digits().next().unwrap_or(0) & 3;
        let n_mod4 = n.iter_u32_digits().next().unwrap_or(0) & 3;
        if a_mod4 == 3 && n_mod4 == 3 {
            result = -result;
        }
        std::mem::swap(&mut a, &mut n);
        a %= &n;
    }
    if n.is_one() { result } else { 0 }
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
        let mut x = a.modpow(&d, n);
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

/// `base^exp mod m` for a signed exponent; `None` when `exp < 0` and `base` is not invertible.
pub fn modpow_signed(base: &BigUint, exp: &BigInt, m: &BigUint) -> Option<BigUint> {
    if exp.sign() == Sign::Minus {
        let inv = base.modinv(m)?;
        Some(inv.modpow(exp.magnitude(), m))
    } else {
        Some(base.modpow(exp.magnitude(), m))
    }
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
