//! Shamir secret sharing over a prime field GF(P) and over the integers.
//!
//! Parties are indexed `1..=n` and party `j` holds `f(j)`.
//!
//! Over the integers there is no division, so we use Shoup's Δ = n! trick: every Lagrange
//! coefficient at zero, `λ_j = ∏_{k≠j} x_k / (x_k − x_j)`, becomes an integer when multiplied by Δ,
//! for any set of distinct indices in `1..=n`. An integer sharing of `s` puts `Δ·s` in the constant
//! term (so that any `t` shares are statistically independent of `s`: the polynomial
//! `Δ·∏_{j∈C}(1 − x/j)` has integer coefficients for any `|C| ≤ t`) and draws the other coefficients
//! with σ bits of statistical slack. Reconstruction with the integer coefficients `Δ·λ_j` therefore
//! yields `Δ·f(0) = Δ²·s`: the scale is explicit in every caller.

use num_bigint::{BigInt, BigRng010, BigUint, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, Zero};
use rand::Rng;

/// Errors in sharing and reconstruction.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharingError {
    /// An index is zero, larger than `n`, or repeated.
    #[error("invalid share index {0}")]
    BadIndex(u32),
    /// Fewer points than needed.
    #[error("need {need} shares, got {got}")]
    NotEnough {
        /// required
        need: usize,
        /// given
        got: usize,
    },
    /// The field modulus is not usable (zero or an index is a multiple of it).
    #[error("bad field modulus")]
    BadModulus,
}

fn check_indices(xs: &[u32], n: u32) -> Result<(), SharingError> {
    let mut seen = std::collections::BTreeSet::new();
    for &x in xs {
        if x == 0 || x > n || !seen.insert(x) {
            return Err(SharingError::BadIndex(x));
        }
    }
    Ok(())
}

/// `x mod p`, with a shift-and-add fast path when p is a Mersenne number 2^e − 1 (the public
/// fields of the key generation are Mersenne primes).
pub fn reduce_mod(x: BigUint, p: &BigUint) -> BigUint {
    let e = p.bits();
    if e > 1 && p.count_ones() == e {
        let mut x = x;
        while x.bits() > e {
            let hi = &x >> e;
            x &= p;
            x += hi;
        }
        if &x >= p {
            x -= p;
        }
        return x;
    }
    x % p
}

/// Evaluates `Σ coeffs[k]·x^k mod p` (Horner over the integers, one reduction at the end: x is a
/// small party index).
pub fn eval_field(coeffs: &[BigUint], x: u32, p: &BigUint) -> BigUint {
    let mut acc = BigUint::zero();
    for c in coeffs.iter().rev() {
        acc *= x;
        acc += c;
    }
    reduce_mod(acc, p)
}

/// Random polynomial over GF(p) of the given degree with `f(0) = secret mod p`.
pub fn random_poly_field<R: Rng + ?Sized>(
    secret: &BigUint,
    degree: usize,
    p: &BigUint,
    rng: &mut R,
) -> Vec<BigUint> {
    let mut coeffs = Vec::with_capacity(degree + 1);
    coeffs.push(reduce_mod(secret.clone(), p));
    for _ in 0..degree {
        coeffs.push(rng.random_biguint_below(p));
    }
    coeffs
}

/// Shares `secret` over GF(p) with a random polynomial of the given degree; element `j − 1` is the
/// share of party `j`, for `j = 1..=n`.
pub fn share_field<R: Rng + ?Sized>(
    secret: &BigUint,
    degree: usize,
    n: u32,
    p: &BigUint,
    rng: &mut R,
) -> Vec<BigUint> {
    let coeffs = random_poly_field(secret, degree, p, rng);
    (1..=n).map(|j| eval_field(&coeffs, j, p)).collect()
}

/// Lagrange coefficients at zero over GF(p) for the distinct indices `xs` (all in `1..=n`).
pub fn lagrange_field(xs: &[u32], n: u32, p: &BigUint) -> Result<Vec<BigUint>, SharingError> {
    check_indices(xs, n)?;
    let p_int = BigInt::from_biguint(Sign::Plus, p.clone());
    xs.iter()
        .map(|&j| {
            let mut num = BigInt::one();
            let mut den = BigInt::one();
            for &k in xs {
                if k != j {
                    num *= i64::from(k);
                    den *= i64::from(k) - i64::from(j);
                }
            }
            let den = den.mod_floor(&p_int);
            let inv = den.magnitude().modinv(p).ok_or(SharingError::BadModulus)?;
            let num = num.mod_floor(&p_int).magnitude().clone();
            Ok((num * inv) % p)
        })
        .collect()
}

/// Reconstructs `f(0)` over GF(p) from `(index, share)` points (at least `degree + 1` of them).
pub fn reconstruct_field(
    points: &[(u32, BigUint)],
    degree: usize,
    n: u32,
    p: &BigUint,
) -> Result<BigUint, SharingError> {
    if points.len() < degree + 1 {
        return Err(SharingError::NotEnough {
            need: degree + 1,
            got: points.len(),
        });
    }
    let xs: Vec<u32> = points.iter().map(|(x, _)| *x).collect();
    let lambdas = lagrange_field(&xs, n, p)?;
    let mut acc = BigUint::zero();
    for ((_, y), l) in points.iter().zip(&lambdas) {
        acc += y * l;
    }
    Ok(acc % p)
}

/// Δ = n!.
pub fn delta(n: u32) -> BigUint {
    (1..=n).fold(BigUint::one(), |acc, k| acc * k)
}

/// Bits of statistical slack needed so that `t` shares of an integer sharing hide a secret:
/// the masking polynomial `Δ·∏(1 − x/j)` has coefficients at most `Δ·(2n)^t` times the secret.
pub fn int_slack_bits(n: u32, t: usize) -> u64 {
    delta(n).bits() + (t as u64) * (u64::from(32 - n.leading_zeros()) + 1)
}

/// Random integer polynomial of the given degree with constant term `constant` and other
/// coefficients uniform in `[0, 2^coeff_bits)`.
pub fn random_poly_int<R: Rng + ?Sized>(
    constant: BigInt,
    degree: usize,
    coeff_bits: u64,
    rng: &mut R,
) -> Vec<BigInt> {
    let mut coeffs = Vec::with_capacity(degree + 1);
    coeffs.push(constant);
    for _ in 0..degree {
        coeffs.push(BigInt::from_biguint(
            Sign::Plus,
            rng.random_biguint(coeff_bits),
        ));
    }
    coeffs
}

/// Evaluates an integer polynomial at `x`.
pub fn eval_int(coeffs: &[BigInt], x: u32) -> BigInt {
    let mut acc = BigInt::zero();
    for c in coeffs.iter().rev() {
        acc *= x;
        acc += c;
    }
    acc
}

/// Integer Shamir sharing of `secret` with `|secret| < 2^secret_bits`: `f(0) = Δ·secret`, other
/// coefficients uniform in `[0, 2^(secret_bits + slack + σ))` where slack is [`int_slack_bits`].
/// Element `j − 1` is party `j`'s share. Reconstruction ([`reconstruct_int`]) gives `Δ²·secret`.
pub fn share_int<R: Rng + ?Sized>(
    secret: &BigInt,
    secret_bits: u64,
    degree: usize,
    n: u32,
    stat_sec: u64,
    rng: &mut R,
) -> Vec<BigInt> {
    let d = BigInt::from_biguint(Sign::Plus, delta(n));
    let coeff_bits = secret_bits + int_slack_bits(n, degree) + stat_sec;
    let coeffs = random_poly_int(d * secret, degree, coeff_bits, rng);
    (1..=n).map(|j| eval_int(&coeffs, j)).collect()
}

/// Integer Lagrange coefficients at zero, scaled by Δ = n!: `Δ·λ_j` for the distinct indices `xs`.
pub fn lagrange_int(xs: &[u32], n: u32) -> Result<Vec<BigInt>, SharingError> {
    check_indices(xs, n)?;
    let d = BigInt::from_biguint(Sign::Plus, delta(n));
    xs.iter()
        .map(|&j| {
            let mut num = d.clone();
            let mut den = BigInt::one();
            for &k in xs {
                if k != j {
                    num *= i64::from(k);
                    den *= i64::from(k) - i64::from(j);
                }
            }
            let (q, r) = num.div_rem(&den);
            if !r.is_zero() {
                // Cannot happen for distinct indices in 1..=n (Shoup); refuse rather than round.
                return Err(SharingError::BadIndex(j));
            }
            Ok(q)
        })
        .collect()
}

/// `Σ Δ·λ_j·f(j)` = `Δ·f(0)` from at least `degree + 1` integer shares.
pub fn reconstruct_int(
    points: &[(u32, BigInt)],
    degree: usize,
    n: u32,
) -> Result<BigInt, SharingError> {
    if points.len() < degree + 1 {
        return Err(SharingError::NotEnough {
            need: degree + 1,
            got: points.len(),
        });
    }
    let xs: Vec<u32> = points.iter().map(|(x, _)| *x).collect();
    let lambdas = lagrange_int(&xs, n)?;
    let mut acc = BigInt::zero();
    for ((_, y), l) in points.iter().zip(&lambdas) {
        acc += y * l;
    }
    Ok(acc)
}

/// Bit length of the magnitude of a signed integer.
pub fn abs_bits(x: &BigInt) -> u64 {
    x.abs().bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mersenne_reduction_matches_remainder() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(71);
        let m = (BigUint::one() << 521u32) - 1u8;
        let other = &m - 2u8;
        for x in [
            BigUint::zero(),
            m.clone(),
            &m + 1u8,
            &m * &m,
            &m * &m - 1u8,
            rng.random_biguint(1042),
            rng.random_biguint(1300),
            rng.random_biguint(100),
        ] {
            assert_eq!(reduce_mod(x.clone(), &m), &x % &m);
            assert_eq!(reduce_mod(x.clone(), &other), &x % &other);
        }
    }
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn subsets(n: u32, k: usize) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize == k {
                out.push((1..=n).filter(|j| mask & (1 << (j - 1)) != 0).collect());
            }
        }
        out
    }

    #[test]
    fn field_sharing_reconstructs_from_every_quorum() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let p = crate::arith::mersenne_prime_above(100).expect("table");
        for (n, t) in [(3u32, 1usize), (5, 2), (7, 3)] {
            let s = rng.random_biguint_below(&p);
            let shares = share_field(&s, t, n, &p, &mut rng);
            for q in subsets(n, t + 1) {
                let pts: Vec<_> = q
                    .iter()
                    .map(|&j| (j, shares[j as usize - 1].clone()))
                    .collect();
                assert_eq!(reconstruct_field(&pts, t, n, &p), Ok(s.clone()));
            }
            // t points are refused.
            let pts: Vec<_> = (1..=t as u32)
                .map(|j| (j, shares[j as usize - 1].clone()))
                .collect();
            assert!(matches!(
                reconstruct_field(&pts, t, n, &p),
                Err(SharingError::NotEnough { .. })
            ));
        }
    }

    #[test]
    fn integer_sharing_scales_by_delta_squared() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        for n in 2u32..=9 {
            for t in 0..=((n as usize - 1) / 2) {
                let s = BigInt::from_biguint(Sign::Minus, rng.random_biguint(200));
                let shares = share_int(&s, 200, t, n, 40, &mut rng);
                let d = BigInt::from_biguint(Sign::Plus, delta(n));
                for q in subsets(n, t + 1) {
                    let pts: Vec<_> = q
                        .iter()
                        .map(|&j| (j, shares[j as usize - 1].clone()))
                        .collect();
                    assert_eq!(reconstruct_int(&pts, t, n).expect("ok"), &d * &d * &s);
                }
            }
        }
    }

    #[test]
    fn lagrange_int_matches_field_and_refuses_bad_indices() {
        let p = crate::arith::mersenne_prime_above(100).expect("table");
        let xs = [1u32, 3, 4, 6];
        let li = lagrange_int(&xs, 7).expect("ok");
        let lf = lagrange_field(&xs, 7, &p).expect("ok");
        let d = delta(7);
        let dinv = d.modinv(&p).expect("inv");
        for (a, b) in li.iter().zip(&lf) {
            assert_eq!((crate::arith::mod_floor(a, &p) * &dinv) % &p, *b);
        }
        assert_eq!(lagrange_int(&[1, 1], 3), Err(SharingError::BadIndex(1)));
        assert_eq!(lagrange_int(&[0, 1], 3), Err(SharingError::BadIndex(0)));
        assert_eq!(lagrange_int(&[4], 3), Err(SharingError::BadIndex(4)));
        assert_eq!(delta(5), BigUint::from(120u8));
    }
}
