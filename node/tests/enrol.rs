//! The full enrolment path in one process: a real CA front-end on `127.0.0.1:0`, three nodes that
//! `init` and `enroll` over TLS (CA pinned by fingerprint), then `peers` lists all three with their
//! addresses, verified against the root. Plus the node-side refusals.

use caucus_ca::server::ServerOptions;
use caucus_ca::testing::TestCa;
use caucus_node::ca_client::CaClientError;
use caucus_node::commands::CommandError;
use caucus_node::commands::enroll::{EnrollOptions, enroll};
use caucus_node::commands::init::init;
use caucus_node::commands::peers::peers;
use caucus_node::config::NodeDir;

fn parties(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_enrol_and_see_each_other_in_the_verified_roster() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = TestCa::start(&tmp.path().join("ca"), ServerOptions::default())
        .await
        .expect("ca");
    let s = ca
        .auth
        .create_session("sess", &parties(&["alice", "bob", "carol"]), 1, 3600)
        .expect("session");
    let mut dirs = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        let dir = NodeDir::new(tmp.path().join(name));
        let r = init(&dir, name, None, 2048).expect("init");
        assert!(!r.imported);
        let opts = EnrollOptions {
            ca: ca.addr.to_string(),
            // Colon-separated upper-case form, as OpenSSL prints it, is accepted too.
            fingerprint: if i == 1 {
                ca.fingerprint
                    .to_uppercase()
                    .as_bytes()
                    .chunks(2)
                    .map(|c| String::from_utf8_lossy(c).to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            } else {
                ca.fingerprint.clone()
            },
            token: s.tokens[*name].clone(),
            advertise: format!("127.0.0.1:{}", 7100 + i),
            session: Some("sess".into()),
        };
        let e = enroll(&dir, &opts).await.expect("enroll");
        assert_eq!(e.index as usize, i + 1);
        assert_eq!(e.session, "sess");
        assert_eq!(e.ca, "test-ca");
        let cfg = dir.load_config().expect("cfg");
        assert_eq!(cfg.fingerprint.as_deref(), Some(ca.fingerprint.as_str()));
        assert_eq!(dir.load_root().expect("root"), ca.root_der);
        let cert = dir.load_cert().expect("cert");
        let v = caucus::pki::verify_chain(&cert, &ca.root_der, ca.auth.now()).expect("chain");
        assert_eq!(
            v.party_id,
            dir.load_key().expect("key").public_key().party_id()
        );
        dirs.push(dir);
    }
    for (i, dir) in dirs.iter().enumerate() {
        let r = peers(dir).await.expect("peers");
        assert!(r.complete);
        assert_eq!(r.session, "sess");
        assert_eq!(r.threshold, 1);
        let got: Vec<(u32, &str, &str, bool)> = r
            .members
            .iter()
            .map(|m| (m.index, m.name.as_str(), m.address.as_str(), m.me))
            .collect();
        let want = [
            (1, "alice", "127.0.0.1:7100", i == 0),
            (2, "bob", "127.0.0.1:7101", i == 1),
            (3, "carol", "127.0.0.1:7102", i == 2),
        ];
        assert_eq!(got, want);
    }

    // A revoked member shows in the signed CRL and leaves the roster.
    let carol = peers(&dirs[0]).await.expect("peers").members[2]
        .serial
        .clone();
    ca.auth.revoke(&carol).expect("revoke");
    let r = peers(&dirs[0]).await.expect("peers");
    assert_eq!(r.members.len(), 2);
    assert!(!r.complete);
    let (_, e) = dirs[0].load_enrolled().expect("enrolled");
    let client = caucus_node::ca_client::CaClient::with_root(&e.ca_addr, &ca.root_der).expect("c");
    let crl = caucus_node::ca_client::fetch_crl(&client, &ca.root_der, ca.auth.now())
        .await
        .expect("crl");
    assert!(crl.is_revoked(&carol));

    // After the session ends the roster no longer verifies on the node (its clock is real, so
    // check the signed roster directly at a later `now`).
    let later = ca.auth.now() + 7200;
    assert!(matches!(
        caucus_node::ca_client::fetch_roster(&client, "sess", &ca.root_der, later).await,
        Err(CaClientError::Roster(caucus::pki::RosterError::Expired))
    ));
    ca.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_side_refusals_write_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = TestCa::start(&tmp.path().join("ca"), ServerOptions::default())
        .await
        .expect("ca");
    let s = ca
        .auth
        .create_session("sess", &parties(&["alice", "bob"]), 1, 3600)
        .expect("session");
    let dir = NodeDir::new(tmp.path().join("alice"));
    init(&dir, "alice", None, 2048).expect("init");
    let before = dir.load_config().expect("cfg");
    let base = EnrollOptions {
        ca: ca.addr.to_string(),
        fingerprint: ca.fingerprint.clone(),
        token: s.tokens["alice"].clone(),
        advertise: "127.0.0.1:7100".into(),
        session: None,
    };
    let nothing_written = |dir: &NodeDir| {
        assert!(!dir.cert_path().exists());
        assert!(!dir.root_path().exists());
        assert_eq!(dir.load_config().expect("cfg"), before);
    };

    // A wrong root fingerprint: refused during the handshake, nothing sent, nothing written.
    let wrong = EnrollOptions {
        fingerprint: "ab".repeat(32),
        ..base.clone()
    };
    let err = enroll(&dir, &wrong).await.expect_err("wrong fingerprint");
    assert!(
        matches!(err, CommandError::Ca(CaClientError::FingerprintMismatch(_))),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("does not match the pinned fingerprint")
    );
    nothing_written(&dir);
    assert_eq!(ca.auth.store().list().expect("list").len(), 0);

    // A malformed fingerprint.
    let bad = EnrollOptions {
        fingerprint: "xyz".into(),
        ..base.clone()
    };
    let err = enroll(&dir, &bad).await.expect_err("bad fingerprint");
    assert!(err.to_string().contains("malformed fingerprint"), "{err}");

    // bob's token on alice's node: the CSR names alice, the token bob: refused by the CA.
    let swapped = EnrollOptions {
        token: s.tokens["bob"].clone(),
        ..base.clone()
    };
    let err = enroll(&dir, &swapped).await.expect_err("name mismatch");
    assert!(
        err.to_string().contains("but the token is for \"bob\""),
        "{err}"
    );
    nothing_written(&dir);

    // A bad advertised address never reaches the CA.
    let noaddr = EnrollOptions {
        advertise: "nowhere".into(),
        ..base.clone()
    };
    let err = enroll(&dir, &noaddr).await.expect_err("bad address");
    assert!(err.to_string().contains("host:port"), "{err}");
    nothing_written(&dir);
    assert_eq!(ca.auth.store().list().expect("list").len(), 0);

    // peers before enrolment is a clear error.
    let err = peers(&dir).await.expect_err("not enrolled");
    assert!(err.to_string().contains("not enrolled"), "{err}");

    // And the right options work.
    enroll(&dir, &base).await.expect("enroll");
    assert_eq!(ca.auth.store().list().expect("list").len(), 1);
    // init refuses to overwrite the key.
    let err = init(&dir, "alice", None, 2048).expect_err("exists");
    assert!(err.to_string().contains("already exists"), "{err}");
    ca.stop().await;
}
