//! Quick single-core STREAM throughput figure (not a timed test: it only prints).
//! `cargo test --release --test blob_throughput -- --ignored --nocapture`

use std::time::Instant;

use caucus::blob::stream::DEFAULT_CHUNK_SIZE;
use caucus::blob::{BlobHeader, StreamReader, StreamWriter};
use caucus::pki::PrivateKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[test]
#[ignore = "prints a throughput figure; run explicitly with --release"]
fn stream_throughput_64k_chunks() {
    let me = PrivateKey::from_pkcs8_pem(include_str!("vectors/test_key_b.pem")).expect("key");
    let cs = DEFAULT_CHUNK_SIZE as usize;
    let chunks_n = 2048; // 128 MiB
    let total = (cs * chunks_n) as u64;
    let block = vec![0x5au8; cs];
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for _ in 0..chunks_n {
        ctx.update(&block);
    }
    let mut sha = [0u8; 32];
    sha.copy_from_slice(ctx.finish().as_ref());
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (h, k) = BlobHeader::build(
        "bench",
        total,
        sha,
        me.public_key().party_id(),
        &[me.public_key().clone()],
        DEFAULT_CHUNK_SIZE,
        0,
        &mut rng,
    )
    .expect("build");
    for run in 0..3 {
        let t = Instant::now();
        let mut w = StreamWriter::new(&k, &h).expect("w");
        let mut out = Vec::with_capacity(chunks_n);
        for _ in 0..chunks_n {
            out.extend(w.push(&block).expect("push"));
        }
        out.push(w.finish().expect("finish"));
        let enc = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut r = StreamReader::new(&k, &h).expect("r");
        let mut n = 0usize;
        for c in &out {
            n += r.push_chunk(c).expect("chunk").len();
        }
        r.finish().expect("finish");
        let dec = t.elapsed().as_secs_f64();
        assert_eq!(n as u64, total);
        let mb = total as f64 / 1e6;
        println!(
            "run {run}: 64 KiB chunks, {mb:.0} MB: encrypt {:.0} MB/s, decrypt {:.0} MB/s (incl. SHA-256)",
            mb / enc,
            mb / dec
        );
    }
}

/// Where does STREAM time go? Bare aes-gcm vs `StreamKey` vs SHA-256 (prints only).
#[test]
#[ignore = "prints a throughput breakdown; run explicitly with --release"]
fn stream_breakdown_probe() {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use caucus::blob::{FileKey, StreamKey};
    let me = PrivateKey::from_pkcs8_pem(include_str!("vectors/test_key_b.pem")).expect("key");
    let cs = DEFAULT_CHUNK_SIZE as usize;
    let n = 1024usize; // 64 MiB
    let mb = (cs * n) as f64 / 1e6;
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (h, k) = BlobHeader::build(
        "bench",
        (cs * n) as u64,
        [0; 32],
        me.public_key().party_id(),
        &[me.public_key().clone()],
        DEFAULT_CHUNK_SIZE,
        0,
        &mut rng,
    )
    .expect("build");
    let _ = FileKey::from_slice(&[0; 32]);
    let sk = StreamKey::new(&k, &h).expect("k");
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&[7u8; 32]).expect("k");
    let mut buf = vec![0x5au8; cs];
    for _ in 0..2 {
        let t = Instant::now();
        for i in 0..n {
            let mut nonce = [0u8; 12];
            nonce[4..12].copy_from_slice(&(i as u64).to_be_bytes());
            let _tag = cipher
                .encrypt_inout_detached(&nonce.into(), b"aad", buf.as_mut_slice().into())
                .expect("enc");
        }
        let bare = mb / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut cts = Vec::with_capacity(n);
        for i in 0..n {
            cts.push(sk.encrypt_chunk(i as u64, false, &buf).expect("enc"));
        }
        let enc = mb / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for (i, c) in cts.iter().enumerate() {
            sk.decrypt_chunk(i as u64, false, c).expect("dec");
        }
        let dec = mb / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut pt = Vec::new();
        for (i, c) in cts.iter().enumerate() {
            sk.decrypt_chunk_into(i as u64, false, c, &mut pt)
                .expect("dec");
        }
        let dec_into = mb / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut ct = Vec::new();
        for i in 0..n {
            sk.encrypt_chunk_into(i as u64, false, &buf, &mut ct)
                .expect("enc");
        }
        let enc_into = mb / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for _ in 0..n {
            ctx.update(&buf);
        }
        let _ = ctx.finish();
        let sha = mb / t.elapsed().as_secs_f64();
        println!(
            "bare aes-gcm in place {bare:.0} MB/s; StreamKey encrypt {enc:.0} (Vec per chunk) / {enc_into:.0} (into), decrypt {dec:.0} / {dec_into:.0}; sha256 {sha:.0} MB/s"
        );
    }
}
