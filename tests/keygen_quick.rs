//! Scratch: one run.
use caucus::decrypt::{combine, partial_decrypt};
use caucus::testing::run_keygen;
use num_bigint::BigUint;
use rand::SeedableRng;

#[test]
fn one_run() {
    let t0 = std::time::Instant::now();
    let bits: u32 = std::env::var("KG_BITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let seed: u64 = std::env::var("KG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (shares, stats) = run_keygen(3, 1, bits, seed);
    eprintln!("{:?} {:?} {:?}", t0.elapsed(), stats, shares[0]);
    let pk = shares[0].public().clone();
    assert_eq!(pk.bits(), u64::from(bits));
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let c = pk.encrypt(&BigUint::from(42u8), &mut rng).expect("enc");
    let parts: Vec<_> = shares
        .iter()
        .map(|s| partial_decrypt(s, &c).expect("p"))
        .collect();
    let m = combine(&shares[0].threshold_key(), &c, &parts[..2]).expect("combine");
    assert_eq!(m, BigUint::from(42u8));
}

#[test]
fn debug_seed2() {
    use caucus::testing::{Delivery, try_run_keygen};
    let params = caucus::keygen::Params::new(1024, 3, 1).expect("p");
    let mut hook = |from: u32, to: u32, step: u32, bytes: &mut Vec<u8>| {
        if caucus::keygen::KeygenMessage::from_json(from, bytes).is_err() {
            let s = String::from_utf8_lossy(bytes);
            eprintln!("BAD {from}->{to} step {step}: {}", &s[..s.len().min(700)]);
        }
    };
    let r = try_run_keygen(&params, 2, Delivery::Fifo, Some(&mut hook));
    eprintln!("{:?}", r.err());
}
