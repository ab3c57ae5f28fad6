//! `cargo run --release -p caucus-modexp --example speed`: AWS-LC vs num-bigint modpow timings.
use caucus_modexp::Modulus;
use num_bigint::{BigRng010, BigUint};
use rand::SeedableRng;
use std::time::Instant;

fn main() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    for (mbits, ebits) in [(2048u64, 1024u64), (2048, 2048), (4096, 4096), (4096, 4300)] {
        let m =
            rng.random_biguint(mbits) | BigUint::from(1u8) | (BigUint::from(1u8) << (mbits - 1));
        let b = rng.random_biguint(mbits - 1);
        let e = rng.random_biguint(ebits);
        let ctx = Modulus::new(&m).unwrap();
        let reps = if mbits > 2048 { 20 } else { 100 };
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(ctx.pow(&b, &e));
        }
        let a = t.elapsed().as_secs_f64() / reps as f64 * 1e3;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(b.modpow(&e, &m));
        }
        let n = t.elapsed().as_secs_f64() / reps as f64 * 1e3;
        println!(
            "{mbits}-bit modulus, {ebits}-bit exponent: aws-lc {a:.3} ms, num-bigint {n:.3} ms ({:.2}x)",
            n / a
        );
    }
}
