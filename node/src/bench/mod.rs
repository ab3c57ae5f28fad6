//! `caucus bench …`: benchmark drivers that print human output or one JSON object, with the
//! machine, the parameters, min / median / max per figure, the target and the peer's figure from
//! TARGETS.md with the ratio.

pub mod blob;
pub mod enroll;
pub mod keygen;
pub mod keygen_net;
pub mod messages;
pub mod paillier;

use serde::Serialize;

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
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
    pub target: Option<String>,
    /// The peer's figure and our ratio, when one applies.
    pub peer: Option<String>,
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

    /// Sets the target text.
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.target = Some(t.into());
        self
    }

    /// Sets the peer text.
    pub fn peer(mut self, p: impl Into<String>) -> Self {
        self.peer = Some(p.into());
        self
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
                println!("      target: {t}");
            }
            if let Some(p) = &f.peer {
                println!("      peer:   {p}");
            }
        }
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
}

/// Runs a bench subcommand and prints its report.
pub fn run(cmd: BenchCommand) -> anyhow::Result<Report> {
    let (report, json) = match cmd {
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
    Ok(report)
}
