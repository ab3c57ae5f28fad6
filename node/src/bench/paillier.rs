//! `caucus bench paillier`: encryption (fresh and from the precomputed pool), decryption,
//! homomorphic addition and threshold decryption throughput, beside python-paillier's figures.

use std::sync::Arc;
use std::time::Instant;

use caucus::decrypt::{Method, combine, partial_decrypt_with};
use caucus::keygen::Params;
use caucus::paillier::{EncryptionMode, Encryptor, Keypair, RandomnessPool};
use num_bigint::{BigRng010, BigUint};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::{Figure, Report, machine};

/// Arguments of `caucus bench paillier`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Bit length of N (default 2048).
    #[arg(long, default_value_t = 2048)]
    pub bits: u32,
    /// Timed runs per figure (default 5).
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Quick run: fewer operations, no threshold key.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn rate(ops: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    ops as f64 / t.elapsed().as_secs_f64()
}

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<Report> {
    let mut rng = ChaCha20Rng::seed_from_u64(2048);
    let bits = u64::from(args.bits);
    let kp = Keypair::generate(bits, &mut rng)?;
    let pk = kp.public().clone();
    let ops = if args.quick { 20 } else { 100 };
    let msgs: Vec<BigUint> = (0..ops).map(|_| rng.random_biguint_below(pk.n())).collect();
    let (mut enc, mut pooled, mut dec, mut add) = (vec![], vec![], vec![], vec![]);
    let mut djn = vec![];
    let t = Instant::now();
    let djn_enc = Encryptor::new(&pk, EncryptionMode::Djn);
    let djn_setup_ms = t.elapsed().as_secs_f64() * 1000.0;
    for _ in 0..args.runs {
        djn.push(rate(ops, || {
            for m in &msgs {
                std::hint::black_box(djn_enc.encrypt(m, &mut rng).expect("m < N"));
            }
        }));
        let mut cts = Vec::with_capacity(ops);
        enc.push(rate(ops, || {
            for m in &msgs {
                cts.push(pk.encrypt(m, &mut rng).expect("m < N"));
            }
        }));
        // Pool filled beforehand (by the background filler in a node; here directly).
        let pool = Arc::new(RandomnessPool::new(&pk, ops));
        while pool.fill_one(&mut rng) {}
        pooled.push(rate(ops, || {
            for m in &msgs {
                std::hint::black_box(pk.encrypt_pooled(m, &pool, &mut rng).expect("m < N"));
            }
        }));
        dec.push(rate(ops, || {
            for c in &cts {
                std::hint::black_box(kp.decrypt(c).expect("valid"));
            }
        }));
        let adds = ops * 100;
        add.push(rate(adds, || {
            let mut acc = cts[0].clone();
            for i in 0..adds {
                acc = pk.add(&acc, &cts[i % cts.len()]);
            }
            std::hint::black_box(acc);
        }));
    }
    let phe = |x: f64, ours: f64| {
        format!(
            "python-paillier 1.5 (gmpy2), 2048-bit: {x}/s; ratio {:.1}x",
            ours / x
        )
    };
    // TARGETS.md's encryption targets are for 2048-bit N (phe's figure is at 2048 bits).
    let tgt = |v: f64, text: &str| {
        if bits == 2048 {
            super::Target::at_least(v, text)
        } else {
            super::Target::text(format!("{text} at 2048 bits"))
        }
    };
    let mut figures = Vec::new();
    let f = Figure::from_samples(
        &format!("encryption {bits}-bit, standard r^N"),
        "ops/s",
        &enc,
    );
    let med = f.median;
    figures.push(
        f.target(tgt(192.0, "≥ 2× phe (192/s)"))
            .peer(phe(96.0, med)),
    );
    let f = Figure::from_samples(
        &format!(
            "encryption {bits}-bit, DJN h_s^a (a: {} bits; table {djn_setup_ms:.0} ms once per key)",
            caucus::paillier::djn::djn_exponent_bits(bits)
        ),
        "ops/s",
        &djn,
    );
    let med = f.median;
    figures.push(
        f.target(tgt(192.0, "≥ 2× phe (192/s)"))
            .peer(phe(96.0, med)),
    );
    let f = Figure::from_samples(
        &format!("encryption {bits}-bit, precomputed r^N pool"),
        "ops/s",
        &pooled,
    );
    let med = f.median;
    figures.push(f.target(tgt(1000.0, "≥ 1,000/s")).peer(phe(96.0, med)));
    let f = Figure::from_samples(
        &format!("decryption {bits}-bit (single key, CRT)"),
        "ops/s",
        &dec,
    );
    let med = f.median;
    figures.push(f.peer(phe(339.0, med)));
    let f = Figure::from_samples(&format!("homomorphic addition {bits}-bit"), "ops/s", &add);
    let med = f.median;
    figures.push(f.peer(phe(106_000.0, med)));

    if !args.quick {
        // Threshold decryption with a 3-party key from the distributed key generation.
        let params = Params::new(args.bits, 3, 1)?;
        // Any seed gives a valid key; seed 2 happens to need a single batch at 2048 bits.
        let key = super::keygen::run_threaded(&params, 2)?;
        let shares = key.shares;
        let tk = shares[0].threshold_key();
        for method in [Method::Root, Method::Classic] {
            let (mut partial_ms, mut combine_ms) = (vec![], vec![]);
            for _ in 0..args.runs {
                let m = rng.random_biguint_below(pk.n()) % shares[0].public().n();
                let c = shares[0].public().encrypt(&m, &mut rng)?;
                let t = Instant::now();
                let parts: Vec<_> = shares[..2]
                    .iter()
                    .map(|s| partial_decrypt_with(s, &c, method))
                    .collect::<Result<_, _>>()?;
                partial_ms.push(t.elapsed().as_secs_f64() * 1000.0 / 2.0);
                let t = Instant::now();
                let got = combine(&tk, &c, &parts)?;
                combine_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(got == m, "threshold decryption mismatch");
            }
            let name = method.as_str();
            let f = Figure::from_samples(
                &format!("threshold partial decryption {bits}-bit (one party), {name} method"),
                "ms",
                &partial_ms,
            );
            figures.push(match method {
                Method::Root => f
                    .target("decryption over the network <= 20 ms at 2048 bits")
                    .peer("TNO: 17 ms for distributed decryption with all 3 parties at 1024 bits"),
                Method::Classic => f,
            });
            figures.push(Figure::from_samples(
                &format!("threshold combine {bits}-bit (t+1 = 2 partials), {name} method"),
                "ms",
                &combine_ms,
            ));
        }
    }
    Ok(Report {
        bench: "paillier".into(),
        machine: machine(),
        params: serde_json::json!({ "bits": args.bits, "runs": args.runs, "ops_per_run": ops, "quick": args.quick }),
        figures,
    })
}
