//! Phase 4: the Boneh–Franklin biprimality test, with bases derived from public data so that no
//! round is spent agreeing on them.
//!
//! Jacobi test (BF §3): for g ∈ Z*_N with (g/N) = 1, each party i publishes `v_i = g^(e_i)` with
//! `e_i = (p_i + q_i − 2·[i = 1])/4`, except one *designated* party d, which publishes
//! `v_d = g^((N − 1)/4 − e_d)`; the test passes when `v_d ≡ ±∏_{i≠d} v_i (mod N)`, i.e.
//! `g^(φ/4) = ±1` for φ = N − p − q + 1 = (N − 1) − Σ 4·e_i. With d = 1 this is BF's original
//! assignment; the key generation rotates d over the parties so that the k-bit exponentiation
//! does not always fall on party 1 (what is revealed is the same: `v_d` and `g^(e_d)` determine
//! each other given the public `g^((N − 1)/4)`).
//!
//! Twisted-group test (BF, the step that rules out N = p^a·q^b, which TNO skips): in
//! T = (Z_N\[x\]/(x² + 1))* / Z_N*, of order (p + 1)(q + 1) when N = pq with p ≡ q ≡ 3 (mod 4), every
//! u satisfies `u^(N + 1 + p + q) = 1`. The designated party publishes `u^(N + 1 + p_d + q_d)`, the
//! others `u^(p_i + q_i)`; the test passes when the product is a scalar (its x-coefficient is 0).

use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::{One, Zero};

use crate::arith;

/// The Jacobi-test base number `idx` for candidate N: hash of (run, N, idx, counter) reduced mod
/// N, the first with Jacobi symbol 1.
pub fn jacobi_base(run: &[u8], n: &BigUint, idx: u32) -> BigUint {
    let nb = n.to_bytes_be();
    // Half of Z*_N has symbol 1 unless N is a square; the bound only guards against adversarial N.
    for ctr in 0u32..1024 {
        let h = arith::hash_to_biguint(
            b"caucus keygen bf jacobi",
            &[run, &nb, &idx.to_be_bytes(), &ctr.to_be_bytes()],
            n.bits() + 64,
        ) % n;
        if h.bits() > 1 && arith::jacobi(&h, n) == 1 {
            return h;
        }
    }
    BigUint::one()
}

/// Jacobi symbol (a / m) for small odd m (u64 arithmetic).
pub fn jacobi_u64(mut a: u64, mut m: u64) -> i8 {
    a %= m;
    let mut r = 1i8;
    while a != 0 {
        let tz = a.trailing_zeros();
        a >>= tz;
        if tz % 2 == 1 && (m % 8 == 3 || m % 8 == 5) {
            r = -r;
        }
        if a % 4 == 3 && m % 4 == 3 {
            r = -r;
        }
        std::mem::swap(&mut a, &mut m);
        a %= m;
    }
    if m == 1 { r } else { 0 }
}

/// A small first-round base (below 2^62) with Jacobi symbol 1, derived from a hash of (run, N):
/// its Jacobi symbol costs one `N mod g` instead of a big-integer Jacobi computation. The first
/// round only filters candidates; the remaining rounds use full-size bases ([`jacobi_base`]).
pub fn small_jacobi_base(run: &[u8], n: &BigUint) -> BigUint {
    use num_traits::ToPrimitive;
    let nb = n.to_bytes_be();
    for ctr in 0u32..1024 {
        let h = arith::hash_to_biguint(
            b"caucus keygen bf small",
            &[run, &nb, &ctr.to_be_bytes()],
            62,
        );
        let g = h.to_u64().unwrap_or(3) | 1;
        if g < 3 {
            continue;
        }
        let n_mod_g = (n % g).to_u64().unwrap_or(0);
        // Reciprocity for odd positive g and N: (g/N) = (N/g)·(−1)^((g−1)/2·(N−1)/2), N ≡ 1 mod 4.
        let mut j = jacobi_u64(n_mod_g, g);
        let n_mod4 = n.iter_u32_digits().next().unwrap_or(0) & 3;
        if g % 4 == 3 && n_mod4 == 3 {
            j = -j;
        }
        if j == 1 {
            return BigUint::from(g);
        }
    }
    BigUint::from(3u8)
}

/// The twisted-group base number `idx`: (a, b) with b ≠ 0, from a hash of (run, N, idx, counter).
pub fn twisted_base(run: &[u8], n: &BigUint, idx: u32) -> (BigUint, BigUint) {
    let nb = n.to_bytes_be();
    for ctr in 0u32..1024 {
        let h = |tag: &[u8]| {
            arith::hash_to_biguint(
                b"caucus keygen bf twisted",
                &[run, &nb, &idx.to_be_bytes(), &ctr.to_be_bytes(), tag],
                n.bits() + 64,
            ) % n
        };
        let (a, b) = (h(b"a"), h(b"b"));
        if !b.is_zero() {
            return (a, b);
        }
    }
    (BigUint::zero(), BigUint::one())
}

/// (a + bx)(c + dx) mod (N, x² + 1).
pub fn twisted_mul(
    x: &(BigUint, BigUint),
    y: &(BigUint, BigUint),
    n: &BigUint,
) -> (BigUint, BigUint) {
    let ac = &x.0 * &y.0;
    let bd = &x.1 * &y.1;
    let re = (ac % n + n - bd % n) % n;
    let im = (&x.0 * &y.1 + &x.1 * &y.0) % n;
    (re, im)
}

/// u^e in Z_N\[x\]/(x² + 1) (left-to-right square and multiply, in Montgomery form for odd N).
pub fn twisted_pow(u: &(BigUint, BigUint), e: &BigUint, n: &BigUint) -> (BigUint, BigUint) {
    let Some(mt) = crate::monty::Monty::new(n) else {
        return twisted_pow_plain(u, e, n);
    };
    let l = mt.limbs();
    let (c, d) = (mt.to_mont(&u.0), mt.to_mont(&u.1));
    let mut a = mt.one().to_vec();
    let mut b = vec![0u64; l];
    let (mut s, mut t, mut x, mut y) = (vec![0u64; l], vec![0u64; l], vec![0u64; l], vec![0u64; l]);
    let mut z = mt.scratch();
    for i in (0..e.bits()).rev() {
        // (a + bx)² = (a + b)(a − b) + 2ab·x
        mt.add_mod(&a, &b, &mut s);
        mt.sub_mod(&a, &b, &mut t);
        mt.mul(&a, &b, &mut x, &mut z);
        mt.mul(&s, &t, &mut a, &mut z);
        mt.add_mod(&x, &x, &mut b);
        if e.bit(i) {
            // (a + bx)(c + dx) = (ac − bd) + ((a + b)(c + d) − ac − bd)·x
            mt.mul(&a, &c, &mut x, &mut z);
            mt.mul(&b, &d, &mut y, &mut z);
            mt.add_mod(&a, &b, &mut s);
            mt.add_mod(&c, &d, &mut t);
            mt.mul(&s, &t, &mut b, &mut z);
            mt.sub_mod(&b, &x, &mut s);
            mt.sub_mod(&s, &y, &mut b);
            mt.sub_mod(&x, &y, &mut a);
        }
    }
    (mt.to_plain(&a), mt.to_plain(&b))
}

/// [`twisted_pow`] with plain big-integer arithmetic (even moduli).
fn twisted_pow_plain(u: &(BigUint, BigUint), e: &BigUint, n: &BigUint) -> (BigUint, BigUint) {
    let mut acc = (BigUint::one() % n, BigUint::zero());
    for i in (0..e.bits()).rev() {
        acc = twisted_mul(&acc, &acc, n);
        if e.bit(i) {
            acc = twisted_mul(&acc, u, n);
        }
    }
    acc
}

/// Whether the combined Jacobi-test values pass: `v_d ≡ ±∏_{i≠d} v_i` where `d` is the position
/// of the party that carried the public part of the exponent.
pub fn jacobi_check(values: &[&BigUint], d: usize, n: &BigUint) -> bool {
    let Some(vd) = values.get(d) else {
        return false;
    };
    let prod = values
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != d)
        .fold(BigUint::one(), |acc, (_, v)| (acc * *v) % n);
    **vd == prod || (*vd + &prod) == *n
}

/// Whether the combined twisted-group values pass: the product is a unit scalar.
pub fn twisted_check(values: &[(BigUint, BigUint)], n: &BigUint) -> bool {
    let mut acc = (BigUint::one(), BigUint::zero());
    for v in values {
        acc = twisted_mul(&acc, v, n);
    }
    acc.1.is_zero() && !acc.0.is_zero() && acc.0.gcd(n).is_one()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// Both tests on a plain (non-distributed) split p = p1 + p2, q = q1 + q2.
    fn run_tests(p: &BigUint, q: &BigUint) -> (bool, bool) {
        let n = p * q;
        let four = BigUint::from(4u8);
        // Party 1 holds p1 ≡ q1 ≡ 3 mod 4 and party 2 multiples of 4.
        let p2 = (p >> 3u32) << 2u32;
        let q2 = (q >> 3u32) << 2u32;
        let (p1, q1) = (p - &p2, q - &q2);
        let mut jac = true;
        for idx in 0..20 {
            let g = jacobi_base(b"run", &n, idx);
            let v1 = g.modpow(&((&n + 1u8 - &p1 - &q1) / &four), &n);
            let v2 = g.modpow(&((&p2 + &q2) / &four), &n);
            jac &= jacobi_check(&[&v1, &v2], 0, &n);
            jac &= jacobi_check(&[&v2, &v1], 1, &n);
        }
        let mut tw = true;
        for idx in 0..4 {
            let u = twisted_base(b"run", &n, idx);
            let t1 = twisted_pow(&u, &(&n + 1u8 + &p1 + &q1), &n);
            let t2 = twisted_pow(&u, &(&p2 + &q2), &n);
            tw &= twisted_check(&[t1, t2], &n);
        }
        (jac, tw)
    }

    fn prime_3mod4(bits: u64, rng: &mut ChaCha20Rng) -> BigUint {
        loop {
            let p = arith::random_prime(bits, rng);
            if (&p % 4u8) == BigUint::from(3u8) {
                return p;
            }
        }
    }

    #[test]
    fn biprimes_pass_and_others_fail() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        for _ in 0..3 {
            let p = prime_3mod4(128, &mut rng);
            let q = prime_3mod4(128, &mut rng);
            assert_eq!(run_tests(&p, &q), (true, true));
        }
        // A composite "p" (product of two primes ≡ 3 mod 4 gives 1 mod 4; use three factors).
        let a = prime_3mod4(40, &mut rng);
        let b = prime_3mod4(40, &mut rng);
        let c = prime_3mod4(40, &mut rng);
        let q = prime_3mod4(120, &mut rng);
        assert!(!run_tests(&(&a * &b * &c), &q).0);
    }

    #[test]
    fn twisted_test_rules_out_prime_powers() {
        // N = p²·q passes neither test, and the twisted test alone catches p^a with the right
        // split: p' = p² (≡ 1 mod 4, so use p³ ≡ 3 mod 4 as the "prime" share).
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let p = prime_3mod4(64, &mut rng);
        let q = prime_3mod4(190, &mut rng);
        let p3 = &p * &p * &p;
        assert!(!run_tests(&p3, &q).1);
    }

    #[test]
    fn small_bases_have_jacobi_one() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        for _ in 0..20 {
            let n = arith::random_prime(100, &mut rng) * arith::random_prime(100, &mut rng);
            let g = small_jacobi_base(b"r", &n);
            assert_eq!(arith::jacobi(&g, &n), 1);
        }
        for m in [3u64, 5, 7, 9, 15, 21, 1_000_003] {
            for a in 0u64..50 {
                assert_eq!(
                    jacobi_u64(a, m),
                    arith::jacobi(&BigUint::from(a), &BigUint::from(m)),
                    "{a}/{m}"
                );
            }
        }
    }

    #[test]
    fn twisted_pow_matches_plain_arithmetic() {
        let mut rng = ChaCha20Rng::seed_from_u64(24);
        for bits in [70u64, 256, 1024] {
            let n =
                arith::random_prime(bits / 2, &mut rng) * arith::random_prime(bits / 2, &mut rng);
            let u = twisted_base(b"r", &n, 0);
            for e in [0u32, 1, 2, 3, 1000, 65_537] {
                let e = BigUint::from(e);
                assert_eq!(twisted_pow(&u, &e, &n), twisted_pow_plain(&u, &e, &n));
            }
            let e = &n + 12_345u32;
            assert_eq!(twisted_pow(&u, &e, &n), twisted_pow_plain(&u, &e, &n));
        }
    }

    #[test]
    fn twisted_pow_matches_repeated_multiplication() {
        let n = BigUint::from(1_000_003u32 * 7u32);
        let u = (BigUint::from(12345u32), BigUint::from(678u32));
        let mut acc = (BigUint::one(), BigUint::zero());
        for e in 0u32..50 {
            assert_eq!(twisted_pow(&u, &BigUint::from(e), &n), acc);
            acc = twisted_mul(&acc, &u, &n);
        }
    }
}
