//! `caucus-ca`: the caucus certificate authority command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use caucus_ca::admin::{Admin, AdminRequest};
use caucus_ca::authority::{Authority, Enrolled, ListEntry, SessionCreated};
use caucus_ca::dir::CaDir;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "caucus-ca", version, about = "caucus certificate authority")]
struct Cli {
    /// Print one JSON object on stdout instead of human output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a CA: root key (0600) and self-signed root certificate; prints the fingerprint.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 3072)]
        key_bits: usize,
    },
    /// Serve enrolment, certificates, rosters and the CRL over TLS 1.3.
    Serve {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: String,
        /// Most concurrent connections; more get a "busy" answer.
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
    },
    /// Sessions.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Print the root fingerprint (SHA-256 of the DER root certificate).
    Fingerprint {
        #[arg(long)]
        dir: PathBuf,
    },
    /// List issued certificates.
    List {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Revoke a certificate by serial.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        serial: String,
    },
    /// Offline enrolment: sign a CSR file (e.g. made by OpenSSL) with a token.
    SignCsr {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        csr: PathBuf,
        #[arg(long)]
        token: String,
        #[arg(long)]
        out: PathBuf,
        /// Refuse unless the token is for this session.
        #[arg(long)]
        session: Option<String>,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Create a session; prints one single-use enrolment token per party.
    Create {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        id: String,
        /// Comma-separated party names, in order.
        #[arg(long, value_delimiter = ',')]
        parties: Vec<String>,
        #[arg(long)]
        threshold: u32,
        /// Lifetime: e.g. 90s, 30m, 24h, 7d (at most 7d).
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}

/// Parses `90s`, `30m`, `24h`, `7d` or plain seconds.
fn parse_duration(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    let n: i64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?} (use e.g. 90s, 30m, 24h, 7d)"))?;
    n.checked_mul(mult)
        .with_context(|| format!("duration {s:?} is too large"))
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

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Init {
            dir,
            name,
            key_bits,
        } => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let info = caucus_ca::dir::init(&CaDir::new(dir), &name, key_bits, now)?;
            if json {
                print_json(&info)?;
            } else {
                println!("created CA {:?} in {}", info.name, info.dir);
                println!("root fingerprint: {}", info.fingerprint);
            }
        }
        Command::Serve {
            dir,
            listen,
            max_connections,
        } => {
            let dir = CaDir::new(dir);
            let auth = Arc::new(Authority::open(&dir)?);
            let tls = caucus_ca::tls::server_config(auth.signer(), auth.now())?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let admin = caucus_ca::server::bind_admin(&dir.admin_sock())
                .with_context(|| format!("cannot bind {}", dir.admin_sock().display()))?;
            let addr = listener.local_addr()?;
            if json {
                print_json(&serde_json::json!({
                    "listen": addr.to_string(),
                    "ca": auth.signer().name(),
                    "fingerprint": auth.fingerprint(),
                }))?;
            } else {
                println!(
                    "caucus-ca {:?} listening on {addr} (root fingerprint {})",
                    auth.signer().name(),
                    auth.fingerprint()
                );
            }
            let (tx, rx) = tokio::sync::watch::channel(false);
            let opts = caucus_ca::server::ServerOptions {
                max_connections,
                ..Default::default()
            };
            let mut rx2 = rx.clone();
            let admin_task = tokio::spawn(caucus_ca::server::run_admin(
                admin,
                auth.clone(),
                async move {
                    let _ = rx2.changed().await;
                },
            ));
            let mut rx1 = rx;
            let server = caucus_ca::server::run(listener, auth.clone(), tls, opts, async move {
                let _ = rx1.changed().await;
            });
            tokio::pin!(server);
            tokio::select! {
                r = &mut server => r?,
                _ = shutdown_signal() => { let _ = tx.send(true); }
            }
            let _ = admin_task.await;
            let _ = std::fs::remove_file(dir.admin_sock());
        }
        Command::Session {
            command:
                SessionCommand::Create {
                    dir,
                    id,
                    parties,
                    threshold,
                    ttl,
                },
        } => {
            let ttl_secs = parse_duration(&ttl)?;
            let admin = Admin::connect(&CaDir::new(dir))?;
            let v = admin
                .call(AdminRequest::SessionCreate {
                    id,
                    parties,
                    threshold,
                    ttl_secs,
                })
                .await?;
            let s: SessionCreated = serde_json::from_value(v)?;
            if json {
                print_json(&s)?;
            } else {
                println!(
                    "session {} (threshold {}, {} parties) valid until {}",
                    s.session,
                    s.threshold,
                    s.parties.len(),
                    fmt_time(s.not_after)
                );
                println!("{:<20} TOKEN (single use)", "PARTY");
                for p in &s.parties {
                    println!("{:<20} {}", p, s.tokens.get(p).map_or("", String::as_str));
                }
            }
        }
        Command::Fingerprint { dir } => {
            let dir = CaDir::new(dir);
            let root = dir.load_root()?;
            let info = caucus::pki::check_root(&root)
                .with_context(|| format!("{}", dir.ca_pem().display()))?;
            let fp = caucus::pki::fingerprint(&root);
            if json {
                print_json(&serde_json::json!({"ca": info.name, "fingerprint": fp}))?;
            } else {
                println!("{fp}");
            }
        }
        Command::List { dir } => {
            let admin = Admin::connect(&CaDir::new(dir))?;
            let v = admin.call(AdminRequest::List).await?;
            let list: Vec<ListEntry> = serde_json::from_value(v)?;
            if json {
                print_json(&serde_json::json!({ "certificates": list }))?;
            } else {
                println!(
                    "{:<32} {:<16} {:<16} {:<25} REVOKED",
                    "SERIAL", "PARTY", "SESSION", "NOT AFTER"
                );
                for c in &list {
                    println!(
                        "{:<32} {:<16} {:<16} {:<25} {}",
                        c.serial,
                        c.party,
                        c.session,
                        fmt_time(c.not_after),
                        if c.revoked { "yes" } else { "no" }
                    );
                }
            }
        }
        Command::Revoke { dir, serial } => {
            let admin = Admin::connect(&CaDir::new(dir))?;
            let v = admin.call(AdminRequest::Revoke { serial }).await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "revoked {}",
                    v.get("serial").and_then(|s| s.as_str()).unwrap_or_default()
                );
            }
        }
        Command::SignCsr {
            dir,
            csr,
            token,
            out,
            session,
        } => {
            let meta = std::fs::metadata(&csr).with_context(|| format!("{}", csr.display()))?;
            if meta.len() > 64 * 1024 {
                bail!("{}: csr file is too large", csr.display());
            }
            let text =
                std::fs::read_to_string(&csr).with_context(|| format!("{}", csr.display()))?;
            let admin = Admin::connect(&CaDir::new(dir))?;
            let v = admin
                .call(AdminRequest::SignCsr {
                    csr: text,
                    token,
                    session,
                    advertise: String::new(),
                })
                .await?;
            let e: Enrolled = serde_json::from_value(v)?;
            std::fs::write(&out, e.cert.as_bytes())
                .with_context(|| format!("{}", out.display()))?;
            if json {
                print_json(&e)?;
            } else {
                println!(
                    "issued serial {} to {} in session {} (valid until {}), written to {}",
                    e.serial,
                    e.name,
                    e.session,
                    fmt_time(e.not_after),
                    out.display()
                );
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
        eprintln!("caucus-ca: error: {e:#}");
        std::process::exit(1);
    }
}
