//! OpenSSL interop through the real `caucus` binary: an OpenSSL-generated key is imported with
//! `caucus init --key` and enrolled with `caucus enroll` against a real CA front-end; the resulting
//! certificate passes `openssl verify -CAfile` and `caucus peers` shows the node.
//!
//! Needs the `openssl` command; if it is missing the test FAILS (CI installs it).

use std::path::Path;

use caucus_ca::server::ServerOptions;
use caucus_ca::testing::TestCa;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_caucus");

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

async fn caucus(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .output()
        .await
        .expect("run caucus")
}

async fn ok_json(args: &[&str]) -> Value {
    let out = caucus(args).await;
    assert!(
        out.status.success(),
        "caucus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one json object")
}

async fn openssl(args: &[&str]) -> std::process::Output {
    let out = tokio::process::Command::new("openssl")
        .args(args)
        .output()
        .await
        .expect("the openssl command is required for interop tests (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_key_through_caucus_init_and_enroll() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = TestCa::start(&tmp.path().join("ca"), ServerOptions::default())
        .await
        .expect("ca");
    let s = ca
        .auth
        .create_session("s1", &["alice".to_string(), "bob".to_string()], 1, 3600)
        .expect("session");
    let key = tmp.path().join("alice-openssl.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        p(&key),
    ])
    .await;
    let node = tmp.path().join("alice");
    let r = ok_json(&[
        "init",
        "--json",
        "--dir",
        p(&node),
        "--name",
        "alice",
        "--key",
        p(&key),
    ])
    .await;
    assert_eq!(r["imported"], Value::Bool(true));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.join("node.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The party id is the SHA-256 of the OpenSSL key's SPKI.
    let spki = openssl(&["pkey", "-in", p(&key), "-pubout", "-outform", "DER"]).await;
    assert_eq!(
        r["party_id"].as_str(),
        Some(
            caucus::pki::PartyId::from_spki_der(&spki.stdout)
                .to_hex()
                .as_str()
        )
    );

    // Wrong fingerprint through the binary: one clear line, non-zero exit, nothing written.
    let out = caucus(&[
        "enroll",
        "--dir",
        p(&node),
        "--ca",
        &ca.addr.to_string(),
        "--fingerprint",
        &"00".repeat(32),
        "--token",
        &s.tokens["alice"],
        "--advertise",
        "127.0.0.1:7001",
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("does not match the pinned fingerprint"),
        "{err}"
    );
    assert!(!node.join("node.pem").exists());

    let e = ok_json(&[
        "enroll",
        "--json",
        "--dir",
        p(&node),
        "--ca",
        &ca.addr.to_string(),
        "--fingerprint",
        &ca.fingerprint,
        "--token",
        &s.tokens["alice"],
        "--advertise",
        "127.0.0.1:7001",
    ])
    .await;
    assert_eq!(e["name"], Value::String("alice".into()));
    let out = openssl(&[
        "verify",
        "-CAfile",
        p(&node.join("ca.pem")),
        p(&node.join("node.pem")),
    ])
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
    let text = openssl(&["x509", "-in", p(&node.join("node.pem")), "-noout", "-text"]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches("URI:").count(), 1);
    assert!(text.contains("URI:caucus://test-ca/session/s1/party/alice"));

    let peers = ok_json(&["peers", "--json", "--dir", p(&node)]).await;
    assert_eq!(peers["members"][0]["name"], Value::String("alice".into()));
    assert_eq!(
        peers["members"][0]["address"],
        Value::String("127.0.0.1:7001".into())
    );
    assert_eq!(peers["complete"], Value::Bool(false));
    // Human output works too.
    let out = caucus(&["peers", "--dir", p(&node)]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("(not enrolled)"));

    // A PKCS#1 key is refused with a hint.
    let pkcs1 = tmp.path().join("pkcs1.key");
    openssl(&["rsa", "-in", p(&key), "-traditional", "-out", p(&pkcs1)]).await;
    let out = caucus(&[
        "init",
        "--dir",
        p(&tmp.path().join("x")),
        "--name",
        "x",
        "--key",
        p(&pkcs1),
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PKCS#8"));
    ca.stop().await;
}
