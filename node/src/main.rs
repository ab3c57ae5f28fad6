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
    /// Run the node daemon: serve peers (messages and blobs) over mutual TLS until SIGINT/SIGTERM.
    Serve {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
        /// Listen address (default: the advertised address).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Encrypted blobs: send, list, get.
    #[command(subcommand)]
    Blob(BlobCommand),
    /// Benchmarks (measured, not asserted; see TARGETS.md).
    #[command(subcommand)]
    Bench(caucus_node::bench::BenchCommand),
}

#[derive(Subcommand)]
enum BlobCommand {
    /// Encrypt FILE once and send it to each recipient (from the roster); waits for receipts.
    Send {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
        /// Recipient names, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
        /// Plaintext bytes per chunk (1 KiB to 1 MiB).
        #[arg(long, default_value_t = caucus::blob::stream::DEFAULT_CHUNK_SIZE)]
        chunk_size: u32,
        /// Show a progress line on stderr (default: when stderr is a terminal).
        #[arg(long)]
        progress: bool,
        file: PathBuf,
    },
    /// List received blobs (partial transfers are never listed).
    List {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Decrypt a received blob with this node's key (checks every chunk and the SHA-256).
    Get {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
        /// Blob id (32 hex digits, from `caucus blob list`).
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
}

async fn blob_command(cmd: BlobCommand) -> anyhow::Result<()> {
    use caucus_node::blob::cli;
    match cmd {
        BlobCommand::Send {
            json,
            dir,
            to,
            chunk_size,
            progress,
            file,
        } => {
            let mut args = cli::SendArgs::new(to, file);
            args.chunk_size = chunk_size;
            args.progress = progress.then_some(true);
            let r = cli::send(&NodeDir::new(dir), &args).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("blob {} ({:?}, {} bytes)", r.blob_id, r.name, r.size);
                for t in &r.recipients {
                    println!(
                        "  {}: receipt at {} ms; {} chunks ({} bytes) sent in {:.2} s, {:.1} MB/s{}",
                        t.name,
                        t.received_ms,
                        t.chunks_sent,
                        t.bytes_sent,
                        t.transfer_s,
                        t.mb_per_s,
                        if t.resumed_from > 0 {
                            format!(", resumed from chunk {}", t.resumed_from)
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
        BlobCommand::List { json, dir } => {
            let r = cli::list(&NodeDir::new(dir))?;
            if json {
                print_json(&serde_json::json!({ "blobs": r }))?;
            } else {
                println!(
                    "{:<32}  {:>12}  {:<12}  {:<20}  NAME",
                    "ID", "SIZE", "SENDER", "RECEIVED"
                );
                for b in &r {
                    println!(
                        "{:<32}  {:>12}  {:<12}  {:<20}  {}",
                        b.id,
                        b.size,
                        b.sender,
                        fmt_time(b.received_ms / 1000),
                        b.name
                    );
                }
            }
        }
        BlobCommand::Get { json, dir, id, out } => {
            let r = cli::get(&NodeDir::new(dir), &id, &out)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "wrote {} ({} bytes, sha-256 {} verified)",
                    r.out, r.size, r.sha256
                );
            }
        }
    }
    Ok(())
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
        Command::Serve { json, dir, listen } => {
            commands::serve::run(&dir, listen, json).await?;
        }
        Command::Blob(cmd) => blob_command(cmd).await?,
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
