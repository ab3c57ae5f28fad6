//! In-process distributed key generation and threshold decryption: every (n, t) of the issue,
//! exact bit lengths, determinism, homomorphic properties through threshold decryption.

use caucus::decrypt::{DecryptError, Method, combine, partial_decrypt_with};
use caucus::keygen::{KeyShare, Params};
use caucus::paillier::{Ciphertext, FixedPoint, decode_signed, encode_signed};
use caucus::testing::{Delivery, run_keygen, try_run_keygen};
use num_bigint::{BigInt, BigUint};
use num_traits::One;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn subsets(n: u32, k: usize) -> Vec<Vec<u32>> {
    (0u32..(1 << n))
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| (1..=n).filter(|j| m & (1 << (j - 1)) != 0).collect())
        .collect()
}

/// Threshold-decrypts with the quorum `q` (indices) by the root method.
fn decrypt_with(shares: &[KeyShare], q: &[u32], c: &Ciphertext) -> Result<BigUint, DecryptError> {
    decrypt_by(shares, q, c, Method::Root)
}

/// Threshold-decrypts with the quorum `q` (indices) by `method`.
fn decrypt_by(
    shares: &[KeyShare],
    q: &[u32],
    c: &Ciphertext,
    method: Method,
) -> Result<BigUint, DecryptError> {
    let parts: Vec<_> = q
        .iter()
        .map(|&i| partial_decrypt_with(&shares[i as usize - 1], c, method).expect("partial"))
        .collect();
    combine(&shares[0].threshold_key(), c, &parts)
}

const METHODS: [Method; 2] = [Method::Root, Method::Classic];

#[test]
fn every_quorum_decrypts_and_t_partials_are_refused() {
    for (n, t, seed) in [
        (3u32, 1u32, 1u64),
        (4, 1, 2),
        (5, 2, 3),
        (7, 3, 4),
        (2, 0, 5),
        (6, 2, 6),
    ] {
        let (shares, stats) = run_keygen(n, t, 256, seed);
        assert_eq!(shares.len(), n as usize);
        let pk = shares[0].public().clone();
        assert_eq!(pk.bits(), 256);
        assert!(
            shares
                .iter()
                .all(|s| s.public() == &pk && s.theta() == shares[0].theta())
        );
        assert!(stats.progress.biprimality_passed == 1 && stats.progress.candidates > 0);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let m = BigUint::from(rng.random::<u64>());
        let c = pk.encrypt(&m, &mut rng).expect("enc");
        assert!(shares.iter().all(KeyShare::has_root_share));
        for method in METHODS {
            for q in subsets(n, t as usize + 1) {
                assert_eq!(
                    decrypt_by(&shares, &q, &c, method),
                    Ok(m.clone()),
                    "(n,t)=({n},{t}) quorum {q:?} {method:?}"
                );
            }
            if t > 0 {
                for q in subsets(n, t as usize) {
                    assert_eq!(
                        decrypt_by(&shares, &q, &c, method),
                        Err(DecryptError::NotEnough {
                            need: t as usize + 1,
                            got: t as usize
                        })
                    );
                }
            }
            // More than t+1 partials: decrypts and cross-checks two quorums.
            let all: Vec<u32> = (1..=n).collect();
            assert_eq!(decrypt_by(&shares, &all, &c, method), Ok(m.clone()));
        }
    }
}

#[test]
fn modulus_has_exactly_the_requested_bits() {
    for (bits, seed) in [(256u32, 10u64), (320, 11), (384, 12), (448, 13), (512, 14)] {
        let (shares, _) = run_keygen(3, 1, bits, seed);
        assert_eq!(shares[0].public().bits(), u64::from(bits));
    }
}

#[test]
fn seeded_runs_reproduce_whatever_the_delivery_order() {
    let params = Params::new(256, 5, 2).expect("params");
    let (a, _) = try_run_keygen(&params, 42, Delivery::Fifo, None).expect("run");
    let (b, _) = try_run_keygen(&params, 42, Delivery::Shuffled(7), None).expect("run");
    let (c, _) = try_run_keygen(&params, 43, Delivery::Fifo, None).expect("run");
    assert_eq!(a[0].key_id(), b[0].key_id());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            serde_json::to_string(x).expect("ser"),
            serde_json::to_string(y).expect("ser")
        );
    }
    assert_ne!(a[0].key_id(), c[0].key_id());
}

#[test]
fn homomorphic_operations_decrypt_through_the_threshold_key() {
    let (shares, _) = run_keygen(3, 1, 256, 20);
    let pk = shares[0].public().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let dec =
        |c: &Ciphertext, q: &[u32]| decode_signed(&decrypt_with(&shares, q, c).expect("dec"), &pk);
    let fp = FixedPoint::new(4).expect("fp");
    for case in 0..16 {
        let q = [[1u32, 2], [2, 3], [3, 1]][case % 3];
        let a: i64 = rng.random_range(-1_000_000_000_000..1_000_000_000_000);
        let b: i64 = rng.random_range(-1_000_000_000_000..1_000_000_000_000);
        let k: i64 = rng.random_range(-1_000_000..1_000_000);
        let ca = pk.encrypt_signed(&BigInt::from(a), &mut rng).expect("enc");
        let cb = pk.encrypt_signed(&BigInt::from(b), &mut rng).expect("enc");
        assert_eq!(dec(&pk.add(&ca, &cb), &q), BigInt::from(a) + b);
        assert_eq!(dec(&pk.sub(&ca, &cb), &q), BigInt::from(a) - b);
        assert_eq!(
            dec(&pk.mul_scalar(&ca, &BigInt::from(k)), &q),
            BigInt::from(a) * k
        );
        // Fixed point: sum of encodings, and a product with a fixed-point scalar.
        let x: f64 = rng.random_range(-10_000.0..10_000.0);
        let y: f64 = rng.random_range(-10_000.0..10_000.0);
        let cx = pk
            .encrypt(&fp.encode_for(x, &pk).expect("enc"), &mut rng)
            .expect("enc");
        let cy = pk
            .encrypt(&fp.encode_for(y, &pk).expect("enc"), &mut rng)
            .expect("enc");
        let sum = fp.decode(&dec(&pk.add(&cx, &cy), &q));
        assert!((sum - (x + y)).abs() <= 1e-4, "{sum} vs {}", x + y);
        let ky = fp.encode(y).expect("enc");
        let prod = fp.product(&fp).decode(&dec(&pk.mul_scalar(&cx, &ky), &q));
        let want = fp.decode(&fp.encode(x).expect("enc")) * fp.decode(&ky);
        assert!(
            (prod - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{prod} vs {want}"
        );
    }
    // Sum of many values, mixed signs.
    let vals: Vec<i64> = (0..20)
        .map(|_| rng.random_range(-1_000_000..1_000_000))
        .collect();
    let mut acc = pk.encrypt_signed(&BigInt::from(0), &mut rng).expect("enc");
    for v in &vals {
        acc = pk.add(
            &acc,
            &pk.encrypt_signed(&BigInt::from(*v), &mut rng).expect("enc"),
        );
    }
    assert_eq!(dec(&acc, &[1, 3]), BigInt::from(vals.iter().sum::<i64>()));
    assert!(encode_signed(&BigInt::from(-5), &pk).is_ok());
}

#[test]
fn textbook_ciphertext_from_the_public_key_alone_decrypts() {
    let (shares, _) = run_keygen(4, 1, 256, 30);
    let pk = shares[0].public().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    let m = BigUint::from(987_654_321u64);
    let r = pk.random_unit(&mut rng);
    let n2 = pk.n_squared();
    let c = ((BigUint::one() + &m * pk.n()) * r.modpow(pk.n(), n2)) % n2;
    let c = Ciphertext::from_value(&pk, c).expect("valid");
    for method in METHODS {
        assert_eq!(decrypt_by(&shares, &[2, 4], &c, method), Ok(m.clone()));
    }
}

#[test]
fn key_shares_round_trip_and_are_redacted() {
    let (shares, _) = run_keygen(3, 1, 256, 40);
    let json = serde_json::to_string(&shares[1]).expect("ser");
    let back: KeyShare = serde_json::from_str(&json).expect("de");
    assert_eq!(serde_json::to_string(&back).expect("ser"), json);
    assert_eq!(back.index(), 2);
    assert!(format!("{:?}", shares[1]).contains("<redacted>"));
    // Tampered key id, index and version are refused.
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    for (field, val) in [
        ("key_id", serde_json::json!("00")),
        ("index", serde_json::json!(4)),
        ("version", serde_json::json!(3)),
        ("version", serde_json::json!(1)),
        ("threshold", serde_json::json!(2)),
        ("root_share", serde_json::json!("AQ")),
    ] {
        let mut w = v.clone();
        w[field] = val;
        assert!(serde_json::from_value::<KeyShare>(w).is_err(), "{field}");
    }
    // Version 2 without its root share is refused.
    let mut w = v.clone();
    w.as_object_mut().expect("object").remove("root_share");
    assert!(serde_json::from_value::<KeyShare>(w).is_err());
}

#[test]
fn format_1_key_shares_still_decrypt_with_the_classic_method() {
    let (shares, _) = run_keygen(3, 1, 256, 41);
    let old: Vec<KeyShare> = shares
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).expect("ser");
            v["version"] = serde_json::json!(1);
            v.as_object_mut().expect("object").remove("root_share");
            serde_json::from_value(v).expect("format 1 loads")
        })
        .collect();
    assert!(!old[0].has_root_share());
    let pk = old[0].public().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let m = BigUint::from(31_337u32);
    let c = pk.encrypt(&m, &mut rng).expect("enc");
    // The default method of a format-1 share is classic; root is refused with a typed error.
    let parts: Vec<_> = [1usize, 3]
        .iter()
        .map(|&i| caucus::decrypt::partial_decrypt(&old[i - 1], &c).expect("partial"))
        .collect();
    assert!(parts.iter().all(|p| p.method == Method::Classic));
    assert_eq!(combine(&old[0].threshold_key(), &c, &parts), Ok(m.clone()));
    assert_eq!(
        partial_decrypt_with(&old[0], &c, Method::Root).map(|_| ()),
        Err(DecryptError::MethodUnavailable)
    );
    // Old and new shares of one key combine (classic partials from both).
    assert_eq!(
        decrypt_by(
            &[old[0].clone(), shares[1].clone()],
            &[1, 2],
            &c,
            Method::Classic
        ),
        Ok(m)
    );
}
