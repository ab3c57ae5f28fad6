//! Public parameters and everything every party derives from them (Phase 0): the Shamir field P,
//! the sieve set S and M = 4·∏S with its CRT basis, the offset and range that make N exactly `bits`
//! bits, the trial-division table and the Lagrange coefficients.

use num_bigint::{BigInt, BigUint};
use num_integer::Integer;
use num_traits::{One, ToPrimitive, Zero};
use serde::{Deserialize, Serialize};

use super::KeygenError;
use super::sieve::SmallPrimeReducer;
use crate::arith;
use crate::sharing;

/// Key-generation parameters (TNO's defaults where TNO has one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Bit length of N (even). Default 2048.
    pub bits: u32,
    /// Number of parties n.
    pub parties: u32,
    /// Corruption threshold t (n ≥ 2t+1); any t+1 parties decrypt. Default 1.
    pub threshold: u32,
    /// Statistical security σ in bits. Default 40.
    pub stat_sec: u32,
    /// Boneh–Franklin rounds s. Default 40.
    pub biprime_rounds: u32,
    /// Twisted-group rounds ruling out N = p^a·q^b. Default 4.
    pub twisted_rounds: u32,
    /// Candidates per batch (0: chosen from the expected biprime density).
    pub batch_size: u32,
    /// Sieve primes are the odd primes whose product times 4 fits `bits/2 − sieve_slack_bits` bits.
    pub sieve_slack_bits: u32,
    /// Optional cap B1 on the sieve primes (0: no cap beyond the slack).
    pub sieve_bound: u32,
    /// Trial division bound B2 (primes above the sieve set up to B2). Default 2^16.
    pub trial_bound: u32,
    /// Give up after this many batches. Default 10,000.
    pub max_batches: u32,
}

impl Params {
    /// Defaults for `bits`-bit N among `parties` parties with threshold `threshold`, validated.
    pub fn new(bits: u32, parties: u32, threshold: u32) -> Result<Self, KeygenError> {
        let p = Self {
            bits,
            parties,
            threshold,
            stat_sec: 40,
            biprime_rounds: 40,
            twisted_rounds: 4,
            batch_size: 0,
            sieve_slack_bits: 48,
            sieve_bound: 0,
            trial_bound: 1 << 16,
            max_batches: 10_000,
        };
        p.validate()?;
        Ok(p)
    }

    /// The number of candidates per batch a run with these parameters uses: `batch_size`, or the
    /// default derived from the expected biprime density when it is 0.
    pub fn effective_batch_size(&self) -> Result<usize, KeygenError> {
        Ok(Context::new(self, 1, [0u8; 32])?.batch_size)
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), KeygenError> {
        let bad = |s: &str| Err(KeygenError::InvalidParams(s.to_string()));
        if !self.bits.is_multiple_of(2) || !(192..=8192).contains(&self.bits) {
            return bad("bits must be even, 192..=8192");
        }
        if self.parties < 2 || self.parties > 64 {
            return bad("parties must be 2..=64");
        }
        if self.parties < 2 * self.threshold + 1 {
            return bad("need n >= 2t+1");
        }
        if !(16..=128).contains(&self.stat_sec) {
            return bad("stat_sec must be 16..=128");
        }
        if !(1..=256).contains(&self.biprime_rounds) || self.twisted_rounds > 64 {
            return bad("biprime_rounds 1..=256, twisted_rounds <= 64");
        }
        if self.batch_size > 100_000 || self.max_batches == 0 {
            return bad("batch_size <= 100000, max_batches >= 1");
        }
        if self.sieve_slack_bits < 24 || self.sieve_slack_bits + 16 > self.bits / 2 {
            return bad("sieve_slack_bits must leave room for the sieve");
        }
        if self.trial_bound > (1 << 24) {
            return bad("trial_bound <= 2^24");
        }
        Ok(())
    }
}

/// The run tag binding messages to one session, attempt and parameter set: SHA-256 over them.
pub fn run_tag(session: &str, attempt: u32, params: &Params) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"caucus keygen run v1\0");
    ctx.update(&(session.len() as u64).to_be_bytes());
    ctx.update(session.as_bytes());
    ctx.update(&attempt.to_be_bytes());
    let p = serde_json::to_vec(params).unwrap_or_default();
    ctx.update(&p);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Public values every party derives identically from [`Params`].
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub params: Params,
    pub n: u32,
    pub t: usize,
    pub index: u32,
    pub run: [u8; 32],
    /// Shamir field prime P > 2^(k+σ+8).
    pub field: BigUint,
    /// Sieve primes S (odd).
    pub sieve: Vec<u32>,
    /// M = 4·∏S.
    pub m: BigUint,
    /// CRT basis E_k (u64 limbs) for each sieve prime, then for 4.
    pub crt_basis: Vec<Vec<u64>>,
    /// Public offset O (a multiple of M) added to party 1's shares.
    pub offset: BigUint,
    /// Range X of the random high parts x_i ∈ [0, X).
    pub x_bound: BigUint,
    /// Bits of the sieve mask R_i.
    pub sieve_mask_bits: u64,
    /// Trial division table for the primes in (B1, B2].
    pub trial: SmallPrimeReducer,
    /// Residues modulo the sieve primes (for sieve openings, which are below P).
    pub sieve_reducer: SmallPrimeReducer,
    /// Lagrange coefficients at 0 over GF(P) for all indices 1..=n.
    pub lagrange: Vec<BigUint>,
    /// Δ·λ_j at 0 over the integers for all indices 1..=n.
    pub lagrange_int: Vec<BigInt>,
    /// Candidates per batch.
    pub batch_size: usize,
    /// Survivors per first biprimality round.
    pub bf_chunk: usize,
}

impl Context {
    pub fn new(params: &Params, index: u32, run: [u8; 32]) -> Result<Self, KeygenError> {
        params.validate()?;
        let n = params.parties;
        if index == 0 || index > n {
            return Err(KeygenError::InvalidParams("index must be 1..=n".into()));
        }
        let k = u64::from(params.bits);
        let half = k / 2;
        let sigma = u64::from(params.stat_sec);
        let field = arith::mersenne_prime_above(k + sigma + 8).ok_or_else(|| {
            KeygenError::InvalidParams("bits too large for the field table".into())
        })?;

        // Phase 0 > the sieve set S of odd primes 3..B1 with 4·∏S ≤ 2^(k/2 − slack).
        let budget = half - u64::from(params.sieve_slack_bits);
        let cap = if params.sieve_bound == 0 {
            u32::MAX
        } else {
            params.sieve_bound
        };
        let mut odd = BigUint::one();
        let mut sieve = Vec::new();
        for p in arith::primes_up_to(100_000).into_iter().skip(1) {
            if p > cap {
                break;
            }
            let next = &odd * p;
            if next.bits() > budget {
                break;
            }
            odd = next;
            sieve.push(p);
        }
        let m = odd << 2u32;
        if sieve.is_empty() {
            return Err(KeygenError::InvalidParams("sieve set is empty".into()));
        }
        let mut moduli: Vec<u64> = sieve.iter().map(|&p| u64::from(p)).collect();
        moduli.push(4);
        let crt_basis = moduli
            .iter()
            .map(|&mk| {
                let mk_big = &m / mk;
                let r = (&mk_big % mk).to_u64().unwrap_or(0);
                let inv = small_modinv(r, mk);
                (mk_big * inv).to_u64_digits()
            })
            .collect();

        // N has exactly k bits: p, q ∈ [O, 2^(k/2)) with O ≥ 0.75·2^(k/2), so
        // N ∈ [0.5625·2^k, 2^k). O is a multiple of M so residues mod M are unchanged.
        let top = BigUint::one() << half;
        let o_min = BigUint::from(3u8) << (half - 2);
        let offset = o_min.div_ceil(&m) * &m;
        // p = O + Σ_i (c_i + M·x_i) < O + n·M·(X + 1) ≤ 2^(k/2)
        let width = &top - &offset;
        let x_bound = (width / (&m * n)) - 1u8;
        if x_bound.bits() < 32 {
            return Err(KeygenError::InvalidParams(
                "no room for randomness above the sieve".into(),
            ));
        }
        // Sieve mask: V = (Σc)(Σc') + M·ΣR_i with R_i < n²·M·2^σ hides the integer product.
        let nbits = u64::from(32 - n.leading_zeros());
        let sieve_mask_bits = m.bits() + 2 * nbits + sigma;
        let v_bits = 2 * m.bits() + 3 * nbits + sigma + 2;
        if v_bits >= field.bits() {
            return Err(KeygenError::InvalidParams(
                "sieve product exceeds the field".into(),
            ));
        }

        let all: Vec<u32> = (1..=n).collect();
        let lagrange = sharing::lagrange_field(&all, n, &field)
            .map_err(|e| KeygenError::InvalidParams(e.to_string()))?;
        let lagrange_int = sharing::lagrange_int(&all, n)
            .map_err(|e| KeygenError::InvalidParams(e.to_string()))?;
        let last_sieve = *sieve.last().unwrap_or(&3);
        let trial = SmallPrimeReducer::trial(last_sieve, params.trial_bound, k);
        let sieve_reducer = SmallPrimeReducer::new(sieve.iter().copied(), field.bits());
        let (auto_batch, bf_chunk) = default_batch(k, last_sieve, params.trial_bound);
        let batch_size = if params.batch_size > 0 {
            params.batch_size as usize
        } else {
            auto_batch
        };
        Ok(Self {
            params: params.clone(),
            n,
            t: params.threshold as usize,
            index,
            run,
            field,
            sieve,
            m,
            crt_basis,
            offset,
            x_bound,
            sieve_mask_bits,
            trial,
            sieve_reducer,
            lagrange,
            lagrange_int,
            batch_size,
            bf_chunk,
        })
    }

    /// CRT: the integer in [0, M) with the given residues modulo each sieve prime and `r4` mod 4.
    pub fn crt(&self, residues: &[u32], r4: u32) -> BigUint {
        let limbs = self.crt_basis.iter().map(Vec::len).max().unwrap_or(0) + 2;
        let mut acc = vec![0u128; limbs];
        let terms = residues.iter().copied().chain(std::iter::once(r4));
        for (basis, a) in self.crt_basis.iter().zip(terms) {
            if a == 0 {
                continue;
            }
            for (slot, &e) in acc.iter_mut().zip(basis) {
                *slot += u128::from(e) * u128::from(a);
            }
        }
        let mut digits = Vec::with_capacity(limbs * 2);
        let mut carry = 0u128;
        for v in acc {
            let s = v + carry;
            let lo = s as u64;
            digits.push(lo as u32);
            digits.push((lo >> 32) as u32);
            carry = s >> 64;
        }
        debug_assert!(carry.is_zero());
        BigUint::from_slice(&digits) % &self.m
    }
}

fn small_modinv(a: u64, m: u64) -> u64 {
    // Extended Euclid on small numbers; a and m are coprime by construction.
    let (mut t, mut new_t, mut r, mut new_r) = (0i128, 1i128, i128::from(m), i128::from(a));
    while new_r != 0 {
        let q = r / new_r;
        (t, new_t) = (new_t, t - q * new_t);
        (r, new_r) = (new_r, r - q * new_r);
    }
    t.rem_euclid(i128::from(m)) as u64
}

/// Batch size and first-round chunk from the expected density of biprimes among sieved
/// candidates: a sieved k/2-bit number is prime with probability ≈ e^γ·ln(B1)/ln(2^(k/2)), so a
/// candidate N is biprime with probability π ≈ that squared. The cheap phases (sieve, N, trial
/// division) run on ≈ 0.6/π candidates per batch: the expected candidates per key,
/// B/(1 − e^(−πB)), stay near 1.33/π, about two batches on average; the first biprimality round, the expensive one, runs on chunks of a quarter of the
/// expected survivors per biprime, (ln B1/ln B2)²/π, so little work is done past the first biprime.
fn default_batch(k: u64, b1: u32, b2: u32) -> (usize, usize) {
    let density = 1.781 * f64::from(b1).ln() / ((k / 2) as f64 * std::f64::consts::LN_2);
    let pi = density * density;
    let batch = ((0.6 / pi).ceil() as usize).clamp(8, 20_000);
    let surv = if b2 > b1 {
        (f64::from(b1).ln() / f64::from(b2).ln()).powi(2)
    } else {
        1.0
    };
    let chunk = ((surv / pi / 4.0).ceil() as usize).clamp(4, 4096);
    (batch, chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_validated() {
        assert!(Params::new(2048, 3, 1).is_ok());
        assert!(Params::new(1024, 2, 1).is_err(), "n >= 2t+1");
        assert!(Params::new(1023, 3, 1).is_err());
        assert!(Params::new(128, 3, 1).is_err());
        assert!(Params::new(512, 1, 0).is_err());
        let p = Params::new(512, 3, 1).expect("ok");
        assert!(Context::new(&p, 0, [0; 32]).is_err());
        assert!(Context::new(&p, 4, [0; 32]).is_err());
    }

    #[test]
    fn context_matches_the_sieve_table() {
        // TARGETS.md: 1024-bit N sieves with the 68 odd primes up to 347; 2048 with 125 up to 701.
        let c = Context::new(&Params::new(1024, 3, 1).expect("ok"), 1, [0; 32]).expect("ctx");
        assert_eq!((c.sieve.len(), *c.sieve.last().expect("s")), (68, 347));
        let c2 = Context::new(&Params::new(2048, 3, 1).expect("ok"), 1, [0; 32]).expect("ctx");
        assert_eq!((c2.sieve.len(), *c2.sieve.last().expect("s")), (125, 701));
        assert!(c2.field.bits() > 2048 + 48);
    }

    #[test]
    fn crt_has_the_requested_residues() {
        let c = Context::new(&Params::new(512, 3, 1).expect("ok"), 1, [0; 32]).expect("ctx");
        let residues: Vec<u32> = c.sieve.iter().map(|&p| (p * 7 + 1) % p).collect();
        let x = c.crt(&residues, 3);
        assert!(x < c.m);
        for (&p, &r) in c.sieve.iter().zip(&residues) {
            assert_eq!((&x % p).to_u32(), Some(r));
        }
        assert_eq!((&x % 4u8).to_u32(), Some(3));
        assert!((&c.offset % &c.m).is_zero());
    }

    #[test]
    fn run_tags_bind_session_attempt_and_params() {
        let p = Params::new(512, 3, 1).expect("ok");
        let a = run_tag("s1", 0, &p);
        assert_ne!(a, run_tag("s2", 0, &p));
        assert_ne!(a, run_tag("s1", 1, &p));
        assert_ne!(a, run_tag("s1", 0, &Params::new(1024, 3, 1).expect("ok")));
    }
}
