//! Test utilities (`feature = "test-util"`): an in-process n-party key-generation harness that
//! serialises every message to JSON and parses it back on every hop.

use std::collections::{BTreeMap, VecDeque};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::keygen::{
    KeyShare, Keygen, KeygenError, KeygenMessage, Outgoing, Params, Progress, run_tag,
};

/// What a harness run measured.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Party 1's progress counters.
    pub progress: Progress,
    /// Messages delivered (a broadcast counts once per recipient).
    pub messages: u64,
    /// JSON bytes delivered.
    pub bytes: u64,
}

/// Delivery order of the harness.
#[derive(Clone, Copy, Debug)]
pub enum Delivery {
    /// One global FIFO queue.
    Fifo,
    /// A seeded random choice among the (sender, receiver) channels, each channel FIFO (as TCP).
    Shuffled(u64),
}

/// Per-(sender, receiver) FIFO queues of `(step, JSON bytes)`.
type Channels = BTreeMap<(u32, u32), VecDeque<(u32, Vec<u8>)>>;

/// A hook that may alter the JSON bytes of a message `(from, to, step, bytes)`.
pub type Tamper<'a> = &'a mut dyn FnMut(u32, u32, u32, &mut Vec<u8>);

/// Runs a key generation of `params` with every party seeded from `seed`. On failure returns the
/// index of the party that detected it and its error.
pub fn try_run_keygen(
    params: &Params,
    seed: u64,
    delivery: Delivery,
    tamper: Option<Tamper<'_>>,
) -> Result<(Vec<KeyShare>, Stats), (u32, KeygenError)> {
    let n = params.parties;
    let run = run_tag("test-session", 0, params);
    let mut master = ChaCha20Rng::seed_from_u64(seed);
    let mut parties: BTreeMap<u32, Keygen> = BTreeMap::new();
    let mut channels: Channels = BTreeMap::new();
    let mut stats = Stats::default();
    let mut tamper = tamper;
    let push = |channels: &mut Channels, from: u32, out: Vec<Outgoing>| {
        for o in out {
            match o {
                Outgoing::Broadcast(m) => {
                    let bytes = m.to_json();
                    for to in (1..=n).filter(|&j| j != from) {
                        channels
                            .entry((from, to))
                            .or_default()
                            .push_back((m.header.step, bytes.clone()));
                    }
                }
                Outgoing::Direct { to, msg } => {
                    channels
                        .entry((from, to))
                        .or_default()
                        .push_back((msg.header.step, msg.to_json()));
                }
            }
        }
    };
    for i in 1..=n {
        let mut rng = ChaCha20Rng::from_rng(&mut master);
        let (kg, out) = Keygen::start(params, i, run, &mut rng).map_err(|e| (i, e))?;
        parties.insert(i, kg);
        push(&mut channels, i, out);
    }
    let mut order = match delivery {
        Delivery::Fifo => None,
        Delivery::Shuffled(s) => Some(ChaCha20Rng::seed_from_u64(s)),
    };
    loop {
        let ready: Vec<(u32, u32)> = channels
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if ready.is_empty() {
            break;
        }
        let key = match order.as_mut() {
            None => {
                // Global FIFO approximated by round-robin over channels in order.
                ready[0]
            }
            Some(rng) => ready[rng.random_range(0..ready.len())],
        };
        let Some((step, mut bytes)) = channels.get_mut(&key).and_then(VecDeque::pop_front) else {
            break;
        };
        let (from, to) = key;
        if let Some(t) = tamper.as_mut() {
            t(from, to, step, &mut bytes);
        }
        stats.messages += 1;
        stats.bytes += bytes.len() as u64;
        let msg = KeygenMessage::from_json(from, &bytes).map_err(|e| (to, e))?;
        let Some(kg) = parties.remove(&to) else {
            return Err((to, KeygenError::Finished));
        };
        let (kg, out) = kg.handle(from, msg).map_err(|e| (to, e))?;
        parties.insert(to, kg);
        push(&mut channels, to, out);
    }
    stats.progress = parties.get(&1).map(Keygen::progress).unwrap_or_default();
    let mut shares = Vec::new();
    for (i, kg) in parties {
        match kg.into_share() {
            Some(s) => shares.push(s),
            None => return Err((i, KeygenError::Finished)),
        }
    }
    Ok((shares, stats))
}

/// Runs an (n, t) key generation of `bits`-bit N with seed `seed` (FIFO delivery, no tampering).
///
/// # Panics
/// If the run fails (this is a test utility).
pub fn run_keygen(n: u32, t: u32, bits: u32, seed: u64) -> (Vec<KeyShare>, Stats) {
    let params = Params::new(bits, n, t).expect("valid parameters");
    try_run_keygen(&params, seed, Delivery::Fifo, None).expect("key generation succeeds")
}
