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
