use num_bigint::{BigUint, BigRng010};
use rand::SeedableRng;
#[test]
fn mp() {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    for bits in [512u64, 1024, 2048] {
        let n = rng.random_biguint(bits) | BigUint::from(1u8);
        let g = rng.random_biguint(bits - 1);
        for eb in [bits / 2, bits] {
            let e = rng.random_biguint(eb);
            let t = std::time::Instant::now();
            for _ in 0..20 { std::hint::black_box(g.modpow(&e, &n)); }
            eprintln!("mod {bits} exp {eb}: {:?}", t.elapsed() / 20);
        }
    }
}
