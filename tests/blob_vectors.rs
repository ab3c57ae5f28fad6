//! Blob test vectors: every `tests/vectors/blob/*.json` file names an expected outcome
//! (`"expect": "success"` with the plaintext, or `"failure"` with an error code from
//! `BlobError::code`), a header and the ciphertext chunks, and is opened with the recipient key it
//! names. The vectors were produced once by `generate_blob_vectors` (seeded rng, committed test
//! keys; RSA-OAEP wrapping draws its own randomness, so regenerating changes the bytes but not the
//! outcomes): `CAUCUS_UPDATE_VECTORS=1 cargo test --release --test blob_vectors -- --ignored`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use caucus::blob::{BlobHeader, BlobLimits, FileKey, StreamKey, StreamWriter, open_blob};
use caucus::encoding::{b64u, b64u_decode};
use caucus::pki::PrivateKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};

const NOW: i64 = 1_700_000_000_000;
const CS: u32 = 1024;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn key(file: &str) -> PrivateKey {
    let pem = std::fs::read_to_string(dir().join(file)).expect("key file");
    PrivateKey::from_pkcs8_pem(&pem).expect("key")
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn sha(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A well-formed blob for recipient `to`: header, file key, chunks.
fn blob(
    data: &[u8],
    to: &PrivateKey,
    rng: &mut ChaCha20Rng,
) -> (BlobHeader, FileKey, Vec<Vec<u8>>) {
    let sender = key("test_key_a.pem").public_key().party_id();
    let (h, k) = BlobHeader::build(
        "data.bin",
        data.len() as u64,
        sha(data),
        sender,
        &[to.public_key().clone()],
        CS,
        NOW,
        rng,
    )
    .expect("build");
    let mut w = StreamWriter::new(&k, &h).expect("writer");
    let mut chunks = w.push(data).expect("push");
    chunks.push(w.finish().expect("finish"));
    (h, k, chunks)
}

struct Vector {
    name: &'static str,
    description: &'static str,
    error: Option<&'static str>,
    header: Value,
    chunks: Vec<Vec<u8>>,
    plaintext: Option<Vec<u8>>,
}

fn vectors() -> Vec<Vector> {
    let b = key("test_key_b.pem");
    let c = key("test_key_c.pem");
    let mut rng = ChaCha20Rng::seed_from_u64(0xb10b);
    let mut out = Vec::new();
    let ok = |name, description, len: usize, rng: &mut ChaCha20Rng| {
        let data = content(len);
        let (h, _, chunks) = blob(&data, &b, rng);
        Vector {
            name,
            description,
            error: None,
            header: h.to_value(),
            chunks,
            plaintext: Some(data),
        }
    };
    out.push(ok(
        "empty",
        "empty blob: one empty final chunk",
        0,
        &mut rng,
    ));
    out.push(ok(
        "exact_chunk_multiple",
        "2048 bytes in two full chunks, the second final",
        2048,
        &mut rng,
    ));
    out.push(ok(
        "one_byte_over",
        "2049 bytes: two full chunks and a final 1-byte chunk",
        2049,
        &mut rng,
    ));
    let fail = |name, description, error, h: &BlobHeader, chunks| Vector {
        name,
        description,
        error: Some(error),
        header: h.to_value(),
        chunks,
        plaintext: None,
    };

    let (h, _, mut ch) = blob(&content(2048), &b, &mut rng);
    let last = ch[0].len() - 1;
    ch[0][last] ^= 0x01;
    out.push(fail(
        "stream_bad_tag",
        "a flipped bit in chunk 0's tag",
        "decryption_failed",
        &h,
        ch,
    ));

    let (h, _, mut ch) = blob(&content(2049), &b, &mut rng);
    ch.pop();
    out.push(fail(
        "stream_no_final",
        "the final chunk is missing",
        "truncated",
        &h,
        ch,
    ));

    let data = content(2048);
    let (h, k, _) = blob(&data, &b, &mut rng);
    let sk = StreamKey::new(&k, &h).expect("key");
    let ch = vec![
        sk.encrypt_chunk(0, true, &data[..1024]).expect("enc"),
        sk.encrypt_chunk(1, true, &data[1024..]).expect("enc"),
    ];
    out.push(fail(
        "stream_two_final_chunks",
        "both chunks sealed with the last-chunk flag",
        "decryption_failed",
        &h,
        ch,
    ));

    let (h, k, mut ch) = blob(&data, &b, &mut rng);
    let sk = StreamKey::new(&k, &h).expect("key");
    ch.push(sk.encrypt_chunk(2, true, &data[..10]).expect("enc"));
    out.push(fail(
        "stream_trailing_chunk",
        "a valid stream extended by a further (validly sealed) chunk",
        "trailing_data",
        &h,
        ch,
    ));

    let (h, _, mut ch) = blob(&content(3072), &b, &mut rng);
    ch.swap(0, 1);
    out.push(fail(
        "stream_reordered",
        "chunks 0 and 1 swapped",
        "decryption_failed",
        &h,
        ch,
    ));

    let (h, _, mut ch) = blob(&data, &b, &mut rng);
    let (_, _, other) = blob(&data, &b, &mut rng);
    ch[1] = other[1].clone();
    out.push(fail(
        "chunk_from_other_blob",
        "chunk 1 taken from another blob of the same size",
        "decryption_failed",
        &h,
        ch,
    ));

    let (h, k, mut ch) = blob(&data, &b, &mut rng);
    let mut h2 = h.clone();
    h2.blob_id.0[0] ^= 0xff;
    let sk2 = StreamKey::new(&k, &h2).expect("key");
    ch[1] = sk2.encrypt_chunk(1, true, &data[1024..]).expect("enc");
    out.push(fail(
        "chunk_from_other_blob_same_key",
        "chunk 1 from a blob with the same file key and nonce but another blob id (the AAD differs)",
        "decryption_failed",
        &h,
        ch,
    ));

    let (h, _, ch) = blob(&data, &c, &mut rng);
    out.push(fail(
        "header_for_other_recipient",
        "the header wraps the key for another party only",
        "not_a_recipient",
        &h,
        ch,
    ));

    let (mut h, _, ch) = blob(&data, &b, &mut rng);
    h.recipients[0].wrapped_key[20] ^= 0x01;
    out.push(fail(
        "wrapped_key_tampered",
        "the recipient's wrapped key has a flipped bit",
        "decryption_failed",
        &h,
        ch,
    ));

    let (h, _, mut ch) = blob(&data, &b, &mut rng);
    ch[1].pop();
    out.push(fail(
        "bad_chunk_size",
        "chunk 1 one byte short",
        "bad_chunk_size",
        &h,
        ch,
    ));

    let (h, k, _) = blob(&data, &b, &mut rng);
    let mut wrong = data.clone();
    wrong[100] ^= 1;
    let sk = StreamKey::new(&k, &h).expect("key");
    let ch = vec![
        sk.encrypt_chunk(0, false, &wrong[..1024]).expect("enc"),
        sk.encrypt_chunk(1, true, &wrong[1024..]).expect("enc"),
    ];
    out.push(fail(
        "digest_mismatch",
        "validly sealed chunks whose content does not hash to the header's sha256",
        "digest_mismatch",
        &h,
        ch,
    ));

    let (h, _, ch) = blob(&data, &b, &mut rng);
    let mut v = fail(
        "unknown_version",
        "header version 2",
        "unknown_version",
        &h,
        ch,
    );
    v.header["version"] = json!(2);
    out.push(v);

    let (h, _, ch) = blob(&data, &b, &mut rng);
    let mut v = fail(
        "chunk_size_out_of_range",
        "header chunk size 512 (below 1 KiB)",
        "invalid_header",
        &h,
        ch,
    );
    v.header["chunk_size"] = json!(512);
    out.push(v);

    let (h, _, ch) = blob(&data, &b, &mut rng);
    let mut v = fail(
        "header_unknown_field",
        "an unknown header field",
        "malformed",
        &h,
        ch,
    );
    v.header["comment"] = json!("x");
    out.push(v);
    out
}

#[test]
#[ignore = "writes tests/vectors/blob; run with CAUCUS_UPDATE_VECTORS=1 to regenerate"]
fn generate_blob_vectors() {
    if std::env::var_os("CAUCUS_UPDATE_VECTORS").is_none() {
        return;
    }
    let out = dir().join("blob");
    std::fs::create_dir_all(&out).expect("mkdir");
    for v in vectors() {
        let doc = json!({
            "description": v.description,
            "expect": if v.error.is_some() { "failure" } else { "success" },
            "error": v.error,
            "recipient_key": "test_key_b.pem",
            "header": v.header,
            "chunks": v.chunks.iter().map(|c| b64u(c)).collect::<Vec<_>>(),
            "plaintext": v.plaintext.as_deref().map(b64u),
        });
        let text = serde_json::to_string_pretty(&doc).expect("json");
        std::fs::write(out.join(format!("{}.json", v.name)), text + "\n").expect("write");
    }
}

#[test]
fn blob_vectors_have_expected_outcomes() {
    let mut names = BTreeSet::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir().join("blob"))
        .expect("vector dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let doc: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let me = key(doc["recipient_key"].as_str().expect("recipient_key"));
        let chunks: Vec<Vec<u8>> = doc["chunks"]
            .as_array()
            .expect("chunks")
            .iter()
            .map(|c| b64u_decode(c.as_str().expect("str"), 1 << 21).expect("b64u"))
            .collect();
        let outcome = BlobHeader::from_value(&doc["header"], &BlobLimits::default())
            .and_then(|h| open_blob(&h, &chunks, &me));
        match doc["expect"].as_str() {
            Some("success") => {
                let want = b64u_decode(doc["plaintext"].as_str().expect("plaintext"), 1 << 21)
                    .expect("b64u");
                assert_eq!(outcome.expect(&name), want, "{name}");
            }
            Some("failure") => {
                let err = outcome.expect_err(&name);
                assert_eq!(Some(err.code()), doc["error"].as_str(), "{name}: got {err}");
            }
            other => panic!("{name}: bad expect {other:?}"),
        }
        names.insert(name);
    }
    for required in [
        "empty",
        "exact_chunk_multiple",
        "one_byte_over",
        "stream_bad_tag",
        "stream_no_final",
        "stream_two_final_chunks",
        "stream_reordered",
        "chunk_from_other_blob",
        "chunk_from_other_blob_same_key",
        "header_for_other_recipient",
    ] {
        assert!(names.contains(required), "missing vector {required}");
    }
}

/// The generator's outcomes agree with the committed files (so regenerating cannot silently
/// change what a vector means).
#[test]
fn generator_matches_committed_outcomes() {
    for v in vectors() {
        let path = dir().join("blob").join(format!("{}.json", v.name));
        let doc: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("committed vector")).expect("json");
        assert_eq!(doc["error"].as_str(), v.error, "{}", v.name);
    }
}
