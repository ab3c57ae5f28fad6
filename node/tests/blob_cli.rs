//! Blobs end to end with the real binaries: `caucus-ca` (init, serve, session create), three nodes
//! (`caucus init` + `caucus enroll`), `caucus serve` daemons for the receivers, and
//! `caucus blob send | list | get`. Covers one encryption to two recipients, a sender process
//! killed in the middle of a transfer and re-run (it resumes from the receiver's durable chunks and
//! the result is byte-identical), a receiver restarted after its receipt, node.json limits, and
//! errors that name what was wrong.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use caucus_node::blob::{BlobStore, StoreConfig};
use serde_json::Value;

const CAUCUS: &str = env!("CARGO_BIN_EXE_caucus");

fn ca_bin() -> PathBuf {
    let p = Path::new(CAUCUS).with_file_name("caucus-ca");
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace`",
        p.display()
    );
    p
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run")
}

fn ok_json(bin: &Path, args: &[&str]) -> Value {
    let out = run(bin, args);
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one json object on stdout")
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
        .unwrap_or_else(|e| panic!("{args:?}: bad ready line {line:?}: {e}"));
    (guard, v)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn content(len: usize) -> Vec<u8> {
    let mut x = 0x1234_5678_9abc_def1u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// CA + alice, bob, carol enrolled; returns (tmp, CA guard, node dirs).
fn setup() -> (tempfile::TempDir, Guard, Vec<PathBuf>) {
    let ca = ca_bin();
    let caucus = PathBuf::from(CAUCUS);
    let tmp = tempfile::tempdir().expect("tmp");
    let ca_dir = tmp.path().join("ca");
    ok_json(
        &ca,
        &[
            "init",
            "--json",
            "--dir",
            p(&ca_dir),
            "--name",
            "blob-ca",
            "--key-bits",
            "2048",
        ],
    );
    let (guard, serve) = spawn_ready(
        &ca,
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
        &ca,
        &[
            "session",
            "create",
            "--json",
            "--dir",
            p(&ca_dir),
            "--id",
            "blobs",
            "--parties",
            "alice,bob,carol",
            "--threshold",
            "1",
        ],
    );
    let mut dirs = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let dir = tmp.path().join(name);
        ok_json(
            &caucus,
            &["init", "--json", "--dir", p(&dir), "--name", name],
        );
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
                s["tokens"][name].as_str().expect("token"),
                "--advertise",
                &advertise,
            ],
        );
        dirs.push(dir);
    }
    (tmp, guard, dirs)
}

/// Adds a `"blobs"` object to a node's node.json.
fn set_blob_limits(dir: &Path, limits: Value) {
    let path = dir.join("node.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    v["blobs"] = limits;
    std::fs::write(&path, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
}

fn serve(dir: &Path) -> Guard {
    let (g, ready) = spawn_ready(Path::new(CAUCUS), &["serve", "--json", "--dir", p(dir)]);
    assert!(ready["listen"].is_string());
    g
}

#[test]
fn send_list_get_kill_resume_restart_with_the_binaries() {
    let caucus = PathBuf::from(CAUCUS);
    let (tmp, _ca, dirs) = setup();
    let (alice, bob, carol) = (&dirs[0], &dirs[1], &dirs[2]);
    set_blob_limits(
        bob,
        serde_json::json!({ "sync_every_bytes": 1 << 20, "max_blob_bytes": 200 << 20 }),
    );
    let mut bob_daemon = serve(bob);
    let _carol_daemon = serve(carol);

    // One encryption, two recipients.
    let small = tmp.path().join("small.csv");
    std::fs::write(&small, content(200_001)).expect("write");
    let r = ok_json(
        &caucus,
        &[
            "blob",
            "send",
            "--json",
            "--dir",
            p(alice),
            "--to",
            "bob,carol",
            p(&small),
        ],
    );
    assert_eq!(r["size"], 200_001);
    assert_eq!(r["reused_outbox"], false);
    assert_eq!(r["recipients"].as_array().expect("recipients").len(), 2);
    let small_id = r["blob_id"].as_str().expect("id").to_string();
    for dir in [bob, carol] {
        let l = ok_json(&caucus, &["blob", "list", "--json", "--dir", p(dir)]);
        let b = &l["blobs"][0];
        assert_eq!(b["id"], small_id.as_str());
        assert_eq!(b["name"], "small.csv");
        assert_eq!(b["sender"], "alice");
        let out = tmp
            .path()
            .join(format!("small-{}", dir.display().to_string().len()));
        ok_json(
            &caucus,
            &[
                "blob",
                "get",
                "--json",
                "--dir",
                p(dir),
                &small_id,
                "--out",
                p(&out),
            ],
        );
        assert_eq!(std::fs::read(&out).expect("read"), content(200_001));
    }
    // The outbox copy is gone once every recipient sent its receipt.
    let outbox = alice.join("blobs/outbox");
    assert_eq!(std::fs::read_dir(&outbox).expect("outbox").count(), 0);

    // Kill the sender process in the middle of a 192 MiB transfer, then run it again. (Large
    // enough that the transfer is still running when the first durable checkpoint shows in
    // bob's index, on a fast machine too: 96 MiB once finished before the kill.)
    const BIG: u64 = 192 << 20; // under bob's 200 MiB limit
    let big = tmp.path().join("big.bin");
    let data = content(BIG as usize);
    std::fs::write(&big, &data).expect("write");
    let mut sender = Guard(
        Command::new(&caucus)
            .args([
                "blob",
                "send",
                "--json",
                "--dir",
                p(alice),
                "--to",
                "bob",
                p(&big),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sender"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let durable = loop {
        assert!(Instant::now() < deadline, "no durable progress at bob");
        assert!(
            sender.0.try_wait().expect("wait").is_none(),
            "the sender finished before it could be killed"
        );
        let store = BlobStore::open(bob, StoreConfig::default()).expect("bob's store");
        let d = store.partials().expect("partials").first().map(|(_, d)| *d);
        if let Some(d) = d
            && d >= 1
        {
            break d;
        }
        drop(store);
        std::thread::sleep(Duration::from_millis(5));
    };
    sender.0.kill().expect("kill sender");
    let _ = sender.0.wait();
    let listed = ok_json(&caucus, &["blob", "list", "--json", "--dir", p(bob)]);
    assert_eq!(
        listed["blobs"].as_array().expect("blobs").len(),
        1,
        "a partial is never listed"
    );
    let r = ok_json(
        &caucus,
        &[
            "blob",
            "send",
            "--json",
            "--dir",
            p(alice),
            "--to",
            "bob",
            p(&big),
        ],
    );
    assert_eq!(r["reused_outbox"], true, "{r}");
    let count = BIG / (64 << 10);
    let to = &r["recipients"][0];
    let resumed = to["resumed_from"].as_u64().expect("resumed_from");
    assert!(resumed >= durable.min(count) && resumed > 0, "{r}");
    assert_eq!(to["chunks_sent"].as_u64(), Some(count - resumed), "{r}");
    assert!(to["bytes_sent"].as_u64().expect("bytes") < BIG, "{r}");
    let big_id = r["blob_id"].as_str().expect("id").to_string();

    // Restart bob: the blob is still listed and readable.
    drop(bob_daemon);
    let l = ok_json(&caucus, &["blob", "list", "--json", "--dir", p(bob)]);
    assert_eq!(l["blobs"].as_array().expect("blobs").len(), 2);
    bob_daemon = serve(bob);
    let out = tmp.path().join("big.out");
    ok_json(
        &caucus,
        &[
            "blob",
            "get",
            "--json",
            "--dir",
            p(bob),
            &big_id,
            "--out",
            p(&out),
        ],
    );
    assert!(
        std::fs::read(&out).expect("read") == data,
        "byte-identical after resume"
    );

    // Limits from node.json: refused before any chunk, with an error that names the limit.
    let huge = tmp.path().join("huge.bin");
    let f = std::fs::File::create(&huge).expect("create");
    f.set_len((200 << 20) + 1).expect("sparse");
    let out = run(
        &caucus,
        &["blob", "send", "--dir", p(alice), "--to", "bob", p(&huge)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too_large"), "{err}");
    // Unknown recipient and unknown blob id: clear errors.
    let out = run(
        &caucus,
        &[
            "blob",
            "send",
            "--dir",
            p(alice),
            "--to",
            "mallory",
            p(&small),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mallory"));
    let out = run(
        &caucus,
        &[
            "blob",
            "get",
            "--dir",
            p(bob),
            "00000000000000000000000000000000",
            "--out",
            p(&out_path(&tmp)),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no blob"));
    drop(bob_daemon);
}

fn out_path(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("never-written")
}
