//! Fast modular exponentiation for caucus: a small safe wrapper around AWS-LC's Montgomery
//! exponentiation (`BN_mod_exp_mont_consttime`), the same library rustls and our RSA keys
//! already use, reached through `aws-lc-sys`.
//!
//! Why: every expensive step of the distributed Paillier protocol is one exponentiation with a
//! big odd modulus — a threshold partial decryption is `c^(2Δ·s_i) mod N²` (4096-bit modulus,
//! ≈ 4,300-bit exponent at 2048-bit N), a Boneh–Franklin test is `g^e mod N`. num-bigint 0.5's
//! `modpow` is portable Rust; AWS-LC's is hand-written assembly (mulx/adx, 5-bit fixed windows,
//! scatter/gather tables) and constant-time in the base, exponent and modulus, which matters
//! because these exponents are secret shares.
//!
//! # Layout
//! - [`Modulus`]: a Montgomery context for one odd modulus, built once (for N² or N) and shared
//!   between threads; [`Modulus::pow`] exponentiates any base below 2^bits of any size.
//! - [`modpow`]: one-shot, for any modulus (even ones fall back to num-bigint).
//!
//! This crate is the only place in caucus with `unsafe` code; every block states why it is sound.
//! Secret inputs are copied into AWS-LC `BIGNUM`s that are freed with `BN_clear_free`, and the
//! byte buffers used for the copy are zeroized.

#![deny(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks
)]

use std::ptr::NonNull;

use aws_lc_sys as sys;
use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::Zero;
use zeroize::Zeroize;

/// The shape of AWS-LC's Montgomery exponentiation functions.
type ExpFn = unsafe extern "C" fn(
    *mut sys::BIGNUM,
    *const sys::BIGNUM,
    *const sys::BIGNUM,
    *const sys::BIGNUM,
    *mut sys::BN_CTX,
    *const sys::BN_MONT_CTX,
) -> std::os::raw::c_int;

/// An owned AWS-LC `BIGNUM`, cleared and freed on drop.
struct Bn(NonNull<sys::BIGNUM>);

impl Bn {
    /// A `BIGNUM` holding `x` (copied through a little-endian byte buffer that is zeroized).
    fn from_biguint(x: &BigUint) -> Bn {
        let mut bytes = x.to_bytes_le();
        // SAFETY: BN_le2bn reads exactly `bytes.len()` bytes from a live slice; with a null `ret`
        // it allocates a fresh BIGNUM, or returns null on allocation failure (handled below).
        let p = unsafe { sys::BN_le2bn(bytes.as_ptr(), bytes.len(), std::ptr::null_mut()) };
        bytes.zeroize();
        Bn(NonNull::new(p).expect("BN_le2bn: out of memory"))
    }

    fn new() -> Bn {
        // SAFETY: BN_new has no preconditions; null means allocation failure (handled).
        Bn(NonNull::new(unsafe { sys::BN_new() }).expect("BN_new: out of memory"))
    }

    fn to_biguint(&self) -> BigUint {
        // SAFETY: self.0 is a valid BIGNUM owned by self.
        let len = unsafe { sys::BN_num_bytes(self.0.as_ptr()) } as usize;
        let mut bytes = vec![0u8; len];
        // SAFETY: `bytes` has exactly `len` writable bytes and `len` is the BIGNUM's own size,
        // so BN_bn2le_padded cannot fail for lack of room.
        let ok = unsafe { sys::BN_bn2le_padded(bytes.as_mut_ptr(), len, self.0.as_ptr()) };
        assert_eq!(ok, 1, "BN_bn2le_padded: buffer sized by BN_num_bytes");
        let x = BigUint::from_bytes_le(&bytes);
        bytes.zeroize();
        x
    }

    fn as_ptr(&self) -> *const sys::BIGNUM {
        self.0.as_ptr()
    }
}

impl Drop for Bn {
    fn drop(&mut self) {
        // SAFETY: self.0 was allocated by AWS-LC and is freed exactly once, here.
        unsafe { sys::BN_clear_free(self.0.as_ptr()) }
    }
}

/// An owned `BN_CTX` (scratch space for one call).
struct Ctx(NonNull<sys::BN_CTX>);

impl Ctx {
    fn new() -> Ctx {
        // SAFETY: BN_CTX_new has no preconditions; null means allocation failure (handled).
        Ctx(NonNull::new(unsafe { sys::BN_CTX_new() }).expect("BN_CTX_new: out of memory"))
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: allocated by BN_CTX_new, freed exactly once.
        unsafe { sys::BN_CTX_free(self.0.as_ptr()) }
    }
}

/// A Montgomery context for one odd modulus `m > 1`, built once and used for many
/// exponentiations (from any number of threads: AWS-LC only reads it).
pub struct Modulus {
    mont: NonNull<sys::BN_MONT_CTX>,
    m: Bn,
    modulus: BigUint,
}

// SAFETY: after construction the BN_MONT_CTX and the modulus BIGNUM are only ever read (AWS-LC
// takes them as `const` in BN_mod_exp_mont_consttime), so sharing and sending them is sound.
unsafe impl Send for Modulus {}
// SAFETY: see `Send`: no method mutates the context after `new`.
unsafe impl Sync for Modulus {}

impl Modulus {
    /// A context for the odd modulus `m > 1`; `None` for an even modulus or `m ≤ 1`.
    pub fn new(m: &BigUint) -> Option<Modulus> {
        if m.is_even() || m <= &BigUint::from(1u8) {
            return None;
        }
        let mbn = Bn::from_biguint(m);
        let ctx = Ctx::new();
        // SAFETY: `mbn` and `ctx` are valid; the modulus is odd and > 1 as AWS-LC requires.
        let mont = unsafe { sys::BN_MONT_CTX_new_consttime(mbn.as_ptr(), ctx.0.as_ptr()) };
        Some(Modulus {
            mont: NonNull::new(mont)?,
            m: mbn,
            modulus: m.clone(),
        })
    }

    /// The modulus.
    pub fn modulus(&self) -> &BigUint {
        &self.modulus
    }

    /// `base^exp mod m`, constant-time in the base and the exponent's value (its length is not
    /// hidden): for secret exponents. A base at or above `m` is reduced first.
    pub fn pow(&self, base: &BigUint, exp: &BigUint) -> BigUint {
        self.exp(base, exp, sys::BN_mod_exp_mont_consttime)
    }

    /// `base^exp mod m` for a public exponent: a sliding window sized to the exponent, much
    /// faster than [`Self::pow`] for short exponents (a 5-bit fixed window costs 32 products
    /// before the first squaring). The base is still treated as secret.
    pub fn pow_public(&self, base: &BigUint, exp: &BigUint) -> BigUint {
        self.exp(base, exp, sys::BN_mod_exp_mont)
    }

    fn exp(&self, base: &BigUint, exp: &BigUint, f: ExpFn) -> BigUint {
        if exp.is_zero() {
            return BigUint::from(1u8) % &self.modulus;
        }
        let a = Bn::from_biguint(&self.reduce(base));
        let p = Bn::from_biguint(exp);
        let r = Bn::new();
        let ctx = Ctx::new();
        // SAFETY: all pointers are valid BIGNUMs / contexts owned by this frame or by self;
        // 0 ≤ a < m holds (reduced above), m is odd and matches `self.mont`.
        let ok = unsafe {
            f(
                r.0.as_ptr(),
                a.as_ptr(),
                p.as_ptr(),
                self.m.as_ptr(),
                ctx.0.as_ptr(),
                self.mont.as_ptr(),
            )
        };
        assert_eq!(ok, 1, "BN_mod_exp_mont failed on valid inputs");
        r.to_biguint()
    }

    /// `a⁻¹ mod m` for a public `a` (not constant-time); `None` when `gcd(a, m) ≠ 1`.
    pub fn inverse(&self, a: &BigUint) -> Option<BigUint> {
        let a = Bn::from_biguint(&self.reduce(a));
        let r = Bn::new();
        let ctx = Ctx::new();
        let mut no_inverse: std::os::raw::c_int = 0;
        // SAFETY: valid BIGNUMs and context; 0 ≤ a < m and m odd, as BN_mod_inverse_odd requires;
        // `no_inverse` is a live c_int it may write.
        let ok = unsafe {
            sys::BN_mod_inverse_odd(
                r.0.as_ptr(),
                &mut no_inverse,
                a.as_ptr(),
                self.m.as_ptr(),
                ctx.0.as_ptr(),
            )
        };
        match (ok, no_inverse) {
            (1, _) => Some(r.to_biguint()),
            (_, 1) => None,
            _ => panic!("BN_mod_inverse_odd failed on valid inputs"),
        }
    }

    /// `x mod m`, borrowing `x` when it is already reduced.
    fn reduce<'a>(&self, x: &'a BigUint) -> std::borrow::Cow<'a, BigUint> {
        if x >= &self.modulus {
            std::borrow::Cow::Owned(x % &self.modulus)
        } else {
            std::borrow::Cow::Borrowed(x)
        }
    }
}

impl Drop for Modulus {
    fn drop(&mut self) {
        // SAFETY: allocated by BN_MONT_CTX_new_consttime, freed exactly once.
        unsafe { sys::BN_MONT_CTX_free(self.mont.as_ptr()) }
    }
}

impl std::fmt::Debug for Modulus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Modulus({} bits)", self.modulus.bits())
    }
}

/// `base^exp mod m` for any `m > 0`: AWS-LC for an odd modulus, num-bigint otherwise.
///
/// # Panics
/// If `m` is zero (as num-bigint's `modpow` does).
pub fn modpow(base: &BigUint, exp: &BigUint, m: &BigUint) -> BigUint {
    match Modulus::new(m) {
        Some(ctx) => ctx.pow(base, exp),
        None => base.modpow(exp, m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigRng010;
    use rand::SeedableRng;

    #[test]
    fn matches_num_bigint() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for bits in [3u64, 64, 65, 127, 512, 1024, 2048, 4096] {
            for ebits in [1u64, 2, 63, 64, 65, 300, 2048, 4300] {
                let m = rng.random_biguint(bits)
                    | BigUint::from(1u8)
                    | (BigUint::from(1u8) << (bits - 1));
                let b = rng.random_biguint(bits + 5); // sometimes ≥ m: reduced first
                let e = rng.random_biguint(ebits);
                assert_eq!(modpow(&b, &e, &m), b.modpow(&e, &m), "{bits} {ebits}");
                let ctx = Modulus::new(&m).unwrap();
                assert_eq!(ctx.pow_public(&b, &e), b.modpow(&e, &m), "{bits} {ebits}");
            }
            let m = rng.random_biguint(bits) | BigUint::from(3u8);
            let ctx = Modulus::new(&m).unwrap();
            let a = rng.random_biguint(bits + 3);
            match ctx.inverse(&a) {
                Some(inv) => assert_eq!((inv * &a) % &m, BigUint::from(1u8) % &m),
                None => assert_ne!(a.gcd(&m), BigUint::from(1u8)),
            }
        }
    }

    #[test]
    fn edge_cases() {
        let m = BigUint::from(101u8);
        let ctx = Modulus::new(&m).unwrap();
        assert_eq!(
            ctx.pow(&BigUint::from(5u8), &BigUint::zero()),
            BigUint::from(1u8)
        );
        assert_eq!(
            ctx.pow(&BigUint::zero(), &BigUint::from(3u8)),
            BigUint::zero()
        );
        assert_eq!(ctx.pow(&m, &BigUint::from(3u8)), BigUint::zero());
        assert_eq!(
            ctx.pow(&BigUint::from(100u8), &BigUint::from(2u8)),
            BigUint::from(1u8)
        );
        // Modulus one, even moduli: no context, the one-shot function still answers.
        assert!(Modulus::new(&BigUint::from(1u8)).is_none());
        assert!(Modulus::new(&BigUint::from(8u8)).is_none());
        assert_eq!(
            modpow(
                &BigUint::from(5u8),
                &BigUint::from(3u8),
                &BigUint::from(8u8)
            ),
            BigUint::from(5u8)
        );
        assert_eq!(
            modpow(
                &BigUint::from(5u8),
                &BigUint::from(3u8),
                &BigUint::from(1u8)
            ),
            BigUint::zero()
        );
    }

    #[test]
    fn shared_between_threads() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let m = rng.random_biguint(1024) | BigUint::from(1u8);
        let ctx = std::sync::Arc::new(Modulus::new(&m).unwrap());
        let handles: Vec<_> = (0..4u32)
            .map(|i| {
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    let b = BigUint::from(3u8 + i as u8);
                    let e = BigUint::from(65537u32 * (i + 1));
                    (ctx.pow(&b, &e), b, e)
                })
            })
            .collect();
        for h in handles {
            let (r, b, e) = h.join().unwrap();
            assert_eq!(r, b.modpow(&e, &m));
        }
    }
}
