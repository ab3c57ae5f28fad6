//! In-process transport tests: three nodes (mutual TLS on 127.0.0.1, real rustls, real
//! certificates and signed roster) exchange messages through the session API, and every refusal
//! case is refused with a typed error while the node keeps serving a good peer.

use std::sync::Arc;
use std::time::Duration;

use caucus::msg::frame::{DEFAULT_MAX_FRAME, FrameKind, encode};
use caucus::msg::{Envelope, EnvelopeError, seal};
use caucus::pki::PartyId;
use caucus::pki::verify::VerifyError;
use caucus::pki::{PrivateKey, Roster};
use caucus_node::session::{Session, SessionError, SessionOptions, SessionParts};
use caucus_node::testing::{RawConn, TestPki, raw_connect};
use caucus_node::transport::conn::meta_for;
use caucus_node::transport::{
    Clock, ManualClock, NodeOptions, PeerError, Refusal, SystemClock, TransportError,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

const SID: &str = "s1";

struct Net {
    pki: TestPki,
    keys: Vec<PrivateKey>,
    certs: Vec<Vec<u8>>,
    roster: Roster,
    s: Vec<Session>,
}

fn copy_key(k: &PrivateKey) -> PrivateKey {
    PrivateKey::from_pkcs8_der(k.pkcs8_der()).expect("key copy")
}

fn opts(clock: Arc<dyn Clock>) -> SessionOptions {
    SessionOptions {
        timeout: Duration::from_secs(10),
        node: NodeOptions {
            handshake_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(2),
            ..NodeOptions::default()
        },
        clock,
        ..SessionOptions::default()
    }
}

async fn net_with(clocks: Vec<Arc<dyn Clock>>) -> Net {
    net_opts(clocks, |_| {}).await
}

async fn net_opts(clocks: Vec<Arc<dyn Clock>>, tweak: impl Fn(&mut SessionOptions)) -> Net {
    let now = SystemClock.now_secs();
    let pki = TestPki::new("acme", now);
    let names = ["alice", "bob", "carol"];
    let mut listeners = Vec::new();
    let mut keys = Vec::new();
    let mut certs = Vec::new();
    for name in names {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let k = PrivateKey::generate(2048).expect("key");
        let (der, _) = pki.issue_now(&k, SID, name);
        listeners.push(l);
        keys.push(k);
        certs.push(der);
    }
    let members: Vec<(&str, &[u8], String)> = names
        .iter()
        .zip(&certs)
        .zip(&listeners)
        .map(|((n, c), l)| (*n, c.as_slice(), l.local_addr().expect("addr").to_string()))
        .collect();
    let roster = pki.roster(SID, &members);
    let mut s = Vec::new();
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
        let mut o = opts(clocks[i].clone());
        tweak(&mut o);
        s.push(Session::from_parts(parts, o).expect("session"));
    }
    Net {
        pki,
        keys,
        certs,
        roster,
        s,
    }
}

async fn net() -> Net {
    net_with(
        (0..3)
            .map(|_| Arc::new(SystemClock) as Arc<dyn Clock>)
            .collect(),
    )
    .await
}

/// Waits for a refusal matching `pred` on `rx`.
async fn refused(
    rx: &mut broadcast::Receiver<Refusal>,
    pred: impl Fn(&TransportError) -> bool,
) -> Refusal {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(r) if pred(&r.error) => return r,
                Ok(_) => continue,
                Err(e) => panic!("refusal channel: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("expected refusal was not reported")
}

/// Bob can still talk to alice (and alice answers), with a fresh message id.
async fn still_serves(n: &Net, tag: &str) {
    n.s[1].send("alice", tag, &tag).await.expect("bob sends");
    let got: String = n.s[0].recv("bob", tag).await.expect("alice receives");
    assert_eq!(got, tag);
    let pong = n.s[1]
        .request("alice", "smc/ping", json!({"t": tag}))
        .await
        .expect("ping");
    assert_eq!(pong.payload, json!({"t": tag}));
}

fn addr(n: &Net, i: usize) -> std::net::SocketAddr {
    n.s[i].local_addr()
}

/// A raw mTLS connection to alice as party `i` (its real key and certificate).
async fn raw_as(n: &Net, i: usize) -> RawConn {
    raw_connect(addr(n, 0), Some((&n.keys[i], &n.certs[i])))
        .await
        .expect("raw connect")
}

fn pid(n: &Net, i: usize) -> PartyId {
    n.keys[i].public_key().party_id()
}

fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// An smc/msg from party `from` to alice, sealed with `key`.
fn envelope(n: &Net, key: &PrivateKey, from: usize, msg_id: &str, ts: i64, v: Value) -> Envelope {
    let meta = meta_for("smc/msg", SID, msg_id, pid(n, from), Some(pid(n, 0)), ts);
    seal(key, meta, v).expect("seal")
}

async fn write_env(c: &mut RawConn, e: &Envelope) {
    c.writer
        .write_frame(FrameKind::Envelope, &e.to_bytes())
        .await
        .expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_to_point_broadcast_out_of_order_and_errors_name_parties() {
    let n = net().await;
    let [a, b, c] = [&n.s[0], &n.s[1], &n.s[2]];
    assert_eq!(a.me().name, "alice");
    assert_eq!(c.me().index, 3);
    assert_eq!(
        b.parties()
            .iter()
            .map(|p| (p.name.as_str(), p.index))
            .collect::<Vec<_>>(),
        vec![("alice", 1), ("bob", 2), ("carol", 3)]
    );

    // point to point
    a.send("bob", "x", &42u64).await.expect("send");
    assert_eq!(b.recv::<u64>("alice", "x").await.expect("recv"), 42);

    // out of order: m2 then m1 sent, m1 then m2 received; same id is FIFO
    a.send("carol", "m2", &"second").await.expect("send");
    a.send("carol", "m1", &"first").await.expect("send");
    a.send("carol", "m1", &"first-again").await.expect("send");
    assert_eq!(c.recv::<String>("alice", "m1").await.expect("m1"), "first");
    assert_eq!(c.recv::<String>("alice", "m2").await.expect("m2"), "second");
    assert_eq!(
        c.recv::<String>("alice", "m1").await.expect("m1"),
        "first-again"
    );

    // broadcast and recv_all
    for (i, s) in n.s.iter().enumerate() {
        s.broadcast("round", &(i as u64 * 10)).await.expect("bcast");
    }
    for s in &n.s {
        let all: std::collections::BTreeMap<String, u64> = s.recv_all("round").await.expect("all");
        assert_eq!(all.len(), 2);
        assert!(!all.contains_key(&s.me().name));
        for (name, v) in all {
            let idx = s.party(&name).expect("party").index as u64 - 1;
            assert_eq!(v, idx * 10);
        }
    }

    // requests on the built-in methods
    let crt = b
        .request("alice", "get/crt", Value::Null)
        .await
        .expect("get/crt");
    assert_eq!(
        crt.payload["cert"],
        json!(caucus::encoding::b64u(&n.certs[0]))
    );
    let ok = b
        .request(
            "alice",
            "post/crt",
            json!({"cert": caucus::encoding::b64u(&n.certs[1])}),
        )
        .await
        .expect("post/crt");
    assert_eq!(ok.payload["accepted"], json!(true));
    // Presenting someone else's certificate is refused.
    let err = b
        .request(
            "alice",
            "post/crt",
            json!({"cert": caucus::encoding::b64u(&n.certs[2])}),
        )
        .await
        .expect_err("foreign cert");
    assert!(
        matches!(err, SessionError::Request { ref party, source: TransportError::Remote(_) } if party == "alice"),
        "{err}"
    );
    let err = b
        .request("alice", "no/such", Value::Null)
        .await
        .expect_err("unknown method");
    assert!(err.to_string().contains("unknown method"), "{err}");

    // errors that name the party
    let e = b
        .recv_timeout::<u64>("carol", "never", Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert!(
        matches!(e, SessionError::Timeout { ref party, .. } if party == "carol"),
        "{e}"
    );
    assert!(e.to_string().contains("carol"));
    let e = b.send("zed", "x", &1).await.expect_err("not in roster");
    assert!(matches!(e, SessionError::NotInRoster(ref p) if p == "zed"));
    a.send("bob", "typed", &"not a number").await.expect("send");
    let e = b
        .recv::<u64>("alice", "typed")
        .await
        .expect_err("malformed");
    assert!(
        matches!(e, SessionError::Malformed { ref party, .. } if party == "alice"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_near_the_frame_limit() {
    let n = net().await;
    // Envelope overhead (meta, signature, quoting) is well under 2 KiB.
    let big = "a".repeat(DEFAULT_MAX_FRAME - 2048);
    n.s[0].send("bob", "big", &big).await.expect("send big");
    let got: String = n.s[1].recv("alice", "big").await.expect("recv big");
    assert_eq!(got.len(), big.len());
    assert!(got == big);
    // Over the limit: refused locally before anything is sent, naming the party.
    let too_big = "a".repeat(DEFAULT_MAX_FRAME);
    let e = n.s[0]
        .send("bob", "too-big", &too_big)
        .await
        .expect_err("over limit");
    assert!(
        matches!(e, SessionError::Unreachable { ref party, source: TransportError::Frame(_) } if party == "bob"),
        "{e}"
    );
    still_serves(&n, "after-big").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_party_is_named() {
    let mut n = net().await;
    n.s[2].send("bob", "hello", &1).await.expect("send");
    let _: u64 = n.s[1].recv("carol", "hello").await.expect("recv");
    let carol = n.s.pop().expect("carol");
    carol.close().await;
    let e = n.s[1]
        .recv_timeout::<u64>("carol", "next", Duration::from_millis(500))
        .await
        .expect_err("gone");
    assert!(
        matches!(e, SessionError::Disconnected { ref party, .. } if party == "carol"),
        "{e}"
    );
    let e = n.s[1]
        .send_timeout("carol", "next", &1, Duration::from_millis(500))
        .await
        .expect_err("unreachable");
    assert!(
        matches!(e, SessionError::Unreachable { ref party, .. } if party == "carol"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_missing_foreign_expired_and_unlisted_certificates() {
    let n = net().await;
    let mut rx = n.s[0].node().refusals();

    // no client certificate
    if let Ok(mut c) = raw_connect(addr(&n, 0), None).await {
        let _ = c.reader.read_frame(None).await;
    }
    refused(&mut rx, |e| {
        matches!(e, TransportError::Peer(PeerError::NoCertificate))
    })
    .await;
    still_serves(&n, "t1").await;

    // a certificate from another CA (same name, other key)
    let other = TestPki::new("acme", n.pki.now);
    let k = PrivateKey::generate(2048).expect("key");
    let (der, _) = other.issue_now(&k, SID, "bob");
    if let Ok(mut c) = raw_connect(addr(&n, 0), Some((&k, &der))).await {
        let _ = c.reader.read_frame(None).await;
    }
    refused(&mut rx, |e| {
        matches!(
            e,
            TransportError::Peer(PeerError::Chain(VerifyError::BadSignature))
        )
    })
    .await;
    still_serves(&n, "t2").await;

    // an expired certificate (of a roster member's key)
    let (der, _) = n.pki.issue(
        &n.keys[2],
        SID,
        "carol",
        (n.pki.now - 7200, n.pki.now - 3600),
    );
    if let Ok(mut c) = raw_connect(addr(&n, 0), Some((&n.keys[2], &der))).await {
        let _ = c.reader.read_frame(None).await;
    }
    refused(&mut rx, |e| {
        matches!(
            e,
            TransportError::Peer(PeerError::Chain(VerifyError::Expired))
        )
    })
    .await;
    still_serves(&n, "t3").await;

    // a certificate of another session
    let (der, _) = n.pki.issue_now(&n.keys[2], "s2", "carol");
    if let Ok(mut c) = raw_connect(addr(&n, 0), Some((&n.keys[2], &der))).await {
        let _ = c.reader.read_frame(None).await;
    }
    refused(&mut rx, |e| {
        matches!(e, TransportError::Peer(PeerError::WrongSession { session }) if session == "s2")
    })
    .await;
    still_serves(&n, "t4").await;

    // a valid certificate of this session whose key is not on the roster
    let k = PrivateKey::generate(2048).expect("key");
    let (der, _) = n.pki.issue_now(&k, SID, "mallory");
    if let Ok(mut c) = raw_connect(addr(&n, 0), Some((&k, &der))).await {
        let _ = c.reader.read_frame(None).await;
    }
    refused(&mut rx, |e| {
        matches!(e, TransportError::Peer(PeerError::NotMember { party, .. }) if party == "mallory")
    })
    .await;
    // ... nor a second certificate for a roster name with another key
    let (der, _) = n.pki.issue_now(&k, SID, "carol");
    if let Ok(mut c) = raw_connect(addr(&n, 0), Some((&k, &der))).await {
        let _ = c.reader.read_frame(None).await;
    }
    refused(&mut rx, |e| {
        matches!(e, TransportError::Peer(PeerError::NotMember { party, .. }) if party == "carol")
    })
    .await;
    still_serves(&n, "t5").await;

    // The dialling side refuses a server that is not the party it dialled: bob's node dialling
    // "carol" at an address where alice answers. (Roster addresses are CA-signed; this checks the
    // verifier's expected-peer rule directly.)
    let trust = n.s[1].node().trust();
    let alice_cert = &n.certs[0];
    let e = trust
        .check_peer(alice_cert, Some(&pid(&n, 2)))
        .expect_err("unexpected peer");
    assert!(matches!(e, PeerError::UnexpectedPeer { .. }));
    assert_eq!(n.roster.members.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_revoked_certificate_then_keeps_serving() {
    let n = net().await;
    let mut rx = n.s[0].node().refusals();
    // carol talks to alice fine, then her serial is revoked at alice.
    n.s[2].send("alice", "pre", &1).await.expect("send");
    let _: u64 = n.s[0].recv("carol", "pre").await.expect("recv");
    let serial = n.roster.by_name("carol").expect("carol").serial_hex.clone();
    n.s[0].node().trust().set_crl(n.pki.crl(&[&serial]));
    // A new connection from carol is refused.
    let mut c = raw_as(&n, 2).await;
    let _ = c.reader.read_frame(None).await;
    refused(
        &mut rx,
        |e| matches!(e, TransportError::Peer(PeerError::Revoked { serial: s }) if *s == serial),
    )
    .await;
    // carol's session API reports alice unreachable (her existing link is dropped first).
    n.s[2].node().close_links();
    let e = n.s[2]
        .send_timeout("alice", "post", &1, Duration::from_millis(800))
        .await
        .expect_err("revoked");
    assert!(
        matches!(e, SessionError::Unreachable { ref party, .. } if party == "alice"),
        "{e}"
    );
    still_serves(&n, "after-revoke").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_tampered_replayed_misattributed_and_stale_messages() {
    let n = net().await;
    let mut rx = n.s[0].node().refusals();
    let mut c = raw_as(&n, 1).await;
    let now = now_ms();

    // tampered: payload changed after signing
    let env = envelope(&n, &n.keys[1], 1, "tamper", now, json!({"v": 1}));
    let tampered = Envelope {
        message: env.message.replace(r#""v":1"#, r#""v":2"#),
        signature: env.signature.clone(),
    };
    write_env(&mut c, &tampered).await;
    refused(&mut rx, |e| {
        matches!(
            e,
            TransportError::Envelope(caucus::msg::EnvelopeError::BadSignature)
        )
    })
    .await;

    // replayed: the first copy is delivered, the second refused
    let env = envelope(&n, &n.keys[1], 1, "replay", now, json!(7));
    write_env(&mut c, &env).await;
    write_env(&mut c, &env).await;
    refused(&mut rx, |e| {
        matches!(
            e,
            TransportError::Envelope(caucus::msg::EnvelopeError::Replay)
        )
    })
    .await;
    assert_eq!(n.s[0].recv::<u64>("bob", "replay").await.expect("first"), 7);
    let e = n.s[0]
        .recv_timeout::<u64>("bob", "replay", Duration::from_millis(200))
        .await
        .expect_err("no second copy");
    assert!(matches!(e, SessionError::Timeout { .. }));

    // meta.id is carol, but the TLS peer is bob (signed by carol's key: still refused)
    let env = envelope(&n, &n.keys[2], 2, "spoof", now, json!(1));
    write_env(&mut c, &env).await;
    refused(&mut rx, |e| {
        matches!(
            e,
            TransportError::Envelope(caucus::msg::EnvelopeError::SenderMismatch { .. })
        )
    })
    .await;

    // stale timestamp (10 minutes old) and from the future
    for ts in [now - 10 * 60_000, now + 10 * 60_000] {
        let env = envelope(&n, &n.keys[1], 1, "stale", ts, json!(1));
        write_env(&mut c, &env).await;
        refused(&mut rx, |e| {
            matches!(
                e,
                TransportError::Envelope(caucus::msg::EnvelopeError::Stale { .. })
            )
        })
        .await;
    }
    // None of the refused messages reached the inbox.
    for id in ["tamper", "spoof", "stale"] {
        let r = n.s[0]
            .recv_timeout::<Value>("bob", id, Duration::from_millis(50))
            .await;
        assert!(r.is_err(), "{id} must not be delivered");
    }
    let r = n.s[0]
        .recv_timeout::<Value>("carol", "spoof", Duration::from_millis(50))
        .await;
    assert!(r.is_err());

    // the same raw connection is still usable for a good message
    let env = envelope(&n, &n.keys[1], 1, "good", now_ms(), json!("ok"));
    write_env(&mut c, &env).await;
    assert_eq!(
        n.s[0].recv::<String>("bob", "good").await.expect("good"),
        "ok"
    );
    still_serves(&n, "after-messages").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_oversized_frames_garbage_and_silent_peers() {
    let n = net().await;
    let mut rx = n.s[0].node().refusals();

    // oversized frame announced by an authenticated peer: refused from the header alone
    let mut c = raw_as(&n, 1).await;
    let len = (DEFAULT_MAX_FRAME as u32 + 1).to_be_bytes();
    c.writer
        .write_raw(&[len[0], len[1], len[2], len[3], 1])
        .await
        .expect("write header");
    refused(&mut rx, |e| matches!(e, TransportError::Frame(_))).await;
    // and the connection is closed
    let r = c.reader.read_frame(Some(Duration::from_secs(5))).await;
    assert!(matches!(r, Ok(None) | Err(_)), "{r:?}");
    still_serves(&n, "o1").await;

    // garbage frame kind from an authenticated peer
    let mut c = raw_as(&n, 2).await;
    c.writer
        .write_raw(&[0, 0, 0, 3, 0xee, 1, 2, 3])
        .await
        .expect("write");
    refused(&mut rx, |e| matches!(e, TransportError::Frame(_))).await;
    // a well-framed envelope that is garbage JSON
    let mut c = raw_as(&n, 2).await;
    let f = encode(FrameKind::Envelope, b"\x00garbage{", DEFAULT_MAX_FRAME).expect("frame");
    c.writer.write_raw(&f).await.expect("write");
    refused(&mut rx, |e| {
        matches!(
            e,
            TransportError::Envelope(caucus::msg::EnvelopeError::Malformed(_))
        )
    })
    .await;
    // an unsigned (plain) frame
    let f = encode(FrameKind::Plain, b"{}", DEFAULT_MAX_FRAME).expect("frame");
    c.writer.write_raw(&f).await.expect("write");
    refused(&mut rx, |e| matches!(e, TransportError::UnexpectedFrame(_))).await;
    // garbage bytes instead of a TLS handshake
    let mut tcp = tokio::net::TcpStream::connect(addr(&n, 0))
        .await
        .expect("tcp");
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    refused(&mut rx, |e| matches!(e, TransportError::Handshake(_))).await;
    still_serves(&n, "o2").await;

    // a peer that opens a TCP connection and sends nothing: dropped at the handshake timeout
    let _silent_tcp = tokio::net::TcpStream::connect(addr(&n, 0))
        .await
        .expect("tcp");
    // a peer that completes the handshake and then sends nothing: dropped at the idle timeout
    let mut silent_tls = raw_as(&n, 2).await;
    // meanwhile the node serves others
    still_serves(&n, "o3").await;
    refused(&mut rx, |e| {
        matches!(e, TransportError::Timeout("tls handshake"))
    })
    .await;
    refused(&mut rx, |e| matches!(e, TransportError::Timeout(_))).await;
    let r = silent_tls
        .reader
        .read_frame(Some(Duration::from_secs(5)))
        .await;
    assert!(matches!(r, Ok(None) | Err(_)), "silent peer closed: {r:?}");
    // Bob's own (keepalive-protected) link outlived the idle timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    still_serves(&n, "o4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_clock_expires_certificates() {
    let clock = Arc::new(ManualClock::new());
    let n = net_with(vec![
        clock.clone(),
        Arc::new(SystemClock),
        Arc::new(SystemClock),
    ])
    .await;
    let mut rx = n.s[0].node().refusals();
    still_serves(&n, "before").await;
    // Two hours later, as alice sees it, every certificate (one hour) has expired.
    clock.advance_ms(2 * 3600 * 1000);
    let mut c = raw_as(&n, 1).await;
    let _ = c.reader.read_frame(None).await;
    refused(&mut rx, |e| {
        matches!(
            e,
            TransportError::Peer(PeerError::Chain(VerifyError::Expired))
        )
    })
    .await;
}

/// Three nodes enrolled through the real CA (TLS front-end, tokens, redb registry), opened from
/// their node directories; then the CA revokes one and the others refuse it after a refresh,
/// including on an already open connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_ca_enrolment_session_open_and_revocation() {
    use caucus_ca::server::ServerOptions;
    use caucus_ca::testing::TestCa;
    use caucus_node::commands::enroll::{EnrollOptions, enroll};
    use caucus_node::commands::init::init;
    use caucus_node::config::NodeDir;

    let tmp = tempfile::tempdir().expect("tmp");
    let ca = TestCa::start(&tmp.path().join("ca"), ServerOptions::default())
        .await
        .expect("ca");
    let names = ["alice", "bob", "carol"];
    let s = ca
        .auth
        .create_session(
            "s1",
            &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            1,
            3600,
        )
        .expect("session");
    let mut dirs = Vec::new();
    for name in names {
        let dir = NodeDir::new(tmp.path().join(name));
        init(&dir, name, None, 2048).expect("init");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        enroll(
            &dir,
            &EnrollOptions {
                ca: ca.addr.to_string(),
                fingerprint: ca.fingerprint.clone(),
                token: s.tokens[name].clone(),
                advertise: format!("127.0.0.1:{port}"),
                session: Some("s1".into()),
            },
        )
        .await
        .expect("enroll");
        dirs.push(dir);
    }
    let mut ss = Vec::new();
    for d in &dirs {
        ss.push(
            Session::open(&d.root, opts(Arc::new(SystemClock)))
                .await
                .expect("open"),
        );
    }
    for (i, s) in ss.iter().enumerate() {
        assert_eq!(s.me().index as usize, i + 1);
        s.broadcast("hello", &s.me().name).await.expect("bcast");
    }
    for s in &ss {
        let all: std::collections::BTreeMap<String, String> =
            s.recv_all("hello").await.expect("all");
        for (k, v) in all {
            assert_eq!(k, v);
        }
    }
    // carol has an open connection to alice; the CA revokes carol.
    ss[2].send("alice", "pre", &1).await.expect("send");
    let _: u64 = ss[0].recv("carol", "pre").await.expect("recv");
    let mut rx = ss[0].node().refusals();
    let carol_serial = ss[0]
        .node()
        .trust()
        .member_by_name("carol")
        .expect("carol")
        .serial_hex;
    ca.auth.revoke(&carol_serial).expect("revoke");
    ss[0].refresh().await.expect("refresh");
    assert!(
        ss[0]
            .node()
            .trust()
            .crl()
            .expect("crl")
            .is_revoked(&carol_serial)
    );
    // The open connection is cut at carol's next message, which is not delivered.
    ss[2].send("alice", "post", &2).await.expect("written");
    refused(&mut rx, |e| {
        matches!(
            e,
            TransportError::Peer(PeerError::Revoked { .. } | PeerError::NotMember { .. })
        )
    })
    .await;
    assert!(
        ss[0]
            .recv_timeout::<u64>("carol", "post", Duration::from_millis(300))
            .await
            .is_err()
    );
    // A new connection from carol is refused, and alice keeps serving bob.
    ss[2].node().close_links();
    let e = ss[2]
        .send_timeout("alice", "post2", &3, Duration::from_millis(800))
        .await
        .expect_err("refused");
    assert!(
        matches!(e, SessionError::Unreachable { ref party, .. } if party == "alice"),
        "{e}"
    );
    ss[1].send("alice", "still", &4).await.expect("bob sends");
    assert_eq!(ss[0].recv::<u64>("bob", "still").await.expect("recv"), 4);
    for s in ss {
        s.close().await;
    }
    ca.stop().await;
}

/// A peer that goes away and comes back on its roster address: the outgoing connection is
/// re-dialled with backoff, and a send issued while the peer is down waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_backoff_when_a_peer_restarts() {
    let mut n = net().await;
    n.s[0].send("bob", "one", &1).await.expect("send");
    assert_eq!(n.s[1].recv::<u64>("alice", "one").await.expect("recv"), 1);
    let bob_addr = n.s[1].local_addr();
    let bob = n.s.remove(1);
    let bob_id = bob.node().me().party_id;
    bob.close().await;
    // Once alice has seen bob's connection end (her link's reader notices it asynchronously; a
    // one-way message written before that is lost, see `Node::is_connected`), a send waits for
    // him and completes once he is back.
    let alice = n.s.remove(0);
    let seen = async {
        while alice.node().is_connected(&bob_id) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), seen)
        .await
        .expect("alice notices that bob's connection ended");
    let sender = tokio::spawn(async move {
        let r = alice.send("bob", "two", &2).await;
        (alice, r)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!sender.is_finished(), "the send waits while bob is down");
    let listener = TcpListener::bind(bob_addr).await.expect("rebind");
    let bob = Session::from_parts(
        SessionParts {
            key: copy_key(&n.keys[1]),
            cert_der: n.certs[1].clone(),
            root_der: n.pki.root_der(),
            roster: n.roster.clone(),
            crl: None,
            listener,
            source: None,
        },
        opts(Arc::new(SystemClock)),
    )
    .expect("bob again");
    let (alice, r) = sender.await.expect("join");
    r.expect("send waited for bob");
    assert_eq!(bob.recv::<u64>("alice", "two").await.expect("recv"), 2);
    // and bob can answer over his own new outgoing connection
    bob.send("alice", "three", &3).await.expect("send");
    assert_eq!(alice.recv::<u64>("bob", "three").await.expect("recv"), 3);
}

/// Early messages are buffered per peer within a bound; beyond it they are refused (and the
/// sender is told), without affecting other peers; reading frees room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_message_buffer_is_bounded_per_peer() {
    let n = net_opts(
        (0..3)
            .map(|_| Arc::new(SystemClock) as Arc<dyn Clock>)
            .collect(),
        |o| {
            o.node.max_buffered_messages = 3;
        },
    )
    .await;
    let mut rx_b = n.s[1].node().refusals();
    let mut rx_a = n.s[0].node().refusals();
    for i in 0..5u64 {
        n.s[0].send("bob", "flood", &i).await.expect("send");
    }
    let r = refused(
        &mut rx_b,
        |e| matches!(e, TransportError::BufferFull { peer } if peer == "alice"),
    )
    .await;
    assert_eq!(r.peer.as_deref(), Some("alice"));
    // alice hears about it as an error reply to her one-way message
    refused(
        &mut rx_a,
        |e| matches!(e, TransportError::Remote(m) if m.contains("full")),
    )
    .await;
    // carol's own bound is untouched
    n.s[2].send("bob", "c", &9).await.expect("send");
    assert_eq!(n.s[1].recv::<u64>("carol", "c").await.expect("recv"), 9);
    // the first three are there, in order; then there is room again
    for i in 0..3u64 {
        assert_eq!(n.s[1].recv::<u64>("alice", "flood").await.expect("recv"), i);
    }
    n.s[0].send("bob", "flood", &7).await.expect("send");
    assert_eq!(n.s[1].recv::<u64>("alice", "flood").await.expect("recv"), 7);
}

/// A custom method handler with a multi-frame exchange on a dedicated connection, the way blob
/// transfer uses the transport: request → reply, chunk frames, final request → reply.
struct ChunkCounter;

impl caucus_node::transport::Handler for ChunkCounter {
    fn handle<'a>(
        &'a self,
        conn: &'a mut caucus_node::transport::Conn,
        request: caucus::msg::Inner,
    ) -> caucus_node::transport::HandlerFuture<'a> {
        Box::pin(async move {
            conn.reply(&request, json!({"ready": true})).await?;
            let mut bytes = 0usize;
            loop {
                match conn.recv().await? {
                    caucus_node::transport::Incoming::Chunk(c) => bytes += c.len(),
                    caucus_node::transport::Incoming::Envelope(done) => {
                        if done.meta.method != "test/done" {
                            return Err(TransportError::BadRequest("expected test/done".into()));
                        }
                        return conn.reply(&done, json!({"bytes": bytes})).await;
                    }
                }
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_handler_with_chunk_frames_on_a_dedicated_connection() {
    let n = net().await;
    n.s[0].register("test/chunks", ChunkCounter);
    let alice = n.s[1].party("alice").expect("alice").party_id;
    let mut conn = n.s[1].node().connect(&alice).await.expect("connect");
    assert_eq!(conn.peer().name, "alice");
    let r = conn
        .request("test/chunks", "blob-1", json!({"size": 3000}))
        .await
        .expect("start");
    assert_eq!(r.payload, json!({"ready": true}));
    for _ in 0..3 {
        conn.write_chunk(&[7u8; 1000]).await.expect("chunk");
    }
    let r = conn
        .request("test/done", "blob-1", Value::Null)
        .await
        .expect("done");
    assert_eq!(r.payload, json!({"bytes": 3000}));
    // Unregistered methods are still refused on the same kind of connection.
    let e = conn
        .request("test/none", "x", Value::Null)
        .await
        .expect_err("unknown");
    assert!(
        matches!(e, TransportError::Remote(ref m) if m.contains("unknown method")),
        "{e}"
    );
    conn.close().await;
    still_serves(&n, "after-handler").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_group_signed_and_keep_each_senders_order() {
    let n = net().await;
    let (tasks, per) = (8, 60);
    let before = n.s[1].node().send_stats();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..tasks {
        let (node, alice) = (n.s[1].node().clone(), pid(&n, 0));
        set.spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            for i in 0..per {
                node.send(&alice, "smc/msg", &format!("pipe-{w}"), json!(i), deadline)
                    .await
                    .expect("send");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
    for w in 0..tasks {
        for i in 0..per {
            let got: u32 = n.s[0]
                .recv("bob", &format!("pipe-{w}"))
                .await
                .expect("recv");
            assert_eq!(got, i, "sender {w}: messages arrive in its order");
        }
    }
    let after = n.s[1].node().send_stats();
    let (msgs, sigs) = (
        after.messages - before.messages,
        after.signatures - before.signatures,
    );
    assert_eq!(msgs, (tasks * per) as u64);
    assert!(
        sigs < msgs,
        "{msgs} concurrent messages were not batched ({sigs} signatures)"
    );
    // an idle link sends a lone message as a plain envelope: one signature
    n.s[1].send("alice", "lone", &1).await.expect("send");
    assert_eq!(n.s[1].node().send_stats().signatures, after.signatures + 1);
    assert_eq!(n.s[0].recv::<u32>("bob", "lone").await.expect("recv"), 1);
    still_serves(&n, "after-batches").await;
}

async fn write_batch(c: &mut RawConn, body: &[u8]) {
    c.writer
        .write_frame(FrameKind::Batch, body)
        .await
        .expect("write");
}

/// Waits for an envelope refusal matching `pred`.
async fn refused_envelope(
    rx: &mut broadcast::Receiver<Refusal>,
    pred: impl Fn(&EnvelopeError) -> bool,
) {
    refused(rx, |e| matches!(e, TransportError::Envelope(x) if pred(x))).await;
}

/// A kind-4 batch of smc/msg from party `from` to alice, signed with `key`.
fn batch(n: &Net, key: &PrivateKey, from: usize, ids: &[(&str, &str, i64)]) -> Vec<u8> {
    let items: Vec<_> = ids
        .iter()
        .map(|(session, id, ts)| {
            let meta = meta_for("smc/msg", session, id, pid(n, from), Some(pid(n, 0)), *ts);
            caucus::msg::Unsigned::new(meta, json!(id)).expect("encode")
        })
        .collect();
    caucus::msg::seal_batch(key, &items).expect("seal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_tampered_misattributed_and_replayed_batches_item_checks_apart() {
    let n = net().await;
    let mut rx = n.s[0].node().refusals();
    let mut c = raw_as(&n, 1).await;
    let now = now_ms();

    // tampered: one inner changed after signing; nothing of the batch is delivered
    let body = batch(&n, &n.keys[1], 1, &[(SID, "t1", now), (SID, "t2", now)]);
    let tampered = String::from_utf8(body).expect("utf8").replace("t2", "t3");
    write_batch(&mut c, tampered.as_bytes()).await;
    refused_envelope(&mut rx, |e| matches!(e, EnvelopeError::BadSignature)).await;

    // signed by carol's key and claiming carol, over bob's connection
    let body = batch(
        &n,
        &n.keys[2],
        2,
        &[(SID, "spoof1", now), (SID, "spoof2", now)],
    );
    write_batch(&mut c, &body).await;
    refused_envelope(&mut rx, |e| {
        matches!(e, EnvelopeError::SenderMismatch { .. })
    })
    .await;

    // a good batch with one item of another session and one stale item: the rest arrive
    let body = batch(
        &n,
        &n.keys[1],
        1,
        &[
            (SID, "b1", now),
            ("other", "b2", now),
            (SID, "b3", now - 10 * 60_000),
            (SID, "b4", now),
        ],
    );
    write_batch(&mut c, &body).await;
    refused_envelope(&mut rx, |e| matches!(e, EnvelopeError::WrongSession)).await;
    refused_envelope(&mut rx, |e| matches!(e, EnvelopeError::Stale { .. })).await;
    for id in ["b1", "b4"] {
        assert_eq!(n.s[0].recv::<String>("bob", id).await.expect(id), id);
    }
    // the same batch again: every item is a replay
    write_batch(&mut c, &body).await;
    refused_envelope(&mut rx, |e| matches!(e, EnvelopeError::Replay)).await;
    // garbage in a batch frame
    write_batch(&mut c, b"[1, 2, 3]").await;
    refused_envelope(&mut rx, |e| matches!(e, EnvelopeError::Malformed(_))).await;
    for id in ["t1", "t2", "t3", "spoof1", "spoof2", "b2", "b3"] {
        let r = n.s[0]
            .recv_timeout::<Value>("bob", id, Duration::from_millis(50))
            .await;
        assert!(r.is_err(), "{id} must not be delivered");
    }
    for id in ["b1", "b4"] {
        let r = n.s[0]
            .recv_timeout::<Value>("bob", id, Duration::from_millis(50))
            .await;
        assert!(r.is_err(), "{id} must be delivered once");
    }
    // requests in a batch are answered in order, a refused one with an error reply
    let pings: Vec<_> = ["other", SID]
        .iter()
        .map(|session| {
            let meta = meta_for("smc/ping", session, "p", pid(&n, 1), Some(pid(&n, 0)), now);
            caucus::msg::Unsigned::new(meta, json!(session)).expect("encode")
        })
        .collect();
    write_batch(
        &mut c,
        &caucus::msg::seal_batch(&n.keys[1], &pings).expect("seal"),
    )
    .await;
    for (want, nonce) in [("error", pings[0].nonce()), ("reply", pings[1].nonce())] {
        let f = c
            .reader
            .read_frame(None)
            .await
            .expect("read")
            .expect("frame");
        let (_, inner, _) = caucus::msg::envelope::parse(&f.body).expect("envelope");
        assert_eq!(inner.meta.method, want);
        assert_eq!(caucus_node::transport::conn::reply_to(&inner), Some(nonce));
    }
    // the raw connection still carries a good message
    let env = envelope(&n, &n.keys[1], 1, "good", now_ms(), json!("ok"));
    write_env(&mut c, &env).await;
    assert_eq!(
        n.s[0].recv::<String>("bob", "good").await.expect("good"),
        "ok"
    );
    still_serves(&n, "after-batches").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_messages_are_never_batched_past_the_frame_limit() {
    const MAX: usize = 400 << 10;
    let n = net_opts(
        (0..3)
            .map(|_| Arc::new(SystemClock) as Arc<dyn Clock>)
            .collect(),
        |o| o.node.max_frame = MAX,
    )
    .await;
    // 60,000 quotes: 120 kB of inner JSON, 240 kB in the frame (each quote is 4 bytes there).
    // One fits a 400 KiB frame, two would not: group signing must send them apart.
    let quotes = "\"".repeat(60_000);
    n.s[0].send("bob", "warm", &0).await.expect("connect first");
    let tasks = 8;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..tasks {
        let (node, bob, v) = (n.s[0].node().clone(), n.s[1].me().party_id, quotes.clone());
        set.spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            node.send(&bob, "smc/msg", &format!("quotes-{i}"), json!(v), deadline)
                .await
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task").expect("each large message is sent");
    }
    for i in 0..tasks {
        let got: String = n.s[1]
            .recv("alice", &format!("quotes-{i}"))
            .await
            .expect("recv");
        assert!(got == quotes);
    }
    still_serves(&n, "after-large-burst").await;
}
