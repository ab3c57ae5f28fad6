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
    /// Print one JSON object on stdout instead of human output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node directory with a new RSA key, or import a PKCS#8 PEM key.
    Init {
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
        #[arg(long)]
        dir: PathBuf,
    },
    /// Run the node daemon: serve peers over mutual TLS until SIGINT/SIGTERM.
    Serve {
        #[arg(long)]
        dir: PathBuf,
        /// Listen address (default: the advertised address).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Benchmarks (measured, not asserted).
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// In-process n-party distributed key generation (one thread per party, JSON on every hop).
    Keygen(caucus_node::bench::keygen::Args),
    /// Paillier encryption, decryption, addition and threshold decryption throughput.
    Paillier(caucus_node::bench::paillier::Args),
    /// Signed messages between two `caucus` processes over mTLS: round trip and pipelined rate.
    Messages(caucus_node::bench::messages::Args),
    /// CA enrolment load: 10,000 enrolments from 500 concurrent clients against `caucus-ca serve`.
    Enroll {
        /// 1,000 enrolments instead of 10,000.
        #[arg(long)]
        quick: bool,
        /// Runs (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 500)]
        clients: usize,
    },
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Init {
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
        Command::Peers { dir } => {
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
        Command::Serve { dir, listen } => {
            commands::serve::run(&dir, listen, json).await?;
        }
        Command::Bench {
            bench: Bench::Keygen(mut a),
        } => {
            a.json = json;
            caucus_node::bench::keygen::run(a)?.print(json);
        }
        Command::Bench {
            bench: Bench::Paillier(mut a),
        } => {
            a.json = json;
            caucus_node::bench::paillier::run(a)?.print(json);
        }
        Command::Bench {
            bench: Bench::Messages(mut a),
        } => {
            a.json = json;
            caucus_node::bench::messages::run(a).await?.print(json);
        }
        Command::Bench {
            bench:
                Bench::Enroll {
                    quick,
                    runs,
                    clients,
                },
        } => {
            let mut params = caucus_node::bench::enroll::EnrollBenchParams::new(quick, runs);
            params.clients = clients.max(1);
            let r = caucus_node::bench::enroll::run(params).await?;
            if json {
                print_json(&r)?;
            } else {
                print!("{}", caucus_node::bench::enroll::render(&r));
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAUCUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("caucus: error: {e:#}");
        std::process::exit(1);
    }
}
