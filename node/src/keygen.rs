//! The network keygen driver: runs the sans-IO [`caucus::keygen::Keygen`] between the members of
//! a CA session over the SMC [`Session`] API.
//!
//! * Parties are the roster members; roster order gives the key index 1..n; t is the session's
//!   threshold. Every message is a signed envelope over mutual TLS and its sender is the
//!   certificate's `PartyId` (the session API only delivers roster members' messages).
//! * A `hello` round first: each party broadcasts the parameters and a fresh random nonce. The run
//!   tag binds the session id, the parameters and every nonce, so messages of another session or
//!   another run carry another tag: their message ids are never awaited (they stay ignored in the
//!   bounded buffer) and the state machine refuses a wrong tag in the header.
//! * Protocol messages travel as `kg/<run>/<seq>` with a per-(sender, receiver) sequence number,
//!   so each peer's messages are handled in the order sent. Big-number work runs on a blocking
//!   thread.
//! * One overall deadline. A party that does not show up is named when it expires; a party whose
//!   connections drop (killed, crashed) is named within a few seconds; a party that sends garbage
//!   is named at once.
//! * A final `done` round checks that everyone holds the same public key before anything is
//!   written: `keyshare.json` is written atomically (0600) only after it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use caucus::keygen::{KeyShare, Keygen, KeygenError, KeygenMessage, Outgoing, Params, Progress};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::{ConfigError, NodeDir};
use crate::keyshare::{KEYSHARE_FILE_VERSION, KeyParty, KeyShareFile, KeyShareFileError};
use crate::session::{Party, Session, SessionError, SessionOptions};

/// How long a peer's connections may stay down (after it was seen) before it is declared gone.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(3);

/// Errors of the network drivers (keygen, decrypt, sum). Peer faults name the party.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// A session-level failure (names the party where one is to blame).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A party sent a message the protocol refuses.
    #[error("party {party:?} misbehaved: {reason}")]
    Peer {
        /// the party's roster name
        party: String,
        /// what it did
        reason: String,
    },
    /// A party disagrees (parameters, key, ciphertext).
    #[error("party {party:?} disagrees: {reason}")]
    Disagree {
        /// the party's roster name
        party: String,
        /// about what
        reason: String,
    },
    /// A local protocol failure (no peer to blame).
    #[error("{0}")]
    Protocol(String),
    /// The overall deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The key share file.
    #[error(transparent)]
    KeyShare(#[from] KeyShareFileError),
    /// The node directory.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A bad argument.
    #[error("{0}")]
    BadArgument(String),
}

impl DriverError {
    /// The party this error names, if any.
    pub fn party(&self) -> Option<&str> {
        match self {
            DriverError::Peer { party, .. } | DriverError::Disagree { party, .. } => Some(party),
            DriverError::Session(
                SessionError::Timeout { party, .. }
                | SessionError::Disconnected { party, .. }
                | SessionError::Unreachable { party, .. }
                | SessionError::Malformed { party, .. }
                | SessionError::Request { party, .. },
            ) => Some(party),
            _ => None,
        }
    }
}

/// Parses a duration: `120s`, `2m`, `500ms`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let v: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 120s, 2m, 500ms)"))?;
    v.checked_mul(mult_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} too large"))
}

/// Receives message `msg_id` from `party` until `deadline`, in slices, so that a party whose
/// connections are gone for [`DISCONNECT_GRACE`] is reported long before the deadline.
pub async fn recv_until<T: serde::de::DeserializeOwned>(
    s: &Session,
    party: &str,
    msg_id: &str,
    deadline: Instant,
) -> Result<T, SessionError> {
    let mut down_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        let slice = left.min(Duration::from_millis(500));
        match s.recv_timeout::<T>(party, msg_id, slice).await {
            Ok(v) => return Ok(v),
            Err(e @ SessionError::Disconnected { .. }) => {
                let since = *down_since.get_or_insert(now);
                if since.elapsed() >= DISCONNECT_GRACE || Instant::now() >= deadline {
                    return Err(e);
                }
            }
            Err(e @ SessionError::Timeout { .. }) => {
                down_since = None;
                if Instant::now() >= deadline {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Receives `msg_id` from each of `parties` (by name) until `deadline`; the first failure (by
/// roster order) is returned.
pub async fn recv_from_all<T: serde::de::DeserializeOwned + Send + 'static>(
    s: &std::sync::Arc<Session>,
    parties: &[Party],
    msg_id: &str,
    deadline: Instant,
) -> Result<BTreeMap<String, T>, SessionError> {
    let mut set = tokio::task::JoinSet::new();
    for p in parties {
        let s = s.clone();
        let p = p.clone();
        let id = msg_id.to_string();
        set.spawn(async move {
            let r = recv_until::<T>(&s, &p.name, &id, deadline).await;
            (p, r)
        });
    }
    let mut out = BTreeMap::new();
    let mut errs = Vec::new();
    while let Some(j) = set.join_next().await {
        match j {
            Ok((p, Ok(v))) => {
                out.insert(p.name, v);
            }
            Ok((p, Err(e))) => errs.push((p.index, e)),
            Err(e) => errs.push((0, SessionError::Setup(format!("receiver task: {e}")))),
        }
    }
    errs.sort_by_key(|(i, _)| *i);
    match errs.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(out),
    }
}

/// Options of a keygen run.
#[derive(Clone, Debug)]
pub struct KeygenOptions {
    /// Bit length of N.
    pub bits: u32,
    /// Overall timeout.
    pub timeout: Duration,
    /// Show a progress line on stderr.
    pub progress: bool,
    /// Label for the progress line (the party name is used when empty).
    pub label: String,
}

impl Default for KeygenOptions {
    fn default() -> Self {
        Self {
            bits: 2048,
            timeout: Duration::from_secs(120),
            progress: false,
            label: String::new(),
        }
    }
}

/// What a keygen run produced (besides the file).
#[derive(Clone, Debug, Serialize)]
pub struct KeygenReport {
    /// This party.
    pub party: String,
    /// Its key index.
    pub index: u32,
    /// The keygen (CA) session.
    pub session: String,
    /// Key fingerprint.
    pub key_id: String,
    /// Bit length of N.
    pub bits: u64,
    /// n.
    pub parties: u32,
    /// t.
    pub threshold: u32,
    /// N, decimal.
    pub n: String,
    /// Wall time of the protocol, seconds (from the hello round to the done round).
    pub seconds: f64,
    /// Batches of candidates.
    pub batches: u32,
    /// Candidate moduli computed.
    pub candidates: u64,
    /// Boneh–Franklin biprimality tests run.
    pub biprimality_tests: u64,
    /// Protocol rounds.
    pub rounds: u32,
    /// Where the share was written.
    pub keyshare: String,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Hello {
    params: Params,
    #[serde(with = "caucus::encoding::bytes_b64u")]
    nonce: Vec<u8>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Done {
    key_id: String,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Progress line on stderr: `\r`-updated on a terminal, one line a second otherwise.
struct ProgressLine {
    on: bool,
    tty: bool,
    label: String,
    last: Option<Instant>,
    start: Instant,
}

impl ProgressLine {
    fn new(on: bool, label: String) -> Self {
        use std::io::IsTerminal;
        Self {
            on,
            tty: std::io::stderr().is_terminal(),
            label,
            last: None,
            start: Instant::now(),
        }
    }

    fn show(&mut self, p: &Progress, force: bool) {
        if !self.on {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        if !force && self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let line = format!(
            "{} keygen [{:>6.1}s] batch {:>3}  candidates {:>6}  biprimality tests {:>5}  round {:>4}",
            self.label,
            self.start.elapsed().as_secs_f64(),
            p.batches,
            p.candidates,
            p.biprimality_tests,
            p.rounds
        );
        if self.tty {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&mut self) {
        if self.on && self.tty {
            eprintln!();
        }
    }
}

/// Runs the key generation on an open session; returns the share and the figures. Writes
/// nothing.
pub async fn run_keygen(
    session: std::sync::Arc<Session>,
    opts: &KeygenOptions,
) -> Result<(KeyShareFile, KeygenReport), DriverError> {
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let me = session.me();
    let parties = session.parties();
    let others = session.others();
    let n = parties.len() as u32;
    let t = session.threshold();
    let sid = session.session_id();
    let mut params =
        Params::new(opts.bits, n, t).map_err(|e| DriverError::BadArgument(e.to_string()))?;
    // Above 2048 bits the default batch makes messages that exceed the wire bound on one
    // vector (15 MiB; a 4096-bit batch's sieve shares are ~23 MB): scale the batch down with the
    // value size. Every party derives the same parameters (checked in the hello round).
    if opts.bits > 2048 {
        let b = params
            .effective_batch_size()
            .map_err(|e| DriverError::BadArgument(e.to_string()))?;
        params.batch_size = ((b as u64 * 1843 / u64::from(opts.bits)).max(1)) as u32;
    }
    let by_index: BTreeMap<u32, Party> = parties.iter().map(|p| (p.index, p.clone())).collect();
    let name_of = |i: u32| {
        by_index
            .get(&i)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("#{i}"))
    };

    // Hello: parameters and a fresh nonce from everyone.
    let mut rng: ChaCha20Rng = rand::make_rng();
    let mut nonce = vec![0u8; 16];
    rand::Rng::fill_bytes(&mut rng, &mut nonce);
    let hello = Hello {
        params: params.clone(),
        nonce: nonce.clone(),
    };
    let hello_id = "kg/hello";
    session
        .broadcast_timeout(
            hello_id,
            &hello,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await?;
    let hellos: BTreeMap<String, Hello> =
        recv_from_all(&session, &others, hello_id, deadline).await?;
    let mut nonces: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    nonces.insert(me.index, nonce);
    for p in &others {
        let h = hellos
            .get(&p.name)
            .ok_or_else(|| DriverError::Protocol(format!("no hello from {}", p.name)))?;
        if h.params != params {
            return Err(DriverError::Disagree {
                party: p.name.clone(),
                reason: format!(
                    "it runs keygen with {}-bit N, n={}, t={} (here: {}-bit, n={n}, t={t})",
                    h.params.bits, h.params.parties, h.params.threshold, opts.bits
                ),
            });
        }
        if h.nonce.len() != 16 {
            return Err(DriverError::Peer {
                party: p.name.clone(),
                reason: "hello nonce is not 16 bytes".into(),
            });
        }
        nonces.insert(p.index, h.nonce.clone());
    }
    let base = caucus::keygen::run_tag(&sid, 0, &params);
    let mut parts: Vec<&[u8]> = vec![b"caucus keygen net v1", &base];
    for v in nonces.values() {
        parts.push(v);
    }
    let run = sha256(&parts);
    let run_hex = hex::encode(&run[..8]);

    // Receivers: one task per peer, messages in the order sent.
    let (tx, mut rx) = mpsc::channel::<(u32, Result<KeygenMessage, SessionError>)>(1024);
    let mut tasks = tokio::task::JoinSet::new();
    for p in &others {
        let s = session.clone();
        let p = p.clone();
        let tx = tx.clone();
        let run_hex = run_hex.clone();
        tasks.spawn(async move {
            let mut seq = 0u64;
            loop {
                let id = format!("kg/{run_hex}/{seq}");
                let r = recv_until::<KeygenMessage>(&s, &p.name, &id, deadline).await;
                let stop = r.is_err();
                if tx.send((p.index, r)).await.is_err() || stop {
                    return;
                }
                seq += 1;
            }
        });
    }
    drop(tx);
    // Senders: one queue per peer, in order.
    let mut queues: BTreeMap<u32, mpsc::UnboundedSender<serde_json::Value>> = BTreeMap::new();
    let (err_tx, mut err_rx) = mpsc::unbounded_channel::<SessionError>();
    for p in &others {
        let (qtx, mut qrx) = mpsc::unbounded_channel::<serde_json::Value>();
        queues.insert(p.index, qtx);
        let s = session.clone();
        let p = p.clone();
        let err_tx = err_tx.clone();
        let run_hex = run_hex.clone();
        tasks.spawn(async move {
            let mut seq = 0u64;
            while let Some(v) = qrx.recv().await {
                let id = format!("kg/{run_hex}/{seq}");
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(e) = s.send_timeout(&p.name, &id, &v, left).await {
                    let _ = err_tx.send(e);
                    return;
                }
                seq += 1;
            }
        });
    }
    drop(err_tx);
    let send = |out: Vec<Outgoing>| -> Result<(), DriverError> {
        for o in out {
            let (targets, msg) = match o {
                Outgoing::Broadcast(m) => (others.iter().map(|p| p.index).collect::<Vec<_>>(), m),
                Outgoing::Direct { to, msg } => (vec![to], msg),
            };
            let v = serde_json::to_value(&msg)
                .map_err(|e| DriverError::Protocol(format!("cannot encode a message: {e}")))?;
            for to in targets {
                let q = queues.get(&to).ok_or_else(|| {
                    DriverError::Protocol(format!("keygen addressed unknown index {to}"))
                })?;
                let _ = q.send(v.clone());
            }
        }
        Ok(())
    };

    let mut bar = ProgressLine::new(
        opts.progress,
        if opts.label.is_empty() {
            me.name.clone()
        } else {
            opts.label.clone()
        },
    );
    let proto_start = Instant::now();
    let (mut kg, out) = {
        let params = params.clone();
        let index = me.index;
        tokio::task::spawn_blocking(move || {
            let mut rng: ChaCha20Rng = rand::make_rng();
            Keygen::start(&params, index, run, &mut rng)
        })
        .await
        .map_err(|e| DriverError::Protocol(format!("keygen task: {e}")))?
        .map_err(|e| DriverError::Protocol(e.to_string()))?
    };
    send(out)?;
    let blame = |e: KeygenError| match e.culprit() {
        Some(c) => DriverError::Peer {
            party: name_of(c),
            reason: e.to_string(),
        },
        None => DriverError::Protocol(e.to_string()),
    };
    while !kg.is_done() {
        let (from, msg) = tokio::select! {
            m = rx.recv() => match m {
                Some((from, Ok(msg))) => (from, msg),
                Some((_, Err(e))) => return Err(e.into()),
                None => return Err(DriverError::Timeout(opts.timeout)),
            },
            Some(e) = err_rx.recv() => return Err(e.into()),
            _ = tokio::time::sleep_until(deadline.into()) => {
                return Err(DriverError::Timeout(opts.timeout));
            }
        };
        let (next, out) = tokio::task::spawn_blocking(move || kg.handle(from, msg))
            .await
            .map_err(|e| DriverError::Protocol(format!("keygen task: {e}")))?
            .map_err(blame)?;
        kg = next;
        send(out)?;
        bar.show(&kg.progress(), false);
    }
    let progress = kg.progress();
    bar.show(&progress, true);
    bar.finish();
    let mut share: KeyShare = kg
        .into_share()
        .ok_or_else(|| DriverError::Protocol("keygen finished without a share".into()))?;
    share.party = Some(me.name.clone());
    let key_id = share.key_id();

    // Done: everyone must hold the same public key before anything is written.
    let done_id = format!("kg/{run_hex}/done");
    session
        .broadcast_timeout(
            &done_id,
            &Done {
                key_id: key_id.clone(),
            },
            deadline.saturating_duration_since(Instant::now()),
        )
        .await?;
    let dones: BTreeMap<String, Done> =
        recv_from_all(&session, &others, &done_id, deadline).await?;
    for (name, d) in &dones {
        if d.key_id != key_id {
            return Err(DriverError::Disagree {
                party: name.clone(),
                reason: format!("it got key {} (here: {key_id})", d.key_id),
            });
        }
    }
    tasks.abort_all();
    let seconds = proto_start.elapsed().as_secs_f64();
    let file = KeyShareFile {
        version: KEYSHARE_FILE_VERSION,
        key_id: key_id.clone(),
        bits: share.public().bits(),
        keygen_session: sid.clone(),
        created_at: crate::now(),
        me: me.name.clone(),
        threshold: t,
        parties: parties
            .iter()
            .map(|p| KeyParty {
                index: p.index,
                name: p.name.clone(),
                party_id: p.party_id.to_string(),
            })
            .collect(),
        share,
    };
    file.check().map_err(DriverError::Protocol)?;
    let report = KeygenReport {
        party: me.name,
        index: me.index,
        session: sid,
        key_id,
        bits: file.bits,
        parties: n,
        threshold: t,
        n: file.share.public().n().to_string(),
        seconds,
        batches: progress.batches,
        candidates: progress.candidates,
        biprimality_tests: progress.biprimality_tests,
        rounds: progress.rounds,
        keyshare: String::new(),
    };
    Ok((file, report))
}

/// Session options for a driver command with overall `timeout`.
pub fn session_options(timeout: Duration) -> SessionOptions {
    SessionOptions {
        timeout,
        roster_wait: timeout,
        ..SessionOptions::default()
    }
}

/// Largest frame of a keygen session: one batch message of a 4096-bit run is about 30 MB of JSON
/// (the default frame limit is 16 MiB). Every party of a keygen uses the same limit.
pub const KEYGEN_MAX_FRAME: usize = 128 << 20;

/// [`session_options`] for a keygen: frames up to [`KEYGEN_MAX_FRAME`], buffers to match.
pub fn keygen_session_options(timeout: Duration) -> SessionOptions {
    let mut o = session_options(timeout);
    o.node.max_frame = KEYGEN_MAX_FRAME;
    o.node.max_buffered_bytes = o.node.max_buffered_bytes.max(4 * KEYGEN_MAX_FRAME);
    o
}

/// `caucus keygen`: opens the node's session (own listener on the advertised address), runs the
/// key generation and writes `keyshare.json` (0600, atomically). Refuses to overwrite an
/// existing share unless `force`.
pub async fn keygen(
    dir: &Path,
    opts: &KeygenOptions,
    force: bool,
) -> Result<KeygenReport, DriverError> {
    let nd = NodeDir::new(dir);
    let path = nd.keyshare_path();
    if path.exists() && !force {
        return Err(DriverError::BadArgument(format!(
            "{} exists; refusing to overwrite a key share (use --force)",
            path.display()
        )));
    }
    let session =
        std::sync::Arc::new(Session::open(dir, keygen_session_options(opts.timeout)).await?);
    let r = run_keygen(session.clone(), opts).await;
    let (file, mut report) = match r {
        Ok(v) => v,
        Err(e) => {
            close(session).await;
            return Err(e);
        }
    };
    file.save(&path)?;
    report.keyshare = path.display().to_string();
    close(session).await;
    Ok(report)
}

/// Closes a shared session: lets peers read our last messages, then closes gracefully.
pub async fn close(session: std::sync::Arc<Session>) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    match std::sync::Arc::try_unwrap(session) {
        Ok(s) => s.close().await,
        Err(s) => drop(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
    }
}
