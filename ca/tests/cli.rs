//! Tests of the real `caucus-ca` binary: OpenSSL interop (an OpenSSL key + CSR through `sign-csr`,
//! `openssl verify`, `openssl x509 -text`), admin commands through a running server's socket, and
//! durability under `kill -9` during a stream of enrolments.
//!
//! These tests need the `openssl` command; if it is missing they FAIL (CI installs it).

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caucus::pki::csr::{build_csr, csr_to_pem};
use caucus::pki::keys::PrivateKey;
use caucus_ca::testing::RawClient;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_caucus-ca");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run caucus-ca")
}

fn ok_json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "caucus-ca {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one json object on stdout")
}

/// Runs a command expected to fail; returns its single stderr line.
fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "caucus-ca {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(
        err.lines().count(),
        1,
        "one clear line on stderr, got {err:?}"
    );
    err
}

fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is required for interop tests (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

struct Serve {
    child: Child,
    addr: std::net::SocketAddr,
    fingerprint: String,
}

impl Serve {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--json",
                "--listen",
                "127.0.0.1:0",
                "--dir",
                p(dir),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let v: Value = serde_json::from_str(&line).expect("serve prints its address");
        Self {
            child,
            addr: v["listen"].as_str().expect("listen").parse().expect("addr"),
            fingerprint: v["fingerprint"].as_str().expect("fp").to_string(),
        }
    }

    /// SIGKILL (std's `kill` on Unix) and reap.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn init_ca(dir: &Path) -> Value {
    ok_json(&[
        "init",
        "--json",
        "--dir",
        p(dir),
        "--name",
        "test-ca",
        "--key-bits",
        "2048",
    ])
}

fn openssl_key_and_csr(dir: &Path, name: &str, bits: u32, cn: &str) -> std::path::PathBuf {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        &format!("rsa_keygen_bits:{bits}"),
        "-out",
        p(&key),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        p(&key),
        "-subj",
        &format!("/CN={cn}"),
        "-out",
        p(&csr),
    ]);
    csr
}

#[test]
fn openssl_key_and_csr_get_a_certificate_through_sign_csr() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    let info = init_ca(&ca);
    let fp = info["fingerprint"].as_str().expect("fp");
    // The key file is created 0600, the directory 0700.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca.join("ca.key"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The printed fingerprint is the SHA-256 of the DER root, as OpenSSL computes it.
    let out = openssl(&[
        "x509",
        "-in",
        p(&ca.join("ca.pem")),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let ossl = String::from_utf8_lossy(&out.stdout);
    assert!(
        caucus::pki::fingerprint_matches(
            &caucus_ca::dir::CaDir::new(&ca).load_root().expect("root"),
            ossl.trim()
        )
        .expect("parse")
    );
    assert_eq!(
        ossl.trim()
            .rsplit('=')
            .next()
            .expect("fp")
            .replace(':', "")
            .to_lowercase(),
        fp
    );

    let s = ok_json(&[
        "session",
        "create",
        "--json",
        "--dir",
        p(&ca),
        "--id",
        "s1",
        "--parties",
        "alice,bob",
        "--threshold",
        "1",
        "--ttl",
        "1h",
    ]);
    let tok_alice = s["tokens"]["alice"].as_str().expect("token");
    let tok_bob = s["tokens"]["bob"].as_str().expect("token");

    let csr = openssl_key_and_csr(tmp.path(), "alice", 2048, "alice");
    let cert = tmp.path().join("alice.pem");
    let e = ok_json(&[
        "sign-csr",
        "--json",
        "--dir",
        p(&ca),
        "--csr",
        p(&csr),
        "--token",
        tok_alice,
        "--out",
        p(&cert),
    ]);
    assert_eq!(e["name"], json!("alice"));
    assert_eq!(e["session"], json!("s1"));

    let out = openssl(&["verify", "-CAfile", p(&ca.join("ca.pem")), p(&cert)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
    let text =
        String::from_utf8_lossy(&openssl(&["x509", "-in", p(&cert), "-noout", "-text"]).stdout)
            .to_string();
    assert_eq!(text.matches("URI:").count(), 1, "{text}");
    assert!(text.contains("URI:caucus://test-ca/session/s1/party/alice"));
    assert!(!text.contains("DNS:"));
    assert!(text.contains("Subject: CN=alice") || text.contains("Subject: CN = alice"));
    assert!(text.contains("CA:FALSE"));
    assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"));
    assert!(text.contains("Digital Signature, Key Encipherment"));

    // Refusals through the same command, each one clear line, nothing recorded.
    let err = fails(&[
        "sign-csr",
        "--dir",
        p(&ca),
        "--csr",
        p(&csr),
        "--token",
        tok_alice,
        "--out",
        p(&tmp.path().join("x.pem")),
    ]);
    assert!(err.contains("already used"), "{err}");
    let small = openssl_key_and_csr(tmp.path(), "small", 1024, "bob");
    let err = fails(&[
        "sign-csr",
        "--dir",
        p(&ca),
        "--csr",
        p(&small),
        "--token",
        tok_bob,
        "--out",
        p(&tmp.path().join("x.pem")),
    ]);
    assert!(err.contains("1024 bits is below the minimum"), "{err}");
    let mallory = openssl_key_and_csr(tmp.path(), "mallory", 2048, "mallory");
    let err = fails(&[
        "sign-csr",
        "--dir",
        p(&ca),
        "--csr",
        p(&mallory),
        "--token",
        tok_bob,
        "--out",
        p(&tmp.path().join("x.pem")),
    ]);
    assert!(
        err.contains("\"mallory\" but the token is for \"bob\""),
        "{err}"
    );
    let bob = openssl_key_and_csr(tmp.path(), "bob", 2048, "bob");
    let err = fails(&[
        "sign-csr",
        "--dir",
        p(&ca),
        "--csr",
        p(&bob),
        "--token",
        tok_bob,
        "--session",
        "s9",
        "--out",
        p(&tmp.path().join("x.pem")),
    ]);
    assert!(err.contains("another session"), "{err}");
    assert!(!tmp.path().join("x.pem").exists());
    let list = ok_json(&["list", "--json", "--dir", p(&ca)]);
    let certs = list["certificates"].as_array().expect("list");
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["party"], json!("alice"));
    assert_eq!(certs[0]["serial"], e["serial"]);
}

#[test]
fn admin_commands_work_against_a_running_server() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    let info = init_ca(&ca);
    let mut serve = Serve::start(&ca);
    assert_eq!(serve.fingerprint, info["fingerprint"].as_str().expect("fp"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca.join("admin.sock"))
        .expect("sock")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The registry is locked by the server; these go through the admin socket.
    let s = ok_json(&[
        "session",
        "create",
        "--json",
        "--dir",
        p(&ca),
        "--id",
        "s1",
        "--parties",
        "a,b,c",
        "--threshold",
        "1",
    ]);
    assert_eq!(s["tokens"].as_object().expect("tokens").len(), 3);
    let err = fails(&[
        "session",
        "create",
        "--dir",
        p(&ca),
        "--id",
        "s1",
        "--parties",
        "a,b",
        "--threshold",
        "1",
    ]);
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&[
        "session",
        "create",
        "--dir",
        p(&ca),
        "--id",
        "s2",
        "--parties",
        "a,b",
        "--threshold",
        "2",
    ]);
    assert!(err.contains("threshold 2 must be below"), "{err}");
    let err = fails(&[
        "session",
        "create",
        "--dir",
        p(&ca),
        "--id",
        "s2",
        "--parties",
        "a,b",
        "--threshold",
        "1",
        "--ttl",
        "8d",
    ]);
    assert!(err.contains("7 days"), "{err}");
    let fp = ok_json(&["fingerprint", "--json", "--dir", p(&ca)]);
    assert_eq!(fp["fingerprint"].as_str(), Some(serve.fingerprint.as_str()));

    let csr = openssl_key_and_csr(tmp.path(), "a", 2048, "a");
    let e = ok_json(&[
        "sign-csr",
        "--json",
        "--dir",
        p(&ca),
        "--csr",
        p(&csr),
        "--token",
        s["tokens"]["a"].as_str().expect("t"),
        "--out",
        p(&tmp.path().join("a.pem")),
    ]);
    let serial = e["serial"].as_str().expect("serial");
    let r = ok_json(&["revoke", "--json", "--dir", p(&ca), serial]);
    assert_eq!(r["serial"].as_str(), Some(serial));
    let err = fails(&["revoke", "--dir", p(&ca), "abcdef"]);
    assert!(err.contains("no certificate with serial"), "{err}");
    let list = ok_json(&["list", "--json", "--dir", p(&ca)]);
    assert_eq!(list["certificates"][0]["revoked"], json!(true));

    // After the server is gone, the same commands open the registry directly.
    serve.kill9();
    let list = ok_json(&["list", "--json", "--dir", p(&ca)]);
    assert_eq!(list["certificates"].as_array().map(Vec::len), Some(1));
}

#[test]
fn kill_9_during_enrolments_loses_no_acknowledged_certificate() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    init_ca(&ca);
    let mut serve = Serve::start(&ca);
    let n = 300usize;
    let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let s = ok_json(&[
        "session",
        "create",
        "--json",
        "--dir",
        p(&ca),
        "--id",
        "dur",
        "--parties",
        &names.join(","),
        "--threshold",
        "1",
    ]);
    let keys: Vec<PrivateKey> = (0..4)
        .map(|_| PrivateKey::generate(2048).expect("key"))
        .collect();
    let work: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let csr = csr_to_pem(&build_csr(&keys[i % keys.len()], name).expect("csr"));
            (csr, s["tokens"][name].as_str().expect("token").to_string())
        })
        .collect();
    let root = caucus_ca::dir::CaDir::new(&ca).load_root().expect("root");
    let received: Arc<Mutex<Vec<String>>> = Arc::default();

    let rt = tokio::runtime::Runtime::new().expect("rt");
    let addr = serve.addr;
    let work = Arc::new(work);
    let handles: Vec<_> = (0..16)
        .map(|w| {
            let (work, root, received) = (work.clone(), root.clone(), received.clone());
            rt.spawn(async move {
                for i in (w..work.len()).step_by(16) {
                    let Ok(mut c) = RawClient::connect(addr, &root).await else {
                        return;
                    };
                    let args =
                        json!({"csr": work[i].0, "token": work[i].1, "advertise": "127.0.0.1:1"});
                    match c.call("get/csr", args).await {
                        Ok(r) if r.ok => {
                            let serial = r.result.expect("result")["serial"]
                                .as_str()
                                .expect("serial")
                                .to_string();
                            received.lock().expect("lock").push(serial);
                        }
                        Ok(r) => panic!("unexpected refusal {r:?}"),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Kill the CA in the middle of the stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while received.lock().expect("lock").len() < 60 {
        assert!(std::time::Instant::now() < deadline, "enrolments too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    serve.kill9();
    for h in handles {
        rt.block_on(h).expect("client task");
    }
    let got: Vec<String> = received.lock().expect("lock").clone();
    assert!(
        got.len() >= 60 && got.len() < n,
        "the kill must land mid-stream ({})",
        got.len()
    );

    // Restart; every certificate a client received is listed, and no serial appears twice.
    let _serve = Serve::start(&ca);
    let list = ok_json(&["list", "--json", "--dir", p(&ca)]);
    let listed: Vec<String> = list["certificates"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["serial"].as_str().expect("serial").to_string())
        .collect();
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "a serial appears twice");
    for s in &got {
        assert!(unique.contains(s), "acknowledged certificate {s} was lost");
    }
    let parties: BTreeSet<&str> = list["certificates"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["party"].as_str().expect("party"))
        .collect();
    assert_eq!(parties.len(), listed.len(), "a token was used twice");
}
