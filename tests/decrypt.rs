//! Threshold decryption refusals: each malformed or inconsistent partial is rejected and names its
//! sender.

use caucus::decrypt::{DecryptError, PartialDecryption, combine, partial_decrypt};
use caucus::keygen::KeyShare;
use caucus::paillier::Ciphertext;
use caucus::testing::run_keygen;
use num_bigint::BigUint;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn setup() -> (Vec<KeyShare>, Ciphertext, Vec<PartialDecryption>) {
    let (shares, _) = run_keygen(5, 2, 256, 50);
    let mut rng = ChaCha20Rng::seed_from_u64(51);
    let c = shares[0]
        .public()
        .encrypt(&BigUint::from(1234u32), &mut rng)
        .expect("enc");
    let parts = shares
        .iter()
        .map(|s| partial_decrypt(s, &c).expect("partial"))
        .collect();
    (shares, c, parts)
}

#[test]
fn malformed_partials_name_the_culprit() {
    let (shares, c, parts) = setup();
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
    let (shares, c, parts) = setup();
    let key = shares[0].threshold_key();
    // A partial of another ciphertext (relabelled) makes the two quorums disagree.
    let mut rng = ChaCha20Rng::seed_from_u64(52);
    let c2 = shares[0]
        .public()
        .encrypt(&BigUint::from(99u32), &mut rng)
        .expect("enc");
    let mut forged = partial_decrypt(&shares[4], &c2).expect("partial");
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
