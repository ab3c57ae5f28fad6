//! End to end with the real binaries: `caucus-ca init/serve/session create`, three nodes made with
//! `caucus init` + `caucus enroll`, a `caucus serve` daemon answering over mTLS, then the
//! `secure_sum` example run as three processes that must all print the same correct total.
//!
//! Needs the `caucus-ca` binary and the `secure_sum` example next to `caucus`:
//! `cargo test --workspace` builds both before running any test.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use caucus_node::session::{Session, SessionOptions};
use serde_json::Value;

const CAUCUS: &str = env!("CARGO_BIN_EXE_caucus");

fn sibling(name: &str) -> PathBuf {
    let p = Path::new(CAUCUS).with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace` (it builds every workspace binary and example)",
        p.display()
    );
    p
}

fn example(name: &str) -> PathBuf {
    let p = Path::new(CAUCUS)
        .parent()
        .expect("bin dir")
        .join("examples")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace` (it builds the examples)",
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
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns a long-running command that prints one JSON line when ready; returns it.
fn spawn_ready(bin: &Path, args: &[&str]) -> (Guard, Value) {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready line");
    let guard = Guard(child);
    let v: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{} {args:?}: bad ready line {line:?}: {e}", bin.display()));
    (guard, v)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn three_processes_compute_a_secure_sum() {
    let ca_bin = sibling("caucus-ca");
    let sum_bin = example("secure_sum");
    let caucus = PathBuf::from(CAUCUS);
    let tmp = tempfile::tempdir().expect("tmp");
    let ca_dir = tmp.path().join("ca");

    ok_json(
        &ca_bin,
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
    let (_ca, serve) = spawn_ready(
        &ca_bin,
        &[
            "serve",
            "--json",
            "--dir",
            p(&ca_dir),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let ca_addr = serve["listen"].as_str().expect("listen").to_string();
    let fp = serve["fingerprint"].as_str().expect("fp").to_string();
    let s = ok_json(
        &ca_bin,
        &[
            "session",
            "create",
            "--json",
            "--dir",
            p(&ca_dir),
            "--id",
            "sum1",
            "--parties",
            "alice,bob,carol",
            "--threshold",
            "1",
        ],
    );

    let names = ["alice", "bob", "carol"];
    let mut dirs = Vec::new();
    for name in names {
        let dir = tmp.path().join(name);
        ok_json(
            &caucus,
            &["init", "--json", "--dir", p(&dir), "--name", name],
        );
        let token = s["tokens"][name].as_str().expect("token");
        let advertise = format!("127.0.0.1:{}", free_port());
        ok_json(
            &caucus,
            &[
                "enroll",
                "--json",
                "--dir",
                p(&dir),
                "--ca",
                &ca_addr,
                "--fingerprint",
                &fp,
                "--token",
                token,
                "--advertise",
                &advertise,
            ],
        );
        dirs.push(dir);
    }

    // `caucus serve` runs as a daemon for alice on her advertised address; bob (this test, through
    // the session library) reaches it over mTLS: a signed ping, SNOOP's get/crt, a message.
    {
        let (mut daemon, ready) = spawn_ready(&caucus, &["serve", "--json", "--dir", p(&dirs[0])]);
        assert_eq!(ready["name"], "alice");
        assert_eq!(ready["index"], 1);
        assert_eq!(ready["session"], "sum1");
        assert_eq!(ready["members"], 3);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let bob = Session::open(&dirs[1], SessionOptions::default())
                .await
                .expect("bob's session");
            let pong = bob
                .request("alice", "smc/ping", serde_json::json!({"hello": 1}))
                .await
                .expect("ping the daemon");
            assert_eq!(pong.payload, serde_json::json!({"hello": 1}));
            assert_eq!(pong.meta.id, bob.party("alice").expect("alice").party_id);
            let crt = bob
                .request("alice", "get/crt", Value::Null)
                .await
                .expect("get/crt");
            assert!(crt.payload["cert"].is_string());
            bob.send("alice", "note", &"hi").await.expect("send");
            bob.close().await;
        });
        // Graceful shutdown on SIGTERM.
        let pid = daemon.0.id().to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(st.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = daemon.0.try_wait().expect("wait") {
                assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let values: [u64; 3] = [12, 30, 1_000_000_007];
    let mut kids = Vec::new();
    for (dir, v) in dirs.iter().zip(values) {
        let child = Command::new(&sum_bin)
            .args([
                "--dir",
                p(dir),
                "--value",
                &v.to_string(),
                "--timeout",
                "60",
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn secure_sum");
        kids.push(Guard(child));
    }
    let want: u64 = values.iter().sum();
    for (i, mut g) in kids.into_iter().enumerate() {
        let child = std::mem::replace(&mut g.0, Command::new("true").spawn().expect("placeholder"));
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "secure_sum for {} failed: {}",
            names[i],
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(v["party"], names[i]);
        assert_eq!(v["parties"], 3);
        assert_eq!(v["total"], want.to_string(), "{}", names[i]);
    }
}
