//! `caucus`: the caucus node command line. Each command's code lives in its own module of the
//! library (`commands::*`, `bench::*`); this file only holds the clap definitions and output.

use std::path::PathBuf;

use caucus_node::commands;
use caucus_node::config::NodeDir;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "caucus",
    version,
    about = "caucus node: PKI-backed secure messaging and SMC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node directory with a new RSA key, or import a PKCS#8 PEM key.
    Init {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// Import this PKCS#8 PEM private key instead of generating one.
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long, default_value_t = 2048)]
        key_bits: usize,
    },
    /// Enrol with the CA: CSR + token, CA pinned by its root fingerprint.
    Enroll {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
        /// CA address, host:port.
        #[arg(long)]
        ca: String,
        /// Root fingerprint (SHA-256, hex, colons allowed), as printed by `caucus-ca init`.
        #[arg(long)]
        fingerprint: String,
        #[arg(long)]
        token: String,
        /// Where peers reach this node, host:port.
        #[arg(long)]
        advertise: String,
        /// Refuse unless the token is for this session.
        #[arg(long)]
        session: Option<String>,
    },
    /// Show the session roster, verified against the pinned root.
    Peers {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Benchmarks (measured, not asserted; see TARGETS.md).
    #[command(subcommand)]
    Bench(caucus_node::bench::BenchCommand),
}

fn fmt_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init {
            json,
            dir,
            name,
            key,
            key_bits,
        } => {
            let r = commands::init::init(&NodeDir::new(dir), &name, key.as_deref(), key_bits)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "node {:?} initialised in {} ({} RSA-{} key)",
                    r.name,
                    r.dir,
                    if r.imported { "imported" } else { "new" },
                    r.key_bits
                );
                println!("party id: {}", r.party_id);
            }
        }
        Command::Enroll {
            json,
            dir,
            ca,
            fingerprint,
            token,
            advertise,
            session,
        } => {
            let opts = commands::enroll::EnrollOptions {
                ca,
                fingerprint,
                token,
                advertise,
                session,
            };
            let r = commands::enroll::enroll(&NodeDir::new(dir), &opts).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "enrolled {:?} as party {} of session {} (serial {}, valid until {})",
                    r.name,
                    r.index,
                    r.session,
                    r.serial,
                    fmt_time(r.not_after)
                );
            }
        }
        Command::Peers { json, dir } => {
            let r = commands::peers::peers(&NodeDir::new(dir)).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "session {} of CA {:?}: threshold {}, {}/{} parties enrolled, valid until {}",
                    r.session,
                    r.ca,
                    r.threshold,
                    r.members.len(),
                    r.parties.len(),
                    fmt_time(r.not_after)
                );
                println!(
                    "{:>5}  {:<16} {:<22} {:<16} STATUS",
                    "INDEX", "NAME", "ADDRESS", "PARTY ID"
                );
                for m in &r.members {
                    println!(
                        "{:>5}  {:<16} {:<22} {:<16} {}{}",
                        m.index,
                        m.name,
                        m.address,
                        &m.party_id[..16],
                        if m.revoked { "REVOKED" } else { "ok" },
                        if m.me { " (this node)" } else { "" }
                    );
                }
                for p in &r.parties {
                    if !r.members.iter().any(|m| &m.name == p) {
                        println!("{:>5}  {:<16} (not enrolled)", "-", p);
                    }
                }
            }
        }
        Command::Bench(_) => anyhow::bail!("benchmarks run outside the async runtime"),
    }
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAUCUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        // Benchmarks build their own runtimes (or threads).
        Command::Bench(cmd) => caucus_node::bench::run(cmd).map(|_| ()),
        other => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run(other))),
    };
    if let Err(e) = result {
        eprintln!("caucus: error: {e:#}");
        std::process::exit(1);
    }
}
