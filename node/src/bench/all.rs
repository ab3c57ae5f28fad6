//! `caucus bench all [--quick] [--vs-tno] [--json] [--out DIR]`: every benchmark in turn, one
//! report.
//!
//! Runs the in-process keygen, the three-process keygen (+ t+1 decryption), Paillier operations,
//! signed messages, the blob transfer beside raw TLS and the CA enrolment load by calling each
//! bench's own `run` with its `Args` (the process benches spawn `caucus` / `caucus-ca` next to the
//! current executable themselves). A failing (or panicking) benchmark is recorded and the others
//! still run; the command exits non-zero at the end if any failed.
//!
//! With `--vs-tno` it first makes sure TNO's Python harness (`bench/peers/tno`) is set up — failing
//! with one line before any benchmark if it cannot be — and runs it after ours with matching
//! settings; each of our figures with a TNO counterpart then gets TNO's figure from the same run
//! and the ratio. Without it (or where TNO has no run at that size) the peer is TARGETS.md's figure.
//!
//! Writes `DIR/report.json` and `DIR/report.md` (default `target/bench-report`), and with
//! `--write-benchmarks PATH` splices the Markdown between `<!-- report:begin -->` and
//! `<!-- report:end -->` in PATH.

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{Figure, Report, Target, blob, enroll, keygen, messages, paillier};

/// Start marker of the report section in BENCHMARKS.md.
pub const REPORT_BEGIN: &str = "<!-- report:begin -->";
/// End marker of the report section in BENCHMARKS.md.
pub const REPORT_END: &str = "<!-- report:end -->";

/// Arguments of `caucus bench all`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A few-minute run: fewer runs and smaller sizes in every benchmark.
    #[arg(long)]
    pub quick: bool,
    /// Also run TNO's Python implementation (bench/peers/tno) with matching settings and put its
    /// figures and the ratio next to ours.
    #[arg(long)]
    pub vs_tno: bool,
    /// Print the whole report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Directory for report.json, report.md (and tno.json).
    #[arg(long, default_value = "target/bench-report")]
    pub out: PathBuf,
    /// Where TNO's harness lives (default: bench/peers/tno of the workspace this was built from).
    #[arg(long)]
    pub tno_dir: Option<PathBuf>,
    /// TNO keygen runs per key size (default: 3 with --quick, else 5).
    #[arg(long)]
    pub tno_runs: Option<u32>,
    /// Rewrite the section between `<!-- report:begin -->` and `<!-- report:end -->` of this
    /// file (BENCHMARKS.md) with the Markdown report.
    #[arg(long)]
    pub write_benchmarks: Option<PathBuf>,
    /// Run only these benchmarks (comma-separated: keygen, keygen-processes,
    /// keygen-processes-4096, paillier, messages, blob, enroll).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// One benchmark to run.
pub struct Step {
    /// Short name (`--only`).
    pub name: String,
    /// Section title.
    pub title: String,
    /// The equivalent single command.
    pub command: String,
    /// Runs it.
    pub run: Box<dyn FnOnce() -> anyhow::Result<Report>>,
}

impl Step {
    /// A step.
    pub fn new(
        name: &str,
        title: &str,
        command: &str,
        run: impl FnOnce() -> anyhow::Result<Report> + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            title: title.into(),
            command: command.into(),
            run: Box::new(run),
        }
    }
}

/// What a step gave.
pub struct Outcome {
    /// Short name.
    pub name: String,
    /// Section title.
    pub title: String,
    /// The equivalent command.
    pub command: String,
    /// Wall time of the step.
    pub elapsed_s: f64,
    /// The report, or the error (panics included).
    pub result: Result<Report, String>,
}

/// Runs `f`, turning an error or a panic into a message.
fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("panicked: {msg}"))
        }
    }
}

/// Runs the steps in turn; a failing one is recorded and the rest still run. `done` is called
/// after each step.
pub fn run_steps(steps: Vec<Step>, mut done: impl FnMut(usize, usize, &Outcome)) -> Vec<Outcome> {
    let total = steps.len();
    let mut out = Vec::new();
    for (i, s) in steps.into_iter().enumerate() {
        let t = Instant::now();
        let result = guarded(s.run);
        let o = Outcome {
            name: s.name,
            title: s.title,
            command: s.command,
            elapsed_s: t.elapsed().as_secs_f64(),
            result,
        };
        done(i + 1, total, &o);
        out.push(o);
    }
    out
}

/// The benchmarks of `bench all`, full or quick.
pub fn steps(quick: bool, json: bool) -> Vec<Step> {
    let kg = move |bits: Option<u32>, runs: Option<u32>, processes: bool| keygen::Args {
        bits,
        runs,
        quick: quick && bits.is_none(),
        json,
        parties: 3,
        threshold: 1,
        processes,
    };
    let mut v = vec![Step::new(
        "keygen",
        "Keygen, in-process (3 parties, t = 1)",
        if quick {
            "caucus bench keygen --quick"
        } else {
            "caucus bench keygen"
        },
        move || keygen::run(kg(None, None, false)),
    )];
    let (pbits, pruns) = if quick { (1024, 2) } else { (2048, 5) };
    v.push(Step::new(
        "keygen-processes",
        &format!("Keygen, three processes over mTLS, {pbits}-bit N, then t+1 decryption"),
        &format!("caucus bench keygen --processes --bits {pbits} --runs {pruns}"),
        move || keygen::run(kg(Some(pbits), Some(pruns), true)),
    ));
    if !quick {
        v.push(Step::new(
            "keygen-processes-4096",
            "Keygen, three processes over mTLS, 4096-bit N, then t+1 decryption",
            "caucus bench keygen --processes --bits 4096 --runs 1",
            move || keygen::run(kg(Some(4096), Some(1), true)),
        ));
    }
    v.push(Step::new(
        "paillier",
        "Paillier operations, 2048-bit N, one core",
        if quick {
            "caucus bench paillier --quick"
        } else {
            "caucus bench paillier"
        },
        move || {
            paillier::run(paillier::Args {
                bits: 2048,
                runs: 5,
                quick,
                json,
            })
        },
    ));
    v.push(Step::new(
        "messages",
        "Signed messages between two processes (mTLS)",
        if quick {
            "caucus bench messages --quick"
        } else {
            "caucus bench messages"
        },
        move || {
            messages::run(messages::Args {
                json,
                quick,
                runs: 3,
            })
        },
    ));
    v.push(Step::new(
        "blob",
        if quick {
            "Blob transfer, 128 MiB, two processes, beside raw TLS"
        } else {
            "Blob transfer, 1 GiB, two processes, beside raw TLS"
        },
        if quick {
            "caucus bench blob --size 128MiB"
        } else {
            "caucus bench blob"
        },
        move || {
            let a = blob::Args {
                json,
                quick,
                size: quick.then(|| "128MiB".to_string()),
                runs: 3,
                chunk_size: caucus::blob::stream::DEFAULT_CHUNK_SIZE,
            };
            tokio::runtime::Runtime::new()?.block_on(blob::run(a))
        },
    ));
    v.push(Step::new(
        "enroll",
        "CA enrolment load (500 concurrent clients)",
        if quick {
            "caucus bench enroll --quick"
        } else {
            "caucus bench enroll"
        },
        move || {
            enroll::run_blocking(&enroll::Args {
                quick,
                runs: 3,
                clients: 500,
                json,
            })
            .map_err(anyhow::Error::from)
        },
    ));
    v
}

// ---------------------------------------------------------------------------------------------
// TNO

/// One figure of TNO's harness (`bench/peers/tno/run.py`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TnoFigure {
    /// e.g. `keygen_512_s`, `decrypt_1024_ms`, `comm_rtt_p50_ms`.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Values the statistics are over.
    #[serde(default)]
    pub runs: u64,
    /// Minimum (null when every run failed).
    pub min: Option<f64>,
    /// Median.
    pub median: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Details (rounds, seconds per round, errors …).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// TNO's report: one JSON object from `run.py`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TnoReport {
    /// Package versions.
    #[serde(default)]
    pub versions: serde_json::Value,
    /// Machine as TNO's harness saw it.
    #[serde(default)]
    pub machine: serde_json::Value,
    /// Its parameters.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Wall time of the harness.
    #[serde(default)]
    pub elapsed_s: Option<f64>,
    /// The figures.
    pub figures: Vec<TnoFigure>,
}

impl TnoReport {
    /// Parses run.py's stdout (one JSON object, possibly after stray lines).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match serde_json::from_str(s.trim()) {
            Ok(r) => Ok(r),
            Err(e) => {
                let i = s
                    .find('{')
                    .ok_or_else(|| anyhow!("no JSON object in TNO's output"))?;
                serde_json::from_str(&s[i..]).map_err(|_| anyhow!("TNO's JSON: {e}"))
            }
        }
    }

    /// The figure `name`, when it has a median.
    pub fn figure(&self, name: &str) -> Option<&TnoFigure> {
        self.figures
            .iter()
            .find(|f| f.name == name && f.median.is_some_and(f64::is_finite))
    }

    /// The figure `name` even without a median (to report its error).
    fn any_figure(&self, name: &str) -> Option<&TnoFigure> {
        self.figures.iter().find(|f| f.name == name)
    }
}

/// TNO's harness directory: `--tno-dir`, else `bench/peers/tno` of the source workspace.
pub fn tno_dir(args: &Args) -> PathBuf {
    args.tno_dir.clone().unwrap_or_else(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peers/tno");
        std::fs::canonicalize(&p).unwrap_or(p)
    })
}

/// The first line of `text` that says "error", else its last non-empty line.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.contains("error"))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "no output".into())
}

/// Makes sure TNO's venv is set up (setup.sh is idempotent: seconds when up to date); returns the
/// venv's interpreter. Fails with one line.
pub fn tno_preflight(dir: &Path) -> anyhow::Result<PathBuf> {
    for f in ["run.py", "setup.sh"] {
        if !dir.join(f).exists() {
            bail!(
                "--vs-tno: {} not found (pass --tno-dir DIR of bench/peers/tno)",
                dir.join(f).display()
            );
        }
    }
    eprintln!(
        "bench all: checking TNO's venv ({}/setup.sh)",
        dir.display()
    );
    let out = Command::new("bash")
        .arg(dir.join("setup.sh"))
        .stdin(Stdio::null())
        .output()
        .context("--vs-tno: cannot run bash for setup.sh")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("--vs-tno: TNO setup failed: {}", one_line(&err));
    }
    let py = dir.join(".venv/bin/python");
    if !py.exists() {
        bail!("--vs-tno: {} missing after setup.sh", py.display());
    }
    Ok(py)
}

/// run.py's arguments for our settings (round trips and pipelined counts as in `bench messages`).
pub fn tno_args(quick: bool, runs: Option<u32>, out: &Path) -> Vec<String> {
    let mut a: Vec<String> = if quick {
        ["all", "--quick", "--bits", "512", "--decrypt-ops", "20"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                "--runs".into(),
                runs.unwrap_or(3).to_string(),
                "--rtt-n".into(),
                "300".into(),
                "--pipeline-n".into(),
                "3000".into(),
                "--timeout-s".into(),
                "900".into(),
            ])
            .collect()
    } else {
        vec![
            "all".into(),
            "--bits".into(),
            "512,1024".into(),
            "--runs".into(),
            runs.unwrap_or(5).to_string(),
            "--decrypt-ops".into(),
            "50".into(),
            "--rtt-n".into(),
            "3000".into(),
            "--pipeline-n".into(),
            "5000".into(),
            "--bulk-mb".into(),
            "100".into(),
            "--timeout-s".into(),
            "1800".into(),
        ]
    };
    a.push("--out".into());
    a.push(out.display().to_string());
    a
}

/// Runs TNO's harness; its progress goes to stderr.
fn run_tno(py: &Path, dir: &Path, args: &[String]) -> anyhow::Result<TnoReport> {
    let out = Command::new(py)
        .arg(dir.join("run.py"))
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("run TNO's run.py")?;
    if !out.status.success() {
        bail!("TNO's run.py exited with {}", out.status);
    }
    TnoReport::parse(&String::from_utf8_lossy(&out.stdout))
}

/// TNO's run, as recorded in the report.
#[derive(Clone, Debug, Serialize)]
pub struct TnoSection {
    /// The command.
    pub command: String,
    /// Wall time.
    pub elapsed_s: f64,
    /// The error, if it failed.
    pub error: Option<String>,
    /// Its report.
    pub report: Option<TnoReport>,
}

// ---------------------------------------------------------------------------------------------
// peers and ratios

/// Which way is better for a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Times, latencies.
    Lower,
    /// Rates, throughputs.
    Higher,
}

/// Where a figure's peer comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerRef {
    /// Who (TNO, phe).
    pub who: &'static str,
    /// TNO's figure name in run.py's report, when TNO measures it.
    pub tno: Option<String>,
    /// TARGETS.md's median and how it reads.
    pub targets: Option<(f64, String)>,
    /// Said when neither is available.
    pub absent: Option<String>,
    /// Which way is better.
    pub better: Better,
}

/// The bit length in a figure name such as `keygen 1024-bit N, …`.
pub fn bits_in(name: &str) -> Option<u32> {
    let i = name.find("-bit")?;
    let digits: String = name[..i]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

/// The peer of one of our figures (bench name as in its [`Report`]).
pub fn peer_ref(bench: &str, figure: &str) -> Option<PeerRef> {
    let f = figure.trim();
    let tno = |name: &str, targets: Option<(f64, String)>, absent: Option<String>, better| {
        Some(PeerRef {
            who: "TNO",
            tno: Some(name.to_string()),
            targets,
            absent,
            better,
        })
    };
    match bench {
        "keygen" | "keygen --processes" if f.starts_with("keygen ") => {
            let bits = bits_in(f)?;
            let targets = match bits {
                512 => Some((12.0, "TNO 4.3.0 (TARGETS.md): 8.2 / 12.0 / 68.6 s".to_string())),
                1024 => Some((
                    338.5,
                    "TNO 4.3.0 (TARGETS.md): 23.6 / 338.5 / 424.5 s".to_string(),
                )),
                4096 => Some((
                    3.0 * 3600.0,
                    "TNO: not run (hours); TARGETS.md: TNO's pilot, 3 organisations over a WAN, about 3 h"
                        .to_string(),
                )),
                _ => None,
            };
            tno(
                &format!("keygen_{bits}_s"),
                targets,
                Some("TNO: not run (hours)".into()),
                Better::Lower,
            )
        }
        "keygen --processes" if f.starts_with("threshold decryption") => {
            let bits = bits_in(f)?;
            let targets = (bits == 1024).then(|| {
                (
                    17.0,
                    "TNO (TARGETS.md): 17 ms, all 3 parties in one process".to_string(),
                )
            });
            tno(
                &format!("decrypt_{bits}_ms"),
                targets,
                Some(format!(
                    "TNO: not run at {bits} bits (TARGETS.md: 17 ms at 1024 bits, all 3 parties)"
                )),
                Better::Lower,
            )
        }
        "paillier" => {
            // phe's figures are at 2048 bits only.
            let phe = |v: f64| {
                if bits_in(f) != Some(2048) {
                    return None;
                }
                Some(PeerRef {
                    who: "phe",
                    tno: None,
                    targets: Some((
                        v,
                        format!("python-paillier 1.5 (TARGETS.md), 2048-bit: {v}/s"),
                    )),
                    absent: None,
                    better: Better::Higher,
                })
            };
            if f.starts_with("encryption") {
                phe(96.0)
            } else if f.starts_with("decryption") {
                phe(339.0)
            } else if f.starts_with("homomorphic addition") {
                phe(106_000.0)
            } else {
                None
            }
        }
        "messages" => {
            let c = |v: f64, u: &str| {
                Some((v, format!("TNO comm 4.12 (TARGETS.md, unsigned): {v} {u}")))
            };
            match f {
                "signed round trip p50" => {
                    tno("comm_rtt_p50_ms", c(1.98, "ms"), None, Better::Lower)
                }
                "signed round trip p99" => {
                    tno("comm_rtt_p99_ms", c(5.3, "ms"), None, Better::Lower)
                }
                "pipelined signed messages" => tno(
                    "comm_pipelined_msgs_per_s",
                    c(2368.0, "msg/s"),
                    None,
                    Better::Higher,
                ),
                _ => None,
            }
        }
        "blob" if f == "blob transfer until signed receipt" => tno(
            "comm_bulk_mb_per_s",
            Some((
                97.0,
                "TNO comm 4.12 bulk (TARGETS.md, no fsync): 97 MB/s".into(),
            )),
            None,
            Better::Higher,
        ),
        _ => None,
    }
}

/// How many times faster ours is (> 1: ours), from the medians.
pub fn ratio(ours: f64, peer: f64, better: Better) -> Option<f64> {
    let r = match better {
        Better::Lower => peer / ours,
        Better::Higher => ours / peer,
    };
    (r.is_finite() && r > 0.0).then_some(r)
}

fn fmt_factor(r: f64) -> String {
    if r >= 10.0 {
        group(r.round())
    } else if r >= 2.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

/// "ours 57× faster" / "TNO 1.6× faster".
pub fn ratio_text(r: f64, who: &str) -> String {
    if (0.995..1.005).contains(&r) {
        format!("about the same as {who}")
    } else if r >= 1.0 {
        format!("ours {}× faster", fmt_factor(r))
    } else {
        format!("{who} {}× faster", fmt_factor(1.0 / r))
    }
}

/// One figure of ours with its target verdict and peer.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Figure name.
    pub figure: String,
    /// Unit.
    pub unit: String,
    /// Minimum.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Maximum.
    pub max: f64,
    /// Target (text and check).
    pub target: Option<Target>,
    /// Met (null: no checkable target).
    pub met: Option<bool>,
    /// "met", "not met" or "n.a.".
    pub verdict: &'static str,
    /// The peer's figure.
    pub peer: Option<String>,
    /// Where the peer figure comes from: "TNO (this run)", "TARGETS.md" or "bench".
    pub peer_source: Option<String>,
    /// The peer's median, in our unit.
    pub peer_median: Option<f64>,
    /// How many times faster ours is (< 1: the peer is faster).
    pub ratio: Option<f64>,
    /// The ratio in words.
    pub ratio_text: Option<String>,
}

fn tno_extra_text(f: &TnoFigure) -> String {
    let e = &f.extra;
    let mut s = String::new();
    if let Some(r) = e["rounds_median"].as_f64() {
        let _ = write!(s, "; rounds median {}", num(r));
        if let (Some(a), Some(b)) = (e["rounds_min"].as_f64(), e["rounds_max"].as_f64()) {
            let _ = write!(s, " ({} – {})", num(a), num(b));
        }
    }
    if let Some(x) = e["s_per_round"].as_f64() {
        let _ = write!(s, ", {} s/round", num(x));
    }
    if let Some(x) = e["bytes_sent_median"].as_f64() {
        let _ = write!(s, ", {} MB sent", num(x / 1e6));
    }
    if let Some(x) = e["bf_tests_median"].as_f64() {
        let _ = write!(s, ", {} BF tests", num(x));
    }
    if let Some(t) = e["transport"].as_str() {
        // "https, mutual TLS (RSA-2048 certificates …)" → "https, mutual TLS"
        let short = t.split(" (").next().unwrap_or(t);
        let _ = write!(s, "; {short}");
    }
    let timed_out = e["timed_out_runs"].as_u64().unwrap_or(0);
    if timed_out > 0 {
        let _ = write!(
            s,
            "; {timed_out} run(s) timed out (left out: median optimistic)"
        );
    }
    s
}

/// Our figure's row: target verdict, and the peer from TNO's run (when given and it has the
/// figure), else TARGETS.md, else the bench's own peer text.
pub fn row(bench: &str, f: &Figure, tno: Option<&TnoReport>) -> Row {
    let met = f.met();
    let mut r = Row {
        figure: f.name.trim().to_string(),
        unit: f.unit.clone(),
        min: f.min,
        median: f.median,
        max: f.max,
        target: f.target.clone(),
        met,
        verdict: match met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "n.a.",
        },
        peer: f.peer.clone(),
        peer_source: f.peer.as_ref().map(|_| "bench".to_string()),
        peer_median: None,
        ratio: None,
        ratio_text: None,
    };
    let Some(p) = peer_ref(bench, &f.name) else {
        return r;
    };
    let from_tno = tno.zip(p.tno.as_deref()).and_then(|(t, n)| t.figure(n));
    let (text, source, median) = if let Some(tf) = from_tno {
        let med = tf.median.unwrap_or(f64::NAN);
        (
            format!(
                "TNO (this run, {} runs): {} {}{}",
                tf.runs,
                nums(opt(tf.min), med, opt(tf.max)),
                tf.unit,
                tno_extra_text(tf)
            ),
            "TNO (this run)",
            Some(med),
        )
    } else {
        // Why TNO's figure is missing from a --vs-tno run, if it ran at all.
        let failed = tno
            .zip(p.tno.as_deref())
            .and_then(|(t, n)| t.any_figure(n))
            .map(|tf| {
                let err = tf.extra["error"].as_str().unwrap_or("no successful run");
                format!("TNO failed this run ({err}); ")
            })
            .unwrap_or_default();
        match (&p.targets, &p.absent) {
            (Some((v, t)), _) => (format!("{failed}{t}"), "TARGETS.md", Some(*v)),
            (None, Some(a)) => (format!("{failed}{a}"), "TARGETS.md", None),
            (None, None) => return r,
        }
    };
    r.peer = Some(text);
    r.peer_source = Some(source.into());
    r.peer_median = median;
    r.ratio = median.and_then(|m| ratio(f.median, m, p.better));
    r.ratio_text = r.ratio.map(|x| ratio_text(x, p.who));
    r
}

// ---------------------------------------------------------------------------------------------
// the report

/// The machine and its load.
#[derive(Clone, Debug, Serialize)]
pub struct MachineInfo {
    /// Logical cores.
    pub cores: usize,
    /// CPU model.
    pub cpu: String,
    /// Memory, GiB.
    pub mem_gib: Option<f64>,
    /// /proc/loadavg (1, 5, 15 min) at the start.
    pub load_start: Option<[f64; 3]>,
    /// At the end.
    pub load_end: Option<[f64; 3]>,
}

/// One benchmark's entry.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// Short name.
    pub name: String,
    /// Title.
    pub title: String,
    /// The equivalent command.
    pub command: String,
    /// Wall time of the benchmark.
    pub elapsed_s: f64,
    /// The error, if it failed.
    pub error: Option<String>,
    /// The bench's name in its report.
    pub bench: Option<String>,
    /// Its parameters.
    pub params: serde_json::Value,
    /// Its figures.
    pub rows: Vec<Row>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct AllReport {
    /// "caucus bench all".
    pub report: &'static str,
    /// UTC date and time of the start.
    pub date: String,
    /// Git commit of the source workspace, when available (`+dirty` with local changes).
    pub git_commit: Option<String>,
    /// "full" or "quick".
    pub mode: &'static str,
    /// Whether TNO ran in this run.
    pub vs_tno: bool,
    /// Machine.
    pub machine: MachineInfo,
    /// Total wall time.
    pub elapsed_s: f64,
    /// Our benchmarks.
    pub benches: Vec<Entry>,
    /// TNO's run.
    pub tno: Option<TnoSection>,
    /// Names of what failed.
    pub failed: Vec<String>,
}

/// Builds the entries from the outcomes, with peers from `tno` when given.
pub fn entries(outcomes: &[Outcome], tno: Option<&TnoReport>) -> Vec<Entry> {
    outcomes
        .iter()
        .map(|o| {
            let (error, bench, params, rows) = match &o.result {
                Ok(r) => (
                    None,
                    Some(r.bench.clone()),
                    r.params.clone(),
                    r.figures.iter().map(|f| row(&r.bench, f, tno)).collect(),
                ),
                Err(e) => (Some(e.clone()), None, serde_json::Value::Null, vec![]),
            };
            Entry {
                name: o.name.clone(),
                title: o.title.clone(),
                command: o.command.clone(),
                elapsed_s: o.elapsed_s,
                error,
                bench,
                params,
                rows,
            }
        })
        .collect()
}

/// Names of the failed parts.
pub fn failed(benches: &[Entry], tno: Option<&TnoSection>) -> Vec<String> {
    benches
        .iter()
        .filter(|e| e.error.is_some())
        .map(|e| e.name.clone())
        .chain(tno.filter(|t| t.error.is_some()).map(|_| "tno".to_string()))
        .collect()
}

/// Groups thousands: 12345 → "12,345".
fn group(x: f64) -> String {
    let neg = x < 0.0;
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if neg { format!("-{out}") } else { out }
}

/// Decimals for numbers of the size of `m`: about three significant digits.
fn precision(m: f64) -> usize {
    let a = m.abs();
    if a >= 1000.0 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    }
}

fn with_precision(x: f64, p: usize) -> String {
    if !x.is_finite() {
        "—".into()
    } else if p == 0 {
        group(x)
    } else {
        format!("{x:.p$}")
    }
}

fn tiny(x: f64) -> bool {
    x != 0.0 && x.abs() < 0.001
}

/// A number with about three significant digits (integers as integers).
pub fn num(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 {
        group(x)
    } else if tiny(x) {
        format!("{x:.2e}")
    } else {
        with_precision(x, precision(x))
    }
}

/// `min / median / max` with one precision, chosen from the median.
pub fn nums(min: f64, median: f64, max: f64) -> String {
    let v = [min, median, max];
    let f: Vec<String> = if v.iter().all(|x| !x.is_finite() || x.fract() == 0.0) {
        v.iter().map(|&x| with_precision(x, 0)).collect()
    } else if tiny(median) {
        v.iter().map(|&x| format!("{x:.2e}")).collect()
    } else {
        let p = precision(median);
        v.iter().map(|&x| with_precision(x, p)).collect()
    };
    f.join(" / ")
}

fn opt(x: Option<f64>) -> f64 {
    x.unwrap_or(f64::NAN)
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn load_text(l: Option<[f64; 3]>) -> String {
    l.map(|[a, b, c]| format!("{a:.2} / {b:.2} / {c:.2}"))
        .unwrap_or_else(|| "unknown".into())
}

/// The Markdown report; `level` is the heading level of its title (sections one below).
pub fn markdown(r: &AllReport, level: usize) -> String {
    let h1 = "#".repeat(level);
    let h2 = "#".repeat(level + 1);
    let mut s = String::new();
    let _ = writeln!(s, "{h1} caucus benchmark report ({})\n", r.mode);
    let _ = writeln!(
        s,
        "- date: {}; commit: {}; total wall time {}",
        r.date,
        r.git_commit.as_deref().unwrap_or("unknown"),
        duration(r.elapsed_s)
    );
    let _ = writeln!(
        s,
        "- machine: {} cores, {}, {} GiB; load average (1 / 5 / 15 min) at start {}, at end {}",
        r.machine.cores,
        r.machine.cpu,
        r.machine
            .mem_gib
            .map(|m| m.to_string())
            .unwrap_or_else(|| "?".into()),
        load_text(r.machine.load_start),
        load_text(r.machine.load_end)
    );
    let _ = writeln!(
        s,
        "- peer: {}",
        if r.vs_tno {
            "TNO's Python packages measured in this run (`--vs-tno`); TARGETS.md where TNO has no run"
        } else {
            "figures from TARGETS.md (run with `--vs-tno` to measure TNO here)"
        }
    );
    if r.failed.is_empty() {
        let _ = writeln!(s, "- all benchmarks ran");
    } else {
        let _ = writeln!(s, "- **failed**: {}", r.failed.join(", "));
    }
    s.push('\n');

    // Targets at a glance.
    let checked: Vec<(&Entry, &Row)> = r
        .benches
        .iter()
        .flat_map(|e| e.rows.iter().map(move |x| (e, x)))
        .filter(|(_, x)| x.met.is_some())
        .collect();
    if !checked.is_empty() {
        let _ = writeln!(s, "{h2} Targets\n");
        let _ = writeln!(s, "| benchmark | figure | median | target | met? |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (e, x) in checked {
            let _ = writeln!(
                s,
                "| {} | {} | {} {} | {} | {} |",
                cell(&e.name),
                cell(&x.figure),
                num(x.median),
                cell(&x.unit),
                cell(x.target.as_ref().map(|t| t.text.as_str()).unwrap_or("")),
                verdict_md(x)
            );
        }
        s.push('\n');
    }

    for e in &r.benches {
        section_head(
            &mut s,
            &format!("{h2} {}", e.title),
            &e.command,
            e.elapsed_s,
            &e.error,
        );
        if e.error.is_some() {
            continue;
        }
        let _ = writeln!(s, "params: `{}`\n", e.params.to_string().replace('`', "'"));
        s.push_str(&rows_table(&e.rows));
        s.push('\n');
    }

    if let Some(t) = &r.tno {
        let title = format!("{h2} TNO (Python, this run)");
        section_head(&mut s, &title, &t.command, t.elapsed_s, &t.error);
        if let Some(rep) = &t.report {
            if let Some(v) = rep.versions.get("tno.mpc.protocols.distributed_keygen") {
                let _ = writeln!(
                    s,
                    "distributed_keygen {}, communication {}, gmpy2 {}\n",
                    v.as_str().unwrap_or("?"),
                    rep.versions["tno.mpc.communication"]
                        .as_str()
                        .unwrap_or("?"),
                    rep.versions["gmpy2"].as_str().unwrap_or("?")
                );
            }
            let _ = writeln!(s, "| figure | runs | min / median / max | details |");
            let _ = writeln!(s, "|---|---|---|---|");
            for f in &rep.figures {
                let mut details = tno_extra_text(f).trim_start_matches("; ").to_string();
                if let Some(err) = f.extra["error"].as_str() {
                    details = format!("error: {err}");
                }
                let _ = writeln!(
                    s,
                    "| {} | {} | {} {} | {} |",
                    cell(&f.name),
                    f.runs,
                    nums(opt(f.min), opt(f.median), opt(f.max)),
                    cell(&f.unit),
                    cell(details.trim_start_matches(", "))
                );
            }
            s.push('\n');
        }
    }
    s
}

/// A report section's heading, its command with the time it took, and its error if it failed.
fn section_head(s: &mut String, title: &str, command: &str, secs: f64, error: &Option<String>) {
    let failed = if error.is_some() {
        " — **FAILED**"
    } else {
        ""
    };
    let _ = writeln!(s, "{title}\n");
    let _ = writeln!(s, "`{command}` ({}){failed}\n", duration(secs));
    if let Some(err) = error {
        let _ = writeln!(s, "error: `{}`\n", err.replace('`', "'").replace('\n', " "));
    }
}

fn verdict_md(x: &Row) -> &'static str {
    match x.met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "n.a.",
    }
}

/// One bench's table: figure | min / median / max | target | met? | peer | ratio.
pub fn rows_table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| figure | min / median / max | target | met? | peer | ratio |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for x in rows {
        let _ = writeln!(
            s,
            "| {} | {} {} | {} | {} | {} | {} |",
            cell(&x.figure),
            nums(x.min, x.median, x.max),
            cell(&x.unit),
            cell(x.target.as_ref().map(|t| t.text.as_str()).unwrap_or("—")),
            verdict_md(x),
            cell(x.peer.as_deref().unwrap_or("—")),
            cell(x.ratio_text.as_deref().unwrap_or("—"))
        );
    }
    s
}

fn duration(s: f64) -> String {
    if s >= 120.0 {
        format!("{:.0} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// Byte offset of the first line at or after `from` that is exactly `marker` (surrounding
/// whitespace allowed), so that a marker quoted in the text is not taken for one.
fn marker_line(doc: &str, marker: &str, from: usize) -> Option<usize> {
    let mut off = 0;
    for line in doc.split_inclusive('\n') {
        if off >= from && line.trim() == marker {
            return Some(off);
        }
        off += line.len();
    }
    None
}

/// Replaces what lies between the lines [`REPORT_BEGIN`] and [`REPORT_END`] in `doc` with `md`.
pub fn splice(doc: &str, md: &str) -> anyhow::Result<String> {
    let b = marker_line(doc, REPORT_BEGIN, 0).ok_or_else(|| anyhow!("no line {REPORT_BEGIN}"))?;
    let e = marker_line(doc, REPORT_END, b)
        .ok_or_else(|| anyhow!("no line {REPORT_END} after {REPORT_BEGIN}"))?;
    Ok(format!(
        "{}{REPORT_BEGIN}\n\n{}\n\n{}",
        &doc[..b],
        md.trim_end(),
        &doc[e..]
    ))
}

// ---------------------------------------------------------------------------------------------
// machine, date, commit

fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let v: Vec<f64> = s
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    Some([*v.first()?, *v.get(1)?, *v.get(2)?])
}

fn mem_gib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = s
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((kib / (1024.0 * 1024.0) * 10.0).round() / 10.0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn git_commit() -> Option<String> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&ws)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"]).filter(|h| !h.is_empty())?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}

// ---------------------------------------------------------------------------------------------
// the command

/// Runs `caucus bench all`; errors when any part failed (after writing the report).
pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let date = utc(crate::now());
    let load_start = loadavg();
    let mut all = steps(args.quick, args.json);
    if !args.only.is_empty() {
        let known: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
        for o in &args.only {
            if !known.contains(o) {
                bail!(
                    "--only: unknown benchmark {o:?} (known: {})",
                    known.join(", ")
                );
            }
        }
        all.retain(|s| args.only.contains(&s.name));
    }
    // TNO's venv before any benchmark, so a missing Python or network fails at once.
    let tno_setup = if args.vs_tno {
        let dir = tno_dir(&args);
        let py = tno_preflight(&dir)?;
        Some((dir, py))
    } else {
        None
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let out_dir = std::fs::canonicalize(&args.out).unwrap_or_else(|_| args.out.clone());

    let json = args.json;
    let outcomes = run_steps(all, |i, n, o| {
        match &o.result {
            Ok(r) if !json => r.print(false),
            Ok(_) => {}
            Err(e) => eprintln!("bench all: {} FAILED: {e}", o.name),
        }
        eprintln!(
            "bench all: [{i}/{n}] {} done in {:.1} s",
            o.name, o.elapsed_s
        );
    });

    let tno = tno_setup.map(|(dir, py)| {
        let tno_json = out_dir.join("tno.json");
        let targs = tno_args(args.quick, args.tno_runs, &tno_json);
        let command = format!(
            "{} {} {}",
            py.display(),
            dir.join("run.py").display(),
            targs.join(" ")
        );
        eprintln!("bench all: TNO: {command}");
        let t = Instant::now();
        let res = guarded(|| run_tno(&py, &dir, &targs));
        let elapsed_s = t.elapsed().as_secs_f64();
        eprintln!("bench all: TNO done in {elapsed_s:.1} s");
        let (report, error) = match res {
            Ok(r) => (Some(r), None),
            Err(e) => {
                eprintln!("bench all: TNO FAILED: {e}");
                (None, Some(e))
            }
        };
        TnoSection {
            command,
            elapsed_s,
            error,
            report,
        }
    });

    let benches = entries(&outcomes, tno.as_ref().and_then(|t| t.report.as_ref()));
    let failed = failed(&benches, tno.as_ref());
    let m = super::machine();
    let report = AllReport {
        report: "caucus bench all",
        date,
        git_commit: git_commit(),
        mode: if args.quick { "quick" } else { "full" },
        vs_tno: args.vs_tno,
        machine: MachineInfo {
            cores: m.cores,
            cpu: m.cpu,
            mem_gib: mem_gib(),
            load_start,
            load_end: loadavg(),
        },
        elapsed_s: started.elapsed().as_secs_f64(),
        benches,
        tno,
        failed,
    };
    let md = markdown(&report, 1);
    let json_text = serde_json::to_string_pretty(&report)?;
    std::fs::write(out_dir.join("report.json"), format!("{json_text}\n"))?;
    std::fs::write(out_dir.join("report.md"), &md)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("\n{md}");
    }
    eprintln!(
        "bench all: wrote {} and {}",
        out_dir.join("report.md").display(),
        out_dir.join("report.json").display()
    );
    if let Some(p) = &args.write_benchmarks {
        let doc = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        let new = splice(&doc, &markdown(&report, 3))
            .with_context(|| format!("{}: report section", p.display()))?;
        std::fs::write(p, new)?;
        eprintln!("bench all: rewrote the report section of {}", p.display());
    }
    if !report.failed.is_empty() {
        bail!(
            "{} of {} part(s) failed: {} (see {})",
            report.failed.len(),
            report.benches.len() + usize::from(report.tno.is_some()),
            report.failed.join(", "),
            out_dir.join("report.md").display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Cmp, Stat, machine};
    use super::*;

    const TNO_FIXTURE: &str = include_str!("../../tests/fixtures/tno-report.json");

    fn fig(name: &str, unit: &str, samples: &[f64]) -> Figure {
        Figure::from_samples(name, unit, samples)
    }

    fn report(bench: &str, figures: Vec<Figure>) -> Report {
        Report {
            bench: bench.into(),
            machine: machine(),
            params: serde_json::json!({"runs": 3}),
            figures,
        }
    }

    #[test]
    fn targets_are_met_at_the_boundary_and_not_beyond() {
        let t = Target::at_most(1.0, "≤ 1 s");
        assert_eq!(t.met(1.0, 9.0), Some(true));
        assert_eq!(t.met(1.000_001, 1.1), Some(false));
        assert_eq!(
            t.met(0.5, 2.0),
            Some(true),
            "the median is checked, not the max"
        );
        let t = Target::at_least(50.0, "≥ 50%");
        assert_eq!(t.met(50.0, 50.0), Some(true));
        assert_eq!(t.met(49.999, 80.0), Some(false));
        assert_eq!(t.met(f64::NAN, f64::NAN), None, "no samples: n.a.");
        assert_eq!(Target::text("≤ 20 ms at 2048 bits").met(1.0, 1.0), None);
        let t = Target::at_most(0.0, "0 failures").on(Stat::Max);
        assert_eq!(t.met(0.0, 0.0), Some(true));
        assert_eq!(t.met(0.0, 1.0), Some(false), "one failing run is not met");
    }

    #[test]
    fn figures_check_their_median_in_their_own_unit() {
        // 1024-bit keygen: medians 0.9 s (met) and 1.2 s (not met).
        let ok = fig("keygen", "s", &[0.5, 0.9, 3.0]).target(Target::at_most(1.0, "≤ 1 s"));
        let bad = fig("keygen", "s", &[0.5, 1.2, 1.3]).target(Target::at_most(1.0, "≤ 1 s"));
        assert_eq!((ok.met(), bad.met()), (Some(true), Some(false)));
        // Even count: the median is the mean of the middle two (2,900 and 3,100 → 3,000).
        let rate = fig("pipelined", "msg/s", &[2900.0, 3100.0])
            .target(Target::at_least(3000.0, "≥ 3,000 msg/s"));
        assert_eq!(rate.met(), Some(true));
        assert_eq!(fig("x", "ms", &[1.0]).target("≤ 20 ms").met(), None);
        assert_eq!(
            fig("x", "ms", &[]).target(Target::at_most(20.0, "")).met(),
            None
        );
    }

    #[test]
    fn figure_json_keeps_the_target_text_and_adds_the_check() {
        let f = fig("round trip p50", "ms", &[1.2]).target(Target::at_most(1.0, "≤ 1 ms"));
        let v = serde_json::to_value(&f).expect("json");
        assert_eq!(v["target"], "≤ 1 ms");
        assert_eq!(v["target_check"]["cmp"], "at_most");
        assert_eq!(v["target_check"]["value"], 1.0);
        assert_eq!(v["target_check"]["stat"], "median");
        assert_eq!(v["met"], false);
        let v = serde_json::to_value(fig("x", "s", &[1.0]).target("text only")).expect("json");
        assert_eq!(v["target"], "text only");
        assert!(v["target_check"].is_null() && v["met"].is_null());
        let v = serde_json::to_value(fig("x", "s", &[1.0])).expect("json");
        assert!(v["target"].is_null());
        assert_eq!(
            serde_json::to_value(Cmp::AtLeast).expect("json"),
            "at_least"
        );
    }

    #[test]
    fn tno_json_parses_and_gives_peer_rows_with_ratios() {
        let tno = TnoReport::parse(TNO_FIXTURE).expect("parse");
        assert_eq!(tno.figures.len(), 8);
        assert!(
            tno.figure("keygen_1024_s").is_none(),
            "no median: not usable"
        );
        // stray lines before the object are tolerated
        let again = TnoReport::parse(&format!("warning: x\n{TNO_FIXTURE}")).expect("parse");
        assert_eq!(again.figures.len(), 8);
        assert!(TnoReport::parse("no json").is_err());

        // keygen 512: TNO 12.0 s vs ours 0.2 s → ours 60× faster, with rounds and s/round.
        let k = fig("keygen 512-bit N, 3 parties", "s", &[0.1, 0.2, 0.7]);
        let r = row("keygen", &k, Some(&tno));
        assert_eq!(r.peer_source.as_deref(), Some("TNO (this run)"));
        assert_eq!(r.peer_median, Some(12.0));
        assert!((r.ratio.expect("ratio") - 60.0).abs() < 1e-9);
        assert_eq!(r.ratio_text.as_deref(), Some("ours 60× faster"));
        let p = r.peer.expect("peer");
        assert!(p.contains("rounds median 65 (42 – 354)"), "{p}");
        assert!(p.contains("0.190 s/round"), "{p}");

        // keygen 1024: TNO timed out this run → TARGETS.md's figure, saying why.
        let k = fig("keygen 1024-bit N, 3 processes, wall", "s", &[0.677]);
        let r = row("keygen --processes", &k, Some(&tno));
        assert_eq!(r.peer_source.as_deref(), Some("TARGETS.md"));
        assert_eq!(r.peer_median, Some(338.5));
        assert!(
            r.peer
                .as_deref()
                .unwrap_or("")
                .contains("timed out after 900 s")
        );
        assert_eq!(r.ratio_text.as_deref(), Some("ours 500× faster"));

        // keygen 2048: no TNO run at all, no TARGETS figure.
        let r = row(
            "keygen --processes",
            &fig("keygen 2048-bit N, 3 processes, wall", "s", &[9.0]),
            Some(&tno),
        );
        assert_eq!(r.peer.as_deref(), Some("TNO: not run (hours)"));
        assert_eq!((r.ratio, r.ratio_text), (None, None));
        // 4096: TNO's pilot from TARGETS.md (3 h = 10,800 s).
        let r = row(
            "keygen --processes",
            &fig("keygen 4096-bit N, 3 processes, wall", "s", &[90.0]),
            Some(&tno),
        );
        assert_eq!(r.peer_median, Some(10_800.0));
        assert_eq!(r.ratio_text.as_deref(), Some("ours 120× faster"));

        // Latency (lower is better) where TNO wins, and a rate (higher is better).
        let r = row(
            "messages",
            &fig("signed round trip p50", "ms", &[6.0]),
            Some(&tno),
        );
        assert!((r.ratio.expect("ratio") - 0.5).abs() < 1e-9);
        assert_eq!(r.ratio_text.as_deref(), Some("TNO 2.0× faster"));
        let r = row(
            "messages",
            &fig("pipelined signed messages", "msg/s", &[2400.0]),
            Some(&tno),
        );
        assert_eq!(r.ratio_text.as_deref(), Some("ours 1.50× faster"));
        let r = row(
            "blob",
            &fig("blob transfer until signed receipt", "MB/s", &[100.0]),
            Some(&tno),
        );
        assert_eq!(r.ratio_text.as_deref(), Some("ours 2.5× faster"));
        let r = row(
            "blob",
            &fig("blob transfer until signed receipt", "MB/s", &[40.1]),
            Some(&tno),
        );
        assert_eq!(r.ratio_text.as_deref(), Some("about the same as TNO"));

        // Without --vs-tno: TARGETS.md's figures.
        let r = row(
            "messages",
            &fig("signed round trip p50", "ms", &[0.99]),
            None,
        );
        assert_eq!(r.peer_source.as_deref(), Some("TARGETS.md"));
        assert_eq!(r.peer_median, Some(1.98));
        assert_eq!(r.ratio_text.as_deref(), Some("ours 2.0× faster"));
        // Decryption at 2048 bits: different size from TNO's 1024-bit figure: no ratio.
        let d = fig(
            "threshold decryption 2048-bit N, t+1 = 2 processes",
            "ms",
            &[40.0],
        );
        let r = row("keygen --processes", &d, None);
        assert!(
            r.peer
                .as_deref()
                .unwrap_or("")
                .starts_with("TNO: not run at 2048 bits")
        );
        assert_eq!(r.ratio, None);
        // A figure without a mapped peer keeps its bench's own peer text.
        let e = fig("latency p50", "ms", &[3.0]).peer("own text");
        let r = row("enroll", &e, Some(&tno));
        assert_eq!(
            (r.peer.as_deref(), r.peer_source.as_deref()),
            (Some("own text"), Some("bench"))
        );
        // phe at 2048 bits only.
        let r = row(
            "paillier",
            &fig("encryption 2048-bit, standard r^N", "ops/s", &[48.0]),
            None,
        );
        assert_eq!(r.ratio_text.as_deref(), Some("phe 2.0× faster"));
        let r = row(
            "paillier",
            &fig("encryption 1024-bit, standard r^N", "ops/s", &[48.0]),
            None,
        );
        assert_eq!(r.ratio, None);
    }

    fn synthetic_steps(log: std::rc::Rc<std::cell::RefCell<Vec<&'static str>>>) -> Vec<Step> {
        let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log);
        vec![
            Step::new("first", "First", "caucus bench first", move || {
                l1.borrow_mut().push("first");
                Ok(report(
                    "keygen",
                    vec![
                        fig("keygen 1024-bit N, 3 parties", "s", &[0.5, 0.7, 1.6])
                            .target(Target::at_most(1.0, "median ≤ 1 s")),
                    ],
                ))
            }),
            Step::new("broken", "Broken", "caucus bench broken", move || {
                l2.borrow_mut().push("broken");
                Err(anyhow!("synthetic failure")).context("setting up")
            }),
            Step::new("panics", "Panics", "caucus bench panics", move || {
                l3.borrow_mut().push("panics");
                panic!("synthetic panic")
            }),
            Step::new("last", "Last", "caucus bench last", move || {
                l4.borrow_mut().push("last");
                Ok(report(
                    "enroll",
                    vec![
                        fig("failures", "count", &[0.0, 0.0, 2.0])
                            .target(Target::at_most(0.0, "0 failures in every run").on(Stat::Max)),
                    ],
                ))
            }),
        ]
    }

    fn all_report(benches: Vec<Entry>, tno: Option<TnoSection>) -> AllReport {
        AllReport {
            report: "caucus bench all",
            date: utc(0),
            git_commit: Some("abc".into()),
            mode: "quick",
            vs_tno: tno.is_some(),
            machine: MachineInfo {
                cores: 2,
                cpu: "Test CPU".into(),
                mem_gib: Some(23.5),
                load_start: Some([1.0, 0.5, 0.25]),
                load_end: None,
            },
            elapsed_s: 3.0,
            failed: failed(&benches, tno.as_ref()),
            benches,
            tno,
        }
    }

    #[test]
    fn a_failing_bench_is_recorded_and_the_rest_still_run() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut seen = Vec::new();
        let outcomes = run_steps(synthetic_steps(log.clone()), |i, n, o| {
            seen.push((i, n, o.name.clone()))
        });
        assert_eq!(*log.borrow(), ["first", "broken", "panics", "last"]);
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[3], (4, 4, "last".to_string()));
        assert!(outcomes[0].result.is_ok() && outcomes[3].result.is_ok());
        let e1 = outcomes[1].result.as_ref().expect_err("error");
        assert_eq!(e1, "setting up: synthetic failure");
        let e2 = outcomes[2].result.as_ref().expect_err("error");
        assert_eq!(e2, "panicked: synthetic panic");

        let benches = entries(&outcomes, None);
        assert_eq!(failed(&benches, None), ["broken", "panics"]);
        assert_eq!(
            benches[3].rows[0].verdict, "not met",
            "one run had failures"
        );
        let r = all_report(benches, None);
        let md = markdown(&r, 1);
        assert!(md.contains("- **failed**: broken, panics"), "{md}");
        assert!(
            md.contains("`caucus bench broken` (0.0 s) — **FAILED**"),
            "{md}"
        );
        assert!(
            md.contains("error: `setting up: synthetic failure`"),
            "{md}"
        );
        assert!(
            md.contains("## Last"),
            "the bench after the failures is reported"
        );
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["benches"][1]["error"], "setting up: synthetic failure");
        assert_eq!(v["failed"][1], "panics");
    }

    #[test]
    fn markdown_has_one_table_row_per_figure() {
        let tno = TnoReport::parse(TNO_FIXTURE).expect("parse");
        let outcomes = vec![Outcome {
            name: "keygen".into(),
            title: "Keygen, in-process".into(),
            command: "caucus bench keygen --quick".into(),
            elapsed_s: 12.25,
            result: Ok(report(
                "keygen",
                vec![
                    fig("keygen 512-bit N, 3 parties", "s", &[0.131, 0.2, 0.764]),
                    fig("keygen 1024-bit N, 3 parties", "s", &[0.282, 0.698, 1.616])
                        .target(Target::at_most(1.0, "median ≤ 1 s")),
                    fig("  batches (1024)", "batches", &[1.0, 2.0, 8.0]),
                    fig("a | b", "x", &[1234.4]),
                ],
            )),
        }];
        let section = TnoSection {
            command: "python run.py all --quick".into(),
            elapsed_s: 100.0,
            error: None,
            report: Some(tno.clone()),
        };
        let r = all_report(entries(&outcomes, Some(&tno)), Some(section));
        let md = markdown(&r, 1);
        let lines: Vec<&str> = md.lines().collect();
        let has = |l: &str| assert!(lines.contains(&l), "missing line {l:?} in\n{md}");
        has("# caucus benchmark report (quick)");
        has("- date: 1970-01-01T00:00:00Z; commit: abc; total wall time 3.0 s");
        has(
            "- machine: 2 cores, Test CPU, 23.5 GiB; load average (1 / 5 / 15 min) at start 1.00 / 0.50 / 0.25, at end unknown",
        );
        has("| figure | min / median / max | target | met? | peer | ratio |");
        has(
            "| keygen 512-bit N, 3 parties | 0.131 / 0.200 / 0.764 s | — | n.a. | TNO (this run, 3 runs): 8 / 12 / 60 s; rounds median 65 (42 – 354), 0.190 s/round, 25 MB sent, 160 BF tests | ours 60× faster |",
        );
        has(
            "| keygen 1024-bit N, 3 parties | 0.282 / 0.698 / 1.616 s | median ≤ 1 s | met | TNO failed this run (timed out after 900 s); TNO 4.3.0 (TARGETS.md): 23.6 / 338.5 / 424.5 s | ours 485× faster |",
        );
        has("| batches (1024) | 1 / 2 / 8 batches | — | n.a. | — | — |");
        has("| a \\| b | 1,234 / 1,234 / 1,234 x | — | n.a. | — | — |");
        // Targets at a glance, and TNO's own table.
        has("| keygen | keygen 1024-bit N, 3 parties | 0.698 s | median ≤ 1 s | met |");
        has("## TNO (Python, this run)");
        has("distributed_keygen 4.3.0, communication 4.12.0, gmpy2 2.3.2");
        has("| keygen_1024_s | 0 | — / — / — s | error: timed out after 900 s |");
        has("| comm_rtt_p50_ms | 3 | 2.90 / 3.00 / 3.10 ms | https, mutual TLS |");
        // The JSON report holds the structured target and the verdict.
        let v = serde_json::to_value(&r).expect("json");
        let row = &v["benches"][0]["rows"][1];
        assert_eq!(row["target"]["cmp"], "at_most");
        assert_eq!(row["met"], true);
        assert_eq!(row["verdict"], "met");
        assert_eq!(v["tno"]["report"]["figures"][0]["name"], "keygen_512_s");
    }

    #[test]
    fn splicing_replaces_only_the_marked_section() {
        // Markers quoted inside a line are text, not markers.
        let doc = "# B\n\nsee `<!-- report:begin -->` and `<!-- report:end -->`\n\n<!-- report:begin -->\nold\n<!-- report:end -->\n\nafter\n";
        let new = splice(doc, "### report\n| a |\n").expect("splice");
        assert_eq!(
            new,
            "# B\n\nsee `<!-- report:begin -->` and `<!-- report:end -->`\n\n<!-- report:begin -->\n\n### report\n| a |\n\n<!-- report:end -->\n\nafter\n"
        );
        assert_eq!(
            splice(&new, "### report\n| a |\n").expect("again"),
            new,
            "idempotent"
        );
        assert!(splice("no markers", "x").is_err());
        assert!(splice("<!-- report:end -->\n<!-- report:begin -->\n", "x").is_err());
        // The repository's BENCHMARKS.md has the markers.
        let ours = include_str!("../../../BENCHMARKS.md");
        let spliced = splice(ours, "### caucus benchmark report (full)").expect("BENCHMARKS.md");
        assert!(spliced.contains(
            "<!-- report:begin -->\n\n### caucus benchmark report (full)\n\n<!-- report:end -->"
        ));
        assert!(!spliced.contains("Placeholder"));
    }

    #[test]
    fn helpers() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(bits_in("keygen 2048-bit N, 3 processes, wall"), Some(2048));
        assert_eq!(bits_in("threshold decryption 1024-bit N"), Some(1024));
        assert_eq!(bits_in("signed round trip p50"), None);
        assert_eq!(num(12345.6), "12,346");
        assert_eq!(num(0.0004), "4.00e-4");
        assert_eq!(num(f64::NAN), "—");
        assert_eq!(
            one_line("a\nsetup.sh: error: no network\n  details\n"),
            "setup.sh: error: no network"
        );
        assert_eq!(one_line("x\nlast\n\n"), "last");
        let a = tno_args(true, None, Path::new("/o/tno.json"));
        assert_eq!(a[..2], ["all", "--quick"]);
        assert!(a.windows(2).any(|w| w == ["--runs", "3"]));
        assert_eq!(a[a.len() - 2..], ["--out", "/o/tno.json"]);
        let a = tno_args(false, Some(7), Path::new("t.json"));
        assert!(a.windows(2).any(|w| w == ["--bits", "512,1024"]));
        assert!(a.windows(2).any(|w| w == ["--runs", "7"]));
        // The full and quick step lists.
        let names = |q| {
            steps(q, true)
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(false),
            [
                "keygen",
                "keygen-processes",
                "keygen-processes-4096",
                "paillier",
                "messages",
                "blob",
                "enroll"
            ]
        );
        assert!(!names(true).contains(&"keygen-processes-4096".to_string()));
    }
}
