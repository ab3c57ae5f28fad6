//! Blob transfer over the real transport: in-process nodes on 127.0.0.1 (mutual TLS, real
//! certificates from a test root, signed roster), each receiver with a real blob store (files
//! and redb in a temp dir). Round trips to one and three recipients, every blob vector delivered
//! over the wire by a misbehaving sender, interrupted transfers that resume, a restarted
//! receiver, and limits refused before any chunk is sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use caucus::blob::transfer::{
    End, METHOD_END, METHOD_POST, PostReply, encode_chunk_header, refusal_code,
};
use caucus::blob::{BlobHeader, BlobId};
use caucus::encoding::b64u_decode;
use caucus::pki::PrivateKey;
use caucus_node::blob::wire::{BlobHandler, SendError, SendOptions, send_to};
use caucus_node::blob::{BlobStore, Outgoing, StoreConfig};
use caucus_node::session::{Session, SessionOptions, SessionParts};
use caucus_node::testing::TestPki;
use caucus_node::transport::conn::reply_to;
use caucus_node::transport::{Clock, METHOD_ERROR, NodeOptions, SystemClock, TransportError};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;
use tokio::net::TcpListener;

const SID: &str = "s1";
const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

fn test_key(file: &str) -> PrivateKey {
    let pem = std::fs::read_to_string(vectors_dir().join(file)).expect("key file");
    PrivateKey::from_pkcs8_pem(&pem).expect("key")
}

fn copy_key(k: &PrivateKey) -> PrivateKey {
    PrivateKey::from_pkcs8_der(k.pkcs8_der()).expect("key copy")
}

struct Net {
    _tmp: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    keys: Vec<PrivateKey>,
    s: Vec<Session>,
    stores: Vec<Arc<BlobStore>>,
}

fn opts() -> SessionOptions {
    SessionOptions {
        timeout: Duration::from_secs(20),
        node: NodeOptions {
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            ..NodeOptions::default()
        },
        ..SessionOptions::default()
    }
}

/// alice (test key a, the vectors' sender), bob (key b, the vectors' recipient), carol (key c),
/// dave (fresh key). Every node serves `post/blob` into its own store.
async fn net(cfg: StoreConfig) -> Net {
    net_with(cfg, opts()).await
}

async fn net_with(cfg: StoreConfig, opts: SessionOptions) -> Net {
    let now = SystemClock.now_secs();
    let pki = TestPki::new("acme", now);
    let keys = vec![
        test_key("test_key_a.pem"),
        test_key("test_key_b.pem"),
        test_key("test_key_c.pem"),
        PrivateKey::generate(2048).expect("key"),
    ];
    let mut listeners = Vec::new();
    let mut certs = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        certs.push(pki.issue_now(&keys[i], SID, name).0);
    }
    let members: Vec<(&str, &[u8], String)> = NAMES
        .iter()
        .zip(&certs)
        .zip(&listeners)
        .map(|((n, c), l)| (*n, c.as_slice(), l.local_addr().expect("addr").to_string()))
        .collect();
    let roster = pki.roster(SID, &members);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut s = Vec::new();
    let mut stores = Vec::new();
    let mut dirs = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let parts = SessionParts {
            key: copy_key(&keys[i]),
            cert_der: certs[i].clone(),
            root_der: pki.root_der(),
            roster: roster.clone(),
            crl: Some(pki.crl(&[])),
            listener: l,
            source: None,
        };
        let session = Session::from_parts(parts, opts.clone()).expect("session");
        let dir = tmp.path().join(NAMES[i]);
        let store = BlobStore::open(&dir, cfg.clone()).expect("store");
        BlobHandler::new(store.clone(), Arc::new(copy_key(&keys[i]))).register(session.node());
        s.push(session);
        stores.push(store);
        dirs.push(dir);
    }
    Net {
        _tmp: tmp,
        dirs,
        keys,
        s,
        stores,
    }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed)
        .collect()
}

impl Net {
    /// alice encrypts `data` once for `to` into her outbox.
    fn outgoing(&self, data: &[u8], to: &[usize], seed: u64) -> Outgoing {
        self.outgoing_chunked(data, to, seed, caucus::blob::stream::DEFAULT_CHUNK_SIZE)
    }

    fn outgoing_chunked(&self, data: &[u8], to: &[usize], seed: u64, chunk: u32) -> Outgoing {
        let input = self.dirs[0].join(format!("input-{seed}"));
        std::fs::write(&input, data).expect("write input");
        let keys: Vec<_> = to
            .iter()
            .map(|&i| self.keys[i].public_key().clone())
            .collect();
        self.stores[0]
            .encrypt_to_outbox(
                &input,
                "data.bin",
                self.keys[0].public_key().party_id(),
                &keys,
                chunk,
                caucus_node::blob::store::now_ms(),
                &mut ChaCha20Rng::seed_from_u64(seed),
            )
            .expect("encrypt")
    }

    fn party(&self, i: usize) -> caucus::pki::PartyId {
        self.keys[i].public_key().party_id()
    }

    fn fetch(&self, i: usize, id: &BlobId) -> Vec<u8> {
        let out = self.dirs[i].join(format!("got-{id}"));
        self.stores[i].get(id, &self.keys[i], &out).expect("get");
        std::fs::read(out).expect("read")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_to_one_and_three_recipients() {
    let n = net(StoreConfig::default()).await;
    let sizes = [0usize, 1, 64 << 10, (64 << 10) + 1, 10 << 20];
    for (k, &len) in sizes.iter().enumerate() {
        let data = content(len, k as u8);
        // One recipient.
        let out = n.outgoing(&data, &[1], k as u64);
        let r = send_to(n.s[0].node(), &n.party(1), &out, &SendOptions::default(), 1)
            .await
            .expect("send");
        assert!(r.receipt.matches(&out.header));
        assert_eq!(
            (r.resumed_from, r.chunks_sent),
            (0, out.header.layout().count())
        );
        assert_eq!(n.fetch(1, &out.header.blob_id), data, "{len} to bob");
        // Three recipients, one encryption.
        let out = n.outgoing(&data, &[1, 2, 3], 100 + k as u64);
        for (i, name) in NAMES.iter().enumerate().skip(1) {
            let r = send_to(n.s[0].node(), &n.party(i), &out, &SendOptions::default(), 1)
                .await
                .expect("send");
            assert!(r.receipt.matches(&out.header));
            assert_eq!(n.fetch(i, &out.header.blob_id), data, "{len} to {name}");
        }
    }
    for (i, want) in [(1, 10), (2, 5), (3, 5)] {
        let list = n.stores[i].list().expect("list");
        assert_eq!(list.len(), want, "{}", NAMES[i]);
        assert!(list.iter().all(|e| e.sender_name == "alice"));
        assert!(n.stores[i].partials().expect("partials").is_empty());
    }
    // Sending again gets the same receipt without sending chunks.
    let out = n.outgoing(b"again", &[1], 999);
    let first = send_to(n.s[0].node(), &n.party(1), &out, &SendOptions::default(), 1)
        .await
        .expect("send");
    let again = send_to(n.s[0].node(), &n.party(1), &out, &SendOptions::default(), 1)
        .await
        .expect("send again");
    assert_eq!(again.chunks_sent, 0);
    assert_eq!(again.receipt, first.receipt);
}

/// Plays a misbehaving sender: posts `header`, streams `chunks` as given, ends; returns the
/// receiver's error code or `None` on a receipt.
async fn deliver(n: &Net, header: &Value, chunks: &[Vec<u8>]) -> Option<String> {
    deliver_frames(n, header, |id| {
        (0u64..)
            .zip(chunks)
            .map(|(i, c)| {
                let mut body = encode_chunk_header(id, i).to_vec();
                body.extend_from_slice(c);
                body
            })
            .collect()
    })
    .await
}

/// Like [`deliver`], with the chunk frame bodies made by `frames` from the accepted blob id.
async fn deliver_frames(
    n: &Net,
    header: &Value,
    frames: impl FnOnce(&BlobId) -> Vec<Vec<u8>>,
) -> Option<String> {
    let mut conn = n.s[0].node().connect(&n.party(1)).await.expect("connect");
    let id_hex = header["blob_id"].as_str().unwrap_or("x").to_string();
    let reply = match conn.request(METHOD_POST, &id_hex, header.clone()).await {
        Ok(r) => r,
        Err(TransportError::Remote(text)) => {
            return Some(refusal_code(&text).expect("coded refusal").to_string());
        }
        Err(e) => panic!("post failed: {e}"),
    };
    let Ok(PostReply::Accept(a)) = PostReply::from_value(&reply.payload) else {
        panic!("expected an accept: {reply:?}");
    };
    for body in frames(&a.blob_id) {
        if conn.write_chunk(&body).await.is_err() {
            break;
        }
    }
    let end = serde_json::to_value(End { blob_id: a.blob_id }).expect("end");
    let _ = conn.send(METHOD_END, &id_hex, end).await;
    let inner = conn.recv_envelope().await.expect("reply");
    assert!(reply_to(&inner).is_some());
    if inner.meta.method == METHOD_ERROR {
        let text = caucus_node::transport::conn::error_text(&inner);
        return Some(refusal_code(&text).expect("coded refusal").to_string());
    }
    match PostReply::from_value(&inner.payload) {
        Ok(PostReply::Receipt(_)) => None,
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_blob_vector_over_the_wire() {
    let n = net(StoreConfig::default()).await;
    let mut files: Vec<_> = std::fs::read_dir(vectors_dir().join("blob"))
        .expect("vectors")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 12, "vectors present");
    let mut received = 0;
    for f in files {
        let v: Value = serde_json::from_slice(&std::fs::read(&f).expect("read")).expect("json");
        let name = f.file_name().expect("name").to_string_lossy().to_string();
        assert_eq!(v["recipient_key"], "test_key_b.pem", "{name}");
        let chunks: Vec<Vec<u8>> = v["chunks"]
            .as_array()
            .expect("chunks")
            .iter()
            .map(|c| b64u_decode(c.as_str().expect("chunk"), 1 << 21).expect("b64"))
            .collect();
        let got = deliver(&n, &v["header"], &chunks).await;
        match v["expect"].as_str() {
            Some("success") => {
                assert_eq!(got, None, "{name}");
                received += 1;
                let h = BlobHeader::from_value(&v["header"], &Default::default()).expect("h");
                let plain = b64u_decode(v["plaintext"].as_str().expect("pt"), 1 << 20).expect("pt");
                assert_eq!(n.fetch(1, &h.blob_id), plain, "{name}");
            }
            _ => {
                let want = v["error"].as_str().expect("error code");
                assert_eq!(got.as_deref(), Some(want), "{name}");
            }
        }
        // Failures leave nothing listed and no partial behind.
        assert_eq!(n.stores[1].list().expect("list").len(), received, "{name}");
        assert!(n.stores[1].partials().expect("p").is_empty(), "{name}");
    }
    assert_eq!(received, 3);
    // Bob still serves good senders after all that.
    let out = n.outgoing(b"still fine", &[1], 7);
    send_to(n.s[0].node(), &n.party(1), &out, &SendOptions::default(), 1)
        .await
        .expect("good send after bad ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_chunk_frames_get_typed_refusals_and_good_chunks_before_them_are_checked_first() {
    let n = net(StoreConfig::default()).await;
    let out = n.outgoing_chunked(&content(5000, 9), &[1], 77, 1024);
    let all = std::fs::read(&out.path).expect("outbox");
    let layout = out.header.layout();
    let chunks: Vec<Vec<u8>> = (0..layout.count())
        .map(|i| {
            let off = caucus_node::blob::store::chunk_offset(&out.header, i) as usize;
            all[off..off + layout.cipher_len(i).expect("len")].to_vec()
        })
        .collect();
    let header = out.header.to_value();
    let frame = |id: &BlobId, i: u64, ct: &[u8]| {
        let mut body = encode_chunk_header(id, i).to_vec();
        body.extend_from_slice(ct);
        body
    };
    // Chunk 0 is good and arrives first: the oversized chunk 1 after it is refused for its
    // size (not as out of order), so the good chunk was checked before it.
    let mut long = chunks[1].clone();
    long.extend_from_slice(&[0u8; 2000]);
    let got = deliver_frames(&n, &header, |id| {
        vec![frame(id, 0, &chunks[0]), frame(id, 1, &long)]
    })
    .await;
    assert_eq!(got.as_deref(), Some("bad_chunk_size"));
    // A frame shorter than the chunk prefix, and one with a prefix but no ciphertext.
    let got = deliver_frames(&n, &header, |_| vec![vec![7u8; 10]]).await;
    assert_eq!(got.as_deref(), Some("malformed"));
    let got = deliver_frames(&n, &header, |id| {
        vec![frame(id, 0, &chunks[0]), frame(id, 1, &[])]
    })
    .await;
    assert_eq!(got.as_deref(), Some("bad_chunk_size"));
    assert!(n.stores[1].partials().expect("p").is_empty());
    assert!(n.stores[1].list().expect("list").is_empty());
    // The same blob, delivered properly afterwards, is received.
    assert_eq!(deliver(&n, &header, &chunks).await, None);
    assert_eq!(n.fetch(1, &out.header.blob_id), content(5000, 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_transfer_resumes_byte_identical() {
    let cfg = StoreConfig {
        sync_every_bytes: 1 << 20,
        ..StoreConfig::default()
    };
    let n = net(cfg).await;
    let data = content(10 << 20, 3);
    let out = n.outgoing(&data, &[1], 42);
    let count = out.header.layout().count();
    assert_eq!(count, 160);
    let stop = SendOptions {
        stop_after_chunks: Some(100),
        ..SendOptions::default()
    };
    let e = send_to(n.s[0].node(), &n.party(1), &out, &stop, 1)
        .await
        .expect_err("stopped");
    assert!(matches!(e, SendError::Stopped(100)), "{e}");
    // Give the receiver a moment to notice the dropped connection and checkpoint.
    let mut partial = vec![];
    for _ in 0..100 {
        partial = n.stores[1].partials().expect("partials");
        if partial.first().is_some_and(|(_, c)| *c > 0) && n.stores[1].list().expect("l").is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(partial.len(), 1);
    assert!(partial[0].1 > 0 && partial[0].1 <= 100, "{partial:?}");
    assert!(
        n.stores[1].list().expect("list").is_empty(),
        "a partial is never listed"
    );
    let sent = Arc::new(AtomicU64::new(0));
    let s2 = sent.clone();
    let opts = SendOptions {
        progress: Some(Arc::new(move |_, _| {
            s2.fetch_add(1, Ordering::Relaxed);
        })),
        stop_after_chunks: None,
    };
    let r = send_to(n.s[0].node(), &n.party(1), &out, &opts, 3)
        .await
        .expect("resume");
    assert!(r.resumed_from > 0, "resumed from {}", r.resumed_from);
    assert!(r.chunks_sent < count, "sent {} of {count}", r.chunks_sent);
    assert_eq!(r.chunks_sent, count - r.resumed_from);
    assert_eq!(sent.load(Ordering::Relaxed), r.chunks_sent);
    assert_eq!(n.fetch(1, &out.header.blob_id), data);
    assert!(n.stores[1].partials().expect("p").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_receiver_lists_and_returns_the_blob() {
    let mut n = net(StoreConfig::default()).await;
    let data = content(300_000, 9);
    let out = n.outgoing(&data, &[1], 5);
    let r = send_to(n.s[0].node(), &n.party(1), &out, &SendOptions::default(), 1)
        .await
        .expect("send");
    // Stop bob entirely and reopen his store from disk.
    let bob = n.s.remove(1);
    bob.close().await;
    n.stores[1] = BlobStore::open(&n.dirs[1], StoreConfig::default()).expect("reopen");
    let list = n.stores[1].list().expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].receipt(), r.receipt);
    assert_eq!(n.fetch(1, &out.header.blob_id), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_refused_before_any_chunk() {
    let cfg = StoreConfig {
        max_blob_bytes: 1 << 20,
        max_inbox_bytes: (1 << 20) + 200_000,
        ..StoreConfig::default()
    };
    let n = net(cfg).await;
    let sent = Arc::new(AtomicU64::new(0));
    let s2 = sent.clone();
    let opts = SendOptions {
        progress: Some(Arc::new(move |_, _| {
            s2.fetch_add(1, Ordering::Relaxed);
        })),
        stop_after_chunks: None,
    };
    let big = n.outgoing(&content((1 << 20) + 1, 1), &[1], 1);
    match send_to(n.s[0].node(), &n.party(1), &big, &opts, 3).await {
        Err(SendError::Refused { code, .. }) => assert_eq!(code, "too_large"),
        other => panic!("{other:?}"),
    }
    let fits = n.outgoing(&content(1 << 20, 2), &[1], 2);
    send_to(n.s[0].node(), &n.party(1), &fits, &opts, 1)
        .await
        .expect("fits");
    let after_first = sent.load(Ordering::Relaxed);
    assert_eq!(after_first, 16, "only the accepted blob's chunks were sent");
    let more = n.outgoing(&content(300_000, 3), &[1], 3);
    match send_to(n.s[0].node(), &n.party(1), &more, &opts, 3).await {
        Err(SendError::Refused { code, .. }) => assert_eq!(code, "inbox_full"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sent.load(Ordering::Relaxed), after_first);
    assert!(n.stores[1].partials().expect("p").is_empty());
    assert_eq!(n.stores[1].list().expect("list").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_outbox_fails_the_send_and_nothing_is_received() {
    let n = net(StoreConfig::default()).await;
    let data = content(200_000, 4);
    // Cut short: the sender refuses it before posting.
    let short = n.outgoing(&data, &[1], 11);
    let len = std::fs::metadata(&short.path).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&short.path)
        .expect("open");
    f.set_len(len - 1).expect("truncate");
    match send_to(
        n.s[0].node(),
        &n.party(1),
        &short,
        &SendOptions::default(),
        1,
    )
    .await
    {
        Err(SendError::Store(e)) => assert!(e.to_string().contains("wrong length"), "{e}"),
        other => panic!("{other:?}"),
    }
    // A flipped byte in the last chunk: the receiver stops at it and keeps nothing.
    let flipped = n.outgoing(&data, &[1], 12);
    let mut bytes = std::fs::read(&flipped.path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&flipped.path, &bytes).expect("write");
    match send_to(
        n.s[0].node(),
        &n.party(1),
        &flipped,
        &SendOptions::default(),
        1,
    )
    .await
    {
        Err(SendError::Refused { code, .. }) => assert_eq!(code, "decryption_failed"),
        other => panic!("{other:?}"),
    }
    assert!(n.stores[1].list().expect("list").is_empty());
    assert!(n.stores[1].partials().expect("partials").is_empty());
}

/// In-process throughput probe (prints only; the real benchmark is `caucus bench blob`).
/// `cargo test -p caucus-node --release --test blob -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints a throughput figure"]
async fn throughput_probe_in_process() {
    let sync: u64 = std::env::var("SYNC_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(caucus_node::blob::store::DEFAULT_SYNC_EVERY);
    let n = net(StoreConfig {
        sync_every_bytes: sync,
        ..StoreConfig::default()
    })
    .await;
    let size = 256usize << 20;
    let data = content(size, 1);
    let out = n.outgoing(&data, &[1], 1);
    drop(data);
    let t = std::time::Instant::now();
    let r = send_to(n.s[0].node(), &n.party(1), &out, &SendOptions::default(), 1)
        .await
        .expect("send");
    let s = t.elapsed().as_secs_f64();
    println!(
        "blob {} MB in {s:.2} s: {:.0} MB/s; raw tls {:.0} MB/s",
        r.bytes_sent / 1_000_000,
        r.bytes_sent as f64 / 1e6 / s,
        tokio::task::spawn_blocking(move || caucus_node::blob::rawtls::raw_tls_mb_per_s(
            size as u64
        ))
        .await
        .expect("join")
        .expect("raw")
    );
}

/// Transport-only probe: the same chunk frames with no blob work on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints a throughput figure"]
async fn throughput_probe_frames_only() {
    use caucus_node::transport::{Conn, HandlerFuture, Incoming};
    let n = net(StoreConfig::default()).await;
    fn sink<'a>(conn: &'a mut Conn, req: caucus::msg::Inner) -> HandlerFuture<'a> {
        Box::pin(async move {
            conn.reply(&req, Value::Null).await?;
            let mut bytes = 0u64;
            loop {
                match conn.recv().await? {
                    Incoming::Chunk(b) => bytes += b.len() as u64,
                    Incoming::Envelope(e) => {
                        return conn.reply(&e, serde_json::json!({ "bytes": bytes })).await;
                    }
                }
            }
        })
    }
    n.s[1].node().register("bench/sink", sink);
    let mut conn = n.s[0].node().connect(&n.party(1)).await.expect("connect");
    let body = vec![7u8; (64 << 10) + 40];
    let t = std::time::Instant::now();
    conn.request("bench/sink", "x", Value::Null)
        .await
        .expect("req");
    for _ in 0..4096 {
        conn.write_chunk(&body).await.expect("write");
    }
    let r = conn
        .request("bench/sink", "y", Value::Null)
        .await
        .expect("end");
    let s = t.elapsed().as_secs_f64();
    let bytes = r.payload["bytes"].as_u64().expect("bytes");
    println!("frames only: {:.0} MB/s", bytes as f64 / 1e6 / s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_over_the_frame_limit_fail_before_posting() {
    let mut o = opts();
    o.node.max_frame = 512 << 10;
    let n = net_with(StoreConfig::default(), o).await;
    // 1 MiB chunks cannot go in 512 KiB frames: refused before post/blob, nothing on bob's side.
    let big = n.outgoing_chunked(&content(3 << 20, 5), &[1], 21, 1 << 20);
    match send_to(n.s[0].node(), &n.party(1), &big, &SendOptions::default(), 3).await {
        Err(e @ SendError::FrameLimit { .. }) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("524288"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(n.stores[1].list().expect("list").is_empty());
    assert!(n.stores[1].partials().expect("partials").is_empty());
    // 64 KiB chunks fit and go through.
    let data = content(300_000, 6);
    let ok = n.outgoing(&data, &[1], 22);
    send_to(n.s[0].node(), &n.party(1), &ok, &SendOptions::default(), 1)
        .await
        .expect("send");
    assert_eq!(n.fetch(1, &ok.header.blob_id), data);
}
