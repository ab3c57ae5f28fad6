//! Secure sum over the SMC session API: every party learns the total of all parties' values and
//! nothing else about the others' values.
//!
//! Each party runs (after `caucus init` + `caucus enroll`):
//!
//! ```sh
//! cargo run --release -p caucus-node --example secure_sum -- --dir certs/alice --value 12
//! ```
//!
//! Protocol (additive secret sharing modulo 2^64, semi-honest):
//! 1. party i splits its value x_i into n random shares s_i1 + … + s_in = x_i (mod 2^64) and sends
//!    s_ij to party j (point to point, message id `share`), keeping s_ii;
//! 2. party j adds the shares it holds, p_j = Σ_i s_ij, and broadcasts p_j (message id `partial`);
//! 3. everyone computes the total Σ_j p_j = Σ_i x_i (mod 2^64).
//!
//! Every message is a signed envelope over mutual TLS between roster members.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use caucus_node::session::{Session, SessionOptions};
use clap::Parser;
use rand::Rng;

#[derive(Parser, Debug)]
#[command(about = "secure sum of one value per party (additive sharing mod 2^64)")]
struct Args {
    /// The node directory (after `caucus init` and `caucus enroll`).
    #[arg(long)]
    dir: PathBuf,
    /// This party's value.
    #[arg(long)]
    value: u64,
    /// Per-step timeout in seconds (a missing party is named when it expires).
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let opts = SessionOptions {
        timeout: Duration::from_secs(args.timeout),
        roster_wait: Duration::from_secs(args.timeout),
        ..SessionOptions::default()
    };
    let s = Session::open(&args.dir, opts).await?;
    let me = s.me();
    let others = s.others();

    // 1. split the value into n shares and send one to each other party
    let mut rng = rand::rng();
    let mut own = args.value;
    for p in &others {
        let share: u64 = rng.next_u64();
        own = own.wrapping_sub(share);
        s.send(&p.name, "share", &share).await?;
    }
    // 2. add the shares we hold and broadcast the partial sum
    let shares: BTreeMap<String, u64> = s.recv_all("share").await?;
    let partial = shares.values().fold(own, |a, b| a.wrapping_add(*b));
    s.broadcast("partial", &partial).await?;
    // 3. the total
    let partials: BTreeMap<String, u64> = s.recv_all("partial").await?;
    let total = partials.values().fold(partial, |a, b| a.wrapping_add(*b));

    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "party": me.name,
                "index": me.index,
                "parties": others.len() + 1,
                "total": total.to_string(),
            })
        );
    } else {
        println!(
            "{} (party {} of {}): total = {total}",
            me.name,
            me.index,
            others.len() + 1
        );
    }
    // Give peers a moment to read our last message before our listener closes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.close().await;
    Ok(())
}
