//! `caucus bench …`: benchmark drivers that print human output or one JSON object, with the
//! machine, the parameters, min / median / max per figure, the target and the peer's figure from
//! TARGETS.md with the ratio.

pub mod all;
pub mod blob;
pub mod enroll;
pub mod keygen;
pub mod keygen_net;
pub mod messages;
pub mod paillier;

use serde::{Deserialize, Serialize};

/// How a target compares the figure with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    /// Met when the statistic is ≤ the value (times, latencies, memory, failures).
    AtMost,
    /// Met when the statistic is ≥ the value (rates, throughputs, ratios).
    AtLeast,
}

/// Which statistic of a figure a target is checked on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    /// The median over runs (the default: TARGETS.md compares medians).
    #[default]
    Median,
    /// The maximum over runs (e.g. "0 failures" in every run).
    Max,
}

/// A figure's target: the text of TARGETS.md and, where it is a number, a machine-checkable
/// bound in the figure's own unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The target as a person reads it, e.g. `median ≤ 1 s`.
    pub text: String,
    /// The comparison, when the target is checkable.
    pub cmp: Option<Cmp>,
    /// The bound, in the figure's unit.
    pub value: Option<f64>,
    /// The statistic checked.
    #[serde(default)]
    pub stat: Stat,
}

impl Target {
    /// A text-only target (shown, never checked).
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            cmp: None,
            value: None,
            stat: Stat::Median,
        }
    }

    /// Met when the median is ≤ `value`.
    pub fn at_most(value: f64, text: impl Into<String>) -> Self {
        Self {
            cmp: Some(Cmp::AtMost),
            value: Some(value),
            ..Self::text(text)
        }
    }

    /// Met when the median is ≥ `value`.
    pub fn at_least(value: f64, text: impl Into<String>) -> Self {
        Self {
            cmp: Some(Cmp::AtLeast),
            value: Some(value),
            ..Self::text(text)
        }
    }

    /// Checks `stat` instead of the median.
    pub fn on(mut self, stat: Stat) -> Self {
        self.stat = stat;
        self
    }

    /// Whether the figure meets the target: `None` when the target is text only or the figure
    /// has no value (no samples).
    pub fn met(&self, median: f64, max: f64) -> Option<bool> {
        let x = match self.stat {
            Stat::Median => median,
            Stat::Max => max,
        };
        let (cmp, v) = (self.cmp?, self.value?);
        if x.is_nan() || v.is_nan() {
            return None;
        }
        Some(match cmp {
            Cmp::AtMost => x <= v,
            Cmp::AtLeast => x >= v,
        })
    }
}

impl From<&str> for Target {
    fn from(s: &str) -> Self {
        Self::text(s)
    }
}

impl From<String> for Target {
    fn from(s: String) -> Self {
        Self::text(s)
    }
}

/// One measured figure.
///
/// In JSON, `target` stays the target's text (as before structured targets), and
/// `target_check` (`{cmp, value, stat}` or null) and `met` (true / false / null) are added.
#[derive(Clone, Debug, Serialize)]
#[serde(into = "FigureJson")]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Unit of min / median / max.
    pub unit: String,
    /// Minimum over runs.
    pub min: f64,
    /// Median over runs.
    pub median: f64,
    /// Maximum over runs.
    pub max: f64,
    /// The target, when one applies.
    pub target: Option<Target>,
    /// The peer's figure and our ratio, when one applies.
    pub peer: Option<String>,
}

/// The JSON form of a [`Figure`].
#[derive(Serialize)]
struct FigureJson {
    name: String,
    unit: String,
    min: f64,
    median: f64,
    max: f64,
    target: Option<String>,
    target_check: Option<serde_json::Value>,
    met: Option<bool>,
    peer: Option<String>,
}

impl From<Figure> for FigureJson {
    fn from(f: Figure) -> Self {
        let met = f.met();
        let check = f.target.as_ref().and_then(|t| {
            Some(serde_json::json!({ "cmp": t.cmp?, "value": t.value?, "stat": t.stat }))
        });
        Self {
            name: f.name,
            unit: f.unit,
            min: f.min,
            median: f.median,
            max: f.max,
            target: f.target.map(|t| t.text),
            target_check: check,
            met,
            peer: f.peer,
        }
    }
}

impl Figure {
    /// A figure from samples (sorted here).
    pub fn from_samples(name: &str, unit: &str, samples: &[f64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let median = if s.is_empty() {
            f64::NAN
        } else if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        };
        Self {
            name: name.to_string(),
            unit: unit.to_string(),
            min: s.first().copied().unwrap_or(f64::NAN),
            median,
            max: s.last().copied().unwrap_or(f64::NAN),
            target: None,
            peer: None,
        }
    }

    /// Sets the target: a [`Target`], or text only (`&str` / `String`).
    pub fn target(mut self, t: impl Into<Target>) -> Self {
        self.target = Some(t.into());
        self
    }

    /// Sets the peer text.
    pub fn peer(mut self, p: impl Into<String>) -> Self {
        self.peer = Some(p.into());
        self
    }

    /// Whether the target is met (see [`Target::met`]); `None` without a checkable target.
    pub fn met(&self) -> Option<bool> {
        self.target.as_ref()?.met(self.median, self.max)
    }
}

/// The machine a benchmark ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical cores available.
    pub cores: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
}

/// Describes this machine.
pub fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu,
    }
}

/// A benchmark report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Benchmark name.
    pub bench: String,
    /// Machine.
    pub machine: Machine,
    /// Parameters.
    pub params: serde_json::Value,
    /// Figures.
    pub figures: Vec<Figure>,
}

impl Report {
    /// Prints the report: one JSON object, or a human table.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        println!("caucus bench {}", self.bench);
        println!(
            "machine: {} cores, {}",
            self.machine.cores, self.machine.cpu
        );
        println!("params: {}", self.params);
        for f in &self.figures {
            println!(
                "  {:<44} min {:>10.3}  median {:>10.3}  max {:>10.3} {}",
                f.name, f.min, f.median, f.max, f.unit
            );
            if let Some(t) = &f.target {
                let met = match f.met() {
                    Some(true) => " (met)",
                    Some(false) => " (NOT met)",
                    None => "",
                };
                println!("      target: {}{met}", t.text);
            }
            if let Some(p) = &f.peer {
                println!("      peer:   {p}");
            }
        }
    }
}

/// `caucus bench [SUBCOMMAND]`: one benchmark, or with no subcommand every benchmark in turn
/// (`caucus bench --vs-tno` is `caucus bench all --vs-tno`).
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// One benchmark; without it, all of them.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// The options of `bench all`, when no subcommand is given.
    #[command(flatten)]
    pub all: all::Args,
}

impl BenchArgs {
    /// The subcommand to run (`all` when none was given).
    pub fn into_command(self) -> BenchCommand {
        self.command.unwrap_or(BenchCommand::All(self.all))
    }
}

/// `caucus bench` subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// In-process n-party distributed key generation (one thread per party, JSON on every hop).
    Keygen(keygen::Args),
    /// Paillier encryption, decryption, addition and threshold decryption throughput.
    Paillier(paillier::Args),
    /// CA enrolment load: 10,000 enrolments from 500 concurrent clients against `caucus-ca serve`.
    Enroll(enroll::Args),
    /// Signed messages between two `caucus` processes over mTLS: round trip and pipelined rate.
    Messages(messages::Args),
    /// A 1 GiB blob between two `caucus` processes until the signed receipt, beside raw TLS.
    Blob(blob::Args),
    /// Every benchmark in turn (optionally beside TNO's Python implementation), one report.
    All(all::Args),
}

/// Runs a bench subcommand and prints its report (`bench all` prints and writes its own, and
/// returns `None`).
pub fn run(cmd: BenchCommand) -> anyhow::Result<Option<Report>> {
    let (report, json) = match cmd {
        BenchCommand::All(a) => {
            all::run(a)?;
            return Ok(None);
        }
        BenchCommand::Keygen(a) => {
            let json = a.json;
            (keygen::run(a)?, json)
        }
        BenchCommand::Paillier(a) => {
            let json = a.json;
            (paillier::run(a)?, json)
        }
        BenchCommand::Enroll(a) => {
            let json = a.json;
            (enroll::run_blocking(&a)?, json)
        }
        BenchCommand::Messages(a) => {
            let json = a.json;
            (messages::run(a)?, json)
        }
        BenchCommand::Blob(a) => {
            let json = a.json;
            (
                tokio::runtime::Runtime::new()?.block_on(blob::run(a))?,
                json,
            )
        }
    };
    report.print(json);
    Ok(Some(report))
}

#[cfg(test)]
mod cli_tests {
    use clap::Parser;

    use super::{BenchArgs, BenchCommand};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchCommand, clap::Error> {
        let argv = std::iter::once("bench").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.bench.into_command())
    }

    #[test]
    fn no_subcommand_is_all_with_its_options() {
        match parse(&["--vs-tno", "--quick", "--only", "keygen,blob"]).expect("parses") {
            BenchCommand::All(a) => {
                assert!(a.vs_tno && a.quick);
                assert_eq!(a.only, ["keygen", "blob"]);
            }
            other => panic!("expected all, got {other:?}"),
        }
        assert!(matches!(parse(&[]), Ok(BenchCommand::All(a)) if !a.vs_tno && !a.quick));
    }

    #[test]
    fn a_subcommand_keeps_its_own_options() {
        assert!(matches!(
            parse(&["keygen", "--bits", "512"]),
            Ok(BenchCommand::Keygen(a)) if a.bits == Some(512)
        ));
        assert!(matches!(parse(&["all", "--vs-tno"]), Ok(BenchCommand::All(a)) if a.vs_tno));
        // Options of `bench all` before a subcommand are an error, not silently dropped.
        assert!(parse(&["--vs-tno", "keygen"]).is_err());
    }
}
