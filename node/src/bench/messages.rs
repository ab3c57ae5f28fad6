//! `caucus bench messages [--json] [--quick] [--runs R]`: signed JSON messages between two
//! `caucus` processes over mutual TLS on loopback.
//!
//! Setup: a real CA (in process, TLS front-end on loopback) creates a two-party session; two node
//! directories are initialised and enrolled through it in a temp dir; `caucus serve` (the binary
//! next to the current executable) runs party `alice` as a child process, and this process opens
//! party `bob`'s session.
//!
//! Figures per run: the signed request/response round trip (`smc/ping` → reply, both envelopes
//! RSA-PSS-2048 signed and verified) p50 and p99 over N sequential requests; and pipelined one-way
//! signed `smc/msg` messages per second (send M without waiting, from a few concurrent senders so
//! signing uses both cores, then one ping: the pong arrives after alice has verified and buffered
//! every message). Concurrent sends to one peer are group-signed (one RSA-PSS signature per batch,
//! `caucus::msg::batch`); the mean batch size is reported. Refusals seen during the run are
//! counted and must be zero.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use caucus_ca::server::ServerOptions;
use caucus_ca::testing::TestCa;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use super::{Figure, Report, machine};
use crate::commands::enroll::{EnrollOptions, enroll};
use crate::commands::init::init;
use crate::config::NodeDir;
use crate::session::{Session, SessionOptions};
use crate::transport::METHOD_SMC_MSG;

/// TNO tno.mpc.communication round trip p50 (ms), from TARGETS.md.
const TNO_P50_MS: f64 = 1.98;
/// TNO round trip p99 (ms).
const TNO_P99_MS: f64 = 5.3;
/// TNO pipelined small messages per second (unsigned).
const TNO_MSGS: f64 = 2368.0;

/// Arguments of `caucus bench messages`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Fewer messages (a smoke run).
    #[arg(long)]
    pub quick: bool,
    /// Number of runs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// Kills the child on drop if it is still running.
struct ChildGuard(tokio::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn enrol_two(tmp: &Path, ca: &TestCa) -> anyhow::Result<(NodeDir, NodeDir)> {
    let parties = vec!["alice".to_string(), "bob".to_string()];
    let s = ca
        .auth
        .create_session("bench", &parties, 1, 3600)
        .context("create session")?;
    let mut dirs = Vec::new();
    for name in ["alice", "bob"] {
        let dir = NodeDir::new(tmp.join(name));
        init(&dir, name, None, 2048).context("init")?;
        let token = s.tokens.get(name).context("token")?.clone();
        enroll(
            &dir,
            &EnrollOptions {
                ca: ca.addr.to_string(),
                fingerprint: ca.fingerprint.clone(),
                token,
                advertise: format!("127.0.0.1:{}", free_port()?),
                session: Some("bench".into()),
            },
        )
        .await
        .context("enroll")?;
        dirs.push(dir);
    }
    let bob = dirs.pop().context("bob")?;
    let alice = dirs.pop().context("alice")?;
    Ok((alice, bob))
}

async fn spawn_serve(dir: &NodeDir) -> anyhow::Result<ChildGuard> {
    let exe = std::env::current_exe()?.with_file_name("caucus");
    if !exe.exists() {
        bail!("{} not found (build the caucus binary)", exe.display());
    }
    let mut child = tokio::process::Command::new(&exe)
        .arg("serve")
        .arg("--dir")
        .arg(&dir.root)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", exe.display()))?;
    let out = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(out).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("caucus serve did not start in 30 s")??
        .context("caucus serve exited")?;
    let v: serde_json::Value = serde_json::from_str(&line).context("serve ready line")?;
    if v.get("listen").is_none() {
        bail!("unexpected serve output: {line}");
    }
    Ok(ChildGuard(child))
}

async fn measure(args: &Args) -> anyhow::Result<Report> {
    let (n_rt, n_pipe) = if args.quick {
        (300, 3000)
    } else {
        (3000, 20000)
    };
    let runs = args.runs.max(1);
    let tmp = tempfile::tempdir()?;
    let ca = TestCa::start(&tmp.path().join("ca"), ServerOptions::default())
        .await
        .context("start ca")?;
    let (alice, bob) = enrol_two(tmp.path(), &ca).await?;
    let child = spawn_serve(&alice).await?;
    let s = Session::open(
        &bob.root,
        SessionOptions {
            timeout: Duration::from_secs(30),
            ..SessionOptions::default()
        },
    )
    .await
    .context("open bob's session")?;
    let mut refusals = s.node().refusals();
    let alice_id = s.party("alice")?.party_id;
    // warm up: connection, caches
    for _ in 0..50 {
        s.request("alice", "smc/ping", json!({"i": 0})).await?;
    }
    let (mut p50s, mut p99s, mut rates, mut seals, mut batches) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        // The sender's CPU cost per message (JSON + RSA-PSS-2048 signature), one thread: with
        // two cores it bounds the pipelined rate at about 2 / seal.
        let t = Instant::now();
        for i in 0..200 {
            s.node()
                .seal(METHOD_SMC_MSG, "seal", Some(alice_id), json!({"i": i}))?;
        }
        seals.push(t.elapsed().as_secs_f64() * 1e3 / 200.0);

        let mut lat = Vec::with_capacity(n_rt);
        for i in 0..n_rt {
            let t = Instant::now();
            let r = s.request("alice", "smc/ping", json!({"i": i})).await?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            if r.payload != json!({"i": i}) {
                bail!("ping reply does not echo the request");
            }
        }
        lat.sort_by(f64::total_cmp);
        p50s.push(percentile(&lat, 0.5));
        p99s.push(percentile(&lat, 0.99));

        let senders = 8;
        let before = s.node().send_stats();
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for w in 0..senders {
            let node = s.node().clone();
            let per = n_pipe / senders;
            set.spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                for i in 0..per {
                    let v = json!({"w": w, "i": i});
                    node.send(
                        &alice_id,
                        METHOD_SMC_MSG,
                        &format!("bench-{run}"),
                        v,
                        deadline,
                    )
                    .await?;
                }
                Ok::<_, crate::transport::TransportError>(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        s.request("alice", "smc/ping", json!("fence")).await?;
        let secs = t.elapsed().as_secs_f64();
        rates.push((n_pipe / senders * senders) as f64 / secs);
        let after = s.node().send_stats();
        batches.push(
            (after.messages - before.messages) as f64
                / (after.signatures - before.signatures).max(1) as f64,
        );
    }
    if let Ok(r) = refusals.try_recv() {
        bail!("alice refused a message during the benchmark: {}", r.error);
    }
    s.close().await;
    if let Some(pid) = child.0.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let mut child = child;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.0.wait()).await;
    ca.stop().await;

    let p50 = Figure::from_samples("signed round trip p50", "ms", &p50s);
    let p99 = Figure::from_samples("signed round trip p99", "ms", &p99s);
    let rate = Figure::from_samples("pipelined signed messages", "msg/s", &rates);
    let seal = Figure::from_samples(
        "envelope seal (JSON + RSA-PSS sign), one core",
        "ms",
        &seals,
    );
    let batch = Figure::from_samples(
        "pipelined messages per signature (group signing)",
        "msg/sig",
        &batches,
    );
    let figures = vec![
        Figure {
            target: Some(super::Target::at_most(1.0, "≤ 1 ms")),
            peer: Some(format!(
                "TNO comm {TNO_P50_MS} ms (unsigned); TNO/ours {:.2}",
                TNO_P50_MS / p50.median
            )),
            ..p50
        },
        Figure {
            peer: Some(format!(
                "TNO comm {TNO_P99_MS} ms (unsigned); TNO/ours {:.2}",
                TNO_P99_MS / p99.median
            )),
            ..p99
        },
        Figure {
            target: Some(super::Target::at_least(3000.0, "≥ 3,000 msg/s")),
            peer: Some(format!(
                "TNO comm {TNO_MSGS} msg/s (unsigned); ours/TNO {:.2}",
                rate.median / TNO_MSGS
            )),
            ..rate
        },
        batch,
        seal,
    ];
    Ok(Report {
        bench: "messages".into(),
        machine: machine(),
        params: json!({
            "processes": 2,
            "transport": "TLS 1.3 mutual auth, loopback",
            "signature": "RSA-PSS-SHA256, RSA-2048, every message signed and verified (concurrent sends to one peer share one signature per batch)",
            "round_trips_per_run": n_rt,
            "pipelined_per_run": n_pipe,
            "pipelined_senders": 8,
            "runs": runs,
        }),
        figures,
    })
}

/// Runs the benchmark on its own tokio runtime (two worker threads, one per core).
pub fn run(args: Args) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(measure(&args))
}
