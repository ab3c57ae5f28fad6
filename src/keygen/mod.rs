//! Distributed Paillier key generation without a trusted dealer (sans-IO), after Boneh–Franklin,
//! Malkin–Wu–Boneh (distributed sieving, batching) and Veugen–Attema–Spini (the protocol of TNO's
//! `distributed_keygen`), with the secret key reduced to a degree-t sharing so that any t+1
//! parties decrypt.
//!
//! Semi-honest security with an honest majority: n parties, at most t corrupted, n ≥ 2t+1.
//! Parties are indexed 1..=n. The protocol, per batch of candidates:
//! 1. [`Phase::SieveShares`]/[`Phase::SieveOpen`] (distributed sieving, see [`sieve`]): additive
//!    shares of p and q free of every sieve prime and ≡ 3 (mod 4), checked by one masked product
//!    per candidate and variant that reveals only N mod m for each sieve prime m.
//! 2. [`Phase::ProductShares`]/[`Phase::ProductOpen`]: N = p·q for every candidate of the batch
//!    (BGW over GF(P), P a public Mersenne prime above 2^(k+σ+8)).
//! 3. Trial division of each public N by the primes above the sieve bound up to `trial_bound`.
//! 4. [`Phase::BiprimeFirst`]/[`Phase::BiprimeRest`]: the Boneh–Franklin biprimality test (one round
//!    for every survivor, the remaining rounds and the twisted-group test only for those that pass).
//! 5. [`Phase::SecretShares`]/[`Phase::SecretReshare`] (see [`secret`]): a degree-t integer sharing of
//!    Δ⁴·φ·β and the public θ = Δ³·φ·β mod N.
//!
//! [`Keygen`] is the state machine the runtime drives; [`KeyShare`] is its result.

pub mod biprime;
pub mod message;
pub mod params;
pub mod secret;
pub mod session;
pub mod share;
pub mod sieve;

pub use message::{Body, Header, KeygenMessage, Outgoing, Phase};
pub use params::{Params, run_tag};
pub use session::Keygen;
pub use share::KeyShare;

use serde::Serialize;

/// Counters for the runtime's progress bar (cumulative over the run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Batches started.
    pub batches: u32,
    /// Candidate moduli N computed.
    pub candidates: u64,
    /// (candidate, sieve prime) residue pairs whose product was zero and were redrawn.
    pub sieve_redraws: u64,
    /// Candidates rejected by trial division.
    pub trial_division_rejects: u64,
    /// Candidates that entered the biprimality test.
    pub biprimality_tests: u64,
    /// Candidates that passed every biprimality round (normally 1: the key).
    pub biprimality_passed: u64,
    /// Protocol rounds (steps) completed.
    pub rounds: u32,
}

/// Errors of the key generation. Peer faults name the culprit party index.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeygenError {
    /// Local misuse: parameters out of range.
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// A message from an index outside 1..=n or from ourselves.
    #[error("message from unexpected sender {culprit}")]
    UnknownSender {
        /// the sender index as claimed by the transport
        culprit: u32,
    },
    /// Unsupported message version.
    #[error("party {culprit} sent unsupported version {version}")]
    UnsupportedVersion {
        /// sender
        culprit: u32,
        /// version received
        version: u16,
    },
    /// A message of another session or attempt.
    #[error("party {culprit} sent a message of another run")]
    WrongRun {
        /// sender
        culprit: u32,
    },
    /// A message for a round already finished.
    #[error("party {culprit} sent a message for past step {step}")]
    PastRound {
        /// sender
        culprit: u32,
        /// its step
        step: u32,
    },
    /// A message for a round more than one ahead.
    #[error("party {culprit} sent a message for future step {step}")]
    FutureRound {
        /// sender
        culprit: u32,
        /// its step
        step: u32,
    },
    /// A second message for the same step.
    #[error("party {culprit} sent two messages for one step")]
    Duplicate {
        /// sender
        culprit: u32,
    },
    /// A message of the wrong batch or the wrong kind for this step.
    #[error("party {culprit} sent an unexpected message")]
    UnexpectedMessage {
        /// sender
        culprit: u32,
    },
    /// A vector of the wrong length.
    #[error("party {culprit} sent {got} values, expected {expected}")]
    WrongCount {
        /// sender
        culprit: u32,
        /// expected length
        expected: usize,
        /// received length
        got: usize,
    },
    /// A value out of its range.
    #[error("party {culprit} sent an out-of-range share")]
    InvalidShare {
        /// sender
        culprit: u32,
    },
    /// A message that does not parse.
    #[error("party {culprit} sent a malformed message: {reason}")]
    Malformed {
        /// sender
        culprit: u32,
        /// parser message
        reason: String,
    },
    /// No key after the configured number of batches.
    #[error("no biprime found in {0} batches")]
    TooManyBatches(u32),
    /// θ is not invertible modulo N (negligible; restart the run).
    #[error("degenerate key, restart")]
    Degenerate,
    /// `handle` called after the key generation finished.
    #[error("key generation already finished")]
    Finished,
}

impl KeygenError {
    /// The party to blame, when a peer caused the error.
    pub fn culprit(&self) -> Option<u32> {
        match self {
            KeygenError::UnknownSender { culprit }
            | KeygenError::UnsupportedVersion { culprit, .. }
            | KeygenError::WrongRun { culprit }
            | KeygenError::PastRound { culprit, .. }
            | KeygenError::FutureRound { culprit, .. }
            | KeygenError::Duplicate { culprit }
            | KeygenError::UnexpectedMessage { culprit }
            | KeygenError::WrongCount { culprit, .. }
            | KeygenError::InvalidShare { culprit }
            | KeygenError::Malformed { culprit, .. } => Some(*culprit),
            KeygenError::InvalidParams(_)
            | KeygenError::TooManyBatches(_)
            | KeygenError::Degenerate
            | KeygenError::Finished => None,
        }
    }
}
