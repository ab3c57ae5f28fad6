//! Wire-format snapshot of the signed envelope: a fixed message (fixed key, nonce and timestamp)
//! whose inner JSON string must match the committed `tests/vectors/envelope_inner.json` byte for
//! byte, and a committed signed envelope that must still open. Set `CAUCUS_UPDATE_VECTORS=1` to
//! rewrite the files after an intended format change (and review the diff).

use caucus::msg::envelope::{Envelope, Meta, Opener, seal};
use caucus::pki::{PartyId, PrivateKey};
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;

fn vector(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

fn fixed() -> (PrivateKey, PrivateKey, Meta) {
    let a = PrivateKey::from_pkcs8_pem(include_str!("vectors/test_key_a.pem")).expect("key a");
    let b = PrivateKey::from_pkcs8_pem(include_str!("vectors/test_key_b.pem")).expect("key b");
    let meta = Meta {
        method: "smc/msg".into(),
        args: json!({"round": 1}),
        id: a.public_key().party_id(),
        to: Some(b.public_key().party_id()),
        session: "s1".into(),
        message_id: "sum/1".into(),
        timestamp: NOW,
        nonce: *b"0123456789abcdef",
        payload_type: "json".into(),
        extra: json!(null),
    };
    (a, b, meta)
}

#[test]
fn inner_json_snapshot() {
    let (a, b, meta) = fixed();
    let env = seal(&a, meta, json!({"value": "AQAB", "list": [1, 2, 3]})).expect("seal");
    let path = vector("envelope_inner.json");
    let signed_path = vector("envelope_signed.json");
    if std::env::var_os("CAUCUS_UPDATE_VECTORS").is_some() {
        std::fs::write(&path, format!("{}\n", env.message)).expect("write");
        std::fs::write(&signed_path, env.to_bytes()).expect("write");
    }
    let want = std::fs::read_to_string(&path).expect("snapshot file");
    assert_eq!(
        env.message,
        want.trim_end_matches('\n'),
        "envelope inner format drifted"
    );

    // The committed signed envelope (PSS signatures are randomised, so it is not regenerated
    // bit for bit) must still open under today's code.
    let signed = std::fs::read(&signed_path).expect("signed vector");
    let parsed: Envelope = serde_json::from_slice(&signed).expect("outer");
    assert_eq!(parsed.message, env.message);
    let me: PartyId = b.public_key().party_id();
    let mut opener = Opener::new("s1", Some(me));
    let inner = opener
        .open(
            &signed,
            &a.public_key().party_id(),
            a.public_key(),
            NOW + 10,
        )
        .expect("committed envelope opens");
    assert_eq!(inner.meta.message_id, "sum/1");
    assert_eq!(inner.payload["list"], json!([1, 2, 3]));
}

#[test]
fn batch_snapshot() {
    // The signed-bytes layout: context, count, then length-prefixed inner strings.
    let mut want = b"\0caucus/1 envelope batch\0".to_vec();
    want.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 2]);
    want.extend_from_slice(b"{}");
    want.extend_from_slice(&[0, 0, 0, 3]);
    want.extend_from_slice(b"[1]");
    assert_eq!(caucus::msg::batch::signed_bytes(&["{}", "[1]"]), want);

    let (a, b, meta) = fixed();
    let mut second = meta.clone();
    second.message_id = "sum/2".into();
    second.nonce = *b"fedcba9876543210";
    let items = [
        caucus::msg::Unsigned::new(meta, json!({"value": "AQAB"})).expect("encode"),
        caucus::msg::Unsigned::new(second, json!([4, 5])).expect("encode"),
    ];
    let path = vector("envelope_batch.json");
    if std::env::var_os("CAUCUS_UPDATE_VECTORS").is_some() {
        let body = caucus::msg::seal_batch(&a, &items).expect("seal");
        std::fs::write(&path, body).expect("write");
    }
    // The committed batch (randomised PSS, so not regenerated bit for bit) still opens, in order.
    let committed = std::fs::read(&path).expect("batch vector");
    let mut opener = Opener::new("s1", Some(b.public_key().party_id()));
    let got = opener
        .open_batch(
            &committed,
            &a.public_key().party_id(),
            a.public_key(),
            NOW + 10,
        )
        .expect("committed batch opens");
    let ids: Vec<_> = got
        .into_iter()
        .map(|i| i.result.expect("accepted").meta.message_id)
        .collect();
    assert_eq!(ids, ["sum/1", "sum/2"]);
}
