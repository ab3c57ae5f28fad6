//! Scratch: one run.
use caucus::decrypt::{combine, partial_decrypt};
use caucus::testing::run_keygen;
use num_bigint::BigUint;
use rand::SeedableRng;

#[test]
fn one_run() {
    let t0 = std::time::Instant::now();
    let (shares, stats) = run_keygen(3, 1, 512, 1);
    eprintln!("{:?} {:?} {:?}", t0.elapsed(), stats, shares[0]);
    let pk = shares[0].public().clone();
    assert_eq!(pk.bits(), 512);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let c = pk.encrypt(&BigUint::from(42u8), &mut rng).expect("enc");
    let parts: Vec<_> = shares
        .iter()
        .map(|s| partial_decrypt(s, &c).expect("p"))
        .collect();
    let m = combine(&shares[0].threshold_key(), &c, &parts[..2]).expect("combine");
    assert_eq!(m, BigUint::from(42u8));
}
