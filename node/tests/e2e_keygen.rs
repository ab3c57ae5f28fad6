//! End to end with the real binaries: `caucus-ca` plus three `caucus` processes run enrolment,
//! the distributed keygen, encryption, the secure sum and threshold decryption (with a party
//! down, and in a later session with new certificates); a party killed mid-keygen, a party that
//! never shows up, a node of another session and a revoked node make the others fail naming it;
//! `caucus demo` (blob share included) runs to completion. Small keys (512 bits) except where a long run is needed.
//!
//! Needs the `caucus-ca` binary next to `caucus`: `cargo test --workspace` builds it.

use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CAUCUS: &str = env!("CARGO_BIN_EXE_caucus");

fn ca_bin() -> PathBuf {
    let p = Path::new(CAUCUS).with_file_name("caucus-ca");
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace` (it builds every workspace binary)",
        p.display()
    );
    p
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn ok_json(bin: &Path, args: &[&str]) -> Value {
    let out: Output = Command::new(bin).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one json object on stdout")
}

/// Kills the child when dropped.
struct Guard(Option<Child>);

impl Guard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child")
    }

    fn wait_output(mut self) -> Output {
        self.0
            .take()
            .expect("child")
            .wait_with_output()
            .expect("wait")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(bin: &Path, args: &[&str]) -> Guard {
    Guard(Some(
        Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running CA and enrolled nodes.
struct Net {
    tmp: tempfile::TempDir,
    ca_dir: PathBuf,
    ca_addr: String,
    fp: String,
    _ca: Guard,
}

impl Net {
    fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let ca_dir = tmp.path().join("ca");
        let ca = ca_bin();
        ok_json(
            &ca,
            &[
                "init",
                "--json",
                "--dir",
                p(&ca_dir),
                "--name",
                "e2e-ca",
                "--key-bits",
                "2048",
            ],
        );
        let mut g = Guard(Some(
            Command::new(&ca)
                .args([
                    "serve",
                    "--json",
                    "--dir",
                    p(&ca_dir),
                    "--listen",
                    "127.0.0.1:0",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn ca"),
        ));
        let mut line = String::new();
        std::io::BufReader::new(g.child().stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let v: Value = serde_json::from_str(&line).expect("ready json");
        Self {
            ca_addr: v["listen"].as_str().expect("listen").to_string(),
            fp: v["fingerprint"].as_str().expect("fp").to_string(),
            tmp,
            ca_dir,
            _ca: g,
        }
    }

    /// Creates session `sid` for `names` (t = 1) and returns the tokens.
    fn session(&self, sid: &str, names: &[&str]) -> Value {
        let s = ok_json(
            &ca_bin(),
            &[
                "session",
                "create",
                "--json",
                "--dir",
                p(&self.ca_dir),
                "--id",
                sid,
                "--parties",
                &names.join(","),
                "--threshold",
                "1",
            ],
        );
        s["tokens"].clone()
    }

    /// `caucus init` (unless the dir exists) + `caucus enroll`; returns the dir and enrol JSON.
    fn enroll(&self, dir_name: &str, name: &str, token: &str, advertise: &str) -> (PathBuf, Value) {
        let dir = self.tmp.path().join(dir_name);
        if !dir.exists() {
            ok_json(
                Path::new(CAUCUS),
                &["init", "--json", "--dir", p(&dir), "--name", name],
            );
        }
        let v = ok_json(
            Path::new(CAUCUS),
            &[
                "enroll",
                "--json",
                "--dir",
                p(&dir),
                "--ca",
                &self.ca_addr,
                "--fingerprint",
                &self.fp,
                "--token",
                token,
                "--advertise",
                advertise,
            ],
        );
        (dir, v)
    }

    /// A session of alice, bob, carol, all enrolled; returns their dirs and enrol JSONs.
    fn three(&self, sid: &str) -> Vec<(PathBuf, Value)> {
        let names = ["alice", "bob", "carol"];
        let tokens = self.session(sid, &names);
        names
            .iter()
            .map(|n| {
                self.enroll(
                    n,
                    n,
                    tokens[*n].as_str().expect("token"),
                    &format!("127.0.0.1:{}", free_port()),
                )
            })
            .collect()
    }
}

fn keygen(dir: &Path, bits: &str, timeout: &str) -> Guard {
    spawn(
        Path::new(CAUCUS),
        &[
            "keygen",
            "--json",
            "--dir",
            p(dir),
            "--bits",
            bits,
            "--timeout",
            timeout,
        ],
    )
}

fn json_ok(out: Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: bad json {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn three_processes_keygen_sum_decrypt_and_a_later_session() {
    let net = Net::start();
    let nodes = net.three("s1");
    let dirs: Vec<&PathBuf> = nodes.iter().map(|(d, _)| d).collect();

    // Keygen: three processes.
    let kids: Vec<Guard> = dirs.iter().map(|d| keygen(d, "512", "120s")).collect();
    let reports: Vec<Value> = kids
        .into_iter()
        .enumerate()
        .map(|(i, g)| json_ok(g.wait_output(), &format!("keygen {i}")))
        .collect();
    let key_id = reports[0]["key_id"].as_str().expect("key id").to_string();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r["key_id"], key_id.as_str(), "party {i} has the same key");
        assert_eq!(r["bits"], 512);
        assert_eq!(r["index"], i as u64 + 1);
        assert_eq!(r["threshold"], 1);
        assert!(r["candidates"].as_u64().expect("candidates") >= 1);
        let ks = dirs[i].join("keyshare.json");
        let mode = std::fs::metadata(&ks)
            .expect("keyshare")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Keygen again refuses to overwrite.
    let out = keygen(dirs[0], "512", "5s").wait_output();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refusing to overwrite"),
        "{}",
        stderr(&out)
    );

    // key show
    let show = ok_json(
        Path::new(CAUCUS),
        &["key", "show", "--json", "--dir", p(dirs[1])],
    );
    assert_eq!(show["key_id"], key_id.as_str());
    assert_eq!(show["me"], "bob");
    assert_eq!(show["parties"][2]["name"], "carol");
    assert_eq!(show["keygen_session"], "s1");

    // Secure sum, all three.
    let values = ["12", "30", "-5"];
    let kids: Vec<Guard> = dirs
        .iter()
        .zip(values)
        .map(|(d, v)| {
            spawn(
                Path::new(CAUCUS),
                &[
                    "sum",
                    "--json",
                    "--dir",
                    p(d),
                    "--value",
                    v,
                    "--timeout",
                    "60s",
                ],
            )
        })
        .collect();
    for (i, g) in kids.into_iter().enumerate() {
        let v = json_ok(g.wait_output(), &format!("sum {i}"));
        assert_eq!(v["total"], "37", "party {i}");
        assert_eq!(v["mean"], "12.333333", "party {i}");
    }

    // Encrypt, then decrypt with alice + bob while carol is down (not running).
    let enc = ok_json(
        Path::new(CAUCUS),
        &["encrypt", "--json", "--dir", p(dirs[2]), "--", "-17"],
    );
    let ct = enc["ciphertext"].as_str().expect("ciphertext").to_string();
    let decrypt = |d: &Path, quorum: &str| {
        spawn(
            Path::new(CAUCUS),
            &[
                "decrypt",
                "--json",
                "--dir",
                p(d),
                "--quorum",
                quorum,
                "--timeout",
                "60s",
                &ct,
            ],
        )
    };
    let a = decrypt(dirs[0], "alice,bob");
    let b = decrypt(dirs[1], "alice,bob");
    for (g, who) in [(a, "alice"), (b, "bob")] {
        let v = json_ok(g.wait_output(), &format!("decrypt {who}"));
        assert_eq!(v["value"], "-17", "{who}");
        assert_eq!(v["method"], "root", "{who}: the default for a new key");
    }
    // --to alice, by the classic method: only alice learns the value; bob only sends his
    // partial.
    let to = |d: &Path, method: &str| {
        spawn(
            Path::new(CAUCUS),
            &[
                "decrypt",
                "--json",
                "--dir",
                p(d),
                "--quorum",
                "alice,bob",
                "--to",
                "alice",
                "--method",
                method,
                "--timeout",
                "20s",
                &ct,
            ],
        )
    };
    let a = to(dirs[0], "classic");
    let b = to(dirs[1], "classic");
    let va = json_ok(a.wait_output(), "decrypt --to alice (alice)");
    let vb = json_ok(b.wait_output(), "decrypt --to alice (bob)");
    assert_eq!(va["value"], "-17");
    assert_eq!(va["method"], "classic");
    assert_eq!(vb["value"], Value::Null);
    assert_eq!(vb["receivers"], serde_json::json!(["alice"]));
    // Methods that differ: the receiver names the party whose partial does not match.
    let a = to(dirs[0], "root");
    let b = to(dirs[1], "classic");
    let out = a.wait_output();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("bob") && stderr(&out).contains("same --method"),
        "{}",
        stderr(&out)
    );
    let _ = b.wait_output();
    // One party alone is not a quorum.
    let out = decrypt(dirs[0], "alice").wait_output();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("quorum needs at least 2"),
        "{}",
        stderr(&out)
    );

    // A later session with the same party names: new certificates, same key.
    let tokens = net.session("s2", &["alice", "bob", "carol"]);
    for n in ["alice", "bob", "carol"] {
        net.enroll(
            n,
            n,
            tokens[n].as_str().expect("token"),
            &format!("127.0.0.1:{}", free_port()),
        );
    }
    let b = decrypt(dirs[1], "bob,carol");
    let c = decrypt(dirs[2], "bob,carol");
    for (g, who) in [(b, "bob"), (c, "carol")] {
        let v = json_ok(g.wait_output(), &format!("later decrypt {who}"));
        assert_eq!(v["value"], "-17", "{who}");
    }
}

#[test]
fn a_missing_or_killed_party_is_named_and_nothing_is_written() {
    let net = Net::start();
    let nodes = net.three("k1");
    let dirs: Vec<&PathBuf> = nodes.iter().map(|(d, _)| d).collect();

    // carol never shows up.
    let t0 = Instant::now();
    let kids: Vec<Guard> = dirs[..2].iter().map(|d| keygen(d, "512", "6s")).collect();
    for (i, g) in kids.into_iter().enumerate() {
        let out = g.wait_output();
        assert!(!out.status.success(), "party {i} must fail");
        assert!(stderr(&out).contains("\"carol\""), "{}", stderr(&out));
        assert!(!dirs[i].join("keyshare.json").exists());
    }
    assert!(t0.elapsed() < Duration::from_secs(30));

    // carol is killed in the middle of a 2048-bit keygen.
    let mut kids: Vec<Guard> = dirs.iter().map(|d| keygen(d, "2048", "90s")).collect();
    let mut carol_err = kids[2].child().stderr.take().expect("stderr");
    // Wait for carol's first progress line: the protocol is running.
    let mut buf = [0u8; 256];
    let n = carol_err.read(&mut buf).expect("progress");
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("keygen"),
        "progress line: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let killed = Instant::now();
    kids[2].child().kill().expect("kill carol");
    let _ = kids[2].child().wait();
    let _ = kids.pop();
    for (i, g) in kids.into_iter().enumerate() {
        let out = g.wait_output();
        assert!(!out.status.success(), "party {i} must fail");
        assert!(stderr(&out).contains("\"carol\""), "{}", stderr(&out));
        assert!(!dirs[i].join("keyshare.json").exists());
        assert!(!dirs[i].join("keyshare.tmp").exists());
    }
    assert!(
        killed.elapsed() < Duration::from_secs(90),
        "the others stop within the timeout"
    );
}

#[test]
fn a_node_of_another_session_or_a_revoked_node_cannot_join() {
    let net = Net::start();
    let nodes = net.three("j1");
    let dirs: Vec<&PathBuf> = nodes.iter().map(|(d, _)| d).collect();
    let addr = |i: usize| {
        // The advertised address from node.json.
        let cfg: Value =
            serde_json::from_slice(&std::fs::read(dirs[i].join("node.json")).expect("node.json"))
                .expect("json");
        cfg["advertise"].as_str().expect("advertise").to_string()
    };

    // Another session whose alice and bob advertise the j1 nodes' addresses: its carol dials the
    // j1 nodes with a j2 certificate and is refused; alice and bob of j1 never get a carol.
    let tokens = net.session("j2", &["alice", "bob", "carol"]);
    net.enroll(
        "x-alice",
        "alice",
        tokens["alice"].as_str().expect("t"),
        &addr(0),
    );
    net.enroll("x-bob", "bob", tokens["bob"].as_str().expect("t"), &addr(1));
    let (x_carol, _) = net.enroll(
        "x-carol",
        "carol",
        tokens["carol"].as_str().expect("t"),
        &format!("127.0.0.1:{}", free_port()),
    );
    let kids = vec![
        keygen(dirs[0], "512", "8s"),
        keygen(dirs[1], "512", "8s"),
        keygen(&x_carol, "512", "8s"),
    ];
    for (i, g) in kids.into_iter().enumerate() {
        let out = g.wait_output();
        assert!(!out.status.success(), "process {i} must fail");
        if i < 2 {
            assert!(stderr(&out).contains("\"carol\""), "{}", stderr(&out));
            assert!(!dirs[i].join("keyshare.json").exists());
        }
    }
    assert!(!x_carol.join("keyshare.json").exists());

    // carol of j1 revoked: alice and bob refuse her.
    let serial = nodes[2].1["serial"].as_str().expect("serial").to_string();
    ok_json(
        &ca_bin(),
        &["revoke", "--json", "--dir", p(&net.ca_dir), &serial],
    );
    let kids: Vec<Guard> = dirs.iter().map(|d| keygen(d, "512", "8s")).collect();
    for (i, g) in kids.into_iter().enumerate() {
        let out = g.wait_output();
        assert!(!out.status.success(), "process {i} must fail");
        if i < 2 {
            assert!(stderr(&out).contains("\"carol\""), "{}", stderr(&out));
        }
        assert!(!dirs[i].join("keyshare.json").exists());
    }
}

#[test]
fn demo_runs_to_completion() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("demo");
    let out = Command::new(CAUCUS)
        .args(["demo", "--bits", "512", "--dir", p(&dir)])
        .output()
        .expect("demo");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "demo failed: {}\n{text}",
        stderr(&out)
    );
    assert!(text.contains("demo complete"), "{text}");
    assert!(text.contains("learns total = 4925"), "{text}");
    assert!(text.contains("decrypts 424242"), "{text}");
    assert_eq!(text.matches("… matches").count(), 2, "{text}");
    for n in ["bob", "carol"] {
        assert_eq!(
            std::fs::read(dir.join(n).join("received-dataset.csv")).expect("received"),
            std::fs::read(dir.join("shared-dataset.csv")).expect("sent")
        );
    }
    for n in ["alice", "bob", "carol"] {
        assert!(dir.join(n).join("keyshare.json").exists());
    }
    assert!(dir.join("ca").join("registry.redb").exists());
    // A second run cleans and reuses the directory; a foreign directory is refused.
    let foreign = tmp.path().join("mine");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    std::fs::write(foreign.join("precious.txt"), b"x").expect("write");
    let out = Command::new(CAUCUS)
        .args(["demo", "--bits", "512", "--dir", p(&foreign)])
        .output()
        .expect("demo");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refusing to delete"),
        "{}",
        stderr(&out)
    );
    assert!(foreign.join("precious.txt").exists());
}
