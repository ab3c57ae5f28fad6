//! Phase 5: the secret key as a degree-t integer sharing, θ, and the N-th-root shares.
//!
//! φ = N − p − q + 1 is additively shared (party 1: N + 1 − p_1 − q_1, others: −p_i − q_i); each
//! party draws β_i ∈ [0, 2^(k+σ)) and R_i (mask). With Δ = n! and integer Shamir sharings whose
//! constant terms are Δ-scaled ([`crate::sharing::share_int`]):
//!
//! 1. Round `SecretShares`: party i deals F_i (F_i(0) = Δ·φ_i, degree t), B_i (B_i(0) = Δ·β_i,
//!    degree t), Z_i (Z_i(0) = Δ·N·R_i, degree 2t, coefficients wide enough to mask F·B) and
//!    P_i (P_i(0) = Δ·R_i, degree t: the same mask, shared linearly).
//! 2. Party j sums: F(j), B(j), Z(j), ρ(j) = Σ_i P_i(j); `h(j) = F(j)·B(j)` is a degree-2t point
//!    of h(0) = Δ²·φ·β. It sends `w_j = h(j) + Z(j)` (the θ opening) and a degree-t re-share
//!    G_j with G_j(0) = Δ·h(j) (round `SecretReshare`).
//! 3. Party ℓ: `s_ℓ = Σ_j Δλ_j·G_j(ℓ)`, a degree-t sharing of `Σ_j Δλ_j·Δ·h(j) = Δ²·h(0) = Δ⁴·φ·β`;
//!    `V = Σ_j Δλ_j·w_j = Δ·(Δ²·φ·β + Δ·N·R) = Δ³·φ·β + Δ²·N·R` (an integer everyone computes)
//!    and `θ = V mod N = Δ³·φ·β mod N`.
//!    (λ_j are the Lagrange coefficients of all n indices, valid for degree 2t ≤ n − 1.)
//! 4. The N-th-root share ([`crate::decrypt`], method `root`), local, no further round: with
//!    `W = ⌊V/N⌋`, `u = θ⁻¹ mod N` and `v = (u·θ − 1)/N` (all public),
//!    `a_ℓ = v + W·u − Δ·u·ρ(ℓ)` is a degree-t sharing of
//!    `K = v + W·u − Δ²·u·R = (u·Δ³·φ·β − 1)/N`, since `N·K = u·(V − Δ²·N·R) − 1`. For any
//!    quorum, `Σ Δλ_ℓ·a_ℓ = Δ·K`, and for a unit x = r^N mod N, `x^K = r^(u·Δ³·φ·β − 1) = r⁻¹`.
//!
//! The revealed V hides φ·β statistically (R_i has σ extra bits), so only θ is learnt; the extra
//! degree-t sharing of R_i gives t parties nothing about it (integer Shamir, σ bits of masking).

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
    pub rho_eval: u64,
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
        let rho_eval = r_bits + slack_t + sigma + t * nbits + 2;
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
            rho_eval,
        }
    }
}

/// One recipient's round-1 values from one dealer: F_i(j), B_i(j), Z_i(j), P_i(j).
pub(crate) struct Dealt {
    pub phi: BigInt,
    pub beta: BigInt,
    pub mask: BigInt,
    pub root_mask: BigInt,
}

impl Drop for Dealt {
    fn drop(&mut self) {
        for x in [
            &mut self.phi,
            &mut self.beta,
            &mut self.mask,
            &mut self.root_mask,
        ] {
            crate::arith::zeroize_bigint(x);
        }
    }
}

/// Round 1 dealing: per recipient j = 1..n, (F_i(j), B_i(j), Z_i(j), P_i(j)).
pub(crate) fn deal<R: Rng + ?Sized>(
    ctx: &Context,
    b: &Bounds,
    n_mod: &BigUint,
    phi_i: &BigInt,
    rng: &mut R,
) -> Vec<Dealt> {
    let sigma = u64::from(ctx.params.stat_sec);
    let beta_i = BigInt::from_biguint(Sign::Plus, rng.random_biguint(b.beta_bits));
    let f = sharing::share_int(phi_i, b.phi_bits, ctx.t, ctx.n, sigma, rng);
    let bb = sharing::share_int(&beta_i, b.beta_bits, ctx.t, ctx.n, sigma, rng);
    let d = BigInt::from_biguint(Sign::Plus, sharing::delta(ctx.n));
    let mut r_i = BigInt::from_biguint(Sign::Plus, rng.random_biguint(b.r_bits));
    let n_int = BigInt::from_biguint(Sign::Plus, n_mod.clone());
    let mut z_poly = sharing::random_poly_int(d * n_int * &r_i, 2 * ctx.t, b.z_coeff, rng);
    let rho = sharing::share_int(&r_i, b.r_bits, ctx.t, ctx.n, sigma, rng);
    let dealt = (1..=ctx.n)
        .zip(f.into_iter().zip(bb).zip(rho))
        .map(|(j, ((phi, beta), root_mask))| Dealt {
            phi,
            beta,
            mask: sharing::eval_int(&z_poly, j),
            root_mask,
        })
        .collect();
    crate::arith::zeroize_bigint(&mut r_i);
    z_poly.iter_mut().for_each(crate::arith::zeroize_bigint);
    dealt
}

/// Round 2: from the received values of all dealers, the opening w_j, the degree-t re-share
/// G_j(ℓ) for ℓ = 1..n, and ρ(j) (kept for round 3; secret).
pub(crate) fn reshare<R: Rng + ?Sized>(
    ctx: &Context,
    b: &Bounds,
    received: &[Dealt],
    rng: &mut R,
) -> (BigInt, Vec<BigInt>, BigInt) {
    let mut f = BigInt::default();
    let mut bb = BigInt::default();
    let mut z = BigInt::default();
    let mut rho = BigInt::default();
    for d in received {
        f += &d.phi;
        bb += &d.beta;
        z += &d.mask;
        rho += &d.root_mask;
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
    crate::arith::zeroize_bigint(&mut z);
    (w, g, rho)
}

/// What round 3 gives a party.
pub(crate) struct Combined {
    /// s_ℓ (secret).
    pub share: BigInt,
    /// θ = Δ³·φ·β mod N.
    pub theta: BigUint,
    /// a_ℓ, the N-th-root share (secret).
    pub root_share: BigInt,
}

impl Drop for Combined {
    fn drop(&mut self) {
        crate::arith::zeroize_bigint(&mut self.share);
        crate::arith::zeroize_bigint(&mut self.root_share);
    }
}

/// Round 3: this party's share `s_ℓ = Σ_j Δλ_j·G_j(ℓ)`, θ = `V mod N` with `V = Σ_j Δλ_j·w_j`,
/// and the N-th-root share `a_ℓ = v + W·u − Δ·u·ρ(ℓ)` (module doc, step 4). `None` when θ is
/// not a unit mod N (the key is then refused).
pub(crate) fn combine(
    ctx: &Context,
    public: &crate::paillier::PublicKey,
    received: &[(BigInt, BigInt)],
    rho: &BigInt,
) -> Option<Combined> {
    let n_mod = public.n();
    let mut share = BigInt::default();
    let mut v_open = BigInt::default();
    for ((g, w), l) in received.iter().zip(&ctx.lagrange_int) {
        share += g * l;
        v_open += w * l;
    }
    let theta = crate::arith::mod_floor(&v_open, n_mod);
    let n_int = BigInt::from_biguint(Sign::Plus, n_mod.clone());
    // V ≡ θ (mod N), so the division is exact.
    let w_big = (&v_open - BigInt::from_biguint(Sign::Plus, theta.clone())) / &n_int;
    let u = public.inverse_n(&theta)?;
    let u_theta = &u * &theta;
    let v = BigInt::from_biguint(Sign::Plus, (&u_theta - 1u8) / n_mod);
    let u = BigInt::from_biguint(Sign::Plus, u);
    let d = BigInt::from_biguint(Sign::Plus, sharing::delta(ctx.n));
    let root_share = v + &w_big * &u - d * &u * rho;
    Some(Combined {
        share,
        theta,
        root_share,
    })
}
