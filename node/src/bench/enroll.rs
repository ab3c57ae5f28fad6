//! `caucus bench enroll`: load benchmark of CA enrolment (CSR → durable record → certificate)
//! against one real `caucus-ca serve` process.
//!
//! Per run: a fresh CA directory (`caucus-ca init`), sessions whose tokens total the requested
//! number of enrolments (100 parties each), a `caucus-ca serve` process, then `clients` concurrent
//! tasks each taking the next token, opening a new TLS connection, sending its CSR and verifying
//! the certificate it gets back. Client keys come from a pre-generated pool (RSA-2048 keygen is
//! ~50 ms) and every CSR is pre-built and distinct, so the clock measures the CA.
//! Reports enrolments/s (median of runs), p50/p99 latency and failures against the target
//! (≥ 500/s, 0 failures, TARGETS.md).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use caucus::pki::csr::{build_csr, csr_to_pem};
use caucus::pki::keys::PrivateKey;
use caucus_ca::authority::EnrollArgs;
use serde::Serialize;

use super::{Figure, Report, machine};
use crate::ca_client::CaClient;

/// Parties per benchmark session.
pub const SESSION_SIZE: usize = 100;

/// Benchmark parameters.
#[derive(Clone, Debug, Serialize)]
pub struct EnrollBenchParams {
    /// Enrolments per run.
    pub enrolments: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Runs (the median is reported).
    pub runs: usize,
    /// Node key size.
    pub node_key_bits: usize,
    /// CA root key size.
    pub ca_key_bits: usize,
}

impl EnrollBenchParams {
    /// The full benchmark (10,000 enrolments, 500 clients) or `--quick` (1,000, 500 clients).
    pub fn new(quick: bool, runs: usize) -> Self {
        Self {
            enrolments: if quick { 1_000 } else { 10_000 },
            clients: 500,
            runs: runs.max(1),
            node_key_bits: 2048,
            ca_key_bits: 3072,
        }
    }
}

/// Errors running the benchmark (not enrolment failures, which are counted).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Setup failed.
    #[error("benchmark setup: {0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Setup(e.to_string())
}

/// One run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// Enrolments per second (successful / wall time).
    pub per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Failed enrolments.
    pub failures: usize,
    /// Wall time, s.
    pub wall_s: f64,
    /// Up to 5 failure messages.
    pub sample_errors: Vec<String>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct EnrollBenchReport {
    /// Parameters.
    pub params: EnrollBenchParams,
    /// Figures: enrolments/s, latency p50, latency p99, failures.
    pub figures: Vec<Figure>,
    /// Per-run details.
    pub runs: Vec<RunResult>,
    /// Whether the median meets the target (≥ 500/s and 0 failures in every run).
    pub meets_target: bool,
}

/// `caucus bench enroll` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// 1,000 enrolments instead of 10,000.
    #[arg(long)]
    pub quick: bool,
    /// Runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 500)]
    pub clients: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark on its own tokio runtime and returns the common report (machine,
/// parameters, per-run details, figures with targets).
pub fn run_blocking(args: &Args) -> Result<Report, BenchError> {
    let mut params = EnrollBenchParams::new(args.quick, args.runs);
    params.clients = args.clients.max(1);
    let rt = tokio::runtime::Runtime::new().map_err(setup)?;
    let r = rt.block_on(run(params))?;
    let params = serde_json::json!({
        "enrolments": r.params.enrolments,
        "clients": r.params.clients,
        "runs": r.params.runs,
        "node_key_bits": r.params.node_key_bits,
        "ca_key_bits": r.params.ca_key_bits,
        "per_run": r.runs,
        "meets_target": r.meets_target,
    });
    Ok(Report {
        bench: "enroll".into(),
        machine: machine(),
        params,
        figures: r.figures,
    })
}

/// A child process killed (and reaped) on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `caucus-ca` binary next to the current executable.
pub fn ca_binary() -> Result<PathBuf, BenchError> {
    let p = std::env::current_exe()
        .map_err(setup)?
        .with_file_name("caucus-ca");
    if !p.exists() {
        return Err(BenchError::Setup(format!(
            "{} not found (build the workspace: cargo build --release)",
            p.display()
        )));
    }
    Ok(p)
}

struct Item {
    session: String,
    csr: String,
}

fn names(enrolments: usize) -> Vec<(String, String)> {
    (0..enrolments)
        .map(|i| {
            let s = i / SESSION_SIZE;
            (format!("bench-{s}"), format!("p{s}-{}", i % SESSION_SIZE))
        })
        .collect()
}

/// Pre-builds one distinct CSR per enrolment from a pool of `SESSION_SIZE` keys.
fn prebuild(params: &EnrollBenchParams) -> Result<Vec<Item>, BenchError> {
    let pool_size = SESSION_SIZE.min(params.enrolments);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let keys: Vec<PrivateKey> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let bits = params.node_key_bits;
                s.spawn(move || {
                    (w..pool_size)
                        .step_by(workers)
                        .map(|_| PrivateKey::generate(bits))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| BenchError::Setup("keygen thread panicked".into()))?
                    .map_err(setup)?,
            );
        }
        Ok::<_, BenchError>(out)
    })?;
    names(params.enrolments)
        .into_iter()
        .enumerate()
        .map(|(i, (session, name))| {
            let der = build_csr(&keys[i % keys.len()], &name).map_err(setup)?;
            Ok(Item {
                session,
                csr: csr_to_pem(&der),
            })
        })
        .collect()
}

/// Creates a CA with its sessions in `dir`; returns the tokens in item order.
fn make_ca(bin: &Path, dir: &Path, params: &EnrollBenchParams) -> Result<Vec<String>, BenchError> {
    let out = Command::new(bin)
        .args(["init", "--json", "--name", "bench-ca", "--key-bits"])
        .arg(params.ca_key_bits.to_string())
        .arg("--dir")
        .arg(dir)
        .output()
        .map_err(setup)?;
    if !out.status.success() {
        return Err(BenchError::Setup(format!(
            "caucus-ca init: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // Sessions are created through the CA library on the (not yet served) registry: one
    // process instead of one `caucus-ca session create` per 100 parties.
    let auth =
        caucus_ca::authority::Authority::open(&caucus_ca::dir::CaDir::new(dir)).map_err(setup)?;
    let all = names(params.enrolments);
    let mut tokens = Vec::with_capacity(all.len());
    for chunk in all.chunks(SESSION_SIZE) {
        let parties: Vec<String> = chunk.iter().map(|(_, n)| n.clone()).collect();
        let threshold = (parties.len() as u32 - 1).min(1);
        let created = auth
            .create_session(&chunk[0].0, &parties, threshold, 3600)
            .map_err(setup)?;
        for p in &parties {
            tokens.push(
                created
                    .tokens
                    .get(p)
                    .cloned()
                    .ok_or_else(|| BenchError::Setup("missing token".into()))?,
            );
        }
    }
    Ok(tokens)
}

fn spawn_ca(bin: &Path, dir: &Path) -> Result<(ChildGuard, String, String), BenchError> {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "2048",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(setup)?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Setup("no stdout".into()))?;
    let guard = ChildGuard(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(setup)?;
    let v: serde_json::Value = serde_json::from_str(&line)
        .map_err(|_| BenchError::Setup(format!("caucus-ca serve did not start: {line:?}")))?;
    let addr = v["listen"].as_str().unwrap_or_default().to_string();
    let fp = v["fingerprint"].as_str().unwrap_or_default().to_string();
    Ok((guard, addr, fp))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn one_run(
    params: &EnrollBenchParams,
    items: &Arc<Vec<Item>>,
) -> Result<RunResult, BenchError> {
    let bin = ca_binary()?;
    let tmp = tempfile::tempdir().map_err(setup)?;
    let dir = tmp.path().join("ca");
    let tokens = Arc::new(make_ca(&bin, &dir, params)?);
    let (_guard, addr, fp) = spawn_ca(&bin, &dir)?;
    let root = caucus_ca::dir::CaDir::new(&dir)
        .load_root()
        .map_err(setup)?;
    if !caucus::pki::fingerprint_matches(&root, &fp).unwrap_or(false) {
        return Err(BenchError::Setup(
            "served root has another fingerprint".into(),
        ));
    }
    let client = Arc::new(CaClient::with_root(&addr, &root).map_err(setup)?);
    let root = Arc::new(root);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..params.clients.min(params.enrolments) {
        let (client, next, items, tokens, root) = (
            client.clone(),
            next.clone(),
            items.clone(),
            tokens.clone(),
            root.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let t0 = Instant::now();
                let args = EnrollArgs {
                    csr: items[i].csr.clone(),
                    token: tokens[i].clone(),
                    advertise: format!("127.0.0.1:{}", 10_000 + i % 50_000),
                    session: Some(items[i].session.clone()),
                };
                let res = async {
                    let mut conn = client.connect().await?;
                    let v = conn
                        .call(
                            "get/csr",
                            serde_json::to_value(&args).map_err(|e| {
                                crate::ca_client::CaClientError::Protocol(e.to_string())
                            })?,
                        )
                        .await?;
                    let e: caucus_ca::authority::Enrolled = serde_json::from_value(v)
                        .map_err(|e| crate::ca_client::CaClientError::Protocol(e.to_string()))?;
                    let der = caucus::pki::keys::pem_decode(&e.cert, "CERTIFICATE")
                        .map_err(|_| crate::ca_client::CaClientError::Protocol("bad pem".into()))?;
                    caucus::pki::verify_chain(&der, &root, crate::now())?;
                    Ok::<_, crate::ca_client::CaClientError>(())
                }
                .await;
                match res {
                    Ok(()) => lat.push(t0.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await.map_err(setup)?;
        lat.extend(l);
        errors.extend(e);
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(RunResult {
        per_sec: lat.len() as f64 / wall,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        failures: errors.len(),
        wall_s: wall,
        sample_errors: errors.into_iter().take(5).collect(),
    })
}

/// Runs the benchmark.
pub async fn run(params: EnrollBenchParams) -> Result<EnrollBenchReport, BenchError> {
    let p = params.clone();
    let items = tokio::task::spawn_blocking(move || prebuild(&p))
        .await
        .map_err(setup)??;
    let items = Arc::new(items);
    let mut runs = Vec::new();
    for _ in 0..params.runs {
        runs.push(one_run(&params, &items).await?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let per_sec: Vec<f64> = runs.iter().map(|r| r.per_sec).collect();
    let p50: Vec<f64> = runs.iter().map(|r| r.p50_ms).collect();
    let p99: Vec<f64> = runs.iter().map(|r| r.p99_ms).collect();
    let failures: Vec<f64> = runs.iter().map(|r| r.failures as f64).collect();
    let figures = vec![
        Figure::from_samples("enrolments per second", "enrolments/s", &per_sec)
            .target(super::Target::at_least(500.0, "≥ 500/s")),
        Figure::from_samples("latency p50", "ms", &p50),
        Figure::from_samples("latency p99", "ms", &p99),
        Figure::from_samples("failures", "count", &failures)
            .target(super::Target::at_most(0.0, "0 failures in every run").on(super::Stat::Max)),
    ];
    let median_rate = figures[0].median;
    let meets_target = median_rate >= 500.0 && runs.iter().all(|r| r.failures == 0);
    Ok(EnrollBenchReport {
        params,
        figures,
        runs,
        meets_target,
    })
}
