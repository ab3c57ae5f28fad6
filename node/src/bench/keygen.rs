//! `caucus bench keygen`: the in-process n-party key generation, one thread per party, every
//! message serialised to JSON and parsed back on every hop, over ≥ 10 seeds per size (≥ 5 at 2048
//! bits), beside TNO's figures from TARGETS.md.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use caucus::keygen::{KeyShare, Keygen, KeygenMessage, Outgoing, Params, Progress, run_tag};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::{Figure, Report, machine};

/// Arguments of `caucus bench keygen`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Bit length of N (default: 512, 1024 and 2048).
    #[arg(long)]
    pub bits: Option<u32>,
    /// Seeds per size (default 10, 5 at 2048 bits and above).
    #[arg(long)]
    pub runs: Option<u32>,
    /// Quick run: 512 and 1024 bits, 3 seeds each.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Parties n.
    #[arg(long, default_value_t = 3)]
    pub parties: u32,
    /// Threshold t.
    #[arg(long, default_value_t = 1)]
    pub threshold: u32,
    /// Run the parties as `caucus keygen` processes over mTLS on loopback (default 2048 bits,
    /// 5 runs), then measure threshold decryption with t+1 `caucus decrypt` processes.
    #[arg(long)]
    pub processes: bool,
}

/// One threaded run's result.
pub struct RunResult {
    /// The key shares, by index.
    pub shares: Vec<KeyShare>,
    /// Party 1's counters.
    pub progress: Progress,
    /// Wall time.
    pub elapsed: Duration,
    /// JSON bytes sent.
    pub bytes: u64,
}

/// Runs one key generation with one thread per party; party rngs derive from `seed` exactly as in
/// `caucus::testing`, so the same seed gives the same key.
pub fn run_threaded(params: &Params, seed: u64) -> anyhow::Result<RunResult> {
    let n = params.parties;
    let run = run_tag("test-session", 0, params);
    let mut master = ChaCha20Rng::seed_from_u64(seed);
    let rngs: Vec<ChaCha20Rng> = (0..n).map(|_| ChaCha20Rng::from_rng(&mut master)).collect();
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..n {
        let (tx, rx) = mpsc::channel::<(u32, Vec<u8>)>();
        txs.push(tx);
        rxs.push(rx);
    }
    let start = Instant::now();
    let handles: Vec<_> = (1..=n)
        .zip(rxs)
        .zip(rngs)
        .map(|((i, rx), mut rng)| {
            let txs = txs.clone();
            let params = params.clone();
            std::thread::spawn(move || -> anyhow::Result<(KeyShare, Progress, u64)> {
                let mut bytes = 0u64;
                let mut send = |out: Vec<Outgoing>| -> anyhow::Result<()> {
                    for o in out {
                        let (targets, msg) = match o {
                            Outgoing::Broadcast(m) => {
                                ((1..=n).filter(|&j| j != i).collect::<Vec<_>>(), m)
                            }
                            Outgoing::Direct { to, msg } => (vec![to], msg),
                        };
                        let json = msg.to_json();
                        for to in targets {
                            bytes += json.len() as u64;
                            let tx = txs
                                .get(to as usize - 1)
                                .ok_or_else(|| anyhow!("bad recipient {to}"))?;
                            // A peer that already finished no longer listens: ignore.
                            let _ = tx.send((i, json.clone()));
                        }
                    }
                    Ok(())
                };
                let (mut kg, out) = Keygen::start(&params, i, run, &mut rng)?;
                send(out)?;
                while !kg.is_done() {
                    let (from, json) = rx
                        .recv_timeout(Duration::from_secs(600))
                        .map_err(|_| anyhow!("party {i}: timed out waiting for peers"))?;
                    let msg = KeygenMessage::from_json(from, &json)?;
                    let (next, out) = kg.handle(from, msg)?;
                    kg = next;
                    send(out)?;
                }
                let progress = kg.progress();
                let share = kg
                    .into_share()
                    .ok_or_else(|| anyhow!("party {i}: no share"))?;
                Ok((share, progress, bytes))
            })
        })
        .collect();
    drop(txs);
    let mut shares = Vec::new();
    let mut progress = Progress::default();
    let mut bytes = 0;
    for (i, h) in handles.into_iter().enumerate() {
        let (s, p, b) = h.join().map_err(|_| anyhow!("party thread panicked"))??;
        if i == 0 {
            progress = p;
        }
        bytes += b;
        shares.push(s);
    }
    Ok(RunResult {
        shares,
        progress,
        elapsed: start.elapsed(),
        bytes,
    })
}

/// CPU seconds (user + system, all threads) used by this process so far, from /proc/self/stat
/// (clock ticks of 1/100 s); `None` where unavailable.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15 (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// TNO's figures (TARGETS.md): min / median / max seconds of 3, 3 parties, t = 1.
fn tno_seconds(bits: u32) -> Option<(f64, f64, f64)> {
    match bits {
        512 => Some((8.2, 12.0, 68.6)),
        1024 => Some((23.6, 338.5, 424.5)),
        _ => None,
    }
}

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<Report> {
    if args.processes {
        return super::keygen_net::run(&args);
    }
    let sizes: Vec<(u32, u32)> = match (args.bits, args.quick) {
        (Some(b), _) => vec![(b, args.runs.unwrap_or(if b >= 2048 { 5 } else { 10 }))],
        (None, true) => vec![
            (512, args.runs.unwrap_or(3)),
            (1024, args.runs.unwrap_or(3)),
        ],
        (None, false) => vec![
            (512, args.runs.unwrap_or(10)),
            (1024, args.runs.unwrap_or(10)),
            (2048, args.runs.unwrap_or(5)),
        ],
    };
    let mut figures = Vec::new();
    for (bits, runs) in &sizes {
        let params = Params::new(*bits, args.parties, args.threshold)?;
        let mut secs = Vec::new();
        let mut cpu = Vec::new();
        let (mut batches, mut cands, mut tests, mut rounds, mut mb) =
            (vec![], vec![], vec![], vec![], vec![]);
        for seed in 1..=u64::from(*runs) {
            let cpu0 = process_cpu_seconds();
            let r = run_threaded(&params, seed)
                .with_context(|| format!("{bits}-bit keygen, seed {seed}"))?;
            let cpu_s = match (cpu0, process_cpu_seconds()) {
                (Some(a), Some(b)) => b - a,
                _ => f64::NAN,
            };
            cpu.push(cpu_s);
            anyhow::ensure!(
                r.shares[0].public().bits() == u64::from(*bits),
                "N has {} bits",
                r.shares[0].public().bits()
            );
            if !args.json {
                eprintln!(
                    "  {bits} bits seed {seed}: {:.3} s ({cpu_s:.2} s CPU), {} batches, {} candidates, {} BF tests",
                    r.elapsed.as_secs_f64(),
                    r.progress.batches,
                    r.progress.candidates,
                    r.progress.biprimality_tests
                );
            }
            secs.push(r.elapsed.as_secs_f64());
            batches.push(f64::from(r.progress.batches));
            cands.push(r.progress.candidates as f64);
            tests.push(r.progress.biprimality_tests as f64);
            rounds.push(f64::from(r.progress.rounds));
            mb.push(r.bytes as f64 / 1e6);
        }
        let mut f = Figure::from_samples(
            &format!("keygen {bits}-bit N, {} parties", args.parties),
            "s",
            &secs,
        );
        if *bits == 1024 {
            f = f.target(super::Target::at_most(1.0, "median ≤ 1 s (≥ 200× TNO)"));
        }
        if let Some((tmin, tmed, tmax)) = tno_seconds(*bits) {
            let ratio = tmed / f.median;
            f = f.peer(format!(
                "TNO distributed_keygen 4.3.0: {tmin} / {tmed} / {tmax} s (min/median/max of 3); median ratio {ratio:.0}x"
            ));
        } else {
            f = f.peer("TNO: not attempted at this size (extrapolates to hours)");
        }
        figures.push(f);
        figures.push(Figure::from_samples(
            &format!("  CPU, all parties ({bits}; wall >= CPU/2 on 2 idle cores)"),
            "s",
            &cpu,
        ));
        figures.push(Figure::from_samples(
            &format!("  batches ({bits})"),
            "batches",
            &batches,
        ));
        figures.push(Figure::from_samples(
            &format!("  candidates N ({bits})"),
            "candidates",
            &cands,
        ));
        figures.push(Figure::from_samples(
            &format!("  biprimality tests ({bits})"),
            "tests",
            &tests,
        ));
        figures.push(Figure::from_samples(
            &format!("  rounds ({bits})"),
            "rounds",
            &rounds,
        ));
        figures.push(Figure::from_samples(
            &format!("  traffic ({bits})"),
            "MB",
            &mb,
        ));
    }
    Ok(Report {
        bench: "keygen".into(),
        machine: machine(),
        params: serde_json::json!({
            "parties": args.parties,
            "threshold": args.threshold,
            "sizes": sizes,
            "harness": "in-process, one thread per party, JSON on every hop",
        }),
        figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threaded_harness_matches_the_sequential_one() {
        let params = Params::new(256, 3, 1).expect("params");
        let r = run_threaded(&params, 3).expect("run");
        let (seq, _) = caucus::testing::run_keygen(3, 1, 256, 3);
        assert_eq!(r.shares[0].key_id(), seq[0].key_id());
    }
}
