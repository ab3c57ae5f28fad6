//! Tampered, misrouted and malformed key-generation messages give typed errors naming the culprit,
//! never a panic.

use caucus::keygen::{Body, Keygen, KeygenError, KeygenMessage, Outgoing, Params, run_tag};
use caucus::testing::{Delivery, try_run_keygen};
use num_bigint::BigUint;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::Value;

fn params() -> Params {
    Params::new(256, 3, 1).expect("params")
}

/// Runs with a hook that alters the first message of `phase` from party 2 to party 1.
fn tamper_first(phase: &str, f: impl Fn(&mut Value)) -> (u32, KeygenError) {
    let mut done = false;
    let mut hook = |from: u32, to: u32, _step: u32, bytes: &mut Vec<u8>| {
        if done || from != 2 || to != 1 {
            return;
        }
        let mut v: Value = serde_json::from_slice(bytes).expect("json");
        if v["body"].get(phase).is_none() {
            return;
        }
        f(&mut v);
        *bytes = serde_json::to_vec(&v).expect("json");
        done = true;
    };
    match try_run_keygen(&params(), 5, Delivery::Fifo, Some(&mut hook)) {
        Ok(_) => panic!("tampering with {phase} was not detected"),
        Err(e) => e,
    }
}

fn big_b64(bytes: usize) -> Value {
    Value::String(caucus::encoding::b64u(&vec![0xffu8; bytes]))
}

/// Edits the packed vector `v["body"][phase][key]` (one base64url string of fixed-width values).
fn edit_packed(v: &mut Value, phase: &str, key: &str, f: impl FnOnce(&mut Vec<BigUint>)) {
    let s = v["body"][phase][key].as_str().expect("packed string");
    let bytes = caucus::encoding::b64u_decode(s, usize::MAX).expect("b64u");
    let mut vals = caucus::encoding::biguint_vec_unpack(&bytes, usize::MAX).expect("unpack");
    f(&mut vals);
    v["body"][phase][key] = Value::String(caucus::encoding::b64u(
        &caucus::encoding::biguint_vec_pack(&vals),
    ));
}

/// `2^(8·bytes) − 1`.
fn all_ones(bytes: usize) -> BigUint {
    BigUint::from_bytes_be(&vec![0xffu8; bytes])
}

#[test]
fn wrong_count_names_the_sender() {
    for phase in [
        "sieve_shares",
        "sieve_open",
        "product_shares",
        "product_open",
        "biprime_first",
    ] {
        let key = if phase.ends_with("shares") {
            "shares"
        } else {
            "values"
        };
        let (victim, err) = tamper_first(phase, |v| {
            edit_packed(v, phase, key, |vals| {
                vals.pop();
            });
        });
        assert_eq!(victim, 1);
        assert!(
            matches!(err, KeygenError::WrongCount { culprit: 2, .. }),
            "{phase}: {err:?}"
        );
    }
}

#[test]
fn out_of_range_shares_name_the_sender() {
    let (_, err) = tamper_first("product_shares", |v| {
        edit_packed(v, "product_shares", "shares", |x| x[0] = all_ones(100))
    });
    assert_eq!(err, KeygenError::InvalidShare { culprit: 2 });
    let (_, err) = tamper_first("sieve_open", |v| {
        edit_packed(v, "sieve_open", "values", |x| x[0] = all_ones(100))
    });
    assert_eq!(err, KeygenError::InvalidShare { culprit: 2 });
    // A biprimality value must be below N (256 bits here).
    let (_, err) = tamper_first("biprime_first", |v| {
        edit_packed(v, "biprime_first", "values", |x| x[0] = all_ones(33))
    });
    assert_eq!(err, KeygenError::InvalidShare { culprit: 2 });
    let (_, err) = tamper_first("secret_shares", |v| {
        v["body"]["secret_shares"]["phi"] =
            Value::String(format!("-{}", big_b64(1000).as_str().expect("s")))
    });
    assert_eq!(err, KeygenError::InvalidShare { culprit: 2 });
    // The degree-t share of the mask R_i (for the N-th-root shares) is bounded too.
    let (_, err) = tamper_first("secret_shares", |v| {
        v["body"]["secret_shares"]["root_mask"] =
            Value::String(format!("+{}", big_b64(1000).as_str().expect("s")))
    });
    assert_eq!(err, KeygenError::InvalidShare { culprit: 2 });
    let (_, err) = tamper_first("secret_reshare", |v| {
        v["body"]["secret_reshare"]["opening"] =
            Value::String(format!("+{}", big_b64(1500).as_str().expect("s")))
    });
    assert_eq!(err, KeygenError::InvalidShare { culprit: 2 });
}

#[test]
fn truncated_and_malformed_values_name_the_sender() {
    // Truncated to a length no base64url string has.
    let (_, err) = tamper_first("product_open", |v| {
        let s = v["body"]["product_open"]["values"]
            .as_str()
            .expect("s")
            .to_string();
        let cut = s.len() - (s.len() % 4) - 3;
        v["body"]["product_open"]["values"] = Value::String(s[..cut].to_string());
    });
    assert!(
        matches!(err, KeygenError::Malformed { culprit: 2, .. }),
        "{err:?}"
    );
    // Valid base64url, but not a whole number of values.
    let (_, err) = tamper_first("product_open", |v| {
        let s = v["body"]["product_open"]["values"].as_str().expect("s");
        let mut bytes = caucus::encoding::b64u_decode(s, usize::MAX).expect("b64u");
        bytes.pop();
        v["body"]["product_open"]["values"] = Value::String(caucus::encoding::b64u(&bytes));
    });
    assert!(
        matches!(err, KeygenError::Malformed { culprit: 2, .. }),
        "{err:?}"
    );
    // Over the wire bound.
    let (_, err) = tamper_first("sieve_shares", |v| {
        edit_packed(v, "sieve_shares", "shares", |x| x[0] = all_ones(5000))
    });
    assert!(
        matches!(err, KeygenError::Malformed { culprit: 2, .. }),
        "{err:?}"
    );
    // Unknown field.
    let (_, err) = tamper_first("sieve_shares", |v| v["header"]["extra"] = Value::from(1));
    assert!(
        matches!(err, KeygenError::Malformed { culprit: 2, .. }),
        "{err:?}"
    );
    // A signed integer without its sign.
    let (_, err) = tamper_first("secret_shares", |v| {
        v["body"]["secret_shares"]["beta"] = Value::from("AQ")
    });
    assert!(
        matches!(err, KeygenError::Malformed { culprit: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn header_faults_name_the_sender() {
    let (_, err) = tamper_first("sieve_open", |v| v["header"]["run"] = Value::from("AAAA"));
    assert_eq!(err, KeygenError::WrongRun { culprit: 2 });
    let (_, err) = tamper_first("sieve_open", |v| v["header"]["version"] = Value::from(9));
    assert_eq!(
        err,
        KeygenError::UnsupportedVersion {
            culprit: 2,
            version: 9
        }
    );
    let (_, err) = tamper_first("product_open", |v| v["header"]["step"] = Value::from(0));
    assert_eq!(
        err,
        KeygenError::PastRound {
            culprit: 2,
            step: 0
        }
    );
    let (_, err) = tamper_first("sieve_open", |v| v["header"]["step"] = Value::from(50));
    assert_eq!(
        err,
        KeygenError::FutureRound {
            culprit: 2,
            step: 50
        }
    );
    let (_, err) = tamper_first("sieve_open", |v| v["header"]["batch"] = Value::from(3));
    assert_eq!(err, KeygenError::UnexpectedMessage { culprit: 2 });
    // The body of another phase.
    let (_, err) = tamper_first("sieve_open", |v| {
        let inner = v["body"]["sieve_open"].take();
        v["body"] = serde_json::json!({ "product_open": inner });
    });
    assert_eq!(err, KeygenError::UnexpectedMessage { culprit: 2 });
    assert_eq!(err.culprit(), Some(2));
}

#[test]
fn wrong_sender_index_and_duplicates_are_refused() {
    let p = params();
    let run = run_tag("s", 0, &p);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (k1, _) = Keygen::start(&p, 1, run, &mut rng).expect("start");
    let (_, out2) = Keygen::start(&p, 2, run, &mut rng).expect("start");
    let to1 = out2
        .iter()
        .find_map(|o| match o {
            Outgoing::Direct { to: 1, msg } => Some(msg.clone()),
            _ => None,
        })
        .expect("a message for party 1");
    assert!(matches!(to1.body, Body::SieveShares { .. }));
    let err = Keygen::start(&p, 1, run, &mut rng)
        .expect("start")
        .0
        .handle(4, to1.clone())
        .expect_err("index 4");
    assert_eq!(err, KeygenError::UnknownSender { culprit: 4 });
    let err = Keygen::start(&p, 1, run, &mut rng)
        .expect("start")
        .0
        .handle(1, to1.clone())
        .expect_err("self");
    assert_eq!(err, KeygenError::UnknownSender { culprit: 1 });
    let err = Keygen::start(&p, 1, run, &mut rng)
        .expect("start")
        .0
        .handle(0, to1.clone())
        .expect_err("zero");
    assert_eq!(err, KeygenError::UnknownSender { culprit: 0 });
    let (k1, out) = k1.handle(2, to1.clone()).expect("first delivery");
    assert!(out.is_empty(), "still waiting for party 3");
    assert_eq!(
        k1.handle(2, to1).expect_err("dup"),
        KeygenError::Duplicate { culprit: 2 }
    );
    // A message of another run (session or attempt).
    let other = run_tag("s", 1, &p);
    let (_, out) = Keygen::start(&p, 2, other, &mut rng).expect("start");
    let Outgoing::Direct { msg, .. } = &out[0] else {
        panic!("direct")
    };
    let err = Keygen::start(&p, 1, run, &mut rng)
        .expect("start")
        .0
        .handle(2, msg.clone())
        .expect_err("run");
    assert_eq!(err, KeygenError::WrongRun { culprit: 2 });
    // Parse failures name the sender.
    let err = KeygenMessage::from_json(3, b"{\"header\":").expect_err("truncated");
    assert_eq!(err.culprit(), Some(3));
}

#[test]
fn random_byte_flips_never_panic() {
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    for round in 0..12 {
        let target = rng.random_range(0..40u32);
        let mut count = 0u32;
        let flip_at: f64 = rng.random();
        let xor: u8 = rng.random_range(1..=255);
        let mut hook = |_f: u32, _t: u32, _s: u32, bytes: &mut Vec<u8>| {
            if count == target && !bytes.is_empty() {
                let i = ((bytes.len() as f64) * flip_at) as usize % bytes.len();
                bytes[i] ^= xor;
            }
            count += 1;
        };
        // Either the flip is harmless (e.g. inside a value) or it is reported with a culprit.
        match try_run_keygen(&params(), 100 + round, Delivery::Fifo, Some(&mut hook)) {
            Ok(_) => {}
            Err((_, e)) => assert!(
                e.culprit().is_some() || matches!(e, KeygenError::Degenerate),
                "{e:?}"
            ),
        }
    }
}
