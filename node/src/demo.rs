//! `caucus demo`: the whole of caucus in one command, locally, narrated with timings.
//!
//! A real CA (redb registry, TLS front-end on loopback) and n nodes as tokio tasks of this process,
//! each with its own directory, RSA key, session certificate and mutual-TLS listener. Steps: CA
//! init and serve, session creation (one enrolment token per party), enrolment (CSR + token over
//! TLS pinned by the root fingerprint), session open (signed roster, mTLS between members), a blob
//! share from the first node to the others, the distributed Paillier keygen (no dealer), a secure
//! sum of one private value per node, and a threshold decryption while one node is offline.
//! Everything is left under `--dir` (default `certs/demo`), which is cleaned first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use caucus_ca::authority::Authority;
use caucus_ca::dir::CaDir;
use num_bigint::BigInt;

use crate::commands::enroll::{EnrollOptions, enroll};
use crate::commands::init::init;
use crate::config::NodeDir;
use crate::keygen::{KeygenOptions, run_keygen};
use crate::keyshare::KeyShareFile;
use crate::session::Session;
use crate::threshold::{DecryptOptions, SumOptions, decrypt_on, encrypt_value, sum_on};

/// Marker file that identifies a directory `caucus demo` may clean.
const MARKER: &str = ".caucus-demo";

/// Arguments of `caucus demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub parties: u32,
    /// Threshold t (any t+1 decrypt; n ≥ 2t+1).
    #[arg(long, default_value_t = 1)]
    pub threshold: u32,
    /// Bit length of the Paillier modulus N.
    #[arg(long, default_value_t = 2048)]
    pub bits: u32,
    /// Where the demo's CA and node directories go (cleaned first).
    #[arg(long, default_value = "certs/demo")]
    pub dir: PathBuf,
    /// Timeout of each networked step.
    #[arg(long, default_value = "300s", value_parser = crate::keygen::parse_duration)]
    pub timeout: Duration,
}

const NAMES: [&str; 7] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];

struct Step {
    n: u32,
    total: Instant,
}

impl Step {
    fn head(&mut self, title: &str) -> Instant {
        self.n += 1;
        println!();
        println!("[{}] {title}", self.n);
        Instant::now()
    }

    fn done(&self, t: Instant) {
        println!(
            "    ... done in {} (total {})",
            fmt_dur(t.elapsed()),
            fmt_dur(self.total.elapsed())
        );
    }
}

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// Removes `dir` if it is a previous demo directory (or empty); refuses anything else.
fn clean(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and is not a caucus demo directory; refusing to delete it (use --dir)",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cleaning {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        b"made by `caucus demo`; the next run deletes this directory\n",
    )?;
    Ok(())
}

fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let n = args.parties;
    let t = args.threshold;
    if n < 2 || n as usize > NAMES.len() {
        bail!("--parties must be 2..={}", NAMES.len());
    }
    if n < 2 * t + 1 {
        bail!(
            "--threshold {t} needs at least {} parties (n ≥ 2t+1)",
            2 * t + 1
        );
    }
    let names: Vec<String> = NAMES[..n as usize].iter().map(|s| s.to_string()).collect();
    let mut st = Step {
        n: 0,
        total: Instant::now(),
    };
    println!(
        "caucus demo: a CA and {n} nodes ({}) on this machine, threshold t = {t}, {}-bit Paillier key",
        names.join(", "),
        args.bits
    );
    clean(&args.dir)?;

    // 1. CA
    let s = st
        .head("Certificate authority: root key and certificate, redb registry, TLS 1.3 front-end");
    let ca_dir = CaDir::new(args.dir.join("ca"));
    let info = caucus_ca::dir::init(&ca_dir, "caucus-demo-ca", 3072, crate::now())
        .map_err(|e| anyhow!("CA init: {e}"))?;
    let auth = Arc::new(Authority::open(&ca_dir).map_err(|e| anyhow!("CA open: {e}"))?);
    let tls = caucus_ca::tls::server_config(auth.signer(), auth.now())
        .map_err(|e| anyhow!("CA TLS: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ca_addr = listener.local_addr()?.to_string();
    let (ca_stop, ca_rx) = tokio::sync::oneshot::channel::<()>();
    let ca_task = tokio::spawn(caucus_ca::server::run(
        listener,
        auth.clone(),
        tls,
        caucus_ca::server::ServerOptions::default(),
        async move {
            let _ = ca_rx.await;
        },
    ));
    println!(
        "    CA \"caucus-demo-ca\" (RSA-3072 root) in {}",
        ca_dir.root.display()
    );
    println!("    listening on {ca_addr}");
    println!("    root fingerprint {}", info.fingerprint);
    st.done(s);

    // 2. Session
    let s =
        st.head("Session: the CA creates the session and one single-use enrolment token per party");
    let sid = "demo";
    let created = auth
        .create_session(sid, &names, t, 24 * 3600)
        .map_err(|e| anyhow!("session create: {e}"))?;
    println!(
        "    session {sid:?}: parties {} , threshold {t}, tokens ≥128 bits, stored hashed, bound to (session, name)",
        names.join(",")
    );
    st.done(s);

    // 3. Enrolment
    let s = st.head("Enrolment: each node makes an RSA-2048 key and a CSR; the CA checks token + proof of possession and issues a session certificate");
    let mut dirs = Vec::new();
    for name in &names {
        let nd = NodeDir::new(args.dir.join(name));
        let t0 = Instant::now();
        let r = init(&nd, name, None, 2048)?;
        let token = created
            .tokens
            .get(name)
            .ok_or_else(|| anyhow!("no token for {name}"))?
            .clone();
        let e = enroll(
            &nd,
            &EnrollOptions {
                ca: ca_addr.clone(),
                fingerprint: info.fingerprint.clone(),
                token,
                advertise: free_addr()?,
                session: Some(sid.to_string()),
            },
        )
        .await?;
        println!(
            "    {:<6} party {} serial {}…  PartyId {}…  ({})",
            name,
            e.index,
            &e.serial[..12.min(e.serial.len())],
            &r.party_id[..16],
            fmt_dur(t0.elapsed())
        );
        dirs.push(nd);
    }
    st.done(s);

    // 4. Sessions
    let s = st.head("Nodes open the session: signed roster from the CA, mutual TLS listeners, peers authenticated by certificate");
    let mut sessions = Vec::new();
    for nd in &dirs {
        let sess = Session::open(
            &nd.root,
            crate::keygen::keygen_session_options(args.timeout),
        )
        .await
        .map_err(|e| anyhow!("{}: {e}", nd.root.display()))?;
        println!(
            "    {:<6} listening on {} (roster: {} members)",
            sess.me().name,
            sess.local_addr(),
            sess.parties().len()
        );
        sessions.push(Arc::new(sess));
    }
    // Warm up the links with one signed message each way.
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for sess in &sessions {
        let sess = sess.clone();
        set.spawn(async move {
            sess.broadcast("demo/hello", &sess.me().name).await?;
            let got: std::collections::BTreeMap<String, String> =
                sess.recv_all("demo/hello").await?;
            Ok::<usize, crate::session::SessionError>(got.len())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    println!(
        "    every node exchanged a signed hello with every other node over mTLS ({})",
        fmt_dur(t0.elapsed())
    );
    st.done(s);

    // 5. Blob
    let s = st.head("Blob share: an encrypted, chunked file from the first node to the others");
    // Receivers serve `post/blob` on their session; the sender uses `caucus blob send`'s code.
    let mut stores = Vec::new();
    for (sess, nd) in sessions.iter().zip(&dirs).skip(1) {
        stores.push(
            crate::blob::attach(sess, &nd.root, crate::blob::StoreConfig::default())
                .map_err(|e| anyhow!("blob store of {}: {e}", nd.root.display()))?,
        );
    }
    let file = args.dir.join("shared-dataset.csv");
    {
        let mut text = String::from("region,patients,cost\n");
        for i in 0..20_000u32 {
            text.push_str(&format!(
                "r{:05},{},{}\n",
                i,
                (i * 7919) % 1000,
                (i * 104_729) % 100_000
            ));
        }
        std::fs::write(&file, text)?;
    }
    let size = std::fs::metadata(&file)?.len();
    let mut send_args = crate::blob::cli::SendArgs::new(names[1..].to_vec(), file.clone());
    send_args.progress = Some(false);
    let sent = crate::blob::cli::send(&dirs[0], &send_args)
        .await
        .map_err(|e| anyhow!("blob send: {e}"))?;
    println!(
        "    {} encrypts {} ({:.1} KB) once (AES-256-GCM STREAM, {} KiB chunks, file key wrapped with RSA-OAEP for each recipient)",
        names[0],
        file.display(),
        size as f64 / 1e3,
        sent.chunk_size / 1024
    );
    for r in &sent.recipients {
        println!(
            "    -> {:<6} {} chunks, signed receipt after durable storage in {}",
            r.name,
            r.chunks_sent,
            fmt_dur(Duration::from_secs_f64(r.transfer_s))
        );
    }
    for (nd, name) in dirs[1..].iter().zip(&names[1..]) {
        let items = crate::blob::cli::list(nd).map_err(|e| anyhow!("blob list: {e}"))?;
        let item = items
            .iter()
            .find(|i| i.id == sent.blob_id)
            .ok_or_else(|| anyhow!("{} did not list the blob", nd.root.display()))?;
        let out = nd.root.join("received-dataset.csv");
        let got =
            crate::blob::cli::get(nd, &item.id, &out).map_err(|e| anyhow!("blob get: {e}"))?;
        if got.sha256 != sent.sha256 || std::fs::read(&out)? != std::fs::read(&file)? {
            bail!("{} received different bytes", nd.root.display());
        }
        println!(
            "    {:<6} lists it (from {}), stored encrypted at rest; decrypts it with its own key: SHA-256 {}… matches",
            name,
            item.sender,
            &got.sha256[..16]
        );
    }
    drop(stores);
    st.done(s);

    // 6. Keygen
    let s = st.head(&format!(
        "Distributed key generation: {}-bit Paillier N = p·q, no trusted dealer (sieving, BGW product, Boneh–Franklin test)",
        args.bits
    ));
    let mut set = tokio::task::JoinSet::new();
    for (i, sess) in sessions.iter().enumerate() {
        let sess = sess.clone();
        let opts = KeygenOptions {
            bits: args.bits,
            timeout: args.timeout,
            // One progress line (the first node's view) on stderr.
            progress: i == 0,
            label: "   ".into(),
        };
        set.spawn(async move { run_keygen(sess, &opts).await });
    }
    let mut keys: Vec<KeyShareFile> = Vec::new();
    let mut report = None;
    while let Some(r) = set.join_next().await {
        let (file, rep) = r??;
        keys.push(file);
        report.get_or_insert(rep);
    }
    keys.sort_by_key(|k| k.share.index());
    let rep = report.ok_or_else(|| anyhow!("no keygen result"))?;
    for (k, nd) in keys.iter().zip(&dirs) {
        k.save(&nd.keyshare_path())?;
    }
    println!(
        "    key {}: N has {} bits; {} batch{}, {} candidate moduli, {} biprimality tests, {} rounds",
        &rep.key_id[..16],
        rep.bits,
        rep.batches,
        if rep.batches == 1 { "" } else { "es" },
        rep.candidates,
        rep.biprimality_tests,
        rep.rounds
    );
    println!(
        "    every node holds only its own share (keyshare.json, 0600); p and q were never assembled anywhere"
    );
    println!("    protocol time {:.2} s", rep.seconds);
    st.done(s);

    // 7. Secure sum
    let values: Vec<i64> = [1200, -350, 4075, 980, 15, 600, 77][..n as usize].to_vec();
    let s = st.head("Secure sum: each node encrypts a private value; the ciphertexts are multiplied; a quorum decrypts only the total");
    for (name, v) in names.iter().zip(&values) {
        println!("    {name:<6} contributes {v:>6} (known only to {name})");
    }
    let mut set = tokio::task::JoinSet::new();
    for ((sess, key), v) in sessions.iter().zip(&keys).zip(&values) {
        let sess = sess.clone();
        let key = key.clone();
        let v = BigInt::from(*v);
        let opts = SumOptions {
            quorum: None,
            timeout: args.timeout,
            precision: 0,
            method: None,
        };
        set.spawn(async move { sum_on(&sess, &key, &v, &opts).await });
    }
    let mut sums = Vec::new();
    while let Some(r) = set.join_next().await {
        sums.push(r??);
    }
    sums.sort_by(|a, b| a.party.cmp(&b.party));
    let want: i64 = values.iter().sum();
    for r in &sums {
        println!(
            "    {:<6} learns total = {}, mean = {} (quorum {}, {})",
            r.party,
            r.total,
            r.mean,
            r.quorum.join("+"),
            fmt_dur(Duration::from_secs_f64(r.ms / 1000.0))
        );
        if r.total != want.to_string() {
            bail!("{} got total {}, expected {want}", r.party, r.total);
        }
    }
    println!("    check: the plain sum is {want} ✓");
    st.done(s);

    // 8. Decrypt with one party offline
    let offline = names[n as usize - 1].clone();
    let s = st.head(&format!(
        "Threshold decryption with {offline} offline: any t+1 = {} parties decrypt",
        t + 1
    ));
    let last = sessions.pop().ok_or_else(|| anyhow!("no sessions"))?;
    crate::keygen::close(last).await;
    println!("    {offline} stopped its node (listener closed)");
    let secret = BigInt::from(424_242);
    let c = encrypt_value(keys[0].share.public(), &secret)?;
    println!(
        "    {} encrypts 424242 under the shared key: ciphertext {}… ({} digits)",
        names[0],
        &c.value().to_string()[..24],
        c.value().to_string().len()
    );
    let quorum: Vec<String> = names[..(t + 1) as usize].to_vec();
    let mut set = tokio::task::JoinSet::new();
    for (sess, key) in sessions.iter().zip(&keys).take((t + 1) as usize) {
        let sess = sess.clone();
        let key = key.clone();
        let c = c.clone();
        let opts = DecryptOptions {
            quorum: Some(quorum.clone()),
            to: None,
            timeout: args.timeout,
            precision: 0,
            repeat: 1,
            method: None,
        };
        set.spawn(async move { decrypt_on(&sess, &key, &c, &opts).await });
    }
    let mut decs = Vec::new();
    while let Some(r) = set.join_next().await {
        decs.push(r??);
    }
    decs.sort_by(|a, b| a.party.cmp(&b.party));
    for d in &decs {
        let v = d.value.clone().unwrap_or_default();
        println!(
            "    {:<6} (quorum {}, {} method) decrypts {} in {}",
            d.party,
            d.quorum.join("+"),
            d.method.as_str(),
            v,
            fmt_dur(Duration::from_secs_f64(
                d.latency_ms.first().copied().unwrap_or(0.0) / 1000.0
            ))
        );
        if v != "424242" {
            bail!("{} decrypted {v}, expected 424242", d.party);
        }
    }
    st.done(s);

    for sess in sessions {
        crate::keygen::close(sess).await;
    }
    let _ = ca_stop.send(());
    let _ = ca_task.await;
    println!();
    println!(
        "demo complete in {}. Material left in {}:",
        fmt_dur(st.total.elapsed()),
        args.dir.display()
    );
    println!("    ca/          root certificate ca.pem, root key ca.key (0600), registry.redb");
    for name in &names {
        println!(
            "    {:<13}node.key (0600), node.pem, ca.pem, node.json, keyshare.json (0600)",
            format!("{name}/")
        );
    }
    println!(
        "Try: cargo run --release -p caucus-node --bin caucus -- key show --dir {}/{}",
        args.dir.display(),
        names[0]
    );
    Ok(())
}
