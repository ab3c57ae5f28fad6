//! Wire-format snapshots: the JSON of every key-generation message kind, the public key, a
//! ciphertext, a key share, the threshold key and a partial decryption, from a seeded run, compared
//! with the committed files in `tests/snapshots/` (regenerate with `UPDATE_SNAPSHOTS=1`).

use std::collections::BTreeMap;

use caucus::decrypt::partial_decrypt;
use caucus::keygen::Params;
use caucus::paillier::encoding::WireCiphertext;
use caucus::testing::{Delivery, try_run_keygen};
use num_bigint::BigUint;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn check(name: &str, value: &serde_json::Value) {
    let path = format!("{}/tests/snapshots/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = serde_json::to_string_pretty(value).expect("json") + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing snapshot {path}"));
    assert_eq!(
        text, want,
        "wire format of {name} changed; review and set UPDATE_SNAPSHOTS=1"
    );
}

#[test]
fn wire_formats_match_the_snapshots() {
    let mut params = Params::new(256, 3, 1).expect("params");
    params.batch_size = 2;
    params.biprime_rounds = 2;
    params.twisted_rounds = 1;
    let mut first: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut hook = |from: u32, to: u32, _s: u32, bytes: &mut Vec<u8>| {
        if from == 1 && to == 2 {
            let v: serde_json::Value = serde_json::from_slice(bytes).expect("json");
            let kind = v["body"]
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .expect("kind");
            first.entry(kind).or_insert(v);
        }
    };
    let (shares, _) = try_run_keygen(&params, 9, Delivery::Fifo, Some(&mut hook)).expect("run");
    let kinds = [
        "sieve_shares",
        "sieve_open",
        "product_shares",
        "product_open",
        "biprime_first",
        "biprime_rest",
        "secret_shares",
        "secret_reshare",
    ];
    assert_eq!(first.len(), kinds.len(), "{:?}", first.keys());
    for k in kinds {
        check(&format!("keygen_{k}"), &first[k]);
    }
    let pk = shares[0].public();
    check("public_key", &serde_json::to_value(pk).expect("ser"));
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut ct = pk.encrypt(&BigUint::from(42u8), &mut rng).expect("enc");
    let wire = WireCiphertext::seal(&mut ct, pk, &mut rng);
    check("ciphertext", &serde_json::to_value(&wire).expect("ser"));
    check("key_share", &serde_json::to_value(&shares[0]).expect("ser"));
    check(
        "threshold_key",
        &serde_json::to_value(shares[0].threshold_key()).expect("ser"),
    );
    let part = partial_decrypt(&shares[1], &ct).expect("partial");
    check(
        "partial_decryption",
        &serde_json::to_value(&part).expect("ser"),
    );
}
