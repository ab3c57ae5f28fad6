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
    /// Distributed Paillier key generation with the session's parties (every party runs it).
    Keygen {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
        /// Bit length of N.
        #[arg(long, default_value_t = 2048)]
        bits: u32,
        /// Overall timeout (e.g. 120s, 5m).
        #[arg(long, default_value = "120s", value_parser = caucus_node::keygen::parse_duration)]
        timeout: std::time::Duration,
        /// No progress line on stderr.
        #[arg(long)]
        quiet: bool,
        /// Overwrite an existing keyshare.json.
        #[arg(long)]
        force: bool,
    },
    /// The distributed key: public key, threshold, parties.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Encrypt a value under the distributed key (prints a decimal ciphertext).
    Encrypt {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
        /// Decimal digits of fixed-point values (scale 10^precision).
        #[arg(long, default_value_t = 0)]
        precision: u32,
        /// The value (signed integer, or decimal with --precision).
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Joint decryption by a quorum of t+1 parties (each quorum member runs it).
    Decrypt {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
        /// Quorum party names (default: every party of the key).
        #[arg(long, value_delimiter = ',')]
        quorum: Option<Vec<String>>,
        /// Who learns the result (default: the quorum).
        #[arg(long, value_delimiter = ',')]
        to: Option<Vec<String>>,
        /// Decimal digits of fixed-point values.
        #[arg(long, default_value_t = 0)]
        precision: u32,
        /// Overall timeout.
        #[arg(long, default_value = "60s", value_parser = caucus_node::keygen::parse_duration)]
        timeout: std::time::Duration,
        /// Decrypt this many times and report each latency (benchmarks).
        #[arg(long, default_value_t = 1, hide = true)]
        repeat: u32,
        /// Decryption method: root (N-th root, partials mod N; the default for keys made by
        /// this version) or classic (partials mod N²; reveals nothing beyond the plaintext).
        #[arg(long)]
        method: Option<caucus::decrypt::Method>,
        /// The ciphertext (decimal).
        ciphertext: String,
    },
    /// Secure sum: every party contributes a value, every party learns only the total.
    Sum {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
        /// This party's value (signed integer, or decimal with --precision).
        #[arg(long, allow_hyphen_values = true)]
        value: String,
        /// Print the mean instead of the total.
        #[arg(long)]
        mean: bool,
        /// Decryption quorum (default: the first t+1 parties of the key).
        #[arg(long, value_delimiter = ',')]
        quorum: Option<Vec<String>>,
        /// Decimal digits of fixed-point values (every party must use the same).
        #[arg(long, default_value_t = 0)]
        precision: u32,
        /// Overall timeout.
        #[arg(long, default_value = "60s", value_parser = caucus_node::keygen::parse_duration)]
        timeout: std::time::Duration,
        /// Decryption method of the total (root or classic; see `caucus decrypt --help`).
        #[arg(long)]
        method: Option<caucus::decrypt::Method>,
    },
    /// CA + three nodes locally: enrolment, blob share, keygen, secure sum, decryption with one
    /// party offline, narrated with timings.
    Demo(caucus_node::demo::DemoArgs),
    /// Benchmarks (measured, not asserted; see TARGETS.md). No subcommand: all of them.
    Bench(caucus_node::bench::BenchArgs),
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

#[derive(Subcommand)]
enum KeyCommand {
    /// Show the public key (N in decimal), threshold and parties.
    Show {
        /// Print one JSON object on stdout instead of human output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        dir: PathBuf,
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
        Command::Keygen {
            json,
            dir,
            bits,
            timeout,
            quiet,
            force,
        } => {
            let opts = caucus_node::keygen::KeygenOptions {
                bits,
                timeout,
                progress: !quiet,
                label: String::new(),
            };
            let r = caucus_node::keygen::keygen(&dir, &opts, force).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "{}: {}-bit key {} generated with {} parties (t = {}) in {:.2} s: {} batches, {} candidates, {} biprimality tests",
                    r.party,
                    r.bits,
                    r.key_id,
                    r.parties,
                    r.threshold,
                    r.seconds,
                    r.batches,
                    r.candidates,
                    r.biprimality_tests
                );
                println!("key share written to {} (0600)", r.keyshare);
            }
        }
        Command::Key(KeyCommand::Show { json, dir }) => {
            let k = caucus_node::keyshare::KeyShareFile::load(&NodeDir::new(&dir).keyshare_path())?;
            let info = serde_json::json!({
                "key_id": k.key_id,
                "bits": k.bits,
                "n": k.share.public().n().to_string(),
                "threshold": k.threshold,
                "parties": k.parties,
                "me": k.me,
                "index": k.share.index(),
                "keygen_session": k.keygen_session,
                "created_at": k.created_at,
            });
            if json {
                print_json(&info)?;
            } else {
                println!(
                    "key {} ({}-bit N), generated in session {} on {}",
                    k.key_id,
                    k.bits,
                    k.keygen_session,
                    fmt_time(k.created_at)
                );
                println!(
                    "threshold t = {}: any {} of {} parties decrypt",
                    k.threshold,
                    k.threshold + 1,
                    k.parties.len()
                );
                for p in &k.parties {
                    println!(
                        "  {:>2}  {:<16} {}{}",
                        p.index,
                        p.name,
                        &p.party_id[..16],
                        if p.name == k.me { "  (this node)" } else { "" }
                    );
                }
                println!("N = {}", k.share.public().n());
            }
        }
        Command::Encrypt {
            json,
            dir,
            precision,
            value,
        } => {
            let k = caucus_node::keyshare::KeyShareFile::load(&NodeDir::new(&dir).keyshare_path())?;
            let v = caucus_node::threshold::parse_value(&value, precision)?;
            let c = caucus_node::threshold::encrypt_value(k.share.public(), &v)?;
            if json {
                print_json(&serde_json::json!({
                    "key_id": k.key_id,
                    "ciphertext": c.value().to_string(),
                }))?;
            } else {
                println!("{}", c.value());
            }
        }
        Command::Decrypt {
            json,
            dir,
            quorum,
            to,
            precision,
            timeout,
            repeat,
            method,
            ciphertext,
        } => {
            let opts = caucus_node::threshold::DecryptOptions {
                quorum,
                to,
                timeout,
                precision,
                repeat,
                method,
            };
            let r = caucus_node::threshold::decrypt(&dir, &ciphertext, &opts).await?;
            if json {
                print_json(&r)?;
            } else {
                match &r.value {
                    Some(v) => println!("{v}"),
                    None => println!(
                        "{}: partial decryption sent to {}",
                        r.party,
                        r.receivers.join(",")
                    ),
                }
            }
        }
        Command::Sum {
            json,
            dir,
            value,
            mean,
            quorum,
            precision,
            timeout,
            method,
        } => {
            let opts = caucus_node::threshold::SumOptions {
                quorum,
                timeout,
                precision,
                method,
            };
            let r = caucus_node::threshold::sum(&dir, &value, &opts).await?;
            if json {
                print_json(&r)?;
            } else if mean {
                println!("{}", r.mean);
            } else {
                println!("{}", r.total);
            }
        }
        Command::Demo(args) => caucus_node::demo::run(args).await?,
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
        Command::Bench(args) => caucus_node::bench::run(args.into_command()).map(|_| ()),
        other => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run(other))),
    };
    if let Err(e) = result {
        eprintln!("caucus: error: {e:#}");
        std::process::exit(1);
    }
}
