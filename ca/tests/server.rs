//! In-process CA front-end tests: real TLS, real redb, real issuance. Every refusal asserts a clear
//! error and that nothing was recorded.

use std::sync::OnceLock;
use std::time::Duration;

use caucus::msg::frame::FrameKind;
use caucus::pki::crl::SignedCrl;
use caucus::pki::csr::{build_csr, csr_to_pem};
use caucus::pki::keys::PrivateKey;
use caucus::pki::roster::SignedRoster;
use caucus_ca::api::Response;
use caucus_ca::server::ServerOptions;
use caucus_ca::testing::{RawClient, TestCa};
use serde_json::{Value, json};

const RSA1024_CSR: &str = include_str!("../../src/pki/testdata/rsa1024.csr");

fn key(i: usize) -> &'static PrivateKey {
    static KEYS: OnceLock<Vec<PrivateKey>> = OnceLock::new();
    &KEYS.get_or_init(|| {
        (0..4)
            .map(|_| PrivateKey::generate(2048).expect("key"))
            .collect()
    })[i]
}

fn csr(i: usize, name: &str) -> String {
    csr_to_pem(&build_csr(key(i), name).expect("csr"))
}

fn csr_with_uri(i: usize, name: &str, uri: &str) -> String {
    let kp = key(i).rcgen_key_pair().expect("kp");
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().expect("ia5"))];
    p.serialize_request(&kp).expect("csr").pem().expect("pem")
}

fn recorded(ca: &TestCa) -> usize {
    ca.auth.store().list().expect("list").len()
}

async fn enrol(ca: &TestCa, csr: &str, token: &str, session: Option<&str>) -> Response {
    let mut c = RawClient::connect(ca.addr, &ca.root_der)
        .await
        .expect("connect");
    let mut args = json!({"csr": csr, "token": token, "advertise": "127.0.0.1:9000"});
    if let Some(s) = session {
        args["session"] = json!(s);
    }
    c.call("get/csr", args).await.expect("call")
}

fn assert_refused(r: &Response, code: &str, needle: &str) {
    assert!(!r.ok, "expected a refusal, got {r:?}");
    let e = r.error.as_ref().expect("error body");
    assert_eq!(e.code, code, "{e:?}");
    assert!(
        e.message.contains(needle),
        "message {:?} should mention {needle:?}",
        e.message
    );
    assert!(!e.message.contains('\n'));
}

fn parties(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_clear_and_records_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = TestCa::start(&tmp.path().join("ca"), ServerOptions::default())
        .await
        .expect("ca");
    let s1 = ca
        .auth
        .create_session("s1", &parties(&["a", "b", "c"]), 1, 3600)
        .expect("s1");
    let s2 = ca
        .auth
        .create_session("s2", &parties(&["a", "b"]), 1, 3600)
        .expect("s2");
    let tok_a = &s1.tokens["a"];

    // Unknown token.
    let r = enrol(&ca, &csr(0, "a"), "not-a-token", None).await;
    assert_refused(&r, "unauthorized", "unknown enrolment token");
    // Wrong-session token: the node expects s2, the token is for s1.
    let r = enrol(&ca, &csr(0, "a"), tok_a, Some("s2")).await;
    assert_refused(&r, "forbidden", "another session");
    // Names that disagree with the token: CN, and a URI SAN naming another session.
    let r = enrol(&ca, &csr(0, "b"), tok_a, None).await;
    assert_refused(&r, "forbidden", "but the token is for");
    let other = "caucus://test-ca/session/s2/party/a";
    let r = enrol(&ca, &csr_with_uri(0, "a", other), tok_a, None).await;
    assert_refused(&r, "forbidden", "s2");
    // A CSR whose signature does not verify.
    let mut der = build_csr(key(0), "a").expect("csr");
    let n = der.len();
    der[n - 4] ^= 0x10;
    let r = enrol(&ca, &csr_to_pem(&der), tok_a, None).await;
    assert_refused(&r, "bad_request", "csr signature does not verify");
    // RSA-1024 (made by OpenSSL).
    let r = enrol(&ca, RSA1024_CSR, tok_a, None).await;
    assert_refused(&r, "forbidden", "1024 bits is below the minimum of 2048");
    // Garbage CSR.
    let r = enrol(&ca, "hello", tok_a, None).await;
    assert_refused(&r, "bad_request", "csr");
    assert_eq!(recorded(&ca), 0, "refusals must record nothing");

    // The token was not consumed by any refusal: it still works, once.
    let r = enrol(&ca, &csr(0, "a"), tok_a, Some("s1")).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(recorded(&ca), 1);
    let r = enrol(&ca, &csr(1, "a"), tok_a, None).await;
    assert_refused(&r, "unauthorized", "already used");
    assert_eq!(recorded(&ca), 1);

    // Expired token / expired session: s3 lives 60 s; move the CA clock past it.
    let s3 = ca
        .auth
        .create_session("s3", &parties(&["a", "b"]), 1, 60)
        .expect("s3");
    ca.advance(120);
    let r = enrol(&ca, &csr(0, "a"), &s3.tokens["a"], None).await;
    assert_refused(&r, "unauthorized", "expired");
    // s2 is still valid after 2 minutes.
    let r = enrol(&ca, &csr(2, "b"), &s2.tokens["b"], None).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(recorded(&ca), 2);
    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_use_of_one_token_gives_exactly_one_certificate() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = TestCa::start(&tmp.path().join("ca"), ServerOptions::default())
        .await
        .expect("ca");
    let s = ca
        .auth
        .create_session("race", &parties(&["a", "b"]), 1, 3600)
        .expect("session");
    let token = s.tokens["a"].clone();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (addr, root, token, csr) =
            (ca.addr, ca.root_der.clone(), token.clone(), csr(i % 4, "a"));
        tasks.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr, &root).await.expect("connect");
            c.call(
                "get/csr",
                json!({"csr": csr, "token": token, "advertise": "127.0.0.1:1"}),
            )
            .await
            .expect("call")
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.expect("task");
        if r.ok {
            ok += 1;
        } else {
            assert_refused(&r, "unauthorized", "already used");
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(recorded(&ca), 1);
    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_overload_get_answers_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().expect("tmp");
    let opts = ServerOptions {
        max_connections: 1,
        read_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let ca = TestCa::start(&tmp.path().join("ca"), opts)
        .await
        .expect("ca");

    // The single slot is held by an idle connection: the next one is told "busy".
    let mut holder = RawClient::connect(ca.addr, &ca.root_der)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = RawClient::connect(ca.addr, &ca.root_der)
        .await
        .expect("connect");
    let r = extra.recv().await.expect("recv").expect("busy answer");
    assert_refused(&r, "busy", "connection limit");
    assert!(extra.recv().await.map(|r| r.is_none()).unwrap_or(true));

    // Garbage JSON and unknown methods: an answer, and the connection keeps working.
    holder
        .send_raw(FrameKind::Plain, b"{not json")
        .await
        .expect("send");
    let r = holder.recv().await.expect("recv").expect("answer");
    assert_refused(&r, "bad_request", "not valid json");
    let r = holder
        .call("get/everything", json!({}))
        .await
        .expect("call");
    assert_refused(&r, "bad_request", "unknown method");
    let r = holder
        .call("get/roster", json!({"session": "nope"}))
        .await
        .expect("call");
    assert_refused(&r, "not_found", "unknown session");
    let r = holder
        .call("get/crt", json!({"bogus": 1}))
        .await
        .expect("call");
    assert_refused(&r, "bad_request", "bad arguments");
    let r = holder.call("get/crl", json!({})).await.expect("call");
    assert!(r.ok);
    // An oversized request (announced 1 MiB > 64 KiB) is refused before reading it, then closed.
    holder
        .send_bytes(&[0x00, 0x10, 0x00, 0x00, 2])
        .await
        .expect("send");
    let r = holder.recv().await.expect("recv").expect("answer");
    assert_refused(&r, "bad_request", "exceeds the maximum");
    drop(holder);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A wrong frame kind is refused too.
    let mut c = RawClient::connect(ca.addr, &ca.root_der)
        .await
        .expect("connect");
    c.send_raw(FrameKind::Envelope, b"{}").await.expect("send");
    let r = c.recv().await.expect("recv").expect("answer");
    assert_refused(&r, "bad_request", "plain json");
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A silent client is cut off after the read timeout, and the slot is free again.
    let silent = RawClient::connect(ca.addr, &ca.root_der)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(silent);
    let mut c = RawClient::connect(ca.addr, &ca.root_der)
        .await
        .expect("connect");
    let r = c.call("get/crl", json!({})).await.expect("call");
    assert!(r.ok, "{r:?}");
    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_crt_and_crl_are_signed_and_consistent() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = TestCa::start(&tmp.path().join("ca"), ServerOptions::default())
        .await
        .expect("ca");
    let s = ca
        .auth
        .create_session("s", &parties(&["a", "b", "c"]), 1, 3600)
        .expect("session");
    let ra = enrol(&ca, &csr(0, "a"), &s.tokens["a"], None).await;
    let rb = enrol(&ca, &csr(1, "b"), &s.tokens["b"], None).await;
    let serial_a = ra.result.expect("a")["serial"]
        .as_str()
        .expect("s")
        .to_string();
    let pid_b = rb.result.expect("b")["party_id"]
        .as_str()
        .expect("p")
        .to_string();
    let now = ca.auth.now();

    let mut c = RawClient::connect(ca.addr, &ca.root_der)
        .await
        .expect("connect");
    let v = c
        .call("get/roster", json!({"session": "s"}))
        .await
        .expect("call");
    let signed: SignedRoster = serde_json::from_value(v.result.expect("roster")).expect("shape");
    let roster = signed.verify(&ca.root_der, now).expect("verify");
    assert_eq!(
        roster
            .members
            .iter()
            .map(|m| (m.index, m.name.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "a"), (2, "b")]
    );
    assert!(!roster.is_complete());

    // Revoke a: it shows in the signed CRL and leaves the roster.
    ca.auth.revoke(&serial_a).expect("revoke");
    let v = c.call("get/crl", Value::Null).await.expect("call");
    let crl: SignedCrl = serde_json::from_value(v.result.expect("crl")).expect("shape");
    let crl = crl.verify(&ca.root_der, now).expect("verify");
    assert!(crl.is_revoked(&serial_a));
    let v = c
        .call("get/roster", json!({"session": "s"}))
        .await
        .expect("call");
    let signed: SignedRoster = serde_json::from_value(v.result.expect("roster")).expect("shape");
    let roster = signed.verify(&ca.root_der, now).expect("verify");
    assert_eq!(roster.members.len(), 1);
    assert_eq!(roster.members[0].name, "b");

    let v = c
        .call("get/crt", json!({"session": "s", "name": "a"}))
        .await
        .expect("call");
    let res = v.result.expect("crt");
    assert_eq!(res["revoked"], json!(true));
    let v = c
        .call("get/crt", json!({"party_id": pid_b}))
        .await
        .expect("call");
    assert_eq!(v.result.expect("crt")["revoked"], json!(false));
    let v = c
        .call("get/crt", json!({"session": "s", "name": "c"}))
        .await
        .expect("call");
    assert_refused(&v, "not_found", "no such certificate");

    // c enrols offline (sign-csr, no advertised address): the roster still verifies and lists it.
    let v = caucus_ca::admin::execute(
        &ca.auth,
        caucus_ca::admin::AdminRequest::SignCsr {
            csr: csr(2, "c"),
            token: s.tokens["c"].clone(),
            session: Some("s".into()),
            advertise: String::new(),
        },
    )
    .await
    .expect("sign-csr");
    assert_eq!(v["index"], json!(3));
    let v = c
        .call("get/roster", json!({"session": "s"}))
        .await
        .expect("call");
    let signed: SignedRoster = serde_json::from_value(v.result.expect("roster")).expect("shape");
    let roster = signed.verify(&ca.root_der, now).expect("verify");
    assert_eq!(roster.by_name("c").map(|m| m.address.as_str()), Some(""));
    ca.stop().await;
}
