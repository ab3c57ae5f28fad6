//! Phase 5: the secret key as a degree-t integer sharing, and θ.
//!
//! φ = N − p − q + 1 is additively shared (party 1: N + 1 − p_1 − q_1, others: −p_i − q_i); each
//! party draws β_i ∈ [0, 2^(k+σ)) and R_i (mask). With Δ = n! and integer Shamir sharings whose
//! constant terms are Δ-scaled ([`crate::sharing::share_int`]):
//!
//! 1. Round `SecretShares`: party i deals F_i (F_i(0) = Δ·φ_i, degree t), B_i (B_i(0) = Δ·β_i,
//!    degree t) and Z_i (Z_i(0) = Δ·N·R_i, degree 2t, coefficients wide enough to mask F·B).
//! 2. Party j sums: F(j), B(j), Z(j); `h(j) = F(j)·B(j)` is a degree-2t point of
//!    h(0) = Δ²·φ·β. It sends `w_j = h(j) + Z(j)` (the θ opening) and a degree-t re-share
//!    G_j with G_j(0) = Δ·h(j) (round `SecretReshare`).
//! 3. Party ℓ: `s_ℓ = Σ_j Δλ_j·G_j(ℓ)`, a degree-t sharing of `Σ_j Δλ_j·Δ·h(j) = Δ²·h(0) = Δ⁴·φ·β`;
//!    `θ = Σ_j Δλ_j·w_j mod N = Δ·(Δ²·φ·β + Δ·N·R) mod N = Δ³·φ·β mod N`.
//!    (λ_j are the Lagrange coefficients of all n indices, valid for degree 2t ≤ n − 1.)
//!
//! The revealed `Δ·w(0) = Δ³·φ·β + Δ²·N·R` hides φ·β statistically (R_i has σ extra bits), so only
//! θ is learnt.

use num_bigint::{BigInt, BigRng010, BigUint, Sign};
use rand::Rng;

use super::params::Context;
use crate::sharing;

/// Public bit bounds of every value of Phase 5 (checked on receipt before any arithmetic).
#[derive(Clone, Debug)]
pub(crate) struct Bounds {
    pub phi_bits: u64,
    pub beta_bits: u64,
    pub r_bits: u64,
    pub z_coeff: u64,
    pub f_eval: u64,
    pub b_eval: u64,
    pub z_eval: u64,
    pub h_bits: u64,
    pub g_eval: u64,
    pub w_eval: u64,
}

impl Bounds {
    pub fn new(ctx: &Context) -> Self {
        let k = u64::from(ctx.params.bits);
        let sigma = u64::from(ctx.params.stat_sec);
        let n = ctx.n;
        let t = ctx.t as u64;
        let nbits = u64::from(32 - n.leading_zeros());
        let dbits = sharing::delta(n).bits();
        let slack_t = sharing::int_slack_bits(n, ctx.t);
        let phi_bits = k + 1;
        let beta_bits = k + sigma;
        let f_coeff = phi_bits + slack_t + sigma;
        let b_coeff = beta_bits + slack_t + sigma;
        let f_eval = f_coeff + t * nbits + 2;
        let b_eval = b_coeff + t * nbits + 2;
        // h(j) = (Σ_i F_i(j))·(Σ_i B_i(j))
        let h_bits = f_eval + b_eval + 2 * nbits;
        // Z masks the coefficients of F·B (each below 2^(f_coeff + b_coeff + 2 nbits + log(t+1))).
        let z_coeff = f_coeff + b_coeff + 2 * nbits + (t + 1).ilog2() as u64 + 1 + sigma;
        // Δ·N·R_i must exceed h(0) = Δ²·φ·β by σ bits.
        let r_bits = dbits + k + 2 * sigma + nbits + 1;
        let z_const = dbits + k + r_bits;
        let z_eval = z_coeff.max(z_const) + 2 * t * nbits + 2;
        let w_eval = h_bits.max(z_eval + nbits) + 1;
        let g_coeff = h_bits + slack_t + sigma;
        let g_eval = g_coeff + t * nbits + 2;
        Self {
            phi_bits,
            beta_bits,
            r_bits,
            z_coeff,
            f_eval,
            b_eval,
            z_eval,
            h_bits,
            g_eval,
            w_eval,
        }
    }
}

/// Round 1 dealing: per recipient j = 1..n, (F_i(j), B_i(j), Z_i(j)).
pub(crate) fn deal<R: Rng + ?Sized>(
    ctx: &Context,
    b: &Bounds,
    n_mod: &BigUint,
    phi_i: &BigInt,
    rng: &mut R,
) -> Vec<(BigInt, BigInt, BigInt)> {
    let sigma = u64::from(ctx.params.stat_sec);
    let beta_i = BigInt::from_biguint(Sign::Plus, rng.random_biguint(b.beta_bits));
    let f = sharing::share_int(phi_i, b.phi_bits, ctx.t, ctx.n, sigma, rng);
    let bb = sharing::share_int(&beta_i, b.beta_bits, ctx.t, ctx.n, sigma, rng);
    let d = BigInt::from_biguint(Sign::Plus, sharing::delta(ctx.n));
    let r_i = BigInt::from_biguint(Sign::Plus, rng.random_biguint(b.r_bits));
    let n_int = BigInt::from_biguint(Sign::Plus, n_mod.clone());
    let z_poly = sharing::random_poly_int(d * n_int * r_i, 2 * ctx.t, b.z_coeff, rng);
    (1..=ctx.n)
        .zip(f.into_iter().zip(bb))
        .map(|(j, (fj, bj))| (fj, bj, sharing::eval_int(&z_poly, j)))
        .collect()
}

/// Round 2: from the received (F_i(j), B_i(j), Z_i(j)) of all i, the opening w_j and the degree-t
/// re-share G_j(ℓ) for ℓ = 1..n.
pub(crate) fn reshare<R: Rng + ?Sized>(
    ctx: &Context,
    b: &Bounds,
    received: &[(BigInt, BigInt, BigInt)],
    rng: &mut R,
) -> (BigInt, Vec<BigInt>) {
    let mut f = BigInt::default();
    let mut bb = BigInt::default();
    let mut z = BigInt::default();
    for (fi, bi, zi) in received {
        f += fi;
        bb += bi;
        z += zi;
    }
    let mut h = &f * &bb;
    let w = &h + &z;
    let g = sharing::share_int(
        &h,
        b.h_bits,
        ctx.t,
        ctx.n,
        u64::from(ctx.params.stat_sec),
        rng,
    );
    crate::arith::zeroize_bigint(&mut h);
    crate::arith::zeroize_bigint(&mut f);
    crate::arith::zeroize_bigint(&mut bb);
    (w, g)
}

/// Round 3: this party's share `s_ℓ = Σ_j Δλ_j·G_j(ℓ)` and θ = `Σ_j Δλ_j·w_j mod N`.
pub(crate) fn combine(
    ctx: &Context,
    n_mod: &BigUint,
    received: &[(BigInt, BigInt)],
) -> (BigInt, BigUint) {
    let mut s = BigInt::default();
    let mut theta = BigInt::default();
    for ((g, w), l) in received.iter().zip(&ctx.lagrange_int) {
        s += g * l;
        theta += w * l;
    }
    (s, crate::arith::mod_floor(&theta, n_mod))
}
