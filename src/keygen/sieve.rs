//! Phase 1 (distributed sieving) and Phase 3 (trial division) helpers.
//!
//! Sieving (Malkin–Wu–Boneh, in the form of PROTOCOL.md): for every sieve prime m each party holds
//! residues a_i, b_i ∈ Z_m of its shares of p and q. Instead of one small product per prime, a party
//! CRT-combines its residues into c_i ∈ [0, M) (M = 4·∏S) and the parties compute one masked product
//! per candidate, V = (Σc_i)(Σc'_i) + M·ΣR_i over GF(P), opening V and keeping V mod m for every m:
//! that is (Σa_i)(Σb_i) mod m, i.e. the future N mod m, and nothing else (R_i carries σ bits of
//! statistical slack). A zero marks that m for a redraw. To save rounds, each party proposes several
//! *variants* (independent residue vectors) per candidate and round; for each m the first variant
//! with a non-zero product is kept, so each residue pair is rejection-sampled uniformly from
//! Z*_m × Z*_m, independently across primes.

use num_bigint::BigUint;
use rand::{Rng, RngExt};

use super::params::Context;

/// Variants per candidate in the first sieve round of a batch.
pub(crate) const VARIANTS_FIRST: usize = 2;
/// Variants per pending candidate in later sieve rounds.
pub(crate) const VARIANTS_LATER: usize = 3;

/// One sieve variant in flight: this party's residue vectors for a candidate.
#[derive(Clone)]
pub(crate) struct Slot {
    pub cand: usize,
    pub a: Vec<u32>,
    pub b: Vec<u32>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.a
            .iter_mut()
            .chain(self.b.iter_mut())
            .for_each(|x| *x = 0);
    }
}

/// This party's sieve state for one candidate.
pub(crate) struct CandSieve {
    pub a: Vec<u32>,
    pub b: Vec<u32>,
    pub resolved: Vec<bool>,
}

impl Drop for CandSieve {
    fn drop(&mut self) {
        self.a
            .iter_mut()
            .chain(self.b.iter_mut())
            .for_each(|x| *x = 0);
    }
}

impl CandSieve {
    pub fn new(primes: usize) -> Self {
        Self {
            a: vec![0; primes],
            b: vec![0; primes],
            resolved: vec![false; primes],
        }
    }

    pub fn pending(&self) -> bool {
        self.resolved.iter().any(|r| !r)
    }
}

/// Draws a variant: uniform residues mod each sieve prime for p and q.
pub(crate) fn draw_slot<R: Rng + ?Sized>(ctx: &Context, cand: usize, rng: &mut R) -> Slot {
    let a = ctx.sieve.iter().map(|&m| rng.random_range(0..m)).collect();
    let b = ctx.sieve.iter().map(|&m| rng.random_range(0..m)).collect();
    Slot { cand, a, b }
}

/// Party i's residue mod 4: 3 for party 1, 0 for the others, so p ≡ q ≡ 3 (mod 4).
pub(crate) fn r4(ctx: &Context) -> u32 {
    if ctx.index == 1 { 3 } else { 0 }
}

/// Applies an opened sieve value V to a candidate: every unresolved prime with V mod m ≠ 0 takes
/// this variant's residues. Returns the number of primes that hit zero (redraws).
pub(crate) fn apply_open(ctx: &Context, cand: &mut CandSieve, slot: &Slot, v: &BigUint) -> u64 {
    let residues = ctx.sieve_reducer.residues(v);
    let mut zeros = 0;
    for (k, r) in residues.into_iter().enumerate() {
        if cand.resolved[k] {
            continue;
        }
        if r == 0 {
            zeros += 1;
        } else {
            cand.resolved[k] = true;
            cand.a[k] = slot.a[k];
            cand.b[k] = slot.b[k];
        }
    }
    zeros
}

/// Residues of big integers modulo many small primes: the primes are grouped so that each group's
/// product g fits 32 bits, and `x mod g` is one pass of 64×32-bit multiply-adds with precomputed
/// `2^(64i) mod g`, followed by cheap per-prime steps. No hardware division: reductions mod g use a
/// precomputed reciprocal (Barrett), divisibility by p uses p⁻¹ mod 2^64 (Granlund–Montgomery /
/// Lemire) and residues mod p use Lemire's fastmod. Used for the sieve openings and for trial
/// division of candidate moduli (Phase 3).
#[derive(Clone, Debug)]
pub(crate) struct SmallPrimeReducer {
    groups: Vec<Group>,
    limbs: usize,
}

#[derive(Clone, Debug)]
struct Group {
    g: u64,
    /// ⌊(2^64 − 1)/g⌋.
    ginv: u64,
    /// `pow[i] = 2^(64 i) mod g`.
    pow: Vec<u64>,
    primes: Vec<SmallPrime>,
}

#[derive(Clone, Copy, Debug)]
struct SmallPrime {
    p: u32,
    /// p⁻¹ mod 2^64 (p odd; 0 for p = 2, which takes the slow path).
    pinv: u64,
    /// ⌊(2^64 − 1)/p⌋.
    lim: u64,
    /// ⌊(2^64 − 1)/p⌋ + 1 (Lemire's fastmod constant).
    fm: u64,
}

impl SmallPrime {
    fn new(p: u32) -> Self {
        let p64 = u64::from(p);
        let pinv = if p % 2 == 1 {
            let mut x: u64 = 1;
            for _ in 0..6 {
                x = x.wrapping_mul(2u64.wrapping_sub(p64.wrapping_mul(x)));
            }
            x
        } else {
            0
        };
        Self {
            p,
            pinv,
            lim: u64::MAX / p64,
            fm: (u64::MAX / p64).wrapping_add(1),
        }
    }

    /// `r mod p` for `r < 2^32`.
    fn rem(&self, r: u64) -> u32 {
        if self.p < 2 {
            return 0;
        }
        let low = self.fm.wrapping_mul(r);
        ((u128::from(low) * u128::from(self.p)) >> 64) as u32
    }

    /// Whether p divides `r` (any u64).
    fn divides(&self, r: u64) -> bool {
        if self.pinv == 0 {
            return r.is_multiple_of(u64::from(self.p.max(1)));
        }
        r.wrapping_mul(self.pinv) <= self.lim
    }
}

impl Group {
    /// `x mod g` for any u64 `x` (Barrett with ⌊(2^64 − 1)/g⌋; at most two corrections).
    fn reduce(&self, x: u64) -> u64 {
        let q = ((u128::from(x) * u128::from(self.ginv)) >> 64) as u64;
        let mut r = x - q * self.g;
        while r >= self.g {
            r -= self.g;
        }
        r
    }

    fn residue(&self, digits: &[u64]) -> u64 {
        let mut acc = 0u128;
        for (&d, &w) in digits.iter().zip(&self.pow) {
            acc += u128::from(d) * u128::from(w);
        }
        let hi = self.reduce((acc >> 64) as u64);
        let lo = self.reduce(acc as u64);
        let c = self.pow.get(1).copied().unwrap_or(0);
        // hi·c < 2^64 as both are below g < 2^32.
        self.reduce(self.reduce(hi * c) + lo)
    }
}

impl SmallPrimeReducer {
    /// A reducer for `primes` (each < 2^32) and integers of at most `nbits` bits.
    pub fn new(primes: impl IntoIterator<Item = u32>, nbits: u64) -> Self {
        let limbs = nbits.div_ceil(64) as usize + 1;
        let mut raw: Vec<(u64, Vec<u32>)> = Vec::new();
        let mut cur = (1u64, Vec::new());
        for p in primes {
            if cur.0 * u64::from(p) >= 1 << 32 {
                raw.push(std::mem::replace(&mut cur, (1, Vec::new())));
            }
            cur.0 *= u64::from(p);
            cur.1.push(p);
        }
        if !cur.1.is_empty() {
            raw.push(cur);
        }
        let groups = raw
            .into_iter()
            .map(|(g, primes)| {
                let base = ((1u128 << 64) % u128::from(g)) as u64;
                let mut pow = Vec::with_capacity(limbs);
                let mut x = 1u64 % g;
                for _ in 0..limbs {
                    pow.push(x);
                    x = ((u128::from(x) * u128::from(base)) % u128::from(g)) as u64;
                }
                Group {
                    g,
                    ginv: u64::MAX / g,
                    pow,
                    primes: primes.into_iter().map(SmallPrime::new).collect(),
                }
            })
            .collect();
        Self { groups, limbs }
    }

    /// A trial divider for the primes in (b1, b2].
    pub fn trial(b1: u32, b2: u32, nbits: u64) -> Self {
        Self::new(
            crate::arith::primes_up_to(b2)
                .into_iter()
                .filter(|&p| p > b1),
            nbits,
        )
    }

    /// `x mod p` for every prime, in order. `x` must have at most the configured bits.
    pub fn residues(&self, x: &BigUint) -> Vec<u32> {
        let digits = x.to_u64_digits();
        debug_assert!(digits.len() <= self.limbs);
        let mut out = Vec::new();
        for grp in &self.groups {
            let r = grp.residue(&digits);
            out.extend(grp.primes.iter().map(|sp| sp.rem(r)));
        }
        out
    }

    /// Whether one of the primes divides `x`.
    pub fn has_factor(&self, x: &BigUint) -> bool {
        let digits = x.to_u64_digits();
        debug_assert!(digits.len() <= self.limbs);
        self.groups.iter().any(|grp| {
            let r = grp.residue(&digits);
            grp.primes.iter().any(|sp| sp.divides(r))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_traits::ToPrimitive;

    #[test]
    fn trial_division_finds_exactly_the_small_factors() {
        let td = SmallPrimeReducer::trial(347, 1 << 16, 1024);
        let big = crate::arith::mersenne_prime_above(600).expect("m607");
        assert!(!td.has_factor(&big));
        // Factors at or below the sieve bound are the sieve's business, not trial division's.
        assert!(!td.has_factor(&(&big * 347u32)));
        let primes: Vec<u64> = crate::arith::primes_up_to(1 << 16)
            .into_iter()
            .filter(|&p| p > 347)
            .map(u64::from)
            .collect();
        // big is prime, so x·big has a factor in (347, 2^16] iff x has one.
        for x in (1u64..3000).chain([65_521, 349 * 353, 65_521 * 65_519]) {
            let want = primes.iter().any(|&p| x % p == 0);
            assert_eq!(td.has_factor(&(BigUint::from(x) * &big)), want, "{x}");
        }
    }

    #[test]
    fn residues_match_for_random_values_and_all_prime_sizes() {
        use num_bigint::BigRng010;
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(31);
        let primes = crate::arith::primes_up_to(1 << 16);
        let red = SmallPrimeReducer::new(primes.iter().copied(), 2300);
        for bits in [1u64, 63, 64, 65, 640, 1279, 2203, 2300] {
            let x = rng.random_biguint(bits);
            let want: Vec<u32> = primes
                .iter()
                .map(|&p| (&x % p).to_u32().expect("small"))
                .collect();
            assert_eq!(red.residues(&x), want, "{bits}");
            assert_eq!(red.has_factor(&x), want.contains(&0), "{bits}");
        }
    }

    #[test]
    fn residues_match_big_integer_arithmetic() {
        let primes = crate::arith::primes_up_to(400);
        let red = SmallPrimeReducer::new(primes.iter().copied(), 1300);
        let x = crate::arith::mersenne_prime_above(1200).expect("m1279") - 12_345u32;
        let got = red.residues(&x);
        let want: Vec<u32> = primes
            .iter()
            .map(|&p| (&x % p).to_u32().expect("small"))
            .collect();
        assert_eq!(got, want);
    }
}
