//! `caucus bench blob [--json] [--quick] [--size 1GiB] [--runs 3]`: one blob between two
//! `caucus` processes on loopback, until the signed receipt.
//!
//! Setup: a real CA (in process, TLS on loopback) creates a session; two node directories are
//! initialised and enrolled through it; `caucus serve` runs the receiver `bob` as a child process
//! (it fsyncs every blob before its receipt). Each run starts `caucus blob send --to bob FILE` as
//! another child process (the sender `alice`), which encrypts the file once into its outbox, then
//! transfers it and waits for the receipt; it reports its own timings and peak RSS. The
//! receiver's peak RSS is read from `/proc/<pid>/status` (`VmHWM`) after the runs. CPU time
//! (user + system) per GB is reported for the sender (its own, over the transfer), the receiver
//! (`/proc/<pid>/stat` before and after each send) and the raw TLS run: on a noisy VM it moves
//! far less than MB/s, so compare builds by it.
//!
//! After each transfer, for comparison: raw tokio-rustls throughput on one loopback connection
//! (no framing, no files, both ends in this process) and the disk's own write+fsync throughput
//! for the same size, written as the receiver writes (the receipt waits for the fsync, so the
//! disk bounds the transfer); each with the transfer's share of it, run by run.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use caucus_ca::testing::TestCa;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use super::{Figure, Report, machine};
use crate::blob::direct::AppendFile;
use crate::blob::rawtls::{cpu_seconds, cpu_since, peak_rss_kib, raw_tls};
use crate::commands::enroll::{EnrollOptions, enroll};
use crate::commands::init::init;
use crate::config::NodeDir;

/// TNO tno.mpc.communication bulk throughput (MB/s), from TARGETS.md.
const TNO_BULK: f64 = 97.0;

/// Arguments of `caucus bench blob`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A 64 MiB blob instead of 1 GiB (a smoke run).
    #[arg(long)]
    pub quick: bool,
    /// Blob size, e.g. `1GiB`, `256MiB`, `1000000` (overrides --quick).
    #[arg(long)]
    pub size: Option<String>,
    /// Number of runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Chunk size in bytes.
    #[arg(long, default_value_t = caucus::blob::stream::DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u32,
}

/// Parses `1GiB`, `64MiB`, `512KiB`, `1GB`, `10MB` or a plain byte count.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n.trim(), *m)))
    .unwrap_or((t, 1));
    let n: u64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    n.checked_mul(mult).context("size overflows")
}

struct ChildGuard(tokio::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn exe() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?.with_file_name("caucus");
    if !exe.exists() {
        bail!("{} not found (build the caucus binary)", exe.display());
    }
    Ok(exe)
}

async fn enrol_two(tmp: &Path, ca: &TestCa) -> anyhow::Result<(NodeDir, NodeDir)> {
    let parties = vec!["alice".to_string(), "bob".to_string()];
    let s = ca
        .auth
        .create_session("blobbench", &parties, 1, 3600)
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
                session: Some("blobbench".into()),
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
    let mut child = tokio::process::Command::new(exe()?)
        .arg("serve")
        .arg("--dir")
        .arg(&dir.root)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawn caucus serve")?;
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

/// Writes `size` pseudo-random bytes (xorshift, incompressible enough) to `path`.
fn make_input(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for w in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    // On disk before the first run, as a user's file would be: otherwise the kernel writes this
    // file back during the timed transfers, on the disk the receiver fsyncs to.
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// MB/s of writing `size` bytes to a new file in `dir` and fsyncing it, the way the receiver
/// writes its partial file ([`AppendFile`]: direct I/O where the file system has it) before its
/// receipt.
fn disk_mb_per_s(dir: &Path, size: u64) -> anyhow::Result<f64> {
    let p = dir.join("disk-probe");
    let block = vec![0xa5u8; 1 << 20];
    let t = Instant::now();
    {
        let mut f = AppendFile::create_new(&p, 0o600)?;
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        f.finish()?;
    }
    let mb = size as f64 / 1e6 / t.elapsed().as_secs_f64();
    std::fs::remove_file(&p)?;
    Ok(mb)
}

async fn measure(args: &Args) -> anyhow::Result<Report> {
    let size = match &args.size {
        Some(s) => parse_size(s)?,
        None if args.quick => 64 << 20,
        None => 1 << 30,
    };
    let runs = args.runs.max(1);
    let tmp = tempfile::tempdir()?;
    let ca = TestCa::start(&tmp.path().join("ca"), Default::default())
        .await
        .context("start CA")?;
    let (alice, bob) = enrol_two(tmp.path(), &ca).await?;
    let mut serve = spawn_serve(&bob).await?;
    let input = tmp.path().join("input.bin");
    {
        let input = input.clone();
        tokio::task::spawn_blocking(move || make_input(&input, size)).await??;
    }
    let mut transfer = Vec::new();
    let mut end_to_end = Vec::new();
    let mut encrypt = Vec::new();
    let mut sender_rss = Vec::new();
    let mut raw = Vec::new();
    let mut disk = Vec::new();
    // CPU seconds per GB (10^9 bytes) moved: sender, receiver, and raw TLS (both ends).
    let (mut sender_cpu, mut receiver_cpu, mut raw_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let serve_pid = serve.0.id();
    for _ in 0..runs {
        let receiver_before = serve_pid.and_then(|p| cpu_seconds(Some(p)));
        let t = Instant::now();
        let out = tokio::process::Command::new(exe()?)
            .args(["blob", "send", "--json", "--to", "bob", "--chunk-size"])
            .arg(args.chunk_size.to_string())
            .arg("--dir")
            .arg(&alice.root)
            .arg(&input)
            .stderr(Stdio::inherit())
            .output()
            .await
            .context("run caucus blob send")?;
        let wall = t.elapsed().as_secs_f64();
        // The receiver is idle while the sender encrypts: its CPU over the whole command is
        // the transfer's.
        let receiver_cpu_s = serve_pid.and_then(|p| cpu_since(Some(p), receiver_before));
        if !out.status.success() {
            bail!("caucus blob send failed");
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("blob send json")?;
        let r = &v["recipients"][0];
        let secs = r["transfer_s"].as_f64().context("transfer_s")?;
        let bytes = r["bytes_sent"].as_u64().context("bytes_sent")?;
        if bytes == 0 {
            bail!("nothing was sent (blob already held?)");
        }
        transfer.push(bytes as f64 / 1e6 / secs);
        let gb = bytes as f64 / 1e9;
        if let Some(c) = r["cpu_s"].as_f64() {
            sender_cpu.push(c / gb);
        }
        if let Some(c) = receiver_cpu_s {
            receiver_cpu.push(c / gb);
        }
        end_to_end.push(size as f64 / 1e6 / wall);
        let enc = v["encrypt_s"].as_f64().unwrap_or(f64::NAN);
        encrypt.push(size as f64 / 1e6 / enc);
        if let Some(k) = v["peak_rss_kib"].as_u64() {
            sender_rss.push(k as f64 / 1024.0);
        }
        let r = tokio::task::spawn_blocking(move || raw_tls(size)).await??;
        raw.push(r.mb_per_s);
        if let Some(c) = r.cpu_s {
            raw_cpu.push(c / (size as f64 / 1e9));
        }
        // The disk the receiver fsyncs to, in the same run: on a shared virtual disk its speed
        // drifts between runs as much as the transfer's.
        let d = tmp.path().to_path_buf();
        disk.push(
            tokio::task::spawn_blocking(move || disk_mb_per_s(&d, size.min(1 << 30))).await??,
        );
    }
    let receiver_rss = serve
        .0
        .id()
        .and_then(|pid| peak_rss_kib(Some(pid)))
        .map(|k| k as f64 / 1024.0);
    if let Some(pid) = serve.0.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), serve.0.wait()).await;
    ca.stop().await;

    let raw_fig = Figure::from_samples("raw tokio-rustls loopback (same run)", "MB/s", &raw);
    let t = Figure::from_samples("blob transfer until signed receipt", "MB/s", &transfer);
    let ratio = 100.0 * t.median / raw_fig.median;
    // Per run: the blob transfer as a share of raw TLS measured right after it.
    let shares: Vec<f64> = transfer
        .iter()
        .zip(&raw)
        .map(|(b, r)| 100.0 * b / r)
        .collect();
    // Per run: the blob transfer as a share of the disk's write + fsync speed (the receipt
    // waits for the fsync, so the disk bounds the transfer).
    let disk_shares: Vec<f64> = transfer
        .iter()
        .zip(&disk)
        .map(|(b, d)| 100.0 * b / d)
        .collect();
    let figures = vec![
        t.clone()
            .target(format!(
                "≥ 50% of raw TLS ({:.0} MB/s): {ratio:.0}%",
                raw_fig.median / 2.0
            ))
            .peer(format!(
                "TNO comm bulk {TNO_BULK} MB/s: {:.1}x",
                t.median / TNO_BULK
            )),
        raw_fig,
        Figure::from_samples("blob transfer / raw TLS (same run)", "%", &shares)
            .target(super::Target::at_least(50.0, "≥ 50% of raw TLS")),
        Figure::from_samples(
            "blob send end to end (encrypt + transfer + receipt)",
            "MB/s",
            &end_to_end,
        ),
        Figure::from_samples("encrypt once into the outbox (sender)", "MB/s", &encrypt),
        Figure::from_samples("disk write + fsync, same size (bound)", "MB/s", &disk),
        Figure::from_samples("blob transfer / disk bound (same run)", "%", &disk_shares),
        Figure::from_samples(
            "sender CPU per GB sent (user + system)",
            "s/GB",
            &sender_cpu,
        ),
        Figure::from_samples(
            "receiver CPU per GB received (user + system)",
            "s/GB",
            &receiver_cpu,
        ),
        Figure::from_samples("raw TLS CPU per GB, both ends (same run)", "s/GB", &raw_cpu),
        Figure::from_samples("sender peak RSS (VmHWM)", "MiB", &sender_rss)
            .target(super::Target::at_most(64.0, "≤ 64 MiB").on(super::Stat::Max)),
        Figure::from_samples(
            "receiver peak RSS (VmHWM, caucus serve)",
            "MiB",
            &receiver_rss.into_iter().collect::<Vec<_>>(),
        )
        .target(super::Target::at_most(64.0, "≤ 64 MiB").on(super::Stat::Max)),
    ];
    Ok(Report {
        bench: "blob".into(),
        machine: machine(),
        params: json!({
            "size_bytes": size,
            "chunk_size": args.chunk_size,
            "runs": runs,
            "processes": "caucus serve (receiver, fsyncs before the receipt) + caucus blob send (sender)",
            "raw_tls": "one tokio-rustls TLS 1.3 connection on loopback, 64 KiB writes, both ends in the bench process",
        }),
        figures,
    })
}

/// Runs the benchmark.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    measure(&args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1GiB").expect("s"), 1 << 30);
        assert_eq!(parse_size("64MiB").expect("s"), 64 << 20);
        assert_eq!(parse_size("10MB").expect("s"), 10_000_000);
        assert_eq!(parse_size("12345").expect("s"), 12345);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
