//! Threshold decryption refusals: each malformed or inconsistent partial is rejected and names its
//! sender.

use caucus::decrypt::{
    DecryptError, Method, PartialDecryption, combine, partial_decrypt, partial_decrypt_with,
};
use caucus::keygen::KeyShare;
use caucus::paillier::Ciphertext;
use caucus::testing::run_keygen;
use num_bigint::BigUint;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn setup() -> (Vec<KeyShare>, Ciphertext, Vec<PartialDecryption>) {
    setup_with(Method::Root)
}

fn setup_with(method: Method) -> (Vec<KeyShare>, Ciphertext, Vec<PartialDecryption>) {
    let (shares, _) = run_keygen(5, 2, 256, 50);
    let mut rng = ChaCha20Rng::seed_from_u64(51);
    let c = shares[0]
        .public()
        .encrypt(&BigUint::from(1234u32), &mut rng)
        .expect("enc");
    let parts = shares
        .iter()
        .map(|s| partial_decrypt_with(s, &c, method).expect("partial"))
        .collect();
    (shares, c, parts)
}

const METHODS: [Method; 2] = [Method::Root, Method::Classic];

#[test]
fn malformed_partials_name_the_culprit() {
    for method in METHODS {
        malformed_partials_name_the_culprit_by(method);
    }
}

fn malformed_partials_name_the_culprit_by(method: Method) {
    let (shares, c, parts) = setup_with(method);
    let key = shares[0].threshold_key();
    let ok = |p: &[PartialDecryption]| combine(&key, &c, p);
    assert_eq!(ok(&parts[..3]), Ok(BigUint::from(1234u32)));
    assert_eq!(
        ok(&[parts[4].clone(), parts[0].clone(), parts[2].clone()]),
        Ok(BigUint::from(1234u32))
    );

    let mut dup = parts[..3].to_vec();
    dup[2] = dup[1].clone();
    assert_eq!(ok(&dup), Err(DecryptError::Duplicate { culprit: 2 }));

    let mut bad = parts[..3].to_vec();
    bad[1].index = 9;
    assert_eq!(ok(&bad), Err(DecryptError::UnknownIndex { culprit: 9 }));

    let mut bad = parts[..3].to_vec();
    bad[0].key_id = "00".repeat(32);
    assert_eq!(ok(&bad), Err(DecryptError::WrongKey { culprit: 1 }));

    let mut bad = parts[..3].to_vec();
    bad[2].ciphertext = "11".repeat(32);
    assert_eq!(ok(&bad), Err(DecryptError::WrongCiphertext { culprit: 3 }));

    let mut bad = parts[..3].to_vec();
    bad[1].value = shares[0].public().n_squared().clone();
    assert_eq!(ok(&bad), Err(DecryptError::InvalidPartial { culprit: 2 }));
    bad[1].value = shares[0].public().n().clone();
    assert_eq!(ok(&bad), Err(DecryptError::InvalidPartial { culprit: 2 }));

    let mut bad = parts[..3].to_vec();
    bad[0].version = 7;
    assert_eq!(
        ok(&bad),
        Err(DecryptError::UnsupportedVersion { culprit: 1 })
    );
    assert_eq!(
        DecryptError::UnsupportedVersion { culprit: 1 }.culprit(),
        Some(1)
    );

    assert_eq!(
        ok(&parts[..2]),
        Err(DecryptError::NotEnough { need: 3, got: 2 })
    );
}

#[test]
fn inconsistent_partials_are_refused() {
    for method in METHODS {
        inconsistent_partials_are_refused_by(method);
    }
}

fn inconsistent_partials_are_refused_by(method: Method) {
    let (shares, c, parts) = setup_with(method);
    let key = shares[0].threshold_key();
    // A partial of another ciphertext (relabelled) makes the two quorums disagree.
    let mut rng = ChaCha20Rng::seed_from_u64(52);
    let c2 = shares[0]
        .public()
        .encrypt(&BigUint::from(99u32), &mut rng)
        .expect("enc");
    let mut forged = partial_decrypt_with(&shares[4], &c2, method).expect("partial");
    forged.ciphertext = parts[4].ciphertext.clone();
    let mut all = parts.clone();
    all[4] = forged;
    assert_eq!(combine(&key, &c, &all), Err(DecryptError::Inconsistent));
    // A flipped sign flag puts a term on the wrong side of the quotient: the result is not of
    // the form 1 + l·N and the combine refuses it rather than returning a wrong plaintext.
    for i in 0..3 {
        let mut flipped = parts.clone();
        flipped[i].negative = !flipped[i].negative;
        assert_eq!(
            combine(&key, &c, &flipped[..3]),
            Err(DecryptError::Inconsistent)
        );
    }
    // Combining for another ciphertext than the partials were made for names the first sender.
    assert_eq!(
        combine(&key, &c2, &parts[..3]),
        Err(DecryptError::WrongCiphertext { culprit: 1 })
    );
}

#[test]
fn root_method_detects_a_wrong_partial_in_a_minimal_quorum() {
    let (shares, c, parts) = setup();
    let key = shares[0].threshold_key();
    // Exactly t+1 partials, one replaced by another unit mod N (or by the partial of another
    // ciphertext, relabelled): the root combine's check z ≡ 1 (mod N) refuses it.
    let mut rng = ChaCha20Rng::seed_from_u64(53);
    let c2 = shares[0]
        .public()
        .encrypt(&BigUint::from(7u32), &mut rng)
        .expect("enc");
    for i in 0..3 {
        let mut bad = parts[..3].to_vec();
        bad[i].value = (&bad[i].value * 2u8) % shares[0].public().n();
        assert_eq!(combine(&key, &c, &bad), Err(DecryptError::Inconsistent));
        let mut other = partial_decrypt(&shares[i], &c2).expect("partial");
        other.ciphertext = bad[i].ciphertext.clone();
        bad[i] = other;
        assert_eq!(combine(&key, &c, &bad), Err(DecryptError::Inconsistent));
    }
}

#[test]
fn methods_and_versions_are_checked() {
    let (shares, c, parts) = setup();
    let key = shares[0].threshold_key();
    assert!(
        parts
            .iter()
            .all(|p| p.method == Method::Root && p.version == 3)
    );
    // A classic partial among root ones names its sender.
    let mut mixed = parts[..3].to_vec();
    mixed[1] = partial_decrypt_with(&shares[1], &c, Method::Classic).expect("partial");
    assert_eq!(
        combine(&key, &c, &mixed),
        Err(DecryptError::MixedMethods { culprit: 2 })
    );
    // A root partial is a value mod N: at or above N it is out of range.
    let mut bad = parts[..3].to_vec();
    bad[2].value = shares[0].public().n() + 1u8;
    assert_eq!(
        combine(&key, &c, &bad),
        Err(DecryptError::InvalidPartial { culprit: 3 })
    );
    // Version 2 (before methods existed) is accepted for classic partials only.
    let mut old = parts[..3].to_vec();
    old[0].version = 2;
    assert_eq!(
        combine(&key, &c, &old),
        Err(DecryptError::UnsupportedVersion { culprit: 1 })
    );
    let classic: Vec<PartialDecryption> = shares[..3]
        .iter()
        .map(|s| {
            let mut p = partial_decrypt_with(s, &c, Method::Classic).expect("partial");
            p.version = 2;
            p
        })
        .collect();
    assert_eq!(combine(&key, &c, &classic), Ok(BigUint::from(1234u32)));
    // A version-2 partial without the method field parses as classic.
    let mut v = serde_json::to_value(&classic[0]).expect("ser");
    v.as_object_mut().expect("object").remove("method");
    let back: PartialDecryption = serde_json::from_value(v).expect("de");
    assert_eq!(back.method, Method::Classic);
}
